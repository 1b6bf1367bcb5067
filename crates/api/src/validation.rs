//! Upstream's create and update validation for every kind in the catalogue, reporting
//! [`FieldError`]s with Kubernetes 1.33's field paths and texts.
//!
//! Objects arrive as `serde_json::Value` after [`crate::defaults::apply_defaults`] (and, on
//! create, [`crate::defaults::prepare_for_create`]); `old` is the stored object on update.
//! Nothing here panics on malformed input: a field of the wrong JSON type is reported as an
//! `Invalid value` error ("must be a string", ...).
//!
//! Values that upstream prints through Go's `%#v` (label selectors, structs) or a `String()`
//! method (int-or-string) are carried as pre-rendered text: such errors have `value: None`
//! and the rendered value leads the `detail`, so [`FieldError::message`] reads exactly like
//! upstream's (`spec.selector: Invalid value: v1.LabelSelector{...}: field is immutable`).

use crate::field::{ErrorType, FieldError};
use serde_json::{Map, Value};

mod apps;
mod batch;
mod core_kinds;
mod cron;
pub use cron::go_duration_seconds;
pub(crate) mod gorepr;
mod meta;
pub mod more;
pub mod names;
mod other;
mod pod;
pub mod quantity;

pub use pod::pod_qos_class;
pub use quantity::Quantity;

/// Validates `obj` of `group`/`kind` on create (`old` is `None`) or update (`old` is the
/// stored object). Kinds outside the catalogue get object-metadata validation only.
pub fn validate(group: &str, kind: &str, obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if !obj.is_object() {
        errs.push(FieldError::invalid("", obj.clone(), "must be an object"));
        return errs;
    }
    let old = old.filter(|o| o.is_object());
    match (group, kind) {
        ("", "Pod") => pod::validate_pod(&mut errs, obj, old),
        ("", "Service") => core_kinds::validate_service(&mut errs, obj, old),
        ("", "Namespace") => core_kinds::validate_namespace(&mut errs, obj, old),
        ("", "Node") => core_kinds::validate_node(&mut errs, obj, old),
        ("", "ConfigMap") => core_kinds::validate_config_map(&mut errs, obj, old),
        ("", "Secret") => core_kinds::validate_secret(&mut errs, obj, old),
        ("", "ServiceAccount") => core_kinds::validate_service_account(&mut errs, obj, old),
        ("", "Endpoints") => core_kinds::validate_endpoints(&mut errs, obj, old),
        ("", "PersistentVolume") => core_kinds::validate_pv(&mut errs, obj, old),
        ("", "PersistentVolumeClaim") => core_kinds::validate_pvc(&mut errs, obj, old),
        ("", "ReplicationController") => core_kinds::validate_rc(&mut errs, obj, old),
        ("", "Event") => other::validate_core_event(&mut errs, obj),
        ("", "Binding") => other::validate_binding(&mut errs, obj),
        ("autoscaling", "Scale") => other::validate_scale(&mut errs, obj),
        ("events.k8s.io", "Event") => other::validate_events_event(&mut errs, obj, old),
        ("apps", "DaemonSet") => apps::validate_daemon_set(&mut errs, obj, old),
        ("apps", "Deployment") => apps::validate_deployment(&mut errs, obj, old),
        ("apps", "ReplicaSet") => apps::validate_replica_set(&mut errs, obj, old),
        ("apps", "StatefulSet") => apps::validate_stateful_set(&mut errs, obj, old),
        ("apps", "ControllerRevision") => apps::validate_controller_revision(&mut errs, obj, old),
        ("batch", "Job") => batch::validate_job(&mut errs, obj, old),
        ("batch", "CronJob") => batch::validate_cron_job(&mut errs, obj, old),
        ("coordination.k8s.io", "Lease") => other::validate_lease(&mut errs, obj, old),
        ("discovery.k8s.io", "EndpointSlice") => other::validate_endpoint_slice(&mut errs, obj, old),
        ("storage.k8s.io", "StorageClass") => other::validate_storage_class(&mut errs, obj, old),
        _ if more::validate(&mut errs, group, kind, obj, old) => {}
        _ => {
            let namespaced = crate::catalogue::find_kind(group, kind).is_none_or(|r| r.namespaced);
            meta::object_meta(&mut errs, obj, old, namespaced, names::name_is_dns_subdomain);
        }
    }
    errs
}

/// API warnings upstream returns on create (printed by kubectl as `Warning: ...`): workload
/// kinds whose names are valid subdomains but not DNS labels (name warnings only; the
/// pod-template warnings upstream also emits are not produced here).
pub fn warnings_on_create(group: &str, kind: &str, obj: &Value) -> Vec<String> {
    let workload = matches!(
        (group, kind),
        ("", "Pod" | "ReplicationController") | ("apps", "Deployment" | "ReplicaSet") | ("batch", "Job" | "CronJob")
    );
    let name = obj
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .unwrap_or("");
    if !workload || name.is_empty() || !names::is_dns1123_subdomain(name).is_empty() {
        return Vec::new();
    }
    let msgs = names::is_dns1123_label(name);
    if msgs.is_empty() {
        return Vec::new();
    }
    let used_in = if kind == "Pod" {
        "the Pod's hostname"
    } else {
        "Pod names and hostnames"
    };
    vec![format!(
        "metadata.name: this is used in {used_in}, which can result in surprising behavior; \
         a DNS label is recommended: [{}]",
        msgs.join(" ")
    )]
}

/// Scales an int-or-percent against `total` the way controllers do (upstream
/// `GetScaledValueFromIntOrPercent`): integers are returned as-is, `"N%"` becomes
/// `N * total / 100` rounded up or down.
pub fn int_or_percent(v: &Value, total: i32, round_up: bool) -> Result<i32, String> {
    let invalid = |why: String| Err(format!("invalid value for IntOrString: {why}"));
    match v {
        Value::Number(n) => match n.as_i64().and_then(|i| i32::try_from(i).ok()) {
            Some(i) => Ok(i),
            None => invalid("invalid type: neither int nor percentage".into()),
        },
        Value::String(s) => {
            let Some(num) = s.strip_suffix('%') else {
                return invalid("invalid type: string is not a percentage".into());
            };
            let Ok(p) = num.parse::<i64>() else {
                return invalid(format!(
                    "invalid value {}: strconv.Atoi: parsing {}: invalid syntax",
                    gorepr::quote(s),
                    gorepr::quote(num)
                ));
            };
            let scaled = p as f64 * f64::from(total) / 100.0;
            let r = if round_up { scaled.ceil() } else { scaled.floor() };
            Ok(r.clamp(f64::from(i32::MIN), f64::from(i32::MAX)) as i32)
        }
        _ => invalid("invalid type: neither int nor percentage".into()),
    }
}

// ---------------------------------------------------------------------------------------
// Field paths and error constructors shared by the submodules.

/// A field path as upstream prints it: `spec.containers[0].name`, `metadata.labels[app]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Path(String);

impl Path {
    pub(crate) fn new(root: &str) -> Path {
        Path(root.to_string())
    }
    pub(crate) fn child(&self, name: &str) -> Path {
        if self.0.is_empty() {
            Path(name.to_string())
        } else {
            Path(format!("{}.{name}", self.0))
        }
    }
    pub(crate) fn index(&self, i: usize) -> Path {
        Path(format!("{}[{i}]", self.0))
    }
    pub(crate) fn key(&self, k: &str) -> Path {
        Path(format!("{}[{k}]", self.0))
    }
    pub(crate) fn s(&self) -> &str {
        &self.0
    }
}

pub(crate) type Errs = Vec<FieldError>;

pub(crate) fn invalid(errs: &mut Errs, p: &Path, v: impl Into<Value>, detail: impl Into<String>) {
    errs.push(FieldError::invalid(p.s(), v.into(), detail));
}

/// `Invalid value` whose value is printed verbatim (Go `%#v`/`String()` renderings).
pub(crate) fn invalid_raw(errs: &mut Errs, p: &Path, raw: impl Into<String>, detail: &str) {
    errs.push(raw_error(ErrorType::Invalid, p, raw.into(), detail));
}

fn raw_error(kind: ErrorType, p: &Path, raw: String, detail: &str) -> FieldError {
    let detail = if detail.is_empty() {
        raw
    } else {
        format!("{raw}: {detail}")
    };
    FieldError {
        kind,
        field: p.s().to_string(),
        value: None,
        detail,
    }
}

pub(crate) fn required(errs: &mut Errs, p: &Path, detail: impl Into<String>) {
    errs.push(FieldError::required(p.s(), detail));
}

pub(crate) fn forbidden(errs: &mut Errs, p: &Path, detail: impl Into<String>) {
    errs.push(FieldError::forbidden(p.s(), detail));
}

pub(crate) fn duplicate(errs: &mut Errs, p: &Path, v: impl Into<Value>) {
    errs.push(FieldError::duplicate(p.s(), v.into()));
}

pub(crate) fn duplicate_raw(errs: &mut Errs, p: &Path, raw: impl Into<String>, detail: &str) {
    errs.push(raw_error(ErrorType::Duplicate, p, raw.into(), detail));
}

pub(crate) fn not_found(errs: &mut Errs, p: &Path, v: impl Into<Value>, detail: &str) {
    errs.push(FieldError {
        kind: ErrorType::NotFound,
        field: p.s().to_string(),
        value: Some(v.into()),
        detail: detail.into(),
    });
}

pub(crate) fn not_supported(errs: &mut Errs, p: &Path, v: impl Into<Value>, supported: &[&str]) {
    errs.push(FieldError::not_supported(p.s(), v.into(), supported));
}

pub(crate) fn not_supported_raw(errs: &mut Errs, p: &Path, raw: impl Into<String>, supported: &[&str]) {
    let list = supported
        .iter()
        .map(|s| format!("\"{s}\""))
        .collect::<Vec<_>>()
        .join(", ");
    errs.push(raw_error(
        ErrorType::NotSupported,
        p,
        raw.into(),
        &format!("supported values: {list}"),
    ));
}

/// A value that must be set and be one of `supported` (listed in that order in the error).
pub(crate) fn required_one_of(errs: &mut Errs, v: &str, p: &Path, supported: &[&str]) {
    if v.is_empty() {
        required(errs, p, "");
    } else if !supported.contains(&v) {
        not_supported(errs, p, v, supported);
    }
}

/// `Too long: may not be more than N bytes`.
pub(crate) fn too_long(errs: &mut Errs, p: &Path, max: usize) {
    let unit = if max == 1 { "byte" } else { "bytes" };
    errs.push(FieldError {
        kind: ErrorType::TooLong,
        field: p.s().to_string(),
        value: None,
        detail: format!("may not be more than {max} {unit}"),
    });
}

/// `Too many: <n>: must have at most N items`.
pub(crate) fn too_many(errs: &mut Errs, p: &Path, actual: usize, max: usize) {
    errs.push(FieldError {
        kind: ErrorType::TooMany,
        field: p.s().to_string(),
        value: Some(Value::from(actual)),
        detail: format!("must have at most {max} items"),
    });
}

pub(crate) const IS_NEGATIVE: &str = "must be greater than or equal to 0";
pub(crate) const IMMUTABLE: &str = "field is immutable";

/// `ValidateNonnegativeField`.
pub(crate) fn nonneg(errs: &mut Errs, p: &Path, v: i64) {
    if v < 0 {
        invalid(errs, p, v, IS_NEGATIVE);
    }
}

/// The optional integer member `key` of `v` (at `p`), which must not be negative when set.
pub(crate) fn nonneg_field(errs: &mut Errs, v: J<'_>, key: &str, p: &Path) {
    if let Some(n) = int(errs, v, key, p) {
        nonneg(errs, &p.child(key), n);
    }
}

/// Reports each message of a format check as an `Invalid value` of `v` at `p`.
pub(crate) fn each_invalid(errs: &mut Errs, p: &Path, v: &str, msgs: Vec<String>) {
    for m in msgs {
        invalid(errs, p, v, m);
    }
}

// ---------------------------------------------------------------------------------------
// Typed, non-panicking access to JSON. `J` is "maybe a value"; nulls read as absent.

pub(crate) type J<'a> = Option<&'a Value>;

/// The member `key` of an object (absent when `v` is not an object or the member is null).
pub(crate) fn get<'a>(v: J<'a>, key: &str) -> J<'a> {
    v.and_then(Value::as_object)
        .and_then(|m| m.get(key))
        .filter(|x| !x.is_null())
}

fn type_error(errs: &mut Errs, p: &Path, v: &Value, what: &str) {
    errs.push(FieldError::invalid(p.s(), v.clone(), format!("must be {what}")));
}

/// A string member; wrong types are reported.
pub(crate) fn st<'a>(errs: &mut Errs, v: J<'a>, key: &str, p: &Path) -> Option<&'a str> {
    match get(v, key)? {
        Value::String(s) => Some(s),
        other => {
            type_error(errs, &p.child(key), other, "a string");
            None
        }
    }
}

/// A string member, `""` when absent.
pub(crate) fn st0<'a>(errs: &mut Errs, v: J<'a>, key: &str, p: &Path) -> &'a str {
    st(errs, v, key, p).unwrap_or("")
}

/// An integer member; wrong types (including fractions) are reported.
pub(crate) fn int(errs: &mut Errs, v: J<'_>, key: &str, p: &Path) -> Option<i64> {
    let x = get(v, key)?;
    match x.as_i64() {
        Some(i) => Some(i),
        None => {
            type_error(errs, &p.child(key), x, "an integer");
            None
        }
    }
}

/// A boolean member.
pub(crate) fn boolean(errs: &mut Errs, v: J<'_>, key: &str, p: &Path) -> Option<bool> {
    let x = get(v, key)?;
    match x.as_bool() {
        Some(b) => Some(b),
        None => {
            type_error(errs, &p.child(key), x, "a boolean");
            None
        }
    }
}

/// An object member.
pub(crate) fn obj<'a>(errs: &mut Errs, v: J<'a>, key: &str, p: &Path) -> J<'a> {
    let x = get(v, key)?;
    if x.is_object() {
        Some(x)
    } else {
        type_error(errs, &p.child(key), x, "an object");
        None
    }
}

/// A list member (empty when absent).
pub(crate) fn arr<'a>(errs: &mut Errs, v: J<'a>, key: &str, p: &Path) -> &'a [Value] {
    match get(v, key) {
        None => &[],
        Some(Value::Array(a)) => a,
        Some(other) => {
            type_error(errs, &p.child(key), other, "a list");
            &[]
        }
    }
}

/// A `map[string]string` member, sorted by key; non-string values are reported.
pub(crate) fn str_map<'a>(errs: &mut Errs, v: J<'a>, key: &str, p: &Path) -> Option<Vec<(&'a str, &'a str)>> {
    let m: &Map<String, Value> = match get(v, key)? {
        Value::Object(m) => m,
        other => {
            type_error(errs, &p.child(key), other, "an object");
            return None;
        }
    };
    let mut out = Vec::with_capacity(m.len());
    for (k, val) in m {
        match val {
            Value::String(s) => out.push((k.as_str(), s.as_str())),
            Value::Null => out.push((k.as_str(), "")),
            other => type_error(errs, &p.child(key).key(k), other, "a string"),
        }
    }
    Some(out)
}

/// A list of strings member; non-strings are reported and skipped.
pub(crate) fn str_list<'a>(errs: &mut Errs, v: J<'a>, key: &str, p: &Path) -> Vec<&'a str> {
    let mut out = Vec::new();
    for (i, x) in arr(errs, v, key, p).iter().enumerate() {
        match x.as_str() {
            Some(s) => out.push(s),
            None => type_error(errs, &p.child(key).index(i), x, "a string"),
        }
    }
    out
}

/// Upstream's semantic equality on JSON: nulls, empty lists, empty strings and `false`
/// equal an absent member (Go zero values); objects compare member-wise.
pub(crate) fn semantic_eq(a: J<'_>, b: J<'_>) -> bool {
    fn zero(v: J<'_>) -> bool {
        match v {
            None | Some(Value::Null) => true,
            Some(Value::Array(a)) => a.is_empty(),
            Some(Value::String(s)) => s.is_empty(),
            Some(Value::Bool(b)) => !b,
            _ => false,
        }
    }
    if zero(a) && zero(b) {
        return true;
    }
    match (a, b) {
        (Some(Value::Object(x)), Some(Value::Object(y))) => {
            x.iter().all(|(k, v)| semantic_eq(Some(v), y.get(k)))
                && y.iter().all(|(k, v)| x.contains_key(k) || zero(Some(v)))
        }
        (Some(Value::Array(x)), Some(Value::Array(y))) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| semantic_eq(Some(p), Some(q)))
        }
        (Some(Value::Number(x)), Some(Value::Number(y))) => x.as_f64() == y.as_f64(),
        (Some(x), Some(y)) => x == y,
        _ => false,
    }
}

#[cfg(test)]
mod tests;
