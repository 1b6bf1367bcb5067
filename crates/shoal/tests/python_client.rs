//! The official Python client (`kubernetes` on PyPI) against shoal: the wire details it
//! relies on (clients/python_wire.py holds the checks).

mod common;

use std::process::Command;

use common::Cluster;

#[test]
fn the_python_client_reads_and_writes_as_against_upstream() {
    let c = Cluster::up(1);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/python_wire.py");
    let out = Command::new("python3")
        .arg(script)
        .env("KUBECONFIG", c.kubeconfig())
        .output()
        .expect("python3 runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success() && text.contains("all checks passed"), "{text}");
}
