//! Starting a cluster: data dir, store, certificates, tokens, kubeconfig, the HTTPS API,
//! the controllers and the simulated nodes.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine;
use shoal_apiserver::{ApiServer, ServeConfig, tls};

use crate::ServerArgs;

/// Errors that stop `shoal up` / `shoal server`.
#[derive(Debug)]
pub struct StartError(pub String);

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn err<E: std::fmt::Display>(what: &str) -> impl FnOnce(E) -> StartError + '_ {
    move |e| StartError(format!("{what}: {e}"))
}

pub(crate) fn random_hex(bytes: usize) -> String {
    use rand::RngCore;
    let mut buf = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buf);
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// Reads a secret file, creating it with a fresh random value if absent.
fn ensure_secret(path: &Path) -> Result<String, StartError> {
    if let Ok(s) = std::fs::read_to_string(path) {
        let s = s.trim().to_string();
        if !s.is_empty() {
            return Ok(s);
        }
    }
    let s = random_hex(24);
    tls::write_private(path, &format!("{s}\n")).map_err(err("writing a token"))?;
    Ok(s)
}

/// The join token: `SHOAL10<sha256 of the CA certificate PEM>::node:<secret>`, so an agent
/// can verify the server's CA from the token alone.
pub fn join_token(ca_pem: &str, secret: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, ca_pem.as_bytes());
    let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("SHOAL10{hex}::node:{secret}")
}

/// An admin kubeconfig for `server` (`https://host:port`).
pub fn kubeconfig(server: &str, ca_pem: &str, token: &str) -> String {
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: shoal\n  cluster:\n    server: {server}\n    certificate-authority-data: {ca}\ncontexts:\n- name: shoal\n  context:\n    cluster: shoal\n    user: admin\n    namespace: default\ncurrent-context: shoal\nusers:\n- name: admin\n  user:\n    token: {token}\n"
    )
}

/// A kubeconfig for `user` in `groups`: a client certificate valid for `expires`, signed by
/// the CA of the cluster in `data_dir`, for `server` (default: the admin kubeconfig's).
pub fn user_kubeconfig(
    data_dir: &std::path::Path,
    user: &str,
    groups: &[String],
    expires: std::time::Duration,
    server: Option<&str>,
) -> Result<String, StartError> {
    let bad = |what: &str| StartError(format!("shoal kubeconfig: {what}"));
    let invalid = |s: &str| s.is_empty() || s.len() > 253 || s.chars().any(char::is_control);
    if invalid(user) {
        return Err(bad("--user must be a name of 1 to 253 printable characters"));
    }
    if groups.iter().any(|g| invalid(g)) {
        return Err(bad("a --group must be a name of 1 to 253 printable characters"));
    }
    // Extension API servers take the front-proxy headers from that name: a person holding
    // it could be anyone to them.
    if user == shoal_apiserver::nodeauth::FRONT_PROXY_CLIENT {
        return Err(bad(
            "--user front-proxy-client is the API server's own name for its front proxy",
        ));
    }
    if expires < std::time::Duration::from_secs(60) {
        return Err(bad("--expires must be at least a minute"));
    }
    let read = |path: std::path::PathBuf| {
        std::fs::read_to_string(&path).map_err(|e| bad(&format!("cannot read {}: {e}", path.display())))
    };
    let ca_pem = read(data_dir.join("tls").join("ca.crt"))?;
    let ca_key = read(data_dir.join("tls").join("ca.key"))?;
    let server = match server {
        Some(s) => s.to_string(),
        None => read(data_dir.join("kubeconfig"))?
            .lines()
            .find_map(|l| l.trim().strip_prefix("server: ").map(str::to_string))
            .ok_or_else(|| bad("the admin kubeconfig names no server; pass --server"))?,
    };
    let (cert, key) =
        shoal_apiserver::tls::issue_client_cert(&ca_key, user, groups, expires).map_err(|e| bad(&e.to_string()))?;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let quoted = serde_json::to_string(user).unwrap_or_default();
    Ok(format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: shoal\n  cluster:\n    server: {server}\n    certificate-authority-data: {ca}\ncontexts:\n- name: shoal\n  context:\n    cluster: shoal\n    user: {quoted}\n    namespace: default\ncurrent-context: shoal\nusers:\n- name: {quoted}\n  user:\n    client-certificate-data: {cert}\n    client-key-data: {key}\n",
        ca = b64(&ca_pem),
        cert = b64(&cert),
        key = b64(&key),
    ))
}

/// A cluster running in this process.
pub struct Running {
    /// An in-process client (the same router remote clients reach over HTTPS).
    pub client: kube::Client,
    /// `https://host:port` of the API.
    pub server_url: String,
    /// How long start-up took, until `/readyz` answered.
    pub ready_in: std::time::Duration,
    /// Where the cluster DNS answers, if it does.
    pub dns: Option<std::net::SocketAddr>,
    /// Its leader elections (its identity as a candidate), to stop and release their Leases
    /// on shutdown.
    pub elections: crate::ha::Elections,
}

/// Starts a cluster in this process (`nodes` is `Some(N)` for `shoal up`) and returns once
/// `/readyz` answers over HTTPS; it runs until the runtime ends.
pub async fn start(args: &ServerArgs, nodes: Option<u32>) -> Result<Running, StartError> {
    start_with(args, nodes, up_timing()).await
}

/// How pods on `shoal up`'s simulated nodes behave: they start at once, and a deleted pod
/// takes half a second to a second to go (within its grace period), as a kubelet's
/// containers that exit at once do. A pod removed in the same instant as its DELETE lets a
/// controller's replacement (a StatefulSet's pod of the same name) appear before a client
/// has seen the deletion: `kubectl delete` lists the pod again to watch for its deletion,
/// finds the replacement, and waits for a deletion it missed.
fn up_timing() -> shoal_agent::PodTiming {
    shoal_agent::PodTiming {
        stop_time: std::time::Duration::from_millis(500),
        stop_jitter: std::time::Duration::from_millis(500),
        ..Default::default()
    }
}

/// [`start`] with simulated pods timed by `timing` (the benchmarks take no time at all).
pub async fn start_with(
    args: &ServerArgs,
    nodes: Option<u32>,
    timing: shoal_agent::PodTiming,
) -> Result<Running, StartError> {
    let started = std::time::Instant::now();
    let dir = &args.data_dir;
    crate::ha::check(&args.ha)?;
    std::fs::create_dir_all(dir).map_err(err("creating the data dir"))?;
    let opened = crate::ha::open_store(args.store.as_deref(), dir, &args.ha).await?;

    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .map_err(err("binding --listen"))?;
    let addr = listener.local_addr().map_err(err("reading the listen address"))?;
    let host = if addr.ip().is_unspecified() {
        "127.0.0.1".to_string()
    } else {
        addr.ip().to_string()
    };
    let make_secrets = || -> Result<(), StartError> {
        tls::ensure_certs(dir, std::slice::from_ref(&host)).map_err(err("preparing certificates"))?;
        for name in ["admin-token", "node-secret", "node-credential-key"] {
            ensure_secret(&dir.join(name))?;
        }
        service_account_key(dir).map(drop)
    };
    if opened.shared {
        // Every server of the cluster signs with one CA and accepts the same credentials.
        crate::ha::share_secrets(opened.store.as_ref(), dir, &args.ha, make_secrets).await?;
    }
    let api = ApiServer::with_service_range(opened.store, args.service_cidr)
        .await
        .map_err(err("starting the API server"))?;
    let certs = tls::ensure_certs(dir, std::slice::from_ref(&host)).map_err(err("preparing certificates"))?;
    let admin_token = ensure_secret(&dir.join("admin-token"))?;
    let node_secret = ensure_secret(&dir.join("node-secret"))?;
    tls::write_private(
        &dir.join("node-token"),
        &format!("{}\n", join_token(&certs.ca_pem, &node_secret)),
    )
    .map_err(err("writing node-token"))?;
    let node_key = ensure_secret(&dir.join("node-credential-key"))?;
    let ca_key = tls::ca_key(dir).map_err(err("reading the CA key"))?;
    api.enable_node_join(shoal_apiserver::nodeauth::NodeAuth::new(
        &node_secret,
        &node_key,
        &certs.ca_pem,
        &ca_key,
    ));
    let url_host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.clone()
    };
    let server_url = format!("https://{url_host}:{}", addr.port());
    let signer = shoal_apiserver::satoken::Signer::from_pem(&service_account_key(dir)?).map_err(StartError)?;
    api.enable_service_account_tokens(shoal_apiserver::accounts::Accounts::new(
        signer,
        format!("{server_url}/openid/v1/jwks"),
        certs.ca_pem.clone(),
    ));
    tls::write_private(
        &dir.join("kubeconfig"),
        &kubeconfig(&server_url, &certs.ca_pem, &admin_token),
    )
    .map_err(err("writing kubeconfig"))?;

    let audit = match &args.audit_log {
        Some(path) => Some(Arc::new(
            shoal_apiserver::audit::AuditLog::open(path).map_err(err("opening the audit log"))?,
        )),
        None => None,
    };
    if let Some(log) = &audit {
        api.enable_audit(log.clone());
    }
    let cfg = Arc::new(ServeConfig {
        tls: tls::server_config(&certs).map_err(err("configuring TLS"))?,
        admin_tokens: vec![admin_token],
        limits: connection_limits(),
        audit,
        routes: Some(crate::ui::routes(api.clone())),
    });
    let components = api.components().clone();
    let listener = Arc::new(listener);
    let server = api.clone();
    components.spawn("apiserver/serve", move || {
        shoal_apiserver::serve(server.clone(), listener.clone(), cfg.clone())
    });
    // With a shared store, the controllers (with the compactor), the scheduler and the
    // simulated nodes each run on the one server that holds their Lease.
    let client = kube::Client::new(api.router(), "default");
    let elect = opened.shared && args.ha.leader_elect;
    let elections = crate::ha::Elections::new(&components, &client, &args.ha, elect);
    if let Err(e) = publish_api_endpoints(&client, &host, addr.port()).await {
        tracing::warn!(error = %e, "writing the kubernetes Endpoints failed");
    }
    let config = shoal_controllers::Config {
        node_monitor_grace_period: args.node_monitor_grace_period,
        root_ca: Some(certs.ca_pem.clone()),
        storage_dir: Some(std::path::absolute(dir.join("storage")).map_err(err("resolving the storage dir"))?),
    };
    let as_controller = {
        let (api, client) = (api.clone(), client.clone());
        move |who: shoal_controllers::Identity| -> kube::Client {
            use shoal_apiserver::nodeauth::{Identity, User};
            let user = match who {
                shoal_controllers::Identity::Server => return client.clone(),
                shoal_controllers::Identity::Manager => User::new(
                    "system:kube-controller-manager",
                    vec!["system:authenticated".to_string()],
                ),
                shoal_controllers::Identity::Account(account) => User::new(
                    shoal_apiserver::accounts::account_user("kube-system", account),
                    shoal_apiserver::accounts::account_groups("kube-system"),
                ),
            };
            kube::Client::new(api.router_as(Identity::User(user)), "default")
        }
    };
    // The informers run on every server: the cluster DNS answers from them.
    let informers = shoal_controllers::start_informers(&as_controller, &components);
    {
        let (informers, compacted) = (informers.clone(), api.clone());
        elections.run("kube-controller-manager", move |scoped| {
            shoal_controllers::start_controllers(&as_controller, config.clone(), &informers, scoped);
            let compacted = compacted.clone();
            scoped.spawn("apiserver/compactor", move || {
                compacted.clone().run_compactor(std::time::Duration::from_secs(300))
            });
        });
    }
    let dns = match args.cluster_dns.as_str() {
        "off" | "" => None,
        addr => {
            let addr: std::net::SocketAddr = addr
                .parse()
                .map_err(|e| StartError(format!("--cluster-dns {addr:?}: {e} (want IP:PORT or off)")))?;
            match shoal_controllers::dns::serve(addr, informers, &components).await {
                Ok(bound) => Some(bound),
                Err(e) => {
                    // A busy port must not keep the cluster from starting.
                    tracing::warn!(%addr, error = %e, "cluster DNS not started");
                    None
                }
            }
        }
    };
    if let Some(bound) = dns
        && let Err(e) = publish_dns_service(&client, args.service_cidr, bound).await
    {
        tracing::warn!(error = %e, "publishing the kube-dns Service failed");
    }
    // The scheduler as upstream's: `system:kube-scheduler` (bound to its bootstrap roles).
    let scheduling = kube::Client::new(
        api.router_as(shoal_apiserver::nodeauth::Identity::User(
            shoal_apiserver::nodeauth::User::new("system:kube-scheduler", vec!["system:authenticated".to_string()]),
        )),
        "default",
    );
    elections.run("kube-scheduler", move |scoped| {
        let scheduling = scheduling.clone();
        scoped.spawn("scheduler", move || shoal_scheduler::run(scheduling.clone()));
    });
    if let Some(n) = nodes {
        // Each simulated node writes as `system:node:<name>`, under the node authorizer and
        // NodeRestriction, as a kubelet; the pool registers the nodes as the server.
        // A client is made for each write and let go after it: one kept per node would hold
        // its request buffer (about 12 KB) for good, 60 MB at 5,000 nodes, while making one
        // costs a few microseconds against the write's hundreds.
        let server_side = api.clone();
        let as_node: shoal_agent::simulated::NodeClients = Arc::new(move |name: &str| {
            let who = shoal_apiserver::nodeauth::Identity::Node(name.to_string());
            kube::Client::new(server_side.router_as(who), "default")
        });
        let pool = shoal_agent::SimulatedPool::with_timing(client.clone(), timing).writing_as_nodes(as_node);
        if elect {
            // The nodes are one server's at a time: the one holding their Lease runs them.
            elections.run("shoal-simulated-nodes", move |scoped| {
                let pool = pool.clone();
                scoped.spawn("simulated-nodes", move || {
                    let pool = pool.clone();
                    async move {
                        if let Err(e) = pool.ensure_nodes(n).await {
                            tracing::error!(error = %e, "creating simulated nodes failed");
                            return;
                        }
                        pool.run().await;
                    }
                });
            });
        } else {
            pool.ensure_nodes(n).await.map_err(err("creating simulated nodes"))?;
            components.spawn("simulated-nodes", move || pool.clone().run());
        }
    }

    wait_ready(&addr, &certs.ca_pem).await?;
    Ok(Running {
        client,
        server_url,
        ready_in: started.elapsed(),
        dns,
        elections,
    })
}

/// The key that signs ServiceAccount tokens (`tls/service-account.key`), made on first
/// start.
fn service_account_key(dir: &std::path::Path) -> Result<String, StartError> {
    let path = dir.join("tls").join("service-account.key");
    match std::fs::read_to_string(&path) {
        Ok(pem) => Ok(pem),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let pem = shoal_apiserver::satoken::Signer::generate_pem().map_err(StartError)?;
            tls::write_private(&path, &pem).map_err(err("writing the service-account key"))?;
            Ok(pem)
        }
        Err(e) => Err(err("reading the service-account key")(e)),
    }
}

/// What one client may hold: a quarter of the open-file limit in connections (at most
/// 1,024, at least 64), so no single address can take every descriptor.
fn connection_limits() -> shoal_apiserver::conn::Limits {
    let files = rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .unwrap_or(u64::MAX);
    let per_client = usize::try_from(files / 4).unwrap_or(usize::MAX).clamp(64, 1024);
    shoal_apiserver::conn::Limits {
        connections_per_client: per_client,
        ..Default::default()
    }
}

/// The Endpoints and EndpointSlice of the `kubernetes` Service: where the API server
/// listens (upstream's API server keeps them as its endpoint reconciler does).
async fn publish_api_endpoints(client: &kube::Client, host: &str, port: u16) -> Result<(), kube::Error> {
    use k8s_openapi::api::core::v1::Endpoints;
    use k8s_openapi::api::discovery::v1::EndpointSlice;
    use kube::api::{Api, Patch, PatchParams};
    // Endpoints may not hold loopback addresses (upstream's validation): a server on
    // loopback publishes none, as one with no advertise address.
    let Some(ip) = host
        .parse::<std::net::IpAddr>()
        .ok()
        .filter(|ip| !ip.is_loopback() && !ip.is_unspecified())
    else {
        return Ok(());
    };
    let ip = ip.to_string();
    let ip = ip.as_str();
    let family = if ip.contains(':') { "IPv6" } else { "IPv4" };
    let pp = PatchParams::apply("kube-apiserver").force();
    let labels = serde_json::json!({"endpointslice.kubernetes.io/skip-mirror": "true"});
    let ep: Endpoints = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Endpoints",
        "metadata": {"name": "kubernetes", "namespace": "default", "labels": labels},
        "subsets": [{"addresses": [{"ip": ip}], "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}],
    }))
    .map_err(kube::Error::SerdeError)?;
    Api::<Endpoints>::namespaced(client.clone(), "default")
        .patch("kubernetes", &pp, &Patch::Apply(&ep))
        .await?;
    let slice: EndpointSlice = serde_json::from_value(serde_json::json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "kubernetes", "namespace": "default",
                     "labels": {"kubernetes.io/service-name": "kubernetes"}},
        "addressType": family,
        "endpoints": [{"addresses": [ip], "conditions": {"ready": true}}],
        "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
    }))
    .map_err(kube::Error::SerdeError)?;
    Api::<EndpointSlice>::namespaced(client.clone(), "default")
        .patch("kubernetes", &pp, &Patch::Apply(&slice))
        .await
        .map(|_| ())
}

/// The `kube-system/kube-dns` Service pods on real nodes resolve through: the cluster IP
/// that is the 10th address of the Service range (as k3s and kubeadm pick it), port 53 over
/// UDP and TCP, and an EndpointSlice naming where the server's DNS listens. A DNS on
/// loopback is reachable from no pod: nothing is published then.
async fn publish_dns_service(
    client: &kube::Client,
    service_cidr: (std::net::Ipv4Addr, u8),
    bound: std::net::SocketAddr,
) -> Result<(), kube::Error> {
    use k8s_openapi::api::core::v1::Service;
    use k8s_openapi::api::discovery::v1::EndpointSlice;
    use kube::api::{Api, Patch, PatchParams};
    let ip = bound.ip();
    if ip.is_loopback() || ip.is_unspecified() || ip.is_ipv6() {
        return Ok(());
    }
    let cluster_ip = std::net::Ipv4Addr::from(u32::from(service_cidr.0).saturating_add(10));
    let pp = PatchParams::apply("shoal-cluster-dns").force();
    let svc: Service = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "kube-dns", "namespace": "kube-system",
                     "labels": {"k8s-app": "kube-dns", "kubernetes.io/name": "shoal-dns"}},
        "spec": {"clusterIP": cluster_ip.to_string(), "ports": [
            {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": bound.port()},
            {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": bound.port()}]},
    }))
    .map_err(kube::Error::SerdeError)?;
    let services: Api<Service> = Api::namespaced(client.clone(), "kube-system");
    services.patch("kube-dns", &pp, &Patch::Apply(&svc)).await?;
    let slice: EndpointSlice = serde_json::from_value(serde_json::json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "kube-dns-shoal", "namespace": "kube-system",
                     "labels": {"kubernetes.io/service-name": "kube-dns",
                                "endpointslice.kubernetes.io/managed-by": "shoal-cluster-dns"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": [ip.to_string()], "conditions": {"ready": true}}],
        "ports": [{"name": "dns", "port": bound.port(), "protocol": "UDP"},
                  {"name": "dns-tcp", "port": bound.port(), "protocol": "TCP"}],
    }))
    .map_err(kube::Error::SerdeError)?;
    Api::<EndpointSlice>::namespaced(client.clone(), "kube-system")
        .patch("kube-dns-shoal", &pp, &Patch::Apply(&slice))
        .await
        .map(|_| ())
}

/// Runs a cluster until the process is stopped. `nodes` is `Some(N)` for `shoal up`.
pub async fn run(args: ServerArgs, nodes: Option<u32>) -> Result<(), StartError> {
    crate::ha::exit_with_stdin();
    let running = start(&args, nodes).await?;
    println!(
        "shoal is ready in {:.2}s: API at {}, kubeconfig {}{}{}",
        running.ready_in.as_secs_f64(),
        running.server_url,
        args.data_dir.join("kubeconfig").display(),
        running.dns.map(|d| format!(", DNS at {d}")).unwrap_or_default(),
        running
            .elections
            .identity()
            .map(|c| format!(", leader-election identity {c}"))
            .unwrap_or_default()
    );
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(err("waiting for a signal"))?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.map_err(err("waiting for a signal"))?,
        _ = term.recv() => {}
    }
    // Hand the Leases over at once rather than after the lease duration.
    running.elections.stop(std::time::Duration::from_secs(3)).await;
    Ok(())
}

/// `shoal agent`: joins the cluster and runs this machine's pods until stopped.
/// `shoal image ...` on an agent's data dir; what it prints.
pub(crate) async fn image_command(
    data_dir: &std::path::Path,
    command: crate::ImageCommand,
) -> Result<String, StartError> {
    use shoal_agent::image::{ImageStore, Registries};
    let registries = match data_dir.join("registries.yaml") {
        p if p.exists() => Registries::load(&p).map_err(|e| StartError(e.to_string()))?,
        _ => Registries::default(),
    };
    let store = ImageStore::open(&data_dir.join("images"), registries).map_err(|e| StartError(e.to_string()))?;
    let line = |i: &shoal_agent::image::Image| {
        let name = i.names.first().cloned().unwrap_or_else(|| "<none>".into());
        let (repo, tag) = match name.rfind(':') {
            Some(p) if !name[p..].contains('/') => (name[..p].to_string(), name[p + 1..].to_string()),
            _ => (name.clone(), "<none>".to_string()),
        };
        let id: String = i.digest.trim_start_matches("sha256:").chars().take(13).collect();
        format!("{repo:<50} {tag:<12} {id:<14} {:.1}MB\n", i.size as f64 / 1e6)
    };
    match command {
        crate::ImageCommand::Import { file } => {
            let images = tokio::task::spawn_blocking(move || store.import(&file))
                .await
                .map_err(|e| StartError(e.to_string()))?
                .map_err(|e| StartError(e.to_string()))?;
            Ok(images
                .iter()
                .map(|i| format!("imported {} ({})\n", i.names.join(", "), i.digest))
                .collect())
        }
        crate::ImageCommand::Pull { name } => {
            let i = store.pull(&name, None).await.map_err(|e| StartError(e.to_string()))?;
            Ok(format!("pulled {} ({})\n", i.names.join(", "), i.digest))
        }
        crate::ImageCommand::Ls => {
            let mut out = format!("{:<50} {:<12} {:<14} {}\n", "IMAGE", "TAG", "IMAGE ID", "SIZE");
            for i in store.list() {
                out.push_str(&line(&i));
            }
            Ok(out)
        }
        crate::ImageCommand::Rm { name } => {
            let in_use = shoal_agent::oci::images_in_use(data_dir);
            let i = store.remove(&name, &in_use).map_err(|e| StartError(e.to_string()))?;
            Ok(format!("Deleted: {}\n", i.digest))
        }
    }
}

pub async fn run_agent(args: crate::AgentArgs) -> Result<(), StartError> {
    use shoal_agent::agent::{AgentConfig, RuntimeKind};
    let token = std::fs::read_to_string(&args.token_file)
        .map_err(|e| StartError(format!("reading --token-file {}: {e}", args.token_file.display())))?
        .parse()
        .map_err(|e| StartError(format!("--token-file {}: {e}", args.token_file.display())))?;
    let node_name = match args.node_name {
        Some(n) => n,
        None => std::fs::read_to_string("/etc/hostname")
            .map(|h| h.trim().to_ascii_lowercase())
            .ok()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| StartError("cannot read the host name: pass --node-name".into()))?,
    };
    let data_dir = std::path::absolute(&args.data_dir).map_err(err("resolving --data-dir"))?;
    std::fs::create_dir_all(&data_dir).map_err(err("creating the data dir"))?;
    let registries = args
        .registry_config
        .clone()
        .or_else(|| Some(data_dir.join("registries.yaml")).filter(|p| p.exists()));
    let cfg = AgentConfig {
        servers: args
            .server
            .split(',')
            .map(|s| s.trim().trim_end_matches('/').to_string())
            .filter(|s| !s.is_empty())
            .collect(),
        token,
        node_name,
        node_ip: args.node_ip,
        data_dir,
        runtime: match args.runtime.as_str() {
            "simulated" => RuntimeKind::Simulated,
            "process" => RuntimeKind::Process,
            "oci" => {
                shoal_agent::runtime::ProcessRuntime::oci_supported()
                    .map_err(|e| StartError(format!("--runtime oci: {e}")))?;
                RuntimeKind::Oci
            }
            _ => match shoal_agent::runtime::ProcessRuntime::oci_supported() {
                Ok(()) => RuntimeKind::Oci,
                Err(e) => {
                    tracing::warn!(reason = %e, "agent: running containers as host processes (--runtime process)");
                    RuntimeKind::Process
                }
            },
        },
        port: args.port,
        shim_program: std::env::current_exe().map_err(err("locating the shoal binary"))?,
        registries,
    };
    tokio::select! {
        r = shoal_agent::agent::run(cfg) => r.map_err(|e| StartError(e.to_string())),
        r = tokio::signal::ctrl_c() => r.map_err(err("waiting for a signal")),
    }
}

/// Asks `/readyz` over HTTPS, verifying the server with the cluster CA.
async fn wait_ready(addr: &std::net::SocketAddr, ca_pem: &str) -> Result<(), StartError> {
    let target = if addr.ip().is_unspecified() {
        std::net::SocketAddr::from(([127, 0, 0, 1], addr.port()))
    } else {
        *addr
    };
    let client = shoal_apiserver::client::HttpsClient::new(target, ca_pem, None).map_err(err("TLS client"))?;
    for _ in 0..100 {
        if client
            .request("GET", "/readyz", "text/plain", b"")
            .await
            .is_ok_and(|r| r.status == 200)
        {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    Err(StartError("/readyz did not answer".into()))
}

/// `shoal kubectl ARGS`: replaces this process with kubectl, pointed at the data dir's
/// kubeconfig.
pub fn exec_kubectl(data_dir: &Path, args: &[String]) -> std::process::ExitCode {
    use std::os::unix::process::CommandExt;
    let kubeconfig: PathBuf = data_dir.join("kubeconfig");
    if !kubeconfig.exists() {
        eprintln!(
            "error: {} does not exist: start a cluster with `shoal up` first",
            kubeconfig.display()
        );
        return std::process::ExitCode::FAILURE;
    }
    let e = std::process::Command::new("kubectl")
        .args(args)
        .env("KUBECONFIG", &kubeconfig)
        .exec();
    eprintln!("error: cannot run kubectl: {e}");
    std::process::ExitCode::FAILURE
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_front_proxys_name_is_not_handed_out() {
        let dir = tempfile::tempdir().unwrap();
        let hour = std::time::Duration::from_secs(3600);
        let refused = user_kubeconfig(dir.path(), "front-proxy-client", &[], hour, None).unwrap_err();
        assert!(refused.0.contains("front proxy"), "{}", refused.0);
        // Any other name gets as far as reading the cluster's CA.
        let other = user_kubeconfig(dir.path(), "alice", &[], hour, None).unwrap_err();
        assert!(other.0.contains("cannot read"), "{}", other.0);
    }

    #[test]
    fn join_token_carries_the_ca_hash_and_secret() {
        let t = join_token("pem", "s3cret");
        assert!(t.starts_with("SHOAL10"));
        assert!(t.ends_with("::node:s3cret"));
        assert_eq!(t.len(), "SHOAL10".len() + 64 + "::node:s3cret".len());
    }

    #[test]
    fn kubeconfig_names_server_ca_and_token() {
        let k = kubeconfig("https://127.0.0.1:6443", "PEM", "tok");
        assert!(k.contains("server: https://127.0.0.1:6443"));
        assert!(k.contains("certificate-authority-data: UEVN"));
        assert!(k.contains("token: tok"));
    }
}
