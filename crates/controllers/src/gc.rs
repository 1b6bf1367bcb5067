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

use shoal_runtime::controller::{Error, Pacer};
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
    /// Delete the dependent with this propagation (no owner of it holds it any more).
    Delete(usize, PropagationPolicy),
    /// Drop the owner references with these UIDs from the object.
    DropOwners(usize, Vec<String>),
    /// Remove a finalizer from the object.
    RemoveFinalizer(usize, &'static str),
}

/// How an owner reference stands, as upstream's collector classifies it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Owner {
    /// The owner is gone (or another object has its name now).
    Dangling,
    /// The owner is being deleted in the foreground: it waits for its dependents.
    Waiting,
    /// The owner is being deleted with `orphan`: its dependents lose their reference.
    Orphaning,
    /// The owner holds the dependent.
    Solid,
}

fn classify(owner: Option<&Node>) -> Owner {
    match owner {
        None => Owner::Dangling,
        Some(o) if o.deleting && o.finalizers.iter().any(|f| f == FOREGROUND) => Owner::Waiting,
        Some(o) if o.deleting && o.finalizers.iter().any(|f| f == ORPHAN) => Owner::Orphaning,
        Some(_) => Owner::Solid,
    }
}

/// Plans the collector's actions over a snapshot of every object (or of every object that
/// has owners, is being deleted, or is some object's owner: the others change nothing).
///
/// As upstream: a dependent with at least one owner that holds it (present, not being
/// deleted in the foreground) stays, and loses only its references to owners that are gone,
/// waiting for their dependents, or orphaning them. A dependent none of whose owners holds it
/// is deleted: in the foreground when a foreground owner waits and it has dependents of its
/// own (so the chain goes bottom up), else as its own finalizers ask, else in the background.
pub fn plan<N: std::borrow::Borrow<Node>>(nodes: &[N]) -> Vec<Action> {
    let nodes: Vec<&Node> = nodes.iter().map(|n| n.borrow()).collect();
    let by_uid: HashMap<&str, &Node> = nodes.iter().map(|n| (n.uid.as_str(), *n)).collect();
    let has_dependents: HashSet<&str> = nodes
        .iter()
        .flat_map(|n| n.owners.iter().map(|(uid, _, _)| uid.as_str()))
        .filter(|uid| by_uid.contains_key(uid))
        .collect();
    let mut actions = Vec::new();
    for (i, n) in nodes.iter().enumerate() {
        if n.owners.is_empty() {
            continue;
        }
        let classes: Vec<(&str, Owner)> = n
            .owners
            .iter()
            .map(|(uid, _, _)| (uid.as_str(), classify(by_uid.get(uid.as_str()).copied())))
            .collect();
        let held = classes
            .iter()
            .any(|(_, c)| matches!(c, Owner::Solid | Owner::Orphaning));
        if held {
            let drop: Vec<String> = classes
                .iter()
                .filter(|(_, c)| *c != Owner::Solid)
                .map(|(uid, _)| uid.to_string())
                .collect();
            if !drop.is_empty() {
                actions.push(Action::DropOwners(i, drop));
            }
        } else if !n.deleting {
            let waiting = classes.iter().any(|(_, c)| *c == Owner::Waiting);
            let policy = if waiting && has_dependents.contains(n.uid.as_str()) {
                PropagationPolicy::Foreground
            } else if n.finalizers.iter().any(|f| f == ORPHAN) {
                PropagationPolicy::Orphan
            } else if n.finalizers.iter().any(|f| f == FOREGROUND) {
                PropagationPolicy::Foreground
            } else {
                PropagationPolicy::Background
            };
            actions.push(Action::Delete(i, policy));
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

/// True when some owner of `n` still holds it, asked of the API (not the cache): it exists
/// with the referenced UID and is not waiting for its dependents in the foreground. An
/// answer the API does not give counts as holding (nothing is deleted on a doubt).
async fn any_owner_holds(client: &kube::Client, n: &Node, raw: &Value) -> bool {
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
            Ok(Some(o)) if o.metadata.uid.as_deref() == Some(uid) => {
                let waiting = o.metadata.deletion_timestamp.is_some()
                    && o.metadata.finalizers.iter().flatten().any(|f| f == FOREGROUND);
                if !waiting {
                    return true;
                }
            }
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
    // Level-triggered: wake when ownership changes somewhere, and at least every few
    // seconds; a pass is O(objects), so passes are at least four times their own length
    // apart (the collector takes at most a fifth of a core).
    let mut pacer = Pacer::new("garbage-collector", informers.ownership_interest(), |took| {
        (4 * took).clamp(Duration::from_millis(250), Duration::from_secs(2))
    });
    // The collector's view of each object, converted once per version of it.
    let mut memo: Memo<Node> = Memo::default();
    loop {
        pacer
            .pass(&informers, async {
                let mut failure: Option<Error> = None;
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
                        failure.get_or_insert(e.into());
                    }
                }
                failure.map_or(Ok(Duration::from_secs(5)), Err)
            })
            .await;
    }
}

async fn apply(client: &kube::Client, nodes: &[&Node], raws: &[&Value], action: Action) -> Result<(), kube::Error> {
    let pp = PatchParams {
        field_manager: Some("garbage-collector".into()),
        ..Default::default()
    };
    match action {
        Action::Delete(i, policy) => {
            let n = &nodes[i];
            if any_owner_holds(client, n, raws[i]).await {
                return Ok(());
            }
            let dp = DeleteParams {
                propagation_policy: Some(policy),
                preconditions: Some(kube::api::Preconditions {
                    uid: Some(n.uid.clone()),
                    resource_version: None,
                }),
                ..Default::default()
            };
            match api_for(client, n).delete(&n.name, &dp).await {
                Ok(_) => Ok(()),
                // Gone already, or another object of that name now.
                Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => Ok(()),
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
        assert_eq!(plan(&nodes), vec![Action::Delete(0, PropagationPolicy::Background)]);
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

    fn deleting(uid: &str, finalizer: &str) -> Node {
        let mut n = node(uid, &[]);
        n.deleting = true;
        n.finalizers = vec![finalizer.into()];
        n
    }

    #[test]
    fn a_dependent_with_a_valid_owner_survives_its_other_owners_foreground_delete() {
        // Upstream's e2e: half the pods of rc1 also belong to rc2; rc1 is deleted in the
        // foreground. Those pods stay (losing rc1's reference), the others go.
        let nodes = vec![
            deleting("rc1", FOREGROUND),
            node("rc2", &[]),
            node("shared", &["rc1", "rc2"]),
            node("only", &["rc1"]),
        ];
        let actions = plan(&nodes);
        assert!(
            actions.contains(&Action::DropOwners(2, vec!["rc1".into()])),
            "{actions:?}"
        );
        assert!(
            actions.contains(&Action::Delete(3, PropagationPolicy::Background)),
            "{actions:?}"
        );
        assert!(
            !actions.iter().any(|a| matches!(a, Action::Delete(2, _))),
            "{actions:?}"
        );
        // Once they no longer refer to it, rc1's finalizer goes.
        let after = vec![deleting("rc1", FOREGROUND), node("rc2", &[]), node("shared", &["rc2"])];
        assert_eq!(plan(&after), vec![Action::RemoveFinalizer(0, FOREGROUND)]);
    }

    #[test]
    fn background_and_orphan_deletes_keep_doubly_owned_dependents() {
        // Background: the deleted owner is simply gone.
        let nodes = vec![node("rc2", &[]), node("shared", &["rc1", "rc2"])];
        assert_eq!(plan(&nodes), vec![Action::DropOwners(1, vec!["rc1".into()])]);
        // Orphan: both owners hold the pod; the orphaning one's reference goes.
        let nodes = vec![
            deleting("rc1", ORPHAN),
            node("rc2", &[]),
            node("shared", &["rc1", "rc2"]),
        ];
        assert_eq!(plan(&nodes), vec![Action::DropOwners(2, vec!["rc1".into()])]);
        // An owner being deleted without a finalizer of ours still holds its dependents.
        let nodes = vec![deleting("rc1", "example.com/wait"), node("pod", &["rc1"])];
        assert!(plan(&nodes).is_empty());
    }

    #[test]
    fn a_dependent_with_dependents_of_its_own_goes_in_the_foreground() {
        let nodes = vec![
            deleting("deploy", FOREGROUND),
            node("rs", &["deploy"]),
            node("pod", &["rs"]),
        ];
        assert_eq!(plan(&nodes), vec![Action::Delete(1, PropagationPolicy::Foreground)]);
    }

    #[test]
    fn foreground_deletes_dependents_first() {
        let mut owner = node("ds", &[]);
        owner.deleting = true;
        owner.finalizers = vec![FOREGROUND.into()];
        let nodes = vec![owner.clone(), node("pod", &["ds"])];
        assert_eq!(plan(&nodes), vec![Action::Delete(1, PropagationPolicy::Background)]);
        let mut dying = node("pod", &["ds"]);
        dying.deleting = true;
        assert!(
            plan(&[owner.clone(), dying]).is_empty(),
            "waits for the dependent to go"
        );
        assert_eq!(plan(&[owner]), vec![Action::RemoveFinalizer(0, FOREGROUND)]);
    }
}
