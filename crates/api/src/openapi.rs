//! OpenAPI documents: v3 (one per group-version, as `/openapi/v3/<path>` serves them) and a
//! Swagger 2.0 document of everything (`/openapi/v2`), built once from the catalogue and
//! [`crate::schema`], serialized to JSON and cached with a content hash.
//!
//! What kubectl relies on (see kubectl-wire.md):
//! - every PATCH operation carries `x-kubernetes-group-version-kind` and a `fieldValidation`
//!   query parameter (kubectl then sends `fieldValidation=Strict`);
//! - every kind schema in `components.schemas` carries `x-kubernetes-group-version-kind` and
//!   the operations under `/api[s]/G/V/[namespaces/{namespace}/]R[/{name}]` name the GVK
//!   (`kubectl explain`);
//! - list fields carry `x-kubernetes-patch-strategy`/`-merge-key` (`kubectl apply` builds
//!   strategic merge patches from them);
//! - the hash in the index changes whenever a document changes (kubectl caches by it).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, OnceLock, RwLock};

use serde_json::{Map, Value, json};

use crate::catalogue::{RESOURCES, Resource, Subresource};
use crate::schema;

mod proto;

/// The Kubernetes version the documents describe.
const INFO_VERSION: &str = "v1.33.0";

/// The v3 discovery index: `{"paths": {"api/v1": {"serverRelativeURL":
/// "/openapi/v3/api/v1?hash=<HASH>"}, "apis/apps/v1": {...}, ...}}`, custom resources'
/// group-versions included.
pub fn v3_index() -> Value {
    let custom = custom_docs();
    let paths: Map<String, Value> = docs()
        .v3
        .iter()
        .chain(custom.v3.iter())
        .map(|(path, doc)| {
            let url = format!("/openapi/v3/{path}?hash={}", doc.hash);
            (path.clone(), json!({ "serverRelativeURL": url }))
        })
        .collect();
    json!({ "paths": paths })
}

/// The v3 document of a group-version path (`api/v1`, `apis/apps/v1`, or a custom
/// resource's `apis/example.com/v1`); `None` for paths not served.
pub fn v3_document(path: &str) -> Option<Document> {
    let path = path.trim_matches('/');
    docs()
        .v3
        .get(path)
        .cloned()
        .or_else(|| custom_docs().v3.get(path).cloned())
}

/// The built-in group-version paths with a v3 document (`api/v1`, `apis/apps/v1`, ...).
pub fn v3_paths() -> impl Iterator<Item = &'static str> {
    docs().v3.keys().map(String::as_str)
}

/// The Swagger 2.0 document of every served group-version (custom ones included), as JSON.
pub fn v2_document() -> Document {
    let custom = custom_docs();
    match custom.kinds.is_empty() {
        true => v2_doc().clone(),
        false => custom.v2().0.clone(),
    }
}

/// The Swagger 2.0 document in gnostic's protobuf form (what kubectl and client-go ask for).
pub fn v2_protobuf() -> Document {
    static V2: OnceLock<Document> = OnceLock::new();
    let custom = custom_docs();
    match custom.kinds.is_empty() {
        true => V2.get_or_init(|| v2_doc().to_protobuf()).clone(),
        false => custom.v2().1.clone(),
    }
}

/// Uppercase hex of the 64-bit FNV-1a hash of `bytes`: stable across runs and builds, so
/// kubectl's cache stays valid across server restarts while the documents do not change.
pub fn content_hash(bytes: &[u8]) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{hash:016X}")
}

/// A rendered document: its bytes and their content hash, cheap to clone (shared).
#[derive(Clone, Debug)]
pub struct Document {
    bytes: Arc<[u8]>,
    /// The content hash of the bytes ([`content_hash`]).
    pub hash: Arc<str>,
}

impl Document {
    fn new(value: &Value) -> Document {
        Document::of(serde_json::to_vec(value).unwrap_or_default())
    }

    fn of(bytes: Vec<u8>) -> Document {
        let hash = content_hash(&bytes).into();
        Document {
            bytes: bytes.into(),
            hash,
        }
    }

    /// The gnostic protobuf form of this Swagger 2.0 document.
    fn to_protobuf(&self) -> Document {
        let doc: Value = serde_json::from_slice(&self.bytes).unwrap_or_default();
        Document::of(proto::encode_document(&doc))
    }
}

impl std::ops::Deref for Document {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.bytes
    }
}

impl AsRef<[u8]> for Document {
    fn as_ref(&self) -> &[u8] {
        &self.bytes
    }
}

/// The v3 documents, keyed by group-version path.
struct Docs {
    v3: BTreeMap<String, Document>,
}

fn docs() -> &'static Docs {
    static DOCS: OnceLock<Docs> = OnceLock::new();
    DOCS.get_or_init(|| Docs {
        v3: group_versions()
            .into_iter()
            .map(|(group, version)| (gv_path(group, version), Document::new(&build_v3(group, version))))
            .collect(),
    })
}

fn v2_doc() -> &'static Document {
    static V2: OnceLock<Document> = OnceLock::new();
    V2.get_or_init(|| Document::new(&build_v2()))
}

/// The served group-versions, in catalogue order.
fn group_versions() -> Vec<(&'static str, &'static str)> {
    let mut out: Vec<(&str, &str)> = Vec::new();
    for r in RESOURCES {
        if !out.contains(&(r.group, r.version)) {
            out.push((r.group, r.version));
        }
    }
    out
}

/// `api/v1` or `apis/apps/v1`.
fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// Which flavour of document is being rendered.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Format {
    V2,
    V3,
}

impl Format {
    fn ref_prefix(self) -> &'static str {
        match self {
            Format::V2 => "#/definitions/",
            Format::V3 => "#/components/schemas/",
        }
    }

    fn reference(self, definition: &str) -> Value {
        json!({ "$ref": format!("{}{definition}", self.ref_prefix()) })
    }
}

fn build_v3(group: &str, version: &str) -> Value {
    let resources: Vec<&'static Resource> = RESOURCES
        .iter()
        .filter(|r| r.group == group && r.version == version)
        .collect();
    let paths = render_paths(&resources, Format::V3);
    let schemas = render_schemas(&root_definitions(&resources), Format::V3);
    json!({
        "openapi": "3.0.0",
        "info": { "title": "Kubernetes", "version": INFO_VERSION },
        "paths": paths,
        "components": { "schemas": schemas },
    })
}

fn build_v2() -> Value {
    let resources: Vec<&'static Resource> = RESOURCES.iter().collect();
    json!({
        "swagger": "2.0",
        "info": { "title": "Kubernetes", "version": INFO_VERSION },
        "paths": render_paths(&resources, Format::V2),
        "definitions": render_schemas(&root_definitions(&resources), Format::V2),
    })
}

// ---------------------------------------------------------------------------------------
// Custom resources

/// One served version of a custom resource with its schema, as the CRD registry publishes
/// it.
pub struct CustomKind {
    /// The resource (as the catalogue serves it).
    pub resource: &'static Resource,
    /// The version's `openAPIV3Schema` (`Null` when the definition has none).
    pub schema: Value,
}

/// The documents of the custom resources being served.
struct CustomDocs {
    /// A hash of what they were built from: publishing the same kinds again keeps them.
    fingerprint: String,
    kinds: Vec<CustomKind>,
    v3: BTreeMap<String, Document>,
    /// The Swagger 2.0 document with the custom kinds (JSON, protobuf), built when first
    /// asked for: definitions often change in bursts (a chart's CRDs), and it is large.
    v2: OnceLock<(Document, Document)>,
}

impl CustomDocs {
    fn v2(&self) -> &(Document, Document) {
        self.v2.get_or_init(|| {
            let doc = Document::new(&build_v2_with(&self.kinds));
            let protobuf = doc.to_protobuf();
            (doc, protobuf)
        })
    }
}

static CUSTOM: RwLock<Option<Arc<CustomDocs>>> = RwLock::new(None);

fn custom_docs() -> Arc<CustomDocs> {
    static EMPTY: OnceLock<Arc<CustomDocs>> = OnceLock::new();
    let current = match CUSTOM.read() {
        Ok(guard) => guard.clone(),
        Err(poisoned) => poisoned.into_inner().clone(),
    };
    current.unwrap_or_else(|| {
        EMPTY
            .get_or_init(|| {
                Arc::new(CustomDocs {
                    fingerprint: String::new(),
                    kinds: Vec::new(),
                    v3: BTreeMap::new(),
                    v2: OnceLock::new(),
                })
            })
            .clone()
    })
}

/// Publishes the OpenAPI documents of the custom resources now served (replacing the ones
/// before): one v3 document per group-version, and their kinds in the v2 document. A
/// group-version a built-in document already covers is left to it.
pub fn set_custom(kinds: Vec<CustomKind>) {
    let fingerprint = {
        let parts: Vec<Value> = kinds
            .iter()
            .map(|k| {
                let r = k.resource;
                let subs: Vec<&str> = r.subresources.iter().map(|s| s.name).collect();
                json!([r.group, r.version, r.plural, r.kind, r.namespaced, subs, k.schema])
            })
            .collect();
        content_hash(&serde_json::to_vec(&parts).unwrap_or_default())
    };
    if custom_docs().fingerprint == fingerprint {
        return;
    }
    let mut by_path: BTreeMap<String, Vec<&CustomKind>> = BTreeMap::new();
    for k in &kinds {
        let path = gv_path(k.resource.group, k.resource.version);
        if !docs().v3.contains_key(&path) {
            by_path.entry(path).or_default().push(k);
        }
    }
    let v3 = by_path
        .into_iter()
        .map(|(path, kinds)| (path, Document::new(&build_custom_v3(&kinds))))
        .collect();
    let docs = CustomDocs {
        fingerprint,
        kinds,
        v3,
        v2: OnceLock::new(),
    };
    let docs = (!docs.kinds.is_empty()).then(|| Arc::new(docs));
    match CUSTOM.write() {
        Ok(mut guard) => *guard = docs,
        Err(poisoned) => *poisoned.into_inner() = docs,
    }
}

/// The definition name of a custom kind, as upstream names it: the group reversed, then the
/// version and kind (`com.example.stable.v1.CronTab` for `stable.example.com`).
pub fn custom_definition_name(group: &str, version: &str, kind: &str) -> String {
    let reversed: Vec<&str> = group.split('.').rev().collect();
    format!("{}.{version}.{kind}", reversed.join("."))
}

/// Definition names of `ObjectMeta` and `ListMeta`.
const OBJECT_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";
const LIST_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta";

const API_VERSION_DESCRIPTION: &str = "APIVersion defines the versioned schema of this representation of an object. \
Servers should convert recognized schemas to the latest internal value, and may reject unrecognized values. \
More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#resources";
const KIND_DESCRIPTION: &str = "Kind is a string value representing the REST resource this object represents. \
Servers may infer this from the endpoint the client submits requests to. Cannot be updated. In CamelCase. \
More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds";
const METADATA_DESCRIPTION: &str = "Standard object's metadata. \
More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";
const LIST_METADATA_DESCRIPTION: &str = "Standard list metadata. \
More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds";

fn build_custom_v3(kinds: &[&CustomKind]) -> Value {
    let resources: Vec<&'static Resource> = kinds.iter().map(|k| k.resource).collect();
    let mut roots = root_definitions(&resources);
    roots.extend([OBJECT_META, LIST_META]);
    let mut schemas = render_schemas(&roots, Format::V3);
    for k in kinds {
        schemas.extend(custom_definitions(k, Format::V3));
    }
    json!({
        "openapi": "3.0.0",
        "info": { "title": "Kubernetes CRD Swagger", "version": "v0.1.0" },
        "paths": render_paths(&resources, Format::V3),
        "components": { "schemas": schemas },
    })
}

/// The built-in Swagger 2.0 document with the custom kinds' paths and definitions added.
fn build_v2_with(kinds: &[CustomKind]) -> Value {
    let mut doc: Value = serde_json::from_slice(v2_doc()).unwrap_or_default();
    let resources: Vec<&'static Resource> = kinds.iter().map(|k| k.resource).collect();
    if let Some(paths) = doc["paths"].as_object_mut() {
        paths.extend(render_paths(&resources, Format::V2));
    }
    if let Some(definitions) = doc["definitions"].as_object_mut() {
        for k in kinds {
            definitions.extend(custom_definitions(k, Format::V2));
        }
    }
    doc
}

/// The kind and list definitions of a custom kind: its schema with the type meta and a
/// reference to `ObjectMeta` (whatever the schema said of `metadata`), as upstream
/// publishes them.
fn custom_definitions(k: &CustomKind, format: Format) -> Vec<(String, Value)> {
    let r = k.resource;
    let name = custom_definition_name(r.group, r.version, r.kind);
    let mut kind = match &k.schema {
        Value::Object(m) => Value::Object(m.clone()),
        _ => json!({ "x-kubernetes-preserve-unknown-fields": true }),
    };
    if format == Format::V2 {
        kind = v2_compatible(kind, 0);
    }
    let type_meta = |description: &str| json!({ "description": description, "type": "string" });
    let meta_ref = |definition: &str, description: &str| {
        convert(
            &json!({ "$ref": format!("{}{definition}", schema::REF_PREFIX), "description": description }),
            format,
        )
    };
    if let Some(obj) = kind.as_object_mut() {
        let props = obj.entry("properties").or_insert_with(|| json!({}));
        if let Some(props) = props.as_object_mut() {
            props.insert("apiVersion".into(), type_meta(API_VERSION_DESCRIPTION));
            props.insert("kind".into(), type_meta(KIND_DESCRIPTION));
            props.insert("metadata".into(), meta_ref(OBJECT_META, METADATA_DESCRIPTION));
        }
        obj.insert("type".into(), json!("object"));
        obj.insert(
            "x-kubernetes-group-version-kind".into(),
            json!([gvk(r.group, r.version, r.kind)]),
        );
    }
    let list_kind = format!("{}List", r.kind);
    let list = json!({
        "description": format!("{list_kind} is a list of {}", r.kind),
        "type": "object",
        "required": ["items"],
        "properties": {
            "apiVersion": type_meta(API_VERSION_DESCRIPTION),
            "kind": type_meta(KIND_DESCRIPTION),
            "items": {
                "description": format!("List of {}. More info: https://git.k8s.io/community/contributors/devel/api-conventions.md", r.plural),
                "type": "array",
                "items": format.reference(&name),
            },
            "metadata": meta_ref(LIST_META, LIST_METADATA_DESCRIPTION),
        },
        "x-kubernetes-group-version-kind": [gvk(r.group, r.version, &list_kind)],
    });
    let list_name = custom_definition_name(r.group, r.version, &list_kind);
    vec![(name, kind), (list_name, list)]
}

/// A structural schema as Swagger 2.0 can say it, as upstream publishes custom kinds in
/// `/openapi/v2`: no `nullable`, no value validations (`oneOf`, `anyOf`, `allOf`, `not`),
/// and no `type` where an int-or-string or a free-form field would contradict it.
fn v2_compatible(schema: Value, depth: usize) -> Value {
    let Value::Object(mut map) = schema else {
        return schema;
    };
    if depth > 64 {
        return Value::Object(Map::new());
    }
    for key in ["nullable", "oneOf", "anyOf", "allOf", "not", "x-kubernetes-validations"] {
        map.remove(key);
    }
    if map.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true)) {
        map.remove("type");
    }
    for key in ["items", "additionalProperties"] {
        if let Some(sub) = map.get_mut(key).filter(|s| s.is_object()) {
            *sub = v2_compatible(std::mem::take(sub), depth + 1);
        }
    }
    if let Some(Value::Object(props)) = map.get_mut("properties") {
        for v in props.values_mut() {
            *v = v2_compatible(std::mem::take(v), depth + 1);
        }
    }
    Value::Object(map)
}

// ---------------------------------------------------------------------------------------
// Schemas

/// The definitions the paths of `resources` name directly.
fn root_definitions(resources: &[&Resource]) -> Vec<&'static str> {
    let mut roots = vec![schema::STATUS, schema::DELETE_OPTIONS, schema::PATCH];
    for r in resources {
        let list = format!("{}List", r.kind);
        let kinds = [(r.group, r.version, r.kind), (r.group, r.version, list.as_str())];
        let subs = r.subresources.iter().map(|s| (s.group, s.version, s.kind));
        for (g, v, k) in kinds.into_iter().chain(subs) {
            if let Some(name) = schema::definition_name(g, v, k) {
                roots.push(name);
            }
        }
    }
    roots
}

/// Every definition reachable from `roots` through `$ref`s.
fn closure(roots: &[&'static str]) -> BTreeSet<&'static str> {
    let mut seen = BTreeSet::new();
    let mut stack: Vec<&'static str> = roots.to_vec();
    while let Some(name) = stack.pop() {
        let Some((key, schema)) = schema::definitions().get_key_value(name) else {
            continue;
        };
        if seen.insert(key.as_str()) {
            collect_refs(schema, &mut stack);
        }
    }
    seen
}

fn collect_refs(value: &'static Value, out: &mut Vec<&'static str>) {
    match value {
        Value::Object(map) => {
            if let Some(name) = map
                .get("$ref")
                .and_then(Value::as_str)
                .and_then(|r| r.strip_prefix(schema::REF_PREFIX))
            {
                out.push(name);
            }
            map.values().for_each(|v| collect_refs(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}

/// The schemas of `roots` and everything they reference, converted to `format`, kinds
/// tagged with `x-kubernetes-group-version-kind`.
fn render_schemas(roots: &[&'static str], format: Format) -> Map<String, Value> {
    closure(roots)
        .into_iter()
        .filter_map(|name| {
            let mut converted = convert(schema::definition(name)?, format);
            let gvks = gvks_of(name);
            if let (false, Some(obj)) = (gvks.is_empty(), converted.as_object_mut()) {
                obj.insert("x-kubernetes-group-version-kind".into(), Value::Array(gvks));
            }
            Some((name.to_string(), converted))
        })
        .collect()
}

/// The GVKs whose schema is `definition`; `DeleteOptions` belongs to every served group.
fn gvks_of(definition: &str) -> Vec<Value> {
    if definition == schema::DELETE_OPTIONS {
        let mut gvs = group_versions();
        for extra in [("autoscaling", "v1"), ("policy", "v1")] {
            if !gvs.contains(&extra) {
                gvs.push(extra);
            }
        }
        return gvs.into_iter().map(|(g, v)| gvk(g, v, "DeleteOptions")).collect();
    }
    schema::kinds()
        .iter()
        .filter(|k| k.definition == definition)
        .map(|k| gvk(k.group, k.version, k.kind))
        .collect()
}

fn gvk(group: &str, version: &str, kind: &str) -> Value {
    json!({ "group": group, "kind": kind, "version": version })
}

/// Rewrites `$ref`s for `format`. In v3 a `$ref` with sibling keywords (a description, a
/// patch strategy) becomes `allOf: [{$ref}]` plus the siblings, as upstream emits it (OpenAPI
/// 3.0 ignores siblings of `$ref`).
fn convert(value: &Value, format: Format) -> Value {
    match value {
        Value::Object(map) => convert_object(map, format),
        Value::Array(items) => Value::Array(items.iter().map(|v| convert(v, format)).collect()),
        other => other.clone(),
    }
}

fn convert_object(map: &Map<String, Value>, format: Format) -> Value {
    let mut out = Map::new();
    let mut reference = None;
    for (key, value) in map {
        match (key.as_str(), value.as_str()) {
            ("$ref", Some(r)) => reference = Some(r.rsplit('/').next().unwrap_or(r)),
            _ => {
                out.insert(key.clone(), convert(value, format));
            }
        }
    }
    let Some(name) = reference else {
        return Value::Object(out);
    };
    let target = format.reference(name);
    if format == Format::V2 || out.is_empty() {
        out.extend(target.as_object().cloned().unwrap_or_default());
    } else {
        out.insert("allOf".into(), json!([target]));
    }
    Value::Object(out)
}

// ---------------------------------------------------------------------------------------
// Paths

/// One operation of a path, independent of the document format.
struct Op {
    method: &'static str,
    action: &'static str,
    id: String,
    description: String,
    gvk: (&'static str, &'static str, &'static str),
    query: &'static [&'static str],
    body: Body,
    response: Response,
    codes: &'static [&'static str],
}

enum Body {
    None,
    Object(String),
    /// A patch; `strategic` when strategic merge patches are accepted (built-in kinds).
    Patch {
        strategic: bool,
    },
    DeleteOptions,
}

enum Response {
    Object(String),
    Text,
}

/// A path with its path parameters (`namespace`, `name`) and operations.
struct PathItem {
    url: String,
    params: Vec<&'static str>,
    ops: Vec<Op>,
}

const LIST_QUERY: &[&str] = &[
    "allowWatchBookmarks",
    "continue",
    "fieldSelector",
    "labelSelector",
    "limit",
    "resourceVersion",
    "resourceVersionMatch",
    "sendInitialEvents",
    "timeoutSeconds",
    "watch",
];
const WRITE_QUERY: &[&str] = &["dryRun", "fieldManager", "fieldValidation"];
const PATCH_QUERY: &[&str] = &["dryRun", "fieldManager", "fieldValidation", "force"];
const DELETE_QUERY: &[&str] = &[
    "dryRun",
    "gracePeriodSeconds",
    "ignoreStoreReadErrorWithClusterBreakingPotential",
    "orphanDependents",
    "propagationPolicy",
];
const DELETE_COLLECTION_QUERY: &[&str] = &[
    "continue",
    "dryRun",
    "fieldSelector",
    "gracePeriodSeconds",
    "ignoreStoreReadErrorWithClusterBreakingPotential",
    "labelSelector",
    "limit",
    "orphanDependents",
    "propagationPolicy",
    "resourceVersion",
    "resourceVersionMatch",
    "sendInitialEvents",
    "timeoutSeconds",
];
const EXEC_QUERY: &[&str] = &["command", "container", "stderr", "stdin", "stdout", "tty"];
const ATTACH_QUERY: &[&str] = &["container", "stderr", "stdin", "stdout", "tty"];
const PORT_FORWARD_QUERY: &[&str] = &["ports"];

/// The connect subresources (a stream, not an object): name, operation suffix, query.
pub const CONNECT_SUBRESOURCES: &[(&str, &str, &[&str])] = &[
    ("exec", "Exec", EXEC_QUERY),
    ("attach", "Attach", ATTACH_QUERY),
    ("portforward", "Portforward", PORT_FORWARD_QUERY),
];

const LOG_QUERY: &[&str] = &[
    "container",
    "follow",
    "insecureSkipTLSVerifyBackend",
    "limitBytes",
    "previous",
    "sinceSeconds",
    "tailLines",
    "timestamps",
];

/// (name, type, description) of every parameter the documents use.
const PARAMS: &[(&str, &str, &str)] = &[
    (
        "allowWatchBookmarks",
        "boolean",
        "Ask for BOOKMARK watch events; servers may ignore it.",
    ),
    (
        "command",
        "string",
        "The command to run, one parameter per word (exec).",
    ),
    (
        "container",
        "string",
        "The container to stream logs of or run the command in; optional when the pod has one container.",
    ),
    (
        "stderr",
        "boolean",
        "Return the command's standard error stream (exec).",
    ),
    ("stdin", "boolean", "Send standard input to the command (exec)."),
    (
        "stdout",
        "boolean",
        "Return the command's standard output stream (exec).",
    ),
    ("tty", "boolean", "Run the command in a terminal (exec)."),
    ("ports", "integer", "The pod ports to forward to (port-forward)."),
    (
        "continue",
        "string",
        "The continue token of the previous page of a chunked list.",
    ),
    (
        "dryRun",
        "string",
        "All: run every stage of the request without persisting the result.",
    ),
    (
        "fieldManager",
        "string",
        "Name of the actor making the change, recorded in managedFields.",
    ),
    (
        "fieldValidation",
        "string",
        "How to treat unknown or duplicate fields in the request body: Ignore, Warn or Strict.",
    ),
    (
        "fieldSelector",
        "string",
        "Restrict the returned objects by their fields.",
    ),
    ("follow", "boolean", "Keep streaming the log as it grows."),
    (
        "force",
        "boolean",
        "Take over fields owned by other managers (apply requests only).",
    ),
    (
        "gracePeriodSeconds",
        "integer",
        "Seconds to wait before deleting; 0 deletes at once.",
    ),
    (
        "ignoreStoreReadErrorWithClusterBreakingPotential",
        "boolean",
        "Delete an object even if it cannot be read from storage.",
    ),
    (
        "insecureSkipTLSVerifyBackend",
        "boolean",
        "Do not verify the serving certificate of the kubelet.",
    ),
    (
        "labelSelector",
        "string",
        "Restrict the returned objects by their labels.",
    ),
    ("limit", "integer", "Maximum number of objects in one page of a list."),
    ("limitBytes", "integer", "Stop the log after this many bytes."),
    ("name", "string", "Name of the object."),
    ("namespace", "string", "Namespace of the objects."),
    ("orphanDependents", "boolean", "Deprecated: use propagationPolicy."),
    ("pretty", "string", "Pretty-print the output when 'true'."),
    (
        "previous",
        "boolean",
        "Return the log of the previous run of the container.",
    ),
    (
        "propagationPolicy",
        "string",
        "Garbage collection of dependents: Orphan, Background or Foreground.",
    ),
    (
        "resourceVersion",
        "string",
        "Resource version constraint of the read or the start of the watch.",
    ),
    (
        "resourceVersionMatch",
        "string",
        "How resourceVersion is matched: Exact or NotOlderThan.",
    ),
    (
        "sendInitialEvents",
        "boolean",
        "Start a watch with synthetic events for the current state.",
    ),
    (
        "sinceSeconds",
        "integer",
        "Only return log lines newer than this many seconds.",
    ),
    (
        "tailLines",
        "integer",
        "Only return this many lines from the end of the log.",
    ),
    ("timeoutSeconds", "integer", "Timeout of a list or watch call."),
    (
        "timestamps",
        "boolean",
        "Prefix every log line with its RFC3339 timestamp.",
    ),
    ("watch", "boolean", "Stream changes instead of returning a list."),
];

fn render_paths(resources: &[&'static Resource], format: Format) -> Map<String, Value> {
    resources
        .iter()
        .flat_map(|r| resource_paths(r))
        .map(|item| (item.url.clone(), render_path(&item, format)))
        .collect()
}

/// Collection, all-namespaces, item and subresource paths of a resource.
fn resource_paths(r: &'static Resource) -> Vec<PathItem> {
    let prefix = format!("/{}", gv_path(r.group, r.version));
    let ns_params: Vec<&'static str> = if r.namespaced { vec!["namespace"] } else { vec![] };
    let collection = if r.namespaced {
        format!("{prefix}/namespaces/{{namespace}}/{}", r.plural)
    } else {
        format!("{prefix}/{}", r.plural)
    };
    let item_url = format!("{collection}/{{name}}");
    let mut item_params = ns_params.clone();
    item_params.insert(0, "name");
    let mut out = vec![PathItem {
        url: collection,
        params: ns_params,
        ops: collection_ops(r),
    }];
    if r.namespaced && r.verbs.contains(&"list") {
        let ops = vec![list_op(r, true)];
        out.push(PathItem {
            url: format!("{prefix}/{}", r.plural),
            params: vec![],
            ops,
        });
    }
    for s in r.subresources {
        let url = format!("{item_url}/{}", s.name);
        out.push(PathItem {
            url,
            params: item_params.clone(),
            ops: subresource_ops(r, s),
        });
    }
    out.push(PathItem {
        url: item_url,
        params: item_params,
        ops: item_ops(r),
    });
    out.retain(|p| !p.ops.is_empty());
    out
}

/// `CoreV1`, `AppsV1`, `CoordinationV1` (operation ids), from the group and version.
fn group_camel(group: &str, version: &str) -> String {
    let group = if group.is_empty() {
        "core"
    } else {
        group.trim_end_matches(".k8s.io")
    };
    group.split('.').chain([version]).map(capitalize).collect()
}

/// `core_v1`, `apps_v1`, `coordination_v1` (operation tags).
fn tag(group: &str, version: &str) -> String {
    let group = if group.is_empty() {
        "core"
    } else {
        group.trim_end_matches(".k8s.io")
    };
    format!("{}_{version}", group.replace('.', "_"))
}

fn capitalize(word: &str) -> String {
    let mut chars = word.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

/// The operation id of `verb` on a resource: `readAppsV1NamespacedDaemonSetStatus`.
fn op_id(verb: &str, r: &Resource, suffix: &str) -> String {
    let scope = if r.namespaced { "Namespaced" } else { "" };
    format!("{verb}{}{scope}{}{suffix}", group_camel(r.group, r.version), r.kind)
}

fn kind_gvk(r: &Resource) -> (&'static str, &'static str, &'static str) {
    (r.group, r.version, r.kind)
}

/// The definition name of a kind: a built-in's, or else a custom kind's.
fn def(group: &str, version: &str, kind: &str) -> String {
    match schema::definition_name(group, version, kind) {
        Some(name) => name.to_string(),
        None => custom_definition_name(group, version, kind),
    }
}

fn list_def(r: &Resource) -> String {
    def(r.group, r.version, &format!("{}List", r.kind))
}

fn list_op(r: &'static Resource, all_namespaces: bool) -> Op {
    let id = if all_namespaces {
        format!("list{}{}ForAllNamespaces", group_camel(r.group, r.version), r.kind)
    } else {
        op_id("list", r, "")
    };
    Op {
        method: "get",
        action: "list",
        id,
        description: format!("list or watch objects of kind {}", r.kind),
        gvk: kind_gvk(r),
        query: LIST_QUERY,
        body: Body::None,
        response: Response::Object(list_def(r)),
        codes: &["200"],
    }
}

fn collection_ops(r: &'static Resource) -> Vec<Op> {
    let kind_def = def(r.group, r.version, r.kind);
    let mut ops = Vec::new();
    if r.verbs.contains(&"list") {
        ops.push(list_op(r, false));
    }
    if let Some(spec) = object_verb("create").filter(|_| r.verbs.contains(&"create")) {
        ops.push(object_op(r, &spec, &kind_def));
    }
    if r.verbs.contains(&"deletecollection") {
        ops.push(Op {
            method: "delete",
            action: "deletecollection",
            id: format!(
                "delete{}Collection{}{}",
                group_camel(r.group, r.version),
                ns_word(r),
                r.kind
            ),
            description: format!("delete collection of {}", r.kind),
            gvk: kind_gvk(r),
            query: DELETE_COLLECTION_QUERY,
            body: Body::DeleteOptions,
            response: Response::Object(schema::STATUS.into()),
            codes: &["200"],
        });
    }
    ops
}

fn ns_word(r: &Resource) -> &'static str {
    if r.namespaced { "Namespaced" } else { "" }
}

/// How a verb on an object (or a subresource) becomes an operation.
struct VerbSpec {
    method: &'static str,
    action: &'static str,
    id_verb: &'static str,
    phrase: &'static str,
    query: &'static [&'static str],
    codes: &'static [&'static str],
}

/// The operation shape of an object verb; `None` for verbs without one (`list`, `watch`,
/// `deletecollection` live on the collection path).
fn object_verb(verb: &str) -> Option<VerbSpec> {
    let (method, action, id_verb, phrase, query, codes): (_, _, _, _, _, &'static [&str]) = match verb {
        "get" => ("get", "get", "read", "read the specified", &[][..], &["200"]),
        "update" => (
            "put",
            "put",
            "replace",
            "replace the specified",
            WRITE_QUERY,
            &["200", "201"],
        ),
        "patch" => (
            "patch",
            "patch",
            "patch",
            "partially update the specified",
            PATCH_QUERY,
            &["200", "201"],
        ),
        "delete" => ("delete", "delete", "delete", "delete a", DELETE_QUERY, &["200", "202"]),
        "create" => (
            "post",
            "post",
            "create",
            "create a",
            WRITE_QUERY,
            &["200", "201", "202"],
        ),
        _ => return None,
    };
    Some(VerbSpec {
        method,
        action,
        id_verb,
        phrase,
        query,
        codes,
    })
}

/// The request body of an operation on objects of definition `def` (of resource `r`).
fn body_for(r: &Resource, method: &str, def: &str) -> Body {
    match method {
        "put" | "post" => Body::Object(def.to_string()),
        "patch" => Body::Patch {
            strategic: !crate::catalogue::is_custom(r),
        },
        "delete" => Body::DeleteOptions,
        _ => Body::None,
    }
}

fn item_ops(r: &'static Resource) -> Vec<Op> {
    let kind_def = def(r.group, r.version, r.kind);
    let verbs = r
        .verbs
        .iter()
        .filter(|v| **v != "create")
        .filter_map(|v| object_verb(v));
    verbs.map(|spec| object_op(r, &spec, &kind_def)).collect()
}

/// The operation of an object verb on kind `r` (definition `kind_def`); deleting answers
/// with a Status, the other verbs with the object.
fn object_op(r: &'static Resource, spec: &VerbSpec, kind_def: &str) -> Op {
    Op {
        method: spec.method,
        action: spec.action,
        id: op_id(spec.id_verb, r, ""),
        description: format!("{} {}", spec.phrase, r.kind),
        gvk: kind_gvk(r),
        query: spec.query,
        body: body_for(r, spec.method, kind_def),
        response: Response::Object(if spec.method == "delete" {
            schema::STATUS.to_string()
        } else {
            kind_def.to_string()
        }),
        codes: spec.codes,
    }
}

fn subresource_ops(r: &'static Resource, s: &'static Subresource) -> Vec<Op> {
    if let Some(&(name, suffix, query)) = CONNECT_SUBRESOURCES.iter().find(|(n, _, _)| *n == s.name) {
        // A connect subresource, as upstream's `connectGetNamespacedPodExec`: query in, a
        // stream out.
        return [("get", "connectGet"), ("post", "connectPost")]
            .into_iter()
            .map(|(method, id_verb)| Op {
                method,
                action: "connect",
                id: op_id(id_verb, r, suffix),
                description: format!("connect {method} requests to {name} of {}", r.kind),
                gvk: (s.group, s.version, s.kind),
                query,
                body: Body::None,
                response: Response::Text,
                codes: &["200"],
            })
            .collect();
    }
    let sub_def = def(s.group, s.version, s.kind);
    let log = s.name == "log";
    let suffix = capitalize(s.name);
    s.verbs
        .iter()
        .filter_map(|v| object_verb(v))
        .map(|spec| Op {
            method: spec.method,
            action: spec.action,
            id: op_id(spec.id_verb, r, &suffix),
            description: format!("{} {} of the specified {}", spec.id_verb, s.name, r.kind),
            gvk: (s.group, s.version, s.kind),
            query: if log { LOG_QUERY } else { spec.query },
            body: body_for(r, spec.method, &sub_def),
            response: if log {
                Response::Text
            } else {
                Response::Object(sub_def.clone())
            },
            codes: spec.codes,
        })
        .collect()
}

fn render_path(item: &PathItem, format: Format) -> Value {
    let mut out = Map::new();
    let mut params: Vec<Value> = item.params.iter().map(|p| render_param(p, "path", format)).collect();
    params.push(render_param("pretty", "query", format));
    out.insert("parameters".into(), Value::Array(params));
    for op in &item.ops {
        out.insert(op.method.into(), render_op(op, format));
    }
    Value::Object(out)
}

fn render_param(name: &str, location: &str, format: Format) -> Value {
    let (_, kind, description) = PARAMS
        .iter()
        .find(|(n, _, _)| *n == name)
        .copied()
        .unwrap_or((name, "string", ""));
    let mut param = json!({ "name": name, "in": location, "description": description });
    let typed = json!({ "type": kind, "uniqueItems": true });
    if let (Some(obj), Some(typed)) = (param.as_object_mut(), typed.as_object()) {
        match format {
            Format::V3 => {
                obj.insert("schema".into(), Value::Object(typed.clone()));
            }
            Format::V2 => obj.extend(typed.clone()),
        }
        if location == "path" {
            obj.insert("required".into(), Value::Bool(true));
        }
    }
    param
}

fn render_op(op: &Op, format: Format) -> Value {
    let (group, version, kind) = op.gvk;
    let mut out = json!({
        "description": op.description,
        "operationId": op.id,
        "tags": [tag(group, version)],
        "responses": render_responses(op, format),
        "x-kubernetes-action": op.action,
        "x-kubernetes-group-version-kind": gvk(group, version, kind),
    });
    let mut params: Vec<Value> = op.query.iter().map(|p| render_param(p, "query", format)).collect();
    let Some(obj) = out.as_object_mut() else {
        return out;
    };
    match format {
        Format::V3 => {
            if let Some(body) = render_body_v3(&op.body) {
                obj.insert("requestBody".into(), body);
            }
        }
        Format::V2 => {
            if let Some(body) = render_body_v2(&op.body) {
                params.insert(0, body);
            }
            obj.insert("consumes".into(), json!(consumes(&op.body)));
            obj.insert("produces".into(), json!(produces(&op.response)));
            obj.insert("schemes".into(), json!(["https"]));
        }
    }
    if !params.is_empty() {
        obj.insert("parameters".into(), Value::Array(params));
    }
    out
}

const PATCH_TYPES: &[&str] = &[
    "application/apply-patch+yaml",
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
];

fn consumes(body: &Body) -> Vec<&'static str> {
    match body {
        Body::Patch { strategic: true } => PATCH_TYPES.to_vec(),
        // kubectl sends a strategic merge patch wherever the document accepts one.
        Body::Patch { strategic: false } => PATCH_TYPES
            .iter()
            .copied()
            .filter(|t| *t != "application/strategic-merge-patch+json")
            .collect(),
        _ => vec!["*/*"],
    }
}

fn produces(response: &Response) -> Vec<&'static str> {
    match response {
        Response::Object(_) => vec!["application/json", "application/yaml"],
        Response::Text => vec!["text/plain"],
    }
}

fn body_definition(body: &Body) -> Option<(&str, bool)> {
    match body {
        Body::None => None,
        Body::Object(def) => Some((def, true)),
        Body::Patch { .. } => Some((schema::PATCH, true)),
        Body::DeleteOptions => Some((schema::DELETE_OPTIONS, false)),
    }
}

fn render_body_v3(body: &Body) -> Option<Value> {
    let (def, required) = body_definition(body)?;
    let schema = Format::V3.reference(def);
    let content: Map<String, Value> = consumes(body)
        .into_iter()
        .map(|t| (t.to_string(), json!({ "schema": schema.clone() })))
        .collect();
    let mut out = json!({ "content": content });
    if required && let Some(obj) = out.as_object_mut() {
        obj.insert("required".into(), Value::Bool(true));
    }
    Some(out)
}

fn render_body_v2(body: &Body) -> Option<Value> {
    let (def, required) = body_definition(body)?;
    Some(json!({ "name": "body", "in": "body", "required": required, "schema": Format::V2.reference(def) }))
}

fn response_schema(response: &Response, format: Format) -> Value {
    match response {
        Response::Object(def) => format.reference(def),
        Response::Text => json!({ "type": "string" }),
    }
}

fn render_responses(op: &Op, format: Format) -> Value {
    let schema = response_schema(&op.response, format);
    let mut out = Map::new();
    for code in op.codes {
        let description = match *code {
            "201" => "Created",
            "202" => "Accepted",
            _ => "OK",
        };
        let response = match format {
            Format::V2 => json!({ "description": description, "schema": schema }),
            Format::V3 => {
                let content: Map<String, Value> = produces(&op.response)
                    .into_iter()
                    .map(|t| (t.to_string(), json!({ "schema": schema })))
                    .collect();
                json!({ "description": description, "content": content })
            }
        };
        out.insert((*code).into(), response);
    }
    out.insert("401".into(), json!({ "description": "Unauthorized" }));
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(path: &str) -> Value {
        let doc = v3_document(path).unwrap_or_else(|| panic!("no doc {path}"));
        serde_json::from_slice(&doc).unwrap()
    }

    #[test]
    fn custom_kinds_are_published_as_upstream_publishes_them() {
        let r: &'static Resource = Box::leak(Box::new(Resource {
            group: "stable.example.com",
            version: "v1",
            plural: "crontabs",
            singular: "crontab",
            kind: "CronTab",
            namespaced: true,
            short_names: &[],
            categories: &[],
            verbs: &["create", "delete", "get", "list", "patch", "update", "watch"],
            subresources: &[],
        }));
        let schema = json!({"type": "object", "properties": {
            "metadata": {"type": "object", "properties": {"name": {"type": "string", "maxLength": 10}}},
            "spec": {"type": "object", "description": "What the cron job runs.", "properties": {
                "cronSpec": {"type": "string", "nullable": true},
                "port": {"x-kubernetes-int-or-string": true,
                         "anyOf": [{"type": "integer"}, {"type": "string"}]}}}}});
        set_custom(vec![CustomKind {
            resource: r,
            schema: schema.clone(),
        }]);

        let path = "apis/stable.example.com/v1";
        let hash = v3_document(path).expect("a document for the custom group-version").hash;
        let url = format!("/openapi/v3/{path}?hash={hash}");
        assert_eq!(v3_index()["paths"][path]["serverRelativeURL"], json!(url));
        let d = doc(path);
        let schemas = &d["components"]["schemas"];
        let kind = &schemas["com.example.stable.v1.CronTab"];
        assert_eq!(
            kind["x-kubernetes-group-version-kind"],
            json!([gvk("stable.example.com", "v1", "CronTab")])
        );
        assert_eq!(kind["properties"]["spec"]["description"], "What the cron job runs.");
        assert_eq!(kind["properties"]["spec"]["properties"]["cronSpec"]["nullable"], true);
        assert_eq!(
            kind["properties"]["metadata"]["allOf"][0]["$ref"],
            format!("#/components/schemas/{OBJECT_META}")
        );
        assert!(kind["properties"]["apiVersion"]["description"].is_string());
        let list = &schemas["com.example.stable.v1.CronTabList"];
        assert_eq!(
            list["properties"]["items"]["items"]["$ref"],
            "#/components/schemas/com.example.stable.v1.CronTab"
        );
        assert!(schemas[OBJECT_META].is_object() && schemas[LIST_META].is_object());
        // kubectl would send a strategic merge patch, which custom resources refuse.
        let item = &d["paths"]["/apis/stable.example.com/v1/namespaces/{namespace}/crontabs/{name}"];
        let types = item["patch"]["requestBody"]["content"].as_object().unwrap();
        assert!(types.contains_key("application/merge-patch+json"));
        assert!(!types.contains_key("application/strategic-merge-patch+json"));
        assert!(
            item["patch"]["parameters"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["name"] == "fieldValidation")
        );

        // Swagger 2.0 has no nullable and no anyOf.
        let v2: Value = serde_json::from_slice(&v2_document()).unwrap();
        let spec = &v2["definitions"]["com.example.stable.v1.CronTab"]["properties"]["spec"]["properties"];
        assert_eq!(spec["cronSpec"], json!({"type": "string"}));
        assert_eq!(spec["port"], json!({"x-kubernetes-int-or-string": true}));
        assert!(v2["paths"]["/apis/stable.example.com/v1/crontabs"]["get"].is_object());
        assert!(v2["definitions"]["io.k8s.api.apps.v1.DaemonSet"].is_object());
        let protobuf = v2_protobuf();
        assert!(protobuf.windows(7).any(|w| w == b"CronTab"));

        // Published again unchanged, the documents stay; withdrawn, they go.
        set_custom(vec![CustomKind { resource: r, schema }]);
        assert_eq!(v3_document(path).unwrap().hash, hash);
        set_custom(Vec::new());
        assert!(v3_document(path).is_none());
        assert!(v3_index()["paths"].get(path).is_none());
        assert!(!String::from_utf8_lossy(&v2_document()).contains("com.example.stable.v1.CronTab"));
    }

    #[test]
    fn build_time_and_sizes() {
        let start = std::time::Instant::now();
        let total: usize = v3_paths().map(|p| v3_document(p).map_or(0, |d| d.len())).sum();
        let v2 = v2_document().len();
        eprintln!(
            "openapi: built in {:?}; v3 total {total} bytes, v2 {v2} bytes",
            start.elapsed()
        );
        for p in v3_paths() {
            eprintln!("  {p}: {} bytes", v3_document(p).map_or(0, |d| d.len()));
        }
        assert!(total > 0 && v2 > 0);
    }

    #[test]
    fn index_lists_every_group_version_with_its_hash() {
        let index = v3_index();
        let apps = &index["paths"]["apis/apps/v1"]["serverRelativeURL"];
        let hash = v3_document("apis/apps/v1").unwrap().hash;
        assert_eq!(apps, &json!(format!("/openapi/v3/apis/apps/v1?hash={hash}")));
        assert!(index["paths"]["api/v1"].is_object());
        for gv in ["apis/batch/v1", "apis/coordination.k8s.io/v1", "apis/storage.k8s.io/v1"] {
            assert!(index["paths"][gv].is_object(), "{gv}");
        }
        assert!(v3_document("/apis/apps/v1").is_some());
        assert!(v3_document("apis/nope/v1").is_none());
    }

    #[test]
    fn hashes_differ_between_documents_and_follow_content() {
        let apps = v3_document("apis/apps/v1").unwrap().hash;
        let core = v3_document("api/v1").unwrap().hash;
        assert_ne!(apps, core);
        assert_eq!(apps.len(), 16);
        assert_eq!(content_hash(b"a"), content_hash(b"a"));
        assert_ne!(content_hash(b"a"), content_hash(b"b"));
    }

    #[test]
    fn patch_operations_carry_gvk_and_field_validation() {
        for path in v3_paths() {
            let d = doc(path);
            for (url, item) in d["paths"].as_object().unwrap() {
                let Some(patch) = item.get("patch") else {
                    continue;
                };
                let gvk = &patch["x-kubernetes-group-version-kind"];
                assert!(gvk["kind"].is_string() && gvk["version"].is_string(), "{url}");
                let names: Vec<&str> = patch["parameters"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|p| p["in"] == "query")
                    .map(|p| p["name"].as_str().unwrap())
                    .collect();
                for needed in ["fieldValidation", "dryRun", "fieldManager", "force"] {
                    assert!(names.contains(&needed), "{url} lacks {needed}");
                }
            }
        }
    }

    #[test]
    fn daemonset_paths_match_what_kubectl_looks_up() {
        let d = doc("apis/apps/v1");
        let item = &d["paths"]["/apis/apps/v1/namespaces/{namespace}/daemonsets/{name}"];
        assert_eq!(
            item["patch"]["x-kubernetes-group-version-kind"],
            gvk("apps", "v1", "DaemonSet")
        );
        assert_eq!(item["patch"]["operationId"], "patchAppsV1NamespacedDaemonSet");
        assert_eq!(item["get"]["x-kubernetes-action"], "get");
        assert_eq!(
            item["put"]["requestBody"]["content"]["*/*"]["schema"]["$ref"],
            "#/components/schemas/io.k8s.api.apps.v1.DaemonSet"
        );
        let smp = &item["patch"]["requestBody"]["content"]["application/strategic-merge-patch+json"];
        assert_eq!(
            smp["schema"]["$ref"],
            "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.Patch"
        );
        let collection = &d["paths"]["/apis/apps/v1/namespaces/{namespace}/daemonsets"];
        assert_eq!(collection["get"]["x-kubernetes-action"], "list");
        assert_eq!(collection["post"]["operationId"], "createAppsV1NamespacedDaemonSet");
        let ok = &collection["get"]["responses"]["200"]["content"]["application/json"]["schema"]["$ref"];
        assert_eq!(ok, "#/components/schemas/io.k8s.api.apps.v1.DaemonSetList");
        let status = &d["paths"]["/apis/apps/v1/namespaces/{namespace}/daemonsets/{name}/status"];
        assert_eq!(status["patch"]["operationId"], "patchAppsV1NamespacedDaemonSetStatus");
        let scale = &d["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale"];
        assert_eq!(
            scale["put"]["x-kubernetes-group-version-kind"],
            gvk("autoscaling", "v1", "Scale")
        );
        assert!(d["paths"]["/apis/apps/v1/daemonsets"]["get"].is_object());
    }

    #[test]
    fn cluster_scoped_and_core_paths() {
        let d = doc("api/v1");
        let node = &d["paths"]["/api/v1/nodes/{name}"];
        assert_eq!(node["patch"]["operationId"], "patchCoreV1Node");
        let params = node["parameters"].as_array().unwrap();
        assert!(
            params
                .iter()
                .any(|p| p["name"] == "name" && p["in"] == "path" && p["required"] == true)
        );
        assert!(!params.iter().any(|p| p["name"] == "namespace"));
        assert!(d["paths"]["/api/v1/namespaces/{namespace}/pods/{name}/log"]["get"].is_object());
        let eviction = &d["paths"]["/api/v1/namespaces/{namespace}/pods/{name}/eviction"]["post"];
        assert_eq!(
            eviction["x-kubernetes-group-version-kind"],
            gvk("policy", "v1", "Eviction")
        );
        assert!(d["paths"]["/api/v1/namespaces/{name}/finalize"]["put"].is_object());
        assert!(
            d["paths"]
                .get("/apis/apps/v1/namespaces/{namespace}/daemonsets")
                .is_none()
        );
    }

    #[test]
    fn components_carry_gvk_patch_extensions_and_resolve() {
        let d = doc("apis/apps/v1");
        let schemas = d["components"]["schemas"].as_object().unwrap();
        let ds = &schemas["io.k8s.api.apps.v1.DaemonSet"];
        assert_eq!(
            ds["x-kubernetes-group-version-kind"],
            json!([gvk("apps", "v1", "DaemonSet")])
        );
        assert!(ds.get("required").is_none());
        let spec = &ds["properties"]["spec"];
        assert_eq!(
            spec["allOf"][0]["$ref"],
            "#/components/schemas/io.k8s.api.apps.v1.DaemonSetSpec"
        );
        assert!(spec["description"].is_string());
        let containers = &schemas["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"];
        assert_eq!(containers["x-kubernetes-patch-strategy"], "merge");
        assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");
        let strategy = &schemas["io.k8s.api.apps.v1.DeploymentSpec"]["properties"]["strategy"];
        assert_eq!(strategy["x-kubernetes-patch-strategy"], "retainKeys");
        assert_eq!(schemas["io.k8s.api.core.v1.Container"]["required"], json!(["name"]));
        assert!(schemas.contains_key("io.k8s.api.autoscaling.v1.Scale"));
        let delete = &schemas[schema::DELETE_OPTIONS]["x-kubernetes-group-version-kind"];
        assert!(delete.as_array().unwrap().contains(&gvk("apps", "v1", "DeleteOptions")));
        let text = String::from_utf8(v3_document("apis/apps/v1").unwrap().to_vec()).unwrap();
        assert!(!text.contains("#/$defs/"));
        for reference in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
            let name = &reference[..reference.find('"').unwrap()];
            assert!(schemas.contains_key(name), "dangling {name}");
        }
    }

    #[test]
    fn v2_document_uses_definitions() {
        let d: Value = serde_json::from_slice(&v2_document()).unwrap();
        assert_eq!(d["swagger"], "2.0");
        let patch = &d["paths"]["/apis/apps/v1/namespaces/{namespace}/daemonsets/{name}"]["patch"];
        let body = patch["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["in"] == "body")
            .unwrap();
        assert_eq!(
            body["schema"]["$ref"],
            "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.Patch"
        );
        assert!(
            patch["consumes"]
                .as_array()
                .unwrap()
                .contains(&json!("application/strategic-merge-patch+json"))
        );
        let spec = &d["definitions"]["io.k8s.api.apps.v1.DaemonSet"]["properties"]["spec"];
        assert_eq!(spec["$ref"], "#/definitions/io.k8s.api.apps.v1.DaemonSetSpec");
        assert!(d["paths"]["/api/v1/namespaces/{namespace}/pods"]["post"].is_object());
        assert!(!String::from_utf8_lossy(&v2_document()).contains("#/$defs/"));
    }

    /// The rules kube-openapi applies when kubectl reads v2 (`NewOpenAPIData`): one broken
    /// definition makes kubectl drop every schema, so every one must hold.
    #[test]
    fn v2_definitions_are_what_kubectl_can_read() {
        fn check(name: &str, s: &Value, defs: &Map<String, Value>, problems: &mut Vec<String>) {
            let Some(m) = s.as_object() else {
                problems.push(format!("{name}: not an object"));
                return;
            };
            if let Some(r) = m.get("$ref").and_then(Value::as_str) {
                let target = r.strip_prefix("#/definitions/");
                if !target.is_some_and(|t| defs.contains_key(t)) {
                    problems.push(format!("{name}: dangling {r}"));
                }
                if m.contains_key("type") || m.contains_key("properties") {
                    problems.push(format!("{name}: $ref beside type or properties"));
                }
                return;
            }
            match m.get("type") {
                None => {}
                Some(Value::String(t)) => match t.as_str() {
                    "object" | "string" | "integer" | "number" | "boolean" => {}
                    "array" if m.get("items").is_some_and(Value::is_object) => {}
                    other => problems.push(format!("{name}: type {other} unreadable here")),
                },
                Some(other) => problems.push(format!("{name}: type {other}")),
            }
            for (k, p) in m.get("properties").and_then(Value::as_object).into_iter().flatten() {
                check(&format!("{name}.{k}"), p, defs, problems);
            }
            for key in ["items", "additionalProperties"] {
                if let Some(sub @ Value::Object(_)) = m.get(key) {
                    check(&format!("{name}[{key}]"), sub, defs, problems);
                }
            }
        }
        let d: Value = serde_json::from_slice(&v2_document()).unwrap();
        let defs = d["definitions"].as_object().unwrap();
        let mut problems = Vec::new();
        for (name, s) in defs {
            check(name, s, defs, &mut problems);
        }
        assert!(problems.is_empty(), "{problems:#?}");
        // The protobuf form says the same: every definition, in order.
        let pb = v2_protobuf();
        assert!(pb.len() > v2_document().len() / 4, "{} bytes", pb.len());
    }

    #[test]
    fn operation_ids_are_unique_per_document() {
        for path in v3_paths() {
            let d = doc(path);
            let mut seen = BTreeSet::new();
            for item in d["paths"].as_object().unwrap().values() {
                for (method, op) in item.as_object().unwrap() {
                    if method != "parameters" {
                        assert!(seen.insert(op["operationId"].as_str().unwrap().to_string()), "{op}");
                    }
                }
            }
        }
        assert_eq!(group_camel("coordination.k8s.io", "v1"), "CoordinationV1");
        assert_eq!(group_camel("", "v1"), "CoreV1");
        assert_eq!(tag("events.k8s.io", "v1"), "events_v1");
    }
}
