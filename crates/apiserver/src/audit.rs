//! The audit log (`--audit-log PATH`): one `audit.k8s.io/v1` Event per request, as JSON
//! lines at upstream's `Metadata` level (who, what, from where, and the answer's code; never
//! a body), written at the `ResponseComplete` stage (`ResponseStarted` for watches, which
//! never complete while they are followed).
//!
//! Lines go through a channel to a thread of their own that appends them to the file, so a
//! slow disk never holds a request; the file is created readable by its owner only.

use std::io::Write;
use std::path::Path;
use std::sync::mpsc;

use serde_json::{Value, json};

use crate::nodeauth::Identity;
use crate::review::Attributes;

/// An open audit log.
pub struct AuditLog {
    lines: mpsc::Sender<Vec<u8>>,
}

impl AuditLog {
    /// Opens (or creates, mode 0600) `path` for appending, and starts its writer.
    pub fn open(path: &Path) -> std::io::Result<AuditLog> {
        use std::os::unix::fs::OpenOptionsExt;
        let file = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(path)?;
        let (tx, rx) = mpsc::channel::<Vec<u8>>();
        std::thread::Builder::new().name("audit-log".into()).spawn(move || {
            let mut out = std::io::BufWriter::new(file);
            while let Ok(line) = rx.recv() {
                let mut result = out.write_all(&line);
                // Whatever else is waiting goes in the same write.
                while let Ok(more) = rx.try_recv() {
                    result = result.and_then(|()| out.write_all(&more));
                }
                if let Err(e) = result.and_then(|()| out.flush()) {
                    tracing::error!(error = %e, "audit log: a write failed");
                }
            }
        })?;
        Ok(AuditLog { lines: tx })
    }

    /// Records one request.
    pub fn record(&self, event: &Value) {
        let mut line = serde_json::to_vec(event).unwrap_or_default();
        line.push(b'\n');
        // The writer lives as long as the process; a send fails only as it exits.
        let _ = self.lines.send(line);
    }
}

/// What one request was, for its audit event.
pub struct Request<'a> {
    /// The request's URI (path and query).
    pub uri: &'a str,
    /// What it asked (the verb and the object, or the path).
    pub attrs: &'a Attributes,
    /// Who asked (`None`: nobody known, as a request refused with 401).
    pub who: Option<&'a Identity>,
    /// The client's address.
    pub source_ip: std::net::IpAddr,
    /// The client's `User-Agent`.
    pub user_agent: Option<&'a str>,
    /// When the request arrived.
    pub received: jiff::Timestamp,
}

/// The `Metadata`-level audit event of `req`, answered with `code` at `stage`.
pub fn event(req: &Request, code: u16, stage: &str, now: jiff::Timestamp) -> Value {
    let micro = |t: jiff::Timestamp| t.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string();
    // A request whose credential named no one has no user (`{}`), as upstream records it.
    let user = req.who.map_or_else(|| json!({}), crate::review::user_info);
    let mut ev = json!({
        "kind": "Event",
        "apiVersion": "audit.k8s.io/v1",
        "level": "Metadata",
        "auditID": uuid::Uuid::new_v4().to_string(),
        "stage": stage,
        "requestURI": req.uri,
        "user": user,
        "sourceIPs": [req.source_ip.to_string()],
        "responseStatus": {"metadata": {}, "code": code},
        "requestReceivedTimestamp": micro(req.received),
        "stageTimestamp": micro(now),
    });
    if let Some(agent) = req.user_agent {
        ev["userAgent"] = json!(agent);
    }
    match req.attrs {
        Attributes::NonResource { verb, .. } => ev["verb"] = json!(verb),
        Attributes::Resource {
            verb,
            group,
            resource,
            subresource,
            namespace,
            name,
        } => {
            ev["verb"] = json!(verb);
            let mut object = json!({"resource": resource, "apiGroup": group});
            for (key, value) in [("namespace", namespace), ("name", name), ("subresource", subresource)] {
                if !value.is_empty() {
                    object[key] = json!(value);
                }
            }
            ev["objectRef"] = object;
        }
    }
    ev
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_say_who_did_what_to_which_object_and_the_answer() {
        let attrs = Attributes::Resource {
            verb: "delete".into(),
            group: "apps".into(),
            resource: "deployments".into(),
            subresource: String::new(),
            namespace: "default".into(),
            name: "web".into(),
        };
        let who = Identity::User(crate::nodeauth::User::new("jane", vec!["system:authenticated".into()]));
        let at: jiff::Timestamp = "2026-01-02T03:04:05.123456Z".parse().unwrap();
        let req = Request {
            uri: "/apis/apps/v1/namespaces/default/deployments/web",
            attrs: &attrs,
            who: Some(&who),
            source_ip: "127.0.0.1".parse().unwrap(),
            user_agent: Some("kubectl/v1.33.0"),
            received: at,
        };
        let ev = event(&req, 403, "ResponseComplete", at);
        assert_eq!(ev["verb"], "delete");
        assert_eq!(ev["user"]["username"], "jane");
        assert_eq!(
            ev["objectRef"],
            json!({"resource": "deployments", "apiGroup": "apps", "namespace": "default", "name": "web"})
        );
        assert_eq!(ev["responseStatus"]["code"], 403);
        assert_eq!(ev["requestReceivedTimestamp"], "2026-01-02T03:04:05.123456Z");
        assert_eq!(ev["sourceIPs"], json!(["127.0.0.1"]));
        assert_eq!(
            uuid::Uuid::parse_str(ev["auditID"].as_str().unwrap()).map(|_| ()),
            Ok(())
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let log = AuditLog::open(&path).unwrap();
        log.record(&ev);
        log.record(&ev);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while std::fs::read_to_string(&path).unwrap().lines().count() < 2 {
            assert!(std::time::Instant::now() < deadline, "two lines written");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    }
}
