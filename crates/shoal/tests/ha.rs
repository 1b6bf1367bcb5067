//! High availability on etcd: a real 3-member etcd (Debian's etcd-server) on loopback ports,
//! several `shoal up --store etcd://...` processes on it, and the real kubectl against each.
//! Leases are shortened (6 s / 4 s / 1 s) so a takeover fits a test; the defaults are
//! upstream's 15 s / 10 s / 2 s.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::Cluster;
use serde_json::Value;
use shoal_store::LocalEtcd;

const LEASES: [&str; 6] = [
    "--leader-elect-lease-duration",
    "6s",
    "--leader-elect-renew-deadline",
    "4s",
    "--leader-elect-retry-period",
    "1s",
];

fn etcd(dir: &std::path::Path, members: usize) -> LocalEtcd {
    let etcd = LocalEtcd::start(dir, members).expect("starting etcd (is Debian's etcd-server installed?)");
    tokio::runtime::Runtime::new()
        .expect("runtime")
        .block_on(etcd.wait_ready(Duration::from_secs(30)))
        .expect("etcd ready");
    etcd
}

/// `shoal up` on `url`, joining with `token` when given.
fn server(dir: &std::path::Path, url: &str, nodes: u32, token: Option<&std::path::Path>) -> Cluster {
    server_with(dir, url, nodes, token, &[])
}

fn server_with(
    dir: &std::path::Path,
    url: &str,
    nodes: u32,
    token: Option<&std::path::Path>,
    more: &[&str],
) -> Cluster {
    let mut extra = vec!["--store", url];
    extra.extend(more);
    extra.extend(LEASES);
    let token = token.map(|t| t.display().to_string());
    if let Some(t) = &token {
        extra.extend(["--token-file", t]);
    }
    Cluster::up_in(dir, nodes, &extra)
}

/// The leader-election identity a server printed on its ready line.
fn identity(c: &Cluster) -> String {
    c.ready_line
        .rsplit("leader-election identity ")
        .next()
        .expect("an identity on the ready line")
        .trim()
        .to_string()
}

fn holder(c: &Cluster, lease: &str) -> String {
    c.kubectl(&[
        "get",
        "lease",
        "-n",
        "kube-system",
        lease,
        "-o",
        "jsonpath={.spec.holderIdentity}",
    ])
}

fn json(c: &Cluster, args: &[&str]) -> Value {
    serde_json::from_str(&c.kubectl(args)).expect("kubectl printed JSON")
}

const DAEMONSET: &str = "apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent}
spec:
  selector: {matchLabels: {app: agent}}
  updateStrategy: {type: RollingUpdate, rollingUpdate: {maxUnavailable: 1}}
  template:
    metadata: {labels: {app: agent}}
    spec: {containers: [{name: a, image: busybox:1}]}
";

#[test]
fn servers_on_one_etcd_share_objects_and_a_killed_leader_is_replaced() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let etcd = etcd(&tmp.path().join("etcd"), 3);
    let url = etcd.store_url();
    let dirs: Vec<_> = (0..3).map(|i| tmp.path().join(format!("server{i}"))).collect();
    // A small Service range (29 addresses after the kubernetes and DNS Services), so that
    // servers allocating without regard for each other would collide.
    let small = ["--service-cidr", "10.43.0.0/27"];
    let first = server_with(&dirs[0], &url, 4, None, &small);
    let token = dirs[0].join("server-token");
    let mut servers = vec![first];
    for dir in &dirs[1..] {
        servers.push(server_with(dir, &url, 4, Some(&token), &small));
    }

    // One cluster: an object written through one server is read through every other, and
    // every server's admin credential and CA are the cluster's.
    servers[1].kubectl(&["create", "configmap", "shared", "--from-literal=k=v"]);
    let uids: BTreeSet<String> = servers
        .iter()
        .map(|s| {
            s.eventually(10, "the configmap on every server", || {
                let out = s.kubectl_output(&["get", "configmap", "shared", "-o", "jsonpath={.metadata.uid}"], None);
                out.status
                    .success()
                    .then(|| String::from_utf8_lossy(&out.stdout).to_string())
            })
        })
        .collect();
    assert_eq!(uids.len(), 1, "the same object everywhere: {uids:?}");
    let cas: BTreeSet<String> = dirs
        .iter()
        .map(|d| std::fs::read_to_string(d.join("tls/ca.crt")).expect("ca.crt"))
        .collect();
    assert_eq!(cas.len(), 1, "one CA for the cluster");

    // Services made through all three servers at once get distinct addresses and ports.
    std::thread::scope(|scope| {
        for (i, s) in servers.iter().enumerate() {
            scope.spawn(move || {
                for n in 0..8 {
                    s.kubectl(&["create", "service", "nodeport", &format!("svc-{i}-{n}"), "--tcp=80"]);
                }
            });
        }
    });
    let services = json(&servers[0], &["get", "services", "-o", "json"]);
    let mut ips = BTreeSet::new();
    let mut ports = BTreeSet::new();
    for svc in services["items"].as_array().expect("items") {
        let name = svc["metadata"]["name"].as_str().unwrap_or_default();
        if !name.starts_with("svc-") {
            continue;
        }
        assert!(
            ips.insert(svc["spec"]["clusterIP"].to_string()),
            "{name}: cluster IP taken twice"
        );
        assert!(
            ports.insert(svc["spec"]["ports"][0]["nodePort"].to_string()),
            "{name}: node port taken twice"
        );
    }
    assert_eq!(ips.len(), 24);

    // Exactly one leader for each Lease, and it is one of the servers.
    let identities: Vec<String> = servers.iter().map(identity).collect();
    let leader_id = servers[0].eventually(20, "a controller-manager leader", || {
        let h = holder(&servers[0], "kube-controller-manager");
        identities.contains(&h).then_some(h)
    });
    let leader = identities.iter().position(|i| *i == leader_id).expect("a server leads");
    let survivor = (leader + 1) % 3;
    let nodes = servers[survivor].eventually(30, "4 Ready nodes", || {
        let out = servers[survivor].kubectl(&["get", "nodes", "--no-headers"]);
        (out.lines().filter(|l| l.contains(" Ready ")).count() == 4).then_some(4)
    });
    assert_eq!(
        nodes, 4,
        "the simulated nodes run on one server, not one set per server"
    );

    servers[survivor].kubectl_in(&["apply", "-f", "-"], Some(DAEMONSET));
    servers[survivor].kubectl(&["rollout", "status", "ds/agent", "--timeout=60s"]);

    // Watch the daemon pods from the survivor for the rest of the test: never two on a node.
    let stop = Arc::new(AtomicBool::new(false));
    let most = Arc::new(Mutex::new((0usize, String::new())));
    let watcher = {
        let (stop, most) = (stop.clone(), most.clone());
        let kubeconfig = servers[survivor].kubeconfig();
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                let out = std::process::Command::new("kubectl")
                    .args(["get", "pods", "-l", "app=agent", "-o", "json"])
                    .env("KUBECONFIG", &kubeconfig)
                    .output()
                    .expect("kubectl");
                if let Ok(list) = serde_json::from_slice::<Value>(&out.stdout) {
                    let mut per_node: BTreeMap<String, Vec<String>> = BTreeMap::new();
                    for pod in list["items"].as_array().into_iter().flatten() {
                        let node = pod["spec"]["nodeName"].as_str().unwrap_or_default().to_string();
                        let name = pod["metadata"]["name"].as_str().unwrap_or_default().to_string();
                        per_node.entry(node).or_default().push(name);
                    }
                    for (node, pods) in per_node {
                        let mut m = most.lock().unwrap();
                        if pods.len() > m.0 {
                            *m = (pods.len(), format!("{node}: {pods:?}"));
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(150));
            }
        })
    };

    // Start a rollout, then kill the leading server outright.
    servers[survivor].kubectl(&["set", "image", "ds/agent", "a=busybox:2"]);
    servers[leader].child.kill().expect("kill -9 the leader");
    servers[leader].child.wait().expect("reaped");
    let killed = Instant::now();
    let new_leader = servers[survivor].eventually(30, "a new controller-manager leader", || {
        let h = holder(&servers[survivor], "kube-controller-manager");
        (h != leader_id && identities.contains(&h)).then_some(h)
    });
    assert!(
        killed.elapsed() < Duration::from_secs(6 + 4),
        "taken over within the lease duration (and a retry): {:?}",
        killed.elapsed()
    );
    for lease in ["kube-scheduler", "shoal-simulated-nodes"] {
        let h = servers[survivor].eventually(30, "the other Leases taken over", || {
            let h = holder(&servers[survivor], lease);
            (h != leader_id).then_some(h)
        });
        assert!(identities.contains(&h), "{lease} held by {h}");
    }
    servers[survivor].kubectl(&["rollout", "status", "ds/agent", "--timeout=90s"]);
    let ds = json(&servers[survivor], &["get", "ds", "agent", "-o", "json"]);
    assert_eq!(ds["status"]["updatedNumberScheduled"], 4, "{}", ds["status"]);
    assert_eq!(ds["status"]["numberAvailable"], 4, "{}", ds["status"]);
    stop.store(true, Ordering::SeqCst);
    watcher.join().expect("watcher");
    let (most, when) = most.lock().unwrap().clone();
    assert_eq!(most, 1, "never two daemon pods on one node: {when}");
    assert!(identities.contains(&new_leader));

    // The object written before the kill is still there, through every live server.
    for (i, s) in servers.iter().enumerate().filter(|(i, _)| *i != leader) {
        let uid = s.kubectl(&["get", "configmap", "shared", "-o", "jsonpath={.metadata.uid}"]);
        assert!(uids.contains(&uid), "server {i}");
    }
}

#[test]
fn etcd_losing_members_and_quorum_loses_no_acknowledged_write() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut etcd = etcd(&tmp.path().join("etcd"), 3);
    let c = server(&tmp.path().join("server"), &etcd.store_url(), 1, None);
    let mut acknowledged = Vec::new();
    let mut create = |c: &Cluster, name: String| -> bool {
        let out = c.kubectl_output(&["create", "configmap", &name, "--from-literal=k=v"], None);
        if out.status.success() {
            acknowledged.push(name);
        }
        out.status.success()
    };
    assert!(create(&c, "before".into()));
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let leader = runtime.block_on(etcd.leader()).expect("an etcd leader");

    // One member (a follower) gone: nothing visible changes.
    etcd.kill((leader + 1) % 3);
    for i in 0..5 {
        assert!(create(&c, format!("one-down-{i}")), "a write with one member down");
    }
    assert_eq!(
        c.kubectl(&["get", "configmap", "before", "-o", "jsonpath={.data.k}"]),
        "v"
    );

    // Two gone: no quorum. Writes fail with a 5xx Status that says why.
    etcd.kill(leader);
    let err = c.kubectl_err(&["create", "configmap", "no-quorum", "--from-literal=k=v"], None);
    assert!(
        err.contains("ServiceUnavailable") || err.contains("storage is unavailable"),
        "{err}"
    );
    let status = c.kubectl_output(&["get", "--raw", "/readyz"], None);
    assert!(!status.status.success(), "readiness reports the store");

    // One member back: quorum returns, writes work, and everything acknowledged is there.
    etcd.restart(leader).expect("restart a member");
    c.eventually(60, "writes to work again", || create(&c, "after".into()).then_some(()));
    for name in &acknowledged {
        assert_eq!(
            c.kubectl(&["get", "configmap", name, "-o", "jsonpath={.data.k}"]),
            "v",
            "{name} was acknowledged"
        );
    }
}

#[test]
fn an_agent_keeps_its_node_ready_when_its_server_dies() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let etcd = etcd(&tmp.path().join("etcd"), 1);
    let grace = ["--node-monitor-grace-period", "8s"];
    let mut s0 = server_with(&tmp.path().join("s0"), &etcd.store_url(), 0, None, &grace);
    let token = tmp.path().join("s0").join("server-token");
    let s1 = server_with(&tmp.path().join("s1"), &etcd.store_url(), 0, Some(&token), &grace);
    let servers = format!("https://{},https://{}", s0.addr(), s1.addr());
    let mut agent = std::process::Command::new(env!("CARGO_BIN_EXE_shoal"))
        .args(["agent", "--server", &servers, "--token-file"])
        .arg(s0.dir.join("node-token"))
        .args([
            "--node-name",
            "edge",
            "--node-ip",
            "127.0.0.5",
            "--port",
            "0",
            "--runtime",
            "simulated",
        ])
        .arg("--data-dir")
        .arg(tmp.path().join("agent"))
        .env("SHOAL_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("spawn shoal agent");
    s1.eventually(30, "the node Ready", || {
        let out = s1.kubectl(&["get", "node", "edge", "--no-headers"]);
        out.contains(" Ready ").then_some(())
    });

    // The agent talks to the first server; kill it.
    s0.child.kill().expect("kill the first server");
    s0.child.wait().expect("reaped");
    let killed = Instant::now();
    s1.kubectl_in(&["apply", "-f", "-"], Some(DAEMONSET));
    s1.eventually(60, "the daemon pod running on the agent's node", || {
        let out = s1.kubectl(&["get", "pods", "-l", "app=agent", "-o", "wide", "--no-headers"]);
        (out.contains("Running") && out.contains("edge")).then_some(())
    });
    // Past the grace period the node is still Ready: its heartbeats reach the other server.
    let past = Duration::from_secs(12).saturating_sub(killed.elapsed());
    std::thread::sleep(past);
    let node = json(&s1, &["get", "node", "edge", "-o", "json"]);
    let ready = node["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == "Ready")
        .cloned()
        .unwrap_or_default();
    assert_eq!(ready["status"], "True", "{ready}");
    let _ = agent.kill();
    let _ = agent.wait();
}

#[test]
fn shoal_up_ha_runs_three_servers_on_a_local_etcd() {
    let c = Cluster::up_with(2, &["--ha"]);
    assert!(
        c.ready_line.starts_with("shoal HA is ready: etcd at "),
        "{}",
        c.ready_line
    );
    let nodes = c.eventually(30, "2 Ready nodes", || {
        let out = c.kubectl(&["get", "nodes", "--no-headers"]);
        (out.lines().filter(|l| l.contains(" Ready ")).count() == 2).then_some(out)
    });
    assert_eq!(nodes.lines().count(), 2, "one set of simulated nodes: {nodes}");
    // Each server's own data dir holds the same cluster: its kubeconfig works too.
    for i in 0..3 {
        let kubeconfig = c.dir.join(format!("server-{i}")).join("kubeconfig");
        let out = std::process::Command::new("kubectl")
            .args([
                "get",
                "lease",
                "-n",
                "kube-system",
                "kube-controller-manager",
                "-o",
                "name",
            ])
            .env("KUBECONFIG", &kubeconfig)
            .output()
            .expect("kubectl");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "lease.coordination.k8s.io/kube-controller-manager"
        );
    }
    assert!(c.dir.join("etcd").join("ports").exists());

    // SIGTERM stops the servers and etcd with it.
    let status = std::process::Command::new("kill")
        .args(["-TERM", &c.child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    let dir = c.dir.display().to_string();
    loop {
        let left = std::process::Command::new("pgrep")
            .args(["-f", &dir])
            .output()
            .expect("pgrep");
        if left.stdout.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "left running: {}",
            String::from_utf8_lossy(&left.stdout)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_server_stopped_gracefully_hands_its_leases_over_at_once() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let etcd = etcd(&tmp.path().join("etcd"), 1);
    let url = etcd.store_url();
    let s0 = server(&tmp.path().join("s0"), &url, 1, None);
    let token = tmp.path().join("s0").join("server-token");
    let s1 = server(&tmp.path().join("s1"), &url, 1, Some(&token));
    let (id0, id1) = (identity(&s0), identity(&s1));
    s1.eventually(20, "s0 to lead", || {
        (holder(&s1, "kube-controller-manager") == id0).then_some(())
    });
    let status = std::process::Command::new("kill")
        .args(["-TERM", &s0.child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let stopped = Instant::now();
    s1.eventually(20, "s1 to lead", || {
        (holder(&s1, "kube-controller-manager") == id1).then_some(())
    });
    // The lease is 6 s; a released one is taken at the next try (1 s retry period).
    assert!(
        stopped.elapsed() < Duration::from_secs(4),
        "handed over in {:?}",
        stopped.elapsed()
    );
    for lease in ["kube-scheduler", "shoal-simulated-nodes"] {
        s1.eventually(10, "the other Leases", || (holder(&s1, lease) == id1).then_some(()));
    }
}
