//! Property tests over hostile input: quantities, durations and the arithmetic that reads
//! them. Each property runs `PROPTEST_CASES` cases (256 by default; CI runs the default, a
//! longer local run sets it higher). None may panic, and what they return stays in range.

use proptest::prelude::*;
use serde_json::json;
use shoal_api::validation::quantity::Quantity;

/// Strings shaped like quantities (and some that only nearly are).
fn quantity_text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[+-]?[0-9]{0,30}(\\.[0-9]{0,30})?([eE][+-]?[0-9]{1,6})?(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E)?",
        "[0-9eE+.\\-KMGTPiumn ]{0,40}",
        any::<String>(),
    ]
}

proptest! {
    #[test]
    fn quantities_never_panic_and_stay_in_range(a in quantity_text(), b in quantity_text()) {
        if let Ok(q) = Quantity::parse(&a) {
            let milli = q.milli_value();
            prop_assert!(milli >= i128::from(i64::MIN) && milli <= i128::from(i64::MAX));
            let canonical = q.canonical();
            prop_assert!(Quantity::parse(&canonical).is_ok(), "{a:?} printed as {canonical:?}");
            if let Ok(r) = Quantity::parse(&b) {
                let _ = q.add(&r).canonical();
            }
        }
        let _ = Quantity::from_json(&json!(a));
    }

    #[test]
    fn pod_requests_of_any_quantities_never_overflow(a in quantity_text(), b in quantity_text(), n in 1usize..40) {
        let containers: Vec<_> = (0..n)
            .map(|i| json!({"name": format!("c{i}"), "resources": {"requests": {"cpu": a, "memory": b}}}))
            .collect();
        let spec = json!({"containers": containers, "initContainers": [{"name": "i", "resources": {"requests": {"cpu": b}}}],
            "overhead": {"cpu": a}});
        let requests = shoal_api::scheduling::pod_requests(&spec);
        for v in requests.values() {
            prop_assert!(v.unsigned_abs() <= (n as u128 + 3) * u128::from(u64::MAX));
        }
    }

    #[test]
    fn timestamps_plus_any_duration_are_valid_timestamps(secs in any::<i64>(), base in -100_000_000_000i64..100_000_000_000) {
        let now = jiff::Timestamp::from_second(base.clamp(-377_705_116_800, 253_402_207_200)).unwrap();
        let t = shoal_api::time::add_seconds(now, secs);
        let text = shoal_api::time::rfc3339(t);
        prop_assert!(text.parse::<jiff::Timestamp>().is_ok(), "{text}");
        let _ = shoal_api::time::instant_after(std::time::Instant::now(), shoal_api::time::duration(secs));
    }

    #[test]
    fn the_table_of_any_pod_status_prints(restarts in any::<i64>(), grace in any::<i64>(), started in "\\PC{0,30}") {
        let pod = json!({"metadata": {"name": "p", "namespace": "d", "creationTimestamp": started,
                "deletionTimestamp": started, "deletionGracePeriodSeconds": grace},
            "spec": {"containers": [{"name": "a"}, {"name": "b"}]},
            "status": {"phase": "Running", "containerStatuses": [
                {"name": "a", "restartCount": restarts, "ready": true},
                {"name": "b", "restartCount": restarts, "ready": false}]}});
        let cells = shoal_api::table::row_cells("", "Pod", &pod, jiff::Timestamp::now());
        prop_assert!(!cells.is_empty());
    }
}
