//! apps/v1: DaemonSet, Deployment, ReplicaSet, StatefulSet, ControllerRevision.

use super::meta::{self, LabelSelector, validate_annotations, validate_labels};
use super::names::{self, is_valid_percent};
use super::pod::{pod_specific_annotations, pod_template_spec};
use super::{
    Errs, IMMUTABLE, J, Path, forbidden, get, gorepr, int, invalid, invalid_raw, nonneg, nonneg_field, not_supported,
    not_supported_raw, obj, required, semantic_eq, st0, str_map,
};
use serde_json::Value;

const SELECTOR_MISMATCH: &str = "`selector` does not match template `labels`";

/// The template's `metadata.labels` as printed in the mismatch error.
fn template_labels_repr(tmpl: J<'_>) -> String {
    gorepr::string_map(get(get(tmpl, "metadata"), "labels"))
}

fn template_labels(tmpl: J<'_>) -> J<'_> {
    get(get(tmpl, "metadata"), "labels")
}

/// A selector that must be set and select something (Deployment, ReplicaSet, StatefulSet).
fn required_selector(errs: &mut Errs, sel: J<'_>, sp: &Path, empty_msg: &str) {
    match sel {
        None => required(errs, &sp.child("selector"), ""),
        Some(s) => {
            meta::validate_label_selector(errs, sel, &sp.child("selector"));
            if selector_is_empty(s) {
                invalid_raw(errs, &sp.child("selector"), gorepr::label_selector(sel), empty_msg);
            }
        }
    }
}

/// A non-empty selector must match the template's labels.
fn template_matches(errs: &mut Errs, selector: &LabelSelector, tmpl: J<'_>, tp: &Path) {
    if !selector.is_empty() && !selector.matches(template_labels(tmpl)) {
        invalid_raw(
            errs,
            &tp.child("metadata").child("labels"),
            template_labels_repr(tmpl),
            SELECTOR_MISMATCH,
        );
    }
}

/// Selector immutability on update (the apps/v1 strategies' check).
fn selector_immutable(errs: &mut Errs, obj: &Value, old: &Value) {
    let new = get(get(Some(obj), "spec"), "selector");
    let was = get(get(Some(old), "spec"), "selector");
    if !semantic_eq(new, was) {
        invalid_raw(
            errs,
            &Path::new("spec").child("selector"),
            gorepr::label_selector(new),
            IMMUTABLE,
        );
    }
}

/// A controller's pod template: restart policy `Always` and no active deadline.
pub(super) fn restart_always_and_no_deadline(errs: &mut Errs, tmpl: J<'_>, p: &Path, kind: &str) {
    let spec = get(tmpl, "spec");
    let rp = get(spec, "restartPolicy").and_then(Value::as_str).unwrap_or("");
    if rp != "Always" {
        not_supported(errs, &p.child("spec").child("restartPolicy"), rp, &["Always"]);
    }
    if get(spec, "activeDeadlineSeconds").is_some() {
        forbidden(
            errs,
            &p.child("spec").child("activeDeadlineSeconds"),
            format!("activeDeadlineSeconds in {kind} is not Supported"),
        );
    }
}

/// An int-or-percent value: `(value, is_percent)` where non-percent strings read as their
/// integer value or 0 (upstream `getIntOrPercentValue`).
fn int_or_percent_value(v: J<'_>) -> i64 {
    match v {
        Some(Value::String(s)) => {
            if is_valid_percent(s).is_empty() {
                s[..s.len() - 1].parse().unwrap_or(0)
            } else {
                s.parse().unwrap_or(0)
            }
        }
        Some(Value::Number(n)) => n.as_i64().unwrap_or(0),
        _ => 0,
    }
}

/// `ValidatePositiveIntOrPercent`.
fn positive_int_or_percent(errs: &mut Errs, v: J<'_>, p: &Path) {
    match v {
        None => {}
        Some(Value::String(s)) => {
            for m in is_valid_percent(s) {
                invalid_raw(errs, p, s.clone(), &m);
            }
        }
        Some(Value::Number(n)) if n.is_i64() => nonneg(errs, p, n.as_i64().unwrap_or(0)),
        Some(other) => invalid_raw(
            errs,
            p,
            gorepr::int_or_string(other),
            "must be an integer or percentage (e.g '5%%')",
        ),
    }
}

/// `IsNotMoreThan100Percent`.
fn not_more_than_100(errs: &mut Errs, v: J<'_>, p: &Path) {
    if let Some(Value::String(s)) = v
        && is_valid_percent(s).is_empty()
        && s[..s.len() - 1].parse::<u64>().map_or(true, |n| n > 100)
    {
        invalid_raw(errs, p, s.clone(), "must not be greater than 100%");
    }
}

fn raw_ios(v: J<'_>) -> String {
    v.map(gorepr::int_or_string).unwrap_or_else(|| "0".into())
}

// ---------------------------------------------------------------------------------------
// DaemonSet

/// DaemonSet create/update.
pub(crate) fn validate_daemon_set(errs: &mut Errs, obj: &Value, old: Option<&Value>) {
    meta::object_meta(errs, obj, old, true, names::name_is_dns_subdomain);
    let sp = Path::new("spec");
    let spec = super::obj(errs, Some(obj), "spec", &Path::new(""));
    let sel = super::obj(errs, spec, "selector", &sp);
    meta::validate_label_selector(errs, sel, &sp.child("selector"));
    let tmpl = super::obj(errs, spec, "template", &sp);
    if let Ok(selector) = LabelSelector::from_json(sel)
        && !selector.matches(template_labels(tmpl))
    {
        invalid_raw(
            errs,
            &sp.child("template").child("metadata").child("labels"),
            template_labels_repr(tmpl),
            SELECTOR_MISMATCH,
        );
    }
    if let Some(s) = sel
        && selector_is_empty(s)
    {
        invalid_raw(
            errs,
            &sp.child("selector"),
            gorepr::label_selector(sel),
            "empty selector is invalid for daemonset",
        );
    }
    pod_template_spec(errs, tmpl, &sp.child("template"));
    restart_always_and_no_deadline(errs, tmpl, &sp.child("template"), "DaemonSet");
    nonneg_field(errs, spec, "minReadySeconds", &sp);
    let strategy = super::obj(errs, spec, "updateStrategy", &sp);
    daemon_set_update_strategy(errs, strategy, &sp.child("updateStrategy"));
    nonneg_field(errs, spec, "revisionHistoryLimit", &sp);
    if let Some(old) = old {
        selector_immutable(errs, obj, old);
    }
}

fn selector_is_empty(sel: &Value) -> bool {
    let n = |k| {
        sel.get(k).map_or(0, |v| {
            v.as_object()
                .map(|m| m.len())
                .or(v.as_array().map(Vec::len))
                .unwrap_or(0)
        })
    };
    n("matchLabels") + n("matchExpressions") == 0
}

fn daemon_set_update_strategy(errs: &mut Errs, strategy: J<'_>, p: &Path) {
    let t = st0(errs, strategy, "type", p);
    match t {
        "OnDelete" => {}
        "RollingUpdate" => {
            let Some(ru) = obj(errs, strategy, "rollingUpdate", p) else {
                required(errs, &p.child("rollingUpdate"), "");
                return;
            };
            let rp = p.child("rollingUpdate");
            let (mu, ms) = (get(Some(ru), "maxUnavailable"), get(Some(ru), "maxSurge"));
            positive_int_or_percent(errs, mu, &rp.child("maxUnavailable"));
            positive_int_or_percent(errs, ms, &rp.child("maxSurge"));
            not_more_than_100(errs, mu, &rp.child("maxUnavailable"));
            not_more_than_100(errs, ms, &rp.child("maxSurge"));
            let has_unavailable = int_or_percent_value(mu) != 0;
            let has_surge = int_or_percent_value(ms) != 0;
            if has_unavailable && has_surge {
                invalid_raw(
                    errs,
                    &rp.child("maxSurge"),
                    raw_ios(ms),
                    "may not be set when maxUnavailable is non-zero",
                );
            } else if !has_unavailable && !has_surge {
                required(errs, &rp.child("maxUnavailable"), "cannot be 0 when maxSurge is 0");
            }
        }
        _ => not_supported_raw(
            errs,
            p,
            gorepr::strategy("DaemonSetUpdateStrategy", "RollingUpdateDaemonSet", strategy),
            &["RollingUpdate", "OnDelete"],
        ),
    }
}

// ---------------------------------------------------------------------------------------
// Deployment and ReplicaSet

/// Selector checks shared by Deployment and ReplicaSet, then the template. Upstream words
/// both alike: "deployment" in the empty-selector message, "ReplicaSet" in the template's.
fn replica_set_like(errs: &mut Errs, spec: J<'_>, sp: &Path) {
    let sel = super::obj(errs, spec, "selector", sp);
    required_selector(errs, sel, sp, "empty selector is invalid for deployment");
    let tmpl = super::obj(errs, spec, "template", sp);
    let tp = sp.child("template");
    match LabelSelector::from_json(sel) {
        Err(_) => invalid_raw(
            errs,
            &sp.child("selector"),
            gorepr::label_selector(sel),
            "invalid label selector",
        ),
        Ok(selector) => {
            template_matches(errs, &selector, tmpl, &tp);
            pod_template_spec(errs, tmpl, &tp);
            restart_always_and_no_deadline(errs, tmpl, &tp, "ReplicaSet");
        }
    }
}

/// Deployment create/update.
pub(crate) fn validate_deployment(errs: &mut Errs, obj: &Value, old: Option<&Value>) {
    meta::object_meta(errs, obj, old, true, names::name_is_dns_subdomain);
    let sp = Path::new("spec");
    let spec = super::obj(errs, Some(obj), "spec", &Path::new(""));
    nonneg_field(errs, spec, "replicas", &sp);
    replica_set_like(errs, spec, &sp);
    let strategy = super::obj(errs, spec, "strategy", &sp);
    deployment_strategy(errs, strategy, &sp.child("strategy"));
    let min_ready = int(errs, spec, "minReadySeconds", &sp).unwrap_or(0);
    nonneg(errs, &sp.child("minReadySeconds"), min_ready);
    nonneg_field(errs, spec, "revisionHistoryLimit", &sp);
    if let Some(pds) = int(errs, spec, "progressDeadlineSeconds", &sp) {
        nonneg(errs, &sp.child("progressDeadlineSeconds"), pds);
        if pds <= min_ready {
            invalid(
                errs,
                &sp.child("progressDeadlineSeconds"),
                pds,
                "must be greater than minReadySeconds",
            );
        }
    }
    if let Some(old) = old {
        selector_immutable(errs, obj, old);
    }
}

fn deployment_strategy(errs: &mut Errs, strategy: J<'_>, p: &Path) {
    let ru = obj(errs, strategy, "rollingUpdate", p);
    match st0(errs, strategy, "type", p) {
        "Recreate" => {
            if ru.is_some() {
                forbidden(
                    errs,
                    &p.child("rollingUpdate"),
                    "may not be specified when strategy `type` is 'Recreate'",
                );
            }
        }
        "RollingUpdate" => match ru {
            None => required(
                errs,
                &p.child("rollingUpdate"),
                "this should be defaulted and never be nil",
            ),
            Some(ru) => {
                let rp = p.child("rollingUpdate");
                let (mu, ms) = (get(Some(ru), "maxUnavailable"), get(Some(ru), "maxSurge"));
                positive_int_or_percent(errs, mu, &rp.child("maxUnavailable"));
                positive_int_or_percent(errs, ms, &rp.child("maxSurge"));
                if int_or_percent_value(mu) == 0 && int_or_percent_value(ms) == 0 {
                    invalid_raw(
                        errs,
                        &rp.child("maxUnavailable"),
                        raw_ios(mu),
                        "may not be 0 when `maxSurge` is 0",
                    );
                }
                not_more_than_100(errs, mu, &rp.child("maxUnavailable"));
            }
        },
        _ => not_supported_raw(
            errs,
            p,
            gorepr::strategy("DeploymentStrategy", "RollingUpdateDeployment", strategy),
            &["Recreate", "RollingUpdate"],
        ),
    }
}

/// ReplicaSet create/update.
pub(crate) fn validate_replica_set(errs: &mut Errs, obj: &Value, old: Option<&Value>) {
    meta::object_meta(errs, obj, old, true, names::name_is_dns_subdomain);
    let sp = Path::new("spec");
    let spec = super::obj(errs, Some(obj), "spec", &Path::new(""));
    nonneg_field(errs, spec, "replicas", &sp);
    nonneg_field(errs, spec, "minReadySeconds", &sp);
    replica_set_like(errs, spec, &sp);
    if let Some(old) = old {
        selector_immutable(errs, obj, old);
    }
}

// ---------------------------------------------------------------------------------------
// StatefulSet

/// StatefulSet create/update.
pub(crate) fn validate_stateful_set(errs: &mut Errs, obj: &Value, old: Option<&Value>) {
    meta::object_meta(errs, obj, old, true, names::name_is_dns_label);
    let sp = Path::new("spec");
    let spec = super::obj(errs, Some(obj), "spec", &Path::new(""));
    // 1.33 checks the governing service name, which becomes each pod's subdomain.
    if let Some(svc) = super::st(errs, spec, "serviceName", &sp).filter(|s| !s.is_empty()) {
        meta::dns_label(errs, svc, &sp.child("serviceName"));
    }
    match st0(errs, spec, "podManagementPolicy", &sp) {
        "" => required(errs, &sp.child("podManagementPolicy"), ""),
        "OrderedReady" | "Parallel" => {}
        other => invalid(
            errs,
            &sp.child("podManagementPolicy"),
            other,
            "must be 'OrderedReady' or 'Parallel'",
        ),
    }
    let strategy = super::obj(errs, spec, "updateStrategy", &sp);
    let up = sp.child("updateStrategy");
    let ru = super::obj(errs, strategy, "rollingUpdate", &up);
    match st0(errs, strategy, "type", &up) {
        "" => required(errs, &up, ""),
        "OnDelete" => {
            if ru.is_some() {
                let partition = get(ru, "partition").and_then(Value::as_i64).unwrap_or(0);
                let mu = get(ru, "maxUnavailable").is_some();
                invalid_raw(
                    errs,
                    &up.child("rollingUpdate"),
                    format!(
                        "apps.RollingUpdateStatefulSetStrategy{{Partition:{partition}, MaxUnavailable:{}}}",
                        gorepr::pointer("intstr.IntOrString", mu)
                    ),
                    "only allowed for updateStrategy 'RollingUpdate'",
                );
            }
        }
        "RollingUpdate" => {
            if ru.is_some() {
                let rp = up.child("rollingUpdate");
                nonneg_field(errs, ru, "partition", &rp);
                let mu = get(ru, "maxUnavailable");
                if mu.is_some() {
                    positive_int_or_percent(errs, mu, &rp.child("maxUnavailable"));
                    if int_or_percent_value(mu) == 0 {
                        invalid_raw(errs, &rp.child("maxUnavailable"), raw_ios(mu), "cannot be 0");
                    }
                    not_more_than_100(errs, mu, &rp.child("maxUnavailable"));
                }
            }
        }
        _ => invalid_raw(
            errs,
            &up,
            gorepr::strategy(
                "StatefulSetUpdateStrategy",
                "RollingUpdateStatefulSetStrategy",
                strategy,
            ),
            "must be 'RollingUpdate' or 'OnDelete'",
        ),
    }
    let policy = super::obj(errs, spec, "persistentVolumeClaimRetentionPolicy", &sp);
    if policy.is_some() {
        let pp = sp.child("persistentVolumeClaimRetentionPolicy");
        for key in ["whenDeleted", "whenScaled"] {
            let v = st0(errs, policy, key, &pp);
            if v != "Retain" && v != "Delete" {
                not_supported(errs, &pp.child(key), v, &["Retain", "Delete"]);
            }
        }
    }
    for key in ["replicas", "minReadySeconds"] {
        nonneg_field(errs, spec, key, &sp);
    }
    if let Some(ord) = super::obj(errs, spec, "ordinals", &sp)
        && let Some(start) = int(errs, Some(ord), "start", &sp.child("ordinals"))
    {
        nonneg(errs, &sp.child("ordinals.start"), start);
    }
    let sel = super::obj(errs, spec, "selector", &sp);
    required_selector(errs, sel, &sp, "empty selector is invalid for statefulset");
    let tmpl = super::obj(errs, spec, "template", &sp);
    let tp = sp.child("template");
    match LabelSelector::from_json(sel) {
        Err(_) => invalid_raw(errs, &sp.child("selector"), gorepr::label_selector(sel), ""),
        Ok(selector) => {
            template_matches(errs, &selector, tmpl, &tp);
            let m = get(tmpl, "metadata");
            let mp = tp.child("metadata");
            let labels = str_map(errs, m, "labels", &mp);
            validate_labels(errs, labels.as_deref(), &tp.child("labels"));
            let anns = str_map(errs, m, "annotations", &mp);
            validate_annotations(errs, anns.as_deref(), &tp.child("annotations"));
            pod_specific_annotations(errs, anns.as_deref(), get(tmpl, "spec"), &tp.child("annotations"));
        }
    }
    restart_always_and_no_deadline(errs, tmpl, &tp, "StatefulSet");
    if let Some(old) = old {
        let mut new_spec = spec.cloned().unwrap_or(Value::Null);
        let old_spec = get(Some(old), "spec");
        if let Some(m) = new_spec.as_object_mut() {
            for key in [
                "replicas",
                "template",
                "updateStrategy",
                "minReadySeconds",
                "ordinals",
                "persistentVolumeClaimRetentionPolicy",
            ] {
                match old_spec.and_then(|s| s.get(key)) {
                    Some(v) => m.insert(key.into(), v.clone()),
                    None => m.remove(key),
                };
            }
        }
        if !semantic_eq(Some(&new_spec), old_spec) {
            forbidden(
                errs,
                &sp,
                "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden",
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// ControllerRevision

/// ControllerRevision create/update.
pub(crate) fn validate_controller_revision(errs: &mut Errs, obj: &Value, old: Option<&Value>) {
    meta::meta_update_then_create(errs, obj, old, true, names::name_is_dns_subdomain);
    if get(Some(obj), "data").is_none() {
        required(errs, &Path::new("data"), "data is mandatory");
    }
    nonneg_field(errs, Some(obj), "revision", &Path::new(""));
    if let Some(old) = old
        && !semantic_eq(get(Some(obj), "data"), get(Some(old), "data"))
    {
        invalid_raw(errs, &Path::new("data"), "runtime.RawExtension{...}", IMMUTABLE);
    }
}
