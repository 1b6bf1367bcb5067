//! Pod updates: the fields a pod may change in place and upstream's Forbidden message.

use super::*;

pub(super) const UPDATABLE_FIELDS: &str = "`spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)";

pub(super) fn pod_update(errs: &mut Errs, obj: &Value, old: &Value) {
    let sp = Path::new("spec");
    let new_spec = get(Some(obj), "spec");
    let old_spec = get(Some(old), "spec");
    let mut scratch = Errs::new();

    let anns = |v: &Value| -> Vec<(String, String)> {
        get(get(Some(v), "metadata"), "annotations")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                    .collect()
            })
            .unwrap_or_default()
    };
    let (na, oa) = (anns(obj), anns(old));
    let ap = Path::new("metadata").child("annotations");
    for (k, v) in &oa {
        if na.iter().any(|(nk, nv)| nk == k && nv == v) {
            continue;
        }
        if k.starts_with("container.apparmor.security.beta.kubernetes.io/") {
            forbidden(errs, &ap.key(k), "may not remove or update AppArmor annotations");
        }
        if k == "kubernetes.io/config.mirror" {
            forbidden(errs, &ap.key(k), "may not remove or update mirror pod annotation");
        }
    }
    for (k, _) in &na {
        if oa.iter().any(|(ok, _)| ok == k) {
            continue;
        }
        if k.starts_with("container.apparmor.security.beta.kubernetes.io/") {
            forbidden(errs, &ap.key(k), "may not add AppArmor annotations");
        }
        if k == "kubernetes.io/config.mirror" {
            forbidden(errs, &ap.key(k), "may not add mirror pod annotation");
        }
    }

    for list in ["containers", "initContainers"] {
        let new = arr(&mut scratch, new_spec, list, &sp);
        let was = arr(&mut scratch, old_spec, list, &sp);
        if new.len() != was.len() {
            forbidden(errs, &sp.child(list), "pod updates may not add or remove containers");
            return;
        }
        for (i, c) in new.iter().enumerate() {
            let image = c.get("image").and_then(Value::as_str).unwrap_or("");
            if image.is_empty() {
                required(errs, &sp.child(list).index(i).child("image"), "");
            }
            if image.trim() != image {
                invalid(
                    errs,
                    &sp.child(list).index(i).child("image"),
                    image,
                    "must not have leading or trailing whitespace",
                );
            }
        }
    }

    let new_ads = get(new_spec, "activeDeadlineSeconds").and_then(Value::as_i64);
    let old_ads = get(old_spec, "activeDeadlineSeconds").and_then(Value::as_i64);
    match (new_ads, old_ads) {
        (Some(n), _) if !(0..=MAX_INT32).contains(&n) => {
            invalid(
                errs,
                &sp.child("activeDeadlineSeconds"),
                n,
                inclusive_range_error(0, MAX_INT32),
            );
            return;
        }
        (Some(n), Some(o)) if o < n => {
            invalid(
                errs,
                &sp.child("activeDeadlineSeconds"),
                n,
                "must be less than or equal to previous value",
            );
            return;
        }
        (None, Some(_)) => invalid(
            errs,
            &sp.child("activeDeadlineSeconds"),
            Value::Null,
            "must not update from a positive integer to nil value",
        ),
        _ => {}
    }

    let new_tols = arr(&mut scratch, new_spec, "tolerations", &sp);
    let old_tols = arr(&mut scratch, old_spec, "tolerations", &sp);
    let strip = |t: &Value| {
        let mut t = t.clone();
        if let Some(m) = t.as_object_mut() {
            m.remove("tolerationSeconds");
        }
        t
    };
    let modified = old_tols
        .iter()
        .any(|o| !new_tols.iter().any(|n| semantic_eq(Some(&strip(o)), Some(&strip(n)))));
    if modified {
        forbidden(
            errs,
            &sp.child("tolerations"),
            "existing toleration can not be modified except its tolerationSeconds",
        );
    } else {
        tolerations(errs, new_tols, &sp.child("tolerations"));
    }

    let new_gates = arr(&mut scratch, new_spec, "schedulingGates", &sp);
    let old_gates: Vec<&str> = arr(&mut scratch, old_spec, "schedulingGates", &sp)
        .iter()
        .filter_map(|g| g.get("name").and_then(Value::as_str))
        .collect();
    for (i, g) in new_gates.iter().enumerate() {
        let name = g.get("name").and_then(Value::as_str).unwrap_or("");
        if !old_gates.contains(&name) {
            forbidden(
                errs,
                &sp.child("schedulingGates").index(i).child("name"),
                format!("only deletion is allowed, but found new scheduling gate '{name}'"),
            );
        }
    }

    if semantic_eq(new_spec, old_spec) {
        return;
    }
    let old_qos = get(get(Some(old), "status"), "qosClass")
        .and_then(Value::as_str)
        .map(str::to_string);
    let old_qos = old_qos.unwrap_or_else(|| pod_qos_class(old).to_string());
    if old_qos != pod_qos_class(obj) {
        let new_qos = get(get(Some(obj), "status"), "qosClass")
            .and_then(Value::as_str)
            .unwrap_or("");
        invalid(errs, &Path::new("metadata"), new_qos, "Pod QoS is immutable");
    }

    let mut munged = new_spec.cloned().unwrap_or_else(|| Value::Object(Default::default()));
    if let Some(m) = munged.as_object_mut() {
        for list in ["containers", "initContainers"] {
            if let Some(Value::Array(cs)) = m.get_mut(list) {
                for (i, c) in cs.iter_mut().enumerate() {
                    let old_image = old_spec
                        .and_then(|s| s.get(list))
                        .and_then(|l| l.get(i))
                        .and_then(|c| c.get("image"))
                        .cloned();
                    if let Some(cm) = c.as_object_mut() {
                        match old_image {
                            Some(img) => cm.insert("image".into(), img),
                            None => cm.remove("image"),
                        };
                    }
                }
            }
        }
        for key in ["activeDeadlineSeconds", "schedulingGates", "tolerations"] {
            match old_spec.and_then(|s| s.get(key)) {
                Some(v) => m.insert(key.into(), v.clone()),
                None => m.remove(key),
            };
        }
        let old_grace = get(old_spec, "terminationGracePeriodSeconds").and_then(Value::as_i64);
        let new_grace = m.get("terminationGracePeriodSeconds").and_then(Value::as_i64);
        if old_grace.is_some_and(|g| g < 0) && new_grace == Some(1) {
            m.insert(
                "terminationGracePeriodSeconds".into(),
                Value::from(old_grace.unwrap_or(1)),
            );
        }
    }
    if !semantic_eq(Some(&munged), old_spec) {
        forbidden(
            errs,
            &sp,
            format!("pod updates may not change fields other than {UPDATABLE_FIELDS}"),
        );
    }
}
