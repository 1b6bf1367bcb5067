//! The audit log (`--audit-log PATH`): one `audit.k8s.io/v1` Event per request, as JSON
//! lines at upstream's `Metadata` level (who, what, from where, and the answer's code; never
//! a body), written at the `ResponseComplete` stage (`ResponseStarted` for watches, which
//! never complete while they are followed).
//!
//! Lines go through a channel to a thread of their own that appends them to the file, so a
//! slow disk never holds a request; the file is created readable by its owner only.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::sync::{Mutex, mpsc};

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

/// The audit annotation with the authorizer's decision (`allow` or `forbid`).
pub const DECISION: &str = "authorization.k8s.io/decision";
/// The audit annotation with the authorizer's reason, when it gave one.
pub const REASON: &str = "authorization.k8s.io/reason";

tokio::task_local! {
    /// The annotations of the request being served (authorization's decision, PodSecurity's
    /// verdict), set only while an audited request is served.
    static ANNOTATIONS: Mutex<BTreeMap<String, String>>;
}

/// Adds an annotation to the audit event of the request being served; nothing when the
/// request is not audited.
pub fn annotate(key: &str, value: impl Into<String>) {
    let _ = ANNOTATIONS.try_with(|a| {
        a.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(key.to_string(), value.into())
    });
}

/// Serves `fut`, collecting the annotations [`annotate`] adds meanwhile.
pub async fn collecting<F: Future>(fut: F) -> (F::Output, BTreeMap<String, String>) {
    ANNOTATIONS
        .scope(Mutex::new(BTreeMap::new()), async {
            let out = fut.await;
            let notes =
                ANNOTATIONS.with(|a| std::mem::take(&mut *a.lock().unwrap_or_else(std::sync::PoisonError::into_inner)));
            (out, notes)
        })
        .await
}

/// What the audit log will say of a request, taken as it arrives (before anything can
/// refuse it, so refusals are audited too).
pub struct Pending {
    uri: String,
    attrs: Attributes,
    user_agent: Option<String>,
    received: jiff::Timestamp,
    watch: bool,
}

impl Pending {
    /// The request `req` (a watch if `watch`), as it arrives.
    pub fn of<B>(req: &http::Request<B>, watch: bool) -> Pending {
        let raw = req.uri().path();
        let path = crate::request::decode_path(raw).unwrap_or_else(|_| raw.to_string());
        let user_agent = req
            .headers()
            .get(http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        Pending {
            // Path and query, as upstream records it (an HTTP/2 request's URI also has the
            // scheme and authority).
            uri: req
                .uri()
                .path_and_query()
                .map_or_else(|| raw.to_string(), |pq| pq.as_str().to_string()),
            attrs: crate::request_attributes(req.method(), &path, watch),
            user_agent,
            received: jiff::Timestamp::now(),
            watch,
        }
    }

    /// Records the request in `log`: made by `who` from `source_ip`, answered with `code`.
    pub fn record(
        &self,
        log: &AuditLog,
        who: Option<&Identity>,
        source_ip: std::net::IpAddr,
        code: u16,
        annotations: &BTreeMap<String, String>,
    ) {
        let req = Request {
            uri: &self.uri,
            attrs: &self.attrs,
            who,
            source_ip,
            user_agent: self.user_agent.as_deref(),
            received: self.received,
            annotations,
        };
        // A watch never completes while it is followed: it is recorded as it starts.
        let stage = if self.watch && code < 300 {
            "ResponseStarted"
        } else {
            "ResponseComplete"
        };
        log.record(&event(&req, code, stage, jiff::Timestamp::now()));
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
    /// What the request's handling annotated (see [`annotate`]).
    pub annotations: &'a BTreeMap<String, String>,
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
    if !req.annotations.is_empty() {
        ev["annotations"] = json!(req.annotations);
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
            annotations: &BTreeMap::from([("authorization.k8s.io/decision".to_string(), "forbid".to_string())]),
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
        assert_eq!(ev["annotations"], json!({"authorization.k8s.io/decision": "forbid"}));
        assert_eq!(
            uuid::Uuid::parse_str(ev["auditID"].as_str().unwrap()).map(|_| ()),
            Ok(())
        );
        let dir = tempfile::tempdir().unwrap();
        let unannotated = Request {
            annotations: &BTreeMap::new(),
            ..req
        };
        assert!(
            event(&unannotated, 200, "ResponseComplete", at)
                .get("annotations")
                .is_none()
        );
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

    #[tokio::test]
    async fn annotations_are_collected_only_where_a_request_is_audited() {
        annotate("outside", "dropped");
        let ((), notes) = collecting(async {
            annotate("a", "1");
            tokio::task::yield_now().await;
            annotate("b", "2");
        })
        .await;
        assert_eq!(
            notes,
            BTreeMap::from([("a".into(), "1".into()), ("b".into(), "2".into())])
        );
    }
}
