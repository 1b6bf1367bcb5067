//! Controllers. Each talks to the cluster only through the Kubernetes API (a kube `Client`,
//! in-process or over HTTPS), and splits into a pure `plan` over a snapshot and a thin
//! `apply` that performs the planned API calls.

pub use shoal_runtime::{events, informer};

pub mod apiservice;
pub mod cronjob;
pub mod daemonset;
pub mod deployment;
pub mod disruption;
pub mod dns;
pub mod endpoints;
pub mod gc;
pub mod job;
pub mod namespace;
pub mod nodeipam;
pub mod nodelifecycle;
pub mod podgc;
pub mod quota;
pub mod rbac;
pub mod replicaset;
#[cfg(test)]
mod scenario;
pub mod serviceaccount;
pub mod statefulset;
pub mod storage;

/// Settings of the controllers.
#[derive(Clone, Debug)]
pub struct Config {
    /// How long a node may stay silent before it is marked Unknown (upstream's
    /// `--node-monitor-grace-period`, 50 s in 1.33).
    pub node_monitor_grace_period: std::time::Duration,
    /// The cluster CA (PEM), published in every namespace as `kube-root-ca.crt`.
    pub root_ca: Option<String>,
    /// Where local volumes of nodes without a storage dir of their own live.
    pub storage_dir: Option<std::path::PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            node_monitor_grace_period: std::time::Duration::from_secs(50),
            root_ca: None,
            storage_dir: None,
        }
    }
}

/// True when `obj`'s status has observed its generation and each of the status `counts`
/// equals `spec.replicas` (1 when unset): a replicated workload with nothing left to do.
pub(crate) fn replicas_settled(obj: &serde_json::Value, counts: &[&str]) -> bool {
    let st = &obj["status"];
    let want = obj["spec"]["replicas"].as_i64().unwrap_or(1);
    st["observedGeneration"] == obj["metadata"]["generation"]
        && counts.iter().all(|k| st[*k].as_i64().unwrap_or(0) == want)
}

/// Starts every controller on `client` in the background, each the supervised component
/// `controller/<name>` of `components` (restarted with back-off if it panics); returns the
/// informers they share (cluster DNS answers from them too).
pub fn start(client: kube::Client, config: Config, components: &shoal_runtime::Components) -> informer::Informers {
    let informers = informer::Informers::start(client.clone(), components);
    macro_rules! controller {
        ($name:literal, $run:expr) => {{
            let (client, informers, config) = (client.clone(), informers.clone(), config.clone());
            components.spawn(concat!("controller/", $name), move || {
                let (client, informers, config) = (client.clone(), informers.clone(), config.clone());
                #[allow(clippy::redundant_closure_call)]
                ($run)(client, informers, config)
            });
        }};
    }
    controller!("garbage-collector", |c, i, _| gc::run(c, i));
    controller!("daemonset", |c, i, _| daemonset::run(c, i));
    controller!("pod-garbage-collector", |c, i, _| podgc::run(c, i));
    controller!("replicaset", |c, i, _| replicaset::run(c, i));
    controller!("deployment", |c, i, _| deployment::run(c, i));
    controller!("endpoints", |c, i, _| endpoints::run(c, i));
    controller!("serviceaccount", |c, i, cfg: Config| serviceaccount::run(
        c,
        i,
        cfg.root_ca
    ));
    controller!("statefulset", |c, i, _| statefulset::run(c, i));
    controller!("job", |c, i, _| job::run(c, i));
    controller!("cronjob", |c, i, _| cronjob::run(c, i));
    controller!("persistentvolume", |c, i, cfg: Config| storage::run(
        c,
        i,
        cfg.storage_dir
    ));
    controller!("nodeipam", |c, i, _| nodeipam::run(c, i));
    controller!("nodelifecycle", |c, i, cfg: Config| nodelifecycle::run(
        c,
        i,
        cfg.node_monitor_grace_period
    ));
    controller!("namespace", |c, i, _| namespace::run(c, i));
    controller!("clusterrole-aggregation", |c, i, _| rbac::run(c, i));
    controller!("resourcequota", |c, i, _| quota::run(c, i));
    controller!("disruption", |c, i, _| disruption::run(c, i));
    controller!("apiservice-availability", |c, i, _| apiservice::run(c, i));
    informers
}
