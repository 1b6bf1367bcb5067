//! The manifest corpus (`tests/corpus/*.yaml`): files written for these tests, each modelled
//! on a popular public manifest (its first line names which), applied unchanged with the real
//! kubectl, client-side and server-side. Each must go in whole, its workloads must reach their
//! desired state on simulated nodes, a second apply must write nothing, and
//! `kubectl delete -f` must take everything away.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::Cluster;

fn corpus() -> Vec<PathBuf> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/corpus");
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("corpus dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    files
}

/// `kind/name namespace resourceVersion` of every object of the file, one per line.
fn versions(c: &Cluster, file: &str) -> String {
    let template = "jsonpath={range .items[*]}{.kind}/{.metadata.name} {.metadata.namespace} {.metadata.resourceVersion}{\"\\n\"}{end}";
    c.kubectl(&["get", "-f", file, "-o", template])
}

/// Waits until the file's objects stop changing (controllers settle status) and returns
/// their versions.
fn settled(c: &Cluster, file: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(45);
    let mut last = versions(c, file);
    loop {
        std::thread::sleep(Duration::from_millis(1500));
        let now = versions(c, file);
        if now == last {
            return now;
        }
        assert!(
            Instant::now() < deadline,
            "{file}: objects never settle:\n{last}\n{now}"
        );
        last = now;
    }
}

fn run(c: &Cluster, path: &Path, server_side: bool) {
    let file = path.to_str().expect("utf-8 path");
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or(file);
    let apply: Vec<&str> = if server_side {
        vec!["apply", "--server-side", "-f", file]
    } else {
        vec!["apply", "-f", file]
    };
    let out = c.kubectl_output(&apply, None);
    assert!(
        out.status.success(),
        "{name}: apply failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Every object of the file is stored.
    let expected = c.kubectl(&["create", "--dry-run=client", "-f", file, "-o", "name"]);
    let stored = c.kubectl(&["get", "-f", file, "-o", "name"]);
    assert_eq!(
        stored.lines().count(),
        expected.lines().count(),
        "{name}:\n{expected}\nvs\n{stored}"
    );
    // Workloads reach their desired state.
    for line in versions(c, file).lines() {
        let mut parts = line.split(' ');
        let (what, ns) = (parts.next().unwrap_or_default(), parts.next().unwrap_or_default());
        let ns = if ns.is_empty() { "default" } else { ns };
        let (kind, _) = what.split_once('/').unwrap_or_default();
        let target = what.to_lowercase();
        let done = match kind {
            "Deployment" | "DaemonSet" | "StatefulSet" => {
                c.kubectl_output(&["rollout", "status", &target, "-n", ns, "--timeout=90s"], None)
            }
            "Job" => c.kubectl_output(
                &["wait", "--for=condition=complete", &target, "-n", ns, "--timeout=90s"],
                None,
            ),
            _ => continue,
        };
        assert!(
            done.status.success(),
            "{name}: {what} never got there:\n{}",
            String::from_utf8_lossy(&done.stderr)
        );
    }
    // A second apply writes nothing. (A CronJob may fire between the two reads: an apply
    // that does write, writes every time, so three tries tell the two apart.)
    for attempt in 1..=3 {
        let before = settled(c, file);
        let again = c.kubectl_output(&apply, None);
        assert!(
            again.status.success(),
            "{name}: second apply failed:\n{}",
            String::from_utf8_lossy(&again.stderr)
        );
        assert!(
            !String::from_utf8_lossy(&again.stdout).contains(" created"),
            "{name}: second apply created something"
        );
        let after = versions(c, file);
        if after == before {
            break;
        }
        assert!(attempt < 3, "{name}: applying again wrote:\n{before}\nvs\n{after}");
    }
    // Everything goes.
    let out = c.kubectl_output(&["delete", "-f", file, "--timeout=120s"], None);
    assert!(
        out.status.success(),
        "{name}: delete failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    c.eventually(60, "everything deleted", || {
        let left = c.kubectl(&["get", "-f", file, "--ignore-not-found", "-o", "name"]);
        left.trim().is_empty().then_some(())
    });
}

/// `SHOAL_CORPUS=<substring>` runs only the files whose names contain it.
fn run_all(server_side: bool) {
    let mut files = corpus();
    match std::env::var("SHOAL_CORPUS") {
        Ok(only) => files.retain(|f| {
            f.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.contains(&only))
        }),
        Err(_) => assert!(files.len() >= 20, "the corpus has {} files", files.len()),
    }
    let c = Cluster::up(3);
    for f in &files {
        run(&c, f, server_side);
    }
}

#[test]
fn the_corpus_applies_client_side() {
    run_all(false);
}

#[test]
fn the_corpus_applies_server_side() {
    run_all(true);
}
