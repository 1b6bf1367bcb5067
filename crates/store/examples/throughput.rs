//! Acknowledged writes per second of the sqlite store (fsync'd group commit), with 1 client and
//! with 32 concurrent clients, each writing ~1 KB values for a few seconds.
//!
//! Usage: `cargo run --release -p shoal-store --example throughput [DIR] [SECONDS]`
//! (default: a temporary directory, 5 seconds per case).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use shoal_store::{SqliteStore, Store};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let temp = tempfile::tempdir()?;
    let dir = args.next().map_or_else(|| temp.path().to_path_buf(), PathBuf::from);
    let seconds: u64 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(5);
    let value = Bytes::from(vec![b'x'; 1024]);

    for clients in [1usize, 32] {
        let path = dir.join(format!("throughput-{clients}.db"));
        let store = Arc::new(SqliteStore::open(&path)?);
        let start_revision = store.current_revision();
        let started = Instant::now();
        let deadline = started + Duration::from_secs(seconds);
        let mut tasks = Vec::new();
        for client in 0..clients {
            let (store, value) = (Arc::clone(&store), value.clone());
            tasks.push(tokio::spawn(async move {
                let mut writes = 0u64;
                // Half creates, half compare-and-swap updates of the key just created.
                while Instant::now() < deadline {
                    let key = format!("/bench/{client}/{start_revision}-{writes}");
                    let revision = store.create(&key, value.clone()).await?;
                    store.update(&key, value.clone(), revision).await?;
                    writes += 2;
                }
                Ok::<_, shoal_store::Error>(writes)
            }));
        }
        let mut writes = 0;
        for task in tasks {
            writes += task.await??;
        }
        let elapsed = started.elapsed().as_secs_f64();
        println!(
            "clients={clients:>2} writes={writes:>7} seconds={elapsed:.2} writes/s={:.0}",
            writes as f64 / elapsed
        );
        assert_eq!(
            store.current_revision() - start_revision,
            writes as i64,
            "every write acknowledged once"
        );
    }
    Ok(())
}
