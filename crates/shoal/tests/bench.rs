//! The benchmark harness's contract: `shoal bench ... --json` ends stdout with one JSON
//! object carrying the figures, measured on a real in-process cluster. These tests check
//! the contract and that the figures are consistent with each other, never how fast they are.

use std::process::Command;

fn bench(args: &[&str]) -> serde_json::Map<String, serde_json::Value> {
    let out = Command::new(env!("CARGO_BIN_EXE_shoal"))
        .arg("bench")
        .args(args)
        .env("SHOAL_LOG", "warn")
        .output()
        .expect("run shoal bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "shoal bench {args:?} failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let last = stdout.lines().last().expect("some output");
    match serde_json::from_str(last) {
        Ok(serde_json::Value::Object(m)) => m,
        other => panic!("the last line is not a JSON object: {last:?} ({other:?})"),
    }
}

fn num(m: &serde_json::Map<String, serde_json::Value>, key: &str) -> f64 {
    m.get(key)
        .and_then(serde_json::Value::as_f64)
        .unwrap_or_else(|| panic!("{key} missing or not a number in {m:?}"))
}

/// Asserts that every figure in `keys` is a positive number.
fn assert_positive(m: &serde_json::Map<String, serde_json::Value>, keys: &[&str]) {
    for key in keys {
        assert!(num(m, key) > 0.0, "{key} is positive: {m:?}");
    }
}

#[test]
fn daemonset_benchmark_reports_every_figure_as_json() {
    let m = bench(&[
        "daemonset",
        "--nodes",
        "4",
        "--join",
        "3",
        "--store",
        "memory",
        "--json",
    ]);
    assert_eq!(m["benchmark"], "daemonset");
    assert_eq!(m["nodes"], 4);
    assert_eq!(m["store"], "memory");
    assert_positive(
        &m,
        &[
            "ready_s",
            "rollout_s",
            "update_s",
            "node_join_p50_ms",
            "node_join_p99_ms",
            "peak_rss_mb",
            "cpu_s",
        ],
    );
    assert!(num(&m, "node_join_p99_ms") >= num(&m, "node_join_p50_ms"));
    // The whole cluster runs in the measured process.
    assert!(num(&m, "peak_rss_mb") > 1.0);
}

#[test]
fn runs_in_child_processes_give_medians() {
    let m = bench(&["daemonset", "--nodes", "2", "--join", "1", "--runs", "2", "--json"]);
    assert_eq!(m["runs"], 2);
    assert_eq!(m["store"], "sqlite", "sqlite is the default store");
    let runs: Vec<f64> = m["rollout_s_runs"]
        .as_array()
        .expect("per-run figures")
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_eq!(runs.len(), 2);
    let median = (runs[0] + runs[1]) / 2.0;
    assert!(
        (num(&m, "rollout_s") - median).abs() < 0.002,
        "median of {runs:?}: {m:?}"
    );
}

#[test]
fn api_benchmark_lists_gets_and_fans_out_watches() {
    let m = bench(&[
        "api",
        "--pods",
        "200",
        "--gets",
        "50",
        "--watchers",
        "20",
        "--watch-events",
        "10",
        "--store",
        "memory",
        "--json",
    ]);
    assert_eq!(m["benchmark"], "api");
    assert_eq!(m["pods"], 200);
    assert_positive(
        &m,
        &["create_pods_per_s", "get_p50_ms", "get_p99_ms", "watch_events_per_s"],
    );
    assert!(num(&m, "get_p99_ms") >= num(&m, "get_p50_ms"));
    // A LIST of 200 pods can take less than the 0.1 ms the figure is rounded to.
    assert!(num(&m, "list_pods_s") >= 0.0 && num(&m, "list_pods_table_s") >= 0.0);
    // 200 pods of about 1 KB each.
    assert!(num(&m, "list_pods_mb") >= 0.1, "{m:?}");
}

#[test]
fn crd_benchmark_times_definitions_and_custom_objects() {
    let m = bench(&["crd", "--crds", "3", "--objects", "100", "--store", "memory", "--json"]);
    assert_eq!(m["benchmark"], "crd");
    assert_eq!((m["crds"].clone(), m["objects"].clone()), (3.into(), 100.into()));
    assert_positive(
        &m,
        &[
            "crd_ready_p50_ms",
            "crd_ready_p99_ms",
            "create_crs_per_s",
            "create_configmaps_per_s",
        ],
    );
    assert!(num(&m, "crd_ready_p99_ms") >= num(&m, "crd_ready_p50_ms"));
    assert!(num(&m, "list_crs_s") >= 0.0 && num(&m, "list_configmaps_s") >= 0.0);
}

#[test]
fn writes_benchmark_runs_several_servers_on_one_etcd() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let etcd = shoal_store::LocalEtcd::start(tmp.path(), 1).expect("starting etcd (Debian's etcd-server)");
    tokio::runtime::Runtime::new()
        .expect("runtime")
        .block_on(etcd.wait_ready(std::time::Duration::from_secs(30)))
        .expect("etcd ready");
    let url = etcd.store_url();
    let m = bench(&[
        "writes",
        "--servers",
        "2",
        "--objects",
        "200",
        "--store",
        &url,
        "--json",
    ]);
    assert_eq!(m["benchmark"], "writes");
    assert_eq!(
        (m["servers"].clone(), m["store"].clone()),
        (2.into(), url.clone().into())
    );
    assert_positive(&m, &["writes_per_s"]);
    // A daemonset run on etcd too, next to sqlite in the docs.
    let d = bench(&["daemonset", "--nodes", "20", "--join", "2", "--store", &url, "--json"]);
    assert_positive(&d, &["rollout_s", "update_s"]);
    // Several servers need a shared store.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_shoal"))
        .args(["bench", "writes", "--servers", "2", "--store", "memory"])
        .output()
        .expect("shoal");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("needs --store etcd://"));
}
