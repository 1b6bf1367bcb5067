//! Property tests: the controllers' arithmetic on client-supplied numbers (replicas,
//! int-or-percent limits, revision annotations, completed indexes, cron schedules) never
//! panics, and what it computes stays in range. `PROPTEST_CASES` sets the cases (256).

use proptest::prelude::*;
use serde_json::{Value, json};
use shoal_controllers::{cronjob, daemonset, deployment, job};

/// An int-or-percent as a client may write it.
fn int_or_percent() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(|n| json!(n)),
        any::<i64>().prop_map(|n| json!(format!("{n}%"))),
        "\\PC{0,12}".prop_map(|s| json!(s)),
    ]
}

/// A ReplicaSet as the Deployment controller reads it, with client-writable annotations.
fn replicaset() -> impl Strategy<Value = Value> {
    (0..=i32::MAX, any::<i64>(), any::<i64>(), any::<i64>(), 0..=i32::MAX).prop_map(
        |(replicas, revision, max, desired, ready)| {
            json!({"metadata": {"name": format!("rs-{revision}"), "annotations": {
                    "deployment.kubernetes.io/revision": revision.to_string(),
                    "deployment.kubernetes.io/max-replicas": max.to_string(),
                    "deployment.kubernetes.io/desired-replicas": desired.to_string()}},
                "spec": {"replicas": replicas},
                "status": {"replicas": replicas, "readyReplicas": ready, "availableReplicas": ready}})
        },
    )
}

proptest! {
    #[test]
    fn deployment_steps_never_overflow(
        replicas in 0..=i32::MAX,
        surge in int_or_percent(),
        unavailable in int_or_percent(),
        sets in proptest::collection::vec(replicaset(), 1..5),
    ) {
        let replicas = i64::from(replicas);
        let d = json!({"spec": {"strategy": {"rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable}}}});
        let (s, u) = deployment::surge_and_unavailable(&d, replicas);
        prop_assert!((0..=i64::from(i32::MAX)).contains(&s) && (0..=i64::from(i32::MAX)).contains(&u));
        let views: Vec<deployment::RsView> = sets.iter().map(deployment::RsView::of).collect();
        if let Some(steps) = deployment::proportional(replicas, s, &views) {
            for (_, n) in steps {
                prop_assert!(n >= 0, "{n}");
            }
        }
        let (new, olds) = views.split_first().expect("one at least");
        for (_, n) in deployment::rolling_step(replicas, s, u, new, olds) {
            prop_assert!(n >= 0, "{n}");
        }
    }

    #[test]
    fn daemonset_limits_resolve_within_the_nodes(v in int_or_percent(), nodes in 0i64..100_000) {
        let n = daemonset::rollout::resolve(&v, nodes);
        prop_assert!(n >= 0);
        if v.as_str().is_some_and(|s| s.ends_with('%')) {
            prop_assert!(n <= nodes, "{v} of {nodes} is {n}");
        }
    }

    #[test]
    fn completed_indexes_of_any_text_stay_below_completions(text in "[0-9,\\-]{0,40}|\\PC{0,40}", completions in 0i64..=i64::from(i32::MAX)) {
        let set = job::parse_indexes(&text, completions);
        prop_assert!(!set.contains(-1) && !set.contains(completions) && !set.contains(i64::MAX));
        prop_assert!(set.len() <= completions);
        prop_assert_eq!(set.missing(completions).take(5).filter(|i| set.contains(*i)).count(), 0);
        let again = job::parse_indexes(&job::format_indexes(&set), completions);
        prop_assert_eq!(again, set);
    }

    #[test]
    fn cron_schedules_of_any_text_parse_or_refuse(line in "[0-9*/,\\- a-zA-Z@?]{0,40}", at in 0i64..4_000_000_000) {
        if let Ok(s) = line.parse::<cronjob::Schedule>() {
            let now = jiff::Timestamp::from_second(at).expect("a time");
            let _ = s.latest(jiff::Timestamp::UNIX_EPOCH, now, &jiff::tz::TimeZone::UTC);
        }
    }
}
