//! Controllers. Each talks to the cluster only through the Kubernetes API (a kube `Client`,
//! in-process or over HTTPS), and splits into a pure `plan` over a snapshot and a thin
//! `apply` that performs the planned API calls.

pub mod cronjob;
pub mod daemonset;
pub mod deployment;
pub mod dns;
pub mod endpoints;
pub mod events;
pub mod gc;
pub mod informer;
pub mod job;
pub mod namespace;
pub mod nodeipam;
pub mod nodelifecycle;
pub mod podgc;
pub mod replicaset;
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

/// Starts every controller on `client` in the background; returns the informers they share
/// (cluster DNS answers from them too).
pub fn start(client: kube::Client, config: Config) -> informer::Informers {
    let informers = informer::Informers::start(client.clone());
    tokio::spawn(gc::run(client.clone(), informers.clone()));
    tokio::spawn(daemonset::run(client.clone(), informers.clone()));
    tokio::spawn(podgc::run(client.clone(), informers.clone()));
    tokio::spawn(replicaset::run(client.clone(), informers.clone()));
    tokio::spawn(deployment::run(client.clone(), informers.clone()));
    tokio::spawn(endpoints::run(client.clone(), informers.clone()));
    tokio::spawn(serviceaccount::run(
        client.clone(),
        informers.clone(),
        config.root_ca.clone(),
    ));
    tokio::spawn(statefulset::run(client.clone(), informers.clone()));
    tokio::spawn(job::run(client.clone(), informers.clone()));
    tokio::spawn(cronjob::run(client.clone(), informers.clone()));
    tokio::spawn(storage::run(
        client.clone(),
        informers.clone(),
        config.storage_dir.clone(),
    ));
    tokio::spawn(nodeipam::run(client.clone(), informers.clone()));
    tokio::spawn(nodelifecycle::run(
        client.clone(),
        informers.clone(),
        config.node_monitor_grace_period,
    ));
    tokio::spawn(namespace::run(client, informers.clone()));
    informers
}
