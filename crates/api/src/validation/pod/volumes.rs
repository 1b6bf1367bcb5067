//! Volumes: sources, projections, downward API and resource-field selectors, file modes.

use super::*;

/// Volume sources in upstream's checking order: (JSON member, path used in the "more than
/// one type" error).
pub(super) const VOLUME_SOURCES: &[(&str, &str)] = &[
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

pub(super) fn volumes(errs: &mut Errs, spec: J<'_>, pod_name: Option<&str>, p: &Path) -> Volumes {
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
            let claimish = get(vol, "persistentVolumeClaim").is_some() || get(vol, "ephemeral").is_some();
            out.insert(name.to_string(), claimish);
        } else {
            errs.extend(el);
        }
        if let Some(claim) = get(get(vol, "persistentVolumeClaim"), "claimName").and_then(Value::as_str)
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

pub(super) fn volume_source(errs: &mut Errs, vol: J<'_>, vol_name: &str, pod_name: Option<&str>, p: &Path) {
    let mut count = 0;
    for (key, dup_path) in VOLUME_SOURCES {
        let Some(src) = get(vol, key) else { continue };
        if count > 0 {
            forbidden(errs, &p.child(dup_path), "may not specify more than 1 volume type");
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

pub(super) fn host_path(errs: &mut Errs, src: J<'_>, p: &Path) {
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
pub(super) fn local_descending_path(errs: &mut Errs, path: &str, p: &Path) {
    if path.starts_with('/') {
        invalid(errs, p, path, "must be a relative path");
    }
    no_backsteps(errs, path, p);
}

/// `ValidateLocalNonReservedPath`.
pub(super) fn local_non_reserved_path(errs: &mut Errs, path: &str, p: &Path) {
    local_descending_path(errs, path, p);
    if path.starts_with("..") && !path.starts_with("../") {
        invalid(errs, p, path, "must not start with '..'");
    }
}

pub(super) fn file_mode(errs: &mut Errs, v: J<'_>, key: &str, p: &Path) {
    if let Some(mode) = int(errs, v, key, p)
        && !(0..=0o777).contains(&mode)
    {
        invalid(errs, &p.child(key), mode, FILE_MODE_ERR);
    }
}

/// Items of a secret/configMap source; `paths` collects projected paths for duplicates.
pub(super) fn key_to_paths(
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

pub(super) const VOLUME_FIELD_PATHS: &[&str] = &[
    "metadata.annotations",
    "metadata.labels",
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
];
pub(super) const ENV_FIELD_PATHS: &[&str] = &[
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
pub(super) const RESOURCE_FIELD_PATHS: &[&str] = &[
    "limits.cpu",
    "limits.ephemeral-storage",
    "limits.memory",
    "requests.cpu",
    "requests.ephemeral-storage",
    "requests.memory",
];

pub(super) fn downward_api_file(errs: &mut Errs, f: J<'_>, whole: &Path, p: &Path) {
    let path = st0(errs, f, "path", p);
    if path.is_empty() {
        required(errs, &p.child("path"), "");
    }
    local_non_reserved_path(errs, path, &p.child("path"));
    let field_ref = obj(errs, f, "fieldRef", p);
    let res_ref = obj(errs, f, "resourceFieldRef", p);
    if field_ref.is_some() {
        object_field_selector(errs, field_ref, VOLUME_FIELD_PATHS, &whole.child("fieldRef"));
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
        required(errs, whole, "one of fieldRef and resourceFieldRef is required");
    }
    file_mode(errs, f, "mode", p);
}

pub(super) fn projected(errs: &mut Errs, src: J<'_>, p: &Path) {
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

pub(super) fn object_field_selector(errs: &mut Errs, fs: J<'_>, allowed: &[&str], p: &Path) {
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
                format!("error converting fieldPath: field label does not support subscript: {field_path}"),
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

pub(super) fn resource_field_selector(errs: &mut Errs, fs: J<'_>, p: &Path, volume: bool) {
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
        "limits.ephemeral-storage" | "requests.ephemeral-storage" if !MEM.contains(&d.as_str()) => invalid(
            errs,
            &dp,
            resource,
            "only divisor's values 1, 1k, 1M, 1G, 1T, 1P, 1E, 1Ki, 1Mi, 1Gi, 1Ti, 1Pi, 1Ei are supported with the local ephemeral storage resource",
        ),
        _ => {}
    }
}

pub(super) fn resource_claims(errs: &mut Errs, spec: J<'_>, p: &Path) -> BTreeSet<String> {
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
