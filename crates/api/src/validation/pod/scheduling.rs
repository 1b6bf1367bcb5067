//! Scheduling: tolerations, node selectors and affinity, DNS config, topology spread.

use super::*;

/// `ValidateTolerations`.
pub(crate) fn tolerations(errs: &mut Errs, list: &[Value], p: &Path) {
    for (i, t) in list.iter().enumerate() {
        let ip = p.index(i);
        let tv = Some(t);
        let key = st0(errs, tv, "key", &ip);
        let op = st0(errs, tv, "operator", &ip);
        let value = st0(errs, tv, "value", &ip);
        let effect = st0(errs, tv, "effect", &ip);
        if !key.is_empty() {
            label_name(errs, key, &ip.child("key"));
        }
        if key.is_empty() && op != "Exists" {
            invalid(
                errs,
                &ip.child("operator"),
                op,
                "operator must be Exists when `key` is empty, which means \"match all values and all keys\"",
            );
        }
        if get(tv, "tolerationSeconds").is_some() && effect != "NoExecute" {
            invalid(
                errs,
                &ip.child("effect"),
                effect,
                "effect must be 'NoExecute' when `tolerationSeconds` is set",
            );
        }
        match op {
            "Equal" | "" => {
                let msgs = names::is_valid_label_value(value);
                if !msgs.is_empty() {
                    invalid(errs, &ip.child("operator"), value, msgs.join(";"));
                }
            }
            "Exists" => {
                if !value.is_empty() {
                    invalid_raw(
                        errs,
                        &ip.child("operator"),
                        gorepr::toleration(t),
                        "value must be empty when `operator` is 'Exists'",
                    );
                }
            }
            other => not_supported(errs, &ip.child("operator"), other, &["Equal", "Exists"]),
        }
        if !effect.is_empty() {
            taint_effect(errs, effect, &ip.child("effect"));
        }
    }
}

/// Taint effects: NoSchedule, PreferNoSchedule, NoExecute.
pub(crate) fn taint_effect(errs: &mut Errs, effect: &str, p: &Path) {
    if !matches!(effect, "NoSchedule" | "PreferNoSchedule" | "NoExecute") {
        not_supported(errs, p, effect, &["NoSchedule", "PreferNoSchedule", "NoExecute"]);
    }
}

/// `ValidateNodeSelector` (node affinity, PV node affinity).
pub(crate) fn node_selector(errs: &mut Errs, ns: J<'_>, p: &Path) {
    let tp = p.child("nodeSelectorTerms");
    let terms = arr(errs, ns, "nodeSelectorTerms", p);
    if terms.is_empty() {
        required(errs, &tp, "must have at least one node selector term");
        return;
    }
    for (i, t) in terms.iter().enumerate() {
        node_selector_term(errs, Some(t), &tp.index(i));
    }
}

pub(super) fn node_selector_term(errs: &mut Errs, term: J<'_>, p: &Path) {
    for (j, r) in arr(errs, term, "matchExpressions", p).iter().enumerate() {
        let rp = p.child("matchExpressions").index(j);
        let r = Some(r);
        let op = st0(errs, r, "operator", &rp);
        let values = str_list(errs, r, "values", &rp);
        match op {
            "In" | "NotIn" if values.is_empty() => required(
                errs,
                &rp.child("values"),
                "must be specified when `operator` is 'In' or 'NotIn'",
            ),
            "Exists" | "DoesNotExist" if !values.is_empty() => forbidden(
                errs,
                &rp.child("values"),
                "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
            ),
            "Gt" | "Lt" if values.len() != 1 => required(
                errs,
                &rp.child("values"),
                "must be specified single value when `operator` is 'Lt' or 'Gt'",
            ),
            "In" | "NotIn" | "Exists" | "DoesNotExist" | "Gt" | "Lt" => {}
            other => invalid(errs, &rp.child("operator"), other, "not a valid selector operator"),
        }
        let key = st0(errs, r, "key", &rp);
        label_name(errs, key, &rp.child("key"));
    }
    for (j, r) in arr(errs, term, "matchFields", p).iter().enumerate() {
        let rp = p.child("matchFields").index(j);
        let r = Some(r);
        let op = st0(errs, r, "operator", &rp);
        let values = str_list(errs, r, "values", &rp);
        match op {
            "In" | "NotIn" => {
                if values.len() != 1 {
                    required(
                        errs,
                        &rp.child("values"),
                        "must be only one value when `operator` is 'In' or 'NotIn' for node field selector",
                    );
                }
            }
            other => invalid(errs, &rp.child("operator"), other, "not a valid selector operator"),
        }
        let key = st0(errs, r, "key", &rp);
        if key != "metadata.name" {
            invalid(errs, &rp.child("key"), key, "not a valid field selector key");
        } else {
            for (k, v) in values.iter().enumerate() {
                subdomain(errs, v, &rp.child("values").index(k));
            }
        }
    }
}

pub(super) fn affinity(errs: &mut Errs, aff: J<'_>, p: &Path) {
    if let Some(na) = obj(errs, aff, "nodeAffinity", p) {
        let np = p.child("nodeAffinity");
        let na = Some(na);
        if let Some(req) = obj(errs, na, "requiredDuringSchedulingIgnoredDuringExecution", &np) {
            node_selector(
                errs,
                Some(req),
                &np.child("requiredDuringSchedulingIgnoredDuringExecution"),
            );
        }
        let pp = np.child("preferredDuringSchedulingIgnoredDuringExecution");
        for (i, t) in arr(errs, na, "preferredDuringSchedulingIgnoredDuringExecution", &np)
            .iter()
            .enumerate()
        {
            term_weight(errs, t, &pp.index(i));
            node_selector_term(errs, get(Some(t), "preference"), &pp.index(i).child("preference"));
        }
    }
    for kind in ["podAffinity", "podAntiAffinity"] {
        let Some(pa) = obj(errs, aff, kind, p) else {
            continue;
        };
        let kp = p.child(kind);
        let pa = Some(pa);
        let rp = kp.child("requiredDuringSchedulingIgnoredDuringExecution");
        for (i, t) in arr(errs, pa, "requiredDuringSchedulingIgnoredDuringExecution", &kp)
            .iter()
            .enumerate()
        {
            pod_affinity_term(errs, Some(t), &rp.index(i));
        }
        let wp = kp.child("preferredDuringSchedulingIgnoredDuringExecution");
        for (i, t) in arr(errs, pa, "preferredDuringSchedulingIgnoredDuringExecution", &kp)
            .iter()
            .enumerate()
        {
            term_weight(errs, t, &wp.index(i));
            pod_affinity_term(
                errs,
                get(Some(t), "podAffinityTerm"),
                &wp.index(i).child("podAffinityTerm"),
            );
        }
    }
}

/// A preferred scheduling term's `weight`: 1 to 100.
fn term_weight(errs: &mut Errs, t: &Value, p: &Path) {
    let w = int(errs, Some(t), "weight", p).unwrap_or(0);
    if !(1..=100).contains(&w) {
        invalid(errs, &p.child("weight"), w, "must be in the range 1-100");
    }
}

pub(super) fn pod_affinity_term(errs: &mut Errs, t: J<'_>, p: &Path) {
    let sel = obj(errs, t, "labelSelector", p);
    meta::validate_label_selector(errs, sel, &p.child("labelSelector"));
    let ns_sel = obj(errs, t, "namespaceSelector", p);
    meta::validate_label_selector(errs, ns_sel, &p.child("namespaceSelector"));
    for ns in str_list(errs, t, "namespaces", p) {
        each_invalid(errs, &p.child("namespace"), ns, meta::namespace_name(ns));
    }
    let match_keys = str_list(errs, t, "matchLabelKeys", p);
    let mismatch_keys = str_list(errs, t, "mismatchLabelKeys", p);
    for (field, keys) in [("matchLabelKeys", &match_keys), ("mismatchLabelKeys", &mismatch_keys)] {
        if keys.is_empty() {
            continue;
        }
        if sel.is_none() {
            forbidden(
                errs,
                &p.child(field),
                "must not be specified when labelSelector is not set",
            );
            continue;
        }
        for (i, k) in keys.iter().enumerate() {
            label_name(errs, k, &p.child(field).index(i));
        }
    }
    for (i, k) in match_keys.iter().enumerate() {
        if mismatch_keys.contains(k) {
            invalid(
                errs,
                &p.child("matchLabelKeys").index(i),
                *k,
                "exists in both matchLabelKeys and mismatchLabelKeys",
            );
        }
    }
    let topology_key = st0(errs, t, "topologyKey", p);
    if topology_key.is_empty() {
        required(errs, &p.child("topologyKey"), "can not be empty");
    }
    label_name(errs, topology_key, &p.child("topologyKey"));
}

pub(super) fn dns_config(errs: &mut Errs, cfg: J<'_>, dns_policy: &str, p: &Path) {
    if dns_policy == "None" {
        if cfg.is_none() {
            required(errs, p, "must provide `dnsConfig` when `dnsPolicy` is None");
            return;
        }
        if arr(&mut Errs::new(), cfg, "nameservers", p).is_empty() {
            required(
                errs,
                &p.child("nameservers"),
                "must provide at least one DNS nameserver when `dnsPolicy` is None",
            );
            return;
        }
    }
    if cfg.is_none() {
        return;
    }
    let nameservers = str_list(errs, cfg, "nameservers", p);
    if nameservers.len() > 3 {
        invalid_raw(
            errs,
            &p.child("nameservers"),
            gorepr::string_slice(Some(&nameservers)),
            "must not have more than 3 nameservers",
        );
    }
    for (i, ns) in nameservers.iter().enumerate() {
        if let Some(m) = names::is_valid_ip(ns) {
            invalid(errs, &p.child("nameservers").index(i), *ns, m);
        }
    }
    let searches = str_list(errs, cfg, "searches", p);
    if searches.len() > 32 {
        invalid_raw(
            errs,
            &p.child("searches"),
            gorepr::string_slice(Some(&searches)),
            "must not have more than 32 search paths",
        );
    }
    if searches.join(" ").len() > 2048 {
        invalid_raw(
            errs,
            &p.child("searches"),
            gorepr::string_slice(Some(&searches)),
            "must not have more than 2048 characters (including spaces) in the search list",
        );
    }
    for (i, s) in searches.iter().enumerate() {
        subdomain(errs, s.strip_suffix('.').unwrap_or(s), &p.child("searches").index(i));
    }
    for (i, o) in arr(errs, cfg, "options", p).iter().enumerate() {
        if o.get("name").and_then(Value::as_str).unwrap_or("").is_empty() {
            required(errs, &p.child("options").index(i), "must not be empty");
        }
    }
}

pub(super) fn topology_spread(errs: &mut Errs, spec: J<'_>, p: &Path, spec_path: &Path) {
    let list = arr(errs, spec, "topologySpreadConstraints", spec_path);
    for (i, c) in list.iter().enumerate() {
        let cp = p.index(i);
        let cv = Some(c);
        let skew = int(errs, cv, "maxSkew", &cp).unwrap_or(0);
        if skew <= 0 {
            invalid(errs, &cp.child("maxSkew"), skew, NOT_POSITIVE);
        }
        let tk = st0(errs, cv, "topologyKey", &cp);
        if tk.is_empty() {
            required(errs, &cp.child("topologyKey"), "can not be empty");
        }
        let wu = st0(errs, cv, "whenUnsatisfiable", &cp);
        if wu != "DoNotSchedule" && wu != "ScheduleAnyway" {
            not_supported(
                errs,
                &cp.child("whenUnsatisfiable"),
                wu,
                &["DoNotSchedule", "ScheduleAnyway"],
            );
        }
        let repeated = list[i + 1..].iter().any(|o| {
            o.get("topologyKey").and_then(Value::as_str).unwrap_or("") == tk
                && o.get("whenUnsatisfiable").and_then(Value::as_str).unwrap_or("") == wu
        });
        if repeated {
            duplicate(
                errs,
                &cp.child("{topologyKey, whenUnsatisfiable}"),
                format!("{{{tk}, {wu}}}"),
            );
        }
        if let Some(md) = int(errs, cv, "minDomains", &cp) {
            if md <= 0 {
                invalid(errs, &cp.child("minDomains"), md, NOT_POSITIVE);
            }
            if wu != "DoNotSchedule" {
                invalid(
                    errs,
                    &cp.child("minDomains"),
                    md,
                    format!("can only use minDomains if whenUnsatisfiable=DoNotSchedule, not {wu}"),
                );
            }
        }
        for key in ["nodeAffinityPolicy", "nodeTaintsPolicy"] {
            if let Some(v) = st(errs, cv, key, &cp)
                && v != "Honor"
                && v != "Ignore"
            {
                not_supported(errs, &cp.child(key), v, &["Honor", "Ignore"]);
            }
        }
        let sel = obj(errs, cv, "labelSelector", &cp);
        let keys = str_list(errs, cv, "matchLabelKeys", &cp);
        if !keys.is_empty() {
            let mk = cp.child("matchLabelKeys");
            if sel.is_none() {
                forbidden(errs, &mk, "must not be specified when labelSelector is not set");
            }
            let mut sel_keys: BTreeSet<&str> = BTreeSet::new();
            if let Some(m) = get(sel, "matchLabels").and_then(Value::as_object) {
                sel_keys.extend(m.keys().map(String::as_str));
            }
            for e in get(sel, "matchExpressions")
                .and_then(Value::as_array)
                .map(Vec::as_slice)
                .unwrap_or_default()
            {
                sel_keys.extend(e.get("key").and_then(Value::as_str));
            }
            for (j, k) in keys.iter().enumerate() {
                label_name(errs, k, &mk.index(j));
                if sel_keys.contains(k) {
                    invalid(
                        errs,
                        &mk.index(j),
                        *k,
                        "exists in both matchLabelKeys and labelSelector",
                    );
                }
            }
        }
        meta::validate_label_selector(errs, sel, &cp.child("labelSelector"));
    }
}
