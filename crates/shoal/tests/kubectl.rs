//! The real kubectl against a real `shoal up`.

mod common;

use common::Cluster;

/// Seed 002's DaemonSet.
const DS: &str = include_str!("manifests/fluentd-elasticsearch.yaml");

fn regex_line(text: &str, words: &[&str]) -> bool {
    text.lines().any(|l| l.split_whitespace().collect::<Vec<_>>() == words)
}

#[test]
fn discovery_nodes_and_the_daemonset_lifecycle() {
    let c = Cluster::up(3);

    // api-resources: short name, group version, namespaced, kind.
    let out = c.kubectl(&["api-resources"]);
    assert!(
        regex_line(&out, &["daemonsets", "ds", "apps/v1", "true", "DaemonSet"]),
        "{out}"
    );
    assert!(regex_line(&out, &["nodes", "no", "v1", "false", "Node"]), "{out}");
    let out = c.kubectl(&["api-resources", "--categories=all", "-o", "name"]);
    assert!(out.contains("daemonsets.apps") && out.contains("pods"), "{out}");

    // Nodes: three Ready, node1 the control plane, wide columns filled.
    let out = c.eventually(20, "3 Ready nodes", || {
        let out = c.kubectl(&["get", "nodes", "-o", "wide"]);
        (out.matches(" Ready ").count() == 3).then_some(out)
    });
    let header: Vec<&str> = out.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        &header[..6],
        &["NAME", "STATUS", "ROLES", "AGE", "VERSION", "INTERNAL-IP"],
        "{out}"
    );
    let node1: Vec<&str> = out
        .lines()
        .find(|l| l.starts_with("node1 "))
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(node1[1..3], ["Ready", "control-plane"]);
    assert!(node1[5].starts_with("172.20."), "{out}");
    let lease = c.kubectl(&[
        "get",
        "lease",
        "-n",
        "kube-node-lease",
        "node2",
        "-o",
        "jsonpath={.spec.holderIdentity}",
    ]);
    assert_eq!(lease, "node2");

    // create / get.
    let out = c.kubectl_in(&["create", "-f", "-"], Some(DS));
    assert_eq!(out.trim(), "daemonset.apps/fluentd-elasticsearch created");
    let out = c.kubectl(&["get", "ds", "-n", "kube-system"]);
    let header: Vec<&str> = out.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAME",
            "DESIRED",
            "CURRENT",
            "READY",
            "UP-TO-DATE",
            "AVAILABLE",
            "NODE",
            "SELECTOR",
            "AGE"
        ]
    );
    assert!(out.contains("fluentd-elasticsearch"), "{out}");
    let yaml = c.kubectl(&["get", "ds", "-n", "kube-system", "fluentd-elasticsearch", "-o", "yaml"]);
    assert!(yaml.contains("type: RollingUpdate"), "defaults applied: {yaml}");
    assert!(yaml.contains("maxUnavailable: 1"), "{yaml}");
    assert!(yaml.contains("revisionHistoryLimit: 10"), "{yaml}");
    assert!(yaml.contains("generation: 1"), "{yaml}");
    let json: serde_json::Value =
        serde_json::from_str(&c.kubectl(&["get", "ds", "-n", "kube-system", "fluentd-elasticsearch", "-o", "json"]))
            .unwrap();
    assert_eq!(json["spec"]["template"]["spec"]["restartPolicy"], "Always");
    assert_eq!(
        json["spec"]["template"]["spec"]["containers"][0]["terminationMessagePath"],
        "/dev/termination-log"
    );
    assert!(json["metadata"]["uid"].as_str().is_some_and(|u| u.len() == 36));

    // explain through OpenAPI v3.
    let out = c.kubectl(&["explain", "ds.spec"]);
    assert!(out.contains("updateStrategy"), "{out}");
    assert!(out.contains("minReadySeconds"), "{out}");

    // label, annotate (merge patches).
    c.kubectl(&[
        "label",
        "ds",
        "-n",
        "kube-system",
        "fluentd-elasticsearch",
        "tier=logging",
    ]);
    c.kubectl(&[
        "annotate",
        "ds",
        "-n",
        "kube-system",
        "fluentd-elasticsearch",
        "team=infra",
    ]);
    let out = c.kubectl(&[
        "get",
        "ds",
        "-n",
        "kube-system",
        "-l",
        "tier=logging",
        "-o",
        "jsonpath={.items[*].metadata.annotations.team}",
    ]);
    assert_eq!(out, "infra");
    let out = c.kubectl(&[
        "get",
        "ds",
        "-n",
        "kube-system",
        "-l",
        "tier notin (logging)",
        "-o",
        "name",
    ]);
    assert_eq!(out.trim(), "");
    let generation = c.kubectl(&[
        "get",
        "ds",
        "-n",
        "kube-system",
        "fluentd-elasticsearch",
        "-o",
        "jsonpath={.metadata.generation}",
    ]);
    assert_eq!(generation, "1", "metadata-only changes keep the generation");

    // edit (strategic merge patch) through KUBE_EDITOR.
    let mut edit = c.kubectl_cmd(&["edit", "ds", "-n", "kube-system", "fluentd-elasticsearch"]);
    edit.env("KUBE_EDITOR", "sed -i -e s/fluentd:v2.5.2/fluentd:v2.6.0/");
    let out = edit.output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let img = c.kubectl(&["get", "ds", "-n", "kube-system", "fluentd-elasticsearch", "-o", "jsonpath={.spec.template.spec.containers[0].image} {.metadata.generation} {.spec.template.spec.containers[0].resources.requests.cpu}"]);
    assert_eq!(img, "quay.io/fluentd_elasticsearch/fluentd:v2.6.0 2 100m");

    // delete.
    let out = c.kubectl(&["delete", "ds", "-n", "kube-system", "fluentd-elasticsearch"]);
    assert!(out.contains("deleted"), "{out}");
    let err = c.kubectl_err(&["get", "ds", "-n", "kube-system", "fluentd-elasticsearch"], None);
    assert!(
        err.contains("daemonsets.apps \"fluentd-elasticsearch\" not found"),
        "{err}"
    );
}

#[test]
fn apply_three_times_and_watch() {
    let c = Cluster::up(1);
    let cm = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  a: \"1\"\n";
    assert_eq!(
        c.kubectl_in(&["apply", "-f", "-"], Some(cm)).trim(),
        "configmap/settings created"
    );
    assert_eq!(
        c.kubectl_in(&["apply", "-f", "-"], Some(cm)).trim(),
        "configmap/settings unchanged"
    );
    let cm2 = cm.replace("a: \"1\"", "a: \"2\"");
    assert_eq!(
        c.kubectl_in(&["apply", "-f", "-"], Some(&cm2)).trim(),
        "configmap/settings configured"
    );
    assert_eq!(c.kubectl(&["get", "cm", "settings", "-o", "jsonpath={.data.a}"]), "2");

    // Server-side apply creates and updates with a field manager.
    let ss = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ssa\ndata:\n  k: v\n";
    let out = c.kubectl_in(&["apply", "--server-side", "-f", "-"], Some(ss));
    assert_eq!(out.trim(), "configmap/ssa serverside-applied");
    let managers = c.kubectl(&[
        "get",
        "cm",
        "ssa",
        "--show-managed-fields",
        "-o",
        "jsonpath={.metadata.managedFields[*].manager}",
    ]);
    assert_eq!(managers, "kubectl");
    // Another manager changes k; applying a different value then conflicts with it.
    c.kubectl(&[
        "patch",
        "cm",
        "ssa",
        "--field-manager",
        "other",
        "-p",
        "{\"data\":{\"k\":\"w\"}}",
    ]);
    let err = c.kubectl_err(
        &["apply", "--server-side", "-f", "-"],
        Some(&ss.replace("k: v", "k: x")),
    );
    assert!(
        err.contains("Apply failed with 1 conflict: conflict with \"other\" using v1: .data.k"),
        "{err}"
    );
    assert_eq!(c.kubectl(&["get", "cm", "ssa", "-o", "jsonpath={.data.k}"]), "w");
    let out = c.kubectl_in(
        &["apply", "--server-side", "--force-conflicts", "-f", "-"],
        Some(&ss.replace("k: v", "k: x")),
    );
    assert_eq!(out.trim(), "configmap/ssa serverside-applied");
    assert_eq!(c.kubectl(&["get", "cm", "ssa", "-o", "jsonpath={.data.k}"]), "x");
    // Dropping a field from the configuration removes it.
    let two = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ssa\ndata:\n  k: x\n  extra: e\n";
    c.kubectl_in(&["apply", "--server-side", "-f", "-"], Some(two));
    assert_eq!(c.kubectl(&["get", "cm", "ssa", "-o", "jsonpath={.data.extra}"]), "e");
    c.kubectl_in(
        &["apply", "--server-side", "-f", "-"],
        Some(&ss.replace("k: v", "k: x")),
    );
    assert_eq!(
        c.kubectl(&["get", "cm", "ssa", "-o", "jsonpath={.data}"]),
        "{\"k\":\"x\"}"
    );

    // get -w sees a change made after it started.
    let mut watch = c.kubectl_cmd(&["get", "cm", "-w", "--output-watch-events"]);
    watch.stdout(std::process::Stdio::piped());
    let mut child = watch.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    std::thread::sleep(std::time::Duration::from_millis(1500));
    c.kubectl(&["create", "configmap", "late", "--from-literal=x=y"]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut seen = Vec::new();
    while std::time::Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(std::time::Duration::from_millis(200)) {
            seen.push(line.clone());
            if line.contains("ADDED") && line.contains("late") {
                break;
            }
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        seen.iter().any(|l| l.contains("ADDED") && l.contains("late")),
        "{seen:?}"
    );
}

/// The watch events after `rv` (`kubectl get --raw`, a one-second watch), as
/// (type, name, resourceVersion, the object).
fn watch_from(c: &Cluster, rv: &str, selector: &str) -> Vec<(String, String, u64, serde_json::Value)> {
    let path = format!("/api/v1/namespaces/default/configmaps?watch=1&resourceVersion={rv}&timeoutSeconds=1{selector}");
    c.kubectl(&["get", "--raw", &path])
        .lines()
        .map(|l| {
            let e: serde_json::Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
            let o = e["object"].clone();
            let rv = o["metadata"]["resourceVersion"].as_str().unwrap().parse().unwrap();
            (
                e["type"].as_str().unwrap().to_string(),
                o["metadata"]["name"].as_str().unwrap().to_string(),
                rv,
                o,
            )
        })
        .collect()
}

#[test]
fn watches_resume_from_a_past_revision_with_every_change_after_it() {
    let c = Cluster::up(1);
    c.kubectl(&["create", "configmap", "w1", "--from-literal=k=1"]);
    c.kubectl(&["label", "configmap", "w1", "tier=a"]);
    let start = c.kubectl(&["get", "cm", "w1", "-o", "jsonpath={.metadata.resourceVersion}"]);
    c.kubectl(&["create", "configmap", "w2", "--from-literal=k=2"]);
    c.kubectl(&["patch", "configmap", "w1", "-p", r#"{"data":{"k":"changed"}}"#]);
    c.kubectl(&["label", "configmap", "w1", "tier=b", "--overwrite"]);
    c.kubectl(&["delete", "configmap", "w2"]);

    // Every change after `start`, replayed from the cache's history, in order, each object
    // carrying the revision of its change.
    let events = watch_from(&c, &start, "");
    let seen: Vec<(&str, &str)> = events.iter().map(|(t, n, _, _)| (t.as_str(), n.as_str())).collect();
    assert_eq!(
        seen,
        [
            ("ADDED", "w2"),
            ("MODIFIED", "w1"),
            ("MODIFIED", "w1"),
            ("DELETED", "w2")
        ],
        "{events:?}"
    );
    assert!(
        events.windows(2).all(|w| w[0].2 < w[1].2),
        "revisions increase: {events:?}"
    );
    assert!(events[0].2 > start.parse::<u64>().unwrap());
    assert_eq!(events[1].3["data"]["k"], "changed");
    assert_eq!(events[2].3["metadata"]["labels"]["tier"], "b");
    let now = c.kubectl(&["get", "cm", "w1", "-o", "jsonpath={.metadata.resourceVersion}"]);
    assert_eq!(
        events[2].2,
        now.parse::<u64>().unwrap(),
        "the same revision as a GET shows"
    );

    // With a selector: an object that leaves it is DELETED at the revision it left.
    let events = watch_from(&c, &start, "&labelSelector=tier%3Da");
    let seen: Vec<(&str, &str)> = events.iter().map(|(t, n, _, _)| (t.as_str(), n.as_str())).collect();
    assert_eq!(seen, [("MODIFIED", "w1"), ("DELETED", "w1")], "{events:?}");
    assert_eq!(events[1].2, now.parse::<u64>().unwrap());
    assert_eq!(
        events[1].3["metadata"]["labels"]["tier"], "a",
        "its last state in the selection"
    );
}

#[test]
fn delete_propagation_policies() {
    let c = Cluster::up(1);
    let make = |owner: &str| {
        c.kubectl(&["create", "configmap", owner]);
        let uid = c.kubectl(&["get", "cm", owner, "-o", "jsonpath={.metadata.uid}"]);
        let dep = format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {owner}-dep\n  ownerReferences:\n  - apiVersion: v1\n    kind: ConfigMap\n    name: {owner}\n    uid: {uid}\n    blockOwnerDeletion: true\n"
        );
        c.kubectl_in(&["create", "-f", "-"], Some(&dep));
    };
    let exists = |name: &str| c.kubectl_output(&["get", "cm", name], None).status.success();

    make("bg");
    c.kubectl(&["delete", "cm", "bg", "--cascade=background"]);
    c.eventually(20, "background dependent deleted", || (!exists("bg-dep")).then_some(()));

    make("orph");
    c.kubectl(&["delete", "cm", "orph", "--cascade=orphan"]);
    c.eventually(20, "orphaned owner gone", || (!exists("orph")).then_some(()));
    assert!(exists("orph-dep"));
    let refs = c.kubectl(&["get", "cm", "orph-dep", "-o", "jsonpath={.metadata.ownerReferences}"]);
    assert_eq!(refs.trim(), "", "owner reference removed");

    make("fg");
    c.kubectl(&["delete", "cm", "fg", "--cascade=foreground"]);
    c.eventually(20, "foreground owner and dependent gone", || {
        (!exists("fg") && !exists("fg-dep")).then_some(())
    });

    // Deleting a namespace deletes what is in it.
    // Events have no cache in the controllers: the namespace controller lists them.
    c.kubectl(&["create", "namespace", "scratch"]);
    c.kubectl(&["create", "configmap", "inside", "-n", "scratch"]);
    let event = "apiVersion: v1\nkind: Event\nmetadata: {name: inside-ev, namespace: scratch}\n\
                 involvedObject: {kind: ConfigMap, name: inside, namespace: scratch}\n\
                 reason: Tested\nmessage: an event to drain\ntype: Normal\n";
    c.kubectl_in(&["create", "-f", "-"], Some(event));
    c.kubectl(&["delete", "namespace", "scratch"]);
    c.eventually(20, "namespace gone", || {
        (!c.kubectl_output(&["get", "ns", "scratch"], None).status.success()).then_some(())
    });
    assert!(
        !c.kubectl_output(&["get", "cm", "inside", "-n", "scratch"], None)
            .status
            .success()
    );
    // A namespace of the same name starts empty: the event went with the old one.
    c.kubectl(&["create", "namespace", "scratch"]);
    let left = c.kubectl(&["get", "events", "-n", "scratch", "-o", "name"]);
    assert_eq!(left.trim(), "", "events left behind: {left}");
}

#[test]
fn bad_input_is_refused_with_upstream_messages_and_nothing_is_stored() {
    let c = Cluster::up(1);
    let gone = |name: &str| {
        let err = c.kubectl_err(&["get", "ds", name], None);
        assert!(err.contains("not found"), "{err}");
    };

    let mismatch = DS.replace("  namespace: kube-system\n", "").replace(
        "      labels:\n        name: fluentd-elasticsearch",
        "      labels:\n        name: other",
    );
    let err = c.kubectl_err(&["create", "-f", "-"], Some(&mismatch));
    assert!(err.contains("is invalid"), "{err}");
    assert!(err.contains("`selector` does not match template `labels`"), "{err}");
    gone("fluentd-elasticsearch");

    let never = DS
        .replace("  namespace: kube-system\n", "")
        .replace("      tolerations:", "      restartPolicy: Never\n      tolerations:");
    let err = c.kubectl_err(&["create", "-f", "-"], Some(&never));
    assert!(
        err.contains("spec.template.spec.restartPolicy: Unsupported value: \"Never\": supported values: \"Always\""),
        "{err}"
    );
    gone("fluentd-elasticsearch");

    let unknown = DS
        .replace("  namespace: kube-system\n", "")
        .replace("  selector:", "  bogusField: 1\n  selector:");
    let err = c.kubectl_err(&["create", "-f", "-"], Some(&unknown));
    assert!(err.contains("unknown field \"spec.bogusField\""), "{err}");
    gone("fluentd-elasticsearch");

    let err = c.kubectl_err(
        &["create", "-f", "-"],
        Some("apiVersion: v1\nkind: ConfigMap\nmetadata: [unclosed\n"),
    );
    assert!(err.to_lowercase().contains("error"), "{err}");

    // Malformed JSON reaches the server raw: 400 BadRequest.
    let err = c.kubectl_err(
        &["create", "--raw", "/api/v1/namespaces/default/configmaps", "-f", "-"],
        Some("{\"apiVersion\": \"v1\", "),
    );
    assert!(err.contains("BadRequest") || err.contains("malformed"), "{err}");

    // Optimistic concurrency: a replace with a stale resourceVersion is a 409.
    c.kubectl(&["create", "configmap", "cas", "--from-literal=a=1"]);
    let stale = c.kubectl(&["get", "cm", "cas", "-o", "yaml"]);
    c.kubectl(&["patch", "cm", "cas", "-p", "{\"data\":{\"a\":\"2\"}}"]);
    let err = c.kubectl_err(&["replace", "-f", "-"], Some(&stale.replace("a: \"1\"", "a: \"3\"")));
    assert!(
        err.contains("the object has been modified; please apply your changes to the latest version and try again"),
        "{err}"
    );
    assert_eq!(c.kubectl(&["get", "cm", "cas", "-o", "jsonpath={.data.a}"]), "2");
}

#[test]
fn anonymous_requests_get_what_the_public_roles_allow() {
    let c = Cluster::up(1);
    let ca = std::fs::read_to_string(c.dir.join("tls/ca.crt")).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let anon = shoal_apiserver::client::HttpsClient::new(c.addr(), &ca, None).unwrap();
    let forged = shoal_apiserver::client::HttpsClient::new(c.addr(), &ca, Some("not-a-token".to_string())).unwrap();
    rt.block_on(async {
        for public in ["/readyz", "/version"] {
            let r = anon.request("GET", public, "application/json", b"").await.unwrap();
            assert_eq!(r.status, 200, "{public}");
        }
        // As upstream: no credential is system:anonymous, whom RBAC gives nothing more.
        let r = anon
            .request("GET", "/api/v1/pods", "application/json", b"")
            .await
            .unwrap();
        assert_eq!(r.status, 403);
        let s: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(
            s["message"],
            r#"pods is forbidden: User "system:anonymous" cannot list resource "pods" in API group "" at the cluster scope"#
        );
        let r = anon.request("GET", "/api", "application/json", b"").await.unwrap();
        assert_eq!(r.status, 403, "not even discovery");
        // A credential that names no one is refused outright.
        let r = forged
            .request("GET", "/api/v1/pods", "application/json", b"")
            .await
            .unwrap();
        assert_eq!(r.status, 401);
        let s: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(s["reason"], "Unauthorized");
        let r = forged.request("GET", "/version", "application/json", b"").await.unwrap();
        assert_eq!(r.status, 401, "a bad credential is not anonymous");
    });
}
