//! Hostile and unlucky conditions against a real `shoal up`, driven with the real kubectl
//! (and raw HTTPS where kubectl cannot say it): what a node credential and the join secret
//! can reach, impersonation, dry-run deletes, huge grace periods, a full disk, a thousand
//! idle connections, the garbage collector and doubly owned pods. Each test fails on the
//! code before its fix.

mod common;

use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use base64::Engine;
use common::Cluster;
use serde_json::{Value, json};

/// One HTTPS request with `token` (none: anonymous).
fn raw(c: &Cluster, token: Option<&str>, method: &str, path: &str, body: &Value) -> (u16, String) {
    raw_with(c, token, &[], method, path, body)
}

/// [`raw`] with extra headers.
fn raw_with(
    c: &Cluster,
    token: Option<&str>,
    headers: &[(&str, &str)],
    method: &str,
    path: &str,
    body: &Value,
) -> (u16, String) {
    let ca = std::fs::read_to_string(c.dir.join("tls").join("ca.crt")).expect("CA");
    let mut client =
        shoal_apiserver::client::HttpsClient::new(c.addr(), &ca, token.map(str::to_string)).expect("client");
    for (name, value) in headers {
        client = client.with_header(name, value);
    }
    let body = if body.is_null() {
        Vec::new()
    } else {
        body.to_string().into_bytes()
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let reply = rt
        .block_on(client.request(method, path, "application/json", &body))
        .expect("request");
    (reply.status, String::from_utf8_lossy(&reply.body).into_owned())
}

/// The join secret (the part of `node-token` after `::node:`).
fn join_secret(c: &Cluster) -> String {
    let token = std::fs::read_to_string(c.dir.join("node-token")).expect("node-token");
    token.trim().rsplit_once("::node:").expect("token format").1.to_string()
}

/// Joins as `node` the way an agent does; returns the node's bearer token.
fn join(c: &Cluster, node: &str) -> Result<String, (u16, String)> {
    let request =
        json!({"nodeName": node, "password": format!("password-of-{node}-0123456789"), "addresses": ["127.0.0.9"]});
    let (code, body) = raw(c, Some(&join_secret(c)), "POST", "/shoal/v1/node-credentials", &request);
    if code != 200 {
        return Err((code, body));
    }
    let v: Value = serde_json::from_str(&body).expect("credentials");
    Ok(v["token"].as_str().expect("token").to_string())
}

fn forged_continue(start: &str, rv: &str) -> String {
    let raw = json!({"v": "meta.k8s.io/v1", "rv": rv.parse::<i64>().unwrap(), "start": start}).to_string();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

#[test]
fn a_node_credential_reaches_its_own_node_and_nothing_more() {
    let c = Cluster::up(1);
    c.kubectl(&[
        "create",
        "secret",
        "generic",
        "db-pass",
        "--from-literal=password=hunter2",
    ]);
    let token = join(&c, "edge-x").expect("a new node joins");
    let as_node = |args: &[&str]| {
        let mut full = vec!["--token", token.as_str()];
        full.extend_from_slice(args);
        c.kubectl_output(&full, None)
    };
    let denied = as_node(&["get", "secrets"]);
    assert!(
        String::from_utf8_lossy(&denied.stderr).contains("Forbidden"),
        "nodes may not list secrets"
    );
    // Nor the claims, volumes and accounts of pods that are not theirs (upstream's graph).
    for kind in ["serviceaccounts", "persistentvolumeclaims", "persistentvolumes"] {
        let denied = as_node(&["get", kind]);
        assert!(
            String::from_utf8_lossy(&denied.stderr)
                .contains("no relationship found between node 'edge-x' and this object"),
            "{kind}: {}",
            String::from_utf8_lossy(&denied.stderr)
        );
    }

    // The continue token names the Secrets' range: the list stays in pods (which a node may list).
    let list: Value = serde_json::from_str(&c.kubectl(&["get", "--raw", "/api/v1/pods?limit=1"])).expect("list");
    let rv = list["metadata"]["resourceVersion"].as_str().expect("rv").to_string();
    for start in [
        "/registry/secrets/",
        "../secrets/",
        "../../core/secrets/default/db-pass",
    ] {
        let path = format!("/api/v1/pods?limit=500&continue={}", forged_continue(start, &rv));
        let (code, body) = raw(&c, Some(&token), "GET", &path, &Value::Null);
        assert!(code == 200 || code == 400, "{start}: {code} {body}");
        assert!(
            !body.contains("\"kind\":\"Secret\"") && !body.contains("aHVudGVyMg"),
            "{start}: {body}"
        );
        assert!(!body.contains("node-password"), "{start} leaked node passwords: {body}");
    }

    // Its own Node: registration may carry taints; afterwards they are the admin's.
    let node = json!({"apiVersion": "v1", "kind": "Node",
        "metadata": {"name": "edge-x", "labels": {"kubernetes.io/hostname": "edge-x", "team": "a"}},
        "spec": {"taints": [{"key": "edge", "value": "true", "effect": "NoSchedule"}]}});
    let (code, body) = raw(&c, Some(&token), "POST", "/api/v1/nodes", &node);
    assert_eq!(code, 201, "{body}");
    let err = String::from_utf8_lossy(&as_node(&["taint", "node", "edge-x", "edge-"]).stderr).into_owned();
    assert!(err.contains("is not allowed to modify taints"), "{err}");
    let err = String::from_utf8_lossy(
        &as_node(&["label", "node", "edge-x", "node-restriction.kubernetes.io/pool=gold"]).stderr,
    )
    .into_owned();
    assert!(
        err.contains("is not allowed to modify labels: node-restriction.kubernetes.io/pool"),
        "{err}"
    );
    let err = String::from_utf8_lossy(
        &as_node(&["label", "node", "edge-x", "node-role.kubernetes.io/control-plane="]).stderr,
    )
    .into_owned();
    assert!(err.contains("Forbidden"), "{err}");
    assert!(
        as_node(&["label", "node", "edge-x", "team=b", "--overwrite"])
            .status
            .success(),
        "ordinary labels stay the node's"
    );
    assert_eq!(
        c.kubectl(&["get", "node", "edge-x", "-o", "jsonpath={.spec.taints[0].key}"]),
        "edge"
    );

    // No pod logs, not even of pods elsewhere.
    c.kubectl_in(
        &["apply", "-f", "-"],
        Some("apiVersion: v1\nkind: Pod\nmetadata: {name: web}\nspec:\n  containers:\n  - {name: web, image: nginx}\n"),
    );
    c.eventually(30, "web runs", || {
        (c.kubectl(&["get", "pod", "web", "-o", "jsonpath={.status.phase}"]) == "Running").then_some(())
    });
    let err = String::from_utf8_lossy(&as_node(&["logs", "web"]).stderr).into_owned();
    assert!(err.contains("cannot get resource \"pods/log\""), "{err}");
}

#[test]
fn the_join_secret_cannot_speak_for_a_node_that_never_joined() {
    let c = Cluster::up(2);
    for name in ["node1", "node2"] {
        let (code, body) = join(&c, name).expect_err("refused");
        assert_eq!(code, 403, "{body}");
        assert!(body.contains("did not join through an agent"), "{body}");
    }
    let (code, body) = join(&c, "../x").expect_err("refused");
    assert_eq!(code, 400, "{body}");
    assert!(
        c.kubectl(&["get", "secrets", "-n", "kube-system", "-o", "name"])
            .lines()
            .all(|l| !l.contains("node1")),
        "nothing was stored for the refused joins"
    );
    join(&c, "edge-new").expect("a new name joins");
}

#[test]
fn impersonation_is_authorized_never_ignored() {
    let c = Cluster::up(1);
    // Run as the impersonated user, never as the caller: jane has no grants.
    let err = c.kubectl_err(&["get", "pods", "--as=jane"], None);
    assert!(err.contains(r#"User "jane" cannot list resource "pods""#), "{err}");
    let token = admin_token(&c);
    for header in ["Impersonate-Group", "Impersonate-Uid", "Impersonate-Extra-Scopes"] {
        let (code, body) = raw_with(
            &c,
            Some(&token),
            &[(header, "jane")],
            "GET",
            "/api/v1/namespaces/default/pods",
            &Value::Null,
        );
        assert_eq!(code, 400, "{header} without a user: {body}");
    }
    let (code, body) = raw_with(
        &c,
        Some(&token),
        &[("Impersonate-User", "jane")],
        "GET",
        "/api/v1/namespaces/default/pods",
        &Value::Null,
    );
    assert_eq!(code, 403, "{body}");
    // An impersonated user may not impersonate further (kubectl sends one set of headers, so
    // this asks for jane's rights over bob through a review).
    let no = c.kubectl_output(&["auth", "can-i", "impersonate", "users/bob", "--as=jane"], None);
    assert_eq!(String::from_utf8_lossy(&no.stdout).trim(), "no");
    assert!(
        c.kubectl(&["get", "ns", "-o", "name"]).contains("namespace/default"),
        "without it, served"
    );
}

#[test]
fn a_server_side_dry_run_delete_deletes_nothing() {
    let c = Cluster::up(1);
    c.kubectl(&["create", "configmap", "keep", "--from-literal=a=1"]);
    c.kubectl(&["create", "deployment", "web", "--image=nginx", "--replicas=2"]);
    let out = c.kubectl(&["delete", "configmap", "keep", "--dry-run=server"]);
    assert!(out.contains("deleted (server dry run)"), "{out}");
    let out = c.kubectl(&[
        "delete",
        "deployment",
        "web",
        "--dry-run=server",
        "--cascade=foreground",
    ]);
    assert!(out.contains("(server dry run)"), "{out}");
    assert_eq!(
        c.kubectl(&["get", "configmap", "keep", "-o", "name"]).trim(),
        "configmap/keep"
    );
    assert_eq!(
        c.kubectl(&["get", "deployment", "web", "-o", "jsonpath={.metadata.finalizers}"]),
        ""
    );
    c.kubectl(&["delete", "configmap", "keep"]);
    assert!(c.kubectl_err(&["get", "configmap", "keep"], None).contains("NotFound"));
}

fn readyz(c: &Cluster) -> (u16, String) {
    raw(c, None, "GET", "/readyz?verbose", &Value::Null)
}

fn metric(c: &Cluster, line_start: &str) -> Option<f64> {
    let text = c.kubectl(&["get", "--raw", "/metrics"]);
    text.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[test]
fn huge_grace_periods_neither_panic_nor_stop_a_controller() {
    let c = Cluster::up(2);
    let ds = |image: &str| {
        format!(
            "apiVersion: apps/v1\nkind: DaemonSet\nmetadata: {{name: agent}}\nspec:\n  selector: {{matchLabels: {{app: agent}}}}\n  template:\n    metadata: {{labels: {{app: agent}}}}\n    spec:\n      terminationGracePeriodSeconds: 9223372036854775807\n      containers:\n      - {{name: a, image: {image}}}\n"
        )
    };
    c.kubectl_in(&["apply", "-f", "-"], Some(&ds("agent:v1")));
    let out = c.kubectl(&["rollout", "status", "ds/agent", "--timeout=60s"]);
    assert!(out.contains("successfully rolled out"), "{out}");
    // The controller's work queue and reconciles are on /metrics.
    let adds = metric(&c, "workqueue_adds_total{name=\"daemonset\"}").unwrap_or(0.0);
    assert!(adds >= 1.0, "queued at least the DaemonSet's creation: {adds}");
    let reconciles = metric(
        &c,
        "shoal_controller_reconcile_duration_seconds_count{controller=\"daemonset\"}",
    )
    .unwrap_or(0.0);
    assert!(reconciles >= 1.0, "{reconciles}");
    assert!(
        metric(&c, "workqueue_depth{name=\"replicaset\"}").is_some(),
        "every keyed controller has its queue"
    );
    // The rollout deletes every old pod, each with that grace period.
    c.kubectl_in(&["apply", "-f", "-"], Some(&ds("agent:v2")));
    let out = c.kubectl(&["rollout", "status", "ds/agent", "--timeout=90s"]);
    assert!(out.contains("successfully rolled out"), "{out}");
    // A pod deleted by hand with an even larger request.
    let pod = c.kubectl(&[
        "get",
        "pods",
        "-l",
        "app=agent",
        "-o",
        "jsonpath={.items[0].metadata.name}",
    ]);
    let out = c.kubectl(&[
        "delete",
        "pod",
        &pod,
        "--grace-period=9223372036854775807",
        "--wait=false",
    ]);
    assert!(out.contains("deleted"), "{out}");
    let left = c.kubectl_output(
        &["get", "pod", &pod, "-o", "jsonpath={.metadata.deletionTimestamp}"],
        None,
    );
    let deadline = String::from_utf8_lossy(&left.stdout);
    assert!(deadline.is_empty() || deadline.starts_with("9999-"), "{deadline}");
    // The controller is alive: it acts on the next change, and nothing restarted.
    c.kubectl(&["label", "node", "node2", "skip=yes"]);
    c.kubectl(&[
        "patch",
        "ds",
        "agent",
        "-p",
        r#"{"spec":{"template":{"spec":{"nodeSelector":{"skip":"no"}}}}}"#,
    ]);
    c.eventually(60, "the DaemonSet leaves every node", || {
        (c.kubectl(&["get", "ds", "agent", "-o", "jsonpath={.status.desiredNumberScheduled}"]) == "0").then_some(())
    });
    let (code, body) = readyz(&c);
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("[+]component/controller/daemonset ok"), "{body}");
    assert_eq!(
        metric(&c, "shoal_component_restarts_total{component=\"controller/daemonset\"}"),
        Some(0.0)
    );
    assert_eq!(metric(&c, "shoal_panics_total"), Some(0.0));
}

#[test]
fn a_full_disk_fails_writes_then_the_store_recovers() {
    let log = tempfile::NamedTempFile::new().expect("log file");
    let mut c = Cluster::up_logging_to(1, log.path());
    c.kubectl(&["create", "configmap", "before"]);
    let pid = c.child.id().to_string();
    let limit = |fsize: &str| {
        let out = std::process::Command::new("prlimit")
            .args(["--pid", &pid, &format!("--fsize={fsize}")])
            .output()
            .expect("prlimit (util-linux)");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    };
    // Every file write past 4 KiB now fails (the database, its log and the server's log):
    // the disk is full.
    limit("4096:unlimited");
    for i in 0..6 {
        let out = c.kubectl_output(&["create", "configmap", &format!("full-{i}")], None);
        assert!(!out.status.success(), "a write succeeded on a full disk");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("InternalError") || err.contains("Internal error"), "{err}");
    }
    let (code, body) = readyz(&c);
    assert_eq!(code, 500, "{body}");
    assert!(body.contains("[-]store failed"), "{body}");
    assert_eq!(
        c.kubectl(&["get", "configmap", "before", "-o", "name"]).trim(),
        "configmap/before",
        "reads still work"
    );
    // Space returns: writes work again, without a restart.
    limit("unlimited:unlimited");
    c.eventually(30, "writes work again", || {
        c.kubectl_output(&["create", "configmap", "after"], None)
            .status
            .success()
            .then_some(())
    });
    c.eventually(30, "ready again", || (readyz(&c).0 == 200).then_some(()));
    assert!(c.child.try_wait().expect("wait").is_none(), "the server is alive");
    for i in 0..6 {
        assert!(
            c.kubectl_err(&["get", "configmap", &format!("full-{i}")], None)
                .contains("NotFound")
        );
    }
}

/// Raises this test process's own open-file limit (it holds the idle connections).
/// Returns how many descriptors it may now hold.
fn raise_own_file_limit() -> u64 {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let l = getrlimit(Resource::Nofile);
    let _ = setrlimit(
        Resource::Nofile,
        Rlimit {
            current: l.maximum,
            maximum: l.maximum,
        },
    );
    getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX)
}

#[test]
fn a_thousand_idle_connections_lock_nobody_out() {
    let c = Cluster::up(1);
    // 1,200 (more than the 1,024 that used to lock everyone out), or what this machine lets
    // the test hold.
    let attempts = usize::try_from(raise_own_file_limit().saturating_sub(200))
        .unwrap_or(usize::MAX)
        .min(1200);
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", c.child.id())).expect("limits");
    let files = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("open files line");
    let n: Vec<&str> = files.split_whitespace().collect();
    assert_eq!(n[3], n[4], "the soft limit is raised to the hard one: {files}");
    // Connections from another loopback address that never say a word.
    let server = c.addr();
    let mut idle: Vec<TcpStream> = (0..attempts)
        .filter_map(|_| connect_from("127.0.0.2", server))
        .collect();
    assert!(idle.len() + 20 >= attempts, "opened {} of {attempts}", idle.len());
    // Everyone else still gets served.
    assert_eq!(c.kubectl(&["get", "nodes", "-o", "name"]).trim(), "node/node1");
    c.kubectl(&["create", "configmap", "still-served"]);
    // The attacker holds at most its share: the connections over it were closed at once.
    std::thread::sleep(Duration::from_millis(500));
    let mut closed = 0;
    for s in idle.iter_mut() {
        s.set_read_timeout(Some(Duration::from_millis(5))).ok();
        if matches!(s.read(&mut [0u8; 1]), Ok(0)) {
            closed += 1;
        }
    }
    assert!(closed + 1024 >= idle.len(), "only {closed} of {} closed", idle.len());
    drop(idle);
    c.kubectl(&["create", "configmap", "after-the-storm"]);
}

/// A TCP connection to `server` from source address `from` (another loopback address: std
/// has no bind-then-connect).
fn connect_from(from: &str, server: SocketAddr) -> Option<TcpStream> {
    use rustix::net::{AddressFamily, SocketType, bind, connect, socket};
    let fd = socket(AddressFamily::INET, SocketType::STREAM, None).ok()?;
    let local: SocketAddr = format!("{from}:0").parse().ok()?;
    bind(&fd, &local).ok()?;
    connect(&fd, &server).ok()?;
    Some(TcpStream::from(fd))
}

#[test]
fn foreground_deletion_keeps_dependents_another_owner_holds() {
    let c = Cluster::up(2);
    let rs = |name: &str, replicas: u32, app: &str| {
        format!(
            "apiVersion: apps/v1\nkind: ReplicaSet\nmetadata: {{name: {name}}}\nspec:\n  replicas: {replicas}\n  selector: {{matchLabels: {{app: {app}}}}}\n  template:\n    metadata: {{labels: {{app: {app}}}}}\n    spec:\n      containers:\n      - {{name: c, image: nginx}}\n"
        )
    };
    c.kubectl_in(&["apply", "-f", "-"], Some(&rs("to-be-deleted", 6, "gone")));
    c.kubectl_in(&["apply", "-f", "-"], Some(&rs("to-stay", 0, "stay")));
    c.eventually(60, "6 pods ready", || {
        (c.kubectl(&["get", "rs", "to-be-deleted", "-o", "jsonpath={.status.readyReplicas}"]) == "6").then_some(())
    });
    let stay_uid = c.kubectl(&["get", "rs", "to-stay", "-o", "jsonpath={.metadata.uid}"]);
    let pods: Vec<String> = c
        .kubectl(&[
            "get",
            "pods",
            "-l",
            "app=gone",
            "-o",
            "jsonpath={.items[*].metadata.name}",
        ])
        .split_whitespace()
        .map(str::to_string)
        .collect();
    assert_eq!(pods.len(), 6);
    let shared = &pods[..3];
    for p in shared {
        let owners = c.kubectl(&["get", "pod", p, "-o", "jsonpath={.metadata.ownerReferences}"]);
        let mut owners: Vec<Value> = serde_json::from_str(&owners).expect("owners");
        owners.push(json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "to-stay", "uid": stay_uid}));
        let patch = json!({"metadata": {"ownerReferences": owners}}).to_string();
        c.kubectl(&["patch", "pod", p, "--type=merge", "-p", &patch]);
    }
    c.kubectl(&[
        "delete",
        "rs",
        "to-be-deleted",
        "--cascade=foreground",
        "--wait=true",
        "--timeout=90s",
    ]);
    c.eventually(60, "the other pods gone", || {
        let left = c.kubectl(&["get", "pods", "-o", "jsonpath={.items[*].metadata.name}"]);
        (left.split_whitespace().count() == 3).then_some(())
    });
    for p in shared {
        let owners = c.kubectl(&["get", "pod", p, "-o", "jsonpath={.metadata.ownerReferences[*].name}"]);
        assert_eq!(owners, "to-stay", "{p} keeps only the live owner");
        let deleting = c.kubectl(&["get", "pod", p, "-o", "jsonpath={.metadata.deletionTimestamp}"]);
        assert!(deleting.is_empty(), "{p} is being deleted");
    }
}

#[test]
fn far_future_watches_and_bad_paths_get_clear_errors() {
    let c = Cluster::up(1);
    let err = c.kubectl_err(
        &["get", "--raw", "/api/v1/pods?watch=1&resourceVersion=999999999"],
        None,
    );
    assert!(err.contains("Too large resource version"), "{err}");
    let (code, body) = raw(
        &c,
        Some(&admin_token(&c)),
        "GET",
        "/api/v1/namespaces/%zz/pods",
        &Value::Null,
    );
    assert_eq!(code, 400, "{body}");
    let (code, _) = raw(
        &c,
        Some(&admin_token(&c)),
        "GET",
        "/api/v1/namespaces/kube%2Dsystem/pods",
        &Value::Null,
    );
    assert_eq!(code, 200);
}

fn admin_token(c: &Cluster) -> String {
    std::fs::read_to_string(c.dir.join("admin-token"))
        .expect("admin token")
        .trim()
        .to_string()
}

#[test]
fn a_simulated_node_with_an_invalid_capacity_says_why_and_runs() {
    let c = Cluster::up(1);
    let node = "apiVersion: v1\nkind: Node\nmetadata:\n  name: odd\n  annotations:\n    shoal.dev/simulated: \"true\"\n    shoal.dev/capacity-cpu: lots\n";
    c.kubectl_in(&["apply", "-f", "-"], Some(node));
    c.eventually(30, "odd Ready", || {
        (c.kubectl(&[
            "get",
            "node",
            "odd",
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
        ]) == "True")
            .then_some(())
    });
    assert_eq!(
        c.kubectl(&["get", "node", "odd", "-o", "jsonpath={.status.capacity.cpu}"]),
        "4"
    );
    let events = c.eventually(30, "the warning", || {
        let e = c.kubectl(&[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=odd,reason=InvalidCapacity",
            "-o",
            "jsonpath={.items[*].message}",
        ]);
        (!e.is_empty()).then_some(e)
    });
    assert!(
        events.contains("shoal.dev/capacity-cpu: \"lots\" is not a valid capacity"),
        "{events}"
    );
}
