//! The Endpoints and EndpointSlice controllers: for every Service with a selector, the
//! addresses of the pods it selects, as upstream's two controllers write them.
//!
//! A pod counts once it has an IP and is not finished. Ready pods are `addresses` (slices:
//! `ready: true`); others are `notReadyAddresses`, unless the Service publishes not-ready
//! addresses. Pods being deleted are left out of Endpoints and kept in slices as
//! `terminating` (not ready, serving while ready). A pod whose `hostname` is set and whose
//! `subdomain` names the Service carries that hostname (StatefulSet pods behind a headless
//! Service). A named `targetPort` is looked up among each pod's container ports.

use shoal_runtime::controller::ignore_not_found;
use shoal_runtime::controller::{Error, Pacer};
use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::Endpoints;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use shoal_api::selector::LabelSelector;

use crate::informer::{self, Informers, name as name_of};

const MANAGER: &str = "endpoint-controller";
/// The label that ties a slice to its Service.
pub const SERVICE_NAME: &str = "kubernetes.io/service-name";
/// Who manages a slice.
pub const MANAGED_BY: &str = "endpointslice.kubernetes.io/managed-by";
const SLICE_MANAGER: &str = "endpointslice-controller.k8s.io";
/// Endpoints per slice, as upstream.
pub const MAX_PER_SLICE: usize = 100;

/// One selected pod.
#[derive(Clone, Debug, PartialEq)]
pub struct Member {
    /// Its IP.
    pub ip: String,
    /// Its node.
    pub node: Option<String>,
    /// Its hostname under the Service, if any.
    pub hostname: Option<String>,
    /// `{kind, namespace, name, uid}`.
    pub target: Value,
    /// Ready.
    pub ready: bool,
    /// Being deleted.
    pub terminating: bool,
    /// The resolved ports, in the Service's order.
    pub ports: Vec<PortTriple>,
}

/// A resolved port: (name, port, protocol).
pub type PortTriple = (String, i64, String);

/// The port `target` (number or name) of a Service port on `pod`.
fn resolve_port(service_port: &Value, pod: &Value) -> Option<i64> {
    match &service_port["targetPort"] {
        Value::Number(n) => n.as_i64(),
        Value::String(name) => pod["spec"]["containers"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|c| c["ports"].as_array().into_iter().flatten())
            .find(|p| p["name"] == name.as_str())
            .and_then(|p| p["containerPort"].as_i64()),
        _ => service_port["port"].as_i64(),
    }
}

/// The pods `svc` selects, as members (only pods with an IP that have not finished).
pub fn members(svc: &Value, pods: &[&Value]) -> Vec<Member> {
    let Some(selector) = svc["spec"]["selector"].as_object().filter(|s| !s.is_empty()) else {
        return Vec::new();
    };
    let selector = LabelSelector::from_map(selector);
    let name = name_of(svc);
    let mut out: Vec<Member> = pods
        .iter()
        .filter(|p| selector.matches_object(p))
        .filter(|p| p["status"]["podIP"].as_str().is_some_and(|ip| !ip.is_empty()))
        .filter(|p| !matches!(p["status"]["phase"].as_str(), Some("Succeeded" | "Failed")))
        .filter_map(|p| {
            let ports = svc["spec"]["ports"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|sp| {
                    Some((
                        sp["name"].as_str().unwrap_or_default().to_string(),
                        resolve_port(sp, p)?,
                        sp["protocol"].as_str().unwrap_or("TCP").to_string(),
                    ))
                })
                .collect::<Option<Vec<_>>>()?;
            let hostname = p["spec"]["hostname"]
                .as_str()
                .filter(|h| !h.is_empty() && p["spec"]["subdomain"].as_str() == Some(name))
                .map(str::to_string);
            let ready = p["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["type"] == "Ready" && c["status"] == "True");
            Some(Member {
                ip: p["status"]["podIP"].as_str().unwrap_or_default().to_string(),
                node: p["spec"]["nodeName"]
                    .as_str()
                    .filter(|n| !n.is_empty())
                    .map(str::to_string),
                hostname,
                target: json!({"kind": "Pod", "namespace": informer::namespace(p), "name": name_of(p),
                               "uid": p["metadata"]["uid"]}),
                ready,
                terminating: informer::deleting(p),
                ports,
            })
        })
        .collect();
    out.sort_by(|a, b| {
        a.ip.cmp(&b.ip)
            .then(a.target["name"].as_str().cmp(&b.target["name"].as_str()))
    });
    out
}

/// The `subsets` of the Service's Endpoints: members grouped by their resolved ports.
pub fn subsets(svc: &Value, members: &[Member]) -> Value {
    let publish = svc["spec"]["publishNotReadyAddresses"] == true;
    let mut groups: BTreeMap<Vec<PortTriple>, (Vec<Value>, Vec<Value>)> = BTreeMap::new();
    for m in members.iter().filter(|m| !m.terminating) {
        let mut addr = json!({"ip": m.ip, "targetRef": m.target});
        if let Some(n) = &m.node {
            addr["nodeName"] = json!(n);
        }
        if let Some(h) = &m.hostname {
            addr["hostname"] = json!(h);
        }
        let (ready, not_ready) = groups.entry(m.ports.clone()).or_default();
        if m.ready || publish {
            ready.push(addr);
        } else {
            not_ready.push(addr);
        }
    }
    Value::Array(
        groups
            .into_iter()
            .map(|(ports, (ready, not_ready))| {
                let mut s = json!({});
                if !ready.is_empty() {
                    s["addresses"] = Value::Array(ready);
                }
                if !not_ready.is_empty() {
                    s["notReadyAddresses"] = Value::Array(not_ready);
                }
                let ports: Vec<Value> = ports
                    .into_iter()
                    .map(|(name, port, protocol)| {
                        let mut p = json!({"port": port, "protocol": protocol});
                        if !name.is_empty() {
                            p["name"] = json!(name);
                        }
                        p
                    })
                    .collect();
                if !ports.is_empty() {
                    s["ports"] = Value::Array(ports);
                }
                s
            })
            .collect(),
    )
}

/// The slices' `endpoints` and `ports`, at most [`MAX_PER_SLICE`] endpoints each.
pub fn slices(svc: &Value, members: &[Member]) -> Vec<(Value, Value)> {
    let publish = svc["spec"]["publishNotReadyAddresses"] == true;
    let mut groups: BTreeMap<Vec<PortTriple>, Vec<Value>> = BTreeMap::new();
    for m in members {
        let ready = (m.ready || publish) && !m.terminating;
        let mut e = json!({
            "addresses": [m.ip],
            "conditions": {"ready": ready, "serving": m.ready || publish, "terminating": m.terminating},
            "targetRef": m.target,
        });
        if let Some(n) = &m.node {
            e["nodeName"] = json!(n);
        }
        if let Some(h) = &m.hostname {
            e["hostname"] = json!(h);
        }
        groups.entry(m.ports.clone()).or_default().push(e);
    }
    let mut out = Vec::new();
    for (ports, endpoints) in groups {
        let ports: Vec<Value> = ports
            .into_iter()
            .map(|(name, port, protocol)| json!({"name": name, "port": port, "protocol": protocol}))
            .collect();
        for chunk in endpoints.chunks(MAX_PER_SLICE) {
            out.push((Value::Array(chunk.to_vec()), Value::Array(ports.clone())));
        }
    }
    if out.is_empty() {
        // A Service with no endpoints still has one (empty) slice, with its ports.
        let ports: Vec<Value> = svc["spec"]["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| {
                let port = p["targetPort"].as_i64().or_else(|| p["port"].as_i64())?;
                Some(json!({"name": p["name"].as_str().unwrap_or_default(), "port": port,
                            "protocol": p["protocol"].as_str().unwrap_or("TCP")}))
            })
            .collect();
        out.push((json!([]), Value::Array(ports)));
    }
    out
}

fn labels_of(svc: &Value) -> serde_json::Map<String, Value> {
    let mut labels = svc["metadata"]["labels"].as_object().cloned().unwrap_or_default();
    if svc["spec"]["clusterIP"] == "None" {
        labels.insert("service.kubernetes.io/headless".into(), json!(""));
    }
    labels
}

/// Runs both controllers until the process ends.
/// `client` writes Endpoints (as upstream's endpoint controller), `slices` EndpointSlices
/// (as its EndpointSlice controller).
pub async fn run(client: kube::Client, slices: kube::Client, informers: Informers) {
    let interest = informers.interest(&[
        ("", "services"),
        ("", "pods"),
        ("", "endpoints"),
        ("discovery.k8s.io", "endpointslices"),
    ]);
    informers.ready().await;
    let mut pacer = Pacer::new("endpoints", interest, |_| Duration::from_millis(20));
    loop {
        pacer
            .pass(&informers, async {
                let mut failure: Option<Error> = None;
                let services = informers.of("", "services");
                let endpoints = informers.of("", "endpoints");
                let selecting = services
                    .iter()
                    .any(|s| s["spec"]["selector"].as_object().is_some_and(|m| !m.is_empty()));
                // Without a Service that selects pods, pod changes change nothing here.
                let pods = if selecting {
                    informers.of("", "pods")
                } else {
                    Vec::new()
                };
                let slices_now = if selecting {
                    informers.of("discovery.k8s.io", "endpointslices")
                } else {
                    Vec::new()
                };
                for svc in &services {
                    if informer::deleting(svc) || svc["spec"]["selector"].as_object().is_none_or(|s| s.is_empty()) {
                        continue;
                    }
                    let ns = informer::namespace(svc);
                    let in_ns: Vec<&Value> = pods
                        .iter()
                        .filter(|p| informer::namespace(p) == ns)
                        .map(|p| &**p)
                        .collect();
                    let members = members(svc, &in_ns);
                    let existing = endpoints
                        .iter()
                        .find(|e| informer::namespace(e) == ns && name_of(e) == name_of(svc));
                    if let Err(e) = write_endpoints(&client, svc, &members, existing.map(|e| &**e)).await {
                        failure.get_or_insert(e.into());
                    }
                    let mine: Vec<&Value> = slices_now
                        .iter()
                        .filter(|s| {
                            informer::namespace(s) == ns
                                && s["metadata"]["labels"][SERVICE_NAME] == name_of(svc)
                                && s["metadata"]["labels"][MANAGED_BY] == SLICE_MANAGER
                        })
                        .map(|s| &**s)
                        .collect();
                    if let Err(e) = write_slices(&slices, svc, &members, &mine).await {
                        failure.get_or_insert(e.into());
                    }
                }
                // Endpoints of Services that are gone (slices go with their owner).
                for e in &endpoints {
                    let ns = informer::namespace(e);
                    let has_service = services
                        .iter()
                        .any(|s| informer::namespace(s) == ns && name_of(s) == name_of(e));
                    let ours = e["metadata"]["labels"]["endpoints.kubernetes.io/managed-by"] == MANAGER;
                    if !has_service && ours {
                        let api: Api<Endpoints> = Api::namespaced(client.clone(), ns);
                        match api.delete(name_of(e), &DeleteParams::default()).await {
                            Ok(_) => {}
                            Err(kube::Error::Api(s)) if s.code == 404 => {}
                            Err(err) => {
                                failure.get_or_insert(err.into());
                            }
                        }
                    }
                }
                failure.map_or(Ok(Duration::from_secs(10)), Err)
            })
            .await;
    }
}

async fn write_endpoints(
    client: &kube::Client,
    svc: &Value,
    members: &[Member],
    existing: Option<&Value>,
) -> Result<(), kube::Error> {
    let subsets = subsets(svc, members);
    let mut labels = labels_of(svc);
    labels.insert("endpoints.kubernetes.io/managed-by".into(), json!(MANAGER));
    let unchanged = existing.is_some_and(|e| {
        e["subsets"].as_array().map_or(0, Vec::len) == subsets.as_array().map_or(0, Vec::len)
            && (subsets.as_array().is_some_and(Vec::is_empty) || e["subsets"] == subsets)
            && e["metadata"]["labels"].as_object() == Some(&labels)
    });
    if unchanged {
        return Ok(());
    }
    let ns = informer::namespace(svc);
    let api: Api<Endpoints> = Api::namespaced(client.clone(), ns);
    let body = json!({"apiVersion": "v1", "kind": "Endpoints",
                      "metadata": {"name": name_of(svc), "namespace": ns, "labels": labels},
                      "subsets": subsets});
    let pp = PatchParams {
        field_manager: Some(MANAGER.into()),
        ..Default::default()
    };
    match existing {
        Some(_) => {
            let mut patch = body;
            if patch["subsets"].as_array().is_some_and(Vec::is_empty) {
                patch["subsets"] = Value::Null;
            }
            api.patch(name_of(svc), &pp, &Patch::Merge(patch)).await.map(|_| ())
        }
        None => {
            let ep: Endpoints = serde_json::from_value(body).map_err(kube::Error::SerdeError)?;
            match api.create(&PostParams::default(), &ep).await {
                Ok(_) => Ok(()),
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
                Err(e) => Err(e),
            }
        }
    }
}

async fn write_slices(
    client: &kube::Client,
    svc: &Value,
    members: &[Member],
    existing: &[&Value],
) -> Result<(), kube::Error> {
    let ns = informer::namespace(svc);
    let api: Api<EndpointSlice> = Api::namespaced(client.clone(), ns);
    let want = slices(svc, members);
    let mut labels = labels_of(svc);
    labels.insert(SERVICE_NAME.into(), json!(name_of(svc)));
    labels.insert(MANAGED_BY.into(), json!(SLICE_MANAGER));
    let owner = json!([informer::controller_ref("v1", "Service", svc)]);
    let pp = PatchParams {
        field_manager: Some(MANAGER.into()),
        ..Default::default()
    };
    let mut existing: Vec<&Value> = existing.to_vec();
    existing.sort_by_key(|s| name_of(s).to_string());
    for (i, (endpoints, ports)) in want.iter().enumerate() {
        match existing.get(i) {
            Some(s)
                if s["endpoints"].as_array().map_or(0, Vec::len) == endpoints.as_array().map_or(0, Vec::len)
                    && (endpoints.as_array().is_some_and(Vec::is_empty) || &s["endpoints"] == endpoints)
                    && &s["ports"] == ports => {}
            Some(s) => {
                let patch = json!({"endpoints": endpoints, "ports": ports, "metadata": {"labels": labels}});
                api.patch(name_of(s), &pp, &Patch::Merge(patch)).await?;
            }
            None => {
                let body = json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                    "metadata": {"generateName": format!("{}-", name_of(svc)), "namespace": ns,
                                 "labels": labels, "ownerReferences": owner},
                    "addressType": "IPv4", "endpoints": endpoints, "ports": ports});
                let slice: EndpointSlice = serde_json::from_value(body).map_err(kube::Error::SerdeError)?;
                api.create(&PostParams::default(), &slice).await?;
            }
        }
    }
    for extra in existing.iter().skip(want.len()) {
        ignore_not_found(api.delete(name_of(extra), &DeleteParams::default()).await)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, ip: &str, ready: bool, labels: Value) -> Value {
        json!({"metadata": {"name": name, "namespace": "default", "uid": format!("u-{name}"), "labels": labels},
               "spec": {"nodeName": "node1", "containers": [{"ports": [{"name": "http", "containerPort": 8080}]}]},
               "status": {"phase": "Running", "podIP": ip,
                          "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}})
    }

    fn svc(extra: Value) -> Value {
        let mut s = json!({"metadata": {"name": "web", "namespace": "default", "uid": "s1"},
            "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}]}});
        for (k, v) in extra.as_object().into_iter().flatten() {
            s["spec"][k] = v.clone();
        }
        s
    }

    #[test]
    fn ready_and_unready_pods_go_to_their_lists_with_named_ports_resolved() {
        let a = pod("a", "10.42.1.2", true, json!({"app": "web"}));
        let b = pod("b", "10.42.1.3", false, json!({"app": "web"}));
        let other = pod("c", "10.42.1.4", true, json!({"app": "db"}));
        let mut no_ip = pod("d", "", true, json!({"app": "web"}));
        no_ip["status"]["podIP"] = Value::Null;
        let s = svc(json!({}));
        let m = members(&s, &[&a, &b, &other, &no_ip]);
        assert_eq!(m.len(), 2);
        let got = subsets(&s, &m);
        assert_eq!(got[0]["addresses"][0]["ip"], "10.42.1.2");
        assert_eq!(got[0]["addresses"][0]["targetRef"]["name"], "a");
        assert_eq!(got[0]["notReadyAddresses"][0]["ip"], "10.42.1.3");
        assert_eq!(
            got[0]["ports"],
            json!([{"name": "http", "port": 8080, "protocol": "TCP"}])
        );
        let sl = slices(&s, &m);
        assert_eq!(sl.len(), 1);
        assert_eq!(
            sl[0].0[1]["conditions"],
            json!({"ready": false, "serving": false, "terminating": false})
        );
        let published = svc(json!({"publishNotReadyAddresses": true}));
        assert_eq!(subsets(&published, &m)[0]["addresses"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn headless_members_carry_their_hostname_and_terminating_pods_leave_endpoints() {
        let mut p = pod("web-0", "10.42.1.2", true, json!({"app": "web"}));
        p["spec"]["hostname"] = json!("web-0");
        p["spec"]["subdomain"] = json!("web");
        let mut gone = pod("web-1", "10.42.1.5", true, json!({"app": "web"}));
        gone["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        let s = svc(json!({"clusterIP": "None", "ports": [{"name": "http", "port": 80, "targetPort": 80}]}));
        let m = members(&s, &[&p, &gone]);
        let got = subsets(&s, &m);
        assert_eq!(got[0]["addresses"].as_array().unwrap().len(), 1);
        assert_eq!(got[0]["addresses"][0]["hostname"], "web-0");
        let sl = slices(&s, &m);
        assert_eq!(sl[0].0.as_array().unwrap().len(), 2);
        assert_eq!(
            sl[0].0[1]["conditions"],
            json!({"ready": false, "serving": true, "terminating": true})
        );
        assert_eq!(labels_of(&s)["service.kubernetes.io/headless"], "");
    }

    #[test]
    fn slices_hold_at_most_100_endpoints_and_empty_services_have_one() {
        let pods: Vec<Value> = (0..250)
            .map(|i| {
                pod(
                    &format!("p{i}"),
                    &format!("10.0.{}.{}", i / 200, i % 200),
                    true,
                    json!({"app": "web"}),
                )
            })
            .collect();
        let refs: Vec<&Value> = pods.iter().collect();
        let s = svc(json!({}));
        let sl = slices(&s, &members(&s, &refs));
        assert_eq!(
            sl.iter().map(|(e, _)| e.as_array().unwrap().len()).collect::<Vec<_>>(),
            [100, 100, 50]
        );
        let empty = slices(
            &svc(json!({"ports": [{"name": "x", "port": 80, "targetPort": 8080}]})),
            &[],
        );
        assert_eq!(
            empty,
            [(json!([]), json!([{"name": "x", "port": 8080, "protocol": "TCP"}]))]
        );
    }
}
