//! LimitRange enforcement, as upstream's LimitRanger admission plugin: container defaults
//! (`default` -> limits, `defaultRequest` -> requests, with the `kubernetes.io/limit-ranger`
//! annotation saying what was set), and the min / max / maxLimitRequestRatio checks of
//! containers, pods and PersistentVolumeClaims, worded as upstream.

use std::cmp::Ordering;
use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

use crate::quota::{Usage, parse_list, pod_resources};
use crate::validation::quantity::Quantity;

/// The annotation LimitRanger puts on the pods it gave defaults.
pub const ANNOTATION: &str = "kubernetes.io/limit-ranger";

/// The `spec.limits` items of `type` across a namespace's LimitRanges.
fn items<'a>(ranges: &'a [Value], kind: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
    ranges
        .iter()
        .flat_map(|r| r["spec"]["limits"].as_array().into_iter().flatten())
        .filter(move |l| l["type"] == kind)
}

/// Gives the containers and init containers of a pod the defaults of the namespace's
/// `type: Container` limits for what they leave unset; returns the annotation text, if
/// anything was set.
pub fn default_pod(pod: &mut Value, ranges: &[Value]) -> Option<String> {
    let mut defaults: Map<String, Value> = Map::new();
    let mut default_requests: Map<String, Value> = Map::new();
    for item in items(ranges, "Container") {
        for (k, v) in item["default"].as_object().into_iter().flatten() {
            defaults.entry(k.clone()).or_insert_with(|| v.clone());
        }
        for (k, v) in item["defaultRequest"].as_object().into_iter().flatten() {
            default_requests.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
    if defaults.is_empty() && default_requests.is_empty() {
        return None;
    }
    let mut parts = Vec::new();
    for (list, what) in [("containers", "container"), ("initContainers", "init container")] {
        let Some(containers) = pod["spec"][list].as_array_mut() else {
            continue;
        };
        for c in containers {
            let name = c["name"].as_str().unwrap_or_default().to_string();
            let set_requests = fill(c, "requests", &default_requests);
            let set_limits = fill(c, "limits", &defaults);
            if !set_requests.is_empty() {
                parts.push(format!("{} request for {what} {name}", join(&set_requests)));
            }
            if !set_limits.is_empty() {
                parts.push(format!("{} limit for {what} {name}", join(&set_limits)));
            }
        }
    }
    if parts.is_empty() {
        return None;
    }
    let text = format!("LimitRanger plugin set: {}", parts.join("; "));
    if let Some(meta) = pod.get_mut("metadata").and_then(Value::as_object_mut) {
        let annotations = meta.entry("annotations").or_insert_with(|| json!({}));
        if let Some(a) = annotations.as_object_mut() {
            a.insert(ANNOTATION.into(), json!(text));
        }
    }
    Some(text)
}

fn join(names: &BTreeSet<String>) -> String {
    names.iter().cloned().collect::<Vec<_>>().join(", ")
}

/// Sets `resources.<which>` keys of `c` missing from it; returns the names it set.
fn fill(c: &mut Value, which: &str, from: &Map<String, Value>) -> BTreeSet<String> {
    let mut set = BTreeSet::new();
    if from.is_empty() || !c.is_object() {
        return set;
    }
    let resources = c
        .as_object_mut()
        .map(|m| m.entry("resources").or_insert_with(|| json!({})));
    let Some(Value::Object(resources)) = resources else {
        return set;
    };
    let list = resources.entry(which).or_insert_with(|| json!({}));
    let Some(list) = list.as_object_mut() else { return set };
    for (k, v) in from {
        if !list.contains_key(k) {
            list.insert(k.clone(), v.clone());
            set.insert(k.clone());
        }
    }
    if list.is_empty() {
        resources.remove(which);
    }
    set
}

/// Milli-units of a quantity, for comparisons.
fn milli(q: &Quantity) -> i128 {
    q.milli_value()
}

fn min_check(kind: &str, name: &str, enforced: &Quantity, request: &Usage, limit: &Usage) -> Option<String> {
    let e = enforced.canonical();
    let Some(req) = request.get(name) else {
        return Some(format!(
            "minimum {name} usage per {kind} is {e}.  No request is specified"
        ));
    };
    if milli(req) < milli(enforced) {
        return Some(format!(
            "minimum {name} usage per {kind} is {e}, but request is {}",
            req.canonical()
        ));
    }
    match limit.get(name) {
        Some(lim) if milli(lim) < milli(enforced) => Some(format!(
            "minimum {name} usage per {kind} is {e}, but limit is {}",
            lim.canonical()
        )),
        _ => None,
    }
}

fn max_check(kind: &str, name: &str, enforced: &Quantity, request: &Usage, limit: &Usage) -> Option<String> {
    let e = enforced.canonical();
    let Some(lim) = limit.get(name) else {
        return Some(format!(
            "maximum {name} usage per {kind} is {e}.  No limit is specified"
        ));
    };
    if milli(lim) > milli(enforced) {
        return Some(format!(
            "maximum {name} usage per {kind} is {e}, but limit is {}",
            lim.canonical()
        ));
    }
    match request.get(name) {
        Some(req) if milli(req) > milli(enforced) => Some(format!(
            "maximum {name} usage per {kind} is {e}, but request is {}",
            req.canonical()
        )),
        _ => None,
    }
}

fn ratio_check(kind: &str, name: &str, enforced: &Quantity, request: &Usage, limit: &Usage) -> Option<String> {
    let e = enforced.canonical();
    let req = request.get(name).map(milli).filter(|v| *v != 0);
    let lim = limit.get(name).map(milli).filter(|v| *v != 0);
    let Some(req) = req else {
        return Some(format!(
            "{name} max limit to request ratio per {kind} is {e}, but no request is specified or request is 0"
        ));
    };
    let Some(lim) = lim else {
        return Some(format!(
            "{name} max limit to request ratio per {kind} is {e}, but no limit is specified or limit is 0"
        ));
    };
    let observed = lim as f64 / req as f64;
    let allowed = milli(enforced) as f64 / 1000.0;
    (observed > allowed)
        .then(|| format!("{name} max limit to request ratio per {kind} is {e}, but provided ratio is {observed:.6}"))
}

/// Runs one limit item's min, max and ratio checks against requests and limits.
fn check_item(kind: &str, item: &Value, request: &Usage, limit: &Usage, out: &mut Vec<String>) {
    for (name, q) in parse_list(&item["min"]) {
        out.extend(min_check(kind, &name, &q, request, limit));
    }
    for (name, q) in parse_list(&item["max"]) {
        out.extend(max_check(kind, &name, &q, request, limit));
    }
    for (name, q) in parse_list(&item["maxLimitRequestRatio"]) {
        out.extend(ratio_check(kind, &name, &q, request, limit));
    }
}

fn list_of(c: &Value, which: &str) -> Usage {
    parse_list(&c["resources"][which])
}

/// Upstream's refusals of a pod by the namespace's LimitRanges (empty when it passes).
pub fn check_pod(pod: &Value, ranges: &[Value]) -> Vec<String> {
    let mut out = Vec::new();
    for item in items(ranges, "Container") {
        for list in ["containers", "initContainers"] {
            for c in pod["spec"][list].as_array().into_iter().flatten() {
                check_item(
                    "Container",
                    item,
                    &list_of(c, "requests"),
                    &list_of(c, "limits"),
                    &mut out,
                );
            }
        }
    }
    for item in items(ranges, "Pod") {
        let request = pod_resources(pod, "requests");
        let limit = pod_resources(pod, "limits");
        check_item("Pod", item, &request, &limit, &mut out);
    }
    dedup(out)
}

/// Upstream's refusals of a PersistentVolumeClaim by the namespace's LimitRanges.
pub fn check_claim(pvc: &Value, ranges: &[Value]) -> Vec<String> {
    let mut out = Vec::new();
    let request = parse_list(&pvc["spec"]["resources"]["requests"]);
    let kind = "PersistentVolumeClaim";
    for item in items(ranges, kind) {
        for (name, q) in parse_list(&item["min"]) {
            out.extend(min_check(kind, &name, &q, &request, &Usage::new()));
        }
        for (name, q) in parse_list(&item["max"]) {
            let e = q.canonical();
            match request.get(&name) {
                None => out.push(format!(
                    "maximum {name} usage per {kind} is {e}.  No request is specified"
                )),
                Some(r) if r.cmp(&q) == Ordering::Greater => out.push(format!(
                    "maximum {name} usage per {kind} is {e}, but request is {}",
                    r.canonical()
                )),
                Some(_) => {}
            }
        }
    }
    dedup(out)
}

fn dedup(messages: Vec<String>) -> Vec<String> {
    let mut seen = BTreeSet::new();
    messages.into_iter().filter(|m| seen.insert(m.clone())).collect()
}

/// Several refusals as upstream's aggregate prints them: one alone, more as `[a, b]`.
pub fn aggregate(messages: &[String]) -> String {
    match messages {
        [one] => one.clone(),
        many => format!("[{}]", many.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(limits: Value) -> Vec<Value> {
        vec![json!({"spec": {"limits": limits}})]
    }

    #[test]
    fn containers_get_defaults_and_the_annotation_says_which() {
        let ranges = range(json!([{"type": "Container",
            "default": {"cpu": "500m", "memory": "128Mi"}, "defaultRequest": {"cpu": "100m", "memory": "64Mi"}}]));
        let mut pod = json!({"metadata": {"name": "p"}, "spec": {"containers": [
            {"name": "app", "resources": {"limits": {"memory": "256Mi"}}},
            {"name": "log"}
        ]}});
        let text = default_pod(&mut pod, &ranges).unwrap();
        assert_eq!(
            text,
            "LimitRanger plugin set: cpu, memory request for container app; cpu limit for container app; \
             cpu, memory request for container log; cpu, memory limit for container log"
        );
        assert_eq!(pod["spec"]["containers"][0]["resources"]["limits"]["memory"], "256Mi");
        assert_eq!(pod["spec"]["containers"][0]["resources"]["limits"]["cpu"], "500m");
        assert_eq!(pod["spec"]["containers"][1]["resources"]["requests"]["memory"], "64Mi");
        assert_eq!(pod["metadata"]["annotations"][ANNOTATION], text);
        // Nothing to set: no annotation.
        let mut full = pod.clone();
        full["metadata"]["annotations"] = json!({});
        assert_eq!(default_pod(&mut full, &ranges), None);
    }

    #[test]
    fn refusals_are_worded_as_upstream() {
        let ranges = range(json!([
            {"type": "Container", "max": {"cpu": "1"}, "min": {"memory": "100Mi"}, "maxLimitRequestRatio": {"cpu": "2"}},
            {"type": "Pod", "max": {"memory": "1Gi"}}
        ]));
        let pod = json!({"spec": {"containers": [{"name": "app", "resources": {
            "requests": {"cpu": "500m", "memory": "50Mi"}, "limits": {"cpu": "2", "memory": "2Gi"}}}]}});
        let errs = check_pod(&pod, &ranges);
        assert_eq!(
            errs,
            [
                "minimum memory usage per Container is 100Mi, but request is 50Mi",
                "maximum cpu usage per Container is 1, but limit is 2",
                "cpu max limit to request ratio per Container is 2, but provided ratio is 4.000000",
                "maximum memory usage per Pod is 1Gi, but limit is 2Gi",
            ]
        );
        assert!(aggregate(&errs).starts_with("[minimum memory"));
        let unlimited = json!({"spec": {"containers": [{"name": "app"}]}});
        assert!(
            check_pod(&unlimited, &ranges)
                .contains(&"maximum cpu usage per Container is 1.  No limit is specified".to_string())
        );
        let pvc_ranges =
            range(json!([{"type": "PersistentVolumeClaim", "min": {"storage": "1Gi"}, "max": {"storage": "10Gi"}}]));
        let pvc = json!({"spec": {"resources": {"requests": {"storage": "20Gi"}}}});
        assert_eq!(
            check_claim(&pvc, &pvc_ranges),
            ["maximum storage usage per PersistentVolumeClaim is 10Gi, but request is 20Gi"]
        );
    }
}
