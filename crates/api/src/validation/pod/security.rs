//! Security contexts (pod and container), seccomp/AppArmor profiles, host-namespace dependencies.

use super::*;

pub(super) fn id_range(errs: &mut Errs, v: J<'_>, key: &str, p: &Path) {
    if let Some(id) = int(errs, v, key, p)
        && !(0..=MAX_INT32).contains(&id)
    {
        invalid(errs, &p.child(key), id, inclusive_range_error(0, MAX_INT32));
    }
}

pub(super) fn seccomp_profile(errs: &mut Errs, sc: J<'_>, p: &Path) {
    let Some(sp) = obj(errs, sc, "seccompProfile", p) else {
        return;
    };
    let pp = p.child("seccompProfile");
    let sp = Some(sp);
    let t = st0(errs, sp, "type", &pp);
    match t {
        "Localhost" | "RuntimeDefault" | "Unconfined" => {}
        "" => required(errs, &pp.child("type"), "type is required when seccompProfile is set"),
        other => not_supported(
            errs,
            &pp.child("type"),
            other,
            &["Localhost", "RuntimeDefault", "Unconfined"],
        ),
    }
    let local = st(errs, sp, "localhostProfile", &pp);
    if t == "Localhost" {
        match local {
            None => required(
                errs,
                &pp.child("localhostProfile"),
                "must be set when seccomp type is Localhost",
            ),
            Some(l) => local_descending_path(errs, l, &pp.child("localhostProfile")),
        }
    } else if local.is_some() {
        invalid_raw(
            errs,
            &pp.child("localhostProfile"),
            format!(
                "core.SeccompProfile{{Type:{}, LocalhostProfile:{}}}",
                gorepr::quote(t),
                gorepr::pointer("string", true)
            ),
            "can only be set when seccomp type is Localhost",
        );
    }
}

pub(super) fn apparmor_profile(errs: &mut Errs, sc: J<'_>, p: &Path) {
    let Some(ap) = obj(errs, sc, "appArmorProfile", p) else {
        return;
    };
    let pp = p.child("appArmorProfile");
    let ap = Some(ap);
    let local = st(errs, ap, "localhostProfile", &pp);
    match st0(errs, ap, "type", &pp) {
        "Localhost" => match local {
            None => required(
                errs,
                &pp.child("localhostProfile"),
                "must be set when AppArmor type is Localhost",
            ),
            Some(l) if l.trim() != l => invalid(
                errs,
                &pp.child("localhostProfile"),
                l,
                "must not be padded with whitespace",
            ),
            Some("") => required(
                errs,
                &pp.child("localhostProfile"),
                "must be set when AppArmor type is Localhost",
            ),
            Some(_) => {}
        },
        "RuntimeDefault" | "Unconfined" => {
            if let Some(l) = local {
                invalid(
                    errs,
                    &pp.child("localhostProfile"),
                    l,
                    "can only be set when AppArmor type is Localhost",
                );
            }
        }
        "" => required(errs, &pp.child("type"), "type is required when appArmorProfile is set"),
        other => not_supported(
            errs,
            &pp.child("type"),
            other,
            &["Localhost", "RuntimeDefault", "Unconfined"],
        ),
    }
}

pub(super) fn security_context(errs: &mut Errs, sc: J<'_>, host_users: bool, p: &Path) {
    if sc.is_none() {
        return;
    }
    let privileged = boolean(errs, sc, "privileged", p);
    id_range(errs, sc, "runAsUser", p);
    id_range(errs, sc, "runAsGroup", p);
    if let Some(pm) = st(errs, sc, "procMount", p) {
        if pm != "Default" && pm != "Unmasked" {
            not_supported(errs, &p.child("procMount"), pm, &["Default", "Unmasked"]);
        }
        if host_users && pm == "Unmasked" {
            invalid(
                errs,
                &p.child("procMount"),
                pm,
                "`hostUsers` must be false to use `Unmasked`",
            );
        }
    }
    seccomp_profile(errs, sc, p);
    if boolean(errs, sc, "allowPrivilegeEscalation", p) == Some(false) {
        if privileged == Some(true) {
            invalid_raw(
                errs,
                p,
                "&core.SecurityContext{...}",
                "cannot set `allowPrivilegeEscalation` to false and `privileged` to true",
            );
        }
        let adds = str_list(errs, get(sc, "capabilities"), "add", &p.child("capabilities"));
        if adds.contains(&"CAP_SYS_ADMIN") {
            invalid_raw(
                errs,
                p,
                "&core.SecurityContext{...}",
                "cannot set `allowPrivilegeEscalation` to false and `capabilities.Add` CAP_SYS_ADMIN",
            );
        }
    }
    apparmor_profile(errs, sc, p);
}

pub(super) fn pod_security_context(errs: &mut Errs, spec: J<'_>, spec_path: &Path) {
    let Some(sc) = obj(errs, spec, "securityContext", spec_path) else {
        return;
    };
    let p = spec_path.child("securityContext");
    let sc = Some(sc);
    id_range(errs, sc, "fsGroup", &p);
    id_range(errs, sc, "runAsUser", &p);
    id_range(errs, sc, "runAsGroup", &p);
    for (i, g) in arr(errs, sc, "supplementalGroups", &p).iter().enumerate() {
        match g.as_i64() {
            Some(id) if !(0..=MAX_INT32).contains(&id) => invalid(
                errs,
                &p.child("supplementalGroups").index(i),
                id,
                inclusive_range_error(0, MAX_INT32),
            ),
            Some(_) => {}
            None => invalid(
                errs,
                &p.child("supplementalGroups").index(i),
                g.clone(),
                "must be an integer",
            ),
        }
    }
    let host_pid = get(spec, "hostPID").and_then(Value::as_bool) == Some(true);
    if boolean(errs, sc, "shareProcessNamespace", spec_path).unwrap_or(false) && host_pid {
        invalid(
            errs,
            &p.child("shareProcessNamespace"),
            true,
            "ShareProcessNamespace and HostPID cannot both be enabled",
        );
    }
    if let Some(policy) = st(errs, sc, "fsGroupChangePolicy", &p)
        && policy != "Always"
        && policy != "OnRootMismatch"
    {
        not_supported(
            errs,
            &p.child("fsGroupChangePolicy"),
            policy,
            &["Always", "OnRootMismatch"],
        );
    }
    seccomp_profile(errs, sc, &p);
    apparmor_profile(errs, sc, &p);
    if let Some(policy) = st(errs, sc, "supplementalGroupsPolicy", &p)
        && policy != "Merge"
        && policy != "Strict"
    {
        not_supported(errs, &p.child("supplementalGroupsPolicy"), policy, &["Merge", "Strict"]);
    }
}

pub(super) fn host_network_deps(errs: &mut Errs, spec: J<'_>, p: &Path, opts: Opts) {
    if get(spec, "hostNetwork").and_then(Value::as_bool) != Some(true) {
        return;
    }
    let cp = p.child("containers");
    for (i, c) in arr(&mut Errs::new(), spec, "containers", p).iter().enumerate() {
        for (j, port) in c
            .get("ports")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            let hp = port.get("hostPort").and_then(Value::as_i64).unwrap_or(0);
            let cport = port.get("containerPort").and_then(Value::as_i64).unwrap_or(0);
            if (opts.is_pod || hp != 0) && hp != cport {
                invalid(
                    errs,
                    &cp.index(i).child("ports").index(j).child("hostPort"),
                    hp,
                    "must match `containerPort` when `hostNetwork` is true",
                );
            }
        }
    }
}
