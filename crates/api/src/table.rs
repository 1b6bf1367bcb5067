//! Server-side printing: the `meta.k8s.io/v1` Table that `kubectl get` asks for with
//! `Accept: application/json;as=Table;v=v1;g=meta.k8s.io`.
//!
//! For every served kind this module knows upstream's column definitions (names, types,
//! formats, `-o wide` priority) and how each cell is computed from the object. The server
//! always sends every column, as upstream does; kubectl shows priority-1 columns only with
//! `-o wide`. Column names are upper-cased by kubectl (`Up-to-date` prints as `UP-TO-DATE`).
//!
//! Cells are computed from the object as served (JSON), with the same fallbacks as upstream:
//! `<none>` for empty label maps and selectors, `<unknown>` for missing timestamps, and so on.
//! Malformed objects never panic; missing fields read as empty, zero or false.

use std::collections::{BTreeSet, HashMap};
use std::sync::OnceLock;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::{
    apps, autoscaling, batch, certificates, coordination, core, discovery, flowcontrol, networking, rbac, scheduling,
    storage,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::{Map, Value, json};

mod more;

use crate::selector::LabelSelector;
use crate::selector::json::{at, bool_at, int_at, list_at, str_at};
use crate::shape::{self, Shape};

// ---------------------------------------------------------------------------------------------
// Public API
// ---------------------------------------------------------------------------------------------

/// The Table column definitions for `kind` of `group`: a list of
/// `{"name","type","format","description","priority"}` objects, as upstream's printers declare
/// them. Kinds without a printer get upstream's default `Name` / `Created At` pair.
pub fn column_definitions(group: &str, kind: &str) -> Vec<Value> {
    if let Some(columns) = custom_columns(group, kind) {
        return custom_column_definitions(&columns);
    }
    printer(group, kind).columns.iter().map(|c| c.to_json()).collect()
}

// ---------------------------------------------------------------------------------------
// Custom resources: `Name`, then their definition's `additionalPrinterColumns` (or `Age`
// when it has none), as upstream's table convertor for custom resources prints them.

/// The printer columns of each custom kind, by (group, kind): its preferred version's.
type CustomColumns = std::collections::HashMap<(String, String), std::sync::Arc<Vec<Value>>>;

static CUSTOM_COLUMNS: std::sync::RwLock<Option<CustomColumns>> = std::sync::RwLock::new(None);

/// Sets the printer columns of every custom kind (replacing what was set before).
pub fn set_custom_columns(columns: CustomColumns) {
    *CUSTOM_COLUMNS
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(columns);
}

fn custom_columns(group: &str, kind: &str) -> Option<std::sync::Arc<Vec<Value>>> {
    let columns = CUSTOM_COLUMNS.read().unwrap_or_else(std::sync::PoisonError::into_inner);
    columns.as_ref()?.get(&(group.to_string(), kind.to_string())).cloned()
}

fn custom_column_definitions(columns: &[Value]) -> Vec<Value> {
    let name = json!({"name": "Name", "type": "string", "format": "name", "description": api_doc(ApiType::Meta, "name"), "priority": 0});
    let mut out = vec![name];
    if columns.is_empty() {
        let age = api_doc(ApiType::Meta, "creationTimestamp");
        out.push(json!({"name": "Age", "type": "date", "format": "", "description": age, "priority": 0}));
    }
    for c in columns {
        out.push(json!({
            "name": c["name"].as_str().unwrap_or_default(),
            "type": c["type"].as_str().unwrap_or("string"),
            "format": c["format"].as_str().unwrap_or_default(),
            "description": c["description"].as_str().unwrap_or_default(),
            "priority": c["priority"].as_i64().unwrap_or(0),
        }));
    }
    out
}

/// The value at a printer column's `jsonPath` (a simple path: `.spec.size`,
/// `.status.conditions[0].type`, `.metadata.labels['app']`).
pub fn json_path<'a>(obj: &'a Value, path: &str) -> Option<&'a Value> {
    let path = path.trim().trim_start_matches('{').trim_end_matches('}');
    let mut at = obj;
    let mut rest = path.strip_prefix('.').unwrap_or(path);
    while !rest.is_empty() {
        if let Some(inner) = rest.strip_prefix('[') {
            let end = inner.find(']')?;
            let key = &inner[..end];
            rest = inner[end + 1..].strip_prefix('.').unwrap_or(&inner[end + 1..]);
            at = match key.trim_matches(|c| c == '\'' || c == '"') {
                k if k.len() != key.len() => at.get(k)?,
                k => at.get(k.parse::<usize>().ok()?)?,
            };
            continue;
        }
        let end = rest.find(['.', '[']).unwrap_or(rest.len());
        at = at.get(&rest[..end])?;
        rest = rest[end..].strip_prefix('.').unwrap_or(&rest[end..]);
    }
    Some(at)
}

fn custom_cells(columns: &[Value], object: &Value, now: Timestamp) -> Vec<Value> {
    let mut cells = vec![object["metadata"]["name"].clone()];
    if columns.is_empty() {
        let created = object["metadata"]["creationTimestamp"].as_str();
        cells.push(json!(translate_timestamp_since(created, now)));
    }
    for c in columns {
        let value = json_path(object, c["jsonPath"].as_str().unwrap_or_default());
        let cell = match (c["type"].as_str().unwrap_or("string"), value) {
            (_, None | Some(Value::Null)) => Value::Null,
            ("date", Some(v)) => json!(translate_timestamp_since(v.as_str(), now)),
            ("integer" | "number" | "boolean", Some(v)) if !v.is_object() && !v.is_array() => v.clone(),
            (_, Some(Value::String(s))) => json!(s),
            (_, Some(other)) => json!(other.to_string()),
        };
        cells.push(cell);
    }
    cells
}

/// What [`row_cells`] reads of a `kind` of `group`, for decoding only that
/// ([`shape::decode`]): a pod's spec but for a few fields is never read; of other kinds,
/// everything but the managed fields.
pub fn row_shape(group: &str, kind: &str) -> &'static Shape {
    match (group, kind) {
        ("", "Pod") => &POD_READ,
        _ => &shape::WITHOUT_MANAGED_FIELDS,
    }
}

/// The cells of one Table row for `object` (a `kind` of `group`, as JSON), in column order.
/// `now` is the reference time for ages and durations.
pub fn row_cells(group: &str, kind: &str, object: &Value, now: Timestamp) -> Vec<Value> {
    if let Some(columns) = custom_columns(group, kind) {
        return custom_cells(&columns, object, now);
    }
    (printer(group, kind).cells)(object, now)
}

/// Upstream's `HumanDuration`: a short duration with two or three significant figures
/// (`45s`, `5m30s`, `95m`, `3h5m`, `30h`, `6d2h`, `45d`, `2y5d`, `9y`).
pub fn human_duration(d: Duration) -> String {
    let nanos = i64::try_from(d.as_nanos()).unwrap_or(i64::MAX);
    human_nanos(nanos)
}

/// [`human_duration`] for a signed duration: up to one second in the future reads `0s`
/// (clock skew), anything later is `<invalid>`.
pub fn human_signed_duration(d: SignedDuration) -> String {
    let nanos = i64::try_from(d.as_nanos()).unwrap_or(if d.is_negative() { i64::MIN } else { i64::MAX });
    human_nanos(nanos)
}

/// The age of an RFC 3339 timestamp at `now` (upstream's `translateTimestampSince`):
/// `<unknown>` when missing, empty, unparseable or the zero time.
pub fn translate_timestamp_since(timestamp: Option<&str>, now: Timestamp) -> String {
    match timestamp.and_then(parse_time) {
        Some(t) => human_signed_duration(now.duration_since(t)),
        None => "<unknown>".to_string(),
    }
}

/// A label map as `k1=v1,k2=v2` sorted by key, or `<none>` when empty or absent
/// (upstream's `labels.FormatLabels`). Non-string values are skipped.
pub fn format_labels(labels: &Value) -> String {
    let Some(map) = labels.as_object() else {
        return "<none>".to_string();
    };
    let mut pairs: Vec<(&String, &str)> = map.iter().filter_map(|(k, v)| Some((k, v.as_str()?))).collect();
    pairs.sort_unstable();
    or_none(
        pairs
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(","),
    )
}

/// A `metav1.LabelSelector` in selector syntax, `<none>` when it selects everything or
/// nothing, `<error>` when invalid (upstream's `metav1.FormatLabelSelector`).
pub fn format_label_selector(selector: &Value) -> String {
    match LabelSelector::from_api(selector) {
        Ok(s) => or_none(s.to_string()),
        Err(_) => "<error>".to_string(),
    }
}

/// `text`, or `<none>` when it is empty.
fn or_none(text: String) -> String {
    if text.is_empty() { "<none>".to_string() } else { text }
}

// ---------------------------------------------------------------------------------------------
// Durations and timestamps
// ---------------------------------------------------------------------------------------------

const NANOS_PER_SECOND: i64 = 1_000_000_000;
const NANOS_PER_MINUTE: i64 = 60 * NANOS_PER_SECOND;
const NANOS_PER_HOUR: i64 = 60 * NANOS_PER_MINUTE;
/// Go's zero `time.Time` (0001-01-01T00:00:00Z), which upstream treats as "unset".
const GO_ZERO_TIME_SECONDS: i64 = -62_135_596_800;

fn human_nanos(nanos: i64) -> String {
    let seconds = nanos / NANOS_PER_SECOND;
    if seconds < -1 {
        return "<invalid>".to_string();
    }
    if seconds < 0 {
        return "0s".to_string();
    }
    if seconds < 120 {
        return format!("{seconds}s");
    }
    let minutes = nanos / NANOS_PER_MINUTE;
    if minutes < 10 {
        return with_remainder(minutes, "m", seconds % 60, "s");
    }
    if minutes < 180 {
        return format!("{minutes}m");
    }
    let hours = nanos / NANOS_PER_HOUR;
    let days = hours / 24;
    let years = days / 365;
    match hours {
        h if h < 8 => with_remainder(h, "h", minutes % 60, "m"),
        h if h < 48 => format!("{h}h"),
        h if h < 24 * 8 => with_remainder(days, "d", h % 24, "h"),
        h if h < 24 * 365 * 2 => format!("{days}d"),
        h if h < 24 * 365 * 8 => with_remainder(years, "y", days % 365, "d"),
        _ => format!("{years}y"),
    }
}

/// `3h` or `3h5m`: the remainder only when it is not zero.
fn with_remainder(whole: i64, unit: &str, remainder: i64, remainder_unit: &str) -> String {
    if remainder == 0 {
        format!("{whole}{unit}")
    } else {
        format!("{whole}{unit}{remainder}{remainder_unit}")
    }
}

/// An RFC 3339 timestamp, or `None` when empty, unparseable or Go's zero time.
fn parse_time(text: &str) -> Option<Timestamp> {
    let t: Timestamp = text.parse().ok()?;
    (t.as_second() != GO_ZERO_TIME_SECONDS || t.subsec_nanosecond() != 0).then_some(t)
}

fn time_at(value: &Value, path: &str) -> Option<Timestamp> {
    parse_time(str_at(value, path))
}

fn age_at(value: &Value, path: &str, now: Timestamp) -> String {
    translate_timestamp_since(Some(str_at(value, path)), now)
}

// ---------------------------------------------------------------------------------------------
// Column definitions
// ---------------------------------------------------------------------------------------------

/// Generates [`ApiType`]: the k8s-openapi types whose field documentation upstream uses as
/// column descriptions.
macro_rules! api_types {
    ($($variant:ident => $ty:ty),* $(,)?) => {
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        enum ApiType { $($variant),* }

        impl ApiType {
            const ALL: &'static [ApiType] = &[$(ApiType::$variant),*];

            /// Property name -> description, from the type's JSON schema.
            fn field_docs(self) -> HashMap<String, String> {
                match self { $(ApiType::$variant => field_docs_of::<$ty>()),* }
            }
        }
    };
}

api_types! {
    Meta => ObjectMeta,
    PodSpec => core::v1::PodSpec,
    PodStatus => core::v1::PodStatus,
    RcSpec => core::v1::ReplicationControllerSpec,
    RcStatus => core::v1::ReplicationControllerStatus,
    ServiceSpec => core::v1::ServiceSpec,
    Endpoints => core::v1::Endpoints,
    NodeInfo => core::v1::NodeSystemInfo,
    NodeStatus => core::v1::NodeStatus,
    Event => core::v1::Event,
    ObjectReference => core::v1::ObjectReference,
    Secret => core::v1::Secret,
    ServiceAccount => core::v1::ServiceAccount,
    ConfigMap => core::v1::ConfigMap,
    PvSpec => core::v1::PersistentVolumeSpec,
    PvStatus => core::v1::PersistentVolumeStatus,
    PvcSpec => core::v1::PersistentVolumeClaimSpec,
    PvcStatus => core::v1::PersistentVolumeClaimStatus,
    RsSpec => apps::v1::ReplicaSetSpec,
    RsStatus => apps::v1::ReplicaSetStatus,
    DsSpec => apps::v1::DaemonSetSpec,
    DsStatus => apps::v1::DaemonSetStatus,
    DeploySpec => apps::v1::DeploymentSpec,
    DeployStatus => apps::v1::DeploymentStatus,
    ControllerRevision => apps::v1::ControllerRevision,
    JobSpec => batch::v1::JobSpec,
    JobStatus => batch::v1::JobStatus,
    CronJobSpec => batch::v1::CronJobSpec,
    CronJobStatus => batch::v1::CronJobStatus,
    LeaseSpec => coordination::v1::LeaseSpec,
    EndpointSlice => discovery::v1::EndpointSlice,
    StorageClass => storage::v1::StorageClass,
    NetworkPolicySpec => networking::v1::NetworkPolicySpec,
    IpAddressSpec => networking::v1::IPAddressSpec,
    ServiceCidrSpec => networking::v1::ServiceCIDRSpec,
    RoleBinding => rbac::v1::RoleBinding,
    ClusterRoleBinding => rbac::v1::ClusterRoleBinding,
    HpaSpec => autoscaling::v2::HorizontalPodAutoscalerSpec,
    HpaStatus => autoscaling::v2::HorizontalPodAutoscalerStatus,
    PriorityClass => scheduling::v1::PriorityClass,
    CsiDriverSpec => storage::v1::CSIDriverSpec,
    VolumeAttachmentSpec => storage::v1::VolumeAttachmentSpec,
    VolumeAttachmentStatus => storage::v1::VolumeAttachmentStatus,
    CsiStorageCapacity => storage::v1::CSIStorageCapacity,
    CsrSpec => certificates::v1::CertificateSigningRequestSpec,
    CsrStatus => certificates::v1::CertificateSigningRequestStatus,
    PriorityLevelReference => flowcontrol::v1::PriorityLevelConfigurationReference,
    FlowSchemaSpec => flowcontrol::v1::FlowSchemaSpec,
    PriorityLevelSpec => flowcontrol::v1::PriorityLevelConfigurationSpec,
    LimitedPriorityLevel => flowcontrol::v1::LimitedPriorityLevelConfiguration,
    QueuingConfiguration => flowcontrol::v1::QueuingConfiguration,
}

fn field_docs_of<T: schemars::JsonSchema>() -> HashMap<String, String> {
    let mut generator = schemars::SchemaGenerator::default();
    let schema = T::json_schema(&mut generator);
    let Some(properties) = schema.get("properties").and_then(Value::as_object) else {
        return HashMap::new();
    };
    properties
        .iter()
        .filter_map(|(name, prop)| Some((name.clone(), prop.get("description")?.as_str()?.to_string())))
        .collect()
}

/// The documentation of `field` of `api`, generated once per type and cached.
fn api_doc(api: ApiType, field: &str) -> String {
    static CACHE: OnceLock<HashMap<ApiType, OnceLock<HashMap<String, String>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(|| ApiType::ALL.iter().map(|t| (*t, OnceLock::new())).collect());
    cache
        .get(&api)
        .map(|docs| docs.get_or_init(|| api.field_docs()))
        .and_then(|docs| docs.get(field).cloned())
        .unwrap_or_default()
}

/// Where a column's description comes from.
#[derive(Clone, Copy, Debug)]
enum Doc {
    /// The API documentation of a field, as upstream's `SwaggerDoc()` lookups.
    Api(ApiType, &'static str),
    /// A printer-specific description.
    Text(&'static str),
}

/// One column definition.
#[derive(Clone, Copy, Debug)]
struct Column {
    name: &'static str,
    kind: &'static str,
    format: &'static str,
    priority: i32,
    doc: Doc,
}

impl Column {
    fn to_json(self) -> Value {
        let description = match self.doc {
            Doc::Api(api, field) => api_doc(api, field),
            Doc::Text(text) => text.to_string(),
        };
        json!({
            "name": self.name,
            "type": self.kind,
            "format": self.format,
            "description": description,
            "priority": self.priority,
        })
    }
}

/// A string column shown by default.
const fn text(name: &'static str, doc: Doc) -> Column {
    Column {
        name,
        kind: "string",
        format: "",
        priority: 0,
        doc,
    }
}

/// An integer column shown by default.
const fn int(name: &'static str, doc: Doc) -> Column {
    Column {
        name,
        kind: "integer",
        format: "",
        priority: 0,
        doc,
    }
}

/// A string column shown only with `-o wide`.
const fn wide(name: &'static str, doc: Doc) -> Column {
    Column {
        name,
        kind: "string",
        format: "",
        priority: 1,
        doc,
    }
}

const fn api(ty: ApiType, field: &'static str) -> Doc {
    Doc::Api(ty, field)
}

const NAME: Column = Column {
    name: "Name",
    kind: "string",
    format: "name",
    priority: 0,
    doc: api(ApiType::Meta, "name"),
};
const AGE: Column = text("Age", api(ApiType::Meta, "creationTimestamp"));
const CONTAINERS: Column = wide("Containers", Doc::Text("Names of the containers in the pod template."));
const IMAGES: Column = wide("Images", Doc::Text("Images of the containers in the pod template."));
const READY_PODS: Doc = Doc::Text("Ready pods out of the desired number of pods.");

const DEFAULT_COLUMNS: &[Column] = &[
    NAME,
    Column {
        name: "Created At",
        kind: "date",
        format: "",
        priority: 0,
        doc: api(ApiType::Meta, "creationTimestamp"),
    },
];

const POD_COLUMNS: &[Column] = &[
    NAME,
    text(
        "Ready",
        Doc::Text("How many of the pod's containers are ready, out of how many."),
    ),
    text(
        "Status",
        Doc::Text("A summary of the pod's phase and container states."),
    ),
    text(
        "Restarts",
        Doc::Text("Container restarts in the pod, with the time since the latest one."),
    ),
    AGE,
    wide("IP", api(ApiType::PodStatus, "podIP")),
    wide("Node", api(ApiType::PodSpec, "nodeName")),
    wide("Nominated Node", api(ApiType::PodStatus, "nominatedNodeName")),
    wide("Readiness Gates", api(ApiType::PodSpec, "readinessGates")),
];

const RC_COLUMNS: &[Column] = &[
    NAME,
    int("Desired", api(ApiType::RcSpec, "replicas")),
    int("Current", api(ApiType::RcStatus, "replicas")),
    int("Ready", api(ApiType::RcStatus, "readyReplicas")),
    AGE,
    CONTAINERS,
    IMAGES,
    wide("Selector", api(ApiType::RcSpec, "selector")),
];

const RS_COLUMNS: &[Column] = &[
    NAME,
    int("Desired", api(ApiType::RsSpec, "replicas")),
    int("Current", api(ApiType::RsStatus, "replicas")),
    int("Ready", api(ApiType::RsStatus, "readyReplicas")),
    AGE,
    CONTAINERS,
    IMAGES,
    wide("Selector", api(ApiType::RsSpec, "selector")),
];

const DS_COLUMNS: &[Column] = &[
    NAME,
    int("Desired", api(ApiType::DsStatus, "desiredNumberScheduled")),
    int("Current", api(ApiType::DsStatus, "currentNumberScheduled")),
    int("Ready", api(ApiType::DsStatus, "numberReady")),
    int("Up-to-date", api(ApiType::DsStatus, "updatedNumberScheduled")),
    int("Available", api(ApiType::DsStatus, "numberAvailable")),
    text("Node Selector", api(ApiType::PodSpec, "nodeSelector")),
    AGE,
    CONTAINERS,
    IMAGES,
    wide("Selector", api(ApiType::DsSpec, "selector")),
];

const JOB_COLUMNS: &[Column] = &[
    NAME,
    text("Status", Doc::Text("The job's condition summary.")),
    text("Completions", api(ApiType::JobStatus, "succeeded")),
    text("Duration", Doc::Text("How long the job ran, or has been running.")),
    AGE,
    CONTAINERS,
    IMAGES,
    wide("Selector", api(ApiType::JobSpec, "selector")),
];

const CRONJOB_COLUMNS: &[Column] = &[
    NAME,
    text("Schedule", api(ApiType::CronJobSpec, "schedule")),
    text("Timezone", api(ApiType::CronJobSpec, "timeZone")),
    Column {
        name: "Suspend",
        kind: "boolean",
        format: "",
        priority: 0,
        doc: api(ApiType::CronJobSpec, "suspend"),
    },
    int("Active", api(ApiType::CronJobStatus, "active")),
    text("Last Schedule", api(ApiType::CronJobStatus, "lastScheduleTime")),
    AGE,
    CONTAINERS,
    IMAGES,
    wide("Selector", api(ApiType::JobSpec, "selector")),
];

const SERVICE_COLUMNS: &[Column] = &[
    NAME,
    text("Type", api(ApiType::ServiceSpec, "type")),
    text("Cluster-IP", api(ApiType::ServiceSpec, "clusterIP")),
    text("External-IP", api(ApiType::ServiceSpec, "externalIPs")),
    text("Port(s)", api(ApiType::ServiceSpec, "ports")),
    AGE,
    wide("Selector", api(ApiType::ServiceSpec, "selector")),
];

const STATEFULSET_COLUMNS: &[Column] = &[NAME, text("Ready", READY_PODS), AGE, CONTAINERS, IMAGES];

const ENDPOINTS_COLUMNS: &[Column] = &[NAME, text("Endpoints", api(ApiType::Endpoints, "subsets")), AGE];

const NODE_COLUMNS: &[Column] = &[
    NAME,
    text("Status", Doc::Text("Whether the node is ready and accepts new pods.")),
    text("Roles", Doc::Text("Roles from the node's node-role labels.")),
    AGE,
    text("Version", api(ApiType::NodeInfo, "kubeletVersion")),
    wide("Internal-IP", api(ApiType::NodeStatus, "addresses")),
    wide("External-IP", api(ApiType::NodeStatus, "addresses")),
    wide("OS-Image", api(ApiType::NodeInfo, "osImage")),
    wide("Kernel-Version", api(ApiType::NodeInfo, "kernelVersion")),
    wide("Container-Runtime", api(ApiType::NodeInfo, "containerRuntimeVersion")),
];

const EVENT_COLUMNS: &[Column] = &[
    text("Last Seen", api(ApiType::Event, "lastTimestamp")),
    text("Type", api(ApiType::Event, "type")),
    text("Reason", api(ApiType::Event, "reason")),
    text("Object", api(ApiType::Event, "involvedObject")),
    wide("Subobject", api(ApiType::ObjectReference, "fieldPath")),
    wide("Source", api(ApiType::Event, "source")),
    text("Message", api(ApiType::Event, "message")),
    wide("First Seen", api(ApiType::Event, "firstTimestamp")),
    wide("Count", api(ApiType::Event, "count")),
    Column {
        format: "name",
        ..wide("Name", api(ApiType::Meta, "name"))
    },
];

const NAMESPACE_COLUMNS: &[Column] = &[
    NAME,
    text("Status", Doc::Text("The lifecycle phase of the namespace.")),
    AGE,
];

const SECRET_COLUMNS: &[Column] = &[
    NAME,
    text("Type", api(ApiType::Secret, "type")),
    text("Data", api(ApiType::Secret, "data")),
    AGE,
];

const SERVICE_ACCOUNT_COLUMNS: &[Column] = &[NAME, text("Secrets", api(ApiType::ServiceAccount, "secrets")), AGE];

const PV_COLUMNS: &[Column] = &[
    NAME,
    text("Capacity", api(ApiType::PvSpec, "capacity")),
    text("Access Modes", api(ApiType::PvSpec, "accessModes")),
    text("Reclaim Policy", api(ApiType::PvSpec, "persistentVolumeReclaimPolicy")),
    text("Status", api(ApiType::PvStatus, "phase")),
    text("Claim", api(ApiType::PvSpec, "claimRef")),
    text("StorageClass", Doc::Text("The storage class of the volume.")),
    text(
        "VolumeAttributesClass",
        Doc::Text("The volume attributes class of the volume."),
    ),
    text("Reason", api(ApiType::PvStatus, "reason")),
    AGE,
    wide("VolumeMode", api(ApiType::PvSpec, "volumeMode")),
];

const PVC_COLUMNS: &[Column] = &[
    NAME,
    text("Status", api(ApiType::PvcStatus, "phase")),
    text("Volume", api(ApiType::PvcSpec, "volumeName")),
    text("Capacity", api(ApiType::PvcStatus, "capacity")),
    text("Access Modes", api(ApiType::PvcStatus, "accessModes")),
    text("StorageClass", Doc::Text("The storage class of the claim.")),
    text(
        "VolumeAttributesClass",
        Doc::Text("The volume attributes class of the claim."),
    ),
    AGE,
    wide("VolumeMode", api(ApiType::PvcSpec, "volumeMode")),
];

const DEPLOYMENT_COLUMNS: &[Column] = &[
    NAME,
    text("Ready", READY_PODS),
    text("Up-to-date", api(ApiType::DeployStatus, "updatedReplicas")),
    text("Available", api(ApiType::DeployStatus, "availableReplicas")),
    AGE,
    CONTAINERS,
    IMAGES,
    wide("Selector", api(ApiType::DeploySpec, "selector")),
];

const CONFIGMAP_COLUMNS: &[Column] = &[NAME, text("Data", api(ApiType::ConfigMap, "data")), AGE];

const LEASE_COLUMNS: &[Column] = &[NAME, text("Holder", api(ApiType::LeaseSpec, "holderIdentity")), AGE];

const STORAGE_CLASS_COLUMNS: &[Column] = &[
    NAME,
    text("Provisioner", api(ApiType::StorageClass, "provisioner")),
    text("ReclaimPolicy", api(ApiType::StorageClass, "reclaimPolicy")),
    text("VolumeBindingMode", api(ApiType::StorageClass, "volumeBindingMode")),
    text(
        "AllowVolumeExpansion",
        api(ApiType::StorageClass, "allowVolumeExpansion"),
    ),
    AGE,
];

const CONTROLLER_REVISION_COLUMNS: &[Column] = &[
    NAME,
    text("Controller", Doc::Text("The object that controls this revision.")),
    text("Revision", api(ApiType::ControllerRevision, "revision")),
    AGE,
];

const ENDPOINT_SLICE_COLUMNS: &[Column] = &[
    NAME,
    text("AddressType", api(ApiType::EndpointSlice, "addressType")),
    text("Ports", api(ApiType::EndpointSlice, "ports")),
    text("Endpoints", api(ApiType::EndpointSlice, "endpoints")),
    AGE,
];

/// Computes the cells of one row.
type CellFn = fn(&Value, Timestamp) -> Vec<Value>;

/// Columns and cell function of one kind.
struct Printer {
    columns: &'static [Column],
    cells: CellFn,
}

fn printer(group: &str, kind: &str) -> Printer {
    let (columns, cells): (&'static [Column], CellFn) = match (group, kind) {
        ("", "Pod") => (POD_COLUMNS, pod_cells),
        ("", "Node") => (NODE_COLUMNS, node_cells),
        ("", "Namespace") => (NAMESPACE_COLUMNS, namespace_cells),
        ("", "Service") => (SERVICE_COLUMNS, service_cells),
        ("", "Endpoints") => (ENDPOINTS_COLUMNS, endpoints_cells),
        ("", "Event") | ("events.k8s.io", "Event") => (EVENT_COLUMNS, event_cells),
        ("", "ConfigMap") => (CONFIGMAP_COLUMNS, configmap_cells),
        ("", "Secret") => (SECRET_COLUMNS, secret_cells),
        ("", "ServiceAccount") => (SERVICE_ACCOUNT_COLUMNS, service_account_cells),
        ("", "PersistentVolume") => (PV_COLUMNS, pv_cells),
        ("", "PersistentVolumeClaim") => (PVC_COLUMNS, pvc_cells),
        ("", "ReplicationController") => (RC_COLUMNS, rc_cells),
        ("apps", "ControllerRevision") => (CONTROLLER_REVISION_COLUMNS, controller_revision_cells),
        ("apps", "DaemonSet") => (DS_COLUMNS, daemonset_cells),
        ("apps", "Deployment") => (DEPLOYMENT_COLUMNS, deployment_cells),
        ("apps", "ReplicaSet") => (RS_COLUMNS, replicaset_cells),
        ("apps", "StatefulSet") => (STATEFULSET_COLUMNS, statefulset_cells),
        ("batch", "CronJob") => (CRONJOB_COLUMNS, cronjob_cells),
        ("batch", "Job") => (JOB_COLUMNS, job_cells),
        ("coordination.k8s.io", "Lease") => (LEASE_COLUMNS, lease_cells),
        ("discovery.k8s.io", "EndpointSlice") => (ENDPOINT_SLICE_COLUMNS, endpoint_slice_cells),
        ("storage.k8s.io", "StorageClass") => (STORAGE_CLASS_COLUMNS, storage_class_cells),
        _ => more::printer(group, kind).unwrap_or((DEFAULT_COLUMNS, default_cells)),
    };
    Printer { columns, cells }
}

// ---------------------------------------------------------------------------------------------
// JSON access helpers
// ---------------------------------------------------------------------------------------------

fn map_len(value: &Value, path: &str) -> i64 {
    at(value, path).as_object().map_or(0, Map::len) as i64
}

fn or_default<'a>(text: &'a str, fallback: &'a str) -> &'a str {
    if text.is_empty() { fallback } else { text }
}

fn is_deleting(object: &Value) -> bool {
    !at(object, "metadata.deletionTimestamp").is_null()
}

fn name(object: &Value) -> Value {
    str_at(object, "metadata.name").into()
}

fn age(object: &Value, now: Timestamp) -> Value {
    age_at(object, "metadata.creationTimestamp", now).into()
}

/// Container names and images of a pod spec, each comma-joined.
fn container_cells(pod_spec: &Value) -> [Value; 2] {
    let containers = list_at(pod_spec, "containers");
    let join = |field: &str| {
        containers
            .iter()
            .map(|c| str_at(c, field))
            .collect::<Vec<_>>()
            .join(",")
    };
    [join("name").into(), join("image").into()]
}

/// The first condition of `kind` in `conditions` has status `True`.
fn condition_true(conditions: &[Value], kind: &str) -> bool {
    conditions
        .iter()
        .find(|c| str_at(c, "type") == kind)
        .is_some_and(|c| str_at(c, "status") == "True")
}

// ---------------------------------------------------------------------------------------------
// Pods
// ---------------------------------------------------------------------------------------------

/// What [`pod_cells`] reads of a pod's spec: its node, readiness gates, the names and restart
/// policies of its init containers and how many containers it has. Not the containers' specs
/// and volumes that make up most of a pod.
const POD_SPEC_READ: Shape = Shape::Object(
    &[
        ("nodeName", Shape::Whole),
        ("readinessGates", Shape::Whole),
        (
            "initContainers",
            Shape::Items(&Shape::Object(
                &[("name", Shape::Whole), ("restartPolicy", Shape::Whole)],
                &Shape::Skip,
            )),
        ),
        ("containers", Shape::Items(&Shape::Object(&[], &Shape::Skip))),
    ],
    &Shape::Skip,
);

/// What [`pod_cells`] reads of a pod.
const POD_READ: Shape = Shape::Object(
    &[
        ("metadata", shape::METADATA),
        ("spec", POD_SPEC_READ),
        ("status", Shape::Whole),
    ],
    &Shape::Skip,
);

fn pod_cells(pod: &Value, now: Timestamp) -> Vec<Value> {
    let summary = PodSummary::of(pod);
    let restarts = match summary.last_restart {
        Some(last) if summary.restarts != 0 => {
            format!(
                "{} ({} ago)",
                summary.restarts,
                human_signed_duration(now.duration_since(last))
            )
        }
        _ => summary.restarts.to_string(),
    };
    vec![
        name(pod),
        format!("{}/{}", summary.ready, summary.total).into(),
        summary.reason.into(),
        restarts.into(),
        age(pod, now),
        or_default(pod_ip(pod), "<none>").into(),
        or_default(str_at(pod, "spec.nodeName"), "<none>").into(),
        or_default(str_at(pod, "status.nominatedNodeName"), "<none>").into(),
        readiness_gates(pod).into(),
    ]
}

/// The first pod IP (`status.podIPs[0].ip`, else the legacy `status.podIP`).
fn pod_ip(pod: &Value) -> &str {
    let first = list_at(pod, "status.podIPs")
        .first()
        .map(|ip| str_at(ip, "ip"))
        .unwrap_or_default();
    or_default(first, str_at(pod, "status.podIP"))
}

/// `true/total` over the pod's readiness gates, `<none>` without gates.
fn readiness_gates(pod: &Value) -> String {
    let gates = list_at(pod, "spec.readinessGates");
    if gates.is_empty() {
        return "<none>".to_string();
    }
    let conditions = list_at(pod, "status.conditions");
    let passed = gates
        .iter()
        .filter(|g| condition_true(conditions, str_at(g, "conditionType")))
        .count();
    format!("{passed}/{}", gates.len())
}

/// READY, STATUS and RESTARTS of a pod, computed as upstream's pod printer does.
struct PodSummary {
    ready: usize,
    total: usize,
    reason: String,
    restarts: i64,
    last_restart: Option<Timestamp>,
}

/// Restart count and latest restart time of a group of containers.
#[derive(Default)]
struct Restarts {
    count: i64,
    last: Option<Timestamp>,
}

impl Restarts {
    fn add(&mut self, status: &Value) {
        self.count = self.count.saturating_add(int_at(status, "restartCount"));
        if let Some(finished) = time_at(status, "lastState.terminated.finishedAt") {
            self.last = Some(self.last.map_or(finished, |last| last.max(finished)));
        }
    }
}

impl PodSummary {
    fn of(pod: &Value) -> Self {
        let phase = str_at(pod, "status.phase");
        let conditions = list_at(pod, "status.conditions");
        let mut reason = or_default(str_at(pod, "status.reason"), phase).to_string();
        let gated = conditions
            .iter()
            .any(|c| str_at(c, "type") == "PodScheduled" && str_at(c, "reason") == "SchedulingGated");
        if gated {
            reason = "SchedulingGated".to_string();
        }
        let init_specs = list_at(pod, "spec.initContainers");
        let sidecars: Vec<&str> = init_specs
            .iter()
            .filter(|c| str_at(c, "restartPolicy") == "Always")
            .map(|c| str_at(c, "name"))
            .collect();
        let mut summary = PodSummary {
            ready: 0,
            total: list_at(pod, "spec.containers").len() + sidecars.len(),
            reason,
            restarts: 0,
            last_restart: None,
        };
        let mut all = Restarts::default();
        let mut sidecar = Restarts::default();
        let initializing = summary.scan_init_containers(pod, &sidecars, &mut all, &mut sidecar);
        if !initializing || condition_true(conditions, "Initialized") {
            all = sidecar;
            summary.scan_containers(pod, &mut all);
        }
        summary.restarts = all.count;
        summary.last_restart = all.last;
        if is_deleting(pod) && str_at(pod, "status.reason") == "NodeLost" {
            summary.reason = "Unknown".to_string();
        } else if is_deleting(pod) && !matches!(phase, "Failed" | "Succeeded") {
            summary.reason = "Terminating".to_string();
        }
        summary
    }

    /// Walks init container statuses until the first one still initializing; returns whether
    /// the pod is initializing (and sets the `Init:` reason).
    fn scan_init_containers(
        &mut self,
        pod: &Value,
        sidecars: &[&str],
        all: &mut Restarts,
        sidecar: &mut Restarts,
    ) -> bool {
        let init_count = list_at(pod, "spec.initContainers").len();
        for (i, status) in list_at(pod, "status.initContainerStatuses").iter().enumerate() {
            all.add(status);
            let is_sidecar = sidecars.contains(&str_at(status, "name"));
            if is_sidecar {
                sidecar.add(status);
            }
            let terminated = at(status, "state.terminated");
            let waiting_reason = str_at(status, "state.waiting.reason");
            if terminated.is_object() && int_at(terminated, "exitCode") == 0 {
                continue;
            }
            if is_sidecar && bool_at(status, "started") {
                if bool_at(status, "ready") {
                    self.ready += 1;
                }
                continue;
            }
            self.reason = if terminated.is_object() {
                format!("Init:{}", termination_reason(terminated))
            } else if !waiting_reason.is_empty() && waiting_reason != "PodInitializing" {
                format!("Init:{waiting_reason}")
            } else {
                format!("Init:{i}/{init_count}")
            };
            return true;
        }
        false
    }

    /// Walks container statuses from last to first, so the first container's state wins.
    fn scan_containers(&mut self, pod: &Value, restarts: &mut Restarts) {
        let mut has_running = false;
        for status in list_at(pod, "status.containerStatuses").iter().rev() {
            restarts.add(status);
            let waiting_reason = str_at(status, "state.waiting.reason");
            let terminated = at(status, "state.terminated");
            if !waiting_reason.is_empty() {
                self.reason = waiting_reason.to_string();
            } else if terminated.is_object() {
                self.reason = termination_reason(terminated);
            } else if bool_at(status, "ready") && at(status, "state.running").is_object() {
                has_running = true;
                self.ready += 1;
            }
        }
        if self.reason == "Completed" && has_running {
            let ready = condition_true(list_at(pod, "status.conditions"), "Ready");
            self.reason = if ready { "Running" } else { "NotReady" }.to_string();
        }
    }
}

/// A terminated state's reason, else `Signal:N`, else `ExitCode:N`.
fn termination_reason(terminated: &Value) -> String {
    let reason = str_at(terminated, "reason");
    let signal = int_at(terminated, "signal");
    match (reason, signal) {
        ("", 0) => format!("ExitCode:{}", int_at(terminated, "exitCode")),
        ("", signal) => format!("Signal:{signal}"),
        (reason, _) => reason.to_string(),
    }
}

// ---------------------------------------------------------------------------------------------
// Nodes, namespaces and other core kinds
// ---------------------------------------------------------------------------------------------

fn node_cells(node: &Value, now: Timestamp) -> Vec<Value> {
    let info = at(node, "status.nodeInfo");
    let unknown = |field: &str| or_default(str_at(info, field), "<unknown>").to_string();
    vec![
        name(node),
        node_status(node).into(),
        node_roles(node).into(),
        age(node, now),
        str_at(info, "kubeletVersion").into(),
        node_address(node, "InternalIP").into(),
        node_address(node, "ExternalIP").into(),
        unknown("osImage").into(),
        unknown("kernelVersion").into(),
        unknown("containerRuntimeVersion").into(),
    ]
}

/// `Ready`, `NotReady` or `Unknown` (no Ready condition), plus `,SchedulingDisabled` when cordoned.
fn node_status(node: &Value) -> String {
    // Upstream keys conditions by type, so the last Ready condition wins.
    let ready = list_at(node, "status.conditions")
        .iter()
        .rfind(|c| str_at(c, "type") == "Ready");
    let mut status = match ready {
        Some(c) if str_at(c, "status") == "True" => "Ready".to_string(),
        Some(_) => "NotReady".to_string(),
        None => "Unknown".to_string(),
    };
    if bool_at(node, "spec.unschedulable") {
        status.push_str(",SchedulingDisabled");
    }
    status
}

/// Roles from `node-role.kubernetes.io/<role>` keys and `kubernetes.io/role` values, sorted.
fn node_roles(node: &Value) -> String {
    let Some(labels) = at(node, "metadata.labels").as_object() else {
        return "<none>".to_string();
    };
    let roles: BTreeSet<&str> = labels
        .iter()
        .filter_map(|(key, value)| match key.strip_prefix("node-role.kubernetes.io/") {
            Some(role) => Some(role),
            None if key == "kubernetes.io/role" => value.as_str(),
            None => None,
        })
        .filter(|role| !role.is_empty())
        .collect();
    or_none(roles.into_iter().collect::<Vec<_>>().join(","))
}

fn node_address<'a>(node: &'a Value, kind: &str) -> &'a str {
    list_at(node, "status.addresses")
        .iter()
        .find(|a| str_at(a, "type") == kind)
        .map_or("<none>", |a| str_at(a, "address"))
}

fn namespace_cells(ns: &Value, now: Timestamp) -> Vec<Value> {
    vec![name(ns), str_at(ns, "status.phase").into(), age(ns, now)]
}

fn configmap_cells(cm: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        name(cm),
        (map_len(cm, "data") + map_len(cm, "binaryData")).into(),
        age(cm, now),
    ]
}

fn secret_cells(secret: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        name(secret),
        str_at(secret, "type").into(),
        map_len(secret, "data").into(),
        age(secret, now),
    ]
}

fn service_account_cells(sa: &Value, now: Timestamp) -> Vec<Value> {
    vec![name(sa), (list_at(sa, "secrets").len() as i64).into(), age(sa, now)]
}

fn lease_cells(lease: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        name(lease),
        str_at(lease, "spec.holderIdentity").into(),
        age(lease, now),
    ]
}

fn default_cells(object: &Value, _now: Timestamp) -> Vec<Value> {
    let created = time_at(object, "metadata.creationTimestamp")
        .map_or_else(|| "0001-01-01T00:00:00Z".to_string(), crate::time::rfc3339);
    vec![name(object), created.into()]
}

// ---------------------------------------------------------------------------------------------
// Services, endpoints and endpoint slices
// ---------------------------------------------------------------------------------------------

fn service_cells(svc: &Value, now: Timestamp) -> Vec<Value> {
    let cluster_ip = list_at(svc, "spec.clusterIPs")
        .first()
        .and_then(Value::as_str)
        .unwrap_or_default();
    let cluster_ip = or_default(or_default(cluster_ip, str_at(svc, "spec.clusterIP")), "<none>");
    vec![
        name(svc),
        str_at(svc, "spec.type").into(),
        cluster_ip.into(),
        service_external_ip(svc).into(),
        or_none(service_ports(svc)).into(),
        age(svc, now),
        format_labels(at(svc, "spec.selector")).into(),
    ]
}

fn service_external_ip(svc: &Value) -> String {
    let external: Vec<&str> = list_at(svc, "spec.externalIPs")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let listed = || or_none(external.join(","));
    match str_at(svc, "spec.type") {
        "ClusterIP" | "NodePort" => listed(),
        "LoadBalancer" => {
            let ingress: BTreeSet<&str> = list_at(svc, "status.loadBalancer.ingress")
                .iter()
                .map(|i| or_default(str_at(i, "ip"), str_at(i, "hostname")))
                .filter(|s| !s.is_empty())
                .collect();
            let all: Vec<&str> = ingress.into_iter().chain(external.iter().copied()).collect();
            if all.is_empty() {
                "<pending>".to_string()
            } else {
                all.join(",")
            }
        }
        "ExternalName" => str_at(svc, "spec.externalName").to_string(),
        _ => "<unknown>".to_string(),
    }
}

/// `80/TCP` or `80:30080/TCP` per port, comma-joined.
fn service_ports(svc: &Value) -> String {
    list_at(svc, "spec.ports")
        .iter()
        .map(|p| {
            let protocol = or_default(str_at(p, "protocol"), "TCP");
            match int_at(p, "nodePort") {
                n if n > 0 => format!("{}:{n}/{protocol}", int_at(p, "port")),
                _ => format!("{}/{protocol}", int_at(p, "port")),
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Up to three items, then `+ N more...` counting everything past the third.
struct Limited {
    shown: Vec<String>,
    total: usize,
}

impl Limited {
    const MAX: usize = 3;

    fn new() -> Self {
        Self {
            shown: Vec::new(),
            total: 0,
        }
    }

    fn push(&mut self, item: impl FnOnce() -> String) {
        if self.shown.len() < Self::MAX {
            self.shown.push(item());
        }
        self.total += 1;
    }

    fn render(&self, empty: &str) -> String {
        let joined = self.shown.join(",");
        if self.total > Self::MAX {
            format!("{joined} + {} more...", self.total - Self::MAX)
        } else if joined.is_empty() {
            empty.to_string()
        } else {
            joined
        }
    }
}

fn host_port(ip: &str, port: i64) -> String {
    if ip.contains(':') {
        format!("[{ip}]:{port}")
    } else {
        format!("{ip}:{port}")
    }
}

fn endpoints_cells(ep: &Value, now: Timestamp) -> Vec<Value> {
    let subsets = list_at(ep, "subsets");
    let text = if subsets.is_empty() {
        "<none>".to_string()
    } else {
        let mut list = Limited::new();
        for subset in subsets {
            let addresses = list_at(subset, "addresses");
            let ports = list_at(subset, "ports");
            if ports.is_empty() {
                // Headless services without ports list bare addresses.
                for address in addresses {
                    list.push(|| str_at(address, "ip").to_string());
                }
                continue;
            }
            for port in ports {
                let number = int_at(port, "port");
                for address in addresses {
                    list.push(|| host_port(str_at(address, "ip"), number));
                }
            }
        }
        list.render("")
    };
    vec![name(ep), text.into(), age(ep, now)]
}

fn endpoint_slice_cells(slice: &Value, now: Timestamp) -> Vec<Value> {
    let mut ports = Limited::new();
    for port in list_at(slice, "ports") {
        ports.push(|| match at(port, "port").as_i64() {
            Some(number) => number.to_string(),
            None => at(port, "name").as_str().unwrap_or("*").to_string(),
        });
    }
    let mut endpoints = Limited::new();
    for endpoint in list_at(slice, "endpoints") {
        for address in list_at(endpoint, "addresses") {
            endpoints.push(|| address.as_str().unwrap_or_default().to_string());
        }
    }
    vec![
        name(slice),
        str_at(slice, "addressType").into(),
        ports.render("<unset>").into(),
        endpoints.render("<unset>").into(),
        age(slice, now),
    ]
}

// ---------------------------------------------------------------------------------------------
// Events (core/v1 and events.k8s.io/v1)
// ---------------------------------------------------------------------------------------------

/// A field of an Event under its core/v1 name, falling back to the events.k8s.io/v1 name.
fn event_at<'a>(event: &'a Value, core: &str, events_api: &str) -> &'a Value {
    match at(event, core) {
        Value::Null => at(event, events_api),
        value => value,
    }
}

fn event_str<'a>(event: &'a Value, core: &str, events_api: &str) -> &'a str {
    event_at(event, core, events_api).as_str().unwrap_or_default()
}

fn event_cells(event: &Value, now: Timestamp) -> Vec<Value> {
    let since = |t: &str| translate_timestamp_since(Some(t), now);
    let first_timestamp = event_str(event, "firstTimestamp", "deprecatedFirstTimestamp");
    let first = if parse_time(first_timestamp).is_some() {
        since(first_timestamp)
    } else {
        since(str_at(event, "eventTime"))
    };
    let last_timestamp = event_str(event, "lastTimestamp", "deprecatedLastTimestamp");
    let mut last = if parse_time(last_timestamp).is_some() {
        since(last_timestamp)
    } else {
        first.clone()
    };
    let mut count = event_at(event, "count", "deprecatedCount").as_i64().unwrap_or_default();
    let series = at(event, "series");
    if series.is_object() {
        last = since(str_at(series, "lastObservedTime"));
        count = int_at(series, "count");
    } else if count == 0 {
        // Singleton events carry no count in the newer API.
        count = 1;
    }
    let involved = event_at(event, "involvedObject", "regarding");
    let kind = str_at(involved, "kind").to_lowercase();
    let target = match str_at(involved, "name") {
        "" => kind,
        object_name => format!("{kind}/{object_name}"),
    };
    vec![
        last.into(),
        str_at(event, "type").into(),
        str_at(event, "reason").into(),
        target.into(),
        str_at(involved, "fieldPath").into(),
        event_source(event).into(),
        event_str(event, "message", "note").trim().into(),
        first.into(),
        count.into(),
        name(event),
    ]
}

/// `component` or `component, host`, falling back to the reporting controller and instance.
fn event_source(event: &Value) -> String {
    let source = event_at(event, "source", "deprecatedSource");
    let component = or_default(
        str_at(source, "component"),
        event_str(event, "reportingComponent", "reportingController"),
    );
    let host = or_default(str_at(source, "host"), str_at(event, "reportingInstance"));
    if host.is_empty() {
        component.to_string()
    } else {
        format!("{component}, {host}")
    }
}

// ---------------------------------------------------------------------------------------------
// Storage
// ---------------------------------------------------------------------------------------------

const BETA_STORAGE_CLASS_ANNOTATION: &str = "volume.beta.kubernetes.io/storage-class";

/// Access modes as `RWO,ROX,RWX,RWOP`, in that order, each once.
fn access_modes(modes: &[Value]) -> String {
    [
        ("ReadWriteOnce", "RWO"),
        ("ReadOnlyMany", "ROX"),
        ("ReadWriteMany", "RWX"),
        ("ReadWriteOncePod", "RWOP"),
    ]
    .iter()
    .filter(|(mode, _)| modes.iter().any(|m| m.as_str() == Some(mode)))
    .map(|(_, short)| *short)
    .collect::<Vec<_>>()
    .join(",")
}

/// The beta storage-class annotation if present, else `spec.storageClassName`.
fn storage_class_of(object: &Value) -> &str {
    match at(object, "metadata.annotations").get(BETA_STORAGE_CLASS_ANNOTATION) {
        Some(class) => class.as_str().unwrap_or_default(),
        None => str_at(object, "spec.storageClassName"),
    }
}

/// A stored quantity as written, `0` when absent.
fn quantity(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => "0".to_string(),
    }
}

fn phase_or_terminating(object: &Value) -> &str {
    if is_deleting(object) {
        "Terminating"
    } else {
        str_at(object, "status.phase")
    }
}

fn pv_cells(pv: &Value, now: Timestamp) -> Vec<Value> {
    let claim = match at(pv, "spec.claimRef") {
        Value::Object(_) => format!(
            "{}/{}",
            str_at(pv, "spec.claimRef.namespace"),
            str_at(pv, "spec.claimRef.name")
        ),
        _ => String::new(),
    };
    vec![
        name(pv),
        quantity(at(pv, "spec.capacity.storage")).into(),
        access_modes(list_at(pv, "spec.accessModes")).into(),
        str_at(pv, "spec.persistentVolumeReclaimPolicy").into(),
        phase_or_terminating(pv).into(),
        claim.into(),
        storage_class_of(pv).into(),
        or_default(str_at(pv, "spec.volumeAttributesClassName"), "<unset>").into(),
        str_at(pv, "status.reason").into(),
        age(pv, now),
        or_default(str_at(pv, "spec.volumeMode"), "<unset>").into(),
    ]
}

fn pvc_cells(pvc: &Value, now: Timestamp) -> Vec<Value> {
    let volume = str_at(pvc, "spec.volumeName");
    let (capacity, modes) = if volume.is_empty() {
        (String::new(), String::new())
    } else {
        (
            quantity(at(pvc, "status.capacity.storage")),
            access_modes(list_at(pvc, "status.accessModes")),
        )
    };
    vec![
        name(pvc),
        phase_or_terminating(pvc).into(),
        volume.into(),
        capacity.into(),
        modes.into(),
        storage_class_of(pvc).into(),
        or_default(str_at(pvc, "spec.volumeAttributesClassName"), "<unset>").into(),
        age(pvc, now),
        or_default(str_at(pvc, "spec.volumeMode"), "<unset>").into(),
    ]
}

fn storage_class_cells(sc: &Value, now: Timestamp) -> Vec<Value> {
    let annotations = at(sc, "metadata.annotations");
    let is_default = [
        "storageclass.kubernetes.io/is-default-class",
        "storageclass.beta.kubernetes.io/is-default-class",
    ]
    .iter()
    .any(|key| annotations.get(key).and_then(Value::as_str) == Some("true"));
    let mut display_name = str_at(sc, "metadata.name").to_string();
    if is_default {
        display_name.push_str(" (default)");
    }
    vec![
        display_name.into(),
        str_at(sc, "provisioner").into(),
        or_default(str_at(sc, "reclaimPolicy"), "Delete").into(),
        or_default(str_at(sc, "volumeBindingMode"), "Immediate").into(),
        bool_at(sc, "allowVolumeExpansion").into(),
        age(sc, now),
    ]
}

// ---------------------------------------------------------------------------------------------
// Workloads
// ---------------------------------------------------------------------------------------------

fn rc_cells(rc: &Value, now: Timestamp) -> Vec<Value> {
    replica_cells(rc, now, format_labels(at(rc, "spec.selector")))
}

fn replicaset_cells(rs: &Value, now: Timestamp) -> Vec<Value> {
    replica_cells(rs, now, format_label_selector(at(rs, "spec.selector")))
}

/// The cells ReplicationController and ReplicaSet share; only their selectors' forms differ
/// (a plain label map against a label selector).
fn replica_cells(obj: &Value, now: Timestamp, selector: String) -> Vec<Value> {
    let [names, images] = container_cells(at(obj, "spec.template.spec"));
    vec![
        name(obj),
        int_at(obj, "spec.replicas").into(),
        int_at(obj, "status.replicas").into(),
        int_at(obj, "status.readyReplicas").into(),
        age(obj, now),
        names,
        images,
        selector.into(),
    ]
}

fn daemonset_cells(ds: &Value, now: Timestamp) -> Vec<Value> {
    let [names, images] = container_cells(at(ds, "spec.template.spec"));
    let status = |field: &str| Value::from(int_at(ds, &format!("status.{field}")));
    vec![
        name(ds),
        status("desiredNumberScheduled"),
        status("currentNumberScheduled"),
        status("numberReady"),
        status("updatedNumberScheduled"),
        status("numberAvailable"),
        format_labels(at(ds, "spec.template.spec.nodeSelector")).into(),
        age(ds, now),
        names,
        images,
        format_label_selector(at(ds, "spec.selector")).into(),
    ]
}

fn deployment_cells(deploy: &Value, now: Timestamp) -> Vec<Value> {
    let [names, images] = container_cells(at(deploy, "spec.template.spec"));
    // Unlike the other workloads, an empty selector prints as an empty cell here.
    let selector = match LabelSelector::from_api(at(deploy, "spec.selector")) {
        Ok(s) => s.to_string(),
        Err(_) => "<invalid>".to_string(),
    };
    vec![
        name(deploy),
        format!(
            "{}/{}",
            int_at(deploy, "status.readyReplicas"),
            int_at(deploy, "spec.replicas")
        )
        .into(),
        int_at(deploy, "status.updatedReplicas").into(),
        int_at(deploy, "status.availableReplicas").into(),
        age(deploy, now),
        names,
        images,
        selector.into(),
    ]
}

fn statefulset_cells(sts: &Value, now: Timestamp) -> Vec<Value> {
    let [names, images] = container_cells(at(sts, "spec.template.spec"));
    vec![
        name(sts),
        format!(
            "{}/{}",
            int_at(sts, "status.readyReplicas"),
            int_at(sts, "spec.replicas")
        )
        .into(),
        age(sts, now),
        names,
        images,
    ]
}

fn controller_revision_cells(revision: &Value, now: Timestamp) -> Vec<Value> {
    let controller = list_at(revision, "metadata.ownerReferences")
        .iter()
        .find(|r| bool_at(r, "controller"))
        .map_or_else(|| "<none>".to_string(), controller_name);
    vec![
        name(revision),
        controller.into(),
        int_at(revision, "revision").into(),
        age(revision, now),
    ]
}

/// `kind.group/name` in lower case (`daemonset.apps/fluentd`), or `kind/name` for the core group.
fn controller_name(reference: &Value) -> String {
    let api_version = str_at(reference, "apiVersion");
    let group = api_version.rsplit_once('/').map_or("", |(group, _)| group);
    let kind = str_at(reference, "kind");
    let owner = str_at(reference, "name");
    match (group, kind) {
        ("", "") => owner.to_string(),
        ("", kind) => format!("{}/{owner}", kind.to_lowercase()),
        (group, kind) => format!("{}.{}/{owner}", kind.to_lowercase(), group.to_lowercase()),
    }
}

fn job_cells(job: &Value, now: Timestamp) -> Vec<Value> {
    let [names, images] = container_cells(at(job, "spec.template.spec"));
    vec![
        name(job),
        job_status(job).into(),
        job_completions(job).into(),
        job_duration(job, now).into(),
        age(job, now),
        names,
        images,
        format_label_selector(at(job, "spec.selector")).into(),
    ]
}

fn job_status(job: &Value) -> &'static str {
    let conditions = list_at(job, "status.conditions");
    if condition_true(conditions, "Complete") {
        "Complete"
    } else if condition_true(conditions, "Failed") {
        "Failed"
    } else if is_deleting(job) {
        "Terminating"
    } else if condition_true(conditions, "Suspended") {
        "Suspended"
    } else if condition_true(conditions, "FailureTarget") {
        "FailureTarget"
    } else {
        "Running"
    }
}

/// `succeeded/completions`, or `succeeded/1` (`of N` with parallelism N > 1) without completions.
fn job_completions(job: &Value) -> String {
    let succeeded = int_at(job, "status.succeeded");
    if let Some(completions) = at(job, "spec.completions").as_i64() {
        return format!("{succeeded}/{completions}");
    }
    match int_at(job, "spec.parallelism") {
        p if p > 1 => format!("{succeeded}/1 of {p}"),
        _ => format!("{succeeded}/1"),
    }
}

/// Empty before the job starts, time running so far, or start-to-completion time.
fn job_duration(job: &Value, now: Timestamp) -> String {
    let Some(start) = time_at(job, "status.startTime") else {
        return String::new();
    };
    let end = time_at(job, "status.completionTime").unwrap_or(now);
    human_signed_duration(end.duration_since(start))
}

fn cronjob_cells(cj: &Value, now: Timestamp) -> Vec<Value> {
    let [names, images] = container_cells(at(cj, "spec.jobTemplate.spec.template.spec"));
    let suspend = match at(cj, "spec.suspend").as_bool() {
        Some(true) => "True",
        Some(false) => "False",
        None => "<unset>",
    };
    let last_schedule = match at(cj, "status.lastScheduleTime") {
        Value::Null => "<none>".to_string(),
        t => translate_timestamp_since(t.as_str(), now),
    };
    vec![
        name(cj),
        str_at(cj, "spec.schedule").into(),
        at(cj, "spec.timeZone").as_str().unwrap_or("<none>").into(),
        suspend.into(),
        (list_at(cj, "status.active").len() as i64).into(),
        last_schedule.into(),
        age(cj, now),
        names,
        images,
        format_label_selector(at(cj, "spec.jobTemplate.spec.selector")).into(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn custom_columns_read_simple_json_paths() {
        let obj = json!({"metadata": {"name": "w1", "creationTimestamp": "2026-01-01T00:00:00Z", "labels": {"app.kubernetes.io/name": "x"}},
            "spec": {"size": 3, "ports": [{"name": "http"}], "nested": {"a": 1}}, "status": {"ready": true}});
        assert_eq!(json_path(&obj, ".spec.size"), Some(&json!(3)));
        assert_eq!(json_path(&obj, ".spec.ports[0].name"), Some(&json!("http")));
        assert_eq!(
            json_path(&obj, "{.metadata.labels['app.kubernetes.io/name']}"),
            Some(&json!("x"))
        );
        assert_eq!(json_path(&obj, ".spec.missing"), None);
        assert_eq!(json_path(&obj, ".spec.ports[9]"), None);
        let now: Timestamp = "2026-01-01T00:05:00Z".parse().unwrap();
        let columns = vec![
            json!({"name": "Size", "type": "integer", "jsonPath": ".spec.size"}),
            json!({"name": "Ready", "type": "boolean", "jsonPath": ".status.ready"}),
            json!({"name": "Nested", "type": "string", "jsonPath": ".spec.nested"}),
            json!({"name": "Made", "type": "date", "jsonPath": ".metadata.creationTimestamp"}),
            json!({"name": "Gone", "type": "string", "jsonPath": ".spec.gone"}),
        ];
        assert_eq!(
            custom_cells(&columns, &obj, now),
            vec![
                json!("w1"),
                json!(3),
                json!(true),
                json!("{\"a\":1}"),
                json!("5m"),
                Value::Null
            ]
        );
        assert_eq!(
            custom_cells(&[], &obj, now),
            vec![json!("w1"), json!("5m")],
            "Age when no columns"
        );
        let defs = custom_column_definitions(&[]);
        assert_eq!(
            (defs[0]["name"].as_str(), defs[1]["name"].as_str()),
            (Some("Name"), Some("Age"))
        );
    }
    use crate::catalogue::RESOURCES;

    /// `pod` as the Table decodes it: only what its row reads.
    fn shaped(pod: &Value) -> Value {
        shape::decode(pod.to_string().as_bytes(), row_shape("", "Pod")).unwrap()
    }

    fn now() -> Timestamp {
        "2025-06-01T12:00:00Z".parse().unwrap()
    }

    /// `now` minus `seconds`, as an RFC 3339 string.
    fn ago(seconds: i64) -> String {
        (now() - SignedDuration::from_secs(seconds)).to_string()
    }

    fn cells(group: &str, kind: &str, object: Value) -> Vec<Value> {
        row_cells(group, kind, &object, now())
    }

    #[test]
    fn human_duration_boundaries() {
        let cases = [
            (0, "0s"),
            (1, "1s"),
            (59, "59s"),
            (60, "60s"),
            (119, "119s"),
            (120, "2m"),
            (121, "2m1s"),
            (5 * 60 + 30, "5m30s"),
            (9 * 60 + 59, "9m59s"),
            (10 * 60, "10m"),
            (10 * 60 + 59, "10m"),
            (95 * 60, "95m"),
            (179 * 60 + 59, "179m"),
            (3 * 3600, "3h"),
            (3 * 3600 + 5 * 60, "3h5m"),
            (7 * 3600 + 59 * 60, "7h59m"),
            (8 * 3600, "8h"),
            (30 * 3600, "30h"),
            (47 * 3600 + 59 * 60, "47h"),
            (48 * 3600, "2d"),
            (2 * 86400 + 3 * 3600, "2d3h"),
            (6 * 86400 + 2 * 3600, "6d2h"),
            (7 * 86400 + 23 * 3600, "7d23h"),
            (8 * 86400, "8d"),
            (45 * 86400, "45d"),
            (729 * 86400, "729d"),
            (730 * 86400, "2y"),
            (735 * 86400, "2y5d"),
            (8 * 365 * 86400 - 86400, "7y364d"),
            (8 * 365 * 86400, "8y"),
            (20 * 365 * 86400, "20y"),
        ];
        for (seconds, want) in cases {
            assert_eq!(human_duration(Duration::from_secs(seconds)), want, "{seconds}s");
        }
        assert_eq!(human_duration(Duration::from_millis(1999)), "1s");
        assert_eq!(human_duration(Duration::MAX), "292y");
    }

    #[test]
    fn future_timestamps_and_missing_ones() {
        let cases = [
            (Some(ago(0)), "0s"),
            (Some(ago(-1)), "0s"),
            (Some((now() + SignedDuration::from_millis(1999)).to_string()), "0s"),
            (Some(ago(-2)), "<invalid>"),
            (Some(ago(-3600)), "<invalid>"),
            (Some(ago(3 * 86400)), "3d"),
            (Some("2025-06-01T13:00:00+02:00".to_string()), "60m"),
            (Some(ago(4 * 3600)), "4h"),
            (Some("0001-01-01T00:00:00Z".to_string()), "<unknown>"),
            (Some(String::new()), "<unknown>"),
            (Some("yesterday".to_string()), "<unknown>"),
            (None, "<unknown>"),
        ];
        for (ts, want) in cases {
            assert_eq!(translate_timestamp_since(ts.as_deref(), now()), want, "{ts:?}");
        }
        assert_eq!(human_signed_duration(SignedDuration::from_secs(-1)), "0s");
        assert_eq!(human_signed_duration(SignedDuration::MIN), "<invalid>");
    }

    #[test]
    fn every_catalogue_kind_has_upstream_columns() {
        // Upstream prints these with its default Name / Created At pair.
        const DEFAULT_PRINTED: &[&str] = &["CustomResourceDefinition", "Role", "ClusterRole", "LimitRange"];
        for resource in RESOURCES.iter().filter(|r| r.verbs.contains(&"list")) {
            let columns = column_definitions(resource.group, resource.kind);
            if DEFAULT_PRINTED.contains(&resource.kind) {
                continue;
            }
            let first = columns[0]["name"].as_str().unwrap();
            assert_ne!(
                columns[1]["name"], "Created At",
                "{} uses the default printer",
                resource.kind
            );
            assert!(first == "Name" || first == "Last Seen", "{}", resource.kind);
            for column in &columns {
                let obj = column.as_object().unwrap();
                let keys: Vec<&str> = obj.keys().map(String::as_str).collect();
                assert_eq!(keys.len(), 5, "{column}");
                for key in ["name", "type", "format", "description", "priority"] {
                    assert!(obj.contains_key(key), "{key} missing in {column}");
                }
                // Upstream looks RuntimeClass's description up under a key that does not
                // exist: it is empty there too.
                assert!(
                    !column["description"].as_str().unwrap().is_empty()
                        || (resource.kind, column["name"].as_str().unwrap()) == ("RuntimeClass", "Handler"),
                    "{} {column}",
                    resource.kind
                );
            }
            // Cells line up with columns even for an empty object.
            let row = row_cells(resource.group, resource.kind, &json!({}), now());
            // Upstream's IPAddress rows carry the age as a cell without a column.
            let extra = usize::from(resource.kind == "IPAddress");
            assert_eq!(row.len(), columns.len() + extra, "{}", resource.kind);
        }
    }

    /// Column names joined by `,`, wide-only (priority 1) columns marked with `*`.
    fn column_summary(group: &str, kind: &str) -> String {
        column_definitions(group, kind)
            .iter()
            .map(|c| {
                let wide = if c["priority"] == 1 { "*" } else { "" };
                format!("{}{wide}", c["name"].as_str().unwrap_or_default())
            })
            .collect::<Vec<_>>()
            .join(",")
    }

    #[test]
    fn column_names_and_priorities_per_kind() {
        let event = "Last Seen,Type,Reason,Object,Subobject*,Source*,Message,First Seen*,Count*,Name*";
        let cases = [
            (
                "",
                "Pod",
                "Name,Ready,Status,Restarts,Age,IP*,Node*,Nominated Node*,Readiness Gates*",
            ),
            (
                "",
                "Node",
                "Name,Status,Roles,Age,Version,Internal-IP*,External-IP*,OS-Image*,Kernel-Version*,Container-Runtime*",
            ),
            ("", "Namespace", "Name,Status,Age"),
            ("", "Service", "Name,Type,Cluster-IP,External-IP,Port(s),Age,Selector*"),
            ("", "Endpoints", "Name,Endpoints,Age"),
            ("", "Event", event),
            ("events.k8s.io", "Event", event),
            ("", "ConfigMap", "Name,Data,Age"),
            ("", "Secret", "Name,Type,Data,Age"),
            ("", "ServiceAccount", "Name,Secrets,Age"),
            (
                "",
                "PersistentVolume",
                "Name,Capacity,Access Modes,Reclaim Policy,Status,Claim,StorageClass,VolumeAttributesClass,Reason,Age,VolumeMode*",
            ),
            (
                "",
                "PersistentVolumeClaim",
                "Name,Status,Volume,Capacity,Access Modes,StorageClass,VolumeAttributesClass,Age,VolumeMode*",
            ),
            (
                "",
                "ReplicationController",
                "Name,Desired,Current,Ready,Age,Containers*,Images*,Selector*",
            ),
            ("apps", "ControllerRevision", "Name,Controller,Revision,Age"),
            (
                "apps",
                "DaemonSet",
                "Name,Desired,Current,Ready,Up-to-date,Available,Node Selector,Age,Containers*,Images*,Selector*",
            ),
            (
                "apps",
                "Deployment",
                "Name,Ready,Up-to-date,Available,Age,Containers*,Images*,Selector*",
            ),
            (
                "apps",
                "ReplicaSet",
                "Name,Desired,Current,Ready,Age,Containers*,Images*,Selector*",
            ),
            ("apps", "StatefulSet", "Name,Ready,Age,Containers*,Images*"),
            (
                "batch",
                "CronJob",
                "Name,Schedule,Timezone,Suspend,Active,Last Schedule,Age,Containers*,Images*,Selector*",
            ),
            (
                "batch",
                "Job",
                "Name,Status,Completions,Duration,Age,Containers*,Images*,Selector*",
            ),
            ("coordination.k8s.io", "Lease", "Name,Holder,Age"),
            (
                "discovery.k8s.io",
                "EndpointSlice",
                "Name,AddressType,Ports,Endpoints,Age",
            ),
            (
                "storage.k8s.io",
                "StorageClass",
                "Name,Provisioner,ReclaimPolicy,VolumeBindingMode,AllowVolumeExpansion,Age",
            ),
            ("example.com", "Widget", "Name,Created At"),
        ];
        for (group, kind, want) in cases {
            assert_eq!(column_summary(group, kind), want, "{group}/{kind}");
        }
    }

    #[test]
    fn column_types_and_formats() {
        let ds = column_definitions("apps", "DaemonSet");
        assert_eq!(ds[0]["format"], "name");
        assert_eq!(ds[1]["type"], "integer");
        assert_eq!(ds[6]["type"], "string");
        assert_eq!(ds[1]["format"], "");
        let pod = column_definitions("", "Pod");
        assert_eq!(pod[3]["type"], "string");
        assert!(
            pod[5]["description"]
                .as_str()
                .unwrap()
                .starts_with("podIP address allocated to the pod")
        );
        assert!(
            pod[0]["description"]
                .as_str()
                .unwrap()
                .starts_with("Name must be unique within a namespace")
        );
        let cj = column_definitions("batch", "CronJob");
        assert_eq!(cj[3]["type"], "boolean");
        let event = column_definitions("", "Event");
        assert_eq!(event[9]["format"], "name");
        let default = column_definitions("x", "Y");
        assert_eq!(default[1]["type"], "date");
        assert_eq!(default[0]["format"], "name");
    }

    #[test]
    fn default_printer_cells() {
        let row = cells(
            "x",
            "Widget",
            json!({"metadata": {"name": "w", "creationTimestamp": "2024-01-02T03:04:05.123+01:00"}}),
        );
        assert_eq!(row, vec![json!("w"), json!("2024-01-02T02:04:05Z")]);
        assert_eq!(cells("x", "Widget", json!({}))[1], json!("0001-01-01T00:00:00Z"));
    }

    fn container_status(name: &str, state: Value, ready: bool, restarts: i64) -> Value {
        json!({"name": name, "state": state, "ready": ready, "restartCount": restarts})
    }

    fn pod(containers: usize, status: Value) -> Value {
        let containers: Vec<Value> = (0..containers)
            .map(|i| json!({"name": format!("c{i}"), "image": "img"}))
            .collect();
        json!({"metadata": {"name": "p", "creationTimestamp": ago(300)}, "spec": {"containers": containers}, "status": status})
    }

    #[test]
    fn pod_ready_status_and_restarts() {
        let running = json!({"running": {}});
        let cases: Vec<(&str, Value, &str, &str, &str)> = vec![
            ("pending", pod(1, json!({"phase": "Pending"})), "0/1", "Pending", "0"),
            (
                "creating",
                pod(
                    1,
                    json!({"phase": "Pending", "containerStatuses": [container_status("c0", json!({"waiting": {"reason": "ContainerCreating"}}), false, 0)]}),
                ),
                "0/1",
                "ContainerCreating",
                "0",
            ),
            (
                "running",
                pod(
                    2,
                    json!({"phase": "Running", "containerStatuses": [container_status("c0", running.clone(), true, 0), container_status("c1", running.clone(), true, 0)]}),
                ),
                "2/2",
                "Running",
                "0",
            ),
            (
                "crashloop",
                pod(
                    1,
                    json!({"phase": "Running", "containerStatuses": [{
                        "name": "c0", "ready": false, "restartCount": 5,
                        "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                        "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(300)}},
                    }]}),
                ),
                "0/1",
                "CrashLoopBackOff",
                "5 (5m ago)",
            ),
            (
                "completed",
                pod(
                    1,
                    json!({"phase": "Succeeded", "containerStatuses": [container_status("c0", json!({"terminated": {"exitCode": 0, "reason": "Completed"}}), false, 0)]}),
                ),
                "0/1",
                "Completed",
                "0",
            ),
            (
                "exit code",
                pod(
                    1,
                    json!({"phase": "Failed", "containerStatuses": [container_status("c0", json!({"terminated": {"exitCode": 3}}), false, 0)]}),
                ),
                "0/1",
                "ExitCode:3",
                "0",
            ),
            (
                "signal",
                pod(
                    1,
                    json!({"phase": "Failed", "containerStatuses": [container_status("c0", json!({"terminated": {"exitCode": 137, "signal": 9}}), false, 0)]}),
                ),
                "0/1",
                "Signal:9",
                "0",
            ),
            (
                "completed with a running sibling and ready pod",
                pod(
                    2,
                    json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}], "containerStatuses": [
                        container_status("c0", running.clone(), true, 0),
                        container_status("c1", json!({"terminated": {"exitCode": 0, "reason": "Completed"}}), false, 0),
                    ]}),
                ),
                "1/2",
                "Running",
                "0",
            ),
            (
                "completed with a running sibling, pod not ready",
                pod(
                    2,
                    json!({"phase": "Running", "containerStatuses": [
                        container_status("c0", running.clone(), true, 0),
                        container_status("c1", json!({"terminated": {"exitCode": 0, "reason": "Completed"}}), false, 0),
                    ]}),
                ),
                "1/2",
                "NotReady",
                "0",
            ),
            (
                "evicted",
                pod(1, json!({"phase": "Failed", "reason": "Evicted"})),
                "0/1",
                "Evicted",
                "0",
            ),
            (
                "scheduling gated",
                pod(
                    1,
                    json!({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}]}),
                ),
                "0/1",
                "SchedulingGated",
                "0",
            ),
            (
                "restarts without a finish time",
                pod(
                    1,
                    json!({"phase": "Running", "containerStatuses": [container_status("c0", running.clone(), true, 2)]}),
                ),
                "1/1",
                "Running",
                "2",
            ),
        ];
        for (label, pod, ready, status, restarts) in cases {
            let row = row_cells("", "Pod", &pod, now());
            assert_eq!(
                row,
                row_cells("", "Pod", &shaped(&pod), now()),
                "{label}: read as decoded for a row"
            );
            assert_eq!(row[1], json!(ready), "{label}");
            assert_eq!(row[2], json!(status), "{label}");
            assert_eq!(row[3], json!(restarts), "{label}");
            assert_eq!(row[4], json!("5m"), "{label}");
        }
    }

    fn init_pod(init: Value, init_statuses: Value, extra_status: Value) -> Value {
        let mut status = json!({"phase": "Pending", "initContainerStatuses": init_statuses,
            "containerStatuses": [container_status("c0", json!({"waiting": {"reason": "PodInitializing"}}), false, 0)]});
        if let (Some(s), Some(extra)) = (status.as_object_mut(), extra_status.as_object()) {
            s.extend(extra.clone());
        }
        json!({"metadata": {"name": "p"}, "spec": {"initContainers": init, "containers": [{"name": "c0"}]}, "status": status})
    }

    #[test]
    fn pod_init_container_states() {
        let two_inits = json!([{"name": "i0"}, {"name": "i1"}]);
        let done = json!({"terminated": {"exitCode": 0, "reason": "Completed"}});
        let cases: Vec<(&str, Value, &str, &str, &str)> = vec![
            (
                "first init running",
                init_pod(
                    two_inits.clone(),
                    json!([
                        container_status("i0", json!({"running": {}}), false, 0),
                        container_status("i1", json!({"waiting": {"reason": "PodInitializing"}}), false, 0)
                    ]),
                    json!({}),
                ),
                "0/1",
                "Init:0/2",
                "0",
            ),
            (
                "second init running",
                init_pod(
                    two_inits.clone(),
                    json!([
                        container_status("i0", done.clone(), false, 0),
                        container_status("i1", json!({"running": {}}), false, 0)
                    ]),
                    json!({}),
                ),
                "0/1",
                "Init:1/2",
                "0",
            ),
            (
                "init crash looping",
                init_pod(
                    two_inits.clone(),
                    json!([{"name": "i0", "restartCount": 3, "state": {"waiting": {"reason": "CrashLoopBackOff"}}, "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(90)}}}]),
                    json!({}),
                ),
                "0/1",
                "Init:CrashLoopBackOff",
                "3 (90s ago)",
            ),
            (
                "init failed with reason",
                init_pod(
                    two_inits.clone(),
                    json!([container_status(
                        "i0",
                        json!({"terminated": {"exitCode": 1, "reason": "Error"}}),
                        false,
                        0
                    )]),
                    json!({}),
                ),
                "0/1",
                "Init:Error",
                "0",
            ),
            (
                "init failed by signal",
                init_pod(
                    two_inits.clone(),
                    json!([container_status(
                        "i0",
                        json!({"terminated": {"exitCode": 2, "signal": 15}}),
                        false,
                        0
                    )]),
                    json!({}),
                ),
                "0/1",
                "Init:Signal:15",
                "0",
            ),
            (
                "init failed by exit code",
                init_pod(
                    two_inits.clone(),
                    json!([container_status("i0", json!({"terminated": {"exitCode": 2}}), false, 0)]),
                    json!({}),
                ),
                "0/1",
                "Init:ExitCode:2",
                "0",
            ),
            (
                "inits done",
                init_pod(
                    two_inits,
                    json!([
                        container_status("i0", done.clone(), false, 1),
                        container_status("i1", done, false, 0)
                    ]),
                    json!({}),
                ),
                "0/1",
                "PodInitializing",
                "0",
            ),
        ];
        for (label, pod, ready, status, restarts) in cases {
            let row = row_cells("", "Pod", &pod, now());
            assert_eq!(
                row,
                row_cells("", "Pod", &shaped(&pod), now()),
                "{label}: read as decoded for a row"
            );
            assert_eq!(
                (row[1].as_str(), row[2].as_str(), row[3].as_str()),
                (Some(ready), Some(status), Some(restarts)),
                "{label}"
            );
        }
    }

    #[test]
    fn pod_sidecars_count_towards_ready_and_restarts() {
        let pod = json!({
            "metadata": {"name": "p"},
            "spec": {"initContainers": [{"name": "side", "restartPolicy": "Always"}], "containers": [{"name": "c0"}]},
            "status": {
                "phase": "Running",
                "conditions": [{"type": "Initialized", "status": "True"}, {"type": "Ready", "status": "True"}],
                "initContainerStatuses": [{"name": "side", "started": true, "ready": true, "restartCount": 2,
                    "state": {"running": {}}, "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(600)}}}],
                "containerStatuses": [{"name": "c0", "ready": true, "restartCount": 1, "state": {"running": {}},
                    "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(120)}}}],
            },
        });
        let row = row_cells("", "Pod", &pod, now());
        assert_eq!(row[1], json!("2/2"));
        assert_eq!(row[2], json!("Running"));
        assert_eq!(row[3], json!("3 (2m ago)"));
    }

    #[test]
    fn pod_terminating_and_node_lost() {
        let mut p = pod(
            1,
            json!({"phase": "Running", "containerStatuses": [container_status("c0", json!({"running": {}}), true, 0)]}),
        );
        p["metadata"]["deletionTimestamp"] = json!(ago(1));
        assert_eq!(row_cells("", "Pod", &p, now())[2], json!("Terminating"));
        p["status"]["reason"] = json!("NodeLost");
        assert_eq!(row_cells("", "Pod", &p, now())[2], json!("Unknown"));
        let mut done = pod(
            1,
            json!({"phase": "Succeeded", "containerStatuses": [container_status("c0", json!({"terminated": {"exitCode": 0, "reason": "Completed"}}), false, 0)]}),
        );
        done["metadata"]["deletionTimestamp"] = json!(ago(1));
        assert_eq!(row_cells("", "Pod", &done, now())[2], json!("Completed"));
    }

    #[test]
    fn pod_wide_cells() {
        let bare = cells("", "Pod", json!({"metadata": {"name": "p"}}));
        assert_eq!(
            bare[4..],
            [
                json!("<unknown>"),
                json!("<none>"),
                json!("<none>"),
                json!("<none>"),
                json!("<none>")
            ]
        );
        let full = cells(
            "",
            "Pod",
            json!({
                "metadata": {"name": "p"},
                "spec": {"nodeName": "n1", "readinessGates": [{"conditionType": "a"}, {"conditionType": "b"}]},
                "status": {"podIP": "10.0.0.9", "podIPs": [{"ip": "10.0.0.1"}, {"ip": "fd00::1"}], "nominatedNodeName": "n2",
                    "conditions": [{"type": "a", "status": "True"}, {"type": "b", "status": "False"}]},
            }),
        );
        assert_eq!(full[5..], [json!("10.0.0.1"), json!("n1"), json!("n2"), json!("1/2")]);
        let legacy = cells("", "Pod", json!({"status": {"podIP": "10.0.0.9"}}));
        assert_eq!(legacy[5], json!("10.0.0.9"));
    }

    fn node(conditions: Value, unschedulable: bool, labels: Value) -> Value {
        json!({"metadata": {"name": "n", "labels": labels, "creationTimestamp": ago(3 * 86400 + 3600)},
            "spec": {"unschedulable": unschedulable},
            "status": {"conditions": conditions, "nodeInfo": {"kubeletVersion": "v1.33.1", "osImage": "Debian"},
                "addresses": [{"type": "InternalIP", "address": "192.168.0.2"}, {"type": "Hostname", "address": "n"}]}})
    }

    #[test]
    fn node_status_and_roles() {
        let ready = json!([{"type": "MemoryPressure", "status": "False"}, {"type": "Ready", "status": "True"}]);
        let cases = [
            (node(ready.clone(), false, json!({})), "Ready", "<none>"),
            (
                node(ready.clone(), true, json!({})),
                "Ready,SchedulingDisabled",
                "<none>",
            ),
            (
                node(json!([{"type": "Ready", "status": "False"}]), false, json!({})),
                "NotReady",
                "<none>",
            ),
            (
                node(json!([{"type": "Ready", "status": "Unknown"}]), true, json!({})),
                "NotReady,SchedulingDisabled",
                "<none>",
            ),
            (node(json!([]), false, json!({})), "Unknown", "<none>"),
            (node(json!([]), true, json!({})), "Unknown,SchedulingDisabled", "<none>"),
            (
                node(
                    ready.clone(),
                    false,
                    json!({"node-role.kubernetes.io/worker": "", "node-role.kubernetes.io/control-plane": "", "kubernetes.io/role": "master"}),
                ),
                "Ready",
                "control-plane,master,worker",
            ),
            (
                node(
                    ready,
                    false,
                    json!({"node-role.kubernetes.io/": "", "kubernetes.io/role": ""}),
                ),
                "Ready",
                "<none>",
            ),
        ];
        for (n, status, roles) in cases {
            let row = row_cells("", "Node", &n, now());
            assert_eq!(row[1], json!(status));
            assert_eq!(row[2], json!(roles));
            assert_eq!(row[3], json!("3d1h"));
            assert_eq!(row[4], json!("v1.33.1"));
            assert_eq!(
                row[5..],
                [
                    json!("192.168.0.2"),
                    json!("<none>"),
                    json!("Debian"),
                    json!("<unknown>"),
                    json!("<unknown>")
                ]
            );
        }
    }

    #[test]
    fn daemonset_cells_and_node_selector() {
        let ds = json!({
            "metadata": {"name": "fluentd", "creationTimestamp": ago(45)},
            "spec": {
                "selector": {"matchLabels": {"app": "fluentd"}},
                "template": {"spec": {"nodeSelector": {"zone": "a", "disk": "ssd"},
                    "containers": [{"name": "c", "image": "fluentd:1"}, {"name": "s", "image": "busybox"}]}},
            },
            "status": {"desiredNumberScheduled": 3, "currentNumberScheduled": 3, "numberReady": 2, "updatedNumberScheduled": 1, "numberAvailable": 2},
        });
        let row = row_cells("apps", "DaemonSet", &ds, now());
        assert_eq!(
            row,
            vec![
                json!("fluentd"),
                json!(3),
                json!(3),
                json!(2),
                json!(1),
                json!(2),
                json!("disk=ssd,zone=a"),
                json!("45s"),
                json!("c,s"),
                json!("fluentd:1,busybox"),
                json!("app=fluentd"),
            ]
        );
        let bare = cells(
            "apps",
            "DaemonSet",
            json!({"metadata": {"name": "x"}, "spec": {"selector": {}}}),
        );
        assert_eq!(bare[6], json!("<none>"));
        assert_eq!(bare[10], json!("<none>"));
        let no_selector = cells("apps", "DaemonSet", json!({}));
        assert_eq!(no_selector[10], json!("<none>"));
        let bad = cells(
            "apps",
            "DaemonSet",
            json!({"spec": {"selector": {"matchExpressions": [{"key": "a", "operator": "Bogus"}]}}}),
        );
        assert_eq!(bad[10], json!("<error>"));
    }

    #[test]
    fn deployment_replicaset_statefulset_cells() {
        let template = json!({"spec": {"containers": [{"name": "web", "image": "nginx"}]}});
        let selector = json!({"matchLabels": {"app": "web"}, "matchExpressions": [{"key": "tier", "operator": "In", "values": ["b", "a"]}]});
        let deploy = json!({"metadata": {"name": "d"}, "spec": {"replicas": 3, "selector": selector, "template": template},
            "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}});
        assert_eq!(
            cells("apps", "Deployment", deploy),
            vec![
                json!("d"),
                json!("2/3"),
                json!(3),
                json!(2),
                json!("<unknown>"),
                json!("web"),
                json!("nginx"),
                json!("app=web,tier in (a,b)"),
            ]
        );
        assert_eq!(
            cells("apps", "Deployment", json!({"spec": {"selector": {}}}))[7],
            json!("")
        );
        let rs = json!({"metadata": {"name": "r"}, "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}}, "template": template},
            "status": {"replicas": 2, "readyReplicas": 1}});
        assert_eq!(
            cells("apps", "ReplicaSet", rs),
            vec![
                json!("r"),
                json!(2),
                json!(2),
                json!(1),
                json!("<unknown>"),
                json!("web"),
                json!("nginx"),
                json!("app=web"),
            ]
        );
        let sts = json!({"metadata": {"name": "s"}, "spec": {"replicas": 3, "template": template}, "status": {"readyReplicas": 3}});
        assert_eq!(
            cells("apps", "StatefulSet", sts),
            vec![
                json!("s"),
                json!("3/3"),
                json!("<unknown>"),
                json!("web"),
                json!("nginx")
            ]
        );
        let rc = json!({"metadata": {"name": "rc"}, "spec": {"replicas": 1, "selector": {"b": "2", "a": "1"}}, "status": {"replicas": 1}});
        assert_eq!(
            cells("", "ReplicationController", rc),
            vec![
                json!("rc"),
                json!(1),
                json!(1),
                json!(0),
                json!("<unknown>"),
                json!(""),
                json!(""),
                json!("a=1,b=2"),
            ]
        );
    }

    #[test]
    fn service_cells_by_type() {
        let svc = |spec: Value, status: Value| json!({"metadata": {"name": "s"}, "spec": spec, "status": status});
        let cases = [
            (
                svc(
                    json!({"type": "ClusterIP", "clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"],
                    "ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}], "selector": {"k8s-app": "dns"}}),
                    json!({}),
                ),
                ["ClusterIP", "10.96.0.10", "<none>", "53/UDP,53/TCP", "k8s-app=dns"],
            ),
            (
                svc(
                    json!({"type": "NodePort", "clusterIP": "10.0.0.1", "ports": [{"port": 80, "nodePort": 30080, "protocol": "TCP"}],
                    "externalIPs": ["1.2.3.4", "5.6.7.8"]}),
                    json!({}),
                ),
                ["NodePort", "10.0.0.1", "1.2.3.4,5.6.7.8", "80:30080/TCP", "<none>"],
            ),
            (
                svc(
                    json!({"type": "LoadBalancer", "clusterIPs": ["10.0.0.2"], "ports": [{"port": 443}]}),
                    json!({}),
                ),
                ["LoadBalancer", "10.0.0.2", "<pending>", "443/TCP", "<none>"],
            ),
            (
                svc(
                    json!({"type": "LoadBalancer", "clusterIPs": ["10.0.0.2"], "externalIPs": ["9.9.9.9"]}),
                    json!({"loadBalancer": {"ingress": [{"ip": "2.2.2.2"}, {"hostname": "lb.example.com"}, {"ip": "1.1.1.1"}]}}),
                ),
                [
                    "LoadBalancer",
                    "10.0.0.2",
                    "1.1.1.1,2.2.2.2,lb.example.com,9.9.9.9",
                    "<none>",
                    "<none>",
                ],
            ),
            (
                svc(
                    json!({"type": "ExternalName", "externalName": "db.example.com"}),
                    json!({}),
                ),
                ["ExternalName", "<none>", "db.example.com", "<none>", "<none>"],
            ),
            (
                svc(
                    json!({"clusterIP": "None", "clusterIPs": ["None"], "ports": [{"port": 80, "protocol": "TCP"}]}),
                    json!({}),
                ),
                ["", "None", "<unknown>", "80/TCP", "<none>"],
            ),
        ];
        for (svc, want) in cases {
            let row = row_cells("", "Service", &svc, now());
            let got: Vec<&str> = [1, 2, 3, 4, 6].iter().map(|i| row[*i].as_str().unwrap()).collect();
            assert_eq!(got, want);
        }
    }

    #[test]
    fn endpoints_and_slices() {
        let ep = json!({"metadata": {"name": "e"}, "subsets": [
            {"addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}], "ports": [{"port": 53}, {"port": 9153}]},
            {"addresses": [{"ip": "fd00::3"}]},
        ]});
        assert_eq!(
            cells("", "Endpoints", ep)[1],
            json!("10.0.0.1:53,10.0.0.2:53,10.0.0.1:9153 + 2 more...")
        );
        let small = json!({"subsets": [{"addresses": [{"ip": "fd00::3"}], "ports": [{"port": 80}]}]});
        assert_eq!(cells("", "Endpoints", small)[1], json!("[fd00::3]:80"));
        assert_eq!(cells("", "Endpoints", json!({}))[1], json!("<none>"));
        assert_eq!(cells("", "Endpoints", json!({"subsets": [{}]}))[1], json!(""));
        let slice = json!({"metadata": {"name": "s"}, "addressType": "IPv4",
            "ports": [{"port": 80}, {"name": "http"}, {}, {"port": 9}],
            "endpoints": [{"addresses": ["10.0.0.1"]}, {"addresses": ["10.0.0.2", "10.0.0.3"]}]});
        let row = cells("discovery.k8s.io", "EndpointSlice", slice);
        assert_eq!(
            row[1..4],
            [
                json!("IPv4"),
                json!("80,http,* + 1 more..."),
                json!("10.0.0.1,10.0.0.2,10.0.0.3")
            ]
        );
        let empty = cells("discovery.k8s.io", "EndpointSlice", json!({}));
        assert_eq!(empty[2..4], [json!("<unset>"), json!("<unset>")]);
    }

    #[test]
    fn event_cells_for_both_groups() {
        let core = json!({
            "metadata": {"name": "ds.123"},
            "involvedObject": {"kind": "DaemonSet", "name": "fluentd", "fieldPath": ""},
            "reason": "SuccessfulCreate", "type": "Normal", "message": " Created pod: fluentd-x \n",
            "source": {"component": "daemonset-controller"},
            "firstTimestamp": ago(600), "lastTimestamp": ago(30), "count": 4,
        });
        assert_eq!(
            cells("", "Event", core),
            vec![
                json!("30s"),
                json!("Normal"),
                json!("SuccessfulCreate"),
                json!("daemonset/fluentd"),
                json!(""),
                json!("daemonset-controller"),
                json!("Created pod: fluentd-x"),
                json!("10m"),
                json!(4),
                json!("ds.123"),
            ]
        );
        let api = json!({
            "metadata": {"name": "e"},
            "regarding": {"kind": "Node"},
            "reason": "Starting", "type": "Normal", "note": "Starting kubelet.",
            "reportingController": "kubelet", "reportingInstance": "n1",
            "eventTime": ago(7200),
        });
        assert_eq!(
            cells("events.k8s.io", "Event", api),
            vec![
                json!("120m"),
                json!("Normal"),
                json!("Starting"),
                json!("node"),
                json!(""),
                json!("kubelet, n1"),
                json!("Starting kubelet."),
                json!("120m"),
                json!(1),
                json!("e"),
            ]
        );
        let series = json!({"eventTime": ago(3600), "series": {"count": 7, "lastObservedTime": ago(5)}, "involvedObject": {"kind": "Pod", "name": "p"}});
        let row = cells("", "Event", series);
        assert_eq!(
            (row[0].clone(), row[7].clone(), row[8].clone()),
            (json!("5s"), json!("60m"), json!(7))
        );
        assert_eq!(cells("", "Event", json!({}))[0], json!("<unknown>"));
    }

    #[test]
    fn job_and_cronjob_cells() {
        let job = |spec: Value, status: Value| json!({"metadata": {"name": "j"}, "spec": spec, "status": status});
        let cases = [
            (
                job(json!({"completions": 3}), json!({"succeeded": 1, "startTime": ago(65)})),
                "Running",
                "1/3",
                "65s",
            ),
            (job(json!({"parallelism": 2}), json!({})), "Running", "0/1 of 2", ""),
            (
                job(
                    json!({}),
                    json!({"succeeded": 1, "startTime": ago(600), "completionTime": ago(270),
                "conditions": [{"type": "Complete", "status": "True"}]}),
                ),
                "Complete",
                "1/1",
                "5m30s",
            ),
            (
                job(
                    json!({"completions": 1}),
                    json!({"conditions": [{"type": "Failed", "status": "True"}]}),
                ),
                "Failed",
                "0/1",
                "",
            ),
            (
                job(
                    json!({}),
                    json!({"conditions": [{"type": "Suspended", "status": "True"}]}),
                ),
                "Suspended",
                "0/1",
                "",
            ),
            (
                job(
                    json!({}),
                    json!({"conditions": [{"type": "FailureTarget", "status": "True"}]}),
                ),
                "FailureTarget",
                "0/1",
                "",
            ),
            (
                job(
                    json!({}),
                    json!({"conditions": [{"type": "Complete", "status": "False"}]}),
                ),
                "Running",
                "0/1",
                "",
            ),
        ];
        for (j, status, completions, duration) in cases {
            let row = row_cells("batch", "Job", &j, now());
            assert_eq!(row[1..4], [json!(status), json!(completions), json!(duration)], "{j}");
        }
        let mut deleting = job(json!({}), json!({}));
        deleting["metadata"]["deletionTimestamp"] = json!(ago(1));
        assert_eq!(row_cells("batch", "Job", &deleting, now())[1], json!("Terminating"));
        // The succeeded count comes first even with completions set to 1.
        let done = job(json!({"completions": 1}), json!({"succeeded": 1}));
        assert_eq!(row_cells("batch", "Job", &done, now())[2], json!("1/1"));

        let cj = json!({"metadata": {"name": "c", "creationTimestamp": ago(86400)},
            "spec": {"schedule": "*/5 * * * *", "suspend": false, "jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "x", "image": "busybox"}]}}}}},
            "status": {"active": [{"name": "c-1"}], "lastScheduleTime": ago(120)}});
        assert_eq!(
            cells("batch", "CronJob", cj),
            vec![
                json!("c"),
                json!("*/5 * * * *"),
                json!("<none>"),
                json!("False"),
                json!(1),
                json!("2m"),
                json!("24h"),
                json!("x"),
                json!("busybox"),
                json!("<none>"),
            ]
        );
        let bare = cells("batch", "CronJob", json!({"spec": {"timeZone": "Etc/UTC"}}));
        assert_eq!(
            bare[2..6],
            [json!("Etc/UTC"), json!("<unset>"), json!(0), json!("<none>")]
        );
    }

    #[test]
    fn storage_cells() {
        let pv = json!({"metadata": {"name": "pv1", "deletionTimestamp": ago(1)},
            "spec": {"capacity": {"storage": "10Gi"}, "accessModes": ["ReadWriteMany", "ReadWriteOnce", "ReadWriteOnce"],
                "persistentVolumeReclaimPolicy": "Retain", "claimRef": {"namespace": "ns", "name": "data"}, "storageClassName": "fast"},
            "status": {"phase": "Bound"}});
        assert_eq!(
            cells("", "PersistentVolume", pv),
            vec![
                json!("pv1"),
                json!("10Gi"),
                json!("RWO,RWX"),
                json!("Retain"),
                json!("Terminating"),
                json!("ns/data"),
                json!("fast"),
                json!("<unset>"),
                json!(""),
                json!("<unknown>"),
                json!("<unset>"),
            ]
        );
        let pending = json!({"metadata": {"name": "c", "annotations": {"volume.beta.kubernetes.io/storage-class": "old"}},
            "spec": {"storageClassName": "new", "resources": {"requests": {"storage": "1Gi"}}}, "status": {"phase": "Pending"}});
        assert_eq!(
            cells("", "PersistentVolumeClaim", pending)[1..6],
            [json!("Pending"), json!(""), json!(""), json!(""), json!("old")]
        );
        let bound = json!({"metadata": {"name": "c"}, "spec": {"volumeName": "pv1", "volumeMode": "Filesystem"},
            "status": {"phase": "Bound", "capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOncePod"]}});
        let row = cells("", "PersistentVolumeClaim", bound);
        assert_eq!(
            row[1..6],
            [json!("Bound"), json!("pv1"), json!("1Gi"), json!("RWOP"), json!("")]
        );
        assert_eq!(row[8], json!("Filesystem"));
        let sc = json!({"metadata": {"name": "standard", "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
            "provisioner": "rancher.io/local-path", "volumeBindingMode": "WaitForFirstConsumer"});
        assert_eq!(
            cells("storage.k8s.io", "StorageClass", sc),
            vec![
                json!("standard (default)"),
                json!("rancher.io/local-path"),
                json!("Delete"),
                json!("WaitForFirstConsumer"),
                json!(false),
                json!("<unknown>"),
            ]
        );
    }

    #[test]
    fn small_kinds() {
        let created = json!({"name": "x", "creationTimestamp": ago(3 * 3600 + 5 * 60)});
        let cases: Vec<(&str, &str, Value, Vec<Value>)> = vec![
            (
                "",
                "Namespace",
                json!({"metadata": created, "status": {"phase": "Active"}}),
                vec![json!("x"), json!("Active"), json!("3h5m")],
            ),
            (
                "",
                "ConfigMap",
                json!({"metadata": created, "data": {"a": "1", "b": "2"}, "binaryData": {"c": ""}}),
                vec![json!("x"), json!(3), json!("3h5m")],
            ),
            (
                "",
                "Secret",
                json!({"metadata": created, "type": "Opaque", "data": {"a": "MQ=="}}),
                vec![json!("x"), json!("Opaque"), json!(1), json!("3h5m")],
            ),
            (
                "",
                "ServiceAccount",
                json!({"metadata": created, "secrets": [{"name": "t"}]}),
                vec![json!("x"), json!(1), json!("3h5m")],
            ),
            (
                "coordination.k8s.io",
                "Lease",
                json!({"metadata": created, "spec": {"holderIdentity": "n1"}}),
                vec![json!("x"), json!("n1"), json!("3h5m")],
            ),
            (
                "coordination.k8s.io",
                "Lease",
                json!({"metadata": created}),
                vec![json!("x"), json!(""), json!("3h5m")],
            ),
        ];
        for (group, kind, object, want) in cases {
            assert_eq!(cells(group, kind, object), want, "{kind}");
        }
    }

    #[test]
    fn controller_revision_controller_column() {
        let revision =
            |owners: Value| json!({"metadata": {"name": "fluentd-5d4", "ownerReferences": owners}, "revision": 2});
        let cases = [
            (
                json!([{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "fluentd", "controller": true}]),
                "daemonset.apps/fluentd",
            ),
            (
                json!([{"apiVersion": "v1", "kind": "Pod", "name": "p", "controller": true}]),
                "pod/p",
            ),
            (
                json!([{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "x"}]),
                "<none>",
            ),
            (json!([]), "<none>"),
        ];
        for (owners, want) in cases {
            let row = cells("apps", "ControllerRevision", revision(owners));
            assert_eq!(row[1..3], [json!(want), json!(2)]);
        }
    }

    #[test]
    fn label_formatting_helpers() {
        assert_eq!(format_labels(&json!({"b": "2", "a": "1"})), "a=1,b=2");
        assert_eq!(format_labels(&json!({})), "<none>");
        assert_eq!(format_labels(&Value::Null), "<none>");
        assert_eq!(format_label_selector(&Value::Null), "<none>");
        assert_eq!(
            format_label_selector(&json!({"matchExpressions": [{"key": "a", "operator": "Exists"}]})),
            "a"
        );
    }
}
