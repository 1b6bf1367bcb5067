//! Upstream's conformance scenarios for ReplicaSet, Deployment and StatefulSet that need no
//! container runtime (test/e2e/apps/{replica_set,deployment,statefulset}.go), replayed with
//! kubectl against `shoal up`.

mod common;

use common::Cluster;

fn rs_manifest(name: &str, replicas: u32, labels: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: ReplicaSet\nmetadata:\n  name: {name}\n  labels: {{{labels}}}\nspec:\n  replicas: {replicas}\n  selector:\n    matchLabels: {{{labels}}}\n  template:\n    metadata:\n      labels: {{{labels}}}\n    spec:\n      containers: [{{name: httpd, image: httpd:2.4}}]\n"
    )
}

fn jsonpath(c: &Cluster, args: &[&str], path: &str) -> String {
    let mut full: Vec<&str> = args.to_vec();
    let p = format!("jsonpath={path}");
    full.extend(["-o", &p]);
    c.kubectl(&full)
}

/// T10: "should adopt matching pods on creation and release no longer matching pods".
#[test]
fn replicaset_adopts_matching_pods_and_releases_relabelled_ones() {
    let c = Cluster::up(2);
    let orphan = "apiVersion: v1\nkind: Pod\nmetadata: {name: pod-adoption-release, labels: {name: pod-adoption-release}}\nspec:\n  containers: [{name: httpd, image: httpd:2.4}]\n";
    c.kubectl_in(&["apply", "-f", "-"], Some(orphan));
    c.kubectl_in(
        &["apply", "-f", "-"],
        Some(&rs_manifest("pod-adoption-release", 1, "name: pod-adoption-release")),
    );
    c.eventually(30, "adopted", || {
        (jsonpath(
            &c,
            &["get", "pod", "pod-adoption-release"],
            "{.metadata.ownerReferences[0].name}",
        ) == "pod-adoption-release")
            .then_some(())
    });
    assert_eq!(
        jsonpath(
            &c,
            &["get", "pods", "-l", "name=pod-adoption-release"],
            "{.items[*].metadata.name}"
        ),
        "pod-adoption-release",
        "the orphan is used, no new pod"
    );
    // Relabelled, it is released and replaced.
    c.kubectl(&[
        "label",
        "pod",
        "pod-adoption-release",
        "name=not-matching",
        "--overwrite",
    ]);
    c.eventually(30, "released", || {
        jsonpath(
            &c,
            &["get", "pod", "pod-adoption-release"],
            "{.metadata.ownerReferences}",
        )
        .is_empty()
        .then_some(())
    });
    c.eventually(30, "replaced", || {
        (jsonpath(&c, &["get", "rs", "pod-adoption-release"], "{.status.readyReplicas}") == "1"
            && !jsonpath(
                &c,
                &["get", "pods", "-l", "name=pod-adoption-release"],
                "{.items[*].metadata.name}",
            )
            .is_empty())
        .then_some(())
    });
}

/// T13 and T14: list and delete a collection by label; status GET, PATCH.
#[test]
fn replicasets_are_listed_deleted_as_a_collection_and_their_status_served() {
    let c = Cluster::up(1);
    for name in ["rs-a", "rs-b"] {
        c.kubectl_in(&["apply", "-f", "-"], Some(&rs_manifest(name, 1, "e2e: conformance")));
    }
    c.eventually(30, "both ready", || {
        (jsonpath(
            &c,
            &["get", "rs", "-l", "e2e=conformance"],
            "{.items[*].status.readyReplicas}",
        ) == "1 1")
            .then_some(())
    });
    let status = c.kubectl(&[
        "get",
        "--raw",
        "/apis/apps/v1/namespaces/default/replicasets/rs-a/status",
    ]);
    let v: serde_json::Value = serde_json::from_str(&status).expect("json");
    assert_eq!(v["status"]["replicas"], 1);
    c.kubectl(&[
        "patch",
        "rs",
        "rs-a",
        "--subresource",
        "status",
        "--type",
        "merge",
        "-p",
        r#"{"status":{"conditions":[{"type":"StatusUpdate","status":"True","reason":"E2E","message":"Set from e2e test"}]}}"#,
    ]);
    assert_eq!(
        jsonpath(
            &c,
            &["get", "rs", "rs-a"],
            "{.status.conditions[?(@.type==\"StatusUpdate\")].reason}"
        ),
        "E2E"
    );
    c.kubectl(&["delete", "rs", "-l", "e2e=conformance"]);
    c.eventually(30, "collection gone", || {
        c.kubectl(&["get", "rs", "-l", "e2e=conformance", "-o", "name"])
            .is_empty()
            .then_some(())
    });
}

fn deployment(name: &str, replicas: u32, image: &str, extra: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\nspec:\n  replicas: {replicas}\n{extra}  selector:\n    matchLabels: {{name: sample-pod}}\n  template:\n    metadata:\n      labels: {{name: sample-pod}}\n    spec:\n      containers: [{{name: httpd, image: {image}}}]\n"
    )
}

/// T15: "RollingUpdateDeployment should delete old pods and create new ones": a Deployment
/// adopts a ReplicaSet with revision 3546343826724305832 and its new one takes the next.
#[test]
fn a_deployment_adopts_a_replicaset_and_takes_the_next_revision() {
    let c = Cluster::up(2);
    let rs = "apiVersion: apps/v1\nkind: ReplicaSet\nmetadata:\n  name: test-rolling-update-controller\n  labels: {name: sample-pod, pod: httpd}\n  annotations: {deployment.kubernetes.io/revision: \"3546343826724305832\"}\nspec:\n  replicas: 1\n  selector:\n    matchLabels: {name: sample-pod, pod: httpd}\n  template:\n    metadata:\n      labels: {name: sample-pod, pod: httpd}\n    spec:\n      containers: [{name: httpd, image: httpd:2.4}]\n";
    c.kubectl_in(&["apply", "-f", "-"], Some(rs));
    c.eventually(30, "the old pod", || {
        (jsonpath(
            &c,
            &["get", "rs", "test-rolling-update-controller"],
            "{.status.readyReplicas}",
        ) == "1")
            .then_some(())
    });
    let d = deployment("test-rolling-update-deployment", 1, "agnhost:2.52", "").replace(
        "labels: {name: sample-pod}\n    spec",
        "labels: {name: sample-pod, pod: httpd}\n    spec",
    );
    c.kubectl_in(&["apply", "-f", "-"], Some(&d));
    c.kubectl(&[
        "rollout",
        "status",
        "deploy/test-rolling-update-deployment",
        "--timeout=60s",
    ]);
    assert_eq!(
        jsonpath(
            &c,
            &["get", "deploy", "test-rolling-update-deployment"],
            "{.metadata.annotations.deployment\\.kubernetes\\.io/revision}"
        ),
        "3546343826724305833"
    );
    assert_eq!(
        jsonpath(
            &c,
            &["get", "rs", "test-rolling-update-controller"],
            "{.spec.replicas} {.metadata.ownerReferences[0].name}"
        ),
        "0 test-rolling-update-deployment",
        "the old ReplicaSet is adopted, scaled to 0 and kept"
    );
}

/// T17: "deployment should delete old replica sets" (revisionHistoryLimit 0).
#[test]
fn a_deployment_deletes_replicasets_beyond_its_history_limit() {
    let c = Cluster::up(1);
    let d = deployment("test-cleanup-deployment", 1, "httpd:2.4", "  revisionHistoryLimit: 0\n");
    c.kubectl_in(&["apply", "-f", "-"], Some(&d));
    c.kubectl(&["rollout", "status", "deploy/test-cleanup-deployment", "--timeout=60s"]);
    c.kubectl(&["set", "image", "deploy/test-cleanup-deployment", "httpd=agnhost:2.52"]);
    c.kubectl(&["rollout", "status", "deploy/test-cleanup-deployment", "--timeout=60s"]);
    c.eventually(30, "one ReplicaSet left", || {
        let rs = jsonpath(&c, &["get", "rs"], "{.items[*].spec.template.spec.containers[0].image}");
        (rs == "agnhost:2.52").then_some(())
    });
}

/// T18: "deployment should support rollover": a new template mid-rollout starts a new
/// ReplicaSet at once and the intermediate one goes to 0.
#[test]
fn a_deployment_rolls_over_to_a_newer_template_mid_rollout() {
    let c = Cluster::up(2);
    let d = deployment(
        "test-rollover-deployment",
        1,
        "httpd:2.4",
        "  minReadySeconds: 10\n  strategy:\n    rollingUpdate: {maxSurge: 1, maxUnavailable: 0}\n",
    );
    c.kubectl_in(&["apply", "-f", "-"], Some(&d));
    c.eventually(30, "first ReplicaSet", || {
        (jsonpath(&c, &["get", "deploy", "test-rollover-deployment"], "{.status.replicas}") == "1").then_some(())
    });
    // The second template's pod stays unavailable for 10 s; a third comes meanwhile.
    c.kubectl(&["set", "image", "deploy/test-rollover-deployment", "httpd=redis-slave:1"]);
    c.eventually(30, "second ReplicaSet", || {
        jsonpath(&c, &["get", "rs"], "{.items[*].spec.template.spec.containers[0].image}")
            .contains("redis-slave:1")
            .then_some(())
    });
    c.kubectl(&["set", "image", "deploy/test-rollover-deployment", "httpd=agnhost:2.52"]);
    c.kubectl(&["rollout", "status", "deploy/test-rollover-deployment", "--timeout=90s"]);
    let sizes = jsonpath(
        &c,
        &["get", "rs"],
        "{range .items[*]}{.spec.template.spec.containers[0].image}={.spec.replicas} {end}",
    );
    assert!(sizes.contains("agnhost:2.52=1"), "{sizes}");
    assert!(
        sizes.contains("redis-slave:1=0") && sizes.contains("httpd:2.4=0"),
        "{sizes}"
    );
}

/// "should perform rolling updates and roll backs of template modifications" (StatefulSet):
/// reverting the template reuses the first revision's ControllerRevision.
#[test]
fn a_statefulset_reverted_template_reuses_its_revision() {
    let c = Cluster::up(2);
    let sts = "apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {name: ss2}\nspec:\n  serviceName: test\n  replicas: 3\n  selector:\n    matchLabels: {foo: bar}\n  template:\n    metadata:\n      labels: {foo: bar}\n    spec:\n      containers: [{name: webserver, image: httpd:2.4}]\n";
    c.kubectl_in(&["apply", "-f", "-"], Some(sts));
    c.kubectl(&["rollout", "status", "sts/ss2", "--timeout=60s"]);
    let first = jsonpath(&c, &["get", "sts", "ss2"], "{.status.updateRevision}");
    c.kubectl(&["set", "image", "sts/ss2", "webserver=httpd:2.4.39"]);
    c.kubectl(&["rollout", "status", "sts/ss2", "--timeout=60s"]);
    let second = jsonpath(
        &c,
        &["get", "sts", "ss2"],
        "{.status.currentRevision} {.status.updateRevision}",
    );
    assert_ne!(second.split_whitespace().next(), Some(first.as_str()));
    let labels = jsonpath(
        &c,
        &["get", "pods", "-l", "foo=bar"],
        "{.items[*].metadata.labels.controller-revision-hash}",
    );
    assert!(
        labels.split_whitespace().all(|l| second.ends_with(l)),
        "{labels} vs {second}"
    );
    c.kubectl(&["set", "image", "sts/ss2", "webserver=httpd:2.4"]);
    c.kubectl(&["rollout", "status", "sts/ss2", "--timeout=60s"]);
    assert_eq!(
        jsonpath(
            &c,
            &["get", "sts", "ss2"],
            "{.status.currentRevision} {.status.updateRevision}"
        ),
        format!("{first} {first}"),
        "the earlier revision's name comes back"
    );
}
