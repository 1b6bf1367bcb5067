//! Test harness: a real `shoal up` process on a free loopback port, driven by the real
//! `kubectl` on PATH.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The longest one kubectl invocation may take in a test.
const KUBECTL_TIMEOUT: Duration = Duration::from_secs(60);

/// A running cluster; killed when dropped.
pub struct Cluster {
    pub child: Child,
    /// The line shoal printed once ready.
    pub ready_line: String,
    pub dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    cache: tempfile::TempDir,
}

impl Cluster {
    /// `shoal up --nodes N` in a fresh data dir.
    pub fn up(nodes: u32) -> Cluster {
        Cluster::up_with(nodes, &[])
    }

    /// `shoal up --nodes N EXTRA...` in a fresh data dir.
    pub fn up_with(nodes: u32, extra: &[&str]) -> Cluster {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().to_path_buf();
        let mut c = Cluster::start_with(&dir, nodes, extra);
        c._tmp = Some(tmp);
        c
    }

    /// `shoal up` on an existing data dir (restarts keep the cluster).
    pub fn start_in(dir: &Path, nodes: u32) -> Cluster {
        Cluster::start_with(dir, nodes, &[])
    }

    /// `shoal up --nodes N EXTRA...` in `dir` (which the caller keeps).
    pub fn up_in(dir: &Path, nodes: u32, extra: &[&str]) -> Cluster {
        Cluster::start_with(dir, nodes, extra)
    }

    /// `shoal server EXTRA...` (control plane only) in a fresh data dir.
    pub fn server_with(extra: &[&str]) -> Cluster {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().to_path_buf();
        let mut c = Cluster::launch(&["server", "--listen", "127.0.0.1:0", "--data-dir"], &dir, extra, None);
        c._tmp = Some(tmp);
        c
    }

    /// `shoal up --nodes N` in a fresh data dir, its log (stderr) going to `log`.
    pub fn up_logging_to(nodes: u32, log: &Path) -> Cluster {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().to_path_buf();
        let nodes = nodes.to_string();
        let file = std::fs::File::create(log).expect("log file");
        let mut c = Cluster::launch(
            &["up", "--listen", "127.0.0.1:0", "--nodes", &nodes, "--data-dir"],
            &dir,
            &[],
            Some(file),
        );
        c._tmp = Some(tmp);
        c
    }

    fn start_with(dir: &Path, nodes: u32, extra: &[&str]) -> Cluster {
        let nodes = nodes.to_string();
        Cluster::launch(
            &["up", "--listen", "127.0.0.1:0", "--nodes", &nodes, "--data-dir"],
            dir,
            extra,
            None,
        )
    }

    fn launch(args: &[&str], dir: &Path, extra: &[&str], log: Option<std::fs::File>) -> Cluster {
        let mut child = Command::new(env!("CARGO_BIN_EXE_shoal"))
            .args(args)
            .arg(dir)
            // Tests run in parallel: each cluster's DNS takes a free port.
            .args(["--cluster-dns", "127.0.0.1:0"])
            .args(extra)
            // SHOAL_SERVER_LOG=debug (or a filter) shows what the server does.
            .env(
                "SHOAL_LOG",
                std::env::var("SHOAL_SERVER_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::piped())
            .stderr(log.map_or_else(Stdio::inherit, Stdio::from))
            .spawn()
            .expect("spawn shoal");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        let ready_line = loop {
            let line = rx
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .expect("shoal printed no ready line");
            if line.contains("ready") {
                break line;
            }
        };
        Cluster {
            child,
            ready_line,
            dir: dir.to_path_buf(),
            _tmp: None,
            cache: tempfile::tempdir().expect("tempdir"),
        }
    }

    /// The kubeconfig path.
    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.join("kubeconfig")
    }

    /// A kubectl command for this cluster (own discovery cache).
    pub fn kubectl_cmd(&self, args: &[&str]) -> Command {
        // SHOAL_TEST_KUBECTL picks another kubectl binary (e.g. an older or newer minor).
        let mut cmd = Command::new(std::env::var_os("SHOAL_TEST_KUBECTL").unwrap_or_else(|| "kubectl".into()));
        // Global flags first: what follows `--` (exec) belongs to the command.
        cmd.arg("--cache-dir")
            .arg(self.cache.path())
            .args(args)
            .env("KUBECONFIG", self.kubeconfig());
        cmd
    }

    /// Runs kubectl; returns its output whatever the exit code.
    pub fn kubectl_output(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut cmd = self.kubectl_cmd(args);
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("kubectl on PATH");
        if let Some(input) = stdin {
            use std::io::Write;
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(input.as_bytes())
                .expect("write stdin");
        }
        drop(child.stdin.take());
        // Read both pipes on threads so a chatty kubectl never blocks; a kubectl that hangs
        // (e.g. `delete` waiting for an object that never goes) fails the test instead of
        // stalling it.
        let read = |pipe: Option<Box<dyn std::io::Read + Send>>| {
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                if let Some(mut p) = pipe {
                    let _ = p.read_to_end(&mut buf);
                }
                buf
            })
        };
        let stdout = read(
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
        );
        let stderr = read(
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
        );
        let deadline = Instant::now() + KUBECTL_TIMEOUT;
        let status = loop {
            if let Some(status) = child.try_wait().expect("kubectl wait") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("kubectl {args:?} did not finish within {KUBECTL_TIMEOUT:?}");
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        Output {
            status,
            stdout: stdout.join().unwrap_or_default(),
            stderr: stderr.join().unwrap_or_default(),
        }
    }

    /// Runs kubectl and returns stdout; panics with stderr on failure.
    pub fn kubectl(&self, args: &[&str]) -> String {
        self.kubectl_in(args, None)
    }

    /// Runs kubectl with `stdin`; returns stdout; panics on failure.
    pub fn kubectl_in(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.kubectl_output(args, stdin);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs kubectl expecting failure; returns stderr.
    pub fn kubectl_err(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.kubectl_output(args, stdin);
        assert!(
            !out.status.success(),
            "kubectl {args:?} unexpectedly succeeded: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// Retries `f` until it returns Some, or panics after `secs`.
    pub fn eventually<T>(&self, secs: u64, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(v) = f() {
                return v;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The server address from the kubeconfig.
    pub fn addr(&self) -> std::net::SocketAddr {
        let k = std::fs::read_to_string(self.kubeconfig()).expect("kubeconfig");
        let server = k
            .lines()
            .find_map(|l| l.trim().strip_prefix("server: https://"))
            .expect("server line");
        server.parse().expect("socket address")
    }

    /// Kills the server with SIGKILL.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.kill9();
    }
}
