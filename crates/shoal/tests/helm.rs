//! A real Helm (4, which installs and upgrades with server-side apply) against shoal: install,
//! upgrade, rollback and uninstall of a chart written for the tests, with ClusterRoles, a
//! PodDisruptionBudget, ports that share a number across protocols, and a `kind: List` hook.

mod common;

use std::path::Path;
use std::process::Command;

use common::Cluster;

const CHART: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/charts/shoal-demo");

/// Runs helm (`SHOAL_TEST_HELM` or `helm` on PATH) against the cluster, in a home of its own.
fn helm(c: &Cluster, home: &Path, args: &[&str]) -> String {
    let bin = std::env::var_os("SHOAL_TEST_HELM").unwrap_or_else(|| "helm".into());
    let out = Command::new(bin)
        .args(args)
        .env("KUBECONFIG", c.kubeconfig())
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_DATA_HOME", home.join("data"))
        .output()
        .expect("helm runs (install it: see .ci/run)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "helm {args:?} failed:\n{text}");
    text
}

#[test]
fn a_chart_installs_upgrades_rolls_back_and_uninstalls() {
    let c = Cluster::up(2);
    let home = tempfile::tempdir().expect("tempdir");
    let home = home.path();
    let out = helm(&c, home, &["install", "demo", CHART, "--wait", "--timeout", "90s"]);
    assert!(out.contains("STATUS: deployed"), "{out}");
    assert_eq!(
        c.kubectl(&["get", "deploy", "demo-web", "-o", "jsonpath={.status.readyReplicas}"]),
        "2"
    );
    assert_eq!(
        c.kubectl(&["get", "clusterrole", "demo-reader", "-o", "name"]).trim(),
        "clusterrole.rbac.authorization.k8s.io/demo-reader"
    );
    assert_eq!(
        c.kubectl(&[
            "get",
            "clusterrolebinding",
            "demo-reader",
            "-o",
            "jsonpath={.subjects[0].name}"
        ]),
        "demo-agent"
    );
    assert_eq!(
        c.kubectl(&["get", "pdb", "demo-web", "-o", "jsonpath={.spec.maxUnavailable}"]),
        "1"
    );
    // The List hook's items went in after the install.
    assert_eq!(
        c.kubectl(&["get", "cm", "demo-installed", "-o", "jsonpath={.data.revision}"]),
        "1"
    );
    assert_eq!(
        c.kubectl(&[
            "get",
            "cm",
            "demo-installed-replicas",
            "-o",
            "jsonpath={.data.replicas}"
        ]),
        "2"
    );
    // Both 53/UDP and 53/TCP made it, as two ports.
    let ports = c.kubectl(&[
        "get",
        "deploy",
        "demo-web",
        "-o",
        "jsonpath={.spec.template.spec.containers[0].ports[*].name}",
    ]);
    assert_eq!(ports, "http dns dns-tcp");

    // An upgrade with the same values changes nothing (server-side apply of equal lists).
    let generation = c.kubectl(&["get", "deploy", "demo-web", "-o", "jsonpath={.metadata.generation}"]);
    let out = helm(&c, home, &["upgrade", "demo", CHART, "--wait", "--timeout", "90s"]);
    assert!(out.contains("REVISION: 2"), "{out}");
    assert_eq!(
        c.kubectl(&["get", "deploy", "demo-web", "-o", "jsonpath={.metadata.generation}"]),
        generation
    );

    // An upgrade with new values changes what they touch, and runs the hook again.
    let out = helm(
        &c,
        home,
        &[
            "upgrade",
            "demo",
            CHART,
            "--set",
            "replicas=3",
            "--set",
            "message=bye",
            "--wait",
            "--timeout",
            "90s",
        ],
    );
    assert!(out.contains("REVISION: 3"), "{out}");
    assert_eq!(
        c.kubectl(&["get", "deploy", "demo-web", "-o", "jsonpath={.status.readyReplicas}"]),
        "3"
    );
    assert_eq!(
        c.kubectl(&["get", "cm", "demo-config", "-o", "jsonpath={.data.message}"]),
        "bye"
    );
    assert_eq!(
        c.kubectl(&["get", "cm", "demo-installed", "-o", "jsonpath={.data.revision}"]),
        "3"
    );

    // Rollback to the first revision.
    helm(&c, home, &["rollback", "demo", "1", "--wait", "--timeout", "90s"]);
    c.eventually(60, "rolled back", || {
        (c.kubectl(&["get", "deploy", "demo-web", "-o", "jsonpath={.status.replicas}"]) == "2").then_some(())
    });
    assert_eq!(
        c.kubectl(&["get", "cm", "demo-config", "-o", "jsonpath={.data.message}"]),
        "hello"
    );
    let history = helm(&c, home, &["history", "demo"]);
    assert!(history.contains("Rollback to 1"), "{history}");

    // Uninstall takes everything of the release, cluster-scoped objects included.
    helm(&c, home, &["uninstall", "demo", "--wait", "--timeout", "90s"]);
    for (kind, name) in [
        ("clusterrole", "demo-reader"),
        ("clusterrolebinding", "demo-reader"),
        ("pdb", "demo-web"),
        ("deploy", "demo-web"),
        ("svc", "demo-web"),
        ("sa", "demo-agent"),
        ("cm", "demo-config"),
    ] {
        let err = c.kubectl_err(&["get", kind, name], None);
        assert!(err.contains("NotFound"), "{kind}/{name}: {err}");
    }
    let releases = c.kubectl(&["get", "secrets", "-l", "owner=helm", "-o", "name"]);
    assert_eq!(releases.trim(), "", "release records are gone");
}
