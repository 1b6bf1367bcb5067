//! `shoal bench writes`: write throughput of 1 to N servers on one store. Starts `--servers`
//! servers (several only on etcd, as `shoal server --store etcd://...` processes would be,
//! here in one process) and creates `--objects` ConfigMaps, 64 in flight, spread round-robin
//! over the servers' in-process clients.

use std::time::Instant;

use clap::Args;
use futures::StreamExt;
use serde_json::{Value, json};

use super::api::{call, request};
use super::{CommonArgs, Progress, StartError, StoreKind, bench_servers, measure, round};

/// The figures of `bench writes`, in report order, with their units.
pub const KEYS: &[(&str, &str)] = &[("writes_per_s", "objects/s"), ("peak_rss_mb", "MB"), ("cpu_s", "s")];

/// `shoal bench writes`.
#[derive(Args, Clone)]
pub struct WritesArgs {
    /// Servers sharing the store (more than one needs `--store etcd://...`).
    #[arg(long, default_value_t = 1)]
    pub servers: usize,
    /// ConfigMaps created.
    #[arg(long, default_value_t = 5_000)]
    pub objects: u32,
    #[command(flatten)]
    pub common: CommonArgs,
}

impl WritesArgs {
    /// The flags a child run repeats.
    pub fn child_args(&self) -> Vec<String> {
        vec![
            "--servers".into(),
            self.servers.to_string(),
            "--objects".into(),
            self.objects.to_string(),
        ]
    }
}

/// Creations in flight at once.
const CONCURRENCY: usize = 64;

pub async fn run(a: &WritesArgs) -> Result<serde_json::Map<String, Value>, StartError> {
    if a.servers > 1 && !matches!(a.common.store, StoreKind::Etcd(_)) {
        return Err(StartError("--servers above 1 needs --store etcd://...".into()));
    }
    let progress = Progress::new(!a.common.json || a.common.progress);
    let cpu0 = measure::cpu_seconds();
    let prefix = format!("/shoal-bench-{}", crate::cluster::random_hex(6));
    let servers = bench_servers(&a.common.store, None, a.servers, &prefix).await?;
    let clients: Vec<kube::Client> = servers.iter().map(|s| s.running.client.clone()).collect();
    let path = "/api/v1/namespaces/default/configmaps";
    let progress = &progress;
    let start = Instant::now();
    let results: Vec<Result<String, StartError>> = futures::stream::iter(0..a.objects)
        .map(|i| {
            let client = clients[i as usize % clients.len()].clone();
            async move {
                let cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": format!("w-{i:06}")}, "data": {"i": i.to_string()}});
                let r = call(
                    &client,
                    request("POST", path, cm.to_string().into_bytes(), "application/json")?,
                )
                .await;
                progress.show(&format!("ConfigMaps created: {}/{}", i + 1, a.objects), false);
                r
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    if let Some(Err(e)) = results.into_iter().find(Result::is_err) {
        return Err(e);
    }
    let rate = f64::from(a.objects) / start.elapsed().as_secs_f64();
    progress.done(&format!(
        "{} ConfigMaps through {} server(s): {rate:.0}/s",
        a.objects,
        clients.len()
    ));
    let out = super::figures(
        "writes",
        &a.common,
        cpu0,
        [
            ("servers", json!(a.servers)),
            ("objects", json!(a.objects)),
            ("writes_per_s", json!(round(rate, 0))),
        ],
    );
    drop(servers);
    Ok(out)
}
