//! The RBAC authorizer, as upstream's: a request is allowed when a rule of a role bound to
//! its user (by name), to one of its groups or to its ServiceAccount allows it. Nothing
//! denies: without a matching rule the answer is "no opinion", which ends in a 403.
//!
//! ClusterRoleBindings grant their ClusterRole everywhere; a RoleBinding grants its Role or
//! ClusterRole in its own namespace. Rules match as upstream's `RuleAllows`: verbs, API
//! groups and resources (`*`, `resource/subresource`, `*/subresource`), resource names
//! (a rule with names never matches a request without one, such as a list), and for paths
//! outside the API, `nonResourceURLs` with a trailing `*` as a prefix.

use std::sync::Arc;

use serde_json::Value;

use crate::review::Attributes;

/// The RBAC group.
pub const GROUP: &str = "rbac.authorization.k8s.io";

/// The objects the authorizer reads (the watch cache in the server; a list in tests).
pub trait Policy {
    /// Every object of `plural` in the RBAC group, in `namespace` (`None`: cluster-scoped).
    fn rbac_objects(&self, plural: &str, namespace: Option<&str>) -> Vec<Arc<Value>>;
    /// The object `plural` named `name`, in `namespace` (`None`: cluster-scoped).
    fn rbac_object(&self, plural: &str, namespace: Option<&str>, name: &str) -> Option<Arc<Value>>;
    /// [`rules_for`]: what an implementor may keep while its roles and bindings stay as
    /// they are.
    fn granted_rules(&self, user: &str, groups: &[String], namespace: &str) -> Arc<Vec<Value>>
    where
        Self: Sized,
    {
        Arc::new(rules_for(self, user, groups, namespace))
    }
}

/// Whether a subject of a binding in `binding_ns` (empty for a ClusterRoleBinding) names
/// `user` or one of its `groups`.
fn subject_matches(subject: &Value, binding_ns: &str, user: &str, groups: &[String]) -> bool {
    let name = subject["name"].as_str().unwrap_or_default();
    match subject["kind"].as_str().unwrap_or_default() {
        "User" => name == user,
        "Group" => groups.iter().any(|g| g == name),
        "ServiceAccount" => {
            let ns = subject["namespace"]
                .as_str()
                .filter(|ns| !ns.is_empty())
                .unwrap_or(binding_ns);
            !ns.is_empty() && !name.is_empty() && user == format!("system:serviceaccount:{ns}:{name}")
        }
        _ => false,
    }
}

/// Whether `binding` names the user or one of its groups.
fn binds(binding: &Value, user: &str, groups: &[String]) -> bool {
    let ns = binding["metadata"]["namespace"].as_str().unwrap_or_default();
    binding["subjects"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|s| subject_matches(s, ns, user, groups))
}

fn has(list: &Value, want: &str) -> bool {
    list.as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .any(|v| v == "*" || v == want)
}

/// Upstream's `RuleAllows`.
pub fn rule_allows(rule: &Value, attrs: &Attributes) -> bool {
    match attrs {
        Attributes::Resource {
            verb,
            group,
            resource,
            subresource,
            name,
            ..
        } => {
            if !has(&rule["verbs"], verb) || !has(&rule["apiGroups"], group) {
                return false;
            }
            let combined = if subresource.is_empty() {
                resource.clone()
            } else {
                format!("{resource}/{subresource}")
            };
            let resource_ok = rule["resources"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .any(|r| {
                    r == "*"
                        || r == combined
                        || (!subresource.is_empty() && r.strip_prefix("*/") == Some(subresource.as_str()))
                });
            let names: Vec<&str> = rule["resourceNames"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            resource_ok && (names.is_empty() || names.contains(&name.as_str()))
        }
        Attributes::NonResource { verb, path } => {
            has(&rule["verbs"], verb)
                && rule["nonResourceURLs"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .any(|u| u == "*" || u == path || u.strip_suffix('*').is_some_and(|p| path.starts_with(p)))
        }
    }
}

/// The role `binding` refers to (a RoleBinding's Role is in its namespace).
fn role_of(policy: &impl Policy, binding: &Value) -> Option<Arc<Value>> {
    let role_ref = &binding["roleRef"];
    let name = role_ref["name"].as_str().unwrap_or_default();
    match role_ref["kind"].as_str() {
        Some("ClusterRole") => policy.rbac_object("clusterroles", None, name),
        Some("Role") => {
            let ns = binding["metadata"]["namespace"].as_str().unwrap_or_default();
            policy.rbac_object("roles", Some(ns), name)
        }
        _ => None,
    }
}

/// The rules of a role.
fn rules_of(role: &Value) -> &[Value] {
    role["rules"].as_array().map_or(&[], Vec::as_slice)
}

/// The rules of the role `binding` refers to.
fn role_rules(policy: &impl Policy, binding: &Value) -> Vec<Value> {
    role_of(policy, binding)
        .map(|r| rules_of(&r).to_vec())
        .unwrap_or_default()
}

/// Every rule granted to `user` (with `groups`) that applies in `namespace` (empty: the
/// cluster's rules only), as `kubectl auth can-i --list` shows them.
pub fn rules_for(policy: &impl Policy, user: &str, groups: &[String], namespace: &str) -> Vec<Value> {
    let mut rules = Vec::new();
    for binding in policy.rbac_objects("clusterrolebindings", None) {
        if binds(&binding, user, groups) {
            rules.extend(role_rules(policy, &binding));
        }
    }
    if !namespace.is_empty() {
        for binding in policy.rbac_objects("rolebindings", Some(namespace)) {
            if binds(&binding, user, groups) {
                rules.extend(role_rules(policy, &binding));
            }
        }
    }
    rules
}

/// Whether RBAC allows `user` (with `groups`) what `attrs` ask.
pub fn allows(policy: &impl Policy, user: &str, groups: &[String], attrs: &Attributes) -> bool {
    // A namespace's rules are the cluster's and its own bindings'.
    let namespace = match attrs {
        Attributes::Resource { namespace, .. } => namespace.as_str(),
        Attributes::NonResource { .. } => "",
    };
    policy
        .granted_rules(user, groups, namespace)
        .iter()
        .any(|r| rule_allows(r, attrs))
}

/// The 403 of a request the authorizers did not allow, as upstream words it:
/// `pods "x" is forbidden: User "alice" cannot delete resource "pods" in API group "" in the
/// namespace "default"` (or `forbidden: User "alice" cannot get path "/metrics"`), with the
/// resource and name in the details.
pub fn forbidden(user: &str, attrs: &Attributes) -> crate::status::ApiError {
    let (verb, group, resource, subresource, namespace, name) = match attrs {
        Attributes::NonResource { verb, path } => {
            return crate::status::ApiError::forbidden(format!("forbidden: User {user:?} cannot {verb} path {path:?}"));
        }
        Attributes::Resource {
            verb,
            group,
            resource,
            subresource,
            namespace,
            name,
        } => (verb, group, resource, subresource, namespace, name),
    };
    let qualified = if group.is_empty() {
        resource.clone()
    } else {
        format!("{resource}.{group}")
    };
    let what = if name.is_empty() {
        format!("{qualified} is forbidden")
    } else {
        format!("{qualified} {name:?} is forbidden")
    };
    let asked = if subresource.is_empty() {
        resource.clone()
    } else {
        format!("{resource}/{subresource}")
    };
    let scope = if namespace.is_empty() {
        "at the cluster scope".to_string()
    } else {
        format!("in the namespace {namespace:?}")
    };
    let mut e = crate::status::ApiError::forbidden(format!(
        "{what}: User {user:?} cannot {verb} resource {asked:?} in API group {group:?} {scope}"
    ));
    e.details = Some(serde_json::json!({"name": name, "group": group, "kind": resource}));
    e
}

/// One permission of a rule: a verb on a group's resource (and name), or on a path.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Atom {
    Resource {
        group: String,
        resource: String,
        name: String,
        verb: String,
    },
    Path {
        url: String,
        verb: String,
    },
}

/// The strings of a JSON list (anything else in it skipped; not a list: none).
pub(crate) fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect()
}

/// The permissions `rule` grants, one by one (upstream's `BreakdownRule`).
fn atoms(rule: &Value) -> Vec<Atom> {
    let verbs = strings(&rule["verbs"]);
    let mut out = Vec::new();
    for url in strings(&rule["nonResourceURLs"]) {
        out.extend(verbs.iter().map(|verb| Atom::Path {
            url: url.clone(),
            verb: verb.clone(),
        }));
    }
    let mut names = strings(&rule["resourceNames"]);
    if names.is_empty() {
        names.push(String::new());
    }
    for group in strings(&rule["apiGroups"]) {
        for resource in strings(&rule["resources"]) {
            for name in &names {
                out.extend(verbs.iter().map(|verb| Atom::Resource {
                    group: group.clone(),
                    resource: resource.clone(),
                    name: name.clone(),
                    verb: verb.clone(),
                }));
            }
        }
    }
    out
}

/// Whether some rule of `owner` grants `atom`.
fn covered(owner: &[Value], atom: &Atom) -> bool {
    let attrs = match atom {
        Atom::Path { url, verb } => Attributes::NonResource {
            verb: verb.clone(),
            path: url.clone(),
        },
        Atom::Resource {
            group,
            resource,
            name,
            verb,
        } => {
            let (resource, subresource) = resource.split_once('/').unwrap_or((resource, ""));
            Attributes::Resource {
                verb: verb.clone(),
                group: group.clone(),
                resource: resource.to_string(),
                subresource: subresource.to_string(),
                namespace: String::new(),
                name: name.clone(),
            }
        }
    };
    owner.iter().any(|r| rule_allows(r, &attrs))
}

/// The permissions of `rules` not granted by `owner`, in upstream's compact notation: one
/// line per resource (or path) with its verbs, `{APIGroups:["apps"], Resources:["deployments"],
/// Verbs:["create" "delete"]}`.
fn missing(owner: &[Value], rules: &[Value]) -> Vec<String> {
    let mut lacking: Vec<Atom> = rules.iter().flat_map(atoms).filter(|a| !covered(owner, a)).collect();
    lacking.sort();
    lacking.dedup();
    let quoted = |v: &[&str]| v.iter().map(|s| format!("{s:?}")).collect::<Vec<_>>().join(" ");
    let mut lines: Vec<(String, Vec<&str>)> = Vec::new();
    for atom in &lacking {
        let (head, verb) = match atom {
            Atom::Path { url, verb } => (format!("NonResourceURLs:[{}]", quoted(&[url])), verb),
            Atom::Resource {
                group,
                resource,
                name,
                verb,
            } => {
                let mut head = format!("APIGroups:[{}], Resources:[{}]", quoted(&[group]), quoted(&[resource]));
                if !name.is_empty() {
                    head.push_str(&format!(", ResourceNames:[{}]", quoted(&[name])));
                }
                (head, verb)
            }
        };
        match lines.last_mut() {
            Some((h, verbs)) if *h == head => verbs.push(verb),
            _ => lines.push((head, vec![verb])),
        }
    }
    lines
        .into_iter()
        .map(|(head, verbs)| format!("{{{head}, Verbs:[{}]}}", quoted(&verbs)))
        .collect()
}

/// Upstream's escalation check on a write of an RBAC `obj` (a `kind` in `namespace`) by
/// `user`: a Role or ClusterRole may grant only what its writer holds (unless the writer may
/// `escalate` it), and a binding may bind only a role whose rights its writer holds (unless
/// the writer may `bind` it). Other kinds pass.
pub fn check_escalation(
    policy: &(impl Policy + crate::nodeauth::Lookup),
    kind: &str,
    obj: &Value,
    namespace: &str,
    user: &str,
    groups: &[String],
) -> Result<(), crate::status::ApiError> {
    if groups.iter().any(|g| g == "system:masters") {
        return Ok(());
    }
    let name = obj["metadata"]["name"].as_str().unwrap_or_default();
    let may = |verb: &str, resource: &str, ns: &str, name: &str| {
        let attrs = Attributes::Resource {
            verb: verb.into(),
            group: GROUP.into(),
            resource: resource.into(),
            subresource: String::new(),
            namespace: ns.into(),
            name: name.into(),
        };
        crate::review::decide(user, groups, &attrs, policy).0
    };
    let (plural, granted) = match kind {
        "Role" | "ClusterRole" => {
            let plural = if kind == "Role" { "roles" } else { "clusterroles" };
            if may("escalate", plural, namespace, name) {
                return Ok(());
            }
            // An aggregated ClusterRole gathers rules nobody wrote into it yet: as upstream,
            // only a writer who holds every right may make one.
            let rules = if obj["aggregationRule"].is_object() {
                vec![
                    serde_json::json!({"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}),
                    serde_json::json!({"nonResourceURLs": ["*"], "verbs": ["*"]}),
                ]
            } else {
                obj["rules"].as_array().cloned().unwrap_or_default()
            };
            (plural, rules)
        }
        "RoleBinding" | "ClusterRoleBinding" => {
            let role_ref = &obj["roleRef"];
            let role_plural = match role_ref["kind"].as_str() {
                Some("Role") => "roles",
                _ => "clusterroles",
            };
            if may(
                "bind",
                role_plural,
                namespace,
                role_ref["name"].as_str().unwrap_or_default(),
            ) {
                return Ok(());
            }
            let plural = if kind == "RoleBinding" {
                "rolebindings"
            } else {
                "clusterrolebindings"
            };
            (plural, role_rules(policy, obj))
        }
        _ => return Ok(()),
    };
    let owner = rules_for(policy, user, groups, namespace);
    let lacking = missing(&owner, &granted);
    if lacking.is_empty() {
        return Ok(());
    }
    let groups_q = groups.iter().map(|g| format!("{g:?}")).collect::<Vec<_>>().join(" ");
    let mut e = crate::status::ApiError::forbidden(format!(
        "{plural}.{GROUP} {name:?} is forbidden: user {user:?} (groups=[{groups_q}]) is attempting to grant RBAC permissions not currently held:\n{}",
        lacking.join("\n")
    ));
    e.details = Some(serde_json::json!({"name": name, "group": GROUP, "kind": plural}));
    Err(e)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn res(verb: &str, group: &str, resource: &str, sub: &str, ns: &str, name: &str) -> Attributes {
        Attributes::Resource {
            verb: verb.into(),
            group: group.into(),
            resource: resource.into(),
            subresource: sub.into(),
            namespace: ns.into(),
            name: name.into(),
        }
    }

    #[test]
    fn rules_match_as_upstreams() {
        let pods = json!({"apiGroups": [""], "resources": ["pods", "pods/log"], "verbs": ["get", "list"]});
        assert!(rule_allows(&pods, &res("list", "", "pods", "", "default", "")));
        assert!(rule_allows(&pods, &res("get", "", "pods", "log", "default", "p")));
        assert!(!rule_allows(&pods, &res("delete", "", "pods", "", "default", "p")));
        assert!(!rule_allows(&pods, &res("get", "apps", "pods", "", "default", "p")));
        assert!(
            !rule_allows(&pods, &res("get", "", "pods", "exec", "default", "p")),
            "a subresource is named"
        );
        let any_status = json!({"apiGroups": ["*"], "resources": ["*/status"], "verbs": ["*"]});
        assert!(rule_allows(
            &any_status,
            &res("patch", "apps", "deployments", "status", "ns", "d")
        ));
        assert!(!rule_allows(
            &any_status,
            &res("patch", "apps", "deployments", "", "ns", "d")
        ));
        let named =
            json!({"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["c"], "verbs": ["get", "list"]});
        assert!(rule_allows(&named, &res("get", "", "configmaps", "", "ns", "c")));
        assert!(!rule_allows(&named, &res("get", "", "configmaps", "", "ns", "d")));
        assert!(
            !rule_allows(&named, &res("list", "", "configmaps", "", "ns", "")),
            "a list names nothing"
        );
        let urls = json!({"nonResourceURLs": ["/api", "/apis/*", "/healthz"], "verbs": ["get"]});
        let path = |p: &str| Attributes::NonResource {
            verb: "get".into(),
            path: p.into(),
        };
        assert!(rule_allows(&urls, &path("/api")));
        assert!(rule_allows(&urls, &path("/apis/apps/v1")));
        assert!(!rule_allows(&urls, &path("/api/v1")));
        assert!(!rule_allows(&pods, &path("/api")), "resource rules grant no paths");
        assert!(
            !rule_allows(&urls, &res("get", "", "pods", "", "", "")),
            "path rules grant no resources"
        );
    }

    struct Objects(Vec<(&'static str, Value)>);

    impl Policy for Objects {
        fn rbac_objects(&self, plural: &str, namespace: Option<&str>) -> Vec<Arc<Value>> {
            self.0
                .iter()
                .filter(|(p, o)| *p == plural && o["metadata"]["namespace"].as_str() == namespace)
                .map(|(_, o)| Arc::new(o.clone()))
                .collect()
        }

        fn rbac_object(&self, plural: &str, namespace: Option<&str>, name: &str) -> Option<Arc<Value>> {
            self.rbac_objects(plural, namespace)
                .into_iter()
                .find(|o| o["metadata"]["name"] == name)
        }
    }

    fn binding(kind: &str, ns: Option<&str>, role_kind: &str, role: &str, subjects: Value) -> Value {
        let mut b = json!({"kind": kind, "metadata": {"name": format!("{role}-binding")},
            "roleRef": {"apiGroup": GROUP, "kind": role_kind, "name": role}, "subjects": subjects});
        if let Some(ns) = ns {
            b["metadata"]["namespace"] = json!(ns);
        }
        b
    }

    #[test]
    fn bindings_grant_their_roles_to_users_groups_and_service_accounts_where_they_apply() {
        let view = json!({"metadata": {"name": "view"}, "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}]});
        let deleter = json!({"metadata": {"name": "deleter", "namespace": "team"}, "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["delete"]}]});
        let policy = Objects(vec![
            ("clusterroles", view),
            ("roles", deleter),
            (
                "rolebindings",
                binding(
                    "RoleBinding",
                    Some("team"),
                    "ClusterRole",
                    "view",
                    json!([{"kind": "User", "name": "alice"}]),
                ),
            ),
            (
                "rolebindings",
                binding(
                    "RoleBinding",
                    Some("team"),
                    "Role",
                    "deleter",
                    json!([{"kind": "ServiceAccount", "name": "bot"}]),
                ),
            ),
            (
                "clusterrolebindings",
                binding(
                    "ClusterRoleBinding",
                    None,
                    "ClusterRole",
                    "view",
                    json!([{"kind": "Group", "name": "auditors"}]),
                ),
            ),
        ]);
        let none: Vec<String> = Vec::new();
        let list_team = res("list", "", "pods", "", "team", "");
        assert!(allows(&policy, "alice", &none, &list_team));
        assert!(
            !allows(&policy, "alice", &none, &res("list", "", "pods", "", "other", "")),
            "only in its namespace"
        );
        assert!(!allows(
            &policy,
            "alice",
            &none,
            &res("delete", "", "pods", "", "team", "p")
        ));
        assert!(!allows(&policy, "bob", &none, &list_team));
        let auditors = vec!["auditors".to_string()];
        assert!(
            allows(&policy, "bob", &auditors, &res("list", "", "pods", "", "", "")),
            "everywhere"
        );
        let bot = "system:serviceaccount:team:bot";
        assert!(allows(&policy, bot, &none, &res("delete", "", "pods", "", "team", "p")));
        assert!(!allows(
            &policy,
            "system:serviceaccount:other:bot",
            &none,
            &res("delete", "", "pods", "", "team", "p")
        ));
        assert_eq!(rules_for(&policy, "alice", &none, "team").len(), 1);
        assert!(rules_for(&policy, "alice", &none, "").is_empty());
    }

    #[test]
    fn refusals_are_worded_as_upstreams() {
        let e = forbidden("alice", &res("list", "", "pods", "", "default", ""));
        assert_eq!(
            e.message,
            r#"pods is forbidden: User "alice" cannot list resource "pods" in API group "" in the namespace "default""#
        );
        assert_eq!(e.code, 403);
        let e = forbidden("alice", &res("delete", "apps", "deployments", "", "default", "web"));
        assert_eq!(
            e.message,
            r#"deployments.apps "web" is forbidden: User "alice" cannot delete resource "deployments" in API group "apps" in the namespace "default""#
        );
        assert_eq!(e.details.unwrap()["kind"], "deployments");
        let e = forbidden("alice", &res("get", "", "nodes", "proxy", "", "n1"));
        assert_eq!(
            e.message,
            r#"nodes "n1" is forbidden: User "alice" cannot get resource "nodes/proxy" in API group "" at the cluster scope"#
        );
        let e = forbidden(
            "alice",
            &Attributes::NonResource {
                verb: "get".into(),
                path: "/metrics".into(),
            },
        );
        assert_eq!(e.message, r#"forbidden: User "alice" cannot get path "/metrics""#);
    }
}
