//! The container shim: one small process per container, started by the agent as
//! `shoal shim`, that outlives the agent (as containerd's shims do).
//!
//! It starts the container's process in a process group of its own, writes its pid to
//! `pid`, copies its stdout and stderr into `log` in the CRI log format (`<RFC 3339 time>
//! stdout|stderr F <line>`, what `kubectl logs` reads back), and when the process ends
//! writes how it ended to `exit` (JSON: `exitCode`, `signal`, `finishedAt`). The agent
//! signals the process group directly; a restarted agent finds running containers by their
//! pid files and learns how they ended from the exit files.
//!
//! A signal asked for before the pid is known (the agent stops a container the moment it
//! starts) is not lost: the agent writes it to `signal` before reading `pid`, and the shim
//! reads `signal` after writing `pid`, so one of the two always sees the other. A run whose
//! state directory is gone before its pid could be written is not wanted any more: the shim
//! kills it.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

/// What one container's shim is told.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShimArgs {
    /// Directory for `pid` and `exit`.
    pub state_dir: PathBuf,
    /// The log file (appended to).
    pub log: PathBuf,
    /// Working directory of the process.
    pub work_dir: PathBuf,
    /// Program and arguments.
    pub command: Vec<String>,
    /// Volumes to bind before the process starts (the shim then runs in a mount namespace
    /// of its own: see [`crate::volumes::bind_all`]).
    pub binds: Vec<crate::volumes::Bind>,
}

impl ShimArgs {
    /// The shim's own command-line arguments (after `shoal shim`).
    pub fn to_args(&self) -> Vec<String> {
        let mut out = vec![
            "--state-dir".to_string(),
            self.state_dir.display().to_string(),
            "--log".into(),
            self.log.display().to_string(),
            "--work-dir".into(),
            self.work_dir.display().to_string(),
        ];
        for b in &self.binds {
            out.push("--bind".into());
            out.push(b.source.display().to_string());
            out.push(b.target.display().to_string());
            out.push(if b.read_only { "ro" } else { "rw" }.into());
        }
        out.push("--".into());
        out.extend(self.command.iter().cloned());
        out
    }

    /// Parses what [`ShimArgs::to_args`] wrote.
    pub fn parse(args: &[String]) -> Result<ShimArgs, String> {
        let mut it = args.iter();
        let (mut state, mut log, mut work) = (None, None, None);
        let mut binds = Vec::new();
        while let Some(a) = it.next() {
            let slot = match a.as_str() {
                "--" => break,
                "--bind" => {
                    let mut next = || it.next().ok_or_else(|| "--bind needs SOURCE TARGET ro|rw".to_string());
                    let (source, target, mode) = (next()?, next()?, next()?);
                    binds.push(crate::volumes::Bind {
                        source: source.into(),
                        target: target.into(),
                        read_only: match mode.as_str() {
                            "ro" => true,
                            "rw" => false,
                            other => return Err(format!("--bind mode {other:?}: want ro or rw")),
                        },
                    });
                    continue;
                }
                "--state-dir" => &mut state,
                "--log" => &mut log,
                "--work-dir" => &mut work,
                other => return Err(format!("unknown shim argument {other:?}")),
            };
            *slot = Some(PathBuf::from(it.next().ok_or_else(|| format!("{a} needs a value"))?));
        }
        let command: Vec<String> = it.cloned().collect();
        if command.is_empty() {
            return Err("no command after --".into());
        }
        Ok(ShimArgs {
            state_dir: state.ok_or("--state-dir is required")?,
            log: log.ok_or("--log is required")?,
            work_dir: work.ok_or("--work-dir is required")?,
            command,
            binds,
        })
    }
}

/// How a container's process ended.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Exit {
    /// Exit code; 128 + signal when a signal ended it (as container runtimes report).
    pub exit_code: i32,
    /// The signal that ended it, if one did.
    pub signal: Option<i32>,
    /// When it ended (RFC 3339).
    pub finished_at: String,
    /// Why it could not start, if it did not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The runtime's reason for the end when it knows better than the exit code
    /// (`OOMKilled`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The pid file of a container in `state_dir`.
pub fn pid_file(state_dir: &Path) -> PathBuf {
    state_dir.join("pid")
}

/// The file holding the shim's own pid.
pub fn shim_pid_file(state_dir: &Path) -> PathBuf {
    state_dir.join("shim.pid")
}

/// The file where the agent leaves a signal for a container whose pid it did not know yet.
pub fn signal_file(state_dir: &Path) -> PathBuf {
    state_dir.join("signal")
}

/// The signal left in [`signal_file`], if any.
pub fn requested_signal(state_dir: &Path) -> Option<rustix::process::Signal> {
    match std::fs::read_to_string(signal_file(state_dir)).ok()?.trim() {
        "KILL" => Some(rustix::process::Signal::KILL),
        "TERM" => Some(rustix::process::Signal::TERM),
        _ => None,
    }
}

/// The exit file of a container in `state_dir`.
pub fn exit_file(state_dir: &Path) -> PathBuf {
    state_dir.join("exit")
}

/// Reads how a container ended, if it has.
pub fn read_exit(state_dir: &Path) -> Option<Exit> {
    let text = std::fs::read_to_string(exit_file(state_dir)).ok()?;
    serde_json::from_str(&text).ok()
}

/// A CRI log line: `2024-01-02T03:04:05.123456789Z stdout F text\n`.
pub fn log_line(stream: &str, text: &[u8]) -> Vec<u8> {
    let now = jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%S.%9fZ").to_string();
    let mut out = Vec::with_capacity(now.len() + stream.len() + text.len() + 5);
    out.extend_from_slice(now.as_bytes());
    out.push(b' ');
    out.extend_from_slice(stream.as_bytes());
    out.extend_from_slice(b" F ");
    out.extend_from_slice(text);
    out.push(b'\n');
    out
}

/// Writes `path` whole or not at all (the agent and the shim both write into a state
/// directory, so the temporary file carries the writer's pid).
pub(crate) fn write_atomic(path: &Path, contents: &str) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".{}.tmp", std::process::id()));
    std::fs::write(&tmp, contents)?;
    std::fs::rename(tmp, path)
}

fn now() -> String {
    shoal_api::time::now_rfc3339()
}

/// Copies the container's two output pipes into the log, a line at a time, from one
/// thread (the shim may have entered a PID namespace for its child, after which it cannot
/// start threads). Returns once both pipes are closed, or once `ended` says the process is
/// gone and the pipes stayed quiet for half a second (children of the process may keep them
/// open).
fn copy_output(
    out: std::process::ChildStdout,
    err: std::process::ChildStderr,
    log: &mut std::fs::File,
    mut ended: impl FnMut() -> bool,
) {
    use rustix::event::{PollFd, PollFlags, poll};
    let mut files = [
        std::fs::File::from(std::os::fd::OwnedFd::from(out)),
        std::fs::File::from(std::os::fd::OwnedFd::from(err)),
    ];
    let names = ["stdout", "stderr"];
    let mut pending: [Vec<u8>; 2] = [Vec::new(), Vec::new()];
    let mut open = [true, true];
    let mut quiet_since: Option<std::time::Instant> = None;
    let mut buf = vec![0u8; 64 * 1024];
    let timeout = rustix::time::Timespec {
        tv_sec: 0,
        tv_nsec: 100_000_000,
    };
    while open.iter().any(|o| *o) {
        let mut ready = [false, false];
        {
            let idx: Vec<usize> = (0..2).filter(|i| open[*i]).collect();
            let mut polls: Vec<PollFd<'_>> = idx.iter().map(|i| PollFd::new(&files[*i], PollFlags::IN)).collect();
            let _ = poll(&mut polls, Some(&timeout));
            for (p, i) in polls.iter().zip(&idx) {
                ready[*i] = !p.revents().is_empty();
            }
        }
        if !ready.iter().any(|r| *r) {
            if ended() {
                let since = *quiet_since.get_or_insert_with(std::time::Instant::now);
                if since.elapsed() > std::time::Duration::from_millis(500) {
                    break;
                }
            }
            continue;
        }
        quiet_since = None;
        for i in (0..2).filter(|i| ready[*i]) {
            match files[i].read(&mut buf) {
                Ok(0) | Err(_) => open[i] = false,
                Ok(n) => pending[i].extend_from_slice(&buf[..n]),
            }
            while let Some(pos) = pending[i].iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = pending[i].drain(..=pos).collect();
                // A full disk loses log lines, never the container.
                let _ = log.write_all(&log_line(names[i], &line[..line.len() - 1]));
            }
        }
    }
    for i in 0..2 {
        if !pending[i].is_empty() {
            let _ = log.write_all(&log_line(names[i], &pending[i]));
        }
    }
}

/// The file holding a container's [`crate::container::ContainerSpec`]: a run with one is
/// an image run in namespaces of its own; without, a host process.
pub fn spec_file(state_dir: &Path) -> PathBuf {
    state_dir.join("container.json")
}

/// Runs a shim until its container's process ends.
#[allow(unsafe_code)] // `pre_exec`: the container's setup between fork and exec.
pub fn run(args: &ShimArgs) -> ExitCode {
    use std::os::unix::process::{CommandExt, ExitStatusExt};
    let exit = |e: Exit| {
        let text = serde_json::to_string(&e).unwrap_or_default();
        if write_atomic(&exit_file(&args.state_dir), &text).is_err() {
            return ExitCode::FAILURE;
        }
        ExitCode::SUCCESS
    };
    let failed = |code: i32, error: String| Exit {
        exit_code: code,
        signal: None,
        finished_at: now(),
        error: Some(error),
        reason: None,
    };
    let _ = write_atomic(&shim_pid_file(&args.state_dir), &std::process::id().to_string());
    let mut log = match std::fs::OpenOptions::new().create(true).append(true).open(&args.log) {
        Ok(f) => f,
        Err(e) => return exit(failed(128, format!("opening the log {}: {e}", args.log.display()))),
    };
    let spec: Option<crate::container::ContainerSpec> = match std::fs::read(spec_file(&args.state_dir)) {
        Ok(b) => match serde_json::from_slice(&b) {
            Ok(s) => Some(s),
            Err(e) => return exit(failed(128, format!("reading the container's spec: {e}"))),
        },
        Err(_) => None,
    };
    let mut cgroup = None;
    let mut cmd = match &spec {
        Some(spec) => {
            // The shim itself is not the one the OOM killer should pick.
            let _ = std::fs::write("/proc/self/oom_score_adj", "-998");
            let (rootfs, cg, user) = match crate::container::prepare(spec, &args.state_dir) {
                Ok(x) => x,
                Err(e) => return exit(failed(128, e)),
            };
            let Some(program) = crate::container::find_program(&rootfs, &args.command[0], &spec.path) else {
                cg.remove();
                return exit(failed(
                    127,
                    format!(
                        "exec: {:?}: executable file not found in $PATH (or not executable) in the image",
                        args.command[0]
                    ),
                ));
            };
            let cgroup_procs = match cg.procs_files() {
                Ok(f) => f,
                Err(e) => return exit(failed(128, e)),
            };
            let mut inside = crate::container::InChild {
                rootfs,
                work_dir: args.work_dir.clone(),
                cgroup_procs,
                mount_proc: !spec.host_pid,
                user,
                groups: spec.groups.clone(),
                capabilities: if spec.privileged {
                    crate::container::all_capabilities()
                } else {
                    spec.capabilities
                },
                no_new_privileges: spec.no_new_privileges && !spec.privileged,
                read_only_root: spec.read_only_root,
            };
            cgroup = Some(cg);
            let _ = write_atomic(&args.state_dir.join("user"), &format!("{}:{}", user.0, user.1));
            let mut c = Command::new(program);
            // SAFETY: the shim has started no thread, so the child is a copy of a
            // single-threaded process and may allocate.
            unsafe { c.pre_exec(move || inside.enter()) };
            c
        }
        None => {
            if let Err(e) = crate::volumes::bind_all(&args.binds) {
                return exit(failed(128, e));
            }
            let mut c = Command::new(&args.command[0]);
            c.current_dir(&args.work_dir);
            c
        }
    };
    let spawned = cmd
        .args(&args.command[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn();
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => {
            if let Some(cg) = &cgroup {
                cg.remove();
            }
            return exit(failed(128, format!("exec: {:?}: {e}", args.command[0])));
        }
    };
    let pid = rustix::process::Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX));
    let wanted = write_atomic(&pid_file(&args.state_dir), &child.id().to_string()).is_ok();
    // Read after the pid is written: see the module's note.
    let asked = if wanted {
        requested_signal(&args.state_dir)
    } else {
        Some(rustix::process::Signal::KILL)
    };
    if let (Some(sig), Some(pid)) = (asked, pid) {
        let _ = rustix::process::kill_process_group(pid, sig);
    }
    let mut status = None;
    if let (Some(out), Some(err)) = (child.stdout.take(), child.stderr.take()) {
        copy_output(out, err, &mut log, || {
            if status.is_none() {
                status = child.try_wait().ok().flatten();
            }
            status.is_some()
        });
    }
    let status = match status {
        Some(s) => Ok(s),
        None => child.wait(),
    };
    let (exit_code, signal) = match status {
        Ok(s) => match (s.code(), s.signal()) {
            (Some(c), _) => (c, None),
            (None, Some(sig)) => (128 + sig, Some(sig)),
            (None, None) => (255, None),
        },
        Err(_) => (255, None),
    };
    let reason = cgroup.as_ref().and_then(|cg| {
        let oom = cg.oom_killed();
        cg.remove();
        oom.then(|| "OOMKilled".to_string())
    });
    exit(Exit {
        exit_code,
        signal,
        finished_at: now(),
        error: None,
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_round_trip() {
        let a = ShimArgs {
            state_dir: "/s".into(),
            log: "/l/0.log".into(),
            work_dir: "/w".into(),
            command: vec!["sh".into(), "-c".into(), "echo --log".into()],
            binds: vec![crate::volumes::Bind {
                source: "/var/lib/x".into(),
                target: "/etc/my config".into(),
                read_only: true,
            }],
        };
        assert_eq!(ShimArgs::parse(&a.to_args()).unwrap(), a);
        assert!(ShimArgs::parse(&["--log".into()]).is_err());
        assert!(ShimArgs::parse(&["--bogus".into(), "x".into()]).is_err());
    }

    #[test]
    fn a_shim_logs_both_streams_and_records_the_exit() {
        let dir = tempfile::tempdir().unwrap();
        let a = ShimArgs {
            state_dir: dir.path().into(),
            log: dir.path().join("c.log"),
            work_dir: dir.path().into(),
            command: vec!["sh".into(), "-c".into(), "echo out; echo err >&2; pwd; exit 3".into()],
            binds: Vec::new(),
        };
        assert_eq!(run(&a), ExitCode::SUCCESS);
        let exit = read_exit(dir.path()).unwrap();
        assert_eq!((exit.exit_code, exit.signal), (3, None));
        let log = std::fs::read_to_string(&a.log).unwrap();
        let lines: Vec<&str> = log.lines().collect();
        assert_eq!(lines.len(), 3, "{log}");
        assert!(lines.iter().any(|l| l.ends_with(" stdout F out")), "{log}");
        assert!(lines.iter().any(|l| l.ends_with(" stderr F err")), "{log}");
        let pwd = dir.path().canonicalize().unwrap();
        assert!(log.contains(&format!("stdout F {}", pwd.display())), "{log}");
        assert!(pid_file(dir.path()).exists());
    }

    #[test]
    fn a_missing_program_is_an_exit_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let a = ShimArgs {
            state_dir: dir.path().into(),
            log: dir.path().join("c.log"),
            work_dir: dir.path().into(),
            command: vec!["/no/such/program".into()],
            binds: Vec::new(),
        };
        run(&a);
        let exit = read_exit(dir.path()).unwrap();
        assert_eq!(exit.exit_code, 128);
        assert!(exit.error.unwrap().contains("/no/such/program"));
    }

    /// Runs the shim on a thread; its exit code once it ends, or `None` if it runs on for
    /// `secs` seconds.
    fn run_for(a: ShimArgs, secs: u64) -> Option<ExitCode> {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || tx.send(run(&a)));
        rx.recv_timeout(std::time::Duration::from_secs(secs)).ok()
    }

    #[test]
    fn a_signal_asked_for_before_the_pid_is_known_reaches_the_process() {
        // The agent stopped the container before its shim had written the pid: the shim
        // finds the request once the process runs and delivers it.
        let dir = tempfile::tempdir().unwrap();
        write_atomic(&signal_file(dir.path()), "TERM").unwrap();
        let a = ShimArgs {
            state_dir: dir.path().into(),
            log: dir.path().join("c.log"),
            work_dir: dir.path().into(),
            command: vec!["sleep".into(), "300".into()],
            binds: Vec::new(),
        };
        assert_eq!(run_for(a, 20), Some(ExitCode::SUCCESS), "the process ran on");
        let exit = read_exit(dir.path()).unwrap();
        assert_eq!((exit.exit_code, exit.signal), (143, Some(15)));
    }

    #[test]
    fn a_run_whose_state_directory_is_gone_is_killed() {
        // The agent forgot the pod (its directory removed) while the shim was starting.
        let logs = tempfile::tempdir().unwrap();
        let a = ShimArgs {
            state_dir: logs.path().join("gone"),
            log: logs.path().join("c.log"),
            work_dir: logs.path().into(),
            command: vec!["sleep".into(), "300".into()],
            binds: Vec::new(),
        };
        // Nowhere to write the exit either: the shim fails, but it does not wait 300 s.
        assert_eq!(run_for(a, 20), Some(ExitCode::FAILURE));
    }
}
