//! Pod sandboxes: what the containers of one pod share, as upstream's pause container.
//!
//! A sandbox is a `shoal pause` process (started by the agent in a process group of its
//! own, so it outlives an agent restart) holding the pod's network, IPC and UTS
//! namespaces; each container's shim joins them. A pod that is not `hostNetwork` gets its
//! network here: a veth pair from the node's bridge `shoal0` into the sandbox, an address
//! from the node's `podCIDR` (the bridge has the first one, as gateway), a default route and
//! loopback. Addresses are leased in files (`<data dir>/net/ips/<ip>`, holding the pod's
//! uid) so a restarted agent keeps them. No namespace is ever bound onto the node's tree:
//! a sandbox is found again by the pid in `<pod dir>/sandbox/pid`.

use std::net::Ipv4Addr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

/// The bridge pods hang off.
pub const BRIDGE: &str = "shoal0";

/// The arguments of `shoal pause`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PauseArgs {
    /// A network namespace of its own.
    pub net: bool,
    /// An IPC namespace of its own.
    pub ipc: bool,
    /// A UTS namespace of its own, with this host name.
    pub hostname: Option<String>,
    /// Where to write `ready` once the namespaces exist.
    pub dir: PathBuf,
}

impl PauseArgs {
    /// `shoal pause` command-line arguments.
    pub fn to_args(&self) -> Vec<String> {
        let mut out = vec!["--dir".to_string(), self.dir.display().to_string()];
        if self.net {
            out.push("--net".into());
        }
        if self.ipc {
            out.push("--ipc".into());
        }
        if let Some(h) = &self.hostname {
            out.push("--hostname".into());
            out.push(h.clone());
        }
        out
    }

    /// Parses [`PauseArgs::to_args`].
    pub fn parse(args: &[String]) -> Result<PauseArgs, String> {
        let mut out = PauseArgs::default();
        let mut it = args.iter();
        while let Some(a) = it.next() {
            match a.as_str() {
                "--net" => out.net = true,
                "--ipc" => out.ipc = true,
                "--hostname" => out.hostname = Some(it.next().ok_or("--hostname needs a value")?.clone()),
                "--dir" => out.dir = it.next().ok_or("--dir needs a value")?.into(),
                other => return Err(format!("unknown pause argument {other:?}")),
            }
        }
        if out.dir.as_os_str().is_empty() {
            return Err("--dir is required".into());
        }
        Ok(out)
    }
}

/// `shoal pause`: makes the namespaces, says so, and sleeps until killed.
#[allow(unsafe_code)] // unshare(2) in a single-threaded process.
pub fn pause(args: &PauseArgs) -> ExitCode {
    use rustix::thread::{UnshareFlags, unshare_unsafe};
    let mut flags = UnshareFlags::empty();
    if args.net {
        flags |= UnshareFlags::NEWNET;
    }
    if args.ipc {
        flags |= UnshareFlags::NEWIPC;
    }
    if args.hostname.is_some() {
        flags |= UnshareFlags::NEWUTS;
    }
    // SAFETY: called first thing in a single-threaded process.
    if let Err(e) = unsafe { unshare_unsafe(flags) } {
        eprintln!("pause: unshare: {e}");
        return ExitCode::FAILURE;
    }
    if let Some(h) = &args.hostname
        && let Err(e) = rustix::system::sethostname(h.as_bytes())
    {
        eprintln!("pause: sethostname: {e}");
        return ExitCode::FAILURE;
    }
    if std::fs::write(args.dir.join("ready"), std::process::id().to_string()).is_err() {
        return ExitCode::FAILURE;
    }
    loop {
        std::thread::park();
    }
}

fn run(program: &str, args: &[&str]) -> Result<(), String> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("running {program}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Whether this network namespace has the link `name` (asked of the kernel: `/sys/class/net`
/// shows the namespace of whoever mounted `/sys`, which need not be this one).
fn link_exists(name: &str) -> bool {
    Command::new("ip")
        .args(["link", "show", "dev", name])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// An IPv4 network (`10.42.1.0/24`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    /// Its first address.
    pub base: Ipv4Addr,
    /// Prefix length.
    pub prefix: u8,
}

impl Cidr {
    /// Parses `a.b.c.d/n`.
    pub fn parse(s: &str) -> Result<Cidr, String> {
        let (ip, n) = s.split_once('/').ok_or_else(|| format!("{s:?} is not a CIDR"))?;
        let ip: Ipv4Addr = ip
            .parse()
            .map_err(|_| format!("{s:?}: only IPv4 pod networks are supported"))?;
        let prefix: u8 = n.parse().map_err(|_| format!("{s:?}: bad prefix"))?;
        if !(8..=30).contains(&prefix) {
            return Err(format!("{s:?}: the prefix must be /8 to /30"));
        }
        let mask = u32::MAX << (32 - prefix);
        Ok(Cidr {
            base: Ipv4Addr::from(u32::from(ip) & mask),
            prefix,
        })
    }

    /// The `i`th address.
    pub fn nth(&self, i: u32) -> Option<Ipv4Addr> {
        (i < self.size()).then(|| Ipv4Addr::from(u32::from(self.base) + i))
    }

    /// Addresses in it.
    pub fn size(&self) -> u32 {
        1u32 << (32 - self.prefix)
    }

    /// Whether `ip` is in it.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let mask = u32::MAX << (32 - self.prefix);
        u32::from(ip) & mask == u32::from(self.base)
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.base, self.prefix)
    }
}

/// The node's pod network: its bridge and its address leases.
pub struct PodNetwork {
    cidr: Cidr,
    leases: PathBuf,
}

impl PodNetwork {
    /// The network of a node whose `podCIDR` is `cidr`; makes the bridge (idempotent).
    pub fn new(cidr: Cidr, data_dir: &Path) -> Result<PodNetwork, String> {
        let leases = data_dir.join("net").join("ips");
        std::fs::create_dir_all(&leases).map_err(|e| format!("creating {}: {e}", leases.display()))?;
        let net = PodNetwork { cidr, leases };
        net.ensure_bridge()?;
        Ok(net)
    }

    /// The pod CIDR.
    pub fn cidr(&self) -> Cidr {
        self.cidr
    }

    /// The bridge's address, every pod's default gateway.
    pub fn gateway(&self) -> Ipv4Addr {
        self.cidr.nth(1).unwrap_or(self.cidr.base)
    }

    fn ensure_bridge(&self) -> Result<(), String> {
        if !link_exists(BRIDGE) {
            run("ip", &["link", "add", BRIDGE, "type", "bridge"])?;
        }
        let addr = format!("{}/{}", self.gateway(), self.cidr.prefix);
        // `replace`: the same address again is no error.
        run("ip", &["addr", "replace", &addr, "dev", BRIDGE])?;
        run("ip", &["link", "set", BRIDGE, "up"])?;
        std::fs::write("/proc/sys/net/ipv4/ip_forward", "1").map_err(|e| format!("enabling IP forwarding: {e}"))
    }

    /// The address leased to `uid`, if any.
    pub fn lease_of(&self, uid: &str) -> Option<Ipv4Addr> {
        std::fs::read_dir(&self.leases)
            .ok()?
            .flatten()
            .find(|e| std::fs::read_to_string(e.path()).is_ok_and(|u| u == uid))
            .and_then(|e| e.file_name().to_str()?.parse().ok())
    }

    fn lease(&self, uid: &str) -> Result<Ipv4Addr, String> {
        if let Some(ip) = self.lease_of(uid) {
            return Ok(ip);
        }
        // The network, the gateway and the broadcast address are never leased.
        for i in 2..self.cidr.size().saturating_sub(1) {
            let Some(ip) = self.cidr.nth(i) else { break };
            let path = self.leases.join(ip.to_string());
            let created = std::fs::OpenOptions::new().write(true).create_new(true).open(&path);
            if let Ok(mut f) = created {
                use std::io::Write;
                f.write_all(uid.as_bytes()).map_err(|e| format!("leasing {ip}: {e}"))?;
                return Ok(ip);
            }
        }
        Err(format!("no free address left in the pod network {}", self.cidr))
    }

    /// The node side of a pod's veth pair.
    fn host_side(uid: &str) -> String {
        let hex: String = uid.chars().filter(char::is_ascii_hexdigit).take(11).collect();
        format!("veth{hex}")
    }

    /// Gives the sandbox `pid` its network: a veth pair, an address, the default route.
    pub fn attach(&self, uid: &str, pid: u32) -> Result<Ipv4Addr, String> {
        let ip = self.lease(uid)?;
        let host = Self::host_side(uid);
        let pid_s = pid.to_string();
        if link_exists(&host) {
            let _ = run("ip", &["link", "del", &host]);
        }
        run(
            "ip",
            &[
                "link", "add", &host, "type", "veth", "peer", "name", "eth0", "netns", &pid_s,
            ],
        )?;
        run("ip", &["link", "set", &host, "master", BRIDGE, "up"])?;
        // A pod reaching itself through a Service comes back through its own port.
        let _ = run("ip", &["link", "set", &host, "type", "bridge_slave", "hairpin", "on"]);
        let inside = |args: &[&str]| {
            let mut all = vec!["--target", pid_s.as_str(), "--net", "--", "ip"];
            all.extend_from_slice(args);
            run("nsenter", &all)
        };
        inside(&["link", "set", "lo", "up"])?;
        inside(&["addr", "add", &format!("{ip}/{}", self.cidr.prefix), "dev", "eth0"])?;
        inside(&["link", "set", "eth0", "up"])?;
        inside(&["route", "add", "default", "via", &self.gateway().to_string()])?;
        Ok(ip)
    }

    /// Takes the pod's network away (its veth and its lease).
    pub fn detach(&self, uid: &str) {
        let host = Self::host_side(uid);
        if link_exists(&host) {
            let _ = run("ip", &["link", "del", &host]);
        }
        if let Some(ip) = self.lease_of(uid) {
            let _ = std::fs::remove_file(self.leases.join(ip.to_string()));
        }
    }

    /// Routes to the other nodes' pod networks, through their addresses (the nodes share a
    /// link); `routes` are (podCIDR, node address). Routes this node made before for nodes
    /// now gone are removed. Returns the routes in place.
    pub fn route(&self, routes: &[(Cidr, Ipv4Addr)], before: &[(Cidr, Ipv4Addr)]) -> Vec<(Cidr, Ipv4Addr)> {
        let mut done = Vec::new();
        for (cidr, via) in routes {
            if *cidr == self.cidr {
                continue;
            }
            match run("ip", &["route", "replace", &cidr.to_string(), "via", &via.to_string()]) {
                Ok(()) => done.push((*cidr, *via)),
                Err(e) => tracing::warn!(%cidr, %via, error = %e, "agent: cannot route to a node's pods"),
            }
        }
        for (cidr, _) in before.iter().filter(|(c, _)| !done.iter().any(|(d, _)| d == c)) {
            let _ = run("ip", &["route", "del", &cidr.to_string()]);
        }
        done
    }

    /// Releases leases held by pods not in `live` (gone while the agent was away).
    pub fn release_others(&self, live: &std::collections::BTreeSet<String>) {
        for e in std::fs::read_dir(&self.leases).into_iter().flatten().flatten() {
            if std::fs::read_to_string(e.path()).is_ok_and(|u| !live.contains(&u)) {
                let uid = std::fs::read_to_string(e.path()).unwrap_or_default();
                self.detach(&uid);
            }
        }
    }
}

/// A pod's sandbox, running.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sandbox {
    /// The pause process.
    pub pid: u32,
    /// The pod's address (none: the node's network).
    pub ip: Option<Ipv4Addr>,
}

fn sandbox_dir(pod_dir: &Path) -> PathBuf {
    pod_dir.join("sandbox")
}

fn pause_alive(pid: u32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .is_ok_and(|c| c.split(|b| *b == 0).nth(1).is_some_and(|arg| arg == b"pause"))
}

/// The sandbox of the pod at `pod_dir`, if its pause process runs.
pub fn find(pod_dir: &Path) -> Option<Sandbox> {
    let dir = sandbox_dir(pod_dir);
    let pid: u32 = std::fs::read_to_string(dir.join("ready")).ok()?.trim().parse().ok()?;
    if !pause_alive(pid) {
        return None;
    }
    let ip = std::fs::read_to_string(dir.join("ip"))
        .ok()
        .and_then(|s| s.trim().parse().ok());
    Some(Sandbox { pid, ip })
}

/// Starts the sandbox of the pod `uid` at `pod_dir` (or finds it running).
pub fn ensure(
    program: &Path,
    pod_dir: &Path,
    uid: &str,
    hostname: &str,
    host_network: bool,
    host_ipc: bool,
    net: Option<&PodNetwork>,
) -> Result<Sandbox, String> {
    if let Some(s) = find(pod_dir) {
        return Ok(s);
    }
    let dir = sandbox_dir(pod_dir);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let args = PauseArgs {
        net: !host_network && net.is_some(),
        ipc: !host_ipc,
        hostname: (!host_network).then(|| hostname.to_string()),
        dir: dir.clone(),
    };
    let mut child = Command::new(program)
        .arg("pause")
        .args(args.to_args())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .map_err(|e| format!("starting the pod's sandbox: {e}"))?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let pid = loop {
        if let Ok(p) = std::fs::read_to_string(dir.join("ready"))
            && let Ok(p) = p.trim().parse::<u32>()
        {
            break p;
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("the pod's sandbox ended at once ({status})"));
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            return Err("the pod's sandbox did not start within 5 s".into());
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    };
    // Reaped by a thread: the agent is its parent until the agent ends.
    std::thread::spawn(move || child.wait());
    let ip = match (args.net, net) {
        (true, Some(n)) => match n.attach(uid, pid) {
            Ok(ip) => Some(ip),
            Err(e) => {
                let _ = rustix::process::kill_process(
                    rustix::process::Pid::from_raw(pid as i32).ok_or("bad pid")?,
                    rustix::process::Signal::KILL,
                );
                n.detach(uid);
                return Err(format!("setting up the pod's network: {e}"));
            }
        },
        _ => None,
    };
    if let Some(ip) = ip {
        std::fs::write(dir.join("ip"), ip.to_string()).map_err(|e| format!("recording the pod's address: {e}"))?;
    }
    Ok(Sandbox { pid, ip })
}

/// Stops the pod's sandbox and takes its network away.
pub fn remove(pod_dir: &Path, uid: &str, net: Option<&PodNetwork>) {
    if let Some(s) = find(pod_dir)
        && let Some(pid) = rustix::process::Pid::from_raw(s.pid as i32)
    {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
    }
    if let Some(n) = net {
        n.detach(uid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs_parse_and_count() {
        let c = Cidr::parse("10.42.1.7/24").unwrap();
        assert_eq!(c.to_string(), "10.42.1.0/24");
        assert_eq!(c.nth(1), Some(Ipv4Addr::new(10, 42, 1, 1)));
        assert_eq!(c.size(), 256);
        assert!(c.contains(Ipv4Addr::new(10, 42, 1, 200)));
        assert!(!c.contains(Ipv4Addr::new(10, 42, 2, 1)));
        assert!(Cidr::parse("fd00::/64").is_err());
        assert!(Cidr::parse("10.0.0.0/31").is_err());
    }

    #[test]
    fn pause_arguments_round_trip() {
        let a = PauseArgs {
            net: true,
            ipc: false,
            hostname: Some("web-0".into()),
            dir: "/d".into(),
        };
        assert_eq!(PauseArgs::parse(&a.to_args()).unwrap(), a);
        assert!(PauseArgs::parse(&["--net".into()]).is_err());
    }

    #[test]
    fn leases_are_kept_per_pod_and_never_the_gateway() {
        let dir = tempfile::tempdir().unwrap();
        let net = PodNetwork {
            cidr: Cidr::parse("10.9.0.0/29").unwrap(),
            leases: dir.path().to_path_buf(),
        };
        let a = net.lease("a").unwrap();
        assert_eq!(a, Ipv4Addr::new(10, 9, 0, 2));
        assert_eq!(net.lease("a").unwrap(), a, "the same pod keeps its address");
        let more: Vec<Ipv4Addr> = ["b", "c", "d", "e"].iter().map(|u| net.lease(u).unwrap()).collect();
        assert_eq!(more.last(), Some(&Ipv4Addr::new(10, 9, 0, 6)));
        assert!(net.lease("f").is_err(), "a /29 has five pod addresses");
        std::fs::remove_file(dir.path().join("10.9.0.3")).unwrap();
        assert_eq!(net.lease("f").unwrap(), Ipv4Addr::new(10, 9, 0, 3));
    }
}
