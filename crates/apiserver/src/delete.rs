//! DELETE: `DeleteOptions` (from the body, as kubectl, client-go and kube-rs send them, or
//! from the query) and the deletion itself: preconditions, finalizers for Orphan and
//! Foreground propagation, graceful deletion of pods bound to a node, namespaces that
//! terminate.

use serde_json::{Value, json};
use shoal_api::catalogue::Resource;
use shoal_api::field::FieldError;

use crate::cache::set_resource_version;
use crate::request::{Params, Target};
use crate::rest::{Written, meta_mut};
use crate::status::{ApiError, ApiResult};
use crate::{ApiServer, keys, protobuf};

/// How dependents are treated when their owner is deleted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Propagation {
    /// Dependents lose their reference to the owner and stay.
    Orphan,
    /// The owner waits (`foregroundDeletion` finalizer) until its dependents are gone.
    Foreground,
    /// The owner goes at once; the garbage collector deletes its dependents after.
    Background,
}

/// The options of one DELETE (or of every delete of a DELETE on a collection, or of an
/// eviction).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DeleteOptions {
    /// `gracePeriodSeconds`; negative values are 1, as upstream.
    pub grace_period: Option<i64>,
    /// `propagationPolicy`, or what `orphanDependents` says.
    pub propagation: Option<Propagation>,
    /// `preconditions.uid`.
    pub uid: Option<String>,
    /// `preconditions.resourceVersion`.
    pub resource_version: Option<String>,
    /// `dryRun: [All]`.
    pub dry_run: bool,
    /// Who deletes (`None`: an in-process component), as admission webhooks are told.
    pub who: Option<crate::nodeauth::Identity>,
}

impl DeleteOptions {
    /// The options of a DELETE: its body (JSON or protobuf `DeleteOptions`, possibly empty),
    /// with the query's parameters for what the body leaves out. Either asking for a dry run
    /// makes it one. Malformed or contradictory options are refused before anything changes.
    pub fn from_request(p: &Params, body: &[u8]) -> ApiResult<DeleteOptions> {
        let mut v = if body.iter().all(u8::is_ascii_whitespace) {
            json!({})
        } else if body.starts_with(protobuf::MAGIC) {
            protobuf::decode(body).map_err(ApiError::bad_request)?
        } else {
            serde_json::from_slice::<Value>(body)
                .map_err(|e| ApiError::bad_request(format!("invalid DeleteOptions: {e}")))?
        };
        if !v.is_object() {
            return Err(ApiError::bad_request(
                "invalid DeleteOptions: the body must be a JSON object",
            ));
        }
        if v.get("propagationPolicy").is_none_or(Value::is_null)
            && let Some(pp) = p.get("propagationPolicy")
        {
            v["propagationPolicy"] = json!(pp);
        }
        if v.get("gracePeriodSeconds").is_none_or(Value::is_null)
            && let Some(g) = p.int("gracePeriodSeconds")?
        {
            v["gracePeriodSeconds"] = json!(g);
        }
        if v.get("orphanDependents").is_none_or(Value::is_null) {
            match p.get("orphanDependents") {
                None => {}
                Some("true") => v["orphanDependents"] = json!(true),
                Some("false") => v["orphanDependents"] = json!(false),
                Some(other) => {
                    return Err(ApiError::bad_request(format!(
                        "invalid value for orphanDependents: {other:?}"
                    )));
                }
            }
        }
        let mut opts = Self::from_value(&v)?;
        opts.dry_run |= p.dry_run()?;
        Ok(opts)
    }

    /// Options from a `DeleteOptions` object (a DELETE's body, an Eviction's
    /// `deleteOptions`), decoded through its API type and validated as upstream.
    pub fn from_value(v: &Value) -> ApiResult<DeleteOptions> {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
        let typed: meta::DeleteOptions = serde_json::from_value(v.clone())
            .map_err(|e| ApiError::bad_request(format!("invalid DeleteOptions: {e}")))?;
        let mut errors = Vec::new();
        if typed.orphan_dependents.is_some()
            && let Some(pp) = &typed.propagation_policy
        {
            errors.push(FieldError::invalid(
                "propagationPolicy",
                json!(pp),
                "orphanDependents and deletionPropagation cannot be both set",
            ));
        }
        let propagation = match (typed.propagation_policy.as_deref(), typed.orphan_dependents) {
            (Some("Orphan"), _) => Some(Propagation::Orphan),
            (Some("Foreground"), _) => Some(Propagation::Foreground),
            (Some("Background"), _) => Some(Propagation::Background),
            (Some(other), _) => {
                errors.push(FieldError::not_supported(
                    "propagationPolicy",
                    json!(other),
                    &["Foreground", "Background", "Orphan", "nil"],
                ));
                None
            }
            (None, Some(true)) => Some(Propagation::Orphan),
            (None, Some(false)) => Some(Propagation::Background),
            (None, None) => None,
        };
        let dry_run = typed.dry_run.unwrap_or_default();
        if dry_run.iter().any(|d| d != "All") {
            errors.push(FieldError::not_supported("dryRun", json!(dry_run), &["All"]));
        }
        if !errors.is_empty() {
            return Err(ApiError::invalid_options("DeleteOptions", &errors));
        }
        let preconditions = typed.preconditions.unwrap_or_default();
        Ok(DeleteOptions {
            grace_period: typed.grace_period_seconds.map(|g| if g < 0 { 1 } else { g }),
            propagation,
            uid: preconditions.uid,
            resource_version: preconditions.resource_version,
            dry_run: !dry_run.is_empty(),
            who: None,
        })
    }

    /// These options for a delete by `who` (`None`: an in-process client).
    pub fn by(mut self, who: Option<&crate::nodeauth::Identity>) -> DeleteOptions {
        self.who = who.cloned();
        self
    }

    /// The propagation of this delete of `res`: as asked, else the resource's default
    /// (Orphan for the core group's ReplicationController, as upstream; Background else).
    fn propagation_for(&self, res: &Resource) -> Propagation {
        match self.propagation {
            Some(p) => p,
            None if res.kind == "ReplicationController" => Propagation::Orphan,
            None => Propagation::Background,
        }
    }
}

/// The grace period of deleting `pod`: the request's, else the pod's
/// `terminationGracePeriodSeconds`, else 30 s; never negative (a negative one is 1 s).
fn grace_period(pod: &Value, opts: &DeleteOptions) -> i64 {
    let g = opts
        .grace_period
        .or_else(|| pod["spec"]["terminationGracePeriodSeconds"].as_i64())
        .unwrap_or(30);
    if g < 0 { 1 } else { g }
}

/// Pods bound to a node are deleted gracefully (the node finishes the delete) unless the
/// grace period is zero; unscheduled or finished pods go at once, as upstream.
fn pod_needs_graceful_delete(pod: &Value, opts: &DeleteOptions) -> bool {
    let bound = pod["spec"]["nodeName"].as_str().is_some_and(|n| !n.is_empty());
    let finished = matches!(pod["status"]["phase"].as_str(), Some("Succeeded" | "Failed"));
    bound && !finished && grace_period(pod, opts) > 0
}

/// Sets when a graceful deletion ends: `deletionTimestamp` is now plus `grace` seconds
/// (saturating far in the future for huge grace periods), `deletionGracePeriodSeconds` the
/// period itself.
fn set_deletion_deadline(meta: &mut serde_json::Map<String, Value>, grace: i64) {
    let when = shoal_api::time::add_seconds(jiff::Timestamp::now(), grace);
    meta.insert("deletionTimestamp".into(), json!(shoal_api::time::rfc3339(when)));
    meta.insert("deletionGracePeriodSeconds".into(), json!(grace));
}

impl ApiServer {
    /// Validating admission webhooks of a delete of `obj`.
    async fn admit_delete(&self, t: &Target, obj: &Value, opts: &DeleteOptions) -> ApiResult<()> {
        let write = crate::rest::WriteOptions {
            dry_run: opts.dry_run,
            who: opts.who.clone(),
            ..Default::default()
        };
        let attempt = crate::webhooks::Attempt {
            op: crate::webhooks::Operation::Delete,
            t,
            obj: None,
            old: Some(obj),
            opts: &write,
        };
        self.validate_dynamically(&attempt).await.map(|_| ())
    }

    /// DELETE of one object. Answers 200 with the object as deleted (at the deletion's
    /// resourceVersion), or 202 with the object marked for deletion when finalizers, a
    /// node or the namespace controller finish it.
    pub async fn delete(&self, t: &Target, opts: &DeleteOptions) -> ApiResult<(u16, Written)> {
        let res = t.res;
        let name = t.name.clone().unwrap_or_default();
        if (res.group, res.plural) == ("scheduling.k8s.io", "priorityclasses")
            && crate::bootstrap::is_system_priority_class(&name)
        {
            return Err(crate::admission::forbidden(
                res,
                &name,
                "this is a system priority class and cannot be deleted",
            ));
        }
        for attempt in 0..16 {
            let current = self.get_object(t)?;
            let decoded = current.obj();
            let obj = &decoded;
            if attempt == 0 {
                self.admit_delete(t, obj, opts).await?;
            }
            if let Some(uid) = &opts.uid {
                let have = obj["metadata"]["uid"].as_str().unwrap_or_default();
                if uid != have {
                    return Err(ApiError::conflict_with(
                        res,
                        &name,
                        &format!("Precondition failed: UID in precondition: {uid}, UID in object meta: {have}"),
                    ));
                }
            }
            if let Some(rv) = &opts.resource_version {
                let have = current.mod_revision.to_string();
                if *rv != have {
                    return Err(ApiError::conflict_with(
                        res,
                        &name,
                        &format!(
                            "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {have}"
                        ),
                    ));
                }
            }
            let mut finalizers: Vec<Value> = obj["metadata"]["finalizers"].as_array().cloned().unwrap_or_default();
            let add = |f: &mut Vec<Value>, name: &str| {
                if !f.iter().any(|v| v == name) {
                    f.push(json!(name));
                }
            };
            match opts.propagation_for(res) {
                Propagation::Orphan => add(&mut finalizers, "orphan"),
                Propagation::Foreground => add(&mut finalizers, "foregroundDeletion"),
                Propagation::Background => {}
            }
            // A definition goes once its objects are gone: the CRD registry deletes them,
            // then removes this finalizer (upstream's customresourcecleanup).
            if (res.group, res.kind) == ("apiextensions.k8s.io", "CustomResourceDefinition") {
                add(&mut finalizers, crate::crds::CLEANUP_FINALIZER);
            }
            let graceful_pod = res.kind == "Pod" && pod_needs_graceful_delete(obj, opts);
            let namespace = res.kind == "Namespace";
            if finalizers.is_empty() && !graceful_pod && !namespace {
                if opts.dry_run {
                    return Ok((200, Written::from_entry(&current, Vec::new())));
                }
                let key = keys::object(res, t.namespace.as_deref(), &name);
                match self.store.delete(&key, current.mod_revision).await {
                    Ok((rev, _)) => {
                        self.cache.wait_for(rev).await;
                        let mut gone = decoded;
                        set_resource_version(&mut gone, rev);
                        return Ok((200, Written::from_value(gone, Vec::new())));
                    }
                    Err(shoal_store::Error::Conflict { current, .. }) => {
                        // Retried once the cache shows the write that won: reading the same
                        // stale entry again would only conflict again.
                        self.cache.wait_for(current.mod_revision).await;
                        continue;
                    }
                    Err(shoal_store::Error::NotFound(_)) => return Err(ApiError::not_found(res, &name)),
                    Err(e) => return Err(e.into()),
                }
            }
            // Deletion in progress: mark it, and let finalizers, the kubelet or the namespace
            // controller finish.
            let mut updated = obj.clone();
            let meta = meta_mut(&mut updated);
            if !meta.contains_key("deletionTimestamp") {
                set_deletion_deadline(meta, if graceful_pod { grace_period(obj, opts) } else { 0 });
                if let Some(g) = meta.get("generation").and_then(Value::as_i64) {
                    meta.insert("generation".into(), json!(g.saturating_add(1)));
                }
            } else if let Some(requested) = opts.grace_period {
                // A second delete may shorten the grace period, never lengthen it.
                let current_grace = meta
                    .get("deletionGracePeriodSeconds")
                    .and_then(Value::as_i64)
                    .unwrap_or(0);
                if requested < current_grace {
                    set_deletion_deadline(meta, requested);
                }
            }
            if !finalizers.is_empty() {
                meta.insert("finalizers".into(), Value::Array(finalizers));
            }
            if namespace {
                updated["status"]["phase"] = json!("Terminating");
            }
            if updated == *obj {
                return Ok((202, Written::from_entry(&current, Vec::new())));
            }
            if opts.dry_run {
                return Ok((202, Written::from_value(updated, Vec::new())));
            }
            let key = keys::object(res, t.namespace.as_deref(), &name);
            meta_mut(&mut updated).remove("resourceVersion");
            let bytes = crate::cache::json_bytes(&updated).map_err(|e| ApiError::internal(e.to_string()))?;
            match self.store.update(&key, bytes, current.mod_revision).await {
                Ok(rev) => {
                    self.cache.wait_for(rev).await;
                    set_resource_version(&mut updated, rev);
                    return Ok((202, self.written_at(&key, rev, updated, Vec::new())));
                }
                Err(shoal_store::Error::Conflict { current, .. }) => {
                    // Retried once the cache shows the write that won: reading the same
                    // stale entry again would only conflict again.
                    self.cache.wait_for(current.mod_revision).await;
                    continue;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(ApiError::conflict(res, &name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(query: &str, body: &str) -> ApiResult<DeleteOptions> {
        DeleteOptions::from_request(&Params::parse(Some(query)), body.as_bytes())
    }

    #[test]
    fn unbound_pods_are_deleted_at_once() {
        let o = DeleteOptions::default();
        assert!(!pod_needs_graceful_delete(&json!({"spec":{}}), &o));
        assert!(pod_needs_graceful_delete(&json!({"spec":{"nodeName":"n1"}}), &o));
        let now = DeleteOptions {
            grace_period: Some(0),
            ..Default::default()
        };
        assert!(!pod_needs_graceful_delete(&json!({"spec":{"nodeName":"n1"}}), &now));
    }

    #[test]
    fn the_body_carries_every_option() {
        let o = opts(
            "",
            r#"{"kind":"DeleteOptions","apiVersion":"v1","dryRun":["All"],"gracePeriodSeconds":7,
                "propagationPolicy":"Foreground","preconditions":{"uid":"u","resourceVersion":"5"}}"#,
        )
        .unwrap();
        assert_eq!(
            o,
            DeleteOptions {
                grace_period: Some(7),
                propagation: Some(Propagation::Foreground),
                uid: Some("u".into()),
                resource_version: Some("5".into()),
                dry_run: true,
                who: None,
            }
        );
        assert_eq!(
            opts("", r#"{"orphanDependents":true}"#).unwrap().propagation,
            Some(Propagation::Orphan)
        );
    }

    #[test]
    fn the_query_fills_in_and_either_asks_for_a_dry_run() {
        let o = opts("dryRun=All&gracePeriodSeconds=3&propagationPolicy=Orphan", "{}").unwrap();
        assert!(o.dry_run);
        assert_eq!((o.grace_period, o.propagation), (Some(3), Some(Propagation::Orphan)));
        let o = opts("gracePeriodSeconds=3", r#"{"gracePeriodSeconds":9}"#).unwrap();
        assert_eq!(o.grace_period, Some(9), "the body wins");
        assert!(opts("dryRun=All", r#"{"gracePeriodSeconds":9}"#).unwrap().dry_run);
    }

    #[test]
    fn bad_options_are_refused_as_upstream() {
        let e = opts("", r#"{"dryRun":["Some"]}"#).unwrap_err();
        assert_eq!((e.code, e.reason), (422, "Invalid"));
        assert!(
            e.message
                .starts_with("DeleteOptions.meta.k8s.io \"\" is invalid: dryRun: Unsupported value")
        );
        let e = opts("", r#"{"orphanDependents":false,"propagationPolicy":"Background"}"#).unwrap_err();
        assert_eq!(
            e.message,
            "DeleteOptions.meta.k8s.io \"\" is invalid: propagationPolicy: Invalid value: \"Background\": orphanDependents and deletionPropagation cannot be both set"
        );
        assert_eq!(e.details.unwrap()["causes"][0]["field"], "propagationPolicy");
        assert_eq!(opts("", r#"{"propagationPolicy":"Later"}"#).unwrap_err().code, 422);
        assert_eq!(opts("", r#"{"gracePeriodSeconds":"soon"}"#).unwrap_err().code, 400);
        assert_eq!(opts("", "[1]").unwrap_err().code, 400);
        assert_eq!(opts("gracePeriodSeconds=x", "").unwrap_err().code, 400);
        assert_eq!(opts("dryRun=Maybe", "").unwrap_err().code, 400);
    }

    #[test]
    fn grace_periods_are_never_negative_and_any_size_makes_a_deadline() {
        let o = opts("gracePeriodSeconds=-5", "").unwrap();
        assert_eq!(o.grace_period, Some(1), "negative is 1 s, as upstream");
        let pod = json!({"spec": {"terminationGracePeriodSeconds": -3, "nodeName": "n"}});
        assert_eq!(grace_period(&pod, &DeleteOptions::default()), 1);
        for grace in [i64::MAX, i64::MAX - 1, 9_223_372_036, 0] {
            let mut meta = serde_json::Map::new();
            set_deletion_deadline(&mut meta, grace);
            assert_eq!(meta["deletionGracePeriodSeconds"], json!(grace));
            assert!(meta["deletionTimestamp"].as_str().is_some());
        }
    }
}
