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
    per_index_limits(errs, spec, sp, indexed, completions, parallelism);
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
    if let Some(policy) = get(spec, "podFailurePolicy") {
        pod_failure_policy(errs, policy, spec, &sp.child("podFailurePolicy"));
    }
    if let Some(policy) = get(spec, "successPolicy") {
        success_policy(
            errs,
            policy,
            indexed,
            completions.unwrap_or(0),
            &sp.child("successPolicy"),
        );
    }
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

/// The most indexes an Indexed Job may fail (`maxFailedIndexes`), and the most it may fail
/// or run at once when it has more than [`MAX_PARALLELISM_INDEXED`] completions.
const MAX_FAILED_INDEXES: i64 = 100_000;
const MAX_FAILED_INDEXES_HUGE: i64 = 10_000;

/// `backoffLimitPerIndex` and `maxFailedIndexes`, as upstream's `validateJobSpec`.
fn per_index_limits(
    errs: &mut Errs,
    spec: J<'_>,
    sp: &Path,
    indexed: bool,
    completions: Option<i64>,
    parallelism: Option<i64>,
) {
    let per_index = int(errs, spec, "backoffLimitPerIndex", sp);
    let max_failed = int(errs, spec, "maxFailedIndexes", sp);
    for (key, v) in [("backoffLimitPerIndex", per_index), ("maxFailedIndexes", max_failed)] {
        if let Some(v) = v {
            nonneg(errs, &sp.child(key), v);
        }
    }
    if max_failed.is_some() && per_index.is_none() {
        required(
            errs,
            &sp.child("backoffLimitPerIndex"),
            "when maxFailedIndexes is specified",
        );
    }
    if !indexed {
        for (key, v) in [("backoffLimitPerIndex", per_index), ("maxFailedIndexes", max_failed)] {
            if let Some(v) = v {
                invalid(errs, &sp.child(key), v, "requires indexed completion mode");
            }
        }
        return;
    }
    if let Some(m) = max_failed {
        if completions.is_some_and(|c| m > c) {
            invalid(
                errs,
                &sp.child("maxFailedIndexes"),
                m,
                "must be less than or equal to completions",
            );
        }
        if m > MAX_FAILED_INDEXES {
            invalid(
                errs,
                &sp.child("maxFailedIndexes"),
                m,
                format!("must be less than or equal to {MAX_FAILED_INDEXES}"),
            );
        }
    }
    if per_index.is_some() && completions.is_some_and(|c| c > MAX_PARALLELISM_INDEXED) {
        let huge = "when completions are above 100000 and used with backoff limit per index";
        match max_failed {
            None => required(
                errs,
                &sp.child("maxFailedIndexes"),
                "must be specified when completions is above 100000",
            ),
            Some(m) if m > MAX_FAILED_INDEXES_HUGE => invalid(
                errs,
                &sp.child("maxFailedIndexes"),
                m,
                format!("must be less than or equal to {MAX_FAILED_INDEXES_HUGE} {huge}"),
            ),
            Some(_) => {}
        }
        if let Some(p) = parallelism.filter(|p| *p > MAX_FAILED_INDEXES_HUGE) {
            invalid(
                errs,
                &sp.child("parallelism"),
                p,
                format!("must be less than or equal to {MAX_FAILED_INDEXES_HUGE} {huge}"),
            );
        }
    }
}

/// `validatePodFailurePolicy`: at most 20 rules, each with a known action and exactly one
/// of `onExitCodes` (a known operator, 1 to 255 ordered, unique values, no 0 with `In`, a
/// container of the template) and `onPodConditions` (at most 20, qualified types, a known
/// status).
fn pod_failure_policy(errs: &mut Errs, policy: &Value, spec: J<'_>, p: &Path) {
    const ACTIONS: &[&str] = &["Count", "FailIndex", "FailJob", "Ignore"];
    let rules = super::arr(errs, Some(policy), "rules", p);
    if rules.len() > 20 {
        super::too_many(errs, &p.child("rules"), rules.len(), 20);
    }
    let tspec = get(get(spec, "template"), "spec");
    let containers: Vec<&str> = ["containers", "initContainers"]
        .iter()
        .flat_map(|k| get(tspec, k).and_then(Value::as_array).into_iter().flatten())
        .filter_map(|c| c.get("name").and_then(Value::as_str))
        .collect();
    let per_index = get(spec, "backoffLimitPerIndex").is_some();
    for (i, rule) in rules.iter().enumerate() {
        let rp = p.child("rules").index(i);
        let action = st0(errs, Some(rule), "action", &rp);
        if action.is_empty() {
            required(errs, &rp.child("action"), format!("valid values: {}", go_list(ACTIONS)));
        } else if action == "FailIndex" && !per_index {
            invalid(
                errs,
                &rp.child("action"),
                action,
                "requires the backoffLimitPerIndex to be set",
            );
        } else if !ACTIONS.contains(&action) {
            not_supported(errs, &rp.child("action"), action, ACTIONS);
        }
        let exit_codes = get(Some(rule), "onExitCodes");
        if let Some(req) = exit_codes {
            let ep = rp.child("onExitCodes");
            let operator = st0(errs, Some(req), "operator", &ep);
            if operator.is_empty() {
                required(
                    errs,
                    &ep.child("operator"),
                    format!("valid values: {}", go_list(&["In", "NotIn"])),
                );
            } else if operator != "In" && operator != "NotIn" {
                not_supported(errs, &ep.child("operator"), operator, &["In", "NotIn"]);
            }
            if let Some(name) = st(errs, Some(req), "containerName", &ep)
                && !containers.contains(&name)
            {
                invalid(
                    errs,
                    &ep.child("containerName"),
                    name,
                    "must be one of the container or initContainer names in the pod template",
                );
            }
            let values: Vec<i64> = super::arr(errs, Some(req), "values", &ep)
                .iter()
                .filter_map(Value::as_i64)
                .collect();
            let shown = || {
                let list: Vec<String> = values.iter().map(i64::to_string).collect();
                format!("[]int32{{{}}}", list.join(", "))
            };
            if values.is_empty() {
                invalid_raw(errs, &ep.child("values"), shown(), "at least one value is required");
            } else if values.len() > 255 {
                super::too_many(errs, &ep.child("values"), values.len(), 255);
            } else {
                let mut seen = std::collections::HashSet::new();
                for (j, v) in values.iter().enumerate() {
                    if operator == "In" && *v == 0 {
                        invalid(
                            errs,
                            &ep.child("values").index(j),
                            *v,
                            "must not be 0 for the In operator",
                        );
                    }
                    if !seen.insert(*v) {
                        super::duplicate(errs, &ep.child("values").index(j), *v);
                    }
                }
                if values.windows(2).any(|w| w[0] > w[1]) {
                    invalid_raw(errs, &ep.child("values"), shown(), "must be ordered");
                }
            }
        }
        let conditions = super::arr(errs, Some(rule), "onPodConditions", &rp);
        let cp = rp.child("onPodConditions");
        if conditions.len() > 20 {
            super::too_many(errs, &cp, conditions.len(), 20);
        }
        for (j, c) in conditions.iter().enumerate() {
            let jp = cp.index(j);
            let kind = st0(errs, Some(c), "type", &jp);
            meta::qualified_name(errs, kind, &jp.child("type"));
            let status = st0(errs, Some(c), "status", &jp);
            let statuses = ["False", "True", "Unknown"];
            if status.is_empty() {
                required(
                    errs,
                    &jp.child("status"),
                    format!("valid values: {}", go_list(&statuses)),
                );
            } else if !statuses.contains(&status) {
                not_supported(errs, &jp.child("status"), status, &statuses);
            }
        }
        match (exit_codes.is_some(), !conditions.is_empty()) {
            (true, true) => invalid_raw(
                errs,
                &rp,
                "specifying both OnExitCodes and OnPodConditions is not supported",
                "",
            ),
            (false, false) => invalid_raw(
                errs,
                &rp,
                "specifying one of OnExitCodes and OnPodConditions is required",
                "",
            ),
            _ => {}
        }
    }
}

/// Go's `%q` of a string slice: `["A" "B"]`.
fn go_list(values: &[&str]) -> String {
    let quoted: Vec<String> = values.iter().map(|v| format!("{v:?}")).collect();
    format!("[{}]", quoted.join(" "))
}

/// `validateSuccessPolicy`: Indexed Jobs only; 1 to 20 rules, each with `succeededIndexes`
/// (an ordered interval list of indexes below `completions`) or `succeededCount` (at most
/// `completions`, and at most the number of those indexes), or both.
fn success_policy(errs: &mut Errs, policy: &Value, indexed: bool, completions: i64, p: &Path) {
    if !indexed {
        invalid_raw(errs, p, "batch.SuccessPolicy{...}", "requires indexed completion mode");
        return;
    }
    let rules = super::arr(errs, Some(policy), "rules", p);
    if rules.is_empty() {
        required(
            errs,
            &p.child("rules"),
            "at least one rules must be specified when the successPolicy is specified",
        );
    }
    if rules.len() > 20 {
        super::too_many(errs, &p.child("rules"), rules.len(), 20);
    }
    for (i, rule) in rules.iter().enumerate() {
        let rp = p.child("rules").index(i);
        let indexes = st(errs, Some(rule), "succeededIndexes", &rp);
        let count = int(errs, Some(rule), "succeededCount", &rp);
        if indexes.is_none() && count.is_none() {
            required(
                errs,
                &rp,
                "at least one of succeededCount or succeededIndexes must be specified",
            );
        }
        let mut total = 0i64;
        if let Some(list) = indexes {
            let ip = rp.child("succeededIndexes");
            if list.len() > 64 * 1024 {
                super::too_long(errs, &ip, 64 * 1024);
            }
            match index_intervals(list, completions) {
                Ok(n) => total = n,
                Err(e) => invalid(errs, &ip, list, format!("error parsing succeededIndexes: {e}")),
            }
        }
        if let Some(n) = count {
            let cp = rp.child("succeededCount");
            nonneg(errs, &cp, n);
            if n > completions {
                invalid(
                    errs,
                    &cp,
                    n,
                    format!("must be less than or equal to {completions} (the number of specified completions)"),
                );
            }
            if indexes.is_some() && n > total {
                invalid(
                    errs,
                    &cp,
                    n,
                    format!(
                        "must be less than or equal to {total} (the number of indexes in the specified succeededIndexes field)"
                    ),
                );
            }
        }
    }
}

/// How many indexes an interval list such as `0,2-4` names, parsed as strictly as upstream
/// (`parseIndexesFromString`): each part a number or `a-b` with `a < b`, parts in increasing
/// order, every index below `completions`.
fn index_intervals(list: &str, completions: i64) -> Result<i64, String> {
    let mut total = 0i64;
    let mut last: Option<i64> = None;
    if list.is_empty() {
        return Ok(0);
    }
    for part in list.split(',') {
        let ends: Vec<&str> = part.split('-').collect();
        if ends.len() > 2 {
            return Err(format!(
                "the fragment {part:?} violates the requirement that an index interval can have at most two parts separated by '-'"
            ));
        }
        let mut nums = [0i64; 2];
        for (k, e) in ends.iter().enumerate() {
            let n: i64 = e
                .parse::<i32>()
                .ok()
                .filter(|n| *n >= 0)
                .map(i64::from)
                .ok_or_else(|| format!("cannot convert string to integer for index: {e:?}"))?;
            if n >= completions {
                return Err(format!("too large index: {e:?}"));
            }
            nums[k] = n;
        }
        let (a, b) = if ends.len() == 2 {
            (nums[0], nums[1])
        } else {
            (nums[0], nums[0])
        };
        if ends.len() == 2 && a >= b {
            return Err(format!("non-increasing order, previous: {a}, current: {b}"));
        }
        if let Some(prev) = last
            && prev >= a
        {
            return Err(format!("non-increasing order, previous: {prev}, current: {a}"));
        }
        last = Some(b);
        total = total.saturating_add(b - a + 1);
    }
    Ok(total)
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
