//! Defaults of the kinds beyond the workloads (upstream's scheme defaults of rbac, networking,
//! scheduling, autoscaling/v2, core quota kinds, storage, admissionregistration,
//! flowcontrol, apiextensions and apiregistration).

use serde_json::{Map, Value, json};

use super::{child, default, default_str, each, existing, pod_template, resource_list};
use crate::validation::quantity::canonicalize_value;

const RBAC: &str = "rbac.authorization.k8s.io";

/// Applies the defaults of `group`/`kind`; false when this module has none for it.
pub(super) fn apply(group: &str, kind: &str, root: &mut Map<String, Value>) -> bool {
    match (group, kind) {
        ("rbac.authorization.k8s.io", "RoleBinding" | "ClusterRoleBinding") => binding(root),
        ("networking.k8s.io", "NetworkPolicy") => network_policy(root),
        ("networking.k8s.io", "IngressClass") => {
            if let Some(params) = existing(root, "spec").and_then(|s| existing(s, "parameters")) {
                default(params, "scope", json!("Cluster"));
            }
        }
        ("scheduling.k8s.io", "PriorityClass") => default(root, "preemptionPolicy", json!("PreemptLowerPriority")),
        ("autoscaling", "HorizontalPodAutoscaler") => hpa(root),
        ("", "ResourceQuota") => {
            if let Some(spec) = existing(root, "spec") {
                resource_list(spec, "hard");
            }
        }
        ("", "LimitRange") => limit_range(root),
        ("", "PodTemplate") => pod_template(root),
        ("storage.k8s.io", "CSIDriver") => {
            if let Some(spec) = child(root, "spec") {
                default(spec, "attachRequired", json!(true));
                default(spec, "podInfoOnMount", json!(false));
                default(spec, "storageCapacity", json!(false));
                default(spec, "fsGroupPolicy", json!("ReadWriteOnceWithFSType"));
                default(spec, "requiresRepublish", json!(false));
                default(spec, "seLinuxMount", json!(false));
                if spec
                    .get("volumeLifecycleModes")
                    .and_then(Value::as_array)
                    .is_none_or(Vec::is_empty)
                {
                    spec.insert("volumeLifecycleModes".into(), json!(["Persistent"]));
                }
            }
        }
        ("admissionregistration.k8s.io", "ValidatingWebhookConfiguration") => webhooks(root, false),
        ("admissionregistration.k8s.io", "MutatingWebhookConfiguration") => webhooks(root, true),
        ("admissionregistration.k8s.io", "ValidatingAdmissionPolicy") => {
            if let Some(spec) = existing(root, "spec") {
                default(spec, "failurePolicy", json!("Fail"));
                if let Some(m) = existing(spec, "matchConstraints") {
                    match_resources(m);
                }
            }
        }
        ("admissionregistration.k8s.io", "ValidatingAdmissionPolicyBinding") => {
            if let Some(m) = existing(root, "spec").and_then(|s| existing(s, "matchResources")) {
                match_resources(m);
            }
        }
        ("flowcontrol.apiserver.k8s.io", "FlowSchema") => {
            if let Some(spec) = existing(root, "spec")
                && spec.get("matchingPrecedence").and_then(Value::as_i64).unwrap_or(0) == 0
            {
                spec.insert("matchingPrecedence".into(), json!(1000));
            }
        }
        ("flowcontrol.apiserver.k8s.io", "PriorityLevelConfiguration") => priority_level(root),
        ("apiextensions.k8s.io", "CustomResourceDefinition") => crd(root),
        ("apiregistration.k8s.io", "APIService") => {
            if let Some(svc) = existing(root, "spec").and_then(|s| existing(s, "service")) {
                default(svc, "port", json!(443));
            }
        }
        _ => return false,
    }
    true
}

fn binding(root: &mut Map<String, Value>) {
    if let Some(role_ref) = existing(root, "roleRef") {
        default_str(role_ref, "apiGroup", RBAC);
    }
    for s in each(root, "subjects") {
        let kind = s.get("kind").and_then(Value::as_str).unwrap_or_default().to_string();
        if matches!(kind.as_str(), "User" | "Group") {
            default_str(s, "apiGroup", RBAC);
        }
    }
}

fn network_policy(root: &mut Map<String, Value>) {
    let Some(spec) = existing(root, "spec") else { return };
    for dir in ["ingress", "egress"] {
        for rule in each(spec, dir) {
            for port in each(rule, "ports") {
                default(port, "protocol", json!("TCP"));
            }
        }
    }
    if spec
        .get("policyTypes")
        .and_then(Value::as_array)
        .is_none_or(Vec::is_empty)
    {
        let egress = spec
            .get("egress")
            .and_then(Value::as_array)
            .is_some_and(|e| !e.is_empty());
        let types = if egress {
            json!(["Ingress", "Egress"])
        } else {
            json!(["Ingress"])
        };
        spec.insert("policyTypes".into(), types);
    }
}

fn hpa(root: &mut Map<String, Value>) {
    let Some(spec) = existing(root, "spec") else { return };
    default(spec, "minReplicas", json!(1));
    // The autoscaling/v2 form (the stored one): no metrics means 80% CPU.
    if spec.get("metrics").and_then(Value::as_array).is_none_or(Vec::is_empty) {
        spec.insert("metrics".into(), cpu_metric(80));
    }
    let Some(behavior) = existing(spec, "behavior") else {
        return;
    };
    let up = json!({"stabilizationWindowSeconds": 0, "selectPolicy": "Max", "policies": [
        {"type": "Pods", "value": 4, "periodSeconds": 15}, {"type": "Percent", "value": 100, "periodSeconds": 15}]});
    let down = json!({"selectPolicy": "Max", "policies": [{"type": "Percent", "value": 100, "periodSeconds": 15}]});
    for (key, template) in [("scaleUp", up), ("scaleDown", down)] {
        let mut rules = template.as_object().cloned().unwrap_or_default();
        if let Some(given) = behavior.get(key).and_then(Value::as_object) {
            for (k, v) in given {
                if !v.is_null() {
                    rules.insert(k.clone(), v.clone());
                }
            }
        }
        behavior.insert(key.into(), Value::Object(rules));
    }
}

fn cpu_metric(utilization: i64) -> Value {
    json!([{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": utilization}}}])
}

fn limit_range(root: &mut Map<String, Value>) {
    let Some(spec) = existing(root, "spec") else { return };
    for item in each(spec, "limits") {
        let container = item.get("type").and_then(Value::as_str) == Some("Container");
        if container {
            let max = item.get("max").and_then(Value::as_object).cloned().unwrap_or_default();
            let min = item.get("min").and_then(Value::as_object).cloned().unwrap_or_default();
            let mut def = item
                .get("default")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            for (k, v) in &max {
                def.entry(k.clone()).or_insert_with(|| v.clone());
            }
            let mut req = item
                .get("defaultRequest")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            for (k, v) in &def {
                req.entry(k.clone()).or_insert_with(|| v.clone());
            }
            for (k, v) in &min {
                req.entry(k.clone()).or_insert_with(|| v.clone());
            }
            for (key, m) in [("default", def), ("defaultRequest", req)] {
                if m.is_empty() {
                    item.remove(key);
                } else {
                    item.insert(key.into(), Value::Object(m));
                }
            }
        }
        for key in ["max", "min", "default", "defaultRequest", "maxLimitRequestRatio"] {
            if let Some(list) = existing(item, key) {
                for v in list.values_mut() {
                    canonicalize_value(v, true);
                }
            }
        }
    }
}

fn webhooks(root: &mut Map<String, Value>, mutating: bool) {
    for w in each(root, "webhooks") {
        default(w, "failurePolicy", json!("Fail"));
        default(w, "matchPolicy", json!("Equivalent"));
        default(w, "namespaceSelector", json!({}));
        default(w, "objectSelector", json!({}));
        default(w, "timeoutSeconds", json!(10));
        if mutating {
            default(w, "reinvocationPolicy", json!("Never"));
        }
        if let Some(svc) = existing(w, "clientConfig").and_then(|c| existing(c, "service")) {
            default(svc, "port", json!(443));
        }
        for r in each(w, "rules") {
            default(r, "scope", json!("*"));
        }
    }
}

fn match_resources(m: &mut Map<String, Value>) {
    default(m, "matchPolicy", json!("Equivalent"));
    default(m, "namespaceSelector", json!({}));
    default(m, "objectSelector", json!({}));
    for key in ["resourceRules", "excludeResourceRules"] {
        for r in each(m, key) {
            default(r, "scope", json!("*"));
        }
    }
}

fn priority_level(root: &mut Map<String, Value>) {
    let Some(spec) = existing(root, "spec") else { return };
    if let Some(limited) = existing(spec, "limited") {
        default(limited, "nominalConcurrencyShares", json!(30));
        default(limited, "lendablePercent", json!(0));
        if let Some(q) = existing(limited, "limitResponse").and_then(|r| existing(r, "queuing")) {
            for (key, v) in [("handSize", 8), ("queues", 64), ("queueLengthLimit", 50)] {
                if q.get(key).and_then(Value::as_i64).unwrap_or(0) == 0 {
                    q.insert(key.into(), json!(v));
                }
            }
        }
    }
    if let Some(exempt) = existing(spec, "exempt") {
        default(exempt, "nominalConcurrencyShares", json!(0));
        default(exempt, "lendablePercent", json!(0));
    }
}

fn crd(root: &mut Map<String, Value>) {
    let storage = root
        .get("spec")
        .and_then(|s| s.get("versions"))
        .and_then(Value::as_array)
        .and_then(|vs| vs.iter().find(|v| v["storage"] == true))
        .and_then(|v| v["name"].as_str())
        .map(str::to_string);
    if let Some(spec) = existing(root, "spec") {
        if let Some(names) = existing(spec, "names") {
            let kind = names
                .get("kind")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            if !kind.is_empty() {
                default_str(names, "singular", &kind.to_lowercase());
                default_str(names, "listKind", &format!("{kind}List"));
            }
        }
        default(spec, "conversion", json!({"strategy": "None"}));
        if let Some(svc) = existing(spec, "conversion")
            .and_then(|c| existing(c, "webhook"))
            .and_then(|w| existing(w, "clientConfig"))
            .and_then(|c| existing(c, "service"))
        {
            default(svc, "port", json!(443));
        }
    }
    if let Some(v) = storage
        && let Some(status) = child(root, "status")
        && status
            .get("storedVersions")
            .and_then(Value::as_array)
            .is_none_or(Vec::is_empty)
    {
        status.insert("storedVersions".into(), json!([v]));
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::defaults::apply_defaults;

    #[test]
    fn bindings_priority_classes_and_network_policies_get_upstreams_defaults() {
        let mut b = json!({"roleRef": {"kind": "Role", "name": "r"}, "subjects": [{"kind": "User", "name": "u"}, {"kind": "ServiceAccount", "name": "s"}]});
        apply_defaults("rbac.authorization.k8s.io", "RoleBinding", &mut b);
        assert_eq!(b["roleRef"]["apiGroup"], "rbac.authorization.k8s.io");
        assert_eq!(b["subjects"][0]["apiGroup"], "rbac.authorization.k8s.io");
        assert!(b["subjects"][1].get("apiGroup").is_none());
        let mut pc = json!({"value": 5});
        apply_defaults("scheduling.k8s.io", "PriorityClass", &mut pc);
        assert_eq!(pc["preemptionPolicy"], "PreemptLowerPriority");
        let mut np = json!({"spec": {"egress": [{"ports": [{"port": 53}]}]}});
        apply_defaults("networking.k8s.io", "NetworkPolicy", &mut np);
        assert_eq!(np["spec"]["policyTypes"], json!(["Ingress", "Egress"]));
        assert_eq!(np["spec"]["egress"][0]["ports"][0]["protocol"], "TCP");
    }

    #[test]
    fn hpas_limits_webhooks_and_crds_get_upstreams_defaults() {
        let mut hpa = json!({"spec": {"scaleTargetRef": {"kind": "Deployment", "name": "d"}, "maxReplicas": 3, "behavior": {"scaleDown": {"stabilizationWindowSeconds": 60}}}});
        apply_defaults("autoscaling", "HorizontalPodAutoscaler", &mut hpa);
        assert_eq!(hpa["spec"]["minReplicas"], 1);
        assert_eq!(
            hpa["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"],
            80
        );
        assert_eq!(hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"], 60);
        assert_eq!(hpa["spec"]["behavior"]["scaleUp"]["policies"][0]["value"], 4);
        let mut lr =
            json!({"spec": {"limits": [{"type": "Container", "max": {"cpu": "2"}, "min": {"memory": "10Mi"}}]}});
        apply_defaults("", "LimitRange", &mut lr);
        assert_eq!(lr["spec"]["limits"][0]["default"], json!({"cpu": "2"}));
        assert_eq!(
            lr["spec"]["limits"][0]["defaultRequest"],
            json!({"cpu": "2", "memory": "10Mi"})
        );
        let mut w = json!({"webhooks": [{"name": "a.b.c", "clientConfig": {"service": {"name": "s", "namespace": "n"}}, "rules": [{}]}]});
        apply_defaults("admissionregistration.k8s.io", "MutatingWebhookConfiguration", &mut w);
        assert_eq!(w["webhooks"][0]["timeoutSeconds"], 10);
        assert_eq!(w["webhooks"][0]["reinvocationPolicy"], "Never");
        assert_eq!(w["webhooks"][0]["clientConfig"]["service"]["port"], 443);
        assert_eq!(w["webhooks"][0]["rules"][0]["scope"], "*");
        let mut crd = json!({"spec": {"names": {"kind": "Widget", "plural": "widgets"}, "versions": [{"name": "v1", "storage": true}]}});
        apply_defaults("apiextensions.k8s.io", "CustomResourceDefinition", &mut crd);
        assert_eq!(crd["spec"]["names"]["singular"], "widget");
        assert_eq!(crd["spec"]["names"]["listKind"], "WidgetList");
        assert_eq!(crd["spec"]["conversion"]["strategy"], "None");
        assert_eq!(crd["status"]["storedVersions"], json!(["v1"]));
    }
}
