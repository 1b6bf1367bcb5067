//! A local etcd cluster of child processes on loopback ports: for `shoal up --ha` and for
//! tests that kill and restart members. Uses the `etcd` binary on `PATH` (or `$SHOAL_ETCD`).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::etcd::{EtcdOptions, EtcdStore};
use crate::{Error, Result, Store};

/// One member: its ports and, while it runs, its process.
#[derive(Debug)]
struct Member {
    name: String,
    client: u16,
    peer: u16,
    child: Option<Child>,
}

/// Members started by [`LocalEtcd::start`]; every member still running is killed on drop.
#[derive(Debug)]
pub struct LocalEtcd {
    dir: PathBuf,
    binary: PathBuf,
    members: Vec<Member>,
}

/// A loopback port nobody listens on now.
fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl LocalEtcd {
    /// Starts `size` members with their data under `dir` (kept across restarts, so a member
    /// restarted after a kill rejoins with what it had). A cluster started in `dir` before is
    /// started again on the same ports (`dir/ports`).
    pub fn start(dir: &Path, size: usize) -> std::io::Result<LocalEtcd> {
        let binary = std::env::var_os("SHOAL_ETCD").map_or_else(|| PathBuf::from("etcd"), PathBuf::from);
        std::fs::create_dir_all(dir)?;
        // A cluster started here before keeps its ports: its members know each other by them.
        let saved: Vec<(u16, u16)> = std::fs::read_to_string(dir.join("ports"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let (c, p) = l.split_once(' ')?;
                Some((c.parse().ok()?, p.parse().ok()?))
            })
            .collect();
        let fresh = saved.len() != size;
        let mut members = Vec::new();
        for i in 0..size {
            let (client, peer) = match saved.get(i) {
                Some(&ports) if !fresh => ports,
                _ => (free_port()?, free_port()?),
            };
            members.push(Member {
                name: format!("etcd-{i}"),
                client,
                peer,
                child: None,
            });
        }
        let mut cluster = LocalEtcd {
            dir: dir.to_path_buf(),
            binary,
            members,
        };
        // A port picked as free may have been taken since (tests start clusters in
        // parallel): when a member exits at once, all start again, on new ports if they
        // were new ones.
        for attempt in 0..4 {
            if attempt > 0 {
                for i in 0..size {
                    cluster.kill(i);
                    if fresh {
                        let _ = std::fs::remove_dir_all(dir.join(&cluster.members[i].name));
                        cluster.members[i].client = free_port()?;
                        cluster.members[i].peer = free_port()?;
                    }
                }
            }
            let ports: Vec<String> = cluster
                .members
                .iter()
                .map(|m| format!("{} {}\n", m.client, m.peer))
                .collect();
            std::fs::write(dir.join("ports"), ports.concat())?;
            for i in 0..size {
                cluster.restart(i)?;
            }
            std::thread::sleep(Duration::from_millis(300));
            let exited = cluster
                .members
                .iter_mut()
                .any(|m| m.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(Some(_)))));
            if !exited {
                break;
            }
        }
        Ok(cluster)
    }

    /// Client URLs of every member.
    pub fn endpoints(&self) -> Vec<String> {
        (0..self.members.len()).map(|i| self.endpoint(i)).collect()
    }

    /// Client URL of member `i`.
    pub fn endpoint(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.members[i].client)
    }

    /// The `--store` URL that names every member: `etcd://127.0.0.1:P1,127.0.0.1:P2,...`.
    pub fn store_url(&self) -> String {
        let hosts: Vec<String> = self.members.iter().map(|m| format!("127.0.0.1:{}", m.client)).collect();
        format!("etcd://{}", hosts.join(","))
    }

    /// The process id of member `i`, while it runs.
    pub fn pid(&self, i: usize) -> Option<u32> {
        self.members[i].child.as_ref().map(Child::id)
    }

    /// Kills member `i` with SIGKILL and reaps it.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts member `i` again (or for the first time) on its ports and data directory.
    pub fn restart(&mut self, i: usize) -> std::io::Result<()> {
        self.kill(i);
        let m = &self.members[i];
        let data = self.dir.join(&m.name);
        let log = std::fs::File::create(self.dir.join(format!("{}.log", m.name)))?;
        let initial_cluster: Vec<String> = self
            .members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer))
            .collect();
        let client = format!("http://127.0.0.1:{}", m.client);
        let peer = format!("http://127.0.0.1:{}", m.peer);
        let child = Command::new(&self.binary)
            .arg("--name")
            .arg(&m.name)
            .arg("--data-dir")
            .arg(&data)
            .args(["--listen-client-urls", &client, "--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &initial_cluster.join(",")])
            .args(["--initial-cluster-state", "new", "--initial-cluster-token", "shoal"])
            .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
            .args(["--logger", "zap", "--log-outputs", "stderr"])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .map_err(|e| std::io::Error::new(e.kind(), format!("starting {}: {e}", self.binary.display())))?;
        self.members[i].child = Some(child);
        Ok(())
    }

    /// The member that leads the cluster now, as the running members report it.
    pub async fn leader(&self) -> Option<usize> {
        for i in 0..self.members.len() {
            if self.members[i].child.is_none() {
                continue;
            }
            let options = etcd_client::ConnectOptions::new().with_connect_timeout(Duration::from_secs(1));
            let Ok(Ok(mut client)) = tokio::time::timeout(
                Duration::from_secs(2),
                etcd_client::Client::connect([self.endpoint(i)], Some(options)),
            )
            .await
            else {
                continue;
            };
            let Ok(Ok(status)) = tokio::time::timeout(Duration::from_secs(2), client.status()).await else {
                continue;
            };
            if status.leader() == 0 {
                continue;
            }
            if status.header().map(|h| h.member_id()) == Some(status.leader()) {
                return Some(i);
            }
        }
        None
    }

    /// Waits until the members that run answer a linearizable read (so a quorum has a
    /// leader), or fails after `timeout` with the last error.
    pub async fn wait_ready(&self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let running: Vec<String> = (0..self.members.len())
            .filter(|&i| self.members[i].child.is_some())
            .map(|i| self.endpoint(i))
            .collect();
        loop {
            let mut options = EtcdOptions::new(running.clone());
            options.timeout = Duration::from_secs(2);
            let attempt = match EtcdStore::connect(options).await {
                Ok(store) => store.check().await,
                Err(e) => Err(e),
            };
            match attempt {
                Ok(()) => return Ok(()),
                Err(e) if Instant::now() >= deadline => {
                    return Err(Error::Backend(format!("local etcd did not become ready: {e}")));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }
}

impl Drop for LocalEtcd {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
    }
}
