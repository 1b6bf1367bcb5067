//! `shoal agent`: a real node. It joins the cluster ([`crate::join`]), registers its Node
//! with the machine's capacity and addresses, renews its Lease every 10 s, reports its
//! status, serves logs and exec to the API server ([`crate::endpoint`]) and runs the pods
//! bound to it ([`crate::kubelet`]).

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use crate::join::{self, JoinToken};
use crate::kubelet::Kubelet;
use crate::runtime::{ProcessRuntime, Runtime, SimulatedRuntime};
use crate::{LEASE_RENEW, NODE_STATUS_REPORT};

const MANAGER: &str = "shoal-agent";

/// The cluster's pod networks (what node IPAM hands out).
const CLUSTER_CIDRS: &str = "10.42.0.0/16,10.64.0.0/10";

/// Which runtime runs the containers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuntimeKind {
    /// Host processes.
    Process,
    /// Images in namespaces of their own, with pod networking ([`crate::container`]).
    Oci,
    /// Nothing runs; containers are reported running.
    Simulated,
}

/// How an agent runs.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    /// `https://host:port` of each API server of the cluster (the agent fails over between
    /// them; the first is what containers see as `KUBERNETES_SERVICE_HOST`).
    pub servers: Vec<String>,
    /// The join token.
    pub token: JoinToken,
    /// This node's name.
    pub node_name: String,
    /// This node's address (InternalIP; pods are host-network and get it too).
    pub node_ip: IpAddr,
    /// Where the agent keeps credentials, pods and logs.
    pub data_dir: PathBuf,
    /// The runtime.
    pub runtime: RuntimeKind,
    /// Port of the agent's HTTPS endpoint on `node_ip` (0: any free port).
    pub port: u16,
    /// The program run as `<program> shim ...` for each container (the shoal binary).
    pub shim_program: PathBuf,
    /// Registry mirrors and credentials (k3s's `registries.yaml`), for the OCI runtime.
    pub registries: Option<PathBuf>,
}

/// Why the agent stopped.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// Joining failed.
    #[error(transparent)]
    Join(#[from] join::JoinError),
    /// The API refused something the agent needs.
    #[error("{0}")]
    Api(String),
    /// The machine refused something the agent needs.
    #[error("{0}")]
    Io(String),
}

/// Runs an agent until the process ends.
pub async fn run(cfg: AgentConfig) -> Result<(), AgentError> {
    let ip = cfg.node_ip.to_string();
    let creds = join::join_any(
        &cfg.servers,
        &cfg.token,
        &cfg.node_name,
        std::slice::from_ref(&ip),
        &cfg.data_dir,
    )
    .await?;
    let client = join::client_for(&cfg.servers, &creds.ca, &creds.token)?;
    let listener = tokio::net::TcpListener::bind((cfg.node_ip, cfg.port))
        .await
        .map_err(|e| AgentError::Io(format!("binding {}:{}: {e}", cfg.node_ip, cfg.port)))?;
    let port = listener.local_addr().map_err(|e| AgentError::Io(e.to_string()))?.port();
    let exited = Arc::new(tokio::sync::Notify::new());
    let runtime: Arc<dyn Runtime> = match cfg.runtime {
        RuntimeKind::Process => Arc::new(ProcessRuntime::new(cfg.shim_program.clone(), exited.clone())),
        RuntimeKind::Oci => Arc::new(ProcessRuntime::oci(cfg.shim_program.clone(), exited.clone())),
        RuntimeKind::Simulated => Arc::new(SimulatedRuntime),
    };
    let node = register(&client, &cfg, port, &runtime.version()).await?;
    tracing::info!(node = %cfg.node_name, %ip, port, runtime = %runtime.version(), "agent: node registered");
    let oci = match cfg.runtime {
        RuntimeKind::Oci => Some(Arc::new(oci_side(&client, &cfg, exited.clone()).await?)),
        _ => None,
    };
    let kubelet = Kubelet::new(
        client.clone(),
        &cfg.node_name,
        &ip,
        &cfg.data_dir,
        runtime.clone(),
        exited,
        outer_env(cfg.servers.first().map(String::as_str).unwrap_or_default()),
    );
    let kubelet = Arc::new(match oci {
        Some(o) => kubelet.with_oci(o),
        None => kubelet,
    });
    // The endpoint and the heartbeat hold no state of their own: restarted if they fail.
    // The kubelet is not: a panic there stops the agent, which takes its pods over from disk
    // when it starts again.
    let components = shoal_runtime::Components::new();
    if let Some(net) = kubelet.oci().and_then(|o| o.network()) {
        // The node's images in its status, and the next revision's images of its
        // DaemonSets pulled ahead of their rollout.
        if let Some(oci) = kubelet.oci().cloned() {
            let (c, me) = (client.clone(), cfg.node_name.clone());
            let o = oci.clone();
            components.spawn("node-images", move || o.clone().report_images(c.clone(), me.clone()));
            let (k, c, me) = (kubelet.clone(), client.clone(), cfg.node_name.clone());
            components.spawn("pre-pull", move || pre_pull(k.clone(), c.clone(), me.clone()));
            // Image garbage collection as the kubelet's defaults: above 85% of the disk,
            // unused images go (least recently used first) until under 80%.
            let (images, data) = (oci.images().clone(), cfg.data_dir.clone());
            components.spawn("image-gc", move || {
                let (images, data) = (images.clone(), data.clone());
                async move {
                    loop {
                        tokio::time::sleep(std::time::Duration::from_secs(300)).await;
                        let (images, data) = (images.clone(), data.clone());
                        let _ = tokio::task::spawn_blocking(move || {
                            images.collect_garbage(85, 80, &crate::oci::images_in_use(&data))
                        })
                        .await;
                    }
                }
            });
        }
        // NetworkPolicy for this node's pods.
        let (c, me) = (client.clone(), cfg.node_name.clone());
        components.spawn("network-policy", move || crate::netpol::run(c.clone(), me.clone()));
        // Services that route, on this node (kube-proxy's part).
        let (client, me, pods) = (client.clone(), cfg.node_name.clone(), net.cidr().to_string());
        components.spawn("service-proxy", move || {
            crate::proxy::run(
                client.clone(),
                me.clone(),
                CLUSTER_CIDRS.to_string(),
                Some(pods.clone()),
            )
        });
    }
    if kubelet.oci().is_some_and(|o| o.network().is_some()) {
        let (k, client) = (kubelet.clone(), client.clone());
        let me = cfg.node_name.clone();
        components.spawn("pod-routes", move || pod_routes(k.clone(), client.clone(), me.clone()));
    }
    let (k, listener, c) = (kubelet.clone(), Arc::new(listener), creds.clone());
    components.spawn("kubelet-endpoint", move || {
        crate::endpoint::serve(k.clone(), listener.clone(), c.clone())
    });
    let (client, version) = (client.clone(), runtime.version());
    components.spawn("heartbeat", move || {
        heartbeat(client.clone(), cfg.clone(), node.clone(), port, version.clone())
    });
    kubelet.run().await;
    Ok(())
}

/// Pulls the images of every DaemonSet that has a pod on this node as soon as its template
/// names them, so that a rollout replaces the pod without waiting for a pull (the
/// DaemonSet controller waits for `status.images` to list them). Looked at every 5 s.
async fn pre_pull(kubelet: Arc<Kubelet>, client: kube::Client, me: String) {
    use k8s_openapi::api::apps::v1::DaemonSet;
    use k8s_openapi::api::core::v1::Pod;
    let (daemonsets, pods): (Api<DaemonSet>, Api<Pod>) = (Api::all(client.clone()), Api::all(client));
    let here = kube::api::ListParams::default().fields(&format!("spec.nodeName={me}"));
    loop {
        if let (Ok(sets), Ok(local), Some(oci)) = (
            daemonsets.list(&Default::default()).await,
            pods.list(&here).await,
            kubelet.oci(),
        ) {
            for ds in &sets.items {
                let uid = ds.metadata.uid.as_deref();
                let runs_here = local.items.iter().any(|p| {
                    p.metadata
                        .owner_references
                        .iter()
                        .flatten()
                        .any(|o| Some(o.uid.as_str()) == uid)
                });
                let Some(spec) = ds.spec.as_ref().and_then(|s| s.template.spec.as_ref()) else {
                    continue;
                };
                if !runs_here {
                    continue;
                }
                let about = shoal_runtime::events::ObjectRef {
                    api_version: "apps/v1".into(),
                    kind: "DaemonSet".into(),
                    namespace: ds.metadata.namespace.clone().unwrap_or_default(),
                    name: ds.metadata.name.clone().unwrap_or_default(),
                    uid: uid.unwrap_or_default().to_string(),
                };
                let images = spec
                    .init_containers
                    .iter()
                    .flatten()
                    .chain(&spec.containers)
                    .filter_map(|c| c.image.as_deref());
                for image in images {
                    oci.pre_pull(image, about.clone(), kubelet.pull_events());
                }
            }
        }
        tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    }
}

/// Keeps a route to every other node's pod network (its `podCIDR` through its InternalIP),
/// checked every 5 s.
async fn pod_routes(kubelet: Arc<Kubelet>, client: kube::Client, me: String) {
    let nodes: Api<Node> = Api::all(client);
    let mut before = Vec::new();
    loop {
        if let Ok(list) = nodes.list(&Default::default()).await {
            let routes: Vec<(crate::sandbox::Cidr, std::net::Ipv4Addr)> = list
                .items
                .iter()
                .filter(|n| n.metadata.name.as_deref() != Some(me.as_str()))
                .filter_map(|n| {
                    let cidr = crate::sandbox::Cidr::parse(n.spec.as_ref()?.pod_cidr.as_deref()?).ok()?;
                    let ip = n
                        .status
                        .as_ref()?
                        .addresses
                        .as_ref()?
                        .iter()
                        .find(|a| a.type_ == "InternalIP")?
                        .address
                        .parse()
                        .ok()?;
                    Some((cidr, ip))
                })
                .collect();
            if let Some(net) = kubelet.oci().and_then(|o| o.network()) {
                let prev = std::mem::take(&mut before);
                before = tokio::task::block_in_place(|| net.route(&routes, &prev));
            }
        }
        tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    }
}

/// The OCI runtime's images, pod network (from the Node's `podCIDR`, waited for up to
/// 30 s) and cluster DNS address.
async fn oci_side(
    client: &kube::Client,
    cfg: &AgentConfig,
    wake: Arc<tokio::sync::Notify>,
) -> Result<crate::oci::Oci, AgentError> {
    let registries = match &cfg.registries {
        Some(p) => crate::image::Registries::load(p).map_err(|e| AgentError::Io(e.to_string()))?,
        None => crate::image::Registries::default(),
    };
    let images = crate::image::ImageStore::open(&cfg.data_dir.join("images"), registries)
        .map_err(|e| AgentError::Io(e.to_string()))?;
    let nodes: Api<Node> = Api::all(client.clone());
    let deadline = Instant::now() + std::time::Duration::from_secs(30);
    let cidr = loop {
        let cidr = nodes.get(&cfg.node_name).await.ok().and_then(|n| n.spec?.pod_cidr);
        if cidr.is_some() || Instant::now() > deadline {
            break cidr;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    let net = match cidr {
        Some(c) => {
            let cidr = crate::sandbox::Cidr::parse(&c).map_err(AgentError::Io)?;
            let data = cfg.data_dir.clone();
            let net = tokio::task::spawn_blocking(move || crate::sandbox::PodNetwork::new(cidr, &data))
                .await
                .map_err(|e| AgentError::Io(e.to_string()))?
                .map_err(|e| AgentError::Io(format!("setting up the pod network: {e}")))?;
            tracing::info!(%cidr, bridge = crate::sandbox::BRIDGE, "agent: pod network ready");
            Some(net)
        }
        None => {
            tracing::warn!("agent: the node has no podCIDR; pods share the node's network");
            None
        }
    };
    let oci = crate::oci::Oci::new(Arc::new(images), cfg.shim_program.clone(), net, wake, client.clone());
    let services: Api<k8s_openapi::api::core::v1::Service> = Api::namespaced(client.clone(), "kube-system");
    let dns = services
        .get("kube-dns")
        .await
        .ok()
        .and_then(|s| s.spec?.cluster_ip)
        .filter(|ip| ip != "None");
    oci.set_dns(dns);
    Ok(oci)
}

/// The variables every container sees: where the API server is.
fn outer_env(server: &str) -> HashMap<String, String> {
    let authority = server.trim_start_matches("https://").trim_end_matches('/').to_string();
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => {
            (h.trim_matches(['[', ']']).to_string(), p.to_string())
        }
        _ => (authority.clone(), "443".into()),
    };
    HashMap::from([
        ("KUBERNETES_SERVICE_HOST".to_string(), host.clone()),
        ("KUBERNETES_SERVICE_PORT".to_string(), port.clone()),
        ("KUBERNETES_SERVICE_PORT_HTTPS".to_string(), port.clone()),
        ("KUBERNETES_PORT".to_string(), format!("tcp://{authority}")),
    ])
}

pub(crate) fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "arm",
        other => other,
    }
}

fn read_trimmed(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// The machine's memory in KiB (`/proc/meminfo`).
fn memory_kib() -> u64 {
    read_trimmed("/proc/meminfo")
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn os_image() -> String {
    read_trimmed("/etc/os-release")
        .lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim_matches('"').to_string())
        .unwrap_or_else(|| "Linux".into())
}

fn disk_bytes(dir: &std::path::Path) -> u64 {
    rustix::fs::statvfs(dir)
        .map(|s| s.f_blocks.saturating_mul(s.f_frsize))
        .unwrap_or(0)
}

fn obj_annotations(cfg: &AgentConfig) -> Value {
    node_object(&cfg.node_name, &cfg.data_dir.join("storage"))["metadata"]["annotations"].clone()
}

/// The Node this agent registers: labels as a kubelet sets them, and where local volumes
/// for its pods go (`shoal.dev/storage-dir`).
pub fn node_object(name: &str, storage_dir: &std::path::Path) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "annotations": {"shoal.dev/storage-dir": storage_dir.display().to_string()}, "labels": {
            "beta.kubernetes.io/arch": arch(),
            "beta.kubernetes.io/os": "linux",
            "kubernetes.io/arch": arch(),
            "kubernetes.io/hostname": name,
            "kubernetes.io/os": "linux",
        }},
    })
}

/// The status this agent reports: the machine's capacity, its address, its endpoint port,
/// Ready.
pub fn node_status(cfg: &AgentConfig, port: u16, runtime_version: &str, now: &str) -> Value {
    let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let capacity = json!({
        "cpu": cpus.to_string(),
        "memory": format!("{}Ki", memory_kib()),
        "pods": "110",
        "ephemeral-storage": format!("{}", disk_bytes(&cfg.data_dir)),
    });
    let cond = |t: &str, status: &str, reason: &str, message: &str| json!({"type": t, "status": status, "reason": reason, "message": message, "lastHeartbeatTime": now, "lastTransitionTime": now});
    json!({
        "capacity": capacity,
        "allocatable": capacity,
        "addresses": [{"type": "InternalIP", "address": cfg.node_ip.to_string()}, {"type": "Hostname", "address": cfg.node_name}],
        "conditions": [
            cond("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
            cond("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
            cond("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
            cond("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
        ],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": port}},
        "nodeInfo": {
            "architecture": arch(),
            "bootID": read_trimmed("/proc/sys/kernel/random/boot_id"),
            "containerRuntimeVersion": runtime_version,
            "kernelVersion": read_trimmed("/proc/sys/kernel/osrelease"),
            "kubeProxyVersion": "",
            "kubeletVersion": "v1.33.0-shoal",
            "machineID": read_trimmed("/etc/machine-id"),
            "operatingSystem": "linux",
            "osImage": os_image(),
            "systemUUID": read_trimmed("/sys/class/dmi/id/product_uuid"),
        },
    })
}

fn now_rfc3339() -> String {
    shoal_api::time::now_rfc3339()
}

/// Creates this node (with its status, as a kubelet registers) or, if it exists, reports
/// its status.
async fn register(client: &kube::Client, cfg: &AgentConfig, port: u16, runtime: &str) -> Result<Node, AgentError> {
    let nodes: Api<Node> = Api::all(client.clone());
    let mut obj = node_object(&cfg.node_name, &cfg.data_dir.join("storage"));
    obj["status"] = node_status(cfg, port, runtime, &now_rfc3339());
    let node: Node = serde_json::from_value(obj).map_err(|e| AgentError::Api(e.to_string()))?;
    let pp = PostParams {
        field_manager: Some(MANAGER.into()),
        ..Default::default()
    };
    match nodes.create(&pp, &node).await {
        Ok(n) => Ok(n),
        Err(kube::Error::Api(e)) if e.code == 409 => {
            // Registered before: the annotations may be new.
            let meta = json!({"metadata": {"annotations": obj_annotations(cfg)}});
            let pp = PatchParams {
                field_manager: Some(MANAGER.into()),
                ..Default::default()
            };
            if let Err(e) = nodes.patch(&cfg.node_name, &pp, &Patch::Merge(meta)).await {
                tracing::warn!(error = %e, "agent: updating the node's annotations failed");
            }
            report(client, cfg, port, runtime).await
        }
        Err(e) => Err(AgentError::Api(format!("registering node {}: {e}", cfg.node_name))),
    }
}

async fn report(client: &kube::Client, cfg: &AgentConfig, port: u16, runtime: &str) -> Result<Node, AgentError> {
    let nodes: Api<Node> = Api::all(client.clone());
    let pp = PatchParams {
        field_manager: Some(MANAGER.into()),
        ..Default::default()
    };
    let status = node_status(cfg, port, runtime, &now_rfc3339());
    nodes
        .patch_status(&cfg.node_name, &pp, &Patch::Merge(json!({"status": status})))
        .await
        .map_err(|e| AgentError::Api(format!("reporting the status of node {}: {e}", cfg.node_name)))
}

/// Renews the Lease every [`LEASE_RENEW`]; reports the status every
/// [`NODE_STATUS_REPORT`], or at once when the node is not Ready (after an outage).
async fn heartbeat(client: kube::Client, cfg: AgentConfig, mut node: Node, port: u16, runtime: String) {
    let mut reported = Instant::now();
    let mut renewed = false;
    loop {
        match crate::simulated::renew_lease(client.clone(), &node, &cfg.node_name, renewed).await {
            Ok(()) => renewed = true,
            Err(e) => tracing::warn!(error = %e, "agent: lease renewal failed"),
        }
        tokio::time::sleep(LEASE_RENEW).await;
        let nodes: Api<Node> = Api::all(client.clone());
        let ready = match nodes.get(&cfg.node_name).await {
            Ok(n) => {
                let ready = crate::simulated::is_ready(&n);
                node = n;
                ready
            }
            Err(e) => {
                tracing::warn!(error = %e, "agent: reading the node failed");
                true
            }
        };
        if !ready || reported.elapsed() >= NODE_STATUS_REPORT {
            match report(&client, &cfg, port, &runtime).await {
                Ok(n) => {
                    node = n;
                    reported = Instant::now();
                }
                Err(e) => tracing::warn!(error = %e, "agent: status report failed"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn containers_see_where_the_api_server_is() {
        let env = outer_env("https://127.0.0.1:6443");
        assert_eq!(env["KUBERNETES_SERVICE_HOST"], "127.0.0.1");
        assert_eq!(env["KUBERNETES_SERVICE_PORT"], "6443");
        assert_eq!(env["KUBERNETES_PORT"], "tcp://127.0.0.1:6443");
    }

    #[test]
    fn the_node_reports_the_machine() {
        let cfg = AgentConfig {
            servers: vec!["https://127.0.0.1:6443".into()],
            token: format!("SHOAL10{}::node:x", "0".repeat(64)).parse().unwrap(),
            node_name: "edge1".into(),
            node_ip: "127.0.0.2".parse().unwrap(),
            data_dir: std::env::temp_dir(),
            runtime: RuntimeKind::Process,
            port: 0,
            registries: None,
            shim_program: "shoal".into(),
        };
        let s = node_status(&cfg, 10250, "process://0.1.0", "t");
        assert_eq!(s["addresses"][0], json!({"type": "InternalIP", "address": "127.0.0.2"}));
        assert_eq!(s["daemonEndpoints"]["kubeletEndpoint"]["Port"], 10250);
        assert!(s["capacity"]["memory"].as_str().unwrap().ends_with("Ki"));
        assert_ne!(s["capacity"]["memory"], "0Ki");
        let node = node_object("edge1", std::path::Path::new("/var/lib/shoal/storage"));
        assert_eq!(node["metadata"]["labels"]["kubernetes.io/hostname"], "edge1");
        assert_eq!(
            node["metadata"]["annotations"]["shoal.dev/storage-dir"],
            "/var/lib/shoal/storage"
        );
    }
}
