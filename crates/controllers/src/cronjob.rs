//! The CronJob controller: a Job from `jobTemplate` at each time `schedule` names, as
//! upstream's `CronJobControllerV2` creates them.
//!
//! Jobs are named `<cronjob>-<minutes since the epoch of the scheduled time>`, so a time is
//! never run twice. `concurrencyPolicy` decides what happens while an earlier Job still
//! runs (`Allow`, `Forbid`: skip, `Replace`: delete it first); `suspend` holds new runs;
//! a run later than `startingDeadlineSeconds` is skipped; finished Jobs beyond
//! `successfulJobsHistoryLimit` (3) and `failedJobsHistoryLimit` (1) are deleted, oldest
//! first. Schedules are standard five-field cron lines (or `@hourly` and the like) in UTC,
//! or in `timeZone`; `@every <duration>` runs every so long after the last scheduled time
//! (or the CronJob's creation), whole seconds and at least one, as upstream's cron library.

use shoal_runtime::controller::ignore_not_found;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::{CronJob, Job};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, PropagationPolicy};
use serde_json::{Value, json};

use crate::events::{EventType, ObjectRef, Recorder};
use crate::informer::{self, Informers, name as name_of, uid as uid_of};
use shoal_runtime::controller::{Error, Keyed, Outcome as Next};

const MANAGER: &str = "cronjob-controller";
/// The annotation upstream puts on a Job with its scheduled time.
pub const SCHEDULED_AT: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";

/// A parsed schedule: the allowed minutes, hours, days of month, months and weekdays.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schedule {
    fields: [u64; 5],
    /// Day of month and day of week both restricted: either may match (cron's rule).
    either_day: bool,
    /// `@every`: seconds between runs, counted from the last one.
    every: Option<i64>,
}

const RANGES: [(u32, u32); 5] = [(0, 59), (0, 23), (1, 31), (1, 12), (0, 6)];
const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const DAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

fn value(field: usize, s: &str) -> Result<u32, String> {
    let names: &[&str] = match field {
        3 => &MONTHS,
        4 => &DAYS,
        _ => &[],
    };
    let lower = s.to_ascii_lowercase();
    if let Some(i) = names.iter().position(|n| *n == lower) {
        return Ok(u32::try_from(i).unwrap_or(0) + if field == 3 { 1 } else { 0 });
    }
    let v: u32 = s.parse().map_err(|_| format!("invalid value {s:?}"))?;
    // Sunday may be 7.
    Ok(if field == 4 && v == 7 { 0 } else { v })
}

impl std::str::FromStr for Schedule {
    type Err = String;

    fn from_str(line: &str) -> Result<Self, Self::Err> {
        let line = match line.trim() {
            "@yearly" | "@annually" => "0 0 1 1 *",
            "@monthly" => "0 0 1 * *",
            "@weekly" => "0 0 * * 0",
            "@daily" | "@midnight" => "0 0 * * *",
            "@hourly" => "0 * * * *",
            other => other,
        };
        if let Some(d) = line.strip_prefix("@every ") {
            let secs = shoal_api::validation::go_duration_seconds(d.trim())
                .ok_or_else(|| format!("failed to parse duration {line}: time: invalid duration {d:?}"))?;
            // Whole seconds, at least one (sub-second remainders are dropped, as robfig/cron).
            let whole = if secs.is_finite() { secs.trunc().max(1.0) } else { 1.0 };
            return Ok(Schedule {
                fields: [0; 5],
                either_day: false,
                every: Some(whole.min(i64::MAX as f64) as i64),
            });
        }
        let parts: Vec<&str> = line.split_whitespace().collect();
        if parts.len() != 5 {
            return Err(format!("expected exactly 5 fields, found {}: {line:?}", parts.len()));
        }
        let mut fields = [0u64; 5];
        for (i, part) in parts.iter().enumerate() {
            let (lo, hi) = RANGES[i];
            for item in part.split(',') {
                let (range, step) = match item.split_once('/') {
                    Some((r, s)) => (r, s.parse::<u32>().map_err(|_| format!("invalid step {s:?}"))?),
                    None => (item, 1),
                };
                if step == 0 {
                    return Err("a step of 0".into());
                }
                let (from, to) = match range {
                    "*" | "?" => (lo, hi),
                    r => match r.split_once('-') {
                        Some((a, b)) => (value(i, a)?, value(i, b)?),
                        None if item.contains('/') => (value(i, r)?, hi),
                        None => {
                            let v = value(i, r)?;
                            (v, v)
                        }
                    },
                };
                let to = if i == 4 && to == 7 { 6 } else { to };
                if from < lo || to > hi || from > to {
                    return Err(format!("{item:?} is outside {lo}-{hi}"));
                }
                for v in (from..=to).step_by(usize::try_from(step).unwrap_or(usize::MAX).max(1)) {
                    fields[i] |= 1 << v;
                }
            }
        }
        let star = |i: usize| parts[i] == "*" || parts[i] == "?";
        Ok(Schedule {
            fields,
            either_day: !star(2) && !star(4),
            every: None,
        })
    }
}

impl Schedule {
    /// Whether the minute starting at `t` is scheduled.
    pub fn matches(&self, t: &jiff::civil::DateTime) -> bool {
        let has = |i: usize, v: i8| self.fields[i] & (1 << u32::try_from(v).unwrap_or(63)) != 0;
        let dom = has(2, t.day());
        let dow = has(4, t.weekday().to_sunday_zero_offset());
        let day = if self.either_day { dom || dow } else { dom && dow };
        has(0, t.minute()) && has(1, t.hour()) && has(3, t.month()) && day
    }

    /// The latest scheduled minute in `(after, now]`, looking back at most a day.
    pub fn latest(
        &self,
        after: jiff::Timestamp,
        now: jiff::Timestamp,
        tz: &jiff::tz::TimeZone,
    ) -> Option<jiff::Timestamp> {
        if let Some(every) = self.every {
            // after + k * every, the latest not after now.
            let since = now.as_second().saturating_sub(after.as_second());
            let k = since.div_euclid(every);
            return (k >= 1)
                .then(|| jiff::Timestamp::from_second(after.as_second().saturating_add(k.saturating_mul(every))).ok())
                .flatten();
        }
        let floor = |t: jiff::Timestamp| t.as_second().div_euclid(60) * 60;
        let start = floor(after).max(floor(now) - 24 * 3600);
        let mut t = floor(now);
        while t > start {
            let ts = jiff::Timestamp::from_second(t).ok()?;
            if self.matches(&tz.to_datetime(ts)) {
                return Some(ts);
            }
            t -= 60;
        }
        None
    }
}

/// The Job for the run scheduled at `at`.
pub fn job_for(cj: &Value, at: jiff::Timestamp) -> Value {
    let template = &cj["spec"]["jobTemplate"];
    let name = format!("{}-{}", name_of(cj), at.as_second() / 60);
    let mut annotations = template["metadata"]["annotations"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    annotations.insert(SCHEDULED_AT.into(), json!(shoal_api::time::rfc3339(at)));
    let mut meta = json!({
        "name": name, "namespace": cj["metadata"]["namespace"], "annotations": annotations,
        "ownerReferences": [informer::controller_ref("batch/v1", "CronJob", cj)],
    });
    if let Some(l) = template["metadata"].get("labels").filter(|l| !l.is_null()) {
        meta["labels"] = l.clone();
    }
    json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": meta, "spec": template["spec"]})
}

fn finished(job: &Value) -> Option<&'static str> {
    job["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find_map(|c| match (c["type"].as_str(), c["status"].as_str()) {
            (Some("Complete"), Some("True")) => Some("Complete"),
            (Some("Failed"), Some("True")) => Some("Failed"),
            _ => None,
        })
}

/// Runs the controller until the process ends, on the system clock.
pub async fn run(client: kube::Client, informers: Informers) {
    run_with(client, informers, shoal_runtime::clock::system()).await
}

/// Runs the controller with `clock`: a keyed queue of CronJobs, woken by their Jobs and at
/// each schedule's next time.
pub async fn run_with(client: kube::Client, informers: Informers, clock: Arc<dyn shoal_runtime::clock::Clock>) {
    let recorder = Recorder::new(client.clone(), MANAGER);
    type Ctx = (kube::Client, Recorder, Arc<dyn shoal_runtime::clock::Clock>);
    let reconcile = |ctx: Arc<Ctx>, informers: Informers, cj: Option<Arc<Value>>| async move {
        let Some(cj) = cj else {
            return Ok(Next::Done);
        };
        let (client, recorder, clock) = &*ctx;
        let jobs = informers.of("batch", "jobs");
        let now = clock.now();
        sync(client, recorder, &cj, &jobs, now).await?;
        Ok(Next::RequeueAfter(until_next_minute(now)))
    };
    Keyed::new("cronjob", "batch", "cronjobs")
        .owns("batch", "jobs", "CronJob")
        .run_cached(informers, (client, recorder, clock), reconcile)
        .await
}

/// How long from `now` until a second past the next minute: schedules are by the minute
/// (and `@every` runs are named by their minute, as upstream's).
pub(crate) fn until_next_minute(now: jiff::Timestamp) -> Duration {
    let into = now.as_second().rem_euclid(60) as u64;
    Duration::from_secs(61 - into)
}

/// What one reconcile of a CronJob does, decided from the Job cache and the time given.
/// [`apply`] carries it out in this order and stops at the first failure.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    /// Events that go with no write (an unparseable schedule, a run skipped).
    pub notes: Vec<(EventType, &'static str, String)>,
    /// Active Jobs deleted first (`Replace`).
    pub replace: Vec<String>,
    /// The Job of the time due (its name and body).
    pub create: Option<(String, Value)>,
    /// Finished Jobs beyond the history limits, oldest first.
    pub trim: Vec<String>,
    /// The status, when it changes.
    pub status: Option<Value>,
}

/// Decides one reconcile of `cj` at `now` (see [`Plan`]); `None` while it is deleted.
pub fn plan(cj: &Value, jobs: &[Arc<Value>], now: jiff::Timestamp) -> Option<Plan> {
    if informer::deleting(cj) {
        return None;
    }
    let ns = informer::namespace(cj);
    let uid = uid_of(cj);
    let mut out = Plan::default();
    let mut mine: Vec<&Value> = jobs
        .iter()
        .filter(|j| informer::namespace(j) == ns && informer::controller_uid(j) == Some(uid))
        .map(|j| &**j)
        .collect();
    mine.sort_by(|a, b| {
        a["metadata"]["creationTimestamp"]
            .as_str()
            .cmp(&b["metadata"]["creationTimestamp"].as_str())
    });
    let mut active: Vec<&Value> = mine
        .iter()
        .copied()
        .filter(|j| finished(j).is_none() && !informer::deleting(j))
        .collect();
    let tz = cj["spec"]["timeZone"]
        .as_str()
        .and_then(|z| jiff::tz::TimeZone::get(z).ok())
        .unwrap_or(jiff::tz::TimeZone::UTC);
    let schedule: Result<Schedule, String> = cj["spec"]["schedule"].as_str().unwrap_or_default().parse();
    let last = cj["status"]["lastScheduleTime"]
        .as_str()
        .or(cj["metadata"]["creationTimestamp"].as_str())
        .and_then(|t| t.parse::<jiff::Timestamp>().ok())
        .unwrap_or(now);
    let mut last_schedule = None;
    let mut created = None;
    match schedule {
        Err(e) => out.notes.push((
            EventType::Warning,
            "UnparseableSchedule",
            format!("unparseable schedule: {e}"),
        )),
        Ok(s) if cj["spec"]["suspend"] != true => {
            if let Some(at) = s.latest(last, now, &tz) {
                let late = now.as_second() - at.as_second();
                let too_late = cj["spec"]["startingDeadlineSeconds"].as_i64().is_some_and(|d| late > d);
                let policy = cj["spec"]["concurrencyPolicy"].as_str().unwrap_or("Allow");
                let name = format!("{}-{}", name_of(cj), at.as_second() / 60);
                let exists = mine.iter().any(|j| name_of(j) == name);
                if too_late || exists {
                    last_schedule = Some(at);
                } else if policy == "Forbid" && !active.is_empty() {
                    // Skipped; it runs at the next time with nothing active.
                    out.notes.push((
                        EventType::Normal,
                        "JobAlreadyActive",
                        "Not starting job because prior execution is running and concurrency policy is Forbid".into(),
                    ));
                    last_schedule = Some(at);
                } else {
                    if policy == "Replace" {
                        out.replace = active.iter().map(|j| name_of(j).to_string()).collect();
                        active.clear();
                    }
                    created = Some(name.clone());
                    out.create = Some((name, job_for(cj, at)));
                    last_schedule = Some(at);
                }
            }
        }
        Ok(_) => {}
    }
    // History limits: the oldest finished Jobs beyond them go.
    for (kind, limit) in [
        (
            "Complete",
            cj["spec"]["successfulJobsHistoryLimit"].as_u64().unwrap_or(3),
        ),
        ("Failed", cj["spec"]["failedJobsHistoryLimit"].as_u64().unwrap_or(1)),
    ] {
        let done: Vec<&&Value> = mine.iter().filter(|j| finished(j) == Some(kind)).collect();
        let extra = done.len().saturating_sub(usize::try_from(limit).unwrap_or(usize::MAX));
        out.trim
            .extend(done.into_iter().take(extra).map(|j| name_of(j).to_string()));
    }
    // Status: the active Jobs (the one created now among them), the last schedule and the
    // last success.
    let mut refs: Vec<Value> = active
        .iter()
        .map(
            |j| json!({"apiVersion": "batch/v1", "kind": "Job", "namespace": ns, "name": name_of(j), "uid": uid_of(j)}),
        )
        .collect();
    if let Some(name) = &created {
        refs.push(json!({"apiVersion": "batch/v1", "kind": "Job", "namespace": ns, "name": name}));
    }
    let mut status = json!({"active": if refs.is_empty() { Value::Null } else { Value::Array(refs) }});
    if let Some(at) = last_schedule {
        status["lastScheduleTime"] = json!(shoal_api::time::rfc3339(at));
    }
    if let Some(t) = mine
        .iter()
        .filter(|j| finished(j) == Some("Complete"))
        .filter_map(|j| j["status"]["completionTime"].as_str())
        .max()
    {
        status["lastSuccessfulTime"] = json!(t);
    }
    let old = &cj["status"];
    let changed = old["active"].as_array().map_or(0, Vec::len) != status["active"].as_array().map_or(0, Vec::len)
        || (status.get("lastScheduleTime").is_some() && old["lastScheduleTime"] != status["lastScheduleTime"])
        || (status.get("lastSuccessfulTime").is_some() && old["lastSuccessfulTime"] != status["lastSuccessfulTime"]);
    out.status = changed.then_some(status);
    Some(out)
}

/// Carries out `plan` for `cj`, in order, stopping at the first failure: a Job that could
/// not be made is a `FailedCreate` event and an error (the next reconcile tries again).
pub async fn apply(client: &kube::Client, recorder: &Recorder, cj: &Value, mut plan: Plan) -> Result<(), Error> {
    let ns = informer::namespace(cj);
    let about = ObjectRef::of("batch/v1", "CronJob", cj);
    let job_api: Api<Job> = Api::namespaced(client.clone(), ns);
    let background = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Background),
        ..Default::default()
    };
    for (kind, reason, message) in &plan.notes {
        recorder.record(&about, *kind, reason, message).await;
    }
    for name in plan.replace {
        match job_api.delete(&name, &background).await {
            Ok(_) => {
                let msg = format!("Deleted job {name}");
                recorder
                    .record(&about, EventType::Normal, "SuccessfulDelete", &msg)
                    .await;
            }
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    if let Some((name, body)) = plan.create {
        let job: Job = serde_json::from_value(body).map_err(|source| Error::Encode { what: "a Job", source })?;
        let pp = PostParams {
            field_manager: Some(MANAGER.into()),
            ..Default::default()
        };
        match job_api.create(&pp, &job).await {
            Ok(made) => {
                // Its reference in the status gets the uid the server gave it.
                let refs = plan.status.as_mut().and_then(|s| s["active"].as_array_mut());
                if let Some(r) = refs.into_iter().flatten().find(|r| r["name"] == name.as_str()) {
                    r["uid"] = json!(made.metadata.uid);
                }
                let msg = format!("Created job {name}");
                recorder
                    .record(&about, EventType::Normal, "SuccessfulCreate", &msg)
                    .await;
            }
            // Made already: the cache had not shown it.
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => {
                let msg = format!("Error creating job: {e}");
                recorder.record(&about, EventType::Warning, "FailedCreate", &msg).await;
                return Err(e.into());
            }
        }
    }
    for name in plan.trim {
        ignore_not_found(job_api.delete(&name, &background).await)?;
    }
    if let Some(status) = plan.status {
        let api: Api<CronJob> = Api::namespaced(client.clone(), ns);
        let pp = PatchParams {
            field_manager: Some(MANAGER.into()),
            ..Default::default()
        };
        api.patch_status(name_of(cj), &pp, &Patch::Merge(json!({"status": status})))
            .await?;
    }
    Ok(())
}

/// Reconciles one CronJob against a snapshot of the Job cache at `now`.
pub(crate) async fn sync(
    client: &kube::Client,
    recorder: &Recorder,
    cj: &Value,
    jobs: &[Arc<Value>],
    now: jiff::Timestamp,
) -> Result<(), Error> {
    match plan(cj, jobs, now) {
        Some(p) => apply(client, recorder, cj, p).await,
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> jiff::civil::DateTime {
        s.parse().unwrap()
    }

    #[test]
    fn schedules_parse_as_cron_does() {
        let every5: Schedule = "*/5 * * * *".parse().unwrap();
        assert!(every5.matches(&at("2026-12-05T10:15:00")));
        assert!(!every5.matches(&at("2026-12-05T10:16:00")));
        let weekdays: Schedule = "30 9 * * mon-fri".parse().unwrap();
        assert!(weekdays.matches(&at("2026-12-04T09:30:00")), "a Friday");
        assert!(!weekdays.matches(&at("2026-12-05T09:30:00")), "a Saturday");
        let either: Schedule = "0 0 1 * sun".parse().unwrap();
        assert!(either.matches(&at("2026-12-06T00:00:00")), "a Sunday");
        assert!(either.matches(&at("2026-12-01T00:00:00")), "the 1st");
        let hourly: Schedule = "@hourly".parse().unwrap();
        assert!(hourly.matches(&at("2026-12-05T07:00:00")));
        let listed: Schedule = "0 8,20 * jan,jul 7".parse().unwrap();
        assert!(listed.matches(&at("2026-01-04T20:00:00")), "Sunday as 7");
        for bad in ["* * * *", "61 * * * *", "*/0 * * * *", "a * * * *", "5-1 * * * *"] {
            assert!(bad.parse::<Schedule>().is_err(), "{bad}");
        }
    }

    #[test]
    fn every_counts_from_the_last_run() {
        let t = |x: &str| x.parse::<jiff::Timestamp>().unwrap();
        let tz = jiff::tz::TimeZone::UTC;
        let s: Schedule = "@every 1h30m".parse().unwrap();
        let created = t("2026-12-05T10:00:00Z");
        assert_eq!(s.latest(created, t("2026-12-05T11:29:59Z"), &tz), None);
        assert_eq!(
            s.latest(created, t("2026-12-05T11:30:00Z"), &tz),
            Some(t("2026-12-05T11:30:00Z"))
        );
        // Missed runs: the latest of them.
        assert_eq!(
            s.latest(created, t("2026-12-05T15:10:00Z"), &tz),
            Some(t("2026-12-05T14:30:00Z"))
        );
        // Below a second is a second; a bad duration is refused with Go's words.
        let fast: Schedule = "@every 10ms".parse().unwrap();
        assert_eq!(
            fast.latest(created, t("2026-12-05T10:00:02Z"), &tz),
            Some(t("2026-12-05T10:00:02Z"))
        );
        assert!(
            "@every soon"
                .parse::<Schedule>()
                .unwrap_err()
                .contains("invalid duration")
        );
        // Validation and the controller read the same grammar.
        for line in ["@every 1h30m", "@hourly", "*/5 * * * *", "@every 90s"] {
            assert!(line.parse::<Schedule>().is_ok(), "{line}");
        }
    }

    #[test]
    fn the_latest_missed_time_is_found() {
        let s: Schedule = "*/10 * * * *".parse().unwrap();
        let t = |x: &str| x.parse::<jiff::Timestamp>().unwrap();
        let tz = jiff::tz::TimeZone::UTC;
        assert_eq!(
            s.latest(t("2026-12-05T10:00:30Z"), t("2026-12-05T10:25:10Z"), &tz),
            Some(t("2026-12-05T10:20:00Z"))
        );
        assert_eq!(
            s.latest(t("2026-12-05T10:20:00Z"), t("2026-12-05T10:25:10Z"), &tz),
            None,
            "already run"
        );
        let cj = json!({"metadata": {"name": "hello", "namespace": "default", "uid": "u"},
                        "spec": {"jobTemplate": {"spec": {"template": {"spec": {"containers": []}}}}}});
        let job = job_for(&cj, t("2026-12-05T10:20:00Z"));
        assert_eq!(
            job["metadata"]["name"],
            format!("hello-{}", t("2026-12-05T10:20:00Z").as_second() / 60)
        );
        assert_eq!(job["metadata"]["annotations"][SCHEDULED_AT], "2026-12-05T10:20:00Z");
        assert_eq!(job["metadata"]["ownerReferences"][0]["kind"], "CronJob");
    }
}
