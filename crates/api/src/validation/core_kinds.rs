//! core/v1 kinds other than pods: Service, Namespace, Node, ConfigMap, Secret,
//! ServiceAccount, Endpoints, PersistentVolume(Claim), ReplicationController.

use super::meta::{self, dns_label, kube_finalizer_name, meta_create, meta_update, qualified_name, subdomain};
use super::names::{self, is_valid_port_num};
use super::pod::{self, node_selector, pod_template_spec, port_num_or_name, protocol, quantities, quantity_value};
use super::quantity::Quantity;
use super::{
    Errs, IMMUTABLE, J, Path, arr, boolean, duplicate, duplicate_raw, each_invalid, forbidden, get, gorepr, int,
    invalid, invalid_raw, nonneg_field, not_supported, not_supported_raw, required, required_one_of, semantic_eq, st,
    st0, str_list, str_map, too_long,
};
use serde_json::Value;
use std::collections::HashSet;

/// Largest total size of a Secret's or ConfigMap's data.
const MAX_SECRET_SIZE: usize = 1024 * 1024;
const NODE_PORT_RANGE: (i64, i64) = (30000, 32767);

// ---------------------------------------------------------------------------------------
// Service

fn is_headless(spec: J<'_>) -> bool {
    let ips = get(spec, "clusterIPs").and_then(Value::as_array);
    ips.is_some_and(|a| a.len() == 1 && a[0].as_str() == Some("None"))
}

/// Service create/update.
pub(crate) fn validate_service(errs: &mut Errs, obj: &Value, old: Option<&Value>) {
    let sp = Path::new("spec");
    let spec = super::obj(errs, Some(obj), "spec", &Path::new(""));
    if let Some(old) = old {
        meta_update(errs, obj, old);
        let old_spec = get(Some(old), "spec");
        service_cluster_ips_update(errs, spec, old_spec, &sp);
        load_balancer_class(errs, spec, Some(old_spec), &sp);
        let needs_hc = |s: J<'_>| {
            get(s, "type").and_then(Value::as_str) == Some("LoadBalancer")
                && get(s, "externalTrafficPolicy").and_then(Value::as_str) == Some("Local")
        };
        if needs_hc(spec)
            && needs_hc(old_spec)
            && get(spec, "healthCheckNodePort") != get(old_spec, "healthCheckNodePort")
        {
            forbidden(errs, &sp.child("healthCheckNodePort"), IMMUTABLE);
        }
    }
    meta_create(errs, obj, true, names::name_is_dns1035_label);
    let m = get(Some(obj), "metadata");
    let anns = get(m, "annotations");
    let hints = get(anns, "service.kubernetes.io/topology-aware-hints").and_then(Value::as_str);
    let mode = get(anns, "service.kubernetes.io/topology-mode").and_then(Value::as_str);
    if let (Some(h), Some(mv)) = (hints, mode)
        && h != mv
    {
        invalid(
            errs,
            &Path::new("metadata")
                .child("annotations")
                .key("service.kubernetes.io/topology-mode"),
            mv,
            "must match annotations[service.kubernetes.io/topology-aware-hints] when both are specified",
        );
    }
    let svc_type = st0(errs, spec, "type", &sp);
    let ports = arr(errs, spec, "ports", &sp);
    let headless = is_headless(spec);
    let cluster_ips = str_list(errs, spec, "clusterIPs", &sp);
    if ports.is_empty() && !headless && svc_type != "ExternalName" {
        required(errs, &sp.child("ports"), "");
    }
    match svc_type {
        "LoadBalancer" => {
            for (i, port) in ports.iter().enumerate() {
                if port.get("port").and_then(Value::as_i64) == Some(10250) {
                    invalid(
                        errs,
                        &sp.child("ports").index(i),
                        10250,
                        "may not expose port 10250 externally since it is used by kubelet",
                    );
                }
            }
            if headless {
                invalid(
                    errs,
                    &sp.child("clusterIPs").index(0),
                    "None",
                    "may not be set to 'None' for LoadBalancer services",
                );
            }
        }
        "NodePort" if headless => {
            invalid(
                errs,
                &sp.child("clusterIPs").index(0),
                "None",
                "may not be set to 'None' for NodePort services",
            );
        }
        "ExternalName" => {
            if !cluster_ips.is_empty() {
                forbidden(
                    errs,
                    &sp.child("clusterIPs"),
                    "may not be set for ExternalName services",
                );
            }
            if !arr(&mut Errs::new(), spec, "ipFamilies", &sp).is_empty() {
                forbidden(
                    errs,
                    &sp.child("ipFamilies"),
                    "may not be set for ExternalName services",
                );
            }
            if get(spec, "ipFamilyPolicy").is_some() {
                forbidden(
                    errs,
                    &sp.child("ipFamilyPolicy"),
                    "may not be set for ExternalName services",
                );
            }
            let name = st0(errs, spec, "externalName", &sp);
            let cname = name.strip_suffix('.').unwrap_or(name);
            if cname.is_empty() {
                required(errs, &sp.child("externalName"), "");
            } else {
                subdomain(errs, cname, &sp.child("externalName"));
            }
        }
        _ => {}
    }
    let mut port_names = HashSet::new();
    for (i, port) in ports.iter().enumerate() {
        let pp = sp.child("ports").index(i);
        let port = Some(port);
        let name = port_name(errs, port, &pp, ports.len() > 1);
        if !name.is_empty() && !port_names.insert(name) {
            duplicate(errs, &pp.child("name"), name);
        }
        port_number(errs, port, &pp);
        protocol(errs, port, &pp);
        port_num_or_name(errs, get(port, "targetPort"), &pp.child("targetPort"));
        if let Some(ap) = st(errs, port, "appProtocol", &pp) {
            qualified_name(errs, ap, &pp.child("appProtocol"));
        }
    }
    if get(spec, "selector").is_some() {
        let sel = str_map(errs, spec, "selector", &sp);
        meta::validate_labels(errs, sel.as_deref(), &sp.child("selector"));
    }
    let affinity = st0(errs, spec, "sessionAffinity", &sp);
    required_one_of(errs, affinity, &sp.child("sessionAffinity"), &["ClientIP", "None"]);
    let cfg = super::obj(errs, spec, "sessionAffinityConfig", &sp);
    let cp = sp.child("sessionAffinityConfig");
    if affinity == "ClientIP" {
        let client = get(cfg, "clientIP");
        let when = "when session affinity type is ClientIP";
        if cfg.is_none() {
            required(errs, &cp, when);
        } else if client.is_none() {
            required(errs, &cp.child("clientIP"), when);
        } else {
            match int(errs, client, "timeoutSeconds", &cp.child("clientIP")) {
                None => required(errs, &cp.child("clientIP").child("timeoutSeconds"), when),
                Some(t) if !(1..=86400).contains(&t) => invalid(
                    errs,
                    &cp.child("clientIP").child("timeoutSeconds"),
                    t,
                    "must be greater than 0 and less than 86400",
                ),
                Some(_) => {}
            }
        }
    } else if affinity == "None" && cfg.is_some() {
        forbidden(errs, &cp, "must not be set when session affinity is None");
    }
    if svc_type != "ExternalName" {
        cluster_ips_fields(errs, spec, &sp);
    }
    for (i, ip) in str_list(errs, spec, "externalIPs", &sp).iter().enumerate() {
        let ipp = sp.child("externalIPs").index(i);
        match names::is_valid_ip(ip) {
            Some(m) => invalid(errs, &ipp, *ip, m),
            None => non_special_ip(errs, ip, &ipp),
        }
    }
    required_one_of(
        errs,
        svc_type,
        &sp.child("type"),
        &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"],
    );
    let node_port = |p: &Value| p.get("nodePort").and_then(Value::as_i64).unwrap_or(0);
    let proto = |p: &Value| p.get("protocol").and_then(Value::as_str).unwrap_or("").to_string();
    if svc_type == "ClusterIP" {
        for (i, port) in ports.iter().enumerate() {
            if node_port(port) != 0 {
                forbidden(
                    errs,
                    &sp.child("ports").index(i).child("nodePort"),
                    "may not be used when `type` is 'ClusterIP'",
                );
            }
        }
    }
    let mut seen_np = HashSet::new();
    for (i, port) in ports.iter().enumerate() {
        let np = node_port(port);
        if np != 0 && !seen_np.insert((proto(port), np)) {
            duplicate(errs, &sp.child("ports").index(i).child("nodePort"), np);
        }
    }
    let mut seen = HashSet::new();
    for (i, port) in ports.iter().enumerate() {
        let num = port.get("port").and_then(Value::as_i64).unwrap_or(0);
        if !seen.insert((proto(port), num)) {
            duplicate_raw(
                errs,
                &sp.child("ports").index(i),
                gorepr::service_port_key(&proto(port), num),
                "",
            );
        }
    }
    let ranges = str_list(errs, spec, "loadBalancerSourceRanges", &sp);
    if !ranges.is_empty() {
        let fp = sp.child("LoadBalancerSourceRanges");
        if svc_type != "LoadBalancer" {
            forbidden(errs, &fp, "may only be used when `type` is 'LoadBalancer'");
        }
        for (i, r) in ranges.iter().enumerate() {
            if let Some(m) = names::is_valid_cidr(r.trim()) {
                invalid(errs, &fp.index(i), r.trim(), m);
            }
        }
    } else if let Some(val) =
        get(anns, "service.beta.kubernetes.io/load-balancer-source-ranges").and_then(Value::as_str)
    {
        let fp = Path::new("metadata")
            .child("annotations")
            .key("service.beta.kubernetes.io/load-balancer-source-ranges");
        if svc_type != "LoadBalancer" {
            forbidden(errs, &fp, "may only be used when `type` is 'LoadBalancer'");
        }
        let val = val.trim();
        if !val.is_empty() {
            for r in val.split(',') {
                if let Some(m) = names::is_valid_cidr(r.trim()) {
                    invalid(errs, &fp, r.trim(), m);
                }
            }
        }
    }
    let alloc = boolean(errs, spec, "allocateLoadBalancerNodePorts", &sp);
    if alloc.is_some() && svc_type != "LoadBalancer" {
        forbidden(
            errs,
            &sp.child("allocateLoadBalancerNodePorts"),
            "may only be used when `type` is 'LoadBalancer'",
        );
    }
    if svc_type == "LoadBalancer" && alloc.is_none() {
        required(errs, &Path::new("allocateLoadBalancerNodePorts"), "");
    }
    load_balancer_class(errs, spec, None, &sp);
    let externally_accessible = svc_type == "LoadBalancer"
        || svc_type == "NodePort"
        || (svc_type == "ClusterIP" && !arr(&mut Errs::new(), spec, "externalIPs", &sp).is_empty());
    let etp = st0(errs, spec, "externalTrafficPolicy", &sp);
    if !externally_accessible {
        if !etp.is_empty() {
            invalid(
                errs,
                &sp.child("externalTrafficPolicy"),
                etp,
                "may only be set for externally-accessible services",
            );
        }
    } else if etp.is_empty() {
        required(errs, &sp.child("externalTrafficPolicy"), "");
    } else if etp != "Cluster" && etp != "Local" {
        not_supported(errs, &sp.child("externalTrafficPolicy"), etp, &["Cluster", "Local"]);
    }
    let hc = int(errs, spec, "healthCheckNodePort", &sp).unwrap_or(0);
    let needs_hc = svc_type == "LoadBalancer" && etp == "Local";
    if !needs_hc && hc != 0 {
        invalid(
            errs,
            &sp.child("healthCheckNodePort"),
            hc,
            "may only be set when `type` is 'LoadBalancer' and `externalTrafficPolicy` is 'Local'",
        );
    } else if needs_hc && hc != 0 {
        for m in is_valid_port_num(hc) {
            invalid(errs, &sp.child("healthCheckNodePort"), hc, m);
        }
    }
    match st(errs, spec, "internalTrafficPolicy", &sp) {
        None if matches!(svc_type, "NodePort" | "LoadBalancer" | "ClusterIP") => {
            required(errs, &sp.child("internalTrafficPolicy"), "")
        }
        Some(p) if p != "Cluster" && p != "Local" => {
            not_supported(errs, &sp.child("internalTrafficPolicy"), p, &["Cluster", "Local"])
        }
        _ => {}
    }
    if let Some(td) = st(errs, spec, "trafficDistribution", &sp)
        && td != "PreferClose"
    {
        not_supported(errs, &sp.child("trafficDistribution"), td, &["PreferClose"]);
    }
    // The node-port allocator's range check (reported on create and when a port changes).
    for (i, port) in ports.iter().enumerate() {
        let np = node_port(port);
        if np == 0 {
            continue;
        }
        let unchanged = old
            .and_then(|o| get(get(Some(o), "spec"), "ports"))
            .and_then(Value::as_array)
            .is_some_and(|ops| {
                ops.iter()
                    .any(|op| op.get("nodePort").and_then(Value::as_i64) == Some(np))
            });
        if !unchanged && !(NODE_PORT_RANGE.0..=NODE_PORT_RANGE.1).contains(&np) {
            invalid(
                errs,
                &sp.child("ports").index(i).child("nodePort"),
                np,
                format!(
                    "provided port is not in the valid range. The range of valid ports is {}-{}",
                    NODE_PORT_RANGE.0, NODE_PORT_RANGE.1
                ),
            );
        }
    }
}

fn load_balancer_class(errs: &mut Errs, spec: J<'_>, old_spec: Option<J<'_>>, sp: &Path) {
    let lbc = get(spec, "loadBalancerClass");
    let is_lb = |s: J<'_>| get(s, "type").and_then(Value::as_str) == Some("LoadBalancer");
    let p = sp.child("loadBalancerClass");
    if let Some(old_spec) = old_spec {
        if is_lb(old_spec) && is_lb(spec) && lbc != get(old_spec, "loadBalancerClass") {
            invalid(errs, &p, lbc.cloned().unwrap_or(Value::Null), "may not change once set");
        }
        return;
    }
    match lbc.and_then(Value::as_str) {
        Some(c) if is_lb(spec) => qualified_name(errs, c, &p),
        Some(_) => forbidden(errs, &p, "may only be used when `type` is 'LoadBalancer'"),
        None => {}
    }
}

fn cluster_ips_fields(errs: &mut Errs, spec: J<'_>, sp: &Path) {
    let mut scratch = Errs::new();
    let cluster_ip = st0(&mut scratch, spec, "clusterIP", sp);
    let ips = str_list(&mut scratch, spec, "clusterIPs", sp);
    let ips_path = sp.child("clusterIPs");
    let ips_repr = gorepr::string_slice(Some(&ips));
    if !cluster_ip.is_empty() {
        if ips.is_empty() {
            required(errs, &ips_path, "");
        } else if ips[0] != cluster_ip {
            invalid_raw(errs, &ips_path, ips_repr.clone(), "first value must match `clusterIP`");
        }
    } else if !ips.is_empty() {
        invalid_raw(
            errs,
            &ips_path,
            ips_repr.clone(),
            "must be empty when `clusterIP` is not specified",
        );
    }
    let mut seen = HashSet::new();
    for (i, fam) in str_list(errs, spec, "ipFamilies", sp).iter().enumerate() {
        let fp = sp.child("ipFamilies").index(i);
        if *fam != "IPv4" && *fam != "IPv6" {
            not_supported(errs, &fp, *fam, &["IPv4", "IPv6"]);
        }
        if !seen.insert(*fam) {
            duplicate(errs, &fp, *fam);
        }
    }
    if let Some(policy) = st(errs, spec, "ipFamilyPolicy", sp)
        && !matches!(policy, "SingleStack" | "PreferDualStack" | "RequireDualStack")
    {
        not_supported(
            errs,
            &sp.child("ipFamilyPolicy"),
            policy,
            &["PreferDualStack", "RequireDualStack", "SingleStack"],
        );
    }
    let mut bad = false;
    for (i, ip) in ips.iter().enumerate() {
        if i == 0 && *ip == "None" {
            if ips.len() > 1 {
                bad = true;
                invalid_raw(
                    errs,
                    &ips_path,
                    ips_repr.clone(),
                    "'None' must be the first and only value",
                );
            }
            continue;
        }
        if let Some(m) = names::is_valid_ip(ip) {
            bad = true;
            invalid(errs, &ips_path.index(i), *ip, m);
        }
    }
    if ips.len() > 2 {
        invalid_raw(errs, &ips_path, ips_repr.clone(), "may only hold up to 2 values");
    }
    if bad {
        return;
    }
    if ips.len() > 1 {
        let v4: Vec<bool> = ips
            .iter()
            .filter_map(|ip| names::parse_ip(ip))
            .map(|ip| ip.is_ipv4())
            .collect();
        let dual = v4.len() == 2 && v4[0] != v4[1];
        if !dual {
            invalid_raw(
                errs,
                &ips_path,
                ips_repr,
                "may specify no more than one IP for each IP family",
            );
        }
    }
}

fn service_cluster_ips_update(errs: &mut Errs, spec: J<'_>, old_spec: J<'_>, sp: &Path) {
    let ty = |s: J<'_>| get(s, "type").and_then(Value::as_str).unwrap_or("").to_string();
    if ty(spec) == "ExternalName" || ty(old_spec) == "ExternalName" {
        return;
    }
    if is_headless(spec) && is_headless(old_spec) {
        return;
    }
    let mut scratch = Errs::new();
    let new = str_list(&mut scratch, spec, "clusterIPs", sp);
    let was = str_list(&mut scratch, old_spec, "clusterIPs", sp);
    let p0 = sp.child("clusterIPs").index(0);
    let repr = gorepr::string_slice(Some(&new));
    if new.len() == was.len() {
        for (i, ip) in was.iter().enumerate() {
            if new[i] != *ip {
                invalid_raw(
                    errs,
                    &sp.child("clusterIPs").index(i),
                    repr.clone(),
                    "may not change once set",
                );
            }
        }
    } else if was.len() > new.len() {
        if new.is_empty() {
            invalid_raw(errs, &p0, repr.clone(), "primary clusterIP can not be unset");
        }
        if !was.is_empty() && !new.is_empty() && new[0] != was[0] {
            invalid_raw(errs, &p0, repr.clone(), "may not change once set");
        }
        if new.len() == 1 && get(spec, "ipFamilyPolicy").and_then(Value::as_str) != Some("SingleStack") {
            invalid_raw(
                errs,
                &p0,
                repr,
                "`ipFamilyPolicy` must be set to 'SingleStack' when releasing the secondary clusterIP",
            );
        }
    } else if !was.is_empty() && new[0] != was[0] {
        invalid_raw(errs, &p0, repr, "may not change once set");
    }
}

/// `ValidateNonSpecialIP`.
fn non_special_ip(errs: &mut Errs, ip: &str, p: &Path) {
    let Some(addr) = names::parse_ip(ip) else {
        invalid(errs, p, ip, "must be a valid IP address");
        return;
    };
    if addr.is_unspecified() {
        invalid(errs, p, ip, format!("may not be unspecified ({ip})"));
    }
    if addr.is_loopback() {
        invalid(errs, p, ip, "may not be in the loopback range (127.0.0.0/8, ::1/128)");
    }
    let (link_local, link_local_mc) = match addr {
        std::net::IpAddr::V4(a) => (a.is_link_local(), a.octets()[..3] == [224, 0, 0]),
        std::net::IpAddr::V6(a) => (
            (a.segments()[0] & 0xffc0) == 0xfe80,
            (a.segments()[0] & 0xff0f) == 0xff02,
        ),
    };
    if link_local {
        invalid(
            errs,
            p,
            ip,
            "may not be in the link-local range (169.254.0.0/16, fe80::/10)",
        );
    }
    if link_local_mc {
        invalid(
            errs,
            p,
            ip,
            "may not be in the link-local multicast range (224.0.0.0/24, ff02::/10)",
        );
    }
}

// ---------------------------------------------------------------------------------------
// Namespace, ServiceAccount

/// Namespace create/update.
pub(crate) fn validate_namespace(errs: &mut Errs, obj: &Value, old: Option<&Value>) {
    if let Some(old) = old {
        meta_update(errs, obj, old);
        return;
    }
    meta_create(errs, obj, false, names::name_is_dns_label);
    let sp = Path::new("spec");
    let spec = super::obj(errs, Some(obj), "spec", &Path::new(""));
    let fp = sp.child("finalizers");
    for f in str_list(errs, spec, "finalizers", &sp) {
        each_invalid(errs, &fp, f, names::is_qualified_name(f));
        kube_finalizer_name(errs, f, &fp);
    }
}

/// ServiceAccount create/update.
pub(crate) fn validate_service_account(errs: &mut Errs, obj: &Value, old: Option<&Value>) {
    meta::meta_update_then_create(errs, obj, old, true, names::name_is_dns_subdomain);
}

// ---------------------------------------------------------------------------------------
// ConfigMap and Secret

/// ConfigMap create/update.
pub(crate) fn validate_config_map(errs: &mut Errs, obj: &Value, old: Option<&Value>) {
    let root = Path::new("");
    if let Some(old) = old {
        meta_update(errs, obj, old);
        immutable_data(errs, obj, old, &["data", "binaryData"]);
    }
    meta_create(errs, obj, true, names::name_is_dns_subdomain);
    let data = str_map(errs, Some(obj), "data", &root).unwrap_or_default();
    let binary = get(Some(obj), "binaryData").and_then(Value::as_object);
    let mut total = 0;
    for (k, v) in &data {
        let kp = Path::new("data").key(k);
        each_invalid(errs, &kp, k, names::is_config_map_key(k));
        if binary.is_some_and(|b| b.contains_key(*k)) {
            invalid(errs, &kp, *k, "duplicate of key present in binaryData");
        }
        total += v.len();
    }
    if let Some(b) = binary {
        for (k, v) in b {
            each_invalid(errs, &Path::new("binaryData").key(k), k, names::is_config_map_key(k));
            total += v.as_str().and_then(b64_len).unwrap_or(0);
        }
    }
    if total > MAX_SECRET_SIZE {
        too_long(errs, &root, MAX_SECRET_SIZE);
    }
}

fn immutable_data(errs: &mut Errs, obj: &Value, old: &Value, keys: &[&str]) {
    if get(Some(old), "immutable").and_then(Value::as_bool) != Some(true) {
        return;
    }
    const MSG: &str = "field is immutable when `immutable` is set";
    if get(Some(obj), "immutable").and_then(Value::as_bool) != Some(true) {
        forbidden(errs, &Path::new("immutable"), MSG);
    }
    for key in keys {
        if !semantic_eq(get(Some(obj), key), get(Some(old), key)) {
            forbidden(errs, &Path::new(key), MSG);
        }
    }
}

/// Decoded length of standard base64 text (`None` when it is not base64).
fn b64_len(s: &str) -> Option<usize> {
    let body = s.trim_end_matches('=');
    let pad = s.len() - body.len();
    if pad > 2
        || !body
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'+' || c == b'/')
        || !s.len().is_multiple_of(4)
    {
        return None;
    }
    Some(s.len() / 4 * 3 - pad)
}

/// Secret create/update.
pub(crate) fn validate_secret(errs: &mut Errs, obj: &Value, old: Option<&Value>) {
    let root = Path::new("");
    if let Some(old) = old {
        meta_update(errs, obj, old);
        let (t, was) = (get(Some(obj), "type"), get(Some(old), "type"));
        if t != was {
            invalid(
                errs,
                &Path::new("type"),
                t.cloned().unwrap_or(Value::from("")),
                IMMUTABLE,
            );
        }
        immutable_data(errs, obj, old, &["data"]);
    }
    meta_create(errs, obj, true, names::name_is_dns_subdomain);
    let dp = Path::new("data");
    let data = get(Some(obj), "data").and_then(Value::as_object);
    let mut total = 0;
    for (k, v) in data.into_iter().flatten() {
        each_invalid(errs, &dp.key(k), k, names::is_config_map_key(k));
        total += v.as_str().and_then(b64_len).unwrap_or(0);
    }
    if total > MAX_SECRET_SIZE {
        too_long(errs, &dp, MAX_SECRET_SIZE);
    }
    let has = |k: &str| data.is_some_and(|d| d.contains_key(k));
    let decoded_json_ok = |k: &str| {
        let raw = data.and_then(|d| d.get(k)).and_then(Value::as_str).unwrap_or("");
        decode_b64(raw).is_some_and(|b| serde_json::from_slice::<serde_json::Map<String, Value>>(&b).is_ok())
    };
    let docker_config = |errs: &mut Errs, key: &str| {
        if !has(key) {
            required(errs, &dp.key(key), "");
        } else if !decoded_json_ok(key) {
            invalid(
                errs,
                &dp.key(key),
                "<secret contents redacted>",
                "invalid character looking for beginning of value",
            );
        }
    };
    match st0(errs, Some(obj), "type", &root) {
        "kubernetes.io/service-account-token" => {
            let name = get(
                get(get(Some(obj), "metadata"), "annotations"),
                "kubernetes.io/service-account.name",
            );
            if name.and_then(Value::as_str).is_none_or(str::is_empty) {
                required(
                    errs,
                    &Path::new("metadata")
                        .child("annotations")
                        .key("kubernetes.io/service-account.name"),
                    "",
                );
            }
        }
        "kubernetes.io/dockercfg" => docker_config(errs, ".dockercfg"),
        "kubernetes.io/dockerconfigjson" => docker_config(errs, ".dockerconfigjson"),
        "kubernetes.io/basic-auth" if !has("username") && !has("password") => {
            required(errs, &dp.key("username"), "");
            required(errs, &dp.key("password"), "");
        }
        "kubernetes.io/ssh-auth" => {
            let key = data
                .and_then(|d| d.get("ssh-privatekey"))
                .and_then(Value::as_str)
                .unwrap_or("");
            if key.is_empty() {
                required(errs, &dp.key("ssh-privatekey"), "");
            }
        }
        "kubernetes.io/tls" => {
            for k in ["tls.crt", "tls.key"] {
                if !has(k) {
                    required(errs, &dp.key(k), "");
                }
            }
        }
        _ => {}
    }
}

fn decode_b64(s: &str) -> Option<Vec<u8>> {
    b64_len(s)?;
    let val = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let mut out = Vec::new();
    let mut acc = 0u32;
    let mut bits = 0;
    for c in s.trim_end_matches('=').bytes() {
        acc = (acc << 6) | u32::from(val(c)?);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

// ---------------------------------------------------------------------------------------
// Node

/// Node create/update.
pub(crate) fn validate_node(errs: &mut Errs, obj: &Value, old: Option<&Value>) {
    let mp = Path::new("metadata");
    let sp = Path::new("spec");
    let spec = super::obj(errs, Some(obj), "spec", &Path::new(""));
    meta::object_meta(errs, obj, old, false, names::name_is_dns_subdomain);
    let taints = arr(errs, spec, "taints", &sp);
    if old.is_none() && !taints.is_empty() {
        node_taints(errs, taints, &mp.child("taints"));
    }
    let status = get(Some(obj), "status");
    for key in ["capacity", "allocatable"] {
        let base = Path::new("status").child(key);
        for (name, q) in quantities(errs, get(status, key), &base) {
            quantity_value(errs, name, &q, &base.child(name));
        }
    }
    let cidrs = str_list(errs, spec, "podCIDRs", &sp);
    let cp = sp.child("podCIDRs");
    match old {
        None => {
            for (i, c) in cidrs.iter().enumerate() {
                if let Some(m) = names::is_valid_cidr(c) {
                    invalid(errs, &cp.index(i), *c, m);
                }
            }
            if cidrs.len() > 1 {
                let fams: Vec<bool> = cidrs
                    .iter()
                    .filter_map(|c| names::parse_cidr(c))
                    .map(|(ip, _)| ip.is_ipv4())
                    .collect();
                if fams.len() != 2 || fams[0] == fams[1] {
                    invalid_raw(
                        errs,
                        &cp,
                        gorepr::string_slice(Some(&cidrs)),
                        "may specify no more than one CIDR for each IP family",
                    );
                }
                let mut seen = HashSet::new();
                for (i, c) in cidrs.iter().enumerate() {
                    if !seen.insert(*c) {
                        duplicate(errs, &cp.index(i), *c);
                    }
                }
            }
        }
        Some(old) => {
            let old_spec = get(Some(old), "spec");
            let mut scratch = Errs::new();
            let mut seen = HashSet::new();
            for (i, a) in arr(&mut scratch, status, "addresses", &Path::new("status"))
                .iter()
                .enumerate()
            {
                let key = (a.get("type").cloned(), a.get("address").cloned());
                if !seen.insert(format!("{key:?}")) {
                    let repr = format!(
                        "core.NodeAddress{{Type:{}, Address:{}}}",
                        gorepr::quote(a.get("type").and_then(Value::as_str).unwrap_or("")),
                        gorepr::quote(a.get("address").and_then(Value::as_str).unwrap_or(""))
                    );
                    duplicate_raw(errs, &Path::new("status").child("addresses").index(i), repr, "");
                }
            }
            let was = str_list(&mut scratch, old_spec, "podCIDRs", &sp);
            if !was.is_empty() {
                const MSG: &str = "node updates may not change podCIDR except from \"\" to valid";
                if was.len() != cidrs.len() {
                    forbidden(errs, &cp, MSG);
                } else {
                    for (a, b) in was.iter().zip(&cidrs) {
                        if a != b {
                            forbidden(errs, &cp, MSG);
                        }
                    }
                }
            }
            let old_pid = get(old_spec, "providerID").and_then(Value::as_str).unwrap_or("");
            if !old_pid.is_empty() && Some(old_pid) != get(spec, "providerID").and_then(Value::as_str) {
                forbidden(
                    errs,
                    &sp.child("providerID"),
                    "node updates may not change providerID except from \"\" to valid",
                );
            }
            if !taints.is_empty() {
                node_taints(errs, taints, &mp.child("taints"));
            }
            if get(spec, "externalID") != get(old_spec, "externalID") {
                forbidden(errs, &sp.child("externalID"), "may not be updated");
            }
        }
    }
}

fn node_taints(errs: &mut Errs, taints: &[Value], p: &Path) {
    let mut seen: HashSet<(String, String)> = HashSet::new();
    for (i, t) in taints.iter().enumerate() {
        let ip = p.index(i);
        let tv = Some(t);
        let key = st0(errs, tv, "key", &ip);
        meta::label_name(errs, key, &ip.child("key"));
        let value = st0(errs, tv, "value", &ip);
        let msgs = names::is_valid_label_value(value);
        if !msgs.is_empty() {
            invalid(errs, &ip.child("value"), value, msgs.join(";"));
        }
        let effect = st0(errs, tv, "effect", &ip);
        if effect.is_empty() {
            required(errs, &ip.child("effect"), "");
        } else {
            pod::taint_effect(errs, effect, &ip.child("effect"));
        }
        if !seen.insert((effect.to_string(), key.to_string())) {
            duplicate_raw(
                errs,
                &ip,
                gorepr::taint(t),
                "taints must be unique by key and effect pair",
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// Endpoints

/// Endpoints create/update.
pub(crate) fn validate_endpoints(errs: &mut Errs, obj: &Value, old: Option<&Value>) {
    meta::meta_update_then_create(errs, obj, old, true, names::name_is_dns_subdomain);
    let sp = Path::new("subsets");
    for (i, ss) in arr(errs, Some(obj), "subsets", &Path::new("")).iter().enumerate() {
        let ip = sp.index(i);
        let ss = Some(ss);
        let addrs = arr(errs, ss, "addresses", &ip);
        let not_ready = arr(errs, ss, "notReadyAddresses", &ip);
        if addrs.is_empty() && not_ready.is_empty() {
            required(errs, &ip, "must specify `addresses` or `notReadyAddresses`");
        }
        for (key, list) in [("addresses", addrs), ("notReadyAddresses", not_ready)] {
            for (j, a) in list.iter().enumerate() {
                let ap = ip.child(key).index(j);
                let a = Some(a);
                let addr = st0(errs, a, "ip", &ap);
                if let Some(m) = names::is_valid_ip(addr) {
                    invalid(errs, &ap.child("ip"), addr, m);
                }
                if let Some(h) = st(errs, a, "hostname", &ap).filter(|h| !h.is_empty()) {
                    dns_label(errs, h, &ap.child("hostname"));
                }
                if let Some(n) = st(errs, a, "nodeName", &ap) {
                    subdomain(errs, n, &ap.child("nodeName"));
                }
                non_special_ip(errs, addr, &ap.child("ip"));
            }
        }
        let ports = arr(errs, ss, "ports", &ip);
        for (j, port) in ports.iter().enumerate() {
            let pp = ip.child("ports").index(j);
            let port = Some(port);
            port_name(errs, port, &pp, ports.len() > 1);
            port_number(errs, port, &pp);
            protocol(errs, port, &pp);
            if let Some(ap) = st(errs, port, "appProtocol", &pp) {
                qualified_name(errs, ap, &pp.child("appProtocol"));
            }
        }
    }
}

/// A Service or Endpoints port's `name`: required when there are several ports, a DNS label
/// when set. Returns the name.
fn port_name<'a>(errs: &mut Errs, port: J<'a>, pp: &Path, several: bool) -> &'a str {
    let name = st0(errs, port, "name", pp);
    if several && name.is_empty() {
        required(errs, &pp.child("name"), "");
    } else if !name.is_empty() {
        dns_label(errs, name, &pp.child("name"));
    }
    name
}

/// A Service or Endpoints port's `port` number.
fn port_number(errs: &mut Errs, port: J<'_>, pp: &Path) {
    let num = int(errs, port, "port", pp).unwrap_or(0);
    for m in is_valid_port_num(num) {
        invalid(errs, &pp.child("port"), num, m);
    }
}

// ---------------------------------------------------------------------------------------
// PersistentVolume and PersistentVolumeClaim

const ACCESS_MODES: &[&str] = &["ReadOnlyMany", "ReadWriteMany", "ReadWriteOnce", "ReadWriteOncePod"];

fn access_modes(errs: &mut Errs, spec: J<'_>, sp: &Path, required_msg: &str) {
    let modes = str_list(errs, spec, "accessModes", sp);
    if modes.is_empty() {
        required(errs, &sp.child("accessModes"), required_msg);
    }
    let (mut rwop, mut other) = (false, false);
    for m in &modes {
        if !ACCESS_MODES.contains(m) {
            not_supported(errs, &sp.child("accessModes"), *m, ACCESS_MODES);
        }
        if *m == "ReadWriteOncePod" {
            rwop = true;
        } else if ACCESS_MODES.contains(m) {
            other = true;
        }
    }
    if rwop && other {
        forbidden(
            errs,
            &sp.child("accessModes"),
            "may not use ReadWriteOncePod with other access modes",
        );
    }
}

const PV_SOURCES: &[&str] = &[
    "hostPath",
    "gcePersistentDisk",
    "awsElasticBlockStore",
    "glusterfs",
    "flocker",
    "nfs",
    "rbd",
    "quobyte",
    "cephfs",
    "iscsi",
    "cinder",
    "fc",
    "flexVolume",
    "azureFile",
    "vsphereVolume",
    "photonPersistentDisk",
    "portworxVolume",
    "azureDisk",
    "scaleIO",
    "local",
    "storageos",
    "csi",
];

/// PersistentVolume create/update.
pub(crate) fn validate_pv(errs: &mut Errs, obj: &Value, old: Option<&Value>) {
    meta::meta_update_then_create(errs, obj, old, false, names::name_is_dns_subdomain);
    let sp = Path::new("spec");
    let spec = super::obj(errs, Some(obj), "spec", &Path::new(""));
    access_modes(errs, spec, &sp, "");
    let cap = super::obj(errs, spec, "capacity", &sp);
    let cap_len = cap.and_then(Value::as_object).map_or(0, |m| m.len());
    if cap_len == 0 {
        required(errs, &sp.child("capacity"), "");
    }
    if get(cap, "storage").is_none() || cap_len > 1 {
        not_supported_raw(errs, &sp.child("capacity"), "core.ResourceList{...}", &["storage"]);
    }
    let cp = sp.child("capacity");
    for (name, q) in quantities(errs, cap, &cp) {
        if q.is_negative() {
            invalid(errs, &cp.key(name), q.canonical(), "must be a valid resource quantity");
        }
        if q <= Quantity::from_int(0) {
            invalid(errs, &cp.key(name), q.canonical(), "must be greater than zero");
        }
    }
    let reclaim = st0(errs, spec, "persistentVolumeReclaimPolicy", &sp);
    if !reclaim.is_empty() && !matches!(reclaim, "Delete" | "Recycle" | "Retain") {
        not_supported(
            errs,
            &sp.child("persistentVolumeReclaimPolicy"),
            reclaim,
            &["Delete", "Recycle", "Retain"],
        );
    }
    let mut affinity_set = false;
    if let Some(na) = super::obj(errs, spec, "nodeAffinity", &sp) {
        affinity_set = true;
        let np = sp.child("nodeAffinity");
        match super::obj(errs, Some(na), "required", &np) {
            Some(r) => node_selector(errs, Some(r), &np.child("required")),
            None => required(errs, &np.child("required"), "must specify required node constraints"),
        }
    }
    let mut count = 0;
    for key in PV_SOURCES {
        let Some(src) = get(spec, key) else { continue };
        if count > 0 && *key != "flexVolume" {
            let shown = if *key == "cephfs" { "cephFS" } else { key };
            forbidden(errs, &sp.child(shown), "may not specify more than 1 volume type");
            continue;
        }
        count += 1;
        let kp = sp.child(key);
        match *key {
            "hostPath" => {
                let path = st0(errs, Some(src), "path", &kp);
                if path.is_empty() {
                    required(errs, &kp.child("path"), "");
                } else {
                    pod::no_backsteps(errs, path, &kp.child("path"));
                }
            }
            "nfs" => {
                if st0(errs, Some(src), "server", &kp).is_empty() {
                    required(errs, &kp.child("server"), "");
                }
                let path = st0(errs, Some(src), "path", &kp);
                if path.is_empty() {
                    required(errs, &kp.child("path"), "");
                }
                if !path.starts_with('/') {
                    invalid(errs, &kp.child("path"), path, "must be an absolute path");
                }
            }
            "local" => {
                let path = st0(errs, Some(src), "path", &kp);
                if path.is_empty() {
                    required(errs, &kp.child("path"), "");
                } else {
                    pod::no_backsteps(errs, path, &kp.child("path"));
                }
                if !affinity_set {
                    required(errs, &sp.child("nodeAffinity"), "Local volume requires node affinity");
                }
            }
            "csi" => {
                let driver = st0(errs, Some(src), "driver", &kp);
                if driver.is_empty() {
                    required(errs, &kp.child("driver"), "");
                }
                if st0(errs, Some(src), "volumeHandle", &kp).is_empty() {
                    required(errs, &kp.child("volumeHandle"), "");
                }
            }
            _ => {}
        }
    }
    if count == 0 {
        required(errs, &sp, "must specify a volume type");
    }
    let host_root = get(get(spec, "hostPath"), "path")
        .and_then(Value::as_str)
        .is_some_and(|p| p.trim_end_matches('/').is_empty());
    if host_root && reclaim == "Recycle" {
        forbidden(
            errs,
            &sp.child("persistentVolumeReclaimPolicy"),
            "may not be 'recycle' for a hostPath mount of '/'",
        );
    }
    if let Some(class) = st(errs, spec, "storageClassName", &sp).filter(|s| !s.is_empty()) {
        subdomain(errs, class, &sp.child("storageClassName"));
    }
    volume_mode(errs, spec, &sp);
    if let Some(old) = old {
        let old_spec = get(Some(old), "spec");
        let source_changed = PV_SOURCES.iter().any(|k| !semantic_eq(get(spec, k), get(old_spec, k)));
        if source_changed {
            forbidden(
                errs,
                &Path::new("spec").child("persistentvolumesource"),
                "spec.persistentvolumesource is immutable after creation",
            );
        }
        volume_mode_immutable(errs, spec, old_spec);
        if get(old_spec, "nodeAffinity").is_some()
            && !semantic_eq(get(spec, "nodeAffinity"), get(old_spec, "nodeAffinity"))
        {
            invalid_raw(
                errs,
                &Path::new("nodeAffinity"),
                "&core.VolumeNodeAffinity{...}",
                IMMUTABLE,
            );
        }
    }
}

fn volume_mode(errs: &mut Errs, spec: J<'_>, sp: &Path) {
    if let Some(mode) = st(errs, spec, "volumeMode", sp)
        && mode != "Block"
        && mode != "Filesystem"
    {
        not_supported(errs, &sp.child("volumeMode"), mode, &["Block", "Filesystem"]);
    }
}

/// `volumeMode` may not change on update (PersistentVolume and PersistentVolumeClaim alike).
fn volume_mode_immutable(errs: &mut Errs, spec: J<'_>, old_spec: J<'_>) {
    if get(spec, "volumeMode") != get(old_spec, "volumeMode") {
        invalid(
            errs,
            &Path::new("volumeMode"),
            get(spec, "volumeMode").cloned().unwrap_or(Value::Null),
            IMMUTABLE,
        );
    }
}

/// PersistentVolumeClaim create/update.
pub(crate) fn validate_pvc(errs: &mut Errs, obj: &Value, old: Option<&Value>) {
    meta::meta_update_then_create(errs, obj, old, true, names::name_is_dns_subdomain);
    let sp = Path::new("spec");
    let spec = super::obj(errs, Some(obj), "spec", &Path::new(""));
    pvc_spec(errs, spec, &sp);
    let Some(old) = old else { return };
    let old_spec = get(Some(old), "spec");
    let mut new_clone = spec.cloned().unwrap_or(Value::Null);
    let mut old_clone = old_spec.cloned().unwrap_or(Value::Null);
    if get(old_spec, "volumeName")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
        && let Some(o) = old_clone.as_object_mut()
    {
        match get(spec, "volumeName") {
            Some(v) => o.insert("volumeName".into(), v.clone()),
            None => o.remove("volumeName"),
        };
    }
    let bound = get(get(Some(obj), "status"), "phase").and_then(Value::as_str) == Some("Bound");
    let old_storage = get(get(get(old_spec, "resources"), "requests"), "storage").cloned();
    if bound
        && let Some(req) = new_clone
            .get_mut("resources")
            .and_then(|r| r.get_mut("requests"))
            .and_then(Value::as_object_mut)
    {
        match &old_storage {
            Some(s) => req.insert("storage".into(), s.clone()),
            None => req.remove("storage"),
        };
    }
    for c in [&mut new_clone, &mut old_clone] {
        if let Some(o) = c.as_object_mut() {
            o.remove("volumeAttributesClassName");
        }
    }
    if !semantic_eq(Some(&new_clone), Some(&old_clone)) {
        forbidden(
            errs,
            &sp,
            "spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims",
        );
    }
    let q = |v: J<'_>| {
        v.and_then(|v| Quantity::from_json(v).ok())
            .unwrap_or_else(|| Quantity::from_int(0))
    };
    let new_size = q(get(get(get(spec, "resources"), "requests"), "storage"));
    let old_size = q(old_storage.as_ref());
    let status_size = q(get(get(get(Some(old), "status"), "capacity"), "storage"));
    if new_size < old_size && new_size <= status_size {
        forbidden(
            errs,
            &Path::new("spec").child("resources").child("requests").child("storage"),
            "field can not be less than status.capacity",
        );
    }
    volume_mode_immutable(errs, spec, old_spec);
}

/// `ValidatePersistentVolumeClaimSpec`.
pub(crate) fn pvc_spec(errs: &mut Errs, spec: J<'_>, sp: &Path) {
    let modes_empty = arr(&mut Errs::new(), spec, "accessModes", sp).is_empty();
    if modes_empty {
        required(errs, &sp.child("accessModes"), "at least 1 access mode is required");
    }
    if let Some(sel) = super::obj(errs, spec, "selector", sp) {
        meta::validate_label_selector(errs, Some(sel), &sp.child("selector"));
    }
    if !modes_empty {
        let mut scratch = Errs::new();
        access_modes(&mut scratch, spec, sp, "");
        errs.extend(scratch);
    }
    let rp = sp.child("resources").key("storage");
    let storage = get(get(get(spec, "resources"), "requests"), "storage");
    match storage.map(Quantity::from_json) {
        None => required(errs, &rp, ""),
        Some(Err(e)) => invalid(errs, &rp, storage.cloned().unwrap_or(Value::Null), e),
        Some(Ok(q)) => {
            if q <= Quantity::from_int(0) {
                invalid(errs, &rp, q.canonical(), "must be greater than zero");
            } else {
                quantity_value(errs, "storage", &q, &rp);
            }
        }
    }
    if let Some(class) = st(errs, spec, "storageClassName", sp).filter(|s| !s.is_empty()) {
        subdomain(errs, class, &sp.child("storageClassName"));
    }
    volume_mode(errs, spec, sp);
    for key in ["dataSource", "dataSourceRef"] {
        let Some(ds) = super::obj(errs, spec, key, sp) else {
            continue;
        };
        let dp = sp.child(key);
        let ds = Some(ds);
        if st0(errs, ds, "name", &dp).is_empty() {
            required(errs, &dp.child("name"), "");
        }
        let kind = st0(errs, ds, "kind", &dp);
        if kind.is_empty() {
            required(errs, &dp.child("kind"), "");
        }
        let group = st0(errs, ds, "apiGroup", &dp);
        if group.is_empty() && kind != "PersistentVolumeClaim" {
            invalid(
                errs,
                &dp,
                kind,
                "must be 'PersistentVolumeClaim' when referencing the default apiGroup",
            );
        }
        if !group.is_empty() {
            subdomain(errs, group, &dp.child("apiGroup"));
        }
    }
}

// ---------------------------------------------------------------------------------------
// ReplicationController

/// ReplicationController create/update.
pub(crate) fn validate_rc(errs: &mut Errs, obj: &Value, old: Option<&Value>) {
    meta::object_meta(errs, obj, old, true, names::name_is_dns_subdomain);
    let sp = Path::new("spec");
    let spec = super::obj(errs, Some(obj), "spec", &Path::new(""));
    nonneg_field(errs, spec, "minReadySeconds", &sp);
    let selector = str_map(errs, spec, "selector", &sp).unwrap_or_default();
    if selector.is_empty() {
        required(errs, &sp.child("selector"), "");
    }
    nonneg_field(errs, spec, "replicas", &sp);
    let tp = sp.child("template");
    let Some(tmpl) = super::obj(errs, spec, "template", &sp) else {
        required(errs, &tp, "");
        return;
    };
    let labels = get(get(Some(tmpl), "metadata"), "labels");
    if !selector.is_empty() {
        let matches = selector
            .iter()
            .all(|(k, v)| get(labels, k).and_then(Value::as_str) == Some(*v));
        if !matches {
            invalid_raw(
                errs,
                &tp.child("metadata").child("labels"),
                gorepr::string_map(labels),
                "`selector` does not match template `labels`",
            );
        }
    }
    pod_template_spec(errs, Some(tmpl), &tp);
    super::apps::restart_always_and_no_deadline(errs, Some(tmpl), &tp, "ReplicationController");
}
