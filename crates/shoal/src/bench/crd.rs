//! `shoal bench crd`: custom resources against the built-in kinds. Creates `--crds`
//! CustomResourceDefinitions one after another and times each from its POST to the first
//! successful LIST of its resource (what a controller's informer waits for); then creates
//! `--objects` custom objects (with a schema that validates, defaults and runs a CEL rule)
//! and as many ConfigMaps, and LISTs each kind.

use std::time::{Duration, Instant};

use clap::Args;
use futures::StreamExt;
use serde_json::{Value, json};

use super::api::call;
use super::{CommonArgs, Progress, StartError, bench_cluster, measure, percentile, round};

/// The figures of `bench crd`, in report order, with their units.
pub const KEYS: &[(&str, &str)] = &[
    ("crd_ready_p50_ms", "ms"),
    ("crd_ready_p99_ms", "ms"),
    ("create_crs_per_s", "objects/s"),
    ("create_configmaps_per_s", "objects/s"),
    ("list_crs_s", "s"),
    ("list_configmaps_s", "s"),
    ("peak_rss_mb", "MB"),
    ("cpu_s", "s"),
];

/// `shoal bench crd`.
#[derive(Args, Clone)]
pub struct CrdArgs {
    /// Definitions created (and timed) one after another.
    #[arg(long, default_value_t = 50)]
    pub crds: u32,
    /// Custom objects created, and as many ConfigMaps.
    #[arg(long, default_value_t = 10_000)]
    pub objects: u32,
    #[command(flatten)]
    pub common: CommonArgs,
}

impl CrdArgs {
    /// The flags a child run repeats.
    pub fn child_args(&self) -> Vec<String> {
        vec![
            "--crds".into(),
            self.crds.to_string(),
            "--objects".into(),
            self.objects.to_string(),
        ]
    }
}

const NAMESPACE: &str = "bench";
/// Creations in flight at once.
const CONCURRENCY: usize = 64;

/// Definition `i`: a namespaced kind with a structural schema, a default, a CEL rule, the
/// status subresource and a printer column, like the CRDs operators ship.
fn crd(i: u32) -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("widgets{i}.bench.shoal.dev")},
        "spec": {
            "group": "bench.shoal.dev",
            "scope": "Namespaced",
            "names": {"plural": format!("widgets{i}"), "singular": format!("widget{i}"), "kind": format!("Widget{i}")},
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "subresources": {"status": {}},
                "additionalPrinterColumns": [{"name": "Size", "type": "integer", "jsonPath": ".spec.size"}],
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "properties": {
                        "spec": {
                            "type": "object",
                            "required": ["size"],
                            "x-kubernetes-validations": [{"rule": "self.size <= self.limit", "message": "size over limit"}],
                            "properties": {
                                "size": {"type": "integer", "minimum": 0},
                                "limit": {"type": "integer", "default": 1000000},
                                "color": {"type": "string", "enum": ["red", "blue"], "default": "red"},
                                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                            },
                        },
                        "status": {"type": "object", "properties": {"ready": {"type": "boolean"}}},
                    },
                }},
            }],
        },
    })
}

fn widget(i: u32) -> Value {
    json!({
        "apiVersion": "bench.shoal.dev/v1",
        "kind": "Widget0",
        "metadata": {"name": format!("w-{i:06}"), "namespace": NAMESPACE, "labels": {"shard": format!("s{}", i % 16)}},
        "spec": {"size": i, "labels": {"app": "bench"}},
    })
}

fn configmap(i: u32) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": format!("cm-{i:06}"), "namespace": NAMESPACE, "labels": {"shard": format!("s{}", i % 16)}},
        "data": {"size": i.to_string(), "app": "bench"},
    })
}

/// A JSON request to the benchmark cluster's API.
fn request(method: &str, path: &str, body: Vec<u8>) -> Result<http::Request<Vec<u8>>, StartError> {
    super::api::request(method, path, body, "application/json")
}

/// Creates `n` objects at `path`, CONCURRENCY at a time; returns objects per second.
async fn create_all(
    client: &kube::Client,
    path: &str,
    n: u32,
    make: fn(u32) -> Value,
    what: &str,
    progress: &Progress,
) -> Result<f64, StartError> {
    let start = Instant::now();
    let results: Vec<Result<String, StartError>> = futures::stream::iter(0..n)
        .map(|i| async move {
            let r = call(client, request("POST", path, make(i).to_string().into_bytes())?).await;
            progress.show(&format!("{what} created: {}/{n}", i + 1), false);
            r
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    if let Some(Err(e)) = results.into_iter().find(Result::is_err) {
        return Err(e);
    }
    let rate = f64::from(n) / start.elapsed().as_secs_f64();
    progress.done(&format!("{n} {what} created: {rate:.0}/s"));
    Ok(rate)
}

/// Times one LIST of `path` that must hold `expect` items.
async fn timed_list(client: &kube::Client, path: &str, expect: u32) -> Result<f64, StartError> {
    let start = Instant::now();
    let body = call(client, request("GET", path, Vec::new())?).await?;
    let secs = start.elapsed().as_secs_f64();
    let items = serde_json::from_str::<Value>(&body)
        .ok()
        .and_then(|v| v["items"].as_array().map(Vec::len))
        .unwrap_or_default();
    if items != expect as usize {
        return Err(StartError(format!("LIST {path}: {items} items, expected {expect}")));
    }
    Ok(secs)
}

pub async fn run(a: &CrdArgs) -> Result<serde_json::Map<String, Value>, StartError> {
    let progress = Progress::new(!a.common.json || a.common.progress);
    let cpu0 = measure::cpu_seconds();
    let cluster = bench_cluster(&a.common.store, None).await?;
    let client = cluster.running.client.clone();
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}});
    call(
        &client,
        request("POST", "/api/v1/namespaces", ns.to_string().into_bytes())?,
    )
    .await?;

    // Each definition, from its POST to the first LIST of its resource that succeeds.
    let mut ready = Vec::with_capacity(a.crds as usize);
    for i in 0..a.crds.max(1) {
        let start = Instant::now();
        let body = crd(i).to_string().into_bytes();
        call(
            &client,
            request("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", body)?,
        )
        .await?;
        let list = format!("/apis/bench.shoal.dev/v1/namespaces/{NAMESPACE}/widgets{i}?limit=1");
        loop {
            if client.request_text(request("GET", &list, Vec::new())?).await.is_ok() {
                break;
            }
            if start.elapsed() > Duration::from_secs(30) {
                return Err(StartError(format!("widgets{i} not servable after 30 s")));
            }
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        ready.push(start.elapsed().as_secs_f64() * 1000.0);
        progress.show(&format!("definitions servable: {}/{}", i + 1, a.crds), false);
    }
    let (ready_p50, ready_p99) = (percentile(&ready, 50.0), percentile(&ready, 99.0));
    progress.done(&format!(
        "{} definitions: servable after p50 {ready_p50:.2} ms, p99 {ready_p99:.2} ms",
        a.crds
    ));

    let widgets = format!("/apis/bench.shoal.dev/v1/namespaces/{NAMESPACE}/widgets0");
    let configmaps = format!("/api/v1/namespaces/{NAMESPACE}/configmaps");
    let cr_rate = create_all(&client, &widgets, a.objects, widget, "custom objects", &progress).await?;
    let cm_rate = create_all(&client, &configmaps, a.objects, configmap, "ConfigMaps", &progress).await?;
    let list_crs = timed_list(&client, &widgets, a.objects).await?;
    // The namespace's own kube-root-ca.crt is a ConfigMap too.
    let list_cms = timed_list(&client, &format!("{configmaps}?labelSelector=shard"), a.objects).await?;
    progress.done(&format!(
        "LIST of {} custom objects {list_crs:.3}s, of as many ConfigMaps {list_cms:.3}s",
        a.objects
    ));

    let out = super::figures(
        "crd",
        &a.common,
        cpu0,
        [
            ("crds", json!(a.crds)),
            ("objects", json!(a.objects)),
            ("crd_ready_p50_ms", json!(round(ready_p50, 2))),
            ("crd_ready_p99_ms", json!(round(ready_p99, 2))),
            ("create_crs_per_s", json!(round(cr_rate, 0))),
            ("create_configmaps_per_s", json!(round(cm_rate, 0))),
            ("list_crs_s", json!(round(list_crs, 4))),
            ("list_configmaps_s", json!(round(list_cms, 4))),
        ],
    );
    drop(cluster);
    Ok(out)
}
