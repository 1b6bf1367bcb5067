//! Process-wide settings a server needs before it takes clients.

/// Raises the soft limit of open files to the hard limit, and returns the new soft limit.
/// Every connection, watch and store reader takes a descriptor: with the usual soft default of
/// 1,024, about a thousand idle connections would lock every other client out.
pub fn raise_open_file_limit() -> Option<u64> {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current == limit.maximum {
        return limit.current;
    }
    let raised = Rlimit {
        current: limit.maximum,
        maximum: limit.maximum,
    };
    match setrlimit(Resource::Nofile, raised) {
        Ok(()) => raised.current,
        Err(e) => {
            tracing::warn!(error = %e, "cannot raise the open-file limit");
            limit.current
        }
    }
}

/// Writes past a file-size limit (`ulimit -f`) fail with `EFBIG`, which the store reports
/// and survives, instead of the default `SIGXFSZ` killing the process. Call inside the
/// runtime; the handler lives as long as the runtime.
pub fn survive_file_size_limits() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::from_raw(rustix::process::Signal::XFSZ.as_raw())) {
        Ok(mut signals) => {
            tokio::spawn(async move {
                while signals.recv().await.is_some() {
                    tracing::warn!("a write went past the file-size limit (SIGXFSZ)");
                }
            });
        }
        Err(e) => tracing::warn!(error = %e, "cannot handle SIGXFSZ"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_open_file_limit_ends_at_the_hard_limit() {
        let after = raise_open_file_limit();
        let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
        assert_eq!(after, limit.current);
        assert_eq!(limit.current, limit.maximum);
    }
}
