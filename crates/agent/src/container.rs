//! What a shim does to run an image as a container (the OCI runtime's side of
//! [`crate::shim`]): everything happens in the shim's own mount namespace, so nothing it
//! mounts is ever seen on the node's tree, and it all goes when the shim and its
//! container are gone.
//!
//! The shim
//! 1. enters a mount namespace of its own and joins the pod's sandbox (network, IPC and
//!    UTS namespaces held by the pod's `shoal pause` process, see [`crate::sandbox`]);
//! 2. mounts the image's layers as an overlayfs (an upper directory per run), then the
//!    pod's volumes as bind mounts under it (paths resolved inside the root, so a link in
//!    the image cannot point a mount at the node), a fresh `/dev`, `/sys` and the pod's
//!    `/etc/hosts`, `/etc/hostname` and `/etc/resolv.conf`;
//! 3. puts the container in a cgroup with its limits (v1 or v2: memory, cpu, pids);
//! 4. starts the container's process in a PID namespace of its own, as its pid 1: it dies
//!    with the shim (parent-death signal), then pivots into the root, takes the user, the
//!    capabilities and `no_new_privs` the pod's `securityContext` asks for, and execs.

use std::fs::File;
use std::io::Write;
use std::os::fd::AsFd;
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::volumes::Bind;

/// Everything the shim needs to set up one container (`<state dir>/container.json`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerSpec {
    /// The image's unpacked layers, bottom first.
    pub layers: Vec<PathBuf>,
    /// Mounts inside the container (targets are container paths).
    pub binds: Vec<Bind>,
    /// The pod's sandbox process, whose network, IPC and UTS namespaces the container
    /// joins (none: the node's).
    pub sandbox_pid: Option<u32>,
    /// Share the node's process table (`hostPID`).
    pub host_pid: bool,
    /// `runAsUser` / `runAsGroup` when set; otherwise the image's `User`.
    pub user: String,
    /// Supplemental groups (`supplementalGroups`, `fsGroup`).
    pub groups: Vec<u32>,
    /// The container's capability set (bit numbers as `CAP_*`).
    pub capabilities: u64,
    /// `privileged`: every capability, the node's devices, a writable `/sys`.
    pub privileged: bool,
    /// `allowPrivilegeEscalation: false`.
    pub no_new_privileges: bool,
    /// `readOnlyRootFilesystem`.
    pub read_only_root: bool,
    /// `PATH` to find the program in (the container's).
    pub path: String,
    /// Limits.
    pub limits: Limits,
    /// The cgroup's name (under `shoal/`).
    pub cgroup: String,
    /// The image's digest (kept while the container runs, so the image is not removed).
    #[serde(default)]
    pub image: Option<String>,
    /// The image as the pod names it (a change of it restarts the container).
    #[serde(default)]
    pub image_name: Option<String>,
}

/// A container's resource limits.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Limits {
    /// `resources.limits.memory`, bytes.
    pub memory: Option<i64>,
    /// `resources.limits.cpu`, in millicores.
    pub cpu_millis: Option<i64>,
    /// Processes (the node's `podPidsLimit`).
    pub pids: Option<i64>,
}

/// The capabilities a container gets by default (containerd's default set).
pub const DEFAULT_CAPABILITIES: &[&str] = &[
    "CHOWN",
    "DAC_OVERRIDE",
    "FSETID",
    "FOWNER",
    "MKNOD",
    "NET_RAW",
    "SETGID",
    "SETUID",
    "SETFCAP",
    "SETPCAP",
    "NET_BIND_SERVICE",
    "SYS_CHROOT",
    "KILL",
    "AUDIT_WRITE",
];

/// Linux's capability names, by number.
const CAPABILITY_NAMES: &[&str] = &[
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

/// Every capability the kernel knows of.
pub fn all_capabilities() -> u64 {
    (1u64 << CAPABILITY_NAMES.len()) - 1
}

/// The bit of a capability named as Kubernetes names them (`NET_ADMIN` or `CAP_NET_ADMIN`).
pub fn capability_bit(name: &str) -> Option<u64> {
    let n = name.trim().to_ascii_uppercase();
    let n = n.strip_prefix("CAP_").unwrap_or(&n);
    CAPABILITY_NAMES.iter().position(|c| *c == n).map(|i| 1u64 << i)
}

/// The capability set of a container: the defaults, with `drop` then `add` applied (`ALL`
/// in either means every capability).
pub fn capability_set(add: &[String], drop: &[String]) -> Result<u64, String> {
    let mut set = DEFAULT_CAPABILITIES
        .iter()
        .filter_map(|c| capability_bit(c))
        .fold(0, |a, b| a | b);
    let bits = |names: &[String]| -> Result<u64, String> {
        names.iter().try_fold(0u64, |acc, n| {
            if n.eq_ignore_ascii_case("ALL") {
                Ok(all_capabilities())
            } else {
                capability_bit(n)
                    .map(|b| acc | b)
                    .ok_or_else(|| format!("unknown capability {n:?}"))
            }
        })
    };
    set &= !bits(drop)?;
    set |= bits(add)?;
    Ok(set)
}

/// Resolves `path` (a container path) inside `root` as the container would see it:
/// symbolic links are followed relative to `root`, and `..` never leaves it. The result
/// is a node path under `root` (its last components may not exist yet).
pub fn resolve_in_root(root: &Path, path: &Path) -> PathBuf {
    let mut parts: Vec<std::ffi::OsString> = Vec::new();
    let mut pending: Vec<std::ffi::OsString> = path
        .components()
        .rev()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s.to_owned()),
            Component::ParentDir => Some("..".into()),
            _ => None,
        })
        .collect();
    let mut links = 0;
    while let Some(part) = pending.pop() {
        if part == ".." {
            parts.pop();
            continue;
        }
        let mut here = root.to_path_buf();
        here.extend(&parts);
        here.push(&part);
        match std::fs::read_link(&here) {
            Ok(target) if links < 40 => {
                links += 1;
                if target.is_absolute() {
                    parts.clear();
                }
                for c in target.components().rev() {
                    match c {
                        Component::Normal(s) => pending.push(s.to_owned()),
                        Component::ParentDir => pending.push("..".into()),
                        _ => {}
                    }
                }
            }
            _ => parts.push(part),
        }
    }
    let mut out = root.to_path_buf();
    out.extend(parts);
    out
}

/// Finds `program` on `path` inside `root` (a name with a `/` is taken as it is). The
/// container path of the program.
pub fn find_program(root: &Path, program: &str, path: &str) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let runnable = |p: &Path| {
        std::fs::metadata(resolve_in_root(root, p)).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.contains('/') {
        let p = if program.starts_with('/') {
            PathBuf::from(program)
        } else {
            Path::new("/").join(program)
        };
        return runnable(&p).then(|| program.to_string());
    }
    path.split(':')
        .filter(|d| d.starts_with('/'))
        .map(|d| Path::new(d).join(program))
        .find(|p| runnable(p))
        .map(|p| p.display().to_string())
}

/// A user named in an image (`1000`, `1000:1000`, `nginx`, `nginx:www`), looked up in the
/// root's `/etc/passwd` and `/etc/group`: (uid, gid).
pub fn lookup_user(root: &Path, user: &str) -> Result<(u32, u32), String> {
    if user.is_empty() {
        return Ok((0, 0));
    }
    let (u, g) = user.split_once(':').map_or((user, None), |(u, g)| (u, Some(g)));
    let read = |f: &str| std::fs::read_to_string(resolve_in_root(root, Path::new(f))).unwrap_or_default();
    let passwd = read("/etc/passwd");
    let (uid, primary) = match u.parse::<u32>() {
        Ok(n) => (
            n,
            passwd
                .lines()
                .map(|l| l.split(':').collect::<Vec<_>>())
                .find(|f| f.len() > 3 && f[2] == u)
                .and_then(|f| f[3].parse().ok())
                .unwrap_or(0),
        ),
        Err(_) => passwd
            .lines()
            .map(|l| l.split(':').collect::<Vec<_>>())
            .find(|f| f.len() > 3 && f[0] == u)
            .and_then(|f| Some((f[2].parse().ok()?, f[3].parse().ok()?)))
            .ok_or_else(|| format!("unable to find user {u}: no matching entries in passwd file"))?,
    };
    let gid = match g {
        None => primary,
        Some(g) => match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => read("/etc/group")
                .lines()
                .map(|l| l.split(':').collect::<Vec<_>>())
                .find(|f| f.len() > 2 && f[0] == g)
                .and_then(|f| f[2].parse().ok())
                .ok_or_else(|| format!("unable to find group {g}: no matching entries in group file"))?,
        },
    };
    Ok((uid, gid))
}

/// The container's cgroup, one directory per hierarchy (v2: one; v1: memory, cpu, pids).
pub struct Cgroup {
    dirs: Vec<PathBuf>,
    v2: bool,
}

const CGROUP_ROOT: &str = "/sys/fs/cgroup";

impl Cgroup {
    /// Creates the cgroup `shoal/<name>` with `limits`.
    pub fn create(name: &str, limits: &Limits) -> Result<Cgroup, String> {
        let root = Path::new(CGROUP_ROOT);
        let v2 = root.join("cgroup.controllers").exists();
        let mut cg = Cgroup { dirs: Vec::new(), v2 };
        let write = |dir: &Path, file: &str, value: &str| {
            std::fs::write(dir.join(file), value).map_err(|e| format!("setting {}/{file}: {e}", dir.display()))
        };
        if v2 {
            let parent = root.join("shoal");
            if !parent.exists() {
                std::fs::create_dir_all(&parent).map_err(|e| format!("creating {}: {e}", parent.display()))?;
            }
            // The controllers a child may use.
            let _ = std::fs::write(root.join("cgroup.subtree_control"), "+memory +cpu +pids");
            let _ = std::fs::write(parent.join("cgroup.subtree_control"), "+memory +cpu +pids");
            let dir = parent.join(name);
            std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
            cg.dirs.push(dir.clone());
            if let Some(m) = limits.memory {
                write(&dir, "memory.max", &m.to_string())?;
                let _ = write(&dir, "memory.swap.max", "0");
            }
            if let Some(c) = limits.cpu_millis {
                write(&dir, "cpu.max", &format!("{} 100000", (c * 100).max(1000)))?;
            }
            if let Some(p) = limits.pids {
                write(&dir, "pids.max", &p.to_string())?;
            }
        } else {
            for ctl in ["memory", "cpu", "pids"] {
                let base = root.join(ctl);
                if !base.join("cgroup.procs").is_file() {
                    let wanted = match ctl {
                        "memory" => limits.memory.is_some(),
                        "cpu" => limits.cpu_millis.is_some(),
                        _ => false,
                    };
                    if wanted {
                        return Err(format!(
                            "the container has a {ctl} limit, and no cgroup hierarchy for {ctl} is mounted at {}",
                            base.display()
                        ));
                    }
                    continue;
                }
                let dir = base.join("shoal").join(name);
                std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
                cg.dirs.push(dir.clone());
                match ctl {
                    "memory" => {
                        if let Some(m) = limits.memory {
                            write(&dir, "memory.limit_in_bytes", &m.to_string())?;
                            let _ = write(&dir, "memory.memsw.limit_in_bytes", &m.to_string());
                        }
                    }
                    "cpu" => {
                        if let Some(c) = limits.cpu_millis {
                            write(&dir, "cpu.cfs_period_us", "100000")?;
                            write(&dir, "cpu.cfs_quota_us", &(c * 100).max(1000).to_string())?;
                        }
                    }
                    _ => {
                        if let Some(p) = limits.pids {
                            write(&dir, "pids.max", &p.to_string())?;
                        }
                    }
                }
            }
        }
        Ok(cg)
    }

    /// Files a process writes `0` into to join the cgroup (opened before it forks).
    pub fn procs_files(&self) -> Result<Vec<File>, String> {
        self.dirs
            .iter()
            .map(|d| {
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(d.join("cgroup.procs"))
                    .map_err(|e| format!("opening {}/cgroup.procs: {e}", d.display()))
            })
            .collect()
    }

    /// Whether the kernel's OOM killer killed a process of this cgroup.
    pub fn oom_killed(&self) -> bool {
        let (file, key) = if self.v2 {
            ("memory.events", "oom_kill")
        } else {
            ("memory.oom_control", "oom_kill")
        };
        self.dirs.iter().any(|d| {
            std::fs::read_to_string(d.join(file)).is_ok_and(|t| {
                t.lines().any(|l| {
                    l.split_once(' ')
                        .is_some_and(|(k, v)| k == key && v.trim().parse::<u64>().is_ok_and(|n| n > 0))
                })
            })
        })
    }

    /// Removes the cgroup (once its processes are gone).
    pub fn remove(&self) {
        for d in &self.dirs {
            for _ in 0..50 {
                if std::fs::remove_dir(d).is_ok() || !d.exists() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        }
    }
}

fn err(what: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> String {
    move |e| format!("{what}: {e}")
}

fn rerr(what: impl std::fmt::Display) -> impl FnOnce(rustix::io::Errno) -> String {
    move |e| format!("{what}: {e}")
}

/// Creates `target` as a mount point like `source` (a directory or an empty file).
fn mount_point(source_is_dir: bool, target: &Path) -> Result<(), String> {
    if target.exists() {
        return Ok(());
    }
    if source_is_dir {
        std::fs::create_dir_all(target).map_err(err(format!("creating {}", target.display())))
    } else {
        if let Some(p) = target.parent() {
            std::fs::create_dir_all(p).map_err(err(format!("creating {}", p.display())))?;
        }
        std::fs::write(target, b"").map_err(err(format!("creating {}", target.display())))
    }
}

fn bind(source: &Path, target: &Path, read_only: bool) -> Result<(), String> {
    use rustix::mount::{MountFlags, MountPropagationFlags, mount_bind_recursive, mount_change, mount_remount};
    mount_point(source.is_dir(), target)?;
    mount_bind_recursive(source, target).map_err(rerr(format!(
        "binding {} at {}",
        source.display(),
        target.display()
    )))?;
    let _ = mount_change(target, MountPropagationFlags::PRIVATE | MountPropagationFlags::REC);
    if read_only {
        mount_remount(target, MountFlags::BIND | MountFlags::RDONLY, "")
            .map_err(rerr(format!("making {} read-only", target.display())))?;
    }
    Ok(())
}

/// Makes the container's `/dev`: a tmpfs with the usual device nodes, `pts`, `shm`.
fn make_dev(root: &Path, privileged: bool) -> Result<(), String> {
    use rustix::fs::{CWD, FileType, Mode, makedev, mknodat, symlink};
    use rustix::mount::{MountFlags, mount};
    let dev = root.join("dev");
    if privileged {
        return bind(Path::new("/dev"), &dev, false);
    }
    std::fs::create_dir_all(&dev).map_err(err("creating /dev"))?;
    mount("tmpfs", &dev, "tmpfs", MountFlags::NOSUID, c"mode=755,size=65536k").map_err(rerr("mounting /dev"))?;
    for (name, major, minor) in [
        ("null", 1, 3),
        ("zero", 1, 5),
        ("full", 1, 7),
        ("random", 1, 8),
        ("urandom", 1, 9),
        ("tty", 5, 0),
    ] {
        let p = dev.join(name);
        mknodat(
            CWD,
            &p,
            FileType::CharacterDevice,
            Mode::from_raw_mode(0o666),
            makedev(major, minor),
        )
        .map_err(rerr(format!("making /dev/{name}")))?;
        // The mode above is cut by the umask.
        let _ = rustix::fs::chmod(&p, Mode::from_raw_mode(0o666));
    }
    for (link, to) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("ptmx", "pts/ptmx"),
    ] {
        symlink(to, dev.join(link)).map_err(rerr(format!("making /dev/{link}")))?;
    }
    for d in ["pts", "shm"] {
        std::fs::create_dir_all(dev.join(d)).map_err(err(format!("creating /dev/{d}")))?;
    }
    mount(
        "devpts",
        dev.join("pts"),
        "devpts",
        MountFlags::NOSUID | MountFlags::NOEXEC,
        c"newinstance,ptmxmode=0666,mode=0620",
    )
    .map_err(rerr("mounting /dev/pts"))?;
    mount(
        "shm",
        dev.join("shm"),
        "tmpfs",
        MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC,
        c"mode=1777,size=65536k",
    )
    .map_err(rerr("mounting /dev/shm"))
}

/// Sets up the container's root under `rootfs` (in the shim's mount namespace, which the
/// caller has made), after joining the sandbox's namespaces. Returns the container's
/// cgroup and the (uid, gid) it runs as.
#[allow(unsafe_code)] // unshare(2): see the SAFETY notes.
pub fn prepare(spec: &ContainerSpec, state_dir: &Path) -> Result<(PathBuf, Cgroup, (u32, u32)), String> {
    use rustix::mount::{MountFlags, MountPropagationFlags, mount, mount_change};
    use rustix::thread::{LinkNameSpaceType, UnshareFlags, move_into_link_name_space, unshare_unsafe};
    // SAFETY: the shim is single-threaded here (no thread has started yet), so no other
    // thread can observe the change of namespace.
    unsafe { unshare_unsafe(UnshareFlags::NEWNS) }.map_err(rerr("making a mount namespace"))?;
    mount_change("/", MountPropagationFlags::PRIVATE | MountPropagationFlags::REC)
        .map_err(rerr("making the mounts private"))?;
    if let Some(pid) = spec.sandbox_pid {
        for (ns, kind) in [
            ("net", LinkNameSpaceType::Network),
            ("ipc", LinkNameSpaceType::InterProcessCommunication),
            ("uts", LinkNameSpaceType::HostNameAndNISDomainName),
        ] {
            let f = File::open(format!("/proc/{pid}/ns/{ns}"))
                .map_err(err(format!("the pod's sandbox (pid {pid}) is gone")))?;
            move_into_link_name_space(f.as_fd(), Some(kind))
                .map_err(rerr(format!("joining the pod's {ns} namespace")))?;
        }
    }
    let rootfs = state_dir.join("rootfs");
    let (upper, work) = (state_dir.join("upper"), state_dir.join("work"));
    for d in [&rootfs, &upper, &work] {
        std::fs::create_dir_all(d).map_err(err(format!("creating {}", d.display())))?;
    }
    if spec.layers.is_empty() {
        mount("tmpfs", &rootfs, "tmpfs", MountFlags::empty(), c"mode=755").map_err(rerr("mounting an empty root"))?;
    } else {
        let lower: Vec<String> = spec.layers.iter().rev().map(|p| p.display().to_string()).collect();
        let opts = format!(
            "lowerdir={},upperdir={},workdir={}",
            lower.join(":"),
            upper.display(),
            work.display()
        );
        let opts = std::ffi::CString::new(opts).map_err(|_| "a layer path holds a NUL byte".to_string())?;
        mount("overlay", &rootfs, "overlay", MountFlags::empty(), opts.as_c_str())
            .map_err(rerr("mounting the image's layers (overlayfs)"))?;
    }
    let user = lookup_user(&rootfs, &spec.user)?;
    for b in &spec.binds {
        let target = resolve_in_root(&rootfs, &b.target);
        bind(&b.source, &target, b.read_only)?;
    }
    make_dev(&rootfs, spec.privileged)?;
    for d in ["proc", "sys"] {
        std::fs::create_dir_all(rootfs.join(d)).map_err(err(format!("creating /{d}")))?;
    }
    let sys_flags = MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC;
    let sys_flags = if spec.privileged {
        sys_flags
    } else {
        sys_flags | MountFlags::RDONLY
    };
    if mount("sysfs", rootfs.join("sys"), "sysfs", sys_flags, None).is_err() {
        bind(Path::new("/sys"), &rootfs.join("sys"), !spec.privileged)?;
    }
    let cgroup = Cgroup::create(&spec.cgroup, &spec.limits)?;
    if !spec.host_pid {
        // SAFETY: as above; this changes the namespace of the shim's next child only.
        unsafe { unshare_unsafe(UnshareFlags::NEWPID) }.map_err(rerr("making a PID namespace"))?;
    } else {
        bind(Path::new("/proc"), &rootfs.join("proc"), false)?;
    }
    Ok((rootfs, cgroup, user))
}

/// The part of the container's start that runs in its process between fork and exec.
pub struct InChild {
    /// The container's root (a mount point in the shim's namespace).
    pub rootfs: PathBuf,
    /// Its working directory (a container path).
    pub work_dir: PathBuf,
    /// The cgroup files to join.
    pub cgroup_procs: Vec<File>,
    /// Mount a new `/proc` (a PID namespace of its own).
    pub mount_proc: bool,
    /// (uid, gid) and the supplemental groups.
    pub user: (u32, u32),
    /// Supplemental groups.
    pub groups: Vec<u32>,
    /// Capability set.
    pub capabilities: u64,
    /// `no_new_privs`.
    pub no_new_privileges: bool,
    /// A read-only root.
    pub read_only_root: bool,
}

impl InChild {
    /// Runs in the forked child (the shim is single-threaded when it forks, so the
    /// allocations here are safe).
    #[allow(unsafe_code)] // unshare(2), and prctl(2) for the bounding and ambient capability sets.
    pub fn enter(&mut self) -> std::io::Result<()> {
        use rustix::mount::{MountFlags, UnmountFlags, mount, mount_remount, unmount};
        let os = |e: rustix::io::Errno| std::io::Error::from_raw_os_error(e.raw_os_error());
        rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL)).map_err(os)?;
        // A mount namespace of the container's own, below the shim's: the pivot below then
        // moves the container's root only, not the shim's.
        // SAFETY: the child of a single-threaded process is single-threaded.
        unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWNS) }.map_err(os)?;
        for f in &mut self.cgroup_procs {
            f.write_all(b"0")?;
        }
        if self.mount_proc {
            mount(
                "proc",
                self.rootfs.join("proc"),
                "proc",
                MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC,
                None,
            )
            .map_err(os)?;
        }
        let work = resolve_in_root(&self.rootfs, &self.work_dir);
        let _ = std::fs::create_dir_all(&work);
        if self.read_only_root {
            mount_remount(&self.rootfs, MountFlags::BIND | MountFlags::RDONLY, "").map_err(os)?;
        }
        rustix::process::chdir(&self.rootfs).map_err(os)?;
        rustix::process::pivot_root(".", ".").map_err(os)?;
        unmount(".", UnmountFlags::DETACH).map_err(os)?;
        rustix::process::chdir("/").map_err(os)?;
        let _ = rustix::process::chdir(&self.work_dir);
        // Capabilities survive the change of user; then the set is cut to the container's.
        rustix::thread::set_keep_capabilities(true).map_err(os)?;
        let groups: Vec<rustix::process::Gid> =
            self.groups.iter().map(|g| rustix::process::Gid::from_raw(*g)).collect();
        rustix::thread::set_thread_groups(&groups).map_err(os)?;
        let (uid, gid) = self.user;
        let (u, g) = (rustix::process::Uid::from_raw(uid), rustix::process::Gid::from_raw(gid));
        rustix::thread::set_thread_res_gid(g, g, g).map_err(os)?;
        rustix::thread::set_thread_res_uid(u, u, u).map_err(os)?;
        let last = u32::try_from(CAPABILITY_NAMES.len()).unwrap_or(41);
        for cap in 0..last {
            if self.capabilities & (1u64 << cap) == 0 {
                // SAFETY: prctl with integer arguments only.
                unsafe { libc::prctl(libc::PR_CAPBSET_DROP, libc::c_ulong::from(cap), 0, 0, 0) };
            }
        }
        let set = rustix::thread::CapabilitySet::from_bits_retain(self.capabilities);
        rustix::thread::set_capabilities(
            None,
            rustix::thread::CapabilitySets {
                effective: set,
                permitted: set,
                inheritable: set,
            },
        )
        .map_err(os)?;
        if uid != 0 {
            // A non-root process keeps its capabilities across exec only as ambient ones.
            for cap in 0..last {
                if self.capabilities & (1u64 << cap) != 0 {
                    // SAFETY: prctl with integer arguments only.
                    unsafe {
                        libc::prctl(
                            libc::PR_CAP_AMBIENT,
                            libc::PR_CAP_AMBIENT_RAISE as libc::c_ulong,
                            libc::c_ulong::from(cap),
                            0,
                            0,
                        )
                    };
                }
            }
        }
        if self.no_new_privileges {
            rustix::thread::set_no_new_privs(true).map_err(os)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capability_sets_follow_add_and_drop() {
        let none: Vec<String> = vec![];
        let default = capability_set(&none, &none).unwrap();
        assert_ne!(default & capability_bit("CHOWN").unwrap(), 0);
        assert_eq!(default & capability_bit("NET_ADMIN").unwrap(), 0);
        let s = capability_set(&["NET_ADMIN".into()], &["ALL".into()]).unwrap();
        assert_eq!(s, capability_bit("CAP_NET_ADMIN").unwrap());
        assert!(capability_set(&["FLY".into()], &none).is_err());
        assert_eq!(capability_set(&["ALL".into()], &none).unwrap(), all_capabilities());
    }

    #[test]
    fn paths_resolve_inside_the_root_whatever_the_links_say() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::os::unix::fs::symlink("/etc", root.join("link")).unwrap();
        std::os::unix::fs::symlink("../../../../..", root.join("up")).unwrap();
        assert_eq!(
            resolve_in_root(&root, Path::new("/link/cron.d/x")),
            root.join("etc/cron.d/x")
        );
        assert_eq!(
            resolve_in_root(&root, Path::new("/up/etc/passwd")),
            root.join("etc/passwd")
        );
        assert_eq!(resolve_in_root(&root, Path::new("/../../x")), root.join("x"));
        // A loop ends.
        std::os::unix::fs::symlink("/loop", root.join("loop")).unwrap();
        assert!(resolve_in_root(&root, Path::new("/loop/a")).starts_with(&root));
    }

    #[test]
    fn users_are_looked_up_in_the_image() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("etc")).unwrap();
        std::fs::write(
            dir.path().join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\nnginx:x:101:102::/:/sbin/nologin\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("etc/group"), "root:x:0:\nwww:x:33:\n").unwrap();
        assert_eq!(lookup_user(dir.path(), "").unwrap(), (0, 0));
        assert_eq!(lookup_user(dir.path(), "nginx").unwrap(), (101, 102));
        assert_eq!(lookup_user(dir.path(), "nginx:www").unwrap(), (101, 33));
        assert_eq!(lookup_user(dir.path(), "101").unwrap(), (101, 102));
        assert_eq!(lookup_user(dir.path(), "5000:5000").unwrap(), (5000, 5000));
        assert!(
            lookup_user(dir.path(), "nobody")
                .unwrap_err()
                .contains("unable to find user nobody")
        );
    }

    #[test]
    fn programs_are_found_on_the_container_path() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("bin")).unwrap();
        std::fs::write(dir.path().join("bin/busybox"), "x").unwrap();
        std::fs::set_permissions(dir.path().join("bin/busybox"), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::os::unix::fs::symlink("busybox", dir.path().join("bin/sh")).unwrap();
        assert_eq!(
            find_program(dir.path(), "sh", "/usr/bin:/bin").as_deref(),
            Some("/bin/sh")
        );
        assert_eq!(
            find_program(dir.path(), "/bin/busybox", "").as_deref(),
            Some("/bin/busybox")
        );
        assert_eq!(find_program(dir.path(), "nginx", "/usr/bin:/bin"), None);
    }
}
