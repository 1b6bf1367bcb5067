//! `/livez`, `/readyz` and `/healthz` as upstream answers them (`ok`, or one `[+]`/`[-]`
//! line per check with `?verbose` or on failure), and the supervised components' metrics.
//!
//! Readiness checks: `ping`; `store` (the store can write: a store whose last write failed,
//! on a full disk say, probes with a small durable write of its own); and one
//! `component/<name>` per supervised component (down while it waits to be restarted after a
//! panic). Liveness is `ping` alone: restarting the process fixes none of the others.

use std::fmt::Write;

use axum::response::Response;

use crate::ApiServer;
use crate::request::Params;

/// One health check's result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Check {
    /// `ping`, `store`, `component/<name>`.
    pub name: String,
    /// Whether it passed.
    pub ok: bool,
    /// Why it failed (logged, and shown only as much as it is safe to show anyone).
    pub why: String,
}

impl Check {
    fn pass(name: impl Into<String>) -> Check {
        Check {
            name: name.into(),
            ok: true,
            why: String::new(),
        }
    }
}

impl ApiServer {
    /// The readiness checks, now.
    pub async fn checks(&self) -> Vec<Check> {
        let mut out = vec![Check::pass("ping")];
        out.push(match self.store.check().await {
            Ok(()) => Check::pass("store"),
            Err(e) => {
                tracing::warn!(error = %e, "readiness: the store cannot write");
                Check {
                    name: "store".into(),
                    ok: false,
                    why: "the store cannot take writes".into(),
                }
            }
        });
        for c in self.components.status() {
            out.push(Check {
                name: format!("component/{}", c.name),
                ok: c.up,
                why: format!(
                    "down after it {}; restarted {} times so far",
                    failure_kind(c.last_failure.as_deref()),
                    c.restarts
                ),
            });
        }
        out
    }
}

/// The deprecated ComponentStatus view of `checks`, as upstream lists it: `scheduler`,
/// `controller-manager` (from this process's components of those names) and `etcd-0` (the
/// store), each with one `Healthy` condition; a part not running here is `Unknown`.
pub fn component_statuses(checks: &[Check]) -> Vec<serde_json::Value> {
    let part = |name: &str, of: &dyn Fn(&str) -> bool| {
        let mine: Vec<&Check> = checks.iter().filter(|c| of(&c.name)).collect();
        let condition = if mine.is_empty() {
            serde_json::json!({"type": "Healthy", "status": "Unknown", "error": format!("{name} does not run in this process")})
        } else if let Some(down) = mine.iter().find(|c| !c.ok) {
            serde_json::json!({"type": "Healthy", "status": "False", "error": format!("{}: {}", down.name, down.why)})
        } else {
            serde_json::json!({"type": "Healthy", "status": "True", "message": "ok"})
        };
        serde_json::json!({"kind": "ComponentStatus", "apiVersion": "v1", "metadata": {"name": name},
                           "conditions": [condition]})
    };
    vec![
        part("scheduler", &|n| n == "component/scheduler"),
        part("controller-manager", &|n| n.starts_with("component/controller/")),
        part("etcd-0", &|n| n == "store"),
    ]
}

/// Upstream's deprecation warning on every ComponentStatus request.
pub const COMPONENT_STATUS_WARNING: &str = "v1 ComponentStatus is deprecated in v1.19+";

/// "panicked" or "ended", without the panic's message (which may name objects).
fn failure_kind(last: Option<&str>) -> &'static str {
    match last {
        Some(m) if m.starts_with("panicked") => "panicked",
        Some(_) => "ended",
        None => "stopped",
    }
}

fn text(code: u16, body: String) -> Response {
    crate::json_response(code, body, "text/plain; charset=utf-8")
}

/// `/livez`: the process serves.
pub fn livez(p: &Params) -> Response {
    report("livez", &[Check::pass("ping")], p)
}

/// The answer of `/<endpoint>` for `checks`: 200 `ok` when every check not named by
/// `?exclude=` passes, else 500 with a line per check; `?verbose` lists them always.
pub fn report(endpoint: &str, checks: &[Check], p: &Params) -> Response {
    let excluded = p.get("exclude");
    let considered: Vec<&Check> = checks.iter().filter(|c| Some(c.name.as_str()) != excluded).collect();
    let healthy = considered.iter().all(|c| c.ok);
    if healthy && !p.has("verbose") {
        return text(200, "ok".into());
    }
    let mut body = String::new();
    for c in &considered {
        if c.ok {
            let _ = writeln!(body, "[+]{} ok", c.name);
        } else {
            let _ = writeln!(body, "[-]{} failed: {}", c.name, c.why);
        }
    }
    if let Some(x) = excluded {
        let _ = writeln!(body, "[+]{x} excluded: ok");
    }
    if healthy {
        let _ = writeln!(body, "{endpoint} check passed");
        text(200, body)
    } else {
        let _ = writeln!(body, "{endpoint} check failed");
        text(500, body)
    }
}

/// Appends the components' gauges and counters, the process's panic count, and the work
/// queues' and controllers' metrics to a Prometheus exposition.
pub fn render_metrics(out: &mut String, components: &[shoal_runtime::Status]) {
    out.push_str(
        "# HELP shoal_component_up Whether a supervised component runs (1) or waits to be restarted (0).\n# TYPE shoal_component_up gauge\n",
    );
    for c in components {
        let _ = writeln!(out, "shoal_component_up{{component=\"{}\"}} {}", c.name, u8::from(c.up));
    }
    out.push_str(
        "# HELP shoal_component_restarts_total Restarts of a supervised component after it panicked or ended.\n# TYPE shoal_component_restarts_total counter\n",
    );
    for c in components {
        let _ = writeln!(
            out,
            "shoal_component_restarts_total{{component=\"{}\"}} {}",
            c.name, c.restarts
        );
    }
    out.push_str("# HELP shoal_panics_total Panics anywhere in this process.\n# TYPE shoal_panics_total counter\n");
    let _ = writeln!(out, "shoal_panics_total {}", shoal_runtime::panics());
    shoal_runtime::metrics::render(out);
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body(r: Response) -> (u16, String) {
        let code = r.status().as_u16();
        let bytes = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
        (code, String::from_utf8(bytes.to_vec()).unwrap())
    }

    fn checks(store_ok: bool) -> Vec<Check> {
        vec![
            Check::pass("ping"),
            Check {
                name: "store".into(),
                ok: store_ok,
                why: "the store cannot take writes".into(),
            },
        ]
    }

    #[tokio::test]
    async fn healthy_is_a_plain_ok_and_verbose_lists_the_checks() {
        assert_eq!(
            body(report("readyz", &checks(true), &Params::default())).await,
            (200, "ok".into())
        );
        let (code, text) = body(report("readyz", &checks(true), &Params::parse(Some("verbose")))).await;
        assert_eq!(code, 200);
        assert_eq!(text, "[+]ping ok\n[+]store ok\nreadyz check passed\n");
    }

    #[tokio::test]
    async fn a_failed_check_is_a_500_that_names_it() {
        let (code, text) = body(report("readyz", &checks(false), &Params::default())).await;
        assert_eq!(code, 500);
        assert_eq!(
            text,
            "[+]ping ok\n[-]store failed: the store cannot take writes\nreadyz check failed\n"
        );
        let (code, _) = body(report("readyz", &checks(false), &Params::parse(Some("exclude=store")))).await;
        assert_eq!(code, 200, "an excluded check does not count");
    }

    #[test]
    fn metrics_name_every_component() {
        let mut out = String::new();
        let s = shoal_runtime::Status {
            name: "controller/job".into(),
            up: false,
            restarts: 3,
            last_failure: Some("panicked: x".into()),
        };
        render_metrics(&mut out, &[s]);
        assert!(out.contains("shoal_component_up{component=\"controller/job\"} 0\n"));
        assert!(out.contains("shoal_component_restarts_total{component=\"controller/job\"} 3\n"));
        assert!(out.contains("shoal_panics_total "));
        assert_eq!(failure_kind(Some("panicked: x")), "panicked");
    }

    #[test]
    fn component_statuses_follow_the_checks() {
        let mut all = checks(true);
        all.push(Check::pass("component/scheduler"));
        all.push(Check::pass("component/controller/daemonset"));
        let cs = component_statuses(&all);
        let names: Vec<&str> = cs.iter().map(|c| c["metadata"]["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["scheduler", "controller-manager", "etcd-0"]);
        assert!(
            cs.iter()
                .all(|c| c["conditions"][0]["status"] == "True" && c["conditions"][0]["message"] == "ok")
        );
        let down = component_statuses(&checks(false));
        assert_eq!(down[0]["conditions"][0]["status"], "Unknown");
        assert_eq!(down[2]["conditions"][0]["status"], "False");
    }
}
