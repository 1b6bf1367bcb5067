//! Node credentials and the node authorizer.
//!
//! An agent joins with the cluster's join secret (the part of the join token after
//! `::node:`) and receives, for the node name it asks for:
//! - a bearer token that identifies it as `system:node:<name>` ([`NodeAuth::node_token`]);
//! - a serving certificate for its own HTTPS endpoint, signed by the cluster CA, through
//!   which the API server reaches it for logs and exec;
//! - the token the API server presents to it there ([`NodeAuth::kubelet_token`]).
//!
//! Both tokens are HMACs of the node name under a key only the server holds, so nothing per
//! node is stored, and a token names exactly one node. [`authorize`] is what such a token
//! may do: read most of the API, and write only its own Node and Lease, the status of pods
//! bound to it, and Events (upstream's Node authorizer and NodeRestriction, in short).

use http::Method;
use serde_json::{Value, json};

use crate::request::Target;
use crate::status::{ApiError, ApiResult};

/// True when `a` and `b` are equal, in a time that does not depend on where they differ
/// (secrets, tokens and MACs are compared with it).
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Who sent a request. Requests without one come from in-process components.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Identity {
    /// Full access (the admin token, in-process components).
    Admin,
    /// A node agent: `system:node:<name>`.
    Node(String),
    /// Any other user, authorized by RBAC.
    User(User),
}

/// A user as authentication found it (upstream's `user.Info`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct User {
    /// The user name.
    pub name: String,
    /// Its uid (a ServiceAccount's uid, say), or empty.
    pub uid: String,
    /// Its groups (`system:authenticated` or `system:unauthenticated` among them).
    pub groups: Vec<String>,
    /// Further facts about the credential (the pod a token is bound to, say).
    pub extra: std::collections::BTreeMap<String, Vec<String>>,
}

impl User {
    /// A user with a name and groups only.
    pub fn new(name: impl Into<String>, groups: Vec<String>) -> User {
        User {
            name: name.into(),
            groups,
            ..Default::default()
        }
    }
}

/// The prefix of node tokens.
const NODE_TOKEN_PREFIX: &str = "shoal-node.";

/// What the server keeps to issue and check node credentials.
pub struct NodeAuth {
    join_secret: String,
    key: ring::hmac::Key,
    ca_pem: String,
    ca_key_pem: String,
    /// The front proxy's client certificate and key (PEM), minted when first needed.
    front_proxy: std::sync::OnceLock<Option<(String, String)>>,
}

/// The name the aggregator's client certificate carries (upstream's `front-proxy-client`);
/// extension API servers accept the front-proxy headers only from it.
pub const FRONT_PROXY_CLIENT: &str = "front-proxy-client";

impl NodeAuth {
    /// `join_secret` is what agents present to join; `key` signs node tokens (never leaves the
    /// server); the CA signs agents' serving certificates.
    pub fn new(join_secret: &str, key: &str, ca_pem: &str, ca_key_pem: &str) -> NodeAuth {
        NodeAuth {
            join_secret: join_secret.to_string(),
            key: ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key.as_bytes()),
            ca_pem: ca_pem.to_string(),
            ca_key_pem: ca_key_pem.to_string(),
            front_proxy: std::sync::OnceLock::new(),
        }
    }

    /// The aggregator's client certificate and key (PEM), signed by the cluster CA, with
    /// CN `front-proxy-client` and no groups (so it is granted nothing here).
    pub fn front_proxy_client(&self) -> Option<(String, String)> {
        self.front_proxy
            .get_or_init(|| {
                let year = std::time::Duration::from_secs(365 * 24 * 3600);
                crate::tls::issue_client_cert(&self.ca_key_pem, FRONT_PROXY_CLIENT, &[], year)
                    .inspect_err(|e| tracing::warn!(error = %e, "the front proxy's client certificate was not made"))
                    .ok()
            })
            .clone()
    }

    /// The cluster CA certificate (PEM).
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    fn mac(&self, purpose: &str, node: &str) -> String {
        let tag = ring::hmac::sign(&self.key, format!("{purpose}:{node}").as_bytes());
        hex(tag.as_ref())
    }

    /// The bearer token of node `node`: `shoal-node.<name>.<hmac>`.
    pub fn node_token(&self, node: &str) -> String {
        format!("{NODE_TOKEN_PREFIX}{node}.{}", self.mac("node", node))
    }

    /// The node a bearer token identifies, if it is a valid node token.
    pub fn verify_node_token(&self, token: &str) -> Option<String> {
        let rest = token.strip_prefix(NODE_TOKEN_PREFIX)?;
        let (node, mac) = rest.rsplit_once('.')?;
        let want = self.mac("node", node);
        constant_time_eq(want.as_bytes(), mac.as_bytes()).then(|| node.to_string())
    }

    /// The token the API server presents to node `node`'s agent endpoint.
    pub fn kubelet_token(&self, node: &str) -> String {
        self.mac("kubelet", node)
    }

    /// Whether `secret` is the join secret.
    pub fn is_join_secret(&self, secret: &str) -> bool {
        constant_time_eq(self.join_secret.as_bytes(), secret.as_bytes())
    }

    /// Answers a join: `request` is `{"nodeName": ..., "addresses": [...]}`. Returns the
    /// node's credentials: `token`, `kubeletToken`, `servingCertificate`, `servingKey`, `ca`.
    pub fn credentials(&self, request: &Value) -> ApiResult<Value> {
        let node = request["nodeName"].as_str().unwrap_or_default();
        let problems = shoal_api::validation::names::is_dns1123_subdomain(node);
        if !problems.is_empty() {
            return Err(ApiError::bad_request(format!(
                "invalid nodeName {node:?}: {}",
                problems.join("; ")
            )));
        }
        let mut names = vec![node.to_string()];
        for a in request["addresses"].as_array().into_iter().flatten() {
            match a.as_str().map(str::parse::<std::net::IpAddr>) {
                Some(Ok(ip)) => names.push(ip.to_string()),
                _ => {
                    return Err(ApiError::bad_request(format!(
                        "invalid address {a}: want an IP address"
                    )));
                }
            }
        }
        let (cert, key) = crate::tls::issue_serving_cert(&self.ca_key_pem, node, &names)
            .map_err(|e| ApiError::internal(format!("issuing a serving certificate: {e}")))?;
        Ok(json!({
            "nodeName": node,
            "token": self.node_token(node),
            "kubeletToken": self.kubelet_token(node),
            "servingCertificate": cert,
            "servingKey": key,
            "ca": self.ca_pem,
        }))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What the authorizer needs to know of the cluster: the pods it judges by.
pub trait Lookup {
    /// The node the pod `namespace/name` is bound to, if it exists (empty: not bound yet).
    fn pod_node(&self, namespace: &str, name: &str) -> Option<String>;
    /// Whether some pod bound to `node` in `namespace` refers to the `kind` (`secret` or
    /// `configmap`) named `name`.
    fn node_pod_uses(&self, node: &str, namespace: &str, kind: RefKind, name: &str) -> bool;
    /// The claim (namespace, name) PersistentVolume `pv` is bound to, if it exists and is.
    fn volume_claim(&self, pv: &str) -> Option<(String, String)>;
}

/// What a pod can refer to that a node may then read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefKind {
    /// A Secret.
    Secret,
    /// A ConfigMap.
    ConfigMap,
    /// A ServiceAccount (whose tokens the node may request for the pod).
    ServiceAccount,
    /// A PersistentVolumeClaim (named by a volume, or a pod's generic ephemeral volume).
    Claim,
}

/// The verb of a request, as RBAC names it.
pub fn verb(method: &Method, target: &Target, watch: bool) -> &'static str {
    match *method {
        Method::GET if watch => "watch",
        Method::GET if target.name.is_none() => "list",
        Method::GET => "get",
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE if target.name.is_none() => "deletecollection",
        Method::DELETE => "delete",
        _ => "unknown",
    }
}

/// Whether node `node` may do `verb` on `target`; `body_name` is the name in a create's body.
/// The error is upstream's 403 wording.
pub fn authorize(node: &str, verb: &str, t: &Target, body_name: Option<&str>, lookup: &impl Lookup) -> ApiResult<()> {
    let res = t.res;
    let sub = t.subresource.as_deref();
    let name = t.name.as_deref().or(body_name).unwrap_or_default();
    let ns = t.namespace.as_deref().unwrap_or_default();
    let read = matches!(verb, "get" | "list" | "watch");
    let deny = |why: &str| Err(forbidden(node, verb, t, name, why));
    match (res.group, res.plural, sub) {
        ("", "secrets" | "configmaps", None) if read => {
            let kind = if res.plural == "secrets" {
                RefKind::Secret
            } else {
                RefKind::ConfigMap
            };
            if verb == "get" && lookup.node_pod_uses(node, ns, kind, name) {
                return Ok(());
            }
            deny(&format!("no relationship found between node '{node}' and this object"))
        }
        // The graph of upstream's Node authorizer: a node gets the claims, volumes and
        // ServiceAccounts of the pods bound to it (one at a time: never a list or a watch).
        ("", "persistentvolumeclaims" | "serviceaccounts", None) if read => {
            let kind = if res.plural == "serviceaccounts" {
                RefKind::ServiceAccount
            } else {
                RefKind::Claim
            };
            if verb == "get" && lookup.node_pod_uses(node, ns, kind, name) {
                return Ok(());
            }
            deny(&format!("no relationship found between node '{node}' and this object"))
        }
        ("", "persistentvolumes", None) if read => {
            let related = lookup
                .volume_claim(name)
                .is_some_and(|(claim_ns, claim)| lookup.node_pod_uses(node, &claim_ns, RefKind::Claim, &claim));
            if verb == "get" && related {
                return Ok(());
            }
            deny(&format!("no relationship found between node '{node}' and this object"))
        }
        // A token for the ServiceAccount of a pod bound here (the token request itself must
        // bind it to such a pod: [`crate::ApiServer::token_request`] checks that).
        ("", "serviceaccounts", Some("token")) if verb == "create" => {
            if lookup.node_pod_uses(node, ns, RefKind::ServiceAccount, name) {
                return Ok(());
            }
            deny(&format!("no relationship found between node '{node}' and this object"))
        }
        // Upstream's Node authorizer has no opinion on these and the node role grants none:
        // refused without a reason.
        ("", "pods", Some("log" | "exec" | "attach" | "portforward" | "proxy")) => deny(""),
        (_, _, _) if read => Ok(()),
        ("", "nodes", None | Some("status")) => match verb {
            "create" | "update" | "patch" if name == node => Ok(()),
            "create" | "update" | "patch" => deny(&format!("node '{node}' cannot modify node '{name}'")),
            _ => deny(&format!("node '{node}' cannot {verb} nodes")),
        },
        ("coordination.k8s.io", "leases", None) => {
            if ns == "kube-node-lease" && name == node && matches!(verb, "create" | "update" | "patch") {
                Ok(())
            } else {
                deny(&format!(
                    "node '{node}' can only access its own lease in the kube-node-lease namespace"
                ))
            }
        }
        ("", "pods", Some("status")) if matches!(verb, "update" | "patch") => {
            bound_here(node, ns, name, lookup).then_some(()).ok_or_else(|| {
                forbidden(
                    node,
                    verb,
                    t,
                    name,
                    &format!("node '{node}' can only update pod status for pods with spec.nodeName set to itself"),
                )
            })
        }
        ("", "pods", None) if verb == "delete" => bound_here(node, ns, name, lookup).then_some(()).ok_or_else(|| {
            forbidden(
                node,
                verb,
                t,
                name,
                &format!("node '{node}' can only delete pods with spec.nodeName set to itself"),
            )
        }),
        ("", "events", None) | ("events.k8s.io", "events", None) if matches!(verb, "create" | "update" | "patch") => {
            Ok(())
        }
        _ => deny(&format!("node '{node}' may not {verb} {}", res.qualified())),
    }
}

/// Upstream's NodeRestriction admission, on the object a node's write would store: a node
/// may register itself with any taints but not with restricted labels, and once registered it
/// may change neither its taints, nor its restricted labels, nor its owner references.
/// `old` is the stored object (`None` for a create).
pub fn admit(node: &str, t: &Target, new: &Value, old: Option<&Value>) -> ApiResult<()> {
    if (t.res.group, t.res.kind) != ("", "Node") {
        return Ok(());
    }
    let name = new["metadata"]["name"].as_str().unwrap_or_default();
    let refuse = |why: String| {
        let mut e = ApiError::forbidden(format!("nodes \"{name}\" is forbidden: {why}"));
        e.details = Some(json!({"name": name, "kind": "nodes"}));
        Err(e)
    };
    if name != node {
        return refuse(format!("node {node:?} is not allowed to modify node {name:?}"));
    }
    let labels = |v: &Value| v["metadata"]["labels"].as_object().cloned().unwrap_or_default();
    let new_labels = labels(new);
    let Some(old) = old else {
        let mut set: Vec<&str> = new_labels
            .keys()
            .map(String::as_str)
            .filter(|k| restricted_label(k))
            .collect();
        set.sort_unstable();
        if !set.is_empty() {
            return refuse(format!(
                "node {node:?} is not allowed to set the following labels: {}",
                set.join(", ")
            ));
        }
        return Ok(());
    };
    if new["spec"]["configSource"] != old["spec"]["configSource"] && !new["spec"]["configSource"].is_null() {
        return refuse(format!(
            "node {node:?} is not allowed to update configSource to a new non-nil configSource"
        ));
    }
    let taints = |v: &Value| v["spec"]["taints"].as_array().cloned().unwrap_or_default();
    if taints(new) != taints(old) {
        return refuse(format!("node {node:?} is not allowed to modify taints"));
    }
    let old_labels = labels(old);
    let mut changed: Vec<&str> = new_labels
        .keys()
        .chain(old_labels.keys())
        .map(String::as_str)
        .filter(|k| restricted_label(k) && new_labels.get(*k) != old_labels.get(*k))
        .collect();
    changed.sort_unstable();
    changed.dedup();
    if !changed.is_empty() {
        return refuse(format!("is not allowed to modify labels: {}", changed.join(", ")));
    }
    let owners = |v: &Value| v["metadata"]["ownerReferences"].as_array().cloned().unwrap_or_default();
    if owners(new) != owners(old) {
        return refuse(format!("node {node:?} is not allowed to modify ownerReferences"));
    }
    Ok(())
}

/// Labels a kubelet may set on its Node although they are in the `kubernetes.io` and
/// `k8s.io` namespaces (upstream's kubelet label list).
const KUBELET_LABELS: &[&str] = &[
    "kubernetes.io/hostname",
    "topology.kubernetes.io/zone",
    "topology.kubernetes.io/region",
    "failure-domain.beta.kubernetes.io/zone",
    "failure-domain.beta.kubernetes.io/region",
    "node.kubernetes.io/instance-type",
    "beta.kubernetes.io/instance-type",
    "kubernetes.io/os",
    "kubernetes.io/arch",
    "beta.kubernetes.io/os",
    "beta.kubernetes.io/arch",
];

fn in_domain(prefix: &str, domain: &str) -> bool {
    prefix == domain || prefix.strip_suffix(domain).is_some_and(|p| p.ends_with('.'))
}

/// Whether a node may not set or change label `key` on its own Node: everything under
/// `node-restriction.kubernetes.io`, and under `kubernetes.io` and `k8s.io` all but the
/// kubelet's own labels (and the `kubelet.kubernetes.io` and `node.kubernetes.io` namespaces).
pub fn restricted_label(key: &str) -> bool {
    let Some((prefix, _)) = key.split_once('/') else {
        return false;
    };
    if in_domain(prefix, "node-restriction.kubernetes.io") {
        return true;
    }
    let kube = in_domain(prefix, "kubernetes.io") || in_domain(prefix, "k8s.io");
    let kubelet = KUBELET_LABELS.contains(&key)
        || in_domain(prefix, "kubelet.kubernetes.io")
        || in_domain(prefix, "node.kubernetes.io");
    kube && !kubelet
}

fn bound_here(node: &str, ns: &str, name: &str, lookup: &impl Lookup) -> bool {
    lookup.pod_node(ns, name).is_some_and(|n| n == node)
}

/// Upstream's wording: `pods "x" is forbidden: User "system:node:n" cannot patch resource
/// "pods/status" in API group "" in the namespace "default": <why>`.
fn forbidden(node: &str, verb: &str, t: &Target, name: &str, why: &str) -> ApiError {
    let attrs = crate::review::Attributes::of_target(verb, t, Some(name));
    let mut e = crate::rbac::forbidden(&format!("system:node:{node}"), &attrs);
    if !why.is_empty() {
        e.message = format!("{}: {why}", e.message);
    }
    e
}

/// Whether `pod` refers to the Secret or ConfigMap `name` (volumes, projected volumes,
/// env, envFrom, image pull secrets).
pub fn pod_refers_to(pod: &Value, kind: RefKind, name: &str) -> bool {
    let spec = &pod["spec"];
    let is = |v: &Value| v.as_str() == Some(name);
    let (vol_key, vol_field, env_key, from_key) = match kind {
        RefKind::Secret => ("secret", "secretName", "secretKeyRef", "secretRef"),
        RefKind::ConfigMap => ("configMap", "name", "configMapKeyRef", "configMapRef"),
        RefKind::ServiceAccount => {
            let account = spec["serviceAccountName"]
                .as_str()
                .filter(|s| !s.is_empty())
                .unwrap_or("default");
            return account == name;
        }
        RefKind::Claim => {
            let pod_name = pod["metadata"]["name"].as_str().unwrap_or_default();
            return spec["volumes"].as_array().into_iter().flatten().any(|v| {
                is(&v["persistentVolumeClaim"]["claimName"])
                    || (v["ephemeral"].is_object()
                        && v["name"]
                            .as_str()
                            .is_some_and(|vol| format!("{pod_name}-{vol}") == name))
            });
        }
    };
    let volumes = spec["volumes"].as_array().into_iter().flatten();
    for v in volumes {
        if is(&v[vol_key][vol_field]) {
            return true;
        }
        for s in v["projected"]["sources"].as_array().into_iter().flatten() {
            if is(&s[vol_key]["name"]) {
                return true;
            }
        }
    }
    if kind == RefKind::Secret
        && spec["imagePullSecrets"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|s| is(&s["name"]))
    {
        return true;
    }
    let containers = ["containers", "initContainers", "ephemeralContainers"]
        .iter()
        .flat_map(|k| spec[*k].as_array().into_iter().flatten());
    for c in containers {
        if c["env"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|e| is(&e["valueFrom"][env_key]["name"]))
            || c["envFrom"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|e| is(&e[from_key]["name"]))
        {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_comparison_is_exact() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }

    struct Pods(Vec<Value>);

    impl Lookup for Pods {
        fn pod_node(&self, namespace: &str, name: &str) -> Option<String> {
            self.0
                .iter()
                .find(|p| p["metadata"]["namespace"] == namespace && p["metadata"]["name"] == name)
                .map(|p| p["spec"]["nodeName"].as_str().unwrap_or_default().to_string())
        }
        fn node_pod_uses(&self, node: &str, namespace: &str, kind: RefKind, name: &str) -> bool {
            self.0.iter().any(|p| {
                p["metadata"]["namespace"] == namespace && p["spec"]["nodeName"] == node && pod_refers_to(p, kind, name)
            })
        }
        fn volume_claim(&self, pv: &str) -> Option<(String, String)> {
            match pv {
                "pv-mine" => Some(("default".into(), "data-mine".into())),
                "pv-theirs" => Some(("default".into(), "data-theirs".into())),
                _ => None,
            }
        }
    }

    #[test]
    fn a_node_gets_the_claims_volumes_and_accounts_of_its_pods_only() {
        let p = Pods(vec![
            json!({"metadata": {"namespace": "default", "name": "mine"}, "spec": {"nodeName": "n1",
                "serviceAccountName": "builder",
                "volumes": [{"name": "v", "persistentVolumeClaim": {"claimName": "data-mine"}},
                            {"name": "scratch", "ephemeral": {"volumeClaimTemplate": {"spec": {}}}}]}}),
            json!({"metadata": {"namespace": "default", "name": "theirs"}, "spec": {"nodeName": "n2",
                "volumes": [{"name": "v", "persistentVolumeClaim": {"claimName": "data-theirs"}}]}}),
        ]);
        let ok = |verb: &str, t: &Target| authorize("n1", verb, t, None, &p).is_ok();
        let claim = |name| target("", "v1", "persistentvolumeclaims", Some("default"), Some(name), None);
        let volume = |name| target("", "v1", "persistentvolumes", None, Some(name), None);
        let account = |name| target("", "v1", "serviceaccounts", Some("default"), Some(name), None);
        assert!(ok("get", &claim("data-mine")));
        assert!(ok("get", &claim("mine-scratch")), "a generic ephemeral volume's claim");
        assert!(!ok("get", &claim("data-theirs")));
        assert!(!ok(
            "list",
            &target("", "v1", "persistentvolumeclaims", Some("default"), None, None)
        ));
        assert!(ok("get", &volume("pv-mine")));
        assert!(!ok("get", &volume("pv-theirs")));
        assert!(!ok("get", &volume("pv-unbound")));
        assert!(!ok("watch", &target("", "v1", "persistentvolumes", None, None, None)));
        assert!(ok("get", &account("builder")));
        assert!(!ok("get", &account("default")), "no pod of n1 runs as default");
        let e = authorize("n1", "get", &claim("data-theirs"), None, &p).unwrap_err();
        assert!(
            e.message
                .contains("no relationship found between node 'n1' and this object"),
            "{}",
            e.message
        );
    }

    fn target(
        group: &str,
        version: &str,
        plural: &str,
        ns: Option<&str>,
        name: Option<&str>,
        sub: Option<&str>,
    ) -> Target {
        Target {
            res: shoal_api::catalogue::find(group, version, plural).expect("served"),
            namespace: ns.map(str::to_string),
            name: name.map(str::to_string),
            subresource: sub.map(str::to_string),
        }
    }

    fn pods() -> Pods {
        Pods(vec![
            json!({"metadata": {"namespace": "default", "name": "mine"}, "spec": {"nodeName": "n1",
                "volumes": [{"name": "v", "secret": {"secretName": "s1"}}],
                "containers": [{"name": "c", "envFrom": [{"configMapRef": {"name": "cm1"}}]}]}}),
            json!({"metadata": {"namespace": "default", "name": "theirs"}, "spec": {"nodeName": "n2",
                "volumes": [{"name": "v", "secret": {"secretName": "s2"}}]}}),
        ])
    }

    #[test]
    fn node_tokens_name_one_node_and_cannot_be_forged() {
        let auth = NodeAuth::new("join", "key", "ca", "cakey");
        let t = auth.node_token("n1");
        assert_eq!(auth.verify_node_token(&t).as_deref(), Some("n1"));
        let forged = t.replace("n1", "n2");
        assert_eq!(auth.verify_node_token(&forged), None);
        let other = NodeAuth::new("join", "other-key", "ca", "cakey");
        assert_eq!(other.verify_node_token(&t), None);
        assert_eq!(auth.verify_node_token("admin"), None);
        assert_ne!(auth.kubelet_token("n1"), auth.kubelet_token("n2"));
        assert!(auth.is_join_secret("join") && !auth.is_join_secret("joi"));
    }

    #[test]
    fn a_node_writes_only_its_node_lease_and_pods() {
        let p = pods();
        let ok = |verb: &str, t: &Target, body: Option<&str>| authorize("n1", verb, t, body, &p).is_ok();
        assert!(ok(
            "patch",
            &target("", "v1", "nodes", None, Some("n1"), Some("status")),
            None
        ));
        assert!(ok("create", &target("", "v1", "nodes", None, None, None), Some("n1")));
        assert!(!ok(
            "patch",
            &target("", "v1", "nodes", None, Some("n2"), Some("status")),
            None
        ));
        assert!(!ok("create", &target("", "v1", "nodes", None, None, None), Some("n2")));
        assert!(!ok("delete", &target("", "v1", "nodes", None, Some("n1"), None), None));
        let lease = |ns, name| target("coordination.k8s.io", "v1", "leases", Some(ns), Some(name), None);
        assert!(ok("update", &lease("kube-node-lease", "n1"), None));
        assert!(!ok("update", &lease("kube-node-lease", "n2"), None));
        assert!(!ok("update", &lease("default", "n1"), None));
        let pod = |name, sub| target("", "v1", "pods", Some("default"), Some(name), sub);
        assert!(ok("patch", &pod("mine", Some("status")), None));
        assert!(ok("delete", &pod("mine", None), None));
        assert!(!ok("patch", &pod("theirs", Some("status")), None));
        assert!(!ok("delete", &pod("theirs", None), None));
        assert!(!ok("patch", &pod("mine", None), None), "only the status");
        assert!(!ok("create", &pod("x", Some("exec")), None));
        assert!(!ok(
            "create",
            &target("", "v1", "pods", Some("default"), None, None),
            Some("x")
        ));
        assert!(!ok(
            "create",
            &target("apps", "v1", "daemonsets", Some("default"), None, None),
            Some("x")
        ));
        assert!(ok(
            "create",
            &target("", "v1", "events", Some("default"), None, None),
            Some("e")
        ));
        assert!(ok("list", &target("", "v1", "pods", None, None, None), None));
        assert!(ok("watch", &target("", "v1", "nodes", None, None, None), None));
    }

    #[test]
    fn a_node_reads_only_the_secrets_and_config_maps_its_pods_use() {
        let p = pods();
        let ok = |verb: &str, plural: &str, name: Option<&str>| {
            authorize(
                "n1",
                verb,
                &target("", "v1", plural, Some("default"), name, None),
                None,
                &p,
            )
            .is_ok()
        };
        assert!(ok("get", "secrets", Some("s1")));
        assert!(!ok("get", "secrets", Some("s2")), "used by a pod of another node");
        assert!(!ok("list", "secrets", None));
        assert!(ok("get", "configmaps", Some("cm1")));
        assert!(!ok("get", "configmaps", Some("cm2")));
    }

    #[test]
    fn refusals_use_upstream_wording() {
        let t = target("", "v1", "pods", Some("default"), Some("theirs"), Some("status"));
        let e = authorize("n1", "patch", &t, None, &pods()).unwrap_err();
        assert_eq!(e.code, 403);
        assert_eq!(
            e.message,
            "pods \"theirs\" is forbidden: User \"system:node:n1\" cannot patch resource \"pods/status\" in API group \"\" in the namespace \"default\": node 'n1' can only update pod status for pods with spec.nodeName set to itself"
        );
    }

    #[test]
    fn nodes_read_no_pod_logs_and_open_no_streams() {
        let p = pods();
        for sub in ["log", "exec", "attach", "portforward"] {
            let t = target("", "v1", "pods", Some("default"), Some("mine"), Some(sub));
            let e = authorize("n1", "get", &t, None, &p).unwrap_err();
            assert_eq!(e.code, 403, "{sub}");
        }
        let t = target("", "v1", "pods", Some("default"), Some("mine"), Some("log"));
        assert_eq!(
            authorize("n1", "get", &t, None, &p).unwrap_err().message,
            "pods \"mine\" is forbidden: User \"system:node:n1\" cannot get resource \"pods/log\" in API group \"\" in the namespace \"default\""
        );
    }

    #[test]
    fn a_node_may_not_change_its_taints_restricted_labels_or_owners() {
        let t = target("", "v1", "nodes", None, Some("n1"), None);
        let old = json!({"metadata": {"name": "n1", "labels": {"kubernetes.io/hostname": "n1", "team": "a",
            "node-restriction.kubernetes.io/pool": "gold"}},
            "spec": {"taints": [{"key": "dedicated", "value": "db", "effect": "NoSchedule"}]}});
        let with = |f: &dyn Fn(&mut Value)| {
            let mut v = old.clone();
            f(&mut v);
            admit("n1", &t, &v, Some(&old))
        };
        assert!(with(&|_| {}).is_ok());
        assert!(
            with(&|v| v["metadata"]["labels"]["team"] = json!("b")).is_ok(),
            "ordinary labels are free"
        );
        assert!(with(&|v| v["metadata"]["labels"]["topology.kubernetes.io/zone"] = json!("z")).is_ok());
        assert!(
            with(
                &|v| v["metadata"]["labels"]["node.kubernetes.io/exclude-from-external-load-balancers"] = json!("true")
            )
            .is_ok()
        );
        let e = with(&|v| v["spec"]["taints"] = json!([])).unwrap_err();
        assert_eq!(
            e.message,
            "nodes \"n1\" is forbidden: node \"n1\" is not allowed to modify taints"
        );
        let e = with(&|v| v["metadata"]["labels"]["node-restriction.kubernetes.io/pool"] = json!("free")).unwrap_err();
        assert_eq!(
            e.message,
            "nodes \"n1\" is forbidden: is not allowed to modify labels: node-restriction.kubernetes.io/pool"
        );
        assert!(with(&|v| v["metadata"]["labels"]["node-role.kubernetes.io/control-plane"] = json!("")).is_err());
        assert!(with(&|v| v["metadata"]["ownerReferences"] = json!([{"kind": "X"}])).is_err());
        // Registration may carry taints, not restricted labels.
        let fresh = json!({"metadata": {"name": "n1"}, "spec": {"taints": [{"key": "k", "effect": "NoSchedule"}]}});
        assert!(admit("n1", &t, &fresh, None).is_ok());
        let fresh = json!({"metadata": {"name": "n1", "labels": {"example.k8s.io/x": "1", "node-restriction.kubernetes.io/a": "1"}}});
        assert_eq!(
            admit("n1", &t, &fresh, None).unwrap_err().message,
            "nodes \"n1\" is forbidden: node \"n1\" is not allowed to set the following labels: example.k8s.io/x, node-restriction.kubernetes.io/a"
        );
        let other = json!({"metadata": {"name": "n2"}});
        assert!(admit("n1", &t, &other, None).is_err());
    }

    #[test]
    fn restricted_labels_follow_upstreams_domains() {
        for k in [
            "node-restriction.kubernetes.io/x",
            "a.node-restriction.kubernetes.io/x",
            "kubernetes.io/role",
            "node-role.kubernetes.io/worker",
            "k8s.io/x",
        ] {
            assert!(restricted_label(k), "{k}");
        }
        for k in [
            "team",
            "example.com/x",
            "kubernetes.io/hostname",
            "kubelet.kubernetes.io/x",
            "a.node.kubernetes.io/x",
            "notkubernetes.io/x",
        ] {
            assert!(!restricted_label(k), "{k}");
        }
    }

    #[test]
    fn pods_refer_to_secrets_and_config_maps_in_every_place() {
        let pod = json!({"spec": {
            "imagePullSecrets": [{"name": "pull"}],
            "volumes": [{"name": "p", "projected": {"sources": [{"secret": {"name": "proj"}}, {"configMap": {"name": "pcm"}}]}}],
            "initContainers": [{"name": "i", "env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "envs", "key": "k"}}}]}],
            "containers": [{"name": "c", "env": [{"name": "Y", "valueFrom": {"configMapKeyRef": {"name": "envcm", "key": "k"}}}]}],
        }});
        for s in ["pull", "proj", "envs"] {
            assert!(pod_refers_to(&pod, RefKind::Secret, s), "{s}");
        }
        for c in ["pcm", "envcm"] {
            assert!(pod_refers_to(&pod, RefKind::ConfigMap, c), "{c}");
        }
        assert!(!pod_refers_to(&pod, RefKind::Secret, "pcm"));
        assert!(!pod_refers_to(&pod, RefKind::ConfigMap, "pull"));
    }
}
