//! Structural schemas of CustomResourceDefinitions (apiextensions.k8s.io/v1).
//!
//! A CRD version's `openAPIV3Schema` must be *structural* to be accepted ([`schema_errors`]):
//! an object at the root, a type on every declared field and array item (unless it is
//! `x-kubernetes-int-or-string` or `x-kubernetes-preserve-unknown-fields`), no `$ref`, no
//! `properties` beside `additionalProperties`, and only `name` and `generateName` under
//! `metadata`. Such a schema then does three things to a custom object, in this order, as
//! kube-apiserver 1.33 does: [`prune`] drops the fields it does not declare (reported, so
//! `fieldValidation=Strict` can refuse them), [`apply_defaults`] fills the `default`s of
//! absent fields, and [`validate`] reports what breaks it, with upstream's field paths and
//! texts (`spec.replicas: Invalid value: "three": spec.replicas in body must be of type
//! integer: "three"`).
//!
//! Schemas and objects are client-supplied: nothing here panics or recurses without bound
//! on either (depth is capped at [`MAX_DEPTH`]; a pattern that does not compile is a schema
//! error, and one that grows too large a program is refused).

use serde_json::{Map, Value};

use crate::field::{ErrorType, FieldError};
use crate::validation::{Errs, Path, forbidden, invalid, not_supported, required, too_long, too_many};

/// The deepest schema or object walked; deeper parts are left alone (a schema that deep is
/// refused when its CRD is written).
pub const MAX_DEPTH: usize = 64;

/// The types a schema may name.
const TYPES: &[&str] = &["array", "boolean", "integer", "number", "object", "string"];

/// Where a schema node sits: what its `type` may be, and how a missing one is worded.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Level {
    Root,
    Field,
    Item,
}

fn flag(s: &Value, key: &str) -> bool {
    s.get(key).and_then(Value::as_bool) == Some(true)
}

fn type_of(s: &Value) -> &str {
    s.get("type").and_then(Value::as_str).unwrap_or_default()
}

/// The structural checks of a version's schema at `p`
/// (`spec.versions[i].schema.openAPIV3Schema`); `status` when the version serves the status
/// subresource.
pub fn schema_errors(schema: &Value, p: &str, status: bool) -> Vec<FieldError> {
    let mut errs = Errs::new();
    let p = Path::new(p);
    if !schema.is_object() {
        invalid(&mut errs, &p, schema.clone(), "must be an object");
        return errs;
    }
    check_node(&mut errs, schema, &p, Level::Root, 0);
    if status && !schema.get("type").is_some_and(|t| t == "object") && !type_of(schema).is_empty() {
        invalid(
            &mut errs,
            &p.child("type"),
            type_of(schema),
            "only \"object\" is allowed as the type at the root of the schema if the status subresource is enabled",
        );
    }
    if let Some(meta) = schema.get("properties").and_then(|ps| ps.get("metadata")) {
        // `name` and `generateName` may be restricted (a pattern, a length); nothing else of
        // the metadata may be declared.
        let only_names = meta.get("properties").and_then(Value::as_object).is_none_or(|m| {
            m.iter()
                .all(|(k, v)| matches!(k.as_str(), "name" | "generateName") && matches!(type_of(v), "" | "string"))
        });
        let extra = meta.as_object().is_some_and(|o| {
            o.keys()
                .any(|k| !matches!(k.as_str(), "type" | "properties" | "description"))
        });
        if !only_names || extra || !matches!(type_of(meta), "" | "object") {
            forbidden(
                &mut errs,
                &p.child("properties").key("metadata"),
                "must not specify anything other than name and generateName, but metadata is implicitly specified",
            );
        }
    }
    errs
}

fn check_node(errs: &mut Errs, s: &Value, p: &Path, level: Level, depth: usize) {
    if depth > MAX_DEPTH {
        forbidden(errs, p, format!("must not be nested more than {MAX_DEPTH} levels deep"));
        return;
    }
    let Some(node) = s.as_object() else {
        invalid(errs, p, s.clone(), "must be an object");
        return;
    };
    if node.contains_key("$ref") {
        forbidden(errs, &p.child("$ref"), "$ref is not supported");
    }
    let ty = type_of(s);
    let int_or_string = flag(s, "x-kubernetes-int-or-string");
    let preserve = flag(s, "x-kubernetes-preserve-unknown-fields");
    match node.get("type") {
        Some(t) if !t.is_string() => invalid(errs, &p.child("type"), t.clone(), "must be a string"),
        _ => {}
    }
    if !ty.is_empty() && !TYPES.contains(&ty) {
        not_supported(errs, &p.child("type"), ty, TYPES);
    }
    if int_or_string && !ty.is_empty() {
        invalid(
            errs,
            &p.child("type"),
            ty,
            "must be empty if x-kubernetes-int-or-string is true",
        );
    }
    match level {
        Level::Root if ty.is_empty() => required(errs, &p.child("type"), "must not be empty at the root"),
        Level::Root if ty != "object" => invalid(errs, &p.child("type"), ty, "must be object at the root"),
        Level::Field if ty.is_empty() && !int_or_string && !preserve => {
            required(errs, &p.child("type"), "must not be empty for specified object fields")
        }
        Level::Item if ty.is_empty() && !int_or_string && !preserve => {
            required(errs, &p.child("type"), "must not be empty for specified array items")
        }
        _ => {}
    }
    if flag(s, "uniqueItems") {
        forbidden(
            errs,
            &p.child("uniqueItems"),
            "uniqueItems cannot be set to true since the runtime complexity becomes quadratic",
        );
    }
    if level == Level::Root && flag(s, "nullable") {
        forbidden(errs, &p.child("nullable"), "must be false at the root");
    }
    if let Some(pattern) = node.get("pattern") {
        match pattern.as_str() {
            Some(text) => {
                if let Err(e) = compile(text) {
                    invalid(
                        errs,
                        &p.child("pattern"),
                        text,
                        format!("must be a valid regular expression: {e}"),
                    );
                }
            }
            None => invalid(errs, &p.child("pattern"), pattern.clone(), "must be a string"),
        }
    }
    if let Some(props) = node.get("properties") {
        match props.as_object() {
            Some(props) => {
                for (name, sub) in props {
                    check_node(errs, sub, &p.child("properties").key(name), Level::Field, depth + 1);
                }
            }
            None => invalid(errs, &p.child("properties"), props.clone(), "must be an object"),
        }
    }
    match node.get("additionalProperties") {
        None | Some(Value::Bool(false)) => {}
        Some(extra) => {
            if level == Level::Root {
                forbidden(errs, &p.child("additionalProperties"), "must not be used at the root");
            }
            if node
                .get("properties")
                .is_some_and(|ps| ps.as_object().is_some_and(|m| !m.is_empty()))
            {
                forbidden(
                    errs,
                    &p.child("additionalProperties"),
                    "additionalProperties and properties are mutual exclusive",
                );
            }
            if extra.is_object() {
                check_node(errs, extra, &p.child("additionalProperties"), Level::Field, depth + 1);
            }
        }
    }
    match node.get("items") {
        Some(items) if items.is_object() => check_node(errs, items, &p.child("items"), Level::Item, depth + 1),
        Some(items) => invalid(errs, &p.child("items"), items.clone(), "must be a schema object"),
        None if ty == "array" => required(errs, &p.child("items"), "must be specified"),
        None => {}
    }
}

/// A schema's `pattern`, compiled with RE2's semantics (upstream uses Go's regexp, which
/// the `regex` crate shares), with a bounded program size.
fn compile(pattern: &str) -> Result<regex::Regex, regex::Error> {
    regex::RegexBuilder::new(pattern).size_limit(1 << 20).build()
}

/// Most compiled patterns kept for object validation before the cache starts over.
const PATTERN_CACHE: usize = 256;

/// [`compile`], once per pattern: every write of a custom object checks its patterns.
fn compiled(pattern: &str) -> Option<regex::Regex> {
    static CACHE: std::sync::Mutex<Option<std::collections::HashMap<String, regex::Regex>>> =
        std::sync::Mutex::new(None);
    let mut cache = CACHE.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let cache = cache.get_or_insert_with(Default::default);
    if let Some(re) = cache.get(pattern) {
        return Some(re.clone());
    }
    let re = compile(pattern).ok()?;
    if cache.len() >= PATTERN_CACHE {
        cache.clear();
    }
    cache.insert(pattern.to_string(), re.clone());
    Some(re)
}

// ---------------------------------------------------------------------------------------
// What a schema does to an object.

/// Drops from `obj` every field `schema` does not declare (where it does not preserve unknown
/// fields), and returns their paths as upstream reports them (`spec.foo`, `spec.items[0].x`).
/// `apiVersion`, `kind` and `metadata` of the root (and of embedded resources) are kept.
pub fn prune(schema: &Value, obj: &mut Value) -> Vec<String> {
    let mut pruned = Vec::new();
    prune_node(schema, obj, "", true, &mut pruned, 0);
    pruned
}

fn prune_node(s: &Value, v: &mut Value, path: &str, resource: bool, pruned: &mut Vec<String>, depth: usize) {
    if depth > MAX_DEPTH {
        return;
    }
    let preserve = flag(s, "x-kubernetes-preserve-unknown-fields");
    match v {
        Value::Object(map) => {
            let props = s.get("properties").and_then(Value::as_object);
            let extra = s
                .get("additionalProperties")
                .filter(|a| !matches!(a, Value::Bool(false)));
            let keys: Vec<String> = map.keys().cloned().collect();
            for key in keys {
                let child = join(path, &key);
                let keep_meta = resource && matches!(key.as_str(), "apiVersion" | "kind" | "metadata");
                if let Some(sub) = props.and_then(|ps| ps.get(&key)) {
                    if let Some(value) = map.get_mut(&key) {
                        let embedded = flag(sub, "x-kubernetes-embedded-resource");
                        prune_node(sub, value, &child, embedded, pruned, depth + 1);
                    }
                } else if let Some(extra) = extra {
                    if let (Some(value), true) = (map.get_mut(&key), extra.is_object()) {
                        prune_node(extra, value, &child, false, pruned, depth + 1);
                    }
                } else if !keep_meta && !preserve {
                    map.remove(&key);
                    pruned.push(child);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = s.get("items").filter(|i| i.is_object()) {
                for (i, item) in items.iter_mut().enumerate() {
                    prune_node(item_schema, item, &format!("{path}[{i}]"), false, pruned, depth + 1);
                }
            }
        }
        _ => {}
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// Fills the `default` of every declared field that is absent (or null where the schema
/// does not allow null), outermost first, so a defaulted object gets its own fields'
/// defaults too. A null the schema does not allow and has no default for is dropped, as
/// upstream drops it before validation.
pub fn apply_defaults(schema: &Value, obj: &mut Value) {
    default_node(schema, obj, 0);
}

fn default_node(s: &Value, v: &mut Value, depth: usize) {
    if depth > MAX_DEPTH {
        return;
    }
    match v {
        Value::Object(map) => {
            if let Some(props) = s.get("properties").and_then(Value::as_object) {
                for (key, sub) in props {
                    let missing = match map.get(key) {
                        None => true,
                        Some(Value::Null) => !flag(sub, "nullable"),
                        Some(_) => false,
                    };
                    if missing {
                        match sub.get("default") {
                            Some(default) => {
                                map.insert(key.clone(), default.clone());
                            }
                            None => {
                                if map.get(key).is_some_and(Value::is_null) {
                                    map.remove(key);
                                }
                            }
                        }
                    }
                    if let Some(value) = map.get_mut(key) {
                        default_node(sub, value, depth + 1);
                    }
                }
            }
            if let Some(extra) = s.get("additionalProperties").filter(|a| a.is_object()) {
                for value in map.values_mut() {
                    default_node(extra, value, depth + 1);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = s.get("items").filter(|i| i.is_object()) {
                for item in items {
                    default_node(item_schema, item, depth + 1);
                }
            }
        }
        _ => {}
    }
}

/// What in `obj` breaks `schema`, in upstream's words. The root's `apiVersion`, `kind` and
/// `metadata` are checked by the server, not here.
pub fn validate(schema: &Value, obj: &Value) -> Vec<FieldError> {
    let mut errs = Errs::new();
    if !obj.is_object() {
        invalid(&mut errs, &Path::new(""), obj.clone(), "must be an object");
        return errs;
    }
    // The root's own keywords (required, min/maxProperties) see the whole object; its
    // members skip `apiVersion`, `kind` and `metadata` (see `check_object`).
    check_value(&mut errs, schema, obj, &Path::new(""), true, 0);
    errs
}

/// Upstream's validation ratcheting (GA in 1.33) on an update: an error is dropped when the
/// update left its value as it was (for a missing required field, the object holding it),
/// so tightening a schema does not block updates of objects that broke it already. Errors
/// at the root are kept.
pub fn ratchet(errors: Vec<FieldError>, new: &Value, old: &Value) -> Vec<FieldError> {
    errors
        .into_iter()
        .filter(|e| {
            let mut path = field_path_segments(&e.field);
            if e.kind == ErrorType::Required {
                path.pop();
            }
            path.is_empty() || value_at(new, &path) != value_at(old, &path)
        })
        .collect()
}

/// One step of a field path: a member, or an item of a list (or a map key written in
/// brackets).
#[derive(Debug, PartialEq)]
enum Step {
    Member(String),
    Bracket(String),
}

/// `spec.items[0].name` as steps (a bracket holds anything up to its `]`, dots included).
fn field_path_segments(path: &str) -> Vec<Step> {
    let mut out = Vec::new();
    let mut member = String::new();
    let mut chars = path.chars();
    while let Some(c) = chars.next() {
        match c {
            '.' | '[' => {
                if !member.is_empty() {
                    out.push(Step::Member(std::mem::take(&mut member)));
                }
                if c == '[' {
                    out.push(Step::Bracket(chars.by_ref().take_while(|x| *x != ']').collect()));
                }
            }
            c => member.push(c),
        }
    }
    if !member.is_empty() {
        out.push(Step::Member(member));
    }
    out
}

fn value_at<'a>(v: &'a Value, path: &[Step]) -> Option<&'a Value> {
    let mut at = v;
    for step in path {
        at = match (step, at) {
            (Step::Member(m) | Step::Bracket(m), Value::Object(map)) => map.get(m)?,
            (Step::Bracket(i), Value::Array(items)) => items.get(i.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(at)
}

/// The name upstream gives a JSON value's type in "must be of type" errors.
fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn is_integer(v: &Value) -> bool {
    match v {
        Value::Number(n) => n.is_i64() || n.is_u64() || n.as_f64().is_some_and(|f| f.fract() == 0.0),
        _ => false,
    }
}

/// `spec.x in body` as upstream's detail names the field (`body` alone at the root).
fn in_body(p: &Path) -> String {
    if p.s().is_empty() {
        "body".to_string()
    } else {
        format!("{} in body", p.s())
    }
}

fn type_error(errs: &mut Errs, p: &Path, v: &Value, want: &str) {
    let got = json_type(v);
    invalid(
        errs,
        p,
        got,
        format!("{} must be of type {want}: \"{got}\"", in_body(p)),
    );
}

fn check_value(errs: &mut Errs, s: &Value, v: &Value, p: &Path, root: bool, depth: usize) {
    if depth > MAX_DEPTH || !s.is_object() {
        return;
    }
    if v.is_null() {
        if !flag(s, "nullable") && !type_of(s).is_empty() {
            type_error(errs, p, v, type_of(s));
        }
        return;
    }
    if flag(s, "x-kubernetes-int-or-string") {
        if !(v.is_string() || is_integer(v)) {
            type_error(errs, p, v, "integer,string");
            return;
        }
    } else {
        let ty = type_of(s);
        let ok = match ty {
            "" => true,
            "integer" => is_integer(v),
            "number" => v.is_number(),
            "string" => v.is_string(),
            "boolean" => v.is_boolean(),
            "array" => v.is_array(),
            "object" => v.is_object(),
            _ => true,
        };
        if !ok {
            type_error(errs, p, v, ty);
            return;
        }
    }
    if let Some(allowed) = s.get("enum").and_then(Value::as_array)
        && !allowed.contains(v)
    {
        let listed: Vec<String> = allowed.iter().map(crate::field::go_value).collect();
        let listed: Vec<&str> = listed.iter().map(String::as_str).collect();
        errs.push(FieldError {
            kind: ErrorType::NotSupported,
            field: p.s().to_string(),
            value: Some(v.clone()),
            detail: format!("supported values: {}", listed.join(", ")),
        });
    }
    match v {
        Value::Number(n) => check_number(errs, s, v, n.as_f64().unwrap_or_default(), p),
        Value::String(text) => check_string(errs, s, v, text, p),
        Value::Array(items) => check_array(errs, s, v, items, p, depth),
        Value::Object(map) => check_object(errs, s, map, p, root, depth),
        _ => {}
    }
}

fn number_of(s: &Value, key: &str) -> Option<f64> {
    s.get(key).and_then(Value::as_f64)
}

/// A bound as upstream prints it: integers bare, others in Go's `%v`.
fn bound(b: f64) -> String {
    if b.fract() == 0.0 && b.abs() < 1e15 {
        format!("{}", b as i64)
    } else {
        format!("{b}")
    }
}

fn check_number(errs: &mut Errs, s: &Value, v: &Value, n: f64, p: &Path) {
    let body = in_body(p);
    if let Some(min) = number_of(s, "minimum") {
        if flag(s, "exclusiveMinimum") && n <= min {
            invalid(
                errs,
                p,
                v.clone(),
                format!("{body} should be greater than {}", bound(min)),
            );
        } else if n < min {
            invalid(
                errs,
                p,
                v.clone(),
                format!("{body} should be greater than or equal to {}", bound(min)),
            );
        }
    }
    if let Some(max) = number_of(s, "maximum") {
        if flag(s, "exclusiveMaximum") && n >= max {
            invalid(errs, p, v.clone(), format!("{body} should be less than {}", bound(max)));
        } else if n > max {
            invalid(
                errs,
                p,
                v.clone(),
                format!("{body} should be less than or equal to {}", bound(max)),
            );
        }
    }
    if let Some(factor) = number_of(s, "multipleOf").filter(|f| *f > 0.0) {
        let q = n / factor;
        if (q - q.round()).abs() > 1e-9 {
            invalid(
                errs,
                p,
                v.clone(),
                format!("{body} should be a multiple of {}", bound(factor)),
            );
        }
    }
}

fn check_string(errs: &mut Errs, s: &Value, v: &Value, text: &str, p: &Path) {
    let body = in_body(p);
    let chars = text.chars().count();
    if let Some(max) = s.get("maxLength").and_then(Value::as_u64)
        && chars as u64 > max
    {
        too_long(errs, p, usize::try_from(max).unwrap_or(usize::MAX));
    }
    if let Some(min) = s.get("minLength").and_then(Value::as_u64)
        && (chars as u64) < min
    {
        invalid(
            errs,
            p,
            v.clone(),
            format!("{body} should be at least {min} chars long"),
        );
    }
    if let Some(pattern) = s.get("pattern").and_then(Value::as_str)
        && let Some(re) = compiled(pattern)
        && !re.is_match(text)
    {
        invalid(errs, p, v.clone(), format!("{body} should match '{pattern}'"));
    }
    if let Some(format) = s.get("format").and_then(Value::as_str)
        && !format_holds(format, text)
    {
        invalid(
            errs,
            p,
            v.clone(),
            format!("{body} must be of type {format}: {:?}", text),
        );
    }
}

/// The string formats upstream checks (the rest pass as any string does).
fn format_holds(format: &str, text: &str) -> bool {
    match format {
        "date-time" => text.parse::<jiff::Timestamp>().is_ok(),
        "date" => text.parse::<jiff::civil::Date>().is_ok() && text.len() == 10,
        "byte" => {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD.decode(text).is_ok()
        }
        "uuid" => uuid_like(text),
        _ => true,
    }
}

fn uuid_like(text: &str) -> bool {
    let groups: Vec<&str> = text.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn check_array(errs: &mut Errs, s: &Value, v: &Value, items: &[Value], p: &Path, depth: usize) {
    let body = in_body(p);
    if let Some(max) = s.get("maxItems").and_then(Value::as_u64)
        && items.len() as u64 > max
    {
        too_many(errs, p, items.len(), usize::try_from(max).unwrap_or(usize::MAX));
    }
    if let Some(min) = s.get("minItems").and_then(Value::as_u64)
        && (items.len() as u64) < min
    {
        invalid(errs, p, v.clone(), format!("{body} should have at least {min} items"));
    }
    if s.get("x-kubernetes-list-type").is_some_and(|t| t == "set") {
        for (i, item) in items.iter().enumerate() {
            if items[..i].contains(item) {
                errs.push(FieldError::duplicate(p.index(i).s(), item.clone()));
            }
        }
    }
    if s.get("x-kubernetes-list-type").is_some_and(|t| t == "map") {
        let keys: Vec<&str> = s
            .get("x-kubernetes-list-map-keys")
            .and_then(Value::as_array)
            .map(|ks| ks.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let key_of = |item: &Value| -> Vec<Value> {
            keys.iter()
                .map(|k| item.get(*k).cloned().unwrap_or(Value::Null))
                .collect()
        };
        for (i, item) in items.iter().enumerate() {
            let mine = key_of(item);
            if items[..i].iter().any(|other| key_of(other) == mine) {
                // Go's `%#v` of the key fields' map, as upstream prints it.
                let shown: Vec<String> = keys
                    .iter()
                    .zip(&mine)
                    .map(|(k, v)| format!("{k:?}:{}", crate::field::go_value(v)))
                    .collect();
                errs.push(FieldError {
                    kind: ErrorType::Duplicate,
                    field: p.index(i).s().to_string(),
                    value: None,
                    detail: format!("map[string]interface {{}}{{{}}}", shown.join(", ")),
                });
            }
        }
    }
    if let Some(item_schema) = s.get("items").filter(|i| i.is_object()) {
        for (i, item) in items.iter().enumerate() {
            check_value(errs, item_schema, item, &p.index(i), false, depth + 1);
        }
    }
}

fn check_object(errs: &mut Errs, s: &Value, map: &Map<String, Value>, p: &Path, root: bool, depth: usize) {
    let body = in_body(p);
    for name in s
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        if !map.contains_key(name) {
            required(errs, &p.child(name), "");
        }
    }
    if let Some(max) = s.get("maxProperties").and_then(Value::as_u64)
        && map.len() as u64 > max
    {
        too_many(errs, p, map.len(), usize::try_from(max).unwrap_or(usize::MAX));
    }
    if let Some(min) = s.get("minProperties").and_then(Value::as_u64)
        && (map.len() as u64) < min
    {
        invalid(
            errs,
            p,
            Value::from(map.len()),
            format!("{body} should have at least {min} properties"),
        );
    }
    let props = s.get("properties").and_then(Value::as_object);
    let extra = s.get("additionalProperties").filter(|a| a.is_object());
    for (key, value) in map {
        if root && matches!(key.as_str(), "apiVersion" | "kind" | "metadata") {
            continue;
        }
        if let Some(sub) = props.and_then(|ps| ps.get(key)) {
            check_value(errs, sub, value, &p.child(key), false, depth + 1);
        } else if let Some(extra) = extra {
            check_value(errs, extra, value, &p.child(key), false, depth + 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unchanged_value_is_not_held_to_a_schema_it_broke_already() {
        let schema = json!({"type": "object", "properties": {"spec": {"type": "object", "required": ["size"],
            "properties": {"name": {"type": "string", "maxLength": 3}, "size": {"type": "integer"},
                           "tags": {"type": "array", "items": {"type": "string", "maxLength": 2}}}}}});
        let old = json!({"spec": {"name": "longer", "tags": ["abc"]}});
        let new = json!({"spec": {"name": "longer", "tags": ["abc", "xyz"]}});
        let kept = |new: &Value| -> Vec<String> {
            ratchet(validate(&schema, new), new, &old)
                .iter()
                .map(FieldError::message)
                .collect()
        };
        // name and tags[0] were like this before; tags[1] is new, and spec (missing its size)
        // changed.
        let got = kept(&new);
        assert!(
            got.iter()
                .all(|m| !m.starts_with("spec.name") && !m.starts_with("spec.tags[0]")),
            "{got:#?}"
        );
        assert!(got.iter().any(|m| m.starts_with("spec.tags[1]")), "{got:#?}");
        assert!(
            got.iter().any(|m| m.starts_with("spec.size: Required value")),
            "{got:#?}"
        );
        // Nothing changed: nothing reported.
        assert!(kept(&old).is_empty());
        assert_eq!(
            field_path_segments("spec.items[0].labels[app.kubernetes.io/name]"),
            [
                Step::Member("spec".into()),
                Step::Member("items".into()),
                Step::Bracket("0".into()),
                Step::Member("labels".into()),
                Step::Bracket("app.kubernetes.io/name".into()),
            ]
        );
    }
    use serde_json::json;

    fn messages(errs: &[FieldError]) -> Vec<String> {
        errs.iter().map(FieldError::message).collect()
    }

    const ROOT: &str = "spec.versions[0].schema.openAPIV3Schema";

    #[test]
    fn a_schema_must_be_structural() {
        let good = json!({"type": "object", "properties": {
            "spec": {"type": "object", "properties": {
                "replicas": {"type": "integer"},
                "port": {"x-kubernetes-int-or-string": true},
                "anything": {"x-kubernetes-preserve-unknown-fields": true},
                "tags": {"type": "array", "items": {"type": "string"}},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}}}},
            "metadata": {"type": "object", "description": "standard", "properties": {"name": {"type": "string", "maxLength": 20}}}}});
        assert_eq!(messages(&schema_errors(&good, ROOT, true)), Vec::<String>::new());

        let cases = [
            (
                json!({}),
                "spec.versions[0].schema.openAPIV3Schema.type: Required value: must not be empty at the root",
            ),
            (
                json!({"type": "string"}),
                "spec.versions[0].schema.openAPIV3Schema.type: Invalid value: \"string\": must be object at the root",
            ),
            (
                json!({"type": "object", "properties": {"spec": {"properties": {}}}}),
                "spec.versions[0].schema.openAPIV3Schema.properties[spec].type: Required value: must not be empty for specified object fields",
            ),
            (
                json!({"type": "object", "properties": {"tags": {"type": "array"}}}),
                "spec.versions[0].schema.openAPIV3Schema.properties[tags].items: Required value: must be specified",
            ),
            (
                json!({"type": "object", "properties": {"tags": {"type": "array", "items": {}}}}),
                "spec.versions[0].schema.openAPIV3Schema.properties[tags].items.type: Required value: must not be empty for specified array items",
            ),
            (
                json!({"type": "object", "additionalProperties": {"type": "string"}}),
                "spec.versions[0].schema.openAPIV3Schema.additionalProperties: Forbidden: must not be used at the root",
            ),
            (
                json!({"type": "object", "properties": {"m": {"type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": {"type": "string"}}}}),
                "spec.versions[0].schema.openAPIV3Schema.properties[m].additionalProperties: Forbidden: additionalProperties and properties are mutual exclusive",
            ),
            (
                json!({"type": "object", "properties": {"x": {"$ref": "#/definitions/x", "type": "object"}}}),
                "spec.versions[0].schema.openAPIV3Schema.properties[x].$ref: Forbidden: $ref is not supported",
            ),
            (
                json!({"type": "object", "properties": {"metadata": {"type": "object", "properties": {"labels": {"type": "object"}}}}}),
                "spec.versions[0].schema.openAPIV3Schema.properties[metadata]: Forbidden: must not specify anything other than name and generateName, but metadata is implicitly specified",
            ),
            (
                json!({"type": "object", "properties": {"x": {"type": "strin"}}}),
                "spec.versions[0].schema.openAPIV3Schema.properties[x].type: Unsupported value: \"strin\": supported values: \"array\", \"boolean\", \"integer\", \"number\", \"object\", \"string\"",
            ),
            (
                json!({"type": "object", "properties": {"x": {"type": "string", "x-kubernetes-int-or-string": true}}}),
                "spec.versions[0].schema.openAPIV3Schema.properties[x].type: Invalid value: \"string\": must be empty if x-kubernetes-int-or-string is true",
            ),
        ];
        for (schema, want) in cases {
            let got = messages(&schema_errors(&schema, ROOT, false));
            assert!(got.contains(&want.to_string()), "{schema}: {got:?}");
        }
        let bad_pattern = json!({"type": "object", "properties": {"x": {"type": "string", "pattern": "("}}});
        let got = messages(&schema_errors(&bad_pattern, ROOT, false));
        assert!(
            got.iter()
                .any(|m| m.contains("properties[x].pattern: Invalid value: \"(\"")),
            "{got:?}"
        );
    }

    #[test]
    fn hostile_schemas_and_objects_are_bounded() {
        let mut deep = json!({"type": "string"});
        for _ in 0..200 {
            deep = json!({"type": "object", "properties": {"a": deep}});
        }
        let got = messages(&schema_errors(&deep, ROOT, false));
        assert!(
            got.iter()
                .any(|m| m.contains("must not be nested more than 64 levels deep")),
            "{got:?}"
        );
        let mut obj = json!("leaf");
        for _ in 0..200 {
            obj = json!({"a": obj});
        }
        // Neither walk overflows the stack or loops.
        let _ = validate(&deep, &obj);
        let _ = prune(&deep, &mut obj.clone());
        apply_defaults(&deep, &mut obj);
        // A pattern that would need a huge program is refused, not compiled.
        let huge = json!({"type": "object", "properties": {"x": {"type": "string", "pattern": "(a{1000}){1000}"}}});
        assert!(!schema_errors(&huge, ROOT, false).is_empty());
    }

    fn widget_schema() -> Value {
        json!({"type": "object", "properties": {
            "spec": {"type": "object", "required": ["size"], "properties": {
                "size": {"type": "integer", "minimum": 1, "maximum": 10},
                "color": {"type": "string", "enum": ["red", "blue"], "default": "red"},
                "name": {"type": "string", "minLength": 2, "maxLength": 5, "pattern": "^[a-z]+$"},
                "port": {"x-kubernetes-int-or-string": true},
                "tags": {"type": "array", "maxItems": 2, "items": {"type": "string"}, "x-kubernetes-list-type": "set"},
                "ports": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
                          "items": {"type": "object", "properties": {"name": {"type": "string"}, "port": {"type": "integer"}}}},
                "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                "when": {"type": "string", "format": "date-time"},
                "ratio": {"type": "number", "nullable": true}}},
            "status": {"type": "object", "properties": {"ready": {"type": "boolean"}}}}})
    }

    #[test]
    fn objects_are_validated_in_upstreams_words() {
        let schema = widget_schema();
        let ok = json!({"apiVersion": "x.io/v1", "kind": "Widget", "metadata": {"name": "w"},
            "spec": {"size": 3, "color": "blue", "name": "abc", "port": "http", "tags": ["a", "b"],
                     "ports": [{"name": "a", "port": 1}, {"name": "b", "port": 1}], "extra": {"anything": [1]},
                     "when": "2026-01-02T03:04:05Z", "ratio": null}});
        assert_eq!(messages(&validate(&schema, &ok)), Vec::<String>::new());
        let bad = json!({"apiVersion": "x.io/v1", "kind": "Widget", "metadata": {"name": "w"},
            "spec": {"size": "three", "color": "purple", "name": "ABCDEFG", "port": true, "tags": ["a", "a", "b"],
                     "ports": [{"name": "a"}, {"name": "a"}], "when": "yesterday"},
            "status": {"ready": "yes"}});
        let got = messages(&validate(&schema, &bad));
        for want in [
            "spec.size: Invalid value: \"string\": spec.size in body must be of type integer: \"string\"",
            "spec.color: Unsupported value: \"purple\": supported values: \"red\", \"blue\"",
            "spec.name: Too long: may not be more than 5 bytes",
            "spec.name: Invalid value: \"ABCDEFG\": spec.name in body should match '^[a-z]+$'",
            "spec.port: Invalid value: \"boolean\": spec.port in body must be of type integer,string: \"boolean\"",
            "spec.tags: Too many: 3: must have at most 2 items",
            "spec.tags[1]: Duplicate value: \"a\"",
            "spec.ports[1]: Duplicate value: map[string]interface {}{\"name\":\"a\"}",
            "spec.when: Invalid value: \"yesterday\": spec.when in body must be of type date-time: \"yesterday\"",
            "status.ready: Invalid value: \"string\": status.ready in body must be of type boolean: \"string\"",
        ] {
            assert!(got.contains(&want.to_string()), "missing {want:?} in {got:?}");
        }
        let small = json!({"spec": {"size": 0, "name": "a"}});
        let got = messages(&validate(&schema, &small));
        assert!(
            got.contains(
                &"spec.size: Invalid value: 0: spec.size in body should be greater than or equal to 1".to_string()
            ),
            "{got:?}"
        );
        assert!(
            got.contains(
                &"spec.name: Invalid value: \"a\": spec.name in body should be at least 2 chars long".to_string()
            ),
            "{got:?}"
        );
        let missing = json!({"spec": {}});
        assert_eq!(
            messages(&validate(&schema, &missing)),
            vec!["spec.size: Required value".to_string()]
        );
    }

    #[test]
    fn counts_and_nulls_are_reported_as_upstream() {
        let schema = json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {
            "labels": {"type": "object", "maxProperties": 1, "additionalProperties": {"type": "string"}},
            "list": {"type": "array", "items": {"type": "string"}},
            "n": {"type": "integer", "multipleOf": 5}}}}});
        let obj = json!({"spec": {"labels": {"a": "1", "b": "2"}, "list": ["x", null], "n": 7}});
        let got = messages(&validate(&schema, &obj));
        for want in [
            "spec.labels: Too many: 2: must have at most 1 items",
            "spec.list[1]: Invalid value: \"null\": spec.list[1] in body must be of type string: \"null\"",
            "spec.n: Invalid value: 7: spec.n in body should be a multiple of 5",
        ] {
            assert!(got.contains(&want.to_string()), "missing {want:?} in {got:?}");
        }
        let unique = json!({"type": "object", "properties": {"l": {"type": "array", "uniqueItems": true, "items": {"type": "string"}}}});
        let got = messages(&schema_errors(&unique, ROOT, false));
        assert!(got.contains(&"spec.versions[0].schema.openAPIV3Schema.properties[l].uniqueItems: Forbidden: uniqueItems cannot be set to true since the runtime complexity becomes quadratic".to_string()), "{got:?}");
        // A null where the schema allows none and gives no default is dropped, not refused.
        let mut nulls = json!({"spec": {"n": null, "labels": null}});
        apply_defaults(&schema, &mut nulls);
        assert_eq!(nulls, json!({"spec": {}}));
    }

    #[test]
    fn unknown_fields_are_pruned_and_defaults_filled() {
        let schema = widget_schema();
        let mut obj = json!({"apiVersion": "x.io/v1", "kind": "Widget", "metadata": {"name": "w"},
            "spec": {"size": 1, "typo": true, "ports": [{"name": "a", "proto": "TCP"}], "extra": {"kept": 1}},
            "junk": 1});
        let mut pruned = prune(&schema, &mut obj);
        pruned.sort();
        assert_eq!(pruned, vec!["junk", "spec.ports[0].proto", "spec.typo"]);
        assert_eq!(
            obj["spec"]["extra"],
            json!({"kept": 1}),
            "preserved where the schema says so"
        );
        assert_eq!(
            obj["metadata"],
            json!({"name": "w"}),
            "the root's metadata is the server's"
        );
        apply_defaults(&schema, &mut obj);
        assert_eq!(obj["spec"]["color"], "red");
        assert!(obj["spec"].get("name").is_none(), "no default, nothing added");
    }
}
