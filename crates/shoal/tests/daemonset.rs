//! DaemonSets end to end on `shoal up`, driven by the real kubectl: the seeds' sessions
//! (one pod per node, nodeSelector following node labels), node churn, taints, adoption and
//! orphaning.

mod common;

use common::Cluster;

/// Seed 000's DaemonSet: a selector with `In` and `Exists` expressions.
const MYWEB: &str = r#"apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: myweb-ds
spec:
  selector:
    matchExpressions:
    - key: app
      operator: In
      values:
      - myweb
    - key: env
      operator: Exists
  template:
    metadata:
      labels:
        app: myweb
        env: dev
    spec:
      containers:
      - name: myweb
        image: ghcr.io/c1t1d0s7/go-myweb
        ports:
        - containerPort: 8080
          protocol: TCP
"#;

fn columns(line: &str) -> Vec<String> {
    line.split_whitespace().map(str::to_string).collect()
}

/// The `get ds NAME` row without its AGE.
fn ds_row(c: &Cluster, name: &str, ns: &str) -> Vec<String> {
    let out = c.kubectl(&["get", "ds", name, "-n", ns, "--no-headers"]);
    let mut cols = columns(out.lines().next().unwrap_or_default());
    cols.pop();
    cols
}

/// Waits for `get ds` to show `n` desired, current, ready, up-to-date and available.
fn wait_ds(c: &Cluster, name: &str, ns: &str, n: u32, selector: &str) {
    let n = n.to_string();
    wait_row(c, name, ns, &[name, &n, &n, &n, &n, &n, selector]);
}

/// A jsonpath over the pods with `label`.
fn pods_jsonpath(c: &Cluster, label: &str, path: &str) -> String {
    c.kubectl(&["get", "pods", "-l", label, "-o", &format!("jsonpath={path}")])
}

fn wait_row(c: &Cluster, name: &str, ns: &str, want: &[&str]) {
    c.eventually(30, &format!("ds {name} row {want:?}"), || {
        let row = ds_row(c, name, ns);
        (row == want).then_some(())
    });
}

#[test]
fn seed_000_one_pod_per_node_with_ips() {
    let c = Cluster::up(3);
    let out = c.kubectl_in(&["create", "-f", "-"], Some(MYWEB));
    assert_eq!(out.trim(), "daemonset.apps/myweb-ds created");
    wait_ds(&c, "myweb-ds", "default", 3, "<none>");

    let out = c.kubectl(&["get", "pods", "-o", "wide", "--no-headers"]);
    let rows: Vec<Vec<String>> = out.lines().map(columns).collect();
    assert_eq!(rows.len(), 3, "{out}");
    let mut nodes: Vec<&str> = rows.iter().map(|r| r[6].as_str()).collect();
    nodes.sort();
    assert_eq!(nodes, ["node1", "node2", "node3"], "one pod per node: {out}");
    for r in &rows {
        assert!(
            r[0].starts_with("myweb-ds-") && r[0].len() == "myweb-ds-".len() + 5,
            "{out}"
        );
        assert_eq!(&r[1..4], ["1/1", "Running", "0"], "{out}");
        assert!(r[5].starts_with("10.42."), "pod IP from the node's podCIDR: {out}");
    }
    // Pods carry the automatic tolerations and the revision labels, and are owned.
    let pod = rows[0][0].clone();
    let tolerations = c.kubectl(&["get", "pod", &pod, "-o", "jsonpath={.spec.tolerations[*].key}"]);
    for key in [
        "not-ready",
        "unreachable",
        "disk-pressure",
        "memory-pressure",
        "pid-pressure",
        "unschedulable",
    ] {
        assert!(
            tolerations.contains(&format!("node.kubernetes.io/{key}")),
            "{tolerations}"
        );
    }
    assert!(
        !tolerations.contains("network-unavailable"),
        "only for hostNetwork: {tolerations}"
    );
    let labels = c.kubectl(&["get", "pod", &pod, "-o", "jsonpath={.metadata.labels}"]);
    assert!(
        labels.contains("controller-revision-hash") && labels.contains("\"pod-template-generation\":\"1\""),
        "{labels}"
    );
    let owner = c.kubectl(&[
        "get",
        "pod",
        &pod,
        "-o",
        "jsonpath={.metadata.ownerReferences[0].kind}/{.metadata.ownerReferences[0].name}",
    ]);
    assert_eq!(owner, "DaemonSet/myweb-ds");
    let revisions = c.kubectl(&["get", "controllerrevisions", "-o", "name"]);
    assert_eq!(revisions.lines().count(), 1, "{revisions}");

    // A deleted daemon pod is replaced on the same node.
    let node_of = |p: &str| c.kubectl(&["get", "pod", p, "-o", "jsonpath={.spec.nodeName}"]);
    let node = node_of(&pod);
    c.kubectl(&["delete", "pod", &pod]);
    c.eventually(30, "replacement on the same node", || {
        let out = c.kubectl(&["get", "pods", "-o", "wide", "--no-headers"]);
        let on_node: Vec<Vec<String>> = out
            .lines()
            .map(columns)
            .filter(|r| r[6] == node && r[2] == "Running")
            .collect();
        (on_node.len() == 1 && on_node[0][0] != pod).then_some(())
    });
    wait_ds(&c, "myweb-ds", "default", 3, "<none>");

    // describe shows the status lines and the controller's events.
    let out = c.kubectl(&["describe", "ds", "myweb-ds"]);
    assert!(out.contains("Desired Number of Nodes Scheduled: 3"), "{out}");
    assert!(
        out.contains("Pods Status:  3 Running / 0 Waiting / 0 Succeeded / 0 Failed"),
        "{out}"
    );
    assert!(out.contains("SuccessfulCreate"), "{out}");
}

#[test]
fn nodes_joining_leaving_and_selectors() {
    let c = Cluster::up(2);
    // Seed 001: a nodeSelector follows node labels.
    let hello = MYWEB.replace("myweb-ds", "hello").replace("myweb", "hello").replace(
        "    spec:\n      containers:",
        "    spec:\n      nodeSelector:\n        role: worker\n      containers:",
    );
    c.kubectl_in(&["apply", "-f", "-"], Some(&hello));
    wait_ds(&c, "hello", "default", 0, "role=worker");
    c.kubectl(&["label", "node", "node2", "role=worker"]);
    wait_ds(&c, "hello", "default", 1, "role=worker");
    c.kubectl(&["label", "node", "node2", "role-"]);
    wait_ds(&c, "hello", "default", 0, "role=worker");
    c.eventually(30, "the pod on node2 is gone", || {
        c.kubectl(&["get", "pods", "-l", "app=hello", "-o", "name"])
            .trim()
            .is_empty()
            .then_some(())
    });

    // A node applied with kubectl joins and gets a daemon pod; deleting it removes the pod.
    c.kubectl_in(&["apply", "-f", "-"], Some(MYWEB));
    wait_ds(&c, "myweb-ds", "default", 2, "<none>");
    let node3 =
        "apiVersion: v1\nkind: Node\nmetadata:\n  name: node3\n  annotations:\n    shoal.dev/simulated: \"true\"\n";
    c.kubectl_in(&["apply", "-f", "-"], Some(node3));
    wait_ds(&c, "myweb-ds", "default", 3, "<none>");
    c.kubectl(&["delete", "node", "node3"]);
    wait_ds(&c, "myweb-ds", "default", 2, "<none>");
    c.eventually(30, "no pod left for node3", || {
        let out = c.kubectl(&["get", "pods", "-o", "wide", "--no-headers"]);
        (out.lines().count() == 2 && !out.contains("node3")).then_some(())
    });
}

#[test]
fn taints_tolerations_cordon_and_orphaning() {
    let c = Cluster::up(3);
    c.kubectl_in(&["apply", "-f", "-"], Some(MYWEB));
    wait_ds(&c, "myweb-ds", "default", 3, "<none>");

    // NoSchedule keeps the running pod (misscheduled) and blocks a new DaemonSet.
    c.kubectl(&["taint", "node", "node3", "dedicated=db:NoSchedule"]);
    c.eventually(30, "misscheduled counted", || {
        (c.kubectl(&["get", "ds", "myweb-ds", "-o", "jsonpath={.status.numberMisscheduled}"]) == "1").then_some(())
    });
    let other = MYWEB.replace("myweb-ds", "second").replace("myweb", "second");
    c.kubectl_in(&["apply", "-f", "-"], Some(&other));
    wait_ds(&c, "second", "default", 2, "<none>");
    // NoExecute evicts the first DaemonSet's pod there.
    c.kubectl(&["taint", "node", "node3", "evict=now:NoExecute"]);
    wait_ds(&c, "myweb-ds", "default", 2, "<none>");
    c.eventually(30, "evicted from node3", || {
        let out = c.kubectl(&["get", "pods", "-l", "app=myweb", "-o", "wide", "--no-headers"]);
        (!out.contains("node3")).then_some(())
    });
    c.kubectl(&["taint", "node", "node3", "evict-", "dedicated-"]);

    // Cordoned nodes still get daemon pods.
    c.kubectl(&["cordon", "node3"]);
    wait_ds(&c, "myweb-ds", "default", 3, "<none>");

    // Orphan delete leaves the pods without owners; a new DaemonSet adopts the same pods.
    let before = pods_jsonpath(&c, "app=myweb", "{.items[*].metadata.uid}");
    c.kubectl(&["delete", "ds", "myweb-ds", "--cascade=orphan"]);
    let owners = pods_jsonpath(&c, "app=myweb", "{.items[*].metadata.ownerReferences}");
    assert_eq!(owners.trim(), "", "orphaned pods have no owner");
    c.kubectl_in(&["apply", "-f", "-"], Some(MYWEB));
    wait_ds(&c, "myweb-ds", "default", 3, "<none>");
    let after = pods_jsonpath(&c, "app=myweb", "{.items[*].metadata.uid}");
    assert_eq!(before, after, "the same pods were adopted");
    let owned = pods_jsonpath(&c, "app=myweb", "{.items[*].metadata.ownerReferences[0].name}");
    assert_eq!(owned.split_whitespace().collect::<Vec<_>>(), ["myweb-ds"; 3]);

    // The default delete removes the pods.
    c.kubectl(&["delete", "ds", "myweb-ds"]);
    c.eventually(30, "pods deleted with their DaemonSet", || {
        c.kubectl(&["get", "pods", "-l", "app=myweb", "-o", "name"])
            .trim()
            .is_empty()
            .then_some(())
    });
}

#[test]
fn silent_nodes_turn_unknown_keep_daemon_pods_and_evict_the_rest() {
    let c = Cluster::up_with(1, &["--node-monitor-grace-period", "2s"]);
    // A node nobody heartbeats for: it reported Ready once, then went silent.
    let now = c.kubectl(&["get", "node", "node1", "-o", "jsonpath={.metadata.creationTimestamp}"]);
    let edge = format!(
        "apiVersion: v1\nkind: Node\nmetadata:\n  name: edge1\nspec:\n  podCIDR: 10.42.200.0/24\nstatus:\n  allocatable: {{cpu: \"4\", memory: 8Gi, pods: \"110\"}}\n  conditions:\n  - {{type: Ready, status: \"True\", reason: KubeletReady, lastHeartbeatTime: \"{now}\", lastTransitionTime: \"{now}\"}}\n"
    );
    c.kubectl_in(&["create", "-f", "-"], Some(&edge));
    c.kubectl_in(&["apply", "-f", "-"], Some(MYWEB));
    c.eventually(30, "a daemon pod bound to edge1", || {
        let out = c.kubectl(&["get", "pods", "-l", "app=myweb", "-o", "wide", "--no-headers"]);
        out.lines().any(|l| columns(l)[6] == "edge1").then_some(())
    });
    // A pod that tolerates unreachable for one second only.
    let victim = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: victim\nspec:\n  nodeName: edge1\n  tolerations:\n  - {key: node.kubernetes.io/unreachable, operator: Exists, effect: NoExecute, tolerationSeconds: 1}\n  containers:\n  - {name: c, image: busybox}\n";
    c.kubectl_in(&["create", "-f", "-"], Some(victim));

    c.eventually(30, "edge1 NotReady and tainted", || {
        let out = c.kubectl(&["get", "node", "edge1", "--no-headers"]);
        let taints = c.kubectl(&[
            "get",
            "node",
            "edge1",
            "-o",
            "jsonpath={.spec.taints[*].key}:{.spec.taints[*].effect}",
        ]);
        (columns(&out)[1] == "NotReady"
            && taints.contains("node.kubernetes.io/unreachable")
            && taints.contains("NoExecute"))
        .then_some(())
    });
    let reason = c.kubectl(&[
        "get",
        "node",
        "edge1",
        "-o",
        "jsonpath={.status.conditions[?(@.type==\"Ready\")].reason}",
    ]);
    assert_eq!(reason, "NodeStatusUnknown");
    // The pod with a limited toleration is evicted; the daemon pod stays (it tolerates
    // unreachable forever) but edge1 no longer counts as a node that should run one.
    // (Deleted gracefully: with no kubelet on edge1 to finish it, it stays Terminating, as
    // upstream.)
    c.eventually(30, "victim evicted", || {
        let out = c.kubectl(&["get", "pod", "victim", "-o", "jsonpath={.metadata.deletionTimestamp}"]);
        (!out.is_empty()).then_some(())
    });
    c.eventually(30, "edge1 counted as misscheduled", || {
        let s = c.kubectl(&[
            "get",
            "ds",
            "myweb-ds",
            "-o",
            "jsonpath={.status.desiredNumberScheduled}/{.status.numberMisscheduled}",
        ]);
        (s == "1/1").then_some(())
    });
    let out = c.kubectl(&["get", "pods", "-l", "app=myweb", "-o", "wide", "--no-headers"]);
    assert!(out.lines().any(|l| columns(l)[6] == "edge1"), "daemon pod kept: {out}");
}

/// Seed 002's DaemonSet (kube-system, hostPath volumes, a toleration without operator) and
/// seed 003's (OnDelete strategy), side by side.
#[test]
fn seeds_002_and_003() {
    let c = Cluster::up(3);
    let fluentd = include_str!("manifests/fluentd-elasticsearch.yaml");
    let sample = r#"apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: sample-ds
spec:
  updateStrategy:
    type: OnDelete
  selector:
    matchLabels:
      app: sample-app
  template:
    metadata:
      labels:
        app: sample-app
    spec:
      containers:
      - name: nginx-container
        image: nginx:1.16
"#;
    c.kubectl_in(&["apply", "-f", "-"], Some(fluentd));
    c.kubectl_in(&["apply", "-f", "-"], Some(sample));
    wait_ds(&c, "fluentd-elasticsearch", "kube-system", 3, "<none>");
    wait_ds(&c, "sample-ds", "default", 3, "<none>");
    let out = c.kubectl(&["get", "pods", "-n", "kube-system", "-o", "wide", "--no-headers"]);
    assert_eq!(out.lines().count(), 3, "{out}");
    assert!(out.lines().all(|l| columns(l)[2] == "Running"), "{out}");
    let strategy = c.kubectl(&["get", "ds", "sample-ds", "-o", "jsonpath={.spec.updateStrategy}"]);
    assert_eq!(
        strategy, "{\"type\":\"OnDelete\"}",
        "OnDelete gets no rollingUpdate defaults"
    );

    // Seed 002: `--cascade=false` (the old spelling of orphan) keeps the pods, and a new
    // DaemonSet with the same selector adopts them.
    let pods = c.kubectl(&[
        "get",
        "pods",
        "-n",
        "kube-system",
        "-o",
        "jsonpath={.items[*].metadata.name}",
    ]);
    c.kubectl(&[
        "delete",
        "ds",
        "fluentd-elasticsearch",
        "-n",
        "kube-system",
        "--cascade=false",
    ]);
    let left = c.kubectl(&[
        "get",
        "pods",
        "-n",
        "kube-system",
        "-o",
        "jsonpath={.items[*].metadata.name}",
    ]);
    assert_eq!(pods, left);
    c.kubectl_in(&["apply", "-f", "-"], Some(fluentd));
    wait_ds(&c, "fluentd-elasticsearch", "kube-system", 3, "<none>");
    let adopted = c.kubectl(&[
        "get",
        "pods",
        "-n",
        "kube-system",
        "-o",
        "jsonpath={.items[*].metadata.name}",
    ]);
    assert_eq!(pods, adopted, "the same pods, adopted");
}

/// `shoal why` names the reason for every node.
#[test]
fn shoal_why_explains_each_node() {
    let c = Cluster::up(3);
    c.kubectl(&["label", "node", "node1", "role=worker"]);
    c.kubectl(&["label", "node", "node2", "role=db"]);
    c.kubectl(&["label", "node", "node3", "role=worker"]);
    c.kubectl(&["taint", "node", "node3", "gpu=yes:NoSchedule"]);
    let hello = MYWEB.replace(
        "    spec:\n      containers:",
        "    spec:\n      nodeSelector:\n        role: worker\n      containers:",
    );
    c.kubectl_in(&["apply", "-f", "-"], Some(&hello));
    wait_ds(&c, "myweb-ds", "default", 1, "role=worker");
    let why = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_shoal"))
            .args(["why"])
            .args(args)
            .arg("--data-dir")
            .arg(&c.dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let out = why(&["ds/myweb-ds"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(columns(lines[0]), ["NODE", "SHOULD", "RUN", "POD", "WHY"]);
    assert!(
        lines[1].starts_with("node1") && lines[1].contains("yes") && lines[1].ends_with("runs its daemon pod (Ready)"),
        "{out}"
    );
    assert!(
        lines[2].ends_with("nodeSelector role=worker does not match: the node has role=db"),
        "{out}"
    );
    assert!(
        lines[3].ends_with("the node has taint gpu=yes:NoSchedule, which the pod does not tolerate"),
        "{out}"
    );
    let one = why(&["myweb-ds", "node2"]);
    assert_eq!(one.lines().count(), 2, "{one}");
    let missing = std::process::Command::new(env!("CARGO_BIN_EXE_shoal"))
        .args(["why", "ds/nope", "--data-dir"])
        .arg(&c.dir)
        .output()
        .unwrap();
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("daemonsets.apps \"nope\" not found"));
}

/// Conformance "should retry creating failed daemon pods": a pod marked Failed through its
/// status is deleted and replaced on the same node, with a FailedDaemonPod event.
#[test]
fn failed_daemon_pods_are_replaced() {
    let c = Cluster::up(2);
    c.kubectl_in(&["apply", "-f", "-"], Some(MYWEB));
    wait_ds(&c, "myweb-ds", "default", 2, "<none>");
    let first = pods_jsonpath(&c, "app=myweb", "{.items[0].metadata.name} {.items[0].spec.nodeName}");
    let (pod, node) = first.split_once(' ').unwrap();
    c.kubectl(&[
        "patch",
        "pod",
        pod,
        "--subresource=status",
        "--type=merge",
        "-p",
        "{\"status\":{\"phase\":\"Failed\"}}",
    ]);
    c.eventually(30, "failed pod deleted and replaced", || {
        let out = c.kubectl(&["get", "pods", "-o", "wide", "--no-headers"]);
        let on_node: Vec<Vec<String>> = out.lines().map(columns).filter(|r| r[6] == node).collect();
        (on_node.len() == 1 && on_node[0][0] != pod && on_node[0][2] == "Running").then_some(())
    });
    let events = c.kubectl(&[
        "get",
        "events",
        "--field-selector",
        "reason=FailedDaemonPod",
        "-o",
        "jsonpath={.items[*].message}",
    ]);
    assert!(
        events.contains(&format!(
            "Found failed daemon pod default/{pod} on node {node}, will try to kill it"
        )),
        "{events}"
    );
}

/// Conformance "should run and stop complex daemon": a nodeSelector that matches no node,
/// then one labelled node, then a strategic-merge patch of the nodeSelector moves the pod.
#[test]
fn patching_the_node_selector_moves_the_pod() {
    let c = Cluster::up(2);
    let blue = MYWEB.replace(
        "    spec:\n      containers:",
        "    spec:\n      nodeSelector:\n        color: blue\n      containers:",
    );
    c.kubectl_in(&["apply", "-f", "-"], Some(&blue));
    wait_ds(&c, "myweb-ds", "default", 0, "color=blue");
    c.kubectl(&["label", "node", "node1", "color=blue"]);
    c.kubectl(&["label", "node", "node2", "color=green"]);
    wait_ds(&c, "myweb-ds", "default", 1, "color=blue");
    let patch = r#"{"spec":{"template":{"spec":{"nodeSelector":{"color":"green"}}},"updateStrategy":{"type":"RollingUpdate"}}}"#;
    c.kubectl(&["patch", "ds", "myweb-ds", "--type=strategic", "-p", patch]);
    wait_ds(&c, "myweb-ds", "default", 1, "color=green");
    c.eventually(30, "the pod moved to the green node", || {
        let out = c.kubectl(&["get", "pods", "-o", "wide", "--no-headers"]);
        let rows: Vec<Vec<String>> = out.lines().map(columns).collect();
        (rows.len() == 1 && rows[0][6] == "node2").then_some(())
    });
}

/// Conformance: status subresource writes survive the controller, collections delete by
/// label, and ControllerRevisions go through their lifecycle (a hand-made duplicate of the
/// current revision is tolerated; a template change makes revision 3).
#[test]
fn status_collections_and_controller_revisions() {
    let c = Cluster::up(2);
    c.kubectl_in(&["apply", "-f", "-"], Some(MYWEB));
    wait_ds(&c, "myweb-ds", "default", 2, "<none>");

    // Status: GET /status is the whole object; a condition written by a client stays.
    let raw = c.kubectl(&[
        "get",
        "--raw",
        "/apis/apps/v1/namespaces/default/daemonsets/myweb-ds/status",
    ]);
    let obj: serde_json::Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(obj["spec"]["selector"]["matchExpressions"][0]["key"], "app");
    let cond = r#"{"status":{"conditions":[{"type":"StatusUpdate","status":"True","reason":"E2E","message":"Set from a test"}]}}"#;
    c.kubectl(&[
        "patch",
        "ds",
        "myweb-ds",
        "--subresource=status",
        "--type=merge",
        "-p",
        cond,
    ]);
    c.kubectl(&[
        "delete",
        "pod",
        &pods_jsonpath(&c, "app=myweb", "{.items[0].metadata.name}"),
    ]);
    wait_ds(&c, "myweb-ds", "default", 2, "<none>");
    let kept = c.kubectl(&["get", "ds", "myweb-ds", "-o", "jsonpath={.status.conditions[0].reason}"]);
    assert_eq!(kept, "E2E", "the controller writes only its counters");

    // ControllerRevisions.
    let name = c.kubectl(&[
        "get",
        "controllerrevisions",
        "-l",
        "app=myweb",
        "-o",
        "jsonpath={.items[0].metadata.name}",
    ]);
    let owner = c.kubectl(&[
        "get",
        "controllerrevision",
        &name,
        "-o",
        "jsonpath={.metadata.ownerReferences[0].kind}",
    ]);
    assert_eq!(owner, "DaemonSet");
    c.kubectl(&["label", "controllerrevision", &name, "e2e=patched"]);
    let mut copy: serde_json::Value =
        serde_json::from_str(&c.kubectl(&["get", "controllerrevision", &name, "-o", "json"])).unwrap();
    copy["metadata"] = serde_json::json!({"name": "myweb-ds-copy", "labels": {"app": "myweb", "env": "dev", "e2e": "copy"},
                                         "ownerReferences": copy["metadata"]["ownerReferences"].clone()});
    copy["revision"] = serde_json::json!(2);
    c.kubectl_in(&["create", "-f", "-"], Some(&copy.to_string()));
    let count = || {
        c.kubectl(&["get", "controllerrevisions", "-l", "app=myweb", "-o", "name"])
            .lines()
            .count()
    };
    assert_eq!(count(), 2);
    c.kubectl(&["delete", "controllerrevision", &name]);
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert_eq!(count(), 1, "the duplicate of the current revision stands in for it");
    let patch = r#"{"spec":{"template":{"spec":{"terminationGracePeriodSeconds":1}}}}"#;
    c.kubectl(&["patch", "ds", "myweb-ds", "--type=strategic", "-p", patch]);
    c.eventually(30, "a new revision", || (count() == 2).then_some(()));
    c.kubectl(&["delete", "controllerrevisions", "-l", "e2e=copy"]);
    let revisions = c.kubectl(&[
        "get",
        "controllerrevisions",
        "-l",
        "app=myweb",
        "-o",
        "jsonpath={.items[*].revision}",
    ]);
    assert_eq!(revisions, "3");

    // Collections: list across namespaces by label, delete the collection, nothing left.
    let listed = c.kubectl(&["get", "ds", "-A", "-l", "app=myweb", "-o", "name"]);
    assert_eq!(listed.trim(), "", "the DaemonSet itself has no app label");
    c.kubectl(&["label", "ds", "myweb-ds", "set=e2e"]);
    assert_eq!(
        c.kubectl(&["get", "ds", "-A", "-l", "set=e2e", "-o", "name"]).trim(),
        "daemonset.apps/myweb-ds"
    );
    c.kubectl(&[
        "delete",
        "--raw",
        "/apis/apps/v1/namespaces/default/daemonsets?labelSelector=set%3De2e",
    ]);
    assert_eq!(
        c.kubectl(&["get", "ds", "-A", "-l", "set=e2e", "-o", "name"]).trim(),
        ""
    );
}

/// Seed 004: RollingUpdate applies an edit to every pod; under OnDelete an edit changes
/// nothing (UP-TO-DATE 0) until a pod is deleted, and its replacement is updated. Then
/// `rollout history` and `rollout undo` return to the previous template.
#[test]
fn seed_004_rolling_update_on_delete_and_undo() {
    let c = Cluster::up(3);
    let ns = "kube-system";
    c.kubectl_in(
        &["apply", "-f", "-"],
        Some(include_str!("manifests/daemonset-fluentd.yaml")),
    );
    wait_ds(&c, "daemonset-fluentd", ns, 3, "<none>");
    let env_of_all = || {
        c.kubectl(&[
            "get",
            "pods",
            "-n",
            ns,
            "-l",
            "name=daemonset-fluentd",
            "-o",
            "jsonpath={.items[*].spec.containers[0].env[*].value}",
        ])
    };

    // RollingUpdate: add env2 through edit; every pod is replaced; rollout status finishes.
    let mut edit = c.kubectl_cmd(&["edit", "ds", "daemonset-fluentd", "-n", ns]);
    edit.env(
        "KUBE_EDITOR",
        "sed -i -e 's/^\\( *\\)- name: env1$/\\1- name: env2\\n\\1  value: value2\\n\\1- name: env1/'",
    );
    let out = edit.output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let status = c.kubectl(&["rollout", "status", "ds/daemonset-fluentd", "-n", ns, "--timeout=60s"]);
    assert!(
        status.contains("daemon set \"daemonset-fluentd\" successfully rolled out"),
        "{status}"
    );
    wait_ds(&c, "daemonset-fluentd", ns, 3, "<none>");
    c.eventually(30, "all pods carry env2", || {
        let env = env_of_all();
        (env.matches("value2").count() == 3 && env.split_whitespace().count() == 6).then_some(())
    });
    let history = c.kubectl(&["rollout", "history", "ds/daemonset-fluentd", "-n", ns]);
    let revisions: Vec<&str> = history
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| w.parse::<u32>().is_ok())
        .collect();
    assert_eq!(revisions, ["1", "2"], "{history}");

    // OnDelete: an edit changes nothing until a pod is deleted.
    let ondelete = r#"{"spec":{"updateStrategy":{"type":"OnDelete","rollingUpdate":null},"template":{"spec":{"containers":[{"name":"daemonset-fluentd","env":[{"name":"env2","value":"new-value2"},{"name":"env1","value":"new-value1"}]}]}}}}"#;
    c.kubectl(&[
        "patch",
        "ds",
        "daemonset-fluentd",
        "-n",
        ns,
        "--type=strategic",
        "-p",
        ondelete,
    ]);
    c.eventually(30, "UP-TO-DATE drops to 0", || {
        (ds_row(&c, "daemonset-fluentd", ns) == ["daemonset-fluentd", "3", "3", "3", "0", "3", "<none>"]).then_some(())
    });
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert!(
        !env_of_all().contains("new-value"),
        "OnDelete replaces nothing by itself"
    );
    let victim = c.kubectl(&[
        "get",
        "pods",
        "-n",
        ns,
        "-l",
        "name=daemonset-fluentd",
        "-o",
        "jsonpath={.items[0].metadata.name}",
    ]);
    c.kubectl(&["delete", "pod", "-n", ns, &victim]);
    c.eventually(30, "the replacement is updated", || {
        (ds_row(&c, "daemonset-fluentd", ns) == ["daemonset-fluentd", "3", "3", "3", "1", "3", "<none>"]).then_some(())
    });
    assert_eq!(env_of_all().matches("new-value2").count(), 1);

    // Back to RollingUpdate, then undo to the previous template: the old revision is reused.
    c.kubectl(&[
        "patch",
        "ds",
        "daemonset-fluentd",
        "-n",
        ns,
        "--type=merge",
        "-p",
        r#"{"spec":{"updateStrategy":{"type":"RollingUpdate","rollingUpdate":{"maxUnavailable":1}}}}"#,
    ]);
    wait_ds(&c, "daemonset-fluentd", ns, 3, "<none>");
    c.kubectl(&["rollout", "undo", "ds/daemonset-fluentd", "-n", ns]);
    c.kubectl(&["rollout", "status", "ds/daemonset-fluentd", "-n", ns, "--timeout=60s"]);
    c.eventually(30, "pods back on env1=value1, env2=value2", || {
        let env = env_of_all();
        (env.matches("new-value").count() == 0 && env.matches("value2").count() == 3).then_some(())
    });
    let crs = c.kubectl(&[
        "get",
        "controllerrevisions",
        "-n",
        ns,
        "-o",
        "jsonpath={.items[*].revision}",
    ]);
    let mut numbers: Vec<u32> = crs.split_whitespace().map(|n| n.parse().unwrap()).collect();
    numbers.sort();
    assert_eq!(numbers, [1, 3, 4], "revision 2 was reused and renumbered to 4: {crs}");
}

/// revisionHistoryLimit trims old revisions; maxSurge with maxUnavailable 0 rolls out and
/// ends with exactly one pod per node; an invalid strategy is refused as upstream.
#[test]
fn history_limit_surge_and_invalid_strategies() {
    let c = Cluster::up(3);
    let surge = MYWEB.replace(
        "spec:\n  selector:",
        "spec:\n  revisionHistoryLimit: 1\n  updateStrategy:\n    type: RollingUpdate\n    rollingUpdate:\n      maxUnavailable: 0\n      maxSurge: \"34%\"\n  selector:",
    );
    c.kubectl_in(&["apply", "-f", "-"], Some(&surge));
    wait_ds(&c, "myweb-ds", "default", 3, "<none>");
    for tag in ["v2", "v3", "v4"] {
        c.kubectl(&[
            "set",
            "image",
            "ds/myweb-ds",
            &format!("myweb=ghcr.io/c1t1d0s7/go-myweb:{tag}"),
        ]);
        c.kubectl(&["rollout", "status", "ds/myweb-ds", "--timeout=60s"]);
        c.eventually(30, "one pod per node on the new image", || {
            let images = pods_jsonpath(&c, "app=myweb", "{.items[*].spec.containers[0].image}");
            let n = images.split_whitespace().count();
            (n == 3 && images.split_whitespace().all(|i| i.ends_with(tag))).then_some(())
        });
    }
    let revisions = c.kubectl(&["get", "controllerrevisions", "-o", "jsonpath={.items[*].revision}"]);
    let mut numbers: Vec<u32> = revisions.split_whitespace().map(|n| n.parse().unwrap()).collect();
    numbers.sort();
    assert_eq!(
        numbers,
        [3, 4],
        "the current revision and one old one are kept: {revisions}"
    );

    let both_zero = MYWEB.replace("myweb-ds", "bad").replace(
        "spec:\n  selector:",
        "spec:\n  updateStrategy:\n    type: RollingUpdate\n    rollingUpdate:\n      maxUnavailable: 0\n      maxSurge: 0\n  selector:",
    );
    let err = c.kubectl_err(&["apply", "-f", "-"], Some(&both_zero));
    assert!(
        err.contains(
            "spec.updateStrategy.rollingUpdate.maxUnavailable: Required value: cannot be 0 when maxSurge is 0"
        ),
        "{err}"
    );
}

/// minReadySeconds: pods are READY at once but AVAILABLE only after the delay.
#[test]
fn min_ready_seconds_delays_availability() {
    let c = Cluster::up(2);
    let slow = MYWEB.replace("spec:\n  selector:", "spec:\n  minReadySeconds: 3\n  selector:");
    c.kubectl_in(&["apply", "-f", "-"], Some(&slow));
    c.eventually(30, "ready but not yet available", || {
        (ds_row(&c, "myweb-ds", "default") == ["myweb-ds", "2", "2", "2", "2", "0", "<none>"]).then_some(())
    });
    let unavailable = c.kubectl(&["get", "ds", "myweb-ds", "-o", "jsonpath={.status.numberUnavailable}"]);
    assert_eq!(unavailable, "2");
    wait_ds(&c, "myweb-ds", "default", 2, "<none>");
}

/// The opt-in rollout controls: a progress deadline with automatic rollback, a partition,
/// and pause.
#[test]
fn progress_deadline_auto_revert_partition_and_pause() {
    let c = Cluster::up(3);
    c.kubectl_in(&["apply", "-f", "-"], Some(MYWEB));
    wait_ds(&c, "myweb-ds", "default", 3, "<none>");
    c.kubectl(&[
        "annotate",
        "ds",
        "myweb-ds",
        "shoal.dev/progress-deadline-seconds=2",
        "shoal.dev/rollout-auto-revert=true",
    ]);
    // A template no node can fit: the rollout stalls, passes its deadline and is reverted.
    c.kubectl(&["set", "resources", "ds/myweb-ds", "-c", "myweb", "--requests=cpu=100"]);
    c.eventually(60, "rolled back after the deadline", || {
        let events = c.kubectl(&[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=myweb-ds",
            "-o",
            "jsonpath={.items[*].reason}",
        ]);
        (events.contains("ProgressDeadlineExceeded") && events.contains("RolledBack")).then_some(())
    });
    wait_ds(&c, "myweb-ds", "default", 3, "<none>");
    let requests = c.kubectl(&[
        "get",
        "ds",
        "myweb-ds",
        "-o",
        "jsonpath={.spec.template.spec.containers[0].resources}",
    ]);
    assert!(!requests.contains("100"), "the template is back: {requests}");
    c.eventually(30, "progressing again", || {
        let reason = c.kubectl(&[
            "get",
            "ds",
            "myweb-ds",
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Progressing\")].reason}",
        ]);
        (reason == "NewRevisionAvailable").then_some(())
    });

    // Partition: two nodes stay on the old template.
    c.kubectl(&["annotate", "ds", "myweb-ds", "shoal.dev/rollout-partition=2"]);
    c.kubectl(&["set", "image", "ds/myweb-ds", "myweb=ghcr.io/c1t1d0s7/go-myweb:v2"]);
    c.eventually(30, "one node updated", || {
        (ds_row(&c, "myweb-ds", "default") == ["myweb-ds", "3", "3", "3", "1", "3", "<none>"]).then_some(())
    });
    std::thread::sleep(std::time::Duration::from_secs(1));
    assert_eq!(ds_row(&c, "myweb-ds", "default")[4], "1", "the partition holds");
    // Pause, then lift the partition: nothing moves until the pause ends.
    c.kubectl(&["annotate", "ds", "myweb-ds", "shoal.dev/rollout-paused=true"]);
    c.kubectl(&["annotate", "ds", "myweb-ds", "shoal.dev/rollout-partition-"]);
    std::thread::sleep(std::time::Duration::from_secs(1));
    assert_eq!(ds_row(&c, "myweb-ds", "default")[4], "1", "paused");
    c.kubectl(&["annotate", "ds", "myweb-ds", "shoal.dev/rollout-paused-"]);
    wait_ds(&c, "myweb-ds", "default", 3, "<none>");
    let images = pods_jsonpath(&c, "app=myweb", "{.items[*].spec.containers[0].image}");
    assert!(images.split_whitespace().all(|i| i.ends_with(":v2")), "{images}");
}

/// A node-selector canary updates only matching nodes; removing it lets the rest follow.
/// With surge, a node briefly runs its new pod beside the old one.
#[test]
fn canary_nodes_first_then_everyone() {
    let c = Cluster::up(3);
    let surge = MYWEB.replace(
        "spec:\n  selector:",
        "spec:\n  updateStrategy:\n    rollingUpdate:\n      maxUnavailable: 0\n      maxSurge: 1\n  selector:",
    );
    c.kubectl_in(&["apply", "-f", "-"], Some(&surge));
    wait_ds(&c, "myweb-ds", "default", 3, "<none>");
    c.kubectl(&["label", "node", "node2", "canary=true"]);
    c.kubectl(&[
        "annotate",
        "ds",
        "myweb-ds",
        "shoal.dev/rollout-node-selector=canary=true",
    ]);
    c.kubectl(&["set", "image", "ds/myweb-ds", "myweb=ghcr.io/c1t1d0s7/go-myweb:v2"]);
    c.eventually(30, "only the canary node updated", || {
        let out = c.kubectl(&["get", "pods", "-o", "wide", "--no-headers"]);
        let rows: Vec<Vec<String>> = out.lines().map(columns).collect();
        let images = pods_jsonpath(
            &c,
            "app=myweb",
            "{range .items[*]}{.spec.nodeName}={.spec.containers[0].image} {end}",
        );
        (rows.len() == 3 && images.contains("node2=ghcr.io/c1t1d0s7/go-myweb:v2") && images.matches(":v2").count() == 1)
            .then_some(())
    });
    std::thread::sleep(std::time::Duration::from_millis(800));
    assert_eq!(ds_row(&c, "myweb-ds", "default")[4], "1", "the canary holds");
    c.kubectl(&["annotate", "ds", "myweb-ds", "shoal.dev/rollout-node-selector-"]);
    wait_ds(&c, "myweb-ds", "default", 3, "<none>");
    let images = pods_jsonpath(&c, "app=myweb", "{.items[*].spec.containers[0].image}");
    assert!(
        images.split_whitespace().all(|i| i.ends_with(":v2")) && images.split_whitespace().count() == 3,
        "{images}"
    );
    let events = c.kubectl(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=myweb-ds,reason=SuccessfulCreate",
        "-o",
        "name",
    ]);
    assert_eq!(
        events.lines().count(),
        6,
        "three first pods, then three surge pods: {events}"
    );
}
