//! `shoal why ds/NAME [-n NS] [NODE]`: for every node (or one), whether the DaemonSet should
//! run a pod there and, when it does not (or its pod is stuck), exactly why: the nodeSelector
//! key whose value differs, the untolerated taint, the unmet affinity, the resource that does
//! not fit. It uses the controller's own placement code and the scheduler's filters.

use std::path::Path;

use serde_json::Value;
use shoal_api::scheduling;
use shoal_controllers::daemonset::facts::{controller_uid, is_ready, target_node};
use shoal_controllers::daemonset::placement::{placement, template_spec};

/// One line of the report: node, should run, pod, explanation.
pub fn explain(ds: &Value, nodes: &[Value], pods: &[Value], only: Option<&str>) -> Vec<[String; 4]> {
    let spec = template_spec(ds);
    let uid = ds["metadata"]["uid"].as_str().unwrap_or_default();
    let mut sorted: Vec<&Value> = nodes
        .iter()
        .filter(|n| only.is_none_or(|o| n["metadata"]["name"] == o))
        .collect();
    sorted.sort_by_key(|n| n["metadata"]["name"].as_str().unwrap_or_default().to_string());
    let mut rows = Vec::new();
    for node in sorted {
        let name = node["metadata"]["name"].as_str().unwrap_or_default();
        let p = placement(&spec, node);
        let mine: Vec<&Value> = pods
            .iter()
            .filter(|pod| controller_uid(pod) == Some(uid) && target_node(pod) == Some(name))
            .collect();
        let pod_name = mine
            .first()
            .map(|p| p["metadata"]["name"].as_str().unwrap_or_default().to_string());
        let detail = match (&p.reason, mine.first()) {
            (None, None) => "should run a pod; it is being created".to_string(),
            (None, Some(pod)) if is_ready(pod) => "runs its daemon pod (Ready)".to_string(),
            (None, Some(pod)) => {
                let bound: Vec<&Value> = pods
                    .iter()
                    .filter(|o| {
                        o["spec"]["nodeName"].as_str() == Some(name) && o["metadata"]["uid"] != pod["metadata"]["uid"]
                    })
                    .filter(|o| !matches!(o["status"]["phase"].as_str(), Some("Succeeded" | "Failed")))
                    .map(|o| &o["spec"])
                    .collect();
                let phase = pod["status"]["phase"].as_str().unwrap_or("Pending");
                match scheduling::scheduler_unfit(&pod["spec"], node, bound) {
                    Some(u) if pod["spec"]["nodeName"].as_str().is_none_or(str::is_empty) => {
                        format!("its pod cannot be scheduled: {u}")
                    }
                    _ => format!("its pod is {phase}, not Ready yet"),
                }
            }
            (Some(reason), Some(_)) if p.should_continue_running => {
                format!("no new pod: {reason}; the existing pod stays (counted as misscheduled)")
            }
            (Some(reason), _) => reason.to_string(),
        };
        let should = if p.should_run { "yes" } else { "no" };
        rows.push([
            name.to_string(),
            should.to_string(),
            pod_name.unwrap_or_else(|| "-".into()),
            detail,
        ]);
    }
    rows
}

/// Renders rows as a kubectl-style table.
pub fn render(rows: &[[String; 4]]) -> String {
    let header = ["NODE", "SHOULD RUN", "POD", "WHY"];
    let mut widths = header.map(str::len);
    for r in rows {
        for (i, c) in r.iter().enumerate().take(3) {
            widths[i] = widths[i].max(c.len());
        }
    }
    let line = |cells: [&str; 4]| {
        format!(
            "{:w0$}   {:w1$}   {:w2$}   {}\n",
            cells[0],
            cells[1],
            cells[2],
            cells[3],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2]
        )
    };
    let mut out = line(header);
    for r in rows {
        out.push_str(&line([&r[0], &r[1], &r[2], &r[3]]));
    }
    out
}

/// Reads `server`, the CA and the token from shoal's kubeconfig.
fn kubeconfig(data_dir: &Path) -> Result<(std::net::SocketAddr, String, String), String> {
    use base64::Engine as _;
    let path = data_dir.join("kubeconfig");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    let field = |k: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(k).map(|v| v.trim().to_string()))
            .ok_or_else(|| format!("{} has no {k}", path.display()))
    };
    let server = field("server:")?;
    let addr = server
        .trim_start_matches("https://")
        .parse()
        .map_err(|e| format!("server {server}: {e}"))?;
    let ca = base64::engine::general_purpose::STANDARD
        .decode(field("certificate-authority-data:")?)
        .map_err(|e| format!("CA data: {e}"))?;
    Ok((addr, String::from_utf8_lossy(&ca).into_owned(), field("token:")?))
}

/// Runs `shoal why`.
pub async fn run(data_dir: &Path, target: &str, namespace: &str, node: Option<&str>) -> Result<String, String> {
    let name = target
        .strip_prefix("ds/")
        .or_else(|| target.strip_prefix("daemonset/"))
        .or_else(|| target.strip_prefix("daemonsets/"))
        .unwrap_or(target);
    let (addr, ca, token) = kubeconfig(data_dir)?;
    let client = shoal_apiserver::client::HttpsClient::new(addr, &ca, Some(token)).map_err(|e| e.to_string())?;
    let get = |path: String| {
        let client = &client;
        async move {
            let reply = client
                .request("GET", &path, "application/json", b"")
                .await
                .map_err(|e| e.to_string())?;
            let v: Value = serde_json::from_slice(&reply.body).map_err(|e| e.to_string())?;
            if reply.status != 200 {
                return Err(v["message"].as_str().unwrap_or("request failed").to_string());
            }
            Ok(v)
        }
    };
    let [ds_path, nodes_path, pods_path] = paths(namespace, name);
    let ds = get(ds_path).await?;
    let nodes = get(nodes_path).await?;
    let pods = get(pods_path).await?;
    let items = |v: &Value| v["items"].as_array().cloned().unwrap_or_default();
    Ok(render(&rows(&ds, &items(&nodes), &items(&pods), node)?))
}

/// What the report reads: the DaemonSet, the nodes and the pods of its namespace.
pub fn paths(namespace: &str, name: &str) -> [String; 3] {
    [
        format!("/apis/apps/v1/namespaces/{namespace}/daemonsets/{name}"),
        "/api/v1/nodes".to_string(),
        format!("/api/v1/namespaces/{namespace}/pods"),
    ]
}

/// The report's rows, or why there are none (a named node that does not exist).
pub fn rows(ds: &Value, nodes: &[Value], pods: &[Value], node: Option<&str>) -> Result<Vec<[String; 4]>, String> {
    if let Some(n) = node
        && !nodes.iter().any(|x| x["metadata"]["name"] == n)
    {
        return Err(format!("node \"{n}\" not found"));
    }
    Ok(explain(ds, nodes, pods, node))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn every_reason_is_named() {
        let ds = json!({"metadata": {"name": "d", "uid": "u"},
                        "spec": {"template": {"spec": {"nodeSelector": {"role": "worker"},
                                                       "containers": [{"name": "c", "resources": {"requests": {"cpu": "8"}}}]}}}});
        let node = |name: &str, labels: Value, taints: Value| {
            json!({"metadata": {"name": name, "labels": labels}, "spec": {"taints": taints},
                   "status": {"allocatable": {"cpu": "4", "memory": "1Gi", "pods": "10"}}})
        };
        let nodes = vec![
            node("a", json!({"role": "worker"}), json!([])),
            node("b", json!({"role": "db"}), json!([])),
            node("c", json!({}), json!([])),
            node(
                "d",
                json!({"role": "worker"}),
                json!([{"key": "gpu", "value": "yes", "effect": "NoSchedule"}]),
            ),
        ];
        let pending = json!({"metadata": {"name": "d-x", "uid": "p", "ownerReferences": [{"uid": "u", "controller": true}]},
                             "spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": "8"}}}],
                                      "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                                          {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["a"]}]}]}}}},
                             "status": {"phase": "Pending"}});
        let rows = explain(&ds, &nodes, &[pending], None);
        assert_eq!(rows[0][..3], ["a".to_string(), "yes".into(), "d-x".into()]);
        assert_eq!(rows[0][3], "its pod cannot be scheduled: insufficient cpu on the node");
        assert_eq!(
            rows[1][3],
            "nodeSelector role=worker does not match: the node has role=db"
        );
        assert_eq!(
            rows[2][3],
            "nodeSelector role=worker does not match: the node has no label role"
        );
        assert_eq!(
            rows[3][3],
            "the node has taint gpu=yes:NoSchedule, which the pod does not tolerate"
        );
        // Required node affinity and a pinned nodeName are named too.
        let affinity = json!({"metadata": {"uid": "u"}, "spec": {"template": {"spec": {"affinity": {"nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["z1"]}]}]}}}}}}});
        assert_eq!(
            explain(&affinity, &nodes, &[], Some("a"))[0][3],
            "no term of the required node affinity matches the node"
        );
        let pinned = json!({"metadata": {"uid": "u"}, "spec": {"template": {"spec": {"nodeName": "c"}}}});
        assert_eq!(
            explain(&pinned, &nodes, &[], Some("a"))[0][3],
            "the pod template pins spec.nodeName to c"
        );
        let only = explain(&ds, &nodes, &[], Some("b"));
        assert_eq!(only.len(), 1);
        let text = render(&rows);
        assert!(text.starts_with("NODE   SHOULD RUN   POD   WHY\n"), "{text}");
    }
}
