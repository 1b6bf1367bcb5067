//! Services that route on a real node, as upstream's kube-proxy does in its nftables mode:
//! one nftables table (`ip shoal-proxy`) rebuilt as a whole, in one transaction, whenever a
//! Service or an EndpointSlice changes.
//!
//! - A ClusterIP (and each `externalIPs`) port jumps to its Service's chain, which picks a
//!   ready endpoint at random (`numgen random mod N`) and DNATs to it; with
//!   `sessionAffinity: ClientIP` a client goes back to the endpoint it had, for
//!   `timeoutSeconds` (a per-endpoint set of client addresses, as upstream).
//! - A NodePort (and a LoadBalancer's node port) matches any address of the node
//!   (`fib daddr type local`).
//! - `internalTrafficPolicy: Local` keeps cluster-IP traffic to this node's endpoints;
//!   `externalTrafficPolicy: Local` keeps node-port traffic to them and keeps the client's
//!   address.
//! - Traffic from outside the cluster's pod network to a cluster IP, node-port traffic under
//!   `Cluster` policy, and a pod reaching itself through its Service (hairpin) are
//!   masqueraded, so replies come back the way they went.
//! - A port with no ready endpoint rejects (TCP reset / ICMP), as upstream.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

/// The table's name.
pub const TABLE: &str = "shoal-proxy";

/// One backend of a Service port.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Backend {
    /// Its address.
    pub ip: String,
    /// Its port.
    pub port: i32,
    /// The node it is on, if the slice says.
    pub node: Option<String>,
}

/// The backends of each port of a Service: (namespace, name) -> port name -> protocol,
/// backends.
pub type Backends = BTreeMap<(String, String), BTreeMap<String, (String, Vec<Backend>)>>;

/// Ready backends by Service and port name, from EndpointSlices.
pub fn backends(slices: &[EndpointSlice]) -> Backends {
    let mut out: Backends = BTreeMap::new();
    for s in slices {
        if s.address_type != "IPv4" {
            continue;
        }
        let Some(service) = s
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("kubernetes.io/service-name"))
        else {
            continue;
        };
        let ns = s.metadata.namespace.clone().unwrap_or_default();
        let entry = out.entry((ns, service.clone())).or_default();
        for p in s.ports.iter().flatten() {
            let Some(port) = p.port else { continue };
            let name = p.name.clone().unwrap_or_default();
            let proto = p.protocol.clone().unwrap_or_else(|| "TCP".into());
            let (_, list) = entry.entry(name).or_insert_with(|| (proto, Vec::new()));
            for e in &s.endpoints {
                // Upstream: an endpoint whose readiness is unknown counts as ready.
                if e.conditions.as_ref().and_then(|c| c.ready) == Some(false) {
                    continue;
                }
                for ip in &e.addresses {
                    list.push(Backend {
                        ip: ip.clone(),
                        port,
                        node: e.node_name.clone(),
                    });
                }
            }
        }
    }
    for ports in out.values_mut() {
        for (_, list) in ports.values_mut() {
            list.sort();
            list.dedup();
        }
    }
    out
}

fn proto(p: &str) -> Option<&'static str> {
    match p {
        "TCP" => Some("tcp"),
        "UDP" => Some("udp"),
        "SCTP" => Some("sctp"),
        _ => None,
    }
}

fn valid_ip(s: &str) -> bool {
    s.parse::<std::net::Ipv4Addr>().is_ok()
}

/// The whole table for `services` with `backends`, as seen from node `node` whose cluster
/// pod networks are `cluster_cidr` (comma-separated). The text `nft -f` takes: the old table goes in the same
/// transaction.
pub fn ruleset(services: &[Service], backends: &Backends, node: &str, cluster_cidr: &str) -> String {
    ruleset_with_egress(services, backends, node, cluster_cidr, None)
}

/// [`ruleset`], and with `egress` (this node's pod CIDR) the masquerade of pods' traffic
/// that leaves the cluster's pod network (to other machines, the API server, the cluster
/// DNS), as the node's CNI would do.
pub fn ruleset_with_egress(
    services: &[Service],
    backends: &Backends,
    node: &str,
    cluster_cidr: &str,
    egress: Option<&str>,
) -> String {
    let mut dispatch = String::new();
    let mut nodeports = String::new();
    let mut chains = String::new();
    let mut sets = String::new();
    // Ports with nothing to send to: rejected in the filter hooks (a nat chain cannot).
    let mut refused: Vec<String> = Vec::new();
    let mut refused_nodeports: Vec<String> = Vec::new();
    let mut n = 0usize;
    let mut services: Vec<&Service> = services.iter().collect();
    services.sort_by_key(|s| (s.metadata.namespace.clone(), s.metadata.name.clone()));
    for svc in services {
        let Some(spec) = svc.spec.as_ref() else { continue };
        let ns = svc.metadata.namespace.clone().unwrap_or_default();
        let name = svc.metadata.name.clone().unwrap_or_default();
        let kind = spec.type_.as_deref().unwrap_or("ClusterIP");
        if kind == "ExternalName" {
            continue;
        }
        let cluster_ips: Vec<String> = spec
            .cluster_ips
            .clone()
            .or_else(|| spec.cluster_ip.clone().map(|i| vec![i]))
            .unwrap_or_default()
            .into_iter()
            .chain(spec.external_ips.clone().unwrap_or_default())
            .filter(|ip| valid_ip(ip))
            .collect();
        let affinity = (spec.session_affinity.as_deref() == Some("ClientIP")).then(|| {
            spec.session_affinity_config
                .as_ref()
                .and_then(|c| c.client_ip.as_ref())
                .and_then(|c| c.timeout_seconds)
                .unwrap_or(10800)
        });
        let internal_local = spec.internal_traffic_policy.as_deref() == Some("Local");
        let external_local = spec.external_traffic_policy.as_deref() == Some("Local");
        let ports = backends.get(&(ns.clone(), name.clone()));
        for p in spec.ports.iter().flatten() {
            let Some(l4) = proto(p.protocol.as_deref().unwrap_or("TCP")) else {
                continue;
            };
            let all: Vec<Backend> = ports
                .and_then(|m| m.get(p.name.as_deref().unwrap_or_default()))
                .map(|(_, b)| b.clone())
                .unwrap_or_default();
            let local: Vec<Backend> = all
                .iter()
                .filter(|b| b.node.as_deref() == Some(node))
                .cloned()
                .collect();
            let comment = format!("{ns}/{name}:{}", p.name.as_deref().unwrap_or(""));
            // One chain per (port, endpoint set): cluster-IP traffic and node-port traffic
            // may see different endpoints under the traffic policies.
            let mut chain_for = |list: &[Backend], masq_all: bool, tag: &str| -> Option<String> {
                if list.is_empty() {
                    return None;
                }
                let chain = format!("svc-{n}-{tag}");
                let _ = writeln!(chains, "  chain {chain} {{");
                let _ = writeln!(chains, "    # {comment}");
                if masq_all {
                    let _ = writeln!(chains, "    jump mark-masq");
                } else {
                    let _ = writeln!(chains, "    jump mark-if-outside");
                }
                if let Some(t) = affinity {
                    for i in 0..list.len() {
                        let set = format!("aff-{n}-{tag}-{i}");
                        let _ = writeln!(
                            sets,
                            "  set {set} {{ type ipv4_addr; flags dynamic,timeout; timeout {t}s; }}"
                        );
                        let _ = writeln!(chains, "    ip saddr @{set} goto {chain}-ep{i}");
                    }
                }
                let targets: Vec<String> = (0..list.len()).map(|i| format!("{i} : goto {chain}-ep{i}")).collect();
                let _ = writeln!(
                    chains,
                    "    numgen random mod {} vmap {{ {} }}",
                    list.len(),
                    targets.join(", ")
                );
                let _ = writeln!(chains, "  }}");
                for (i, b) in list.iter().enumerate() {
                    let _ = writeln!(chains, "  chain {chain}-ep{i} {{");
                    // A pod reaching itself through the Service.
                    let _ = writeln!(chains, "    ip saddr {} jump mark-masq", b.ip);
                    if affinity.is_some() {
                        let _ = writeln!(chains, "    update @aff-{n}-{tag}-{i} {{ ip saddr }}");
                    }
                    let _ = writeln!(chains, "    meta l4proto {l4} dnat to {}:{}", b.ip, b.port);
                    let _ = writeln!(chains, "  }}");
                }
                Some(chain)
            };
            let cluster_list = if internal_local { &local } else { &all };
            match chain_for(cluster_list, false, "c") {
                Some(chain) => {
                    for ip in &cluster_ips {
                        let _ = writeln!(dispatch, "    ip daddr {ip} {l4} dport {} goto {chain}", p.port);
                    }
                }
                None => refused.extend(cluster_ips.iter().map(|ip| format!("{ip} . {l4} . {}", p.port))),
            }
            let node_port = p
                .node_port
                .filter(|np| *np > 0 && matches!(kind, "NodePort" | "LoadBalancer"));
            if let Some(np) = node_port {
                let (list, masq) = if external_local { (&local, false) } else { (&all, true) };
                match chain_for(list, masq, "n") {
                    Some(chain) => {
                        let _ = writeln!(nodeports, "    fib daddr type local {l4} dport {np} goto {chain}");
                    }
                    None => refused_nodeports.push(format!("{l4} . {np}")),
                }
            }
            n += 1;
        }
    }
    let mut out = String::new();
    let _ = writeln!(out, "table ip {TABLE}");
    let _ = writeln!(out, "delete table ip {TABLE}");
    let _ = writeln!(out, "table ip {TABLE} {{");
    out.push_str(&sets);
    for (hook, prio) in [("prerouting", "-100"), ("output", "-100")] {
        let _ = writeln!(
            out,
            "  chain nat-{hook} {{ type nat hook {hook} priority {prio}; policy accept; jump services; }}"
        );
    }
    let egress_rule = egress
        .map(|pods| format!(" ip saddr {pods} jump pod-egress;"))
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "  chain nat-postrouting {{ type nat hook postrouting priority 100; policy accept; meta mark & 0x4000 == 0x4000 masquerade;{egress_rule} }}"
    );
    let _ = writeln!(out, "  chain mark-masq {{ meta mark set meta mark | 0x4000; }}");
    // "Not in the cluster's pod networks": a return for each of them.
    let cidrs: Vec<&str> = cluster_cidr
        .split(',')
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    let returns = |field: &str| -> String { cidrs.iter().map(|c| format!("ip {field} {c} return; ")).collect() };
    let _ = writeln!(
        out,
        "  chain mark-if-outside {{ {}meta mark set meta mark | 0x4000; }}",
        returns("saddr")
    );
    let _ = writeln!(out, "  chain pod-egress {{ {}masquerade; }}", returns("daddr"));
    let _ = writeln!(out, "  chain services {{");
    out.push_str(&dispatch);
    out.push_str(&nodeports);
    let _ = writeln!(out, "  }}");
    out.push_str(&chains);
    // Refusals, before the nat hooks could send the packet anywhere.
    let _ = writeln!(out, "  chain refuse {{");
    if !refused.is_empty() {
        let _ = writeln!(
            out,
            "    ip daddr . meta l4proto . th dport {{ {} }} reject",
            refused.join(", ")
        );
    }
    if !refused_nodeports.is_empty() {
        let _ = writeln!(
            out,
            "    fib daddr type local meta l4proto . th dport {{ {} }} reject",
            refused_nodeports.join(", ")
        );
    }
    let _ = writeln!(out, "  }}");
    for hook in ["input", "forward", "output"] {
        let _ = writeln!(
            out,
            "  chain filter-{hook} {{ type filter hook {hook} priority -110; policy accept; ct state new jump refuse; }}"
        );
    }
    let _ = writeln!(out, "}}");
    out
}

/// Applies `text` (from [`ruleset`]) with `nft -f -`.
pub fn apply(text: &str) -> Result<(), String> {
    use std::io::Write;
    let mut child = std::process::Command::new("nft")
        .args(["-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("running nft: {e} (install nftables)"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(text.as_bytes())
            .map_err(|e| format!("writing to nft: {e}"))?;
    }
    let out = child.wait_with_output().map_err(|e| format!("running nft: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("nft: {}", String::from_utf8_lossy(&out.stderr).trim()))
    }
}

/// What `nft --check` says is wrong with `text`, where nft can be asked (as root, with
/// nftables installed); `None` when it accepts it or cannot be asked.
pub fn check(text: &str) -> Option<String> {
    use std::io::Write;
    if !rustix::process::geteuid().is_root() {
        return None;
    }
    let mut child = std::process::Command::new("nft")
        .args(["--check", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .ok()?;
    child.stdin.take()?.write_all(text.as_bytes()).ok()?;
    let out = child.wait_with_output().ok()?;
    (!out.status.success()).then(|| format!("{}\n{text}", String::from_utf8_lossy(&out.stderr)))
}

/// Applies what `build` makes whenever it differs from what was applied last, gathering
/// bursts of `changed` for a moment and looking again every 30 s; `what` names the rules
/// in the log. Runs until the process ends.
pub(crate) async fn keep_applied(what: &str, changed: &tokio::sync::Notify, mut build: impl FnMut() -> String) {
    let mut applied = String::new();
    loop {
        let text = build();
        if text != applied {
            let t = text.clone();
            match tokio::task::spawn_blocking(move || apply(&t)).await {
                Ok(Ok(())) => {
                    tracing::debug!(rules = what, "agent: rules applied");
                    applied = text;
                }
                Ok(Err(e)) => tracing::warn!(rules = what, error = %e, "agent: applying rules failed"),
                Err(e) => tracing::warn!(rules = what, error = %e, "agent: applying rules failed"),
            }
        }
        let _ = tokio::time::timeout(std::time::Duration::from_secs(30), changed.notified()).await;
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Keeps the node's Service rules as the API says, until the process ends.
pub async fn run(client: kube::Client, node: String, cluster_cidr: String, pods: Option<String>) {
    use futures::StreamExt;
    use kube::runtime::{WatchStreamExt, reflector, watcher};
    let changed = std::sync::Arc::new(tokio::sync::Notify::new());
    let (services, sw) = reflector::store::<Service>();
    let (slices, ew) = reflector::store::<EndpointSlice>();
    let s_stream = reflector(
        sw,
        watcher(kube::Api::<Service>::all(client.clone()), Default::default()),
    )
    .default_backoff();
    let e_stream =
        reflector(ew, watcher(kube::Api::<EndpointSlice>::all(client), Default::default())).default_backoff();
    let (n1, n2) = (changed.clone(), changed.clone());
    let mut watches = shoal_runtime::Subtasks::new();
    watches.spawn(async move {
        futures::pin_mut!(s_stream);
        while s_stream.next().await.is_some() {
            n1.notify_one();
        }
    });
    watches.spawn(async move {
        futures::pin_mut!(e_stream);
        while e_stream.next().await.is_some() {
            n2.notify_one();
        }
    });
    let sync = async {
        let _ = services.wait_until_ready().await;
        let _ = slices.wait_until_ready().await;
        keep_applied("service", &changed, || {
            let svcs: Vec<Service> = services.state().iter().map(|s| (**s).clone()).collect();
            let sl: Vec<EndpointSlice> = slices.state().iter().map(|s| (**s).clone()).collect();
            ruleset_with_egress(&svcs, &backends(&sl), &node, &cluster_cidr, pods.as_deref())
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

    fn svc(v: serde_json::Value) -> Service {
        serde_json::from_value(v).unwrap()
    }

    fn slice(v: serde_json::Value) -> EndpointSlice {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn cluster_ips_node_ports_affinity_and_policies() {
        let services = vec![
            svc(json!({"metadata": {"name": "web", "namespace": "default"}, "spec": {
                "type": "NodePort", "clusterIP": "10.43.0.20", "sessionAffinity": "ClientIP",
                "ports": [{"name": "http", "port": 80, "nodePort": 30080, "protocol": "TCP"}]}})),
            svc(json!({"metadata": {"name": "empty", "namespace": "default"}, "spec": {
                "clusterIP": "10.43.0.21", "ports": [{"port": 81}]}})),
            svc(json!({"metadata": {"name": "local", "namespace": "default"}, "spec": {
                "clusterIP": "10.43.0.22", "internalTrafficPolicy": "Local", "ports": [{"port": 82, "protocol": "UDP"}]}})),
            svc(
                json!({"metadata": {"name": "headless", "namespace": "default"}, "spec": {
                "clusterIP": "None", "ports": [{"port": 83}]}}),
            ),
        ];
        let slices = vec![
            slice(
                json!({"metadata": {"name": "web-1", "namespace": "default", "labels": {"kubernetes.io/service-name": "web"}},
                "addressType": "IPv4", "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
                "endpoints": [
                    {"addresses": ["10.42.1.5"], "nodeName": "a", "conditions": {"ready": true}},
                    {"addresses": ["10.42.2.5"], "nodeName": "b"},
                    {"addresses": ["10.42.2.6"], "nodeName": "b", "conditions": {"ready": false}}]}),
            ),
            slice(
                json!({"metadata": {"name": "local-1", "namespace": "default", "labels": {"kubernetes.io/service-name": "local"}},
                "addressType": "IPv4", "ports": [{"port": 5353, "protocol": "UDP"}],
                "endpoints": [{"addresses": ["10.42.2.9"], "nodeName": "b"}]}),
            ),
        ];
        let text = ruleset_with_egress(&services, &backends(&slices), "a", "10.42.0.0/16", Some("10.42.1.0/24"));
        assert!(text.contains("ip saddr 10.42.1.0/24 jump pod-egress"), "{text}");
        assert!(
            text.contains("chain pod-egress { ip daddr 10.42.0.0/16 return; masquerade; }"),
            "{text}"
        );
        assert!(text.contains("ip daddr 10.43.0.20 tcp dport 80 goto svc-3-c"), "{text}");
        assert!(
            text.contains("numgen random mod 2"),
            "not-ready endpoints are left out: {text}"
        );
        assert!(text.contains("dnat to 10.42.2.5:8080"), "{text}");
        assert!(!text.contains("10.42.2.6"), "{text}");
        assert!(
            text.contains("fib daddr type local tcp dport 30080 goto svc-3-n"),
            "{text}"
        );
        assert!(
            text.contains("set aff-3-c-0 { type ipv4_addr; flags dynamic,timeout; timeout 10800s; }"),
            "{text}"
        );
        assert!(text.contains("jump mark-if-outside"), "{text}");
        // No endpoints: refused; a Local policy with none on this node: refused too.
        assert!(text.contains("10.43.0.21 . tcp . 81"), "{text}");
        assert!(text.contains("10.43.0.22 . udp . 82"), "{text}");
        assert!(!text.contains("10.43.0.22 udp dport"), "{text}");
        assert!(!text.contains("dport 83"), "a headless Service gets no rules: {text}");
        // From b's side the Local Service has its endpoint.
        let b = ruleset(&services, &backends(&slices), "b", "10.42.0.0/16");
        assert!(b.contains("ip daddr 10.43.0.22 udp dport 82 goto"), "{b}");
        assert_eq!(check(&text), None);
    }
}
