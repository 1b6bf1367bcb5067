//! Shared informers: one watch-backed cache per served resource, plus change counters that
//! controllers wait on.
//!
//! Each object is decoded once per change into a shared `Arc<Value>` (controllers read
//! snapshots of `Arc`s, never copies), without `metadata.managedFields`, which no controller
//! reads. Resources that only the garbage collector and the namespace controller look at
//! keep their metadata alone. Every cache counts its changes, and separately the changes
//! that matter to ownership (an object added or removed, or its owner references,
//! finalizers or deletion timestamp changed), so a controller wakes only for what it reads:
//! a Lease renewal wakes the node lifecycle controller, not the DaemonSet controller.
//!
//! Keyed controllers [`Informers::subscribe`] to a resource instead: they receive every
//! change (the old and the new object) and a [`Change::Resync`] after each relist, and map
//! them to the keys of their work queue.

use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, ApiResource};
use kube::core::DynamicResourceScope;
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::Value;
use shoal_api::catalogue::{RESOURCES, Resource};
use tokio::sync::{mpsc, watch};

/// Resources whose whole objects are cached; the others keep metadata only.
const FULL: &[(&str, &str)] = &[
    ("", "pods"),
    ("", "nodes"),
    ("", "namespaces"),
    ("", "replicationcontrollers"),
    ("", "services"),
    ("", "endpoints"),
    ("", "persistentvolumeclaims"),
    ("", "persistentvolumes"),
    ("storage.k8s.io", "storageclasses"),
    ("apps", "statefulsets"),
    ("batch", "jobs"),
    ("batch", "cronjobs"),
    ("discovery.k8s.io", "endpointslices"),
    ("apps", "daemonsets"),
    ("apps", "deployments"),
    ("apps", "replicasets"),
    ("apps", "controllerrevisions"),
    ("coordination.k8s.io", "leases"),
    ("", "resourcequotas"),
    ("policy", "poddisruptionbudgets"),
    ("rbac.authorization.k8s.io", "clusterroles"),
    ("apiregistration.k8s.io", "apiservices"),
];

/// Resources with no cache at all: Events. Nobody reads them continuously, and there is one
/// per scheduled pod, so a 5,000-node DaemonSet's rollout and update leave 10,000 of them.
/// Upstream's garbage collector ignores them too (its default `ignoredResources`); the
/// namespace controller lists them through the API when it drains a namespace.
const UNCACHED: &[(&str, &str)] = &[("", "events"), ("events.k8s.io", "events")];

/// True when `r` has a cache: not [`UNCACHED`], watchable (the review kinds are only
/// created), and the preferred version of its group (a resource served in two versions, as
/// autoscaling's HorizontalPodAutoscaler, is one set of objects: cached once).
pub fn is_cached(r: &'static Resource) -> bool {
    // Custom resources come and go at run time: the informers, started once, never hold them.
    !UNCACHED.contains(&(r.group, r.plural))
        && r.verbs.contains(&"watch")
        && shoal_api::catalogue::is_stored_form(r)
        && !shoal_api::catalogue::is_custom(r)
}

/// One resource's cache.
struct Cache {
    res: &'static Resource,
    objects: RwLock<HashMap<String, Arc<Value>>>,
    /// Every change.
    changes: AtomicU64,
    /// Changes that matter to ownership (see the module docs).
    ownership_changes: AtomicU64,
    /// Had its first list (a restarted watcher does not count twice).
    synced: AtomicBool,
    /// Keyed controllers following this resource.
    subscribers: Mutex<Vec<mpsc::UnboundedSender<Change>>>,
    /// Followers of ownership changes of every resource (the garbage collector).
    ownership_subscribers: Mutex<Vec<mpsc::UnboundedSender<(&'static Resource, Change)>>>,
}

/// One change of a cached resource, as a subscriber receives it.
#[derive(Clone, Debug)]
pub enum Change {
    /// An object was added (`old` is `None`), replaced, or deleted (`new` is `None`).
    Object {
        /// The object before.
        old: Option<Arc<Value>>,
        /// The object after.
        new: Option<Arc<Value>>,
    },
    /// The cache was listed again: any object may have changed.
    Resync,
}

impl Change {
    /// The objects of this change (old and new), for mapping to keys.
    pub fn objects(&self) -> impl Iterator<Item = &Arc<Value>> {
        let (a, b) = match self {
            Change::Object { old, new } => (old.as_ref(), new.as_ref()),
            Change::Resync => (None, None),
        };
        a.into_iter().chain(b)
    }
}

/// The caches of every resource.
#[derive(Clone)]
pub struct Informers {
    caches: Arc<Vec<Cache>>,
    changed: watch::Receiver<u64>,
    /// How many caches have had their first list.
    synced: Arc<AtomicUsize>,
}

/// Keeps cache `i` in step with the API: a watch (listing first) for as long as it runs.
async fn follow(
    client: kube::Client,
    i: usize,
    tx: Arc<watch::Sender<u64>>,
    synced: Arc<AtomicUsize>,
    caches: Arc<Vec<Cache>>,
) {
    let cache = &caches[i];
    let r = cache.res;
    let full = FULL.contains(&(r.group, r.plural));
    let api: Api<JsonObject> = Api::all_with(client, &api_resource(r));
    let stream = watcher(api, watcher::Config::default()).default_backoff();
    futures::pin_mut!(stream);
    let mut relist = None;
    while let Some(ev) = stream.next().await {
        match ev {
            Ok(ev) => {
                let done = matches!(ev, watcher::Event::InitDone);
                let (changed, owners, change) = cache.apply(ev, full, &mut relist);
                if let Some(change) = change {
                    cache.publish(change, owners);
                }
                if changed {
                    cache.changes.fetch_add(1, Ordering::SeqCst);
                }
                if owners {
                    cache.ownership_changes.fetch_add(1, Ordering::SeqCst);
                }
                if done && !cache.synced.swap(true, Ordering::SeqCst) {
                    synced.fetch_add(1, Ordering::SeqCst);
                    tracing::debug!(resource = r.plural, group = r.group, "informer: synced");
                }
                if changed || owners {
                    tx.send_modify(|n| *n += 1);
                }
            }
            Err(e) => {
                tracing::warn!(resource = r.plural, group = r.group, error = %e, "informer: watch failed; retrying")
            }
        }
    }
}

/// The kube `ApiResource` of a catalogue resource.
pub fn api_resource(r: &Resource) -> ApiResource {
    ApiResource {
        group: r.group.to_string(),
        version: r.version.to_string(),
        api_version: r.api_version(),
        kind: r.kind.to_string(),
        plural: r.plural.to_string(),
    }
}

/// An object of any kind as a watch delivers it, decoded once, straight into JSON. kube's
/// `DynamicObject` decodes typed metadata and buffers the rest, and turning it into a
/// `Value` encodes and decodes it again: three passes where this takes one. The typed
/// metadata holds only what kube's watcher reads (name, namespace, uid, resourceVersion).
#[derive(Clone, Debug)]
pub struct JsonObject {
    meta: ObjectMeta,
    /// The object.
    pub value: Value,
}

impl<'de> serde::Deserialize<'de> for JsonObject {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Without the managed fields, skipped as they are parsed: no reader in the process
        // keeps them, and they are often the largest part of a pod's metadata.
        let value = serde::de::DeserializeSeed::deserialize(&shoal_api::shape::WITHOUT_MANAGED_FIELDS, d)?;
        if !value.is_object() {
            return Err(serde::de::Error::custom("expected an object"));
        }
        let m = &value["metadata"];
        let text = |k: &str| m[k].as_str().map(str::to_string);
        let meta = ObjectMeta {
            name: text("name"),
            namespace: text("namespace"),
            uid: text("uid"),
            resource_version: text("resourceVersion"),
            ..ObjectMeta::default()
        };
        Ok(JsonObject { meta, value })
    }
}

impl kube::Resource for JsonObject {
    type DynamicType = ApiResource;
    type Scope = DynamicResourceScope;

    fn kind(dt: &ApiResource) -> std::borrow::Cow<'_, str> {
        dt.kind.as_str().into()
    }

    fn group(dt: &ApiResource) -> std::borrow::Cow<'_, str> {
        dt.group.as_str().into()
    }

    fn version(dt: &ApiResource) -> std::borrow::Cow<'_, str> {
        dt.version.as_str().into()
    }

    fn api_version(dt: &ApiResource) -> std::borrow::Cow<'_, str> {
        dt.api_version.as_str().into()
    }

    fn plural(dt: &ApiResource) -> std::borrow::Cow<'_, str> {
        dt.plural.as_str().into()
    }

    fn meta(&self) -> &ObjectMeta {
        &self.meta
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.meta
    }
}

/// `metadata.name` of a cached object.
pub fn name(o: &Value) -> &str {
    o["metadata"]["name"].as_str().unwrap_or_default()
}

/// `metadata.namespace` of a cached object ("" for cluster-scoped ones).
pub fn namespace(o: &Value) -> &str {
    o["metadata"]["namespace"].as_str().unwrap_or_default()
}

/// `metadata.uid` of a cached object.
pub fn uid(o: &Value) -> &str {
    o["metadata"]["uid"].as_str().unwrap_or_default()
}

/// The uid of the object's controller (the ownerReference with `controller: true`).
pub fn controller_uid(o: &Value) -> Option<&str> {
    o["metadata"]["ownerReferences"]
        .as_array()?
        .iter()
        .find(|r| r["controller"] == true)?["uid"]
        .as_str()
}

/// The name of the object's controller when that controller is of `kind`.
pub fn controller_of_kind<'a>(o: &'a Value, kind: &str) -> Option<&'a str> {
    o["metadata"]["ownerReferences"]
        .as_array()?
        .iter()
        .find(|r| r["controller"] == true && r["kind"] == kind)?["name"]
        .as_str()
}

/// `namespace/name` of an object: its key in a cache and in a controller's work queue.
pub fn key(o: &Value) -> String {
    key_of(o)
}

/// The controller ownerReference to `owner`, of `kind` in `api_version`, that the objects
/// a controller makes for it carry.
pub fn controller_ref(api_version: &str, kind: &str, owner: &Value) -> Value {
    serde_json::json!({"apiVersion": api_version, "kind": kind, "name": owner["metadata"]["name"],
                       "uid": owner["metadata"]["uid"], "controller": true, "blockOwnerDeletion": true})
}

/// True when the object carries a deletion timestamp.
pub fn deleting(o: &Value) -> bool {
    o["metadata"].get("deletionTimestamp").is_some_and(|t| !t.is_null())
}

fn key_of(o: &Value) -> String {
    format!("{}/{}", namespace(o), name(o))
}

/// The cached form of an object: only the fields controllers read
/// ([`shoal_api::trim_for_cache`]), and metadata alone unless `full` (a [`JsonObject`] has
/// no managed fields: they are skipped as it is parsed).
fn cached_form(obj: JsonObject, kind: &str, full: bool) -> Option<Value> {
    let mut v = obj.value;
    let map = v.as_object_mut()?;
    if !full {
        map.retain(|k, _| k == "apiVersion" || k == "kind" || k == "metadata");
    }
    shoal_api::trim_for_cache(kind, &mut v);
    Some(v)
}

/// True when `a` and `b` differ in what ownership depends on.
fn ownership_differs(a: &Value, b: &Value) -> bool {
    ["uid", "ownerReferences", "finalizers", "deletionTimestamp"]
        .iter()
        .any(|k| a["metadata"].get(*k) != b["metadata"].get(*k))
}

impl Cache {
    fn new(res: &'static Resource) -> Cache {
        Cache {
            res,
            objects: RwLock::default(),
            changes: AtomicU64::new(0),
            ownership_changes: AtomicU64::new(0),
            synced: AtomicBool::new(false),
            subscribers: Mutex::default(),
            ownership_subscribers: Mutex::default(),
        }
    }

    /// Hands `change` to every subscriber still listening, and to the ownership subscribers
    /// when it changed `owners`hip.
    fn publish(&self, change: Change, owners: bool) {
        if owners {
            let mut subs = self
                .ownership_subscribers
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            subs.retain(|s| s.send((self.res, change.clone())).is_ok());
        }
        let mut subs = self.subscribers.lock().unwrap_or_else(PoisonError::into_inner);
        subs.retain(|s| s.send(change.clone()).is_ok());
    }

    /// Applies one watch event; returns (changed, ownership changed, the change for
    /// subscribers).
    fn apply(
        &self,
        ev: watcher::Event<JsonObject>,
        full: bool,
        relist: &mut Option<HashMap<String, Arc<Value>>>,
    ) -> (bool, bool, Option<Change>) {
        // Objects are decoded before the lock is taken: readers never wait on a decode.
        let lock = || self.objects.write().unwrap_or_else(|e| e.into_inner());
        match ev {
            watcher::Event::Apply(o) => {
                let Some(v) = cached_form(o, self.res.kind, full) else {
                    return (false, false, None);
                };
                let (key, v) = (key_of(&v), Arc::new(v));
                let old = lock().insert(key, v.clone());
                let owners = old.as_ref().is_none_or(|old| ownership_differs(old, &v));
                (true, owners, Some(Change::Object { old, new: Some(v) }))
            }
            watcher::Event::Delete(o) => {
                let Some(v) = cached_form(o, self.res.kind, false) else {
                    return (false, false, None);
                };
                let old = lock().remove(&key_of(&v));
                let gone = old.is_some();
                (
                    gone,
                    gone,
                    old.map(|old| Change::Object {
                        old: Some(old),
                        new: None,
                    }),
                )
            }
            watcher::Event::Init => {
                *relist = Some(HashMap::new());
                (false, false, None)
            }
            watcher::Event::InitApply(o) => {
                if let (Some(v), Some(fresh)) = (cached_form(o, self.res.kind, full), relist.as_mut()) {
                    fresh.insert(key_of(&v), Arc::new(v));
                }
                (false, false, None)
            }
            watcher::Event::InitDone => {
                if let Some(fresh) = relist.take() {
                    *lock() = fresh;
                }
                (true, true, Some(Change::Resync))
            }
        }
    }
}

/// Views derived from cached objects, kept from pass to pass, so a controller's pass costs
/// O(changed objects) in derivation instead of O(objects) in JSON lookups. An object the
/// informer did not replace (the same `Arc`, held here so its address cannot be reused) keeps
/// its view.
pub struct Memo<T> {
    entries: HashMap<usize, MemoEntry<T>, BuildHasherDefault<PtrHasher>>,
    /// Bumped by every refresh; an entry not touched by the latest one is stale.
    round: u64,
}

/// A memo's entry: the object (held, so its address is not reused), its view, and the
/// refresh that last saw it.
type MemoEntry<T> = (Arc<Value>, T, u64);

impl<T> Default for Memo<T> {
    fn default() -> Self {
        Memo {
            entries: HashMap::default(),
            round: 0,
        }
    }
}

impl<T> Memo<T> {
    /// The views of `items` (whose objects `object` gives), in their order. `derive` runs only
    /// for objects new to the memo; views of objects not among `items` are dropped.
    ///
    /// The table is updated in place: two lookups per item and no rebuild, so a refresh of
    /// thousands of unchanged objects costs little (a reconcile refreshes on every pass).
    pub fn refresh<X>(
        &mut self,
        items: &[X],
        object: impl Fn(&X) -> &Arc<Value>,
        mut derive: impl FnMut(&X) -> T,
    ) -> Vec<&T> {
        self.round = self.round.wrapping_add(1);
        let round = self.round;
        let mut live = 0;
        for x in items {
            let o = object(x);
            match self.entries.entry(Arc::as_ptr(o) as usize) {
                std::collections::hash_map::Entry::Occupied(mut e) => {
                    let seen = &mut e.get_mut().2;
                    if *seen != round {
                        *seen = round;
                        live += 1;
                    }
                }
                std::collections::hash_map::Entry::Vacant(e) => {
                    e.insert((o.clone(), derive(x), round));
                    live += 1;
                }
            }
        }
        if live < self.entries.len() {
            self.entries.retain(|_, e| e.2 == round);
        }
        items
            .iter()
            .map(|x| &self.entries[&(Arc::as_ptr(object(x)) as usize)].1)
            .collect()
    }

    /// Forgets every view.
    pub fn clear(&mut self) {
        self.entries.clear();
    }
}

/// Hashes the addresses [`Memo`] is keyed by: no SipHash for a pointer.
#[derive(Default)]
pub struct PtrHasher(u64);

impl std::hash::Hasher for PtrHasher {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }

    fn write_usize(&mut self, n: usize) {
        // Allocations are 16-byte aligned: drop the zero bits, then spread the rest.
        let h = ((n as u64) >> 4).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        self.0 = h ^ (h >> 29);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// What a controller waits on: some resources' changes (or only their ownership changes).
pub struct Interest {
    caches: Vec<usize>,
    ownership_only: bool,
    seen: u64,
    changed: watch::Receiver<u64>,
}

impl Informers {
    /// Starts a watch per resource, each the supervised component `informer/<resource>` of
    /// `components` (a watcher that panics is restarted and lists again).
    pub fn start(client: kube::Client, components: &crate::Components) -> Informers {
        let (tx, rx) = watch::channel(0u64);
        let tx = Arc::new(tx);
        let synced = Arc::new(AtomicUsize::new(0));
        let caches: Arc<Vec<Cache>> = Arc::new(RESOURCES.iter().map(Cache::new).collect());
        for (i, r) in RESOURCES.iter().enumerate() {
            if !is_cached(r) {
                continue;
            }
            let name = if r.group.is_empty() {
                format!("informer/{}", r.plural)
            } else {
                format!("informer/{}.{}", r.plural, r.group)
            };
            let (client, tx, synced, caches) = (client.clone(), tx.clone(), synced.clone(), caches.clone());
            components.spawn(name, move || {
                follow(client.clone(), i, tx.clone(), synced.clone(), caches.clone())
            });
        }
        Informers {
            caches,
            changed: rx,
            synced,
        }
    }

    /// Waits until every cache has had its first list.
    pub async fn ready(&self) {
        let mut changes = self.changed.clone();
        let watched = self.caches.iter().filter(|c| is_cached(c.res)).count();
        while self.synced.load(Ordering::SeqCst) < watched {
            if changes.changed().await.is_err() {
                return;
            }
        }
    }

    /// Every cached object with its resource.
    pub fn all(&self) -> Vec<(&'static Resource, Arc<Value>)> {
        self.caches
            .iter()
            .flat_map(|c| {
                let objects = c.objects.read().unwrap_or_else(|e| e.into_inner());
                objects.values().map(|o| (c.res, o.clone())).collect::<Vec<_>>()
            })
            .collect()
    }

    fn index(&self, group: &str, plural: &str) -> Option<usize> {
        self.caches
            .iter()
            .position(|c| c.res.group == group && c.res.plural == plural)
    }

    /// The cached objects of one resource.
    pub fn of(&self, group: &str, plural: &str) -> Vec<Arc<Value>> {
        self.index(group, plural)
            .map(|i| {
                let objects = self.caches[i].objects.read().unwrap_or_else(|e| e.into_inner());
                objects.values().cloned().collect()
            })
            .unwrap_or_default()
    }

    /// The cached object `namespace/name` (`/name` for cluster-scoped ones) of one resource.
    pub fn get(&self, group: &str, plural: &str, key: &str) -> Option<Arc<Value>> {
        let i = self.index(group, plural)?;
        let objects = self.caches[i].objects.read().unwrap_or_else(|e| e.into_inner());
        objects.get(key).cloned()
    }

    /// Every change of the resource `(group, plural)` from now on (a resource without a
    /// cache sends nothing). Subscribe before reading the cache for a first pass, so no
    /// change falls between the two.
    pub fn subscribe(&self, group: &str, plural: &str) -> mpsc::UnboundedReceiver<Change> {
        let (tx, rx) = mpsc::unbounded_channel();
        if let Some(i) = self.index(group, plural) {
            self.caches[i]
                .subscribers
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(tx);
        }
        rx
    }

    /// Every change that matters to ownership (an object added or gone, or its uid, owner
    /// references, finalizers or deletion timestamp changed), of every cached resource, from
    /// now on: the garbage collector's graph follows these. A relist arrives as
    /// [`Change::Resync`].
    pub fn subscribe_ownership(&self) -> mpsc::UnboundedReceiver<(&'static Resource, Change)> {
        let (tx, rx) = mpsc::unbounded_channel();
        for c in self.caches.iter() {
            c.ownership_subscribers
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(tx.clone());
        }
        rx
    }

    /// Interest in every change of these resources (`(group, plural)`).
    pub fn interest(&self, resources: &[(&str, &str)]) -> Interest {
        let caches = resources.iter().filter_map(|(g, p)| self.index(g, p)).collect();
        self.make_interest(caches, false)
    }

    /// Interest in the ownership changes of every resource.
    pub fn ownership_interest(&self) -> Interest {
        self.make_interest((0..self.caches.len()).collect(), true)
    }

    fn make_interest(&self, caches: Vec<usize>, ownership_only: bool) -> Interest {
        let mut i = Interest {
            caches,
            ownership_only,
            seen: 0,
            changed: self.changed.clone(),
        };
        i.seen = self.count(&i);
        i
    }

    fn count(&self, i: &Interest) -> u64 {
        i.caches
            .iter()
            .map(|&c| {
                let cache = &self.caches[c];
                if i.ownership_only {
                    cache.ownership_changes.load(Ordering::SeqCst)
                } else {
                    cache.changes.load(Ordering::SeqCst)
                }
            })
            .sum()
    }

    /// Waits until one of the resources of `interest` changed since the last wait returned,
    /// or `max` passed; true when something changed.
    pub async fn wait(&self, interest: &mut Interest, max: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + max;
        loop {
            interest.changed.borrow_and_update();
            let now = self.count(interest);
            if now != interest.seen {
                interest.seen = now;
                return true;
            }
            match tokio::time::timeout_at(deadline, interest.changed.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) | Err(_) => return false,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dynamic(v: Value) -> JsonObject {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn a_json_object_keeps_the_whole_object_but_managed_fields_and_the_metadata_watches_read() {
        use kube::Resource;
        let o = dynamic(json_pod());
        let mut want = json_pod();
        assert!(want["metadata"]["managedFields"].is_array());
        want["metadata"].as_object_mut().unwrap().remove("managedFields");
        assert_eq!(o.value, want);
        // Straight from the wire, as a watch decodes it.
        let text = serde_json::to_string(&json_pod()).unwrap();
        let parsed: JsonObject = serde_json::from_str(&text).unwrap();
        assert_eq!(parsed.value, want);
        assert!(serde_json::from_str::<JsonObject>("[1]").is_err(), "an object is a map");
        assert_eq!(o.meta().name.as_deref(), Some("p"));
        assert_eq!(o.meta().namespace.as_deref(), Some("default"));
        assert_eq!(o.meta().uid.as_deref(), Some("u1"));
        let mut with_rv = json_pod();
        with_rv["metadata"]["resourceVersion"] = serde_json::json!("42");
        assert_eq!(dynamic(with_rv).meta().resource_version.as_deref(), Some("42"));
    }

    #[test]
    fn cached_objects_drop_managed_fields_and_keep_metadata_only_when_asked() {
        let pod = json_pod();
        let full = cached_form(dynamic(pod.clone()), "Pod", true).unwrap();
        assert!(full["metadata"].get("managedFields").is_none());
        assert_eq!(full["spec"]["nodeName"], "n1");
        let meta = cached_form(dynamic(pod), "Pod", false).unwrap();
        assert!(meta.get("spec").is_none());
        assert_eq!(name(&meta), "p");
        assert_eq!(namespace(&meta), "default");
        assert_eq!(uid(&meta), "u1");
        assert!(!deleting(&meta));
    }

    #[test]
    fn events_unwatchable_kinds_and_second_versions_have_no_cache() {
        let uncached: Vec<_> = RESOURCES
            .iter()
            .filter(|r| !is_cached(r) && r.verbs.contains(&"watch"))
            .map(|r| (r.group, r.version, r.plural))
            .collect();
        assert_eq!(
            uncached,
            [
                ("", "v1", "events"),
                ("autoscaling", "v1", "horizontalpodautoscalers"),
                ("events.k8s.io", "v1", "events")
            ]
        );
        let hpa_v2 = shoal_api::catalogue::find("autoscaling", "v2", "horizontalpodautoscalers").unwrap();
        assert!(is_cached(hpa_v2));
        assert!(!RESOURCES.iter().any(|r| is_cached(r) && !r.verbs.contains(&"watch")));
    }

    #[test]
    fn only_ownership_fields_count_as_ownership_changes() {
        let a = json_pod();
        let mut b = a.clone();
        b["status"] = serde_json::json!({"phase": "Running"});
        assert!(!ownership_differs(&a, &b));
        b["metadata"]["finalizers"] = serde_json::json!(["x"]);
        assert!(ownership_differs(&a, &b));
        let mut c = a.clone();
        c["metadata"]["deletionTimestamp"] = serde_json::json!("2026-01-01T00:00:00Z");
        assert!(ownership_differs(&a, &c));
    }

    #[test]
    fn a_relist_replaces_the_cache_at_once() {
        let cache = Cache::new(&RESOURCES[0]);
        let mut relist = None;
        let (changed, owners, change) = cache.apply(watcher::Event::Apply(dynamic(json_pod())), true, &mut relist);
        assert_eq!((changed, owners), (true, true));
        assert!(matches!(
            change,
            Some(Change::Object {
                old: None,
                new: Some(_)
            })
        ));
        let mut again = json_pod();
        again["status"] = serde_json::json!({"phase": "Running"});
        let (changed, owners, change) = cache.apply(watcher::Event::Apply(dynamic(again)), true, &mut relist);
        assert_eq!((changed, owners), (true, false));
        let Some(Change::Object {
            old: Some(old),
            new: Some(new),
        }) = change
        else {
            panic!("a replacement carries both objects")
        };
        assert!(old.get("status").is_none());
        assert_eq!(new["status"]["phase"], "Running");
        cache.apply(watcher::Event::Init, true, &mut relist);
        let mut other = json_pod();
        other["metadata"]["name"] = serde_json::json!("q");
        cache.apply(watcher::Event::InitApply(dynamic(other)), true, &mut relist);
        assert_eq!(
            cache.objects.read().unwrap().len(),
            1,
            "the old state stays until the list is done"
        );
        assert!(cache.objects.read().unwrap().contains_key("default/p"));
        let (changed, owners, change) = cache.apply(watcher::Event::InitDone, true, &mut relist);
        assert_eq!((changed, owners), (true, true));
        assert!(matches!(change, Some(Change::Resync)));
        let objects = cache.objects.read().unwrap();
        assert_eq!(objects.len(), 1);
        assert!(objects.contains_key("default/q"));
    }

    #[test]
    fn a_memo_derives_each_object_once_and_forgets_the_gone() {
        let a = Arc::new(json_pod());
        let b = Arc::new(serde_json::json!({"metadata": {"name": "q"}}));
        let mut memo: Memo<String> = Memo::default();
        let mut calls = 0;
        let mut derive = |o: &Arc<Value>| {
            calls += 1;
            name(o).to_string()
        };
        let views = memo.refresh(&[a.clone(), b.clone()], |o| o, &mut derive);
        assert_eq!(views, [&"p".to_string(), &"q".to_string()]);
        let views = memo.refresh(std::slice::from_ref(&b), |o| o, &mut derive);
        assert_eq!(views, [&"q".to_string()]);
        assert_eq!(memo.entries.len(), 1, "the gone object's view is dropped");
        // An object listed twice is one entry, and drops nothing.
        let views = memo.refresh(&[b.clone(), b.clone()], |o| o, &mut derive);
        assert_eq!(views.len(), 2);
        assert_eq!(memo.entries.len(), 1);
        // A replaced object (a new Arc, same content) is derived again.
        let a2 = Arc::new(json_pod());
        memo.refresh(&[a2, b], |o| o, &mut derive);
        assert_eq!(calls, 3);
        assert_eq!(memo.entries.len(), 2);
    }

    fn json_pod() -> Value {
        serde_json::json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "namespace": "default", "uid": "u1",
                         "managedFields": [{"manager": "m", "operation": "Update"}]},
            "spec": {"nodeName": "n1"},
        })
    }
}
