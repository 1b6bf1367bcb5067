//! The review kinds of authentication.k8s.io and authorization.k8s.io: created and answered,
//! never stored. `kubectl auth whoami` (SelfSubjectReview), `kubectl auth can-i`
//! (SelfSubjectAccessReview, `--list`: SelfSubjectRulesReview), webhooks and proxies
//! (TokenReview, SubjectAccessReview, LocalSubjectAccessReview).
//!
//! Who may do what is what shoal enforces: the admin (`system:masters`) everything, a node
//! what the node authorizer allows it, and everyone what RBAC grants ([`crate::rbac`]).

use serde_json::{Value, json};

use crate::ApiServer;
use crate::nodeauth::{self, Identity};
use crate::request::Target;
use crate::status::{ApiError, ApiResult};

/// The admin's user name (as k3s names it).
pub const ADMIN_USER: &str = "system:admin";

/// `user.Info` of an identity: its name and groups.
pub fn user_info(who: &Identity) -> Value {
    let (name, groups) = name_and_groups(who);
    let mut info = json!({"username": name, "groups": groups});
    if let Identity::User(u) = who {
        if !u.uid.is_empty() {
            info["uid"] = json!(u.uid);
        }
        if !u.extra.is_empty() {
            info["extra"] = json!(u.extra);
        }
    }
    info
}

/// The user name and groups of an identity.
pub fn name_and_groups(who: &Identity) -> (String, Vec<String>) {
    let names = |list: &[&str]| list.iter().map(|g| g.to_string()).collect();
    match who {
        Identity::Admin => (
            ADMIN_USER.to_string(),
            names(&["system:masters", "system:authenticated"]),
        ),
        Identity::Node(n) => (
            format!("system:node:{n}"),
            names(&["system:nodes", "system:authenticated"]),
        ),
        Identity::User(u) => (u.name.clone(), u.groups.clone()),
    }
}

/// What an authorization review asks: a verb on a resource (or a non-resource path).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Attributes {
    /// `resourceAttributes`.
    Resource {
        verb: String,
        group: String,
        resource: String,
        subresource: String,
        namespace: String,
        name: String,
    },
    /// `nonResourceAttributes`.
    NonResource { verb: String, path: String },
}

impl Attributes {
    /// `verb` on the object or collection `t` names (`name` for a create's new object).
    pub fn of_target(verb: &str, t: &Target, name: Option<&str>) -> Attributes {
        Attributes::Resource {
            verb: verb.to_string(),
            group: t.res.group.to_string(),
            resource: t.res.plural.to_string(),
            subresource: t.subresource.clone().unwrap_or_default(),
            namespace: t.namespace.clone().unwrap_or_default(),
            name: name.or(t.name.as_deref()).unwrap_or_default().to_string(),
        }
    }

    fn of(spec: &Value) -> ApiResult<Attributes> {
        let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
        if let Some(r) = spec.get("resourceAttributes").filter(|r| r.is_object()) {
            return Ok(Attributes::Resource {
                verb: s(&r["verb"]),
                group: s(&r["group"]),
                resource: s(&r["resource"]),
                subresource: s(&r["subresource"]),
                namespace: s(&r["namespace"]),
                name: s(&r["name"]),
            });
        }
        if let Some(n) = spec.get("nonResourceAttributes").filter(|n| n.is_object()) {
            return Ok(Attributes::NonResource {
                verb: s(&n["verb"]),
                path: s(&n["path"]),
            });
        }
        Err(ApiError::invalid_message(
            "spec.resourceAttributes: Invalid value: \"null\": exactly one of nonResourceAttributes or resourceAttributes must be specified",
        ))
    }
}

/// Whether `user` (with `groups`) may do what `attrs` ask, and why: as upstream's
/// authorizer chain, `system:masters` may do anything, then the node authorizer decides for
/// nodes, then RBAC for everyone.
pub fn decide(
    user: &str,
    groups: &[String],
    attrs: &Attributes,
    lookup: &(impl nodeauth::Lookup + crate::rbac::Policy),
) -> (bool, String) {
    if groups.iter().any(|g| g == "system:masters") {
        return (true, String::new());
    }
    let node_decision = user
        .strip_prefix("system:node:")
        .map(|node| node_decides(node, attrs, lookup));
    if let Some((true, _)) = node_decision {
        return (true, String::new());
    }
    if crate::rbac::allows(lookup, user, groups, attrs) {
        return (true, String::new());
    }
    // The node authorizer's reason, if it was asked; RBAC gives none.
    node_decision.unwrap_or_default()
}

/// The node authorizer's decision for node `node`.
fn node_decides(node: &str, attrs: &Attributes, lookup: &impl nodeauth::Lookup) -> (bool, String) {
    match attrs {
        Attributes::NonResource { verb, .. } => (verb == "get", String::new()),
        Attributes::Resource {
            verb,
            group,
            resource,
            subresource,
            namespace,
            name,
        } => {
            let Some(res) = shoal_api::catalogue::RESOURCES
                .iter()
                .find(|r| r.group == group && r.plural == resource)
            else {
                return (
                    false,
                    format!("the server does not serve {resource:?} in group {group:?}"),
                );
            };
            let t = Target {
                res,
                namespace: (!namespace.is_empty()).then(|| namespace.clone()),
                name: (!name.is_empty()).then(|| name.clone()),
                subresource: (!subresource.is_empty()).then(|| subresource.clone()),
            };
            match nodeauth::authorize(node, verb, &t, None, lookup) {
                Ok(()) => (true, String::new()),
                Err(e) => (false, e.message),
            }
        }
    }
}

impl ApiServer {
    /// Answers a review `obj` of kind `t.res.kind` sent by `who` (`None`: in-process, with
    /// the admin's rights): the object with its `status` filled in.
    pub fn review(&self, t: &Target, mut obj: Value, who: Option<&Identity>) -> ApiResult<Value> {
        let who = who.cloned().unwrap_or(Identity::Admin);
        let me = user_info(&who);
        let (_, my_groups) = name_and_groups(&who);
        let status = match t.res.kind {
            "SelfSubjectReview" => json!({"userInfo": me}),
            "TokenReview" => {
                let token = obj["spec"]["token"].as_str().unwrap_or_default();
                let audiences: Vec<String> = obj["spec"]["audiences"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|a| a.as_str().map(str::to_string))
                    .collect();
                // A ServiceAccount token is checked against the audiences asked about; the
                // other credentials are the API server's own (valid for its audiences only).
                let found = self.authenticate_service_account(token, &audiences).or_else(|| {
                    let api = [crate::satoken::ISSUER.to_string()];
                    let matched: Vec<String> = if audiences.is_empty() {
                        api.to_vec()
                    } else {
                        audiences.iter().filter(|a| api.contains(a)).cloned().collect()
                    };
                    self.authenticate_server_credential(token)
                        .filter(|_| !matched.is_empty())
                        .map(|who| (who, matched))
                });
                match found {
                    Some((id, matched)) => json!({"authenticated": true, "user": user_info(&id), "audiences": matched}),
                    None => json!({"authenticated": false, "user": {}, "error": "invalid bearer token"}),
                }
            }
            "SelfSubjectAccessReview" => {
                let attrs = Attributes::of(&obj["spec"])?;
                access_status(decide(
                    me["username"].as_str().unwrap_or_default(),
                    &my_groups,
                    &attrs,
                    self,
                ))
            }
            "SubjectAccessReview" | "LocalSubjectAccessReview" => {
                let mut attrs = Attributes::of(&obj["spec"])?;
                if t.res.kind == "LocalSubjectAccessReview"
                    && let Attributes::Resource { namespace, .. } = &mut attrs
                {
                    namespace.clone_from(&t.namespace.clone().unwrap_or_default());
                }
                let user = obj["spec"]["user"].as_str().unwrap_or_default().to_string();
                let groups: Vec<String> = obj["spec"]["groups"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|g| g.as_str().map(str::to_string))
                    .collect();
                if user.is_empty() && groups.is_empty() {
                    return Err(ApiError::invalid_message(format!(
                        "{} \"\" is invalid: spec.user: Invalid value: \"\": at least one of user or group must be specified",
                        t.res.qualified_kind()
                    )));
                }
                access_status(decide(&user, &groups, &attrs, self))
            }
            "SelfSubjectRulesReview" if !matches!(who, Identity::Node(_)) && !groups_include_masters(&my_groups) => {
                let namespace = obj["spec"]["namespace"].as_str().unwrap_or_default();
                let user = me["username"].as_str().unwrap_or_default();
                let rules = crate::rbac::rules_for(self, user, &my_groups, namespace);
                let (paths, resources): (Vec<Value>, Vec<Value>) =
                    rules.into_iter().partition(|r| r.get("nonResourceURLs").is_some());
                let pick = |r: &Value, keys: &[&str]| {
                    let mut out = serde_json::Map::new();
                    for k in keys {
                        if let Some(v) = r.get(*k).filter(|v| !v.is_null()) {
                            out.insert((*k).to_string(), v.clone());
                        }
                    }
                    Value::Object(out)
                };
                json!({
                    "resourceRules": resources.iter().map(|r| pick(r, &["verbs", "apiGroups", "resources", "resourceNames"])).collect::<Vec<_>>(),
                    "nonResourceRules": paths.iter().map(|r| pick(r, &["verbs", "nonResourceURLs"])).collect::<Vec<_>>(),
                    "incomplete": false,
                })
            }
            "SelfSubjectRulesReview" => {
                if groups_include_masters(&my_groups) {
                    json!({"resourceRules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}],
                           "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}],
                           "incomplete": false})
                } else {
                    json!({"resourceRules": [{"verbs": ["get", "list", "watch"], "apiGroups": ["*"], "resources": ["*"]}],
                           "nonResourceRules": [{"verbs": ["get"], "nonResourceURLs": ["*"]}],
                           "incomplete": true,
                           "evaluationError": "a node's rules depend on the objects it asks about (the node authorizer)"})
                }
            }
            other => return Err(ApiError::method_not_allowed(&format!("create of {other}"), t.res)),
        };
        obj["status"] = status;
        obj["apiVersion"] = json!(t.res.api_version());
        obj["kind"] = json!(t.res.kind);
        if !obj["metadata"].is_object() {
            obj["metadata"] = json!({});
        }
        Ok(obj)
    }
}

fn groups_include_masters(groups: &[String]) -> bool {
    groups.iter().any(|g| g == "system:masters")
}

fn access_status((allowed, reason): (bool, String)) -> Value {
    let mut status = json!({"allowed": allowed});
    if !reason.is_empty() {
        status["reason"] = json!(reason);
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    struct NoPods;
    impl nodeauth::Lookup for NoPods {
        fn pod_node(&self, _: &str, _: &str) -> Option<String> {
            None
        }
        fn node_pod_uses(&self, _: &str, _: &str, _: nodeauth::RefKind, _: &str) -> bool {
            false
        }
        fn volume_claim(&self, _: &str) -> Option<(String, String)> {
            None
        }
    }
    impl crate::rbac::Policy for NoPods {
        fn rbac_objects(&self, _: &str, _: Option<&str>) -> Vec<std::sync::Arc<Value>> {
            Vec::new()
        }
        fn rbac_object(&self, _: &str, _: Option<&str>, _: &str) -> Option<std::sync::Arc<Value>> {
            None
        }
    }

    fn res(verb: &str, group: &str, resource: &str) -> Attributes {
        Attributes::Resource {
            verb: verb.into(),
            group: group.into(),
            resource: resource.into(),
            subresource: String::new(),
            namespace: "default".into(),
            name: String::new(),
        }
    }

    #[test]
    fn the_admin_may_do_anything_nodes_what_the_node_authorizer_allows() {
        let masters = vec!["system:masters".to_string()];
        assert!(decide(ADMIN_USER, &masters, &res("delete", "apps", "daemonsets"), &NoPods).0);
        let nodes = vec!["system:nodes".to_string()];
        assert!(decide("system:node:n1", &nodes, &res("list", "", "pods"), &NoPods).0);
        let (ok, why) = decide("system:node:n1", &nodes, &res("create", "apps", "daemonsets"), &NoPods);
        assert!(!ok && why.contains("system:node:n1"), "{why}");
        // Without a binding RBAC has no opinion, and says nothing (as upstream's).
        let (ok, why) = decide("jane", &[], &res("get", "", "pods"), &NoPods);
        assert!(!ok && why.is_empty(), "{why}");
    }

    #[test]
    fn user_info_names_the_admin_as_a_master() {
        assert_eq!(user_info(&Identity::Admin)["groups"][0], "system:masters");
        assert_eq!(user_info(&Identity::Node("n".into()))["username"], "system:node:n");
    }
}
