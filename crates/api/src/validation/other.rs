//! Events (core/v1 and events.k8s.io/v1), Lease, EndpointSlice and StorageClass, plus the
//! bodies of the pod `binding` and the `scale` subresources.

use super::meta::{self, dns_label, meta_create, meta_update, qualified_name, subdomain};
use super::names;
use super::pod::protocol;
use super::{
    Errs, IMMUTABLE, J, Path, arr, each_invalid, forbidden, get, int, invalid, invalid_raw, nonneg_field,
    not_supported, required, required_one_of, semantic_eq, st, st0, str_map, too_long, too_many,
};
use serde_json::Value;
use std::collections::HashSet;

/// Internal (core) event fields and where events.k8s.io/v1 keeps them.
struct EventFields<'a> {
    namespace: &'a str,
    involved_ns: &'a str,
    event_time: bool,
    reporting_controller: &'a str,
    reporting_instance: &'a str,
    action: &'a str,
    reason: &'a str,
    message: &'a str,
}

impl<'a> EventFields<'a> {
    /// Reads an event whose involved object, reporting controller and message are under the
    /// given keys (core/v1 and events.k8s.io/v1 name them differently).
    fn read(obj: &'a Value, involved: &str, controller: &str, message: &str) -> Self {
        let v = Some(obj);
        let s = |m: J<'a>, k: &str| get(m, k).and_then(Value::as_str).unwrap_or("");
        EventFields {
            namespace: s(get(v, "metadata"), "namespace"),
            involved_ns: s(get(v, involved), "namespace"),
            event_time: get(v, "eventTime").is_some(),
            reporting_controller: s(v, controller),
            reporting_instance: s(v, "reportingInstance"),
            action: s(v, "action"),
            reason: s(v, "reason"),
            message: s(v, message),
        }
    }
}

/// Upstream's `legacyValidateEvent`.
fn legacy_event(errs: &mut Errs, f: &EventFields<'_>) {
    let mismatch = |errs: &mut Errs| {
        invalid(
            errs,
            &Path::new("involvedObject").child("namespace"),
            f.involved_ns,
            "does not match event.namespace",
        );
    };
    if !f.event_time {
        if f.involved_ns.is_empty() {
            if !f.namespace.is_empty() && f.namespace != "default" {
                mismatch(errs);
            }
        } else if f.namespace != f.involved_ns {
            mismatch(errs);
        }
    } else {
        if f.involved_ns.is_empty() && f.namespace != "default" && f.namespace != "kube-system" {
            mismatch(errs);
        }
        if f.reporting_controller.is_empty() {
            required(errs, &Path::new("reportingController"), "");
        }
        qualified_name(errs, f.reporting_controller, &Path::new("reportingController"));
        for (name, value) in [
            ("reportingInstance", f.reporting_instance),
            ("action", f.action),
            ("reason", f.reason),
        ] {
            if value.is_empty() {
                required(errs, &Path::new(name), "");
            }
            if value.len() > 128 {
                invalid(errs, &Path::new(name), "", "can have at most 128 characters");
            }
        }
        if f.message.len() > 1024 {
            invalid(errs, &Path::new("message"), "", "can have at most 1024 characters");
        }
    }
    each_invalid(
        errs,
        &Path::new("namespace"),
        f.namespace,
        names::is_dns1123_subdomain(f.namespace),
    );
}

fn path_segment_name(name: &str, _prefix: bool) -> Vec<String> {
    if name == "." || name == ".." {
        return vec![format!("may not be '{name}'")];
    }
    ["/", "%"]
        .iter()
        .filter(|c| name.contains(**c))
        .map(|c| format!("may not contain '{c}'"))
        .collect()
}

/// core/v1 Event: only the legacy checks, then the generic metadata checks.
pub(crate) fn validate_core_event(errs: &mut Errs, obj: &Value) {
    let f = EventFields::read(obj, "involvedObject", "reportingComponent", "message");
    legacy_event(errs, &f);
    if errs.is_empty() {
        meta_create(errs, obj, true, path_segment_name);
    }
}

/// events.k8s.io/v1 Event: legacy checks plus the strict ones (paths use core field names).
pub(crate) fn validate_events_event(errs: &mut Errs, obj: &Value, old: Option<&Value>) {
    let f = EventFields::read(obj, "regarding", "reportingController", "note");
    legacy_event(errs, &f);
    let v = Some(obj);
    let s = |k: &str| get(v, k).and_then(Value::as_str).unwrap_or("");
    let series_changed = old.is_none_or(|o| !semantic_eq(get(v, "series"), get(Some(o), "series")));
    meta::object_meta(errs, obj, old, true, names::name_is_dns_subdomain);
    if series_changed && let Some(series) = get(v, "series") {
        if get(Some(series), "count").and_then(Value::as_i64).unwrap_or(0) < 2 {
            invalid(errs, &Path::new("series.count"), "", "should be at least 2");
        }
        if get(Some(series), "lastObservedTime").is_none() {
            required(errs, &Path::new("series.lastObservedTime"), "");
        }
    }
    let Some(old) = old else {
        if !f.event_time {
            required(errs, &Path::new("eventTime"), "");
        }
        let t = s("type");
        if t != "Normal" && t != "Warning" {
            invalid(errs, &Path::new("type"), "", format!("has invalid value: {t}"));
        }
        for (core, v1) in [
            ("firstTimestamp", "deprecatedFirstTimestamp"),
            ("lastTimestamp", "deprecatedLastTimestamp"),
        ] {
            if get(v, v1).is_some() {
                invalid(errs, &Path::new(core), "", "needs to be unset");
            }
        }
        if get(v, "deprecatedCount").and_then(Value::as_i64).unwrap_or(0) != 0 {
            invalid(errs, &Path::new("count"), "", "needs to be unset");
        }
        let src = get(v, "deprecatedSource");
        let src_set = ["component", "host"]
            .iter()
            .any(|k| get(src, k).and_then(Value::as_str).is_some_and(|x| !x.is_empty()));
        if src_set {
            invalid(errs, &Path::new("source"), "", "needs to be unset");
        }
        return;
    };
    let immutables = [
        ("involvedObject", "regarding"),
        ("reason", "reason"),
        ("message", "note"),
        ("source", "deprecatedSource"),
        ("firstTimestamp", "deprecatedFirstTimestamp"),
        ("lastTimestamp", "deprecatedLastTimestamp"),
        ("count", "deprecatedCount"),
        ("type", "type"),
        ("eventTime", "eventTime"),
        ("action", "action"),
        ("related", "related"),
        ("reportingController", "reportingController"),
        ("reportingInstance", "reportingInstance"),
    ];
    for (core, v1) in immutables {
        let (n, o) = (get(v, v1), get(Some(old), v1));
        if semantic_eq(n, o) {
            continue;
        }
        match n {
            Some(Value::String(x)) => invalid(errs, &Path::new(core), x.as_str(), IMMUTABLE),
            Some(Value::Number(x)) => invalid(errs, &Path::new(core), x.clone(), IMMUTABLE),
            _ => invalid_raw(errs, &Path::new(core), "...", IMMUTABLE),
        }
    }
}

/// The body of a pod `binding` subresource request (upstream's `ValidatePodBinding`: only
/// the target is checked).
pub(crate) fn validate_binding(errs: &mut Errs, obj: &Value) {
    let tp = Path::new("target");
    let target = super::obj(errs, Some(obj), "target", &Path::new(""));
    let kind = st0(errs, target, "kind", &tp);
    if !kind.is_empty() && kind != "Node" {
        not_supported(errs, &tp.child("kind"), kind, &["Node", "<empty>"]);
    }
    if st0(errs, target, "name", &tp).is_empty() {
        required(errs, &tp.child("name"), "");
    }
}

/// autoscaling/v1 Scale (the `scale` subresource body), create or update alike.
pub(crate) fn validate_scale(errs: &mut Errs, obj: &Value) {
    meta_create(errs, obj, true, names::name_is_dns_subdomain);
    let sp = Path::new("spec");
    let spec = super::obj(errs, Some(obj), "spec", &Path::new(""));
    nonneg_field(errs, spec, "replicas", &sp);
}

/// coordination.k8s.io/v1 Lease.
pub(crate) fn validate_lease(errs: &mut Errs, obj: &Value, old: Option<&Value>) {
    meta::object_meta(errs, obj, old, true, names::name_is_dns_subdomain);
    let sp = Path::new("spec");
    let spec = super::obj(errs, Some(obj), "spec", &Path::new(""));
    if let Some(d) = int(errs, spec, "leaseDurationSeconds", &sp)
        && d <= 0
    {
        invalid(errs, &sp.child("leaseDurationSeconds"), d, "must be greater than 0");
    }
    nonneg_field(errs, spec, "leaseTransitions", &sp);
}

/// discovery.k8s.io/v1 EndpointSlice.
pub(crate) fn validate_endpoint_slice(errs: &mut Errs, obj: &Value, old: Option<&Value>) {
    meta::meta_update_then_create(errs, obj, old, true, names::name_is_dns_subdomain);
    let root = Path::new("");
    let addr_type = st0(errs, Some(obj), "addressType", &root);
    required_one_of(errs, addr_type, &Path::new("addressType"), &["FQDN", "IPv4", "IPv6"]);
    let ep = Path::new("endpoints");
    let endpoints = arr(errs, Some(obj), "endpoints", &root);
    if endpoints.len() > 1000 {
        too_many(errs, &ep, endpoints.len(), 1000);
    }
    for (i, e) in endpoints.iter().enumerate() {
        let ip = ep.index(i);
        let e = Some(e);
        let ap = ip.child("addresses");
        let addrs = super::str_list(errs, e, "addresses", &ip);
        if addrs.is_empty() {
            required(errs, &ap, "must contain at least 1 address");
        } else if addrs.len() > 100 {
            too_many(errs, &ap, addrs.len(), 100);
        }
        for (j, a) in addrs.iter().enumerate() {
            let p = ap.index(j);
            match addr_type {
                "IPv4" | "IPv6" => {
                    let ok = names::parse_ip(a).is_some_and(|x| x.is_ipv4() == (addr_type == "IPv4"));
                    if !ok {
                        invalid(errs, &p, *a, format!("must be a valid {addr_type} address"));
                    }
                }
                "FQDN" => fqdn(errs, a, &p),
                _ => {}
            }
        }
        if let Some(n) = st(errs, e, "nodeName", &ip) {
            subdomain(errs, n, &ip.child("nodeName"));
        }
        if let Some(h) = st(errs, e, "hostname", &ip) {
            dns_label(errs, h, &ip.child("hostname"));
        }
        let topo = str_map(errs, e, "deprecatedTopology", &ip);
        meta::validate_labels(errs, topo.as_deref(), &ip.child("deprecatedTopology"));
    }
    let pp = Path::new("ports");
    let mut seen = HashSet::new();
    for (i, port) in arr(errs, Some(obj), "ports", &root).iter().enumerate() {
        let ip = pp.index(i);
        let port = Some(port);
        let name = st0(errs, port, "name", &ip);
        if !name.is_empty() {
            dns_label(errs, name, &ip.child("name"));
        }
        if !seen.insert(name) {
            super::duplicate(errs, &ip.child("name"), name);
        }
        protocol(errs, port, &ip);
        if let Some(ap) = st(errs, port, "appProtocol", &ip) {
            qualified_name(errs, ap, &ip.child("appProtocol"));
        }
    }
    if let Some(old) = old {
        let was = get(Some(old), "addressType").and_then(Value::as_str).unwrap_or("");
        if was != addr_type {
            invalid(errs, &Path::new("addressType"), addr_type, IMMUTABLE);
        }
    }
}

/// `IsFullyQualifiedDomainName`.
fn fqdn(errs: &mut Errs, name: &str, p: &Path) {
    if name.is_empty() {
        required(errs, p, "");
        return;
    }
    let name = name.strip_suffix('.').unwrap_or(name);
    let msgs = names::is_dns1123_subdomain(name);
    if !msgs.is_empty() {
        invalid(errs, p, name, msgs.join(","));
        return;
    }
    if name.split('.').count() < 2 {
        invalid(
            errs,
            p,
            name,
            "should be a domain with at least two segments separated by dots",
        );
        return;
    }
    for label in name.split('.') {
        let msgs = names::is_dns1123_label(label);
        if !msgs.is_empty() {
            invalid(errs, p, label, msgs.join(","));
            return;
        }
    }
}

/// storage.k8s.io/v1 StorageClass.
pub(crate) fn validate_storage_class(errs: &mut Errs, obj: &Value, old: Option<&Value>) {
    let root = Path::new("");
    if let Some(old) = old {
        meta_update(errs, obj, old);
        if !semantic_eq(get(Some(obj), "parameters"), get(Some(old), "parameters")) {
            forbidden(errs, &Path::new("parameters"), "updates to parameters are forbidden.");
        }
        if get(Some(obj), "provisioner") != get(Some(old), "provisioner") {
            forbidden(errs, &Path::new("provisioner"), "updates to provisioner are forbidden.");
        }
        if get(Some(obj), "reclaimPolicy") != get(Some(old), "reclaimPolicy") {
            forbidden(
                errs,
                &Path::new("reclaimPolicy"),
                "updates to reclaimPolicy are forbidden.",
            );
        }
        let (n, o) = (get(Some(obj), "volumeBindingMode"), get(Some(old), "volumeBindingMode"));
        if n != o {
            invalid(
                errs,
                &Path::new("volumeBindingMode"),
                n.cloned().unwrap_or(Value::Null),
                IMMUTABLE,
            );
        }
        return;
    }
    meta_create(errs, obj, false, names::name_is_dns_subdomain);
    let prov = st0(errs, Some(obj), "provisioner", &root);
    if prov.is_empty() {
        required(errs, &Path::new("provisioner"), "");
    } else {
        for m in names::is_qualified_name(&prov.to_lowercase()) {
            invalid(errs, &Path::new("provisioner"), prov, m);
        }
    }
    let params = str_map(errs, Some(obj), "parameters", &root).unwrap_or_default();
    let pp = Path::new("parameters");
    if params.len() > 512 {
        too_long(errs, &pp, 512);
    } else {
        let mut total = 0;
        for (k, v) in &params {
            if k.is_empty() {
                invalid(errs, &pp, *k, "field can not be empty.");
            }
            total += k.len() + v.len();
        }
        if total > 256 * 1024 {
            too_long(errs, &pp, 256 * 1024);
        }
    }
    if let Some(rp) = st(errs, Some(obj), "reclaimPolicy", &root)
        && rp != "Delete"
        && rp != "Retain"
    {
        not_supported(errs, &Path::new("reclaimPolicy"), rp, &["Delete", "Retain"]);
    }
    match st(errs, Some(obj), "volumeBindingMode", &root) {
        None => required(errs, &Path::new("volumeBindingMode"), ""),
        Some("Immediate" | "WaitForFirstConsumer") => {}
        Some(other) => not_supported(
            errs,
            &Path::new("volumeBindingMode"),
            other,
            &["Immediate", "WaitForFirstConsumer"],
        ),
    }
    let tp = Path::new("allowedTopologies");
    for (i, term) in arr(errs, Some(obj), "allowedTopologies", &root).iter().enumerate() {
        let exprs = get(Some(term), "matchLabelExpressions")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let mut keys = HashSet::new();
        for (j, e) in exprs.iter().enumerate() {
            let ep = tp.index(i).child("matchLabelExpressions").index(j);
            let values = super::str_list(errs, Some(e), "values", &ep);
            if values.is_empty() {
                required(errs, &ep.child("values"), "");
            }
            let mut seen = HashSet::new();
            for (k, val) in values.iter().enumerate() {
                if !seen.insert(*val) {
                    super::duplicate(errs, &ep.child("values").index(k), *val);
                }
            }
            let key = st0(errs, Some(e), "key", &ep);
            meta::label_name(errs, key, &ep.child("key"));
            if !keys.insert(key) {
                super::duplicate(errs, &ep.child("key"), key);
            }
        }
    }
}
