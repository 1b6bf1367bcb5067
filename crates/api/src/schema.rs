//! JSON schemas of every served kind, taken from k8s-openapi's `schemars` output and merged
//! into one table of definitions keyed by OpenAPI name (`io.k8s.api.apps.v1.DaemonSet`).
//!
//! On top of the raw schemas this module adds what k8s-openapi leaves out:
//! - upstream's patch strategies (the `patchStrategy`/`patchMergeKey` struct tags), both as a
//!   table ([`list_strategy`]) and as `x-kubernetes-patch-strategy`/`-merge-key` extensions
//!   on the property schemas, where kubectl and [`crate::smp`] read them;
//! - the `XxxList` kinds;
//! - `required` lists without `metadata` (k8s-openapi marks it required because it is not an
//!   `Option` in Rust; upstream's OpenAPI does not).
//!
//! It also walks objects against the schemas to find fields they do not know
//! ([`unknown_fields`], for strict field validation).
//!
//! `$ref`s inside [`definitions`] have the form `#/$defs/<name>`.

use std::fmt::Write as _;
use std::sync::OnceLock;

use k8s_openapi::api::{
    admissionregistration::v1 as admission, apps::v1 as apps, authentication::v1 as authentication,
    authorization::v1 as authorization, autoscaling::v1 as autoscaling, autoscaling::v2 as autoscaling2,
    batch::v1 as batch, certificates::v1 as certificates, coordination::v1 as coordination, core::v1 as core,
    discovery::v1 as discovery, events::v1 as events, flowcontrol::v1 as flowcontrol, networking::v1 as networking,
    node::v1 as node, policy::v1 as policy, rbac::v1 as rbac, scheduling::v1 as scheduling, storage::v1 as storage,
};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1 as apiextensions;
use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1 as apiregistration;
use k8s_openapi::{ListableResource, Resource};
use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, SchemaGenerator};
use serde_json::{Map, Value, json};

/// Prefix of the `$ref`s inside [`definitions`].
pub const REF_PREFIX: &str = "#/$defs/";

/// Extension naming a field's patch strategy (`merge`, `retainKeys`, ...).
pub const PATCH_STRATEGY_EXT: &str = "x-kubernetes-patch-strategy";

/// Extension naming the merge key of a list with the `merge` strategy.
pub const PATCH_MERGE_KEY_EXT: &str = "x-kubernetes-patch-merge-key";

/// Extension marking a schema whose contents are free-form.
pub const PRESERVE_UNKNOWN_EXT: &str = "x-kubernetes-preserve-unknown-fields";

/// Definition name of `DeleteOptions` (shared by every group-version).
pub const DELETE_OPTIONS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions";

/// Definition name of `Status`.
pub const STATUS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Status";

/// Definition name of `Patch` (the body type of PATCH requests).
pub const PATCH: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Patch";

/// A kind that has a schema.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KindInfo {
    /// API group (`""` for core).
    pub group: &'static str,
    /// Version (`v1`).
    pub version: &'static str,
    /// Kind (`DaemonSet`, `DaemonSetList`, `Scale`, ...).
    pub kind: &'static str,
    /// Its definition name (`io.k8s.api.apps.v1.DaemonSet`).
    pub definition: String,
    /// For `XxxList` kinds, the definition name of the item kind.
    pub list_of: Option<String>,
}

/// How a field is patched by a strategic merge patch (upstream's `patchStrategy` tag).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strategy {
    /// `merge`: lists merge item by item (by merge key, or as a set for primitives).
    Merge,
    /// `replace`: the patch value replaces the field whole.
    Replace,
    /// `retainKeys`: a `$retainKeys` directive in the patch drops the keys it does not list.
    RetainKeys,
    /// `merge,retainKeys`: both of the above.
    MergeRetainKeys,
}

impl Strategy {
    /// The tag / extension value (`merge`, `replace`, `retainKeys`, `merge,retainKeys`).
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::Merge => "merge",
            Strategy::Replace => "replace",
            Strategy::RetainKeys => "retainKeys",
            Strategy::MergeRetainKeys => "merge,retainKeys",
        }
    }

    /// Parses a tag / extension value; `None` if it names no known strategy.
    pub fn parse(text: &str) -> Option<Strategy> {
        let mut merge = false;
        let mut retain = false;
        let mut replace = false;
        for part in text.split(',').map(str::trim) {
            match part {
                "merge" => merge = true,
                "retainKeys" => retain = true,
                "replace" => replace = true,
                _ => return None,
            }
        }
        match (merge, retain, replace) {
            (true, true, false) => Some(Strategy::MergeRetainKeys),
            (true, false, false) => Some(Strategy::Merge),
            (false, true, false) => Some(Strategy::RetainKeys),
            (false, false, true) => Some(Strategy::Replace),
            _ => None,
        }
    }

    /// True for `merge` and `merge,retainKeys`: lists merge instead of being replaced.
    pub fn merges(self) -> bool {
        matches!(self, Strategy::Merge | Strategy::MergeRetainKeys)
    }

    /// True for `retainKeys` and `merge,retainKeys`.
    pub fn retains_keys(self) -> bool {
        matches!(self, Strategy::RetainKeys | Strategy::MergeRetainKeys)
    }
}

/// A field's patch strategy and, for lists of objects merged by key, the merge key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PatchStrategy {
    /// The strategy.
    pub strategy: Strategy,
    /// The merge key (`name`, `containerPort`, ...) of a merged list of objects.
    pub merge_key: Option<&'static str>,
}

impl PatchStrategy {
    /// Reads the `x-kubernetes-patch-*` extensions of a property schema.
    pub fn from_schema(property: &'static Value) -> Option<PatchStrategy> {
        let strategy = Strategy::parse(property.get(PATCH_STRATEGY_EXT)?.as_str()?)?;
        let merge_key = property.get(PATCH_MERGE_KEY_EXT).and_then(Value::as_str);
        Some(PatchStrategy { strategy, merge_key })
    }

    /// True if a list with this strategy merges (see [`Strategy::merges`]).
    pub fn merges(&self) -> bool {
        self.strategy.merges()
    }
}

mod lists;

/// How a list or map field merges under server-side apply (upstream's `x-kubernetes-list-type`,
/// `x-kubernetes-list-map-keys` and `x-kubernetes-map-type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// `listType=atomic`: the list is one value, replaced whole.
    AtomicList,
    /// `listType=set`: a list of distinct scalars, owned item by item.
    Set,
    /// `listType=map`: a list of objects, each identified by these keys.
    Map(&'static [&'static str]),
    /// `mapType=atomic`: the map (or struct) is one value, replaced whole.
    AtomicMap,
    /// `mapType=granular`: each entry of the map is its own field (the default for maps).
    GranularMap,
    /// No list or map marker (only a patch strategy).
    Unmarked,
}

impl Shape {
    /// The `x-kubernetes-list-type` value, if it is a list marker.
    pub fn list_type(self) -> Option<&'static str> {
        match self {
            Shape::AtomicList => Some("atomic"),
            Shape::Set => Some("set"),
            Shape::Map(_) => Some("map"),
            _ => None,
        }
    }

    /// The `x-kubernetes-map-type` value, if it is a map marker.
    pub fn map_type(self) -> Option<&'static str> {
        match self {
            Shape::AtomicMap => Some("atomic"),
            Shape::GranularMap => Some("granular"),
            _ => None,
        }
    }
}

/// `x-kubernetes-list-type`.
pub const LIST_TYPE_EXT: &str = "x-kubernetes-list-type";
/// `x-kubernetes-list-map-keys`.
pub const LIST_MAP_KEYS_EXT: &str = "x-kubernetes-list-map-keys";
/// `x-kubernetes-map-type`.
pub const MAP_TYPE_EXT: &str = "x-kubernetes-map-type";

/// The list/map shape of `field` in `definition`, from upstream's markers.
pub fn shape(definition: &str, field: &str) -> Option<Shape> {
    lists::FIELDS
        .iter()
        .find(|(d, f, ..)| *d == definition && *f == field)
        .map(|&(_, _, shape, ..)| shape)
}

/// True for definitions upstream marks atomic as a whole (`LocalObjectReference`,
/// `NodeSelector`, `LabelSelectorRequirement`... under server-side apply they are one value).
pub fn atomic_definition(definition: &str) -> bool {
    lists::ATOMIC_DEFINITIONS.contains(&definition)
}

/// Upstream's patch strategy of `field` in `definition` (e.g. `PodSpec.containers`: merge by
/// `name`); `None` for fields without a `patchStrategy` tag (lists then replace whole).
/// Despite the name it also covers object fields (`DeploymentSpec.strategy`: retainKeys).
pub fn list_strategy(definition: &str, field: &str) -> Option<PatchStrategy> {
    patch_strategies()
        .find(|(d, f, _)| *d == definition && *f == field)
        .map(|(_, _, s)| s)
}

/// Every entry of the patch strategy table as (definition, field, strategy).
pub fn patch_strategies() -> impl Iterator<Item = (&'static str, &'static str, PatchStrategy)> {
    lists::FIELDS.iter().filter_map(|&(d, f, _, strategy, merge_key)| {
        strategy.map(|strategy| (d, f, PatchStrategy { strategy, merge_key }))
    })
}

struct Registry {
    definitions: Map<String, Value>,
    kinds: Vec<KindInfo>,
}

fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(build_registry)
}

fn build_registry() -> Registry {
    let mut generator = SchemaSettings::draft2020_12().into_generator();
    let mut kinds = Vec::new();
    register_kinds(&mut generator, &mut kinds);
    let mut definitions = generator.take_definitions(false);
    for info in &kinds {
        if let Some(item) = &info.list_of {
            let list = list_schema(info.kind, item, &definitions);
            definitions.insert(info.definition.clone(), list);
        }
    }
    for (name, schema) in definitions.iter_mut() {
        relax_required(name, schema);
    }
    annotate_patch_strategies(&mut definitions);
    Registry { definitions, kinds }
}

/// Adds every served kind (with its list), the subresource kinds and the meta kinds.
fn register_kinds(g: &mut SchemaGenerator, out: &mut Vec<KindInfo>) {
    listable::<core::Namespace>(g, out);
    listable::<core::Node>(g, out);
    listable::<core::Pod>(g, out);
    listable::<core::Service>(g, out);
    listable::<core::Endpoints>(g, out);
    listable::<core::Event>(g, out);
    listable::<core::ConfigMap>(g, out);
    listable::<core::Secret>(g, out);
    listable::<core::ServiceAccount>(g, out);
    listable::<core::PersistentVolume>(g, out);
    listable::<core::PersistentVolumeClaim>(g, out);
    listable::<core::ReplicationController>(g, out);
    listable::<apps::ControllerRevision>(g, out);
    listable::<apps::DaemonSet>(g, out);
    listable::<apps::Deployment>(g, out);
    listable::<apps::ReplicaSet>(g, out);
    listable::<apps::StatefulSet>(g, out);
    listable::<batch::CronJob>(g, out);
    listable::<batch::Job>(g, out);
    listable::<coordination::Lease>(g, out);
    listable::<discovery::EndpointSlice>(g, out);
    listable::<events::Event>(g, out);
    listable::<storage::StorageClass>(g, out);
    // Kinds that are stored and validated (some act only in later work).
    listable::<core::ComponentStatus>(g, out);
    listable::<core::LimitRange>(g, out);
    listable::<core::PodTemplate>(g, out);
    listable::<core::ResourceQuota>(g, out);
    listable::<admission::MutatingWebhookConfiguration>(g, out);
    listable::<admission::ValidatingAdmissionPolicy>(g, out);
    listable::<admission::ValidatingAdmissionPolicyBinding>(g, out);
    listable::<admission::ValidatingWebhookConfiguration>(g, out);
    listable::<apiextensions::CustomResourceDefinition>(g, out);
    listable::<apiregistration::APIService>(g, out);
    listable::<autoscaling::HorizontalPodAutoscaler>(g, out);
    listable::<autoscaling2::HorizontalPodAutoscaler>(g, out);
    listable::<certificates::CertificateSigningRequest>(g, out);
    listable::<flowcontrol::FlowSchema>(g, out);
    listable::<flowcontrol::PriorityLevelConfiguration>(g, out);
    listable::<networking::IngressClass>(g, out);
    listable::<networking::Ingress>(g, out);
    listable::<networking::IPAddress>(g, out);
    listable::<networking::NetworkPolicy>(g, out);
    listable::<networking::ServiceCIDR>(g, out);
    listable::<node::RuntimeClass>(g, out);
    listable::<policy::PodDisruptionBudget>(g, out);
    listable::<rbac::ClusterRoleBinding>(g, out);
    listable::<rbac::ClusterRole>(g, out);
    listable::<rbac::RoleBinding>(g, out);
    listable::<rbac::Role>(g, out);
    listable::<scheduling::PriorityClass>(g, out);
    listable::<storage::CSIDriver>(g, out);
    listable::<storage::CSINode>(g, out);
    listable::<storage::CSIStorageCapacity>(g, out);
    listable::<storage::VolumeAttachment>(g, out);
    // The review kinds: created and answered, never stored or listed.
    single::<authentication::SelfSubjectReview>(g, out);
    single::<authentication::TokenReview>(g, out);
    single::<authentication::TokenRequest>(g, out);
    single::<authorization::LocalSubjectAccessReview>(g, out);
    single::<authorization::SelfSubjectAccessReview>(g, out);
    single::<authorization::SelfSubjectRulesReview>(g, out);
    single::<authorization::SubjectAccessReview>(g, out);
    single::<autoscaling::Scale>(g, out);
    single::<core::Binding>(g, out);
    single::<policy::Eviction>(g, out);
    single::<meta::Status>(g, out);
    add::<meta::DeleteOptions>(g, out, ("", "v1", "DeleteOptions"));
    g.subschema_for::<meta::Patch>();
    g.subschema_for::<meta::ListMeta>();
}

fn add<T: JsonSchema>(
    g: &mut SchemaGenerator,
    out: &mut Vec<KindInfo>,
    gvk: (&'static str, &'static str, &'static str),
) {
    g.subschema_for::<T>();
    let (group, version, kind) = gvk;
    out.push(KindInfo {
        group,
        version,
        kind,
        definition: T::schema_name().into_owned(),
        list_of: None,
    });
}

fn single<T: JsonSchema + Resource>(g: &mut SchemaGenerator, out: &mut Vec<KindInfo>) {
    add::<T>(g, out, (T::GROUP, T::VERSION, T::KIND));
}

fn listable<T: JsonSchema + ListableResource>(g: &mut SchemaGenerator, out: &mut Vec<KindInfo>) {
    single::<T>(g, out);
    let item = T::schema_name().into_owned();
    let base = item.strip_suffix(T::KIND).unwrap_or(&item);
    let definition = format!("{base}{}", T::LIST_KIND);
    out.push(KindInfo {
        group: T::GROUP,
        version: T::VERSION,
        kind: T::LIST_KIND,
        definition,
        list_of: Some(item),
    });
}

/// The schema of `XxxList` (k8s-openapi models lists as one generic type without a schema).
fn list_schema(list_kind: &str, item: &str, definitions: &Map<String, Value>) -> Value {
    let item_props = definitions.get(item).and_then(|d| d.get("properties"));
    let copy = |field: &str| {
        item_props
            .and_then(|p| p.get(field))
            .cloned()
            .unwrap_or_else(|| json!({"type": "string"}))
    };
    let item_kind = item.rsplit('.').next().unwrap_or(item);
    json!({
        "description": format!("{list_kind} is a list of {item_kind} objects."),
        "type": "object",
        "properties": {
            "apiVersion": copy("apiVersion"),
            "items": {
                "description": format!("The {item_kind} objects in this list."),
                "type": "array",
                "items": {"$ref": format!("{REF_PREFIX}{item}")},
            },
            "kind": copy("kind"),
            "metadata": {
                "$ref": format!("{REF_PREFIX}io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta"),
                "description": "Standard list metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds",
            },
        },
        "required": ["items"],
    })
}

/// Fields k8s-openapi marks required (non-`Option` in Rust) that upstream's OpenAPI does not
/// require: `metadata` of every kind but core/v1 Event, and the `name` of the reference types
/// where upstream defaults it to `""`.
const NOT_REQUIRED: &[(&str, &str)] = &[
    ("io.k8s.api.core.v1.LocalObjectReference", "name"),
    ("io.k8s.api.core.v1.ConfigMapKeySelector", "name"),
    ("io.k8s.api.core.v1.SecretKeySelector", "name"),
    ("io.k8s.api.core.v1.ConfigMapEnvSource", "name"),
    ("io.k8s.api.core.v1.SecretEnvSource", "name"),
    ("io.k8s.api.core.v1.ConfigMapProjection", "name"),
    ("io.k8s.api.core.v1.SecretProjection", "name"),
    ("io.k8s.api.core.v1.ConfigMapVolumeSource", "name"),
];

/// Trims a definition's `required` list to upstream's (see [`NOT_REQUIRED`]); drops the list
/// if it empties.
fn relax_required(name: &str, schema: &mut Value) {
    let Some(obj) = schema.as_object_mut() else {
        return;
    };
    let Some(Value::Array(required)) = obj.get_mut("required") else {
        return;
    };
    let keeps_metadata = name == "io.k8s.api.core.v1.Event";
    required.retain(|field| {
        let field = field.as_str().unwrap_or_default();
        let metadata = field == "metadata" && !keeps_metadata;
        !metadata && !NOT_REQUIRED.contains(&(name, field))
    });
    if required.is_empty() {
        obj.remove("required");
    }
}

/// Publishes upstream's list, map and patch markers on the definitions, as its OpenAPI does.
fn annotate_patch_strategies(definitions: &mut Map<String, Value>) {
    for &(definition, field, shape, strategy, merge_key) in lists::FIELDS {
        let property = definitions
            .get_mut(definition)
            .and_then(|d| d.get_mut("properties"))
            .and_then(|p| p.get_mut(field))
            .and_then(Value::as_object_mut);
        let Some(property) = property else { continue };
        if let Some(list_type) = shape.list_type() {
            property.insert(LIST_TYPE_EXT.into(), list_type.into());
        }
        if let Shape::Map(keys) = shape {
            property.insert(LIST_MAP_KEYS_EXT.into(), keys.to_vec().into());
        }
        if let Some(map_type) = shape.map_type() {
            property.insert(MAP_TYPE_EXT.into(), map_type.into());
        }
        if let Some(strategy) = strategy {
            property.insert(PATCH_STRATEGY_EXT.into(), strategy.as_str().into());
        }
        if let Some(key) = merge_key {
            property.insert(PATCH_MERGE_KEY_EXT.into(), key.into());
        }
    }
    for &definition in lists::ATOMIC_DEFINITIONS {
        if let Some(d) = definitions.get_mut(definition).and_then(Value::as_object_mut) {
            d.insert(MAP_TYPE_EXT.into(), "atomic".into());
        }
    }
}

/// Every definition, keyed by OpenAPI name; `$ref`s inside read `#/$defs/<name>`.
pub fn definitions() -> &'static Map<String, Value> {
    &registry().definitions
}

/// The definition called `name` (`io.k8s.api.core.v1.PodSpec`).
pub fn definition(name: &str) -> Option<&'static Value> {
    registry().definitions.get(name)
}

/// Every kind with a schema: the served kinds, their lists, `Scale`, `Binding`, `Eviction`,
/// `Status` and `DeleteOptions`.
pub fn kinds() -> &'static [KindInfo] {
    &registry().kinds
}

/// The kind `group`/`version`/`kind`, if it has a schema.
pub fn kind_info(group: &str, version: &str, kind: &str) -> Option<&'static KindInfo> {
    kinds()
        .iter()
        .find(|k| k.group == group && k.version == version && k.kind == kind)
}

/// The definition name of a kind: ("apps", "v1", "DaemonSet") gives
/// `io.k8s.api.apps.v1.DaemonSet`.
pub fn definition_name(group: &str, version: &str, kind: &str) -> Option<&'static str> {
    kind_info(group, version, kind).map(|k| k.definition.as_str())
}

/// The definition a schema refers to: the name after the last `/` of its `$ref`, looking
/// through single-element `allOf` and nullable `anyOf`/`oneOf` wrappers.
pub fn ref_name(schema: &Value) -> Option<&str> {
    if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
        return reference.rsplit('/').next();
    }
    unwrap_combinator(schema).and_then(ref_name)
}

/// The single non-null member of an `allOf`/`anyOf`/`oneOf` wrapper around a schema.
fn unwrap_combinator(schema: &Value) -> Option<&Value> {
    if schema.get("properties").is_some() {
        return None;
    }
    for key in ["allOf", "anyOf", "oneOf"] {
        let Some(members) = schema.get(key).and_then(Value::as_array) else {
            continue;
        };
        let mut non_null = members
            .iter()
            .filter(|m| m.get("type").and_then(Value::as_str) != Some("null"));
        if let (Some(only), None) = (non_null.next(), non_null.next()) {
            return Some(only);
        }
    }
    None
}

/// Follows `$ref`s and wrappers until reaching a schema with content (at most 32 steps).
pub fn resolve(schema: &Value) -> &Value {
    let mut current = schema;
    for _ in 0..32 {
        let next = match current.get("$ref").and_then(Value::as_str) {
            Some(reference) => reference.rsplit('/').next().and_then(definition),
            None => unwrap_combinator(current),
        };
        match next {
            Some(next) => current = next,
            None => break,
        }
    }
    current
}

/// The raw schema of `field` in an object schema (resolved first), falling back to its
/// `additionalProperties` schema for maps. Unresolved, so that the property's own
/// extensions (patch strategy, description) stay visible; pass it to [`resolve`] to descend.
pub fn property<'a>(schema: &'a Value, field: &str) -> Option<&'a Value> {
    let schema = resolve(schema);
    if let Some(prop) = schema.get("properties").and_then(|p| p.get(field)) {
        return Some(prop);
    }
    schema.get("additionalProperties").filter(|a| a.is_object())
}

/// The resolved schema of `field` of `definition` (`PodSpec`, `containers` gives the array
/// schema of containers).
pub fn field_schema(definition_name: &str, field: &str) -> Option<&'static Value> {
    property(definition(definition_name)?, field).map(resolve)
}

/// The resolved item schema of an array schema.
pub fn items(schema: &Value) -> Option<&Value> {
    resolve(schema).get("items").map(resolve)
}

/// True if the (resolved) schema accepts any fields (`x-kubernetes-preserve-unknown-fields`).
pub fn preserves_unknown_fields(schema: &Value) -> bool {
    schema.get(PRESERVE_UNKNOWN_EXT).and_then(Value::as_bool) == Some(true)
}

/// Paths of the fields of `value` that the schema of `definition` does not know, formatted
/// as upstream's strict decoding prints them (`spec.template.spec.containers[0].imagePullPolice`,
/// `metadata.foo`), in the order the object's keys iterate. Free-form positions
/// (`x-kubernetes-preserve-unknown-fields`, maps, objects without declared properties) accept
/// anything. An unknown definition yields no paths.
pub fn unknown_fields(definition_name: &str, value: &Value) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(schema) = definition(definition_name) {
        walk_unknown(schema, value, &mut String::new(), &mut out);
    }
    out
}

fn walk_unknown(schema: &'static Value, value: &Value, path: &mut String, out: &mut Vec<String>) {
    let schema = resolve(schema);
    if preserves_unknown_fields(schema) {
        return;
    }
    match value {
        Value::Object(map) => walk_unknown_object(schema, map, path, out),
        Value::Array(values) => {
            let Some(item_schema) = schema.get("items") else {
                return;
            };
            for (index, item) in values.iter().enumerate() {
                let len = path.len();
                let _ = write!(path, "[{index}]");
                walk_unknown(item_schema, item, path, out);
                path.truncate(len);
            }
        }
        _ => {}
    }
}

fn walk_unknown_object(schema: &'static Value, map: &Map<String, Value>, path: &mut String, out: &mut Vec<String>) {
    let properties = schema.get("properties").and_then(Value::as_object);
    let additional = schema.get("additionalProperties");
    let open = additional.is_some_and(|a| a != &Value::Bool(false));
    if properties.is_none() && !open {
        return;
    }
    for (key, child) in map {
        let len = path.len();
        if !path.is_empty() {
            path.push('.');
        }
        path.push_str(key);
        match properties
            .and_then(|p| p.get(key))
            .or(additional.filter(|a| a.is_object()))
        {
            Some(child_schema) => walk_unknown(child_schema, child, path, out),
            None if open => {}
            None => out.push(path.clone()),
        }
        path.truncate(len);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalogue::RESOURCES;
    use Strategy::{Merge, MergeRetainKeys, RetainKeys};

    #[test]
    fn definition_names_follow_openapi() {
        assert_eq!(
            definition_name("apps", "v1", "DaemonSet"),
            Some("io.k8s.api.apps.v1.DaemonSet")
        );
        assert_eq!(definition_name("", "v1", "Pod"), Some("io.k8s.api.core.v1.Pod"));
        assert_eq!(
            definition_name("apps", "v1", "DaemonSetList"),
            Some("io.k8s.api.apps.v1.DaemonSetList")
        );
        assert_eq!(
            definition_name("autoscaling", "v1", "Scale"),
            Some("io.k8s.api.autoscaling.v1.Scale")
        );
        assert_eq!(
            definition_name("policy", "v1", "Eviction"),
            Some("io.k8s.api.policy.v1.Eviction")
        );
        assert_eq!(definition_name("", "v1", "Binding"), Some("io.k8s.api.core.v1.Binding"));
        assert_eq!(definition_name("", "v1", "Status"), Some(STATUS));
        assert_eq!(definition_name("", "v1", "DeleteOptions"), Some(DELETE_OPTIONS));
        assert_eq!(definition_name("apps", "v1", "Nope"), None);
    }

    #[test]
    fn every_catalogue_kind_and_subresource_kind_has_a_definition() {
        for r in RESOURCES {
            let name = definition_name(r.group, r.version, r.kind);
            let name = name.unwrap_or_else(|| panic!("no schema for {}", r.qualified_kind()));
            assert!(definition(name).is_some(), "{name}");
            let list = format!("{}List", r.kind);
            if r.verbs.contains(&"list") {
                assert!(definition_name(r.group, r.version, &list).is_some(), "{list}");
            }
            // exec, attach and portforward stream; their kinds (PodExecOptions, ...) are query
            // parameters, with no schema.
            let connect = |name: &str| crate::openapi::CONNECT_SUBRESOURCES.iter().any(|(n, _, _)| *n == name);
            for s in r.subresources.iter().filter(|s| !connect(s.name)) {
                assert!(definition_name(s.group, s.version, s.kind).is_some(), "{}", s.kind);
            }
        }
    }

    #[test]
    fn every_ref_points_at_a_definition() {
        fn check(value: &Value) {
            match value {
                Value::Object(map) => {
                    if let Some(Value::String(r)) = map.get("$ref") {
                        let name = r.strip_prefix(REF_PREFIX).unwrap_or_else(|| panic!("odd ref {r}"));
                        assert!(definition(name).is_some(), "dangling {r}");
                    }
                    map.values().for_each(check);
                }
                Value::Array(items) => items.iter().for_each(check),
                _ => {}
            }
        }
        definitions().values().for_each(check);
    }

    #[test]
    fn every_patch_strategy_names_a_real_field() {
        for (definition_name, field, strategy) in patch_strategies() {
            let prop = definition(definition_name)
                .and_then(|d| d.get("properties"))
                .and_then(|p| p.get(field))
                .unwrap_or_else(|| panic!("{definition_name}.{field} missing"));
            assert_eq!(
                PatchStrategy::from_schema(prop),
                Some(strategy),
                "{definition_name}.{field}"
            );
            if strategy.merge_key.is_some() {
                assert_eq!(prop["type"], "array", "{definition_name}.{field}");
            }
        }
    }

    #[test]
    fn patch_strategy_table_matches_upstream_tags() {
        let containers = list_strategy("io.k8s.api.core.v1.PodSpec", "containers").unwrap();
        assert_eq!((containers.strategy, containers.merge_key), (Merge, Some("name")));
        let volumes = list_strategy("io.k8s.api.core.v1.PodSpec", "volumes").unwrap();
        assert_eq!(
            (volumes.strategy.as_str(), volumes.merge_key),
            ("merge,retainKeys", Some("name"))
        );
        let ports = list_strategy("io.k8s.api.core.v1.Container", "ports").unwrap();
        assert_eq!(ports.merge_key, Some("containerPort"));
        let finalizers = list_strategy("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", "finalizers").unwrap();
        assert_eq!((finalizers.strategy, finalizers.merge_key), (Merge, None));
        let strategy = list_strategy("io.k8s.api.apps.v1.DeploymentSpec", "strategy").unwrap();
        assert_eq!(strategy.strategy, RetainKeys);
        assert!(list_strategy("io.k8s.api.core.v1.PodSpec", "tolerations").is_none());
    }

    #[test]
    fn every_list_marker_names_a_real_field_and_is_published() {
        let mut missing = Vec::new();
        for &(definition_name, field, shape, ..) in lists::FIELDS {
            let prop = definition(definition_name)
                .and_then(|d| d.get("properties"))
                .and_then(|p| p.get(field));
            let Some(prop) = prop else {
                missing.push(format!("{definition_name}.{field}"));
                continue;
            };
            assert_eq!(
                prop.get(LIST_TYPE_EXT).and_then(Value::as_str),
                shape.list_type(),
                "{definition_name}.{field}"
            );
            assert_eq!(prop.get(MAP_TYPE_EXT).and_then(Value::as_str), shape.map_type());
            // Bytes (`format: byte`) and one struct (`Status.details`) carry `listType=atomic`
            // upstream too.
            if shape.list_type().is_some() && prop.get("type").is_some_and(|t| t != "string") {
                assert_eq!(prop["type"], "array", "{definition_name}.{field}");
            }
        }
        for &name in lists::ATOMIC_DEFINITIONS {
            match definition(name) {
                Some(d) => assert_eq!(d[MAP_TYPE_EXT], "atomic", "{name}"),
                None => missing.push(name.to_string()),
            }
        }
        // Discovery documents are not registered kinds.
        missing.retain(|m| !m.starts_with("io.k8s.apimachinery.pkg.apis.meta.v1.API"));
        assert!(missing.is_empty(), "{missing:#?}");
    }

    #[test]
    fn list_keys_follow_upstream() {
        assert_eq!(
            shape("io.k8s.api.core.v1.Container", "ports"),
            Some(Shape::Map(&["containerPort", "protocol"]))
        );
        assert_eq!(
            shape("io.k8s.api.core.v1.ServiceSpec", "ports"),
            Some(Shape::Map(&["port", "protocol"]))
        );
        assert_eq!(
            shape("io.k8s.api.core.v1.PodSpec", "tolerations"),
            Some(Shape::AtomicList)
        );
        assert_eq!(
            shape("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", "finalizers"),
            Some(Shape::Set)
        );
        assert_eq!(
            shape("io.k8s.api.core.v1.PodSpec", "nodeSelector"),
            Some(Shape::AtomicMap)
        );
        assert!(atomic_definition("io.k8s.api.core.v1.LocalObjectReference"));
        assert!(!atomic_definition("io.k8s.api.core.v1.PodSpec"));
    }

    #[test]
    fn strategies_parse_and_print() {
        for s in [Merge, Strategy::Replace, RetainKeys, MergeRetainKeys] {
            assert_eq!(Strategy::parse(s.as_str()), Some(s));
        }
        assert_eq!(Strategy::parse("retainKeys,merge"), Some(MergeRetainKeys));
        assert_eq!(Strategy::parse("bogus"), None);
    }

    #[test]
    fn metadata_is_not_required_but_container_name_is() {
        let ds = definition("io.k8s.api.apps.v1.DaemonSet").unwrap();
        assert!(ds.get("required").is_none(), "{:?}", ds.get("required"));
        let container = definition("io.k8s.api.core.v1.Container").unwrap();
        assert_eq!(container["required"], json!(["name"]));
        let list = definition("io.k8s.api.core.v1.PodList").unwrap();
        assert_eq!(list["required"], json!(["items"]));
        for (name, schema) in definitions() {
            let required = schema.get("required").and_then(Value::as_array);
            let has_metadata = required.is_some_and(|r| r.iter().any(|f| f == "metadata"));
            assert_eq!(has_metadata, name == "io.k8s.api.core.v1.Event", "{name}");
        }
        let selector = definition("io.k8s.api.core.v1.ConfigMapKeySelector").unwrap();
        assert_eq!(selector["required"], json!(["key"]));
        assert!(
            definition("io.k8s.api.core.v1.LocalObjectReference")
                .unwrap()
                .get("required")
                .is_none()
        );
    }

    #[test]
    fn fields_resolve_through_refs() {
        let containers = field_schema("io.k8s.api.core.v1.PodSpec", "containers").unwrap();
        assert_eq!(containers["type"], "array");
        let container = items(containers).unwrap();
        assert!(container["properties"].get("imagePullPolicy").is_some());
        let spec = field_schema("io.k8s.api.apps.v1.DaemonSet", "spec").unwrap();
        assert!(spec["properties"].get("updateStrategy").is_some());
        let labels = property(
            definition("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta").unwrap(),
            "labels",
        );
        assert_eq!(labels.unwrap()["type"], "object");
        assert_eq!(
            ref_name(&json!({"allOf": [{"$ref": "#/components/schemas/a.B"}]})),
            Some("a.B")
        );
        assert_eq!(
            ref_name(&json!({"anyOf": [{"$ref": "#/$defs/a.B"}, {"type": "null"}]})),
            Some("a.B")
        );
    }

    fn ds() -> Value {
        json!({
            "apiVersion": "apps/v1",
            "kind": "DaemonSet",
            "metadata": {"name": "x", "labels": {"a": "b"}, "annotations": {"k": "v"}},
            "spec": {
                "selector": {"matchLabels": {"app": "x"}},
                "template": {
                    "metadata": {"labels": {"app": "x"}},
                    "spec": {"containers": [{"name": "c", "image": "busybox"}]}
                }
            }
        })
    }

    #[test]
    fn known_objects_have_no_unknown_fields() {
        assert!(unknown_fields("io.k8s.api.apps.v1.DaemonSet", &ds()).is_empty());
    }

    #[test]
    fn unknown_fields_are_reported_with_upstream_paths() {
        let mut obj = ds();
        obj["metadata"]["foo"] = json!(1);
        obj["spec"]["template"]["spec"]["containers"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "d", "imagePullPolice": "Always"}));
        obj["spec"]["bogus"] = json!({"nested": true});
        obj["topLevel"] = json!(null);
        let got = unknown_fields("io.k8s.api.apps.v1.DaemonSet", &obj);
        assert_eq!(
            got,
            vec![
                "metadata.foo",
                "spec.bogus",
                "spec.template.spec.containers[1].imagePullPolice",
                "topLevel",
            ]
        );
    }

    #[test]
    fn free_form_positions_accept_anything() {
        let obj = json!({
            "apiVersion": "apps/v1",
            "kind": "ControllerRevision",
            "metadata": {"name": "r", "labels": {"any": "thing"}},
            "data": {"whatever": {"deeply": ["nested", {"x": 1}]}},
            "revision": 1
        });
        assert!(unknown_fields("io.k8s.api.apps.v1.ControllerRevision", &obj).is_empty());
        assert!(unknown_fields("no.such.Definition", &obj).is_empty());
    }
}
