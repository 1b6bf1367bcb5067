//! Several servers on one etcd: opening the store, the cluster secrets shared through it,
//! and the parts of a server that run on one server at a time (leader-elected).
//!
//! The first server on an empty store makes the cluster's secrets (CA, service-account key,
//! node join secret, admin token) and writes them to the store sealed with the server token
//! (AES-256-GCM under a PBKDF2 key). A server that finds them there opens them with the token
//! it was given (`--token` / `--token-file`, the first server's `<data-dir>/server-token`)
//! and writes them into its own data dir, so every server signs with the same CA and accepts
//! the same credentials.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use clap::Args;
use ring::aead;
use shoal_store::Store;

use crate::cluster::StartError;

/// Flags for a store shared by several servers, and for leader election.
#[derive(Args, Clone, Debug)]
pub struct HaArgs {
    /// Key prefix in etcd (upstream's `--etcd-prefix`).
    #[arg(long, default_value = "/registry")]
    pub etcd_prefix: String,
    /// CA certificate (PEM) that signed etcd's serving certificates; makes the connection TLS.
    #[arg(long)]
    pub etcd_cafile: Option<std::path::PathBuf>,
    /// Client certificate (PEM) for etcd's `--client-cert-auth`.
    #[arg(long)]
    pub etcd_certfile: Option<std::path::PathBuf>,
    /// Client key (PEM) for `--etcd-certfile`.
    #[arg(long)]
    pub etcd_keyfile: Option<std::path::PathBuf>,
    /// The server token of the cluster this server joins (the first server's
    /// `<data-dir>/server-token`); with a shared store, the first server makes one.
    #[arg(long, env = "SHOAL_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// A file holding the server token.
    #[arg(long)]
    pub token_file: Option<std::path::PathBuf>,
    /// Run the controllers, the scheduler and the simulated nodes only while this server
    /// holds their Lease (on by default when the store is shared; a store only this process
    /// opens needs no election).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_elect: bool,
    /// How long a leader's Lease holds without renewal.
    #[arg(long, default_value = "15s", value_parser = crate::parse_duration)]
    pub leader_elect_lease_duration: Duration,
    /// How long a leader tries to renew before it stops leading.
    #[arg(long, default_value = "10s", value_parser = crate::parse_duration)]
    pub leader_elect_renew_deadline: Duration,
    /// How often candidates try to take the Lease, and leaders renew it.
    #[arg(long, default_value = "2s", value_parser = crate::parse_duration)]
    pub leader_elect_retry_period: Duration,
}

impl Default for HaArgs {
    fn default() -> Self {
        HaArgs {
            etcd_prefix: "/registry".into(),
            etcd_cafile: None,
            etcd_certfile: None,
            etcd_keyfile: None,
            token: None,
            token_file: None,
            leader_elect: true,
            leader_elect_lease_duration: Duration::from_secs(15),
            leader_elect_renew_deadline: Duration::from_secs(10),
            leader_elect_retry_period: Duration::from_secs(2),
        }
    }
}

/// An opened store, and whether other servers may share it.
pub struct Opened {
    /// The store.
    pub store: Arc<dyn Store>,
    /// True for etcd: other servers may write to it too.
    pub shared: bool,
}

fn err<E: std::fmt::Display>(what: &str) -> impl FnOnce(E) -> StartError + '_ {
    move |e| StartError(format!("{what}: {e}"))
}

/// Opens the store named by `--store`: `sqlite://PATH` (default `<data-dir>/state.db`),
/// `memory://`, or `etcd://HOST:PORT[,HOST:PORT...]`.
pub async fn open_store(url: Option<&str>, data_dir: &Path, ha: &HaArgs) -> Result<Opened, StartError> {
    let default = format!("sqlite://{}", data_dir.join("state.db").display());
    let url = url.unwrap_or(&default);
    let alone = |store: Arc<dyn Store>| Opened { store, shared: false };
    if let Some(path) = url.strip_prefix("sqlite://") {
        let store = shoal_store::SqliteStore::open(Path::new(path)).map_err(err("opening the sqlite store"))?;
        Ok(alone(Arc::new(store)))
    } else if url == "memory://" || url == "memory" {
        Ok(alone(Arc::new(shoal_store::MemoryStore::new())))
    } else if let Some(hosts) = url.strip_prefix("etcd://") {
        let options = etcd_options(hosts, ha)?;
        let store = shoal_store::EtcdStore::connect(options)
            .await
            .map_err(err("connecting to etcd"))?;
        Ok(Opened {
            store: Arc::new(store),
            shared: true,
        })
    } else {
        Err(StartError(format!(
            "unsupported --store {url:?}: use sqlite://PATH, memory:// or etcd://HOST:PORT[,HOST:PORT...]"
        )))
    }
}

/// etcd's endpoints and credentials from `HOST:PORT,...` and the flags.
fn etcd_options(hosts: &str, ha: &HaArgs) -> Result<shoal_store::EtcdOptions, StartError> {
    let tls = ha.etcd_cafile.is_some() || ha.etcd_certfile.is_some();
    let scheme = if tls { "https" } else { "http" };
    let mut endpoints = Vec::new();
    for host in hosts.split(',').map(str::trim).filter(|h| !h.is_empty()) {
        let valid = host
            .rsplit_once(':')
            .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok())
            && !host.contains('/');
        if !valid {
            return Err(StartError(format!(
                "--store etcd://: {host:?} is not HOST:PORT (e.g. etcd://10.0.0.1:2379,10.0.0.2:2379)"
            )));
        }
        endpoints.push(format!("{scheme}://{host}"));
    }
    if endpoints.is_empty() {
        return Err(StartError("--store etcd:// names no HOST:PORT".into()));
    }
    if !ha.etcd_prefix.starts_with('/') || ha.etcd_prefix.len() < 2 {
        return Err(StartError(format!(
            "--etcd-prefix {:?}: want an absolute key prefix such as /registry",
            ha.etcd_prefix
        )));
    }
    let read = |path: &std::path::PathBuf| {
        std::fs::read(path).map_err(|e| StartError(format!("reading {}: {e}", path.display())))
    };
    let mut options = shoal_store::EtcdOptions::new(endpoints);
    options.prefix = ha.etcd_prefix.clone();
    options.ca = ha.etcd_cafile.as_ref().map(read).transpose()?;
    options.identity = match (&ha.etcd_certfile, &ha.etcd_keyfile) {
        (Some(cert), Some(key)) => Some((read(cert)?, read(key)?)),
        (None, None) => None,
        _ => return Err(StartError("--etcd-certfile and --etcd-keyfile go together".into())),
    };
    Ok(options)
}

/// Where the sealed cluster secrets live in the store (outside `/registry/`, which the
/// watch cache serves; with `--etcd-prefix P` the key is `P-bootstrap/secrets`).
const BOOTSTRAP_KEY: &str = "/registry-bootstrap/secrets";

/// The files that make a server a member of its cluster, relative to the data dir.
const SHARED_FILES: &[&str] = &[
    "tls/ca.crt",
    "tls/ca.key",
    "tls/service-account.key",
    "admin-token",
    "node-secret",
    "node-credential-key",
];

/// How many PBKDF2 rounds derive the sealing key from the token.
const ROUNDS: u32 = 100_000;

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

fn sealing_key(token: &str, salt: &[u8]) -> aead::LessSafeKey {
    let mut key = [0u8; 32];
    let rounds = std::num::NonZeroU32::new(ROUNDS).unwrap_or(std::num::NonZeroU32::MIN);
    ring::pbkdf2::derive(
        ring::pbkdf2::PBKDF2_HMAC_SHA256,
        rounds,
        salt,
        token.as_bytes(),
        &mut key,
    );
    aead::LessSafeKey::new(aead::UnboundKey::new(&aead::AES_256_GCM, &key).unwrap_or_else(|_| {
        // 32 bytes is AES-256-GCM's key length; this cannot fail.
        unreachable!("a 32-byte key")
    }))
}

/// `files` sealed with `token`: `{"salt", "nonce", "sealed"}`, base64.
fn seal(token: &str, files: &serde_json::Map<String, serde_json::Value>) -> Result<Vec<u8>, StartError> {
    use rand::RngCore;
    let mut salt = [0u8; 16];
    let mut nonce = [0u8; 12];
    rand::rng().fill_bytes(&mut salt);
    rand::rng().fill_bytes(&mut nonce);
    let mut data = serde_json::to_vec(files).map_err(err("encoding the cluster secrets"))?;
    sealing_key(token, &salt)
        .seal_in_place_append_tag(aead::Nonce::assume_unique_for_key(nonce), aead::Aad::empty(), &mut data)
        .map_err(|_| StartError("sealing the cluster secrets failed".into()))?;
    Ok(serde_json::to_vec(&serde_json::json!({
        "version": 1,
        "salt": b64().encode(salt),
        "nonce": b64().encode(nonce),
        "sealed": b64().encode(data),
    }))
    .unwrap_or_default())
}

/// The files sealed by [`seal`], if `token` opens them.
fn open(token: &str, blob: &[u8]) -> Result<serde_json::Map<String, serde_json::Value>, StartError> {
    let bad = || StartError("the cluster secrets in the store are damaged".into());
    let v: serde_json::Value = serde_json::from_slice(blob).map_err(|_| bad())?;
    let field =
        |k: &str| -> Result<Vec<u8>, StartError> { b64().decode(v[k].as_str().ok_or_else(bad)?).map_err(|_| bad()) };
    let (salt, nonce, mut data) = (field("salt")?, field("nonce")?, field("sealed")?);
    let nonce = aead::Nonce::try_assume_unique_for_key(&nonce).map_err(|_| bad())?;
    let plain = sealing_key(token, &salt)
        .open_in_place(nonce, aead::Aad::empty(), &mut data)
        .map_err(|_| {
            StartError(
                "this store belongs to a cluster whose server token is not the one given: pass the first \
                 server's <data-dir>/server-token with --token-file (or --token)"
                    .into(),
            )
        })?;
    serde_json::from_slice(plain).map_err(|_| bad())
}

/// The server token: from the flags, else the data dir's `server-token`, else a new one
/// (written there) when `may_create`.
fn server_token(dir: &Path, ha: &HaArgs, may_create: bool) -> Result<Option<String>, StartError> {
    if let Some(t) = &ha.token {
        return Ok(Some(t.trim().to_string()));
    }
    let file = ha.token_file.clone().unwrap_or_else(|| dir.join("server-token"));
    match std::fs::read_to_string(&file) {
        Ok(t) if !t.trim().is_empty() => return Ok(Some(t.trim().to_string())),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && ha.token_file.is_none() => {}
        Err(e) => return Err(StartError(format!("reading {}: {e}", file.display()))),
    }
    if !may_create {
        return Ok(None);
    }
    let token = crate::cluster::random_hex(24);
    shoal_apiserver::tls::write_private(&dir.join("server-token"), &format!("{token}\n"))
        .map_err(err("writing server-token"))?;
    Ok(Some(token))
}

/// Makes this server's data dir hold the cluster's shared secrets: those sealed in the store
/// when another server made them, else this server's own (made now if missing), which it
/// then seals into the store for the next servers. Two first servers racing on an empty
/// store agree: the second one's create fails, and it takes the first one's.
pub async fn share_secrets(
    store: &dyn Store,
    dir: &Path,
    ha: &HaArgs,
    make: impl Fn() -> Result<(), StartError>,
) -> Result<(), StartError> {
    for _ in 0..2 {
        if let Some(kv) = store
            .get(BOOTSTRAP_KEY)
            .await
            .map_err(err("reading the cluster secrets"))?
        {
            let token = server_token(dir, ha, false)?.ok_or_else(|| {
                StartError(
                    "this store already holds a cluster: join it with the first server's token \
                     (--token-file <its data dir>/server-token)"
                        .into(),
                )
            })?;
            for (name, content) in open(&token, &kv.value)? {
                if !SHARED_FILES.contains(&name.as_str()) {
                    continue;
                }
                let path = dir.join(&name);
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent).map_err(err("creating the data dir"))?;
                }
                let content = content.as_str().unwrap_or_default();
                if std::fs::read_to_string(&path).ok().as_deref() != Some(content) {
                    shoal_apiserver::tls::write_private(&path, content).map_err(err("writing a cluster secret"))?;
                    // A serving certificate signed by another CA must be made again.
                    if name == "tls/ca.crt" {
                        for stale in ["tls/server.crt", "tls/server.key"] {
                            let _ = std::fs::remove_file(dir.join(stale));
                        }
                    }
                }
            }
            if ha.token.is_none() && ha.token_file.is_some() {
                // Kept beside the others, so this server can bring up the next ones.
                shoal_apiserver::tls::write_private(&dir.join("server-token"), &format!("{token}\n"))
                    .map_err(err("writing server-token"))?;
            }
            return Ok(());
        }
        make()?;
        let token = server_token(dir, ha, true)?.unwrap_or_default();
        let mut files = serde_json::Map::new();
        for name in SHARED_FILES {
            let content = std::fs::read_to_string(dir.join(name))
                .map_err(|e| StartError(format!("reading {name} to share it: {e}")))?;
            files.insert((*name).to_string(), content.into());
        }
        match store.create(BOOTSTRAP_KEY, seal(&token, &files)?.into()).await {
            Ok(_) => return Ok(()),
            Err(shoal_store::Error::AlreadyExists(_)) => continue,
            Err(e) => return Err(err("writing the cluster secrets")(e)),
        }
    }
    Err(StartError(
        "the cluster secrets in the store changed while this server read them".into(),
    ))
}

/// This process's identity as a leader-election candidate: `<host>_<random>`, as upstream.
fn identity() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "shoal".into());
    format!("{host}_{}", crate::cluster::random_hex(8))
}

/// The leader elections of one server: what it runs only while it holds a Lease, and the
/// shutdown that stops them all.
#[derive(Clone)]
pub struct Elections {
    components: shoal_runtime::Components,
    client: kube::Client,
    /// The Leases' timings; `None` when this server does not compete (a store only it
    /// opens): it then runs everything at once and for good.
    config: Option<shoal_runtime::leader::LeaseConfig>,
    stop: tokio::sync::watch::Sender<bool>,
    running: Arc<std::sync::atomic::AtomicUsize>,
}

impl Elections {
    /// Elections among `components`, competing through `client` with a new identity when
    /// `elect`.
    pub fn new(components: &shoal_runtime::Components, client: &kube::Client, ha: &HaArgs, elect: bool) -> Self {
        let config = elect.then(|| {
            let mut config = shoal_runtime::leader::LeaseConfig::new("kube-system", "", &identity());
            config.lease_duration = ha.leader_elect_lease_duration;
            config.renew_deadline = ha.leader_elect_renew_deadline;
            config.retry_period = ha.leader_elect_retry_period;
            config
        });
        Elections {
            components: components.clone(),
            client: client.clone(),
            config,
            stop: tokio::sync::watch::Sender::new(false),
            running: Arc::default(),
        }
    }

    /// This server's identity as a candidate (the HOLDER column of `kubectl get lease -n
    /// kube-system`), when it competes.
    pub fn identity(&self) -> Option<&str> {
        self.config.as_ref().map(|c| c.identity.as_str())
    }

    /// Runs `start` on components that live while this server holds the Lease `kube-system/
    /// <lease>` (as the supervised component `leader/<lease>`), or at once and for good when
    /// this server does not compete.
    pub fn run(&self, lease: &str, start: impl Fn(&shoal_runtime::Components) + Send + Sync + 'static) {
        let Some(config) = &self.config else {
            start(&self.components);
            return;
        };
        let config = shoal_runtime::leader::LeaseConfig {
            name: lease.to_string(),
            ..config.clone()
        };
        let start = Arc::new(start);
        let (owner, client) = (self.components.clone(), self.client.clone());
        let (stop, running) = (self.stop.clone(), self.running.clone());
        self.components.spawn(format!("leader/{lease}"), move || {
            use std::sync::atomic::Ordering;
            let (owner, start, config, client) = (owner.clone(), start.clone(), config.clone(), client.clone());
            let (stop, running) = (stop.subscribe(), running.clone());
            async move {
                if !*stop.borrow() {
                    running.fetch_add(1, Ordering::AcqRel);
                    let lead = move || {
                        let (owner, start) = (owner.clone(), start.clone());
                        async move {
                            let (scoped, scope) = owner.scope();
                            start(&scoped);
                            scope
                        }
                    };
                    shoal_runtime::leader::run(client, config, lead, stop).await;
                    running.fetch_sub(1, Ordering::AcqRel);
                }
                // Stopped for good: the server is shutting down.
                std::future::pending::<()>().await;
            }
        });
    }

    /// Stops every election of this server: a leader stops what it leads and releases its
    /// Lease, so another server takes over at its next try instead of after the lease
    /// duration. Returns once all have, or after `timeout`.
    pub async fn stop(&self, timeout: Duration) {
        use std::sync::atomic::Ordering;
        self.stop.send_replace(true);
        let deadline = std::time::Instant::now() + timeout;
        while self.running.load(Ordering::Acquire) > 0 && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// `shoal up --ha`: a local 3-member etcd under `<data-dir>/etcd` and three `shoal up`
/// processes on it (`<data-dir>/server-{0,1,2}`, listening on --listen's port and the two
/// after it), the second and third joining with the first's token. Stops them all on
/// Ctrl-C or SIGTERM (a SIGKILL leaves them running). Run again on the same data dir, it
/// brings the same cluster back. The admin kubeconfig (`<data-dir>/kubeconfig`) names the first server; every
/// server accepts it.
pub async fn up(args: crate::ServerArgs, nodes: u32) -> Result<(), StartError> {
    use std::io::BufRead;
    if args.store.is_some() {
        return Err(StartError("--ha runs its own etcd: drop --store".into()));
    }
    let dir = std::path::absolute(&args.data_dir).map_err(err("resolving --data-dir"))?;
    std::fs::create_dir_all(&dir).map_err(err("creating the data dir"))?;
    let etcd =
        shoal_store::LocalEtcd::start(&dir.join("etcd"), 3).map_err(err("starting etcd (Debian's etcd-server)"))?;
    etcd.wait_ready(Duration::from_secs(60))
        .await
        .map_err(err("waiting for etcd"))?;
    let (host, port) = args
        .listen
        .rsplit_once(':')
        .and_then(|(h, p)| Some((h.to_string(), p.parse::<u16>().ok()?)))
        .ok_or_else(|| StartError(format!("--listen {:?}: want HOST:PORT", args.listen)))?;
    let dns = args
        .cluster_dns
        .rsplit_once(':')
        .and_then(|(h, p)| Some((h.to_string(), p.parse::<u16>().ok()?)));
    let exe = std::env::current_exe().map_err(err("locating the shoal binary"))?;
    let mut children = Children(Vec::new());
    let mut lines = Vec::new();
    for i in 0..3u16 {
        let server_dir = dir.join(format!("server-{i}"));
        let nth = |p: u16| if p == 0 { 0 } else { p.saturating_add(i) };
        let mut cmd = std::process::Command::new(&exe);
        cmd.arg("up")
            .arg("--data-dir")
            .arg(&server_dir)
            .args(["--listen", &format!("{host}:{}", nth(port))])
            .args(["--nodes", &nodes.to_string(), "--store", &etcd.store_url()])
            .args([
                "--service-cidr",
                &format!("{}/{}", args.service_cidr.0, args.service_cidr.1),
            ])
            .args([
                "--cluster-dns",
                &dns.as_ref()
                    .map_or_else(|| "off".into(), |(h, p)| format!("{h}:{}", nth(*p))),
            ])
            // The server ends when its stdin does: with this process, however it ends.
            .env(EXIT_WITH_STDIN, "1")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped());
        if i > 0 {
            cmd.arg("--token-file").arg(dir.join("server-0").join("server-token"));
        }
        let mut child = cmd.spawn().map_err(err("starting a server"))?;
        let stdout = child.stdout.take();
        children.0.push(child);
        let ready = tokio::task::spawn_blocking(move || {
            let stdout = stdout?;
            std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
                .find(|l| l.starts_with("shoal is ready"))
        })
        .await
        .ok()
        .flatten()
        .ok_or_else(|| StartError(format!("server {i} did not start (see its log above)")))?;
        lines.push(ready);
    }
    let kubeconfig =
        std::fs::read_to_string(dir.join("server-0").join("kubeconfig")).map_err(err("reading kubeconfig"))?;
    shoal_apiserver::tls::write_private(&dir.join("kubeconfig"), &kubeconfig).map_err(err("writing kubeconfig"))?;
    println!("shoal HA is ready: etcd at {}", etcd.endpoints().join(","));
    for line in &lines {
        println!("  {line}");
    }
    println!(
        "kubeconfig {} (any server accepts it)",
        dir.join("kubeconfig").display()
    );
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(err("waiting for a signal"))?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.map_err(err("waiting for a signal"))?,
        _ = term.recv() => {}
    }
    drop(children);
    drop(etcd);
    Ok(())
}

/// Set for the servers `shoal up --ha` starts: they exit when their stdin (a pipe from
/// the parent) closes, so a killed parent leaves no server behind.
pub const EXIT_WITH_STDIN: &str = "SHOAL_EXIT_WITH_STDIN";

/// When [`EXIT_WITH_STDIN`] is set, ends this process once stdin reaches its end.
pub fn exit_with_stdin() {
    if std::env::var_os(EXIT_WITH_STDIN).is_none() {
        return;
    }
    std::thread::spawn(|| {
        let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
        tracing::warn!("stdin closed: the process that started this server is gone; exiting");
        std::process::exit(0);
    });
}

/// Child processes killed when dropped.
struct Children(Vec<std::process::Child>);

impl Drop for Children {
    /// SIGTERM first (a server then releases its Leases), SIGKILL after 5 s.
    fn drop(&mut self) {
        for child in &self.0 {
            if let Some(pid) = i32::try_from(child.id()).ok().and_then(rustix::process::Pid::from_raw) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
            }
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        for child in &mut self.0 {
            while matches!(child.try_wait(), Ok(None)) && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Checks the flags that must agree with each other.
pub fn check(ha: &HaArgs) -> Result<(), StartError> {
    if ha.leader_elect_renew_deadline >= ha.leader_elect_lease_duration {
        return Err(StartError(
            "--leader-elect-renew-deadline must be shorter than --leader-elect-lease-duration".into(),
        ));
    }
    if ha.leader_elect_retry_period >= ha.leader_elect_renew_deadline || ha.leader_elect_retry_period.is_zero() {
        return Err(StartError(
            "--leader-elect-retry-period must be positive and shorter than --leader-elect-renew-deadline".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_secrets_open_only_with_their_token() {
        let mut files = serde_json::Map::new();
        files.insert("admin-token".into(), "secret\n".into());
        let blob = seal("right", &files).unwrap();
        assert!(
            !String::from_utf8_lossy(&blob).contains("secret"),
            "sealed, not encoded"
        );
        assert_eq!(open("right", &blob).unwrap(), files);
        let wrong = open("wrong", &blob).unwrap_err();
        assert!(wrong.0.contains("server token"), "{}", wrong.0);
        assert!(open("right", b"{\"salt\": 1}").unwrap_err().0.contains("damaged"));
    }

    #[test]
    fn etcd_urls_and_flags_are_checked() {
        let ha = HaArgs::default();
        let o = etcd_options("10.0.0.1:2379, 10.0.0.2:2379", &ha).unwrap();
        assert_eq!(o.endpoints, ["http://10.0.0.1:2379", "http://10.0.0.2:2379"]);
        for bad in ["", "10.0.0.1", "10.0.0.1:http", "a:1/x", ":2379"] {
            assert!(etcd_options(bad, &ha).is_err(), "{bad:?}");
        }
        let half = HaArgs {
            etcd_certfile: Some("/c".into()),
            ..HaArgs::default()
        };
        assert!(etcd_options("h:1", &half).is_err());
        let wrong = HaArgs {
            leader_elect_renew_deadline: Duration::from_secs(20),
            ..HaArgs::default()
        };
        assert!(check(&wrong).is_err());
        assert!(check(&HaArgs::default()).is_ok());
    }
}
