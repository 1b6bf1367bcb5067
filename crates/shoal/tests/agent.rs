//! Real nodes: `shoal server` and two `shoal agent --runtime process` on 127.0.0.2 and
//! 127.0.0.3, driven with the real kubectl. Daemon pods are real processes here.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::Cluster;

/// A running agent; killed (with every container it started) when dropped.
struct Agent {
    child: Option<Child>,
    dir: PathBuf,
    _tmp: tempfile::TempDir,
}

impl Agent {
    fn start(c: &Cluster, name: &str, ip: &str) -> Agent {
        Agent::start_with(c, name, ip, "process")
    }

    fn start_with(c: &Cluster, name: &str, ip: &str, runtime: &str) -> Agent {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().to_path_buf();
        Agent {
            child: Some(Agent::spawn(c, name, ip, &dir, runtime)),
            dir,
            _tmp: tmp,
        }
    }

    /// Stops the agent and starts it again on the same data dir.
    fn restart(&mut self, c: &Cluster, name: &str, ip: &str) {
        self.kill();
        self.child = Some(Agent::spawn(c, name, ip, &self.dir, "process"));
    }

    fn spawn(c: &Cluster, name: &str, ip: &str, dir: &Path, runtime: &str) -> Child {
        Command::new(env!("CARGO_BIN_EXE_shoal"))
            .args(["agent", "--server", &format!("https://{}", c.addr()), "--token-file"])
            .arg(c.dir.join("node-token"))
            .args([
                "--node-name",
                name,
                "--node-ip",
                ip,
                "--port",
                "0",
                "--runtime",
                runtime,
            ])
            .arg("--data-dir")
            .arg(dir)
            // SHOAL_AGENT_LOG=debug shows what the agents do.
            .env(
                "SHOAL_LOG",
                std::env::var("SHOAL_AGENT_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn shoal agent")
    }

    /// The pid of the running process of the (only) container run `run` of this node's pods
    /// whose container is `container`.
    fn pids(&self, container: &str) -> Vec<u32> {
        let mut out = Vec::new();
        for pod in std::fs::read_dir(self.dir.join("pods")).into_iter().flatten().flatten() {
            let runs = pod.path().join("containers").join(container);
            for run in std::fs::read_dir(runs).into_iter().flatten().flatten() {
                let pid = std::fs::read_to_string(run.path().join("pid"))
                    .ok()
                    .and_then(|p| p.trim().parse::<u32>().ok());
                if let Some(pid) = pid.filter(|p| alive(*p)) {
                    out.push(pid);
                }
            }
        }
        out
    }

    /// Kills the agent alone (its containers run on, as they do when an agent crashes).
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill();
        for pod in std::fs::read_dir(self.dir.join("pods")).into_iter().flatten().flatten() {
            for c in std::fs::read_dir(pod.path().join("containers"))
                .into_iter()
                .flatten()
                .flatten()
            {
                for run in std::fs::read_dir(c.path()).into_iter().flatten().flatten() {
                    let pid = std::fs::read_to_string(run.path().join("pid"))
                        .ok()
                        .and_then(|p| p.trim().parse::<u32>().ok())
                        .filter(|p| *p > 1);
                    if let Some(pid) = pid {
                        let _ = Command::new("kill").args(["-9", "--", &format!("-{pid}")]).status();
                    }
                }
            }
        }
    }
}

fn alive(pid: u32) -> bool {
    // A zombie is not alive: its parent (the shim) has not reaped it yet.
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit(')')
            .next()
            .is_some_and(|rest| !rest.trim_start().starts_with('Z'))
    })
}

fn daemonset(name: &str, host: &Path, grace: u32) -> String {
    let host = host.display();
    format!(
        r#"apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: {name}
spec:
  selector:
    matchLabels: {{app: {name}}}
  template:
    metadata:
      labels: {{app: {name}}}
    spec:
      terminationGracePeriodSeconds: {grace}
      containers:
      - name: agent
        image: busybox:1.36
        command: ["sh", "-c"]
        args:
        - |
          trap 'echo SIGTERM > {host}/$(NODE).term; exit 0' TERM
          echo "running on $(NODE)"
          echo "hello from $NODE" > {host}/$NODE.txt
          while true; do echo tick; sleep 0.2; done
        env:
        - name: NODE
          valueFrom: {{fieldRef: {{fieldPath: spec.nodeName}}}}
        - name: POD_IP
          valueFrom: {{fieldRef: {{fieldPath: status.podIP}}}}
        volumeMounts:
        - {{name: host, mountPath: {host}}}
        readinessProbe:
          exec: {{command: ["test", "-f", "{host}/ready"]}}
          periodSeconds: 1
          failureThreshold: 1
        livenessProbe:
          exec: {{command: ["sh", "-c", "if [ -f {host}/$NODE.sick ]; then rm {host}/$NODE.sick; exit 1; fi"]}}
          periodSeconds: 1
          failureThreshold: 1
      volumes:
      - name: host
        hostPath: {{path: {host}, type: DirectoryOrCreate}}
"#
    )
}

/// The pod of DaemonSet `app` on `node`: (name, ready, restartCount).
fn pod_on(c: &Cluster, app: &str, node: &str) -> Option<(String, bool, u32)> {
    let out = c.kubectl(&[
        "get",
        "pods",
        "-l",
        &format!("app={app}"),
        "--field-selector",
        &format!("spec.nodeName={node}"),
        "-o",
        "jsonpath={range .items[*]}{.metadata.name} {.status.containerStatuses[0].ready} {.status.containerStatuses[0].restartCount} {.metadata.deletionTimestamp}{\"\\n\"}{end}",
    ]);
    let line = out.lines().find(|l| !l.trim().is_empty())?;
    let f: Vec<&str> = line.split_whitespace().collect();
    Some((
        f.first()?.to_string(),
        f.get(1) == Some(&"true"),
        f.get(2)?.parse().ok()?,
    ))
}

fn wait_ready(c: &Cluster, app: &str, node: &str, restarts: u32) -> String {
    c.eventually(60, &format!("{app} ready on {node} with {restarts} restarts"), || {
        pod_on(c, app, node)
            .filter(|(_, ready, r)| *ready && *r == restarts)
            .map(|p| p.0)
    })
}

#[test]
fn daemon_pods_run_as_processes_on_real_nodes() {
    let c = Cluster::server_with(&["--node-monitor-grace-period", "6s"]);
    let host_tmp = tempfile::tempdir().expect("tempdir");
    let host = host_tmp.path().join("host");
    std::fs::create_dir_all(&host).expect("host dir");
    std::fs::write(host.join("ready"), "").expect("ready file");

    // A token for another cluster's CA is refused before anything is sent.
    let wrong = host_tmp.path().join("wrong-token");
    let token = std::fs::read_to_string(c.dir.join("node-token")).expect("node-token");
    std::fs::write(&wrong, format!("SHOAL10{}{}", "0".repeat(64), &token[7 + 64..])).expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_shoal"))
        .args(["agent", "--server", &format!("https://{}", c.addr()), "--token-file"])
        .arg(&wrong)
        .args([
            "--node-name",
            "bogus",
            "--node-ip",
            "127.0.0.4",
            "--port",
            "0",
            "--data-dir",
        ])
        .arg(host_tmp.path().join("bogus"))
        .output()
        .expect("run agent");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is not the one in the join token"), "{err}");

    let mut a = Agent::start(&c, "edge-a", "127.0.0.2");
    let mut b = Agent::start(&c, "edge-b", "127.0.0.3");
    c.eventually(30, "both nodes Ready", || {
        let out = c.kubectl(&["get", "nodes", "-o", "wide", "--no-headers"]);
        let ready = out
            .lines()
            .filter(|l| l.split_whitespace().nth(1) == Some("Ready"))
            .count();
        (ready == 2 && out.contains("127.0.0.2") && out.contains("127.0.0.3") && out.contains("process://"))
            .then_some(())
    });
    assert!(c.kubectl(&["get", "nodes"]).contains("bogus").eq(&false));

    // Another machine (another data dir, so another node password) cannot take a name.
    let out = Command::new(env!("CARGO_BIN_EXE_shoal"))
        .args(["agent", "--server", &format!("https://{}", c.addr()), "--token-file"])
        .arg(c.dir.join("node-token"))
        .args([
            "--node-name",
            "edge-a",
            "--node-ip",
            "127.0.0.4",
            "--port",
            "0",
            "--data-dir",
        ])
        .arg(host_tmp.path().join("impostor"))
        .output()
        .expect("run agent");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("has already joined from another machine"), "{err}");

    // One real process per node.
    c.kubectl_in(&["apply", "-f", "-"], Some(&daemonset("loop", &host, 10)));
    let pa = wait_ready(&c, "loop", "edge-a", 0);
    let pb = wait_ready(&c, "loop", "edge-b", 0);
    let (ra, rb) = (a.pids("agent"), b.pids("agent"));
    assert_eq!((ra.len(), rb.len()), (1, 1), "one process per node: {ra:?} {rb:?}");
    assert_ne!(ra, rb);
    let ds = c.kubectl(&["get", "ds", "loop", "--no-headers"]);
    assert_eq!(
        ds.split_whitespace().take(6).collect::<Vec<_>>(),
        ["loop", "2", "2", "2", "2", "2"],
        "{ds}"
    );
    let ip = c.kubectl(&["get", "pod", &pa, "-o", "jsonpath={.status.podIP} {.status.hostIP}"]);
    assert_eq!(ip, "127.0.0.2 127.0.0.2", "host network");

    // Logs through the API server, with the fieldRef value; the hostPath received a file.
    let logs = c.kubectl(&["logs", &pa]);
    assert!(logs.starts_with("running on edge-a\ntick\n"), "{logs}");
    assert_eq!(c.kubectl(&["logs", &pb, "--tail", "1"]), "tick\n");
    assert_eq!(
        std::fs::read_to_string(host.join("edge-a.txt")).expect("hostPath file"),
        "hello from edge-a\n"
    );
    let followed = c.kubectl_output(&["logs", &pa, "-f", "--tail", "1", "--request-timeout", "2s"], None);
    assert!(
        String::from_utf8_lossy(&followed.stdout).matches("tick").count() >= 3,
        "follow streams new lines"
    );

    // Exec in the container's environment, with its exit code and stdin.
    assert_eq!(
        c.kubectl(&["exec", &pa, "--", "sh", "-c", "echo $NODE $HOSTNAME $POD_IP"]),
        "edge-a edge-a 127.0.0.2\n"
    );
    let failed = c.kubectl_output(&["exec", &pb, "--", "sh", "-c", "echo out; exit 3"], None);
    assert_eq!(failed.status.code(), Some(3));
    assert_eq!(String::from_utf8_lossy(&failed.stdout), "out\n");
    assert_eq!(
        c.kubectl_in(&["exec", "-i", &pa, "--", "cat"], Some("through stdin\n")),
        "through stdin\n"
    );

    // With -it the command gets a terminal (`script` gives kubectl one).
    if Command::new("script")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        let cache = host_tmp.path().join("kubectl-cache");
        let line = format!(
            "kubectl --cache-dir {} exec -it {pa} -- sh -c 'tty; echo cols=$(stty size)'",
            cache.display()
        );
        let out = Command::new("script")
            .args(["-qec", &line, "/dev/null"])
            .env("KUBECONFIG", c.kubeconfig())
            .stdin(Stdio::null())
            .output()
            .expect("script");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{text}");
        assert!(text.contains("/dev/pts/"), "a terminal: {text}");
    }

    // A killed process restarts at once and is Ready again; its last run is kept.
    let _ = Command::new("kill").args(["-9", &ra[0].to_string()]).status();
    let pa = wait_ready(&c, "loop", "edge-a", 1);
    let last = c.kubectl(&[
        "get",
        "pod",
        &pa,
        "-o",
        "jsonpath={.status.containerStatuses[0].lastState.terminated.exitCode}",
    ]);
    assert_eq!(last, "137");
    assert!(
        c.kubectl(&["logs", &pa, "--previous"])
            .starts_with("running on edge-a\n")
    );
    assert_ne!(a.pids("agent"), ra);

    // Restart policies: a crashing container backs off; a Never pod ends Succeeded.
    let pods = "apiVersion: v1\nkind: Pod\nmetadata: {name: crasher}\nspec:\n  nodeName: edge-a\n  containers:\n  - {name: c, image: busybox, command: [sh, -c, 'echo boom; exit 1']}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: once}\nspec:\n  nodeName: edge-a\n  restartPolicy: Never\n  containers:\n  - {name: c, image: busybox, command: [sh, -c, 'echo done']}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: imageonly}\nspec:\n  nodeName: edge-b\n  containers:\n  - {name: c, image: nginx}\n";
    c.kubectl_in(&["apply", "-f", "-"], Some(pods));
    let inits = format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: withinit}}\nspec:\n  nodeName: edge-b\n  initContainers:\n  - {{name: prep, image: busybox, command: [sh, -c, 'sleep 2; echo prepared > {host}/init.txt']}}\n  containers:\n  - {{name: c, image: busybox, command: [sh, -c, 'cat {host}/init.txt; exec sleep 1000']}}\n---\napiVersion: v1\nkind: Pod\nmetadata: {{name: initfail}}\nspec:\n  nodeName: edge-b\n  restartPolicy: Never\n  initContainers:\n  - {{name: prep, image: busybox, command: [sh, -c, 'exit 2']}}\n  containers:\n  - {{name: c, image: busybox, command: [sh, -c, 'echo never']}}\n",
        host = host.display()
    );
    c.kubectl_in(&["apply", "-f", "-"], Some(&inits));
    c.eventually(30, "withinit initializing", || {
        c.kubectl(&["get", "pod", "withinit", "--no-headers"])
            .contains("Init:0/1")
            .then_some(())
    });
    c.eventually(30, "withinit running", || {
        (c.kubectl(&[
            "get",
            "pod",
            "withinit",
            "-o",
            "jsonpath={.status.phase} {.status.initContainerStatuses[0].state.terminated.reason}",
        ]) == "Running Completed")
            .then_some(())
    });
    assert_eq!(c.kubectl(&["logs", "withinit"]), "prepared\n");
    c.eventually(30, "initfail Failed", || {
        let out = c.kubectl(&["get", "pod", "initfail", "--no-headers"]);
        out.contains("Init:Error").then_some(())
    });
    assert_eq!(
        c.kubectl(&["get", "pod", "initfail", "-o", "jsonpath={.status.phase}"]),
        "Failed"
    );
    c.kubectl(&["delete", "pod", "withinit", "initfail", "--wait=false"]);
    c.eventually(30, "CrashLoopBackOff", || {
        let out = c.kubectl(&["get", "pod", "crasher", "--no-headers"]);
        out.contains("CrashLoopBackOff").then_some(())
    });
    let crashed = c.kubectl(&["get", "pod", "crasher", "-o", "jsonpath={.status.containerStatuses[0].lastState.terminated.exitCode} {.status.containerStatuses[0].state.waiting.message}"]);
    assert!(
        crashed.starts_with("1 back-off 10s restarting failed container=c pod=crasher_default("),
        "{crashed}"
    );
    assert_eq!(c.kubectl(&["logs", "crasher"]), "boom\n");
    c.eventually(30, "once Succeeded", || {
        (c.kubectl(&["get", "pod", "once", "-o", "jsonpath={.status.phase}"]) == "Succeeded").then_some(())
    });
    assert_eq!(c.kubectl(&["logs", "once"]), "done\n");
    let waiting = c.eventually(30, "imageonly waiting", || {
        let w = c.kubectl(&["get", "pod", "imageonly", "-o", "jsonpath={.status.containerStatuses[0].state.waiting.reason}: {.status.containerStatuses[0].state.waiting.message}"]);
        w.starts_with("CreateContainerConfigError").then_some(w)
    });
    assert!(waiting.contains("set spec.containers[].command"), "{waiting}");

    // Restarting the agent leaves healthy containers running.
    let before = a.pids("agent");
    a.restart(&c, "edge-a", "127.0.0.2");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(a.pids("agent"), before, "same process after the agent restarted");
    assert_eq!(wait_ready(&c, "loop", "edge-a", 1), pa);
    assert_eq!(c.kubectl(&["exec", &pa, "--", "sh", "-c", "echo $NODE"]), "edge-a\n");
    let once = c.kubectl(&[
        "get",
        "pod",
        "once",
        "-o",
        "jsonpath={.status.phase} {.status.containerStatuses[0].restartCount}",
    ]);
    assert_eq!(
        once, "Succeeded 0",
        "a finished Never pod is not run again by a restarted agent"
    );
    c.kubectl(&["delete", "pod", "crasher", "once", "imageonly", "--wait=false"]);

    // Readiness follows the probe, without restarts.
    std::fs::remove_file(host.join("ready")).expect("rm ready");
    c.eventually(30, "pods unready", || {
        let (a1, b1) = (pod_on(&c, "loop", "edge-a")?, pod_on(&c, "loop", "edge-b")?);
        (!a1.1 && !b1.1).then_some(())
    });
    assert_eq!(
        c.kubectl(&["get", "ds", "loop", "-o", "jsonpath={.status.numberReady}"]),
        "0"
    );
    std::fs::write(host.join("ready"), "").expect("ready file");
    wait_ready(&c, "loop", "edge-a", 1);
    wait_ready(&c, "loop", "edge-b", 0);

    // A failing liveness probe restarts the container (the probe fails once: it removes
    // the file that makes it fail).
    std::fs::write(host.join("edge-b.sick"), "").expect("sick file");
    let pb = wait_ready(&c, "loop", "edge-b", 1);
    assert!(!host.join("edge-b.sick").exists());

    // The kubelet's events tell the story, as upstream's do.
    let events = c.kubectl(&[
        "get",
        "events",
        "--field-selector",
        &format!("involvedObject.name={pb}"),
        "-o",
        "jsonpath={range .items[*]}{.reason}|{.source.component}|{.source.host}|{.message}{\"\\n\"}{end}",
    ]);
    for want in [
        "Started|kubelet|edge-b|Started container agent",
        "Unhealthy|kubelet|edge-b|Liveness probe failed: ",
        "Killing|kubelet|edge-b|Container agent failed liveness probe, will be restarted",
    ] {
        assert!(events.lines().any(|l| l.starts_with(want)), "{want:?} in {events}");
    }

    // A node's credential may touch its own pods only.
    let creds: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(a.dir.join("credentials.json")).expect("credentials"))
            .expect("json");
    let node_token = creds["token"].as_str().expect("token");
    let as_node = |args: &[&str]| {
        let mut full = vec!["--token", node_token];
        full.extend_from_slice(args);
        c.kubectl_output(&full, None)
    };
    let patch = r#"{"status":{"conditions":[{"type":"Ready","status":"False"}]}}"#;
    let refused = as_node(&[
        "patch",
        "pod",
        &pb,
        "--subresource",
        "status",
        "--type",
        "merge",
        "-p",
        patch,
    ]);
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        err.contains("(Forbidden)") && err.contains("system:node:edge-a"),
        "{err}"
    );
    let refused = as_node(&["label", "node", "edge-b", "x=y"]);
    assert!(String::from_utf8_lossy(&refused.stderr).contains("cannot modify node 'edge-b'"));
    assert!(as_node(&["get", "pods"]).status.success(), "nodes read pods");
    let own = as_node(&["annotate", "node", "edge-a", "shoal.dev/test=1"]);
    assert!(own.status.success(), "{}", String::from_utf8_lossy(&own.stderr));

    // Drain evicts other pods; daemon pods stay.
    let sleeper = "apiVersion: v1\nkind: Pod\nmetadata: {name: sleeper}\nspec:\n  nodeName: edge-a\n  terminationGracePeriodSeconds: 2\n  containers:\n  - {name: s, image: busybox, command: [sleep, '1000']}\n";
    c.kubectl_in(&["apply", "-f", "-"], Some(sleeper));
    c.eventually(30, "sleeper running", || {
        (c.kubectl(&["get", "pod", "sleeper", "-o", "jsonpath={.status.phase}"]) == "Running").then_some(())
    });
    let drained = c.kubectl(&["drain", "edge-a", "--ignore-daemonsets", "--force", "--timeout", "30s"]);
    assert!(drained.contains("node/edge-a drained"), "{drained}");
    assert!(c.kubectl_err(&["get", "pod", "sleeper"], None).contains("NotFound"));
    assert_eq!(pod_on(&c, "loop", "edge-a").map(|p| p.0).as_deref(), Some(pa.as_str()));
    assert_eq!(
        c.kubectl(&["get", "node", "edge-a", "-o", "jsonpath={.spec.unschedulable}"]),
        "true"
    );
    c.kubectl(&["uncordon", "edge-a"]);

    // Deleting the DaemonSet ends the processes with SIGTERM within the grace period.
    let (ra, rb) = (a.pids("agent"), b.pids("agent"));
    c.kubectl(&["delete", "ds", "loop", "--wait=false"]);
    c.eventually(10, "pods gone", || {
        c.kubectl(&["get", "pods", "-l", "app=loop", "-o", "name"])
            .is_empty()
            .then_some(())
    });
    for node in ["edge-a", "edge-b"] {
        assert_eq!(
            std::fs::read_to_string(host.join(format!("{node}.term"))).expect("SIGTERM seen"),
            "SIGTERM\n"
        );
    }
    assert!(ra.iter().chain(&rb).all(|p| !alive(*p)), "processes ended");

    // An agent that stops heartbeating: its node goes NotReady and is tainted unreachable;
    // its daemon pod stays (daemon pods tolerate it).
    c.kubectl_in(&["apply", "-f", "-"], Some(&daemonset("stay", &host, 2)));
    let pb = wait_ready(&c, "stay", "edge-b", 0);
    wait_ready(&c, "stay", "edge-a", 0);
    b.kill();
    c.eventually(60, "edge-b NotReady and tainted", || {
        let out = c.kubectl(&[
            "get",
            "node",
            "edge-b",
            "-o",
            "jsonpath={.spec.taints[*].key} {.status.conditions[?(@.type==\"Ready\")].status}",
        ]);
        (out.contains("node.kubernetes.io/unreachable") && out.ends_with("Unknown")).then_some(())
    });
    assert!(c.kubectl(&["get", "nodes"]).contains("NotReady"));
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(pod_on(&c, "loop", "edge-b"), None);
    let stayed = c.kubectl(&[
        "get",
        "pod",
        &pb,
        "-o",
        "jsonpath={.metadata.name} {.metadata.deletionTimestamp}",
    ]);
    assert_eq!(stayed.trim(), pb, "the daemon pod stays, not being deleted");

    // The agent comes back: the node is Ready and untainted again, and its pod runs on.
    b.restart(&c, "edge-b", "127.0.0.3");
    c.eventually(60, "edge-b Ready and untainted", || {
        let out = c.kubectl(&[
            "get",
            "node",
            "edge-b",
            "-o",
            "jsonpath={.spec.taints[*].key} {.status.conditions[?(@.type==\"Ready\")].status}",
        ]);
        (out.trim() == "True").then_some(())
    });
    assert_eq!(wait_ready(&c, "stay", "edge-b", 0), pb);
}

#[test]
fn an_agent_with_the_simulated_runtime_runs_nothing() {
    let c = Cluster::server_with(&[]);
    let _agent = Agent::start_with(&c, "sim-a", "127.0.0.5", "simulated");
    c.eventually(30, "node Ready", || {
        let out = c.kubectl(&["get", "nodes", "-o", "wide", "--no-headers"]);
        (out.contains(" Ready ") && out.contains("shoal-simulated://")).then_some(())
    });
    // No command is needed: nothing runs.
    let ds = "apiVersion: apps/v1\nkind: DaemonSet\nmetadata: {name: web}\nspec:\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec:\n      containers:\n      - {name: nginx, image: nginx:1.27}\n";
    c.kubectl_in(&["apply", "-f", "-"], Some(ds));
    let pod = c.eventually(30, "pod ready", || {
        pod_on(&c, "web", "sim-a").filter(|p| p.1).map(|p| p.0)
    });
    assert_eq!(c.kubectl(&["logs", &pod]), "");
    let err = c.kubectl_err(&["exec", &pod, "--", "true"], None);
    assert!(err.contains("cannot run commands"), "{err}");
    // Nor is there a port to forward to (the node's loopback is not the pod's).
    let err = c.kubectl_err(&["port-forward", &pod, "8080"], None);
    assert!(err.contains("there is no port to forward to"), "{err}");
    c.kubectl(&["delete", "ds", "web"]);
    c.eventually(30, "pod gone", || {
        c.kubectl(&["get", "pods", "-o", "name"]).is_empty().then_some(())
    });
}

/// Also a regression test: the StatefulSet is deleted the moment its container writes the
/// file, which on a starved machine is before the shim has written the container's pid;
/// the agent's SIGTERM then was lost and the pod stayed Terminating for good.
#[test]
fn claims_of_pods_on_real_nodes_live_in_the_agent_data_dir() {
    let c = Cluster::server_with(&[]);
    let agent = Agent::start(&c, "edge-s", "127.0.0.6");
    c.eventually(30, "node Ready", || {
        (c.kubectl(&[
            "get",
            "node",
            "edge-s",
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
        ]) == "True")
            .then_some(())
    });
    let mount = tempfile::tempdir().expect("tempdir");
    let at = mount.path().join("data");
    let sts = format!(
        "apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {{name: db}}\nspec:\n  serviceName: db\n  replicas: 1\n  selector: {{matchLabels: {{app: db}}}}\n  template:\n    metadata: {{labels: {{app: db}}}}\n    spec:\n      containers:\n      - name: db\n        image: postgres\n        command: [sh, -c, 'echo stored > {at}/file; exec sleep 1000']\n        volumeMounts: [{{name: data, mountPath: {at}}}]\n  volumeClaimTemplates:\n  - metadata: {{name: data}}\n    spec: {{accessModes: [ReadWriteOnce], resources: {{requests: {{storage: 1Gi}}}}}}\n",
        at = at.display()
    );
    c.kubectl_in(&["apply", "-f", "-"], Some(&sts));
    c.eventually(60, "db-0 ready", || {
        pod_on(&c, "db", "edge-s").filter(|p| p.1).map(|_| ())
    });
    assert_eq!(
        c.kubectl(&[
            "get",
            "pvc",
            "data-db-0",
            "-o",
            "jsonpath={.status.phase} {.spec.storageClassName}"
        ]),
        "Bound local-path"
    );
    let path = c.kubectl(&["get", "pv", "-o", "jsonpath={.items[0].spec.hostPath.path}"]);
    assert!(
        path.starts_with(&agent.dir.join("storage").display().to_string()),
        "{path}"
    );
    c.eventually(30, "the file in the volume", || {
        (std::fs::read_to_string(std::path::Path::new(&path).join("file")).ok()? == "stored\n").then_some(())
    });
    // The volume is bound at its mount path inside the container's own mount namespace:
    // the node's tree has an empty mount point there, neither a link nor the file.
    assert!(std::fs::read_link(&at).is_err(), "no link on the node's tree");
    assert!(
        !at.join("file").exists(),
        "the volume is not visible on the node at its mount path"
    );
    c.kubectl(&["delete", "sts", "db"]);
    let mut gone = false;
    for _ in 0..120 {
        if c.kubectl(&["get", "pods", "-o", "name"]).is_empty() {
            gone = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    if !gone {
        // What the cluster shows, for the one who debugs it.
        let state = c.kubectl(&["get", "pods,sts,controllerrevisions,pvc,events", "-o", "yaml"]);
        panic!("the pod is not gone a minute after its StatefulSet was deleted:\n{state}");
    }
}

/// A free TCP port on the loopback (for a process the test starts).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// Starts `kubectl ARGS` (with `env`) in the background and returns it with the first
/// stdout line.
fn background(c: &Cluster, args: &[&str], env: &[(&str, &str)]) -> (Child, String) {
    use std::io::BufRead;
    let mut child = c
        .kubectl_cmd(args)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl");
    let mut first = String::new();
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = std::io::BufReader::new(stdout);
    lines.read_line(&mut first).expect("first line");
    // Keep draining so kubectl never blocks on a full pipe.
    std::thread::spawn(move || {
        let mut sink = String::new();
        while lines.read_line(&mut sink).is_ok_and(|n| n > 0) {
            sink.clear();
        }
    });
    (child, first)
}

/// The local port of kubectl's `Forwarding from 127.0.0.1:PORT -> N` line.
fn forwarded_port(line: &str) -> u16 {
    line.split("127.0.0.1:")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no local port in {line:?}"))
}

fn echo_once(port: u16, text: &str) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(20)))?;
    s.write_all(text.as_bytes())?;
    let mut got = vec![0u8; text.len()];
    s.read_exact(&mut got)?;
    Ok(String::from_utf8_lossy(&got).into_owned())
}

/// The echo through `pf`, or a panic with what kubectl said.
fn echo_through(pf: &mut Option<Child>, port: u16, text: &str) -> String {
    match echo_once(port, text) {
        Ok(s) => s,
        Err(e) => {
            let child = pf.take().expect("port-forward");
            let mut child = child;
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "{e}: kubectl port-forward said {}",
                String::from_utf8_lossy(&out.stderr)
            )
        }
    }
}

#[test]
fn port_forward_and_attach_reach_pods_on_real_nodes() {
    let c = Cluster::server_with(&[]);
    let _agent = Agent::start(&c, "edge-p", "127.0.0.7");
    c.eventually(30, "node Ready", || {
        (c.kubectl(&[
            "get",
            "node",
            "edge-p",
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
        ]) == "True")
            .then_some(())
    });
    // An echo server on the pod's localhost, saying what it hears on stdout.
    let port = free_port();
    let server = format!(
        "import socket,sys\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\ns.bind(('127.0.0.1',{port}))\ns.listen(8)\nprint('listening',flush=True)\nwhile True:\n  c,_=s.accept()\n  while True:\n    d=c.recv(65536)\n    if not d: break\n    print('heard',len(d),flush=True)\n    c.sendall(d)\n  c.close()\n"
    );
    let pod = serde_json::json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "echo"},
        "spec": {"nodeName": "edge-p", "containers": [{"name": "srv", "image": "python", "command": ["python3", "-u", "-c", server]}]},
    });
    c.kubectl_in(&["apply", "-f", "-"], Some(&pod.to_string()));
    c.eventually(60, "echo listening", || {
        c.kubectl(&["logs", "echo"]).contains("listening").then_some(())
    });

    // Two connections through one forward, and more than one frame's worth of data.
    let (pf, line) = background(&c, &["port-forward", "pod/echo", &format!(":{port}")], &[]);
    let mut pf = Some(pf);
    let local = forwarded_port(&line);
    assert!(line.ends_with(&format!(" -> {port}\n")), "{line}");
    assert_eq!(echo_through(&mut pf, local, "ping\n"), "ping\n");
    let big: String = (0..200_000)
        .map(|i| char::from(b'a' + u8::try_from(i % 26).unwrap_or(0)))
        .collect();
    assert_eq!(echo_through(&mut pf, local, &big), big);

    // Attach sees what the container prints from then on.
    let (mut attach, _) = {
        let mut child = c
            .kubectl_cmd(&["attach", "echo", "-c", "srv"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kubectl attach");
        std::thread::sleep(Duration::from_secs(2));
        assert_eq!(echo_through(&mut pf, local, "attached?\n"), "attached?\n");
        std::thread::sleep(Duration::from_secs(1));
        let _ = child.kill();
        let out = child.wait_with_output().expect("attach output");
        (out, ())
    };
    let seen = String::from_utf8_lossy(&attach.stdout).into_owned();
    assert!(
        seen.contains("heard 10"),
        "attach saw: {seen:?} {}",
        String::from_utf8_lossy(&attach.stderr)
    );
    assert!(
        !seen.contains("listening"),
        "attach shows output from the moment it attached: {seen:?}"
    );
    attach.stdout.clear();
    if let Some(mut pf) = pf {
        let _ = pf.kill();
        let _ = pf.wait();
    }

    // The legacy SPDY upgrade (kubectl before 1.31, or with WebSockets turned off).
    let (spdy_pf, line) = background(
        &c,
        &["port-forward", "pod/echo", &format!(":{port}")],
        &[("KUBECTL_PORT_FORWARD_WEBSOCKETS", "false")],
    );
    let mut spdy_pf = Some(spdy_pf);
    let local = forwarded_port(&line);
    assert_eq!(echo_through(&mut spdy_pf, local, &big), big);
    assert_eq!(echo_through(&mut spdy_pf, local, "again\n"), "again\n");
    if let Some(mut pf) = spdy_pf {
        let _ = pf.kill();
        let _ = pf.wait();
    }

    // A port nobody listens on: the kubelet's error reaches kubectl.
    let closed = free_port();
    let (mut pf, line) = background(&c, &["port-forward", "pod/echo", &format!(":{closed}")], &[]);
    let local = forwarded_port(&line);
    {
        use std::io::Read;
        let mut s = std::net::TcpStream::connect(("127.0.0.1", local)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(20))).expect("timeout");
        let mut buf = [0u8; 16];
        assert_eq!(s.read(&mut buf).unwrap_or(0), 0, "the connection closes");
    }
    std::thread::sleep(Duration::from_millis(500));
    let _ = pf.kill();
    let out = pf.wait_with_output().expect("port-forward output");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("error forwarding port {closed} to pod echo, uid ")),
        "{err}"
    );

    // Attaching stdin: the client is told its input goes nowhere.
    let mut child = c
        .kubectl_cmd(&["attach", "-i", "echo", "-c", "srv"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl attach -i");
    std::thread::sleep(Duration::from_secs(2));
    let _ = child.kill();
    let out = child.wait_with_output().expect("attach -i output");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("input is dropped"), "{said}");
}

/// A pod on a real node that lists the pods of its namespace with the official Python
/// client's in-cluster configuration (the projected token, `ca.crt`, `namespace` and
/// `KUBERNETES_SERVICE_*`); it prints what it got.
fn in_cluster_pod(name: &str, account: &str) -> String {
    let script = "import sys\nfrom kubernetes import client, config\nconfig.load_incluster_config()\nbase = '/var/run/secrets/kubernetes.io/serviceaccount/'\nns = open(base + 'namespace').read()\ntry:\n    pods = client.CoreV1Api().list_namespaced_pod(ns)\n    print('LISTED', ns, ' '.join(sorted(p.metadata.name for p in pods.items)))\nexcept client.exceptions.ApiException as e:\n    print('REFUSED', e.status, e.body)\n";
    let pythonpath = std::env::var("PYTHONPATH").unwrap_or_default();
    serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "serviceAccountName": account,
            "restartPolicy": "Never",
            "nodeSelector": {"kubernetes.io/hostname": "edge-t"},
            "containers": [{
                "name": "client", "image": "python",
                "command": ["python3", "-c", script],
                "env": [{"name": "PYTHONPATH", "value": pythonpath}],
            }],
        },
    })
    .to_string()
}

#[test]
fn pods_on_real_nodes_use_the_api_with_their_service_account() {
    let c = Cluster::server_with(&[]);
    let _agent = Agent::start(&c, "edge-t", "127.0.0.7");
    c.eventually(30, "node Ready", || {
        (c.kubectl(&[
            "get",
            "node",
            "edge-t",
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
        ]) == "True")
            .then_some(())
    });
    c.kubectl(&["create", "serviceaccount", "reader"]);
    let finished = |pod: &str| {
        c.eventually(90, &format!("{pod} finished"), || {
            let phase = c.kubectl(&["get", "pod", pod, "-o", "jsonpath={.status.phase}"]);
            if phase == "Failed" {
                panic!("{pod} failed: {}", c.kubectl(&["logs", pod]));
            }
            (phase == "Succeeded").then(|| c.kubectl(&["logs", pod]))
        })
    };

    // Without a binding the account may not list pods: upstream's 403.
    c.kubectl_in(&["apply", "-f", "-"], Some(&in_cluster_pod("before", "reader")));
    let out = finished("before");
    assert!(out.starts_with("REFUSED 403"), "{out}");
    assert!(
        out.contains(r#"pods is forbidden: User \"system:serviceaccount:default:reader\" cannot list resource \"pods\" in API group \"\" in the namespace \"default\""#),
        "{out}"
    );

    // With `view` in its namespace it lists them.
    c.kubectl(&[
        "create",
        "rolebinding",
        "reader-view",
        "--clusterrole=view",
        "--serviceaccount=default:reader",
    ]);
    c.kubectl_in(&["apply", "-f", "-"], Some(&in_cluster_pod("after", "reader")));
    let out = finished("after");
    assert_eq!(out.trim(), "LISTED default after before");

    // The volume the ServiceAccount admission plugin added, as upstream names it.
    let volume = c.kubectl(&["get", "pod", "after", "-o", "jsonpath={.spec.volumes[0].name}"]);
    assert!(volume.starts_with("kube-api-access-"), "{volume}");
    let mount = c.kubectl(&[
        "get",
        "pod",
        "after",
        "-o",
        "jsonpath={.spec.containers[0].volumeMounts[0].mountPath} {.spec.containers[0].volumeMounts[0].readOnly}",
    ]);
    assert_eq!(mount, "/var/run/secrets/kubernetes.io/serviceaccount true");
    // Nothing of it is on the node's own tree.
    assert!(!std::path::Path::new("/var/run/secrets/kubernetes.io/serviceaccount/token").exists());
}

/// The Job features on a real node (`shoal agent --runtime process`), whose pods are real
/// processes that exit with the codes their commands choose: per-index retries
/// (`backoffLimitPerIndex`, upstream's "should execute all indexes despite some failing"
/// with a shell that fails the odd indexes), a pod-failure policy that fails the Job on an
/// exit code, and the tracking finalizer: a Job's running pod deleted under
/// `podReplacementPolicy: Failed` ends Failed on the node, is counted, and goes.
#[test]
fn jobs_run_to_their_ends_on_a_real_node() {
    let c = Cluster::server_with(&[]);
    let _agent = Agent::start(&c, "edge-j", "127.0.0.7");
    c.eventually(30, "node Ready", || {
        (c.kubectl(&[
            "get",
            "node",
            "edge-j",
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
        ]) == "True")
            .then_some(())
    });
    let job = |name: &str, spec: &str, command: &str| {
        format!(
            "apiVersion: batch/v1\nkind: Job\nmetadata: {{name: {name}}}\nspec:\n{spec}  template:\n    spec:\n      restartPolicy: Never\n      terminationGracePeriodSeconds: 1\n      containers:\n      - name: main\n        image: busybox\n        command: [sh, -c, '{command}']\n"
        )
    };
    c.kubectl_in(
        &["apply", "-f", "-"],
        Some(&job(
            "odd-fail",
            "  completionMode: Indexed\n  completions: 4\n  parallelism: 2\n  backoffLimitPerIndex: 1\n",
            "exit $((JOB_COMPLETION_INDEX % 2))",
        )),
    );
    c.kubectl_in(
        &["apply", "-f", "-"],
        Some(&job(
            "policy",
            "  backoffLimit: 6\n  podFailurePolicy:\n    rules: [{action: FailJob, onExitCodes: {containerName: main, operator: In, values: [42]}}]\n",
            "exit 42",
        )),
    );
    c.kubectl_in(
        &["apply", "-f", "-"],
        Some(&job(
            "held",
            "  completions: 1\n  podReplacementPolicy: Failed\n",
            "exec sleep 1000",
        )),
    );
    let status = |name: &str| -> serde_json::Value {
        let j: serde_json::Value = serde_json::from_str(&c.kubectl(&["get", "job", name, "-o", "json"])).expect("JSON");
        j["status"].clone()
    };
    let ended = |name: &str, kind: &str| {
        c.eventually(120, &format!("{name} {kind}"), || {
            let s = status(name);
            s["conditions"]
                .as_array()?
                .iter()
                .find(|x| x["type"] == kind && x["status"] == "True")
                .map(|x| (x["reason"].as_str().unwrap_or_default().to_string(), s.clone()))
        })
    };

    // The held Job's pod: running, with the tracking finalizer; deleted, it ends Failed on
    // the node (SIGTERM), is counted, loses the finalizer and goes; a new one replaces it.
    let first = c.eventually(60, "held's pod running", || {
        let l: serde_json::Value =
            serde_json::from_str(&c.kubectl(&["get", "pods", "-l", "job-name=held", "-o", "json"])).ok()?;
        let p = l["items"]
            .as_array()?
            .iter()
            .find(|p| p["status"]["phase"] == "Running")?
            .clone();
        Some(p)
    });
    assert!(
        first["metadata"]["finalizers"]
            .as_array()
            .is_some_and(|f| f.iter().any(|x| x == "batch.kubernetes.io/job-tracking")),
        "{first}"
    );
    let name = first["metadata"]["name"].as_str().expect("name").to_string();
    c.kubectl(&["delete", "pod", &name, "--wait=true", "--timeout=60s"]);
    c.eventually(60, "the deleted pod counted as failed and replaced", || {
        let s = status("held");
        let l: serde_json::Value =
            serde_json::from_str(&c.kubectl(&["get", "pods", "-l", "job-name=held", "-o", "json"])).ok()?;
        let others = l["items"]
            .as_array()?
            .iter()
            .any(|p| p["metadata"]["name"] != name.as_str());
        (s["failed"] == 1 && others).then_some(())
    });

    let (reason, s) = ended("odd-fail", "Failed");
    assert_eq!(reason, "FailedIndexes");
    assert_eq!(
        (
            &s["failedIndexes"],
            &s["completedIndexes"],
            &s["failed"],
            &s["succeeded"]
        ),
        (&"1,3".into(), &"0,2".into(), &4.into(), &2.into()),
        "{s}"
    );
    let (reason, s) = ended("policy", "Failed");
    assert_eq!(reason, "PodFailurePolicy");
    assert_eq!(s["failed"], 1, "{s}");
    c.kubectl(&["delete", "job", "held", "--wait=true", "--timeout=60s"]);
    c.eventually(60, "held's pods gone", || {
        c.kubectl(&["get", "pods", "-l", "job-name=held", "-o", "name"])
            .is_empty()
            .then_some(())
    });
}
