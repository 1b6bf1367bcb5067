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
pub mod ttl;

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

/// Whose rights an in-process client has, as upstream's kube-controller-manager with
/// `--use-service-account-credentials`: the shared informers list and watch as
/// `system:kube-controller-manager`, each controller acts as its ServiceAccount in
/// `kube-system` (upstream's bootstrap binds `system:controller:<account>` to it), and
/// what upstream runs inside the API server runs as the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Identity {
    /// `system:kube-controller-manager`.
    Manager,
    /// `system:serviceaccount:kube-system:<account>`.
    Account(&'static str),
    /// The API server itself (`system:masters`).
    Server,
}

/// Starts every controller in the background, each with a client `clients` makes for its
/// identity and as the supervised component `controller/<name>` of `components`
/// (restarted with back-off if it panics); returns the informers they share (cluster DNS
/// answers from them too).
pub fn start(
    clients: &dyn Fn(Identity) -> kube::Client,
    config: Config,
    components: &shoal_runtime::Components,
) -> informer::Informers {
    let informers = start_informers(clients, components);
    start_controllers(clients, config, &informers, components);
    informers
}

/// The shared informers, as the supervised components of `components`: every server of a
/// cluster runs them (the cluster DNS answers from them), leader or not.
pub fn start_informers(
    clients: &dyn Fn(Identity) -> kube::Client,
    components: &shoal_runtime::Components,
) -> informer::Informers {
    informer::Informers::start(clients(Identity::Manager), components)
}

/// Every controller, on `informers`, as the supervised components of `components` (the
/// scoped components of a leader, which stop when it loses its Lease).
pub fn start_controllers(
    clients: &dyn Fn(Identity) -> kube::Client,
    config: Config,
    informers: &informer::Informers,
    components: &shoal_runtime::Components,
) {
    macro_rules! controller {
        ($name:literal, $account:literal, $run:expr) => {{
            let client = clients(Identity::Account($account));
            let (informers, config) = (informers.clone(), config.clone());
            components.spawn(concat!("controller/", $name), move || {
                let (client, informers, config) = (client.clone(), informers.clone(), config.clone());
                #[allow(clippy::redundant_closure_call)]
                ($run)(client, informers, config)
            });
        }};
    }
    controller!("garbage-collector", "generic-garbage-collector", |c, i, _| gc::run(
        c, i
    ));
    controller!("daemonset", "daemon-set-controller", |c, i, _| daemonset::run(c, i));
    controller!("pod-garbage-collector", "pod-garbage-collector", |c, i, _| podgc::run(
        c, i
    ));
    {
        let rc = clients(Identity::Account("replication-controller"));
        controller!("replicaset", "replicaset-controller", |c, i, _| replicaset::run(
            c,
            rc.clone(),
            i
        ));
    }
    controller!("deployment", "deployment-controller", |c, i, _| deployment::run(c, i));
    {
        // Upstream's endpoint and EndpointSlice controllers in one, each with its account.
        let slices = clients(Identity::Account("endpointslice-controller"));
        controller!("endpoints", "endpoint-controller", |c, i, _| endpoints::run(
            c,
            slices.clone(),
            i
        ));
    }
    {
        // Upstream's ServiceAccount controller and root-CA publisher in one.
        let publisher = clients(Identity::Account("root-ca-cert-publisher"));
        controller!("serviceaccount", "service-account-controller", |c, i, cfg: Config| {
            serviceaccount::run(c, publisher.clone(), i, cfg.root_ca)
        });
    }
    controller!("statefulset", "statefulset-controller", |c, i, _| statefulset::run(
        c, i
    ));
    controller!("job", "job-controller", |c, i, _| job::run(c, i));
    controller!("cronjob", "cronjob-controller", |c, i, _| cronjob::run(c, i));
    controller!("ttl-after-finished", "ttl-after-finished-controller", |c, i, _| {
        ttl::run(c, i)
    });
    {
        let installer = clients(Identity::Server);
        controller!("persistentvolume", "persistent-volume-binder", |c, i, cfg: Config| {
            storage::run(c, installer.clone(), i, cfg.storage_dir)
        });
    }
    controller!("nodeipam", "node-controller", |c, i, _| nodeipam::run(c, i));
    controller!("nodelifecycle", "node-controller", |c, i, cfg: Config| {
        nodelifecycle::run(c, i, cfg.node_monitor_grace_period)
    });
    controller!("namespace", "namespace-controller", |c, i, _| namespace::run(c, i));
    controller!(
        "clusterrole-aggregation",
        "clusterrole-aggregation-controller",
        |c, i, _| rbac::run(c, i)
    );
    controller!("resourcequota", "resourcequota-controller", |c, i, _| quota::run(c, i));
    controller!("disruption", "disruption-controller", |c, i, _| disruption::run(c, i));
    // Part of upstream's API server, which runs it with its own (system:masters) rights.
    {
        let client = clients(Identity::Server);
        let informers = informers.clone();
        components.spawn("controller/apiservice-availability", move || {
            apiservice::run(client.clone(), informers.clone())
        });
    }
}
