//! Revisions and daemon pods: the template hash, ControllerRevision data, and the pod made
//! from the template for one node.

use serde_json::{Value, json};

use super::facts::{REVISION_HASH_LABEL, TEMPLATE_GENERATION_ANNOTATION, TEMPLATE_GENERATION_LABEL};
use super::placement::add_automatic_tolerations;

/// Characters upstream uses for generated names and hashes (no vowels, no confusable digits).
const SAFE: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

fn fnv32a(bytes: &[u8], mut h: u32) -> u32 {
    for b in bytes {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// The revision hash of a DaemonSet's template: FNV-32a over the template's JSON (keys
/// sorted), with `collisionCount` mixed in when set, written in the safe alphabet. A valid
/// label value, deterministic for equal templates.
pub fn template_hash(ds: &Value) -> String {
    template_hash_with(ds, ds["status"]["collisionCount"].as_i64())
}

/// [`template_hash`] with the collision count given (`None`: none mixed in).
pub fn template_hash_with(obj: &Value, collisions: Option<i64>) -> String {
    let template = serde_json::to_vec(&obj["spec"]["template"]).unwrap_or_default();
    let mut h = fnv32a(&template, 0x811c_9dc5);
    if let Some(c) = collisions {
        h = fnv32a(&(c as u32).to_le_bytes(), h);
    }
    h.to_string()
        .bytes()
        .map(|b| SAFE[usize::from(b) % SAFE.len()] as char)
        .collect()
}

/// A ControllerRevision's `data`: a strategic merge patch that restores the template.
pub fn revision_data(ds: &Value) -> Value {
    let mut template = ds["spec"]["template"].clone();
    if let Some(m) = template.as_object_mut() {
        m.insert("$patch".into(), json!("replace"));
    }
    json!({"spec": {"template": template}})
}

/// A template with its containers' images left out (what an in-place update may change).
fn without_images(template: &Value) -> Value {
    let mut t = template.clone();
    if let Some(m) = t.as_object_mut() {
        m.remove("$patch");
    }
    for key in ["containers", "initContainers"] {
        if let Some(list) = t["spec"][key].as_array_mut() {
            for c in list {
                if let Some(c) = c.as_object_mut() {
                    c.remove("image");
                }
            }
        }
    }
    t
}

/// The revision hashes (of `revisions`, the DaemonSet's ControllerRevisions) whose template
/// differs from the current one only in its containers' images.
pub fn image_only_revisions(ds: &Value, revisions: &[std::sync::Arc<Value>]) -> std::collections::HashSet<String> {
    let current = without_images(&ds["spec"]["template"]);
    let uid = ds["metadata"]["uid"].as_str();
    revisions
        .iter()
        .filter(|r| {
            r["metadata"]["ownerReferences"]
                .as_array()
                .is_some_and(|o| o.iter().any(|o| o["uid"].as_str() == uid))
        })
        .filter(|r| without_images(&r["data"]["spec"]["template"]) == current)
        .filter_map(|r| r["metadata"]["labels"][REVISION_HASH_LABEL].as_str().map(String::from))
        .collect()
}

/// The patch that moves a daemon pod to the current template in place: its containers'
/// images (merged by name) and its revision labels.
pub fn in_place_patch(ds: &Value, hash: &str) -> Value {
    let spec = &ds["spec"]["template"]["spec"];
    let images = |key: &str| -> Vec<Value> {
        spec[key]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| json!({"name": c["name"], "image": c["image"]}))
            .collect()
    };
    let mut labels = json!({ REVISION_HASH_LABEL: hash });
    if let Some(g) = ds["metadata"]["annotations"][super::facts::TEMPLATE_GENERATION_ANNOTATION].as_str() {
        labels[super::facts::TEMPLATE_GENERATION_LABEL] = json!(g);
    }
    let mut patch = json!({"metadata": {"labels": labels}, "spec": {"containers": images("containers")}});
    let init = images("initContainers");
    if !init.is_empty() {
        patch["spec"]["initContainers"] = json!(init);
    }
    patch
}

/// The controller ownerReference of objects a DaemonSet owns.
pub fn owner_reference(ds: &Value) -> Value {
    crate::informer::controller_ref("apps/v1", "DaemonSet", ds)
}

/// The ControllerRevision for the DaemonSet's current template.
pub fn controller_revision(ds: &Value, hash: &str, revision: i64) -> Value {
    let mut labels = ds["spec"]["template"]["metadata"]["labels"].clone();
    if !labels.is_object() {
        labels = json!({});
    }
    labels[REVISION_HASH_LABEL] = json!(hash);
    let mut meta = json!({
        "name": format!("{}-{hash}", ds["metadata"]["name"].as_str().unwrap_or_default()),
        "namespace": ds["metadata"]["namespace"],
        "labels": labels,
        "ownerReferences": [owner_reference(ds)],
    });
    if let Some(a) = ds["metadata"]["annotations"].as_object().filter(|a| !a.is_empty()) {
        meta["annotations"] = Value::Object(a.clone());
    }
    json!({"apiVersion": "apps/v1", "kind": "ControllerRevision", "metadata": meta,
           "data": revision_data(ds), "revision": revision})
}

/// The daemon pod for `node`: the template with the revision labels, the automatic
/// tolerations, and a required node affinity naming the node (the scheduler binds it).
pub fn daemon_pod(ds: &Value, node: &str, hash: &str) -> Value {
    let template = &ds["spec"]["template"];
    let mut labels = template["metadata"]["labels"].clone();
    if !labels.is_object() {
        labels = json!({});
    }
    labels[REVISION_HASH_LABEL] = json!(hash);
    if let Some(g) = ds["metadata"]["annotations"][TEMPLATE_GENERATION_ANNOTATION].as_str() {
        labels[TEMPLATE_GENERATION_LABEL] = json!(g);
    }
    let mut meta = json!({
        "generateName": format!("{}-", ds["metadata"]["name"].as_str().unwrap_or_default()),
        "namespace": ds["metadata"]["namespace"],
        "labels": labels,
        "ownerReferences": [owner_reference(ds)],
    });
    for k in ["annotations", "finalizers"] {
        if let Some(v) = template["metadata"].get(k).filter(|v| !v.is_null()) {
            meta[k] = v.clone();
        }
    }
    let mut spec = template["spec"].clone();
    if !spec.is_object() {
        spec = json!({});
    }
    add_automatic_tolerations(&mut spec);
    let pinned =
        json!({"nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node]}]}]});
    if !spec["affinity"].is_object() {
        spec["affinity"] = json!({});
    }
    if !spec["affinity"]["nodeAffinity"].is_object() {
        spec["affinity"]["nodeAffinity"] = json!({});
    }
    spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"] = pinned;
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec})
}

/// Old revisions to delete so that at most `limit` remain besides the current one (whose
/// `data` is `current`): lowest revision first, never one whose hash a pod still carries.
pub fn revisions_to_prune<'a>(
    mine: &[&'a Value],
    current: &Value,
    in_use: &std::collections::HashSet<&str>,
    limit: usize,
) -> Vec<&'a Value> {
    let mut old: Vec<&Value> = mine.iter().copied().filter(|c| c["data"] != *current).collect();
    if old.len() <= limit {
        return Vec::new();
    }
    old.sort_by_key(|c| c["revision"].as_i64().unwrap_or(0));
    let excess = old.len() - limit;
    old.into_iter()
        .filter(|c| {
            !c["metadata"]["labels"][REVISION_HASH_LABEL]
                .as_str()
                .is_some_and(|h| in_use.contains(h))
        })
        .take(excess)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_only_revisions_are_found_and_patched_in_place() {
        let ds = json!({"metadata": {"name": "d", "uid": "u", "annotations": {"deprecated.daemonset.template.generation": "3"}},
            "spec": {"template": {"metadata": {"labels": {"app": "d"}},
                "spec": {"containers": [{"name": "c", "image": "nginx:2", "args": ["x"]}]}}}});
        let rev = |hash: &str, image: &str, args: &str| {
            let mut old = ds.clone();
            old["spec"]["template"]["spec"]["containers"][0]["image"] = json!(image);
            old["spec"]["template"]["spec"]["containers"][0]["args"] = json!([args]);
            std::sync::Arc::new(controller_revision(&old, hash, 1))
        };
        let revisions = vec![rev("h1", "nginx:1", "x"), rev("h2", "nginx:1", "y")];
        let found = image_only_revisions(&ds, &revisions);
        assert!(found.contains("h1") && !found.contains("h2"), "{found:?}");
        let p = in_place_patch(&ds, "h3");
        assert_eq!(p["spec"]["containers"], json!([{"name": "c", "image": "nginx:2"}]));
        assert_eq!(
            p["metadata"]["labels"],
            json!({"controller-revision-hash": "h3", "pod-template-generation": "3"})
        );
    }

    fn ds() -> Value {
        json!({"metadata": {"name": "web", "namespace": "default", "uid": "u1",
                            "annotations": {TEMPLATE_GENERATION_ANNOTATION: "3"}},
               "spec": {"template": {"metadata": {"labels": {"app": "web"}},
                                     "spec": {"containers": [{"name": "c", "image": "nginx"}],
                                              "affinity": {"nodeAffinity": {
                                                  "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                                                      {"matchExpressions": [{"key": "x", "operator": "Exists"}]}]},
                                                  "preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 1, "preference": {}}]}}}}}})
    }

    #[test]
    fn hashes_are_stable_label_values_that_follow_the_template_and_collisions() {
        let a = template_hash(&ds());
        assert_eq!(a, template_hash(&ds()));
        assert!(a.bytes().all(|b| SAFE.contains(&b)) && !a.is_empty() && a.len() <= 10);
        let mut changed = ds();
        changed["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx:2");
        assert_ne!(a, template_hash(&changed));
        let mut collided = ds();
        collided["status"]["collisionCount"] = json!(1);
        assert_ne!(a, template_hash(&collided));
    }

    #[test]
    fn daemon_pods_are_pinned_labelled_and_owned() {
        let pod = daemon_pod(&ds(), "node2", "abc");
        let m = &pod["metadata"];
        assert_eq!(m["generateName"], "web-");
        assert_eq!(
            m["labels"],
            json!({"app": "web", REVISION_HASH_LABEL: "abc", TEMPLATE_GENERATION_LABEL: "3"})
        );
        assert_eq!(m["ownerReferences"][0]["controller"], true);
        assert_eq!(m["ownerReferences"][0]["uid"], "u1");
        let na = &pod["spec"]["affinity"]["nodeAffinity"];
        assert_eq!(
            na["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"],
            json!([{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["node2"]}]}])
        );
        assert!(
            na["preferredDuringSchedulingIgnoredDuringExecution"].is_array(),
            "preferred terms are kept"
        );
        assert_eq!(pod["spec"]["tolerations"].as_array().unwrap().len(), 6);
    }

    #[test]
    fn history_keeps_the_newest_and_those_in_use() {
        let cr = |rev: i64, hash: &str| json!({"revision": rev, "data": {"v": rev}, "metadata": {"labels": {REVISION_HASH_LABEL: hash}}});
        let all = [cr(1, "a"), cr(2, "b"), cr(3, "c"), cr(4, "d")];
        let refs: Vec<&Value> = all.iter().collect();
        let current = json!({"v": 4});
        let none = std::collections::HashSet::new();
        let pruned: Vec<i64> = revisions_to_prune(&refs, &current, &none, 1)
            .iter()
            .map(|c| c["revision"].as_i64().unwrap())
            .collect();
        assert_eq!(pruned, [1, 2]);
        let used: std::collections::HashSet<&str> = ["a"].into();
        let pruned: Vec<i64> = revisions_to_prune(&refs, &current, &used, 1)
            .iter()
            .map(|c| c["revision"].as_i64().unwrap())
            .collect();
        assert_eq!(
            pruned,
            [2, 3],
            "revision 1 still runs somewhere, so newer ones go instead"
        );
        let all_used: std::collections::HashSet<&str> = ["a", "b", "c"].into();
        assert!(
            revisions_to_prune(&refs, &current, &all_used, 1).is_empty(),
            "in use: above the limit"
        );
        assert!(revisions_to_prune(&refs, &current, &none, 10).is_empty());
    }

    #[test]
    fn revisions_restore_the_template() {
        let cr = controller_revision(&ds(), "abc", 2);
        assert_eq!(cr["metadata"]["name"], "web-abc");
        assert_eq!(cr["revision"], 2);
        assert_eq!(cr["data"]["spec"]["template"]["$patch"], "replace");
        assert_eq!(cr["metadata"]["labels"][REVISION_HASH_LABEL], "abc");
        assert_eq!(cr["metadata"]["annotations"][TEMPLATE_GENERATION_ANNOTATION], "3");
    }
}
