//! Pod garbage collection: pods bound to a Node that no longer exists are deleted at once
//! (grace period 0), so a removed node's daemon pod goes away and nothing recreates it
//! elsewhere. A node must be missing for a few seconds first, so a node cache that lags behind
//! the pod cache never causes a deletion.

use shoal_runtime::controller::{Error, Pacer};
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, Preconditions};

use crate::informer::{self, Informers, Memo};

/// How long a node must be missing before its pods go.
const QUARANTINE: Duration = Duration::from_secs(2);

/// Pods (namespace, name, uid, node) bound to nodes not in `nodes`.
pub fn orphaned<'a, 'b>(
    pods: &'b [(&'a str, &'a str, &'a str, &'a str)],
    nodes: &HashSet<&str>,
) -> Vec<&'b (&'a str, &'a str, &'a str, &'a str)> {
    pods.iter()
        .filter(|(_, _, _, node)| !node.is_empty() && !nodes.contains(node))
        .collect()
}

/// Runs the pod garbage collector until the process ends.
pub async fn run(client: kube::Client, informers: Informers) {
    let mut missing_since: HashMap<String, Instant> = HashMap::new();
    let interest = informers.interest(&[("", "nodes"), ("", "pods")]);
    // What a pass reads of each node and pod, read once per version of it.
    let mut node_names: Memo<String> = Memo::default();
    let mut pod_keys: Memo<(String, String, String, String)> = Memo::default();
    informers.ready().await;
    // Pods change all the time; a pass (O(pods)) at most every 200 ms is enough to notice
    // pods bound to nodes that are gone.
    let mut pacer = Pacer::new("pod-garbage-collector", interest, |_| Duration::from_millis(200));
    loop {
        pacer.pass(&informers, async {
        let mut failure: Option<Error> = None;
        let node_objects = informers.of("", "nodes");
        let nodes: HashSet<&str> = node_names
            .refresh(&node_objects, |n| n, |n| informer::name(n).to_string())
            .into_iter()
            .map(String::as_str)
            .collect();
        let pod_objects = informers.of("", "pods");
        let pods: Vec<(&str, &str, &str, &str)> = pod_keys
            .refresh(
                &pod_objects,
                |p| p,
                |p| {
                    let node = p["spec"]["nodeName"].as_str().unwrap_or_default();
                    let (ns, name, uid) = (informer::namespace(p), informer::name(p), informer::uid(p));
                    (ns.to_string(), name.to_string(), uid.to_string(), node.to_string())
                },
            )
            .into_iter()
            .map(|(ns, name, uid, node)| (ns.as_str(), name.as_str(), uid.as_str(), node.as_str()))
            .collect();
        let victims = orphaned(&pods, &nodes);
        let gone: HashSet<&str> = victims.iter().map(|(_, _, _, n)| *n).collect();
        missing_since.retain(|n, _| gone.contains(n.as_str()));
        for &(ns, name, uid, node) in victims {
            let since = *missing_since.entry(node.to_string()).or_insert_with(Instant::now);
            if since.elapsed() < QUARANTINE {
                continue;
            }
            let api: Api<Pod> = Api::namespaced(client.clone(), ns);
            let dp = DeleteParams {
                grace_period_seconds: Some(0),
                preconditions: Some(Preconditions {
                    uid: Some(uid.to_string()),
                    resource_version: None,
                }),
                ..Default::default()
            };
            match api.delete(name, &dp).await {
                Ok(_) => {
                    tracing::info!(pod = %format!("{ns}/{name}"), node = %node, "deleted a pod whose node is gone")
                }
                Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
                Err(e) => { failure.get_or_insert(e.into()); },
            }
        }
        let wait = if missing_since.is_empty() {
            Duration::from_secs(5)
        } else {
            QUARANTINE
        };
            failure.map_or(Ok(wait), Err)
        })
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_pods_on_missing_nodes_are_orphaned() {
        fn p<'a>(name: &'a str, node: &'a str) -> (&'a str, &'a str, &'a str, &'a str) {
            ("ns", name, "uid", node)
        }
        let pods = vec![p("a", "n1"), p("b", "gone"), p("c", "")];
        let nodes: HashSet<&str> = ["n1"].into();
        let o = orphaned(&pods, &nodes);
        assert_eq!(o.len(), 1);
        assert_eq!(o[0].1, "b");
    }
}
