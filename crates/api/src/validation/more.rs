//! Validation of the kinds beyond the workloads: RBAC, policy, networking, autoscaling,
//! scheduling, quota and limits, node, storage (CSI), admission webhooks, CRDs and the
//! aggregator's APIServices. Upstream's main rules with its field paths and messages; a
//! kind's metadata is checked with its own name rule (RBAC and PDB names are path segments,
//! most others DNS subdomains).

use serde_json::Value;

use super::meta::{NameFn, meta_update, object_meta, validate_label_selector};
use super::names::{self, is_dns1035_label, is_dns1123_subdomain, is_qualified_name};
use super::{Errs, J, Path, arr, forbidden, get, int, invalid, not_supported, required, st, st0, str_list};

/// Upstream's `path.ValidatePathSegmentName`: anything but `.`, `..` and names with `/` or
/// `%` (RBAC names such as `system:controller:x` are fine).
pub(crate) fn name_is_path_segment(name: &str, prefix: bool) -> Vec<String> {
    let mut out = Vec::new();
    if !prefix {
        if name == "." {
            out.push("may not be '.'".to_string());
        } else if name == ".." {
            out.push("may not be '..'".to_string());
        }
    }
    if name.contains('/') {
        out.push("may not contain '/'".to_string());
    }
    if name.contains('%') {
        out.push("may not contain '%'".to_string());
    }
    out
}

fn each(errs: &mut Errs, p: &Path, v: &str, msgs: Vec<String>) {
    for m in msgs {
        invalid(errs, p, v, m);
    }
}

/// The validator of `group`/`kind`, if this module has one.
pub(crate) fn validate(errs: &mut Errs, group: &str, kind: &str, obj: &Value, old: Option<&Value>) -> bool {
    let root = Some(obj);
    match (group, kind) {
        ("rbac.authorization.k8s.io", "Role" | "ClusterRole") => {
            object_meta(errs, obj, old, kind == "Role", name_is_path_segment);
            for (i, r) in arr(errs, root, "rules", &Path::new("")).iter().enumerate() {
                policy_rule(errs, r, kind == "Role", &Path::new("rules").index(i));
            }
            if let Some(agg) = get(root, "aggregationRule") {
                let p = Path::new("aggregationRule");
                let selectors = arr(errs, Some(agg), "clusterRoleSelectors", &p);
                if selectors.is_empty() {
                    required(
                        errs,
                        &p.child("clusterRoleSelectors"),
                        "at least one clusterRoleSelector required if aggregationRule is non-nil",
                    );
                }
                for (i, s) in selectors.iter().enumerate() {
                    validate_label_selector(errs, Some(s), &p.child("clusterRoleSelectors").index(i));
                }
            }
        }
        ("rbac.authorization.k8s.io", "RoleBinding" | "ClusterRoleBinding") => {
            object_meta(errs, obj, old, kind == "RoleBinding", name_is_path_segment);
            binding(errs, obj, old, kind == "RoleBinding");
        }
        ("policy", "PodDisruptionBudget") => {
            object_meta(errs, obj, old, true, name_is_path_segment);
            pdb(errs, obj);
        }
        ("scheduling.k8s.io", "PriorityClass") => priority_class(errs, obj, old),
        ("networking.k8s.io", "NetworkPolicy") => {
            object_meta(errs, obj, old, true, names::name_is_dns_subdomain);
            network_policy(errs, obj);
        }
        ("networking.k8s.io", "Ingress") => {
            object_meta(errs, obj, old, true, names::name_is_dns_subdomain);
            ingress(errs, obj);
        }
        ("networking.k8s.io", "IngressClass") => {
            object_meta(errs, obj, old, false, names::name_is_dns_subdomain);
            ingress_class(errs, obj, old);
        }
        ("autoscaling", "HorizontalPodAutoscaler") => {
            object_meta(errs, obj, old, true, names::name_is_dns_subdomain);
            hpa(errs, obj);
        }
        ("", "ResourceQuota") => {
            object_meta(errs, obj, old, true, names::name_is_dns_subdomain);
            resource_quota(errs, obj);
        }
        ("", "LimitRange") => {
            object_meta(errs, obj, old, true, names::name_is_dns_subdomain);
            limit_range(errs, obj);
        }
        ("", "PodTemplate") => {
            object_meta(errs, obj, old, true, names::name_is_dns_subdomain);
            super::pod::pod_template_spec(errs, get(root, "template"), &Path::new("template"));
        }
        ("node.k8s.io", "RuntimeClass") => {
            object_meta(errs, obj, old, false, names::name_is_dns_subdomain);
            let handler = st0(errs, root, "handler", &Path::new(""));
            each(
                errs,
                &Path::new("handler"),
                handler,
                names::name_is_dns_label(handler, false),
            );
            if let Some(old) = old
                && old.get("handler") != obj.get("handler")
            {
                invalid(errs, &Path::new("handler"), handler, super::IMMUTABLE);
            }
        }
        ("admissionregistration.k8s.io", "MutatingWebhookConfiguration" | "ValidatingWebhookConfiguration") => {
            object_meta(errs, obj, old, false, names::name_is_dns_subdomain);
            webhooks(errs, obj, kind.starts_with("Mutating"));
        }
        ("admissionregistration.k8s.io", "ValidatingAdmissionPolicy") => {
            object_meta(errs, obj, old, false, names::name_is_dns_subdomain);
            admission_policy(errs, obj);
        }
        ("admissionregistration.k8s.io", "ValidatingAdmissionPolicyBinding") => {
            object_meta(errs, obj, old, false, names::name_is_dns_subdomain);
            admission_policy_binding(errs, obj);
        }
        ("apiextensions.k8s.io", "CustomResourceDefinition") => {
            object_meta(errs, obj, old, false, names::name_is_dns_subdomain);
            crd(errs, obj, old);
        }
        ("apiregistration.k8s.io", "APIService") => {
            object_meta(errs, obj, old, false, name_is_path_segment);
            api_service(errs, obj);
        }
        ("certificates.k8s.io", "CertificateSigningRequest") => {
            object_meta(errs, obj, old, false, name_is_path_segment);
        }
        (
            "storage.k8s.io" | "flowcontrol.apiserver.k8s.io" | "admissionregistration.k8s.io" | "networking.k8s.io",
            _,
        ) => {
            let namespaced = crate::catalogue::find_kind(group, kind).is_some_and(|r| r.namespaced);
            let name_fn: NameFn = match (group, kind) {
                ("networking.k8s.io", "IPAddress") => name_is_path_segment,
                _ => names::name_is_dns_subdomain,
            };
            object_meta(errs, obj, old, namespaced, name_fn);
        }
        _ => return false,
    }
    true
}

// --- rbac --------------------------------------------------------------------------------------

fn policy_rule(errs: &mut Errs, r: &Value, namespaced: bool, p: &Path) {
    let r = Some(r);
    let verbs = str_list(errs, r, "verbs", p);
    if verbs.is_empty() {
        required(errs, &p.child("verbs"), "verbs must contain at least one value");
    }
    let urls = str_list(errs, r, "nonResourceURLs", p);
    let groups = get(r, "apiGroups").and_then(Value::as_array).map_or(0, Vec::len);
    let resources = str_list(errs, r, "resources", p);
    let names = str_list(errs, r, "resourceNames", p);
    if !urls.is_empty() {
        if namespaced {
            invalid(
                errs,
                &p.child("nonResourceURLs"),
                urls.clone(),
                "namespaced rules cannot apply to non-resource URLs",
            );
        }
        if groups > 0 || !resources.is_empty() || !names.is_empty() {
            invalid(
                errs,
                &p.child("nonResourceURLs"),
                urls,
                "rules cannot apply to both regular resources and non-resource URLs",
            );
        }
        return;
    }
    if groups == 0 {
        required(
            errs,
            &p.child("apiGroups"),
            "resource rules must supply at least one api group",
        );
    }
    if resources.is_empty() {
        required(
            errs,
            &p.child("resources"),
            "resource rules must supply at least one resource",
        );
    }
}

const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

fn binding(errs: &mut Errs, obj: &Value, old: Option<&Value>, namespaced: bool) {
    let root = Some(obj);
    let rp = Path::new("roleRef");
    let role_ref = get(root, "roleRef");
    let group = st0(errs, role_ref, "apiGroup", &rp);
    if group != RBAC_GROUP {
        not_supported(errs, &rp.child("apiGroup"), group, &[RBAC_GROUP]);
    }
    let kind = st0(errs, role_ref, "kind", &rp);
    let kinds: &[&str] = if namespaced {
        &["Role", "ClusterRole"]
    } else {
        &["ClusterRole"]
    };
    if !kinds.contains(&kind) {
        not_supported(errs, &rp.child("kind"), kind, kinds);
    }
    let name = st0(errs, role_ref, "name", &rp);
    if name.is_empty() {
        required(errs, &rp.child("name"), "");
    } else {
        each(errs, &rp.child("name"), name, name_is_path_segment(name, false));
    }
    let sp = Path::new("subjects");
    for (i, s) in arr(errs, root, "subjects", &Path::new("")).iter().enumerate() {
        let p = sp.index(i);
        let s = Some(s);
        let name = st0(errs, s, "name", &p);
        if name.is_empty() {
            required(errs, &p.child("name"), "");
        }
        let group = st0(errs, s, "apiGroup", &p);
        match st0(errs, s, "kind", &p) {
            "ServiceAccount" => {
                if !name.is_empty() {
                    each(errs, &p.child("name"), name, names::name_is_dns_subdomain(name, false));
                }
                if !group.is_empty() {
                    not_supported(errs, &p.child("apiGroup"), group, &[""]);
                }
                if !namespaced && st0(errs, s, "namespace", &p).is_empty() {
                    required(errs, &p.child("namespace"), "");
                }
            }
            "User" | "Group" => {
                if group != RBAC_GROUP {
                    not_supported(errs, &p.child("apiGroup"), group, &[RBAC_GROUP]);
                }
            }
            other => not_supported(errs, &p.child("kind"), other, &["ServiceAccount", "User", "Group"]),
        }
    }
    if let Some(old) = old
        && old.get("roleRef") != obj.get("roleRef")
    {
        let raw = format!("rbac.RoleRef{{APIGroup:{:?}, Kind:{:?}, Name:{:?}}}", group, kind, name);
        super::invalid_raw(errs, &rp, raw, "cannot change roleRef");
    }
}

// --- policy, scheduling ------------------------------------------------------------------------

fn int_or_percent(errs: &mut Errs, v: J<'_>, p: &Path) {
    match v {
        None => {}
        Some(Value::Number(n)) if n.as_i64().is_some_and(|i| i < 0) => {
            invalid(
                errs,
                p,
                v.cloned().unwrap_or_default(),
                "must be greater than or equal to 0",
            );
        }
        Some(Value::String(s)) => match s.strip_suffix('%').and_then(|n| n.parse::<u64>().ok()) {
            None => invalid(errs, p, s.as_str(), "must be an integer or percentage (e.g '5%')"),
            Some(n) if n > 100 => invalid(errs, p, s.as_str(), "must not be greater than 100%"),
            Some(_) => {}
        },
        _ => {}
    }
}

fn pdb(errs: &mut Errs, obj: &Value) {
    let spec = get(Some(obj), "spec");
    let p = Path::new("spec");
    let min = get(spec, "minAvailable");
    let max = get(spec, "maxUnavailable");
    if min.is_some() && max.is_some() {
        super::invalid_raw(errs, &p, "spec", "minAvailable and maxUnavailable cannot be both set");
    }
    int_or_percent(errs, min, &p.child("minAvailable"));
    int_or_percent(errs, max, &p.child("maxUnavailable"));
    validate_label_selector(errs, get(spec, "selector"), &p.child("selector"));
    if let Some(policy) = st(errs, spec, "unhealthyPodEvictionPolicy", &p)
        && !matches!(policy, "AlwaysAllow" | "IfHealthyBudget")
    {
        not_supported(
            errs,
            &p.child("unhealthyPodEvictionPolicy"),
            policy,
            &["AlwaysAllow", "IfHealthyBudget"],
        );
    }
}

/// The built-in priority classes: (name, value).
pub const SYSTEM_PRIORITY_CLASSES: &[(&str, i64)] = &[
    ("system-node-critical", 2_000_001_000),
    ("system-cluster-critical", 2_000_000_000),
];

/// The highest priority a user-defined class may have.
pub const HIGHEST_USER_PRIORITY: i64 = 1_000_000_000;

fn priority_class(errs: &mut Errs, obj: &Value, old: Option<&Value>) {
    let root = Some(obj);
    let value = int(errs, root, "value", &Path::new("")).unwrap_or(0);
    if let Some(old) = old {
        meta_update(errs, obj, old);
        if old.get("value") != obj.get("value") {
            forbidden(errs, &Path::new("value"), "may not be changed in an update.");
        }
        if old.get("preemptionPolicy") != obj.get("preemptionPolicy") {
            invalid(
                errs,
                &Path::new("preemptionPolicy"),
                obj["preemptionPolicy"].clone(),
                super::IMMUTABLE,
            );
        }
        return;
    }
    object_meta(errs, obj, None, false, names::name_is_dns_subdomain);
    let name = obj["metadata"]["name"].as_str().unwrap_or_default();
    if name.starts_with("system-") {
        let why = match SYSTEM_PRIORITY_CLASSES.iter().find(|(n, _)| *n == name) {
            None => format!("{name} is not a known system priority class"),
            Some((_, v)) if *v != value => format!("value of {name} PriorityClass must be {v}"),
            Some(_) if obj["globalDefault"] == true => {
                format!("globalDefault of {name} PriorityClass must be false")
            }
            Some(_) => String::new(),
        };
        if !why.is_empty() {
            forbidden(
                errs,
                &Path::new("metadata").child("name"),
                format!("priority class names with 'system-' prefix are reserved for system use only. error: {why}"),
            );
        }
    } else if value > HIGHEST_USER_PRIORITY {
        forbidden(
            errs,
            &Path::new("value"),
            format!("maximum allowed value of a user defined priority is {HIGHEST_USER_PRIORITY}"),
        );
    }
    match st(errs, root, "preemptionPolicy", &Path::new("")) {
        Some("") => required(errs, &Path::new("preemptionPolicy"), ""),
        Some(p) if !matches!(p, "PreemptLowerPriority" | "Never") => not_supported(
            errs,
            &Path::new("preemptionPolicy"),
            p,
            &["PreemptLowerPriority", "Never"],
        ),
        _ => {}
    }
}

// --- networking --------------------------------------------------------------------------------

fn port_fields(errs: &mut Errs, port: J<'_>, p: &Path) {
    if let Some(proto) = st(errs, port, "protocol", p)
        && !matches!(proto, "TCP" | "UDP" | "SCTP")
    {
        not_supported(errs, &p.child("protocol"), proto, &["TCP", "UDP", "SCTP"]);
    }
    match get(port, "port") {
        Some(Value::Number(n)) => {
            let n = n.as_i64().unwrap_or(0);
            each(errs, &p.child("port"), &n.to_string(), names::is_valid_port_num(n));
            if let Some(end) = int(errs, port, "endPort", p) {
                if end < n {
                    invalid(
                        errs,
                        &p.child("endPort"),
                        end,
                        "must be greater than or equal to `port`",
                    );
                }
                for m in names::is_valid_port_num(end) {
                    invalid(errs, &p.child("endPort"), end, m);
                }
            }
        }
        Some(Value::String(s)) => {
            each(errs, &p.child("port"), s, names::is_valid_port_name(s));
            if get(port, "endPort").is_some() {
                invalid(
                    errs,
                    &p.child("endPort"),
                    get(port, "endPort").cloned().unwrap_or_default(),
                    "may not be specified when `port` is non-numeric",
                );
            }
        }
        _ => {
            if let Some(end) = get(port, "endPort") {
                invalid(
                    errs,
                    &p.child("endPort"),
                    end.clone(),
                    "may not be specified when `port` is not specified",
                );
            }
        }
    }
}

fn peer(errs: &mut Errs, peer: &Value, p: &Path) {
    let pr = Some(peer);
    let selectors = ["podSelector", "namespaceSelector"]
        .iter()
        .filter(|k| get(pr, k).is_some())
        .count();
    let block = get(pr, "ipBlock");
    if selectors == 0 && block.is_none() {
        required(errs, p, "must specify a peer");
    } else if selectors > 0 && block.is_some() {
        forbidden(errs, p, "may not specify both ipBlock and another peer");
    }
    validate_label_selector(errs, get(pr, "podSelector"), &p.child("podSelector"));
    validate_label_selector(errs, get(pr, "namespaceSelector"), &p.child("namespaceSelector"));
    if let Some(b) = block {
        let bp = p.child("ipBlock");
        let cidr = st0(errs, Some(b), "cidr", &bp);
        if cidr.is_empty() {
            required(errs, &bp.child("cidr"), "");
        } else if names::parse_cidr(cidr).is_none() {
            invalid(
                errs,
                &bp.child("cidr"),
                cidr,
                "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)",
            );
        }
        for (k, e) in str_list(errs, Some(b), "except", &bp).into_iter().enumerate() {
            if names::parse_cidr(e).is_none() {
                invalid(
                    errs,
                    &bp.child("except").index(k),
                    e,
                    "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)",
                );
            }
        }
    }
}

fn network_policy(errs: &mut Errs, obj: &Value) {
    let spec = get(Some(obj), "spec");
    let p = Path::new("spec");
    validate_label_selector(errs, get(spec, "podSelector"), &p.child("podSelector"));
    for (dir, peers) in [("ingress", "from"), ("egress", "to")] {
        for (i, rule) in arr(errs, spec, dir, &p).iter().enumerate() {
            let rp = p.child(dir).index(i);
            for (j, port) in arr(errs, Some(rule), "ports", &rp).iter().enumerate() {
                port_fields(errs, Some(port), &rp.child("ports").index(j));
            }
            for (j, pe) in arr(errs, Some(rule), peers, &rp).iter().enumerate() {
                peer(errs, pe, &rp.child(peers).index(j));
            }
        }
    }
    let types = str_list(errs, spec, "policyTypes", &p);
    if types.len() > 2 {
        invalid(
            errs,
            &p.child("policyTypes"),
            types,
            "may not specify more than two policyTypes",
        );
        return;
    }
    for (i, t) in types.iter().enumerate() {
        if !matches!(*t, "Ingress" | "Egress") {
            not_supported(errs, &p.child("policyTypes").index(i), *t, &["Ingress", "Egress"]);
        }
    }
}

fn ingress_backend(errs: &mut Errs, b: &Value, p: &Path) {
    let b = Some(b);
    let service = get(b, "service");
    let resource = get(b, "resource");
    match (service, resource) {
        (Some(_), Some(_)) => invalid(errs, p, "", "cannot set both resource and service backends"),
        (None, None) => invalid(errs, p, "", "resource or service backend is required"),
        (Some(s), None) => {
            let sp = p.child("service");
            let name = st0(errs, Some(s), "name", &sp);
            if name.is_empty() {
                required(errs, &sp.child("name"), "");
            } else {
                each(errs, &sp.child("name"), name, is_dns1035_label(name));
            }
            let port = get(Some(s), "port");
            let (pname, pnum) = (get(port, "name"), get(port, "number"));
            match (pname, pnum) {
                (Some(_), Some(_)) => invalid(errs, p, "", "cannot set both port name & port number"),
                (None, None) => required(errs, p, "port name or number is required"),
                (Some(n), None) => {
                    let n = n.as_str().unwrap_or_default();
                    each(errs, &sp.child("port").child("name"), n, names::is_valid_port_name(n));
                }
                (None, Some(n)) => {
                    let n = n.as_i64().unwrap_or(0);
                    each(
                        errs,
                        &sp.child("port").child("number"),
                        &n.to_string(),
                        names::is_valid_port_num(n),
                    );
                }
            }
        }
        (None, Some(r)) => {
            let rp = p.child("resource");
            for key in ["kind", "name"] {
                let v = st0(errs, Some(r), key, &rp);
                if v.is_empty() {
                    required(errs, &rp.child(key), format!("{key} is required"));
                } else {
                    each(errs, &rp.child(key), v, name_is_path_segment(v, false));
                }
            }
        }
    }
}

fn ingress(errs: &mut Errs, obj: &Value) {
    let spec = get(Some(obj), "spec");
    let p = Path::new("spec");
    let rules = arr(errs, spec, "rules", &p);
    match get(spec, "defaultBackend") {
        Some(b) => ingress_backend(errs, b, &p.child("defaultBackend")),
        None if rules.is_empty() => invalid(
            errs,
            &p,
            Value::Null,
            "either `defaultBackend` or `rules` must be specified",
        ),
        None => {}
    }
    for (i, rule) in rules.iter().enumerate() {
        let rp = p.child("rules").index(i);
        let host = st0(errs, Some(rule), "host", &rp);
        if !host.is_empty() {
            if names::parse_ip(host).is_some() {
                invalid(errs, &rp.child("host"), host, "must be a DNS name, not an IP address");
            } else if let Some(rest) = host.strip_prefix("*.") {
                if !is_dns1123_subdomain(rest).is_empty() {
                    invalid(
                        errs,
                        &rp.child("host"),
                        host,
                        "a wildcard DNS-1123 subdomain must start with '*.', followed by a valid DNS subdomain, which must consist of lower case alphanumeric characters, '-' or '.' and end with an alphanumeric character (e.g. '*.example.com', regex used for validation is '\\*\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')",
                    );
                }
            } else {
                each(errs, &rp.child("host"), host, is_dns1123_subdomain(host));
            }
        }
        let Some(http) = get(Some(rule), "http") else { continue };
        let hp = rp.child("http");
        let paths = arr(errs, Some(http), "paths", &hp);
        if paths.is_empty() {
            required(errs, &hp.child("paths"), "");
        }
        for (j, path) in paths.iter().enumerate() {
            let pp = hp.child("paths").index(j);
            let kind = match st(errs, Some(path), "pathType", &pp) {
                None => {
                    required(errs, &pp.child("pathType"), "pathType must be specified");
                    continue;
                }
                Some(k) => k,
            };
            let text = st0(errs, Some(path), "path", &pp);
            match kind {
                "Exact" | "Prefix" => {
                    if !text.starts_with('/') {
                        invalid(errs, &pp.child("path"), text, "must be an absolute path");
                    }
                    for bad in ["//", "/./", "/../", "%2f", "%2F"] {
                        if text.contains(bad) {
                            invalid(errs, &pp.child("path"), text, format!("must not contain '{bad}'"));
                        }
                    }
                    for bad in ["/..", "/."] {
                        if text.ends_with(bad) {
                            invalid(errs, &pp.child("path"), text, format!("cannot end with '{bad}'"));
                        }
                    }
                }
                "ImplementationSpecific" => {
                    if !text.is_empty() && !text.starts_with('/') {
                        invalid(errs, &pp.child("path"), text, "must be an absolute path");
                    }
                }
                other => not_supported(
                    errs,
                    &pp.child("pathType"),
                    other,
                    &["Exact", "ImplementationSpecific", "Prefix"],
                ),
            }
            match get(Some(path), "backend") {
                Some(b) => ingress_backend(errs, b, &pp.child("backend")),
                None => invalid(
                    errs,
                    &pp.child("backend"),
                    "",
                    "resource or service backend is required",
                ),
            }
        }
    }
    if let Some(class) = st(errs, spec, "ingressClassName", &p) {
        each(errs, &p.child("ingressClassName"), class, is_dns1123_subdomain(class));
    }
}

fn ingress_class(errs: &mut Errs, obj: &Value, old: Option<&Value>) {
    let spec = get(Some(obj), "spec");
    let p = Path::new("spec").child("controller");
    let controller = st0(errs, spec, "controller", &Path::new("spec"));
    if controller.len() > 250 {
        super::too_long(errs, &p, 250);
    } else if controller.is_empty() {
        required(errs, &p, "");
    } else {
        match controller.split_once('/') {
            Some((host, path)) if !host.is_empty() && !path.is_empty() => {
                each(errs, &p, host, is_dns1123_subdomain(host));
            }
            _ => invalid(
                errs,
                &p,
                controller,
                "must be a domain-prefixed path (such as \"acme.io/foo\")",
            ),
        }
    }
    if let Some(old) = old
        && old["spec"]["controller"] != obj["spec"]["controller"]
    {
        invalid(errs, &p, controller, super::IMMUTABLE);
    }
}

// --- autoscaling, quota, limits ----------------------------------------------------------------

fn hpa(errs: &mut Errs, obj: &Value) {
    let spec = get(Some(obj), "spec");
    let p = Path::new("spec");
    let min = int(errs, spec, "minReplicas", &p);
    let max = int(errs, spec, "maxReplicas", &p).unwrap_or(0);
    if let Some(m) = min
        && m < 1
    {
        invalid(errs, &p.child("minReplicas"), m, "must be greater than or equal to 1");
    }
    if max < 1 {
        invalid(errs, &p.child("maxReplicas"), max, "must be greater than 0");
    }
    if let Some(m) = min
        && max < m
    {
        invalid(
            errs,
            &p.child("maxReplicas"),
            max,
            "must be greater than or equal to `minReplicas`",
        );
    }
    let tp = p.child("scaleTargetRef");
    let target = get(spec, "scaleTargetRef");
    for key in ["kind", "name"] {
        let v = st0(errs, target, key, &tp);
        if v.is_empty() {
            required(errs, &tp.child(key), "");
        } else {
            each(errs, &tp.child(key), v, name_is_path_segment(v, false));
        }
    }
    const TYPES: &[&str] = &["ContainerResource", "External", "Object", "Pods", "Resource"];
    for (i, m) in arr(errs, spec, "metrics", &p).iter().enumerate() {
        let mp = p.child("metrics").index(i);
        let ty = st0(errs, Some(m), "type", &mp);
        if ty.is_empty() {
            required(errs, &mp.child("type"), "must specify a metric source type");
        }
        if !TYPES.contains(&ty) {
            not_supported(errs, &mp.child("type"), ty, TYPES);
            continue;
        }
        let field = match ty {
            "ContainerResource" => "containerResource",
            "External" => "external",
            "Object" => "object",
            "Pods" => "pods",
            _ => "resource",
        };
        if get(Some(m), field).is_none() {
            required(
                errs,
                &mp.child(field),
                "must populate information for the given metric source",
            );
        }
        for other in ["containerResource", "external", "object", "pods", "resource"] {
            if other != field && get(Some(m), other).is_some() {
                forbidden(errs, &mp.child(other), "must populate the given metric source only");
            }
        }
        if let Some(t) = get(get(Some(m), field), "target") {
            let target_path = mp.child(field).child("target");
            match st0(errs, Some(t), "type", &target_path) {
                "" => required(errs, &target_path.child("type"), "must specify a metric target type"),
                "Utilization" | "Value" | "AverageValue" => {}
                other => invalid(
                    errs,
                    &target_path.child("type"),
                    other,
                    "must be either Utilization, Value, or AverageValue",
                ),
            }
            if let Some(u) = int(errs, Some(t), "averageUtilization", &target_path)
                && u < 1
            {
                invalid(
                    errs,
                    &target_path.child("averageUtilization"),
                    u,
                    "must be greater than 0",
                );
            }
        }
    }
}

/// Unqualified names a quota may limit.
const QUOTA_RESOURCES: &[&str] = &[
    "cpu",
    "memory",
    "ephemeral-storage",
    "requests.cpu",
    "requests.memory",
    "requests.storage",
    "requests.ephemeral-storage",
    "limits.cpu",
    "limits.memory",
    "limits.ephemeral-storage",
    "pods",
    "resourcequotas",
    "services",
    "replicationcontrollers",
    "secrets",
    "persistentvolumeclaims",
    "configmaps",
    "services.nodeports",
    "services.loadbalancers",
];

fn resource_quota(errs: &mut Errs, obj: &Value) {
    let spec = get(Some(obj), "spec");
    let p = Path::new("spec");
    if let Some(hard) = get(spec, "hard").and_then(Value::as_object) {
        for (k, v) in hard {
            let kp = p.child("hard").key(k);
            let msgs = is_qualified_name(k);
            if !msgs.is_empty() {
                each(errs, &kp, k, msgs);
                continue;
            }
            if !k.contains('/') && !QUOTA_RESOURCES.contains(&k.as_str()) && !k.starts_with("requests.hugepages-") {
                invalid(errs, &kp, k.as_str(), "must be a standard resource for quota");
            }
            if let Ok(q) = super::quantity::Quantity::from_json(v)
                && q.is_negative()
            {
                invalid(errs, &kp, v.clone(), "must be greater than or equal to 0");
            }
        }
    }
    const SCOPES: &[&str] = &[
        "Terminating",
        "NotTerminating",
        "BestEffort",
        "NotBestEffort",
        "PriorityClass",
        "CrossNamespacePodAffinity",
    ];
    let scopes = str_list(errs, spec, "scopes", &p);
    if scopes.iter().any(|s| !SCOPES.contains(s)) {
        invalid(errs, &p.child("scopes"), scopes.clone(), "unsupported scope");
    }
    let has = |s: &str| scopes.contains(&s);
    if (has("BestEffort") && has("NotBestEffort")) || (has("Terminating") && has("NotTerminating")) {
        invalid(errs, &p.child("scopes"), scopes.clone(), "conflicting scopes");
    }
}

fn limit_range(errs: &mut Errs, obj: &Value) {
    let spec = get(Some(obj), "spec");
    let p = Path::new("spec");
    let mut seen: Vec<String> = Vec::new();
    for (i, l) in arr(errs, spec, "limits", &p).iter().enumerate() {
        let lp = p.child("limits").index(i);
        let ty = st0(errs, Some(l), "type", &lp);
        let msgs = is_qualified_name(ty);
        if !msgs.is_empty() {
            each(errs, &lp.child("type"), ty, msgs);
        } else if !ty.contains('/') && !matches!(ty, "Pod" | "Container" | "PersistentVolumeClaim") {
            invalid(
                errs,
                &lp.child("type"),
                ty,
                "must be a standard limit type or fully qualified",
            );
        }
        if seen.iter().any(|s| s == ty) {
            super::duplicate(errs, &lp.child("type"), ty);
        }
        seen.push(ty.to_string());
        if ty == "Pod" {
            for key in ["default", "defaultRequest"] {
                if get(Some(l), key)
                    .and_then(Value::as_object)
                    .is_some_and(|m| !m.is_empty())
                {
                    forbidden(errs, &lp.child(key), "may not be specified when `type` is 'Pod'");
                }
            }
        }
        let q = |key: &str, res: &str| {
            get(get(Some(l), key), res).and_then(|v| super::quantity::Quantity::from_json(v).ok())
        };
        let resources: std::collections::BTreeSet<String> = ["min", "max", "default", "defaultRequest"]
            .iter()
            .filter_map(|k| get(Some(l), k).and_then(Value::as_object))
            .flat_map(|m| m.keys().cloned())
            .collect();
        for res in &resources {
            let (min, max, def, req) = (
                q("min", res),
                q("max", res),
                q("default", res),
                q("defaultRequest", res),
            );
            let show = |x: &super::quantity::Quantity| x.canonical();
            if let (Some(a), Some(b)) = (&min, &max)
                && a.milli_value() > b.milli_value()
            {
                invalid(
                    errs,
                    &lp.child("min").key(res),
                    show(a),
                    format!("min value {} is greater than max value {}", show(a), show(b)),
                );
            }
            if let (Some(a), Some(b)) = (&min, &req)
                && a.milli_value() > b.milli_value()
            {
                invalid(
                    errs,
                    &lp.child("defaultRequest").key(res),
                    show(b),
                    format!(
                        "min value {} is greater than default request value {}",
                        show(a),
                        show(b)
                    ),
                );
            }
            if let (Some(a), Some(b)) = (&req, &max)
                && a.milli_value() > b.milli_value()
            {
                invalid(
                    errs,
                    &lp.child("defaultRequest").key(res),
                    show(a),
                    format!(
                        "default request value {} is greater than max value {}",
                        show(a),
                        show(b)
                    ),
                );
            }
            if let (Some(a), Some(b)) = (&req, &def)
                && a.milli_value() > b.milli_value()
            {
                invalid(
                    errs,
                    &lp.child("defaultRequest").key(res),
                    show(a),
                    format!(
                        "default request value {} is greater than default limit value {}",
                        show(a),
                        show(b)
                    ),
                );
            }
            if let (Some(a), Some(b)) = (&min, &def)
                && a.milli_value() > b.milli_value()
            {
                invalid(
                    errs,
                    &lp.child("default").key(res),
                    show(a),
                    format!("min value {} is greater than default value {}", show(a), show(b)),
                );
            }
            if let (Some(a), Some(b)) = (&def, &max)
                && a.milli_value() > b.milli_value()
            {
                invalid(
                    errs,
                    &lp.child("default").key(res),
                    show(b),
                    format!("default value {} is greater than max value {}", show(a), show(b)),
                );
            }
        }
    }
}

// --- admission, CRDs, aggregator ---------------------------------------------------------------

fn service_reference(errs: &mut Errs, s: &Value, p: &Path) {
    if st0(errs, Some(s), "name", p).is_empty() {
        required(errs, &p.child("name"), "service name is required");
    }
    if st0(errs, Some(s), "namespace", p).is_empty() {
        required(errs, &p.child("namespace"), "service namespace is required");
    }
    if let Some(port) = int(errs, Some(s), "port", p)
        && !(1..=65535).contains(&port)
    {
        invalid(
            errs,
            &p.child("port"),
            port,
            "port is not valid: must be between 1 and 65535, inclusive",
        );
    }
    if let Some(path) = st(errs, Some(s), "path", p)
        && !path.is_empty()
        && path != "/"
        && !path.starts_with('/')
    {
        invalid(errs, &p.child("path"), path, "must start with a '/'");
    }
}

fn client_config(errs: &mut Errs, c: J<'_>, p: &Path) {
    let url = get(c, "url");
    let service = get(c, "service");
    match (url, service) {
        (Some(_), Some(_)) | (None, None) => required(errs, p, "exactly one of url or service is required"),
        (Some(u), None) => {
            let u = u.as_str().unwrap_or_default();
            let up = p.child("url");
            match u.split_once("://") {
                None => required(
                    errs,
                    &up,
                    format!(
                        "url must be a valid URL: parse {u:?}: missing protocol scheme; desired format: https://host[/path]"
                    ),
                ),
                Some((scheme, rest)) => {
                    if scheme != "https" {
                        invalid(
                            errs,
                            &up,
                            scheme,
                            "'https' is the only allowed URL scheme; desired format: https://host[/path]",
                        );
                    }
                    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
                    if host.is_empty() {
                        invalid(
                            errs,
                            &up,
                            host,
                            "host must be specified; desired format: https://host[/path]",
                        );
                    }
                    if host.contains('@') {
                        invalid(errs, &up, u, "user information is not permitted in the URL");
                    }
                    if rest.contains('#') {
                        invalid(errs, &up, u, "fragments are not permitted in the URL");
                    }
                    if rest.contains('?') {
                        invalid(errs, &up, u, "query parameters are not permitted in the URL");
                    }
                }
            }
        }
        (None, Some(s)) => service_reference(errs, s, &p.child("service")),
    }
}

/// A version's `selectableFields`: at most 8, each a distinct path to a string, boolean or
/// integer field of the schema.
fn selectable_fields(errs: &mut Errs, fields: J<'_>, schema: J<'_>, p: &Path) {
    let Some(list) = fields.and_then(Value::as_array) else {
        return;
    };
    if list.len() > 8 {
        super::too_many(errs, p, list.len(), 8);
    }
    let mut seen: Vec<&str> = Vec::new();
    for (i, f) in list.iter().enumerate() {
        let fp = p.index(i).child("jsonPath");
        let path = st0(errs, Some(f), "jsonPath", &p.index(i));
        if path.is_empty() {
            required(errs, &fp, "");
            continue;
        }
        let mut node = schema;
        let simple = path.strip_prefix('.').filter(|rest| {
            !rest.is_empty()
                && rest
                    .split('.')
                    .all(|s| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'))
        });
        let Some(rest) = simple else {
            invalid(errs, &fp, path, "is an invalid path");
            continue;
        };
        for part in rest.split('.') {
            node = get(get(node, "properties"), part);
        }
        match node.and_then(|n| get(Some(n), "type")).and_then(Value::as_str) {
            None if schema.is_some() => invalid(errs, &fp, path, "is an invalid path"),
            Some("string" | "boolean" | "integer") | None => {}
            Some(_) => invalid(
                errs,
                &fp,
                path,
                "must point to a field of type string, boolean or integer. Enum string fields and strings with formats are allowed.",
            ),
        }
        if seen.contains(&path) {
            super::duplicate(errs, &fp, path);
        }
        seen.push(path);
    }
}

/// A CEL expression at `p`: required, and it must compile.
fn cel_expression(errs: &mut Errs, v: J<'_>, key: &str, p: &Path) {
    let expr = st0(errs, v, key, p);
    if expr.trim().is_empty() {
        required(errs, &p.child(key), "");
    } else if let Err(e) = crate::cel::check_expression(expr) {
        invalid(errs, &p.child(key), expr, format!("compilation failed: {e}"));
    }
}

/// `matchConditions` of a webhook or policy: named, unique, and compiling.
fn match_conditions(errs: &mut Errs, v: J<'_>, p: &Path) {
    let mut seen: Vec<&str> = Vec::new();
    for (i, c) in arr(errs, v, "matchConditions", p).iter().enumerate() {
        let cp = p.child("matchConditions").index(i);
        let name = st0(errs, Some(c), "name", &cp);
        if name.is_empty() {
            required(errs, &cp.child("name"), "");
        } else if seen.contains(&name) {
            super::duplicate(errs, &cp.child("name"), name);
        }
        seen.push(name);
        cel_expression(errs, Some(c), "expression", &cp);
    }
}

/// A ValidatingAdmissionPolicy's spec.
fn admission_policy(errs: &mut Errs, obj: &Value) {
    let p = Path::new("spec");
    let spec = get(Some(obj), "spec");
    let validations = arr(errs, spec, "validations", &p);
    let audits = arr(errs, spec, "auditAnnotations", &p);
    if validations.is_empty() && audits.is_empty() {
        required(
            errs,
            &p.child("validations"),
            "validations or auditAnnotations must contain at least one item",
        );
    }
    for (i, v) in validations.iter().enumerate() {
        let vp = p.child("validations").index(i);
        cel_expression(errs, Some(v), "expression", &vp);
        if let Some(expr) = st(errs, Some(v), "messageExpression", &vp)
            && let Err(e) = crate::cel::check_expression(expr)
        {
            invalid(
                errs,
                &vp.child("messageExpression"),
                expr,
                format!("compilation failed: {e}"),
            );
        }
        if let Some(reason) = st(errs, Some(v), "reason", &vp)
            && !matches!(
                reason,
                "Unauthorized" | "Forbidden" | "Invalid" | "RequestEntityTooLarge"
            )
        {
            not_supported(
                errs,
                &vp.child("reason"),
                reason,
                &["Unauthorized", "Forbidden", "Invalid", "RequestEntityTooLarge"],
            );
        }
    }
    for (i, a) in audits.iter().enumerate() {
        let ap = p.child("auditAnnotations").index(i);
        if st0(errs, Some(a), "key", &ap).is_empty() {
            required(errs, &ap.child("key"), "");
        }
        cel_expression(errs, Some(a), "valueExpression", &ap);
    }
    for (i, v) in arr(errs, spec, "variables", &p).iter().enumerate() {
        let vp = p.child("variables").index(i);
        if st0(errs, Some(v), "name", &vp).is_empty() {
            required(errs, &vp.child("name"), "name is not specified");
        }
        cel_expression(errs, Some(v), "expression", &vp);
    }
    match_conditions(errs, spec, &p);
    if let Some(f) = st(errs, spec, "failurePolicy", &p)
        && !matches!(f, "Fail" | "Ignore")
    {
        not_supported(errs, &p.child("failurePolicy"), f, &["Fail", "Ignore"]);
    }
    let constraints = get(spec, "matchConstraints");
    if constraints.is_none() {
        required(errs, &p.child("matchConstraints"), "");
    } else if arr(errs, constraints, "resourceRules", &p.child("matchConstraints")).is_empty() {
        required(errs, &p.child("matchConstraints").child("resourceRules"), "");
    }
}

/// A ValidatingAdmissionPolicyBinding's spec.
fn admission_policy_binding(errs: &mut Errs, obj: &Value) {
    let p = Path::new("spec");
    let spec = get(Some(obj), "spec");
    if st0(errs, spec, "policyName", &p).is_empty() {
        required(errs, &p.child("policyName"), "");
    }
    let actions = str_list(errs, spec, "validationActions", &p);
    if actions.is_empty() {
        required(
            errs,
            &p.child("validationActions"),
            "at least one validation action is required",
        );
    }
    for (i, a) in actions.iter().enumerate() {
        if !matches!(*a, "Deny" | "Warn" | "Audit") {
            not_supported(
                errs,
                &p.child("validationActions").index(i),
                *a,
                &["Audit", "Deny", "Warn"],
            );
        }
    }
    if actions.contains(&"Deny") && actions.contains(&"Warn") {
        invalid(
            errs,
            &p.child("validationActions"),
            actions.clone(),
            "must not contain both Deny and Warn (repeating the same validation failure information in the API response and headers serves no purpose)",
        );
    }
    if let Some(action) = st(
        errs,
        get(spec, "paramRef"),
        "parameterNotFoundAction",
        &p.child("paramRef"),
    ) && !matches!(action, "Allow" | "Deny")
    {
        not_supported(
            errs,
            &p.child("paramRef").child("parameterNotFoundAction"),
            action,
            &["Allow", "Deny"],
        );
    }
}

fn webhooks(errs: &mut Errs, obj: &Value, mutating: bool) {
    let mut names_seen: Vec<&str> = Vec::new();
    for (i, w) in arr(errs, Some(obj), "webhooks", &Path::new("")).iter().enumerate() {
        let p = Path::new("webhooks").index(i);
        let w = Some(w);
        let name = st0(errs, w, "name", &p);
        if name.is_empty() {
            required(errs, &p.child("name"), "");
        } else {
            let msgs = is_dns1123_subdomain(name);
            if !msgs.is_empty() {
                invalid(errs, &p.child("name"), name, msgs.join(","));
            } else if name.split('.').count() < 3 {
                invalid(
                    errs,
                    &p.child("name"),
                    name,
                    "should be a domain with at least three segments separated by dots",
                );
            }
        }
        for (j, r) in arr(errs, w, "rules", &p).iter().enumerate() {
            let rp = p.child("rules").index(j);
            for key in ["operations", "apiGroups", "apiVersions", "resources"] {
                if get(Some(r), key).and_then(Value::as_array).is_none_or(Vec::is_empty) {
                    required(errs, &rp.child(key), "");
                }
            }
            for (k, op) in str_list(errs, Some(r), "operations", &rp).into_iter().enumerate() {
                if !matches!(op, "*" | "CONNECT" | "CREATE" | "DELETE" | "UPDATE") {
                    not_supported(
                        errs,
                        &rp.child("operations").index(k),
                        op,
                        &["*", "CONNECT", "CREATE", "DELETE", "UPDATE"],
                    );
                }
            }
            if let Some(scope) = st(errs, Some(r), "scope", &rp)
                && !matches!(scope, "*" | "Cluster" | "Namespaced")
            {
                not_supported(errs, &rp.child("scope"), scope, &["*", "Cluster", "Namespaced"]);
            }
        }
        if let Some(f) = st(errs, w, "failurePolicy", &p)
            && !matches!(f, "Fail" | "Ignore")
        {
            not_supported(errs, &p.child("failurePolicy"), f, &["Fail", "Ignore"]);
        }
        if let Some(m) = st(errs, w, "matchPolicy", &p)
            && !matches!(m, "Equivalent" | "Exact")
        {
            not_supported(errs, &p.child("matchPolicy"), m, &["Equivalent", "Exact"]);
        }
        match st(errs, w, "sideEffects", &p) {
            None => required(errs, &p.child("sideEffects"), "must specify one of None, NoneOnDryRun"),
            Some(s) if !matches!(s, "None" | "NoneOnDryRun") => {
                not_supported(errs, &p.child("sideEffects"), s, &["None", "NoneOnDryRun"])
            }
            _ => {}
        }
        if let Some(t) = int(errs, w, "timeoutSeconds", &p)
            && !(1..=30).contains(&t)
        {
            invalid(
                errs,
                &p.child("timeoutSeconds"),
                t,
                "the timeout value must be between 1 and 30 seconds",
            );
        }
        validate_label_selector(errs, get(w, "namespaceSelector"), &p.child("namespaceSelector"));
        validate_label_selector(errs, get(w, "objectSelector"), &p.child("objectSelector"));
        if mutating
            && let Some(r) = st(errs, w, "reinvocationPolicy", &p)
            && !matches!(r, "IfNeeded" | "Never")
        {
            not_supported(errs, &p.child("reinvocationPolicy"), r, &["IfNeeded", "Never"]);
        }
        client_config(errs, get(w, "clientConfig"), &p.child("clientConfig"));
        match_conditions(errs, w, &p);
        let versions = str_list(errs, w, "admissionReviewVersions", &p);
        if versions.is_empty() {
            required(
                errs,
                &p.child("admissionReviewVersions"),
                "must specify one of v1, v1beta1",
            );
        } else if !versions.iter().any(|v| matches!(*v, "v1" | "v1beta1")) {
            invalid(
                errs,
                &p.child("admissionReviewVersions"),
                versions.clone(),
                "must include at least one of v1, v1beta1",
            );
        }
        if !name.is_empty() {
            if names_seen.contains(&name) {
                super::duplicate(errs, &p.child("name"), name);
            }
            names_seen.push(name);
        }
    }
}

fn crd(errs: &mut Errs, obj: &Value, old: Option<&Value>) {
    let spec = get(Some(obj), "spec");
    let p = Path::new("spec");
    let group = st0(errs, spec, "group", &p);
    let names = get(spec, "names");
    let np = p.child("names");
    let plural = st0(errs, names, "plural", &np);
    let name = obj["metadata"]["name"].as_str().unwrap_or_default();
    if name != format!("{plural}.{group}") {
        invalid(
            errs,
            &Path::new("metadata").child("name"),
            name,
            "must be spec.names.plural+\".\"+spec.group",
        );
    }
    if group.is_empty() {
        required(errs, &p.child("group"), "");
    } else {
        let msgs = is_dns1123_subdomain(group);
        if !msgs.is_empty() {
            invalid(errs, &p.child("group"), group, msgs.join(","));
        } else if !group.contains('.') {
            invalid(
                errs,
                &p.child("group"),
                group,
                "should be a domain with at least one dot",
            );
        }
    }
    match st0(errs, spec, "scope", &p) {
        "" => required(errs, &p.child("scope"), ""),
        "Cluster" | "Namespaced" => {}
        other => not_supported(errs, &p.child("scope"), other, &["Cluster", "Namespaced"]),
    }
    let versions = arr(errs, spec, "versions", &p);
    let mut seen: Vec<&str> = Vec::new();
    let mut storage = 0;
    for (i, v) in versions.iter().enumerate() {
        let vp = p.child("versions").index(i);
        let vname = st0(errs, Some(v), "name", &vp);
        let msgs = is_dns1035_label(vname);
        if !msgs.is_empty() {
            invalid(errs, &vp.child("name"), vname, msgs.join(","));
        }
        if seen.contains(&vname) {
            invalid(
                errs,
                &p.child("versions"),
                Value::Array(versions.to_vec()),
                "must contain unique version names",
            );
        }
        seen.push(vname);
        if v["storage"] == true {
            storage += 1;
        }
        let schema = get(get(Some(v), "schema"), "openAPIV3Schema");
        match schema {
            None => required(
                errs,
                &vp.child("schema").child("openAPIV3Schema"),
                "schemas are required",
            ),
            Some(schema) => {
                let status = get(get(Some(v), "subresources"), "status").is_some();
                let at = vp.child("schema").child("openAPIV3Schema");
                errs.extend(crate::structural::schema_errors(schema, at.s(), status));
                errs.extend(crate::cel::rule_errors(schema, at.s()));
            }
        }
        selectable_fields(
            errs,
            get(Some(v), "selectableFields"),
            schema,
            &vp.child("selectableFields"),
        );
    }
    if storage != 1 {
        invalid(
            errs,
            &p.child("versions"),
            Value::Array(versions.to_vec()),
            "must have exactly one version marked as storage version",
        );
    }
    for key in ["plural", "singular", "kind", "listKind"] {
        if st0(errs, names, key, &np).is_empty() {
            required(errs, &np.child(key), "");
        }
    }
    for key in ["plural", "singular"] {
        let v = st0(errs, names, key, &np);
        if !v.is_empty() {
            let msgs = is_dns1035_label(v);
            if !msgs.is_empty() {
                invalid(errs, &np.child(key), v, msgs.join(","));
            }
        }
    }
    for key in ["kind", "listKind"] {
        let v = st0(errs, names, key, &np);
        let msgs = is_dns1035_label(&v.to_lowercase());
        if !v.is_empty() && !msgs.is_empty() {
            invalid(
                errs,
                &np.child(key),
                v,
                format!("may have mixed case, but should otherwise match: {}", msgs.join(",")),
            );
        }
    }
    let kind = st0(errs, names, "kind", &np);
    if !kind.is_empty() && kind == st0(errs, names, "listKind", &np) {
        invalid(
            errs,
            &np.child("listKind"),
            kind,
            "kind and listKind may not be the same",
        );
    }
    if let Some(old) = old {
        if old["spec"]["group"] != obj["spec"]["group"] {
            invalid(errs, &p.child("group"), group, super::IMMUTABLE);
        }
        if old["spec"]["names"]["plural"] != obj["spec"]["names"]["plural"] {
            invalid(errs, &np.child("plural"), plural, super::IMMUTABLE);
        }
    }
}

fn api_service(errs: &mut Errs, obj: &Value) {
    let spec = get(Some(obj), "spec");
    let p = Path::new("spec");
    let group = st0(errs, spec, "group", &p);
    let version = st0(errs, spec, "version", &p);
    let name = obj["metadata"]["name"].as_str().unwrap_or_default();
    let want = format!("{version}.{group}");
    if name_is_path_segment(name, false).is_empty() && name != want {
        invalid(
            errs,
            &Path::new("metadata").child("name"),
            name,
            format!("must be `spec.version+\".\"+spec.group`: {want:?}"),
        );
    }
    if group.is_empty() {
        if version != "v1" {
            required(
                errs,
                &p.child("group"),
                "only v1 may have an empty group and it better be legacy kube",
            );
        }
    } else {
        each(errs, &p.child("group"), group, is_dns1123_subdomain(group));
    }
    each(errs, &p.child("version"), version, is_dns1035_label(version));
    let gpm = int(errs, spec, "groupPriorityMinimum", &p).unwrap_or(0);
    if !(1..=20000).contains(&gpm) {
        invalid(
            errs,
            &p.child("groupPriorityMinimum"),
            gpm,
            "must be positive and less than 20000",
        );
    }
    let vp = int(errs, spec, "versionPriority", &p).unwrap_or(0);
    if !(1..=1000).contains(&vp) {
        invalid(
            errs,
            &p.child("versionPriority"),
            vp,
            "must be positive and less than 1000",
        );
    }
    let ca = st0(errs, spec, "caBundle", &p);
    let insecure = spec
        .and_then(|s| s.get("insecureSkipTLSVerify"))
        .and_then(Value::as_bool)
        == Some(true);
    match super::obj(errs, spec, "service", &p) {
        None => {
            if !ca.is_empty() {
                invalid(
                    errs,
                    &p.child("caBundle"),
                    format!("{} bytes", ca.len()),
                    "local APIServices may not have a caBundle",
                );
            } else if insecure {
                invalid(
                    errs,
                    &p.child("insecureSkipTLSVerify"),
                    true,
                    "local APIServices may not have insecureSkipTLSVerify",
                );
            }
        }
        Some(s) => {
            let sp = p.child("service");
            for key in ["namespace", "name"] {
                if st0(errs, Some(s), key, &sp).is_empty() {
                    required(errs, &sp.child(key), "");
                }
            }
            if let Some(port) = int(errs, Some(s), "port", &sp)
                && !(1..=65535).contains(&port)
            {
                invalid(
                    errs,
                    &sp.child("port"),
                    port,
                    "port is not valid: must be between 1 and 65535, inclusive",
                );
            }
            if insecure && !ca.is_empty() {
                invalid(
                    errs,
                    &p.child("insecureSkipTLSVerify"),
                    true,
                    "may not be true if caBundle is present",
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    fn check(group: &str, kind: &str, obj: serde_json::Value) -> Vec<String> {
        crate::validation::validate(group, kind, &obj, None)
            .iter()
            .map(|e| e.message())
            .collect()
    }

    #[test]
    fn rbac_names_are_path_segments_and_rules_are_checked() {
        let role = json!({"metadata": {"name": "system:controller:x"}, "rules": [
            {"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]},
            {"nonResourceURLs": ["/metrics"], "verbs": ["get"]}]});
        assert!(check("rbac.authorization.k8s.io", "ClusterRole", role).is_empty());
        let bad = json!({"metadata": {"name": "a/b", "namespace": "d"}, "rules": [
            {"resources": ["pods"]}, {"nonResourceURLs": ["/x"], "verbs": ["get"]}]});
        let errs = check("rbac.authorization.k8s.io", "Role", bad);
        assert!(
            errs.contains(&"metadata.name: Invalid value: \"a/b\": may not contain '/'".to_string()),
            "{errs:?}"
        );
        assert!(
            errs.contains(&"rules[0].verbs: Required value: verbs must contain at least one value".to_string()),
            "{errs:?}"
        );
        assert!(errs.contains(
            &"rules[0].apiGroups: Required value: resource rules must supply at least one api group".to_string()
        ));
        assert!(
            errs.iter()
                .any(|e| e.contains("namespaced rules cannot apply to non-resource URLs")),
            "{errs:?}"
        );
    }

    #[test]
    fn bindings_check_role_refs_and_subjects() {
        let b = json!({"metadata": {"name": "b"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "r"},
            "subjects": [{"kind": "ServiceAccount", "name": "sa"}, {"kind": "Robot", "name": "x"}]});
        let errs = check("rbac.authorization.k8s.io", "ClusterRoleBinding", b);
        assert!(
            errs.contains(&"roleRef.kind: Unsupported value: \"Role\": supported values: \"ClusterRole\"".to_string()),
            "{errs:?}"
        );
        assert!(
            errs.contains(&"subjects[0].namespace: Required value".to_string()),
            "{errs:?}"
        );
        assert!(
            errs.iter()
                .any(|e| e.starts_with("subjects[1].kind: Unsupported value: \"Robot\"")),
            "{errs:?}"
        );
        let old = json!({"metadata": {"name": "b", "namespace": "d", "resourceVersion": "1"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "a"}});
        let mut new = old.clone();
        new["roleRef"]["name"] = json!("b");
        let errs: Vec<String> =
            crate::validation::validate("rbac.authorization.k8s.io", "RoleBinding", &new, Some(&old))
                .iter()
                .map(|e| e.message())
                .collect();
        assert!(errs.iter().any(|e| e.ends_with("cannot change roleRef")), "{errs:?}");
    }

    #[test]
    fn pdbs_priority_classes_and_hpas_follow_upstream() {
        let pdb =
            json!({"metadata": {"name": "p", "namespace": "d"}, "spec": {"minAvailable": 1, "maxUnavailable": "150%"}});
        let errs = check("policy", "PodDisruptionBudget", pdb);
        assert!(
            errs.iter()
                .any(|e| e.ends_with("minAvailable and maxUnavailable cannot be both set")),
            "{errs:?}"
        );
        assert!(
            errs.iter()
                .any(|e| e.starts_with("spec.maxUnavailable") && e.ends_with("must not be greater than 100%"))
        );
        let pc = json!({"metadata": {"name": "system-mine"}, "value": 5});
        let errs = check("scheduling.k8s.io", "PriorityClass", pc);
        assert!(
            errs.iter()
                .any(|e| e.contains("system-mine is not a known system priority class")),
            "{errs:?}"
        );
        let pc = json!({"metadata": {"name": "huge"}, "value": 2_000_000_000i64});
        assert!(
            check("scheduling.k8s.io", "PriorityClass", pc).contains(
                &"value: Forbidden: maximum allowed value of a user defined priority is 1000000000".to_string()
            )
        );
        let hpa = json!({"metadata": {"name": "h", "namespace": "d"}, "spec": {"minReplicas": 0, "maxReplicas": 0,
            "scaleTargetRef": {"kind": "Deployment"}, "metrics": [{"type": "Resource"}]}});
        let errs = check("autoscaling", "HorizontalPodAutoscaler", hpa);
        assert!(
            errs.contains(&"spec.minReplicas: Invalid value: 0: must be greater than or equal to 1".to_string()),
            "{errs:?}"
        );
        assert!(
            errs.contains(&"spec.scaleTargetRef.name: Required value".to_string()),
            "{errs:?}"
        );
        assert!(
            errs.iter()
                .any(|e| e.ends_with("must populate information for the given metric source"))
        );
    }

    #[test]
    fn networking_kinds_follow_upstream() {
        let ing = json!({"metadata": {"name": "i", "namespace": "d"}, "spec": {"rules": [{"host": "10.0.0.1",
            "http": {"paths": [{"path": "a", "pathType": "Prefix", "backend": {"service": {"name": "web"}}}]}}]}});
        let errs = check("networking.k8s.io", "Ingress", ing);
        assert!(
            errs.contains(
                &"spec.rules[0].host: Invalid value: \"10.0.0.1\": must be a DNS name, not an IP address".to_string()
            ),
            "{errs:?}"
        );
        assert!(errs.iter().any(|e| e.ends_with("must be an absolute path")), "{errs:?}");
        assert!(
            errs.iter().any(|e| e.ends_with("port name or number is required")),
            "{errs:?}"
        );
        let np = json!({"metadata": {"name": "n", "namespace": "d"}, "spec": {"podSelector": {},
            "ingress": [{"from": [{}], "ports": [{"protocol": "ICMP", "port": 70000}]}], "policyTypes": ["Sideways"]}});
        let errs = check("networking.k8s.io", "NetworkPolicy", np);
        assert!(
            errs.contains(&"spec.ingress[0].from[0]: Required value: must specify a peer".to_string()),
            "{errs:?}"
        );
        assert!(
            errs.iter()
                .any(|e| e.starts_with("spec.ingress[0].ports[0].protocol: Unsupported value"))
        );
        assert!(
            errs.iter()
                .any(|e| e.starts_with("spec.policyTypes[0]: Unsupported value"))
        );
    }

    #[test]
    fn crds_and_api_services_check_their_names() {
        let crd = json!({"metadata": {"name": "widgets.example.com"}, "spec": {"group": "example.com", "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "listKind": "WidgetList"},
            "versions": [{"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": {"type": "object"}}}]}});
        assert!(check("apiextensions.k8s.io", "CustomResourceDefinition", crd.clone()).is_empty());
        let mut bad = crd;
        bad["metadata"]["name"] = json!("gadgets.example.com");
        bad["spec"]["versions"][0]["storage"] = json!(false);
        let errs = check("apiextensions.k8s.io", "CustomResourceDefinition", bad);
        assert!(
            errs.iter()
                .any(|e| e.ends_with("must be spec.names.plural+\".\"+spec.group")),
            "{errs:?}"
        );
        assert!(
            errs.iter()
                .any(|e| e.ends_with("must have exactly one version marked as storage version"))
        );
        let svc = json!({"metadata": {"name": "v1.metrics.k8s.io"}, "spec": {"group": "metrics.k8s.io", "version": "v1beta1",
            "groupPriorityMinimum": 100, "versionPriority": 100, "service": {"name": "m", "namespace": "kube-system"}}});
        let errs = check("apiregistration.k8s.io", "APIService", svc);
        assert_eq!(errs, vec!["metadata.name: Invalid value: \"v1.metrics.k8s.io\": must be `spec.version+\".\"+spec.group`: \"v1beta1.metrics.k8s.io\"".to_string()]);
    }

    #[test]
    fn webhooks_need_side_effects_review_versions_and_one_client_config() {
        let w = json!({"metadata": {"name": "w"}, "webhooks": [{"name": "short.name", "clientConfig": {}}]});
        let errs = check("admissionregistration.k8s.io", "ValidatingWebhookConfiguration", w);
        assert!(
            errs.iter()
                .any(|e| e.ends_with("should be a domain with at least three segments separated by dots"))
        );
        assert!(
            errs.contains(
                &"webhooks[0].sideEffects: Required value: must specify one of None, NoneOnDryRun".to_string()
            )
        );
        assert!(errs.contains(
            &"webhooks[0].clientConfig: Required value: exactly one of url or service is required".to_string()
        ));
        assert!(errs.contains(
            &"webhooks[0].admissionReviewVersions: Required value: must specify one of v1, v1beta1".to_string()
        ));
    }
}
