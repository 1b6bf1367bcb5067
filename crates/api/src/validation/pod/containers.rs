//! Containers (regular, init, ephemeral): names, ports, environment, mounts and devices,
//! resize policy, probes and lifecycle handlers.

use super::*;

pub(super) fn containers(errs: &mut Errs, spec: J<'_>, ctx: &Ctx<'_>, p: &Path, spec_path: &Path) {
    let list = arr(errs, spec, "containers", spec_path);
    if list.is_empty() {
        required(errs, p, "");
        return;
    }
    let mut seen = HashSet::new();
    for (i, c) in list.iter().enumerate() {
        let cp = p.index(i);
        let c = Some(c);
        container_common(errs, c, ctx, &cp);
        let name = get(c, "name").and_then(Value::as_str).unwrap_or("");
        if !seen.insert(name) {
            duplicate(errs, &cp.child("name"), name);
        }
        if let Some(lc) = obj(&mut Errs::new(), c, "lifecycle", &cp) {
            lifecycle(errs, Some(lc), ctx.grace, &cp.child("lifecycle"));
        }
        probes(errs, c, ctx.grace, &cp);
        if get(c, "restartPolicy").is_some() {
            forbidden(
                errs,
                &cp.child("restartPolicy"),
                "may not be set for non-init containers",
            );
        }
    }
    host_port_conflicts(errs, list, p);
}

pub(super) fn init_containers(errs: &mut Errs, spec: J<'_>, ctx: &Ctx<'_>, p: &Path, spec_path: &Path) {
    let mut names_seen: HashSet<&str> = arr(&mut Errs::new(), spec, "containers", spec_path)
        .iter()
        .filter_map(|c| c.get("name").and_then(Value::as_str))
        .collect();
    for (i, c) in arr(errs, spec, "initContainers", spec_path).iter().enumerate() {
        let cp = p.index(i);
        let cv = Some(c);
        container_common(errs, cv, ctx, &cp);
        let mut restart_always = false;
        if let Some(rp) = st(errs, cv, "restartPolicy", &cp) {
            if rp != "Always" {
                not_supported(errs, &cp.child("restartPolicy"), rp, &["Always"]);
            }
            restart_always = rp == "Always";
        }
        let name = get(cv, "name").and_then(Value::as_str).unwrap_or("");
        if names_seen.contains(name) {
            duplicate(errs, &cp.child("name"), name);
        } else if !name.is_empty() {
            names_seen.insert(name);
        }
        host_port_conflicts(errs, std::slice::from_ref(c), p);
        if restart_always {
            if let Some(lc) = obj(&mut Errs::new(), cv, "lifecycle", &cp) {
                lifecycle(errs, Some(lc), ctx.grace, &cp.child("lifecycle"));
            }
            probes(errs, cv, ctx.grace, &cp);
        } else {
            for key in ["lifecycle", "livenessProbe", "readinessProbe", "startupProbe"] {
                if get(cv, key).is_some() {
                    forbidden(
                        errs,
                        &cp.child(key),
                        "may not be set for init containers without restartPolicy=Always",
                    );
                }
            }
        }
        if let Some(rp) = get(cv, "resizePolicy").filter(|v| v.as_array().is_some_and(|a| !a.is_empty())) {
            invalid_raw(
                errs,
                &cp.child("resizePolicy"),
                resize_policy_repr(rp),
                "must not be set for init containers",
            );
        }
    }
}

pub(super) fn resize_policy_repr(v: &Value) -> String {
    let items = v
        .as_array()
        .map(|a| {
            a.iter()
                .map(|x| {
                    format!(
                        "core.ContainerResizePolicy{{ResourceName:{}, RestartPolicy:{}}}",
                        gorepr::quote(x.get("resourceName").and_then(Value::as_str).unwrap_or("")),
                        gorepr::quote(x.get("restartPolicy").and_then(Value::as_str).unwrap_or(""))
                    )
                })
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default();
    format!("[]core.ContainerResizePolicy{{{items}}}")
}

pub(super) const EPHEMERAL_FORBIDDEN: &[&str] = &[
    "ports",
    "resources",
    "livenessProbe",
    "readinessProbe",
    "startupProbe",
    "lifecycle",
    "resizePolicy",
    "restartPolicy",
];

pub(super) fn ephemeral_containers(errs: &mut Errs, spec: J<'_>, ctx: &Ctx<'_>, p: &Path, spec_path: &Path) {
    let list = arr(errs, spec, "ephemeralContainers", spec_path);
    if list.is_empty() {
        return;
    }
    let mut scratch = Errs::new();
    let mut others: HashSet<&str> = HashSet::new();
    for l in ["containers", "initContainers"] {
        others.extend(
            arr(&mut scratch, spec, l, spec_path)
                .iter()
                .filter_map(|c| c.get("name").and_then(Value::as_str)),
        );
    }
    let mut all = others.clone();
    for (i, c) in list.iter().enumerate() {
        let cp = p.index(i);
        let c = Some(c);
        container_common(errs, c, ctx, &cp);
        if let Some(image) = get(c, "image").and_then(Value::as_str)
            && image.trim() != image
        {
            invalid(
                errs,
                &cp.child("image"),
                image,
                "must not have leading or trailing whitespace",
            );
        }
        let name = get(c, "name").and_then(Value::as_str).unwrap_or("");
        if all.contains(name) {
            duplicate(errs, &cp.child("name"), name);
        } else {
            all.insert(name);
        }
        if let Some(t) = get(c, "targetContainerName").and_then(Value::as_str)
            && !t.is_empty()
            && !others.contains(t)
        {
            not_found(errs, &cp.child("targetContainerName"), t, "");
        }
        for key in EPHEMERAL_FORBIDDEN {
            let set = match get(c, key) {
                None => false,
                Some(Value::Array(a)) => !a.is_empty(),
                Some(Value::Object(o)) => !o.is_empty(),
                Some(_) => true,
            };
            if set {
                forbidden(errs, &cp.child(key), "cannot be set for an Ephemeral Container");
            }
        }
        for (j, vm) in arr(&mut scratch, c, "volumeMounts", &cp).iter().enumerate() {
            for key in ["subPath", "subPathExpr"] {
                if vm.get(key).and_then(Value::as_str).is_some_and(|s| !s.is_empty()) {
                    forbidden(
                        errs,
                        &cp.child("volumeMounts").index(j).child(key),
                        "cannot be set for an Ephemeral Container",
                    );
                }
            }
        }
    }
}

pub(super) fn host_port_conflicts(errs: &mut Errs, list: &[Value], p: &Path) {
    let mut seen = HashSet::new();
    for (ci, c) in list.iter().enumerate() {
        let Some(ports) = c.get("ports").and_then(Value::as_array) else {
            continue;
        };
        for (pi, port) in ports.iter().enumerate() {
            let hp = port.get("hostPort").and_then(Value::as_i64).unwrap_or(0);
            if hp == 0 {
                continue;
            }
            let key = format!(
                "{}/{}/{hp}",
                port.get("protocol").and_then(Value::as_str).unwrap_or(""),
                port.get("hostIP").and_then(Value::as_str).unwrap_or("")
            );
            if !seen.insert(key.clone()) {
                duplicate(errs, &p.index(ci).child("ports").index(pi).child("hostPort"), key);
            }
        }
    }
}

/// `validateContainerCommon`.
pub(super) fn container_common(errs: &mut Errs, c: J<'_>, ctx: &Ctx<'_>, p: &Path) {
    let name = st0(errs, c, "name", p);
    if name.is_empty() {
        required(errs, &p.child("name"), "");
    } else {
        dns_label(errs, name, &p.child("name"));
    }
    if st0(errs, c, "image", p).is_empty() {
        required(errs, &p.child("image"), "");
    }
    let termination_message_policy = st0(errs, c, "terminationMessagePolicy", p);
    required_one_of(
        errs,
        termination_message_policy,
        &p.child("terminationMessagePolicy"),
        &["File", "FallbackToLogsOnError"],
    );
    container_ports(errs, c, p);
    env(errs, c, p);
    env_from(errs, c, p);
    let mounts = arr(errs, c, "volumeMounts", p);
    let devices = arr(errs, c, "volumeDevices", p);
    volume_mounts(errs, mounts, devices, ctx.vols, c, &p.child("volumeMounts"));
    volume_devices(errs, devices, mounts, ctx.vols, &p.child("volumeDevices"));
    let pull_policy = st0(errs, c, "imagePullPolicy", p);
    required_one_of(
        errs,
        pull_policy,
        &p.child("imagePullPolicy"),
        &["Always", "IfNotPresent", "Never"],
    );
    let res = obj(errs, c, "resources", p);
    resource_requirements(errs, res, ctx.claims, &p.child("resources"));
    resize_policy(errs, c, ctx.restart_policy, p);
    let sc = obj(errs, c, "securityContext", p);
    security_context(errs, sc, ctx.host_users, &p.child("securityContext"));
}

pub(super) fn container_ports(errs: &mut Errs, c: J<'_>, p: &Path) {
    let pp = p.child("ports");
    let mut seen = HashSet::new();
    for (i, port) in arr(errs, c, "ports", p).iter().enumerate() {
        let ip = pp.index(i);
        let port = Some(port);
        let name = st0(errs, port, "name", &ip);
        if !name.is_empty() {
            let msgs = is_valid_port_name(name);
            if !msgs.is_empty() {
                each_invalid(errs, &ip.child("name"), name, msgs);
            } else if !seen.insert(name) {
                duplicate(errs, &ip.child("name"), name);
            }
        }
        match int(errs, port, "containerPort", &ip).unwrap_or(0) {
            0 => required(errs, &ip.child("containerPort"), ""),
            n => {
                for m in is_valid_port_num(n) {
                    invalid(errs, &ip.child("containerPort"), n, m);
                }
            }
        }
        let hp = int(errs, port, "hostPort", &ip).unwrap_or(0);
        if hp != 0 {
            for m in is_valid_port_num(hp) {
                invalid(errs, &ip.child("hostPort"), hp, m);
            }
        }
        protocol(errs, port, &ip);
    }
}

/// Port protocol: required, one of TCP/UDP/SCTP.
pub(crate) fn protocol(errs: &mut Errs, port: J<'_>, p: &Path) {
    let proto = st0(errs, port, "protocol", p);
    required_one_of(errs, proto, &p.child("protocol"), &["SCTP", "TCP", "UDP"]);
}

pub(super) fn env(errs: &mut Errs, c: J<'_>, p: &Path) {
    let ep = p.child("env");
    for (i, e) in arr(errs, c, "env", p).iter().enumerate() {
        let ip = ep.index(i);
        let e = Some(e);
        let name = st0(errs, e, "name", &ip);
        if name.is_empty() {
            required(errs, &ip.child("name"), "");
        } else {
            each_invalid(errs, &ip.child("name"), name, names::is_relaxed_env_var_name(name));
        }
        let Some(vf) = obj(errs, e, "valueFrom", &ip) else {
            continue;
        };
        let vp = ip.child("valueFrom");
        let vf = Some(vf);
        let mut n = 0;
        if let Some(fr) = obj(errs, vf, "fieldRef", &vp) {
            n += 1;
            object_field_selector(errs, Some(fr), ENV_FIELD_PATHS, &vp.child("fieldRef"));
        }
        if let Some(rr) = obj(errs, vf, "resourceFieldRef", &vp) {
            n += 1;
            resource_field_selector(errs, Some(rr), &vp.child("resourceFieldRef"), false);
        }
        for key in ["configMapKeyRef", "secretKeyRef"] {
            if let Some(r) = obj(errs, vf, key, &vp) {
                n += 1;
                let kp = vp.child(key);
                let name = st0(errs, Some(r), "name", &kp);
                subdomain(errs, name, &kp.child("name"));
                let k = st0(errs, Some(r), "key", &kp);
                if k.is_empty() {
                    required(errs, &kp.child("key"), "");
                } else {
                    each_invalid(errs, &kp.child("key"), k, names::is_config_map_key(k));
                }
            }
        }
        let value = get(e, "value").and_then(Value::as_str).unwrap_or("");
        if n == 0 {
            invalid(
                errs,
                &vp,
                "",
                "must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`",
            );
        } else if !value.is_empty() {
            invalid(errs, &vp, "", "may not be specified when `value` is not empty");
        } else if n > 1 {
            invalid(errs, &vp, "", "may not have more than one field specified at a time");
        }
    }
}

pub(super) fn env_from(errs: &mut Errs, c: J<'_>, p: &Path) {
    let ep = p.child("envFrom");
    for (i, e) in arr(errs, c, "envFrom", p).iter().enumerate() {
        let ip = ep.index(i);
        let e = Some(e);
        if let Some(prefix) = st(errs, e, "prefix", &ip).filter(|s| !s.is_empty()) {
            each_invalid(
                errs,
                &ip.child("prefix"),
                prefix,
                names::is_relaxed_env_var_name(prefix),
            );
        }
        let mut n = 0;
        for key in ["configMapRef", "secretRef"] {
            if let Some(r) = obj(errs, e, key, &ip) {
                n += 1;
                let rp = ip.child(key);
                let name = st0(errs, Some(r), "name", &rp);
                if name.is_empty() {
                    required(errs, &rp.child("name"), "");
                } else {
                    each_invalid(errs, &rp.child("name"), name, names::name_is_dns_subdomain(name, true));
                }
            }
        }
        if n == 0 {
            invalid(errs, &ep, "", "must specify one of: `configMapRef` or `secretRef`");
        } else if n > 1 {
            invalid(errs, &ep, "", "may not have more than one field specified at a time");
        }
    }
}

pub(super) fn volume_mounts(errs: &mut Errs, mounts: &[Value], devices: &[Value], vols: &Volumes, c: J<'_>, p: &Path) {
    let device_names: Vec<&str> = devices
        .iter()
        .filter_map(|d| d.get("name").and_then(Value::as_str))
        .collect();
    let device_paths: Vec<&str> = devices
        .iter()
        .filter_map(|d| d.get("devicePath").and_then(Value::as_str))
        .collect();
    let privileged = get(get(c, "securityContext"), "privileged").and_then(Value::as_bool) == Some(true);
    let mut points = HashSet::new();
    for (i, m) in mounts.iter().enumerate() {
        let ip = p.index(i);
        let m = Some(m);
        let name = st0(errs, m, "name", &ip);
        if name.is_empty() {
            required(errs, &ip.child("name"), "");
        }
        if !vols.contains_key(name) {
            not_found(errs, &ip.child("name"), name, "");
        }
        let mount_path = st0(errs, m, "mountPath", &ip);
        if mount_path.is_empty() {
            required(errs, &ip.child("mountPath"), "");
        }
        if !points.insert(mount_path) {
            invalid(errs, &ip.child("mountPath"), mount_path, "must be unique");
        }
        if device_names.contains(&name) {
            invalid(errs, &ip.child("name"), name, "must not already exist in volumeDevices");
        }
        if device_paths.contains(&mount_path) {
            invalid(
                errs,
                &ip.child("mountPath"),
                mount_path,
                "must not already exist as a path in volumeDevices",
            );
        }
        let sub = st0(errs, m, "subPath", &ip);
        if !sub.is_empty() {
            local_descending_path(errs, sub, &p.child("subPath"));
        }
        let sub_expr = st0(errs, m, "subPathExpr", &ip);
        if !sub_expr.is_empty() {
            if !sub.is_empty() {
                invalid(
                    errs,
                    &ip.child("subPathExpr"),
                    sub_expr,
                    "subPathExpr and subPath are mutually exclusive",
                );
            }
            local_descending_path(errs, sub_expr, &p.child("subPathExpr"));
        }
        let propagation = st(errs, m, "mountPropagation", &ip);
        if let Some(mp) = propagation {
            let pp = p.child("mountPropagation");
            if !["Bidirectional", "HostToContainer", "None"].contains(&mp) {
                not_supported(errs, &pp, mp, &["Bidirectional", "HostToContainer", "None"]);
            }
            if mp == "Bidirectional" && !privileged {
                forbidden(
                    errs,
                    &pp,
                    "Bidirectional mount propagation is available only to privileged containers",
                );
            }
        }
        if let Some(rro) = st(errs, m, "recursiveReadOnly", &ip) {
            let rp = p.child("recursiveReadOnly");
            match rro {
                "Disabled" => {}
                "Enabled" | "IfPossible" => {
                    if get(m, "readOnly").and_then(Value::as_bool) != Some(true) {
                        forbidden(errs, &rp, "may only be specified when readOnly is true");
                    }
                    if propagation.is_some_and(|p| p != "None") {
                        forbidden(
                            errs,
                            &rp,
                            "may only be specified when mountPropagation is None or not specified",
                        );
                    }
                }
                other => not_supported(errs, &rp, other, &["Disabled", "Enabled", "IfPossible"]),
            }
        }
    }
}

pub(super) fn volume_devices(errs: &mut Errs, devices: &[Value], mounts: &[Value], vols: &Volumes, p: &Path) {
    let mount_names: Vec<&str> = mounts
        .iter()
        .filter_map(|m| m.get("name").and_then(Value::as_str))
        .collect();
    let mount_paths: Vec<&str> = mounts
        .iter()
        .filter_map(|m| m.get("mountPath").and_then(Value::as_str))
        .collect();
    let mut paths = HashSet::new();
    let mut dev_names = HashSet::new();
    for (i, d) in devices.iter().enumerate() {
        let ip = p.index(i);
        let d = Some(d);
        let name = st0(errs, d, "name", &ip);
        let path = st0(errs, d, "devicePath", &ip);
        if name.is_empty() {
            required(errs, &ip.child("name"), "");
        }
        if dev_names.contains(name) {
            invalid(errs, &ip.child("name"), name, "must be unique");
        }
        match vols.get(name) {
            Some(false) => invalid(
                errs,
                &ip.child("name"),
                name,
                "can only use volume source type of PersistentVolumeClaim or Ephemeral for block mode",
            ),
            Some(true) => {}
            None => not_found(errs, &ip.child("name"), name, ""),
        }
        if path.is_empty() {
            required(errs, &ip.child("devicePath"), "");
        }
        if paths.contains(path) {
            invalid(errs, &ip.child("devicePath"), path, "must be unique");
        }
        if !path.is_empty() && path.split('/').any(|s| s == "..") {
            invalid(errs, &ip.child("devicePath"), path, "can not contain backsteps ('..')");
        } else {
            paths.insert(path);
        }
        if mount_names.contains(&name) {
            invalid(errs, &ip.child("name"), name, "must not already exist in volumeMounts");
        }
        if mount_paths.contains(&path) {
            invalid(
                errs,
                &ip.child("devicePath"),
                path,
                "must not already exist as a path in volumeMounts",
            );
        }
        if !name.is_empty() {
            dev_names.insert(name);
        }
    }
}

pub(super) fn resize_policy(errs: &mut Errs, c: J<'_>, restart_policy: &str, p: &Path) {
    let rp = p.child("resizePolicy");
    let mut seen = HashSet::new();
    for (i, x) in arr(errs, c, "resizePolicy", p).iter().enumerate() {
        let x = Some(x);
        let name = st0(errs, x, "resourceName", &rp.index(i));
        let policy = st0(errs, x, "restartPolicy", &rp.index(i));
        if !seen.insert(name) {
            duplicate(errs, &rp.index(i), name);
        }
        required_one_of(errs, name, &rp, &["cpu", "memory"]);
        required_one_of(errs, policy, &rp, &["NotRequired", "RestartContainer"]);
        if restart_policy == "Never" && policy != "NotRequired" {
            invalid(
                errs,
                &rp,
                policy,
                "must be 'NotRequired' when `restartPolicy` is 'Never'",
            );
        }
    }
}

// Probes and lifecycle

pub(super) fn probes(errs: &mut Errs, c: J<'_>, grace: Option<i64>, p: &Path) {
    for key in ["livenessProbe", "readinessProbe", "startupProbe"] {
        let Some(probe) = obj(errs, c, key, p) else {
            continue;
        };
        let pp = p.child(key);
        let probe = Some(probe);
        handler(errs, probe, grace, &pp, false);
        for f in [
            "initialDelaySeconds",
            "timeoutSeconds",
            "periodSeconds",
            "successThreshold",
            "failureThreshold",
        ] {
            nonneg_field(errs, probe, f, &pp);
        }
        let tgps = int(errs, probe, "terminationGracePeriodSeconds", &pp);
        if let Some(t) = tgps
            && t <= 0
        {
            invalid(
                errs,
                &pp.child("terminationGracePeriodSeconds"),
                t,
                "must be greater than 0",
            );
        }
        if key == "readinessProbe" {
            if let Some(t) = tgps {
                invalid(
                    errs,
                    &pp.child("terminationGracePeriodSeconds"),
                    t,
                    "must not be set for readinessProbes",
                );
            }
        } else {
            let st = get(probe, "successThreshold").and_then(Value::as_i64).unwrap_or(0);
            if st != 1 {
                invalid(errs, &pp.child("successThreshold"), st, "must be 1");
            }
        }
    }
}

pub(super) fn lifecycle(errs: &mut Errs, lc: J<'_>, grace: Option<i64>, p: &Path) {
    for key in ["postStart", "preStop"] {
        if let Some(h) = obj(errs, lc, key, p) {
            handler(errs, Some(h), grace, &p.child(key), true);
        }
    }
}

pub(super) fn handler(errs: &mut Errs, h: J<'_>, grace: Option<i64>, p: &Path, lifecycle_handler: bool) {
    let kinds: &[&str] = if lifecycle_handler {
        &["exec", "httpGet", "tcpSocket", "sleep"]
    } else {
        &["exec", "httpGet", "tcpSocket", "grpc"]
    };
    let mut n = 0;
    for kind in kinds {
        let Some(x) = get(h, kind) else { continue };
        let kp = p.child(kind);
        if n > 0 {
            forbidden(errs, &kp, "may not specify more than 1 handler type");
            continue;
        }
        n += 1;
        let x = Some(x);
        match *kind {
            "exec" if arr(errs, x, "command", &kp).is_empty() => {
                required(errs, &kp.child("command"), "");
            }
            "httpGet" => {
                if st0(errs, x, "path", &kp).is_empty() {
                    required(errs, &kp.child("path"), "");
                }
                port_num_or_name(errs, get(x, "port"), &kp.child("port"));
                let scheme = st0(errs, x, "scheme", &kp);
                if scheme != "HTTP" && scheme != "HTTPS" {
                    not_supported(errs, &kp.child("scheme"), scheme, &["HTTP", "HTTPS"]);
                }
                for hdr in arr(errs, x, "httpHeaders", &kp) {
                    let name = hdr.get("name").and_then(Value::as_str).unwrap_or("");
                    each_invalid(errs, &kp.child("httpHeaders"), name, names::is_http_header_name(name));
                }
            }
            "tcpSocket" => port_num_or_name(errs, get(x, "port"), &kp.child("port")),
            "grpc" => {
                let port = int(errs, x, "port", &kp).unwrap_or(0);
                for m in is_valid_port_num(port) {
                    invalid(errs, &kp.child("port"), port, m);
                }
            }
            "sleep" => {
                let secs = int(errs, x, "seconds", &kp).unwrap_or(0);
                let g = grace.unwrap_or(0);
                if secs < 0 || secs > g {
                    invalid(
                        errs,
                        &kp,
                        secs,
                        format!("must be non-negative and less than terminationGracePeriodSeconds ({g})"),
                    );
                }
            }
            _ => {}
        }
    }
    if n == 0 {
        required(errs, p, "must specify a handler type");
    }
}

/// `ValidatePortNumOrName` for an int-or-string port.
pub(crate) fn port_num_or_name(errs: &mut Errs, port: J<'_>, p: &Path) {
    match port {
        Some(Value::String(s)) => each_invalid(errs, p, s, is_valid_port_name(s)),
        Some(v) => match v.as_i64() {
            Some(n) => {
                for m in is_valid_port_num(n) {
                    invalid(errs, p, n, m);
                }
            }
            None => invalid(errs, p, v.clone(), "must be an integer or a port name"),
        },
        None => {
            for m in is_valid_port_num(0) {
                invalid(errs, p, 0, m);
            }
        }
    }
}
