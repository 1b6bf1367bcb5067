//! The workloads around the DaemonSet (seed 003): Pod, ReplicaSet, ReplicationController,
//! on `shoal up` with simulated nodes, driven by the real kubectl.

mod common;

use common::Cluster;

const ECHO_POD: &str = "apiVersion: v1
kind: Pod
metadata:
  name: echo
  labels:
    app: echo
spec:
  containers:
  - name: app
    image: ghcr.io/subicura/echo:v1
";

/// Seed 003's ReplicaSet, comments and all.
const ECHO_RS: &str = "apiVersion: apps/v1
kind: ReplicaSet
metadata:
  name: echo-rs
spec:
  replicas: 3
  selector: # 어떤 파드의 복제를 관리할 것인가
    matchLabels: # app: echo이고 tier: app인 label을 가지는 파드를 관리
      app: echo
      tier: app
  template: # replicaset이 만드는 pod의 템플릿
    metadata:
      labels:
        app: echo
        tier: app
    spec:
      containers:
      - name: echo
        image: ghcr.io/subicura/echo:v1
";

fn names(c: &Cluster, selector: &str) -> Vec<String> {
    let mut out: Vec<String> = c
        .kubectl(&[
            "get",
            "pods",
            "-l",
            selector,
            "-o",
            "jsonpath={.items[*].metadata.name}",
        ])
        .split_whitespace()
        .map(str::to_string)
        .collect();
    out.sort();
    out
}

/// Pods of `selector` that are not being deleted.
fn live(c: &Cluster, selector: &str) -> Vec<String> {
    let out = c.kubectl(&[
        "get",
        "pods",
        "-l",
        selector,
        "-o",
        "jsonpath={range .items[*]}{.metadata.name} {.metadata.deletionTimestamp}{\"\\n\"}{end}",
    ]);
    let mut v: Vec<String> = out
        .lines()
        .filter(|l| l.split_whitespace().count() == 1)
        .map(|l| l.trim().to_string())
        .collect();
    v.sort();
    v
}

fn rs_columns(c: &Cluster, name: &str) -> Vec<String> {
    c.kubectl(&["get", "rs", name, "--no-headers"])
        .split_whitespace()
        .take(4)
        .map(str::to_string)
        .collect()
}

#[test]
fn seed_003_pod_and_replicaset() {
    let c = Cluster::up(3);
    // The echo Pod is scheduled and Running.
    c.kubectl_in(&["apply", "-f", "-"], Some(ECHO_POD));
    c.eventually(30, "echo Running", || {
        let out = c.kubectl(&["get", "pod", "echo", "-o", "jsonpath={.status.phase} {.spec.nodeName}"]);
        out.starts_with("Running node").then_some(())
    });

    // echo-rs keeps 3 replicas (the echo Pod lacks tier=app: it is not adopted).
    c.kubectl_in(&["apply", "-f", "-"], Some(ECHO_RS));
    c.eventually(30, "3 replicas", || {
        (rs_columns(&c, "echo-rs") == ["echo-rs", "3", "3", "3"]).then_some(())
    });
    let first = names(&c, "app=echo,tier=app");
    assert_eq!(first.len(), 3);
    assert!(first.iter().all(|n| n.starts_with("echo-rs-")), "{first:?}");
    let owner = c.kubectl(&["get", "pod", &first[0], "-o", "jsonpath={.metadata.ownerReferences[0].kind}/{.metadata.ownerReferences[0].name} {.metadata.ownerReferences[0].controller}"]);
    assert_eq!(owner, "ReplicaSet/echo-rs true");
    assert_eq!(
        c.kubectl(&["get", "pod", "echo", "-o", "jsonpath={.metadata.ownerReferences}"]),
        ""
    );

    // A deleted pod is replaced.
    c.kubectl(&["delete", "pod", &first[0]]);
    let replaced = c.eventually(30, "a replacement", || {
        let now = live(&c, "app=echo,tier=app");
        (now.len() == 3 && !now.contains(&first[0])).then_some(now)
    });
    assert!(replaced.contains(&first[1]) && replaced.contains(&first[2]));

    // Scale to 5, then down to 2.
    assert!(
        c.kubectl(&["scale", "rs", "echo-rs", "--replicas=5"])
            .contains("scaled")
    );
    c.eventually(30, "5 replicas", || {
        (rs_columns(&c, "echo-rs") == ["echo-rs", "5", "5", "5"]).then_some(())
    });
    assert_eq!(live(&c, "app=echo,tier=app").len(), 5);
    c.kubectl(&["scale", "rs", "echo-rs", "--replicas=2"]);
    c.eventually(30, "2 replicas", || {
        (rs_columns(&c, "echo-rs") == ["echo-rs", "2", "2", "2"] && live(&c, "app=echo,tier=app").len() == 2)
            .then_some(())
    });
    let status = c.kubectl(&["get", "rs", "echo-rs", "-o", "jsonpath={.status.replicas} {.status.fullyLabeledReplicas} {.status.readyReplicas} {.status.availableReplicas} {.status.observedGeneration}"]);
    assert_eq!(status, "2 2 2 2 3");
    let events = c.kubectl(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=echo-rs",
        "-o",
        "jsonpath={.items[*].reason}",
    ]);
    assert!(
        events.contains("SuccessfulCreate") && events.contains("SuccessfulDelete"),
        "{events}"
    );

    // An orphan that matches is adopted; the surplus is deleted.
    let orphan = "apiVersion: v1\nkind: Pod\nmetadata: {name: stray, labels: {app: echo, tier: app}}\nspec:\n  containers: [{name: echo, image: ghcr.io/subicura/echo:v1}]\n";
    c.kubectl_in(&["apply", "-f", "-"], Some(orphan));
    c.eventually(30, "back to 2", || {
        (live(&c, "app=echo,tier=app").len() == 2).then_some(())
    });

    // --cascade=orphan leaves the pods; a new ReplicaSet adopts them without new pods.
    let kept = live(&c, "app=echo,tier=app");
    c.kubectl(&["delete", "rs", "echo-rs", "--cascade=orphan"]);
    c.eventually(30, "pods released", || {
        let refs = c.kubectl(&[
            "get",
            "pods",
            "-l",
            "app=echo,tier=app",
            "-o",
            "jsonpath={.items[*].metadata.ownerReferences}",
        ]);
        refs.trim().is_empty().then_some(())
    });
    assert_eq!(live(&c, "app=echo,tier=app"), kept);
    let rs2 = ECHO_RS.replace("replicas: 3", "replicas: 2");
    c.kubectl_in(&["apply", "-f", "-"], Some(&rs2));
    c.eventually(30, "adopted", || {
        let refs = c.kubectl(&[
            "get",
            "pods",
            "-l",
            "app=echo,tier=app",
            "-o",
            "jsonpath={.items[*].metadata.ownerReferences[0].name}",
        ]);
        (refs.split_whitespace().filter(|n| *n == "echo-rs").count() == 2).then_some(())
    });
    assert_eq!(live(&c, "app=echo,tier=app"), kept, "the same pods, none created");

    // Deleting the ReplicaSet deletes its pods.
    c.kubectl(&["delete", "rs", "echo-rs"]);
    c.eventually(30, "pods gone", || {
        live(&c, "app=echo,tier=app").is_empty().then_some(())
    });
}

#[test]
fn replication_controllers_keep_their_replicas() {
    let c = Cluster::up(2);
    let rc = "apiVersion: v1
kind: ReplicationController
metadata:
  name: web
spec:
  replicas: 2
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - {name: nginx, image: nginx}
";
    c.kubectl_in(&["apply", "-f", "-"], Some(rc));
    c.eventually(30, "2 replicas", || {
        (c.kubectl(&[
            "get",
            "rc",
            "web",
            "-o",
            "jsonpath={.status.replicas}/{.status.readyReplicas}",
        ]) == "2/2")
            .then_some(())
    });
    let pods = names(&c, "app=web");
    assert_eq!(pods.len(), 2);
    let owner = c.kubectl(&[
        "get",
        "pod",
        &pods[0],
        "-o",
        "jsonpath={.metadata.ownerReferences[0].apiVersion} {.metadata.ownerReferences[0].kind}",
    ]);
    assert_eq!(owner, "v1 ReplicationController");
    c.kubectl(&["scale", "rc", "web", "--replicas=3"]);
    c.eventually(30, "3 replicas", || (live(&c, "app=web").len() == 3).then_some(()));
}
