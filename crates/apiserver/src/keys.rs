//! The storage layout: `/registry/<group or core>/<plural>/[<namespace>/]<name>`.

use shoal_api::catalogue::Resource;

/// The prefix every object key starts with.
pub const ROOT: &str = "/registry/";

/// `<group or core>/<plural>` of where `res`'s objects are stored (a view of another
/// resource, as events.k8s.io's Events, shares its keys).
fn segments(res: &Resource) -> String {
    let (group, plural) = shoal_api::catalogue::stored_names(res.group, res.plural);
    let (group, plural) = if plural.is_empty() {
        (res.group, res.plural)
    } else {
        (group, plural)
    };
    format!("{}/{plural}", if group.is_empty() { "core" } else { group })
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

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_api::catalogue::find;

    #[test]
    fn keys_nest_namespace_under_resource() {
        let ds = find("apps", "v1", "daemonsets").unwrap();
        assert_eq!(object(ds, Some("default"), "x"), "/registry/apps/daemonsets/default/x");
        assert_eq!(collection(ds, None), "/registry/apps/daemonsets/");
        let ns = find("", "v1", "namespaces").unwrap();
        assert_eq!(
            object(ns, Some("ignored"), "kube-system"),
            "/registry/core/namespaces/kube-system"
        );
    }
}
