//! `shoal bench`: the benchmark harness. Each benchmark starts a cluster in this process
//! (HTTPS listener, controllers, scheduler, simulated nodes, the store a user would run) and
//! measures it through the Kubernetes API with the in-process client, which calls the same
//! router remote clients reach over HTTPS. Nothing writes to the store directly.
//!
//! With `--runs R` (R > 1) every run is a fresh child process (`shoal bench ... --runs 1
//! --json`), so each run's memory peak is its own; the report gives the median of each
//! figure.

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::{Value, json};

use crate::ServerArgs;
use crate::cluster::{self, Running, StartError};

mod api;
mod crd;
mod measure;
mod writes;

pub use measure::{median, percentile};

/// `shoal bench` subcommands.
#[derive(Subcommand)]
pub enum BenchCommand {
    /// A DaemonSet on N simulated nodes: rollout, rolling update, nodes joining, memory, CPU.
    Daemonset(DaemonsetArgs),
    /// The API server: LIST of many pods, GET latency, watch fan-out.
    Api(api::ApiArgs),
    /// Custom resources: a definition's time to servable, custom objects against ConfigMaps.
    Crd(crd::CrdArgs),
    /// Write throughput of 1 to N servers sharing one store (etcd for more than one).
    Writes(writes::WritesArgs),
}

/// Which store a benchmark cluster uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreKind {
    /// SQLite in a temporary data dir, fsync'd (what `shoal up` runs).
    Sqlite,
    /// In memory.
    Memory,
    /// An etcd cluster (`etcd://HOST:PORT[,...]`); each run writes under a fresh key prefix.
    Etcd(String),
}

impl StoreKind {
    fn name(&self) -> String {
        match self {
            StoreKind::Sqlite => "sqlite".into(),
            StoreKind::Memory => "memory".into(),
            StoreKind::Etcd(url) => url.clone(),
        }
    }

    /// `sqlite`, `memory` or `etcd://HOST:PORT[,HOST:PORT...]`.
    fn parse(s: &str) -> Result<StoreKind, String> {
        match s {
            "sqlite" => Ok(StoreKind::Sqlite),
            "memory" => Ok(StoreKind::Memory),
            url if url.starts_with("etcd://") => Ok(StoreKind::Etcd(url.to_string())),
            other => Err(format!(
                "{other:?}: want sqlite, memory or etcd://HOST:PORT[,HOST:PORT...]"
            )),
        }
    }
}

/// Flags every benchmark shares.
#[derive(Args, Clone)]
pub struct CommonArgs {
    /// Print one JSON object as the last line of stdout instead of a table.
    #[arg(long)]
    pub json: bool,
    /// The store of the benchmark cluster.
    #[arg(long, default_value = "sqlite", value_parser = StoreKind::parse)]
    pub store: StoreKind,
    /// How many runs (each in a fresh process); the report gives medians.
    #[arg(long, default_value_t = 1)]
    pub runs: u32,
    /// Show progress on stderr even with --json (used for child runs).
    #[arg(long, hide = true)]
    pub progress: bool,
}

/// `shoal bench daemonset`.
#[derive(Args, Clone)]
pub struct DaemonsetArgs {
    /// Number of simulated nodes.
    #[arg(long, default_value_t = 1000)]
    pub nodes: u32,
    /// Nodes that join one by one after the rollout (for node_join_p50_ms / p99_ms).
    #[arg(long, default_value_t = 100)]
    pub join: u32,
    #[command(flatten)]
    pub common: CommonArgs,
}

impl DaemonsetArgs {
    /// The flags a child run repeats.
    fn child_args(&self) -> Vec<String> {
        vec![
            "--nodes".into(),
            self.nodes.to_string(),
            "--join".into(),
            self.join.to_string(),
        ]
    }
}

/// Runs `shoal bench ...`.
pub async fn run(cmd: BenchCommand) -> Result<(), StartError> {
    match cmd {
        BenchCommand::Daemonset(a) => {
            let (common, extra) = (a.common.clone(), a.child_args());
            report(
                "daemonset",
                &common,
                extra,
                || async move { daemonset(&a).await },
                DAEMONSET_KEYS,
            )
            .await
        }
        BenchCommand::Api(a) => {
            let common = a.common.clone();
            let extra = a.child_args();
            report("api", &common, extra, || async move { api::run(&a).await }, api::KEYS).await
        }
        BenchCommand::Crd(a) => {
            let common = a.common.clone();
            let extra = a.child_args();
            report("crd", &common, extra, || async move { crd::run(&a).await }, crd::KEYS).await
        }
        BenchCommand::Writes(a) => {
            let common = a.common.clone();
            let extra = a.child_args();
            report(
                "writes",
                &common,
                extra,
                || async move { writes::run(&a).await },
                writes::KEYS,
            )
            .await
        }
    }
}

/// The figures of `bench daemonset`, in report order, with their units.
const DAEMONSET_KEYS: &[(&str, &str)] = &[
    ("ready_s", "s"),
    ("rollout_s", "s"),
    ("update_s", "s"),
    ("node_join_p50_ms", "ms"),
    ("node_join_p99_ms", "ms"),
    ("peak_rss_mb", "MB"),
    ("cpu_s", "s"),
];

/// Runs one benchmark (in this process, or `runs` times in children) and prints its report.
async fn report<F, Fut>(
    name: &str,
    common: &CommonArgs,
    extra: Vec<String>,
    once: F,
    keys: &[(&str, &str)],
) -> Result<(), StartError>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<serde_json::Map<String, Value>, StartError>>,
{
    let result = if common.runs <= 1 {
        once().await?
    } else {
        let mut runs = Vec::new();
        for i in 1..=common.runs {
            if !common.json {
                eprintln!("run {i} of {}", common.runs);
            }
            runs.push(child_run(name, common, &extra).await?);
        }
        medians(&runs, keys)
    };
    if common.json {
        println!("{}", Value::Object(result));
    } else {
        print_table(&result, keys);
    }
    Ok(())
}

/// One run of `shoal bench NAME` in a child process; its last line of stdout.
async fn child_run(
    name: &str,
    common: &CommonArgs,
    extra: &[String],
) -> Result<serde_json::Map<String, Value>, StartError> {
    let exe = std::env::current_exe().map_err(|e| StartError(format!("finding this executable: {e}")))?;
    let mut cmd = tokio::process::Command::new(exe);
    cmd.args(["bench", name, "--runs", "1", "--json", "--store", &common.store.name()])
        .args(extra)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit());
    if !common.json {
        cmd.arg("--progress");
    }
    let out = cmd
        .output()
        .await
        .map_err(|e| StartError(format!("running a benchmark child: {e}")))?;
    if !out.status.success() {
        return Err(StartError(format!("a benchmark run failed ({})", out.status)));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let last = text.lines().last().unwrap_or_default();
    match serde_json::from_str(last) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(StartError(format!("a benchmark run printed no JSON: {last:?}"))),
    }
}

/// The median of every numeric figure over `runs`; other fields come from the first run.
fn medians(runs: &[serde_json::Map<String, Value>], keys: &[(&str, &str)]) -> serde_json::Map<String, Value> {
    let mut out = runs.first().cloned().unwrap_or_default();
    for (key, _) in keys {
        let values: Vec<f64> = runs
            .iter()
            .filter_map(|r| r.get(*key).and_then(Value::as_f64))
            .collect();
        if values.len() == runs.len() {
            out.insert((*key).into(), json!(round(median(&values), 3)));
            out.insert(format!("{key}_runs"), json!(values));
        }
    }
    out.insert("runs".into(), json!(runs.len()));
    out
}

fn print_table(result: &serde_json::Map<String, Value>, keys: &[(&str, &str)]) {
    let mut out = std::io::stdout().lock();
    for (k, v) in result {
        if !keys.iter().any(|(key, _)| key == k) && !k.ends_with("_runs") {
            let _ = writeln!(
                out,
                "{k:<24} {}",
                v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string())
            );
        }
    }
    for (key, unit) in keys {
        if let Some(v) = result.get(*key) {
            let runs = result
                .get(&format!("{key}_runs"))
                .map(|r| format!("  (runs: {r})"))
                .unwrap_or_default();
            let _ = writeln!(out, "{key:<24} {v} {unit}{runs}");
        }
    }
}

/// Rounds to `digits` decimals.
pub fn round(x: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (x * f).round() / f
}

/// Progress on stderr: one line rewritten in place, at most every 200 ms.
pub struct Progress {
    on: bool,
    last: Mutex<Instant>,
}

impl Progress {
    /// A progress line that prints only when `on`.
    pub fn new(on: bool) -> Progress {
        Progress {
            on,
            last: Mutex::new(Instant::now() - Duration::from_secs(1)),
        }
    }

    /// Shows `msg` (rate limited unless `force`).
    pub fn show(&self, msg: &str, force: bool) {
        if !self.on {
            return;
        }
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if force || last.elapsed() >= Duration::from_millis(200) {
            *last = Instant::now();
            eprint!("\r\x1b[2K{msg}");
            let _ = std::io::stderr().flush();
        }
    }

    /// Ends a phase: its line stays.
    pub fn done(&self, msg: &str) {
        if self.on {
            eprintln!("\r\x1b[2K{msg}");
        }
    }
}

/// A cluster for one benchmark run, in a temporary data dir removed on drop.
pub struct BenchCluster {
    /// The running cluster.
    pub running: Running,
    _dir: tempfile::TempDir,
}

/// Starts a cluster with `nodes` simulated nodes (None: control plane only).
pub async fn bench_cluster(store: &StoreKind, nodes: Option<u32>) -> Result<BenchCluster, StartError> {
    let prefix = format!("/shoal-bench-{}", cluster::random_hex(6));
    let mut servers = bench_servers(store, nodes, 1, &prefix).await?;
    servers.pop().ok_or_else(|| StartError("no server started".into()))
}

/// Starts `count` servers on `store` (more than one only on etcd, under key prefix
/// `prefix`), the first with `nodes` simulated nodes.
pub async fn bench_servers(
    store: &StoreKind,
    nodes: Option<u32>,
    count: usize,
    prefix: &str,
) -> Result<Vec<BenchCluster>, StartError> {
    let mut servers = Vec::new();
    let mut token = None;
    for _ in 0..count.max(1) {
        let dir = tempfile::Builder::new()
            .prefix("shoal-bench-")
            .tempdir()
            .map_err(|e| StartError(format!("creating a temporary data dir: {e}")))?;
        // A fresh prefix: nothing of an earlier run (objects, Leases) is in the way.
        let ha = crate::ha::HaArgs {
            etcd_prefix: prefix.to_string(),
            token: token.clone(),
            ..Default::default()
        };
        let args = ServerArgs {
            data_dir: dir.path().to_path_buf(),
            listen: "127.0.0.1:0".into(),
            store: match store {
                StoreKind::Sqlite => None,
                StoreKind::Memory => Some("memory://".into()),
                StoreKind::Etcd(url) => Some(url.clone()),
            },
            node_monitor_grace_period: Duration::from_secs(50),
            cluster_dns: "off".into(),
            service_cidr: shoal_apiserver::alloc::SERVICE_CIDR,
            audit_log: None,
            ha,
        };
        // Simulated pods take no time: the benchmark measures the control plane alone.
        let running = cluster::start_with(&args, nodes, shoal_agent::PodTiming::default()).await?;
        if token.is_none() {
            token = std::fs::read_to_string(dir.path().join("server-token"))
                .ok()
                .map(|t| t.trim().to_string());
        }
        servers.push(BenchCluster { running, _dir: dir });
    }
    Ok(servers)
}

fn api_err(what: &str) -> impl FnOnce(kube::Error) -> StartError + '_ {
    move |e| StartError(format!("{what}: {e}"))
}

fn is_ready(n: &Node) -> bool {
    n.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Waits until `count` nodes are Ready, following a node watch.
async fn wait_nodes_ready(client: &kube::Client, count: usize, progress: &Progress) -> Result<(), StartError> {
    let nodes: Api<Node> = Api::all(client.clone());
    let stream = watcher(nodes, watcher::Config::default()).default_backoff();
    futures::pin_mut!(stream);
    let mut ready: HashMap<String, bool> = HashMap::new();
    while let Some(ev) = stream.next().await {
        match ev.map_err(|e| StartError(format!("watching nodes: {e}")))? {
            watcher::Event::Apply(n) | watcher::Event::InitApply(n) => {
                ready.insert(n.metadata.name.clone().unwrap_or_default(), is_ready(&n));
            }
            watcher::Event::Delete(n) => {
                ready.remove(n.metadata.name.as_deref().unwrap_or_default());
            }
            _ => {}
        }
        let n = ready.values().filter(|r| **r).count();
        progress.show(&format!("nodes ready: {n}/{count}"), false);
        if n >= count {
            return Ok(());
        }
    }
    Err(StartError("the node watch ended".into()))
}

const NAMESPACE: &str = "default";
const DS_NAME: &str = "bench-ds";

fn bench_daemonset() -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": DS_NAME, "namespace": NAMESPACE},
        "spec": {
            "selector": {"matchLabels": {"app": "bench"}},
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "10%"}},
            "template": {
                "metadata": {"labels": {"app": "bench"}},
                "spec": {"containers": [{"name": "agent", "image": "ghcr.io/c1t1d0s7/go-myweb:v1"}]},
            },
        },
    })
}

/// Follows the DaemonSet until `done` holds for its status (given its generation).
async fn wait_daemonset(
    client: &kube::Client,
    phase: &str,
    progress: &Progress,
    done: impl Fn(i64, &k8s_openapi::api::apps::v1::DaemonSetStatus) -> bool,
) -> Result<(), StartError> {
    let api: Api<DaemonSet> = Api::namespaced(client.clone(), NAMESPACE);
    let cfg = watcher::Config::default().fields(&format!("metadata.name={DS_NAME}"));
    let stream = watcher(api, cfg).default_backoff();
    futures::pin_mut!(stream);
    while let Some(ev) = stream.next().await {
        if let watcher::Event::Apply(ds) | watcher::Event::InitApply(ds) =
            ev.map_err(|e| StartError(format!("watching the DaemonSet: {e}")))?
        {
            let generation = ds.metadata.generation.unwrap_or(0);
            let Some(st) = ds.status else { continue };
            progress.show(
                &format!(
                    "{phase}: desired {} current {} ready {} up-to-date {} available {}",
                    st.desired_number_scheduled,
                    st.current_number_scheduled,
                    st.number_ready,
                    st.updated_number_scheduled.unwrap_or(0),
                    st.number_available.unwrap_or(0)
                ),
                false,
            );
            if st.observed_generation.unwrap_or(0) >= generation && done(generation, &st) {
                return Ok(());
            }
        }
    }
    Err(StartError("the DaemonSet watch ended".into()))
}

/// When each node's daemon pod was first seen Running.
type RunningAt = Arc<Mutex<HashMap<String, Instant>>>;

/// Records, from a pod watch, when the first Running pod of each node appears. Returns once
/// the watch has had its initial list, so the first measured join does not wait on it.
async fn follow_running_pods(client: &kube::Client, notify: Arc<tokio::sync::Notify>) -> RunningAt {
    let seen: RunningAt = Arc::default();
    let (listed_tx, listed) = tokio::sync::oneshot::channel::<()>();
    let mut listed_tx = Some(listed_tx);
    let api: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    // Small pages: the harness's own list of every daemon pod would otherwise add a
    // transient peak to the memory it measures.
    let cfg = watcher::Config::default().labels("app=bench").page_size(100);
    let stream = watcher(api, cfg).default_backoff();
    let out = seen.clone();
    tokio::spawn(async move {
        futures::pin_mut!(stream);
        while let Some(ev) = stream.next().await {
            if let Ok(watcher::Event::InitDone) = ev
                && let Some(tx) = listed_tx.take()
            {
                let _ = tx.send(());
            }
            if let Ok(watcher::Event::Apply(p) | watcher::Event::InitApply(p)) = ev {
                let running = p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
                let node = p.spec.as_ref().and_then(|s| s.node_name.clone());
                if let (true, Some(node)) = (running, node) {
                    out.lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .entry(node)
                        .or_insert_with(Instant::now);
                    notify.notify_waiters();
                }
            }
        }
    });
    let _ = tokio::time::timeout(Duration::from_secs(60), listed).await;
    seen
}

/// `shoal bench daemonset`, one run.
async fn daemonset(a: &DaemonsetArgs) -> Result<serde_json::Map<String, Value>, StartError> {
    let progress = Progress::new(!a.common.json || a.common.progress);
    let cpu0 = measure::cpu_seconds();
    let t0 = Instant::now();
    progress.show(&format!("starting a cluster with {} simulated nodes", a.nodes), true);
    let cluster = bench_cluster(&a.common.store, Some(a.nodes)).await?;
    let client = cluster.running.client.clone();
    wait_nodes_ready(&client, a.nodes as usize, &progress).await?;
    let ready_s = t0.elapsed().as_secs_f64();
    progress.done(&format!("{} nodes ready in {ready_s:.2}s", a.nodes));

    // Rollout: DaemonSet created -> every pod available.
    let n = a.nodes as i32;
    let dss: Api<DaemonSet> = Api::namespaced(client.clone(), NAMESPACE);
    let ds: DaemonSet = serde_json::from_value(bench_daemonset()).map_err(|e| StartError(e.to_string()))?;
    let start = Instant::now();
    dss.create(&PostParams::default(), &ds)
        .await
        .map_err(api_err("creating the DaemonSet"))?;
    wait_daemonset(&client, "rollout", &progress, |_, st| {
        st.desired_number_scheduled == n && st.number_available == Some(n)
    })
    .await?;
    let rollout_s = start.elapsed().as_secs_f64();
    progress.done(&format!("rollout: {n} pods available in {rollout_s:.2}s"));

    // Update: a template change rolled out with maxUnavailable 10%, until every pod is
    // updated and available (what `kubectl rollout status` waits for).
    let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "agent", "image": "ghcr.io/c1t1d0s7/go-myweb:v2"}]}}}});
    let start = Instant::now();
    dss.patch(DS_NAME, &PatchParams::default(), &Patch::Strategic(patch))
        .await
        .map_err(api_err("updating the DaemonSet"))?;
    wait_daemonset(&client, "update", &progress, |_, st| {
        st.desired_number_scheduled == n
            && st.updated_number_scheduled == Some(n)
            && st.number_available == Some(n)
            && st.number_unavailable.unwrap_or(0) == 0
    })
    .await?;
    let update_s = start.elapsed().as_secs_f64();
    progress.done(&format!("update: {n} pods replaced and available in {update_s:.2}s"));

    // Nodes joining one by one: Node created -> its daemon pod Running.
    let notify = Arc::new(tokio::sync::Notify::new());
    let running = follow_running_pods(&client, notify.clone()).await;
    let nodes: Api<Node> = Api::all(client.clone());
    let mut joins = Vec::new();
    for i in 1..=a.join {
        let index = a.nodes + i;
        let name = format!("node{index}");
        let start = Instant::now();
        let wait = notify.notified();
        futures::pin_mut!(wait);
        wait.as_mut().enable();
        shoal_agent::simulated::create_node(&nodes, &name, index, false)
            .await
            .map_err(api_err("creating a node"))?;
        let deadline = start + Duration::from_secs(60);
        loop {
            if let Some(at) = running.lock().unwrap_or_else(|e| e.into_inner()).get(&name) {
                let ms = at.duration_since(start).as_secs_f64() * 1000.0;
                tracing::debug!(node = %name, ms, "bench: node joined");
                joins.push(ms);
                break;
            }
            if Instant::now() > deadline {
                return Err(StartError(format!("no daemon pod ran on {name} within 60 s")));
            }
            let _ = tokio::time::timeout(Duration::from_millis(100), wait.as_mut()).await;
            wait.set(notify.notified());
            wait.as_mut().enable();
        }
        progress.show(&format!("nodes joined: {i}/{}", a.join), false);
    }
    let (p50, p99) = if joins.is_empty() {
        (0.0, 0.0)
    } else {
        (percentile(&joins, 50.0), percentile(&joins, 99.0))
    };
    progress.done(&format!("{} nodes joined: p50 {p50:.1} ms, p99 {p99:.1} ms", a.join));

    let out = figures(
        "daemonset",
        &a.common,
        cpu0,
        [
            ("nodes", json!(a.nodes)),
            ("ready_s", json!(round(ready_s, 3))),
            ("rollout_s", json!(round(rollout_s, 3))),
            ("update_s", json!(round(update_s, 3))),
            ("node_join_p50_ms", json!(round(p50, 1))),
            ("node_join_p99_ms", json!(round(p99, 1))),
        ],
    );
    drop(cluster);
    Ok(out)
}

/// A benchmark's report: its name, store and `figures`, then the process's peak RSS and
/// the CPU time used since `cpu0`.
pub fn figures<const N: usize>(
    benchmark: &str,
    common: &CommonArgs,
    cpu0: f64,
    figures: [(&str, Value); N],
) -> serde_json::Map<String, Value> {
    let mut out = serde_json::Map::new();
    out.insert("benchmark".into(), json!(benchmark));
    out.insert("store".into(), json!(common.store.name()));
    for (k, v) in figures {
        out.insert(k.into(), v);
    }
    out.insert("peak_rss_mb".into(), json!(round(measure::peak_rss_mb(), 1)));
    out.insert("cpu_s".into(), json!(round(measure::cpu_seconds() - cpu0, 2)));
    out
}
