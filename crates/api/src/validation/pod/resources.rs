//! Compute resources: resource names, quantities, requests against limits, huge pages.

use super::*;

pub(super) const STANDARD_RESOURCES: &[&str] = &[
    "cpu",
    "memory",
    "ephemeral-storage",
    "requests.cpu",
    "requests.memory",
    "requests.ephemeral-storage",
    "limits.cpu",
    "limits.memory",
    "limits.ephemeral-storage",
    "pods",
    "services",
    "replicationcontrollers",
    "resourcequotas",
    "secrets",
    "configmaps",
    "persistentvolumeclaims",
    "storage",
    "requests.storage",
    "services.nodeports",
    "services.loadbalancers",
];

pub(super) fn is_huge_pages(name: &str) -> bool {
    name.starts_with("hugepages-")
}

pub(super) fn is_native(name: &str) -> bool {
    !name.contains('/') || name.contains("kubernetes.io/")
}

pub(super) fn is_extended(name: &str) -> bool {
    !is_native(name)
        && !name.starts_with("requests.")
        && names::is_qualified_name(&format!("requests.{name}")).is_empty()
}

pub(super) fn overcommit_allowed(name: &str) -> bool {
    is_native(name) && !is_huge_pages(name)
}

pub(super) fn is_integer_resource(name: &str) -> bool {
    matches!(
        name,
        "pods"
            | "services"
            | "replicationcontrollers"
            | "resourcequotas"
            | "secrets"
            | "configmaps"
            | "persistentvolumeclaims"
            | "services.nodeports"
            | "services.loadbalancers"
    ) || is_extended(name)
}

/// `validateResourceName`.
pub(crate) fn resource_name(errs: &mut Errs, name: &str, p: &Path) -> bool {
    let msgs = names::is_qualified_name(name);
    if !msgs.is_empty() {
        each_invalid(errs, p, name, msgs);
        return false;
    }
    if !name.contains('/') && !STANDARD_RESOURCES.contains(&name) && !is_huge_pages(name) {
        invalid(errs, p, name, "must be a standard resource type or fully qualified");
        return false;
    }
    true
}

pub(super) fn container_resource_name(errs: &mut Errs, name: &str, p: &Path) {
    resource_name(errs, name, p);
    if !name.contains('/') {
        if !matches!(name, "cpu" | "memory" | "ephemeral-storage") && !is_huge_pages(name) {
            invalid(errs, p, name, "must be a standard resource for containers");
        }
    } else if !is_native(name) && !is_extended(name) {
        invalid(errs, p, name, "doesn't follow extended resource name standard");
    }
}

/// `ValidateResourceQuantityValue`: non-negative, whole for integer resources.
pub(crate) fn quantity_value(errs: &mut Errs, name: &str, q: &Quantity, p: &Path) {
    if q.is_negative() {
        invalid(errs, p, q.canonical(), crate::validation::IS_NEGATIVE);
    }
    if is_integer_resource(name) && q.milli_value() % 1000 != 0 {
        invalid_raw(errs, p, q.canonical(), "must be an integer");
    }
}

/// Parses every quantity of a resource list, reporting unparseable ones.
pub(crate) fn quantities<'a>(errs: &mut Errs, list: J<'a>, p: &Path) -> Vec<(&'a str, Quantity)> {
    let mut out = Vec::new();
    if let Some(m) = list.and_then(Value::as_object) {
        for (k, v) in m {
            match Quantity::from_json(v) {
                Ok(q) => out.push((k.as_str(), q)),
                Err(e) => invalid(errs, &p.key(k), v.clone(), e),
            }
        }
    } else if let Some(other) = list {
        invalid(errs, p, other.clone(), "must be an object");
    }
    out
}

pub(super) fn resource_list(errs: &mut Errs, list: J<'_>, p: &Path, container: bool) {
    for (name, q) in quantities(errs, list, p) {
        let kp = p.key(name);
        if container {
            container_resource_name(errs, name, &kp);
        } else {
            resource_name(errs, name, &kp);
        }
        quantity_value(errs, name, &q, &kp);
    }
}

pub(super) fn huge_page_value(errs: &mut Errs, name: &str, q: &Quantity, p: &Path) {
    let Some(size) = name.strip_prefix("hugepages-").and_then(|s| Quantity::parse(s).ok()) else {
        return;
    };
    if size.is_zero() || size.is_negative() {
        return;
    }
    let (qm, sm) = (q.milli_value(), size.milli_value());
    if sm == 0 || qm % sm != 0 {
        invalid(
            errs,
            p,
            q.canonical(),
            format!("{} is not positive integer multiple of {name}", q.canonical()),
        );
    }
}

/// `ValidateResourceRequirements`.
pub(crate) fn resource_requirements(errs: &mut Errs, req: J<'_>, claims: &BTreeSet<String>, p: &Path) {
    let lim_path = p.child("limits");
    let req_path = p.child("requests");
    let lim_obj = obj(errs, req, "limits", p);
    let limits = quantities(errs, lim_obj, &lim_path);
    let req_obj = obj(errs, req, "requests", p);
    let requests = quantities(errs, req_obj, &req_path);
    let mut lim_cpu_mem = false;
    let mut req_cpu_mem = false;
    let mut huge = false;
    for (name, q) in &limits {
        let kp = lim_path.key(name);
        container_resource_name(errs, name, &kp);
        quantity_value(errs, name, q, &kp);
        if is_huge_pages(name) {
            huge = true;
            huge_page_value(errs, name, q, &kp);
        }
        lim_cpu_mem |= matches!(*name, "cpu" | "memory");
    }
    for (name, q) in &requests {
        let kp = req_path.key(name);
        container_resource_name(errs, name, &kp);
        quantity_value(errs, name, q, &kp);
        match limits.iter().find(|(n, _)| n == name) {
            Some((_, limit)) => {
                if q != limit && !overcommit_allowed(name) {
                    invalid(
                        errs,
                        &req_path,
                        q.canonical(),
                        format!("must be equal to {name} limit of {}", limit.canonical()),
                    );
                } else if q > limit {
                    invalid(
                        errs,
                        &req_path,
                        q.canonical(),
                        format!("must be less than or equal to {name} limit of {}", limit.canonical()),
                    );
                }
            }
            None if !overcommit_allowed(name) => {
                required(errs, &lim_path, "Limit must be set for non overcommitable resources");
            }
            None => {}
        }
        if is_huge_pages(name) {
            huge = true;
            huge_page_value(errs, name, q, &kp);
        }
        req_cpu_mem |= matches!(*name, "cpu" | "memory");
    }
    if !lim_cpu_mem && !req_cpu_mem && huge {
        forbidden(errs, p, "HugePages require cpu or memory");
    }
    let cp = p.child("claims");
    let mut seen = HashSet::new();
    for (i, c) in arr(errs, req, "claims", p).iter().enumerate() {
        let name = st0(errs, Some(c), "name", &cp.index(i));
        if name.is_empty() {
            required(errs, &cp.index(i), "");
            continue;
        }
        if !seen.insert(name) {
            duplicate(errs, &cp.index(i), name);
        }
        if !claims.contains(name) {
            let detail = if claims.is_empty() {
                "must be one of the names in pod.spec.resourceClaims which is empty".to_string()
            } else {
                format!(
                    "must be one of the names in pod.spec.resourceClaims: {}",
                    claims.iter().map(String::as_str).collect::<Vec<_>>().join(", ")
                )
            };
            not_found(errs, &cp.index(i), name, &detail);
        }
    }
}
