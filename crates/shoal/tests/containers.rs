//! Real containers (`shoal agent --runtime oci`), as a user meets them, with nothing from
//! the internet: an image built here from Debian's static busybox, written as an OCI image
//! layout and copied by Debian's `skopeo` into Debian's `docker-registry`; `shoal server`
//! and two agents, each in a network namespace this test makes (a "lan" bridge inside the
//! server's namespace joins them), so every packet stays inside namespaces the test made.
//!
//! Needs root, iproute2, util-linux, nftables, `docker-registry`, `skopeo` and
//! `busybox-static`. On a
//! machine without them the test says why and passes, unless `SHOAL_REQUIRE_ROOT_TESTS` is
//! set (CI sets it: there it must run).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Why this machine cannot run the test, if it cannot.
fn missing() -> Option<String> {
    if !std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
    {
        return Some("not root".into());
    }
    for tool in ["docker-registry", "skopeo", "ip", "nsenter", "nft", "kubectl"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !found {
            return Some(format!("{tool} is not installed"));
        }
    }
    if !Path::new("/bin/busybox").exists() {
        return Some("/bin/busybox (busybox-static) is not installed".into());
    }
    None
}

fn sh(cmd: &str) -> std::process::Output {
    Command::new("sh").args(["-c", cmd]).output().expect("sh")
}

fn ok(cmd: &str) {
    let out = sh(cmd);
    assert!(
        out.status.success(),
        "{cmd}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The namespaces, processes and files of one test; all removed on drop. The "lan" is
/// 172.31.77.0/24, clear of the cluster's pod networks (10.42.0.0/16, 10.64.0.0/10) and
/// Services (10.43.0.0/16).
struct Lab {
    tag: String,
    dir: tempfile::TempDir,
    children: Vec<(String, Child)>,
}

const SRV: &str = "172.31.77.1";

impl Lab {
    fn new() -> Lab {
        // Tests of this file run at once: each lab has its own namespaces.
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tag = format!("s{}x{n}", std::process::id() % 100_000);
        let lab = Lab {
            tag,
            dir: tempfile::tempdir().expect("tempdir"),
            children: Vec::new(),
        };
        let t = &lab.tag;
        for n in ["srv", "a", "b"] {
            ok(&format!("ip netns add {t}-{n} && ip -n {t}-{n} link set lo up"));
        }
        ok(&format!(
            "ip -n {t}-srv link add lan0 type bridge && ip -n {t}-srv addr add {SRV}/24 dev lan0 && ip -n {t}-srv link set lan0 up"
        ));
        for (n, ip) in [("a", "172.31.77.2"), ("b", "172.31.77.3")] {
            ok(&format!(
                "ip link add {t}{n}0 netns {t}-srv type veth peer name eth0 netns {t}-{n} && \
                 ip -n {t}-srv link set {t}{n}0 master lan0 up && \
                 ip -n {t}-{n} addr add {ip}/24 dev eth0 && ip -n {t}-{n} link set eth0 up"
            ));
        }
        lab
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    /// Starts `args` in the network namespace `ns` (`srv`, `a`, `b`). With nsenter, not
    /// `ip netns exec`, which would hide the node's cgroups under a fresh `/sys`.
    fn spawn(&mut self, name: &str, ns: &str, args: &[&str]) {
        let log = std::fs::File::create(self.path(&format!("{name}.log"))).expect("log");
        let child = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}-{ns}", self.tag))
            .arg("--")
            .args(args)
            .env("SHOAL_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn");
        self.children.push((name.into(), child));
    }

    fn kill(&mut self, name: &str) {
        if let Some(pos) = self.children.iter().position(|(n, _)| n == name) {
            let (_, mut c) = self.children.remove(pos);
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// kubectl in the server's namespace.
    fn kubectl(&self, args: &[&str]) -> std::process::Output {
        Command::new("ip")
            .args(["netns", "exec", &format!("{}-srv", self.tag), "kubectl", "--kubeconfig"])
            .arg(self.path("server/kubeconfig"))
            .args(args)
            .output()
            .expect("kubectl")
    }

    fn kubectl_ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            out.status.success(),
            "kubectl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn apply(&self, yaml: &str) {
        let mut child = Command::new("ip")
            .args(["netns", "exec", &format!("{}-srv", self.tag), "kubectl", "--kubeconfig"])
            .arg(self.path("server/kubeconfig"))
            .args(["apply", "-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kubectl");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(yaml.as_bytes())
            .expect("write");
        let out = child.wait_with_output().expect("kubectl");
        assert!(out.status.success(), "apply: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// Waits until `f` gives `Some`, or fails with what the agents logged.
    fn eventually<T>(&self, what: &str, secs: u64, mut f: impl FnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(v) = f() {
                return v;
            }
            if Instant::now() > deadline {
                // SHOAL_LAB_HOLD=SECS keeps the namespaces and processes up for a look.
                if let Some(secs) = std::env::var("SHOAL_LAB_HOLD").ok().and_then(|s| s.parse().ok()) {
                    eprintln!("holding the lab {} for {secs} s", self.tag);
                    std::thread::sleep(Duration::from_secs(secs));
                }
                let logs: String = ["a", "b"]
                    .iter()
                    .map(|n| std::fs::read_to_string(self.path(&format!("agent-{n}.log"))).unwrap_or_default())
                    .collect();
                let pods = self.kubectl(&["get", "pods", "-A", "-o", "wide"]);
                let events = self.kubectl(&["get", "events", "-A"]);
                panic!(
                    "timed out waiting for {what}\npods:\n{}\nevents:\n{}\nagent logs (tail):\n{}",
                    String::from_utf8_lossy(&pods.stdout),
                    String::from_utf8_lossy(&events.stdout),
                    logs.lines().rev().take(40).collect::<Vec<_>>().join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    fn start_agent(&mut self, n: &str, ip: &str) {
        let dir = self.path(&format!("agent-{n}"));
        std::fs::create_dir_all(&dir).expect("agent dir");
        // Every image comes from the test's registry (k3s's \"*\" mirror).
        std::fs::write(
            dir.join("registries.yaml"),
            format!("mirrors:\n  \"*\":\n    endpoint: [\"http://{SRV}:5000\"]\n"),
        )
        .expect("registries.yaml");
        let (server, token, data) = (
            format!("https://{SRV}:6443"),
            self.path("server/node-token").display().to_string(),
            dir.display().to_string(),
        );
        self.spawn(
            &format!("agent-{n}"),
            n,
            &[
                env!("CARGO_BIN_EXE_shoal"),
                "agent",
                "--server",
                &server,
                "--token-file",
                &token,
                "--node-name",
                n,
                "--node-ip",
                ip,
                "--port",
                "0",
                "--runtime",
                "oci",
                "--data-dir",
                &data,
            ],
        );
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for (_, c) in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        // Every process in the test's namespaces, and the sandboxes and shims (in the pods'
        // own namespaces), found by the test's directory on their command lines.
        for n in ["a", "b", "srv"] {
            let _ = sh(&format!("ip netns pids {t}-{n} | xargs -r kill -9", t = self.tag));
        }
        let _ = sh(&format!("pkill -9 -f '{}/agent-'", self.dir.path().display()));
        std::thread::sleep(Duration::from_millis(300));
        for n in ["a", "b", "srv"] {
            let _ = sh(&format!("ip netns del {t}-{n}", t = self.tag));
        }
    }
}

/// Writes an OCI image layout at `dir` holding busybox (with its applets as links) and an
/// `/etc/passwd`, tagged `tag`.
fn busybox_layout(dir: &Path, tag: &str, version: &str, cmd: &[&str]) {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).expect("blobs");
    let put = |bytes: &[u8]| -> String {
        let hex: String = ring::digest::digest(&ring::digest::SHA256, bytes)
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        std::fs::write(blobs.join(&hex), bytes).expect("blob");
        format!("sha256:{hex}")
    };
    let mut layer = tar::Builder::new(Vec::new());
    let mut add = |path: &str, kind: tar::EntryType, mode: u32, data: &[u8], link: Option<&str>| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_700_000_000);
        h.set_size(data.len() as u64);
        if let Some(l) = link {
            h.set_link_name(l).expect("link");
        }
        h.set_cksum();
        layer.append_data(&mut h, path, data).expect("append");
    };
    for d in ["bin", "etc", "tmp", "var", "root"] {
        add(d, tar::EntryType::Directory, 0o755, b"", None);
    }
    let busybox = std::fs::read("/bin/busybox").expect("busybox");
    add("bin/busybox", tar::EntryType::Regular, 0o755, &busybox, None);
    for applet in [
        "sh", "sleep", "cat", "echo", "ls", "wget", "httpd", "nc", "hostname", "ps", "id", "head", "touch", "env",
        "mount", "grep", "dd", "tr", "nslookup",
    ] {
        add(
            &format!("bin/{applet}"),
            tar::EntryType::Symlink,
            0o777,
            b"",
            Some("busybox"),
        );
    }
    add(
        "etc/version",
        tar::EntryType::Regular,
        0o644,
        format!("{version}\n").as_bytes(),
        None,
    );
    add(
        "etc/passwd",
        tar::EntryType::Regular,
        0o644,
        b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/sh\n",
        None,
    );
    let raw = layer.into_inner().expect("tar");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&raw).expect("gzip");
    let gz = gz.finish().expect("gzip");
    let diff = put(&raw);
    std::fs::remove_file(blobs.join(diff.trim_start_matches("sha256:"))).expect("rm");
    let layer_digest = put(&gz);
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Env": ["PATH=/bin"], "Cmd": cmd},
        "rootfs": {"type": "layers", "diff_ids": [diff]},
    })
    .to_string();
    let config_digest = put(config.as_bytes());
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer_digest, "size": gz.len()}],
    })
    .to_string();
    let manifest_digest = put(manifest.as_bytes());
    let index = serde_json::json!({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": manifest_digest, "size": manifest.len(),
        "annotations": {"org.opencontainers.image.ref.name": tag}}]});
    std::fs::write(dir.join("index.json"), index.to_string()).expect("index");
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).expect("layout");
}

fn pods_of(lab: &Lab, selector: &str) -> Vec<serde_json::Value> {
    let out = lab.kubectl(&["get", "pods", "-l", selector, "-o", "json"]);
    serde_json::from_slice::<serde_json::Value>(&out.stdout)
        .ok()
        .and_then(|v| v["items"].as_array().cloned())
        .unwrap_or_default()
}

fn running_on_both(lab: &Lab, selector: &str) -> Option<Vec<serde_json::Value>> {
    let pods = pods_of(lab, selector);
    (pods.len() == 2
        && pods
            .iter()
            .all(|p| p["status"]["phase"] == "Running" && p["status"]["containerStatuses"][0]["ready"] == true))
    .then_some(pods)
}

fn daemonset(name: &str, image: &str, volume: &str, command: &str, extra: &str) -> String {
    format!(
        r#"apiVersion: apps/v1
kind: DaemonSet
metadata: {{name: {name}}}
spec:
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: main
        image: {image}
        command: ["sh", "-c", {command:?}]
        volumeMounts: [{{name: v, mountPath: /data}}]{extra}
      volumes: [{volume}]
"#
    )
}

/// Whether this machine can run the container tests; says why not (or fails under
/// `SHOAL_REQUIRE_ROOT_TESTS`).
fn can_run() -> bool {
    if let Some(why) = missing() {
        assert!(
            std::env::var_os("SHOAL_REQUIRE_ROOT_TESTS").is_none(),
            "SHOAL_REQUIRE_ROOT_TESTS is set but this machine cannot run the container tests: {why}"
        );
        eprintln!("skipped: {why}");
        return false;
    }
    true
}

/// A lab with its registry (holding `images`: (layout, tag in it, repository:tag)), the
/// server and two Ready agents `a` and `b`.
fn cluster(images: &[(&str, &str, &str)]) -> Lab {
    let mut lab = Lab::new();
    // The registry and its images (under the names the pods use, mirrored).
    let registry_cfg = lab.path("registry.yml");
    std::fs::write(
        &registry_cfg,
        format!(
            "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {SRV}:5000\n",
            lab.path("registry").display()
        ),
    )
    .expect("registry config");
    let cfg = registry_cfg.display().to_string();
    lab.spawn("registry", "srv", &["docker-registry", "serve", &cfg]);
    busybox_layout(&lab.path("layout"), "1.36", "1", &["sh"]);
    busybox_layout(&lab.path("layout2"), "2", "2", &["sh"]);
    // An image that serves (HTTP on 8080) with no command given, for the seeds' manifests.
    busybox_layout(
        &lab.path("app"),
        "app",
        "app",
        &["httpd", "-f", "-p", "8080", "-h", "/etc"],
    );
    let data = lab.path("server").display().to_string();
    lab.spawn(
        "server",
        "srv",
        &[
            env!("CARGO_BIN_EXE_shoal"),
            "server",
            "--listen",
            &format!("{SRV}:6443"),
            "--cluster-dns",
            &format!("{SRV}:10053"),
            "--data-dir",
            &data,
        ],
    );
    let t = lab.tag.clone();
    for (dir, tag, name) in images {
        let copy = format!(
            "ip netns exec {t}-srv skopeo copy --quiet --dest-tls-verify=false oci:{}:{tag} docker://{SRV}:5000/{name}",
            lab.path(dir).display()
        );
        lab.eventually(&format!("pushing {name}"), 30, || {
            sh(&copy).status.success().then_some(())
        });
    }
    lab.eventually("the server", 30, || {
        lab.path("server/node-token").exists().then_some(())
    });
    lab.start_agent("a", "172.31.77.2");
    lab.start_agent("b", "172.31.77.3");
    lab.eventually("two Ready nodes", 60, || {
        let out = lab.kubectl(&["get", "nodes", "--no-headers"]);
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        (text.lines().filter(|l| l.contains(" Ready ")).count() == 2).then_some(())
    });
    let runtime = lab.kubectl_ok(&[
        "get",
        "nodes",
        "-o",
        "jsonpath={.items[*].status.nodeInfo.containerRuntimeVersion}",
    ]);
    assert_eq!(runtime, "shoal-oci://0.1.0 shoal-oci://0.1.0");

    lab
}

#[test]
fn images_run_isolated_with_pod_networking() {
    if !can_run() {
        return;
    }
    let mut lab = cluster(&[
        ("layout", "1.36", "library/busybox:1.36"),
        ("layout", "1.36", "library/nginx:latest"),
        ("layout2", "2", "library/busybox:2"),
    ]);
    let t = lab.tag.clone();
    // Two DaemonSets mount different volumes at the same path on the same nodes.
    lab.apply(&daemonset(
        "one",
        "busybox:1.36",
        "{name: v, emptyDir: {}}",
        "echo one > /data/who; exec httpd -f -p 8080 -h /data",
        // Ready once an HTTP probe to the pod's address answers.
        "\n        readinessProbe: {httpGet: {path: /who, port: 8080}, periodSeconds: 1}",
    ));
    lab.apply(&daemonset(
        "two",
        "nginx",
        "{name: v, hostPath: {path: /tmp/shoal-containers-test-two, type: DirectoryOrCreate}}",
        "echo two > /data/who; exec sleep 3600",
        "",
    ));
    let one = lab.eventually("DaemonSet one running on both nodes", 90, || {
        running_on_both(&lab, "app=one")
    });
    lab.eventually("DaemonSet two running on both nodes", 90, || {
        running_on_both(&lab, "app=two")
    });
    for (selector, want) in [("app=one", "one"), ("app=two", "two")] {
        for p in pods_of(&lab, selector) {
            let name = p["metadata"]["name"].as_str().expect("name").to_string();
            let got = lab.kubectl_ok(&["exec", &name, "--", "cat", "/data/who"]);
            assert_eq!(got.trim(), want, "{name} sees its own volume at /data");
        }
    }
    // Isolated: the container is pid 1 of its own process table, its host name is the
    // pod's, its root is the image's.
    let pod_a = one.iter().find(|p| p["spec"]["nodeName"] == "a").expect("a pod on a");
    let name_a = pod_a["metadata"]["name"].as_str().expect("name").to_string();
    let ps = lab.kubectl_ok(&["exec", &name_a, "--", "ps"]);
    assert!(
        ps.lines()
            .any(|l| l.trim_start().starts_with("1 ") && l.contains("httpd")),
        "{ps}"
    );
    assert_eq!(lab.kubectl_ok(&["exec", &name_a, "--", "hostname"]).trim(), name_a);
    assert!(
        lab.kubectl_ok(&["exec", &name_a, "--", "ls", "/"])
            .lines()
            .all(|l| l != "home" && l != "usr")
    );
    // The node's tree got no link or mount for any of it.
    assert!(!Path::new("/data/who").exists(), "a volume leaked onto the node's tree");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    assert!(
        !mounts.contains(&lab.dir.path().display().to_string()),
        "host mounts left:\n{mounts}"
    );

    // Pod addresses come from each node's podCIDR.
    let ips: Vec<(String, String)> = one
        .iter()
        .map(|p| {
            (
                p["spec"]["nodeName"].as_str().unwrap_or_default().to_string(),
                p["status"]["podIP"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    for (node, ip) in &ips {
        assert!(
            ip.starts_with("10.42."),
            "pod on {node} has {ip}, not a pod-network address"
        );
    }
    // A pod on a reaches a pod on b by pod IP (routes between the nodes), and node a its own
    // pod (through the bridge). Busybox's nc speaks the HTTP; its static wget crashes.
    let ip_a = ips.iter().find(|(n, _)| n == "a").expect("a pod on a").1.clone();
    let ip_b = ips.iter().find(|(n, _)| n == "b").expect("a pod on b").1.clone();
    let get = |ip: &str| format!("printf 'GET /who HTTP/1.0\\r\\n\\r\\n' | nc -w 2 {ip} 8080");
    let got = lab.eventually("a pod on a reaching a pod on b by pod IP", 30, || {
        let out = lab.kubectl(&["exec", &name_a, "--", "sh", "-c", &get(&ip_b)]);
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        text.contains("200 OK").then_some(text)
    });
    assert_eq!(got.lines().last().map(str::trim), Some("one"), "{got}");
    let from_node = format!(
        "ip netns exec {t}-a /bin/busybox sh -c \"{}\"",
        get(&ip_a).replace('"', "\\\"")
    );
    let got = lab.eventually("node a reaching its pod by pod IP", 30, || {
        let out = sh(&from_node);
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        text.contains("200 OK").then_some(text)
    });
    assert_eq!(got.lines().last().map(str::trim), Some("one"), "{got}");

    // Services that route: by cluster IP from a pod, and by node port on node b's address.
    lab.apply(
        r#"apiVersion: v1
kind: Service
metadata: {name: one}
spec:
  type: NodePort
  selector: {app: one}
  ports: [{name: http, port: 80, targetPort: 8080, nodePort: 30080}]
"#,
    );
    let cluster_ip = lab.kubectl_ok(&["get", "svc", "one", "-o", "jsonpath={.spec.clusterIP}"]);
    let through_service = |target: String| {
        let cmd = format!("printf 'GET /who HTTP/1.0\\r\\n\\r\\n' | nc -w 2 {target}");
        lab.eventually(&format!("a pod on a reaching {target}"), 30, || {
            let out = lab.kubectl(&["exec", &name_a, "--", "sh", "-c", &cmd]);
            let text = String::from_utf8_lossy(&out.stdout).to_string();
            text.contains("200 OK").then_some(text)
        })
    };
    let got = through_service(format!("{cluster_ip} 80"));
    assert_eq!(got.lines().last().map(str::trim), Some("one"), "{got}");
    let got = through_service("172.31.77.3 30080".to_string());
    assert_eq!(got.lines().last().map(str::trim), Some("one"), "{got}");

    // The Service by its DNS name, through the cluster DNS (a Service too), with the pod's
    // resolv.conf: search path and ndots:5 as upstream.
    let resolv = lab.kubectl_ok(&["exec", &name_a, "--", "cat", "/etc/resolv.conf"]);
    assert!(
        resolv.contains("search default.svc.cluster.local svc.cluster.local cluster.local")
            && resolv.contains("nameserver 10.43.0.10")
            && resolv.contains("options ndots:5"),
        "{resolv}"
    );
    // Busybox's static nc cannot resolve names (static glibc has no NSS), its nslookup can:
    // the name is resolved with the pod's resolv.conf, then the Service reached at it.
    for name in ["one.default.svc.cluster.local", "one"] {
        let answer = lab.eventually(&format!("{name} resolving in a pod"), 30, || {
            let out = lab.kubectl(&["exec", &name_a, "--", "nslookup", name]);
            let text = String::from_utf8_lossy(&out.stdout).to_string();
            text.contains(cluster_ip.as_str()).then_some(text)
        });
        assert!(answer.contains("one.default.svc.cluster.local"), "{answer}");
    }

    // Port-forward reaches the pod's own loopback (kubectl in the server's namespace).
    let mut forward = Command::new("ip")
        .args(["netns", "exec", &format!("{t}-srv"), "kubectl", "--kubeconfig"])
        .arg(lab.path("server/kubeconfig"))
        .args(["port-forward", &format!("pod/{name_a}"), "18080:8080"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("kubectl port-forward");
    let local = format!(
        "ip netns exec {t}-srv /bin/busybox sh -c \"printf 'GET /who HTTP/1.0\\r\\n\\r\\n' | /bin/busybox nc -w 2 127.0.0.1 18080\""
    );
    let got = lab.eventually("port-forward to the pod", 30, || {
        let out = sh(&local);
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        text.contains("200 OK").then_some(text)
    });
    let _ = forward.kill();
    let _ = forward.wait();
    assert_eq!(got.lines().last().map(str::trim), Some("one"), "{got}");
    // A NetworkPolicy that isolates app=one for ingress: the pod on b stops answering the
    // pod on a (by pod IP and through the Service); removed, it answers again.
    lab.apply(
        r#"apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: one-closed}
spec:
  podSelector: {matchLabels: {app: one}}
  policyTypes: [Ingress]
"#,
    );
    let ask_b = format!("printf 'GET /who HTTP/1.0\\r\\n\\r\\n' | nc -w 2 {ip_b} 8080");
    let answers = || {
        let out = lab.kubectl(&["exec", &name_a, "--", "sh", "-c", &ask_b]);
        String::from_utf8_lossy(&out.stdout).contains("200 OK")
    };
    lab.eventually("the policy to close pod b", 30, || (!answers()).then_some(()));
    std::thread::sleep(Duration::from_secs(1));
    assert!(!answers(), "the policy let a connection through");
    lab.kubectl_ok(&["delete", "networkpolicy", "one-closed"]);
    lab.eventually("pod b answering once the policy is gone", 30, || {
        answers().then_some(())
    });

    // A memory limit kills a greedy container, and the status says OOMKilled.
    lab.apply(
        r#"apiVersion: v1
kind: Pod
metadata: {name: greedy}
spec:
  nodeName: a
  restartPolicy: Never
  containers:
  - name: main
    image: busybox:1.36
    command: ["sh", "-c", "echo filling; x=$(head -c 64000000 /dev/zero | tr '\\0' a); echo survived"]
    resources: {limits: {memory: 16Mi}}
"#,
    );
    let reason = lab.eventually("the greedy pod to end", 90, || {
        let out = lab.kubectl(&[
            "get",
            "pod",
            "greedy",
            "-o",
            "jsonpath={.status.containerStatuses[0].state.terminated.reason}",
        ]);
        let r = String::from_utf8_lossy(&out.stdout).to_string();
        (!r.is_empty()).then_some(r)
    });
    assert_eq!(reason, "OOMKilled");
    let logs = lab.kubectl_ok(&["logs", "greedy"]);
    assert!(logs.contains("filling") && !logs.contains("survived"), "{logs}");

    // The agent killed with -9 and started again: containers run on, untouched.
    let before = lab.kubectl_ok(&[
        "get",
        "pod",
        &name_a,
        "-o",
        "jsonpath={.status.containerStatuses[0].restartCount}",
    ]);
    let uid_a = pod_a["metadata"]["uid"].as_str().expect("uid");
    let pid_file = lab.path(&format!("agent-a/pods/{uid_a}/containers/main/0/pid"));
    let pid = std::fs::read_to_string(&pid_file).expect("pid");
    lab.kill("agent-a");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    assert!(
        !mounts.contains(&lab.dir.path().display().to_string()),
        "host mounts left:\n{mounts}"
    );
    assert!(
        Path::new(&format!("/proc/{}", pid.trim())).exists(),
        "the container died with its agent"
    );
    lab.start_agent("a", "172.31.77.2");
    std::thread::sleep(Duration::from_secs(5));
    lab.eventually("the restarted agent's node Ready", 60, || {
        let out = lab.kubectl(&["get", "node", "a", "--no-headers"]);
        String::from_utf8_lossy(&out.stdout).contains(" Ready ").then_some(())
    });
    assert_eq!(
        std::fs::read_to_string(&pid_file).expect("pid"),
        pid,
        "the container was restarted"
    );
    let after = lab.kubectl_ok(&[
        "get",
        "pod",
        &name_a,
        "-o",
        "jsonpath={.status.containerStatuses[0].restartCount}",
    ]);
    assert_eq!(before, after);
    // The restarted agent listens on a new port; the Node says so once it has registered.
    let got = lab.eventually("exec through the restarted agent", 30, || {
        let out = lab.kubectl(&["exec", &name_a, "--", "cat", "/data/who"]);
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).to_string())
    });
    assert_eq!(got.trim(), "one", "exec still enters the container");

    // A DaemonSet rollout on real nodes pre-pulls: each node pulls the new image while its
    // old pod still serves, and the new pod starts from an image already there.
    lab.kubectl_ok(&["set", "image", "ds/one", "main=busybox:2"]);
    lab.eventually("DaemonSet one rolled out", 120, || {
        let out = lab.kubectl(&[
            "get",
            "ds",
            "one",
            "-o",
            "jsonpath={.status.updatedNumberScheduled} {.status.numberAvailable}",
        ]);
        (String::from_utf8_lossy(&out.stdout) == "2 2").then_some(())
    });
    let events = lab.kubectl_ok(&["get", "events", "-o", "json"]);
    let events: serde_json::Value = serde_json::from_str(&events).expect("events");
    let items = events["items"].as_array().cloned().unwrap_or_default();
    let prepulled = items
        .iter()
        .filter(|e| {
            e["involvedObject"]["kind"] == "DaemonSet"
                && e["involvedObject"]["name"] == "one"
                && e["reason"] == "PrePulled"
        })
        .count();
    assert_eq!(prepulled, 2, "each node pre-pulled the new image");
    for p in pods_of(&lab, "app=one") {
        let name = p["metadata"]["name"].as_str().expect("name");
        let about: Vec<&serde_json::Value> = items.iter().filter(|e| e["involvedObject"]["name"] == name).collect();
        assert!(
            about.iter().any(|e| e["reason"] == "Pulled"
                && e["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("already present on machine"))),
            "{name}: {about:?}"
        );
        assert!(
            !about.iter().any(|e| e["reason"] == "Pulling"),
            "{name} waited for a pull: {about:?}"
        );
        assert_eq!(lab.kubectl_ok(&["exec", name, "--", "cat", "/etc/version"]).trim(), "2");
    }

    // In place: only the image changes, so the pods stay (same UID and address), and their
    // container restarts once with the new image.
    let before: Vec<(String, String, String)> = pods_of(&lab, "app=two")
        .iter()
        .map(|p| {
            (
                p["metadata"]["name"].as_str().unwrap_or_default().to_string(),
                p["metadata"]["uid"].as_str().unwrap_or_default().to_string(),
                p["status"]["podIP"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    assert_eq!(before.len(), 2);
    lab.kubectl_ok(&["annotate", "ds/two", "shoal.dev/in-place-update=true"]);
    lab.kubectl_ok(&["set", "image", "ds/two", "main=busybox:2"]);
    lab.eventually("DaemonSet two updated in place", 120, || {
        let out = lab.kubectl(&[
            "get",
            "ds",
            "two",
            "-o",
            "jsonpath={.status.updatedNumberScheduled} {.status.numberAvailable}",
        ]);
        (String::from_utf8_lossy(&out.stdout) == "2 2").then_some(())
    });
    let after = pods_of(&lab, "app=two");
    for (name, uid, ip) in &before {
        let p = after
            .iter()
            .find(|p| p["metadata"]["name"] == name.as_str())
            .unwrap_or_else(|| panic!("pod {name} was replaced, not updated in place"));
        assert_eq!(p["metadata"]["uid"], uid.as_str());
        assert_eq!(p["status"]["podIP"], ip.as_str());
        assert_eq!(p["status"]["containerStatuses"][0]["restartCount"], 1, "{p}");
        assert_eq!(lab.kubectl_ok(&["exec", name, "--", "cat", "/etc/version"]).trim(), "2");
    }
    let events = lab.kubectl_ok(&[
        "get",
        "events",
        "--field-selector",
        "reason=InPlaceUpdate",
        "-o",
        "name",
    ]);
    assert_eq!(events.lines().count(), 2, "{events}");
    let _ = std::fs::remove_dir_all("/tmp/shoal-containers-test-two");
}

/// The seeds' DaemonSets (000: myweb-ds, 001: hello-openshift, 002: fluentd-elasticsearch,
/// 003: sample-ds, 004: daemonset-fluentd) on two real nodes, with the images they name
/// (ghcr.io, quay.io, Docker Hub) pulled from the test's registry, which mirrors them: the
/// same names, test-built content (a busybox that serves HTTP on 8080).
#[test]
fn the_seeds_daemonsets_run_on_real_nodes_from_mirrored_images() {
    if !can_run() {
        return;
    }
    let mirrored = [
        "c1t1d0s7/go-myweb:latest",
        "openshift/hello-openshift:latest",
        "fluentd_elasticsearch/fluentd:v2.5.2",
        "library/nginx:1.16",
        "fluent/fluentd-kubernetes-daemonset:elasticsearch",
    ];
    let images: Vec<(&str, &str, &str)> = mirrored.iter().map(|m| ("app", "app", *m)).collect();
    let lab = cluster(&images);
    // Seed 002's manifest mounts Docker's container logs from the node, as on the seed's
    // machines (which run Docker); a hostPath of no type must exist, as upstream.
    let docker_logs = Path::new("/var/lib/docker/containers");
    let made = !docker_logs.exists() && std::fs::create_dir_all(docker_logs).is_ok();
    let myweb = r#"apiVersion: apps/v1
kind: DaemonSet
metadata: {name: myweb-ds}
spec:
  selector:
    matchExpressions:
    - {key: app, operator: In, values: [myweb]}
    - {key: env, operator: Exists}
  template:
    metadata: {labels: {app: myweb, env: dev}}
    spec:
      containers:
      - name: myweb
        image: ghcr.io/c1t1d0s7/go-myweb
        ports: [{containerPort: 8080, protocol: TCP}]
"#;
    let hello = r#"apiVersion: apps/v1
kind: DaemonSet
metadata: {name: hello-openshift}
spec:
  selector: {matchLabels: {app: hello-openshift}}
  template:
    metadata: {labels: {app: hello-openshift}}
    spec:
      containers:
      - name: hello-openshift
        image: openshift/hello-openshift
        ports: [{containerPort: 8080}]
"#;
    let sample = r#"apiVersion: apps/v1
kind: DaemonSet
metadata: {name: sample-ds}
spec:
  selector: {matchLabels: {app: sample-app}}
  template:
    metadata: {labels: {app: sample-app}}
    spec:
      containers:
      - name: nginx-container
        image: nginx:1.16
"#;
    for manifest in [
        myweb,
        hello,
        include_str!("manifests/fluentd-elasticsearch.yaml"),
        sample,
        include_str!("manifests/daemonset-fluentd.yaml"),
    ] {
        lab.apply(manifest);
    }
    for (ns, name) in [
        ("default", "myweb-ds"),
        ("default", "hello-openshift"),
        ("kube-system", "fluentd-elasticsearch"),
        ("default", "sample-ds"),
        ("kube-system", "daemonset-fluentd"),
    ] {
        lab.eventually(&format!("{ns}/{name} ready on both nodes"), 120, || {
            let out = lab.kubectl(&[
                "get",
                "ds",
                name,
                "-n",
                ns,
                "-o",
                "jsonpath={.status.desiredNumberScheduled} {.status.numberReady} {.status.updatedNumberScheduled}",
            ]);
            (String::from_utf8_lossy(&out.stdout) == "2 2 2").then_some(())
        });
    }
    // Each pod runs the mirrored image, in its own network, answering on its pod IP.
    let pods = lab.kubectl_ok(&["get", "pods", "-A", "-o", "json"]);
    let pods: serde_json::Value = serde_json::from_str(&pods).expect("pods");
    let items = pods["items"].as_array().cloned().unwrap_or_default();
    assert_eq!(items.len(), 10, "five DaemonSets on two nodes");
    let t = lab.tag.clone();
    for p in &items {
        let ip = p["status"]["podIP"].as_str().unwrap_or_default();
        assert!(ip.starts_with("10.42."), "{p}");
        let node = p["spec"]["nodeName"].as_str().unwrap_or_default();
        let image_id = p["status"]["containerStatuses"][0]["imageID"]
            .as_str()
            .unwrap_or_default();
        let _ = image_id;
        let ask = format!(
            "ip netns exec {t}-{node} /bin/busybox sh -c \"printf 'GET /version HTTP/1.0\\r\\n\\r\\n' | /bin/busybox nc -w 2 {ip} 8080\""
        );
        let got = lab.eventually(&format!("{ip} answering"), 30, || {
            let out = sh(&ask);
            let text = String::from_utf8_lossy(&out.stdout).to_string();
            text.contains("200 OK").then_some(text)
        });
        assert_eq!(got.lines().last().map(str::trim), Some("app"), "{got}");
    }
    if made {
        let _ = std::fs::remove_dir(docker_logs);
    }
}
