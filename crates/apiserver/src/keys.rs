//! The storage layout, as upstream's API server lays out etcd: `/registry/<plural>/
//! [<namespace>/]<name>` for built-in resources (with upstream's historical exceptions:
//! nodes under `minions`, Services under `services/specs`, Endpoints under
//! `services/endpoints`, ReplicationControllers under `controllers`, Ingresses under
//! `ingress`), `/registry/<group>/<plural>/...` for APIServices, CustomResourceDefinitions
//! and custom resources. So `etcdctl get --prefix /registry/daemonsets` shows what an
//! operator expects, and etcd backups read as upstream's.
//!
//! Stores written before this layout (`/registry/<group or core>/<plural>/...`) are moved
//! to it once, at start-up, by [`migrate`].

use shoal_api::catalogue::{self, Resource};
use shoal_store::Store;

/// The prefix every object key starts with.
pub const ROOT: &str = "/registry/";

/// Built-in resources stored under another name than their plural, as upstream stores them.
const RENAMED: &[(&str, &str, &str)] = &[
    ("", "nodes", "minions"),
    ("", "services", "services/specs"),
    ("", "endpoints", "services/endpoints"),
    ("", "replicationcontrollers", "controllers"),
    ("networking.k8s.io", "ingresses", "ingress"),
];

/// Built-in groups whose resources are stored under their group, as custom resources are.
const GROUP_QUALIFIED: &[&str] = &["apiregistration.k8s.io", "apiextensions.k8s.io"];

/// Where `res`'s objects are stored, between `/registry/` and the namespace (a view of
/// another resource, as events.k8s.io's Events, shares its keys).
fn segments(res: &Resource) -> String {
    let (group, plural) = catalogue::stored_names(res.group, res.plural);
    let (group, plural) = if plural.is_empty() {
        (res.group, res.plural)
    } else {
        (group, plural)
    };
    if catalogue::is_custom(res) || GROUP_QUALIFIED.contains(&group) {
        return format!("{group}/{plural}");
    }
    RENAMED
        .iter()
        .find(|(g, p, _)| (*g, *p) == (group, plural))
        .map_or_else(|| plural.to_string(), |(_, _, stored)| stored.to_string())
}

/// The key of one object.
pub fn object(res: &Resource, namespace: Option<&str>, name: &str) -> String {
    match namespace.filter(|_| res.namespaced) {
        Some(ns) => format!("{ROOT}{}/{ns}/{name}", segments(res)),
        None => format!("{ROOT}{}/{name}", segments(res)),
    }
}

/// The prefix of every object of a resource, or of one namespace's objects.
pub fn collection(res: &Resource, namespace: Option<&str>) -> String {
    match namespace.filter(|_| res.namespaced) {
        Some(ns) => format!("{ROOT}{}/{ns}/", segments(res)),
        None => format!("{ROOT}{}/", segments(res)),
    }
}

/// The key prefixes of every resource of the built-in `group` (roles and bindings, webhook
/// configurations): the watch cache counts changes under these.
pub fn group_prefixes(group: &str) -> Vec<String> {
    let mut prefixes: Vec<String> = catalogue::RESOURCES
        .iter()
        .filter(|r| r.group == group)
        .map(|r| collection(r, None))
        .collect();
    prefixes.sort();
    prefixes.dedup();
    prefixes
}

/// Where a key of the layout before this one (`/registry/<group or core>/<plural>/<rest>`)
/// belongs now, or `None` when it is not such a key or its place did not change.
fn moved(key: &str) -> Option<String> {
    let rest = key.strip_prefix(ROOT)?;
    let mut parts = rest.splitn(3, '/');
    let (group, plural, tail) = (parts.next()?, parts.next()?, parts.next()?);
    let group = if group == "core" { "" } else { group };
    let res = catalogue::RESOURCES
        .iter()
        .find(|r| (r.group, r.plural) == (group, plural))?;
    let old_prefix = format!("{ROOT}{}/{plural}/", if group.is_empty() { "core" } else { group });
    let new = format!("{}{tail}", collection(res, None));
    (key.starts_with(&old_prefix) && new != key).then_some(new)
}

/// Moves every object stored under the earlier layout to its upstream key, before anything
/// reads the store. A move is a create of the new key then a delete of the old, so a move cut
/// short by a crash is finished by the next start (the new key then exists already). Only
/// the earlier layout's group prefixes (`/registry/core/`, `/registry/apps/`, ...) are read,
/// so a store already laid out as upstream's costs one empty read per group.
pub async fn migrate(store: &dyn Store) -> Result<usize, shoal_store::Error> {
    let mut groups: Vec<&str> = catalogue::RESOURCES
        .iter()
        .map(|r| if r.group.is_empty() { "core" } else { r.group })
        .filter(|g| !GROUP_QUALIFIED.contains(g))
        .collect();
    groups.sort_unstable();
    groups.dedup();
    let mut count = 0;
    for group in groups {
        let prefix = format!("{ROOT}{group}/");
        let old = store.range(&prefix, &shoal_store::prefix_end(&prefix), 0, 0).await?;
        for kv in old.kvs {
            let Some(new) = moved(&kv.key) else { continue };
            match store.create(&new, kv.value.clone()).await {
                Ok(_) | Err(shoal_store::Error::AlreadyExists(_)) => {}
                Err(e) => return Err(e),
            }
            match store.delete(&kv.key, kv.mod_revision).await {
                Ok(_) | Err(shoal_store::Error::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
            count += 1;
        }
    }
    if count > 0 {
        tracing::info!(objects = count, "moved stored objects to upstream's key layout");
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_api::catalogue::find;

    #[test]
    fn keys_are_laid_out_as_upstream() {
        let ds = find("apps", "v1", "daemonsets").unwrap();
        assert_eq!(object(ds, Some("default"), "x"), "/registry/daemonsets/default/x");
        assert_eq!(collection(ds, None), "/registry/daemonsets/");
        let ns = find("", "v1", "namespaces").unwrap();
        assert_eq!(
            object(ns, Some("ignored"), "kube-system"),
            "/registry/namespaces/kube-system"
        );
        let cases = [
            ("", "v1", "nodes", "/registry/minions/"),
            ("", "v1", "services", "/registry/services/specs/"),
            ("", "v1", "endpoints", "/registry/services/endpoints/"),
            ("", "v1", "replicationcontrollers", "/registry/controllers/"),
            ("networking.k8s.io", "v1", "ingresses", "/registry/ingress/"),
            (
                "apiregistration.k8s.io",
                "v1",
                "apiservices",
                "/registry/apiregistration.k8s.io/apiservices/",
            ),
            (
                "apiextensions.k8s.io",
                "v1",
                "customresourcedefinitions",
                "/registry/apiextensions.k8s.io/customresourcedefinitions/",
            ),
            (
                "rbac.authorization.k8s.io",
                "v1",
                "clusterroles",
                "/registry/clusterroles/",
            ),
            ("events.k8s.io", "v1", "events", "/registry/events/"),
        ];
        for (group, version, plural, prefix) in cases {
            let res = find(group, version, plural).unwrap_or_else(|| panic!("{group}/{plural}"));
            assert_eq!(collection(res, None), prefix, "{group}/{plural}");
        }
        assert_eq!(
            crate::crds::PREFIX,
            collection(
                find("apiextensions.k8s.io", "v1", "customresourcedefinitions").unwrap(),
                None
            )
        );
    }

    #[test]
    fn no_resource_stores_inside_another() {
        // One resource's keys must never fall in another's range, or a list of one would
        // return objects of the other.
        let mut prefixes: Vec<(String, &str)> = catalogue::RESOURCES
            .iter()
            .map(|r| (collection(r, None), r.plural))
            .collect();
        prefixes.sort();
        prefixes.dedup_by(|a, b| a.0 == b.0);
        for (i, (a, ra)) in prefixes.iter().enumerate() {
            for (b, rb) in &prefixes[i + 1..] {
                assert!(!b.starts_with(a.as_str()), "{rb} ({b}) is inside {ra} ({a})");
            }
        }
    }

    #[test]
    fn keys_of_the_earlier_layout_move_to_upstream_ones() {
        assert_eq!(
            moved("/registry/apps/daemonsets/default/x").as_deref(),
            Some("/registry/daemonsets/default/x")
        );
        assert_eq!(
            moved("/registry/core/nodes/n1").as_deref(),
            Some("/registry/minions/n1")
        );
        assert_eq!(
            moved("/registry/core/services/default/web").as_deref(),
            Some("/registry/services/specs/default/web")
        );
        // Keys already in place, custom resources and CRDs stay.
        for key in [
            "/registry/daemonsets/default/x",
            "/registry/minions/n1",
            "/registry/services/specs/default/web",
            "/registry/apiextensions.k8s.io/customresourcedefinitions/crontabs.example.com",
            "/registry/example.com/crontabs/default/c",
            "/registry/core/nosuchthing/x",
        ] {
            assert_eq!(moved(key), None, "{key}");
        }
    }
}
