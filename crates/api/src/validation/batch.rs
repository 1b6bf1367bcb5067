//! batch/v1: Job and CronJob.

use super::meta::{self, LabelSelector, meta_create, meta_update};
use super::names;
use super::pod::pod_template_spec;
use super::{
    Errs, IMMUTABLE, J, Path, get, gorepr, int, invalid, invalid_raw, nonneg, nonneg_field, not_supported, required,
    required_one_of, semantic_eq, st, st0,
};
use serde_json::Value;

const MAX_PARALLELISM_INDEXED: i64 = 100_000;

/// Job create/update.
pub(crate) fn validate_job(errs: &mut Errs, obj: &Value, old: Option<&Value>) {
    let sp = Path::new("spec");
    let spec = super::obj(errs, Some(obj), "spec", &Path::new(""));
    match old {
        None => {
            meta_create(errs, obj, true, names::name_is_dns_subdomain);
            generated_selector(errs, obj, spec);
            job_spec(errs, spec, &sp);
            let m = get(Some(obj), "metadata");
            let name = get(m, "name").and_then(Value::as_str).unwrap_or("");
            let indexed = get(spec, "completionMode").and_then(Value::as_str) == Some("Indexed");
            if let Some(c) = get(spec, "completions").and_then(Value::as_i64)
                && indexed
                && c > 0
            {
                let host = format!("{name}-{}", c - 1);
                if !names::is_dns1123_label(&host).is_empty() {
                    invalid(
                        errs,
                        &Path::new("metadata").child("name"),
                        name,
                        format!("will not able to create pod with invalid DNS label: {host}"),
                    );
                }
            }
        }
        Some(old) => {
            meta_update(errs, obj, old);
            job_spec(errs, spec, &sp);
            let old_spec = get(Some(old), "spec");
            let elastic = get(spec, "completionMode").and_then(Value::as_str) == Some("Indexed")
                && get(spec, "completions") == get(spec, "parallelism")
                && get(old_spec, "completions") == get(old_spec, "parallelism");
            if !elastic && get(spec, "completions") != get(old_spec, "completions") {
                let v = get(spec, "completions").cloned().unwrap_or(Value::Null);
                invalid(errs, &sp.child("completions"), v, IMMUTABLE);
            }
            if !semantic_eq(get(spec, "selector"), get(old_spec, "selector")) {
                invalid_raw(
                    errs,
                    &sp.child("selector"),
                    gorepr::label_selector(get(spec, "selector")),
                    IMMUTABLE,
                );
            }
            if !template_update_allowed(spec, old_spec, old) {
                invalid_raw(errs, &sp.child("template"), "core.PodTemplateSpec{...}", IMMUTABLE);
            }
            if get(spec, "completionMode") != get(old_spec, "completionMode") {
                let v = get(spec, "completionMode").cloned().unwrap_or(Value::Null);
                invalid(errs, &sp.child("completionMode"), v, IMMUTABLE);
            }
            for key in ["podFailurePolicy", "backoffLimitPerIndex", "managedBy", "successPolicy"] {
                let (n, o) = (get(spec, key), get(old_spec, key));
                if semantic_eq(n, o) {
                    continue;
                }
                match key {
                    "podFailurePolicy" => invalid_raw(errs, &sp.child(key), "&batch.PodFailurePolicy{...}", IMMUTABLE),
                    "successPolicy" => invalid_raw(errs, &sp.child(key), "&batch.SuccessPolicy{...}", IMMUTABLE),
                    _ => invalid(errs, &sp.child(key), n.cloned().unwrap_or(Value::Null), IMMUTABLE),
                }
            }
        }
    }
}

/// The template may change only while a suspended job has not started, and then only its
/// scheduling directives, labels and annotations.
fn template_update_allowed(spec: J<'_>, old_spec: J<'_>, old: &Value) -> bool {
    let (new_t, old_t) = (get(spec, "template"), get(old_spec, "template"));
    if semantic_eq(new_t, old_t) {
        return true;
    }
    let suspended = get(spec, "suspend").and_then(Value::as_bool) == Some(true);
    let status = get(Some(old), "status");
    let never_started =
        get(status, "startTime").is_none() && get(status, "active").and_then(Value::as_i64).unwrap_or(0) == 0;
    if !(suspended && never_started) {
        return false;
    }
    let strip = |t: J<'_>| -> Value {
        let mut t = t.cloned().unwrap_or(Value::Null);
        if let Some(m) = t.get_mut("metadata").and_then(Value::as_object_mut) {
            m.remove("labels");
            m.remove("annotations");
        }
        if let Some(s) = t.get_mut("spec").and_then(Value::as_object_mut) {
            for k in ["nodeSelector", "tolerations", "affinity", "schedulingGates"] {
                s.remove(k);
            }
        }
        t
    };
    semantic_eq(Some(&strip(new_t)), Some(&strip(old_t)))
}

/// `validateGeneratedSelector`: auto-generated selectors must carry the job's uid and name.
fn generated_selector(errs: &mut Errs, obj: &Value, spec: J<'_>) {
    if get(spec, "manualSelector").and_then(Value::as_bool) == Some(true) {
        return;
    }
    let Some(sel) = get(spec, "selector") else {
        return;
    };
    let m = get(Some(obj), "metadata");
    let uid = get(m, "uid").and_then(Value::as_str).unwrap_or("");
    let name = get(m, "name").and_then(Value::as_str).unwrap_or("");
    if uid.is_empty() {
        required(errs, &Path::new("metadata").child("uid"), "");
    }
    let tmpl_meta = get(get(spec, "template"), "metadata");
    let labels = get(tmpl_meta, "labels");
    let lp = Path::new("spec").child("template").child("metadata").child("labels");
    for (key, want) in [
        ("controller-uid", uid),
        ("job-name", name),
        ("batch.kubernetes.io/controller-uid", uid),
        ("batch.kubernetes.io/job-name", name),
    ] {
        match get(labels, key).and_then(Value::as_str) {
            None => required(errs, &lp.key(key), format!("must be '{want}'")),
            Some(v) if v != want => invalid_raw(
                errs,
                &lp.key(key),
                gorepr::string_map(labels),
                &format!("must be '{want}'"),
            ),
            Some(_) => {}
        }
    }
    let expected = serde_json::json!({
        "controller-uid": uid, "job-name": name,
        "batch.kubernetes.io/controller-uid": uid, "batch.kubernetes.io/job-name": name,
    });
    if let Ok(selector) = LabelSelector::from_json(Some(sel))
        && !selector.matches(Some(&expected))
    {
        invalid_raw(
            errs,
            &Path::new("spec").child("selector"),
            gorepr::label_selector(Some(sel)),
            "`selector` not auto-generated",
        );
    }
}

/// `ValidateJobSpec`: the shared checks plus the selector.
fn job_spec(errs: &mut Errs, spec: J<'_>, sp: &Path) {
    job_spec_common(errs, spec, sp);
    let sel = super::obj(errs, spec, "selector", sp);
    match sel {
        None => required(errs, &sp.child("selector"), ""),
        Some(_) => meta::validate_label_selector(errs, sel, &sp.child("selector")),
    }
    let labels = get(get(get(spec, "template"), "metadata"), "labels");
    if let Ok(selector) = LabelSelector::from_json(sel)
        && !selector.matches(labels)
    {
        invalid_raw(
            errs,
            &sp.child("template").child("metadata").child("labels"),
            gorepr::string_map(labels),
            "`selector` does not match template `labels`",
        );
    }
}

/// `validateJobSpec`.
fn job_spec_common(errs: &mut Errs, spec: J<'_>, sp: &Path) {
    for key in [
        "parallelism",
        "completions",
        "activeDeadlineSeconds",
        "backoffLimit",
        "ttlSecondsAfterFinished",
    ] {
        nonneg_field(errs, spec, key, sp);
    }
    let completions = get(spec, "completions").and_then(Value::as_i64);
    let parallelism = get(spec, "parallelism").and_then(Value::as_i64);
    let mode = st(errs, spec, "completionMode", sp);
    if let Some(mode) = mode {
        if mode != "NonIndexed" && mode != "Indexed" {
            not_supported(errs, &sp.child("completionMode"), mode, &["NonIndexed", "Indexed"]);
        }
        if mode == "Indexed" {
            if completions.is_none() {
                required(errs, &sp.child("completions"), "when completion mode is Indexed");
            }
            if let Some(p) = parallelism
                && p > MAX_PARALLELISM_INDEXED
            {
                invalid(
                    errs,
                    &sp.child("parallelism"),
                    p,
                    format!("must be less than or equal to {MAX_PARALLELISM_INDEXED} when completion mode is Indexed"),
                );
            }
        }
    }
    let indexed = mode == Some("Indexed");
    for key in ["backoffLimitPerIndex", "maxFailedIndexes"] {
        if let Some(v) = int(errs, spec, key, sp) {
            nonneg(errs, &sp.child(key), v);
            if !indexed {
                required(errs, &sp.child("completionMode"), format!("when {key} is specified"));
            }
        }
    }
    let has_pfp = get(spec, "podFailurePolicy").is_some();
    if let Some(prp) = st(errs, spec, "podReplacementPolicy", sp) {
        if has_pfp {
            if prp != "Failed" {
                not_supported(errs, &sp.child("podReplacementPolicy"), prp, &["Failed"]);
            }
        } else if prp != "Failed" && prp != "TerminatingOrFailed" {
            not_supported(
                errs,
                &sp.child("podReplacementPolicy"),
                prp,
                &["Failed", "TerminatingOrFailed"],
            );
        }
    }
    let tmpl = super::obj(errs, spec, "template", sp);
    let tp = sp.child("template");
    pod_template_spec(errs, tmpl, &tp);
    let rp = get(get(tmpl, "spec"), "restartPolicy")
        .and_then(Value::as_str)
        .unwrap_or("");
    let rpp = tp.child("spec").child("restartPolicy");
    match rp {
        "Always" | "" => required(errs, &rpp, "valid values: \"OnFailure\", \"Never\""),
        "OnFailure" | "Never" => {
            if has_pfp && rp != "Never" {
                invalid(
                    errs,
                    &rpp,
                    rp,
                    "only \"Never\" is supported when podFailurePolicy is specified",
                );
            }
        }
        other => not_supported(errs, &rpp, other, &["OnFailure", "Never"]),
    }
}

/// CronJob create/update.
pub(crate) fn validate_cron_job(errs: &mut Errs, obj: &Value, old: Option<&Value>) {
    let sp = Path::new("spec");
    let spec = super::obj(errs, Some(obj), "spec", &Path::new(""));
    let old_spec = old.and_then(|o| get(Some(o), "spec"));
    meta::object_meta(errs, obj, old, true, names::name_is_dns_subdomain);
    let schedule = st0(errs, spec, "schedule", &sp);
    let time_zone = st(errs, spec, "timeZone", &sp);
    if schedule.is_empty() {
        required(errs, &sp.child("schedule"), "");
    } else {
        let allow_tz = old_spec
            .and_then(|s| s.get("schedule"))
            .and_then(Value::as_str)
            .is_some_and(|s| s.contains("TZ"));
        if let Err(e) = super::cron::parse_standard(schedule) {
            invalid(errs, &sp.child("schedule"), schedule, e);
        }
        if allow_tz && schedule.contains("TZ") && time_zone.is_some() {
            invalid(
                errs,
                &sp.child("schedule"),
                schedule,
                "cannot use both timeZone field and TZ or CRON_TZ in schedule",
            );
        } else if !allow_tz && schedule.contains("TZ") {
            invalid(
                errs,
                &sp.child("schedule"),
                schedule,
                "cannot use TZ or CRON_TZ in schedule, use timeZone field instead",
            );
        }
    }
    nonneg_field(errs, spec, "startingDeadlineSeconds", &sp);
    let old_tz = old_spec.and_then(|s| s.get("timeZone")).and_then(Value::as_str);
    if (old.is_none() || old_tz != time_zone)
        && let Some(tz) = time_zone
    {
        time_zone_check(errs, tz, &sp.child("timeZone"));
    }
    let concurrency_policy = st0(errs, spec, "concurrencyPolicy", &sp);
    required_one_of(
        errs,
        concurrency_policy,
        &sp.child("concurrencyPolicy"),
        &["Allow", "Forbid", "Replace"],
    );
    let jt = super::obj(errs, spec, "jobTemplate", &sp);
    let jp = sp.child("jobTemplate");
    let jspec = super::obj(errs, jt, "spec", &jp);
    let jsp = jp.child("spec");
    job_spec_common(errs, jspec, &jsp);
    if let Some(sel) = get(jspec, "selector") {
        invalid_raw(
            errs,
            &jsp.child("selector"),
            gorepr::label_selector(Some(sel)),
            "`selector` will be auto-generated",
        );
    }
    if get(jspec, "manualSelector").and_then(Value::as_bool) == Some(true) {
        not_supported(errs, &jsp.child("manualSelector"), true, &["nil", "false"]);
    }
    for key in ["successfulJobsHistoryLimit", "failedJobsHistoryLimit"] {
        nonneg_field(errs, spec, key, &sp);
    }
    if old.is_none() {
        let name = get(get(Some(obj), "metadata"), "name")
            .and_then(Value::as_str)
            .unwrap_or("");
        if name.len() > 52 {
            invalid(
                errs,
                &Path::new("metadata").child("name"),
                name,
                "must be no more than 52 characters",
            );
        }
    }
}

fn time_zone_check(errs: &mut Errs, tz: &str, p: &Path) {
    if tz.is_empty() {
        invalid(errs, p, tz, "timeZone must be nil or non-empty string");
        return;
    }
    for part in tz.split('/') {
        let chars_ok = !part.is_empty() && part.bytes().all(|c| c.is_ascii_alphanumeric() || b"-_+".contains(&c));
        if part == "." || part == ".." || part.starts_with('-') || !chars_ok {
            invalid(errs, p, tz, format!("unknown time zone {tz}"));
            return;
        }
    }
    if tz.eq_ignore_ascii_case("local") {
        invalid(
            errs,
            p,
            tz,
            "timeZone must be an explicit time zone as defined in https://www.iana.org/time-zones",
        );
    }
    if jiff::tz::TimeZone::get(tz).is_err() {
        invalid(errs, p, tz, format!("unknown time zone {tz}"));
    }
}
