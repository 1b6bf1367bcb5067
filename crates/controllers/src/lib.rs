//! Controllers. Each talks to the cluster only through the Kubernetes API (a kube `Client`,
//! in-process or over HTTPS), and splits into a pure `plan` over a snapshot and a thin
//! `apply` that performs the planned API calls.

pub mod daemonset;
pub mod events;
pub mod gc;
pub mod informer;
pub mod namespace;
pub mod nodeipam;
pub mod podgc;

/// Starts every controller on `client` in the background.
pub fn start(client: kube::Client) {
    let informers = informer::Informers::start(client.clone());
    tokio::spawn(gc::run(client.clone(), informers.clone()));
    tokio::spawn(daemonset::run(client.clone(), informers.clone()));
    tokio::spawn(podgc::run(client.clone(), informers.clone()));
    tokio::spawn(nodeipam::run(client.clone(), informers.clone()));
    tokio::spawn(namespace::run(client, informers));
}
