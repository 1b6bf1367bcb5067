//! Resources served in more than one version, stored in one: autoscaling's
//! HorizontalPodAutoscaler is stored as autoscaling/v2 and read and written through
//! autoscaling/v1 as upstream converts it (the v1 CPU target is the v2 CPU utilization metric;
//! what v1 cannot say is kept in `autoscaling.alpha.kubernetes.io/*` annotations).

use serde_json::{Value, json};
use shoal_api::catalogue::{self, Resource};

const METRICS: &str = "autoscaling.alpha.kubernetes.io/metrics";
const CURRENT_METRICS: &str = "autoscaling.alpha.kubernetes.io/current-metrics";
const CONDITIONS: &str = "autoscaling.alpha.kubernetes.io/conditions";
const BEHAVIOR: &str = "autoscaling.alpha.kubernetes.io/behavior";

/// The resource whose form is stored for `res`, when it is another version or API's view
/// of it.
pub fn storage_of(res: &'static Resource) -> Option<&'static Resource> {
    let stored = catalogue::stored_as(res);
    (!std::ptr::eq(stored, res)).then_some(stored)
}

/// An object of `res` (a served version) in its stored form.
pub fn to_storage(res: &Resource, obj: Value) -> Value {
    if catalogue::is_custom(res) {
        return match custom_storage_of(res) {
            Some(stored) => with_api_version(obj, stored),
            None => obj,
        };
    }
    match (res.group, res.kind, res.version) {
        ("autoscaling", "HorizontalPodAutoscaler", "v1") => hpa_v1_to_v2(obj),
        ("events.k8s.io", "Event", "v1") => event_to_core(obj),
        _ => obj,
    }
}

/// A stored object as `res` (a served version) shows it.
pub fn from_storage(res: &Resource, obj: Value) -> Value {
    if catalogue::is_custom(res) {
        return with_api_version(obj, res);
    }
    match (res.group, res.kind, res.version) {
        ("autoscaling", "HorizontalPodAutoscaler", "v1") => hpa_v2_to_v1(obj),
        ("events.k8s.io", "Event", "v1") => event_from_core(obj),
        _ => obj,
    }
}

/// The storage version of custom resource `res`.
fn custom_storage_of(res: &Resource) -> Option<&'static Resource> {
    catalogue::find_plural(res.group, res.plural).map(catalogue::stored_as)
}

/// Upstream's `None` conversion of a custom object: only its `apiVersion` changes.
fn with_api_version(mut obj: Value, to: &Resource) -> Value {
    if let Some(map) = obj.as_object_mut() {
        map.insert("apiVersion".into(), json!(to.api_version()));
    }
    obj
}

/// Sets annotation `key` (a no-op on an object without a metadata map, which decoding has
/// already refused).
fn annotate(obj: &mut Value, key: &str, value: String) {
    let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) else {
        return;
    };
    let annotations = meta.entry("annotations").or_insert_with(|| json!({}));
    if !annotations.is_object() {
        *annotations = json!({});
    }
    if let Some(a) = annotations.as_object_mut() {
        a.insert(key.into(), Value::String(value));
    }
}

fn take_annotation(obj: &mut Value, key: &str) -> Option<Value> {
    let meta = obj.get_mut("metadata")?.as_object_mut()?;
    let annotations = meta.get_mut("annotations")?.as_object_mut()?;
    let taken = annotations.remove(key)?;
    if annotations.is_empty() {
        meta.remove("annotations");
    }
    serde_json::from_str(taken.as_str()?).ok()
}

/// events.k8s.io/v1 field names and their core/v1 Event counterparts; the fields not listed
/// (reason, type, action, related, eventTime, series, reportingInstance, metadata) share
/// their names.
const EVENT_FIELDS: &[(&str, &str)] = &[
    ("regarding", "involvedObject"),
    ("note", "message"),
    ("deprecatedSource", "source"),
    ("deprecatedFirstTimestamp", "firstTimestamp"),
    ("deprecatedLastTimestamp", "lastTimestamp"),
    ("deprecatedCount", "count"),
    ("reportingController", "reportingComponent"),
];

fn rename_fields(obj: Value, api_version: &str, pairs: impl Iterator<Item = (&'static str, &'static str)>) -> Value {
    let Value::Object(mut m) = obj else { return obj };
    for (from, to) in pairs {
        if let Some(v) = m.remove(from) {
            m.insert(to.into(), v);
        }
    }
    m.insert("apiVersion".into(), json!(api_version));
    m.insert("kind".into(), json!("Event"));
    Value::Object(m)
}

/// An events.k8s.io/v1 Event as the core/v1 Event it is stored as.
fn event_to_core(obj: Value) -> Value {
    rename_fields(obj, "v1", EVENT_FIELDS.iter().copied())
}

/// A stored core/v1 Event as events.k8s.io/v1 shows it.
fn event_from_core(obj: Value) -> Value {
    rename_fields(obj, "events.k8s.io/v1", EVENT_FIELDS.iter().map(|&(a, b)| (b, a)))
}

fn is_cpu_utilization(m: &Value) -> bool {
    m["type"] == "Resource" && m["resource"]["name"] == "cpu" && m["resource"]["target"]["type"] == "Utilization"
}

fn hpa_v1_to_v2(mut obj: Value) -> Value {
    let extra = take_annotation(&mut obj, METRICS);
    let behavior = take_annotation(&mut obj, BEHAVIOR);
    let current = take_annotation(&mut obj, CURRENT_METRICS);
    let conditions = take_annotation(&mut obj, CONDITIONS);
    let spec = obj["spec"].take();
    let mut metrics: Vec<Value> = Vec::new();
    if let Some(cpu) = spec["targetCPUUtilizationPercentage"].as_i64() {
        metrics.push(json!({"type": "Resource", "resource": {"name": "cpu",
            "target": {"type": "Utilization", "averageUtilization": cpu}}}));
    }
    metrics.extend(extra.and_then(|e| e.as_array().cloned()).unwrap_or_default());
    let mut v2 = json!({"scaleTargetRef": spec["scaleTargetRef"], "maxReplicas": spec["maxReplicas"]});
    if !spec["minReplicas"].is_null() {
        v2["minReplicas"] = spec["minReplicas"].clone();
    }
    if !metrics.is_empty() {
        v2["metrics"] = Value::Array(metrics);
    }
    if let Some(b) = behavior {
        v2["behavior"] = b;
    }
    obj["spec"] = v2;
    let status = obj["status"].take();
    if status.is_object() {
        let mut s = replica_status(&status);
        let mut currents: Vec<Value> = Vec::new();
        if let Some(cpu) = status["currentCPUUtilizationPercentage"].as_i64() {
            currents
                .push(json!({"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": cpu}}}));
        }
        currents.extend(current.and_then(|c| c.as_array().cloned()).unwrap_or_default());
        if !currents.is_empty() {
            s["currentMetrics"] = Value::Array(currents);
        }
        if let Some(c) = conditions {
            s["conditions"] = c;
        }
        obj["status"] = s;
    }
    obj["apiVersion"] = json!("autoscaling/v2");
    obj
}

/// The fields both versions' statuses share; both replica counts are always encoded (int32,
/// not omitted when 0).
fn replica_status(status: &Value) -> Value {
    let mut s = json!({"currentReplicas": 0, "desiredReplicas": 0});
    for key in [
        "observedGeneration",
        "lastScaleTime",
        "currentReplicas",
        "desiredReplicas",
    ] {
        if !status[key].is_null() {
            s[key] = status[key].clone();
        }
    }
    s
}

fn hpa_v2_to_v1(mut obj: Value) -> Value {
    let spec = obj["spec"].take();
    let metrics = spec["metrics"].as_array().cloned().unwrap_or_default();
    let cpu = metrics.iter().position(is_cpu_utilization);
    let mut v1 = json!({"scaleTargetRef": spec["scaleTargetRef"], "maxReplicas": spec["maxReplicas"]});
    if !spec["minReplicas"].is_null() {
        v1["minReplicas"] = spec["minReplicas"].clone();
    }
    if let Some(i) = cpu {
        v1["targetCPUUtilizationPercentage"] = metrics[i]["resource"]["target"]["averageUtilization"].clone();
    }
    let others: Vec<Value> = metrics
        .iter()
        .enumerate()
        .filter(|(i, _)| Some(*i) != cpu)
        .map(|(_, m)| m.clone())
        .collect();
    if !others.is_empty() {
        annotate(&mut obj, METRICS, Value::Array(others).to_string());
    }
    if spec["behavior"].is_object() {
        annotate(&mut obj, BEHAVIOR, spec["behavior"].to_string());
    }
    obj["spec"] = v1;
    let status = obj["status"].take();
    if status.is_object() {
        let mut s = replica_status(&status);
        let currents = status["currentMetrics"].as_array().cloned().unwrap_or_default();
        let cpu = currents
            .iter()
            .position(|m| m["type"] == "Resource" && m["resource"]["name"] == "cpu");
        if let Some(i) = cpu {
            s["currentCPUUtilizationPercentage"] = currents[i]["resource"]["current"]["averageUtilization"].clone();
        }
        let others: Vec<Value> = currents
            .iter()
            .enumerate()
            .filter(|(i, _)| Some(*i) != cpu)
            .map(|(_, m)| m.clone())
            .collect();
        if !others.is_empty() {
            annotate(&mut obj, CURRENT_METRICS, Value::Array(others).to_string());
        }
        if status["conditions"].as_array().is_some_and(|c| !c.is_empty()) {
            annotate(&mut obj, CONDITIONS, status["conditions"].to_string());
        }
        obj["status"] = s;
    }
    obj["apiVersion"] = json!("autoscaling/v1");
    obj
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v1_res() -> &'static Resource {
        catalogue::find("autoscaling", "v1", "horizontalpodautoscalers").unwrap()
    }

    #[test]
    fn the_v1_hpa_is_stored_as_v2() {
        let v2 = catalogue::find("autoscaling", "v2", "horizontalpodautoscalers").unwrap();
        assert!(std::ptr::eq(storage_of(v1_res()).unwrap(), v2));
        assert!(storage_of(v2).is_none());
    }

    #[test]
    fn hpas_round_trip_between_versions() {
        let v1 = json!({"apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "web"},
            "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "minReplicas": 2, "maxReplicas": 5,
                     "targetCPUUtilizationPercentage": 60},
            "status": {"currentReplicas": 2, "desiredReplicas": 3, "currentCPUUtilizationPercentage": 45}});
        let stored = to_storage(v1_res(), v1.clone());
        assert_eq!(stored["apiVersion"], "autoscaling/v2");
        assert_eq!(
            stored["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"],
            60
        );
        assert_eq!(
            stored["status"]["currentMetrics"][0]["resource"]["current"]["averageUtilization"],
            45
        );
        assert_eq!(from_storage(v1_res(), stored), v1);
    }

    #[test]
    fn what_v1_cannot_say_rides_in_annotations() {
        let v2 = json!({"apiVersion": "autoscaling/v2", "metadata": {"name": "web"},
            "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "maxReplicas": 5, "metrics": [
                {"type": "Pods", "pods": {"metric": {"name": "rps"}, "target": {"type": "AverageValue", "averageValue": "10"}}},
                {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}}}],
                "behavior": {"scaleDown": {"stabilizationWindowSeconds": 60}}},
            "status": {"conditions": [{"type": "AbleToScale", "status": "True"}]}});
        let v1 = from_storage(v1_res(), v2.clone());
        assert_eq!(v1["spec"]["targetCPUUtilizationPercentage"], 70);
        assert!(v1["metadata"]["annotations"][METRICS].as_str().unwrap().contains("rps"));
        assert!(
            v1["metadata"]["annotations"][CONDITIONS]
                .as_str()
                .unwrap()
                .contains("AbleToScale")
        );
        let back = to_storage(v1_res(), v1);
        assert_eq!(back["spec"]["behavior"], v2["spec"]["behavior"]);
        assert_eq!(back["spec"]["metrics"].as_array().unwrap().len(), 2);
        assert!(back["metadata"].get("annotations").is_none(), "{}", back["metadata"]);
    }

    #[test]
    fn v1_statuses_always_say_their_replica_counts() {
        let v2 = json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "w"},
            "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "w"}, "maxReplicas": 3}, "status": {"desiredReplicas": 0}});
        let v1 = hpa_v2_to_v1(v2);
        assert_eq!(v1["status"], json!({"currentReplicas": 0, "desiredReplicas": 0}));
    }

    #[test]
    fn events_are_one_object_in_two_apis() {
        let api = json!({"apiVersion": "events.k8s.io/v1", "kind": "Event",
            "metadata": {"name": "e", "namespace": "default"},
            "regarding": {"kind": "Pod", "name": "web"}, "note": "pulled", "reason": "Pulled",
            "reportingController": "kubelet", "reportingInstance": "node-1", "action": "Pull",
            "eventTime": "2026-01-01T00:00:00.000000Z", "type": "Normal", "deprecatedCount": 2});
        let core = event_to_core(api.clone());
        assert_eq!(core["apiVersion"], "v1");
        assert_eq!(core["involvedObject"]["name"], "web");
        assert_eq!(core["message"], "pulled");
        assert_eq!(core["reportingComponent"], "kubelet");
        assert_eq!(core["count"], 2);
        assert!(core.get("note").is_none() && core.get("regarding").is_none());
        assert_eq!(event_from_core(core), api);
    }
}
