//! Pods, pod templates and pod specs: containers, volumes, ports, environment, resources,
//! probes, security contexts, scheduling constraints; pod update rules; QoS class.
//!
//! This file holds the entry points (pod, template, spec) and the QoS class; the parts of a
//! spec live in the submodules, which share this module's imports through `use super::*`.

use super::meta::{self, dns_label, label_name, qualified_name, subdomain, validate_annotations, validate_labels};
use super::names::{self, inclusive_range_error, is_valid_port_name, is_valid_port_num};
use super::quantity::Quantity;
use super::{
    Errs, J, Path, arr, boolean, duplicate, each_invalid, forbidden, get, gorepr, int, invalid, invalid_raw,
    nonneg_field, not_found, not_supported, obj, required, required_one_of, semantic_eq, st, st0, str_list, str_map,
};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashSet};

mod containers;
mod resources;
mod scheduling;
mod security;
mod update;
mod volumes;

use containers::*;
use resources::*;
use scheduling::*;
use security::*;
use update::*;
use volumes::*;

pub(crate) use containers::{port_num_or_name, protocol};
pub(crate) use resources::{quantities, quantity_value};
pub(crate) use scheduling::{node_selector, taint_effect, tolerations};
pub(crate) use volumes::no_backsteps;

const MAX_INT32: i64 = i32::MAX as i64;
const FILE_MODE_ERR: &str = "must be a number between 0 and 0777 (octal), both inclusive";
const NOT_POSITIVE: &str = "must be greater than zero";

/// Switches for checks that differ between a Pod and a pod template.
#[derive(Clone, Copy, Default)]
pub(crate) struct Opts {
    /// The spec belongs to a Pod object (not a template).
    pub(crate) is_pod: bool,
}

/// Pod create/update.
pub(crate) fn validate_pod(errs: &mut Errs, obj: &Value, old: Option<&Value>) {
    if let Some(old) = old {
        meta::meta_update(errs, obj, old);
    }
    metadata_and_spec(errs, obj);
    let spec = get(Some(obj), "spec");
    let sp = Path::new("spec");
    match old {
        None => {
            if !arr(&mut Errs::new(), spec, "ephemeralContainers", &sp).is_empty() {
                forbidden(errs, &sp.child("ephemeralContainers"), "cannot be set on create");
            }
            let node = st0(&mut Errs::new(), spec, "nodeName", &sp);
            if !node.is_empty() && !arr(&mut Errs::new(), spec, "schedulingGates", &sp).is_empty() {
                forbidden(
                    errs,
                    &sp.child("nodeName"),
                    "cannot be set until all schedulingGates have been cleared",
                );
            }
        }
        Some(old) => pod_update(errs, obj, old),
    }
}

/// `validatePodMetadataAndSpec`.
fn metadata_and_spec(errs: &mut Errs, obj: &Value) {
    meta::meta_create(errs, obj, true, names::name_is_dns_subdomain);
    let m = get(Some(obj), "metadata");
    let mp = Path::new("metadata");
    let spec = get(Some(obj), "spec");
    let sp = Path::new("spec");
    let anns = str_map(&mut Errs::new(), m, "annotations", &mp);
    pod_specific_annotations(errs, anns.as_deref(), spec, &mp.child("annotations"));
    let name = get(m, "name").and_then(Value::as_str);
    let spec_obj = super::obj(errs, Some(obj), "spec", &Path::new(""));
    pod_spec(errs, spec_obj, name, &sp, Opts { is_pod: true });

    let mut scratch = Errs::new();
    if st0(&mut scratch, spec, "serviceAccountName", &sp).is_empty() {
        for (vi, vol) in arr(&mut scratch, spec, "volumes", &sp).iter().enumerate() {
            let pp = sp.child("volumes").index(vi).child("projected");
            for (si, src) in arr(&mut scratch, get(Some(vol), "projected"), "sources", &pp)
                .iter()
                .enumerate()
            {
                if get(Some(src), "serviceAccountToken").is_some() {
                    forbidden(
                        errs,
                        &pp.child("sources").index(si).child("serviceAccountToken"),
                        "must not be specified when serviceAccountName is not set",
                    );
                }
            }
        }
    }
    for list in ["containers", "initContainers"] {
        for (i, c) in arr(&mut scratch, spec, list, &sp).iter().enumerate() {
            if let Some(image) = get(Some(c), "image").and_then(Value::as_str)
                && image.trim() != image
            {
                invalid(
                    errs,
                    &sp.child(list).index(i).child("image"),
                    image,
                    "must not have leading or trailing whitespace",
                );
            }
        }
    }
}

/// `ValidatePodSpecificAnnotations`.
pub(crate) fn pod_specific_annotations(errs: &mut Errs, anns: Option<&[(&str, &str)]>, spec: J<'_>, p: &Path) {
    let anns = anns.unwrap_or_default();
    let find = |k: &str| anns.iter().find(|(key, _)| *key == k).map(|(_, v)| *v);
    if let Some(v) = find("kubernetes.io/config.mirror")
        && get(spec, "nodeName").and_then(Value::as_str).is_none_or(str::is_empty)
    {
        invalid(
            errs,
            &p.key("kubernetes.io/config.mirror"),
            v,
            "must set spec.nodeName if mirror pod annotation is set",
        );
    }
    if let Some(v) = find("controller.kubernetes.io/pod-deletion-cost")
        && v.parse::<i32>().is_err()
    {
        invalid(
            errs,
            &p.key("controller.kubernetes.io/pod-deletion-cost"),
            v,
            "must be a 32bit integer",
        );
    }
    for (k, v) in anns {
        if *k == "seccomp.security.alpha.kubernetes.io/pod"
            || k.starts_with("container.seccomp.security.alpha.kubernetes.io/")
        {
            let ok = matches!(*v, "runtime/default" | "docker/default" | "unconfined");
            if let Some(local) = v.strip_prefix("localhost/") {
                local_descending_path(errs, local, &p.child(k));
            } else if !ok {
                invalid(errs, &p.child(k), *v, "must be a valid seccomp profile");
            }
        }
        if let Some(container) = k.strip_prefix("container.apparmor.security.beta.kubernetes.io/") {
            let has = ["containers", "initContainers", "ephemeralContainers"].iter().any(|l| {
                get(spec, l).and_then(Value::as_array).is_some_and(|cs| {
                    cs.iter()
                        .any(|c| c.get("name").and_then(Value::as_str) == Some(container))
                })
            });
            if !has {
                invalid(errs, &p.key(k), container, "container not found");
            }
            if !(v.is_empty() || *v == "runtime/default" || *v == "unconfined" || v.starts_with("localhost/")) {
                invalid(
                    errs,
                    &p.key(k),
                    *v,
                    format!("invalid AppArmor profile name: {}", gorepr::quote(v)),
                );
            }
        }
    }
}

/// `ValidatePodTemplateSpec`: template labels, annotations and spec (errors under `p`).
pub(crate) fn pod_template_spec(errs: &mut Errs, tmpl: J<'_>, p: &Path) {
    let m = obj(errs, tmpl, "metadata", p);
    let mp = p.child("metadata");
    let labels = str_map(errs, m, "labels", &mp);
    validate_labels(errs, labels.as_deref(), &p.child("labels"));
    let anns = str_map(errs, m, "annotations", &mp);
    validate_annotations(errs, anns.as_deref(), &p.child("annotations"));
    let spec = obj(errs, tmpl, "spec", p);
    pod_specific_annotations(errs, anns.as_deref(), spec, &p.child("annotations"));
    pod_spec(errs, spec, None, &p.child("spec"), Opts::default());
    if !arr(&mut Errs::new(), spec, "ephemeralContainers", p).is_empty() {
        forbidden(
            errs,
            &p.child("spec").child("ephemeralContainers"),
            "ephemeral containers not allowed in pod template",
        );
    }
}

/// Names of volumes that validated cleanly, with whether each is claim-backed.
type Volumes = BTreeMap<String, bool>;

/// `ValidatePodSpec`.
pub(crate) fn pod_spec(errs: &mut Errs, spec: J<'_>, pod_name: Option<&str>, p: &Path, opts: Opts) {
    let grace = int(errs, spec, "terminationGracePeriodSeconds", p);
    if grace.is_none() {
        required(errs, &p.child("terminationGracePeriodSeconds"), "");
    }
    let host_users = boolean(&mut Errs::new(), get(spec, "securityContext"), "hostUsers", p).unwrap_or(true);
    let vols = volumes(errs, spec, pod_name, p);
    let claim_names = resource_claims(errs, spec, p);
    let restart_policy = st0(errs, spec, "restartPolicy", p);
    let ctx = Ctx {
        vols: &vols,
        claims: &claim_names,
        grace,
        restart_policy,
        host_users,
    };
    containers(errs, spec, &ctx, &p.child("containers"), p);
    init_containers(errs, spec, &ctx, &p.child("initContainers"), p);
    ephemeral_containers(errs, spec, &ctx, &p.child("ephemeralContainers"), p);
    host_network_deps(errs, spec, p, opts);
    required_one_of(
        errs,
        restart_policy,
        &p.child("restartPolicy"),
        &["Always", "OnFailure", "Never"],
    );
    let dns_policy = st0(errs, spec, "dnsPolicy", p);
    required_one_of(
        errs,
        dns_policy,
        &p.child("dnsPolicy"),
        &["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"],
    );
    let node_selector = str_map(errs, spec, "nodeSelector", p);
    validate_labels(errs, node_selector.as_deref(), &p.child("nodeSelector"));
    pod_security_context(errs, spec, p);
    let aff = obj(errs, spec, "affinity", p);
    affinity(errs, aff, &p.child("affinity"));
    let dc = obj(errs, spec, "dnsConfig", p);
    dns_config(errs, dc, dns_policy, &p.child("dnsConfig"));
    for (i, g) in arr(errs, spec, "readinessGates", p).iter().enumerate() {
        let gp = p.child("readinessGates").index(i);
        let ct = st0(errs, Some(g), "conditionType", &gp);
        qualified_name(errs, ct, &gp.child("conditionType"));
    }
    let mut seen = HashSet::new();
    for (i, g) in arr(errs, spec, "schedulingGates", p).iter().enumerate() {
        let gp = p.child("schedulingGates").index(i);
        let name = st0(errs, Some(g), "name", &gp);
        qualified_name(errs, name, &gp);
        if !seen.insert(name) {
            duplicate(errs, &gp, name);
        }
    }
    topology_spread(errs, spec, &p.child("topologySpreadConstraints"), p);
    if let Some(sa) = st(errs, spec, "serviceAccountName", p).filter(|s| !s.is_empty()) {
        subdomain(errs, sa, &p.child("serviceAccountName"));
    }
    if let Some(node) = st(errs, spec, "nodeName", p).filter(|s| !s.is_empty()) {
        subdomain(errs, node, &p.child("nodeName"));
    }
    if let Some(ads) = int(errs, spec, "activeDeadlineSeconds", p)
        && !(1..=MAX_INT32).contains(&ads)
    {
        invalid(
            errs,
            &p.child("activeDeadlineSeconds"),
            ads,
            inclusive_range_error(1, MAX_INT32),
        );
    }
    for key in ["hostname", "subdomain"] {
        if let Some(v) = st(errs, spec, key, p).filter(|s| !s.is_empty()) {
            dns_label(errs, v, &p.child(key));
        }
    }
    let tols = arr(errs, spec, "tolerations", p);
    if !tols.is_empty() {
        tolerations(errs, tols, &p.child("tolerations"));
    }
    for (i, ha) in arr(errs, spec, "hostAliases", p).iter().enumerate() {
        let hp = p.child("hostAliases").index(i);
        let ip = st0(errs, Some(ha), "ip", &hp);
        if let Some(m) = names::is_valid_ip(ip) {
            invalid(errs, &hp.child("ip"), ip, m);
        }
        for (j, h) in str_list(errs, Some(ha), "hostnames", &hp).iter().enumerate() {
            subdomain(errs, h, &hp.child("hostnames").index(j));
        }
    }
    if let Some(pc) = st(errs, spec, "priorityClassName", p).filter(|s| !s.is_empty()) {
        subdomain(errs, pc, &p.child("priorityClassName"));
    }
    if let Some(rc) = st(errs, spec, "runtimeClassName", p) {
        subdomain(errs, rc, &p.child("runtimeClassName"));
    }
    if let Some(pp) = st(errs, spec, "preemptionPolicy", p) {
        required_one_of(
            errs,
            pp,
            &p.child("preemptionPolicy"),
            &["PreemptLowerPriority", "Never"],
        );
    }
    if let Some(overhead) = obj(errs, spec, "overhead", p) {
        resource_list(errs, Some(overhead), &p.child("overhead").child("limits"), true);
    }
    if let Some(os) = obj(errs, spec, "os", p) {
        let op = p.child("os");
        let os_name = st0(errs, Some(os), "name", &op);
        required_one_of(errs, os_name, &op.child("name"), &["linux", "windows"]);
    }
}

struct Ctx<'a> {
    vols: &'a Volumes,
    claims: &'a BTreeSet<String>,
    grace: Option<i64>,
    restart_policy: &'a str,
    host_users: bool,
}

/// The QoS class of a pod (`Guaranteed`, `Burstable` or `BestEffort`) computed from its
/// containers' cpu/memory requests and limits, as upstream's `ComputePodQOS`.
pub fn pod_qos_class(pod: &Value) -> &'static str {
    let spec = get(Some(pod), "spec");
    let mut requests: BTreeMap<String, Quantity> = BTreeMap::new();
    let mut limits: BTreeMap<String, Quantity> = BTreeMap::new();
    let mut guaranteed = true;
    let zero = Quantity::from_int(0);
    for list in ["containers", "initContainers"] {
        for c in get(spec, list)
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            let res = c.get("resources");
            for (kind, acc) in [("requests", &mut requests), ("limits", &mut limits)] {
                let mut found = BTreeSet::new();
                if let Some(m) = get(res, kind).and_then(Value::as_object) {
                    for (name, v) in m {
                        if name != "cpu" && name != "memory" {
                            continue;
                        }
                        let Ok(q) = Quantity::from_json(v) else {
                            continue;
                        };
                        if q > zero {
                            found.insert(name.clone());
                            let sum = match acc.get(name) {
                                Some(prev) => prev.add(&q),
                                None => q,
                            };
                            acc.insert(name.clone(), sum);
                        }
                    }
                }
                if kind == "limits" && !(found.contains("cpu") && found.contains("memory")) {
                    guaranteed = false;
                }
            }
        }
    }
    if requests.is_empty() && limits.is_empty() {
        return "BestEffort";
    }
    if guaranteed {
        for (name, req) in &requests {
            if limits.get(name) != Some(req) {
                guaranteed = false;
                break;
            }
        }
    }
    if guaranteed && requests.len() == limits.len() {
        "Guaranteed"
    } else {
        "Burstable"
    }
}
