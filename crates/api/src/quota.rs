//! Resource quota arithmetic, as upstream's quota evaluators count: what one object charges
//! against a namespace's ResourceQuotas (`usage`), which pods a quota's scopes cover, the
//! check of a request against `status.hard`, and the texts of its refusals. Shared by the
//! API server's ResourceQuota admission and the quota controller that writes
//! `status.used`.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use serde_json::Value;

use crate::validation::quantity::Quantity;

/// Resource name -> amount.
pub type Usage = BTreeMap<String, Quantity>;

/// `a + b`, taking `b`'s format when `a` is zero (so that summed memory stays in `Mi`).
pub fn plus(a: &Quantity, b: &Quantity) -> Quantity {
    if a.is_zero() { b.clone() } else { a.add(b) }
}

/// What an update adds to the usage: for each resource, how much more `new` uses than
/// `old` (resources it uses less of, or as much, are left out).
pub fn increase(new: &Usage, old: &Usage) -> Usage {
    new.iter()
        .filter_map(|(k, n)| {
            let more = match old.get(k) {
                Some(o) => n.sub(o),
                None => n.clone(),
            };
            (!more.is_zero() && !more.is_negative()).then(|| (k.clone(), more))
        })
        .collect()
}

fn charge(usage: &mut Usage, name: &str, q: Quantity) {
    let total = match usage.get(name) {
        Some(existing) => plus(existing, &q),
        None => q,
    };
    usage.insert(name.to_string(), total);
}

fn one(usage: &mut Usage, name: &str) {
    charge(usage, name, Quantity::from_int(1));
}

/// The object-count resource name upstream uses: `count/pods`, `count/deployments.apps`.
pub fn count_name(group: &str, plural: &str) -> String {
    if group.is_empty() {
        format!("count/{plural}")
    } else {
        format!("count/{plural}.{group}")
    }
}

/// True for a pod that no longer counts against compute quota: Failed or Succeeded.
pub fn pod_is_terminal(pod: &Value) -> bool {
    matches!(pod["status"]["phase"].as_str(), Some("Failed" | "Succeeded"))
}

/// The requests or limits (`which`) of a pod, as upstream's pod-level helpers sum them:
/// regular containers and restartable init containers (sidecars) add up; each other init
/// container needs its own amount plus the sidecars started before it; the pod needs the
/// larger of the two.
pub fn pod_resources(pod: &Value, which: &str) -> Usage {
    let of = |c: &Value| -> Usage {
        let mut u = Usage::new();
        for (name, v) in c["resources"][which].as_object().into_iter().flatten() {
            if let Ok(q) = Quantity::from_json(v) {
                u.insert(name.clone(), q);
            }
        }
        u
    };
    let add_all = |into: &mut Usage, from: &Usage| {
        for (k, v) in from {
            charge(into, k, v.clone());
        }
    };
    let mut sum = Usage::new();
    for c in pod["spec"]["containers"].as_array().into_iter().flatten() {
        add_all(&mut sum, &of(c));
    }
    let mut sidecars = Usage::new();
    let mut init_max = Usage::new();
    for c in pod["spec"]["initContainers"].as_array().into_iter().flatten() {
        let amount = of(c);
        if c["restartPolicy"] == "Always" {
            add_all(&mut sidecars, &amount);
            continue;
        }
        let mut need = amount;
        add_all(&mut need, &sidecars);
        for (k, v) in need {
            let bigger = init_max.get(&k).is_none_or(|m| v.cmp(m) == Ordering::Greater);
            if bigger {
                init_max.insert(k, v);
            }
        }
    }
    add_all(&mut sum, &sidecars);
    for (k, v) in init_max {
        let bigger = sum.get(&k).is_none_or(|m| v.cmp(m) == Ordering::Greater);
        if bigger {
            sum.insert(k, v);
        }
    }
    sum
}

/// What one object of `group`/`plural` charges. Pods that ended charge only `count/pods`.
pub fn usage(group: &str, plural: &str, obj: &Value) -> Usage {
    let mut u = Usage::new();
    one(&mut u, &count_name(group, plural));
    match (group, plural) {
        ("", "pods") => {
            if pod_is_terminal(obj) {
                return u;
            }
            one(&mut u, "pods");
            for (name, q) in pod_resources(obj, "requests") {
                charge(&mut u, &format!("requests.{name}"), q.clone());
                if matches!(name.as_str(), "cpu" | "memory" | "ephemeral-storage") {
                    charge(&mut u, &name, q);
                }
            }
            for (name, q) in pod_resources(obj, "limits") {
                charge(&mut u, &format!("limits.{name}"), q);
            }
        }
        ("", "services") => {
            one(&mut u, "services");
            let ports = obj["spec"]["ports"].as_array().map_or(0, Vec::len) as i64;
            let (node_ports, balancers) = match obj["spec"]["type"].as_str() {
                Some("NodePort") => (ports, 0),
                Some("LoadBalancer") => {
                    let allocate = obj["spec"]["allocateLoadBalancerNodePorts"] != false;
                    let explicit = obj["spec"]["ports"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter(|p| p["nodePort"].as_i64().is_some_and(|n| n != 0))
                        .count() as i64;
                    (if allocate { ports } else { explicit }, 1)
                }
                _ => (0, 0),
            };
            charge(&mut u, "services.nodeports", Quantity::from_int(node_ports));
            charge(&mut u, "services.loadbalancers", Quantity::from_int(balancers));
        }
        ("", "persistentvolumeclaims") => {
            one(&mut u, "persistentvolumeclaims");
            let request = Quantity::from_json(&obj["spec"]["resources"]["requests"]["storage"]).ok();
            let allocated = Quantity::from_json(&obj["status"]["allocatedResources"]["storage"]).ok();
            let storage = match (request, allocated) {
                (Some(r), Some(a)) => Some(if a.cmp(&r) == Ordering::Greater { a } else { r }),
                (r, a) => r.or(a),
            };
            let class = obj["spec"]["storageClassName"].as_str().unwrap_or_default();
            if !class.is_empty() {
                one(
                    &mut u,
                    &format!("{class}.storageclass.storage.k8s.io/persistentvolumeclaims"),
                );
            }
            if let Some(s) = storage {
                if !class.is_empty() {
                    charge(
                        &mut u,
                        &format!("{class}.storageclass.storage.k8s.io/requests.storage"),
                        s.clone(),
                    );
                }
                charge(&mut u, "requests.storage", s);
            }
        }
        ("", legacy @ ("configmaps" | "secrets" | "resourcequotas" | "replicationcontrollers")) => one(&mut u, legacy),
        _ => {}
    }
    u
}

/// The QoS class upstream computes: BestEffort when no container requests or limits
/// anything.
pub fn is_best_effort(pod: &Value) -> bool {
    let containers = ["containers", "initContainers"]
        .iter()
        .flat_map(|k| pod["spec"][*k].as_array().cloned().unwrap_or_default());
    !containers.into_iter().any(|c| {
        ["requests", "limits"]
            .iter()
            .any(|w| c["resources"][*w].as_object().is_some_and(|m| !m.is_empty()))
    })
}

/// True when a quota's scopes (`spec.scopes`, `spec.scopeSelector`) cover this object.
/// Scopes only ever narrow pods; other objects match a quota without scopes.
pub fn scopes_match(quota: &Value, plural: &str, obj: &Value) -> bool {
    let scopes: Vec<(String, String, Vec<String>)> = quota["spec"]["scopes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(|s| (s.to_string(), "Exists".to_string(), Vec::new()))
        .chain(
            quota["spec"]["scopeSelector"]["matchExpressions"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|e| {
                    let values = e["values"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect();
                    (
                        e["scopeName"].as_str().unwrap_or_default().to_string(),
                        e["operator"].as_str().unwrap_or_default().to_string(),
                        values,
                    )
                }),
        )
        .collect();
    if scopes.is_empty() {
        return true;
    }
    if plural != "pods" {
        return false;
    }
    scopes.iter().all(|(scope, op, values)| {
        let terminating = obj["spec"]["activeDeadlineSeconds"].as_i64().is_some_and(|s| s >= 0);
        let matched = match scope.as_str() {
            "Terminating" => terminating,
            "NotTerminating" => !terminating,
            "BestEffort" => is_best_effort(obj),
            "NotBestEffort" => !is_best_effort(obj),
            "PriorityClass" => {
                let class = obj["spec"]["priorityClassName"].as_str().unwrap_or_default();
                match op.as_str() {
                    "Exists" => !class.is_empty(),
                    "DoesNotExist" => class.is_empty(),
                    "In" => values.iter().any(|v| v == class),
                    "NotIn" => !values.iter().any(|v| v == class),
                    _ => false,
                }
            }
            "CrossNamespacePodAffinity" => ["podAffinity", "podAntiAffinity"].iter().any(|kind| {
                let a = &obj["spec"]["affinity"][*kind];
                [
                    "requiredDuringSchedulingIgnoredDuringExecution",
                    "preferredDuringSchedulingIgnoredDuringExecution",
                ]
                .iter()
                .flat_map(|k| a[*k].as_array().cloned().unwrap_or_default())
                .any(|t| {
                    let term = if t.get("podAffinityTerm").is_some() {
                        &t["podAffinityTerm"]
                    } else {
                        &t
                    };
                    term["namespaces"].as_array().is_some_and(|n| !n.is_empty())
                        || term.get("namespaceSelector").is_some_and(|s| !s.is_null())
                })
            }),
            _ => false,
        };
        match (scope.as_str(), op.as_str()) {
            ("PriorityClass", _) => matched,
            (_, "DoesNotExist") => !matched,
            _ => matched,
        }
    })
}

/// `key=value` pairs sorted by key and joined by commas, as upstream prints resource lists.
pub fn pretty(list: &Usage) -> String {
    list.iter()
        .map(|(k, v)| format!("{k}={}", v.canonical()))
        .collect::<Vec<_>>()
        .join(",")
}

/// The amounts a quota constrains: `hard` as parsed (unparseable entries are skipped).
pub fn parse_list(v: &Value) -> Usage {
    v.as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, q)| Quantity::from_json(q).ok().map(|q| (k.clone(), q)))
        .collect()
}

/// Checks `requested` against a quota's `hard` and `used`: the resources that would go over,
/// as upstream's refusal says them (`exceeded quota: NAME, requested: ..., used: ...,
/// limited: ...`), or `None` when the request fits.
pub fn exceeded(quota_name: &str, hard: &Usage, used: &Usage, requested: &Usage) -> Option<String> {
    let mut req = Usage::new();
    let mut now = Usage::new();
    let mut limits = Usage::new();
    for (name, amount) in requested {
        let Some(limit) = hard.get(name) else { continue };
        if amount.is_zero() {
            continue;
        }
        let current = used.get(name).cloned().unwrap_or_else(|| Quantity::from_int(0));
        if plus(&current, amount).cmp(limit) == Ordering::Greater {
            req.insert(name.clone(), amount.clone());
            now.insert(name.clone(), current);
            limits.insert(name.clone(), limit.clone());
        }
    }
    (!req.is_empty()).then(|| {
        format!(
            "exceeded quota: {quota_name}, requested: {}, used: {}, limited: {}",
            pretty(&req),
            pretty(&now),
            pretty(&limits)
        )
    })
}

/// Resources a quota's `hard` names that every container of a pod must then specify.
const MUST_SPECIFY: &[&str] = &[
    "cpu",
    "memory",
    "requests.cpu",
    "requests.memory",
    "limits.cpu",
    "limits.memory",
];

/// Upstream's "must specify" check of a pod against a quota's `hard`: `must specify
/// limits.cpu for: app,sidecar; limits.memory for: app`, or `None`.
pub fn missing_specs(hard: &Usage, pod: &Value) -> Option<String> {
    let mut parts = Vec::new();
    for resource in MUST_SPECIFY.iter().filter(|r| hard.contains_key(**r)) {
        let (which, name) = match resource.split_once('.') {
            Some(("limits", n)) => ("limits", n),
            Some((_, n)) => ("requests", n),
            None => ("requests", *resource),
        };
        let missing: Vec<&str> = ["containers", "initContainers"]
            .iter()
            .flat_map(|k| pod["spec"][*k].as_array().into_iter().flatten())
            .filter(|c| c["resources"][which].get(name).is_none())
            .filter_map(|c| c["name"].as_str())
            .collect();
        if !missing.is_empty() {
            parts.push(format!("{resource} for: {}", missing.join(",")));
        }
    }
    (!parts.is_empty()).then(|| format!("must specify {}", parts.join("; ")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(containers: Value) -> Value {
        json!({"spec": {"containers": containers}})
    }

    fn q(s: &str) -> Quantity {
        Quantity::parse(s).unwrap()
    }

    #[test]
    fn pods_charge_their_requests_limits_and_counts() {
        let p = pod(json!([
            {"name": "a", "resources": {"requests": {"cpu": "250m", "memory": "64Mi"}, "limits": {"cpu": "500m"}}},
            {"name": "b", "resources": {"requests": {"cpu": "250m", "memory": "64Mi"}}}
        ]));
        let u = usage("", "pods", &p);
        assert_eq!(u["pods"].canonical(), "1");
        assert_eq!(u["count/pods"].canonical(), "1");
        assert_eq!(u["requests.cpu"].canonical(), "500m");
        assert_eq!(u["cpu"].canonical(), "500m");
        assert_eq!(u["requests.memory"].canonical(), "128Mi");
        assert_eq!(u["limits.cpu"].canonical(), "500m");
        // An ended pod counts only as an object.
        let mut done = p.clone();
        done["status"]["phase"] = json!("Succeeded");
        assert_eq!(usage("", "pods", &done).keys().collect::<Vec<_>>(), ["count/pods"]);
    }

    #[test]
    fn updates_charge_only_what_they_add() {
        let svc = |t: &str, ports: usize| json!({"spec": {"type": t, "ports": vec![json!({"port": 80}); ports]}});
        let more = increase(
            &usage("", "services", &svc("LoadBalancer", 1)),
            &usage("", "services", &svc("ClusterIP", 1)),
        );
        assert_eq!(more["services.loadbalancers"].canonical(), "1");
        assert_eq!(more["services.nodeports"].canonical(), "1");
        assert!(!more.contains_key("services"), "{more:?}");
        assert!(!more.contains_key("count/services"));
        // Going back adds nothing.
        let less = increase(
            &usage("", "services", &svc("ClusterIP", 1)),
            &usage("", "services", &svc("LoadBalancer", 2)),
        );
        assert!(less.is_empty(), "{less:?}");
        let claim = |s: &str| json!({"spec": {"resources": {"requests": {"storage": s}}}});
        let grown = increase(
            &usage("", "persistentvolumeclaims", &claim("3Gi")),
            &usage("", "persistentvolumeclaims", &claim("1Gi")),
        );
        assert_eq!(grown["requests.storage"].canonical(), "2Gi");
        assert_eq!(q("1500m").sub(&q("2")).canonical(), "-500m");
    }

    #[test]
    fn init_containers_and_sidecars_count_as_upstream() {
        let mut p = pod(json!([{"name": "app", "resources": {"requests": {"cpu": "1"}}}]));
        p["spec"]["initContainers"] = json!([
            {"name": "sidecar", "restartPolicy": "Always", "resources": {"requests": {"cpu": "500m"}}},
            {"name": "setup", "resources": {"requests": {"cpu": "2"}}}
        ]);
        // max(app + sidecar, setup + sidecar) = 2.5
        assert_eq!(pod_resources(&p, "requests")["cpu"].canonical(), "2500m");
    }

    #[test]
    fn other_kinds_charge_counts() {
        let svc = json!({"spec": {"type": "NodePort", "ports": [{"port": 80}, {"port": 443}]}});
        let u = usage("", "services", &svc);
        assert_eq!(
            (u["services"].canonical(), u["services.nodeports"].canonical()),
            ("1".into(), "2".into())
        );
        let pvc = json!({"spec": {"storageClassName": "fast", "resources": {"requests": {"storage": "1Gi"}}}});
        let u = usage("", "persistentvolumeclaims", &pvc);
        assert_eq!(u["requests.storage"].canonical(), "1Gi");
        assert_eq!(
            u["fast.storageclass.storage.k8s.io/requests.storage"].canonical(),
            "1Gi"
        );
        assert_eq!(
            usage("apps", "deployments", &json!({}))["count/deployments.apps"].canonical(),
            "1"
        );
        assert_eq!(usage("", "configmaps", &json!({}))["configmaps"].canonical(), "1");
    }

    #[test]
    fn refusals_read_as_upstreams() {
        let hard: Usage = [("requests.cpu".to_string(), q("1")), ("pods".to_string(), q("2"))].into();
        let used: Usage = [("requests.cpu".to_string(), q("500m")), ("pods".to_string(), q("1"))].into();
        let fits: Usage = [("requests.cpu".to_string(), q("500m")), ("pods".to_string(), q("1"))].into();
        assert_eq!(exceeded("compute", &hard, &used, &fits), None);
        let over: Usage = [("requests.cpu".to_string(), q("600m")), ("pods".to_string(), q("1"))].into();
        assert_eq!(
            exceeded("compute", &hard, &used, &over).unwrap(),
            "exceeded quota: compute, requested: requests.cpu=600m, used: requests.cpu=500m, limited: requests.cpu=1"
        );
        let hard: Usage = [
            ("limits.cpu".to_string(), q("2")),
            ("limits.memory".to_string(), q("1Gi")),
        ]
        .into();
        let p = pod(json!([
            {"name": "app", "resources": {"limits": {"memory": "1Mi"}}},
            {"name": "sidecar"}
        ]));
        assert_eq!(
            missing_specs(&hard, &p).unwrap(),
            "must specify limits.cpu for: app,sidecar; limits.memory for: sidecar"
        );
    }

    #[test]
    fn scopes_narrow_pods() {
        let best = pod(json!([{"name": "a"}]));
        let burstable = pod(json!([{"name": "a", "resources": {"requests": {"cpu": "1"}}}]));
        let be_quota = json!({"spec": {"scopes": ["BestEffort"]}});
        assert!(scopes_match(&be_quota, "pods", &best));
        assert!(!scopes_match(&be_quota, "pods", &burstable));
        assert!(!scopes_match(&be_quota, "services", &json!({})));
        let pc = json!({"spec": {"scopeSelector": {"matchExpressions": [
            {"scopeName": "PriorityClass", "operator": "In", "values": ["high"]}]}}});
        let mut high = best.clone();
        high["spec"]["priorityClassName"] = json!("high");
        assert!(scopes_match(&pc, "pods", &high));
        assert!(!scopes_match(&pc, "pods", &best));
        assert!(scopes_match(&json!({"spec": {}}), "services", &json!({})));
    }
}
