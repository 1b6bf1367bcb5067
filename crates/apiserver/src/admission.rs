//! Admission: what upstream's built-in admission plugins decide about a write, between
//! defaulting and storage.
//!
//! - **Priority**: a pod's `priorityClassName` must name a PriorityClass; the pod takes the
//!   class's value and preemption policy (or the global default class's, or 0); at most one
//!   PriorityClass is the global default; the built-in classes cannot be deleted.
//! - **LimitRanger**: pods get their namespace's container defaults, and pods and claims
//!   are held to its min / max / ratio limits.
//! - **ResourceQuota**: a create that would take a namespace over a quota's `status.hard`
//!   is refused, and an admitted one is charged to `status.used` at once (the quota
//!   controller recounts it later), serialised so that racing creates cannot both fit.
//!
//! Refusals are 403 Forbidden, worded as upstream (`pods "web" is forbidden: ...`).

use serde_json::{Value, json};
use shoal_api::catalogue::{self, Resource};
use shoal_api::{limits, quota};

use crate::request::Target;
use crate::rest::WriteOptions;
use crate::status::{ApiError, ApiResult};
use crate::{ApiServer, keys};

/// A 403 about one object, as upstream's admission plugins phrase it.
pub fn forbidden(res: &Resource, name: &str, why: &str) -> ApiError {
    let name = if name.is_empty() { "Unknown" } else { name };
    ApiError::forbidden(format!("{} \"{name}\" is forbidden: {why}", res.qualified())).with_details(json!({
        "name": name,
        "group": res.group,
        "kind": res.plural,
    }))
}

pub(crate) fn name_of(obj: &Value) -> &str {
    let meta = &obj["metadata"];
    meta["name"]
        .as_str()
        .filter(|n| !n.is_empty())
        .or_else(|| meta["generateName"].as_str())
        .unwrap_or_default()
}

impl ApiServer {
    pub(crate) fn all_of(&self, group: &str, plural: &str, namespace: Option<&str>) -> Vec<Value> {
        self.all_where(group, plural, namespace, |_| true)
    }

    /// The objects of a resource whose stored JSON passes `keep` (a cheap look at the bytes
    /// before any is decoded).
    fn all_where(
        &self,
        group: &str,
        plural: &str,
        namespace: Option<&str>,
        keep: impl Fn(&[u8]) -> bool,
    ) -> Vec<Value> {
        let Some(res) = catalogue::find_plural(group, plural) else {
            return Vec::new();
        };
        let (items, _, _) = self.cache.list(&keys::collection(res, namespace), None, 0, |_| true);
        items.iter().filter(|e| keep(&e.json())).map(|e| e.obj()).collect()
    }

    /// Mutating admission of a create: priority and LimitRange defaults of pods.
    pub(crate) fn admit_create(&self, res: &Resource, obj: &mut Value) -> ApiResult<()> {
        if (res.group, res.plural) != ("", "pods") {
            return Ok(());
        }
        self.admit_priority(res, obj)?;
        let ns = obj["metadata"]["namespace"].as_str().unwrap_or_default().to_string();
        let ranges = self.all_of("", "limitranges", Some(&ns));
        if !ranges.is_empty() {
            limits::default_pod(obj, &ranges);
        }
        Ok(())
    }

    /// The Priority plugin on a pod create.
    fn admit_priority(&self, res: &Resource, pod: &mut Value) -> ApiResult<()> {
        let name = name_of(pod).to_string();
        let class_name = pod["spec"]["priorityClassName"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        // Only the classes that can matter are decoded: the named one, or those claiming to
        // be the global default.
        let classes = if class_name.is_empty() {
            let marker: &[u8] = b"\"globalDefault\":true";
            self.all_where("scheduling.k8s.io", "priorityclasses", None, |raw| {
                raw.windows(marker.len()).any(|w| w == marker)
            })
        } else {
            let res =
                catalogue::find("scheduling.k8s.io", "v1", "priorityclasses").expect("priorityclasses are served");
            self.cache
                .get(&keys::object(res, None, &class_name))
                .map(|e| e.obj())
                .into_iter()
                .collect()
        };
        let class = if class_name.is_empty() {
            // The global default: the lowest-valued one if several claim it.
            classes
                .iter()
                .filter(|c| c["globalDefault"] == true)
                .min_by_key(|c| c["value"].as_i64().unwrap_or(0))
        } else {
            let found = classes.iter().find(|c| c["metadata"]["name"] == class_name.as_str());
            if found.is_none() {
                return Err(forbidden(
                    res,
                    &name,
                    &format!("no PriorityClass with name {class_name} was found"),
                ));
            }
            found
        };
        let (priority, policy) = match class {
            Some(c) => (
                c["value"].as_i64().unwrap_or(0),
                c["preemptionPolicy"]
                    .as_str()
                    .unwrap_or("PreemptLowerPriority")
                    .to_string(),
            ),
            None => (0, "PreemptLowerPriority".to_string()),
        };
        let spec = &mut pod["spec"];
        if let Some(given) = spec["priority"].as_i64()
            && given != priority
        {
            // The defaults gave the built-in classes' values already; a client's own
            // differing value is refused.
            return Err(forbidden(
                res,
                &name,
                &format!(
                    "the integer value of priority ({given}) must not be provided in pod spec; priority admission controller computed {priority} from the given PriorityClass name"
                ),
            ));
        }
        if let Some(given) = spec["preemptionPolicy"].as_str()
            && class.is_some()
            && given != policy
        {
            return Err(forbidden(
                res,
                &name,
                &format!(
                    "the string value of PreemptionPolicy ({given}) must not be provided in pod spec; priority admission controller computed {policy} from the given PriorityClass name"
                ),
            ));
        }
        if let Some(c) = class
            && class_name.is_empty()
        {
            spec["priorityClassName"] = c["metadata"]["name"].clone();
        }
        spec["priority"] = json!(priority);
        spec["preemptionPolicy"] = json!(policy);
        Ok(())
    }

    /// Validating admission of a create or update: PriorityClass defaults, LimitRange
    /// limits, and (creates) ResourceQuota, which also charges the quotas.
    pub(crate) async fn admit_validate(
        &self,
        t: &Target,
        obj: &Value,
        old: Option<&Value>,
        opts: &WriteOptions,
    ) -> ApiResult<Vec<String>> {
        let res = t.res;
        let name = name_of(obj).to_string();
        // PodSecurity before the quota is charged: a refused pod uses nothing.
        let warnings = self.admit_pod_security(t, obj, old, opts)?;
        match (res.group, res.plural) {
            ("scheduling.k8s.io", "priorityclasses") if obj["globalDefault"] == true => {
                let other = self
                    .all_of("scheduling.k8s.io", "priorityclasses", None)
                    .into_iter()
                    .find(|c| c["globalDefault"] == true && c["metadata"]["name"] != name.as_str());
                if let Some(other) = other {
                    let existing = other["metadata"]["name"].as_str().unwrap_or_default();
                    return Err(forbidden(
                        res,
                        &name,
                        &format!("PriorityClass {existing} is already marked as default. Only one default can exist"),
                    ));
                }
            }
            ("", "pods" | "persistentvolumeclaims") if old.is_none() => {
                let ns = obj["metadata"]["namespace"].as_str().unwrap_or_default();
                let ranges = self.all_of("", "limitranges", Some(ns));
                let refusals = if res.plural == "pods" {
                    limits::check_pod(obj, &ranges)
                } else {
                    limits::check_claim(obj, &ranges)
                };
                if !refusals.is_empty() {
                    return Err(forbidden(res, &name, &limits::aggregate(&refusals)));
                }
            }
            _ => {}
        }
        // Admission webhooks, before the quota is charged (as upstream orders its plugins).
        let attempt = crate::webhooks::Attempt {
            op: match old {
                Some(_) => crate::webhooks::Operation::Update,
                None => crate::webhooks::Operation::Create,
            },
            t,
            obj: Some(obj),
            old,
            opts,
        };
        let mut warnings = warnings;
        warnings.extend(self.validate_dynamically(&attempt).await?);
        // Creates, and as upstream's evaluators, updates of Services (a new type or more
        // ports) and claims (a larger request).
        let quota_update = matches!((res.group, res.plural), ("", "services" | "persistentvolumeclaims"));
        if res.namespaced && (old.is_none() || quota_update) {
            self.admit_quota(t, obj, old, opts).await?;
        }
        Ok(warnings)
    }

    /// The PodSecurity plugin: pods are held to their namespace's `enforce` level (and warned
    /// about its `warn` level), the pod templates of workloads are warned about, and a
    /// namespace's new labels are checked and the pods that would break them named.
    fn admit_pod_security(
        &self,
        t: &Target,
        obj: &Value,
        old: Option<&Value>,
        opts: &WriteOptions,
    ) -> ApiResult<Vec<String>> {
        use shoal_api::podsecurity as psa;
        // Upstream's default configuration: privileged unless labelled, no exemptions.
        static CONFIG: std::sync::OnceLock<psa::Config> = std::sync::OnceLock::new();
        let config = CONFIG.get_or_init(psa::Config::default);
        let res = t.res;
        if (res.group, res.plural) == ("", "namespaces") {
            let name = name_of(obj);
            let labels = &obj["metadata"]["labels"];
            let old_labels = old.map(|o| &o["metadata"]["labels"]);
            return match psa::review_namespace(config, name, labels, old_labels) {
                psa::NamespaceReview::Invalid(errors) => Err(ApiError::invalid(res, name, &errors)),
                psa::NamespaceReview::Allowed(warnings) => Ok(warnings),
                psa::NamespaceReview::CheckPods(level) => {
                    let pods = self.all_of("", "pods", Some(name));
                    Ok(psa::namespace_pod_warnings(
                        name,
                        &level,
                        &pods,
                        &config.exemptions,
                        psa::MAX_PODS_TO_CHECK,
                    ))
                }
            };
        }
        let is_pod = (res.group, res.plural) == ("", "pods");
        let (metadata, spec) = if is_pod {
            (&obj["metadata"], &obj["spec"])
        } else {
            match psa::pod_template(res.group, res.kind, obj) {
                Some(template) => template,
                None => return Ok(Vec::new()),
            }
        };
        let ns = obj["metadata"]["namespace"].as_str().unwrap_or_default();
        let Some(namespace) = catalogue::find_plural("", "namespaces")
            .and_then(|r| self.cache.get(&keys::object(r, None, ns)))
            .map(|e| e.obj_in(&shoal_api::shape::WITHOUT_MANAGED_FIELDS))
        else {
            return Ok(Vec::new());
        };
        let username = match (opts.user(), opts.node()) {
            (Some((user, _)), _) => user.to_string(),
            (None, Some(node)) => format!("system:node:{node}"),
            (None, None) => String::new(),
        };
        let review = psa::review(
            config,
            &psa::PodRequest {
                namespace: ns,
                username: &username,
                namespace_labels: &namespace["metadata"]["labels"],
                metadata,
                spec,
                old_spec: old.filter(|_| is_pod).map(|o| &o["spec"]),
                is_pod,
            },
        );
        for (key, value) in review.audit_annotations {
            crate::audit::annotate(&key, value);
        }
        match review.denied {
            Some(why) => Err(forbidden(res, name_of(obj), &why)),
            None => Ok(review.warnings),
        }
    }

    /// The ResourceQuota plugin on a create or update: refuses what does not fit, charges
    /// what does (an update, only what it adds).
    async fn admit_quota(&self, t: &Target, obj: &Value, old: Option<&Value>, opts: &WriteOptions) -> ApiResult<()> {
        let res = t.res;
        let ns = obj["metadata"]["namespace"].as_str().unwrap_or_default().to_string();
        let quota_res = catalogue::find("", "v1", "resourcequotas").expect("resourcequotas are served");
        let prefix = keys::collection(quota_res, Some(&ns));
        if self.cache.list(&prefix, None, 1, |_| true).0.is_empty() {
            return Ok(());
        }
        let (group, plural) = catalogue::stored_names(res.group, res.plural);
        let requested = match old {
            None => quota::usage(group, plural, obj),
            Some(old) => quota::increase(&quota::usage(group, plural, obj), &quota::usage(group, plural, old)),
        };
        if requested.is_empty() {
            return Ok(());
        }
        let name = name_of(obj).to_string();
        let _serialised = self.quota_admission.lock().await;
        let quotas = self.all_of("", "resourcequotas", Some(&ns));
        let mut charges = Vec::new();
        for q in &quotas {
            let hard = quota::parse_list(&q["status"]["hard"]);
            if hard.is_empty() || !quota::scopes_match(q, plural, obj) {
                continue;
            }
            let quota_name = q["metadata"]["name"].as_str().unwrap_or_default();
            if plural == "pods"
                && old.is_none()
                && let Some(missing) = quota::missing_specs(&hard, obj)
            {
                return Err(forbidden(res, &name, &format!("failed quota: {quota_name}: {missing}")));
            }
            let used = quota::parse_list(&q["status"]["used"]);
            if let Some(why) = quota::exceeded(quota_name, &hard, &used, &requested) {
                return Err(forbidden(res, &name, &why));
            }
            let mut next = used.clone();
            let mut changed = false;
            for (k, amount) in requested.iter().filter(|(k, a)| hard.contains_key(*k) && !a.is_zero()) {
                let total = match next.get(k) {
                    Some(u) => quota::plus(u, amount),
                    None => amount.clone(),
                };
                next.insert(k.clone(), total);
                changed = true;
            }
            if changed {
                charges.push((q.clone(), next));
            }
        }
        if opts.dry_run {
            return Ok(());
        }
        for (q, used) in charges {
            let mut updated = q.clone();
            updated["status"]["used"] = used.iter().map(|(k, v)| (k.clone(), json!(v.canonical()))).collect();
            let t = Target {
                res: quota_res,
                namespace: Some(ns.clone()),
                name: q["metadata"]["name"].as_str().map(str::to_string),
                subresource: Some("status".into()),
            };
            let opts = WriteOptions {
                manager: Some("resourcequota-admission".into()),
                ..Default::default()
            };
            // A quota that changed meanwhile is recounted by its controller.
            if let Err(e) = Box::pin(self.update(&t, updated, &opts)).await {
                tracing::debug!(quota = ?t.name, error = %e.message, "charging a quota failed");
            }
        }
        Ok(())
    }
}

impl ApiServer {
    /// The eviction API's check of a pod's PodDisruptionBudget: an eviction that would take
    /// the budget below what it must keep is refused (429), one it allows spends a disruption
    /// (`disruptionsAllowed` down by one, the pod under `disruptedPods`) before the pod goes.
    /// Pods that are pending, finished or already going need no budget.
    /// Before the eviction API deletes a running pod, as upstream's: the condition
    /// `DisruptionTarget=True` (reason `EvictionByEvictionAPI`), which a Job's
    /// podFailurePolicy may match. A finished pod, or one already marked, is left as it is.
    pub(crate) async fn mark_disruption_target(&self, t: &Target) -> ApiResult<()> {
        let pod = self.get_object(t)?.obj();
        let phase = pod["status"]["phase"].as_str().unwrap_or_default();
        let marked = pod["status"]["conditions"].as_array().is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "DisruptionTarget" && c["status"] == "True")
        });
        if matches!(phase, "Succeeded" | "Failed") || marked {
            return Ok(());
        }
        let condition = json!({"status": {"conditions": [{
            "type": "DisruptionTarget", "status": "True", "reason": "EvictionByEvictionAPI",
            "message": "Eviction API: evicting",
            "lastTransitionTime": shoal_api::time::now_rfc3339(),
        }]}});
        let status = Target {
            subresource: Some("status".into()),
            ..t.clone()
        };
        self.patch(
            &status,
            condition,
            crate::patch::PatchType::Strategic,
            &crate::rest::WriteOptions::default(),
            false,
        )
        .await
        .map(|_| ())
    }

    pub(crate) async fn spend_disruption(&self, t: &Target, dry_run: bool) -> ApiResult<()> {
        let pod = self.get_object(t)?.obj();
        let phase = pod["status"]["phase"].as_str().unwrap_or_default();
        if matches!(phase, "Succeeded" | "Failed" | "Pending") || !pod["metadata"]["deletionTimestamp"].is_null() {
            return Ok(());
        }
        let ns = t.namespace.clone().unwrap_or_default();
        let empty = serde_json::Map::new();
        let labels = pod["metadata"]["labels"].as_object().unwrap_or(&empty);
        let pdb_res = catalogue::find("policy", "v1", "poddisruptionbudgets").expect("PDBs are served");
        let (entries, _, _) = self
            .cache
            .list(&keys::collection(pdb_res, Some(&ns)), None, 0, |_| true);
        let budgets: Vec<(i64, Value)> = entries
            .iter()
            .map(|e| (e.mod_revision, e.obj()))
            .filter(|(_, b)| {
                shoal_api::selector::LabelSelector::from_api(&b["spec"]["selector"]).is_ok_and(|s| s.matches(labels))
            })
            .collect();
        let (revision, budget) = match budgets.as_slice() {
            [] => return Ok(()),
            [one] => one.clone(),
            _ => {
                return Err(ApiError::internal(
                    "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.",
                ));
            }
        };
        let name = budget["metadata"]["name"].as_str().unwrap_or_default().to_string();
        let refuse = |why: String| {
            ApiError::too_many_requests("Cannot evict pod as it would violate the pod's disruption budget.")
                .with_details(json!({"causes": [{"reason": "DisruptionBudget", "message": why}]}))
        };
        let status = &budget["status"];
        if status["observedGeneration"].as_i64().unwrap_or(0) < budget["metadata"]["generation"].as_i64().unwrap_or(0) {
            return Err(refuse(format!(
                "The disruption budget {name} is still being processed by the server."
            )));
        }
        let (current, desired) = (
            status["currentHealthy"].as_i64().unwrap_or(0),
            status["desiredHealthy"].as_i64().unwrap_or(0),
        );
        let ready = pod["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Ready" && c["status"] == "True");
        // An unready pod may go while the budget is met without it (IfHealthyBudget).
        if !ready && current >= desired {
            return Ok(());
        }
        let allowed = status["disruptionsAllowed"].as_i64().unwrap_or(0);
        if allowed <= 0 {
            return Err(refuse(format!(
                "The disruption budget {name} needs {desired} healthy pods and has {current} currently"
            )));
        }
        if dry_run {
            return Ok(());
        }
        let mut spent = budget.clone();
        spent["status"]["disruptionsAllowed"] = json!(allowed - 1);
        let pod_name = t.name.clone().unwrap_or_default();
        if !spent["status"]["disruptedPods"].is_object() {
            spent["status"]["disruptedPods"] = json!({});
        }
        spent["status"]["disruptedPods"][pod_name] = json!(shoal_api::time::now_rfc3339());
        spent["metadata"]["resourceVersion"] = json!(revision.to_string());
        let target = Target {
            res: pdb_res,
            namespace: Some(ns),
            name: Some(name),
            subresource: Some("status".into()),
        };
        let opts = WriteOptions {
            manager: Some("kube-apiserver".into()),
            ..Default::default()
        };
        // A budget that changed meanwhile answers with a conflict: the client retries.
        Box::pin(self.update(&target, spent, &opts)).await.map(|_| ())
    }
}
