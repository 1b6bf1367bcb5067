//! Pods, pod templates and pod specs: containers, volumes, ports, environment, resources,
//! probes, security contexts, scheduling constraints; pod update rules; QoS class.

use super::meta::{
    self, dns_label, label_name, qualified_name, subdomain, validate_annotations, validate_labels,
};
use super::names::{self, inclusive_range_error, is_valid_port_name, is_valid_port_num};
use super::quantity::Quantity;
use super::{
    Errs, J, Path, arr, boolean, duplicate, each_invalid, forbidden, get, gorepr, int, invalid,
    invalid_raw, nonneg, not_found, not_supported, obj, required, semantic_eq, st, st0, str_list,
    str_map,
};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashSet};

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
                forbidden(
                    errs,
                    &sp.child("ephemeralContainers"),
                    "cannot be set on create",
                );
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
pub(crate) fn pod_specific_annotations(
    errs: &mut Errs,
    anns: Option<&[(&str, &str)]>,
    spec: J<'_>,
    p: &Path,
) {
    let anns = anns.unwrap_or_default();
    let find = |k: &str| anns.iter().find(|(key, _)| *key == k).map(|(_, v)| *v);
    if let Some(v) = find("kubernetes.io/config.mirror")
        && get(spec, "nodeName")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
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
            let has = ["containers", "initContainers", "ephemeralContainers"]
                .iter()
                .any(|l| {
                    get(spec, l).and_then(Value::as_array).is_some_and(|cs| {
                        cs.iter()
                            .any(|c| c.get("name").and_then(Value::as_str) == Some(container))
                    })
                });
            if !has {
                invalid(errs, &p.key(k), container, "container not found");
            }
            if !(v.is_empty()
                || *v == "runtime/default"
                || *v == "unconfined"
                || v.starts_with("localhost/"))
            {
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
    let host_users = boolean(
        &mut Errs::new(),
        get(spec, "securityContext"),
        "hostUsers",
        p,
    )
    .unwrap_or(true);
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
    match restart_policy {
        "Always" | "OnFailure" | "Never" => {}
        "" => required(errs, &p.child("restartPolicy"), ""),
        other => not_supported(
            errs,
            &p.child("restartPolicy"),
            other,
            &["Always", "OnFailure", "Never"],
        ),
    }
    let dns_policy = st0(errs, spec, "dnsPolicy", p);
    match dns_policy {
        "ClusterFirstWithHostNet" | "ClusterFirst" | "Default" | "None" => {}
        "" => required(errs, &p.child("dnsPolicy"), ""),
        other => not_supported(
            errs,
            &p.child("dnsPolicy"),
            other,
            &["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"],
        ),
    }
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
        for (j, h) in str_list(errs, Some(ha), "hostnames", &hp)
            .iter()
            .enumerate()
        {
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
        match pp {
            "PreemptLowerPriority" | "Never" => {}
            "" => required(errs, &p.child("preemptionPolicy"), ""),
            other => not_supported(
                errs,
                &p.child("preemptionPolicy"),
                other,
                &["PreemptLowerPriority", "Never"],
            ),
        }
    }
    if let Some(overhead) = obj(errs, spec, "overhead", p) {
        resource_list(
            errs,
            Some(overhead),
            &p.child("overhead").child("limits"),
            true,
        );
    }
    if let Some(os) = obj(errs, spec, "os", p) {
        let op = p.child("os");
        match st0(errs, Some(os), "name", &op) {
            "linux" | "windows" => {}
            "" => required(errs, &op.child("name"), ""),
            other => not_supported(errs, &op.child("name"), other, &["linux", "windows"]),
        }
    }
}

struct Ctx<'a> {
    vols: &'a Volumes,
    claims: &'a BTreeSet<String>,
    grace: Option<i64>,
    restart_policy: &'a str,
    host_users: bool,
}

// ---------------------------------------------------------------------------------------
// Volumes

/// Volume sources in upstream's checking order: (JSON member, path used in the "more than
/// one type" error).
const VOLUME_SOURCES: &[(&str, &str)] = &[
    ("emptyDir", "emptyDir"),
    ("hostPath", "hostPath"),
    ("gitRepo", "gitRepo"),
    ("gcePersistentDisk", "gcePersistentDisk"),
    ("awsElasticBlockStore", "awsElasticBlockStore"),
    ("secret", "secret"),
    ("nfs", "nfs"),
    ("iscsi", "iscsi"),
    ("glusterfs", "glusterfs"),
    ("flocker", "flocker"),
    ("persistentVolumeClaim", "persistentVolumeClaim"),
    ("rbd", "rbd"),
    ("cinder", "cinder"),
    ("cephfs", "cephFS"),
    ("quobyte", "quobyte"),
    ("downwardAPI", "downwarAPI"),
    ("fc", "fc"),
    ("flexVolume", "flexVolume"),
    ("configMap", "configMap"),
    ("azureFile", "azureFile"),
    ("vsphereVolume", "vsphereVolume"),
    ("photonPersistentDisk", "photonPersistentDisk"),
    ("portworxVolume", "portworxVolume"),
    ("azureDisk", "azureDisk"),
    ("storageos", "storageos"),
    ("projected", "projected"),
    ("scaleIO", "scaleIO"),
    ("csi", "csi"),
    ("ephemeral", "ephemeral"),
];

fn volumes(errs: &mut Errs, spec: J<'_>, pod_name: Option<&str>, p: &Path) -> Volumes {
    let vp = p.child("volumes");
    let list = arr(errs, spec, "volumes", p);
    let created_pvcs: HashSet<String> = match pod_name.filter(|n| !n.is_empty()) {
        Some(pod) => list
            .iter()
            .filter(|v| get(Some(v), "ephemeral").is_some())
            .filter_map(|v| v.get("name").and_then(Value::as_str))
            .map(|n| format!("{pod}-{n}"))
            .collect(),
        None => HashSet::new(),
    };
    let mut out = Volumes::new();
    for (i, vol) in list.iter().enumerate() {
        let ip = vp.index(i);
        let vol = Some(vol);
        let mut el = Errs::new();
        let name = st0(&mut el, vol, "name", &ip);
        volume_source(&mut el, vol, name, pod_name, &ip);
        if name.is_empty() {
            required(&mut el, &ip.child("name"), "");
        } else {
            dns_label(&mut el, name, &ip.child("name"));
        }
        if out.contains_key(name) {
            duplicate(&mut el, &ip.child("name"), name);
        }
        if el.is_empty() {
            let claimish =
                get(vol, "persistentVolumeClaim").is_some() || get(vol, "ephemeral").is_some();
            out.insert(name.to_string(), claimish);
        } else {
            errs.extend(el);
        }
        if let Some(claim) =
            get(get(vol, "persistentVolumeClaim"), "claimName").and_then(Value::as_str)
            && created_pvcs.contains(claim)
        {
            invalid(
                errs,
                &ip.child("persistentVolumeClaim").child("claimName"),
                claim,
                "must not reference a PVC that gets created for an ephemeral volume",
            );
        }
    }
    out
}

fn volume_source(errs: &mut Errs, vol: J<'_>, vol_name: &str, pod_name: Option<&str>, p: &Path) {
    let mut count = 0;
    for (key, dup_path) in VOLUME_SOURCES {
        let Some(src) = get(vol, key) else { continue };
        if count > 0 {
            forbidden(
                errs,
                &p.child(dup_path),
                "may not specify more than 1 volume type",
            );
            continue;
        }
        count += 1;
        let src = Some(src);
        let sp = p.child(key);
        match *key {
            "emptyDir" => {
                if let Some(limit) = get(src, "sizeLimit")
                    && Quantity::from_json(limit).is_ok_and(|q| q.is_negative())
                {
                    forbidden(
                        errs,
                        &sp.child("sizeLimit"),
                        "SizeLimit field must be a valid resource quantity",
                    );
                }
            }
            "hostPath" => host_path(errs, src, &sp),
            "gitRepo" => {
                if st0(errs, src, "repository", &sp).is_empty() {
                    required(errs, &sp.child("repository"), "");
                }
                let dir = st0(errs, src, "directory", &sp);
                local_descending_path(errs, dir, &sp.child("directory"));
            }
            "secret" => {
                if st0(errs, src, "secretName", &sp).is_empty() {
                    required(errs, &sp.child("secretName"), "");
                }
                file_mode(errs, src, "defaultMode", &sp);
                key_to_paths(errs, src, &sp, None);
            }
            "configMap" => {
                if st0(errs, src, "name", &sp).is_empty() {
                    required(errs, &sp.child("name"), "");
                }
                file_mode(errs, src, "defaultMode", &sp);
                key_to_paths(errs, src, &sp, None);
            }
            "persistentVolumeClaim" if st0(errs, src, "claimName", &sp).is_empty() => {
                required(errs, &sp.child("claimName"), "");
            }
            "nfs" => {
                if st0(errs, src, "server", &sp).is_empty() {
                    required(errs, &sp.child("server"), "");
                }
                let path = st0(errs, src, "path", &sp);
                if path.is_empty() {
                    required(errs, &sp.child("path"), "");
                }
                if !path.starts_with('/') {
                    invalid(errs, &sp.child("path"), path, "must be an absolute path");
                }
            }
            "downwardAPI" => {
                file_mode(errs, src, "defaultMode", &sp);
                for (j, f) in arr(errs, src, "items", &sp).iter().enumerate() {
                    downward_api_file(errs, Some(f), &sp, &sp.child("items").index(j));
                }
            }
            "projected" => projected(errs, src, &sp),
            "csi" => {
                let driver = st0(errs, src, "driver", &sp);
                if driver.is_empty() {
                    required(errs, &sp.child("driver"), "");
                } else {
                    qualified_name(errs, &driver.to_lowercase(), &sp.child("driver"));
                }
            }
            "ephemeral" => {
                if get(src, "volumeClaimTemplate").is_none() {
                    required(errs, &sp.child("volumeClaimTemplate"), "");
                }
                if let Some(pod) = pod_name.filter(|n| !n.is_empty())
                    && !vol_name.is_empty()
                {
                    let pvc = format!("{pod}-{vol_name}");
                    for m in names::is_dns1123_subdomain(&pvc) {
                        invalid(
                            errs,
                            &p.child("name"),
                            vol_name,
                            format!("PVC name {}: {m}", gorepr::quote(&pvc)),
                        );
                    }
                }
            }
            _ => {}
        }
    }
    if count == 0 {
        required(errs, p, "must specify a volume type");
    }
}

fn host_path(errs: &mut Errs, src: J<'_>, p: &Path) {
    let path = st0(errs, src, "path", p);
    if path.is_empty() {
        required(errs, &p.child("path"), "");
        return;
    }
    no_backsteps(errs, path, &p.child("path"));
    if let Some(t) = st(errs, src, "type", p) {
        const TYPES: &[&str] = &[
            "",
            "BlockDevice",
            "CharDevice",
            "Directory",
            "DirectoryOrCreate",
            "File",
            "FileOrCreate",
            "Socket",
        ];
        if !TYPES.contains(&t) {
            not_supported(errs, &p.child("type"), t, TYPES);
        }
    }
}

/// `validatePathNoBacksteps`.
pub(crate) fn no_backsteps(errs: &mut Errs, path: &str, p: &Path) {
    if path.replace('\\', "/").split('/').any(|s| s == "..") {
        invalid(errs, p, path, "must not contain '..'");
    }
}

/// `validateLocalDescendingPath`: relative, without `..` elements.
fn local_descending_path(errs: &mut Errs, path: &str, p: &Path) {
    if path.starts_with('/') {
        invalid(errs, p, path, "must be a relative path");
    }
    no_backsteps(errs, path, p);
}

/// `ValidateLocalNonReservedPath`.
fn local_non_reserved_path(errs: &mut Errs, path: &str, p: &Path) {
    local_descending_path(errs, path, p);
    if path.starts_with("..") && !path.starts_with("../") {
        invalid(errs, p, path, "must not start with '..'");
    }
}

fn file_mode(errs: &mut Errs, v: J<'_>, key: &str, p: &Path) {
    if let Some(mode) = int(errs, v, key, p)
        && !(0..=0o777).contains(&mode)
    {
        invalid(errs, &p.child(key), mode, FILE_MODE_ERR);
    }
}

/// Items of a secret/configMap source; `paths` collects projected paths for duplicates.
fn key_to_paths(
    errs: &mut Errs,
    src: J<'_>,
    p: &Path,
    mut paths: Option<(&mut HashSet<String>, &Path, &str)>,
) {
    for (i, kp) in arr(errs, src, "items", p).iter().enumerate() {
        let ip = p.child("items").index(i);
        let kp = Some(kp);
        if st0(errs, kp, "key", &ip).is_empty() {
            required(errs, &ip.child("key"), "");
        }
        let path = st0(errs, kp, "path", &ip);
        if path.is_empty() {
            required(errs, &ip.child("path"), "");
        }
        local_non_reserved_path(errs, path, &ip.child("path"));
        file_mode(errs, kp, "mode", &ip);
        if let Some((seen, whole, source_name)) = paths.as_mut()
            && !path.is_empty()
            && !seen.insert(path.to_string())
        {
            invalid(errs, whole, *source_name, "conflicting duplicate paths");
        }
    }
}

const VOLUME_FIELD_PATHS: &[&str] = &[
    "metadata.annotations",
    "metadata.labels",
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
];
const ENV_FIELD_PATHS: &[&str] = &[
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "spec.nodeName",
    "spec.serviceAccountName",
    "status.hostIP",
    "status.hostIPs",
    "status.podIP",
    "status.podIPs",
];
const RESOURCE_FIELD_PATHS: &[&str] = &[
    "limits.cpu",
    "limits.ephemeral-storage",
    "limits.memory",
    "requests.cpu",
    "requests.ephemeral-storage",
    "requests.memory",
];

fn downward_api_file(errs: &mut Errs, f: J<'_>, whole: &Path, p: &Path) {
    let path = st0(errs, f, "path", p);
    if path.is_empty() {
        required(errs, &p.child("path"), "");
    }
    local_non_reserved_path(errs, path, &p.child("path"));
    let field_ref = obj(errs, f, "fieldRef", p);
    let res_ref = obj(errs, f, "resourceFieldRef", p);
    if field_ref.is_some() {
        object_field_selector(
            errs,
            field_ref,
            VOLUME_FIELD_PATHS,
            &whole.child("fieldRef"),
        );
        if res_ref.is_some() {
            invalid(
                errs,
                whole,
                "resource",
                "fieldRef and resourceFieldRef can not be specified simultaneously",
            );
        }
    } else if res_ref.is_some() {
        resource_field_selector(errs, res_ref, &whole.child("resourceFieldRef"), true);
    } else {
        required(
            errs,
            whole,
            "one of fieldRef and resourceFieldRef is required",
        );
    }
    file_mode(errs, f, "mode", p);
}

fn projected(errs: &mut Errs, src: J<'_>, p: &Path) {
    file_mode(errs, src, "defaultMode", p);
    let mut seen = HashSet::new();
    for (i, s) in arr(errs, src, "sources", p).iter().enumerate() {
        let sp = p.child("sources").index(i);
        let s = Some(s);
        let mut n = 0;
        for kind in ["secret", "configMap"] {
            if let Some(inner) = get(s, kind) {
                n += 1;
                let kp = sp.child(kind);
                let name = st0(errs, Some(inner), "name", &kp);
                if name.is_empty() {
                    required(errs, &kp.child("name"), "");
                }
                key_to_paths(errs, Some(inner), &kp, Some((&mut seen, p, name)));
            }
        }
        if let Some(d) = get(s, "downwardAPI") {
            n += 1;
            let dp = sp.child("downwardAPI");
            for f in arr(errs, Some(d), "items", &dp) {
                downward_api_file(errs, Some(f), &dp, &dp);
                if let Some(path) = get(Some(f), "path").and_then(Value::as_str)
                    && !path.is_empty()
                    && !seen.insert(path.to_string())
                {
                    invalid(errs, p, path, "conflicting duplicate paths");
                }
            }
        }
        if let Some(t) = get(s, "serviceAccountToken") {
            n += 1;
            let tp = sp.child("serviceAccountToken");
            let t = Some(t);
            if let Some(exp) = int(errs, t, "expirationSeconds", &tp) {
                if exp < 600 {
                    invalid(
                        errs,
                        &tp.child("expirationSeconds"),
                        exp,
                        "may not specify a duration less than 10 minutes",
                    );
                }
                if exp > 1 << 32 {
                    invalid(
                        errs,
                        &tp.child("expirationSeconds"),
                        exp,
                        "may not specify a duration larger than 2^32 seconds",
                    );
                }
            }
            let path = st0(errs, t, "path", &tp);
            if path.is_empty() {
                required(errs, &p.child("path"), "");
            } else {
                local_non_reserved_path(errs, path, &p.child("path"));
            }
        }
        if get(s, "clusterTrustBundle").is_some() {
            n += 1;
        }
        if n > 1 {
            forbidden(errs, &sp, "may not specify more than 1 volume type");
        }
    }
}

fn object_field_selector(errs: &mut Errs, fs: J<'_>, allowed: &[&str], p: &Path) {
    let api_version = st0(errs, fs, "apiVersion", p);
    if api_version.is_empty() {
        required(errs, &p.child("apiVersion"), "");
        return;
    }
    let field_path = st0(errs, fs, "fieldPath", p);
    if field_path.is_empty() {
        required(errs, &p.child("fieldPath"), "");
        return;
    }
    if api_version != "v1" {
        invalid(
            errs,
            &p.child("fieldPath"),
            field_path,
            format!("error converting fieldPath: unsupported pod version: {api_version}"),
        );
        return;
    }
    let subscripted = field_path
        .strip_suffix("']")
        .and_then(|s| s.split_once("['"))
        .filter(|(head, _)| !head.is_empty());
    if let Some((head, sub)) = subscripted {
        match head {
            "metadata.annotations" => qualified_name(errs, &sub.to_lowercase(), p),
            "metadata.labels" => qualified_name(errs, sub, p),
            _ => invalid(
                errs,
                &p.child("fieldPath"),
                field_path,
                format!(
                    "error converting fieldPath: field label does not support subscript: {field_path}"
                ),
            ),
        }
        return;
    }
    const KNOWN: &[&str] = &[
        "metadata.annotations",
        "metadata.labels",
        "metadata.name",
        "metadata.namespace",
        "metadata.uid",
        "spec.nodeName",
        "spec.restartPolicy",
        "spec.serviceAccountName",
        "spec.schedulerName",
        "status.phase",
        "status.hostIP",
        "status.hostIPs",
        "status.podIP",
        "status.podIPs",
        "spec.host",
    ];
    if !KNOWN.contains(&field_path) {
        invalid(
            errs,
            &p.child("fieldPath"),
            field_path,
            format!("error converting fieldPath: field label not supported: {field_path}"),
        );
        return;
    }
    let internal = if field_path == "spec.host" {
        "spec.nodeName"
    } else {
        field_path
    };
    if !allowed.contains(&internal) {
        not_supported(errs, &p.child("fieldPath"), internal, allowed);
    }
}

fn resource_field_selector(errs: &mut Errs, fs: J<'_>, p: &Path, volume: bool) {
    let container = st0(errs, fs, "containerName", p);
    let resource = st0(errs, fs, "resource", p);
    if volume && container.is_empty() {
        required(errs, &p.child("containerName"), "");
    } else if resource.is_empty() {
        required(errs, &p.child("resource"), "");
    } else if !RESOURCE_FIELD_PATHS.contains(&resource)
        && !resource.starts_with("requests.hugepages-")
        && !resource.starts_with("limits.hugepages-")
    {
        not_supported(errs, &p.child("resource"), resource, RESOURCE_FIELD_PATHS);
    }
    let Some(divisor) = get(fs, "divisor").and_then(|d| Quantity::from_json(d).ok()) else {
        return;
    };
    if divisor.is_zero() {
        return;
    }
    let d = divisor.canonical();
    const MEM: &[&str] = &[
        "1", "1k", "1M", "1G", "1T", "1P", "1E", "1Ki", "1Mi", "1Gi", "1Ti", "1Pi", "1Ei",
    ];
    let dp = p.child("divisor");
    match resource {
        "limits.cpu" | "requests.cpu" if !["1m", "1"].contains(&d.as_str()) => invalid(
            errs,
            &dp,
            resource,
            "only divisor's values 1m and 1 are supported with the cpu resource",
        ),
        "limits.memory" | "requests.memory" if !MEM.contains(&d.as_str()) => invalid(
            errs,
            &dp,
            resource,
            "only divisor's values 1, 1k, 1M, 1G, 1T, 1P, 1E, 1Ki, 1Mi, 1Gi, 1Ti, 1Pi, 1Ei are supported with the memory resource",
        ),
        "limits.ephemeral-storage" | "requests.ephemeral-storage" if !MEM.contains(&d.as_str()) => {
            invalid(
                errs,
                &dp,
                resource,
                "only divisor's values 1, 1k, 1M, 1G, 1T, 1P, 1E, 1Ki, 1Mi, 1Gi, 1Ti, 1Pi, 1Ei are supported with the local ephemeral storage resource",
            )
        }
        _ => {}
    }
}

fn resource_claims(errs: &mut Errs, spec: J<'_>, p: &Path) -> BTreeSet<String> {
    let mut names_seen = BTreeSet::new();
    for (i, c) in arr(errs, spec, "resourceClaims", p).iter().enumerate() {
        let cp = p.child("resourceClaims").index(i);
        let name = st0(errs, Some(c), "name", &cp);
        if name.is_empty() {
            required(errs, &cp.child("name"), "");
        } else if names_seen.contains(name) {
            duplicate(errs, &cp.child("name"), name);
        } else {
            dns_label(errs, name, &cp.child("name"));
            names_seen.insert(name.to_string());
        }
    }
    names_seen
}

// ---------------------------------------------------------------------------------------
// Containers

fn containers(errs: &mut Errs, spec: J<'_>, ctx: &Ctx<'_>, p: &Path, spec_path: &Path) {
    let list = arr(errs, spec, "containers", spec_path);
    if list.is_empty() {
        required(errs, p, "");
        return;
    }
    let mut seen = HashSet::new();
    for (i, c) in list.iter().enumerate() {
        let cp = p.index(i);
        let c = Some(c);
        container_common(errs, c, ctx, &cp);
        let name = get(c, "name").and_then(Value::as_str).unwrap_or("");
        if !seen.insert(name) {
            duplicate(errs, &cp.child("name"), name);
        }
        if let Some(lc) = obj(&mut Errs::new(), c, "lifecycle", &cp) {
            lifecycle(errs, Some(lc), ctx.grace, &cp.child("lifecycle"));
        }
        probes(errs, c, ctx.grace, &cp);
        if get(c, "restartPolicy").is_some() {
            forbidden(
                errs,
                &cp.child("restartPolicy"),
                "may not be set for non-init containers",
            );
        }
    }
    host_port_conflicts(errs, list, p);
}

fn init_containers(errs: &mut Errs, spec: J<'_>, ctx: &Ctx<'_>, p: &Path, spec_path: &Path) {
    let mut names_seen: HashSet<&str> = arr(&mut Errs::new(), spec, "containers", spec_path)
        .iter()
        .filter_map(|c| c.get("name").and_then(Value::as_str))
        .collect();
    for (i, c) in arr(errs, spec, "initContainers", spec_path)
        .iter()
        .enumerate()
    {
        let cp = p.index(i);
        let cv = Some(c);
        container_common(errs, cv, ctx, &cp);
        let mut restart_always = false;
        if let Some(rp) = st(errs, cv, "restartPolicy", &cp) {
            if rp != "Always" {
                not_supported(errs, &cp.child("restartPolicy"), rp, &["Always"]);
            }
            restart_always = rp == "Always";
        }
        let name = get(cv, "name").and_then(Value::as_str).unwrap_or("");
        if names_seen.contains(name) {
            duplicate(errs, &cp.child("name"), name);
        } else if !name.is_empty() {
            names_seen.insert(name);
        }
        host_port_conflicts(errs, std::slice::from_ref(c), p);
        if restart_always {
            if let Some(lc) = obj(&mut Errs::new(), cv, "lifecycle", &cp) {
                lifecycle(errs, Some(lc), ctx.grace, &cp.child("lifecycle"));
            }
            probes(errs, cv, ctx.grace, &cp);
        } else {
            for key in [
                "lifecycle",
                "livenessProbe",
                "readinessProbe",
                "startupProbe",
            ] {
                if get(cv, key).is_some() {
                    forbidden(
                        errs,
                        &cp.child(key),
                        "may not be set for init containers without restartPolicy=Always",
                    );
                }
            }
        }
        if let Some(rp) =
            get(cv, "resizePolicy").filter(|v| v.as_array().is_some_and(|a| !a.is_empty()))
        {
            invalid_raw(
                errs,
                &cp.child("resizePolicy"),
                resize_policy_repr(rp),
                "must not be set for init containers",
            );
        }
    }
}

fn resize_policy_repr(v: &Value) -> String {
    let items = v
        .as_array()
        .map(|a| {
            a.iter()
                .map(|x| {
                    format!(
                        "core.ContainerResizePolicy{{ResourceName:{}, RestartPolicy:{}}}",
                        gorepr::quote(x.get("resourceName").and_then(Value::as_str).unwrap_or("")),
                        gorepr::quote(x.get("restartPolicy").and_then(Value::as_str).unwrap_or(""))
                    )
                })
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default();
    format!("[]core.ContainerResizePolicy{{{items}}}")
}

const EPHEMERAL_FORBIDDEN: &[&str] = &[
    "ports",
    "resources",
    "livenessProbe",
    "readinessProbe",
    "startupProbe",
    "lifecycle",
    "resizePolicy",
    "restartPolicy",
];

fn ephemeral_containers(errs: &mut Errs, spec: J<'_>, ctx: &Ctx<'_>, p: &Path, spec_path: &Path) {
    let list = arr(errs, spec, "ephemeralContainers", spec_path);
    if list.is_empty() {
        return;
    }
    let mut scratch = Errs::new();
    let mut others: HashSet<&str> = HashSet::new();
    for l in ["containers", "initContainers"] {
        others.extend(
            arr(&mut scratch, spec, l, spec_path)
                .iter()
                .filter_map(|c| c.get("name").and_then(Value::as_str)),
        );
    }
    let mut all = others.clone();
    for (i, c) in list.iter().enumerate() {
        let cp = p.index(i);
        let c = Some(c);
        container_common(errs, c, ctx, &cp);
        if let Some(image) = get(c, "image").and_then(Value::as_str)
            && image.trim() != image
        {
            invalid(
                errs,
                &cp.child("image"),
                image,
                "must not have leading or trailing whitespace",
            );
        }
        let name = get(c, "name").and_then(Value::as_str).unwrap_or("");
        if all.contains(name) {
            duplicate(errs, &cp.child("name"), name);
        } else {
            all.insert(name);
        }
        if let Some(t) = get(c, "targetContainerName").and_then(Value::as_str)
            && !t.is_empty()
            && !others.contains(t)
        {
            not_found(errs, &cp.child("targetContainerName"), t, "");
        }
        for key in EPHEMERAL_FORBIDDEN {
            let set = match get(c, key) {
                None => false,
                Some(Value::Array(a)) => !a.is_empty(),
                Some(Value::Object(o)) => !o.is_empty(),
                Some(_) => true,
            };
            if set {
                forbidden(
                    errs,
                    &cp.child(key),
                    "cannot be set for an Ephemeral Container",
                );
            }
        }
        for (j, vm) in arr(&mut scratch, c, "volumeMounts", &cp).iter().enumerate() {
            for key in ["subPath", "subPathExpr"] {
                if vm
                    .get(key)
                    .and_then(Value::as_str)
                    .is_some_and(|s| !s.is_empty())
                {
                    forbidden(
                        errs,
                        &cp.child("volumeMounts").index(j).child(key),
                        "cannot be set for an Ephemeral Container",
                    );
                }
            }
        }
    }
}

fn host_port_conflicts(errs: &mut Errs, list: &[Value], p: &Path) {
    let mut seen = HashSet::new();
    for (ci, c) in list.iter().enumerate() {
        let Some(ports) = c.get("ports").and_then(Value::as_array) else {
            continue;
        };
        for (pi, port) in ports.iter().enumerate() {
            let hp = port.get("hostPort").and_then(Value::as_i64).unwrap_or(0);
            if hp == 0 {
                continue;
            }
            let key = format!(
                "{}/{}/{hp}",
                port.get("protocol").and_then(Value::as_str).unwrap_or(""),
                port.get("hostIP").and_then(Value::as_str).unwrap_or("")
            );
            if !seen.insert(key.clone()) {
                duplicate(
                    errs,
                    &p.index(ci).child("ports").index(pi).child("hostPort"),
                    key,
                );
            }
        }
    }
}

/// `validateContainerCommon`.
fn container_common(errs: &mut Errs, c: J<'_>, ctx: &Ctx<'_>, p: &Path) {
    let name = st0(errs, c, "name", p);
    if name.is_empty() {
        required(errs, &p.child("name"), "");
    } else {
        dns_label(errs, name, &p.child("name"));
    }
    if st0(errs, c, "image", p).is_empty() {
        required(errs, &p.child("image"), "");
    }
    match st0(errs, c, "terminationMessagePolicy", p) {
        "File" | "FallbackToLogsOnError" => {}
        "" => required(errs, &p.child("terminationMessagePolicy"), ""),
        other => not_supported(
            errs,
            &p.child("terminationMessagePolicy"),
            other,
            &["File", "FallbackToLogsOnError"],
        ),
    }
    container_ports(errs, c, p);
    env(errs, c, p);
    env_from(errs, c, p);
    let mounts = arr(errs, c, "volumeMounts", p);
    let devices = arr(errs, c, "volumeDevices", p);
    volume_mounts(errs, mounts, devices, ctx.vols, c, &p.child("volumeMounts"));
    volume_devices(errs, devices, mounts, ctx.vols, &p.child("volumeDevices"));
    match st0(errs, c, "imagePullPolicy", p) {
        "Always" | "IfNotPresent" | "Never" => {}
        "" => required(errs, &p.child("imagePullPolicy"), ""),
        other => not_supported(
            errs,
            &p.child("imagePullPolicy"),
            other,
            &["Always", "IfNotPresent", "Never"],
        ),
    }
    let res = obj(errs, c, "resources", p);
    resource_requirements(errs, res, ctx.claims, &p.child("resources"));
    resize_policy(errs, c, ctx.restart_policy, p);
    let sc = obj(errs, c, "securityContext", p);
    security_context(errs, sc, ctx.host_users, &p.child("securityContext"));
}

fn container_ports(errs: &mut Errs, c: J<'_>, p: &Path) {
    let pp = p.child("ports");
    let mut seen = HashSet::new();
    for (i, port) in arr(errs, c, "ports", p).iter().enumerate() {
        let ip = pp.index(i);
        let port = Some(port);
        let name = st0(errs, port, "name", &ip);
        if !name.is_empty() {
            let msgs = is_valid_port_name(name);
            if !msgs.is_empty() {
                each_invalid(errs, &ip.child("name"), name, msgs);
            } else if !seen.insert(name) {
                duplicate(errs, &ip.child("name"), name);
            }
        }
        match int(errs, port, "containerPort", &ip).unwrap_or(0) {
            0 => required(errs, &ip.child("containerPort"), ""),
            n => {
                for m in is_valid_port_num(n) {
                    invalid(errs, &ip.child("containerPort"), n, m);
                }
            }
        }
        let hp = int(errs, port, "hostPort", &ip).unwrap_or(0);
        if hp != 0 {
            for m in is_valid_port_num(hp) {
                invalid(errs, &ip.child("hostPort"), hp, m);
            }
        }
        protocol(errs, port, &ip);
    }
}

/// Port protocol: required, one of TCP/UDP/SCTP.
pub(crate) fn protocol(errs: &mut Errs, port: J<'_>, p: &Path) {
    match st0(errs, port, "protocol", p) {
        "" => required(errs, &p.child("protocol"), ""),
        "TCP" | "UDP" | "SCTP" => {}
        other => not_supported(errs, &p.child("protocol"), other, &["SCTP", "TCP", "UDP"]),
    }
}

fn env(errs: &mut Errs, c: J<'_>, p: &Path) {
    let ep = p.child("env");
    for (i, e) in arr(errs, c, "env", p).iter().enumerate() {
        let ip = ep.index(i);
        let e = Some(e);
        let name = st0(errs, e, "name", &ip);
        if name.is_empty() {
            required(errs, &ip.child("name"), "");
        } else {
            each_invalid(
                errs,
                &ip.child("name"),
                name,
                names::is_relaxed_env_var_name(name),
            );
        }
        let Some(vf) = obj(errs, e, "valueFrom", &ip) else {
            continue;
        };
        let vp = ip.child("valueFrom");
        let vf = Some(vf);
        let mut n = 0;
        if let Some(fr) = obj(errs, vf, "fieldRef", &vp) {
            n += 1;
            object_field_selector(errs, Some(fr), ENV_FIELD_PATHS, &vp.child("fieldRef"));
        }
        if let Some(rr) = obj(errs, vf, "resourceFieldRef", &vp) {
            n += 1;
            resource_field_selector(errs, Some(rr), &vp.child("resourceFieldRef"), false);
        }
        for key in ["configMapKeyRef", "secretKeyRef"] {
            if let Some(r) = obj(errs, vf, key, &vp) {
                n += 1;
                let kp = vp.child(key);
                let name = st0(errs, Some(r), "name", &kp);
                subdomain(errs, name, &kp.child("name"));
                let k = st0(errs, Some(r), "key", &kp);
                if k.is_empty() {
                    required(errs, &kp.child("key"), "");
                } else {
                    each_invalid(errs, &kp.child("key"), k, names::is_config_map_key(k));
                }
            }
        }
        let value = get(e, "value").and_then(Value::as_str).unwrap_or("");
        if n == 0 {
            invalid(
                errs,
                &vp,
                "",
                "must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`",
            );
        } else if !value.is_empty() {
            invalid(
                errs,
                &vp,
                "",
                "may not be specified when `value` is not empty",
            );
        } else if n > 1 {
            invalid(
                errs,
                &vp,
                "",
                "may not have more than one field specified at a time",
            );
        }
    }
}

fn env_from(errs: &mut Errs, c: J<'_>, p: &Path) {
    let ep = p.child("envFrom");
    for (i, e) in arr(errs, c, "envFrom", p).iter().enumerate() {
        let ip = ep.index(i);
        let e = Some(e);
        if let Some(prefix) = st(errs, e, "prefix", &ip).filter(|s| !s.is_empty()) {
            each_invalid(
                errs,
                &ip.child("prefix"),
                prefix,
                names::is_relaxed_env_var_name(prefix),
            );
        }
        let mut n = 0;
        for key in ["configMapRef", "secretRef"] {
            if let Some(r) = obj(errs, e, key, &ip) {
                n += 1;
                let rp = ip.child(key);
                let name = st0(errs, Some(r), "name", &rp);
                if name.is_empty() {
                    required(errs, &rp.child("name"), "");
                } else {
                    each_invalid(
                        errs,
                        &rp.child("name"),
                        name,
                        names::name_is_dns_subdomain(name, true),
                    );
                }
            }
        }
        if n == 0 {
            invalid(
                errs,
                &ep,
                "",
                "must specify one of: `configMapRef` or `secretRef`",
            );
        } else if n > 1 {
            invalid(
                errs,
                &ep,
                "",
                "may not have more than one field specified at a time",
            );
        }
    }
}

fn volume_mounts(
    errs: &mut Errs,
    mounts: &[Value],
    devices: &[Value],
    vols: &Volumes,
    c: J<'_>,
    p: &Path,
) {
    let device_names: Vec<&str> = devices
        .iter()
        .filter_map(|d| d.get("name").and_then(Value::as_str))
        .collect();
    let device_paths: Vec<&str> = devices
        .iter()
        .filter_map(|d| d.get("devicePath").and_then(Value::as_str))
        .collect();
    let privileged =
        get(get(c, "securityContext"), "privileged").and_then(Value::as_bool) == Some(true);
    let mut points = HashSet::new();
    for (i, m) in mounts.iter().enumerate() {
        let ip = p.index(i);
        let m = Some(m);
        let name = st0(errs, m, "name", &ip);
        if name.is_empty() {
            required(errs, &ip.child("name"), "");
        }
        if !vols.contains_key(name) {
            not_found(errs, &ip.child("name"), name, "");
        }
        let mount_path = st0(errs, m, "mountPath", &ip);
        if mount_path.is_empty() {
            required(errs, &ip.child("mountPath"), "");
        }
        if !points.insert(mount_path) {
            invalid(errs, &ip.child("mountPath"), mount_path, "must be unique");
        }
        if device_names.contains(&name) {
            invalid(
                errs,
                &ip.child("name"),
                name,
                "must not already exist in volumeDevices",
            );
        }
        if device_paths.contains(&mount_path) {
            invalid(
                errs,
                &ip.child("mountPath"),
                mount_path,
                "must not already exist as a path in volumeDevices",
            );
        }
        let sub = st0(errs, m, "subPath", &ip);
        if !sub.is_empty() {
            local_descending_path(errs, sub, &p.child("subPath"));
        }
        let sub_expr = st0(errs, m, "subPathExpr", &ip);
        if !sub_expr.is_empty() {
            if !sub.is_empty() {
                invalid(
                    errs,
                    &ip.child("subPathExpr"),
                    sub_expr,
                    "subPathExpr and subPath are mutually exclusive",
                );
            }
            local_descending_path(errs, sub_expr, &p.child("subPathExpr"));
        }
        let propagation = st(errs, m, "mountPropagation", &ip);
        if let Some(mp) = propagation {
            let pp = p.child("mountPropagation");
            if !["Bidirectional", "HostToContainer", "None"].contains(&mp) {
                not_supported(errs, &pp, mp, &["Bidirectional", "HostToContainer", "None"]);
            }
            if mp == "Bidirectional" && !privileged {
                forbidden(
                    errs,
                    &pp,
                    "Bidirectional mount propagation is available only to privileged containers",
                );
            }
        }
        if let Some(rro) = st(errs, m, "recursiveReadOnly", &ip) {
            let rp = p.child("recursiveReadOnly");
            match rro {
                "Disabled" => {}
                "Enabled" | "IfPossible" => {
                    if get(m, "readOnly").and_then(Value::as_bool) != Some(true) {
                        forbidden(errs, &rp, "may only be specified when readOnly is true");
                    }
                    if propagation.is_some_and(|p| p != "None") {
                        forbidden(
                            errs,
                            &rp,
                            "may only be specified when mountPropagation is None or not specified",
                        );
                    }
                }
                other => not_supported(errs, &rp, other, &["Disabled", "Enabled", "IfPossible"]),
            }
        }
    }
}

fn volume_devices(errs: &mut Errs, devices: &[Value], mounts: &[Value], vols: &Volumes, p: &Path) {
    let mount_names: Vec<&str> = mounts
        .iter()
        .filter_map(|m| m.get("name").and_then(Value::as_str))
        .collect();
    let mount_paths: Vec<&str> = mounts
        .iter()
        .filter_map(|m| m.get("mountPath").and_then(Value::as_str))
        .collect();
    let mut paths = HashSet::new();
    let mut dev_names = HashSet::new();
    for (i, d) in devices.iter().enumerate() {
        let ip = p.index(i);
        let d = Some(d);
        let name = st0(errs, d, "name", &ip);
        let path = st0(errs, d, "devicePath", &ip);
        if name.is_empty() {
            required(errs, &ip.child("name"), "");
        }
        if dev_names.contains(name) {
            invalid(errs, &ip.child("name"), name, "must be unique");
        }
        match vols.get(name) {
            Some(false) => invalid(
                errs,
                &ip.child("name"),
                name,
                "can only use volume source type of PersistentVolumeClaim or Ephemeral for block mode",
            ),
            Some(true) => {}
            None => not_found(errs, &ip.child("name"), name, ""),
        }
        if path.is_empty() {
            required(errs, &ip.child("devicePath"), "");
        }
        if paths.contains(path) {
            invalid(errs, &ip.child("devicePath"), path, "must be unique");
        }
        if !path.is_empty() && path.split('/').any(|s| s == "..") {
            invalid(
                errs,
                &ip.child("devicePath"),
                path,
                "can not contain backsteps ('..')",
            );
        } else {
            paths.insert(path);
        }
        if mount_names.contains(&name) {
            invalid(
                errs,
                &ip.child("name"),
                name,
                "must not already exist in volumeMounts",
            );
        }
        if mount_paths.contains(&path) {
            invalid(
                errs,
                &ip.child("devicePath"),
                path,
                "must not already exist as a path in volumeMounts",
            );
        }
        if !name.is_empty() {
            dev_names.insert(name);
        }
    }
}

fn resize_policy(errs: &mut Errs, c: J<'_>, restart_policy: &str, p: &Path) {
    let rp = p.child("resizePolicy");
    let mut seen = HashSet::new();
    for (i, x) in arr(errs, c, "resizePolicy", p).iter().enumerate() {
        let x = Some(x);
        let name = st0(errs, x, "resourceName", &rp.index(i));
        let policy = st0(errs, x, "restartPolicy", &rp.index(i));
        if !seen.insert(name) {
            duplicate(errs, &rp.index(i), name);
        }
        match name {
            "cpu" | "memory" => {}
            "" => required(errs, &rp, ""),
            other => not_supported(errs, &rp, other, &["cpu", "memory"]),
        }
        match policy {
            "NotRequired" | "RestartContainer" => {}
            "" => required(errs, &rp, ""),
            other => not_supported(errs, &rp, other, &["NotRequired", "RestartContainer"]),
        }
        if restart_policy == "Never" && policy != "NotRequired" {
            invalid(
                errs,
                &rp,
                policy,
                "must be 'NotRequired' when `restartPolicy` is 'Never'",
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// Resources

const STANDARD_RESOURCES: &[&str] = &[
    "cpu",
    "memory",
    "ephemeral-storage",
    "requests.cpu",
    "requests.memory",
    "requests.ephemeral-storage",
    "limits.cpu",
    "limits.memory",
    "limits.ephemeral-storage",
    "pods",
    "services",
    "replicationcontrollers",
    "resourcequotas",
    "secrets",
    "configmaps",
    "persistentvolumeclaims",
    "storage",
    "requests.storage",
    "services.nodeports",
    "services.loadbalancers",
];

fn is_huge_pages(name: &str) -> bool {
    name.starts_with("hugepages-")
}

fn is_native(name: &str) -> bool {
    !name.contains('/') || name.contains("kubernetes.io/")
}

fn is_extended(name: &str) -> bool {
    !is_native(name)
        && !name.starts_with("requests.")
        && names::is_qualified_name(&format!("requests.{name}")).is_empty()
}

fn overcommit_allowed(name: &str) -> bool {
    is_native(name) && !is_huge_pages(name)
}

fn is_integer_resource(name: &str) -> bool {
    matches!(
        name,
        "pods"
            | "services"
            | "replicationcontrollers"
            | "resourcequotas"
            | "secrets"
            | "configmaps"
            | "persistentvolumeclaims"
            | "services.nodeports"
            | "services.loadbalancers"
    ) || is_extended(name)
}

/// `validateResourceName`.
pub(crate) fn resource_name(errs: &mut Errs, name: &str, p: &Path) -> bool {
    let msgs = names::is_qualified_name(name);
    if !msgs.is_empty() {
        each_invalid(errs, p, name, msgs);
        return false;
    }
    if !name.contains('/') && !STANDARD_RESOURCES.contains(&name) && !is_huge_pages(name) {
        invalid(
            errs,
            p,
            name,
            "must be a standard resource type or fully qualified",
        );
        return false;
    }
    true
}

fn container_resource_name(errs: &mut Errs, name: &str, p: &Path) {
    resource_name(errs, name, p);
    if !name.contains('/') {
        if !matches!(name, "cpu" | "memory" | "ephemeral-storage") && !is_huge_pages(name) {
            invalid(errs, p, name, "must be a standard resource for containers");
        }
    } else if !is_native(name) && !is_extended(name) {
        invalid(
            errs,
            p,
            name,
            "doesn't follow extended resource name standard",
        );
    }
}

/// `ValidateResourceQuantityValue`: non-negative, whole for integer resources.
pub(crate) fn quantity_value(errs: &mut Errs, name: &str, q: &Quantity, p: &Path) {
    if q.is_negative() {
        invalid(errs, p, q.canonical(), super::IS_NEGATIVE);
    }
    if is_integer_resource(name) && q.milli_value() % 1000 != 0 {
        invalid_raw(errs, p, q.canonical(), "must be an integer");
    }
}

/// Parses every quantity of a resource list, reporting unparseable ones.
pub(crate) fn quantities<'a>(errs: &mut Errs, list: J<'a>, p: &Path) -> Vec<(&'a str, Quantity)> {
    let mut out = Vec::new();
    if let Some(m) = list.and_then(Value::as_object) {
        for (k, v) in m {
            match Quantity::from_json(v) {
                Ok(q) => out.push((k.as_str(), q)),
                Err(e) => invalid(errs, &p.key(k), v.clone(), e),
            }
        }
    } else if let Some(other) = list {
        invalid(errs, p, other.clone(), "must be an object");
    }
    out
}

fn resource_list(errs: &mut Errs, list: J<'_>, p: &Path, container: bool) {
    for (name, q) in quantities(errs, list, p) {
        let kp = p.key(name);
        if container {
            container_resource_name(errs, name, &kp);
        } else {
            resource_name(errs, name, &kp);
        }
        quantity_value(errs, name, &q, &kp);
    }
}

fn huge_page_value(errs: &mut Errs, name: &str, q: &Quantity, p: &Path) {
    let Some(size) = name
        .strip_prefix("hugepages-")
        .and_then(|s| Quantity::parse(s).ok())
    else {
        return;
    };
    if size.is_zero() || size.is_negative() {
        return;
    }
    let (qm, sm) = (q.milli_value(), size.milli_value());
    if sm == 0 || qm % sm != 0 {
        invalid(
            errs,
            p,
            q.canonical(),
            format!(
                "{} is not positive integer multiple of {name}",
                q.canonical()
            ),
        );
    }
}

/// `ValidateResourceRequirements`.
pub(crate) fn resource_requirements(
    errs: &mut Errs,
    req: J<'_>,
    claims: &BTreeSet<String>,
    p: &Path,
) {
    let lim_path = p.child("limits");
    let req_path = p.child("requests");
    let lim_obj = obj(errs, req, "limits", p);
    let limits = quantities(errs, lim_obj, &lim_path);
    let req_obj = obj(errs, req, "requests", p);
    let requests = quantities(errs, req_obj, &req_path);
    let mut lim_cpu_mem = false;
    let mut req_cpu_mem = false;
    let mut huge = false;
    for (name, q) in &limits {
        let kp = lim_path.key(name);
        container_resource_name(errs, name, &kp);
        quantity_value(errs, name, q, &kp);
        if is_huge_pages(name) {
            huge = true;
            huge_page_value(errs, name, q, &kp);
        }
        lim_cpu_mem |= matches!(*name, "cpu" | "memory");
    }
    for (name, q) in &requests {
        let kp = req_path.key(name);
        container_resource_name(errs, name, &kp);
        quantity_value(errs, name, q, &kp);
        match limits.iter().find(|(n, _)| n == name) {
            Some((_, limit)) => {
                if q != limit && !overcommit_allowed(name) {
                    invalid(
                        errs,
                        &req_path,
                        q.canonical(),
                        format!("must be equal to {name} limit of {}", limit.canonical()),
                    );
                } else if q > limit {
                    invalid(
                        errs,
                        &req_path,
                        q.canonical(),
                        format!(
                            "must be less than or equal to {name} limit of {}",
                            limit.canonical()
                        ),
                    );
                }
            }
            None if !overcommit_allowed(name) => {
                required(
                    errs,
                    &lim_path,
                    "Limit must be set for non overcommitable resources",
                );
            }
            None => {}
        }
        if is_huge_pages(name) {
            huge = true;
            huge_page_value(errs, name, q, &kp);
        }
        req_cpu_mem |= matches!(*name, "cpu" | "memory");
    }
    if !lim_cpu_mem && !req_cpu_mem && huge {
        forbidden(errs, p, "HugePages require cpu or memory");
    }
    let cp = p.child("claims");
    let mut seen = HashSet::new();
    for (i, c) in arr(errs, req, "claims", p).iter().enumerate() {
        let name = st0(errs, Some(c), "name", &cp.index(i));
        if name.is_empty() {
            required(errs, &cp.index(i), "");
            continue;
        }
        if !seen.insert(name) {
            duplicate(errs, &cp.index(i), name);
        }
        if !claims.contains(name) {
            let detail = if claims.is_empty() {
                "must be one of the names in pod.spec.resourceClaims which is empty".to_string()
            } else {
                format!(
                    "must be one of the names in pod.spec.resourceClaims: {}",
                    claims
                        .iter()
                        .map(String::as_str)
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            };
            not_found(errs, &cp.index(i), name, &detail);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Probes and lifecycle

fn probes(errs: &mut Errs, c: J<'_>, grace: Option<i64>, p: &Path) {
    for key in ["livenessProbe", "readinessProbe", "startupProbe"] {
        let Some(probe) = obj(errs, c, key, p) else {
            continue;
        };
        let pp = p.child(key);
        let probe = Some(probe);
        handler(errs, probe, grace, &pp, false);
        for f in [
            "initialDelaySeconds",
            "timeoutSeconds",
            "periodSeconds",
            "successThreshold",
            "failureThreshold",
        ] {
            if let Some(v) = int(errs, probe, f, &pp) {
                nonneg(errs, &pp.child(f), v);
            }
        }
        let tgps = int(errs, probe, "terminationGracePeriodSeconds", &pp);
        if let Some(t) = tgps
            && t <= 0
        {
            invalid(
                errs,
                &pp.child("terminationGracePeriodSeconds"),
                t,
                "must be greater than 0",
            );
        }
        if key == "readinessProbe" {
            if let Some(t) = tgps {
                invalid(
                    errs,
                    &pp.child("terminationGracePeriodSeconds"),
                    t,
                    "must not be set for readinessProbes",
                );
            }
        } else {
            let st = get(probe, "successThreshold")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            if st != 1 {
                invalid(errs, &pp.child("successThreshold"), st, "must be 1");
            }
        }
    }
}

fn lifecycle(errs: &mut Errs, lc: J<'_>, grace: Option<i64>, p: &Path) {
    for key in ["postStart", "preStop"] {
        if let Some(h) = obj(errs, lc, key, p) {
            handler(errs, Some(h), grace, &p.child(key), true);
        }
    }
}

fn handler(errs: &mut Errs, h: J<'_>, grace: Option<i64>, p: &Path, lifecycle_handler: bool) {
    let kinds: &[&str] = if lifecycle_handler {
        &["exec", "httpGet", "tcpSocket", "sleep"]
    } else {
        &["exec", "httpGet", "tcpSocket", "grpc"]
    };
    let mut n = 0;
    for kind in kinds {
        let Some(x) = get(h, kind) else { continue };
        let kp = p.child(kind);
        if n > 0 {
            forbidden(errs, &kp, "may not specify more than 1 handler type");
            continue;
        }
        n += 1;
        let x = Some(x);
        match *kind {
            "exec" if arr(errs, x, "command", &kp).is_empty() => {
                required(errs, &kp.child("command"), "");
            }
            "httpGet" => {
                if st0(errs, x, "path", &kp).is_empty() {
                    required(errs, &kp.child("path"), "");
                }
                port_num_or_name(errs, get(x, "port"), &kp.child("port"));
                let scheme = st0(errs, x, "scheme", &kp);
                if scheme != "HTTP" && scheme != "HTTPS" {
                    not_supported(errs, &kp.child("scheme"), scheme, &["HTTP", "HTTPS"]);
                }
                for hdr in arr(errs, x, "httpHeaders", &kp) {
                    let name = hdr.get("name").and_then(Value::as_str).unwrap_or("");
                    each_invalid(
                        errs,
                        &kp.child("httpHeaders"),
                        name,
                        names::is_http_header_name(name),
                    );
                }
            }
            "tcpSocket" => port_num_or_name(errs, get(x, "port"), &kp.child("port")),
            "grpc" => {
                let port = int(errs, x, "port", &kp).unwrap_or(0);
                for m in is_valid_port_num(port) {
                    invalid(errs, &kp.child("port"), port, m);
                }
            }
            "sleep" => {
                let secs = int(errs, x, "seconds", &kp).unwrap_or(0);
                let g = grace.unwrap_or(0);
                if secs < 0 || secs > g {
                    invalid(
                        errs,
                        &kp,
                        secs,
                        format!(
                            "must be non-negative and less than terminationGracePeriodSeconds ({g})"
                        ),
                    );
                }
            }
            _ => {}
        }
    }
    if n == 0 {
        required(errs, p, "must specify a handler type");
    }
}

/// `ValidatePortNumOrName` for an int-or-string port.
pub(crate) fn port_num_or_name(errs: &mut Errs, port: J<'_>, p: &Path) {
    match port {
        Some(Value::String(s)) => each_invalid(errs, p, s, is_valid_port_name(s)),
        Some(v) => match v.as_i64() {
            Some(n) => {
                for m in is_valid_port_num(n) {
                    invalid(errs, p, n, m);
                }
            }
            None => invalid(errs, p, v.clone(), "must be an integer or a port name"),
        },
        None => {
            for m in is_valid_port_num(0) {
                invalid(errs, p, 0, m);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Security contexts

fn id_range(errs: &mut Errs, v: J<'_>, key: &str, p: &Path) {
    if let Some(id) = int(errs, v, key, p)
        && !(0..=MAX_INT32).contains(&id)
    {
        invalid(errs, &p.child(key), id, inclusive_range_error(0, MAX_INT32));
    }
}

fn seccomp_profile(errs: &mut Errs, sc: J<'_>, p: &Path) {
    let Some(sp) = obj(errs, sc, "seccompProfile", p) else {
        return;
    };
    let pp = p.child("seccompProfile");
    let sp = Some(sp);
    let t = st0(errs, sp, "type", &pp);
    match t {
        "Localhost" | "RuntimeDefault" | "Unconfined" => {}
        "" => required(
            errs,
            &pp.child("type"),
            "type is required when seccompProfile is set",
        ),
        other => not_supported(
            errs,
            &pp.child("type"),
            other,
            &["Localhost", "RuntimeDefault", "Unconfined"],
        ),
    }
    let local = st(errs, sp, "localhostProfile", &pp);
    if t == "Localhost" {
        match local {
            None => required(
                errs,
                &pp.child("localhostProfile"),
                "must be set when seccomp type is Localhost",
            ),
            Some(l) => local_descending_path(errs, l, &pp.child("localhostProfile")),
        }
    } else if local.is_some() {
        invalid_raw(
            errs,
            &pp.child("localhostProfile"),
            format!(
                "core.SeccompProfile{{Type:{}, LocalhostProfile:{}}}",
                gorepr::quote(t),
                gorepr::pointer("string", true)
            ),
            "can only be set when seccomp type is Localhost",
        );
    }
}

fn apparmor_profile(errs: &mut Errs, sc: J<'_>, p: &Path) {
    let Some(ap) = obj(errs, sc, "appArmorProfile", p) else {
        return;
    };
    let pp = p.child("appArmorProfile");
    let ap = Some(ap);
    let local = st(errs, ap, "localhostProfile", &pp);
    match st0(errs, ap, "type", &pp) {
        "Localhost" => match local {
            None => required(
                errs,
                &pp.child("localhostProfile"),
                "must be set when AppArmor type is Localhost",
            ),
            Some(l) if l.trim() != l => invalid(
                errs,
                &pp.child("localhostProfile"),
                l,
                "must not be padded with whitespace",
            ),
            Some("") => required(
                errs,
                &pp.child("localhostProfile"),
                "must be set when AppArmor type is Localhost",
            ),
            Some(_) => {}
        },
        "RuntimeDefault" | "Unconfined" => {
            if let Some(l) = local {
                invalid(
                    errs,
                    &pp.child("localhostProfile"),
                    l,
                    "can only be set when AppArmor type is Localhost",
                );
            }
        }
        "" => required(
            errs,
            &pp.child("type"),
            "type is required when appArmorProfile is set",
        ),
        other => not_supported(
            errs,
            &pp.child("type"),
            other,
            &["Localhost", "RuntimeDefault", "Unconfined"],
        ),
    }
}

fn security_context(errs: &mut Errs, sc: J<'_>, host_users: bool, p: &Path) {
    if sc.is_none() {
        return;
    }
    let privileged = boolean(errs, sc, "privileged", p);
    id_range(errs, sc, "runAsUser", p);
    id_range(errs, sc, "runAsGroup", p);
    if let Some(pm) = st(errs, sc, "procMount", p) {
        if pm != "Default" && pm != "Unmasked" {
            not_supported(errs, &p.child("procMount"), pm, &["Default", "Unmasked"]);
        }
        if host_users && pm == "Unmasked" {
            invalid(
                errs,
                &p.child("procMount"),
                pm,
                "`hostUsers` must be false to use `Unmasked`",
            );
        }
    }
    seccomp_profile(errs, sc, p);
    if boolean(errs, sc, "allowPrivilegeEscalation", p) == Some(false) {
        if privileged == Some(true) {
            invalid_raw(
                errs,
                p,
                "&core.SecurityContext{...}",
                "cannot set `allowPrivilegeEscalation` to false and `privileged` to true",
            );
        }
        let adds = str_list(
            errs,
            get(sc, "capabilities"),
            "add",
            &p.child("capabilities"),
        );
        if adds.contains(&"CAP_SYS_ADMIN") {
            invalid_raw(
                errs,
                p,
                "&core.SecurityContext{...}",
                "cannot set `allowPrivilegeEscalation` to false and `capabilities.Add` CAP_SYS_ADMIN",
            );
        }
    }
    apparmor_profile(errs, sc, p);
}

fn pod_security_context(errs: &mut Errs, spec: J<'_>, spec_path: &Path) {
    let Some(sc) = obj(errs, spec, "securityContext", spec_path) else {
        return;
    };
    let p = spec_path.child("securityContext");
    let sc = Some(sc);
    id_range(errs, sc, "fsGroup", &p);
    id_range(errs, sc, "runAsUser", &p);
    id_range(errs, sc, "runAsGroup", &p);
    for (i, g) in arr(errs, sc, "supplementalGroups", &p).iter().enumerate() {
        match g.as_i64() {
            Some(id) if !(0..=MAX_INT32).contains(&id) => invalid(
                errs,
                &p.child("supplementalGroups").index(i),
                id,
                inclusive_range_error(0, MAX_INT32),
            ),
            Some(_) => {}
            None => invalid(
                errs,
                &p.child("supplementalGroups").index(i),
                g.clone(),
                "must be an integer",
            ),
        }
    }
    let host_pid = get(spec, "hostPID").and_then(Value::as_bool) == Some(true);
    if boolean(errs, sc, "shareProcessNamespace", spec_path).unwrap_or(false) && host_pid {
        invalid(
            errs,
            &p.child("shareProcessNamespace"),
            true,
            "ShareProcessNamespace and HostPID cannot both be enabled",
        );
    }
    if let Some(policy) = st(errs, sc, "fsGroupChangePolicy", &p)
        && policy != "Always"
        && policy != "OnRootMismatch"
    {
        not_supported(
            errs,
            &p.child("fsGroupChangePolicy"),
            policy,
            &["Always", "OnRootMismatch"],
        );
    }
    seccomp_profile(errs, sc, &p);
    apparmor_profile(errs, sc, &p);
    if let Some(policy) = st(errs, sc, "supplementalGroupsPolicy", &p)
        && policy != "Merge"
        && policy != "Strict"
    {
        not_supported(
            errs,
            &p.child("supplementalGroupsPolicy"),
            policy,
            &["Merge", "Strict"],
        );
    }
}

fn host_network_deps(errs: &mut Errs, spec: J<'_>, p: &Path, opts: Opts) {
    if get(spec, "hostNetwork").and_then(Value::as_bool) != Some(true) {
        return;
    }
    let cp = p.child("containers");
    for (i, c) in arr(&mut Errs::new(), spec, "containers", p)
        .iter()
        .enumerate()
    {
        for (j, port) in c
            .get("ports")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            let hp = port.get("hostPort").and_then(Value::as_i64).unwrap_or(0);
            let cport = port
                .get("containerPort")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            if (opts.is_pod || hp != 0) && hp != cport {
                invalid(
                    errs,
                    &cp.index(i).child("ports").index(j).child("hostPort"),
                    hp,
                    "must match `containerPort` when `hostNetwork` is true",
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Scheduling

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
        not_supported(
            errs,
            p,
            effect,
            &["NoSchedule", "PreferNoSchedule", "NoExecute"],
        );
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

fn node_selector_term(errs: &mut Errs, term: J<'_>, p: &Path) {
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
            other => invalid(
                errs,
                &rp.child("operator"),
                other,
                "not a valid selector operator",
            ),
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
            other => invalid(
                errs,
                &rp.child("operator"),
                other,
                "not a valid selector operator",
            ),
        }
        let key = st0(errs, r, "key", &rp);
        if key != "metadata.name" {
            invalid(
                errs,
                &rp.child("key"),
                key,
                "not a valid field selector key",
            );
        } else {
            for (k, v) in values.iter().enumerate() {
                subdomain(errs, v, &rp.child("values").index(k));
            }
        }
    }
}

fn affinity(errs: &mut Errs, aff: J<'_>, p: &Path) {
    if let Some(na) = obj(errs, aff, "nodeAffinity", p) {
        let np = p.child("nodeAffinity");
        let na = Some(na);
        if let Some(req) = obj(
            errs,
            na,
            "requiredDuringSchedulingIgnoredDuringExecution",
            &np,
        ) {
            node_selector(
                errs,
                Some(req),
                &np.child("requiredDuringSchedulingIgnoredDuringExecution"),
            );
        }
        let pp = np.child("preferredDuringSchedulingIgnoredDuringExecution");
        for (i, t) in arr(
            errs,
            na,
            "preferredDuringSchedulingIgnoredDuringExecution",
            &np,
        )
        .iter()
        .enumerate()
        {
            let w = int(errs, Some(t), "weight", &pp.index(i)).unwrap_or(0);
            if !(1..=100).contains(&w) {
                invalid(
                    errs,
                    &pp.index(i).child("weight"),
                    w,
                    "must be in the range 1-100",
                );
            }
            node_selector_term(
                errs,
                get(Some(t), "preference"),
                &pp.index(i).child("preference"),
            );
        }
    }
    for kind in ["podAffinity", "podAntiAffinity"] {
        let Some(pa) = obj(errs, aff, kind, p) else {
            continue;
        };
        let kp = p.child(kind);
        let pa = Some(pa);
        let rp = kp.child("requiredDuringSchedulingIgnoredDuringExecution");
        for (i, t) in arr(
            errs,
            pa,
            "requiredDuringSchedulingIgnoredDuringExecution",
            &kp,
        )
        .iter()
        .enumerate()
        {
            pod_affinity_term(errs, Some(t), &rp.index(i));
        }
        let wp = kp.child("preferredDuringSchedulingIgnoredDuringExecution");
        for (i, t) in arr(
            errs,
            pa,
            "preferredDuringSchedulingIgnoredDuringExecution",
            &kp,
        )
        .iter()
        .enumerate()
        {
            let w = int(errs, Some(t), "weight", &wp.index(i)).unwrap_or(0);
            if !(1..=100).contains(&w) {
                invalid(
                    errs,
                    &wp.index(i).child("weight"),
                    w,
                    "must be in the range 1-100",
                );
            }
            pod_affinity_term(
                errs,
                get(Some(t), "podAffinityTerm"),
                &wp.index(i).child("podAffinityTerm"),
            );
        }
    }
}

fn pod_affinity_term(errs: &mut Errs, t: J<'_>, p: &Path) {
    let sel = obj(errs, t, "labelSelector", p);
    meta::validate_label_selector(errs, sel, &p.child("labelSelector"));
    let ns_sel = obj(errs, t, "namespaceSelector", p);
    meta::validate_label_selector(errs, ns_sel, &p.child("namespaceSelector"));
    for ns in str_list(errs, t, "namespaces", p) {
        each_invalid(errs, &p.child("namespace"), ns, meta::namespace_name(ns));
    }
    let match_keys = str_list(errs, t, "matchLabelKeys", p);
    let mismatch_keys = str_list(errs, t, "mismatchLabelKeys", p);
    for (field, keys) in [
        ("matchLabelKeys", &match_keys),
        ("mismatchLabelKeys", &mismatch_keys),
    ] {
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

fn dns_config(errs: &mut Errs, cfg: J<'_>, dns_policy: &str, p: &Path) {
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
        subdomain(
            errs,
            s.strip_suffix('.').unwrap_or(s),
            &p.child("searches").index(i),
        );
    }
    for (i, o) in arr(errs, cfg, "options", p).iter().enumerate() {
        if o.get("name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .is_empty()
        {
            required(errs, &p.child("options").index(i), "must not be empty");
        }
    }
}

fn topology_spread(errs: &mut Errs, spec: J<'_>, p: &Path, spec_path: &Path) {
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
                && o.get("whenUnsatisfiable")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    == wu
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
                forbidden(
                    errs,
                    &mk,
                    "must not be specified when labelSelector is not set",
                );
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

// ---------------------------------------------------------------------------------------
// Pod updates

const UPDATABLE_FIELDS: &str = "`spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)";

fn pod_update(errs: &mut Errs, obj: &Value, old: &Value) {
    let sp = Path::new("spec");
    let new_spec = get(Some(obj), "spec");
    let old_spec = get(Some(old), "spec");
    let mut scratch = Errs::new();

    let anns = |v: &Value| -> Vec<(String, String)> {
        get(get(Some(v), "metadata"), "annotations")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                    .collect()
            })
            .unwrap_or_default()
    };
    let (na, oa) = (anns(obj), anns(old));
    let ap = Path::new("metadata").child("annotations");
    for (k, v) in &oa {
        if na.iter().any(|(nk, nv)| nk == k && nv == v) {
            continue;
        }
        if k.starts_with("container.apparmor.security.beta.kubernetes.io/") {
            forbidden(
                errs,
                &ap.key(k),
                "may not remove or update AppArmor annotations",
            );
        }
        if k == "kubernetes.io/config.mirror" {
            forbidden(
                errs,
                &ap.key(k),
                "may not remove or update mirror pod annotation",
            );
        }
    }
    for (k, _) in &na {
        if oa.iter().any(|(ok, _)| ok == k) {
            continue;
        }
        if k.starts_with("container.apparmor.security.beta.kubernetes.io/") {
            forbidden(errs, &ap.key(k), "may not add AppArmor annotations");
        }
        if k == "kubernetes.io/config.mirror" {
            forbidden(errs, &ap.key(k), "may not add mirror pod annotation");
        }
    }

    for list in ["containers", "initContainers"] {
        let new = arr(&mut scratch, new_spec, list, &sp);
        let was = arr(&mut scratch, old_spec, list, &sp);
        if new.len() != was.len() {
            forbidden(
                errs,
                &sp.child(list),
                "pod updates may not add or remove containers",
            );
            return;
        }
        for (i, c) in new.iter().enumerate() {
            let image = c.get("image").and_then(Value::as_str).unwrap_or("");
            if image.is_empty() {
                required(errs, &sp.child(list).index(i).child("image"), "");
            }
            if image.trim() != image {
                invalid(
                    errs,
                    &sp.child(list).index(i).child("image"),
                    image,
                    "must not have leading or trailing whitespace",
                );
            }
        }
    }

    let new_ads = get(new_spec, "activeDeadlineSeconds").and_then(Value::as_i64);
    let old_ads = get(old_spec, "activeDeadlineSeconds").and_then(Value::as_i64);
    match (new_ads, old_ads) {
        (Some(n), _) if !(0..=MAX_INT32).contains(&n) => {
            invalid(
                errs,
                &sp.child("activeDeadlineSeconds"),
                n,
                inclusive_range_error(0, MAX_INT32),
            );
            return;
        }
        (Some(n), Some(o)) if o < n => {
            invalid(
                errs,
                &sp.child("activeDeadlineSeconds"),
                n,
                "must be less than or equal to previous value",
            );
            return;
        }
        (None, Some(_)) => invalid(
            errs,
            &sp.child("activeDeadlineSeconds"),
            Value::Null,
            "must not update from a positive integer to nil value",
        ),
        _ => {}
    }

    let new_tols = arr(&mut scratch, new_spec, "tolerations", &sp);
    let old_tols = arr(&mut scratch, old_spec, "tolerations", &sp);
    let strip = |t: &Value| {
        let mut t = t.clone();
        if let Some(m) = t.as_object_mut() {
            m.remove("tolerationSeconds");
        }
        t
    };
    let modified = old_tols.iter().any(|o| {
        !new_tols
            .iter()
            .any(|n| semantic_eq(Some(&strip(o)), Some(&strip(n))))
    });
    if modified {
        forbidden(
            errs,
            &sp.child("tolerations"),
            "existing toleration can not be modified except its tolerationSeconds",
        );
    } else {
        tolerations(errs, new_tols, &sp.child("tolerations"));
    }

    let new_gates = arr(&mut scratch, new_spec, "schedulingGates", &sp);
    let old_gates: Vec<&str> = arr(&mut scratch, old_spec, "schedulingGates", &sp)
        .iter()
        .filter_map(|g| g.get("name").and_then(Value::as_str))
        .collect();
    for (i, g) in new_gates.iter().enumerate() {
        let name = g.get("name").and_then(Value::as_str).unwrap_or("");
        if !old_gates.contains(&name) {
            forbidden(
                errs,
                &sp.child("schedulingGates").index(i).child("name"),
                format!("only deletion is allowed, but found new scheduling gate '{name}'"),
            );
        }
    }

    if semantic_eq(new_spec, old_spec) {
        return;
    }
    let old_qos = get(get(Some(old), "status"), "qosClass")
        .and_then(Value::as_str)
        .map(str::to_string);
    let old_qos = old_qos.unwrap_or_else(|| pod_qos_class(old).to_string());
    if old_qos != pod_qos_class(obj) {
        let new_qos = get(get(Some(obj), "status"), "qosClass")
            .and_then(Value::as_str)
            .unwrap_or("");
        invalid(
            errs,
            &Path::new("metadata"),
            new_qos,
            "Pod QoS is immutable",
        );
    }

    let mut munged = new_spec
        .cloned()
        .unwrap_or_else(|| Value::Object(Default::default()));
    if let Some(m) = munged.as_object_mut() {
        for list in ["containers", "initContainers"] {
            if let Some(Value::Array(cs)) = m.get_mut(list) {
                for (i, c) in cs.iter_mut().enumerate() {
                    let old_image = old_spec
                        .and_then(|s| s.get(list))
                        .and_then(|l| l.get(i))
                        .and_then(|c| c.get("image"))
                        .cloned();
                    if let Some(cm) = c.as_object_mut() {
                        match old_image {
                            Some(img) => cm.insert("image".into(), img),
                            None => cm.remove("image"),
                        };
                    }
                }
            }
        }
        for key in ["activeDeadlineSeconds", "schedulingGates", "tolerations"] {
            match old_spec.and_then(|s| s.get(key)) {
                Some(v) => m.insert(key.into(), v.clone()),
                None => m.remove(key),
            };
        }
        let old_grace = get(old_spec, "terminationGracePeriodSeconds").and_then(Value::as_i64);
        let new_grace = m
            .get("terminationGracePeriodSeconds")
            .and_then(Value::as_i64);
        if old_grace.is_some_and(|g| g < 0) && new_grace == Some(1) {
            m.insert(
                "terminationGracePeriodSeconds".into(),
                Value::from(old_grace.unwrap_or(1)),
            );
        }
    }
    if !semantic_eq(Some(&munged), old_spec) {
        forbidden(
            errs,
            &sp,
            format!("pod updates may not change fields other than {UPDATABLE_FIELDS}"),
        );
    }
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
