//! Per-kind storage strategy: decoding through the upstream types, what create and update
//! may change, generation tracking, and the status subresource split.

use k8s_openapi::api::{
    admissionregistration, apps, authentication, authorization, autoscaling, batch, certificates, coordination, core,
    discovery, events, flowcontrol, networking, node, policy, rbac, scheduling, storage,
};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1 as apiextensions;
use k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1 as apiregistration;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use shoal_api::catalogue::Resource;

use crate::status::{ApiError, ApiResult};

fn roundtrip<T: DeserializeOwned + Serialize>(res: &Resource, v: Value) -> ApiResult<Value> {
    let typed: T = serde_json::from_value(v).map_err(|e| {
        ApiError::bad_request(format!(
            "{kind} in version \"{version}\" cannot be handled as a {kind}: {e}",
            kind = res.kind,
            version = res.version
        ))
    })?;
    serde_json::to_value(typed).map_err(|e| ApiError::internal(e.to_string()))
}

/// Decodes `v` as the resource's upstream type and encodes it again, as upstream's decoder
/// does: wrongly typed fields are a 400, unknown fields are dropped.
pub fn normalize(res: &Resource, v: Value) -> ApiResult<Value> {
    let mut out = decode_typed(res, v)?;
    drop_empty_metadata(&mut out);
    Ok(out)
}

/// Empty `omitempty` members of ObjectMeta are left out, as Go's encoder does (removing the
/// last label leaves no `labels: {}` behind).
fn drop_empty_metadata(obj: &mut Value) {
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        for k in [
            "labels",
            "annotations",
            "ownerReferences",
            "finalizers",
            "managedFields",
        ] {
            let empty = match meta.get(k) {
                Some(Value::Array(a)) => a.is_empty(),
                Some(Value::Object(m)) => m.is_empty(),
                Some(Value::Null) => true,
                _ => false,
            };
            if empty {
                meta.remove(k);
            }
        }
    }
}

fn decode_typed(res: &Resource, v: Value) -> ApiResult<Value> {
    use apps::v1 as a;
    use core::v1 as c;
    match (res.group, res.kind) {
        ("", "Namespace") => roundtrip::<c::Namespace>(res, v),
        ("", "Node") => roundtrip::<c::Node>(res, v),
        ("", "Pod") => roundtrip::<c::Pod>(res, v),
        ("", "Service") => roundtrip::<c::Service>(res, v),
        ("", "Endpoints") => roundtrip::<c::Endpoints>(res, v),
        ("", "Event") => roundtrip::<c::Event>(res, v),
        ("", "ConfigMap") => roundtrip::<c::ConfigMap>(res, v),
        ("", "Secret") => roundtrip::<c::Secret>(res, v),
        ("", "ServiceAccount") => roundtrip::<c::ServiceAccount>(res, v),
        ("", "PersistentVolume") => roundtrip::<c::PersistentVolume>(res, v),
        ("", "PersistentVolumeClaim") => roundtrip::<c::PersistentVolumeClaim>(res, v),
        ("", "ReplicationController") => roundtrip::<c::ReplicationController>(res, v),
        ("apps", "ControllerRevision") => roundtrip::<a::ControllerRevision>(res, v),
        ("apps", "DaemonSet") => roundtrip::<a::DaemonSet>(res, v),
        ("apps", "Deployment") => roundtrip::<a::Deployment>(res, v),
        ("apps", "ReplicaSet") => roundtrip::<a::ReplicaSet>(res, v),
        ("apps", "StatefulSet") => roundtrip::<a::StatefulSet>(res, v),
        ("batch", "Job") => roundtrip::<batch::v1::Job>(res, v),
        ("batch", "CronJob") => roundtrip::<batch::v1::CronJob>(res, v),
        ("coordination.k8s.io", "Lease") => roundtrip::<coordination::v1::Lease>(res, v),
        ("discovery.k8s.io", "EndpointSlice") => roundtrip::<discovery::v1::EndpointSlice>(res, v),
        ("events.k8s.io", "Event") => roundtrip::<events::v1::Event>(res, v),
        ("storage.k8s.io", "StorageClass") => roundtrip::<storage::v1::StorageClass>(res, v),
        ("", "ComponentStatus") => roundtrip::<c::ComponentStatus>(res, v),
        ("", "LimitRange") => roundtrip::<c::LimitRange>(res, v),
        ("", "PodTemplate") => roundtrip::<c::PodTemplate>(res, v),
        ("", "ResourceQuota") => roundtrip::<c::ResourceQuota>(res, v),
        ("", "Binding") => roundtrip::<c::Binding>(res, v),
        ("admissionregistration.k8s.io", kind) => {
            use admissionregistration::v1 as ar;
            match kind {
                "MutatingWebhookConfiguration" => roundtrip::<ar::MutatingWebhookConfiguration>(res, v),
                "ValidatingWebhookConfiguration" => roundtrip::<ar::ValidatingWebhookConfiguration>(res, v),
                "ValidatingAdmissionPolicy" => roundtrip::<ar::ValidatingAdmissionPolicy>(res, v),
                "ValidatingAdmissionPolicyBinding" => roundtrip::<ar::ValidatingAdmissionPolicyBinding>(res, v),
                _ => Ok(v),
            }
        }
        ("apiextensions.k8s.io", "CustomResourceDefinition") => {
            roundtrip::<apiextensions::CustomResourceDefinition>(res, v)
        }
        ("apiregistration.k8s.io", "APIService") => roundtrip::<apiregistration::APIService>(res, v),
        ("authentication.k8s.io", "SelfSubjectReview") => roundtrip::<authentication::v1::SelfSubjectReview>(res, v),
        ("authentication.k8s.io", "TokenReview") => roundtrip::<authentication::v1::TokenReview>(res, v),
        ("authorization.k8s.io", kind) => {
            use authorization::v1 as az;
            match kind {
                "LocalSubjectAccessReview" => roundtrip::<az::LocalSubjectAccessReview>(res, v),
                "SelfSubjectAccessReview" => roundtrip::<az::SelfSubjectAccessReview>(res, v),
                "SelfSubjectRulesReview" => roundtrip::<az::SelfSubjectRulesReview>(res, v),
                "SubjectAccessReview" => roundtrip::<az::SubjectAccessReview>(res, v),
                _ => Ok(v),
            }
        }
        ("autoscaling", "HorizontalPodAutoscaler") if res.version == "v1" => {
            roundtrip::<autoscaling::v1::HorizontalPodAutoscaler>(res, v)
        }
        ("autoscaling", "HorizontalPodAutoscaler") => roundtrip::<autoscaling::v2::HorizontalPodAutoscaler>(res, v),
        ("certificates.k8s.io", "CertificateSigningRequest") => {
            roundtrip::<certificates::v1::CertificateSigningRequest>(res, v)
        }
        ("flowcontrol.apiserver.k8s.io", "FlowSchema") => roundtrip::<flowcontrol::v1::FlowSchema>(res, v),
        ("flowcontrol.apiserver.k8s.io", "PriorityLevelConfiguration") => {
            roundtrip::<flowcontrol::v1::PriorityLevelConfiguration>(res, v)
        }
        ("networking.k8s.io", kind) => {
            use networking::v1 as n;
            match kind {
                "Ingress" => roundtrip::<n::Ingress>(res, v),
                "IngressClass" => roundtrip::<n::IngressClass>(res, v),
                "IPAddress" => roundtrip::<n::IPAddress>(res, v),
                "NetworkPolicy" => roundtrip::<n::NetworkPolicy>(res, v),
                "ServiceCIDR" => roundtrip::<n::ServiceCIDR>(res, v),
                _ => Ok(v),
            }
        }
        ("node.k8s.io", "RuntimeClass") => roundtrip::<node::v1::RuntimeClass>(res, v),
        ("policy", "PodDisruptionBudget") => roundtrip::<policy::v1::PodDisruptionBudget>(res, v),
        ("rbac.authorization.k8s.io", kind) => {
            use rbac::v1 as r;
            match kind {
                "ClusterRole" => roundtrip::<r::ClusterRole>(res, v),
                "ClusterRoleBinding" => roundtrip::<r::ClusterRoleBinding>(res, v),
                "Role" => roundtrip::<r::Role>(res, v),
                "RoleBinding" => roundtrip::<r::RoleBinding>(res, v),
                _ => Ok(v),
            }
        }
        ("scheduling.k8s.io", "PriorityClass") => roundtrip::<scheduling::v1::PriorityClass>(res, v),
        ("storage.k8s.io", "CSIDriver") => roundtrip::<storage::v1::CSIDriver>(res, v),
        ("storage.k8s.io", "CSINode") => roundtrip::<storage::v1::CSINode>(res, v),
        ("storage.k8s.io", "CSIStorageCapacity") => roundtrip::<storage::v1::CSIStorageCapacity>(res, v),
        ("storage.k8s.io", "VolumeAttachment") => roundtrip::<storage::v1::VolumeAttachment>(res, v),
        _ => Ok(v),
    }
}

/// Fills in the status upstream always writes: its types hold a status struct (not a
/// pointer), so an object without one is encoded with its empty status (`{}`, the
/// non-optional counters at 0, a Service's `{"loadBalancer": {}}`). Run on what is about to
/// be stored.
pub fn fill_status(res: &Resource, obj: &mut Value) {
    // A custom object has no typed status: it is stored as written, never `{}` added.
    if !has_status(res) || shoal_api::catalogue::is_custom(res) {
        return;
    }
    let mut changed = false;
    if !obj["status"].is_object() {
        obj["status"] = json!({});
        changed = true;
    }
    if matches!(
        (res.group, res.kind),
        ("", "Service") | ("networking.k8s.io", "Ingress")
    ) && !obj["status"]["loadBalancer"].is_object()
    {
        obj["status"]["loadBalancer"] = json!({});
    }
    // The typed encoding of an empty status writes what upstream's encoder writes for one
    // (only the status is taken from it: the rest of the object stays as it is).
    if changed
        && let Ok(typed) = decode_typed(
            res,
            json!({"apiVersion": res.api_version(), "kind": res.kind, "metadata": {}, "status": obj["status"].clone()}),
        )
        && typed["status"].is_object()
    {
        obj["status"] = typed["status"].clone();
    }
}

/// Kinds whose `metadata.generation` counts spec changes.
pub fn tracks_generation(res: &Resource) -> bool {
    shoal_api::catalogue::is_custom(res)
        || matches!(
            res.kind,
            "DaemonSet"
                | "Deployment"
                | "ReplicaSet"
                | "StatefulSet"
                | "ReplicationController"
                | "Job"
                | "CronJob"
                | "Pod"
                | "PodTemplate"
                | "PodDisruptionBudget"
                | "NetworkPolicy"
                | "Ingress"
                | "IngressClass"
                | "CustomResourceDefinition"
                | "ValidatingWebhookConfiguration"
                | "MutatingWebhookConfiguration"
                | "ValidatingAdmissionPolicy"
                | "ValidatingAdmissionPolicyBinding"
                | "FlowSchema"
                | "PriorityLevelConfiguration"
        )
}

/// True when the resource has a status subresource: the main resource then ignores status.
pub fn has_status(res: &Resource) -> bool {
    res.subresource("status").is_some()
}

/// Everything but metadata and status: what a generation counts.
pub fn spec_of(obj: &Value) -> Value {
    match obj {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| !matches!(k.as_str(), "metadata" | "status" | "apiVersion" | "kind"))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Resets what a create may not set, as upstream's `PrepareForCreate`: status (set by
/// controllers through the status subresource) and the generation. Kind-specific create-time
/// values (pod and namespace status, default tolerations, ...) come from
/// [`shoal_api::defaults::prepare_for_create`].
pub fn prepare_create(res: &Resource, obj: &mut Value) {
    match res.kind {
        // Nodes may report status on create (kubelets register with it).
        "Node" => {}
        "PersistentVolume" | "PersistentVolumeClaim" => {
            obj["status"] = json!({"phase": "Pending"});
        }
        _ if has_status(res) => {
            if let Some(m) = obj.as_object_mut() {
                m.remove("status");
            }
        }
        _ => {}
    }
    if tracks_generation(res) {
        obj["metadata"]["generation"] = json!(1);
    }
    if (res.group, res.kind) == ("apps", "DaemonSet") {
        // A client may start the template generation higher, never lower than 1.
        let given = template_generation(obj).max(1);
        set_template_generation(obj, given);
    }
}

/// The annotation through which apps/v1 exposes a DaemonSet's template generation.
pub const TEMPLATE_GENERATION: &str = "deprecated.daemonset.template.generation";

fn template_generation(obj: &Value) -> i64 {
    obj["metadata"]["annotations"][TEMPLATE_GENERATION]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn set_template_generation(obj: &mut Value, generation: i64) {
    if !obj["metadata"]["annotations"].is_object() {
        obj["metadata"]["annotations"] = json!({});
    }
    obj["metadata"]["annotations"][TEMPLATE_GENERATION] = json!(generation.to_string());
}

/// Carries over what an update of the main resource may not change, and bumps the generation
/// when the spec changed, as upstream's `PrepareForUpdate`.
pub fn prepare_update(res: &Resource, new: &mut Value, old: &Value) {
    if has_status(res) {
        match old.get("status") {
            Some(s) => new["status"] = s.clone(),
            None => {
                if let Some(m) = new.as_object_mut() {
                    m.remove("status");
                }
            }
        }
    }
    if (res.group, res.kind) == ("apps", "DaemonSet") {
        // Clients cannot set the template generation; it counts template changes.
        let previous = template_generation(old).max(1);
        let changed = new["spec"]["template"] != old["spec"]["template"];
        set_template_generation(new, previous.saturating_add(i64::from(changed)));
    }
    let old_gen = old["metadata"]["generation"].as_i64().unwrap_or(0);
    if tracks_generation(res) {
        let generation = if spec_of(new) != spec_of(old) {
            old_gen.saturating_add(1)
        } else {
            old_gen.max(1)
        };
        new["metadata"]["generation"] = json!(generation);
    } else if old_gen > 0 {
        new["metadata"]["generation"] = json!(old_gen);
    }
}

/// Whether a status write keeps the request's metadata (labels, annotations, finalizers,
/// owners), as upstream's status strategies for Jobs and CronJobs do (they reset only the
/// spec); every other kind's status write keeps the stored metadata.
pub fn status_keeps_metadata(res: &Resource) -> bool {
    matches!((res.group, res.kind), ("batch", "Job" | "CronJob"))
}

/// The object a status write produces: the old object with the new status (and, for the
/// kinds of [`status_keeps_metadata`], the new metadata but for its generation), as
/// upstream's status strategies do.
pub fn status_update(res: &Resource, new: &Value, old: &Value) -> Value {
    let mut out = old.clone();
    if status_keeps_metadata(res) && new["metadata"].is_object() {
        out["metadata"] = new["metadata"].clone();
        match old["metadata"].get("generation") {
            Some(g) => out["metadata"]["generation"] = g.clone(),
            None => {
                if let Some(m) = out["metadata"].as_object_mut() {
                    m.remove("generation");
                }
            }
        }
    }
    match new.get("status") {
        Some(s) => out["status"] = s.clone(),
        None => {
            if let Some(m) = out.as_object_mut() {
                m.remove("status");
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_api::catalogue::find;

    #[test]
    fn normalize_drops_unknown_fields_and_refuses_wrong_types() {
        let ds = find("apps", "v1", "daemonsets").unwrap();
        let v = json!({"apiVersion":"apps/v1","kind":"DaemonSet","metadata":{"name":"x"},"spec":{"bogus":1,"minReadySeconds":3}});
        let out = normalize(ds, v).unwrap();
        assert_eq!(out["spec"]["minReadySeconds"], 3);
        assert!(out["spec"].get("bogus").is_none());
        let bare = normalize(ds, json!({"metadata":{"name":"x","labels":{},"ownerReferences":[]}})).unwrap();
        assert_eq!(bare["metadata"], json!({"name": "x"}));
        let bad =
            json!({"apiVersion":"apps/v1","kind":"DaemonSet","metadata":{"name":"x"},"spec":{"minReadySeconds":"x"}});
        let err = normalize(ds, bad).unwrap_err();
        assert_eq!(err.code, 400);
        assert!(
            err.message
                .starts_with("DaemonSet in version \"v1\" cannot be handled as a DaemonSet"),
            "{}",
            err.message
        );
    }

    #[test]
    fn daemonset_template_generation_counts_template_changes() {
        let ds = find("apps", "v1", "daemonsets").unwrap();
        let mut created = json!({"metadata":{"name":"x"},"spec":{"template":{"spec":{"containers":[]}}}});
        prepare_create(ds, &mut created);
        assert_eq!(created["metadata"]["annotations"][TEMPLATE_GENERATION], "1");
        let mut relabelled = created.clone();
        relabelled["metadata"]["annotations"][TEMPLATE_GENERATION] = json!("7");
        relabelled["spec"]["minReadySeconds"] = json!(3);
        prepare_update(ds, &mut relabelled, &created);
        assert_eq!(
            relabelled["metadata"]["annotations"][TEMPLATE_GENERATION], "1",
            "hand edits are ignored"
        );
        let mut changed = relabelled.clone();
        changed["spec"]["template"]["metadata"] = json!({"labels": {"a": "b"}});
        prepare_update(ds, &mut changed, &relabelled);
        assert_eq!(changed["metadata"]["annotations"][TEMPLATE_GENERATION], "2");
    }

    #[test]
    fn spec_changes_bump_generation_and_status_is_kept() {
        let ds = find("apps", "v1", "daemonsets").unwrap();
        let old = json!({"metadata":{"generation":2},"spec":{"minReadySeconds":1},"status":{"numberReady":3}});
        let mut same = json!({"metadata":{"labels":{"a":"b"}},"spec":{"minReadySeconds":1},"status":{"numberReady":0}});
        prepare_update(ds, &mut same, &old);
        assert_eq!(same["metadata"]["generation"], 2);
        assert_eq!(same["status"]["numberReady"], 3);
        let mut changed = json!({"metadata":{},"spec":{"minReadySeconds":5}});
        prepare_update(ds, &mut changed, &old);
        assert_eq!(changed["metadata"]["generation"], 3);
    }
}
