//! Volumes for the process runtime.
//!
//! Each pod has a directory on the node; its `emptyDir`, `configMap`, `secret` and
//! `downwardAPI` volumes are directories in it (`volumes/<name>`), filled before the
//! containers start. A `hostPath` volume is its path on the node.
//!
//! When the agent runs as root with util-linux's `unshare` (the usual case), each container
//! runs in a mount namespace of its own where its volumes are bind mounts at their
//! `mountPath` ([`binds`], [`bind_all`]): two pods may mount different volumes at one
//! path, and nothing is left on the node's tree but empty mount points. Otherwise host
//! processes share the node's file system, and a volume is made available at its
//! `mountPath` by path mapping: when the mount path is the volume's own path (the usual
//! `hostPath` case, e.g. `/var/log` at `/var/log`) nothing is needed; otherwise the agent
//! makes the mount path a symbolic link to the volume (creating missing parent directories)
//! and removes it with the pod. A mount path that exists and is anything else is refused
//! with a clear error rather than replaced, so two pods on one node cannot both map
//! different volumes to one path.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Container, Pod, Volume};

use crate::env::Sources;

/// Why a pod's volumes cannot be made ready: the message of `CreateContainerConfigError`.
pub type VolumeError = String;

/// Makes every volume of `pod` ready under `pod_dir` and returns where each is on the node.
pub fn prepare(pod: &Pod, pod_dir: &Path, sources: &impl Sources) -> Result<BTreeMap<String, PathBuf>, VolumeError> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let mut out = BTreeMap::new();
    for v in pod.spec.as_ref().and_then(|s| s.volumes.as_ref()).into_iter().flatten() {
        let path = prepare_one(pod, ns, v, &pod_dir.join("volumes").join(&v.name), sources)?;
        out.insert(v.name.clone(), path);
    }
    Ok(out)
}

fn io(what: &str, path: &Path) -> impl FnOnce(std::io::Error) -> VolumeError {
    let (what, path) = (what.to_string(), path.display().to_string());
    move |e| format!("{what} {path}: {e}")
}

fn prepare_one(pod: &Pod, ns: &str, v: &Volume, dir: &Path, sources: &impl Sources) -> Result<PathBuf, VolumeError> {
    if let Some(h) = &v.host_path {
        let path = PathBuf::from(&h.path);
        match h.type_.as_deref().unwrap_or("") {
            "DirectoryOrCreate" => std::fs::create_dir_all(&path).map_err(io("creating", &path))?,
            "FileOrCreate" if !path.exists() => {
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent).map_err(io("creating", parent))?;
                }
                std::fs::write(&path, b"").map_err(io("creating", &path))?;
            }
            "Directory" if !path.is_dir() => {
                return Err(format!("hostPath type check failed: {} is not a directory", h.path));
            }
            "File" if !path.is_file() => {
                return Err(format!("hostPath type check failed: {} is not a file", h.path));
            }
            _ => {}
        }
        return Ok(path);
    }
    if let Some(claim) = &v.persistent_volume_claim {
        let path = sources.claim_path(ns, &claim.claim_name).ok_or_else(|| {
            format!(
                "persistentvolumeclaim \"{}\" is not bound to a local volume on this node yet",
                claim.claim_name
            )
        })?;
        std::fs::create_dir_all(&path).map_err(io("creating", &path))?;
        return Ok(path);
    }
    std::fs::create_dir_all(dir).map_err(io("creating", dir))?;
    if v.empty_dir.is_some() {
        return Ok(dir.to_path_buf());
    }
    let keys = |items: &Option<Vec<k8s_openapi::api::core::v1::KeyToPath>>| {
        items
            .iter()
            .flatten()
            .map(|i| (i.key.clone(), i.path.clone()))
            .collect::<Vec<_>>()
    };
    let config_map = |name: &str, optional, items: Vec<(String, String)>| {
        let items = items.iter().map(|(k, p)| (k.as_str(), p.as_str()));
        source_files(config_map_data(sources, ns, name), "configmap", name, optional, items)
    };
    let secret = |name: &str, optional, items: Vec<(String, String)>| {
        let items = items.iter().map(|(k, p)| (k.as_str(), p.as_str()));
        source_files(sources.secret(ns, name), "secret", name, optional, items)
    };
    let (files, mode): (Vec<(String, Vec<u8>)>, i32) = if let Some(cm) = &v.config_map {
        (
            config_map(&cm.name, cm.optional, keys(&cm.items))?,
            cm.default_mode.unwrap_or(0o644),
        )
    } else if let Some(sec) = &v.secret {
        let name = sec.secret_name.as_deref().unwrap_or_default();
        (
            secret(name, sec.optional, keys(&sec.items))?,
            sec.default_mode.unwrap_or(0o644),
        )
    } else if let Some(d) = &v.downward_api {
        (
            downward_files(pod, d.items.as_deref().unwrap_or_default())?,
            d.default_mode.unwrap_or(0o644),
        )
    } else if let Some(p) = &v.projected {
        // Every source's files in one directory, as upstream's projected volume.
        let mut files = Vec::new();
        for s in p.sources.as_deref().unwrap_or_default() {
            if let Some(cm) = &s.config_map {
                files.extend(config_map(&cm.name, cm.optional, keys(&cm.items))?);
            } else if let Some(sec) = &s.secret {
                files.extend(secret(&sec.name, sec.optional, keys(&sec.items))?);
            } else if let Some(d) = &s.downward_api {
                files.extend(downward_files(pod, d.items.as_deref().unwrap_or_default())?);
            } else if let Some(t) = &s.service_account_token {
                let audience = t.audience.as_deref().unwrap_or_default();
                let seconds = t.expiration_seconds.unwrap_or(3600);
                let token = sources.service_account_token(audience, seconds).ok_or_else(|| {
                    format!("failed to fetch token: no token for the pod's service account (audience {audience:?})")
                })?;
                files.push((t.path.clone(), token.into_bytes()));
            } else {
                return Err(format!(
                    "volume \"{}\": a projected source of a kind the process runtime does not support",
                    v.name
                ));
            }
        }
        (files, p.default_mode.unwrap_or(0o644))
    } else {
        return Err(format!(
            "volume \"{}\": the process runtime supports hostPath, emptyDir, configMap, secret, downwardAPI, projected and persistentVolumeClaim (local) volumes",
            v.name
        ));
    };
    for (rel, bytes) in files {
        if rel.split('/').any(|p| p == ".." || p.is_empty()) {
            return Err(format!("invalid volume file path {rel:?}"));
        }
        let path = dir.join(&rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io("creating", parent))?;
        }
        let mode = u32::try_from(mode).unwrap_or(0o644) & 0o777;
        write_file(&path, &bytes, mode).map_err(io("writing", &path))?;
    }
    Ok(dir.to_path_buf())
}

/// Writes a volume file whole or not at all (a new file renamed over the old one), so a
/// container reading it while it is refreshed never sees half of it.
fn write_file(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.new"));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.set_permissions(std::fs::Permissions::from_mode(mode))?;
    drop(f);
    std::fs::rename(&tmp, path)
}

/// The files of a ConfigMap or Secret source (`kind` names it in errors): every key, or
/// just `items`; a missing source is an error unless `optional`.
fn source_files<'a>(
    data: Option<BTreeMap<String, Vec<u8>>>,
    kind: &str,
    name: &str,
    optional: Option<bool>,
    items: impl Iterator<Item = (&'a str, &'a str)>,
) -> Result<Vec<(String, Vec<u8>)>, VolumeError> {
    let data = match data {
        Some(d) => d,
        None if optional == Some(true) => BTreeMap::new(),
        None => return Err(format!("{kind} \"{name}\" not found")),
    };
    pick(&data, items, name)
}

/// A ConfigMap's data as bytes.
fn config_map_data(sources: &impl Sources, ns: &str, name: &str) -> Option<BTreeMap<String, Vec<u8>>> {
    sources
        .config_map(ns, name)
        .map(|d| d.into_iter().map(|(k, v)| (k, v.into_bytes())).collect())
}

/// The files of a downward API source.
fn downward_files(
    pod: &Pod,
    items: &[k8s_openapi::api::core::v1::DownwardAPIVolumeFile],
) -> Result<Vec<(String, Vec<u8>)>, VolumeError> {
    let mut files = Vec::new();
    for item in items {
        let Some(f) = &item.field_ref else {
            return Err(format!("downwardAPI item {}: only fieldRef is supported", item.path));
        };
        let value = downward_field(pod, &f.field_path)
            .ok_or_else(|| format!("downwardAPI item {}: unsupported fieldPath {}", item.path, f.field_path))?;
        files.push((item.path.clone(), value.into_bytes()));
    }
    Ok(files)
}

/// The files of a ConfigMap or Secret volume: every key, or just `items` (key -> path).
fn pick<'a, V: Clone + Into<Vec<u8>>>(
    data: &BTreeMap<String, V>,
    items: impl Iterator<Item = (&'a str, &'a str)>,
    source: &str,
) -> Result<Vec<(String, Vec<u8>)>, VolumeError> {
    let items: Vec<(&str, &str)> = items.collect();
    if items.is_empty() {
        return Ok(data.iter().map(|(k, v)| (k.clone(), v.clone().into())).collect());
    }
    items
        .into_iter()
        .map(|(key, path)| match data.get(key) {
            Some(v) => Ok((path.to_string(), v.clone().into())),
            None => Err(format!("couldn't find key {key} in {source}")),
        })
        .collect()
}

/// A downward API file: a pod field, or labels/annotations as `key="value"` lines.
fn downward_field(pod: &Pod, path: &str) -> Option<String> {
    let map = match path {
        "metadata.labels" => pod.metadata.labels.as_ref(),
        "metadata.annotations" => pod.metadata.annotations.as_ref(),
        _ => return crate::env::pod_field(pod, path),
    };
    Some(
        map.into_iter()
            .flatten()
            .map(|(k, v)| format!("{k}={}", serde_json::Value::String(v.clone())))
            .collect::<Vec<_>>()
            .join("\n"),
    )
}

/// A volume mount of a container: `source` on the node, seen at `target`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Bind {
    /// The volume's directory (or its `subPath`) on the node.
    pub source: PathBuf,
    /// The container's `mountPath`.
    pub target: PathBuf,
    /// `readOnly`.
    pub read_only: bool,
}

/// What `container`'s volume mounts bind where (a `subPath` is created in its volume if
/// missing). Paths are checked: mount paths are absolute and sub-paths stay inside their
/// volume.
pub fn binds(container: &Container, volumes: &BTreeMap<String, PathBuf>) -> Result<Vec<Bind>, VolumeError> {
    let mut out = Vec::new();
    for m in container.volume_mounts.as_deref().unwrap_or_default() {
        let base = volumes
            .get(&m.name)
            .ok_or_else(|| format!("volume mount {:?} names no volume of the pod", m.name))?;
        let source = match m.sub_path.as_deref().filter(|s| !s.is_empty()) {
            Some(sub) if sub.starts_with('/') || sub.split('/').any(|p| p == "..") => {
                return Err(format!("invalid subPath {sub:?}"));
            }
            Some(sub) => {
                let p = base.join(sub);
                if !p.exists() {
                    std::fs::create_dir_all(&p).map_err(io("creating", &p))?;
                }
                p
            }
            None => base.clone(),
        };
        let target = PathBuf::from(&m.mount_path);
        if !target.is_absolute() || m.mount_path.split('/').any(|p| p == "..") {
            return Err(format!("mountPath {} is not an absolute path without ..", m.mount_path));
        }
        out.push(Bind {
            source,
            target,
            read_only: m.read_only == Some(true),
        });
    }
    Ok(out)
}

/// Makes `container`'s volume mounts available by symbolic links (see the module docs), for
/// a runtime without mount namespaces, recording each link made in `links` so [`unmount`]
/// removes it.
pub fn mount(container: &Container, volumes: &BTreeMap<String, PathBuf>, links: &Path) -> Result<(), VolumeError> {
    let mut made = read_links(links);
    let names = container.volume_mounts.as_deref().unwrap_or_default();
    for (b, m) in binds(container, volumes)?.into_iter().zip(names) {
        let (source, target) = (b.source, b.target);
        if target == source {
            continue;
        }
        // The ServiceAccount token volume every pod gets cannot be linked for more than one
        // pod (nor at all without root): without mount namespaces a container runs without
        // it, as one whose pod turned automounting off.
        if m.mount_path.trim_end_matches('/') == TOKEN_MOUNT_PATH
            && (target.exists() || std::fs::symlink_metadata(&target).is_ok() || !writable_parent(&target))
        {
            tracing::debug!(path = %m.mount_path, "agent: the ServiceAccount token volume is not linked (no mount namespaces)");
            continue;
        }
        match std::fs::read_link(&target) {
            Ok(to) if to == source => continue,
            Ok(to) => {
                return Err(format!(
                    "cannot make volume \"{}\" available at {}: it links to {} (another pod's volume?)",
                    m.name,
                    m.mount_path,
                    to.display()
                ));
            }
            Err(_) if target.exists() => {
                return Err(format!(
                    "cannot make volume \"{}\" available at {}: the path exists on the node (host processes share the node's file system; mount the volume at its own path)",
                    m.name, m.mount_path
                ));
            }
            Err(_) => {}
        }
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(io("creating", parent))?;
        }
        std::os::unix::fs::symlink(&source, &target).map_err(io("linking", &target))?;
        made.push((target, source));
    }
    if let Some(parent) = links.parent() {
        std::fs::create_dir_all(parent).map_err(io("creating", parent))?;
    }
    write_links(links, &made).map_err(io("recording links in", links))
}

/// Where pods' ServiceAccount token volume is mounted.
const TOKEN_MOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// Whether the nearest existing ancestor of `path` may be written to by this process.
fn writable_parent(path: &Path) -> bool {
    path.ancestors()
        .skip(1)
        .find(|a| a.exists())
        .is_some_and(|a| rustix::fs::access(a, rustix::fs::Access::WRITE_OK).is_ok())
}

/// Binds each of `binds` in the calling process's mount namespace (a private one: the shim
/// runs in its own), creating the mount point on the node's tree when it is missing (an
/// empty directory, or an empty file for a file), then making read-only mounts read-only.
pub fn bind_all(binds: &[Bind]) -> Result<(), VolumeError> {
    use rustix::mount::{MountFlags, mount_bind, mount_remount};
    for b in binds {
        if b.source == b.target && !b.read_only {
            continue;
        }
        if !b.target.exists() {
            if b.source.is_dir() {
                std::fs::create_dir_all(&b.target).map_err(io("creating the mount point", &b.target))?;
            } else {
                if let Some(parent) = b.target.parent() {
                    std::fs::create_dir_all(parent).map_err(io("creating", parent))?;
                }
                std::fs::write(&b.target, b"").map_err(io("creating the mount point", &b.target))?;
            }
        }
        mount_bind(&b.source, &b.target)
            .map_err(|e| format!("binding {} at {}: {e}", b.source.display(), b.target.display()))?;
        if b.read_only {
            mount_remount(&b.target, MountFlags::BIND | MountFlags::RDONLY, "")
                .map_err(|e| format!("making {} read-only: {e}", b.target.display()))?;
        }
    }
    Ok(())
}

fn read_links(links: &Path) -> Vec<(PathBuf, PathBuf)> {
    std::fs::read_to_string(links)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .map(|(a, b)| (PathBuf::from(a), PathBuf::from(b)))
        .collect()
}

fn write_links(links: &Path, made: &[(PathBuf, PathBuf)]) -> std::io::Result<()> {
    let text: String = made
        .iter()
        .map(|(a, b)| format!("{}\t{}\n", a.display(), b.display()))
        .collect();
    std::fs::write(links, text)
}

/// Removes the links [`mount`] made (only those still pointing where it made them).
pub fn unmount(links: &Path) {
    for (target, source) in read_links(links) {
        if std::fs::read_link(&target).is_ok_and(|to| to == source) {
            let _ = std::fs::remove_file(&target);
        }
    }
    let _ = std::fs::remove_file(links);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    struct Fixed;

    impl Sources for Fixed {
        fn config_map(&self, _ns: &str, name: &str) -> Option<BTreeMap<String, String>> {
            (name == "cm").then(|| BTreeMap::from([("a.conf".into(), "A".into()), ("b".into(), "B".into())]))
        }
        fn secret(&self, _ns: &str, name: &str) -> Option<BTreeMap<String, Vec<u8>>> {
            (name == "s").then(|| BTreeMap::from([("pw".into(), b"hunter2".to_vec())]))
        }
        fn claim_path(&self, _ns: &str, name: &str) -> Option<PathBuf> {
            (name == "bound").then(|| std::env::temp_dir().join("shoal-volumes-test-claim"))
        }
        fn service_account_token(&self, audience: &str, seconds: i64) -> Option<String> {
            (audience.is_empty()).then(|| format!("token-for-{seconds}s"))
        }
    }

    #[test]
    fn a_projected_volume_holds_every_source_and_is_refreshed_whole() {
        let dir = tempfile::tempdir().unwrap();
        let p = pod(
            json!([{"name": "kube-api-access-x", "projected": {"defaultMode": 0o440, "sources": [
                {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                {"configMap": {"name": "cm", "items": [{"key": "a.conf", "path": "ca.crt"}]}},
                {"secret": {"name": "s"}},
                {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"fieldPath": "metadata.namespace"}}]}},
            ]}}]),
        );
        let pod_dir = dir.path().join("pod");
        let v = prepare(&p, &pod_dir, &Fixed).unwrap();
        let vol = &v["kube-api-access-x"];
        assert_eq!(std::fs::read_to_string(vol.join("token")).unwrap(), "token-for-3607s");
        assert_eq!(std::fs::read_to_string(vol.join("ca.crt")).unwrap(), "A");
        assert_eq!(std::fs::read_to_string(vol.join("pw")).unwrap(), "hunter2");
        assert_eq!(std::fs::read_to_string(vol.join("namespace")).unwrap(), "ns");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(vol.join("token")).unwrap().permissions().mode() & 0o777,
            0o440
        );
        // Prepared again (a refresh): the files are replaced, no temporary file is left.
        prepare(&p, &pod_dir, &Fixed).unwrap();
        let mut names: Vec<String> = std::fs::read_dir(vol)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["ca.crt", "namespace", "pw", "token"]);
        // A token for an audience the server would not issue fails the volume.
        let p = pod(json!([{"name": "t", "projected": {"sources": [
            {"serviceAccountToken": {"audience": "vault", "path": "token"}}]}}]));
        let e = prepare(&p, &dir.path().join("pod2"), &Fixed).unwrap_err();
        assert!(e.contains("failed to fetch token"), "{e}");
    }

    #[test]
    fn claims_use_their_local_volume_once_bound() {
        let dir = tempfile::tempdir().unwrap();
        let v = prepare(
            &pod(json!([{"name": "data", "persistentVolumeClaim": {"claimName": "bound"}}])),
            dir.path(),
            &Fixed,
        )
        .unwrap();
        assert_eq!(v["data"], std::env::temp_dir().join("shoal-volumes-test-claim"));
        assert!(v["data"].is_dir());
        let e = prepare(
            &pod(json!([{"name": "data", "persistentVolumeClaim": {"claimName": "pending"}}])),
            dir.path(),
            &Fixed,
        )
        .unwrap_err();
        assert!(e.contains("is not bound"), "{e}");
    }

    fn pod(volumes: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "ns", "labels": {"app": "x"}},
            "spec": {"nodeName": "n1", "containers": [{"name": "c"}], "volumes": volumes},
        }))
        .unwrap()
    }

    #[test]
    fn every_supported_volume_is_filled() {
        let dir = tempfile::tempdir().unwrap();
        let host = dir.path().join("host/logs");
        let p = pod(json!([
            {"name": "e", "emptyDir": {}},
            {"name": "h", "hostPath": {"path": host, "type": "DirectoryOrCreate"}},
            {"name": "c", "configMap": {"name": "cm", "items": [{"key": "b", "path": "sub/b.txt"}]}},
            {"name": "s", "secret": {"secretName": "s", "defaultMode": 0o400}},
            {"name": "d", "downwardAPI": {"items": [{"path": "node", "fieldRef": {"fieldPath": "spec.nodeName"}},
                                                    {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]}},
        ]));
        let pod_dir = dir.path().join("pod");
        let v = prepare(&p, &pod_dir, &Fixed).unwrap();
        assert!(v["e"].is_dir());
        assert_eq!(v["h"], host);
        assert!(host.is_dir());
        assert_eq!(std::fs::read_to_string(v["c"].join("sub/b.txt")).unwrap(), "B");
        assert!(!v["c"].join("a.conf").exists(), "items pick keys");
        assert_eq!(std::fs::read_to_string(v["s"].join("pw")).unwrap(), "hunter2");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(v["s"].join("pw")).unwrap().permissions().mode() & 0o777,
            0o400
        );
        assert_eq!(std::fs::read_to_string(v["d"].join("node")).unwrap(), "n1");
        assert_eq!(std::fs::read_to_string(v["d"].join("labels")).unwrap(), "app=\"x\"");
    }

    #[test]
    fn missing_sources_are_errors_unless_optional() {
        let dir = tempfile::tempdir().unwrap();
        let e = prepare(
            &pod(json!([{"name": "c", "configMap": {"name": "nope"}}])),
            dir.path(),
            &Fixed,
        )
        .unwrap_err();
        assert_eq!(e, "configmap \"nope\" not found");
        prepare(
            &pod(json!([{"name": "c", "configMap": {"name": "nope", "optional": true}}])),
            dir.path(),
            &Fixed,
        )
        .unwrap();
        let e = prepare(
            &pod(json!([{"name": "n", "nfs": {"server": "x", "path": "/"}}])),
            dir.path(),
            &Fixed,
        )
        .unwrap_err();
        assert!(e.contains("supports hostPath"), "{e}");
    }

    #[test]
    fn mounts_link_other_paths_and_leave_same_paths_and_foreign_paths_alone() {
        let dir = tempfile::tempdir().unwrap();
        let vol = dir.path().join("vol");
        std::fs::create_dir_all(&vol).unwrap();
        let taken = dir.path().join("taken");
        std::fs::create_dir_all(&taken).unwrap();
        let volumes = BTreeMap::from([("v".to_string(), vol.clone())]);
        let links = dir.path().join("links");
        let at = dir.path().join("app/data");
        let c: Container = serde_json::from_value(json!({"name": "c", "volumeMounts": [
            {"name": "v", "mountPath": at}, {"name": "v", "mountPath": vol}]}))
        .unwrap();
        mount(&c, &volumes, &links).unwrap();
        assert_eq!(std::fs::read_link(&at).unwrap(), vol);
        mount(&c, &volumes, &links).unwrap();
        let bad: Container =
            serde_json::from_value(json!({"name": "c", "volumeMounts": [{"name": "v", "mountPath": taken}]})).unwrap();
        assert!(
            mount(&bad, &volumes, &links)
                .unwrap_err()
                .contains("exists on the node")
        );
        unmount(&links);
        assert!(std::fs::symlink_metadata(&at).is_err(), "link removed");
        assert!(taken.is_dir() && vol.is_dir());
    }
}
