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

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::{Arc, Mutex};

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

fn copy_lines(from: impl Read, stream: &'static str, log: Arc<Mutex<std::fs::File>>) {
    let mut reader = BufReader::new(from);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                if line.last() == Some(&b'\n') {
                    line.pop();
                }
                let mut f = log.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                // A full disk loses log lines, never the container.
                let _ = f.write_all(&log_line(stream, &line));
            }
        }
    }
}

/// Runs a shim until its container's process ends.
pub fn run(args: &ShimArgs) -> ExitCode {
    use std::os::unix::process::{CommandExt, ExitStatusExt};
    let exit = |e: Exit| {
        let text = serde_json::to_string(&e).unwrap_or_default();
        if write_atomic(&exit_file(&args.state_dir), &text).is_err() {
            return ExitCode::FAILURE;
        }
        ExitCode::SUCCESS
    };
    let _ = write_atomic(&shim_pid_file(&args.state_dir), &std::process::id().to_string());
    let log = match std::fs::OpenOptions::new().create(true).append(true).open(&args.log) {
        Ok(f) => Arc::new(Mutex::new(f)),
        Err(e) => {
            return exit(Exit {
                exit_code: 128,
                signal: None,
                finished_at: now(),
                error: Some(format!("opening the log {}: {e}", args.log.display())),
            });
        }
    };
    if let Err(e) = crate::volumes::bind_all(&args.binds) {
        return exit(Exit {
            exit_code: 128,
            signal: None,
            finished_at: now(),
            error: Some(e),
        });
    }
    let spawned = Command::new(&args.command[0])
        .args(&args.command[1..])
        .current_dir(&args.work_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn();
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => {
            return exit(Exit {
                exit_code: 128,
                signal: None,
                finished_at: now(),
                error: Some(format!("exec: {:?}: {e}", args.command[0])),
            });
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
    let out = child.stdout.take().map(|o| {
        let log = log.clone();
        std::thread::spawn(move || copy_lines(o, "stdout", log))
    });
    let err = child.stderr.take().map(|e| {
        let log = log.clone();
        std::thread::spawn(move || copy_lines(e, "stderr", log))
    });
    let status = child.wait();
    // Output written just before the end is still in the pipes; children of the process
    // that keep them open do not hold the exit back for more than a moment.
    for t in [out, err].into_iter().flatten() {
        let deadline = std::time::Instant::now() + std::time::Duration::from_millis(500);
        while !t.is_finished() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
    let (exit_code, signal) = match status {
        Ok(s) => match (s.code(), s.signal()) {
            (Some(c), _) => (c, None),
            (None, Some(sig)) => (128 + sig, Some(sig)),
            (None, None) => (255, None),
        },
        Err(_) => (255, None),
    };
    exit(Exit {
        exit_code,
        signal,
        finished_at: now(),
        error: None,
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
