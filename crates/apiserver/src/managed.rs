//! Field ownership (`metadata.managedFields`) and server-side apply.
//!
//! Every write records which fields its manager set. An ordinary write (create, update,
//! patch: operation `Update`) takes the fields it changed from every other manager. An apply
//! (operation `Apply`) owns exactly the fields of its configuration: it conflicts with
//! another manager when it would change a value that manager owns (unless forced, which
//! takes the field over), and a field it owned before but no longer applies is removed when
//! no other manager owns it.
//!
//! Field sets are paths in `FieldsV1` notation: `f:<field>` for a struct or map member,
//! `k:{"name":"c"}` for an item of a list keyed by its `x-kubernetes-list-map-keys`,
//! `v:<json>` for an item of a set, and `.` for the keyed item itself. Lists that are neither
//! keyed nor sets are atomic: whoever sets them owns the whole list.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value, json};
use shoal_api::schema;

/// One field path, in `FieldsV1` elements.
pub type Path = Vec<String>;
/// A set of owned fields.
pub type FieldSet = BTreeSet<Path>;

/// A field another manager owns and an apply would change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// The owning manager.
    pub manager: String,
    /// Its `apiVersion`.
    pub api_version: String,
    /// True when the owner applied (rather than updated) the field.
    pub applied: bool,
    /// The subresource it wrote through, if any.
    pub subresource: Option<String>,
    /// The field, as upstream prints it (`.spec.template.spec.containers[name="c"].image`).
    pub field: String,
}

impl Conflict {
    /// The owner as upstream names it: `"kubectl"`, `"kubectl" with subresource "scale"
    /// using apps/v1` (appliers are named without a version).
    pub fn owner(&self) -> String {
        let mut out = format!("{:?}", self.manager);
        if let Some(s) = &self.subresource {
            out.push_str(&format!(" with subresource {s:?}"));
        }
        if !self.applied {
            out.push_str(&format!(" using {}", self.api_version));
        }
        out
    }
}

/// Upstream's message for a failed apply.
pub fn conflicts_message(conflicts: &[Conflict]) -> String {
    let mut by_manager: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    for c in conflicts {
        by_manager.entry(c.owner()).or_default().push(&c.field);
    }
    let parts: Vec<String> = by_manager
        .iter()
        .map(|(owner, fields)| match fields.as_slice() {
            [one] => format!("conflict with {owner}: {one}"),
            many => {
                let list: Vec<String> = many.iter().map(|f| format!("- {f}")).collect();
                format!("conflicts with {owner}:\n{}", list.join("\n"))
            }
        })
        .collect();
    let n = conflicts.len();
    format!(
        "Apply failed with {n} conflict{}: {}",
        if n == 1 { "" } else { "s" },
        parts.join("\n")
    )
}

/// Fields of `obj` (an object whose schema is `root`: a built-in kind's definition or a
/// custom resource's `openAPIV3Schema`) that a manager would own. Server-owned metadata,
/// `apiVersion`, `kind` and `status` are left out.
pub fn field_set(obj: &Value, root: Option<&Value>) -> FieldSet {
    let mut out = FieldSet::new();
    let Some(map) = obj.as_object() else { return out };
    for (k, v) in map {
        if matches!(k.as_str(), "apiVersion" | "kind" | "status") {
            continue;
        }
        let child = property(root, k);
        let mut path = vec![format!("f:{k}")];
        if k == "metadata" {
            if let Some(meta) = v.as_object() {
                for (mk, mv) in meta {
                    if SERVER_METADATA.contains(&mk.as_str()) {
                        continue;
                    }
                    path.push(format!("f:{mk}"));
                    collect(child.and_then(|s| schema::property(s, mk)), mv, &mut path, &mut out);
                    path.pop();
                }
            }
            continue;
        }
        collect(child, v, &mut path, &mut out);
    }
    out
}

/// The schema of top-level field `k` of an object whose schema is `root`: `metadata` is
/// `ObjectMeta` whatever a custom resource's schema says of it.
fn property<'a>(root: Option<&'a Value>, k: &str) -> Option<&'a Value> {
    match k {
        "metadata" => schema::definition("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"),
        _ => root.and_then(|s| schema::property(s, k)),
    }
}

const SERVER_METADATA: &[&str] = &[
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "creationTimestamp",
    "generation",
    "managedFields",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "generateName",
    "selfLink",
];

/// How a list is merged, from its schema.
enum ListKind {
    Map(Vec<String>),
    Set,
    Atomic,
}

fn list_kind(schema: Option<&Value>) -> ListKind {
    let Some(s) = schema.map(schema::resolve) else {
        return ListKind::Atomic;
    };
    match s.get(schema::LIST_TYPE_EXT).and_then(Value::as_str) {
        Some("map") => {
            let keys: Vec<String> = s
                .get(schema::LIST_MAP_KEYS_EXT)
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(|k| k.as_str().map(str::to_string)).collect())
                .unwrap_or_default();
            if keys.is_empty() {
                ListKind::Atomic
            } else {
                ListKind::Map(keys)
            }
        }
        Some("set") => ListKind::Set,
        Some(_) => ListKind::Atomic,
        None => match s.get(schema::PATCH_MERGE_KEY_EXT).and_then(Value::as_str) {
            // Custom schemas with only a patch merge key are keyed by it.
            Some(k) => ListKind::Map(vec![k.to_string()]),
            None => ListKind::Atomic,
        },
    }
}

/// True for a map or struct that is one value (`x-kubernetes-map-type: atomic` on the field
/// or on its definition): whoever sets it owns it whole.
fn atomic_object(schema: Option<&Value>) -> bool {
    let atomic = |s: &Value| s.get(schema::MAP_TYPE_EXT).and_then(Value::as_str) == Some("atomic");
    schema.is_some_and(|s| atomic(s) || atomic(schema::resolve(s)))
}

/// The value of list-map key `key` in `item`; a missing `protocol` is upstream's default
/// (`TCP`), as the schema's defaults fill keys before items are compared.
fn key_value(item: &Value, key: &str) -> Option<Value> {
    match item.get(key) {
        Some(v) => Some(v.clone()),
        None if key == "protocol" => Some(json!("TCP")),
        None => None,
    }
}

fn item_key(keys: &[String], item: &Value) -> Option<String> {
    let mut m = Map::new();
    for k in keys {
        if let Some(v) = key_value(item, k) {
            m.insert(k.clone(), v);
        }
    }
    (!m.is_empty()).then(|| format!("k:{}", Value::Object(m)))
}

/// True if `item` is the one `key` (a decoded `k:` element) names.
fn matches_key(item: &Value, key: &Map<String, Value>) -> bool {
    key.iter().all(|(k, v)| key_value(item, k).as_ref() == Some(v))
}

fn collect(schema: Option<&Value>, v: &Value, path: &mut Path, out: &mut FieldSet) {
    if path.len() > 64 {
        return;
    }
    match v {
        Value::Object(m) if !m.is_empty() && !atomic_object(schema) => {
            for (k, c) in m {
                path.push(format!("f:{k}"));
                collect(schema.and_then(|s| schema::property(s, k)), c, path, out);
                path.pop();
            }
        }
        Value::Array(items) if !items.is_empty() => match list_kind(schema) {
            ListKind::Map(keys) => {
                let item_schema = schema.and_then(schema::items);
                for item in items {
                    let Some(key) = item_key(&keys, item) else {
                        out.insert(path.clone());
                        return;
                    };
                    path.push(key);
                    path.push(".".into());
                    out.insert(path.clone());
                    path.pop();
                    collect(item_schema, item, path, out);
                    path.pop();
                }
            }
            ListKind::Set => {
                for item in items {
                    path.push(format!("v:{item}"));
                    out.insert(path.clone());
                    path.pop();
                }
            }
            ListKind::Atomic => {
                out.insert(path.clone());
            }
        },
        _ => {
            out.insert(path.clone());
        }
    }
}

/// The value at `path` in `obj`.
fn value_at<'a>(obj: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut cur = obj;
    for elem in path {
        if elem == "." {
            return Some(cur);
        }
        cur = step(cur, elem)?;
    }
    Some(cur)
}

fn step<'a>(cur: &'a Value, elem: &str) -> Option<&'a Value> {
    if let Some(f) = elem.strip_prefix("f:") {
        return cur.get(f);
    }
    let items = cur.as_array()?;
    if let Some(k) = elem.strip_prefix("k:") {
        let key: Map<String, Value> = serde_json::from_str(k).ok()?;
        return items.iter().find(|i| matches_key(i, &key));
    }
    if let Some(v) = elem.strip_prefix("v:") {
        let want: Value = serde_json::from_str(v).ok()?;
        return items.iter().find(|i| **i == want);
    }
    None
}

/// Removes the value at `path` from `obj` (a keyed item when the path ends in `.`).
fn remove_at(obj: &mut Value, path: &[String]) {
    let (last, parent_path) = match path {
        [p @ .., k, dot] if dot == "." => (k.as_str(), p),
        [p @ .., k] => (k.as_str(), p),
        [] => return,
    };
    let mut cur = obj;
    for elem in parent_path {
        let next = if let Some(f) = elem.strip_prefix("f:") {
            cur.get_mut(f)
        } else {
            let idx = step(cur, elem).and_then(|found| cur.as_array()?.iter().position(|i| std::ptr::eq(i, found)));
            match idx {
                Some(i) => cur.get_mut(i),
                None => None,
            }
        };
        match next {
            Some(n) => cur = n,
            None => return,
        }
    }
    if let Some(f) = last.strip_prefix("f:") {
        if let Some(m) = cur.as_object_mut() {
            m.remove(f);
        }
    } else if let Some(found) = step(cur, last) {
        let found: *const Value = found;
        if let Some(items) = cur.as_array_mut() {
            items.retain(|i| !std::ptr::eq(i, found));
        }
    }
}

/// Merges an apply configuration into `live` by the schema's list and map semantics: keyed
/// lists merge item by item on all their keys (`[containerPort, protocol]`), sets gain the
/// applied values, atomic lists and maps and every scalar take the applied value, and a
/// `null` removes the field. Applied items come first, in the configuration's order, then
/// the live items it does not name (another manager's). `top` is true for the whole object
/// (whose `metadata` is always `ObjectMeta`).
fn merge_applied(live: &mut Value, config: &Value, schema: Option<&Value>, top: bool) {
    match (live, config) {
        (Value::Object(l), Value::Object(c)) if !atomic_object(schema) => {
            for (k, v) in c {
                if v.is_null() {
                    l.remove(k);
                    continue;
                }
                let child = match top {
                    true => property(schema, k),
                    false => schema.and_then(|s| schema::property(s, k)),
                };
                match l.get_mut(k) {
                    Some(existing) => merge_applied(existing, v, child, false),
                    None => {
                        l.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (Value::Array(l), Value::Array(c)) => match list_kind(schema) {
            ListKind::Map(keys) => {
                let item_schema = schema.and_then(schema::items);
                let mut rest: Vec<(Option<String>, Value)> = std::mem::take(l)
                    .into_iter()
                    .map(|i| (item_key(&keys, &i), i))
                    .collect();
                for item in c {
                    let key = item_key(&keys, item);
                    let found = key
                        .is_some()
                        .then(|| rest.iter().position(|(k, _)| *k == key))
                        .flatten();
                    match found {
                        Some(i) => {
                            let (_, mut existing) = rest.remove(i);
                            merge_applied(&mut existing, item, item_schema, false);
                            l.push(existing);
                        }
                        None => l.push(item.clone()),
                    }
                }
                l.extend(rest.into_iter().map(|(_, i)| i));
            }
            ListKind::Set => {
                let rest: Vec<Value> = l.drain(..).filter(|i| !c.contains(i)).collect();
                let mut applied: Vec<Value> = Vec::with_capacity(c.len());
                for item in c {
                    if !applied.contains(item) {
                        applied.push(item.clone());
                    }
                }
                *l = applied;
                l.extend(rest);
            }
            ListKind::Atomic => *l = c.clone(),
        },
        (l, c) => *l = c.clone(),
    }
}

/// Upstream's display of a path: `.spec.containers[name="c"].image`.
pub fn display(path: &[String]) -> String {
    let mut out = String::new();
    for elem in path {
        if let Some(f) = elem.strip_prefix("f:") {
            out.push('.');
            out.push_str(f);
        } else if let Some(k) = elem.strip_prefix("k:") {
            let key: Map<String, Value> = serde_json::from_str(k).unwrap_or_default();
            let parts: Vec<String> = key.iter().map(|(kk, kv)| format!("{kk}={kv}")).collect();
            out.push_str(&format!("[{}]", parts.join(",")));
        } else if let Some(v) = elem.strip_prefix("v:") {
            out.push_str(&format!("[={v}]"));
        }
    }
    out
}

/// Encodes a field set as `FieldsV1`.
pub fn to_fields_v1(set: &FieldSet) -> Value {
    let mut root = Map::new();
    for path in set {
        let mut cur = &mut root;
        for elem in path {
            let next = cur.entry(elem.clone()).or_insert_with(|| json!({}));
            match next.as_object_mut() {
                Some(m) => cur = m,
                None => break,
            }
        }
    }
    Value::Object(root)
}

/// Decodes `FieldsV1` into a field set (leaves and `.` markers).
pub fn from_fields_v1(v: &Value) -> FieldSet {
    fn walk(v: &Value, path: &mut Path, out: &mut FieldSet) {
        match v.as_object() {
            Some(m) if !m.is_empty() => {
                for (k, c) in m {
                    path.push(k.clone());
                    if k == "." {
                        out.insert(path.clone());
                    } else {
                        walk(c, path, out);
                    }
                    path.pop();
                }
            }
            _ if !path.is_empty() => {
                out.insert(path.clone());
            }
            _ => {}
        }
    }
    let mut out = FieldSet::new();
    walk(v, &mut Vec::new(), &mut out);
    out
}

/// One `managedFields` entry, decoded.
#[derive(Debug, Clone)]
struct Entry {
    manager: String,
    operation: String,
    api_version: String,
    time: String,
    subresource: Option<String>,
    fields: FieldSet,
}

fn entries_of(obj: &Value) -> Vec<Entry> {
    obj["metadata"]["managedFields"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| Entry {
                    manager: e["manager"].as_str().unwrap_or_default().to_string(),
                    operation: e["operation"].as_str().unwrap_or("Update").to_string(),
                    api_version: e["apiVersion"].as_str().unwrap_or_default().to_string(),
                    time: e["time"].as_str().unwrap_or_default().to_string(),
                    subresource: e["subresource"].as_str().map(str::to_string),
                    fields: from_fields_v1(&e["fieldsV1"]),
                })
                .collect()
        })
        .unwrap_or_default()
}

fn store_entries(obj: &mut Value, entries: Vec<Entry>) {
    let list: Vec<Value> = entries
        .into_iter()
        .filter(|e| !e.fields.is_empty())
        .map(|e| {
            let mut m = Map::new();
            m.insert("manager".into(), json!(e.manager));
            m.insert("operation".into(), json!(e.operation));
            m.insert("apiVersion".into(), json!(e.api_version));
            m.insert("time".into(), json!(e.time));
            m.insert("fieldsType".into(), json!("FieldsV1"));
            m.insert("fieldsV1".into(), to_fields_v1(&e.fields));
            if let Some(s) = e.subresource {
                m.insert("subresource".into(), json!(s));
            }
            Value::Object(m)
        })
        .collect();
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        if list.is_empty() {
            meta.remove("managedFields");
        } else {
            meta.insert("managedFields".into(), Value::Array(list));
        }
    }
}

/// Who writes, for [`record_update`] and [`apply`].
pub struct Writer<'a> {
    /// `fieldManager`.
    pub manager: &'a str,
    /// The object's `apiVersion`.
    pub api_version: &'a str,
    /// `status`, `scale`, or none.
    pub subresource: Option<&'a str>,
    /// The time to record.
    pub now: &'a str,
}

/// Records an `Update` by `w` that turned `old` (none on create) into `new`: the manager
/// takes every field it changed, other managers lose those, and fields no longer present
/// are dropped from every set. `new`'s own `managedFields` are replaced.
pub fn record_update(old: Option<&Value>, new: &mut Value, root: Option<&Value>, w: &Writer) {
    let mut entries = old.map(entries_of).unwrap_or_default();
    let new_set = field_set(new, root);
    let changed: FieldSet = match old {
        None => new_set.clone(),
        Some(o) => new_set
            .iter()
            .filter(|p| match p.last().map(String::as_str) {
                // A keyed item changes hands only when it is new.
                Some(".") => value_at(o, p).is_none(),
                _ => value_at(o, p) != value_at(new, p),
            })
            .cloned()
            .collect(),
    };
    for e in &mut entries {
        e.fields.retain(|p| !changed.contains(p) && value_at(new, p).is_some());
    }
    if !changed.is_empty() {
        let subresource = w.subresource.map(str::to_string);
        let pos = entries
            .iter()
            .position(|e| e.manager == w.manager && e.operation == "Update" && e.subresource == subresource);
        match pos {
            Some(i) => {
                entries[i].fields.extend(changed);
                entries[i].time = w.now.to_string();
                entries[i].api_version = w.api_version.to_string();
            }
            None => entries.push(Entry {
                manager: w.manager.to_string(),
                operation: "Update".into(),
                api_version: w.api_version.to_string(),
                time: w.now.to_string(),
                subresource,
                fields: changed,
            }),
        }
    }
    store_entries(new, entries);
}

/// Server-side apply of `config` by `w` onto `live` (the stored object, or `{}` on create).
/// Returns the merged object with its new `managedFields`, or the conflicts.
pub fn apply(
    live: &Value,
    config: &Value,
    root: Option<&Value>,
    w: &Writer,
    force: bool,
) -> Result<Value, Vec<Conflict>> {
    let mut entries = entries_of(live);
    let applied = field_set(config, root);
    let mine = |e: &Entry| e.manager == w.manager && e.operation == "Apply" && e.subresource.is_none();
    // Conflicts: fields others own whose value this apply changes.
    let mut taken: Vec<(usize, Path)> = Vec::new();
    for (i, e) in entries.iter().enumerate().filter(|(_, e)| !mine(e)) {
        taken.extend(
            e.fields
                .iter()
                .filter(|p| {
                    applied.contains(*p)
                        && p.last().is_some_and(|l| l != ".")
                        && value_at(live, p) != value_at(config, p)
                })
                .map(|p| (i, p.clone())),
        );
    }
    // kubectl moving from client-side to server-side apply: the fields its last-applied
    // configuration set, still at those values, are its own to take (upstream's
    // last-applied manager).
    let last = (w.manager == KUBECTL).then(|| last_applied(live)).flatten();
    let allowed = |p: &Path| {
        last.as_ref()
            .is_some_and(|last| value_at(last, p).is_some() && value_at(last, p) == value_at(live, p))
    };
    let conflicts: Vec<Conflict> = taken
        .iter()
        .filter(|(_, p)| !allowed(p))
        .map(|(i, p)| Conflict {
            manager: entries[*i].manager.clone(),
            api_version: entries[*i].api_version.clone(),
            applied: entries[*i].operation == "Apply",
            subresource: entries[*i].subresource.clone(),
            field: display(p),
        })
        .collect();
    if !force && !conflicts.is_empty() {
        return Err(conflicts);
    }
    for (i, p) in &taken {
        entries[*i].fields.remove(p);
    }
    // Fields this manager applied before and no longer does, that nobody else owns, go.
    let before: FieldSet = entries
        .iter()
        .filter(|e| mine(e))
        .flat_map(|e| e.fields.iter().cloned())
        .collect();
    let others: FieldSet = entries
        .iter()
        .filter(|e| !mine(e))
        .flat_map(|e| e.fields.iter().cloned())
        .collect();
    let mut merged = live.clone();
    let mut dropped: Vec<&Path> = before
        .iter()
        .filter(|p| !applied.contains(*p))
        .filter(|p| {
            // Keep an item (or field) when another manager owns it or anything beneath it.
            let prefix: &[String] = match p.last().map(String::as_str) {
                Some(".") => &p[..p.len() - 1],
                _ => p,
            };
            !others.iter().any(|o| o.starts_with(prefix))
        })
        .collect();
    dropped.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in dropped {
        remove_at(&mut merged, p);
    }
    merge_applied(&mut merged, config, root, true);
    // Applied fields change hands from Update managers whose value the apply overwrote (done
    // above when forced); an identical value stays shared. The applier's entry keeps its
    // place, so that an apply that changes nothing leaves managedFields as they were.
    let entry = Entry {
        manager: w.manager.to_string(),
        operation: "Apply".into(),
        api_version: w.api_version.to_string(),
        time: w.now.to_string(),
        subresource: None,
        fields: applied,
    };
    match entries.iter().position(mine) {
        Some(i) => entries[i] = entry,
        None => entries.push(entry),
    }
    store_entries(&mut merged, entries);
    if w.manager == KUBECTL {
        sync_last_applied(&mut merged, config);
    }
    Ok(merged)
}

/// kubectl's field manager for `apply --server-side`.
const KUBECTL: &str = "kubectl";

/// kubectl's client-side apply annotation.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// The configuration a client-side apply recorded on `obj`, decoded.
fn last_applied(obj: &Value) -> Option<Value> {
    let text = obj["metadata"]["annotations"][LAST_APPLIED].as_str()?;
    serde_json::from_str(text).ok()
}

/// After a server-side apply by kubectl onto an object that carries a client-side apply
/// annotation, the annotation records the new configuration (so that a later client-side
/// apply computes its patch from it), as upstream's last-applied updater does.
fn sync_last_applied(merged: &mut Value, config: &Value) {
    if merged["metadata"]["annotations"].get(LAST_APPLIED).is_none() {
        return;
    }
    let mut recorded = config.clone();
    if let Some(meta) = recorded.get_mut("metadata").and_then(Value::as_object_mut)
        && let Some(annotations) = meta.get_mut("annotations").and_then(Value::as_object_mut)
    {
        annotations.remove(LAST_APPLIED);
        if annotations.is_empty() {
            meta.remove("annotations");
        }
    }
    let text = serde_json::to_string(&recorded).unwrap_or_default();
    merged["metadata"]["annotations"][LAST_APPLIED] = Value::String(text + "\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ds_schema() -> Option<&'static Value> {
        schema::definition("io.k8s.api.apps.v1.DaemonSet")
    }

    fn ds(image: &str) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "x", "labels": {"a": "1"}},
               "spec": {"selector": {"matchLabels": {"a": "1"}},
                        "template": {"metadata": {"labels": {"a": "1"}},
                                     "spec": {"containers": [{"name": "c", "image": image}]}}}})
    }

    fn writer(m: &str) -> Writer<'_> {
        Writer {
            manager: m,
            api_version: "apps/v1",
            subresource: None,
            now: "2026-01-01T00:00:00Z",
        }
    }

    #[test]
    fn field_sets_key_containers_by_name() {
        let set = field_set(&ds("i:1"), ds_schema());
        let image: Path = [
            "f:spec",
            "f:template",
            "f:spec",
            "f:containers",
            "k:{\"name\":\"c\"}",
            "f:image",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert!(set.contains(&image), "{set:?}");
        assert_eq!(display(&image), ".spec.template.spec.containers[name=\"c\"].image");
        assert!(set.contains(&vec!["f:metadata".to_string(), "f:labels".into(), "f:a".into()]));
        assert!(!set.iter().any(|p| p[0] == "f:apiVersion"));
        let v1 = to_fields_v1(&set);
        assert_eq!(from_fields_v1(&v1), set);
    }

    #[test]
    fn apply_conflicts_with_another_owner_unless_forced() {
        let mut live = ds("i:1");
        record_update(None, &mut live, ds_schema(), &writer("kubectl-create"));
        assert_eq!(live["metadata"]["managedFields"][0]["manager"], "kubectl-create");
        // Same values: no conflict, shared ownership.
        let same = apply(&live, &ds("i:1"), ds_schema(), &writer("ssa"), false).unwrap();
        assert_eq!(same["metadata"]["managedFields"].as_array().unwrap().len(), 2);
        // A changed image conflicts.
        let err = apply(&live, &ds("i:2"), ds_schema(), &writer("ssa"), false).unwrap_err();
        assert_eq!(err.len(), 1);
        assert_eq!(
            conflicts_message(&err),
            "Apply failed with 1 conflict: conflict with \"kubectl-create\" using apps/v1: .spec.template.spec.containers[name=\"c\"].image"
        );
        // Forced: the image changes hands.
        let forced = apply(&live, &ds("i:2"), ds_schema(), &writer("ssa"), true).unwrap();
        assert_eq!(forced["spec"]["template"]["spec"]["containers"][0]["image"], "i:2");
        let create = entries_of(&forced)
            .into_iter()
            .find(|e| e.manager == "kubectl-create")
            .unwrap();
        assert!(!create.fields.iter().any(|p| p.last().is_some_and(|l| l == "f:image")));
    }

    #[test]
    fn apply_removes_fields_it_no_longer_sets() {
        let mut config = ds("i:1");
        config["metadata"]["labels"]["b"] = json!("2");
        config["spec"]["minReadySeconds"] = json!(5);
        let first = apply(&json!({}), &config, ds_schema(), &writer("ssa"), false).unwrap();
        assert_eq!(first["spec"]["minReadySeconds"], 5);
        let second = apply(&first, &ds("i:1"), ds_schema(), &writer("ssa"), false).unwrap();
        assert!(second["spec"].get("minReadySeconds").is_none(), "{second}");
        assert!(second["metadata"]["labels"].get("b").is_none());
        assert_eq!(second["metadata"]["labels"]["a"], "1");
    }

    #[test]
    fn updates_take_changed_fields_from_others() {
        let mut live = ds("i:1");
        record_update(None, &mut live, ds_schema(), &writer("a"));
        let mut next = live.clone();
        next["spec"]["template"]["spec"]["containers"][0]["image"] = json!("i:2");
        record_update(Some(&live), &mut next, ds_schema(), &writer("b"));
        let entries = entries_of(&next);
        let b = entries.iter().find(|e| e.manager == "b").unwrap();
        assert_eq!(b.fields.len(), 1);
        let a = entries.iter().find(|e| e.manager == "a").unwrap();
        assert!(!a.fields.iter().any(|p| p.last().is_some_and(|l| l == "f:image")));
    }

    fn dns(ports: Value) -> Value {
        let mut d = ds("dns:1");
        d["spec"]["template"]["spec"]["containers"][0]["ports"] = ports;
        d
    }

    #[test]
    fn ports_are_keyed_by_port_and_protocol() {
        let config = dns(json!([
            {"containerPort": 53, "protocol": "UDP", "name": "dns"},
            {"containerPort": 53, "name": "dns-tcp"}
        ]));
        let set = field_set(&config, ds_schema());
        let keys: BTreeSet<&str> = set.iter().filter_map(|p| p.get(6).map(String::as_str)).collect();
        assert!(
            keys.contains("k:{\"containerPort\":53,\"protocol\":\"UDP\"}"),
            "{keys:?}"
        );
        assert!(
            keys.contains("k:{\"containerPort\":53,\"protocol\":\"TCP\"}"),
            "{keys:?}"
        );
        let first = apply(&json!({}), &config, ds_schema(), &writer("ssa"), false).unwrap();
        let ports = &first["spec"]["template"]["spec"]["containers"][0]["ports"];
        assert_eq!(ports.as_array().unwrap().len(), 2, "{ports}");
        // The server defaults the protocol; applying the same configuration again is no change.
        let mut live = first.clone();
        live["spec"]["template"]["spec"]["containers"][0]["ports"][1]["protocol"] = json!("TCP");
        let second = apply(&live, &config, ds_schema(), &writer("ssa"), false).unwrap();
        assert_eq!(second, live);
        // Dropping one port removes exactly that one.
        let fewer = dns(json!([{"containerPort": 53, "protocol": "UDP", "name": "dns"}]));
        let third = apply(&second, &fewer, ds_schema(), &writer("ssa"), false).unwrap();
        assert_eq!(
            third["spec"]["template"]["spec"]["containers"][0]["ports"],
            json!([{"containerPort": 53, "protocol": "UDP", "name": "dns"}])
        );
    }

    #[test]
    fn atomic_lists_and_maps_are_owned_whole() {
        let mut config = ds("i:1");
        config["spec"]["template"]["spec"]["tolerations"] = json!([{"operator": "Exists"}]);
        config["spec"]["template"]["spec"]["nodeSelector"] = json!({"a": "b"});
        let set = field_set(&config, ds_schema());
        let spec = ["f:spec", "f:template", "f:spec"].map(String::from).to_vec();
        let with = |f: &str| {
            let mut p = spec.clone();
            p.push(f.into());
            p
        };
        assert!(set.contains(&with("f:tolerations")));
        assert!(set.contains(&with("f:nodeSelector")), "{set:?}");
        assert!(!set.iter().any(|p| p.len() > 4 && p[3] == "f:nodeSelector"));
        // Another value replaces the whole list and map.
        let first = apply(&json!({}), &config, ds_schema(), &writer("ssa"), false).unwrap();
        config["spec"]["template"]["spec"]["nodeSelector"] = json!({"c": "d"});
        let second = apply(&first, &config, ds_schema(), &writer("ssa"), false).unwrap();
        assert_eq!(second["spec"]["template"]["spec"]["nodeSelector"], json!({"c": "d"}));
    }

    #[test]
    fn kubectl_takes_over_what_its_client_side_apply_set() {
        let mut live = ds("i:1");
        let last = serde_json::to_string(&ds("i:1")).unwrap();
        live["metadata"]["annotations"] = json!({ LAST_APPLIED: last });
        record_update(None, &mut live, ds_schema(), &writer("kubectl-client-side-apply"));
        // Another manager's change to a field the last-applied configuration does not hold.
        let mut scaled = live.clone();
        scaled["spec"]["minReadySeconds"] = json!(7);
        record_update(Some(&live), &mut scaled, ds_schema(), &writer("other"));
        // A new image conflicts for any manager but kubectl...
        assert!(apply(&scaled, &ds("i:2"), ds_schema(), &writer("someone"), false).is_err());
        let upgraded = apply(&scaled, &ds("i:2"), ds_schema(), &writer("kubectl"), false).unwrap();
        assert_eq!(upgraded["spec"]["template"]["spec"]["containers"][0]["image"], "i:2");
        // ...which also records its configuration for later client-side applies.
        let recorded: Value =
            serde_json::from_str(upgraded["metadata"]["annotations"][LAST_APPLIED].as_str().unwrap()).unwrap();
        assert_eq!(recorded["spec"]["template"]["spec"]["containers"][0]["image"], "i:2");
        assert!(recorded["metadata"].get("annotations").is_none(), "{recorded}");
        // A field another manager changed away from last-applied still conflicts.
        let mut config = ds("i:2");
        config["spec"]["minReadySeconds"] = json!(1);
        let err = apply(&scaled, &config, ds_schema(), &writer("kubectl"), false).unwrap_err();
        assert_eq!(err.len(), 1);
        assert_eq!(err[0].field, ".spec.minReadySeconds");
    }
}
