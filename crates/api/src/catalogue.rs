//! The resource catalogue: every group/version/resource shoal serves, with its kind, scope,
//! short names, categories, verbs and subresources. Discovery, OpenAPI, routing and the
//! storage layout all read this one table.

/// A subresource of a resource (`pods/status`, `deployments/scale`, ...).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Subresource {
    /// Path segment after the object name (`status`, `scale`, `binding`, ...).
    pub name: &'static str,
    /// Group of the kind the subresource accepts and returns.
    pub group: &'static str,
    /// Version of that kind.
    pub version: &'static str,
    /// That kind (`DaemonSet` for status, `Scale` for scale, `Binding`, `Eviction`, ...).
    pub kind: &'static str,
    /// Verbs the subresource answers.
    pub verbs: &'static [&'static str],
}

/// One served resource.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Resource {
    /// API group; `""` is the core group.
    pub group: &'static str,
    /// Version (`v1`).
    pub version: &'static str,
    /// Plural resource name as used in URLs (`daemonsets`).
    pub plural: &'static str,
    /// Singular name (`daemonset`).
    pub singular: &'static str,
    /// Kind (`DaemonSet`).
    pub kind: &'static str,
    /// Namespaced (true) or cluster-scoped (false).
    pub namespaced: bool,
    /// kubectl short names (`ds`).
    pub short_names: &'static [&'static str],
    /// Categories (`all`).
    pub categories: &'static [&'static str],
    /// Verbs on the resource itself.
    pub verbs: &'static [&'static str],
    /// Subresources.
    pub subresources: &'static [Subresource],
}

impl Resource {
    /// `apps/v1` or `v1` for the core group.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `daemonsets.apps` or `pods` for the core group (upstream's qualified resource, used in
    /// error messages such as `daemonsets.apps "x" not found`).
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// `DaemonSet.apps` or `Pod` (upstream's qualified kind, used in "is invalid" messages).
    pub fn qualified_kind(&self) -> String {
        if self.group.is_empty() {
            self.kind.to_string()
        } else {
            format!("{}.{}", self.kind, self.group)
        }
    }

    /// The subresource called `name`, if served.
    pub fn subresource(&self, name: &str) -> Option<&'static Subresource> {
        self.subresources.iter().find(|s| s.name == name)
    }
}

/// Verbs of an ordinary read-write resource.
pub const ALL_VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];
const NS_VERBS: &[&str] = &["create", "delete", "get", "list", "patch", "update", "watch"];
const STATUS_VERBS: &[&str] = &["get", "patch", "update"];

const fn status(group: &'static str, kind: &'static str) -> Subresource {
    Subresource {
        name: "status",
        group,
        version: "v1",
        kind,
        verbs: STATUS_VERBS,
    }
}
const fn status_v(group: &'static str, version: &'static str, kind: &'static str) -> Subresource {
    Subresource {
        name: "status",
        group,
        version,
        kind,
        verbs: STATUS_VERBS,
    }
}
const fn scale() -> Subresource {
    Subresource {
        name: "scale",
        group: "autoscaling",
        version: "v1",
        kind: "Scale",
        verbs: STATUS_VERBS,
    }
}

#[allow(clippy::too_many_arguments)]
const fn res(
    group: &'static str,
    plural: &'static str,
    singular: &'static str,
    kind: &'static str,
    namespaced: bool,
    short_names: &'static [&'static str],
    categories: &'static [&'static str],
    subresources: &'static [Subresource],
) -> Resource {
    Resource {
        group,
        version: "v1",
        plural,
        singular,
        kind,
        namespaced,
        short_names,
        categories,
        verbs: ALL_VERBS,
        subresources,
    }
}

const ALL: &[&str] = &["all"];
const NONE: &[&str] = &[];
const API_EXTENSIONS: &[&str] = &["api-extensions"];
/// Verbs of the review kinds (`TokenReview`, `SelfSubjectAccessReview`, ...): created and
/// answered, never stored.
pub const CREATE_ONLY: &[&str] = &["create"];

/// A review kind of `group`/v1: created and answered, never stored.
const fn review(
    group: &'static str,
    plural: &'static str,
    singular: &'static str,
    kind: &'static str,
    namespaced: bool,
) -> Resource {
    Resource {
        verbs: CREATE_ONLY,
        ..res(group, plural, singular, kind, namespaced, NONE, NONE, &[])
    }
}

/// Every served resource, grouped by API group (core first, then as `/apis` lists them).
pub static RESOURCES: &[Resource] = &[
    // core/v1
    Resource {
        verbs: NS_VERBS,
        ..res(
            "",
            "namespaces",
            "namespace",
            "Namespace",
            false,
            &["ns"],
            NONE,
            &[
                status("", "Namespace"),
                Subresource {
                    name: "finalize",
                    group: "",
                    version: "v1",
                    kind: "Namespace",
                    verbs: &["update"],
                },
            ],
        )
    },
    res("", "nodes", "node", "Node", false, &["no"], NONE, &[status("", "Node")]),
    res(
        "",
        "pods",
        "pod",
        "Pod",
        true,
        &["po"],
        ALL,
        &[
            status("", "Pod"),
            Subresource {
                name: "binding",
                group: "",
                version: "v1",
                kind: "Binding",
                verbs: &["create"],
            },
            Subresource {
                name: "eviction",
                group: "policy",
                version: "v1",
                kind: "Eviction",
                verbs: &["create"],
            },
            Subresource {
                name: "log",
                group: "",
                version: "v1",
                kind: "Pod",
                verbs: &["get"],
            },
            Subresource {
                name: "exec",
                group: "",
                version: "v1",
                kind: "PodExecOptions",
                verbs: &["create", "get"],
            },
            Subresource {
                name: "attach",
                group: "",
                version: "v1",
                kind: "PodAttachOptions",
                verbs: &["create", "get"],
            },
            Subresource {
                name: "portforward",
                group: "",
                version: "v1",
                kind: "PodPortForwardOptions",
                verbs: &["create", "get"],
            },
        ],
    ),
    res(
        "",
        "services",
        "service",
        "Service",
        true,
        &["svc"],
        ALL,
        &[status("", "Service")],
    ),
    res("", "endpoints", "endpoints", "Endpoints", true, &["ep"], NONE, &[]),
    res("", "events", "event", "Event", true, &["ev"], NONE, &[]),
    res("", "configmaps", "configmap", "ConfigMap", true, &["cm"], NONE, &[]),
    res("", "secrets", "secret", "Secret", true, NONE, NONE, &[]),
    res(
        "",
        "serviceaccounts",
        "serviceaccount",
        "ServiceAccount",
        true,
        &["sa"],
        NONE,
        &[Subresource {
            name: "token",
            group: "authentication.k8s.io",
            version: "v1",
            kind: "TokenRequest",
            verbs: &["create"],
        }],
    ),
    res(
        "",
        "persistentvolumes",
        "persistentvolume",
        "PersistentVolume",
        false,
        &["pv"],
        NONE,
        &[status("", "PersistentVolume")],
    ),
    res(
        "",
        "persistentvolumeclaims",
        "persistentvolumeclaim",
        "PersistentVolumeClaim",
        true,
        &["pvc"],
        NONE,
        &[status("", "PersistentVolumeClaim")],
    ),
    res(
        "",
        "replicationcontrollers",
        "replicationcontroller",
        "ReplicationController",
        true,
        &["rc"],
        ALL,
        &[status("", "ReplicationController"), scale()],
    ),
    Resource {
        verbs: CREATE_ONLY,
        ..res("", "bindings", "binding", "Binding", true, NONE, NONE, &[])
    },
    Resource {
        verbs: &["get", "list"],
        ..res(
            "",
            "componentstatuses",
            "componentstatus",
            "ComponentStatus",
            false,
            &["cs"],
            NONE,
            &[],
        )
    },
    res(
        "",
        "limitranges",
        "limitrange",
        "LimitRange",
        true,
        &["limits"],
        NONE,
        &[],
    ),
    res("", "podtemplates", "podtemplate", "PodTemplate", true, NONE, NONE, &[]),
    res(
        "",
        "resourcequotas",
        "resourcequota",
        "ResourceQuota",
        true,
        &["quota"],
        NONE,
        &[status("", "ResourceQuota")],
    ),
    // admissionregistration.k8s.io/v1
    res(
        "admissionregistration.k8s.io",
        "mutatingwebhookconfigurations",
        "mutatingwebhookconfiguration",
        "MutatingWebhookConfiguration",
        false,
        NONE,
        API_EXTENSIONS,
        &[],
    ),
    res(
        "admissionregistration.k8s.io",
        "validatingadmissionpolicies",
        "validatingadmissionpolicy",
        "ValidatingAdmissionPolicy",
        false,
        NONE,
        API_EXTENSIONS,
        &[status("admissionregistration.k8s.io", "ValidatingAdmissionPolicy")],
    ),
    res(
        "admissionregistration.k8s.io",
        "validatingadmissionpolicybindings",
        "validatingadmissionpolicybinding",
        "ValidatingAdmissionPolicyBinding",
        false,
        NONE,
        API_EXTENSIONS,
        &[],
    ),
    res(
        "admissionregistration.k8s.io",
        "validatingwebhookconfigurations",
        "validatingwebhookconfiguration",
        "ValidatingWebhookConfiguration",
        false,
        NONE,
        API_EXTENSIONS,
        &[],
    ),
    // apiextensions.k8s.io/v1
    res(
        "apiextensions.k8s.io",
        "customresourcedefinitions",
        "customresourcedefinition",
        "CustomResourceDefinition",
        false,
        &["crd", "crds"],
        API_EXTENSIONS,
        &[status("apiextensions.k8s.io", "CustomResourceDefinition")],
    ),
    // apiregistration.k8s.io/v1
    res(
        "apiregistration.k8s.io",
        "apiservices",
        "apiservice",
        "APIService",
        false,
        NONE,
        API_EXTENSIONS,
        &[status("apiregistration.k8s.io", "APIService")],
    ),
    // apps/v1
    res(
        "apps",
        "controllerrevisions",
        "controllerrevision",
        "ControllerRevision",
        true,
        NONE,
        NONE,
        &[],
    ),
    res(
        "apps",
        "daemonsets",
        "daemonset",
        "DaemonSet",
        true,
        &["ds"],
        ALL,
        &[status("apps", "DaemonSet")],
    ),
    res(
        "apps",
        "deployments",
        "deployment",
        "Deployment",
        true,
        &["deploy"],
        ALL,
        &[status("apps", "Deployment"), scale()],
    ),
    res(
        "apps",
        "replicasets",
        "replicaset",
        "ReplicaSet",
        true,
        &["rs"],
        ALL,
        &[status("apps", "ReplicaSet"), scale()],
    ),
    res(
        "apps",
        "statefulsets",
        "statefulset",
        "StatefulSet",
        true,
        &["sts"],
        ALL,
        &[status("apps", "StatefulSet"), scale()],
    ),
    // authentication.k8s.io/v1
    review(
        "authentication.k8s.io",
        "selfsubjectreviews",
        "selfsubjectreview",
        "SelfSubjectReview",
        false,
    ),
    review(
        "authentication.k8s.io",
        "tokenreviews",
        "tokenreview",
        "TokenReview",
        false,
    ),
    // authorization.k8s.io/v1
    review(
        "authorization.k8s.io",
        "localsubjectaccessreviews",
        "localsubjectaccessreview",
        "LocalSubjectAccessReview",
        true,
    ),
    review(
        "authorization.k8s.io",
        "selfsubjectaccessreviews",
        "selfsubjectaccessreview",
        "SelfSubjectAccessReview",
        false,
    ),
    review(
        "authorization.k8s.io",
        "selfsubjectrulesreviews",
        "selfsubjectrulesreview",
        "SelfSubjectRulesReview",
        false,
    ),
    review(
        "authorization.k8s.io",
        "subjectaccessreviews",
        "subjectaccessreview",
        "SubjectAccessReview",
        false,
    ),
    // autoscaling/v2 (preferred) and v1: one resource seen in two versions
    Resource {
        version: "v2",
        ..res(
            "autoscaling",
            "horizontalpodautoscalers",
            "horizontalpodautoscaler",
            "HorizontalPodAutoscaler",
            true,
            &["hpa"],
            ALL,
            &[status_v("autoscaling", "v2", "HorizontalPodAutoscaler")],
        )
    },
    res(
        "autoscaling",
        "horizontalpodautoscalers",
        "horizontalpodautoscaler",
        "HorizontalPodAutoscaler",
        true,
        &["hpa"],
        ALL,
        &[status("autoscaling", "HorizontalPodAutoscaler")],
    ),
    // batch/v1
    res(
        "batch",
        "cronjobs",
        "cronjob",
        "CronJob",
        true,
        &["cj"],
        ALL,
        &[status("batch", "CronJob")],
    ),
    res(
        "batch",
        "jobs",
        "job",
        "Job",
        true,
        NONE,
        ALL,
        &[status("batch", "Job")],
    ),
    // certificates.k8s.io/v1
    res(
        "certificates.k8s.io",
        "certificatesigningrequests",
        "certificatesigningrequest",
        "CertificateSigningRequest",
        false,
        &["csr"],
        NONE,
        &[
            Subresource {
                name: "approval",
                group: "certificates.k8s.io",
                version: "v1",
                kind: "CertificateSigningRequest",
                verbs: STATUS_VERBS,
            },
            status("certificates.k8s.io", "CertificateSigningRequest"),
        ],
    ),
    // coordination.k8s.io/v1
    res("coordination.k8s.io", "leases", "lease", "Lease", true, NONE, NONE, &[]),
    // discovery.k8s.io/v1
    res(
        "discovery.k8s.io",
        "endpointslices",
        "endpointslice",
        "EndpointSlice",
        true,
        NONE,
        NONE,
        &[],
    ),
    // events.k8s.io/v1
    res("events.k8s.io", "events", "event", "Event", true, &["ev"], NONE, &[]),
    // flowcontrol.apiserver.k8s.io/v1
    res(
        "flowcontrol.apiserver.k8s.io",
        "flowschemas",
        "flowschema",
        "FlowSchema",
        false,
        NONE,
        NONE,
        &[status("flowcontrol.apiserver.k8s.io", "FlowSchema")],
    ),
    res(
        "flowcontrol.apiserver.k8s.io",
        "prioritylevelconfigurations",
        "prioritylevelconfiguration",
        "PriorityLevelConfiguration",
        false,
        NONE,
        NONE,
        &[status("flowcontrol.apiserver.k8s.io", "PriorityLevelConfiguration")],
    ),
    // networking.k8s.io/v1
    res(
        "networking.k8s.io",
        "ingressclasses",
        "ingressclass",
        "IngressClass",
        false,
        NONE,
        NONE,
        &[],
    ),
    res(
        "networking.k8s.io",
        "ingresses",
        "ingress",
        "Ingress",
        true,
        &["ing"],
        NONE,
        &[status("networking.k8s.io", "Ingress")],
    ),
    res(
        "networking.k8s.io",
        "ipaddresses",
        "ipaddress",
        "IPAddress",
        false,
        &["ip"],
        NONE,
        &[],
    ),
    res(
        "networking.k8s.io",
        "networkpolicies",
        "networkpolicy",
        "NetworkPolicy",
        true,
        &["netpol"],
        NONE,
        &[],
    ),
    res(
        "networking.k8s.io",
        "servicecidrs",
        "servicecidr",
        "ServiceCIDR",
        false,
        NONE,
        NONE,
        &[status("networking.k8s.io", "ServiceCIDR")],
    ),
    // node.k8s.io/v1
    res(
        "node.k8s.io",
        "runtimeclasses",
        "runtimeclass",
        "RuntimeClass",
        false,
        NONE,
        NONE,
        &[],
    ),
    // policy/v1
    res(
        "policy",
        "poddisruptionbudgets",
        "poddisruptionbudget",
        "PodDisruptionBudget",
        true,
        &["pdb"],
        NONE,
        &[status("policy", "PodDisruptionBudget")],
    ),
    // rbac.authorization.k8s.io/v1
    res(
        "rbac.authorization.k8s.io",
        "clusterrolebindings",
        "clusterrolebinding",
        "ClusterRoleBinding",
        false,
        NONE,
        NONE,
        &[],
    ),
    res(
        "rbac.authorization.k8s.io",
        "clusterroles",
        "clusterrole",
        "ClusterRole",
        false,
        NONE,
        NONE,
        &[],
    ),
    res(
        "rbac.authorization.k8s.io",
        "rolebindings",
        "rolebinding",
        "RoleBinding",
        true,
        NONE,
        NONE,
        &[],
    ),
    res(
        "rbac.authorization.k8s.io",
        "roles",
        "role",
        "Role",
        true,
        NONE,
        NONE,
        &[],
    ),
    // scheduling.k8s.io/v1
    res(
        "scheduling.k8s.io",
        "priorityclasses",
        "priorityclass",
        "PriorityClass",
        false,
        &["pc"],
        NONE,
        &[],
    ),
    // storage.k8s.io/v1
    res(
        "storage.k8s.io",
        "csidrivers",
        "csidriver",
        "CSIDriver",
        false,
        NONE,
        NONE,
        &[],
    ),
    res(
        "storage.k8s.io",
        "csinodes",
        "csinode",
        "CSINode",
        false,
        NONE,
        NONE,
        &[],
    ),
    res(
        "storage.k8s.io",
        "csistoragecapacities",
        "csistoragecapacity",
        "CSIStorageCapacity",
        true,
        NONE,
        NONE,
        &[],
    ),
    res(
        "storage.k8s.io",
        "storageclasses",
        "storageclass",
        "StorageClass",
        false,
        &["sc"],
        NONE,
        &[],
    ),
    res(
        "storage.k8s.io",
        "volumeattachments",
        "volumeattachment",
        "VolumeAttachment",
        false,
        NONE,
        NONE,
        &[status("storage.k8s.io", "VolumeAttachment")],
    ),
];

/// API groups in the order discovery lists them (core first, custom groups last).
pub fn groups() -> Vec<&'static str> {
    let mut out: Vec<&'static str> = Vec::new();
    for r in all() {
        if !out.contains(&r.group) {
            out.push(r.group);
        }
    }
    out
}

/// Indexes of the catalogue, built once: by (group, version, plural), the first resource of
/// each (group, plural), and the stored form of each resource (by position). Lookups are on
/// every request's path; these make them hash lookups and pointer arithmetic, not scans.
struct Index {
    by_gvp: std::collections::HashMap<(&'static str, &'static str, &'static str), usize>,
    by_gp: std::collections::HashMap<(&'static str, &'static str), usize>,
    stored: Vec<usize>,
}

static INDEX: std::sync::LazyLock<Index> = std::sync::LazyLock::new(|| {
    let mut by_gvp = std::collections::HashMap::new();
    let mut by_gp = std::collections::HashMap::new();
    for (i, r) in RESOURCES.iter().enumerate() {
        by_gvp.entry((r.group, r.version, r.plural)).or_insert(i);
        by_gp.entry((r.group, r.plural)).or_insert(i);
    }
    let stored = RESOURCES
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let to = VIEWS
                .iter()
                .find(|(from, _)| *from == (r.group, r.plural))
                .map_or((r.group, r.plural), |&(_, to)| to);
            by_gp.get(&to).copied().unwrap_or(i)
        })
        .collect();
    Index { by_gvp, by_gp, stored }
});

/// The position of `r` in [`RESOURCES`] (None for a resource not from it).
fn position(r: &'static Resource) -> Option<usize> {
    let base = RESOURCES.as_ptr() as usize;
    let at = (r as *const Resource as usize).checked_sub(base)?;
    let size = std::mem::size_of::<Resource>();
    (at % size == 0 && at / size < RESOURCES.len()).then_some(at / size)
}

/// The resource served at `group`/`version`/`plural`.
pub fn find(group: &str, version: &str, plural: &str) -> Option<&'static Resource> {
    INDEX
        .by_gvp
        .get(&(group, version, plural))
        .map(|&i| &RESOURCES[i])
        .or_else(|| {
            custom()
                .into_iter()
                .find(|r| (r.group, r.version, r.plural) == (group, version, plural))
        })
}

/// The first resource (the preferred version) named `plural` in `group`.
pub fn find_plural(group: &str, plural: &str) -> Option<&'static Resource> {
    INDEX
        .by_gp
        .get(&(group, plural))
        .map(|&i| &RESOURCES[i])
        .or_else(|| custom().into_iter().find(|r| (r.group, r.plural) == (group, plural)))
}

// ---------------------------------------------------------------------------------------
// Custom resources: served from CustomResourceDefinitions, changing at run time.

/// The custom resources served now, each version's preferred first within its group.
static CUSTOM: std::sync::RwLock<Vec<&'static Resource>> = std::sync::RwLock::new(Vec::new());

/// The storage version of each custom resource served now.
static CUSTOM_STORAGE: std::sync::RwLock<Vec<&'static Resource>> = std::sync::RwLock::new(Vec::new());

/// Every resource and string ever made for a custom resource, so that one served again
/// (a CRD updated, a server restarted in-process) reuses its `'static` data instead of
/// leaking more: what leaks is bounded by the distinct definitions ever seen.
static INTERNED: std::sync::Mutex<Interned> = std::sync::Mutex::new(Interned {
    strs: Vec::new(),
    resources: Vec::new(),
});

struct Interned {
    strs: Vec<&'static str>,
    resources: Vec<&'static Resource>,
}

impl Interned {
    fn str(&mut self, s: &str) -> &'static str {
        if let Some(found) = self.strs.iter().find(|x| **x == s) {
            return found;
        }
        let leaked: &'static str = Box::leak(s.to_string().into_boxed_str());
        self.strs.push(leaked);
        leaked
    }

    fn strs(&mut self, list: &[String]) -> &'static [&'static str] {
        let wanted: Vec<&'static str> = list.iter().map(|s| self.str(s)).collect();
        Box::leak(wanted.into_boxed_slice())
    }

    fn resource(&mut self, r: Resource) -> &'static Resource {
        if let Some(found) = self.resources.iter().find(|x| ***x == r) {
            return found;
        }
        let leaked: &'static Resource = Box::leak(Box::new(r));
        self.resources.push(leaked);
        leaked
    }
}

/// One served version of a custom resource, as a CustomResourceDefinition declares it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CustomVersion {
    /// API group.
    pub group: String,
    /// The version.
    pub version: String,
    /// Plural (URL) name.
    pub plural: String,
    /// Singular name.
    pub singular: String,
    /// Kind.
    pub kind: String,
    /// Namespaced or cluster-scoped.
    pub namespaced: bool,
    /// kubectl short names.
    pub short_names: Vec<String>,
    /// Categories (`all`).
    pub categories: Vec<String>,
    /// Serves the `status` subresource.
    pub status: bool,
    /// Serves the `scale` subresource.
    pub scale: bool,
    /// Is the version objects are stored in (the others are converted to it and back,
    /// upstream's `None` conversion: only `apiVersion` changes).
    pub storage: bool,
}

/// Serves exactly `versions` as the custom resources (in their order: each group's
/// preferred version first), replacing what was served before.
pub fn set_custom(versions: &[CustomVersion]) {
    let mut interned = INTERNED.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut served = Vec::new();
    let mut storage = Vec::new();
    for v in versions {
        let group = interned.str(&v.group);
        let version = interned.str(&v.version);
        let kind = interned.str(&v.kind);
        let mut subresources = Vec::new();
        if v.status {
            subresources.push(Subresource {
                name: "status",
                group,
                version,
                kind,
                verbs: STATUS_VERBS,
            });
        }
        if v.scale {
            subresources.push(scale());
        }
        let subresources: &'static [Subresource] = match interned
            .resources
            .iter()
            .find(|r| r.subresources == subresources.as_slice())
        {
            Some(r) => r.subresources,
            None => Box::leak(subresources.into_boxed_slice()),
        };
        let r = Resource {
            group,
            version,
            plural: interned.str(&v.plural),
            singular: interned.str(&v.singular),
            kind,
            namespaced: v.namespaced,
            short_names: interned.strs(&v.short_names),
            categories: interned.strs(&v.categories),
            verbs: ALL_VERBS,
            subresources,
        };
        let r = interned.resource(r);
        if v.storage {
            storage.push(r);
        }
        served.push(r);
    }
    *CUSTOM.write().unwrap_or_else(std::sync::PoisonError::into_inner) = served;
    *CUSTOM_STORAGE
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = storage;
}

/// The custom resources served now.
pub fn custom() -> Vec<&'static Resource> {
    CUSTOM.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
}

/// Whether `r` is a custom resource (served from a CustomResourceDefinition).
pub fn is_custom(r: &Resource) -> bool {
    // On every write: a pointer into the built-in table answers at once.
    let base = RESOURCES.as_ptr() as usize;
    let at = r as *const Resource as usize;
    let end = base + std::mem::size_of_val(RESOURCES);
    if (base..end).contains(&at) {
        return false;
    }
    !RESOURCES.iter().any(|b| b == r)
}

/// Every served resource: the built-in ones, then the custom ones.
pub fn all() -> Vec<&'static Resource> {
    RESOURCES.iter().chain(custom()).collect()
}

/// Resources that are another API's view of a core resource: (group, plural) seen through
/// (group, plural). events.k8s.io's Events are the core Events, converted.
const VIEWS: &[(GroupPlural, GroupPlural)] = &[(("events.k8s.io", "events"), ("", "events"))];

/// (group, plural).
type GroupPlural = (&'static str, &'static str);

/// The (group, plural) whose objects `group`/`plural` shows: itself, or the resource it is a
/// view of. Objects are stored (and keyed) under it.
pub fn stored_names(group: &str, plural: &str) -> (&'static str, &'static str) {
    match find_plural(group, plural) {
        Some(r) => {
            let s = stored_as(r);
            (s.group, s.plural)
        }
        None => ("", ""),
    }
}

/// The resource whose form is stored for `r`: `r` itself, the preferred version of its
/// group (autoscaling/v1 HorizontalPodAutoscalers are kept as v2), or the resource it is a
/// view of (events.k8s.io Events are core Events).
pub fn stored_as(r: &'static Resource) -> &'static Resource {
    match position(r) {
        Some(i) => &RESOURCES[INDEX.stored[i]],
        // A custom resource is stored in its definition's storage version.
        None => CUSTOM_STORAGE
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .find(|s| (s.group, s.plural) == (r.group, r.plural))
            .copied()
            .unwrap_or(r),
    }
}

/// True when `r`'s objects are stored in its own form (not a view or another version).
pub fn is_stored_form(r: &'static Resource) -> bool {
    std::ptr::eq(stored_as(r), r)
}

/// The resource whose kind is `kind` in `group` (the first version).
pub fn find_kind(group: &str, kind: &str) -> Option<&'static Resource> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.kind == kind)
        .or_else(|| custom().into_iter().find(|r| r.group == group && r.kind == kind))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn custom_resources_come_and_go_without_leaking_again() {
        let widget = |version: &str, status: bool| CustomVersion {
            group: "catalogue-test.example.com".into(),
            version: version.into(),
            plural: "widgets".into(),
            singular: "widget".into(),
            kind: "Widget".into(),
            namespaced: true,
            short_names: vec!["wd".into()],
            categories: vec!["all".into()],
            status,
            scale: false,
            storage: status,
        };
        set_custom(&[widget("v1", true), widget("v1beta1", false)]);
        let v1 = find("catalogue-test.example.com", "v1", "widgets").expect("served");
        assert!(is_custom(v1) && v1.namespaced && v1.subresource("status").is_some());
        assert!(
            std::ptr::eq(find_plural("catalogue-test.example.com", "widgets").unwrap(), v1),
            "preferred first"
        );
        assert!(std::ptr::eq(
            find_kind("catalogue-test.example.com", "Widget").unwrap(),
            v1
        ));
        let beta = find("catalogue-test.example.com", "v1beta1", "widgets").unwrap();
        assert!(beta.subresource("status").is_none());
        assert!(
            std::ptr::eq(stored_as(beta), v1) && is_stored_form(v1),
            "kept in the storage version"
        );
        assert!(groups().contains(&"catalogue-test.example.com"));
        assert!(!is_custom(find("apps", "v1", "daemonsets").unwrap()));
        // Served again: the same 'static resource, nothing leaked anew.
        set_custom(&[widget("v1", true)]);
        assert!(std::ptr::eq(
            find("catalogue-test.example.com", "v1", "widgets").unwrap(),
            v1
        ));
        assert!(find("catalogue-test.example.com", "v1beta1", "widgets").is_none());
        set_custom(&[]);
        assert!(find_plural("catalogue-test.example.com", "widgets").is_none());
        assert!(!groups().contains(&"catalogue-test.example.com"));
    }

    #[test]
    fn each_resource_knows_its_stored_form() {
        let v1 = find("autoscaling", "v1", "horizontalpodautoscalers").unwrap();
        let v2 = find("autoscaling", "v2", "horizontalpodautoscalers").unwrap();
        assert!(std::ptr::eq(stored_as(v1), v2));
        assert!(is_stored_form(v2) && !is_stored_form(v1));
        let events = find("events.k8s.io", "v1", "events").unwrap();
        assert_eq!((stored_as(events).group, stored_as(events).plural), ("", "events"));
        assert_eq!(stored_names("events.k8s.io", "events"), ("", "events"));
        assert_eq!(stored_names("apps", "deployments"), ("apps", "deployments"));
        assert_eq!(stored_names("apps", "nope"), ("", ""));
        assert!(std::ptr::eq(
            find_plural("autoscaling", "horizontalpodautoscalers").unwrap(),
            v2
        ));
        // Every resource but the views and older versions is its own stored form.
        let own = RESOURCES.iter().filter(|r| is_stored_form(r)).count();
        assert_eq!(own, RESOURCES.len() - 2);
        // A resource that is not from the catalogue is its own.
        let copy: &'static Resource = Box::leak(Box::new(RESOURCES[0]));
        assert!(std::ptr::eq(stored_as(copy), copy));
    }

    #[test]
    fn short_names_are_unique_across_groups_except_events() {
        let mut seen = std::collections::HashMap::new();
        for r in RESOURCES {
            for s in r.short_names {
                // One resource served in two versions (autoscaling's HPA) names itself twice.
                if let Some(prev) = seen.insert(*s, r.qualified())
                    && prev != r.qualified()
                {
                    assert_eq!(*s, "ev", "{s} used by {prev} and {}", r.qualified());
                }
            }
        }
    }

    #[test]
    fn daemonsets_are_namespaced_apps_v1_with_status() {
        let ds = find("apps", "v1", "daemonsets").unwrap();
        assert_eq!(ds.kind, "DaemonSet");
        assert!(ds.namespaced);
        assert_eq!(ds.short_names, &["ds"]);
        assert!(ds.subresource("status").is_some());
        assert!(ds.subresource("scale").is_none());
        assert_eq!(ds.qualified(), "daemonsets.apps");
    }
}
