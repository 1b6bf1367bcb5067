//! The storage layout: `/registry/<group or core>/<plural>/[<namespace>/]<name>`.

use shoal_api::catalogue::Resource;

/// The prefix every object key starts with.
pub const ROOT: &str = "/registry/";

fn group_segment(res: &Resource) -> &'static str {
    if res.group.is_empty() { "core" } else { res.group }
}

/// The key of one object.
pub fn object(res: &Resource, namespace: Option<&str>, name: &str) -> String {
    match namespace.filter(|_| res.namespaced) {
        Some(ns) => format!("{ROOT}{}/{}/{ns}/{name}", group_segment(res), res.plural),
        None => format!("{ROOT}{}/{}/{name}", group_segment(res), res.plural),
    }
}

/// The prefix of every object of a resource, or of one namespace's objects.
pub fn collection(res: &Resource, namespace: Option<&str>) -> String {
    match namespace.filter(|_| res.namespaced) {
        Some(ns) => format!("{ROOT}{}/{}/{ns}/", group_segment(res), res.plural),
        None => format!("{ROOT}{}/{}/", group_segment(res), res.plural),
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
