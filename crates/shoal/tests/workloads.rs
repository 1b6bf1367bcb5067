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

/// Seed 003's Deployment.
const ECHO_DEPLOY: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: echo-deploy
spec:
  strategy:
    type: RollingUpdate
    rollingUpdate:
      maxSurge: 1
      maxUnavailable: 0
  replicas: 4
  selector:
    matchLabels:
      app: echo
      tier: app
  template:
    metadata:
      labels:
        app: echo
        tier: app
    spec:
      containers:
      - name: echo
        image: ghcr.io/subicura/echo:v2
";

fn images_of_rs(c: &Cluster) -> Vec<(String, String, String)> {
    let out = c.kubectl(&[
        "get",
        "rs",
        "-o",
        "jsonpath={range .items[*]}{.metadata.annotations.deployment\\.kubernetes\\.io/revision} {.spec.replicas} {.spec.template.spec.containers[0].image}{\"\\n\"}{end}",
    ]);
    let mut v: Vec<(String, String, String)> = out
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            Some((f.first()?.to_string(), f.get(1)?.to_string(), f.get(2)?.to_string()))
        })
        .collect();
    v.sort();
    v
}

#[test]
fn seed_003_deployment_rolls_forward_and_back() {
    let c = Cluster::up(3);
    let v1 = ECHO_DEPLOY.replace("echo:v2", "echo:v1");
    c.kubectl_in(&["apply", "-f", "-"], Some(&v1));
    let done = c.kubectl(&["rollout", "status", "deploy/echo-deploy", "--timeout=60s"]);
    assert!(done.contains("successfully rolled out"), "{done}");
    let cols: Vec<String> = c
        .kubectl(&["get", "deploy", "echo-deploy", "--no-headers"])
        .split_whitespace()
        .take(4)
        .map(str::to_string)
        .collect();
    assert_eq!(cols, ["echo-deploy", "4/4", "4", "4"]);

    // v1 -> v2 with maxSurge 1 / maxUnavailable 0: a watch sees never fewer than 4
    // available and never more than 5 pods.
    let mut watch = c
        .kubectl_cmd(&[
            "get",
            "deploy",
            "echo-deploy",
            "--watch",
            "-o",
            "jsonpath={.status.availableReplicas} {.status.replicas} {.status.updatedReplicas}{\"\\n\"}",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("kubectl watch");
    std::thread::sleep(std::time::Duration::from_millis(500));
    c.kubectl_in(&["apply", "-f", "-"], Some(ECHO_DEPLOY));
    let done = c.kubectl(&["rollout", "status", "deploy/echo-deploy", "--timeout=60s"]);
    assert!(done.contains("successfully rolled out"), "{done}");
    std::thread::sleep(std::time::Duration::from_millis(500));
    let _ = watch.kill();
    let seen = {
        use std::io::Read;
        let mut s = String::new();
        watch
            .stdout
            .take()
            .expect("stdout")
            .read_to_string(&mut s)
            .expect("read");
        let _ = watch.wait();
        s
    };
    let samples: Vec<Vec<i64>> = seen
        .lines()
        .map(|l| l.split_whitespace().map(|x| x.parse().unwrap_or(0)).collect())
        .filter(|v: &Vec<i64>| v.len() == 3)
        .collect();
    assert!(samples.len() >= 3, "the watch saw the rollout: {seen}");
    for s in &samples {
        assert!(s[0] >= 4, "never fewer than 4 available: {seen}");
        assert!(s[1] <= 5, "never more than 5 pods: {seen}");
    }
    assert_eq!(samples.last().map(|s| s[2]), Some(4));
    assert_eq!(
        images_of_rs(&c),
        [
            ("1".into(), "0".into(), "ghcr.io/subicura/echo:v1".into()),
            ("2".into(), "4".into(), "ghcr.io/subicura/echo:v2".into())
        ]
    );
    let history = c.kubectl(&["rollout", "history", "deploy/echo-deploy"]);
    assert!(history.contains("\n1 ") && history.contains("\n2 "), "{history}");
    let events = c.kubectl(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=echo-deploy",
        "-o",
        "jsonpath={.items[*].message}",
    ]);
    assert!(events.contains("Scaled up replica set echo-deploy-"), "{events}");

    // rollout undo returns to v1 (its ReplicaSet takes revision 3).
    c.kubectl(&["rollout", "undo", "deploy/echo-deploy"]);
    c.kubectl(&["rollout", "status", "deploy/echo-deploy", "--timeout=60s"]);
    assert_eq!(
        images_of_rs(&c),
        [
            ("2".into(), "0".into(), "ghcr.io/subicura/echo:v2".into()),
            ("3".into(), "4".into(), "ghcr.io/subicura/echo:v1".into())
        ]
    );
    let history = c.kubectl(&[
        "get",
        "rs",
        "-o",
        "jsonpath={.items[*].metadata.annotations.deployment\\.kubernetes\\.io/revision-history}",
    ]);
    assert_eq!(history, "1", "the reused ReplicaSet remembers its first revision");
    let pods = c.kubectl(&[
        "get",
        "pods",
        "-l",
        "app=echo",
        "-o",
        "jsonpath={.items[*].spec.containers[0].image}",
    ]);
    c.eventually(30, "v1 pods only", || {
        let pods = c.kubectl(&[
            "get",
            "pods",
            "-l",
            "app=echo",
            "-o",
            "jsonpath={.items[*].spec.containers[0].image}",
        ]);
        (pods.split_whitespace().count() == 4 && pods.split_whitespace().all(|i| i.ends_with(":v1"))).then_some(())
    });
    let _ = pods;

    // set image, pause (nothing rolls), resume (it rolls), restart (a new ReplicaSet).
    c.kubectl(&["rollout", "pause", "deploy/echo-deploy"]);
    c.kubectl(&["set", "image", "deploy/echo-deploy", "echo=ghcr.io/subicura/echo:v3"]);
    std::thread::sleep(std::time::Duration::from_secs(1));
    assert!(
        !images_of_rs(&c).iter().any(|r| r.2.ends_with(":v3")),
        "paused: no new ReplicaSet"
    );
    let progressing = c.kubectl(&[
        "get",
        "deploy",
        "echo-deploy",
        "-o",
        "jsonpath={.status.conditions[?(@.type==\"Progressing\")].reason}",
    ]);
    assert_eq!(progressing, "DeploymentPaused");
    c.kubectl(&["rollout", "resume", "deploy/echo-deploy"]);
    c.kubectl(&["rollout", "status", "deploy/echo-deploy", "--timeout=60s"]);
    assert!(images_of_rs(&c).iter().any(|r| r.1 == "4" && r.2.ends_with(":v3")));
    c.kubectl(&["rollout", "restart", "deploy/echo-deploy"]);
    c.kubectl(&["rollout", "status", "deploy/echo-deploy", "--timeout=60s"]);
    let rs = images_of_rs(&c);
    assert_eq!(rs.len(), 4, "{rs:?}");
    assert_eq!(rs.iter().filter(|r| r.1 != "0").count(), 1);
    let available = c.kubectl(&["get", "deploy", "echo-deploy", "-o", "jsonpath={.status.conditions[?(@.type==\"Available\")].status} {.status.conditions[?(@.type==\"Progressing\")].reason}"]);
    assert_eq!(available, "True NewReplicaSetAvailable");
}

#[test]
fn a_recreate_deployment_replaces_all_pods_at_once() {
    let c = Cluster::up(2);
    let d = ECHO_DEPLOY
        .replace(
            "    type: RollingUpdate\n    rollingUpdate:\n      maxSurge: 1\n      maxUnavailable: 0\n",
            "    type: Recreate\n",
        )
        .replace("replicas: 4", "replicas: 3")
        .replace("echo:v2", "echo:v1");
    assert!(d.contains("type: Recreate"));
    c.kubectl_in(&["apply", "-f", "-"], Some(&d));
    c.kubectl(&["rollout", "status", "deploy/echo-deploy", "--timeout=60s"]);
    let old_hash = c.kubectl(&[
        "get",
        "rs",
        "-l",
        "app=echo",
        "-o",
        "jsonpath={.items[0].metadata.labels.pod-template-hash}",
    ]);
    // One watch stream is ordered by resourceVersion: replaying it shows which pods lived
    // together.
    let mut watch = c
        .kubectl_cmd(&[
            "get",
            "pods",
            "-l",
            "app=echo",
            "--watch",
            "--output-watch-events",
            "-o",
            "jsonpath={.type} {.object.metadata.name} {.object.metadata.labels.pod-template-hash}{\"\\n\"}",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("kubectl watch");
    std::thread::sleep(std::time::Duration::from_millis(500));
    c.kubectl(&["set", "image", "deploy/echo-deploy", "echo=ghcr.io/subicura/echo:v2"]);
    c.kubectl(&["rollout", "status", "deploy/echo-deploy", "--timeout=60s"]);
    std::thread::sleep(std::time::Duration::from_millis(500));
    let _ = watch.kill();
    let seen = {
        use std::io::Read;
        let mut s = String::new();
        watch
            .stdout
            .take()
            .expect("stdout")
            .read_to_string(&mut s)
            .expect("read");
        let _ = watch.wait();
        s
    };
    // The first new pod appears only once every old pod is gone.
    let mut old = std::collections::BTreeSet::new();
    let mut new = std::collections::BTreeSet::new();
    for l in seen.lines() {
        let f: Vec<&str> = l.split_whitespace().collect();
        let [event, name, hash] = f[..] else { continue };
        match (event, hash == old_hash) {
            ("DELETED", true) => {
                old.remove(name);
            }
            (_, true) => {
                old.insert(name);
            }
            ("ADDED", false) => {
                assert!(old.is_empty(), "new pod {name} beside old pods {old:?}:\n{seen}");
                new.insert(name);
            }
            _ => {}
        }
    }
    assert_eq!(new.len(), 3, "{seen}");
    assert_eq!(
        images_of_rs(&c),
        [
            ("1".into(), "0".into(), "ghcr.io/subicura/echo:v1".into()),
            ("2".into(), "3".into(), "ghcr.io/subicura/echo:v2".into())
        ]
    );
}

#[test]
fn services_get_addresses_endpoints_and_slices() {
    let c = Cluster::up(3);
    c.kubectl(&[
        "create",
        "deployment",
        "web",
        "--image=nginx",
        "--replicas=3",
        "--port=80",
    ]);
    c.kubectl(&["rollout", "status", "deploy/web", "--timeout=60s"]);
    let ips = {
        let mut v: Vec<String> = c
            .kubectl(&[
                "get",
                "pods",
                "-l",
                "app=web",
                "-o",
                "jsonpath={.items[*].status.podIP}",
            ])
            .split_whitespace()
            .map(str::to_string)
            .collect();
        v.sort();
        v
    };
    assert_eq!(ips.len(), 3);

    // A ClusterIP Service gets an address from the service range.
    c.kubectl(&["expose", "deployment", "web", "--port=8080", "--target-port=80"]);
    let ip = c.kubectl(&["get", "svc", "web", "-o", "jsonpath={.spec.clusterIP}"]);
    assert!(ip.starts_with("10.43.") && ip != "10.43.0.1", "{ip}");
    let want: Vec<String> = ips.iter().map(|i| format!("{i}:80")).collect();
    let ep = c.eventually(30, "Endpoints", || {
        let out = c.kubectl(&["get", "ep", "web", "--no-headers"]);
        let mut got: Vec<String> = out.split_whitespace().nth(1)?.split(',').map(str::to_string).collect();
        got.sort();
        (got == want).then_some(out)
    });
    assert!(ep.starts_with("web "));
    let slice = c.kubectl(&["get", "endpointslices", "-l", "kubernetes.io/service-name=web", "-o", "jsonpath={.items[0].addressType} {.items[0].ports[0].port} {.items[0].endpoints[*].addresses[0]} {.items[0].metadata.ownerReferences[0].name}"]);
    assert_eq!(slice, format!("IPv4 80 {} web", ips.join(" ")));

    // A headless Service (seed 004's form) selecting the same pods.
    let headless = "apiVersion: v1\nkind: Service\nmetadata:\n  name: web-headless\nspec:\n  ports:\n    - port: 80\n      name: nginx-web\n  clusterIP: None\n  selector:\n    app: web\n";
    c.kubectl_in(&["apply", "-f", "-"], Some(headless));
    assert_eq!(
        c.kubectl(&["get", "svc", "web-headless", "-o", "jsonpath={.spec.clusterIP}"]),
        "None"
    );
    c.eventually(30, "headless Endpoints", || {
        let out = c.kubectl(&[
            "get",
            "ep",
            "web-headless",
            "-o",
            "jsonpath={.subsets[0].addresses[*].ip} {.metadata.labels}",
        ]);
        (out.starts_with(&ips.join(" ")) && out.contains("service.kubernetes.io/headless")).then_some(())
    });

    // Scaling down shrinks them; deleting the Service removes both.
    c.kubectl(&["scale", "deploy", "web", "--replicas=1"]);
    c.eventually(30, "one endpoint", || {
        let out = c.kubectl(&[
            "get",
            "endpointslices",
            "-l",
            "kubernetes.io/service-name=web",
            "-o",
            "jsonpath={.items[0].endpoints[*].addresses[0]}",
        ]);
        (out.split_whitespace().count() == 1).then_some(())
    });
    c.kubectl(&["delete", "svc", "web"]);
    c.eventually(30, "Endpoints and slices gone", || {
        let ep = c.kubectl_output(&["get", "ep", "web"], None);
        let slices = c.kubectl(&[
            "get",
            "endpointslices",
            "-l",
            "kubernetes.io/service-name=web",
            "-o",
            "name",
        ]);
        (!ep.status.success() && slices.trim().is_empty()).then_some(())
    });
}

/// Seed 003's StatefulSet as the tutorial prints it (with its `templates` typo).
const SAMPLE_STS: &str = "apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: sample-statefulset
spec:
  updateStrategy:
    type: OnDelete
  serviceName: sample-statefulset
  replicas: 3
  selector:
    matchLabels:
      app: sample-app
  templates:
    metadata:
      labels:
        app: sample-app
    spec:
      containers:
      - name: nginx-container
        image: nginx:1.16
        volumeMounts:
        - name: www
          mountPath: /usr/share/nginx/html
  volumeClaimTemplates:
  - metadata:
      name: www
    spec:
      accessModes:
      - ReadWriteOnce
      resources:
        requests:
          storage: 1G
";

fn claims(c: &Cluster) -> Vec<String> {
    let out = c.kubectl(&[
        "get",
        "pvc",
        "-o",
        "jsonpath={range .items[*]}{.metadata.name} {.status.phase} {.spec.storageClassName}{\"\\n\"}{end}",
    ]);
    let mut v: Vec<String> = out.lines().map(str::to_string).collect();
    v.sort();
    v
}

#[test]
fn seed_003_statefulset_with_claims() {
    let c = Cluster::up(3);
    // Verbatim, the typo is refused and names the field.
    let err = c.kubectl_err(&["apply", "-f", "-"], Some(SAMPLE_STS));
    assert!(err.contains("unknown field \"spec.templates\""), "{err}");
    assert!(c.kubectl(&["get", "sts", "-o", "name"]).is_empty(), "nothing created");

    // Corrected: pods -0, -1, -2 in order, each with a Bound claim.
    let mut watch = c
        .kubectl_cmd(&["get", "pods", "--watch-only", "-o", "name"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("kubectl watch");
    std::thread::sleep(std::time::Duration::from_millis(500));
    let fixed = SAMPLE_STS.replace("  templates:", "  template:");
    c.kubectl_in(&["apply", "-f", "-"], Some(&fixed));
    c.eventually(30, "3 ready", || {
        (c.kubectl(&[
            "get",
            "sts",
            "sample-statefulset",
            "-o",
            "jsonpath={.status.readyReplicas}",
        ]) == "3")
            .then_some(())
    });
    std::thread::sleep(std::time::Duration::from_millis(300));
    let _ = watch.kill();
    let order = {
        use std::io::Read;
        let mut s = String::new();
        watch
            .stdout
            .take()
            .expect("stdout")
            .read_to_string(&mut s)
            .expect("read");
        let _ = watch.wait();
        s
    };
    let mut first_seen: Vec<&str> = Vec::new();
    for l in order.lines() {
        if !first_seen.contains(&l) {
            first_seen.push(l);
        }
    }
    assert_eq!(
        first_seen,
        [
            "pod/sample-statefulset-0",
            "pod/sample-statefulset-1",
            "pod/sample-statefulset-2"
        ],
        "{order}"
    );
    let claims_now = c.eventually(30, "3 Bound claims", || {
        let v = claims(&c);
        (v.len() == 3 && v.iter().all(|l| l.ends_with(" Bound local-path"))).then_some(v)
    });
    assert_eq!(claims_now[0], "www-sample-statefulset-0 Bound local-path");
    // One revision for one template: pod 0 (made before the first status write) carries
    // the same as its siblings, and the set's current revision is its update revision.
    let revisions = c.kubectl(&["get", "controllerrevisions", "-o", "name"]);
    assert_eq!(revisions.lines().count(), 1, "{revisions}");
    let status = c.kubectl(&[
        "get",
        "sts",
        "sample-statefulset",
        "-o",
        "jsonpath={.status.currentRevision} {.status.updateRevision}",
    ]);
    let (current, update) = status.split_once(' ').expect("two revisions");
    assert_eq!(current, update);
    let labels = c.kubectl(&[
        "get",
        "pods",
        "-l",
        "app=sample-app",
        "-o",
        "jsonpath={.items[*].metadata.labels.controller-revision-hash}",
    ]);
    assert_eq!(labels, [update; 3].join(" "));
    let pod = c.kubectl(&["get", "pod", "sample-statefulset-1", "-o", "jsonpath={.spec.hostname} {.spec.subdomain} {.spec.volumes[?(@.name==\"www\")].persistentVolumeClaim.claimName}"]);
    assert_eq!(pod, "sample-statefulset-1 sample-statefulset www-sample-statefulset-1");
    let pv = c.kubectl(&["get", "pv", "-o", "jsonpath={.items[*].spec.storageClassName}"]);
    assert_eq!(pv, "local-path local-path local-path");

    // Scale to 5, then back to 2: the highest ordinals go, the claims stay.
    c.kubectl(&["scale", "sts", "sample-statefulset", "--replicas=5"]);
    c.eventually(30, "5 ready", || {
        (c.kubectl(&[
            "get",
            "sts",
            "sample-statefulset",
            "-o",
            "jsonpath={.status.readyReplicas}",
        ]) == "5")
            .then_some(())
    });
    assert_eq!(claims(&c).len(), 5);
    c.kubectl(&["scale", "sts", "sample-statefulset", "--replicas=2"]);
    c.eventually(30, "2 pods", || {
        let pods = live(&c, "app=sample-app");
        (pods == ["sample-statefulset-0", "sample-statefulset-1"]).then_some(())
    });
    assert_eq!(claims(&c).len(), 5, "claims outlive their pods");
    // (As upstream's, READY counts a pod being deleted while it is still Ready, so it reads
    // 2/2 once the scaled-down pods are gone.)
    c.eventually(30, "READY 2/2", || {
        let cols: Vec<String> = c
            .kubectl(&["get", "sts", "sample-statefulset", "--no-headers"])
            .split_whitespace()
            .take(2)
            .map(str::to_string)
            .collect();
        (cols == ["sample-statefulset", "2/2"]).then_some(())
    });
}

/// `kubectl delete pod` of a StatefulSet's pods returns. kubectl's wait gets the pod, then
/// lists and watches it by name; a pod removed in the same instant as its DELETE let the
/// StatefulSet's replacement (same name, new uid) appear in between, and kubectl waited for a
/// deletion it had missed (6 of 10 tries hung). Simulated pods now take half a second to a
/// second to stop, as a kubelet's do, and show `Terminating` meanwhile.
#[test]
fn deleting_statefulset_pods_with_kubectl_returns() {
    let c = Cluster::up(3);
    c.kubectl_in(
        &["apply", "-f", "-"],
        Some(
            "apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {name: db}\nspec:\n  serviceName: db\n  replicas: 2\n\
             \x20 selector: {matchLabels: {app: db}}\n  template:\n    metadata: {labels: {app: db}}\n\
             \x20   spec: {containers: [{name: c, image: nginx}]}\n",
        ),
    );
    c.kubectl(&["rollout", "status", "sts/db", "--timeout=60s"]);
    let uid = |pod: &str| c.kubectl(&["get", "pod", pod, "-o", "jsonpath={.metadata.uid}"]);
    // A deleted pod is Terminating for a moment, with its own uid.
    let before = uid("db-0");
    c.kubectl(&["delete", "pod", "db-0", "--wait=false"]);
    let seen = c.kubectl(&[
        "get",
        "pod",
        "db-0",
        "-o",
        "jsonpath={.metadata.uid} {.metadata.deletionTimestamp}",
    ]);
    let (seen_uid, deleting) = seen.split_once(' ').unwrap_or((&seen, ""));
    assert_eq!(seen_uid, before, "the deleted pod is still there: {seen}");
    assert!(!deleting.is_empty(), "and Terminating: {seen}");
    c.eventually(30, "db-0 replaced", || {
        let now = c.kubectl_output(&["get", "pod", "db-0", "-o", "jsonpath={.metadata.uid}"], None);
        let now = String::from_utf8_lossy(&now.stdout).into_owned();
        (!now.is_empty() && now != before).then_some(())
    });
    // Deleting both with kubectl's wait returns once both are gone.
    c.kubectl(&["rollout", "status", "sts/db", "--timeout=60s"]);
    let uids = c.kubectl(&["get", "pods", "-l", "app=db", "-o", "jsonpath={.items[*].metadata.uid}"]);
    let started = std::time::Instant::now();
    let out = c.kubectl(&["delete", "pod", "db-1", "db-0", "--timeout=30s"]);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    assert!(
        out.contains("pod \"db-0\" deleted") && out.contains("pod \"db-1\" deleted"),
        "{out}"
    );
    c.eventually(30, "both pods replaced", || {
        let now = c.kubectl(&["get", "pods", "-l", "app=db", "-o", "jsonpath={.items[*].metadata.uid}"]);
        (now.split_whitespace().count() == 2 && now.split_whitespace().all(|u| !uids.contains(u))).then_some(())
    });
}

#[test]
fn seed_004_statefulset_behind_a_headless_service() {
    let c = Cluster::up(3);
    // Seed 004's manifests, with the Service selecting the pods' label.
    let manifests = "apiVersion: v1
kind: Service
metadata:
  name: statefulset-nginx-service
  labels:
    app: statefulset-nginx-service
spec:
  ports:
    - port: 80
      name: nginx-web
  clusterIP: None
  selector:
    app: statefulset-nginx
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: nginx-web
spec:
  selector:
    matchLabels:
      app: statefulset-nginx
  serviceName: \"statefulset-nginx-service\"
  replicas: 3
  template:
    metadata:
      labels:
        app: statefulset-nginx
    spec:
      terminationGracePeriodSeconds: 10
      containers:
        - name: statefulset-nginx
          image: nginx:latest
          ports:
            - containerPort: 80
              name: nginx-web
";
    c.kubectl_in(&["apply", "-f", "-"], Some(manifests));
    c.kubectl(&["rollout", "status", "sts/nginx-web", "--timeout=60s"]);
    let ips: Vec<String> = (0..3)
        .map(|i| {
            c.kubectl(&[
                "get",
                "pod",
                &format!("nginx-web-{i}"),
                "-o",
                "jsonpath={.status.podIP}",
            ])
        })
        .collect();
    let ep = c.eventually(30, "3 addresses", || {
        let out = c.kubectl(&[
            "get",
            "ep",
            "statefulset-nginx-service",
            "-o",
            "jsonpath={range .subsets[0].addresses[*]}{.hostname}={.ip} {end}",
        ]);
        (out.split_whitespace().count() == 3).then_some(out)
    });
    for (i, ip) in ips.iter().enumerate() {
        assert!(ep.contains(&format!("nginx-web-{i}={ip}")), "{ep}");
    }
    let slice = c.kubectl(&[
        "get",
        "endpointslices",
        "-l",
        "kubernetes.io/service-name=statefulset-nginx-service",
        "-o",
        "jsonpath={.items[0].endpoints[*].hostname}",
    ]);
    assert_eq!(slice, "nginx-web-0 nginx-web-1 nginx-web-2");

    // The built-in DNS answers a real resolver.
    let dns = c
        .ready_line
        .split("DNS at ")
        .nth(1)
        .and_then(|r| r.split([',', ' ']).next())
        .expect("the ready line names the DNS address")
        .to_string();
    let (host, port) = dns.rsplit_once(':').expect("ip:port");
    let dig = |args: &[&str]| -> String {
        let out = std::process::Command::new("dig")
            .args([&format!("@{host}"), "-p", port, "+short", "+time=2", "+tries=2"])
            .args(args)
            .output()
            .expect("dig (Debian's dnsutils) on PATH");
        assert!(
            out.status.success(),
            "dig {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect();
        lines.sort();
        lines.join(" ")
    };
    let mut sorted_ips = ips.clone();
    sorted_ips.sort();
    assert_eq!(
        dig(&["statefulset-nginx-service.default.svc.cluster.local"]),
        sorted_ips.join(" ")
    );
    assert_eq!(
        dig(&["nginx-web-1.statefulset-nginx-service.default.svc.cluster.local"]),
        ips[1]
    );
    let srv = dig(&[
        "SRV",
        "_nginx-web._tcp.statefulset-nginx-service.default.svc.cluster.local",
    ]);
    assert!(
        srv.contains("80 nginx-web-0.statefulset-nginx-service.default.svc.cluster.local."),
        "{srv}"
    );
    assert_eq!(dig(&["kubernetes.default.svc.cluster.local"]), "10.43.0.1");
    let status = |name: &str| {
        let out = std::process::Command::new("dig")
            .args([&format!("@{host}"), "-p", port, "+time=2", "+tries=1", name])
            .output()
            .expect("dig");
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        text.split("status: ")
            .nth(1)
            .and_then(|r| r.split(',').next())
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(status("nope.default.svc.cluster.local"), "NXDOMAIN");
    assert_eq!(status("example.com"), "REFUSED");

    // A RollingUpdate replaces the pods from the highest ordinal down.
    c.kubectl(&["set", "image", "sts/nginx-web", "statefulset-nginx=nginx:1.27"]);
    let done = c.kubectl(&["rollout", "status", "sts/nginx-web", "--timeout=60s"]);
    assert!(
        done.contains("partitioned roll out complete") || done.contains("rolling update complete"),
        "{done}"
    );
    let images = c.kubectl(&[
        "get",
        "pods",
        "-l",
        "app=statefulset-nginx",
        "-o",
        "jsonpath={.items[*].spec.containers[0].image}",
    ]);
    assert_eq!(images, "nginx:1.27 nginx:1.27 nginx:1.27");
    let revisions = c.kubectl(&[
        "get",
        "sts",
        "nginx-web",
        "-o",
        "jsonpath={.status.currentRevision}={.status.updateRevision} {.status.updatedReplicas}",
    ]);
    let (cur, rest) = revisions.split_once('=').expect("revisions");
    assert!(rest.starts_with(cur) && rest.ends_with(" 3"), "{revisions}");
}

#[test]
fn jobs_complete_or_fail_as_upstream() {
    let c = Cluster::up(2);
    let job = "apiVersion: batch/v1
kind: Job
metadata: {name: many}
spec:
  completions: 4
  parallelism: 2
  template:
    metadata:
      annotations: {shoal.dev/run-seconds: \"1\"}
    spec:
      restartPolicy: Never
      containers: [{name: c, image: busybox, command: [sh, -c, \"true\"]}]
";
    c.kubectl_in(&["apply", "-f", "-"], Some(job));
    // Never more than 2 at a time.
    let mut peak = 0;
    c.eventually(60, "complete", || {
        let running = c.kubectl(&["get", "job", "many", "-o", "jsonpath={.status.active}"]);
        peak = peak.max(running.parse::<i64>().unwrap_or(0));
        let done = c.kubectl(&[
            "get",
            "job",
            "many",
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Complete\")].status}",
        ]);
        (done == "True").then_some(())
    });
    assert!(peak <= 2, "parallelism 2, saw {peak}");
    let cols: Vec<String> = c
        .kubectl(&["get", "job", "many", "--no-headers"])
        .split_whitespace()
        .take(3)
        .map(str::to_string)
        .collect();
    assert_eq!(cols, ["many", "Complete", "4/4"]);
    assert_eq!(
        c.kubectl(&["get", "pods", "-l", "job-name=many", "-o", "name"])
            .lines()
            .count(),
        4
    );
    assert!(
        c.kubectl(&["wait", "--for=condition=complete", "job/many", "--timeout=5s"])
            .contains("condition met")
    );

    // An Indexed Job runs each index once.
    let indexed = "apiVersion: batch/v1
kind: Job
metadata: {name: idx}
spec:
  completionMode: Indexed
  completions: 3
  parallelism: 2
  template:
    spec:
      restartPolicy: Never
      containers: [{name: c, image: busybox, command: [sh, -c, \"echo $JOB_COMPLETION_INDEX\"]}]
";
    c.kubectl_in(&["apply", "-f", "-"], Some(indexed));
    c.eventually(60, "indexed complete", || {
        let out = c.kubectl(&["get", "job", "idx", "-o", "jsonpath={.status.completedIndexes} {.status.succeeded} {.status.conditions[?(@.type==\"Complete\")].status}"]);
        (out == "0-2 3 True").then_some(())
    });
    let mut indexes: Vec<String> = c
        .kubectl(&[
            "get",
            "pods",
            "-l",
            "job-name=idx",
            "-o",
            "jsonpath={.items[*].metadata.labels.batch\\.kubernetes\\.io/job-completion-index}",
        ])
        .split_whitespace()
        .map(str::to_string)
        .collect();
    indexes.sort();
    assert_eq!(indexes, ["0", "1", "2"]);

    // Failing pods: past backoffLimit the Job fails.
    let failing = "apiVersion: batch/v1
kind: Job
metadata: {name: broken}
spec:
  backoffLimit: 1
  template:
    metadata:
      annotations: {shoal.dev/exit-code: \"3\"}
    spec:
      restartPolicy: Never
      containers: [{name: c, image: busybox, command: [sh, -c, \"exit 3\"]}]
";
    c.kubectl_in(&["apply", "-f", "-"], Some(failing));
    // After the first failure the next pod waits (10 s back-off).
    c.eventually(30, "first failure", || {
        (c.kubectl(&["get", "job", "broken", "-o", "jsonpath={.status.failed}"]) == "1").then_some(())
    });
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert_eq!(
        c.kubectl(&["get", "pods", "-l", "job-name=broken", "-o", "name"])
            .lines()
            .count(),
        1,
        "no retry before the back-off"
    );
    c.eventually(60, "failed", || {
        let out = c.kubectl(&[
            "get",
            "job",
            "broken",
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Failed\")].reason} {.status.failed}",
        ]);
        (out == "BackoffLimitExceeded 2").then_some(())
    });
    assert!(c.kubectl(&["get", "job", "broken", "--no-headers"]).contains("Failed"));
    // Deleting the Job deletes its pods.
    c.kubectl(&["delete", "job", "many"]);
    c.eventually(30, "pods gone", || {
        c.kubectl(&["get", "pods", "-l", "job-name=many", "-o", "name"])
            .is_empty()
            .then_some(())
    });
}

#[test]
fn scaling_a_deployment_mid_rollout_is_proportional() {
    let c = Cluster::up(2);
    // minReadySeconds keeps the new pods unavailable, so the rollout holds after one surge.
    let d = ECHO_DEPLOY
        .replace("  replicas: 4\n", "  replicas: 4\n  minReadySeconds: 300\n")
        .replace("echo:v2", "echo:v1");
    c.kubectl_in(&["apply", "-f", "-"], Some(&d));
    c.eventually(60, "4 v1 pods", || {
        (c.kubectl(&["get", "deploy", "echo-deploy", "-o", "jsonpath={.status.replicas}"]) == "4").then_some(())
    });
    // The rollout surges one v2 pod, which stays unavailable: old 4, new 1.
    c.kubectl(&["set", "image", "deploy/echo-deploy", "echo=ghcr.io/subicura/echo:v2"]);
    c.eventually(30, "the surge", || {
        let rs = images_of_rs(&c);
        (rs.len() == 2 && rs.iter().any(|r| r.1 == "1" && r.2.ends_with(":v2"))).then_some(())
    });
    c.kubectl(&["scale", "deploy", "echo-deploy", "--replicas=8"]);
    // Allowed 8 + 1 surge = 9 over 4 old and 1 new, in proportion: 7 and 2.
    c.eventually(30, "proportional sizes", || {
        let rs = images_of_rs(&c);
        let sizes: Vec<(String, String)> = rs.iter().map(|r| (r.1.clone(), r.2.clone())).collect();
        (sizes.contains(&("7".into(), "ghcr.io/subicura/echo:v1".into()))
            && sizes.contains(&("2".into(), "ghcr.io/subicura/echo:v2".into())))
        .then_some(())
    });
}

#[test]
fn a_cronjob_starts_a_job_each_minute() {
    let c = Cluster::up(1);
    let cj = "apiVersion: batch/v1
kind: CronJob
metadata: {name: hello}
spec:
  schedule: \"* * * * *\"
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: OnFailure
          containers: [{name: hello, image: busybox, command: [sh, -c, \"date\"]}]
";
    c.kubectl_in(&["apply", "-f", "-"], Some(cj));
    // It runs within the minute.
    let job = c.eventually(75, "a Job from the CronJob", || {
        let out = c.kubectl(&["get", "jobs", "-o", "jsonpath={.items[*].metadata.name}"]);
        out.split_whitespace()
            .find(|n| n.starts_with("hello-"))
            .map(str::to_string)
    });
    let minutes: i64 = job
        .trim_start_matches("hello-")
        .parse()
        .expect("minutes since the epoch");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
        / 60;
    assert!((now - minutes).abs() <= 1, "{job} scheduled for this minute");
    let owner = c.kubectl(&[
        "get",
        "job",
        &job,
        "-o",
        "jsonpath={.metadata.ownerReferences[0].kind}/{.metadata.ownerReferences[0].name}",
    ]);
    assert_eq!(owner, "CronJob/hello");
    c.eventually(30, "the Job completes and the CronJob records it", || {
        let out = c.kubectl(&[
            "get",
            "cronjob",
            "hello",
            "-o",
            "jsonpath={.status.lastScheduleTime} {.status.lastSuccessfulTime}",
        ]);
        (out.split_whitespace().count() == 2).then_some(())
    });
    let cols: Vec<String> = c
        .kubectl(&["get", "cronjob", "hello", "--no-headers"])
        .split_whitespace()
        .take(2)
        .map(str::to_string)
        .collect();
    assert_eq!(cols[0], "hello");
}

#[test]
fn services_take_their_addresses_from_the_service_cidr_flag() {
    let c = Cluster::up_with(1, &["--service-cidr", "10.96.0.0/16"]);
    assert_eq!(
        c.kubectl(&["get", "svc", "kubernetes", "-o", "jsonpath={.spec.clusterIP}"]),
        "10.96.0.1"
    );
    c.kubectl(&["create", "service", "clusterip", "web", "--tcp=80:8080"]);
    let ip = c.kubectl(&["get", "svc", "web", "-o", "jsonpath={.spec.clusterIP}"]);
    assert!(ip.starts_with("10.96.") && ip != "10.96.0.1", "{ip}");
    let outside = "apiVersion: v1\nkind: Service\nmetadata: {name: fixed}\nspec:\n  clusterIP: 10.43.0.20\n  ports: [{port: 80}]\n";
    let err = c.kubectl_err(&["apply", "-f", "-"], Some(outside));
    assert!(err.contains("The range of valid IPs is 10.96.0.0/16"), "{err}");
}

/// Status writes as upstream's strategies make them. Follows test/e2e/apps/job.go ("should
/// apply changes to a job status": an annotation patched through `jobs/status` stays, the
/// spec in the same patch does not) and test/e2e/common/node/pods.go's status replace: a
/// `PUT pods/NAME/status` whose resourceVersion is empty is unconditional (not a 400), one
/// with a stale resourceVersion is a conflict.
#[test]
fn status_writes_keep_what_upstreams_strategies_keep() {
    let c = Cluster::up(1);
    c.kubectl_in(
        &["apply", "-f", "-"],
        Some("apiVersion: batch/v1\nkind: Job\nmetadata: {name: j}\nspec:\n  suspend: true\n  parallelism: 1\n  template:\n    spec:\n      restartPolicy: Never\n      containers: [{name: c, image: busybox}]\n"),
    );
    c.kubectl(&[
        "patch",
        "job",
        "j",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"metadata":{"annotations":{"patchedstatus":"true"}},"spec":{"parallelism":5}}"#,
    ]);
    let job: serde_json::Value = serde_json::from_str(&c.kubectl(&["get", "job", "j", "-o", "json"])).expect("JSON");
    assert_eq!(job["metadata"]["annotations"]["patchedstatus"], "true", "{job}");
    assert_eq!(job["spec"]["parallelism"], 1, "the spec is not the status's to change");
    assert_eq!(job["metadata"]["generation"], 1);
    // A Deployment's status write keeps the stored metadata (upstream resets it there).
    c.kubectl(&["create", "deployment", "d", "--image=nginx"]);
    c.kubectl(&[
        "patch",
        "deployment",
        "d",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"metadata":{"labels":{"sneaked":"in"}}}"#,
    ]);
    assert_eq!(
        c.kubectl(&["get", "deployment", "d", "-o", "jsonpath={.metadata.labels.sneaked}"]),
        ""
    );

    c.kubectl(&["run", "web", "--image=nginx"]);
    c.eventually(30, "web running", || {
        (c.kubectl(&["get", "pod", "web", "-o", "jsonpath={.status.phase}"]) == "Running").then_some(())
    });
    let mut pod: serde_json::Value =
        serde_json::from_str(&c.kubectl(&["get", "pod", "web", "-o", "json"])).expect("JSON");
    let path = "/api/v1/namespaces/default/pods/web/status";
    pod["metadata"]["resourceVersion"] = "1".into();
    let err = c.kubectl_err(&["replace", "--raw", path, "-f", "-"], Some(&pod.to_string()));
    assert!(err.contains("the object has been modified"), "{err}");
    pod["metadata"]["resourceVersion"] = "".into();
    pod["status"]["conditions"]
        .as_array_mut()
        .expect("conditions")
        .push(serde_json::json!({"type": "example.com/checked", "status": "True"}));
    c.kubectl_in(&["replace", "--raw", path, "-f", "-"], Some(&pod.to_string()));
    let types = c.kubectl(&["get", "pod", "web", "-o", "jsonpath={.status.conditions[*].type}"]);
    assert!(types.contains("example.com/checked"), "{types}");
}

/// Follows test/e2e/apps/statefulset.go ("MinReadySeconds should be honored when
/// enabled"): a pod Ready for less than minReadySeconds is not available, and OrderedReady
/// start-up waits for availability before the next ordinal.
#[test]
fn statefulset_min_ready_seconds_holds_availability_and_ordered_start() {
    let c = Cluster::up(2);
    c.kubectl_in(
        &["apply", "-f", "-"],
        Some("apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {name: slow}\nspec:\n  serviceName: slow\n  replicas: 2\n  minReadySeconds: 3\n  selector: {matchLabels: {app: slow}}\n  template:\n    metadata: {labels: {app: slow}}\n    spec:\n      containers: [{name: c, image: nginx}]\n"),
    );
    let status = |c: &Cluster| -> serde_json::Value {
        serde_json::from_str(&c.kubectl(&["get", "sts", "slow", "-o", "jsonpath={.status}"])).unwrap_or_default()
    };
    let early = c.eventually(30, "slow-0 Ready", || {
        let s = status(&c);
        (s["readyReplicas"] == 1).then_some(s)
    });
    assert_eq!(
        early["availableReplicas"].as_i64().unwrap_or(0),
        0,
        "Ready is not yet available: {early}"
    );
    let names = c.kubectl(&[
        "get",
        "pods",
        "-l",
        "app=slow",
        "-o",
        "jsonpath={.items[*].metadata.name}",
    ]);
    assert_eq!(names.trim(), "slow-0", "slow-1 waits for slow-0 to be available");
    c.eventually(60, "both available", || {
        (status(&c)["availableReplicas"] == 2).then_some(())
    });
    let ready_at = c.kubectl(&[
        "get",
        "pod",
        "slow-0",
        "-o",
        r#"jsonpath={.status.conditions[?(@.type=="Ready")].lastTransitionTime}"#,
    ]);
    let created = c.kubectl(&["get", "pod", "slow-1", "-o", "jsonpath={.metadata.creationTimestamp}"]);
    let secs = |t: &str| t.trim().parse::<jiff::Timestamp>().expect("a timestamp").as_second();
    assert!(
        secs(&created) - secs(&ready_at) >= 2,
        "slow-1 created at {created}, slow-0 Ready at {ready_at}: minReadySeconds 3 apart (second resolution)"
    );
}

/// Follows test/e2e/apps/ttl_after_finished.go ("job should be deleted once it finishes
/// after TTL seconds") and test/e2e/apps/job.go ("should allow to delegate reconciliation
/// to external controller"): a finished Job goes with its pods once its TTL has passed, and
/// a Job whose `managedBy` names another controller gets no pods and no status from ours.
#[test]
fn finished_jobs_go_after_their_ttl_and_delegated_jobs_are_left_alone() {
    let c = Cluster::up(1);
    c.kubectl_in(
        &["apply", "-f", "-"],
        Some("apiVersion: batch/v1\nkind: Job\nmetadata: {name: brief}\nspec:\n  ttlSecondsAfterFinished: 2\n  template:\n    spec:\n      restartPolicy: Never\n      containers: [{name: c, image: busybox}]\n---\napiVersion: batch/v1\nkind: Job\nmetadata: {name: elsewhere}\nspec:\n  managedBy: example.com/other-controller\n  template:\n    spec:\n      restartPolicy: Never\n      containers: [{name: c, image: busybox}]\n"),
    );
    c.eventually(30, "brief complete", || {
        let t = c.kubectl(&[
            "get",
            "job",
            "brief",
            "-o",
            r#"jsonpath={.status.conditions[?(@.type=="Complete")].status}"#,
        ]);
        (t == "True").then_some(())
    });
    let finished = std::time::Instant::now();
    c.eventually(30, "brief deleted after its TTL", || {
        let out = c.kubectl_output(&["get", "job", "brief"], None);
        (!out.status.success()).then_some(())
    });
    assert!(
        finished.elapsed() >= std::time::Duration::from_secs(1),
        "not before its TTL"
    );
    c.eventually(30, "brief's pods deleted with it", || {
        c.kubectl(&["get", "pods", "-l", "job-name=brief", "-o", "name"])
            .trim()
            .is_empty()
            .then_some(())
    });
    // The delegated Job: nothing from the built-in controller, however long we look.
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert_eq!(
        c.kubectl(&["get", "pods", "-l", "job-name=elsewhere", "-o", "name"])
            .trim(),
        ""
    );
    let status = c.kubectl(&["get", "job", "elsewhere", "-o", "jsonpath={.status}"]);
    assert!(status == "{}" || status.is_empty(), "{status}");
}

/// Follows test/e2e/apps/job.go ("should adopt matching orphans and release non-matching
/// pods"): an orphaned pod that still matches is adopted again (not replaced by an extra
/// pod), and a pod whose labels stop matching is let go.
#[test]
fn a_job_adopts_matching_orphans_and_releases_the_rest() {
    let c = Cluster::up(1);
    c.kubectl_in(
        &["apply", "-f", "-"],
        Some("apiVersion: batch/v1\nkind: Job\nmetadata: {name: adopt}\nspec:\n  parallelism: 2\n  completions: 2\n  template:\n    metadata:\n      annotations: {shoal.dev/run-seconds: \"120\"}\n    spec:\n      restartPolicy: Never\n      containers: [{name: c, image: busybox}]\n"),
    );
    let uid = c.kubectl(&["get", "job", "adopt", "-o", "jsonpath={.metadata.uid}"]);
    let pods = |c: &Cluster| -> Vec<String> {
        c.kubectl(&[
            "get",
            "pods",
            "-l",
            "job-name=adopt",
            "-o",
            "jsonpath={.items[*].metadata.name}",
        ])
        .split_whitespace()
        .map(str::to_string)
        .collect()
    };
    let names = c.eventually(30, "two pods", || {
        let p = pods(&c);
        (p.len() == 2).then_some(p)
    });
    let owner =
        |c: &Cluster, pod: &str| c.kubectl(&["get", "pod", pod, "-o", "jsonpath={.metadata.ownerReferences[0].uid}"]);
    c.kubectl(&[
        "patch",
        "pod",
        &names[0],
        "--type=json",
        "-p",
        r#"[{"op":"remove","path":"/metadata/ownerReferences"}]"#,
    ]);
    c.eventually(30, "the orphan adopted again", || {
        (owner(&c, &names[0]) == uid).then_some(())
    });
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert_eq!(pods(&c).len(), 2, "no extra pod for the orphan");

    c.kubectl(&[
        "label",
        "pod",
        &names[1],
        "batch.kubernetes.io/controller-uid-",
        "controller-uid-",
    ]);
    c.eventually(30, "the relabelled pod let go", || {
        owner(&c, &names[1]).is_empty().then_some(())
    });
    c.eventually(30, "a replacement for it", || (pods(&c).len() == 3).then_some(()));
}

/// Follows test/e2e/apps/job.go ("should allow to use the pod failure policy on exit code
/// to fail the job early" and "... to not count the failure towards the backoffLimit"), on
/// simulated nodes with pods that exit with chosen codes (`shoal.dev/exit-code`).
#[test]
fn pod_failure_policies_fail_early_or_ignore_as_upstream() {
    let c = Cluster::up(1);
    let job = |name: &str, code: u32, rules: &str| {
        format!(
            "apiVersion: batch/v1\nkind: Job\nmetadata: {{name: {name}}}\nspec:\n  backoffLimit: 6\n  podFailurePolicy:\n    rules: {rules}\n  template:\n    metadata:\n      annotations: {{shoal.dev/exit-code: \"{code}\"}}\n    spec:\n      restartPolicy: Never\n      containers: [{{name: main, image: busybox}}]\n"
        )
    };
    c.kubectl_in(
        &["apply", "-f", "-"],
        Some(&job(
            "early",
            42,
            r#"[{action: FailJob, onExitCodes: {containerName: main, operator: In, values: [42]}}]"#,
        )),
    );
    let failed = c.eventually(60, "early failed by its policy", || {
        let j: serde_json::Value = serde_json::from_str(&c.kubectl(&["get", "job", "early", "-o", "json"])).ok()?;
        let cond = j["status"]["conditions"]
            .as_array()?
            .iter()
            .find(|x| x["type"] == "Failed" && x["status"] == "True")?
            .clone();
        Some((j, cond))
    });
    let (j, cond) = failed;
    assert_eq!(cond["reason"], "PodFailurePolicy");
    let message = cond["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with("Container main for pod default/early-")
            && message.ends_with(" failed with exit code 42 matching FailJob rule at index 0"),
        "{message}"
    );
    assert_eq!(j["status"]["failed"], 1, "one pod, not backoffLimit + 1");

    // backoffLimit 0 and every failure ignored: the Job goes on, counting none of them.
    c.kubectl_in(
        &["apply", "-f", "-"],
        Some(
            &job(
                "patient",
                3,
                r#"[{action: Ignore, onExitCodes: {operator: In, values: [3]}}]"#,
            )
            .replace("backoffLimit: 6", "backoffLimit: 0"),
        ),
    );
    c.eventually(60, "a second pod after an ignored failure", || {
        let n = c
            .kubectl(&["get", "pods", "-l", "job-name=patient", "-o", "name"])
            .lines()
            .count();
        (n >= 2).then_some(())
    });
    let j: serde_json::Value =
        serde_json::from_str(&c.kubectl(&["get", "job", "patient", "-o", "json"])).expect("JSON");
    assert_eq!(j["status"]["failed"].as_i64().unwrap_or(0), 0, "{j}");
    assert!(
        !j["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|x| x["type"] == "Failed"),
        "{j}"
    );
}

/// Follows test/e2e/apps/job.go ("with successPolicy should succeeded with
/// succeededCount"): an Indexed Job whose policy is met completes with reason
/// SuccessPolicy, before its other indexes run.
#[test]
fn an_indexed_job_completes_by_its_success_policy() {
    let c = Cluster::up(1);
    c.kubectl_in(
        &["apply", "-f", "-"],
        Some("apiVersion: batch/v1\nkind: Job\nmetadata: {name: enough}\nspec:\n  completionMode: Indexed\n  completions: 3\n  parallelism: 1\n  successPolicy:\n    rules: [{succeededCount: 1}]\n  template:\n    spec:\n      restartPolicy: Never\n      containers: [{name: c, image: busybox}]\n"),
    );
    let j = c.eventually(60, "enough complete", || {
        let j: serde_json::Value = serde_json::from_str(&c.kubectl(&["get", "job", "enough", "-o", "json"])).ok()?;
        j["status"]["conditions"]
            .as_array()?
            .iter()
            .any(|x| x["type"] == "Complete" && x["status"] == "True")
            .then_some(j)
    });
    let conditions = j["status"]["conditions"].as_array().expect("conditions");
    for kind in ["SuccessCriteriaMet", "Complete"] {
        let cond = conditions.iter().find(|x| x["type"] == kind).expect("the condition");
        assert_eq!(
            (&cond["reason"], &cond["message"]),
            (&"SuccessPolicy".into(), &"Matched rules at index 0".into()),
            "{kind}"
        );
    }
    assert_eq!(j["status"]["completedIndexes"], "0");
    assert_eq!(j["status"]["succeeded"], 1);
}

/// Follows test/e2e/apps/job.go's four tests of `backoffLimitPerIndex`: "should execute all
/// indexes despite some failing when using backoffLimitPerIndex", "should terminate job
/// execution when the number of failed indexes exceeds maxFailedIndexes", "should mark
/// indexes as failed when the FailIndex action is matched in podFailurePolicy" and "should
/// record the failure-count in the Pod annotation when using backoffLimitPerIndex", on
/// simulated nodes whose pods exit by index (`shoal.dev/exit-code: "0,1"` fails the odd
/// indexes, as upstream's `failOddSucceedEven`).
#[test]
fn indexed_jobs_retry_and_fail_each_index_on_its_own() {
    let c = Cluster::up(1);
    let job = |name: &str, parallelism: u32, completions: u32, codes: &str, extra: &str| {
        format!(
            "apiVersion: batch/v1\nkind: Job\nmetadata: {{name: {name}}}\nspec:\n  completionMode: Indexed\n  parallelism: {parallelism}\n  completions: {completions}\n{extra}  template:\n    metadata:\n      annotations: {{shoal.dev/exit-code: \"{codes}\"}}\n    spec:\n      restartPolicy: Never\n      containers: [{{name: c, image: busybox}}]\n"
        )
    };
    let failed = |name: &str| {
        c.eventually(120, &format!("{name} failed"), || {
            let j: serde_json::Value = serde_json::from_str(&c.kubectl(&["get", "job", name, "-o", "json"])).ok()?;
            let conditions = j["status"]["conditions"].as_array()?.clone();
            let reason_of = |kind: &str| {
                conditions
                    .iter()
                    .find(|x| x["type"] == kind && x["status"] == "True")
                    .map(|x| x["reason"].as_str().unwrap_or_default().to_string())
            };
            let reason = reason_of("Failed")?;
            assert_eq!(reason_of("FailureTarget").as_deref(), Some(reason.as_str()), "{j}");
            Some((reason, j["status"].clone()))
        })
    };
    let summary = |s: &serde_json::Value| {
        (
            s["failedIndexes"].as_str().unwrap_or("-").to_string(),
            s["completedIndexes"].as_str().unwrap_or("").to_string(),
            s["failed"].as_i64().unwrap_or(0),
            s["succeeded"].as_i64().unwrap_or(0),
        )
    };
    let per_index = "  backoffLimitPerIndex: 1\n";
    c.kubectl_in(&["apply", "-f", "-"], Some(&job("some-fail", 2, 4, "0,1", per_index)));
    c.kubectl_in(
        &["apply", "-f", "-"],
        Some(&job(
            "too-many",
            1,
            4,
            "1",
            "  backoffLimitPerIndex: 0\n  maxFailedIndexes: 0\n",
        )),
    );
    c.kubectl_in(
        &["apply", "-f", "-"],
        Some(&job(
            "fail-index",
            2,
            2,
            "0,1",
            "  backoffLimitPerIndex: 1\n  podFailurePolicy:\n    rules: [{action: FailIndex, onExitCodes: {operator: In, values: [1]}}]\n",
        )),
    );
    c.kubectl_in(&["apply", "-f", "-"], Some(&job("counted", 2, 2, "1", per_index)));

    let (reason, s) = failed("some-fail");
    assert_eq!(reason, "FailedIndexes");
    assert_eq!(summary(&s), ("1,3".into(), "0,2".into(), 4, 2));
    let (reason, s) = failed("too-many");
    assert_eq!(reason, "MaxFailedIndexesExceeded");
    assert_eq!(summary(&s), ("0".into(), "".into(), 1, 0), "only index 0 ran");
    let (reason, s) = failed("fail-index");
    assert_eq!(reason, "FailedIndexes");
    assert_eq!(summary(&s), ("1".into(), "0".into(), 1, 1), "no retry of index 1");
    let (_, s) = failed("counted");
    assert_eq!(summary(&s), ("0,1".into(), "".into(), 4, 0));
    // Each index's pods carry the failures before them: 0, then 1.
    let pods: serde_json::Value =
        serde_json::from_str(&c.kubectl(&["get", "pods", "-l", "job-name=counted", "-o", "json"])).expect("JSON");
    let mut counts: Vec<(String, String)> = pods["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|p| {
            let a = &p["metadata"]["annotations"];
            (
                a["batch.kubernetes.io/job-completion-index"]
                    .as_str()
                    .unwrap_or("?")
                    .to_string(),
                a["batch.kubernetes.io/job-index-failure-count"]
                    .as_str()
                    .unwrap_or("?")
                    .to_string(),
            )
        })
        .collect();
    counts.sort();
    let want: Vec<(String, String)> = [("0", "0"), ("0", "1"), ("1", "0"), ("1", "1")]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    assert_eq!(counts, want);
    // The reason is told in an event and in kubectl describe.
    let events = c.kubectl(&["get", "events", "--field-selector", "involvedObject.name=too-many"]);
    assert!(
        events.contains("MaxFailedIndexesExceeded")
            && events.contains("Job has exceeded the specified maximal number of failed indexes"),
        "{events}"
    );
}

/// Counting through the `batch.kubernetes.io/job-tracking` finalizer, as upstream's
/// integration tests check it (test/integration/job: `TestJobPodsCreatedWithExponentialBackoff`'s
/// finalizer checks, `TestOrphanPodsFinalizersClearedWithGC`, `TestFinalizersClearedWhenBackoffLimitExceeded`)
/// and test/e2e/apps/job.go ("should recreate pods only after they have failed if pod
/// replacement policy is set to Failed"): running pods carry the finalizer, a pod deleted
/// while it runs is counted as failed and replaced, finished pods lose it once counted, and
/// the pods of a Job deleted with `--cascade=orphan` lose it too, so nothing is left stuck
/// in Terminating.
#[test]
fn job_pods_are_counted_through_the_tracking_finalizer() {
    let c = Cluster::up(1);
    let job = |name: &str, extra: &str| {
        format!(
            "apiVersion: batch/v1\nkind: Job\nmetadata: {{name: {name}}}\nspec:\n  completions: 2\n  parallelism: 2\n{extra}  template:\n    metadata:\n      annotations: {{shoal.dev/run-seconds: \"600\"}}\n    spec:\n      restartPolicy: Never\n      containers: [{{name: c, image: busybox}}]\n"
        )
    };
    let pods = |c: &Cluster, job: &str| -> Vec<serde_json::Value> {
        let l: serde_json::Value =
            serde_json::from_str(&c.kubectl(&["get", "pods", "-l", &format!("job-name={job}"), "-o", "json"]))
                .expect("JSON");
        l["items"].as_array().cloned().unwrap_or_default()
    };
    let tracked = |p: &serde_json::Value| {
        p["metadata"]["finalizers"]
            .as_array()
            .is_some_and(|f| f.iter().any(|x| x == "batch.kubernetes.io/job-tracking"))
    };
    let status = |c: &Cluster, job: &str| -> serde_json::Value {
        let j: serde_json::Value = serde_json::from_str(&c.kubectl(&["get", "job", job, "-o", "json"])).expect("JSON");
        j["status"].clone()
    };
    let running = |c: &Cluster, job: &str, n: usize| {
        c.eventually(60, &format!("{n} running pods of {job}"), || {
            let all = pods(c, job);
            let live: Vec<serde_json::Value> = all
                .into_iter()
                .filter(|p| p["status"]["phase"] == "Running" && p["metadata"]["deletionTimestamp"].is_null())
                .collect();
            (live.len() == n).then_some(live)
        })
    };

    // Default replacement: a pod deleted while it runs counts as failed at once, is
    // replaced, and is gone (the controller took its finalizer off).
    c.kubectl_in(&["apply", "-f", "-"], Some(&job("plain", "")));
    let live = running(&c, "plain", 2);
    assert!(live.iter().all(tracked), "running pods carry the finalizer: {live:?}");
    let victim = live[0]["metadata"]["name"].as_str().expect("name").to_string();
    c.kubectl(&["delete", "pod", &victim, "--wait=true", "--timeout=30s"]);
    c.eventually(30, "the deleted pod counted as failed", || {
        let s = status(&c, "plain");
        (s["failed"] == 1 && s["uncountedTerminatedPods"].as_object().is_none_or(|o| o.is_empty())).then_some(())
    });
    let live = running(&c, "plain", 2);
    assert!(live.iter().all(|p| p["metadata"]["name"] != victim.as_str()));

    // Only failed pods replaced: a pod being deleted keeps its place until it failed; the
    // node then reports it Failed (exit code 137) and the controller counts and frees it.
    c.kubectl_in(
        &["apply", "-f", "-"],
        Some(&job("patient", "  podReplacementPolicy: Failed\n")),
    );
    let live = running(&c, "patient", 2);
    let victim = live[0]["metadata"]["name"].as_str().expect("name").to_string();
    c.kubectl(&["delete", "pod", &victim, "--wait=true", "--timeout=30s"]);
    c.eventually(30, "the deleted pod counted once it failed", || {
        (status(&c, "patient")["failed"] == 1).then_some(())
    });
    running(&c, "patient", 2);

    // Orphaned by `--cascade=orphan`: the pods lose the finalizer, so a later delete ends.
    c.kubectl(&["delete", "job", "plain", "--cascade=orphan"]);
    c.eventually(30, "orphans without the finalizer", || {
        let all = pods(&c, "plain");
        (all.len() == 2
            && all
                .iter()
                .all(|p| !tracked(p) && p["metadata"]["ownerReferences"].is_null()))
        .then_some(())
    });
    c.kubectl(&["delete", "pods", "-l", "job-name=plain", "--wait=true", "--timeout=30s"]);
    assert!(pods(&c, "plain").is_empty());

    // Finished pods lose the finalizer once counted; the counts hold every end exactly once.
    c.kubectl_in(
        &["apply", "-f", "-"],
        Some(&job("quick", "  backoffLimit: 0\n").replace("\"600\"", "\"0\"")),
    );
    c.eventually(60, "quick complete", || {
        let s = status(&c, "quick");
        let done = s["conditions"]
            .as_array()?
            .iter()
            .any(|x| x["type"] == "Complete" && x["status"] == "True");
        done.then_some(())
    });
    let s = status(&c, "quick");
    assert_eq!(
        (&s["succeeded"], s["failed"].as_i64().unwrap_or(0)),
        (&serde_json::json!(2), 0),
        "{s}"
    );
    let all = pods(&c, "quick");
    assert_eq!(all.len(), 2);
    assert!(all.iter().all(|p| !tracked(p)), "{all:?}");
    // Deleting the Job (in the background) leaves no pod behind.
    c.kubectl(&["delete", "job", "patient", "--wait=true", "--timeout=30s"]);
    c.eventually(30, "patient's pods gone", || {
        pods(&c, "patient").is_empty().then_some(())
    });
}

/// Follows test/e2e/apps/statefulset.go ("should perform canary updates and phased rolling
/// updates of template modifications for partiton1 and delete pod-0 without failing
/// container"): with `partition: 1` only pods 1 and 2 take a new image; pod 0, held by a
/// finalizer after its deletion, stays (not ready, still counted in `replicas`, in neither
/// current nor updated), and once the finalizer goes it comes back at the old revision.
#[test]
fn a_partitioned_statefulset_keeps_a_pod_held_by_a_finalizer_at_its_revision() {
    let c = Cluster::up(1);
    c.kubectl_in(
        &["apply", "-f", "-"],
        Some("apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {name: ss2}\nspec:\n  replicas: 3\n  serviceName: ss2\n  selector: {matchLabels: {app: ss2}}\n  updateStrategy: {type: RollingUpdate, rollingUpdate: {partition: 1}}\n  template:\n    metadata: {labels: {app: ss2}}\n    spec:\n      containers: [{name: web, image: \"registry.k8s.io/e2e-test-images/httpd:2.4.38-4\"}]\n"),
    );
    let sts = |c: &Cluster| -> serde_json::Value {
        serde_json::from_str(&c.kubectl(&["get", "statefulset", "ss2", "-o", "json"])).expect("JSON")
    };
    let wait = |c: &Cluster, what: &str, f: &dyn Fn(&serde_json::Value) -> bool| {
        c.eventually(60, what, || {
            let s = sts(c);
            f(&s["status"]).then_some(s)
        })
    };
    let s = wait(&c, "three ready", &|s| s["readyReplicas"] == 3);
    assert_eq!(s["status"]["currentRevision"], s["status"]["updateRevision"]);
    c.kubectl(&[
        "patch",
        "pod",
        "ss2-0",
        "--type=merge",
        "-p",
        r#"{"metadata":{"finalizers":["e2e.example.com/hold"]}}"#,
    ]);
    c.kubectl(&[
        "set",
        "image",
        "statefulset/ss2",
        "web=registry.k8s.io/e2e-test-images/httpd:2.4.39-4",
    ]);
    let s = wait(&c, "pods 1 and 2 updated", &|s| {
        s["updatedReplicas"] == 2 && s["replicas"] == 3 && s["readyReplicas"] == 3
    });
    let (current, update) = (
        s["status"]["currentRevision"].as_str().expect("current").to_string(),
        s["status"]["updateRevision"].as_str().expect("update").to_string(),
    );
    assert_ne!(current, update);
    // (Listed, not got: pod 0 may be gone for a moment.)
    let pod = |c: &Cluster, i: u32| -> serde_json::Value {
        let l: serde_json::Value =
            serde_json::from_str(&c.kubectl(&["get", "pods", "-l", "app=ss2", "-o", "json"])).expect("JSON");
        let name = format!("ss2-{i}");
        l["items"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["metadata"]["name"] == name.as_str())
            .cloned()
            .unwrap_or_default()
    };
    let check = |c: &Cluster| {
        for (i, image, revision) in [
            (0, "2.4.38-4", &current),
            (1, "2.4.39-4", &update),
            (2, "2.4.39-4", &update),
        ] {
            let p = pod(c, i);
            let got = p["spec"]["containers"][0]["image"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            assert!(got.ends_with(image), "ss2-{i}: {got}");
            assert_eq!(
                p["metadata"]["labels"]["controller-revision-hash"],
                revision.as_str(),
                "ss2-{i}"
            );
        }
    };
    check(&c);
    let uid = pod(&c, 0)["metadata"]["uid"].clone();
    c.kubectl(&["delete", "pod", "ss2-0", "--grace-period=0", "--force", "--wait=false"]);
    let s = wait(&c, "pod 0 held, not ready", &|s| s["readyReplicas"] == 2);
    assert_eq!(s["status"]["replicas"], 3, "a pod being deleted is still counted");
    assert_eq!(s["status"]["updatedReplicas"], 2);
    assert_eq!(pod(&c, 0)["metadata"]["uid"], uid, "not recreated while held");
    c.kubectl(&[
        "patch",
        "pod",
        "ss2-0",
        "--type=json",
        "-p",
        r#"[{"op":"remove","path":"/metadata/finalizers"}]"#,
    ]);
    c.eventually(60, "pod 0 recreated and ready", || {
        let p = pod(&c, 0);
        (!p.is_null() && p["metadata"]["uid"] != uid && sts(&c)["status"]["readyReplicas"] == 3).then_some(())
    });
    check(&c);
    let s = sts(&c);
    assert_eq!(s["status"]["currentRevision"], current.as_str(), "the partition holds");
}

/// Follows test/e2e/apps/statefulset.go ("Scaling should happen in predictable order and
/// halt if any stateful pod is unhealthy"), with readiness turned by the simulated nodes'
/// `shoal.dev/ready` annotation instead of a broken HTTP probe: an OrderedReady set does not
/// scale up past an unready pod, scales up in order once it is ready again, does not scale
/// down while its pods are unready, and then scales down from the highest ordinal.
#[test]
fn an_ordered_statefulset_halts_on_unhealthy_pods_and_scales_in_order() {
    let c = Cluster::up(1);
    c.kubectl_in(
        &["apply", "-f", "-"],
        Some("apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {name: ss}\nspec:\n  replicas: 1\n  serviceName: ss\n  selector: {matchLabels: {app: ss}}\n  template:\n    metadata: {labels: {app: ss}}\n    spec:\n      containers: [{name: web, image: httpd}]\n"),
    );
    let pods = |c: &Cluster| -> Vec<serde_json::Value> {
        let l: serde_json::Value =
            serde_json::from_str(&c.kubectl(&["get", "pods", "-l", "app=ss", "-o", "json"])).expect("JSON");
        let mut items = l["items"].as_array().cloned().unwrap_or_default();
        items.sort_by_key(|p| p["metadata"]["name"].as_str().unwrap_or_default().to_string());
        items
    };
    let ready = |c: &Cluster| -> i64 {
        c.kubectl(&["get", "sts", "ss", "-o", "jsonpath={.status.readyReplicas}"])
            .parse()
            .unwrap_or(0)
    };
    let set_ready = |c: &Cluster, names: &[&str], value: &str| {
        for n in names {
            c.kubectl(&["annotate", "pod", n, &format!("shoal.dev/ready={value}"), "--overwrite"]);
        }
    };
    c.eventually(60, "ss-0 ready", || (ready(&c) == 1).then_some(()));
    set_ready(&c, &["ss-0"], "false");
    c.eventually(30, "ss-0 unready", || (ready(&c) == 0).then_some(()));
    c.kubectl(&["scale", "sts", "ss", "--replicas=3"]);
    std::thread::sleep(std::time::Duration::from_secs(3));
    let names: Vec<String> = pods(&c)
        .iter()
        .map(|p| p["metadata"]["name"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(names, ["ss-0"], "no scale-up past an unready pod");
    set_ready(&c, &["ss-0"], "true");
    c.eventually(60, "three ready", || (ready(&c) == 3).then_some(()));
    // In order: each pod created no earlier than its predecessor turned Ready.
    let all = pods(&c);
    let ready_at = |p: &serde_json::Value| {
        p["status"]["conditions"]
            .as_array()
            .and_then(|cs| cs.iter().find(|x| x["type"] == "Ready"))
            .and_then(|x| x["lastTransitionTime"].as_str())
            .unwrap_or_default()
            .to_string()
    };
    for w in all.windows(2) {
        let created = w[1]["metadata"]["creationTimestamp"].as_str().unwrap_or_default();
        assert!(
            created >= ready_at(&w[0]).as_str(),
            "{} before {} was ready",
            w[1]["metadata"]["name"],
            w[0]["metadata"]["name"]
        );
    }

    set_ready(&c, &["ss-0", "ss-1", "ss-2"], "false");
    c.eventually(30, "all unready", || (ready(&c) == 0).then_some(()));
    c.kubectl(&["scale", "sts", "ss", "--replicas=0"]);
    std::thread::sleep(std::time::Duration::from_secs(3));
    let left = pods(&c);
    assert_eq!(left.len(), 3, "no scale-down while pods are unready");
    assert!(left.iter().all(|p| p["metadata"]["deletionTimestamp"].is_null()));
    set_ready(&c, &["ss-0", "ss-1", "ss-2"], "true");
    // From the highest ordinal down: while a pod is going, every higher one is gone and
    // no lower one is going.
    c.eventually(90, "scaled down to none", || {
        let now = pods(&c);
        let going: Vec<&serde_json::Value> = now
            .iter()
            .filter(|p| !p["metadata"]["deletionTimestamp"].is_null())
            .collect();
        assert!(going.len() <= 1, "one at a time: {going:?}");
        if let Some(g) = going.first() {
            assert_eq!(
                now.last().map(|p| &p["metadata"]["name"]),
                Some(&g["metadata"]["name"]),
                "the highest first"
            );
        }
        now.is_empty().then_some(())
    });
}
