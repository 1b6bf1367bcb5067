//! The garbage collector: ownerReference-based cascading deletion.
//!
//! - A dependent none of whose owners exists any more is deleted (Background propagation).
//! - Owner references to owners that are gone are dropped when other owners remain.
//! - An owner deleted with `propagationPolicy: Orphan` carries the `orphan` finalizer: its
//!   dependents lose their reference to it, then the finalizer is removed.
//! - An owner deleted with `Foreground` carries `foregroundDeletion`: its dependents are
//!   deleted first, then the finalizer is removed.
//!
//! Before deleting a dependent, the owner is looked up through the API (not the cache), so a
//! cache that has not yet seen a new owner never causes a wrong deletion.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PropagationPolicy};
use serde_json::{Value, json};
use shoal_api::catalogue::{self, Resource};

use crate::informer::{self, Informers, Memo, api_resource};

/// Finalizer an Orphan delete adds.
pub const ORPHAN: &str = "orphan";
/// Finalizer a Foreground delete adds.
pub const FOREGROUND: &str = "foregroundDeletion";

/// An object as the collector sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    /// Its resource.
    pub res: &'static Resource,
    /// Namespace (empty for cluster-scoped).
    pub namespace: String,
    /// Name.
    pub name: String,
    /// UID.
    pub uid: String,
    /// Owner UIDs with their kind and name.
    pub owners: Vec<(String, String, String)>,
    /// Being deleted.
    pub deleting: bool,
    /// Finalizers.
    pub finalizers: Vec<String>,
}

/// What the collector decides to do.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Delete the dependent (its owners are all gone, or one is being deleted in foreground).
    Delete(usize),
    /// Drop the owner references with these UIDs from the object.
    DropOwners(usize, Vec<String>),
    /// Remove a finalizer from the object.
    RemoveFinalizer(usize, &'static str),
}

/// Plans the collector's actions over a snapshot of every object (or of every object that
/// has owners, is being deleted, or is some object's owner: the others change nothing).
pub fn plan<N: std::borrow::Borrow<Node>>(nodes: &[N]) -> Vec<Action> {
    let nodes: Vec<&Node> = nodes.iter().map(|n| n.borrow()).collect();
    let by_uid: HashMap<&str, &Node> = nodes.iter().map(|n| (n.uid.as_str(), *n)).collect();
    let mut has_dependents: HashSet<&str> = HashSet::new();
    let mut actions = Vec::new();
    for (i, n) in nodes.iter().enumerate() {
        if n.owners.is_empty() {
            continue;
        }
        let mut dead = Vec::new();
        let mut orphaning = Vec::new();
        let mut foreground = false;
        for (uid, _, _) in &n.owners {
            match by_uid.get(uid.as_str()) {
                None => dead.push(uid.clone()),
                Some(o) => {
                    has_dependents.insert(o.uid.as_str());
                    if o.deleting && o.finalizers.iter().any(|f| f == ORPHAN) {
                        orphaning.push(uid.clone());
                    } else if o.deleting && o.finalizers.iter().any(|f| f == FOREGROUND) {
                        foreground = true;
                    }
                }
            }
        }
        // Every owner gone, or an owner deleted in the foreground: the dependent goes too.
        if dead.len() == n.owners.len() || foreground {
            if !n.deleting {
                actions.push(Action::Delete(i));
            }
        } else if !dead.is_empty() || !orphaning.is_empty() {
            dead.extend(orphaning);
            actions.push(Action::DropOwners(i, dead));
        }
    }
    for (i, n) in nodes.iter().enumerate() {
        if !n.deleting || has_dependents.contains(n.uid.as_str()) {
            continue;
        }
        for f in [ORPHAN, FOREGROUND] {
            if n.finalizers.iter().any(|x| x == f) {
                actions.push(Action::RemoveFinalizer(i, f));
            }
        }
    }
    actions
}

fn to_node(res: &'static Resource, o: &Value) -> Node {
    let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
    Node {
        res,
        namespace: informer::namespace(o).to_string(),
        name: informer::name(o).to_string(),
        uid: informer::uid(o).to_string(),
        owners: owner_refs(o)
            .iter()
            .map(|r| (s(&r["uid"]), s(&r["kind"]), s(&r["name"])))
            .collect(),
        deleting: informer::deleting(o),
        finalizers: o["metadata"]["finalizers"]
            .as_array()
            .map(|fs| fs.iter().filter_map(|f| f.as_str().map(String::from)).collect())
            .unwrap_or_default(),
    }
}

fn owner_refs(o: &Value) -> &[Value] {
    o["metadata"]["ownerReferences"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
}

fn api_for(client: &kube::Client, n: &Node) -> Api<DynamicObject> {
    let ar = api_resource(n.res);
    if n.res.namespaced {
        Api::namespaced_with(client.clone(), &n.namespace, &ar)
    } else {
        Api::all_with(client.clone(), &ar)
    }
}

/// True when some owner of `n` still exists with the referenced UID (asked of the API).
async fn any_owner_alive(client: &kube::Client, n: &Node, raw: &Value) -> bool {
    for r in owner_refs(raw) {
        let api_version = r["apiVersion"].as_str().unwrap_or_default();
        let (kind, name, uid) = (
            r["kind"].as_str().unwrap_or_default(),
            r["name"].as_str().unwrap_or_default(),
            r["uid"].as_str().unwrap_or_default(),
        );
        let group = api_version.rsplit_once('/').map(|(g, _)| g).unwrap_or("");
        let Some(res) = catalogue::find_kind(group, kind) else {
            continue;
        };
        let owner = Node {
            res,
            namespace: n.namespace.clone(),
            name: name.to_string(),
            uid: String::new(),
            owners: vec![],
            deleting: false,
            finalizers: vec![],
        };
        match api_for(client, &owner).get_opt(name).await {
            Ok(Some(o)) if o.metadata.uid.as_deref() == Some(uid) => return true,
            Ok(_) => {}
            Err(_) => return true,
        }
    }
    false
}

/// Runs the collector until the process ends.
pub async fn run(client: kube::Client, informers: Informers) {
    informers.ready().await;
    tracing::debug!("garbage collector: caches ready");
    let mut interest = informers.ownership_interest();
    // The collector's view of each object, converted once per version of it.
    let mut memo: Memo<Node> = Memo::default();
    loop {
        let pass = std::time::Instant::now();
        let snapshot: Vec<(&'static Resource, Arc<Value>)> = informers.all();
        let all = memo.refresh(&snapshot, |(_, o)| o, |(r, o)| to_node(r, o));
        let owners: HashSet<&str> = all
            .iter()
            .flat_map(|n| n.owners.iter().map(|(uid, _, _)| uid.as_str()))
            .collect();
        let (relevant, nodes): (Vec<&(&'static Resource, Arc<Value>)>, Vec<&Node>) = snapshot
            .iter()
            .zip(all.iter().copied())
            .filter(|(_, n)| !n.owners.is_empty() || n.deleting || owners.contains(n.uid.as_str()))
            .unzip();
        let raws: Vec<&Value> = relevant.iter().map(|(_, o)| &**o).collect();
        let actions = plan(&nodes);
        tracing::debug!(
            objects = nodes.len(),
            actions = actions.len(),
            "garbage collector: pass"
        );
        for action in actions {
            if let Err(e) = apply(&client, &nodes, &raws, action).await {
                tracing::debug!(error = %e, "garbage collector: action failed; will retry");
            }
        }
        // Level-triggered: wake when ownership changes somewhere, and at least every few
        // seconds; a pass is O(objects), so passes are at least four times their own length
        // apart (the collector takes at most a fifth of a core).
        let took = pass.elapsed();
        informers.wait(&mut interest, Duration::from_secs(5)).await;
        tokio::time::sleep((4 * took).clamp(Duration::from_millis(250), Duration::from_secs(2))).await;
    }
}

async fn apply(client: &kube::Client, nodes: &[&Node], raws: &[&Value], action: Action) -> Result<(), kube::Error> {
    let pp = PatchParams {
        field_manager: Some("garbage-collector".into()),
        ..Default::default()
    };
    match action {
        Action::Delete(i) => {
            let n = &nodes[i];
            if any_owner_alive(client, n, raws[i]).await
                && !n.owners.iter().any(|(uid, _, _)| {
                    nodes
                        .iter()
                        .any(|o| &o.uid == uid && o.deleting && o.finalizers.iter().any(|f| f == FOREGROUND))
                })
            {
                return Ok(());
            }
            let dp = DeleteParams {
                propagation_policy: Some(PropagationPolicy::Background),
                ..Default::default()
            };
            match api_for(client, n).delete(&n.name, &dp).await {
                Ok(_) => Ok(()),
                Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
                Err(e) => Err(e),
            }
        }
        Action::DropOwners(i, uids) => {
            let n = &nodes[i];
            let raw = raws[i];
            let keep: Vec<_> = owner_refs(raw)
                .iter()
                .filter(|r| !uids.iter().any(|u| r["uid"] == u.as_str()))
                .cloned()
                .collect();
            let patch =
                json!({"metadata": {"ownerReferences": keep, "resourceVersion": raw["metadata"]["resourceVersion"]}});
            api_for(client, n)
                .patch(&n.name, &pp, &Patch::Merge(patch))
                .await
                .map(|_| ())
        }
        Action::RemoveFinalizer(i, f) => {
            let n = &nodes[i];
            let raw = raws[i];
            let keep: Vec<_> = n.finalizers.iter().filter(|x| x.as_str() != f).cloned().collect();
            let patch =
                json!({"metadata": {"finalizers": keep, "resourceVersion": raw["metadata"]["resourceVersion"]}});
            api_for(client, n)
                .patch(&n.name, &pp, &Patch::Merge(patch))
                .await
                .map(|_| ())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(uid: &str, owners: &[&str]) -> Node {
        Node {
            res: catalogue::find("", "v1", "pods").unwrap(),
            namespace: "default".into(),
            name: uid.into(),
            uid: uid.into(),
            owners: owners
                .iter()
                .map(|o| (o.to_string(), "DaemonSet".into(), o.to_string()))
                .collect(),
            deleting: false,
            finalizers: vec![],
        }
    }

    #[test]
    fn dependents_of_vanished_owners_are_deleted() {
        let nodes = vec![node("pod", &["ds"])];
        assert_eq!(plan(&nodes), vec![Action::Delete(0)]);
        let with_owner = vec![node("ds", &[]), node("pod", &["ds"])];
        assert!(plan(&with_owner).is_empty());
    }

    #[test]
    fn a_dead_owner_among_live_ones_is_dropped() {
        let nodes = vec![node("a", &[]), node("pod", &["a", "gone"])];
        assert_eq!(plan(&nodes), vec![Action::DropOwners(1, vec!["gone".into()])]);
    }

    #[test]
    fn orphaning_drops_references_then_the_finalizer() {
        let mut owner = node("ds", &[]);
        owner.deleting = true;
        owner.finalizers = vec![ORPHAN.into()];
        let nodes = vec![owner.clone(), node("pod", &["ds"])];
        assert_eq!(plan(&nodes), vec![Action::DropOwners(1, vec!["ds".into()])]);
        assert_eq!(plan(&[owner]), vec![Action::RemoveFinalizer(0, ORPHAN)]);
    }

    #[test]
    fn foreground_deletes_dependents_first() {
        let mut owner = node("ds", &[]);
        owner.deleting = true;
        owner.finalizers = vec![FOREGROUND.into()];
        let nodes = vec![owner.clone(), node("pod", &["ds"])];
        assert_eq!(plan(&nodes), vec![Action::Delete(1)]);
        let mut dying = node("pod", &["ds"]);
        dying.deleting = true;
        assert!(
            plan(&[owner.clone(), dying]).is_empty(),
            "waits for the dependent to go"
        );
        assert_eq!(plan(&[owner]), vec![Action::RemoveFinalizer(0, FOREGROUND)]);
    }
}
