//! Node IPAM: every Node without `spec.podCIDR` gets the next free /24 of the cluster's pod
//! network, as upstream's node-ipam controller does with `--allocate-node-cidrs`: the first
//! 255 nodes get `10.42.1.0/24` .. `10.42.255.0/24` (k3s's cluster CIDR), the next ones
//! continue in `10.64.0.0/10` (16,384 more), clear of the service CIDR `10.43.0.0/16`. Pod
//! IPs come from the node's range.

use shoal_runtime::controller::{Error, Pacer};
use std::collections::HashSet;
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

use shoal_api::network::pod_cidr;

use crate::informer::{Informers, Memo};

/// The lowest free index (from 1) given which CIDRs are in use.
pub fn next_free(in_use: impl Fn(&str) -> bool, from: u32) -> u32 {
    (from.max(1)..).find(|i| !in_use(&pod_cidr(*i))).unwrap_or(from)
}

/// Runs the allocator until the process ends.
pub async fn run(client: kube::Client, informers: Informers) {
    let api: Api<Node> = Api::all(client);
    let pp = PatchParams {
        field_manager: Some("node-ipam-controller".into()),
        ..Default::default()
    };
    let interest = informers.interest(&[("", "nodes")]);
    // Each node's podCIDR, read once per version of the node.
    let mut cidrs: Memo<String> = Memo::default();
    informers.ready().await;
    let mut pacer = Pacer::new("nodeipam", interest, |_| Duration::from_millis(20));
    loop {
        pacer
            .pass(&informers, async {
                let mut failure: Option<Error> = None;
                let nodes = informers.of("", "nodes");
                let of_node = cidrs.refresh(
                    &nodes,
                    |n| n,
                    |n| n["spec"]["podCIDR"].as_str().unwrap_or_default().to_string(),
                );
                let used: HashSet<&str> = of_node.iter().map(|c| c.as_str()).filter(|c| !c.is_empty()).collect();
                let mut assigned: HashSet<String> = HashSet::new();
                let mut next = 1;
                for (n, _) in nodes.iter().zip(&of_node).filter(|(_, c)| c.is_empty()) {
                    let name = crate::informer::name(n).to_string();
                    next = next_free(|c| used.contains(c) || assigned.contains(c), next);
                    let cidr = pod_cidr(next);
                    let patch = json!({"spec": {"podCIDR": cidr, "podCIDRs": [cidr]}});
                    match api.patch(&name, &pp, &Patch::Merge(patch)).await {
                        Ok(_) => {
                            assigned.insert(cidr);
                        }
                        Err(e) => {
                            failure.get_or_insert(e.into());
                        }
                    }
                }
                failure.map_or(Ok(Duration::from_secs(5)), Err)
            })
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_skip_used_ones_and_continue_past_255() {
        let used: HashSet<String> = [pod_cidr(1), pod_cidr(2), pod_cidr(4)].into();
        let in_use = |c: &str| used.contains(c);
        assert_eq!(next_free(in_use, 1), 3);
        assert_eq!(next_free(in_use, 4), 5);
    }
}
