//! Discovery: `/version`, `/api`, `/apis` (legacy and aggregated v2), group and
//! group-version documents, all derived from the catalogue.

use serde_json::{Value, json};
use shoal_api::catalogue::{self, Resource};

/// Content type of aggregated discovery responses.
pub const AGGREGATED_CONTENT_TYPE: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

/// The Kubernetes version shoal serves.
pub fn version() -> Value {
    json!({
        "major": "1",
        "minor": "33",
        "emulationMajor": "1",
        "emulationMinor": "33",
        "gitVersion": "v1.33.0-shoal",
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z",
        "goVersion": "go1.24.0",
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, if std::env::consts::ARCH == "x86_64" { "amd64" } else { std::env::consts::ARCH }),
    })
}

/// True when the `Accept` header asks for aggregated discovery v2.
pub fn wants_aggregated(accept: Option<&str>) -> bool {
    accept.is_some_and(|a| {
        a.split(',').any(|p| {
            let p = p.replace(' ', "");
            p.contains("g=apidiscovery.k8s.io")
                && p.contains("v=v2")
                && !p.contains("v=v2beta1")
                && p.contains("as=APIGroupDiscoveryList")
        })
    })
}

/// `/api` (legacy): the core versions.
pub fn core_versions() -> Value {
    json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": ""}]})
}

/// A group-version another server serves (an aggregated APIService that is Available),
/// with the resources its discovery document lists.
#[derive(Clone, Debug)]
pub struct RemoteVersion {
    pub group: String,
    pub version: String,
    /// `APIResourceList.resources` of the backend.
    pub resources: Value,
}

static REMOTE: std::sync::RwLock<Vec<RemoteVersion>> = std::sync::RwLock::new(Vec::new());

/// Publishes the aggregated group-versions available now (replacing the ones before).
pub fn set_remote(list: Vec<RemoteVersion>) {
    match REMOTE.write() {
        Ok(mut guard) => *guard = list,
        Err(poisoned) => *poisoned.into_inner() = list,
    }
}

fn remote() -> Vec<RemoteVersion> {
    match REMOTE.read() {
        Ok(guard) => guard.clone(),
        Err(poisoned) => poisoned.into_inner().clone(),
    }
}

/// The groups with a remote version and no local one, in the order first seen.
fn remote_only_groups() -> Vec<String> {
    let local = catalogue::groups();
    let mut out: Vec<String> = Vec::new();
    for r in remote() {
        if !local.contains(&r.group.as_str()) && !out.contains(&r.group) {
            out.push(r.group);
        }
    }
    out
}

/// The aggregated discovery entry of a remote resource list (`APIResourceList.resources`).
fn aggregated_remote(r: &RemoteVersion) -> Value {
    let list: Vec<&Value> = r.resources.as_array().into_iter().flatten().collect();
    let resources: Vec<Value> = list
        .iter()
        .filter(|x| !x["name"].as_str().unwrap_or_default().contains('/'))
        .map(|x| {
            let name = x["name"].as_str().unwrap_or_default();
            let subs: Vec<Value> = list
                .iter()
                .filter_map(|s| {
                    let (parent, sub) = s["name"].as_str()?.split_once('/')?;
                    (parent == name).then(|| {
                        json!({"subresource": sub, "verbs": s["verbs"],
                        "responseKind": {"group": r.group, "version": r.version, "kind": s["kind"]}})
                    })
                })
                .collect();
            let mut v = json!({
                "resource": name,
                "responseKind": {"group": r.group, "version": r.version, "kind": x["kind"]},
                "scope": if x["namespaced"] == true { "Namespaced" } else { "Cluster" },
                "singularResource": x["singularName"],
                "verbs": x["verbs"],
            });
            for key in ["shortNames", "categories"] {
                if x[key].is_array() {
                    v[key] = x[key].clone();
                }
            }
            if !subs.is_empty() {
                v["subresources"] = json!(subs);
            }
            v
        })
        .collect();
    json!({"version": r.version, "resources": resources, "freshness": "Current"})
}

/// The versions a group serves, preferred first (as the catalogue lists them)./// The versions a group serves, preferred first (as the catalogue lists them).
fn versions_of(group: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for r in catalogue::all().into_iter().filter(|r| r.group == group) {
        if !out.iter().any(|v| v == r.version) {
            out.push(r.version.to_string());
        }
    }
    for r in remote().into_iter().filter(|r| r.group == group) {
        if !out.contains(&r.version) {
            out.push(r.version);
        }
    }
    out
}

fn group_json(group: &str) -> Value {
    let versions: Vec<Value> = versions_of(group)
        .into_iter()
        .map(|v| json!({"groupVersion": format!("{group}/{v}"), "version": v}))
        .collect();
    let preferred = versions.first().cloned().unwrap_or(Value::Null);
    json!({"name": group, "versions": versions, "preferredVersion": preferred})
}

/// `/apis` (legacy): every named group.
pub fn group_list() -> Value {
    let remote = remote_only_groups();
    let groups: Vec<Value> = catalogue::groups()
        .into_iter()
        .filter(|g| !g.is_empty())
        .chain(remote.iter().map(String::as_str))
        .map(group_json)
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `/apis/<group>`.
pub fn group(group: &str) -> Option<Value> {
    let known = catalogue::groups().contains(&group) || remote().iter().any(|r| r.group == group);
    known.then(|| {
        let mut g = group_json(group);
        g["kind"] = json!("APIGroup");
        g["apiVersion"] = json!("v1");
        g
    })
}

/// `/api/v1` or `/apis/<group>/<version>`: an `APIResourceList`.
pub fn resource_list(group: &str, version: &str) -> Option<Value> {
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    let mut resources = Vec::new();
    for r in catalogue::all()
        .into_iter()
        .filter(|r| r.group == group && r.version == version)
    {
        let mut item = json!({
            "name": r.plural, "singularName": r.singular, "namespaced": r.namespaced,
            "kind": r.kind, "verbs": r.verbs,
        });
        if !r.short_names.is_empty() {
            item["shortNames"] = json!(r.short_names);
        }
        if !r.categories.is_empty() {
            item["categories"] = json!(r.categories);
        }
        resources.push(item);
        for s in r.subresources {
            let mut sub = json!({"name": format!("{}/{}", r.plural, s.name), "singularName": "", "namespaced": r.namespaced, "kind": s.kind, "verbs": s.verbs});
            if s.group != r.group {
                sub["group"] = json!(s.group);
                sub["version"] = json!(s.version);
            }
            resources.push(sub);
        }
    }
    (!resources.is_empty())
        .then(|| json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}))
}

fn aggregated_resource(r: &Resource) -> Value {
    let scope = if r.namespaced { "Namespaced" } else { "Cluster" };
    let subs: Vec<Value> = r
        .subresources
        .iter()
        .map(|s| json!({"subresource": s.name, "responseKind": {"group": s.group, "version": s.version, "kind": s.kind}, "verbs": s.verbs}))
        .collect();
    let mut v = json!({
        "resource": r.plural,
        "responseKind": {"group": r.group, "version": r.version, "kind": r.kind},
        "scope": scope,
        "singularResource": r.singular,
        "verbs": r.verbs,
    });
    if !r.short_names.is_empty() {
        v["shortNames"] = json!(r.short_names);
    }
    if !r.categories.is_empty() {
        v["categories"] = json!(r.categories);
    }
    if !subs.is_empty() {
        v["subresources"] = json!(subs);
    }
    v
}

/// Aggregated discovery (`apidiscovery.k8s.io/v2`) for `/api` (`core = true`) or `/apis`.
pub fn aggregated(core: bool) -> Value {
    let remote = remote();
    let mut items: Vec<Value> = catalogue::groups()
        .into_iter()
        .filter(|g| g.is_empty() == core)
        .map(|g| {
            let versions: Vec<Value> = versions_of(g)
                .into_iter()
                .map(|v| match remote.iter().find(|r| r.group == g && r.version == v) {
                    Some(r) => aggregated_remote(r),
                    None => {
                        let resources: Vec<Value> = catalogue::all()
                            .into_iter()
                            .filter(|r| r.group == g && r.version == v)
                            .map(aggregated_resource)
                            .collect();
                        json!({"version": v, "resources": resources, "freshness": "Current"})
                    }
                })
                .collect();
            json!({"metadata": {"name": g, "creationTimestamp": null}, "versions": versions})
        })
        .collect();
    if !core {
        for g in remote_only_groups() {
            let versions: Vec<Value> = remote.iter().filter(|r| r.group == g).map(aggregated_remote).collect();
            items.push(json!({"metadata": {"name": g, "creationTimestamp": null}, "versions": versions}));
        }
    }
    json!({"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "metadata": {}, "items": items})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aggregated_discovery_lists_daemonsets_with_short_name_and_category() {
        let apis = aggregated(false);
        let apps = apis["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["metadata"]["name"] == "apps")
            .unwrap();
        let ds = apps["versions"][0]["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["resource"] == "daemonsets")
            .unwrap();
        assert_eq!(ds["shortNames"], json!(["ds"]));
        assert_eq!(ds["categories"], json!(["all"]));
        assert_eq!(ds["scope"], "Namespaced");
        let core = aggregated(true);
        assert_eq!(core["items"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn legacy_resource_list_has_subresources() {
        let v = resource_list("apps", "v1").unwrap();
        let names: Vec<&str> = v["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap())
            .collect();
        assert!(names.contains(&"deployments/scale"));
        assert!(resource_list("apps", "v2").is_none());
    }

    #[test]
    fn only_v2_accept_gets_aggregated() {
        assert!(wants_aggregated(Some(
            "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json"
        )));
        assert!(!wants_aggregated(Some(
            "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList"
        )));
        assert!(!wants_aggregated(Some("application/json")));
    }
}
