//! Local storage, as k3s's local-path provisioner gives it: a default StorageClass
//! `local-path` (`WaitForFirstConsumer`, reclaim `Delete`), and a controller that, once a
//! pod using a pending claim is placed on a node, creates a hostPath PersistentVolume for
//! it on that node and binds the two.
//!
//! A volume's directory is `<dir>/pvc-<uid>_<namespace>_<claim>`, where `<dir>` is the
//! node's annotation `shoal.dev/storage-dir` (real nodes: under the agent's data dir) or
//! else the server's storage dir (simulated nodes). Claims without a class use the default
//! class. A volume whose claim is gone is deleted (its directory too, when local) under
//! `Delete`, and marked `Released` under `Retain`.

use shoal_runtime::controller::{Error, Pacer, ignore_not_found};
use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use crate::events::{EventType, ObjectRef, Recorder};
use crate::informer::{self, Informers, name as name_of, uid as uid_of};

const MANAGER: &str = "persistentvolume-controller";
/// The default StorageClass.
pub const LOCAL_PATH: &str = "local-path";
/// Its provisioner: k3s's (and the public local-path-provisioner's) name, so applying that
/// project's manifest over the built-in class changes nothing it cannot change.
pub const PROVISIONER: &str = "rancher.io/local-path";
/// The beta annotation that named a claim's class before `spec.storageClassName`.
pub const BETA_CLASS_ANNOTATION: &str = "volume.beta.kubernetes.io/storage-class";
/// The node annotation naming where its local volumes live.
pub const STORAGE_DIR_ANNOTATION: &str = shoal_api::NODE_STORAGE_DIR;
const DEFAULT_CLASS: &str = "storageclass.kubernetes.io/is-default-class";

/// The `local-path` StorageClass.
pub fn local_path_class() -> Value {
    json!({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
           "metadata": {"name": LOCAL_PATH, "annotations": {DEFAULT_CLASS: "true"}},
           "provisioner": PROVISIONER, "reclaimPolicy": "Delete", "volumeBindingMode": "WaitForFirstConsumer"})
}

/// The class a claim uses: its own (`spec.storageClassName`, else the beta annotation), or
/// the default.
fn class_of<'a>(pvc: &'a Value, classes: &'a [std::sync::Arc<Value>]) -> Option<&'a Value> {
    let named = pvc["spec"]["storageClassName"]
        .as_str()
        .or_else(|| pvc["metadata"]["annotations"][BETA_CLASS_ANNOTATION].as_str());
    match named {
        Some(name) => classes.iter().map(|c| &**c).find(|c| name_of(c) == name),
        None => classes
            .iter()
            .map(|c| &**c)
            .find(|c| c["metadata"]["annotations"][DEFAULT_CLASS] == "true"),
    }
}

/// The node of the first placed pod in the claim's namespace that uses it.
pub fn consumer_node<'a>(pvc: &Value, pods: &'a [std::sync::Arc<Value>]) -> Option<&'a str> {
    let ns = informer::namespace(pvc);
    let claim = name_of(pvc);
    pods.iter()
        .filter(|p| informer::namespace(p) == ns && !informer::deleting(p))
        .filter(|p| {
            p["spec"]["volumes"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|v| v["persistentVolumeClaim"]["claimName"] == claim)
        })
        .find_map(|p| p["spec"]["nodeName"].as_str().filter(|n| !n.is_empty()))
}

/// The volume for `pvc` on `node`, in `dir`.
pub fn volume_for(pvc: &Value, class: &Value, node: &str, dir: &str) -> Value {
    let ns = informer::namespace(pvc);
    let name = format!("pvc-{}", uid_of(pvc));
    let size = pvc["spec"]["resources"]["requests"]["storage"].clone();
    let size = if size.is_null() { json!("1Gi") } else { size };
    json!({"apiVersion": "v1", "kind": "PersistentVolume",
    "metadata": {"name": name, "annotations": {"pv.kubernetes.io/provisioned-by": PROVISIONER}},
    "spec": {
        "capacity": {"storage": size},
        "accessModes": pvc["spec"]["accessModes"],
        "persistentVolumeReclaimPolicy": class["reclaimPolicy"].as_str().unwrap_or("Delete"),
        "storageClassName": name_of(class),
        "volumeMode": pvc["spec"]["volumeMode"].as_str().unwrap_or("Filesystem"),
        "hostPath": {"path": format!("{}/{name}_{ns}_{}", dir.trim_end_matches('/'), name_of(pvc)), "type": "DirectoryOrCreate"},
        "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
            {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}]}]}},
        "claimRef": {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "namespace": ns,
                     "name": name_of(pvc), "uid": uid_of(pvc)},
    }})
}

/// Runs the controller until the process ends; `local_dir` is where volumes of nodes
/// without a storage dir live. The `local-path` StorageClass is installed with
/// `installer` (as k3s installs its bundled manifests, with the server's rights: the
/// volume binder's role may not make classes).
pub async fn run(client: kube::Client, installer: kube::Client, informers: Informers, local_dir: Option<PathBuf>) {
    let recorder = Recorder::new(client.clone(), MANAGER);
    let classes: Api<StorageClass> = Api::all(installer);
    informers.ready().await;
    if informers
        .of("storage.k8s.io", "storageclasses")
        .iter()
        .all(|c| name_of(c) != LOCAL_PATH)
        && let Ok(class) = serde_json::from_value::<StorageClass>(local_path_class())
    {
        match classes.create(&PostParams::default(), &class).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => tracing::warn!(error = %e, "creating the local-path StorageClass failed"),
        }
    }
    let interest = informers.interest(&[
        ("", "persistentvolumeclaims"),
        ("", "persistentvolumes"),
        ("", "pods"),
        ("storage.k8s.io", "storageclasses"),
    ]);
    informers.ready().await;
    let mut pacer = Pacer::new("persistentvolume", interest, |_| Duration::from_millis(20));
    loop {
        pacer
            .pass(&informers, async {
                let mut failure: Option<Error> = None;
                if let Err(e) = pass(&client, &recorder, &informers, local_dir.as_deref()).await {
                    failure.get_or_insert(e.into());
                }
                failure.map_or(Ok(Duration::from_secs(10)), Err)
            })
            .await;
    }
}

async fn pass(
    client: &kube::Client,
    recorder: &Recorder,
    informers: &Informers,
    local_dir: Option<&std::path::Path>,
) -> Result<(), kube::Error> {
    let claims = informers.of("", "persistentvolumeclaims");
    let volumes = informers.of("", "persistentvolumes");
    if claims.is_empty() && volumes.is_empty() {
        // Nothing to bind or reclaim: pods and nodes are not even looked at.
        return Ok(());
    }
    let classes = informers.of("storage.k8s.io", "storageclasses");
    let pods = informers.of("", "pods");
    let nodes = informers.of("", "nodes");
    let pv_api: Api<PersistentVolume> = Api::all(client.clone());
    let pp = PatchParams {
        field_manager: Some(MANAGER.into()),
        ..Default::default()
    };
    for pvc in &claims {
        if informer::deleting(pvc) || pvc["status"]["phase"] == "Bound" {
            continue;
        }
        let ns = informer::namespace(pvc);
        let pvc_api: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
        let about = ObjectRef::of("v1", "PersistentVolumeClaim", pvc);
        // A volume already made for it (a pass that stopped half-way): bind it.
        let existing = volumes
            .iter()
            .find(|v| v["spec"]["claimRef"]["uid"].as_str() == Some(uid_of(pvc)));
        let volume = match existing {
            Some(v) => (**v).clone(),
            None => {
                let Some(class) = class_of(pvc, &classes) else {
                    continue;
                };
                if class["provisioner"] != PROVISIONER {
                    continue;
                }
                let Some(node) = consumer_node(pvc, &pods) else {
                    if pvc["status"]["phase"].as_str().is_none_or(str::is_empty) {
                        let patch = json!({"status": {"phase": "Pending"}});
                        ignore_not_found(pvc_api.patch_status(name_of(pvc), &pp, &Patch::Merge(patch)).await)?;
                        recorder
                            .record(
                                &about,
                                EventType::Normal,
                                "WaitForFirstConsumer",
                                "waiting for first consumer to be created before binding",
                            )
                            .await;
                    }
                    continue;
                };
                let node_dir = nodes.iter().find(|n| name_of(n) == node).and_then(|n| {
                    n["metadata"]["annotations"][STORAGE_DIR_ANNOTATION]
                        .as_str()
                        .map(str::to_string)
                });
                let local = node_dir.is_none();
                let Some(dir) = node_dir.or_else(|| local_dir.map(|d| d.display().to_string())) else {
                    continue;
                };
                let body = volume_for(pvc, class, node, &dir);
                if local && let Some(path) = body["spec"]["hostPath"]["path"].as_str() {
                    // A directory that cannot be made is the pod's failure to mount, later.
                    if let Err(e) = tokio::fs::create_dir_all(path).await {
                        tracing::warn!(path, error = %e, "making a local volume's directory failed");
                    }
                }
                let pv: PersistentVolume = serde_json::from_value(body.clone()).map_err(kube::Error::SerdeError)?;
                match pv_api.create(&PostParams::default(), &pv).await {
                    Ok(_) | Err(kube::Error::Api(_)) => {}
                    Err(e) => return Err(e),
                }
                let msg = format!("Successfully provisioned volume {} using {PROVISIONER}", name_of(&body));
                recorder
                    .record(&about, EventType::Normal, "ProvisioningSucceeded", &msg)
                    .await;
                body
            }
        };
        let pv_name = name_of(&volume).to_string();
        if pvc["spec"]["volumeName"].as_str().is_none_or(str::is_empty) {
            let patch = json!({"metadata": {"annotations": {"pv.kubernetes.io/bind-completed": "yes",
                                                            "pv.kubernetes.io/bound-by-controller": "yes",
                                                            "volume.kubernetes.io/storage-provisioner": PROVISIONER}},
                               "spec": {"volumeName": pv_name}});
            pvc_api.patch(name_of(pvc), &pp, &Patch::Merge(patch)).await?;
        }
        let pv_status = json!({"status": {"phase": "Bound"}});
        pv_api.patch_status(&pv_name, &pp, &Patch::Merge(pv_status)).await?;
        let status = json!({"status": {"phase": "Bound", "accessModes": volume["spec"]["accessModes"],
                                        "capacity": volume["spec"]["capacity"]}});
        pvc_api.patch_status(name_of(pvc), &pp, &Patch::Merge(status)).await?;
    }
    // Volumes whose claims are gone.
    for pv in &volumes {
        let Some(claim_uid) = pv["spec"]["claimRef"]["uid"].as_str() else {
            if pv["status"]["phase"].as_str().is_none_or(str::is_empty) {
                let _ = pv_api
                    .patch_status(
                        name_of(pv),
                        &pp,
                        &Patch::Merge(json!({"status": {"phase": "Available"}})),
                    )
                    .await;
            }
            continue;
        };
        if claims.iter().any(|c| uid_of(c) == claim_uid) || informer::deleting(pv) {
            continue;
        }
        if pv["spec"]["persistentVolumeReclaimPolicy"] == "Delete"
            && pv["metadata"]["annotations"]["pv.kubernetes.io/provisioned-by"] == PROVISIONER
        {
            if let (Some(path), Some(dir)) = (pv["spec"]["hostPath"]["path"].as_str(), local_dir)
                && std::path::Path::new(path).starts_with(dir)
            {
                // Off the runtime's threads: a large volume takes a while to remove.
                match tokio::fs::remove_dir_all(path).await {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => tracing::warn!(path, error = %e, "removing a released local volume failed"),
                }
            }
            ignore_not_found(pv_api.delete(name_of(pv), &DeleteParams::default()).await)?;
        } else if pv["status"]["phase"] != "Released" {
            ignore_not_found(
                pv_api
                    .patch_status(
                        name_of(pv),
                        &pp,
                        &Patch::Merge(json!({"status": {"phase": "Released"}})),
                    )
                    .await,
            )?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn claims_wait_for_a_placed_consumer() {
        let pvc = json!({"metadata": {"name": "www-web-0", "namespace": "default", "uid": "c1"}});
        let unplaced = Arc::new(json!({"metadata": {"name": "web-0", "namespace": "default"},
            "spec": {"volumes": [{"name": "www", "persistentVolumeClaim": {"claimName": "www-web-0"}}]}}));
        assert_eq!(consumer_node(&pvc, std::slice::from_ref(&unplaced)), None);
        let mut placed = (*unplaced).clone();
        placed["spec"]["nodeName"] = json!("node2");
        assert_eq!(consumer_node(&pvc, &[Arc::new(placed)]), Some("node2"));
    }

    #[test]
    fn volumes_are_host_paths_pinned_to_the_node_and_bound_to_the_claim() {
        let pvc = json!({"metadata": {"name": "www-web-0", "namespace": "default", "uid": "c1"},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}});
        let v = volume_for(&pvc, &local_path_class(), "node2", "/data/storage/");
        assert_eq!(v["metadata"]["name"], "pvc-c1");
        assert_eq!(v["spec"]["hostPath"]["path"], "/data/storage/pvc-c1_default_www-web-0");
        assert_eq!(v["spec"]["capacity"]["storage"], "1Gi");
        assert_eq!(v["spec"]["claimRef"]["uid"], "c1");
        assert_eq!(v["spec"]["persistentVolumeReclaimPolicy"], "Delete");
        assert_eq!(
            v["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0]["values"][0],
            "node2"
        );
        let classes = [Arc::new(local_path_class())];
        assert_eq!(
            class_of(&pvc, &classes).map(name_of),
            Some(LOCAL_PATH),
            "the default class"
        );
    }
}
