//! Object metadata (names, namespaces, labels, annotations, owner references, finalizers)
//! on create and update, label-selector validation, and label-selector matching.

use super::names::{self, is_dns1123_subdomain, is_qualified_name, is_valid_label_value};
use super::{
    Errs, IMMUTABLE, J, Path, arr, boolean, each_invalid, forbidden, get, gorepr, int, invalid, invalid_raw, required,
    st, st0, str_list, str_map, too_long,
};
use serde_json::Value;

/// A name format check (`prefix`: checking a `generateName`).
pub(crate) type NameFn = fn(&str, bool) -> Vec<String>;

/// Total size allowed for all annotation keys and values.
const TOTAL_ANNOTATION_SIZE: usize = 256 * 1024;

/// Metadata on create, or on update when `old` is given.
pub(crate) fn object_meta(errs: &mut Errs, obj: &Value, old: Option<&Value>, namespaced: bool, name_fn: NameFn) {
    match old {
        None => meta_create(errs, obj, namespaced, name_fn),
        Some(old) => meta_update(errs, obj, old),
    }
}

/// Metadata for kinds whose update re-runs the create checks on the new object: the update
/// checks first when `old` is given, then the create checks.
pub(crate) fn meta_update_then_create(
    errs: &mut Errs,
    obj: &Value,
    old: Option<&Value>,
    namespaced: bool,
    name_fn: NameFn,
) {
    if let Some(old) = old {
        meta_update(errs, obj, old);
    }
    meta_create(errs, obj, namespaced, name_fn);
}

/// `ValidateObjectMeta` (core flavour, with the standard-finalizer check).
pub(crate) fn meta_create(errs: &mut Errs, obj: &Value, namespaced: bool, name_fn: NameFn) {
    let p = Path::new("metadata");
    let m = super::obj(errs, Some(obj), "metadata", &Path::new(""));
    if let Some(gen_name) = st(errs, m, "generateName", &p).filter(|s| !s.is_empty()) {
        each_invalid(errs, &p.child("generateName"), gen_name, name_fn(gen_name, true));
    }
    match st(errs, m, "name", &p).filter(|s| !s.is_empty()) {
        None => required(errs, &p.child("name"), "name or generateName is required"),
        Some(name) => each_invalid(errs, &p.child("name"), name, name_fn(name, false)),
    }
    let ns = st0(errs, m, "namespace", &p);
    if namespaced {
        if ns.is_empty() {
            required(errs, &p.child("namespace"), "");
        } else {
            each_invalid(errs, &p.child("namespace"), ns, names::is_dns1123_label(ns));
        }
    } else if !ns.is_empty() {
        forbidden(errs, &p.child("namespace"), "not allowed on this type");
    }
    if let Some(g) = int(errs, m, "generation", &p) {
        super::nonneg(errs, &p.child("generation"), g);
    }
    common(errs, m, &p);
}

/// `ValidateObjectMetaUpdate` (core flavour).
pub(crate) fn meta_update(errs: &mut Errs, obj: &Value, old: &Value) {
    let p = Path::new("metadata");
    let root = Path::new("");
    let m = super::obj(errs, Some(obj), "metadata", &root);
    let om = get(Some(old), "metadata");
    let mut scratch = Errs::new();
    let new_fin = str_list(errs, m, "finalizers", &p);
    if get(om, "deletionTimestamp").is_some() {
        let old_fin = str_list(&mut scratch, om, "finalizers", &p);
        let mut extra: Vec<&str> = new_fin.iter().copied().filter(|f| !old_fin.contains(f)).collect();
        extra.sort_unstable();
        extra.dedup();
        if !extra.is_empty() {
            forbidden(
                errs,
                &p.child("finalizers"),
                format!(
                    "no new finalizers can be added if the object is being deleted, found new finalizers {}",
                    gorepr::string_slice(Some(&extra))
                ),
            );
        }
    }
    let generation = int(errs, m, "generation", &p).unwrap_or(0);
    let old_generation = int(&mut scratch, om, "generation", &p).unwrap_or(0);
    if generation < old_generation {
        invalid(errs, &p.child("generation"), generation, "must not be decremented");
    }
    for key in ["name", "namespace", "uid"] {
        let new = st0(errs, m, key, &p);
        let was = st0(&mut scratch, om, key, &p);
        if new != was {
            invalid(errs, &p.child(key), new, IMMUTABLE);
        }
    }
    for key in ["creationTimestamp", "deletionTimestamp"] {
        let (new, was) = (get(m, key), get(om, key));
        if !same_time(new, was) {
            let shown = if key == "deletionTimestamp" && new.is_none() {
                "null".to_string()
            } else {
                gorepr::time(new)
            };
            invalid_raw(errs, &p.child(key), shown, IMMUTABLE);
        }
    }
    let (new, was) = (
        get(m, "deletionGracePeriodSeconds"),
        get(om, "deletionGracePeriodSeconds"),
    );
    if new != was {
        errs.push(crate::field::FieldError::invalid(
            p.child("deletionGracePeriodSeconds").s(),
            new.cloned().unwrap_or(Value::Null),
            IMMUTABLE,
        ));
    }
    common(errs, m, &p);
}

fn same_time(a: J<'_>, b: J<'_>) -> bool {
    match (a.and_then(Value::as_str), b.and_then(Value::as_str)) {
        (Some(x), Some(y)) => {
            x == y
                || matches!((x.parse::<jiff::Timestamp>(), y.parse::<jiff::Timestamp>()), (Ok(p), Ok(q)) if p.as_second() == q.as_second())
        }
        (None, None) => true,
        _ => false,
    }
}

/// Labels, annotations, owner references and finalizers (shared by create and update).
fn common(errs: &mut Errs, m: J<'_>, p: &Path) {
    let labels = str_map(errs, m, "labels", p);
    validate_labels(errs, labels.as_deref(), &p.child("labels"));
    let anns = str_map(errs, m, "annotations", p);
    validate_annotations(errs, anns.as_deref(), &p.child("annotations"));
    owner_references(errs, m, p);
    let fins = str_list(errs, m, "finalizers", p);
    let fp = p.child("finalizers");
    for f in &fins {
        each_invalid(errs, &fp, f, is_qualified_name(f));
    }
    if fins.contains(&"orphan") && fins.contains(&"foregroundDeletion") {
        invalid_raw(
            errs,
            &fp,
            gorepr::string_slice(Some(&fins)),
            "finalizer orphan and foregroundDeletion cannot be both set",
        );
    }
    for (i, f) in fins.iter().enumerate() {
        kube_finalizer_name(errs, f, &fp.index(i));
    }
}

/// Finalizers without a `/` must be one of the standard names (the CRD cleanup finalizer is
/// the API server's own).
pub(crate) fn kube_finalizer_name(errs: &mut Errs, f: &str, p: &Path) {
    let standard = matches!(
        f,
        "kubernetes" | "orphan" | "foregroundDeletion" | "customresourcecleanup.apiextensions.k8s.io"
    );
    if !f.contains('/') && !standard {
        invalid(
            errs,
            p,
            f,
            "name is neither a standard finalizer name nor is it fully qualified",
        );
    }
}

fn owner_references(errs: &mut Errs, m: J<'_>, p: &Path) {
    let fp = p.child("ownerReferences");
    let refs = arr(errs, m, "ownerReferences", p);
    let mut first_controller: Option<String> = None;
    for (i, r) in refs.iter().enumerate() {
        let ip = fp.index(i);
        let r = Some(r);
        let api_version = st0(errs, r, "apiVersion", &ip);
        let kind = st0(errs, r, "kind", &ip);
        let name = st0(errs, r, "name", &ip);
        let uid = st0(errs, r, "uid", &ip);
        let version = match api_version.matches('/').count() {
            0 => Some(api_version),
            1 => api_version.split_once('/').map(|(_, v)| v),
            _ => None,
        };
        if version.is_none_or(str::is_empty) {
            invalid(errs, &fp.child("apiVersion"), api_version, "version must not be empty");
        }
        if kind.is_empty() {
            invalid(errs, &fp.child("kind"), kind, "must not be empty");
        }
        if name.is_empty() {
            invalid(errs, &fp.child("name"), name, "must not be empty");
        }
        if uid.is_empty() {
            invalid(errs, &fp.child("uid"), uid, "must not be empty");
        }
        if api_version == "v1" && kind == "Event" {
            invalid_raw(
                errs,
                &fp,
                owner_ref_repr(r),
                "/v1, Kind=Event is disallowed from being an owner",
            );
        }
        if boolean(errs, r, "controller", &ip) == Some(true) {
            let cur = format!("{kind}/{name}");
            match &first_controller {
                Some(first) => {
                    let all = refs
                        .iter()
                        .map(|x| owner_ref_repr(Some(x)))
                        .collect::<Vec<_>>()
                        .join(", ");
                    invalid_raw(
                        errs,
                        &fp,
                        format!("[]v1.OwnerReference{{{all}}}"),
                        &format!(
                            "Only one reference can have Controller set to true. Found \"true\" in references for {first} and {cur}"
                        ),
                    );
                }
                None => first_controller = Some(cur),
            }
        }
    }
}

fn owner_ref_repr(r: J<'_>) -> String {
    let s = |k| gorepr::quote(get(r, k).and_then(Value::as_str).unwrap_or(""));
    format!(
        "v1.OwnerReference{{APIVersion:{}, Kind:{}, Name:{}, UID:{}, Controller:{}, BlockOwnerDeletion:{}}}",
        s("apiVersion"),
        s("kind"),
        s("name"),
        s("uid"),
        gorepr::pointer("bool", get(r, "controller").is_some()),
        gorepr::pointer("bool", get(r, "blockOwnerDeletion").is_some())
    )
}

/// `ValidateLabels`: keys are qualified names, values label values; errors at `p` itself.
pub(crate) fn validate_labels(errs: &mut Errs, labels: Option<&[(&str, &str)]>, p: &Path) {
    for (k, v) in labels.unwrap_or_default() {
        each_invalid(errs, p, k, is_qualified_name(k));
        each_invalid(errs, p, v, is_valid_label_value(v));
    }
}

/// `ValidateAnnotations`: keys are (case-insensitive) qualified names; total size capped.
pub(crate) fn validate_annotations(errs: &mut Errs, anns: Option<&[(&str, &str)]>, p: &Path) {
    let anns = anns.unwrap_or_default();
    for (k, _) in anns {
        each_invalid(errs, p, k, is_qualified_name(&k.to_lowercase()));
    }
    let total: usize = anns.iter().map(|(k, v)| k.len() + v.len()).sum();
    if total > TOTAL_ANNOTATION_SIZE {
        too_long(errs, p, TOTAL_ANNOTATION_SIZE);
    }
}

/// `ValidateLabelName`.
pub(crate) fn label_name(errs: &mut Errs, name: &str, p: &Path) {
    each_invalid(errs, p, name, is_qualified_name(name));
}

/// `ValidateLabelSelector` (label values in expressions are checked too).
pub(crate) fn validate_label_selector(errs: &mut Errs, sel: J<'_>, p: &Path) {
    if sel.is_none() {
        return;
    }
    let labels = str_map(errs, sel, "matchLabels", p);
    validate_labels(errs, labels.as_deref(), &p.child("matchLabels"));
    let ep = p.child("matchExpressions");
    for (i, e) in arr(errs, sel, "matchExpressions", p).iter().enumerate() {
        let ip = ep.index(i);
        let e = Some(e);
        let op = st0(errs, e, "operator", &ip);
        let values = str_list(errs, e, "values", &ip);
        match op {
            "In" | "NotIn" => {
                if values.is_empty() {
                    required(
                        errs,
                        &ip.child("values"),
                        "must be specified when `operator` is 'In' or 'NotIn'",
                    );
                }
            }
            "Exists" | "DoesNotExist" => {
                if !values.is_empty() {
                    forbidden(
                        errs,
                        &ip.child("values"),
                        "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                    );
                }
            }
            _ => invalid(errs, &ip.child("operator"), op, "not a valid selector operator"),
        }
        let key = st0(errs, e, "key", &ip);
        label_name(errs, key, &ip.child("key"));
        for (j, v) in values.iter().enumerate() {
            each_invalid(errs, &ip.child("values").index(j), v, is_valid_label_value(v));
        }
    }
}

/// Why a selector cannot be turned into a matcher (upstream `LabelSelectorAsSelector`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SelectorError(pub String);

#[derive(Debug, Clone)]
pub(crate) enum Op {
    In(Vec<String>),
    NotIn(Vec<String>),
    Exists,
    DoesNotExist,
}

/// A label selector ready to match label sets.
#[derive(Debug, Clone)]
pub(crate) enum LabelSelector {
    /// A missing selector: matches nothing.
    Nothing,
    /// Requirements, all of which must hold (none: matches everything).
    Reqs(Vec<(String, Op)>),
}

impl LabelSelector {
    /// Builds a matcher from a JSON `LabelSelector` (`None`/null: matches nothing).
    pub(crate) fn from_json(v: J<'_>) -> Result<LabelSelector, SelectorError> {
        let Some(v) = v else {
            return Ok(LabelSelector::Nothing);
        };
        let mut reqs = Vec::new();
        if let Some(m) = get(Some(v), "matchLabels").and_then(Value::as_object) {
            for (k, val) in m {
                let val = val.as_str().unwrap_or("");
                check_requirement(k, &[val])?;
                reqs.push((k.clone(), Op::In(vec![val.to_string()])));
            }
        }
        if let Some(list) = get(Some(v), "matchExpressions").and_then(Value::as_array) {
            for e in list {
                let key = e.get("key").and_then(Value::as_str).unwrap_or("");
                let op = e.get("operator").and_then(Value::as_str).unwrap_or("");
                let values: Vec<String> = e
                    .get("values")
                    .and_then(Value::as_array)
                    .map(|a| a.iter().map(|x| x.as_str().unwrap_or("").to_string()).collect())
                    .unwrap_or_default();
                let refs: Vec<&str> = values.iter().map(String::as_str).collect();
                let op = match op {
                    "In" | "NotIn" if values.is_empty() => {
                        return Err(SelectorError(
                            "for 'in', 'notin' operators, values set can't be empty".into(),
                        ));
                    }
                    "Exists" | "DoesNotExist" if !values.is_empty() => {
                        return Err(SelectorError(
                            "values set must be empty for exists and does not exist".into(),
                        ));
                    }
                    "In" => Op::In(values.clone()),
                    "NotIn" => Op::NotIn(values.clone()),
                    "Exists" => Op::Exists,
                    "DoesNotExist" => Op::DoesNotExist,
                    other => {
                        return Err(SelectorError(format!(
                            "{} is not a valid label selector operator",
                            gorepr::quote(other)
                        )));
                    }
                };
                check_requirement(key, &refs)?;
                reqs.push((key.to_string(), op));
            }
        }
        Ok(LabelSelector::Reqs(reqs))
    }

    /// True for a selector with no requirements (matches everything).
    pub(crate) fn is_empty(&self) -> bool {
        matches!(self, LabelSelector::Reqs(r) if r.is_empty())
    }

    /// Whether `labels` (a JSON object of strings, or absent) satisfies the selector.
    pub(crate) fn matches(&self, labels: J<'_>) -> bool {
        let reqs = match self {
            LabelSelector::Nothing => return false,
            LabelSelector::Reqs(r) => r,
        };
        let label = |k: &str| get(labels, k).and_then(Value::as_str);
        reqs.iter().all(|(k, op)| match op {
            Op::In(vals) => label(k).is_some_and(|v| vals.iter().any(|x| x == v)),
            Op::NotIn(vals) => label(k).is_none_or(|v| !vals.iter().any(|x| x == v)),
            Op::Exists => label(k).is_some(),
            Op::DoesNotExist => label(k).is_none(),
        })
    }
}

fn check_requirement(key: &str, values: &[&str]) -> Result<(), SelectorError> {
    if let Some(m) = is_qualified_name(key).into_iter().next() {
        return Err(SelectorError(format!(
            "key: Invalid value: {}: {m}",
            gorepr::quote(key)
        )));
    }
    for v in values {
        if let Some(m) = is_valid_label_value(v).into_iter().next() {
            return Err(SelectorError(format!(
                "values[0][{key}]: Invalid value: {}: {m}",
                gorepr::quote(v)
            )));
        }
    }
    Ok(())
}

/// The namespace-name check used for `metadata.namespace` and references.
pub(crate) fn namespace_name(name: &str) -> Vec<String> {
    names::is_dns1123_label(name)
}

/// A DNS-1123 subdomain check reported at `p`.
pub(crate) fn subdomain(errs: &mut Errs, v: &str, p: &Path) {
    each_invalid(errs, p, v, is_dns1123_subdomain(v));
}

/// A DNS-1123 label check reported at `p`.
pub(crate) fn dns_label(errs: &mut Errs, v: &str, p: &Path) {
    each_invalid(errs, p, v, names::is_dns1123_label(v));
}

/// A qualified-name check reported at `p`.
pub(crate) fn qualified_name(errs: &mut Errs, v: &str, p: &Path) {
    each_invalid(errs, p, v, is_qualified_name(v));
}
