//! The Swagger 2.0 document in protobuf (`application/com.github.proto-openapi.spec.v2@v1.0+protobuf`),
//! as clients decode it: gnostic's `openapi.v2.Document` messages, written by hand from the
//! JSON document (field numbers from gnostic's `OpenAPIv2.proto`).
//!
//! kubectl and client-go ask for this form (never JSON) when they read v2: to validate a
//! `kind: List` and kinds missing from v3, and for the patch strategies of `kubectl apply`.
//! What they read is the definitions (type, properties, required, items,
//! additionalProperties, description, format, default and the `x-` extensions) and, per
//! path, the operations' parameters, consumes and `x-kubernetes-group-version-kind`. Every
//! map becomes an ordered list of `{name, value}` pairs; every `x-` value and every
//! `default`/`enum`/`example` travels as YAML text, here compact JSON (valid YAML).
//! Keys gnostic has no field for are left out.

use serde_json::{Map, Value};

/// Encodes a Swagger 2.0 JSON document as gnostic's `Document`.
pub fn encode_document(doc: &Value) -> Vec<u8> {
    let mut w = Writer::default();
    let Some(map) = doc.as_object() else { return w.buf };
    w.string(1, str_of(map, "swagger"));
    if let Some(info) = map.get("info").and_then(Value::as_object) {
        w.message(2, |w| {
            w.string(1, str_of(info, "title"));
            w.string(2, str_of(info, "version"));
            w.string(3, str_of(info, "description"));
            extensions(w, 7, info);
        });
    }
    w.strings(6, map.get("consumes"));
    w.strings(7, map.get("produces"));
    if let Some(paths) = map.get("paths").and_then(Value::as_object) {
        w.message(8, |w| {
            extensions(w, 1, paths);
            for (url, item) in paths.iter().filter(|(k, _)| !k.starts_with("x-")) {
                w.message(2, |w| {
                    w.string(1, url);
                    w.message(2, |w| path_item(w, item));
                });
            }
        });
    }
    if let Some(definitions) = map.get("definitions").and_then(Value::as_object) {
        w.message(9, |w| {
            for (name, schema_value) in definitions {
                w.message(1, |w| {
                    w.string(1, name);
                    w.message(2, |w| schema(w, schema_value, 0));
                });
            }
        });
    }
    if let Some(parameters) = map.get("parameters").and_then(Value::as_object) {
        w.message(10, |w| {
            for (name, p) in parameters {
                w.message(1, |w| {
                    w.string(1, name);
                    w.message(2, |w| parameter(w, p));
                });
            }
        });
    }
    extensions(&mut w, 16, map);
    w.buf
}

fn str_of<'a>(map: &'a Map<String, Value>, key: &str) -> &'a str {
    map.get(key).and_then(Value::as_str).unwrap_or_default()
}

/// gnostic's `Any`: the value as YAML text (field 2). Clients read it with a YAML parser, so
/// compact JSON serves; it must not be empty, or clients skip the entry.
fn any(w: &mut Writer, field: u32, value: &Value) {
    let text = serde_json::to_string(value).unwrap_or_default();
    w.message(field, |w| w.string(2, &format!("{text}\n")));
}

/// Every `x-` key of `map` as a `NamedAny` at `field`, in document order.
fn extensions(w: &mut Writer, field: u32, map: &Map<String, Value>) {
    for (k, v) in map.iter().filter(|(k, _)| k.starts_with("x-")) {
        w.message(field, |w| {
            w.string(1, k);
            any(w, 2, v);
        });
    }
}

/// Deeper schemas than this are left out (the documents built here nest a few levels).
const MAX_DEPTH: usize = 64;

fn schema(w: &mut Writer, value: &Value, depth: usize) {
    let Some(s) = value.as_object() else { return };
    if depth > MAX_DEPTH {
        return;
    }
    w.string(1, str_of(s, "$ref"));
    w.string(2, str_of(s, "format"));
    w.string(3, str_of(s, "title"));
    w.string(4, str_of(s, "description"));
    if let Some(d) = s.get("default") {
        any(w, 5, d);
    }
    for (field, key) in [(6, "multipleOf"), (7, "maximum")] {
        w.double(field, s.get(key).and_then(Value::as_f64));
    }
    w.boolean(8, s.get("exclusiveMaximum").and_then(Value::as_bool));
    w.double(9, s.get("minimum").and_then(Value::as_f64));
    w.boolean(10, s.get("exclusiveMinimum").and_then(Value::as_bool));
    for (field, key) in [(11, "maxLength"), (12, "minLength")] {
        w.int(field, s.get(key).and_then(Value::as_i64));
    }
    w.string(13, str_of(s, "pattern"));
    for (field, key) in [(14, "maxItems"), (15, "minItems")] {
        w.int(field, s.get(key).and_then(Value::as_i64));
    }
    w.boolean(16, s.get("uniqueItems").and_then(Value::as_bool));
    for (field, key) in [(17, "maxProperties"), (18, "minProperties")] {
        w.int(field, s.get(key).and_then(Value::as_i64));
    }
    w.strings(19, s.get("required"));
    for e in s.get("enum").and_then(Value::as_array).into_iter().flatten() {
        any(w, 20, e);
    }
    match s.get("additionalProperties") {
        Some(Value::Bool(b)) => w.message(21, |w| w.bool_always(2, *b)),
        Some(ap @ Value::Object(_)) => w.message(21, |w| w.message(1, |w| schema(w, ap, depth + 1))),
        _ => {}
    }
    match s.get("type") {
        Some(Value::String(t)) => w.message(22, |w| w.string(1, t)),
        Some(types @ Value::Array(_)) => w.message(22, |w| w.strings(1, Some(types))),
        _ => {}
    }
    if let Some(items @ Value::Object(_)) = s.get("items") {
        w.message(23, |w| w.message(1, |w| schema(w, items, depth + 1)));
    }
    for sub in s.get("allOf").and_then(Value::as_array).into_iter().flatten() {
        w.message(24, |w| schema(w, sub, depth + 1));
    }
    if let Some(props) = s.get("properties").and_then(Value::as_object) {
        // Present even when empty: clients tell objects from free-form maps by it.
        w.message(25, |w| {
            for (name, p) in props {
                w.message(1, |w| {
                    w.string(1, name);
                    w.message(2, |w| schema(w, p, depth + 1));
                });
            }
        });
    }
    w.string(26, str_of(s, "discriminator"));
    w.boolean(27, s.get("readOnly").and_then(Value::as_bool));
    if let Some(e) = s.get("example") {
        any(w, 30, e);
    }
    extensions(w, 31, s);
}

fn path_item(w: &mut Writer, item: &Value) {
    let Some(item) = item.as_object() else { return };
    w.string(1, str_of(item, "$ref"));
    for (field, method) in [
        (2, "get"),
        (3, "put"),
        (4, "post"),
        (5, "delete"),
        (6, "options"),
        (7, "head"),
        (8, "patch"),
    ] {
        if let Some(op) = item.get(method).and_then(Value::as_object) {
            w.message(field, |w| operation(w, op));
        }
    }
    for p in item.get("parameters").and_then(Value::as_array).into_iter().flatten() {
        w.message(9, |w| parameters_item(w, p));
    }
    extensions(w, 10, item);
}

fn operation(w: &mut Writer, op: &Map<String, Value>) {
    w.strings(1, op.get("tags"));
    w.string(2, str_of(op, "summary"));
    w.string(3, str_of(op, "description"));
    w.string(5, str_of(op, "operationId"));
    w.strings(6, op.get("produces"));
    w.strings(7, op.get("consumes"));
    for p in op.get("parameters").and_then(Value::as_array).into_iter().flatten() {
        w.message(8, |w| parameters_item(w, p));
    }
    if let Some(responses) = op.get("responses").and_then(Value::as_object) {
        w.message(9, |w| {
            for (code, r) in responses.iter().filter(|(k, _)| !k.starts_with("x-")) {
                w.message(1, |w| {
                    w.string(1, code);
                    w.message(2, |w| response_value(w, r));
                });
            }
            extensions(w, 2, responses);
        });
    }
    w.strings(10, op.get("schemes"));
    w.boolean(11, op.get("deprecated").and_then(Value::as_bool));
    extensions(w, 13, op);
}

fn response_value(w: &mut Writer, r: &Value) {
    let Some(r) = r.as_object() else { return };
    if let Some(reference) = r.get("$ref").and_then(Value::as_str) {
        w.message(2, |w| w.string(1, reference));
        return;
    }
    w.message(1, |w| {
        w.string(1, str_of(r, "description"));
        if let Some(s) = r.get("schema") {
            w.message(2, |w| w.message(1, |w| schema(w, s, 0)));
        }
        extensions(w, 5, r);
    });
}

/// `ParametersItem`: a `$ref` to a shared parameter, or the parameter itself.
fn parameters_item(w: &mut Writer, p: &Value) {
    match p.get("$ref").and_then(Value::as_str) {
        Some(reference) => w.message(2, |w| w.string(1, reference)),
        None => w.message(1, |w| parameter(w, p)),
    }
}

/// `Parameter`: a body parameter, or a header/formData/query/path one (gnostic picks the
/// message by `in`; their first fields agree: required, in, description, name).
fn parameter(w: &mut Writer, p: &Value) {
    let Some(p) = p.as_object() else { return };
    let location = str_of(p, "in");
    if location == "body" {
        w.message(1, |w| {
            w.string(1, str_of(p, "description"));
            w.string(2, str_of(p, "name"));
            w.string(3, location);
            w.boolean(4, p.get("required").and_then(Value::as_bool));
            if let Some(s) = p.get("schema") {
                w.message(5, |w| schema(w, s, 0));
            }
            extensions(w, 6, p);
        });
        return;
    }
    // (oneof field, field of `type` in that message, of `uniqueItems`, of the extensions)
    let (which, type_field, unique_field, ext_field) = match location {
        "header" => (1, 5, 19, 22),
        "formData" => (2, 6, 20, 23),
        "path" => (4, 5, 19, 22),
        _ => (3, 6, 20, 23),
    };
    w.message(2, |w| {
        w.message(which, |w| {
            w.boolean(1, p.get("required").and_then(Value::as_bool));
            w.string(2, location);
            w.string(3, str_of(p, "description"));
            w.string(4, str_of(p, "name"));
            if matches!(location, "query" | "formData") {
                w.boolean(5, p.get("allowEmptyValue").and_then(Value::as_bool));
            }
            w.string(type_field, str_of(p, "type"));
            w.boolean(unique_field, p.get("uniqueItems").and_then(Value::as_bool));
            extensions(w, ext_field, p);
        });
    });
}

/// A protobuf writer: proto3, zero values left out as Go's encoder does.
#[derive(Default)]
struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.buf.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.buf.push(v as u8);
    }

    fn tag(&mut self, field: u32, wire: u8) {
        self.varint((u64::from(field) << 3) | u64::from(wire));
    }

    fn string(&mut self, field: u32, s: &str) {
        if s.is_empty() {
            return;
        }
        self.tag(field, 2);
        self.varint(s.len() as u64);
        self.buf.extend_from_slice(s.as_bytes());
    }

    /// A `repeated string` from a JSON array of strings.
    fn strings(&mut self, field: u32, values: Option<&Value>) {
        for s in values.and_then(Value::as_array).into_iter().flatten() {
            if let Some(s) = s.as_str() {
                self.tag(field, 2);
                self.varint(s.len() as u64);
                self.buf.extend_from_slice(s.as_bytes());
            }
        }
    }

    fn boolean(&mut self, field: u32, b: Option<bool>) {
        if b == Some(true) {
            self.bool_always(field, true);
        }
    }

    /// A bool written even when false (a `oneof` member has presence).
    fn bool_always(&mut self, field: u32, b: bool) {
        self.tag(field, 0);
        self.varint(u64::from(b));
    }

    fn int(&mut self, field: u32, v: Option<i64>) {
        if let Some(v) = v.filter(|v| *v != 0) {
            self.tag(field, 0);
            self.varint(v as u64);
        }
    }

    fn double(&mut self, field: u32, v: Option<f64>) {
        if let Some(v) = v.filter(|v| *v != 0.0) {
            self.tag(field, 1);
            self.buf.extend_from_slice(&v.to_le_bytes());
        }
    }

    /// A length-delimited sub-message (written even when empty: presence matters).
    fn message(&mut self, field: u32, f: impl FnOnce(&mut Writer)) {
        let mut inner = Writer::default();
        f(&mut inner);
        self.tag(field, 2);
        self.varint(inner.buf.len() as u64);
        self.buf.extend_from_slice(&inner.buf);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A minimal reader of the encoding: (field, wire type, payload) records.
    fn records(mut b: &[u8]) -> Vec<(u32, u8, Vec<u8>)> {
        fn varint(b: &mut &[u8]) -> u64 {
            let mut v = 0u64;
            let mut shift = 0;
            loop {
                let byte = b[0];
                *b = &b[1..];
                v |= u64::from(byte & 0x7f) << shift;
                if byte < 0x80 {
                    return v;
                }
                shift += 7;
            }
        }
        let mut out = Vec::new();
        while !b.is_empty() {
            let tag = varint(&mut b);
            let (field, wire) = ((tag >> 3) as u32, (tag & 7) as u8);
            let payload = match wire {
                0 => varint(&mut b).to_le_bytes().to_vec(),
                1 => {
                    let (p, rest) = b.split_at(8);
                    b = rest;
                    p.to_vec()
                }
                2 => {
                    let len = varint(&mut b) as usize;
                    let (p, rest) = b.split_at(len);
                    b = rest;
                    p.to_vec()
                }
                other => panic!("wire type {other}"),
            };
            out.push((field, wire, payload));
        }
        out
    }

    fn field(b: &[u8], n: u32) -> Vec<Vec<u8>> {
        records(b).into_iter().filter(|r| r.0 == n).map(|r| r.2).collect()
    }

    fn text(b: &[u8]) -> &str {
        std::str::from_utf8(b).unwrap()
    }

    #[test]
    fn documents_carry_definitions_with_extensions_and_empty_properties() {
        let doc = json!({
            "swagger": "2.0",
            "info": {"title": "Kubernetes", "version": "v1.33.0"},
            "definitions": {
                "io.k8s.api.core.v1.PodSpec": {
                    "type": "object",
                    "required": ["containers"],
                    "properties": {
                        "containers": {
                            "type": "array",
                            "items": {"$ref": "#/definitions/io.k8s.api.core.v1.Container"},
                            "x-kubernetes-patch-merge-key": "name"
                        },
                        "free": {"type": "object", "additionalProperties": false},
                        "empty": {"type": "object", "properties": {}}
                    },
                    "x-kubernetes-group-version-kind": [{"group": "", "kind": "Pod", "version": "v1"}]
                }
            }
        });
        let b = encode_document(&doc);
        assert_eq!(text(&field(&b, 1)[0]), "2.0");
        let info = &field(&b, 2)[0];
        assert_eq!(text(&field(info, 2)[0]), "v1.33.0");
        let named = &field(&field(&b, 9)[0], 1)[0];
        assert_eq!(text(&field(named, 1)[0]), "io.k8s.api.core.v1.PodSpec");
        let spec = &field(named, 2)[0];
        assert_eq!(text(&field(&field(spec, 22)[0], 1)[0]), "object");
        assert_eq!(text(&field(spec, 19)[0]), "containers");
        let gvk = &field(spec, 31)[0];
        assert_eq!(text(&field(gvk, 1)[0]), "x-kubernetes-group-version-kind");
        let yaml = text(&field(&field(gvk, 2)[0], 2)[0]).to_string();
        let back: Value = serde_json::from_str(&yaml).unwrap();
        assert_eq!(back[0]["kind"], "Pod");
        let props = field(&field(spec, 25)[0], 1);
        assert_eq!(props.len(), 3);
        let prop = |name: &str| {
            let p = props.iter().find(|p| text(&field(p, 1)[0]) == name).unwrap();
            field(p, 2).remove(0)
        };
        let containers = &prop("containers");
        let items = &field(&field(containers, 23)[0], 1)[0];
        assert_eq!(text(&field(items, 1)[0]), "#/definitions/io.k8s.api.core.v1.Container");
        // additionalProperties: false is written (a oneof member), as varint 0.
        let free = &prop("free");
        assert_eq!(records(&field(free, 21)[0]), vec![(2, 0, 0u64.to_le_bytes().to_vec())]);
        // An empty properties map is present, with no entries.
        let empty = &prop("empty");
        assert_eq!(field(empty, 25), vec![Vec::<u8>::new()]);
    }

    #[test]
    fn operations_carry_parameters_consumes_and_their_kind() {
        let doc = json!({
            "swagger": "2.0",
            "paths": {"/apis/apps/v1/namespaces/{namespace}/daemonsets/{name}": {
                "parameters": [{"name": "name", "in": "path", "required": true, "type": "string"}],
                "patch": {
                    "consumes": ["application/json-patch+json", "application/strategic-merge-patch+json"],
                    "parameters": [
                        {"name": "body", "in": "body", "required": true, "schema": {"type": "object"}},
                        {"name": "fieldValidation", "in": "query", "type": "string", "uniqueItems": true}
                    ],
                    "responses": {"200": {"description": "OK", "schema": {"$ref": "#/definitions/x"}}},
                    "x-kubernetes-group-version-kind": {"group": "apps", "kind": "DaemonSet", "version": "v1"}
                }
            }}
        });
        let b = encode_document(&doc);
        let named = &field(&field(&b, 8)[0], 2)[0];
        assert_eq!(
            text(&field(named, 1)[0]),
            "/apis/apps/v1/namespaces/{namespace}/daemonsets/{name}"
        );
        let item = &field(named, 2)[0];
        // Path parameter: ParametersItem.parameter.non_body_parameter.path_parameter_sub_schema.
        let path_param = &field(&field(&field(&field(item, 9)[0], 1)[0], 2)[0], 4)[0];
        assert_eq!(text(&field(path_param, 4)[0]), "name");
        assert_eq!(text(&field(path_param, 5)[0]), "string");
        let patch = &field(item, 8)[0];
        let consumes = field(patch, 7);
        assert_eq!(text(&consumes[1]), "application/strategic-merge-patch+json");
        let params = field(patch, 8);
        let body = &field(&field(&params[0], 1)[0], 1)[0];
        assert_eq!(text(&field(body, 3)[0]), "body");
        let query = &field(&field(&field(&params[1], 1)[0], 2)[0], 3)[0];
        assert_eq!(text(&field(query, 4)[0]), "fieldValidation");
        assert_eq!(text(&field(query, 2)[0]), "query");
        let ext = &field(patch, 13)[0];
        let yaml = text(&field(&field(ext, 2)[0], 2)[0]).to_string();
        assert_eq!(serde_json::from_str::<Value>(&yaml).unwrap()["kind"], "DaemonSet");
        let response = &field(&field(&field(patch, 9)[0], 1)[0], 2)[0];
        let schema = &field(&field(&field(response, 1)[0], 2)[0], 1)[0];
        assert_eq!(text(&field(schema, 1)[0]), "#/definitions/x");
    }

    #[test]
    fn hostile_shapes_encode_without_panicking() {
        for doc in [
            json!(null),
            json!([]),
            json!({"definitions": {"a": 1, "b": {"type": 5}}}),
            json!({"paths": 3}),
        ] {
            let _ = encode_document(&doc);
        }
        let mut deep = json!({"type": "object"});
        for _ in 0..500 {
            deep = json!({"type": "object", "properties": {"x": deep}});
        }
        let b = encode_document(&json!({"definitions": {"d": deep}}));
        assert!(!b.is_empty());
    }
}
