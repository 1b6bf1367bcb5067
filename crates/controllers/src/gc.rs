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

use crate::informer::{self, Change, Informers, api_resource};

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
    let owner = |uid: &str| by_uid.get(uid).copied();
    let has = |uid: &str| has_dependents.contains(uid);
    actions_of(nodes.iter().enumerate().map(|(i, n)| (i, decide(n, &owner, &has))))
}

/// The actions for the decisions about each object (by its index): finalizers are removed
/// last, after every deletion and reference drop of the pass.
fn actions_of(decided: impl Iterator<Item = (usize, Vec<Decision>)>) -> Vec<Action> {
    let mut actions = Vec::new();
    let mut finalizers = Vec::new();
    for (i, decisions) in decided {
        for d in decisions {
            match d {
                Decision::Delete(p) => actions.push(Action::Delete(i, p)),
                Decision::DropOwners(uids) => actions.push(Action::DropOwners(i, uids)),
                Decision::RemoveFinalizer(f) => finalizers.push(Action::RemoveFinalizer(i, f)),
            }
        }
    }
    actions.extend(finalizers);
    actions
}

/// What the collector decides for one object, given its owners (looked up by uid) and
/// whether any object names it as owner.
#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    /// Delete it with this propagation.
    Delete(PropagationPolicy),
    /// Drop its references to these owners.
    DropOwners(Vec<String>),
    /// Remove this finalizer from it.
    RemoveFinalizer(&'static str),
}

impl Action {
    /// The index of the object acted on.
    fn target(&self) -> usize {
        match self {
            Action::Delete(i, _) | Action::DropOwners(i, _) | Action::RemoveFinalizer(i, _) => *i,
        }
    }
}

/// The collector's decisions for `n` (see [`plan`]): O(its owners), so the collector can
/// look at only the objects a change touched.
pub fn decide<'a>(
    n: &Node,
    owner: &dyn Fn(&str) -> Option<&'a Node>,
    has_dependents: &dyn Fn(&str) -> bool,
) -> Vec<Decision> {
    let mut out = Vec::new();
    if !n.owners.is_empty() {
        let classes: Vec<(&str, Owner)> = n
            .owners
            .iter()
            .map(|(uid, _, _)| (uid.as_str(), classify(owner(uid))))
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
                out.push(Decision::DropOwners(drop));
            }
        } else if !n.deleting {
            let waiting = classes.iter().any(|(_, c)| *c == Owner::Waiting);
            let policy = if waiting && has_dependents(&n.uid) {
                PropagationPolicy::Foreground
            } else if n.finalizers.iter().any(|f| f == ORPHAN) {
                PropagationPolicy::Orphan
            } else if n.finalizers.iter().any(|f| f == FOREGROUND) {
                PropagationPolicy::Foreground
            } else {
                PropagationPolicy::Background
            };
            out.push(Decision::Delete(policy));
        }
    }
    if n.deleting && !has_dependents(&n.uid) {
        for f in [ORPHAN, FOREGROUND] {
            if n.finalizers.iter().any(|x| x == f) {
                out.push(Decision::RemoveFinalizer(f));
            }
        }
    }
    out
}

/// The collector's graph, kept from ownership changes (upstream's GraphBuilder): every
/// cached object by uid, and who names each uid as owner. A change marks the objects whose
/// decision it may change (the object, its owners, and, when it went or started or stopped
/// being deleted, its dependents), and a pass decides for those alone.
#[derive(Default)]
pub struct Graph {
    nodes: HashMap<String, Node>,
    dependents: HashMap<String, HashSet<String>>,
    /// Objects to decide for at the next pass.
    dirty: HashSet<String>,
}

impl Graph {
    /// The graph of `objects`, every one of them to be looked at.
    pub fn of(objects: &[(&'static Resource, Arc<Value>)]) -> Graph {
        let mut g = Graph::default();
        // Each upsert marks its object.
        for (res, o) in objects {
            g.upsert(res, o);
        }
        g
    }

    /// Follows one change of an object of `res`.
    pub fn apply(&mut self, res: &'static Resource, old: Option<&Arc<Value>>, new: Option<Arc<Value>>) {
        if let Some(o) = old {
            let uid = informer::uid(o);
            if new.as_ref().is_none_or(|n| informer::uid(n) != uid) {
                self.remove(uid);
            }
        }
        if let Some(n) = new {
            self.upsert(res, &n);
        }
    }

    fn remove(&mut self, uid: &str) {
        let Some(node) = self.nodes.remove(uid) else {
            return;
        };
        for (owner, _, _) in &node.owners {
            self.unlink(owner, uid);
            self.dirty.insert(owner.clone());
        }
        if let Some(deps) = self.dependents.get(uid) {
            self.dirty.extend(deps.iter().cloned());
        }
        self.dirty.remove(uid);
    }

    fn unlink(&mut self, owner: &str, dependent: &str) {
        if let Some(set) = self.dependents.get_mut(owner) {
            set.remove(dependent);
            if set.is_empty() {
                self.dependents.remove(owner);
            }
        }
    }

    fn upsert(&mut self, res: &'static Resource, obj: &Value) {
        let node = to_node(res, obj);
        if node.uid.is_empty() {
            return;
        }
        let uid = node.uid.clone();
        let (old_owners, state_changed) = match self.nodes.remove(&uid) {
            Some(prev) => (
                prev.owners,
                prev.deleting != node.deleting || prev.finalizers != node.finalizers,
            ),
            None => (Vec::new(), true),
        };
        for (owner, _, _) in &old_owners {
            if !node.owners.iter().any(|(o, _, _)| o == owner) {
                self.unlink(owner, &uid);
                self.dirty.insert(owner.clone());
            }
        }
        for (owner, _, _) in &node.owners {
            if !old_owners.iter().any(|(o, _, _)| o == owner) {
                self.dependents.entry(owner.clone()).or_default().insert(uid.clone());
                self.dirty.insert(owner.clone());
            }
        }
        if state_changed && let Some(deps) = self.dependents.get(&uid) {
            self.dirty.extend(deps.iter().cloned());
        }
        self.dirty.insert(uid.clone());
        self.nodes.insert(uid, node);
    }

    /// Marks every object to be looked at (a periodic full pass).
    pub fn mark_all(&mut self) {
        self.dirty = self.nodes.keys().cloned().collect();
    }

    /// Marks one object to be looked at again (an action on it failed).
    pub fn mark(&mut self, uid: &str) {
        self.dirty.insert(uid.to_string());
    }

    /// Decides for the marked objects, and unmarks them: the objects acted on (with their
    /// current state) and the actions, which index into them.
    pub fn plan(&mut self) -> (Vec<Node>, Vec<Action>) {
        let dirty = std::mem::take(&mut self.dirty);
        let owner = |uid: &str| self.nodes.get(uid);
        let has = |uid: &str| self.dependents.get(uid).is_some_and(|d| !d.is_empty());
        let mut targets = Vec::new();
        let decided = dirty
            .iter()
            .filter_map(|uid| self.nodes.get(uid))
            .map(|n| (n, decide(n, &owner, &has)))
            .filter(|(_, decisions)| !decisions.is_empty())
            .map(|(n, decisions)| {
                targets.push(n.clone());
                (targets.len() - 1, decisions)
            });
        let actions = actions_of(decided);
        (targets, actions)
    }
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
        // An owner of a kind not served (a custom resource whose definition is not there,
        // a typo) cannot be looked up: as upstream, nothing is deleted on that doubt.
        let Some(res) = catalogue::find_kind(group, kind) else {
            return true;
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

/// How often every object is looked at again, whatever changed (a safety net: the graph
/// follows every ownership change).
const FULL_PASS: Duration = Duration::from_secs(60);

/// Runs the collector until the process ends.
pub async fn run(client: kube::Client, informers: Informers) {
    informers.ready().await;
    tracing::debug!("garbage collector: caches ready");
    // Subscribed before the snapshot: a change made after it is in the channel, and
    // replaying one the snapshot already holds changes nothing.
    let mut changes = informers.subscribe_ownership();
    let mut graph = Graph::of(&informers.all());
    let mut last_full = tokio::time::Instant::now();
    // Level-triggered on ownership changes; a pass looks only at what they touched, and
    // passes are at least 250 ms apart, so a burst of changes is taken together.
    let mut pacer = Pacer::new("garbage-collector", informers.ownership_interest(), |took| {
        (4 * took).clamp(Duration::from_millis(250), Duration::from_secs(2))
    });
    loop {
        pacer
            .pass(&informers, async {
                let mut resync = false;
                while let Ok((res, change)) = changes.try_recv() {
                    match change {
                        Change::Object { old, new } => graph.apply(res, old.as_ref(), new),
                        Change::Resync => resync = true,
                    }
                }
                if resync {
                    graph = Graph::of(&informers.all());
                    last_full = tokio::time::Instant::now();
                } else if last_full.elapsed() >= FULL_PASS {
                    graph.mark_all();
                    last_full = tokio::time::Instant::now();
                }
                let (targets, actions) = graph.plan();
                tracing::debug!(
                    objects = targets.len(),
                    actions = actions.len(),
                    "garbage collector: pass"
                );
                let mut failure: Option<Error> = None;
                for action in actions {
                    let i = action.target();
                    if let Err(e) = apply(&client, &informers, &targets[i], action).await {
                        graph.mark(&targets[i].uid);
                        failure.get_or_insert(e.into());
                    }
                }
                failure.map_or(Ok(Duration::from_secs(5)), Err)
            })
            .await;
    }
}

/// Carries out one action on `target`. Patches carry the resourceVersion the informer shows
/// now (not the one the graph last saw: changes that do not touch ownership do not reach
/// it), so a concurrent change of the references makes the patch conflict, not clobber it.
async fn apply(client: &kube::Client, informers: &Informers, n: &Node, action: Action) -> Result<(), kube::Error> {
    // The graph keeps no object (it would hold a stale copy of every one that changed since);
    // one gone from the cache meanwhile needs nothing.
    let Some(raw) = informers
        .get(n.res.group, n.res.plural, &format!("{}/{}", n.namespace, n.name))
        .filter(|o| informer::uid(o) == n.uid)
    else {
        return Ok(());
    };
    let raw: &Value = &raw;
    let pp = PatchParams {
        field_manager: Some("garbage-collector".into()),
        ..Default::default()
    };
    match action {
        Action::Delete(_, policy) => {
            if any_owner_holds(client, n, raw).await {
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
        Action::DropOwners(_, uids) => {
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
        Action::RemoveFinalizer(_, f) => {
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

    fn obj(kind: &str, uid: &str, owners: &[&str], deleting: Option<&str>) -> Arc<Value> {
        let refs: Vec<Value> = owners
            .iter()
            .map(|o| json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "name": o, "uid": o}))
            .collect();
        let mut v = json!({"kind": kind, "metadata": {"name": uid, "namespace": "default", "uid": uid,
                                                     "ownerReferences": refs}});
        if let Some(f) = deleting {
            v["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
            v["metadata"]["finalizers"] = json!([f]);
        }
        Arc::new(v)
    }

    fn pods() -> &'static Resource {
        catalogue::find("", "v1", "pods").unwrap()
    }

    fn daemonsets() -> &'static Resource {
        catalogue::find("apps", "v1", "daemonsets").unwrap()
    }

    /// The graph's decisions, by name, sorted.
    fn decided(g: &mut Graph) -> Vec<String> {
        let (targets, actions) = g.plan();
        let mut out: Vec<String> = actions
            .iter()
            .map(|a| match a {
                Action::Delete(i, p) => format!("delete {} {p:?}", targets[*i].name),
                Action::DropOwners(i, u) => format!("drop {} {u:?}", targets[*i].name),
                Action::RemoveFinalizer(i, f) => format!("unfinalize {} {f}", targets[*i].name),
            })
            .collect();
        out.sort();
        out
    }

    #[test]
    fn the_graph_looks_only_at_what_a_change_touched() {
        let ds = obj("DaemonSet", "ds", &[], None);
        let p1 = obj("Pod", "p1", &["ds"], None);
        let p2 = obj("Pod", "p2", &["ds"], None);
        let mut g = Graph::of(&[(daemonsets(), ds.clone()), (pods(), p1.clone())]);
        assert!(decided(&mut g).is_empty());
        assert!(g.dirty.is_empty(), "a pass unmarks what it looked at");
        // A new dependent of a live owner: the pod and its owner are looked at, nothing done.
        g.apply(pods(), None, Some(p2.clone()));
        assert_eq!(g.dirty.len(), 2);
        assert!(decided(&mut g).is_empty());
        // The owner goes: its dependents are deleted.
        g.apply(daemonsets(), Some(&ds), None);
        assert_eq!(decided(&mut g), ["delete p1 Background", "delete p2 Background"]);
        // A dependent that shows up before its owner is deleted only if it is still dangling
        // (the apply step asks the API first); once the owner shows up it is left alone.
        let rs = obj("DaemonSet", "late", &[], None);
        let p3 = obj("Pod", "p3", &["late"], None);
        g.apply(pods(), None, Some(p3));
        assert_eq!(decided(&mut g), ["delete p3 Background"]);
        g.mark("p3");
        g.apply(daemonsets(), None, Some(rs));
        assert!(decided(&mut g).iter().all(|d| !d.contains("p3")));
    }

    #[test]
    fn a_foreground_owner_loses_its_finalizer_when_its_last_dependent_goes() {
        let owner = obj("DaemonSet", "ds", &[], Some(FOREGROUND));
        let p1 = obj("Pod", "p1", &["ds"], None);
        let mut g = Graph::of(&[(daemonsets(), owner.clone()), (pods(), p1.clone())]);
        assert_eq!(decided(&mut g), ["delete p1 Background"]);
        // The pod is being deleted, then gone.
        let p1_deleting = obj("Pod", "p1", &["ds"], Some("x"));
        g.apply(pods(), Some(&p1), Some(p1_deleting.clone()));
        assert!(decided(&mut g).is_empty(), "waits while the dependent exists");
        g.apply(pods(), Some(&p1_deleting), None);
        assert_eq!(decided(&mut g), ["unfinalize ds foregroundDeletion"]);
    }

    #[test]
    fn the_graph_decides_as_a_whole_snapshot_would() {
        // Random changes: after each, a full pass of the graph agrees with the plan of the
        // snapshot, and the incremental pass never misses one of its actions.
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        let mut next = |n: u64| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng % n
        };
        let mut live: HashMap<String, (&'static Resource, Arc<Value>)> = HashMap::new();
        let mut g = Graph::default();
        for step in 0..400 {
            let uid = format!("o{}", next(12));
            let owners: Vec<String> = (0..next(3)).map(|_| format!("o{}", next(12))).collect();
            let owners: Vec<&str> = owners.iter().map(String::as_str).filter(|o| *o != uid).collect();
            let deleting = match next(5) {
                0 => Some(FOREGROUND),
                1 => Some(ORPHAN),
                _ => None,
            };
            let old = live.get(&uid).map(|(_, o)| o.clone());
            if next(4) == 0 {
                live.remove(&uid);
                g.apply(pods(), old.as_ref(), None);
            } else {
                let o = obj("Pod", &uid, &owners, deleting);
                live.insert(uid.clone(), (pods(), o.clone()));
                g.apply(pods(), old.as_ref(), Some(o));
            }
            let snapshot: Vec<(&'static Resource, Arc<Value>)> = live.values().cloned().collect();
            let nodes: Vec<Node> = snapshot.iter().map(|(r, o)| to_node(r, o)).collect();
            let mut want: Vec<String> = plan(&nodes)
                .iter()
                .map(|a| match a {
                    Action::Delete(i, p) => format!("delete {} {p:?}", nodes[*i].name),
                    Action::DropOwners(i, u) => format!("drop {} {u:?}", nodes[*i].name),
                    Action::RemoveFinalizer(i, f) => format!("unfinalize {} {f}", nodes[*i].name),
                })
                .collect();
            want.sort();
            let incremental = decided(&mut g);
            for a in &incremental {
                assert!(want.contains(a), "step {step}: {a} is not in {want:?}");
            }
            g.mark_all();
            assert_eq!(decided(&mut g), want, "step {step}");
        }
    }
}
