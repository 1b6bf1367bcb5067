//! NetworkPolicy on a real node, as upstream defines it, enforced with nftables for the pods
//! of this node: table `ip shoal-netpol`, rebuilt as a whole in one transaction.
//!
//! A pod is isolated for ingress (egress) when a policy of its namespace selects it with that
//! policy type (`policyTypes` defaults to Ingress, plus Egress when the policy has egress
//! rules); it then accepts (sends) only what one of those policies' rules allows: peers by
//! `podSelector`, `namespaceSelector`, both, or `ipBlock` (with `except`), on the rule's
//! ports (number, name resolved against the pod's container ports, `endPort` ranges). Replies
//! of allowed connections pass (conntrack). Enforcement is in the forward hook (bridged
//! traffic between pods of this node passes it too: `bridge-nf-call-iptables`), so the node
//! itself (probes) always reaches its pods, as with most CNI plugins.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::Value;
use shoal_api::selector::LabelSelector;

/// The table's name.
pub const TABLE: &str = "shoal-netpol";

/// What the rules are made from.
#[derive(Default)]
pub struct Facts {
    /// Every NetworkPolicy.
    pub policies: Vec<Value>,
    /// Every pod (with its IP, node and labels).
    pub pods: Vec<Value>,
    /// Namespace name -> its labels.
    pub namespaces: BTreeMap<String, serde_json::Map<String, Value>>,
}

fn labels(v: &Value) -> serde_json::Map<String, Value> {
    v["metadata"]["labels"].as_object().cloned().unwrap_or_default()
}

fn selector(v: &Value) -> Option<LabelSelector> {
    if v.is_null() {
        return None;
    }
    LabelSelector::from_api(v).ok()
}

fn types_of(policy: &Value) -> (bool, bool) {
    match policy["spec"]["policyTypes"].as_array() {
        Some(t) => (t.iter().any(|x| x == "Ingress"), t.iter().any(|x| x == "Egress")),
        None => (true, policy["spec"]["egress"].as_array().is_some_and(|e| !e.is_empty())),
    }
}

fn pod_ip(p: &Value) -> Option<&str> {
    p["status"]["podIP"]
        .as_str()
        .filter(|ip| ip.parse::<std::net::Ipv4Addr>().is_ok())
}

/// The source (destination) matches of one `from` (`to`) peer, as nft expressions on
/// `field` (`saddr` / `daddr`).
fn peer_matches(peer: &Value, policy_ns: &str, facts: &Facts, field: &str) -> Vec<String> {
    if let Some(block) = peer.get("ipBlock").filter(|b| !b.is_null()) {
        let Some(cidr) = block["cidr"].as_str() else {
            return Vec::new();
        };
        let excepts: String = block["except"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e.as_str())
            .map(|e| format!(" ip {field} != {e}"))
            .collect();
        return vec![format!("ip {field} {cidr}{excepts}")];
    }
    let pod_sel = selector(&peer["podSelector"]);
    let ns_sel = selector(&peer["namespaceSelector"]);
    facts
        .pods
        .iter()
        .filter(|p| {
            let ns = p["metadata"]["namespace"].as_str().unwrap_or_default();
            let ns_ok = match &ns_sel {
                Some(s) => facts.namespaces.get(ns).is_some_and(|l| s.matches(l)),
                None => ns == policy_ns,
            };
            ns_ok && pod_sel.as_ref().is_none_or(|s| s.matches(&labels(p)))
        })
        .filter_map(pod_ip)
        .map(|ip| format!("ip {field} {ip}"))
        .collect()
}

/// The port matches of a rule for traffic to `pod` (named ports resolved against its
/// containers); `[""]` for "any port".
fn port_matches(rule: &Value, pod: Option<&Value>) -> Vec<String> {
    let Some(ports) = rule["ports"].as_array().filter(|p| !p.is_empty()) else {
        return vec![String::new()];
    };
    let mut out = Vec::new();
    for p in ports {
        let proto = match p["protocol"].as_str().unwrap_or("TCP") {
            "UDP" => "udp",
            "SCTP" => "sctp",
            _ => "tcp",
        };
        let number = match &p["port"] {
            Value::Null => {
                out.push(format!("meta l4proto {proto}"));
                continue;
            }
            Value::Number(n) => n.as_i64(),
            Value::String(name) => pod.and_then(|pod| {
                pod["spec"]["containers"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .flat_map(|c| c["ports"].as_array().into_iter().flatten())
                    .find(|cp| cp["name"] == *name)
                    .and_then(|cp| cp["containerPort"].as_i64())
            }),
            _ => None,
        };
        let Some(n) = number else { continue };
        match p["endPort"].as_i64() {
            Some(end) if end > n => out.push(format!("{proto} dport {n}-{end}")),
            _ => out.push(format!("{proto} dport {n}")),
        }
    }
    out
}

/// The whole table for the pods of `node`.
pub fn ruleset(facts: &Facts, node: &str) -> String {
    let mut chains = String::new();
    let mut ingress_map = Vec::new();
    let mut egress_map = Vec::new();
    let local = facts
        .pods
        .iter()
        .filter(|p| p["spec"]["nodeName"] == node && p["spec"]["hostNetwork"] != true);
    for (n, pod) in local.enumerate() {
        let Some(ip) = pod_ip(pod) else { continue };
        let ns = pod["metadata"]["namespace"].as_str().unwrap_or_default();
        let selecting: Vec<&Value> = facts
            .policies
            .iter()
            .filter(|pol| pol["metadata"]["namespace"] == ns)
            .filter(|pol| selector(&pol["spec"]["podSelector"]).is_none_or(|s| s.matches(&labels(pod))))
            .collect();
        for (dir, field, key, peers_key) in [("in", "saddr", "ingress", "from"), ("out", "daddr", "egress", "to")] {
            let isolating: Vec<&&Value> = selecting
                .iter()
                .filter(|pol| {
                    let (i, e) = types_of(pol);
                    if dir == "in" { i } else { e }
                })
                .collect();
            if isolating.is_empty() {
                continue;
            }
            let chain = format!("{dir}-{n}");
            let _ = writeln!(chains, "  chain {chain} {{");
            let _ = writeln!(
                chains,
                "    # {ns}/{}",
                pod["metadata"]["name"].as_str().unwrap_or_default()
            );
            // Allowed: accept for ingress (the last check); return for egress (ingress of a
            // pod of this node may still have its say).
            let verdict = if dir == "in" { "accept" } else { "return" };
            for pol in &isolating {
                let pol_ns = pol["metadata"]["namespace"].as_str().unwrap_or_default();
                for rule in pol["spec"][key].as_array().into_iter().flatten() {
                    let peers: Vec<String> = match rule[peers_key].as_array().filter(|p| !p.is_empty()) {
                        None => vec![String::new()],
                        Some(list) => list
                            .iter()
                            .flat_map(|p| peer_matches(p, pol_ns, facts, field))
                            .collect(),
                    };
                    // Named ports resolve against this pod's containers (for egress upstream
                    // resolves them against each destination pod: not done yet).
                    let ports = port_matches(rule, Some(pod));
                    for peer in &peers {
                        for port in &ports {
                            let expr = [peer.as_str(), port.as_str()]
                                .iter()
                                .filter(|s| !s.is_empty())
                                .cloned()
                                .collect::<Vec<_>>()
                                .join(" ");
                            let _ = writeln!(chains, "    {expr} {verdict}");
                        }
                    }
                }
            }
            let _ = writeln!(chains, "    drop");
            let _ = writeln!(chains, "  }}");
            if dir == "in" {
                ingress_map.push(format!("{ip} : jump {chain}"));
            } else {
                egress_map.push(format!("{ip} : jump {chain}"));
            }
        }
    }
    let mut out = String::new();
    let _ = writeln!(out, "table ip {TABLE}");
    let _ = writeln!(out, "delete table ip {TABLE}");
    let _ = writeln!(out, "table ip {TABLE} {{");
    let _ = writeln!(out, "  chain forward {{");
    let _ = writeln!(out, "    type filter hook forward priority 0; policy accept;");
    let _ = writeln!(out, "    ct state established,related accept");
    if !egress_map.is_empty() {
        let _ = writeln!(out, "    ip saddr vmap {{ {} }}", egress_map.join(", "));
    }
    if !ingress_map.is_empty() {
        let _ = writeln!(out, "    ip daddr vmap {{ {} }}", ingress_map.join(", "));
    }
    let _ = writeln!(out, "  }}");
    out.push_str(&chains);
    let _ = writeln!(out, "}}");
    out
}

/// Keeps the node's NetworkPolicy rules as the API says, until the process ends.
pub async fn run(client: kube::Client, node: String) {
    use futures::StreamExt;
    use k8s_openapi::api::core::v1::{Namespace, Pod};
    use k8s_openapi::api::networking::v1::NetworkPolicy;
    use kube::runtime::{WatchStreamExt, reflector, watcher};
    // Pods of this node talk to each other across the bridge: that traffic must pass the
    // forward hook too.
    if let Err(e) = std::fs::write("/proc/sys/net/bridge/bridge-nf-call-iptables", "1") {
        tracing::warn!(error = %e, "agent: NetworkPolicy between pods of one node needs br_netfilter");
    }
    let changed = std::sync::Arc::new(tokio::sync::Notify::new());
    let (policies, pw) = reflector::store::<NetworkPolicy>();
    let (pods, podw) = reflector::store::<Pod>();
    let (namespaces, nw) = reflector::store::<Namespace>();
    let mut watches = shoal_runtime::Subtasks::new();
    macro_rules! watch {
        ($writer:expr, $ty:ty) => {{
            let notify = changed.clone();
            let stream = reflector(
                $writer,
                watcher(kube::Api::<$ty>::all(client.clone()), Default::default()),
            )
            .default_backoff();
            watches.spawn(async move {
                futures::pin_mut!(stream);
                while stream.next().await.is_some() {
                    notify.notify_one();
                }
            });
        }};
    }
    watch!(pw, NetworkPolicy);
    watch!(podw, Pod);
    watch!(nw, Namespace);
    let sync = async {
        let _ = policies.wait_until_ready().await;
        let _ = pods.wait_until_ready().await;
        let _ = namespaces.wait_until_ready().await;
        crate::proxy::keep_applied("NetworkPolicy", &changed, || {
            let facts = Facts {
                policies: policies
                    .state()
                    .iter()
                    .filter_map(|p| serde_json::to_value(&**p).ok())
                    .collect(),
                pods: pods
                    .state()
                    .iter()
                    .filter_map(|p| serde_json::to_value(&**p).ok())
                    .collect(),
                namespaces: namespaces
                    .state()
                    .iter()
                    .map(|n| {
                        (
                            n.metadata.name.clone().unwrap_or_default(),
                            serde_json::to_value(n.metadata.labels.clone().unwrap_or_default())
                                .ok()
                                .and_then(|v| v.as_object().cloned())
                                .unwrap_or_default(),
                        )
                    })
                    .collect(),
            };
            ruleset(&facts, &node)
        })
        .await;
    };
    tokio::select! {
        () = watches.join_any() => {}
        () = sync => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn facts() -> Facts {
        Facts {
            policies: vec![
                json!({"metadata": {"name": "deny-web", "namespace": "default"}, "spec": {
                "podSelector": {"matchLabels": {"app": "web"}},
                "ingress": [{"from": [{"podSelector": {"matchLabels": {"role": "client"}}},
                                      {"namespaceSelector": {"matchLabels": {"team": "ops"}}},
                                      {"ipBlock": {"cidr": "192.0.2.0/24", "except": ["192.0.2.128/25"]}}],
                             "ports": [{"port": "http"}, {"port": 9000, "endPort": 9010, "protocol": "UDP"}]}]}}),
            ],
            pods: vec![
                json!({"metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
                       "spec": {"nodeName": "a", "containers": [{"name": "c", "ports": [{"name": "http", "containerPort": 8080}]}]},
                       "status": {"podIP": "10.42.1.2"}}),
                json!({"metadata": {"name": "client", "namespace": "default", "labels": {"role": "client"}},
                       "spec": {"nodeName": "b", "containers": []}, "status": {"podIP": "10.42.2.2"}}),
                json!({"metadata": {"name": "other", "namespace": "default", "labels": {"role": "other"}},
                       "spec": {"nodeName": "a", "containers": []}, "status": {"podIP": "10.42.1.3"}}),
                json!({"metadata": {"name": "opsy", "namespace": "ops", "labels": {}},
                       "spec": {"nodeName": "b", "containers": []}, "status": {"podIP": "10.42.2.9"}}),
            ],
            namespaces: BTreeMap::from([
                ("default".to_string(), serde_json::Map::new()),
                ("ops".to_string(), json!({"team": "ops"}).as_object().cloned().unwrap()),
            ]),
        }
    }

    #[test]
    fn a_selected_pod_accepts_only_what_the_rules_allow() {
        let text = ruleset(&facts(), "a");
        assert!(text.contains("ip daddr vmap { 10.42.1.2 : jump in-0 }"), "{text}");
        assert!(
            text.contains("ip saddr 10.42.2.2 tcp dport 8080 accept"),
            "named port resolved: {text}"
        );
        assert!(text.contains("ip saddr 10.42.2.9 udp dport 9000-9010 accept"), "{text}");
        assert!(
            text.contains("ip saddr 192.0.2.0/24 ip saddr != 192.0.2.128/25 tcp dport 8080 accept"),
            "{text}"
        );
        assert!(
            !text.contains("10.42.1.3 accept") && !text.contains("ip saddr 10.42.1.3"),
            "{text}"
        );
        assert!(text.contains("    drop"), "{text}");
        assert!(!text.contains("saddr vmap"), "no egress isolation: {text}");
        assert_eq!(crate::proxy::check(&text), None);
        // Node b has no selected pod: no isolation there.
        assert!(!ruleset(&facts(), "b").contains("vmap"));
    }

    #[test]
    fn egress_isolation_and_deny_all() {
        let mut f = facts();
        f.policies = vec![
            json!({"metadata": {"name": "deny-all", "namespace": "default"}, "spec": {
            "podSelector": {}, "policyTypes": ["Ingress", "Egress"]}}),
        ];
        let text = ruleset(&f, "a");
        assert!(
            text.contains("ip saddr vmap { 10.42.1.2 : jump out-0, 10.42.1.3 : jump out-1 }"),
            "{text}"
        );
        assert!(
            text.contains("ip daddr vmap { 10.42.1.2 : jump in-0, 10.42.1.3 : jump in-1 }"),
            "{text}"
        );
        assert!(
            text.contains("chain in-0 {\n    # default/web\n    drop\n"),
            "no rule: nothing allowed: {text}"
        );
        assert_eq!(crate::proxy::check(&text), None);
    }
}
