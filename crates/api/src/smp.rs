//! Strategic merge patch (`application/strategic-merge-patch+json`), applied the way
//! upstream's `strategicpatch.StrategicMergePatch` applies it, with the patch strategies of
//! [`crate::schema`] (read from the `x-kubernetes-patch-*` extensions while walking the
//! schema alongside the document).
//!
//! Semantics, in short:
//! - maps merge recursively; a `null` value deletes the key;
//! - lists replace whole unless the field's strategy is `merge`: then lists of objects merge
//!   item by item on the merge key, lists of primitives merge as a set;
//! - merged lists keep the patch's order for the items it names, and put the other (server
//!   only) items back where the original order allows; like upstream, an item the patch adds
//!   without a `$setElementOrder` goes before the server-only items that follow it;
//! - directives: `$patch: replace|delete|merge` on maps, `$patch: delete|replace` on list
//!   items, `$setElementOrder/<list>`, `$retainKeys`, `$deleteFromPrimitiveList/<list>`.
//!   Directives never appear in the result;
//! - positions the schema does not describe (free-form maps, `preserve-unknown-fields`,
//!   unknown definitions) merge maps like a JSON merge patch and replace lists.

use serde_json::{Map, Value};

use crate::schema::{self, PatchStrategy, Strategy};

/// The directive key (`$patch`) inside maps and list items.
pub const PATCH_DIRECTIVE: &str = "$patch";

/// The directive listing the keys a map keeps (`$retainKeys`).
pub const RETAIN_KEYS_DIRECTIVE: &str = "$retainKeys";

/// Prefix of the parallel list naming the primitives to remove from a list.
pub const DELETE_FROM_PRIMITIVE_LIST_PREFIX: &str = "$deleteFromPrimitiveList";

/// Prefix of the parallel list fixing the order of a merged list.
pub const SET_ELEMENT_ORDER_PREFIX: &str = "$setElementOrder";

/// Why a strategic merge patch could not be applied. Messages follow upstream's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SmpError {
    /// The original or the patch is not a JSON object.
    #[error("invalid JSON document")]
    BadJsonDoc,
    /// A list item of a merged list lacks the merge key.
    #[error("map: {map} does not contain declared merge key: {key}")]
    NoMergeKey {
        /// The offending item, as JSON.
        map: String,
        /// The merge key.
        key: String,
    },
    /// A `$patch` directive with an unknown value.
    #[error("unknown patch type: {directive} in map: {map}")]
    BadPatchType {
        /// The directive's value, as JSON.
        directive: String,
        /// The map holding it, as JSON.
        map: String,
    },
    /// `$patch: merge` on a list item (upstream does not support it).
    #[error("merging lists cannot yet be specified in the patch")]
    MergeDirectiveInList,
    /// A merged list holds lists.
    #[error("lists of lists are not supported")]
    ListOfLists,
    /// A merged list mixes objects and primitives.
    #[error("list element types are not identical: {0}")]
    MixedList(String),
    /// A list of objects has the `merge` strategy but no merge key.
    #[error("cannot merge lists without merge key for {0}")]
    NoMergeKeyDeclared(String),
    /// A value has the wrong JSON type (a directive list that is not a list, ...).
    #[error("expected a {expected}, but received a {actual}")]
    BadArgType {
        /// The expected JSON type.
        expected: &'static str,
        /// The JSON type found.
        actual: &'static str,
    },
    /// A malformed `$deleteFromPrimitiveList` directive.
    #[error("invalid patch format of primitive list")]
    BadPrimitiveListFormat,
    /// A malformed `$retainKeys` directive.
    #[error("invalid patch format of retainKeys")]
    BadRetainKeysFormat,
    /// The patch sets a key its `$retainKeys` directive does not list.
    #[error("patch content doesn't match retainKeys list")]
    RetainKeysMismatch,
    /// A malformed `$setElementOrder` directive.
    #[error("invalid patch format of setElementOrder list")]
    BadSetElementOrderFormat,
    /// The patch list's order contradicts its `$setElementOrder` list.
    #[error("The order in patch list:\n{patch}\n doesn't match $setElementOrder list:\n{order}\n")]
    OrderMismatch {
        /// The patch list, as JSON.
        patch: String,
        /// The `$setElementOrder` list, as JSON.
        order: String,
    },
}

impl SmpError {
    /// The HTTP status upstream's API server answers with: 400 for malformed documents and
    /// directives, 422 for lists of lists and `$retainKeys` mismatches, 500 for the rest
    /// (upstream does not classify them, e.g. a missing merge key).
    pub fn status_code(&self) -> u16 {
        match self {
            SmpError::BadJsonDoc
            | SmpError::BadPrimitiveListFormat
            | SmpError::BadRetainKeysFormat
            | SmpError::BadSetElementOrderFormat => 400,
            SmpError::ListOfLists | SmpError::RetainKeysMismatch => 422,
            _ => 500,
        }
    }
}

type Result<T, E = SmpError> = std::result::Result<T, E>;

type JsonMap = Map<String, Value>;

/// Applies the strategic merge patch `patch` to `original`, an object whose schema is the
/// definition `definition` (`io.k8s.api.apps.v1.DaemonSet`; see
/// [`schema::definition_name`]). An unknown definition patches without schema knowledge (maps
/// merge, lists replace). Both documents must be JSON objects.
pub fn strategic_merge(original: &Value, patch: &Value, definition: &str) -> Result<Value> {
    let (Value::Object(original), Value::Object(patch)) = (original, patch) else {
        return Err(SmpError::BadJsonDoc);
    };
    let node = Node(schema::definition(definition).map(schema::resolve));
    merge_map(original.clone(), patch.clone(), node).map(Value::Object)
}

/// The (resolved) schema at the current position of the walk; `None` where unknown.
#[derive(Clone, Copy)]
struct Node(Option<&'static Value>);

impl Node {
    /// The schema of `field` and its patch strategy.
    fn field(self, field: &str) -> (Node, Option<PatchStrategy>) {
        let Some(property) = self.0.and_then(|s| schema::property(s, field)) else {
            return (Node(None), None);
        };
        (
            Node(Some(schema::resolve(property))),
            PatchStrategy::from_schema(property),
        )
    }

    /// The schema of the items of this list.
    fn items(self) -> Node {
        Node(self.0.and_then(|s| s.get("items")).map(schema::resolve))
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "list",
        Value::Object(_) => "map",
    }
}

fn render(value: &Value) -> String {
    value.to_string()
}

fn render_map(map: &JsonMap) -> String {
    render(&Value::Object(map.clone()))
}

/// The field a parallel-list directive key (`$setElementOrder/containers`) refers to.
fn directive_field<'k>(key: &'k str, prefix: &str) -> Option<&'k str> {
    key.strip_prefix(prefix)?.strip_prefix('/').filter(|f| !f.is_empty())
}

// ---------------------------------------------------------------------------------------
// Maps

/// Merges `patch` into `original`, both maps at the schema position `node`.
fn merge_map(mut original: JsonMap, mut patch: JsonMap, node: Node) -> Result<JsonMap> {
    if let Some(directive) = patch.remove(PATCH_DIRECTIVE) {
        match directive.as_str() {
            Some("replace") => return merge_map(Map::new(), patch, node),
            Some("delete") => return Ok(Map::new()),
            // Upstream rejects `$patch: merge` on maps; it asks for what merging does anyway.
            Some("merge") => {}
            _ => {
                return Err(SmpError::BadPatchType {
                    directive: render(&directive),
                    map: render_map(&patch),
                });
            }
        }
    }
    apply_retain_keys(&mut original, &mut patch)?;
    apply_element_orders(&mut original, &mut patch, node)?;
    for (key, value) in patch {
        merge_field(&mut original, key, value, node)?;
    }
    Ok(original)
}

/// `$retainKeys`: drops the keys of `original` the list does not name, after checking that
/// the patch sets no key outside the list.
fn apply_retain_keys(original: &mut JsonMap, patch: &mut JsonMap) -> Result<()> {
    let Some(keys) = patch.remove(RETAIN_KEYS_DIRECTIVE) else {
        return Ok(());
    };
    let Value::Array(keys) = keys else {
        return Err(SmpError::BadRetainKeysFormat);
    };
    let retained = |key: &str| keys.iter().any(|k| k.as_str() == Some(key));
    let is_parallel_list =
        |key: &str| key.starts_with(DELETE_FROM_PRIMITIVE_LIST_PREFIX) || key.starts_with(SET_ELEMENT_ORDER_PREFIX);
    for (key, value) in patch.iter() {
        if !value.is_null() && !is_parallel_list(key) && !retained(key) {
            return Err(SmpError::RetainKeysMismatch);
        }
    }
    original.retain(|key, _| retained(key));
    Ok(())
}

/// Merges one patch entry into `original`.
fn merge_field(original: &mut JsonMap, key: String, value: Value, node: Node) -> Result<()> {
    if key.starts_with(DELETE_FROM_PRIMITIVE_LIST_PREFIX) {
        let field = directive_field(&key, DELETE_FROM_PRIMITIVE_LIST_PREFIX).ok_or(SmpError::BadPrimitiveListFormat)?;
        return delete_from_primitive_list(original, field, value);
    }
    if value.is_null() {
        original.remove(&key);
        return Ok(());
    }
    let (child, strategy) = node.field(&key);
    let merged = match original.remove(&key) {
        Some(existing) => merge_value(existing, value, child, strategy)?,
        None => fresh_value(value, child, strategy)?,
    };
    original.insert(key, merged);
    Ok(())
}

/// Merges a patch value into an existing value of a field.
fn merge_value(existing: Value, patch: Value, node: Node, strategy: Option<PatchStrategy>) -> Result<Value> {
    let replace = strategy.is_some_and(|s| s.strategy == Strategy::Replace);
    match (existing, patch) {
        (Value::Object(existing), Value::Object(patch)) if !replace => {
            Ok(Value::Object(merge_map(existing, patch, node)?))
        }
        (Value::Array(existing), Value::Array(patch)) => {
            Ok(Value::Array(merge_list_field(existing, patch, strategy, node)?))
        }
        (_, patch) => fresh_value(patch, node, strategy),
    }
}

/// A patch value for a field the original lacks (or whose type changes): the patch merged
/// into nothing, so that its directives and `null`s disappear.
fn fresh_value(patch: Value, node: Node, strategy: Option<PatchStrategy>) -> Result<Value> {
    match patch {
        Value::Object(patch) => Ok(Value::Object(merge_map(Map::new(), patch, node)?)),
        Value::Array(patch) => Ok(Value::Array(merge_list_field(Vec::new(), patch, strategy, node)?)),
        scalar => Ok(scalar),
    }
}

/// `$deleteFromPrimitiveList/<field>`: removes the listed values from the field's list.
fn delete_from_primitive_list(original: &mut JsonMap, field: &str, value: Value) -> Result<()> {
    let to_delete = match value {
        Value::Array(values) => values,
        Value::Null => return Ok(()),
        _ => return Err(SmpError::BadPrimitiveListFormat),
    };
    if let Some(Value::Array(list)) = original.get_mut(field) {
        list.retain(|item| !to_delete.contains(item));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// $setElementOrder

/// Processes every `$setElementOrder/<field>` directive of `patch`: merges the field's list
/// (taking it out of `patch`) and orders the result as the directive says.
fn apply_element_orders(original: &mut JsonMap, patch: &mut JsonMap, node: Node) -> Result<()> {
    let directives: Vec<String> = patch
        .keys()
        .filter(|k| k.starts_with(SET_ELEMENT_ORDER_PREFIX))
        .cloned()
        .collect();
    for directive in directives {
        let order = patch.remove(&directive).unwrap_or(Value::Null);
        let field = directive_field(&directive, SET_ELEMENT_ORDER_PREFIX).ok_or(SmpError::BadSetElementOrderFormat)?;
        let order = expect_list(order)?;
        let (child, strategy) = node.field(field);
        let key = strategy.and_then(|s| s.merge_key);
        let patch_list = patch.remove(field).map(expect_list).transpose()?;
        let original_list = original.remove(field).map(expect_list).transpose()?;
        if let Some(patch_list) = &patch_list {
            validate_order(patch_list, &order, key)?;
        }
        let server_order = identities(original_list.as_deref().unwrap_or_default(), key);
        let merged = match (original_list, patch_list) {
            (Some(existing), None) => existing,
            (existing, Some(patch_list)) => {
                merge_list_field(existing.unwrap_or_default(), patch_list, strategy, child)?
            }
            (None, None) => continue,
        };
        let order_ids = order
            .iter()
            .map(|item| identity(item, key).cloned())
            .collect::<Result<Vec<_>>>()?;
        let ordered = order_by(merged, &order_ids, &server_order, key)?;
        original.insert(field.to_string(), Value::Array(ordered));
    }
    Ok(())
}

fn expect_list(value: Value) -> Result<Vec<Value>> {
    match value {
        Value::Array(items) => Ok(items),
        other => Err(SmpError::BadArgType {
            expected: "list",
            actual: type_name(&other),
        }),
    }
}

/// Checks that the patch list names its items in the order of the `$setElementOrder` list,
/// and names no item the order list lacks (deletions and directive items aside).
fn validate_order(patch: &[Value], order: &[Value], key: Option<&str>) -> Result<()> {
    if order.is_empty() || patch.is_empty() {
        return Ok(());
    }
    let items: Vec<&Value> = patch
        .iter()
        .filter(|item| key.is_none() || !is_delete_item(item))
        .collect();
    let (mut patch_index, mut order_index) = (0, 0);
    while patch_index < items.len() && order_index < order.len() {
        if items[patch_index].get(PATCH_DIRECTIVE).is_some() {
            patch_index += 1;
            continue;
        }
        if identity(items[patch_index], key)? == identity(&order[order_index], key)? {
            patch_index += 1;
        }
        order_index += 1;
    }
    if patch_index < items.len() {
        return Err(SmpError::OrderMismatch {
            patch: render(&Value::Array(patch.to_vec())),
            order: render(&Value::Array(order.to_vec())),
        });
    }
    Ok(())
}

fn is_delete_item(item: &Value) -> bool {
    item.get(PATCH_DIRECTIVE).and_then(Value::as_str) == Some("delete")
}

/// What identifies a list item: its merge key's value, or the item itself for primitives.
fn identity<'v>(item: &'v Value, key: Option<&str>) -> Result<&'v Value> {
    let Some(key) = key else { return Ok(item) };
    let Value::Object(map) = item else {
        return Err(SmpError::BadArgType {
            expected: "map",
            actual: type_name(item),
        });
    };
    map.get(key).ok_or_else(|| SmpError::NoMergeKey {
        map: render_map(map),
        key: key.to_string(),
    })
}

/// The identities of the items of an original list (items without one are skipped: they
/// cannot be matched by anything).
fn identities(items: &[Value], key: Option<&str>) -> Vec<Value> {
    items
        .iter()
        .filter_map(|item| identity(item, key).ok().cloned())
        .collect()
}

fn position(ids: &[Value], item: &Value, key: Option<&str>) -> Option<usize> {
    let id = identity(item, key).ok()?;
    ids.iter().position(|candidate| candidate == id)
}

/// Splits `merged` into the items `order` names and the others, then interleaves them.
fn order_by(merged: Vec<Value>, order: &[Value], server_order: &[Value], key: Option<&str>) -> Result<Vec<Value>> {
    if key.is_some() {
        merged.iter().try_for_each(|item| identity(item, key).map(drop))?;
    }
    let (named, server_only): (Vec<Value>, Vec<Value>) = merged
        .into_iter()
        .partition(|item| position(order, item, key).is_some());
    Ok(normalize(named, server_only, order, server_order, key))
}

/// Orders the patch-named items by `patch_order` and the server-only items by
/// `server_order`, then interleaves them: a server-only item goes first when the original
/// list had it before the next patch item; otherwise the patch item goes first.
fn normalize(
    mut named: Vec<Value>,
    mut server_only: Vec<Value>,
    patch_order: &[Value],
    server_order: &[Value],
    key: Option<&str>,
) -> Vec<Value> {
    named.sort_by_key(|item| position(patch_order, item, key).unwrap_or(usize::MAX));
    server_only.sort_by_key(|item| position(server_order, item, key).unwrap_or(usize::MAX));
    let mut out = Vec::with_capacity(named.len() + server_only.len());
    let mut left = server_only.into_iter().peekable();
    let mut right = named.into_iter().peekable();
    while let (Some(l), Some(r)) = (left.peek(), right.peek()) {
        let before = match (position(server_order, l, key), position(server_order, r, key)) {
            (Some(a), Some(b)) => a < b,
            _ => false,
        };
        out.extend(if before { left.next() } else { right.next() });
    }
    out.extend(left);
    out.extend(right);
    out
}

// ---------------------------------------------------------------------------------------
// Lists

/// Merges a patch list into a field's list, by the field's strategy; `node` is the schema of
/// the list itself.
fn merge_list_field(
    original: Vec<Value>,
    patch: Vec<Value>,
    strategy: Option<PatchStrategy>,
    node: Node,
) -> Result<Vec<Value>> {
    match strategy {
        Some(s) if s.merges() => merge_list(original, patch, s.merge_key, node.items()),
        _ => replace_list(patch, node.items()),
    }
}

/// A list that replaces the original: its object items are cleaned of directives and
/// `null`s; items that are only directives (`{"$patch": ...}`) are dropped.
fn replace_list(patch: Vec<Value>, items: Node) -> Result<Vec<Value>> {
    let mut out = Vec::with_capacity(patch.len());
    for item in patch {
        match item {
            Value::Object(map) if map.contains_key(PATCH_DIRECTIVE) => {}
            Value::Object(map) => out.push(Value::Object(merge_map(Map::new(), map, items)?)),
            Value::Array(list) => out.push(Value::Array(replace_list(list, Node(None))?)),
            scalar => out.push(scalar),
        }
    }
    Ok(out)
}

/// Whether a merged list holds objects or primitives.
#[derive(PartialEq, Eq)]
enum Elements {
    Objects,
    Primitives,
}

fn element_kind(original: &[Value], patch: &[Value]) -> Result<Option<Elements>> {
    let mut kind = None;
    for item in original.iter().chain(patch) {
        let this = match item {
            Value::Array(_) => return Err(SmpError::ListOfLists),
            Value::Object(_) => Elements::Objects,
            _ => Elements::Primitives,
        };
        match &kind {
            Some(seen) if *seen != this => {
                let both = format!(
                    "{} {}",
                    render(&Value::Array(original.to_vec())),
                    render(&Value::Array(patch.to_vec()))
                );
                return Err(SmpError::MixedList(both));
            }
            _ => kind = Some(this),
        }
    }
    Ok(kind)
}

/// Merges two lists with the `merge` strategy: by `key` for objects, as a set for
/// primitives. `items` is the schema of the items.
fn merge_list(original: Vec<Value>, patch: Vec<Value>, key: Option<&str>, items: Node) -> Result<Vec<Value>> {
    match element_kind(&original, &patch)? {
        None => Ok(original),
        Some(Elements::Primitives) => Ok(merge_primitive_list(original, patch)),
        Some(Elements::Objects) => {
            let key = key.ok_or_else(|| SmpError::NoMergeKeyDeclared(render(&Value::Array(patch.clone()))))?;
            merge_object_list(original, patch, key, items)
        }
    }
}

/// A set union of primitives, ordered like upstream: patch items in patch order, original
/// items slotted back where the original order allows.
fn merge_primitive_list(original: Vec<Value>, patch: Vec<Value>) -> Vec<Value> {
    let mut merged: Vec<Value> = Vec::with_capacity(original.len() + patch.len());
    for item in original.iter().chain(&patch) {
        if !merged.contains(item) {
            merged.push(item.clone());
        }
    }
    let (named, server_only): (Vec<Value>, Vec<Value>) = merged.into_iter().partition(|item| patch.contains(item));
    normalize(named, server_only, &patch, &original, None)
}

/// Merges lists of objects on `key`: `$patch: delete` items remove their match, a
/// `$patch: replace` item makes the other patch items the whole list, other items merge into
/// the original item with the same key or are added.
fn merge_object_list(original: Vec<Value>, patch: Vec<Value>, key: &str, items: Node) -> Result<Vec<Value>> {
    let (mut merged, plain) = apply_list_directives(original, patch, key, items)?;
    let server_order = identities(&merged, Some(key));
    let mut patch_order = Vec::with_capacity(plain.len());
    for item in plain {
        let id = identity(&Value::Object(item.clone()), Some(key))?.clone();
        let existing = merged.iter().position(|o| o.get(key) == Some(&id));
        match existing {
            Some(index) => {
                let current = match std::mem::take(&mut merged[index]) {
                    Value::Object(map) => map,
                    _ => Map::new(),
                };
                merged[index] = Value::Object(merge_map(current, item, items)?);
            }
            None => merged.push(Value::Object(merge_map(Map::new(), item, items)?)),
        }
        patch_order.push(id);
    }
    order_by(merged, &patch_order, &server_order, Some(key))
}

/// Applies the directive items of a patch list to the original list. Returns the original
/// (after deletions, or the replacement list) and the patch's plain items.
fn apply_list_directives(
    mut original: Vec<Value>,
    patch: Vec<Value>,
    key: &str,
    items: Node,
) -> Result<(Vec<Value>, Vec<JsonMap>)> {
    let mut plain = Vec::with_capacity(patch.len());
    let mut replace = false;
    for item in patch {
        let Value::Object(map) = item else {
            return Err(SmpError::BadArgType {
                expected: "map",
                actual: type_name(&item),
            });
        };
        let Some(directive) = map.get(PATCH_DIRECTIVE) else {
            plain.push(map);
            continue;
        };
        match directive.as_str() {
            Some("delete") => {
                let id = identity(&Value::Object(map.clone()), Some(key))?.clone();
                original.retain(|o| o.get(key) != Some(&id));
            }
            Some("replace") => replace = true,
            Some("merge") => return Err(SmpError::MergeDirectiveInList),
            _ => {
                return Err(SmpError::BadPatchType {
                    directive: render(directive),
                    map: render_map(&map),
                });
            }
        }
    }
    if !replace {
        return Ok((original, plain));
    }
    let replacement = plain
        .into_iter()
        .map(|m| merge_map(Map::new(), m, items).map(Value::Object))
        .collect::<Result<_>>()?;
    Ok((replacement, Vec::new()))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const DS: &str = "io.k8s.api.apps.v1.DaemonSet";
    const DEPLOY: &str = "io.k8s.api.apps.v1.Deployment";
    const POD: &str = "io.k8s.api.core.v1.Pod";

    /// Applies `patch` and compares with `expected`; also checks that no directive leaks.
    fn check(definition: &str, original: Value, patch: Value, expected: Value) {
        let got = strategic_merge(&original, &patch, definition).unwrap_or_else(|e| panic!("patch failed: {e}"));
        assert_eq!(got, expected, "\n got: {got:#}\nwant: {expected:#}");
        assert_no_directives(&got);
    }

    fn fails(definition: &str, original: Value, patch: Value) -> SmpError {
        strategic_merge(&original, &patch, definition).expect_err("patch should fail")
    }

    fn assert_no_directives(value: &Value) {
        match value {
            Value::Object(map) => {
                for (key, child) in map {
                    assert!(!key.starts_with('$'), "directive {key} leaked");
                    assert_no_directives(child);
                }
            }
            Value::Array(items) => items.iter().for_each(assert_no_directives),
            _ => {}
        }
    }

    fn pod_spec(spec: Value) -> Value {
        json!({"spec": {"template": {"spec": spec}}})
    }

    fn daemonset() -> Value {
        json!({
            "apiVersion": "apps/v1",
            "kind": "DaemonSet",
            "metadata": {"name": "x", "namespace": "default", "labels": {"app": "x", "tier": "web"}},
            "spec": {
                "selector": {"matchLabels": {"app": "x"}},
                "template": {
                    "metadata": {"labels": {"app": "x"}},
                    "spec": {
                        "containers": [{
                            "name": "c",
                            "image": "busybox:1.36",
                            "imagePullPolicy": "IfNotPresent",
                            "terminationMessagePath": "/dev/termination-log",
                            "env": [{"name": "X", "value": "1"}]
                        }],
                        "restartPolicy": "Always",
                        "tolerations": [{"key": "a", "operator": "Exists"}, {"key": "b", "operator": "Exists"}]
                    }
                }
            }
        })
    }

    fn containers(obj: &Value) -> &Value {
        &obj["spec"]["template"]["spec"]["containers"]
    }

    #[test]
    fn kubectl_edit_body_changes_image_and_keeps_other_container_fields() {
        let patch = json!({
            "metadata": {"labels": {"edited": "yes"}, "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"}},
            "spec": {"template": {"spec": {
                "$setElementOrder/containers": [{"name": "c"}],
                "containers": [{"image": "busybox:1.38", "name": "c"}]
            }}}
        });
        let mut expected = daemonset();
        expected["metadata"]["labels"]["edited"] = json!("yes");
        expected["metadata"]["annotations"] = json!({"kubectl.kubernetes.io/last-applied-configuration": "{}"});
        expected["spec"]["template"]["spec"]["containers"][0]["image"] = json!("busybox:1.38");
        check(DS, daemonset(), patch, expected);
    }

    #[test]
    fn second_apply_with_openapi_directives_merges_by_name() {
        let patch = json!({
            "metadata": {"annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{\"new\":1}"}},
            "spec": {"template": {"spec": {
                "$setElementOrder/containers": [{"name": "c"}, {"name": "sidecar"}],
                "containers": [
                    {"name": "c", "args": ["sleep", "1d"]},
                    {"name": "sidecar", "image": "pause"}
                ]
            }}}
        });
        let got = strategic_merge(&daemonset(), &patch, DS).unwrap();
        let c = containers(&got);
        assert_eq!(c[0]["name"], "c");
        assert_eq!(c[0]["terminationMessagePath"], "/dev/termination-log");
        assert_eq!(c[0]["args"], json!(["sleep", "1d"]));
        assert_eq!(c[1], json!({"name": "sidecar", "image": "pause"}));
        assert_no_directives(&got);
    }

    /// The body kubectl 1.32 sent (against our OpenAPI) for a second `apply` that switched
    /// the strategy to Recreate, added a port and a container, and changed the tolerations.
    #[test]
    fn second_apply_of_a_deployment_as_kubectl_sent_it() {
        let original = json!({"spec": {
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": "25%"}},
            "template": {"spec": {
                "containers": [{"name": "c", "image": "nginx", "ports": [{"containerPort": 80, "protocol": "TCP"}]}],
                "tolerations": [{"key": "a", "operator": "Exists"}]
            }}
        }});
        let patch = json!({"spec": {
            "strategy": {"$retainKeys": ["type"], "rollingUpdate": null, "type": "Recreate"},
            "template": {"spec": {
                "$setElementOrder/containers": [{"name": "c"}, {"name": "side"}],
                "containers": [
                    {"$setElementOrder/ports": [{"containerPort": 80}, {"containerPort": 443}], "name": "c", "ports": [{"containerPort": 443}]},
                    {"image": "pause", "name": "side"}
                ],
                "tolerations": [{"key": "b", "operator": "Exists"}]
            }}
        }});
        let want = json!({"spec": {
            "strategy": {"type": "Recreate"},
            "template": {"spec": {
                "containers": [
                    {"name": "c", "image": "nginx", "ports": [{"containerPort": 80, "protocol": "TCP"}, {"containerPort": 443}]},
                    {"name": "side", "image": "pause"}
                ],
                "tolerations": [{"key": "b", "operator": "Exists"}]
            }}
        }});
        check(DEPLOY, original, patch, want);
    }

    /// `kubectl set env deploy/d B=2` on a container without env.
    #[test]
    fn set_env_body_as_kubectl_sent_it() {
        let original = pod_spec(json!({"containers": [{"name": "c", "image": "nginx"}, {"name": "d", "image": "x"}]}));
        let patch = pod_spec(json!({
            "$setElementOrder/containers": [{"name": "c"}, {"name": "d"}],
            "containers": [{"env": [{"name": "B", "value": "2"}], "name": "c"}]
        }));
        let want = pod_spec(json!({"containers": [
            {"name": "c", "image": "nginx", "env": [{"name": "B", "value": "2"}]},
            {"name": "d", "image": "x"}
        ]}));
        check(DEPLOY, original, patch, want);
    }

    #[test]
    fn apply_without_openapi_extensions_sends_whole_list_and_still_merges_server_side() {
        let patch = pod_spec(json!({"containers": [{"name": "c", "image": "busybox:1.37"}]}));
        let got = strategic_merge(&daemonset(), &patch, DS).unwrap();
        let c = &containers(&got)[0];
        assert_eq!(c["image"], "busybox:1.37");
        assert_eq!(c["imagePullPolicy"], "IfNotPresent");
        assert_eq!(c["env"], json!([{"name": "X", "value": "1"}]));
    }

    #[test]
    fn apply_removing_a_field_sends_null() {
        let patch = pod_spec(json!({
            "$setElementOrder/containers": [{"name": "c"}],
            "containers": [{"name": "c", "imagePullPolicy": null}]
        }));
        let got = strategic_merge(&daemonset(), &patch, DS).unwrap();
        assert!(containers(&got)[0].get("imagePullPolicy").is_none());
        assert_eq!(containers(&got)[0]["image"], "busybox:1.36");
    }

    #[test]
    fn set_env_merges_env_by_name_new_items_first_like_upstream() {
        let patch = pod_spec(json!({"containers": [{"name": "c", "env": [{"name": "A", "value": "1"}]}]}));
        let got = strategic_merge(&daemonset(), &patch, DS).unwrap();
        assert_eq!(
            containers(&got)[0]["env"],
            json!([{"name": "A", "value": "1"}, {"name": "X", "value": "1"}])
        );
        assert_eq!(containers(&got)[0]["image"], "busybox:1.36");
    }

    #[test]
    fn set_env_with_element_order_appends_and_updates() {
        let patch = pod_spec(json!({"containers": [{
            "name": "c",
            "$setElementOrder/env": [{"name": "X"}, {"name": "A"}],
            "env": [{"name": "X", "value": "2"}, {"name": "A", "value": "1"}]
        }]}));
        let got = strategic_merge(&daemonset(), &patch, DS).unwrap();
        assert_eq!(
            containers(&got)[0]["env"],
            json!([{"name": "X", "value": "2"}, {"name": "A", "value": "1"}])
        );
    }

    #[test]
    fn delete_directive_removes_a_container() {
        let mut original = daemonset();
        original["spec"]["template"]["spec"]["containers"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "sidecar", "image": "pause"}));
        let patch = pod_spec(json!({"containers": [{"$patch": "delete", "name": "c"}]}));
        let got = strategic_merge(&original, &patch, DS).unwrap();
        assert_eq!(containers(&got), &json!([{"name": "sidecar", "image": "pause"}]));
    }

    #[test]
    fn delete_directive_removes_every_duplicate() {
        let original = json!({"metadata": {"ownerReferences": [
            {"uid": "1", "name": "a"}, {"uid": "1", "name": "a"}, {"uid": "2", "name": "b"}
        ]}});
        let patch = json!({"metadata": {"ownerReferences": [{"$patch": "delete", "uid": "1"}]}});
        check(
            POD,
            original,
            patch,
            json!({"metadata": {"ownerReferences": [{"uid": "2", "name": "b"}]}}),
        );
    }

    #[test]
    fn finalizers_merge_as_a_set() {
        let original = json!({"metadata": {"finalizers": ["a", "b"]}});
        let patch = json!({"metadata": {"finalizers": ["b", "c"]}});
        check(
            POD,
            original,
            patch,
            json!({"metadata": {"finalizers": ["a", "b", "c"]}}),
        );
    }

    #[test]
    fn delete_from_primitive_list_removes_finalizers() {
        let original = json!({"metadata": {"finalizers": ["a", "b", "c"]}});
        let patch = json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["b", "zzz"]}});
        check(POD, original, patch, json!({"metadata": {"finalizers": ["a", "c"]}}));
    }

    #[test]
    fn finalizer_swap_as_kubectl_computes_it() {
        let original = json!({"metadata": {"finalizers": ["a"]}});
        let patch = json!({"metadata": {
            "$setElementOrder/finalizers": ["b"],
            "$deleteFromPrimitiveList/finalizers": ["a"],
            "finalizers": ["b"]
        }});
        check(POD, original, patch, json!({"metadata": {"finalizers": ["b"]}}));
    }

    #[test]
    fn set_element_order_on_primitive_list_reorders() {
        let original = json!({"metadata": {"finalizers": ["a", "b", "c"]}});
        let patch = json!({"metadata": {"$setElementOrder/finalizers": ["c", "a", "b"]}});
        check(
            POD,
            original,
            patch,
            json!({"metadata": {"finalizers": ["c", "a", "b"]}}),
        );
    }

    #[test]
    fn retain_keys_switching_rolling_update_to_recreate_drops_rolling_update() {
        let original =
            json!({"spec": {"replicas": 2, "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}});
        let patch = json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}});
        check(
            DEPLOY,
            original.clone(),
            patch,
            json!({"spec": {"replicas": 2, "strategy": {"type": "Recreate"}}}),
        );
        let kubectl =
            json!({"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": null, "type": "Recreate"}}});
        check(
            DEPLOY,
            original,
            kubectl,
            json!({"spec": {"replicas": 2, "strategy": {"type": "Recreate"}}}),
        );
    }

    #[test]
    fn retain_keys_without_directive_merges_normally() {
        let original = json!({"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}});
        let patch = json!({"spec": {"strategy": {"rollingUpdate": {"maxUnavailable": 0}}}});
        let want = json!({"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}}});
        check(DEPLOY, original, patch, want);
    }

    #[test]
    fn retain_keys_inside_volume_items_switch_the_volume_source() {
        let original = pod_spec(json!({"volumes": [{"name": "v", "emptyDir": {}}, {"name": "w", "emptyDir": {}}]}));
        let patch = pod_spec(json!({"volumes": [
            {"name": "v", "$retainKeys": ["hostPath", "name"], "hostPath": {"path": "/x"}}
        ]}));
        let want =
            pod_spec(json!({"volumes": [{"name": "v", "hostPath": {"path": "/x"}}, {"name": "w", "emptyDir": {}}]}));
        check(DEPLOY, original, patch, want);
    }

    #[test]
    fn null_deletes_a_label() {
        let patch = json!({"metadata": {"labels": {"tier": null, "new": "1"}}});
        let got = strategic_merge(&daemonset(), &patch, DS).unwrap();
        assert_eq!(got["metadata"]["labels"], json!({"app": "x", "new": "1"}));
    }

    #[test]
    fn tolerations_without_strategy_are_replaced_whole() {
        let patch = pod_spec(json!({"tolerations": [{"key": "z", "operator": "Exists", "tolerationSeconds": null}]}));
        let got = strategic_merge(&daemonset(), &patch, DS).unwrap();
        assert_eq!(
            got["spec"]["template"]["spec"]["tolerations"],
            json!([{"key": "z", "operator": "Exists"}])
        );
    }

    #[test]
    fn replace_directive_on_a_map_replaces_it() {
        let patch = json!({"spec": {"selector": {"$patch": "replace", "matchLabels": {"b": "2"}}}});
        let got = strategic_merge(&daemonset(), &patch, DS).unwrap();
        assert_eq!(got["spec"]["selector"], json!({"matchLabels": {"b": "2"}}));
    }

    #[test]
    fn delete_directive_on_a_map_empties_it() {
        let patch = json!({"metadata": {"labels": {"$patch": "delete"}}});
        let got = strategic_merge(&daemonset(), &patch, DS).unwrap();
        assert_eq!(got["metadata"]["labels"], json!({}));
    }

    #[test]
    fn merge_directive_on_a_map_merges() {
        let patch = json!({"metadata": {"labels": {"$patch": "merge", "b": "2"}}});
        let got = strategic_merge(&daemonset(), &patch, DS).unwrap();
        assert_eq!(got["metadata"]["labels"], json!({"app": "x", "tier": "web", "b": "2"}));
    }

    #[test]
    fn top_level_replace_directive_replaces_the_document() {
        let patch = json!({"$patch": "replace", "kind": "DaemonSet", "metadata": {"name": "y"}});
        check(
            DS,
            daemonset(),
            patch,
            json!({"kind": "DaemonSet", "metadata": {"name": "y"}}),
        );
    }

    #[test]
    fn replace_directive_in_a_merged_list_replaces_the_list() {
        let patch = pod_spec(json!({"containers": [{"$patch": "replace"}, {"name": "only", "image": "i"}]}));
        let got = strategic_merge(&daemonset(), &patch, DS).unwrap();
        assert_eq!(containers(&got), &json!([{"name": "only", "image": "i"}]));
        let empty = pod_spec(json!({"containers": [{"$patch": "replace"}]}));
        let got = strategic_merge(&daemonset(), &empty, DS).unwrap();
        assert_eq!(containers(&got), &json!([]));
    }

    #[test]
    fn patch_order_wins_and_server_only_items_slot_back() {
        let original = pod_spec(json!({"containers": [{"name": "1"}, {"name": "2", "image": "b"}, {"name": "3"}]}));
        let patch = pod_spec(json!({"containers": [{"name": "3", "image": "c"}, {"name": "1", "image": "a"}]}));
        let want = pod_spec(
            json!({"containers": [{"name": "2", "image": "b"}, {"name": "3", "image": "c"}, {"name": "1", "image": "a"}]}),
        );
        check(DS, original, patch, want);
    }

    #[test]
    fn primitive_merge_list_follows_patch_order() {
        let original = json!({"metadata": {"finalizers": ["1", "2", "3"]}});
        check(
            POD,
            original.clone(),
            json!({"metadata": {"finalizers": ["3", "1"]}}),
            json!({"metadata": {"finalizers": ["2", "3", "1"]}}),
        );
        check(
            POD,
            original,
            json!({"metadata": {"finalizers": ["3", "1", "2"]}}),
            json!({"metadata": {"finalizers": ["3", "1", "2"]}}),
        );
    }

    #[test]
    fn set_element_order_may_name_items_absent_from_the_list() {
        let original = pod_spec(json!({"containers": [{"name": "1"}, {"name": "3"}]}));
        let patch = pod_spec(json!({
            "$setElementOrder/containers": [{"name": "3"}, {"name": "2"}, {"name": "1"}],
            "containers": [{"name": "3", "image": "c"}, {"name": "1", "image": "a"}]
        }));
        let want = pod_spec(json!({"containers": [{"name": "3", "image": "c"}, {"name": "1", "image": "a"}]}));
        check(DS, original, patch, want);
    }

    #[test]
    fn set_element_order_for_a_list_the_original_lacks() {
        let original = pod_spec(json!({"containers": [{"name": "c"}]}));
        let patch = pod_spec(json!({
            "$setElementOrder/initContainers": [{"name": "i"}, {"name": "j"}],
            "initContainers": [{"name": "i", "image": "x", "args": null}, {"name": "j", "image": "y"}]
        }));
        let want = pod_spec(json!({
            "containers": [{"name": "c"}],
            "initContainers": [{"name": "i", "image": "x"}, {"name": "j", "image": "y"}]
        }));
        check(DS, original, patch, want);
    }

    #[test]
    fn ports_merge_by_container_port_and_service_ports_by_port() {
        let original =
            pod_spec(json!({"containers": [{"name": "c", "ports": [{"containerPort": 80, "name": "http"}]}]}));
        let patch =
            pod_spec(json!({"containers": [{"name": "c", "ports": [{"containerPort": 80, "protocol": "TCP"}]}]}));
        let want = pod_spec(
            json!({"containers": [{"name": "c", "ports": [{"containerPort": 80, "name": "http", "protocol": "TCP"}]}]}),
        );
        check(DS, original, patch, want);
        let svc = json!({"spec": {"ports": [{"port": 80, "targetPort": 8080}, {"port": 443}]}});
        let patch = json!({"spec": {"ports": [{"port": 443, "name": "https"}]}});
        let want = json!({"spec": {"ports": [{"port": 80, "targetPort": 8080}, {"port": 443, "name": "https"}]}});
        check("io.k8s.api.core.v1.Service", svc, patch, want);
    }

    #[test]
    fn status_conditions_merge_by_type() {
        let original = json!({"status": {"conditions": [{"type": "Ready", "status": "False"}, {"type": "PodScheduled", "status": "True"}]}});
        let patch = json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}});
        let want = json!({"status": {"conditions": [{"type": "Ready", "status": "True"}, {"type": "PodScheduled", "status": "True"}]}});
        check(POD, original, patch, want);
    }

    #[test]
    fn free_form_positions_merge_maps_and_replace_lists() {
        let original = json!({"data": {"a": [1, 2], "m": {"x": 1, "y": 2}}, "revision": 1});
        let patch = json!({"data": {"a": [3], "m": {"y": null, "z": 3}}});
        let want = json!({"data": {"a": [3], "m": {"x": 1, "z": 3}}, "revision": 1});
        check(
            "io.k8s.api.apps.v1.ControllerRevision",
            original.clone(),
            patch.clone(),
            want.clone(),
        );
        check("no.such.Definition", original, patch, want);
    }

    #[test]
    fn type_changes_take_the_patch_value() {
        let original = json!({"metadata": {"annotations": {"a": "1"}}});
        let patch = json!({"metadata": {"annotations": "oops"}});
        check(POD, original, patch, json!({"metadata": {"annotations": "oops"}}));
    }

    #[test]
    fn merge_item_without_its_key_is_an_error() {
        let patch = pod_spec(json!({"containers": [{"image": "x"}]}));
        let err = fails(DS, daemonset(), patch);
        assert_eq!(
            err.to_string(),
            "map: {\"image\":\"x\"} does not contain declared merge key: name"
        );
        let delete = pod_spec(json!({"containers": [{"$patch": "delete"}]}));
        assert!(matches!(fails(DS, daemonset(), delete), SmpError::NoMergeKey { .. }));
    }

    #[test]
    fn unknown_patch_directives_are_errors() {
        let err = fails(DS, daemonset(), json!({"metadata": {"$patch": "explode"}}));
        assert_eq!(err.to_string(), "unknown patch type: \"explode\" in map: {}");
        let in_list = pod_spec(json!({"containers": [{"$patch": "explode", "name": "c"}]}));
        assert!(matches!(fails(DS, daemonset(), in_list), SmpError::BadPatchType { .. }));
        let merge = pod_spec(json!({"containers": [{"$patch": "merge", "name": "c"}]}));
        assert_eq!(fails(DS, daemonset(), merge), SmpError::MergeDirectiveInList);
    }

    #[test]
    fn malformed_directives_are_errors() {
        let retain = json!({"spec": {"strategy": {"$retainKeys": "type"}}});
        assert_eq!(fails(DEPLOY, json!({}), retain), SmpError::BadRetainKeysFormat);
        let outside = json!({"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": {}}}});
        assert_eq!(fails(DEPLOY, json!({}), outside), SmpError::RetainKeysMismatch);
        let order = pod_spec(json!({"$setElementOrder/containers": {"name": "c"}}));
        assert!(matches!(fails(DS, daemonset(), order), SmpError::BadArgType { .. }));
        let bare = pod_spec(json!({"$setElementOrder": []}));
        assert_eq!(fails(DS, daemonset(), bare), SmpError::BadSetElementOrderFormat);
        let delete = json!({"metadata": {"$deleteFromPrimitiveList/finalizers": "a"}});
        assert_eq!(
            fails(POD, json!({"metadata": {"finalizers": ["a"]}}), delete),
            SmpError::BadPrimitiveListFormat
        );
        let lists = json!({"metadata": {"finalizers": [["a"]]}});
        assert_eq!(
            fails(POD, json!({"metadata": {"finalizers": ["a"]}}), lists),
            SmpError::ListOfLists
        );
        let mixed = json!({"metadata": {"finalizers": [{"a": 1}]}});
        assert!(matches!(
            fails(POD, json!({"metadata": {"finalizers": ["a"]}}), mixed),
            SmpError::MixedList(_)
        ));
    }

    #[test]
    fn order_list_contradicting_the_patch_is_an_error() {
        let original = pod_spec(json!({"containers": [{"name": "a"}, {"name": "b"}]}));
        let patch = pod_spec(json!({
            "$setElementOrder/containers": [{"name": "a"}, {"name": "b"}],
            "containers": [{"name": "b", "image": "1"}, {"name": "a", "image": "2"}]
        }));
        assert!(matches!(fails(DS, original, patch), SmpError::OrderMismatch { .. }));
    }

    #[test]
    fn errors_map_to_upstream_status_codes() {
        assert_eq!(SmpError::BadJsonDoc.status_code(), 400);
        assert_eq!(SmpError::RetainKeysMismatch.status_code(), 422);
        assert_eq!(SmpError::MergeDirectiveInList.status_code(), 500);
    }

    #[test]
    fn documents_must_be_objects() {
        assert_eq!(fails(DS, json!([]), json!({})), SmpError::BadJsonDoc);
        assert_eq!(fails(DS, json!({}), json!("x")), SmpError::BadJsonDoc);
    }

    #[test]
    fn empty_patch_changes_nothing() {
        check(DS, daemonset(), json!({}), daemonset());
    }
}
