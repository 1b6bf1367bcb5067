//! `shoal bench api`: the API server under read load. Creates `--pods` pods (through the
//! API, as a client would), then times a LIST of all of them (JSON, and as the Table
//! `kubectl get pods -A` asks for), GETs of single pods, and the fan-out of pod changes to
//! `--watchers` concurrent watches.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use clap::Args;
use futures::StreamExt;
use serde_json::{Value, json};

use super::{CommonArgs, Progress, StartError, bench_cluster, measure, percentile, round};

/// The figures of `bench api`, in report order, with their units.
pub const KEYS: &[(&str, &str)] = &[
    ("create_pods_per_s", "pods/s"),
    ("list_pods_s", "s"),
    ("list_pods_table_s", "s"),
    ("list_pods_mb", "MB"),
    ("get_p50_ms", "ms"),
    ("get_p99_ms", "ms"),
    ("watch_events_per_s", "events/s"),
    ("watch_fanout_s", "s"),
    ("peak_rss_mb", "MB"),
    ("cpu_s", "s"),
];

/// `shoal bench api`.
#[derive(Args, Clone)]
pub struct ApiArgs {
    /// Pods created before the reads.
    #[arg(long, default_value_t = 50_000)]
    pub pods: u32,
    /// Single-pod GETs timed, one after another.
    #[arg(long, default_value_t = 10_000)]
    pub gets: u32,
    /// Concurrent watches of the pods.
    #[arg(long, default_value_t = 1000)]
    pub watchers: u32,
    /// Pod changes each watch must receive.
    #[arg(long, default_value_t = 200)]
    pub watch_events: u32,
    #[command(flatten)]
    pub common: CommonArgs,
}

impl ApiArgs {
    /// The flags a child run repeats.
    pub fn child_args(&self) -> Vec<String> {
        [
            ("--pods", self.pods),
            ("--gets", self.gets),
            ("--watchers", self.watchers),
            ("--watch-events", self.watch_events),
        ]
        .iter()
        .flat_map(|(k, v)| [k.to_string(), v.to_string()])
        .collect()
    }
}

const NAMESPACE: &str = "bench";
/// Creations in flight at once.
const CONCURRENCY: usize = 64;

/// A pod like a DaemonSet's, kept away from the default scheduler (`schedulerName`), so the
/// benchmark measures the API alone.
fn pod(i: u32) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": format!("pod-{i:06}"),
            "namespace": NAMESPACE,
            "labels": {"app": "bench", "shard": format!("s{}", i % 16)},
            "annotations": {"bench.shoal.dev/index": i.to_string()},
        },
        "spec": {
            "schedulerName": "bench-unscheduled",
            "containers": [{
                "name": "agent",
                "image": "ghcr.io/c1t1d0s7/go-myweb:v1",
                "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                "env": [{"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}],
                "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}},
            }],
            "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute"}],
        },
    })
}

/// A request to the benchmark cluster's API (JSON body, `accept` asked for).
pub(super) fn request(
    method: &str,
    path: &str,
    body: Vec<u8>,
    accept: &str,
) -> Result<http::Request<Vec<u8>>, StartError> {
    http::Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/json")
        .header("accept", accept)
        .body(body)
        .map_err(|e| StartError(format!("building a request: {e}")))
}

/// Sends `req`; the answer's body, or the request's failure.
pub(super) async fn call(client: &kube::Client, req: http::Request<Vec<u8>>) -> Result<String, StartError> {
    client
        .request_text(req)
        .await
        .map_err(|e| StartError(format!("API request failed: {e}")))
}

/// Times one full LIST, up to the last byte of its body, read frame by frame as it streams
/// in: the harness keeps the server's chunks as they come, never a copy of the whole (which
/// would add the harness's copying to the server's figure and its buffers to the server's
/// memory). Returns seconds and the body's size.
async fn timed_list(client: &kube::Client, accept: &str, expect: u32) -> Result<(f64, usize), StartError> {
    use http_body_util::BodyExt as _;
    let failed = |e: &dyn std::fmt::Display| StartError(format!("LIST failed: {e}"));
    let start = Instant::now();
    let req = request("GET", "/api/v1/pods", Vec::new(), accept)?;
    let resp = client
        .send(req.map(kube::client::Body::from))
        .await
        .map_err(|e| failed(&e))?;
    if !resp.status().is_success() {
        return Err(failed(&resp.status()));
    }
    let mut body = resp.into_body();
    let mut frames = Vec::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.map_err(|e| failed(&e))?.into_data() {
            frames.push(data);
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    // Counted without decoding the objects: the harness runs in the server's process, and
    // a client's decoded copy of 50,000 pods is not the server's memory.
    #[derive(serde::Deserialize)]
    struct Count {
        #[serde(default)]
        items: Vec<serde::de::IgnoredAny>,
        #[serde(default)]
        rows: Vec<serde::de::IgnoredAny>,
    }
    let reader = std::io::BufReader::new(bytes_reader(&frames));
    let c: Count = serde_json::from_reader(reader).map_err(|e| StartError(format!("LIST answer: {e}")))?;
    let n = c.items.len().max(c.rows.len());
    if n != expect as usize {
        return Err(StartError(format!("LIST returned {n} pods, expected {expect}")));
    }
    Ok((elapsed, frames.iter().map(|f| f.len()).sum()))
}

/// The chunks of a body, read one after another.
fn bytes_reader(frames: &[bytes::Bytes]) -> impl std::io::Read + '_ {
    struct Frames<'a>(std::slice::Iter<'a, bytes::Bytes>, &'a [u8]);
    impl std::io::Read for Frames<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            while self.1.is_empty() {
                match self.0.next() {
                    Some(f) => self.1 = f,
                    None => return Ok(0),
                }
            }
            self.1.read(buf)
        }
    }
    Frames(frames.iter(), &[])
}

/// `shoal bench api`, one run.
pub async fn run(a: &ApiArgs) -> Result<serde_json::Map<String, Value>, StartError> {
    let progress = Progress::new(!a.common.json || a.common.progress);
    let cpu0 = measure::cpu_seconds();
    let cluster = bench_cluster(&a.common.store, None).await?;
    let client = cluster.running.client.clone();
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}});
    call(
        &client,
        request(
            "POST",
            "/api/v1/namespaces",
            ns.to_string().into_bytes(),
            "application/json",
        )?,
    )
    .await?;

    // Creates, CONCURRENCY at a time.
    let start = Instant::now();
    let done = Arc::new(AtomicUsize::new(0));
    let path = format!("/api/v1/namespaces/{NAMESPACE}/pods");
    let results: Vec<Result<String, StartError>> = futures::stream::iter(0..a.pods)
        .map(|i| {
            let (client, path, done, progress) = (client.clone(), path.clone(), done.clone(), &progress);
            async move {
                let req = request("POST", &path, pod(i).to_string().into_bytes(), "application/json")?;
                let r = call(&client, req).await;
                let n = done.fetch_add(1, Ordering::Relaxed) + 1;
                progress.show(&format!("pods created: {n}/{}", a.pods), false);
                r
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    if let Some(Err(e)) = results.into_iter().find(Result::is_err) {
        return Err(e);
    }
    let create_rate = f64::from(a.pods) / start.elapsed().as_secs_f64();
    progress.done(&format!("{} pods created: {create_rate:.0} pods/s", a.pods));

    // LIST of every pod, as JSON and as a Table.
    let (list_s, bytes) = timed_list(&client, "application/json", a.pods).await?;
    let table = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json";
    let (table_s, _) = timed_list(&client, table, a.pods).await?;
    progress.done(&format!(
        "LIST of {} pods: {list_s:.3}s ({:.1} MB), as a Table {table_s:.3}s",
        a.pods,
        bytes as f64 / 1e6
    ));

    // GETs of single pods, one after another, spread over the pods.
    let mut gets = Vec::with_capacity(a.gets as usize);
    for i in 0..a.gets {
        let name = format!("pod-{:06}", (u64::from(i) * 7919 % u64::from(a.pods.max(1))) as u32);
        let req = request("GET", &format!("{path}/{name}"), Vec::new(), "application/json")?;
        let start = Instant::now();
        call(&client, req).await?;
        gets.push(start.elapsed().as_secs_f64() * 1000.0);
        progress.show(&format!("GETs: {}/{}", i + 1, a.gets), false);
    }
    let (get_p50, get_p99) = (percentile(&gets, 50.0), percentile(&gets, 99.0));
    progress.done(&format!("GET: p50 {get_p50:.3} ms, p99 {get_p99:.3} ms"));

    // Watch fan-out: every watch starts at the current revision and must see every change.
    let list = call(
        &client,
        request("GET", &format!("{path}?limit=1"), Vec::new(), "application/json")?,
    )
    .await?;
    let rv = serde_json::from_str::<Value>(&list)
        .ok()
        .and_then(|v| v["metadata"]["resourceVersion"].as_str().map(String::from))
        .unwrap_or_default();
    let want = a.watch_events as usize;
    let finished = Arc::new(AtomicUsize::new(0));
    let (started_tx, mut started_rx) = tokio::sync::mpsc::channel::<()>(a.watchers.max(1) as usize);
    let mut watches = Vec::new();
    for _ in 0..a.watchers {
        let req = request(
            "GET",
            &format!("{path}?watch=true&resourceVersion={rv}"),
            Vec::new(),
            "application/json",
        )?;
        let (client, finished, started_tx) = (client.clone(), finished.clone(), started_tx.clone());
        watches.push(tokio::spawn(async move {
            let stream = client
                .request_stream(req)
                .await
                .map_err(|e| StartError(format!("watch: {e}")))?;
            let _ = started_tx.send(()).await;
            let mut lines = 0usize;
            let mut stream = Box::pin(stream);
            use futures::AsyncBufReadExt;
            let mut buf = Vec::new();
            while lines < want {
                buf.clear();
                let n = stream
                    .read_until(b'\n', &mut buf)
                    .await
                    .map_err(|e| StartError(format!("watch: {e}")))?;
                if n == 0 {
                    return Err(StartError(format!("a watch ended after {lines} events")));
                }
                lines += 1;
            }
            finished.fetch_add(1, Ordering::Relaxed);
            Ok::<Instant, StartError>(Instant::now())
        }));
    }
    for _ in 0..a.watchers {
        let _ = started_rx.recv().await;
    }
    let start = Instant::now();
    let writes: Vec<Result<String, StartError>> = futures::stream::iter(0..a.watch_events)
        .map(|i| {
            let client = client.clone();
            let name = format!("pod-{:06}", i % a.pods.max(1));
            let url = format!("{path}/{name}");
            async move {
                let patch = json!({"metadata": {"labels": {"bench-change": i.to_string()}}});
                let mut req = request("PATCH", &url, patch.to_string().into_bytes(), "application/json")?;
                req.headers_mut().insert(
                    "content-type",
                    http::HeaderValue::from_static("application/merge-patch+json"),
                );
                call(&client, req).await
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    if let Some(Err(e)) = writes.into_iter().find(Result::is_err) {
        return Err(e);
    }
    let mut last = start;
    for w in watches {
        let end = w.await.map_err(|e| StartError(format!("a watch task failed: {e}")))??;
        last = last.max(end);
        progress.show(
            &format!("watches done: {}/{}", finished.load(Ordering::Relaxed), a.watchers),
            false,
        );
    }
    let fanout_s = last.duration_since(start).as_secs_f64();
    let delivered = u64::from(a.watchers) * u64::from(a.watch_events);
    let rate = delivered as f64 / fanout_s.max(1e-9);
    progress.done(&format!(
        "watch fan-out: {delivered} events to {} watches in {fanout_s:.3}s ({rate:.0} events/s)",
        a.watchers
    ));

    let out = super::figures(
        "api",
        &a.common,
        cpu0,
        [
            ("pods", json!(a.pods)),
            ("watchers", json!(a.watchers)),
            ("create_pods_per_s", json!(round(create_rate, 0))),
            ("list_pods_s", json!(round(list_s, 4))),
            ("list_pods_table_s", json!(round(table_s, 4))),
            ("list_pods_mb", json!(round(bytes as f64 / 1e6, 1))),
            ("get_p50_ms", json!(round(get_p50, 3))),
            ("get_p99_ms", json!(round(get_p99, 3))),
            ("watch_events_per_s", json!(round(rate, 0))),
            ("watch_fanout_s", json!(round(fanout_s, 3))),
        ],
    );
    drop(cluster);
    Ok(out)
}
