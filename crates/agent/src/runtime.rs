//! Container runtimes behind one trait: [`ProcessRuntime`] runs each container as a host
//! process group under a [`crate::shim`]; [`SimulatedRuntime`] runs nothing and reports
//! containers running until they are stopped.
//!
//! A container run is named by its state directory (one per pod, container and restart):
//! the runtime keeps there what it needs to find the run again after the agent restarts.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::shim::{self, Exit, ShimArgs};

/// What to start.
#[derive(Clone, Debug)]
pub struct Launch {
    /// The run's state directory (created by the caller).
    pub state_dir: PathBuf,
    /// Its log file.
    pub log: PathBuf,
    /// Working directory.
    pub work_dir: PathBuf,
    /// Program and arguments, expanded.
    pub command: Vec<String>,
    /// The whole environment.
    pub env: Vec<(String, String)>,
    /// The container's volume mounts, for a runtime that [`Runtime::isolates_mounts`].
    pub binds: Vec<crate::volumes::Bind>,
    /// For an image run: its root, namespaces and limits.
    pub container: Option<crate::container::ContainerSpec>,
}

/// Where a run is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RunState {
    /// Running (pid of its process group leader, for the process runtime).
    Running(u32),
    /// Its shim runs but has not started the container's process yet.
    Starting,
    /// Ended.
    Exited(Exit),
    /// Nothing is known of it (never started, or its state is gone).
    Unknown,
}

/// Signals the agent sends to containers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    /// Asks the container to end.
    Term,
    /// Ends it.
    Kill,
}

/// A container runtime.
pub trait Runtime: Send + Sync + 'static {
    /// The name reported in `nodeInfo.containerRuntimeVersion` (`process://0.1.0`).
    fn version(&self) -> String;
    /// Whether a container needs a `command` to run (the process runtime runs no images).
    fn needs_command(&self) -> bool;
    /// Whether the runtime itself makes [`Launch::binds`] visible to the container (in a
    /// mount namespace of its own, or nowhere for a runtime that runs nothing); otherwise
    /// volumes are linked into the node's tree.
    fn isolates_mounts(&self) -> bool {
        false
    }
    /// Starts a run; the error is shown as the container's waiting message.
    fn start(&self, launch: &Launch) -> Result<(), String>;
    /// Where the run in `state_dir` is.
    fn state(&self, state_dir: &Path) -> RunState;
    /// Signals the run's whole process group.
    fn signal(&self, state_dir: &Path, signal: Signal);
    /// A command that runs `argv` as the container would (its environment and working
    /// directory), for `kubectl exec` and exec probes; `None` if the runtime cannot.
    fn command(&self, launch: &Launch, argv: &[String]) -> Option<tokio::process::Command>;
}

/// Runs containers as host processes, each under a shim (`<shim_program> shim ...`).
pub struct ProcessRuntime {
    shim_program: PathBuf,
    /// Woken when a run the runtime started ends.
    exited: Arc<tokio::sync::Notify>,
    /// Whether containers run in mount namespaces of their own (root, with util-linux's
    /// `unshare` and `nsenter`).
    isolated: bool,
    /// Whether containers run images (the OCI runtime: every launch has a
    /// [`Launch::container`]).
    oci: bool,
}

impl ProcessRuntime {
    /// A runtime whose shims are `shim_program shim ...`; `exited` is notified when a
    /// container it started ends. Containers get mount namespaces of their own when this
    /// process may make them.
    pub fn new(shim_program: PathBuf, exited: Arc<tokio::sync::Notify>) -> Self {
        let isolated = rustix::process::geteuid().is_root() && can_unshare();
        ProcessRuntime {
            shim_program,
            exited,
            isolated,
            oci: false,
        }
    }

    /// A runtime that runs images in namespaces of their own (see [`crate::container`]).
    pub fn oci(shim_program: PathBuf, exited: Arc<tokio::sync::Notify>) -> Self {
        ProcessRuntime {
            shim_program,
            exited,
            isolated: true,
            oci: true,
        }
    }

    /// Whether the OCI runtime can work here: root, overlayfs, namespaces, `ip`, `nsenter`.
    pub fn oci_supported() -> Result<(), String> {
        if !rustix::process::geteuid().is_root() {
            return Err("the OCI runtime needs root".into());
        }
        let fs = std::fs::read_to_string("/proc/filesystems").unwrap_or_default();
        if !fs.lines().any(|l| l.ends_with("\toverlay")) {
            return Err("the kernel has no overlayfs".into());
        }
        if !can_unshare() {
            return Err("namespaces cannot be made here (util-linux's unshare failed)".into());
        }
        for tool in ["ip", "nsenter"] {
            let found = std::process::Command::new(tool)
                .arg("-V")
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status()
                .is_ok();
            if !found {
                return Err(format!("{tool} is not installed (iproute2 / util-linux)"));
            }
        }
        Ok(())
    }
}

/// Whether `unshare --mount` works here (util-linux is installed and the kernel lets us).
fn can_unshare() -> bool {
    std::process::Command::new("unshare")
        .args(["--mount", "--propagation", "private", "true"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn pid_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

fn shim_alive(state_dir: &Path) -> bool {
    std::fs::read_to_string(shim::shim_pid_file(state_dir))
        .ok()
        .and_then(|p| p.trim().parse::<u32>().ok())
        .is_some_and(pid_alive)
}

impl Runtime for ProcessRuntime {
    fn version(&self) -> String {
        if self.oci {
            "shoal-oci://0.1.0".into()
        } else {
            "process://0.1.0".into()
        }
    }

    fn needs_command(&self) -> bool {
        !self.oci
    }

    fn start(&self, launch: &Launch) -> Result<(), String> {
        if let Some(spec) = &launch.container {
            if let Some(d) = &spec.image {
                let _ = shim::write_atomic(&launch.state_dir.join("image"), d);
            }
            let text = serde_json::to_string(spec).map_err(|e| e.to_string())?;
            shim::write_atomic(&shim::spec_file(&launch.state_dir), &text)
                .map_err(|e| format!("writing the container's spec: {e}"))?;
        }
        let args = ShimArgs {
            state_dir: launch.state_dir.clone(),
            log: launch.log.clone(),
            work_dir: launch.work_dir.clone(),
            command: launch.command.clone(),
            binds: if self.isolated {
                launch.binds.clone()
            } else {
                Vec::new()
            },
        };
        // With mounts to make, the shim starts in a mount namespace of its own (`unshare`
        // execs it, so the pid is still the shim's).
        let mut cmd = if args.binds.is_empty() || launch.container.is_some() {
            tokio::process::Command::new(&self.shim_program)
        } else {
            let mut c = tokio::process::Command::new("unshare");
            c.args(["--mount", "--propagation", "private", "--"])
                .arg(&self.shim_program);
            c
        };
        cmd.arg("shim")
            .args(args.to_args())
            .env_clear()
            .envs(launch.env.iter().map(|(k, v)| (k, v)))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            // Its own process group: a signal to the agent's group (Ctrl-C) leaves it be.
            .process_group(0)
            .kill_on_drop(false);
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("starting the shim {}: {e}", self.shim_program.display()))?;
        // Known from now on (the shim writes the same once it runs): the run is Starting,
        // never Unknown, until its container's pid is written.
        if let Some(id) = child.id() {
            let _ = shim::write_atomic(&shim::shim_pid_file(&launch.state_dir), &id.to_string());
        }
        let exited = self.exited.clone();
        tokio::spawn(async move {
            let _ = child.wait().await;
            exited.notify_one();
        });
        Ok(())
    }

    fn state(&self, state_dir: &Path) -> RunState {
        if let Some(e) = shim::read_exit(state_dir) {
            return RunState::Exited(e);
        }
        let pid = std::fs::read_to_string(shim::pid_file(state_dir))
            .ok()
            .and_then(|p| p.trim().parse::<u32>().ok());
        let gone = |why: &str| {
            RunState::Exited(Exit {
                exit_code: 137,
                signal: Some(9),
                finished_at: shoal_api::time::now_rfc3339(),
                error: Some(why.into()),
                reason: None,
            })
        };
        match pid {
            Some(pid) if pid_alive(pid) => RunState::Running(pid),
            // The shim records the exit once the output is drained: the run is still ending.
            Some(pid) if shim_alive(state_dir) => RunState::Running(pid),
            Some(_) => gone("the container's process is gone and its exit was not recorded"),
            None if shim_alive(state_dir) => RunState::Starting,
            // A pid of a shim, no other record: it ended without starting anything (or the
            // machine rebooted) and whatever it wrote is lost.
            None if shim::shim_pid_file(state_dir).exists() => {
                // Read again: the shim may have written both files and ended meanwhile.
                match shim::read_exit(state_dir) {
                    Some(e) => RunState::Exited(e),
                    None if shim::pid_file(state_dir).exists() => self.state(state_dir),
                    None => gone("the container's shim ended before starting it"),
                }
            }
            None => RunState::Unknown,
        }
    }

    fn signal(&self, state_dir: &Path, signal: Signal) {
        // Left for the shim first, then the pid read: a shim still starting its container
        // applies it itself (see `shim`). A kill is never downgraded to a term.
        if signal == Signal::Kill || shim::requested_signal(state_dir).is_none() {
            let word = if signal == Signal::Kill { "KILL" } else { "TERM" };
            let _ = shim::write_atomic(&shim::signal_file(state_dir), word);
        }
        let Some(pid) = std::fs::read_to_string(shim::pid_file(state_dir))
            .ok()
            .and_then(|p| p.trim().parse::<i32>().ok())
            .and_then(rustix::process::Pid::from_raw)
        else {
            return;
        };
        let sig = match signal {
            Signal::Term => rustix::process::Signal::TERM,
            Signal::Kill => rustix::process::Signal::KILL,
        };
        // The group may be gone already: nothing to do then.
        let _ = rustix::process::kill_process_group(pid, sig);
    }

    fn isolates_mounts(&self) -> bool {
        self.isolated
    }

    fn command(&self, launch: &Launch, argv: &[String]) -> Option<tokio::process::Command> {
        let (program, args) = argv.split_first()?;
        // In the container's mount namespace, when it has one.
        let mut cmd = match self.state(&launch.state_dir) {
            RunState::Running(pid) if self.oci => {
                // Every namespace of the container, its root and working directory, its user.
                let mut c = tokio::process::Command::new("nsenter");
                c.arg(format!("--target={pid}"))
                    .args(["--mount", "--uts", "--ipc", "--net", "--pid", "--root", "--wd"]);
                if let Some((u, g)) = std::fs::read_to_string(launch.state_dir.join("user"))
                    .ok()
                    .and_then(|s| s.trim().split_once(':').map(|(u, g)| (u.to_string(), g.to_string())))
                {
                    c.arg(format!("--setuid={u}")).arg(format!("--setgid={g}"));
                }
                c.arg("--").arg(program);
                c.args(args)
                    .env_clear()
                    .envs(launch.env.iter().map(|(k, v)| (k, v)))
                    .kill_on_drop(true);
                return Some(c);
            }
            RunState::Running(pid) if self.isolated => {
                let mut c = tokio::process::Command::new("nsenter");
                c.arg(format!("--mount=/proc/{pid}/ns/mnt")).arg("--").arg(program);
                c
            }
            _ => tokio::process::Command::new(program),
        };
        cmd.args(args)
            .env_clear()
            .envs(launch.env.iter().map(|(k, v)| (k, v)))
            .current_dir(&launch.work_dir)
            .kill_on_drop(true);
        Some(cmd)
    }
}

/// The file that marks a simulated run (there is no process, so no pid file).
const SIMULATED_RUN: &str = "simulated";

/// Runs nothing: a started container runs until it is signalled (it then ends with 0 on
/// `Term`, 137 on `Kill`). For agents that join real clusters without running anything.
#[derive(Default)]
pub struct SimulatedRuntime;

impl Runtime for SimulatedRuntime {
    fn version(&self) -> String {
        "shoal-simulated://0.1.0".into()
    }

    fn needs_command(&self) -> bool {
        false
    }

    fn isolates_mounts(&self) -> bool {
        // Nothing runs, so nothing needs to see a volume.
        true
    }

    fn start(&self, launch: &Launch) -> Result<(), String> {
        // An empty log: `kubectl logs` answers, with nothing.
        std::fs::write(&launch.log, "").map_err(|e| e.to_string())?;
        std::fs::write(launch.state_dir.join(SIMULATED_RUN), "").map_err(|e| e.to_string())
    }

    fn state(&self, state_dir: &Path) -> RunState {
        if let Some(e) = shim::read_exit(state_dir) {
            return RunState::Exited(e);
        }
        if state_dir.join(SIMULATED_RUN).exists() {
            RunState::Running(0)
        } else {
            RunState::Unknown
        }
    }

    fn signal(&self, state_dir: &Path, signal: Signal) {
        let (exit_code, sig) = match signal {
            Signal::Term => (0, None),
            Signal::Kill => (137, Some(9)),
        };
        let exit = Exit {
            exit_code,
            signal: sig,
            finished_at: shoal_api::time::now_rfc3339(),
            error: None,
            reason: None,
        };
        let _ = std::fs::write(
            shim::exit_file(state_dir),
            serde_json::to_string(&exit).unwrap_or_default(),
        );
    }

    fn command(&self, _launch: &Launch, _argv: &[String]) -> Option<tokio::process::Command> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simulated_runs_end_when_signalled() {
        let dir = tempfile::tempdir().unwrap();
        let rt = SimulatedRuntime;
        let launch = Launch {
            state_dir: dir.path().into(),
            log: dir.path().join("log"),
            work_dir: dir.path().into(),
            command: vec!["x".into()],
            env: vec![],
            binds: vec![],
            container: None,
        };
        assert_eq!(rt.state(dir.path()), RunState::Unknown);
        rt.start(&launch).unwrap();
        assert_eq!(rt.state(dir.path()), RunState::Running(0));
        rt.signal(dir.path(), Signal::Term);
        assert!(matches!(
            rt.state(dir.path()),
            RunState::Exited(Exit { exit_code: 0, .. })
        ));
    }

    #[test]
    fn a_run_whose_shim_has_not_started_the_process_is_starting() {
        let dir = tempfile::tempdir().unwrap();
        let rt = ProcessRuntime::new("shoal".into(), Arc::default());
        assert_eq!(rt.state(dir.path()), RunState::Unknown);
        // A live shim (this process stands in for it), no container pid yet.
        shim::write_atomic(&shim::shim_pid_file(dir.path()), &std::process::id().to_string()).unwrap();
        assert_eq!(rt.state(dir.path()), RunState::Starting);
        // A signal now is left for the shim, not lost.
        rt.signal(dir.path(), Signal::Term);
        assert_eq!(shim::requested_signal(dir.path()), Some(rustix::process::Signal::TERM));
        rt.signal(dir.path(), Signal::Kill);
        rt.signal(dir.path(), Signal::Term);
        assert_eq!(
            shim::requested_signal(dir.path()),
            Some(rustix::process::Signal::KILL),
            "a kill is never downgraded"
        );
        // A shim that is gone without a pid or an exit: the run ended.
        shim::write_atomic(&shim::shim_pid_file(dir.path()), "999999999").unwrap();
        assert!(matches!(
            rt.state(dir.path()),
            RunState::Exited(Exit {
                exit_code: 137,
                error: Some(_),
                ..
            })
        ));
    }
}
