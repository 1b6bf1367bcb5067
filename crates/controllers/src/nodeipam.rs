//! Node IPAM: every Node without `spec.podCIDR` gets the next free /24 of the cluster's pod
//! network, as upstream's node-ipam controller does with `--allocate-node-cidrs`: the first
//! 255 nodes get `10.42.1.0/24` .. `10.42.255.0/24` (k3s's cluster CIDR), the next ones
//! continue in `10.64.0.0/10` (16,384 more), clear of the service CIDR `10.43.0.0/16`. Pod
//! IPs come from the node's range.

use std::collections::HashSet;
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

use shoal_api::network::pod_cidr;

use crate::informer::Informers;

/// The lowest free index (from 1) given the CIDRs in use.
pub fn next_free(used: &HashSet<String>, from: u32) -> u32 {
    (from.max(1)..).find(|i| !used.contains(&pod_cidr(*i))).unwrap_or(from)
}

/// Runs the allocator until the process ends.
pub async fn run(client: kube::Client, informers: Informers) {
    informers.ready().await;
    let api: Api<Node> = Api::all(client);
    let pp = PatchParams {
        field_manager: Some("node-ipam-controller".into()),
        ..Default::default()
    };
    let mut interest = informers.interest(&[("", "nodes")]);
    loop {
        let nodes = informers.of("", "nodes");
        let mut used: HashSet<String> = nodes
            .iter()
            .filter_map(|n| n["spec"]["podCIDR"].as_str().map(str::to_string))
            .collect();
        let mut next = 1;
        for n in nodes
            .iter()
            .filter(|n| n["spec"]["podCIDR"].as_str().is_none_or(str::is_empty))
        {
            let name = crate::informer::name(n).to_string();
            next = next_free(&used, next);
            let cidr = pod_cidr(next);
            let patch = json!({"spec": {"podCIDR": cidr, "podCIDRs": [cidr]}});
            match api.patch(&name, &pp, &Patch::Merge(patch)).await {
                Ok(_) => {
                    used.insert(cidr);
                }
                Err(e) => tracing::debug!(node = %name, error = %e, "assigning a podCIDR failed; will retry"),
            }
        }
        informers.wait(&mut interest, Duration::from_secs(5)).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_skip_used_ones_and_continue_past_255() {
        let used: HashSet<String> = [pod_cidr(1), pod_cidr(2), pod_cidr(4)].into();
        assert_eq!(next_free(&used, 1), 3);
        assert_eq!(next_free(&used, 4), 5);
    }
}
