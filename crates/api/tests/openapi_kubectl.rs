//! Real kubectl against the OpenAPI documents and strategic merge patch of this crate.
//!
//! A tiny std-only HTTP server serves `/version`, aggregated discovery built from the
//! catalogue, `/openapi/v3` and just enough of the REST verbs (POST stores, GET reads, PATCH
//! applies [`shoal_api::smp::strategic_merge`]). kubectl then runs `explain`, `apply` twice
//! and `edit`; the test checks what kubectl printed, what it sent, and the patched objects.
//! This pins the contract kubectl needs from `openapi.rs` (GVK extensions, `fieldValidation`,
//! patch strategies) and `smp.rs`, independently of the API server.
//!
//! Needs `kubectl` on `PATH`, like the rest of the workspace's tests.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use shoal_api::catalogue::{self, RESOURCES};
use shoal_api::{openapi, schema, smp};

/// What the fake server holds: objects by path, and every write request it received.
#[derive(Default)]
struct State {
    objects: HashMap<String, Value>,
    writes: Vec<(String, String, String, Value)>,
}

type Shared = Arc<Mutex<State>>;

struct Request {
    method: String,
    target: String,
    content_type: String,
    body: Vec<u8>,
}

fn read_request(reader: &mut BufReader<TcpStream>) -> Option<Request> {
    let mut line = String::new();
    reader.read_line(&mut line).ok().filter(|n| *n > 0)?;
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next()?.to_string(), parts.next()?.to_string());
    let (mut length, mut content_type) = (0, String::new());
    loop {
        let mut header = String::new();
        reader.read_line(&mut header).ok()?;
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        let (name, value) = header.split_once(':')?;
        match name.to_ascii_lowercase().as_str() {
            "content-length" => length = value.trim().parse().ok()?,
            "content-type" => content_type = value.trim().to_string(),
            _ => {}
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some(Request {
        method,
        target,
        content_type,
        body,
    })
}

fn respond(stream: &mut TcpStream, code: u16, content_type: &str, body: &[u8]) {
    let head = format!(
        "HTTP/1.1 {code} X\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes()).and_then(|()| stream.write_all(body));
}

fn not_found() -> (u16, String, Vec<u8>) {
    let status = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404});
    (404, "application/json".into(), status.to_string().into_bytes())
}

fn discovery(core: bool) -> Value {
    let mut groups: Vec<(&str, Vec<Value>)> = Vec::new();
    for r in RESOURCES.iter().filter(|r| r.group.is_empty() == core) {
        let subresources: Vec<Value> = r
            .subresources
            .iter()
            .map(|s| {
                json!({"subresource": s.name, "verbs": s.verbs,
                       "responseKind": {"group": s.group, "version": s.version, "kind": s.kind}})
            })
            .collect();
        let resource = json!({
            "resource": r.plural, "singularResource": r.singular, "verbs": r.verbs,
            "scope": if r.namespaced { "Namespaced" } else { "Cluster" },
            "shortNames": r.short_names, "categories": r.categories, "subresources": subresources,
            "responseKind": {"group": r.group, "version": r.version, "kind": r.kind},
        });
        match groups.iter_mut().find(|(g, _)| *g == r.group) {
            Some((_, resources)) => resources.push(resource),
            None => groups.push((r.group, vec![resource])),
        }
    }
    let items: Vec<Value> = groups
        .into_iter()
        .map(|(g, resources)| {
            json!({"metadata": {"name": g},
                   "versions": [{"version": "v1", "freshness": "Current", "resources": resources}]})
        })
        .collect();
    json!({"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "metadata": {}, "items": items})
}

/// The schema definition of the object at `path` (`/apis/apps/v1/namespaces/d/deployments/x`).
fn definition_of(path: &str) -> &'static str {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let (group, rest) = match segments.as_slice() {
        ["api", rest @ ..] => ("", rest),
        ["apis", group, rest @ ..] => (*group, rest),
        _ => return "",
    };
    let plural = match rest {
        [version, "namespaces", _, plural, ..] | [version, plural, ..] => catalogue::find(group, version, plural),
        _ => None,
    };
    plural
        .and_then(|r| schema::definition_name(r.group, r.version, r.kind))
        .unwrap_or_default()
}

fn handle(state: &Shared, req: Request) -> (u16, String, Vec<u8>) {
    let path = req.target.split('?').next().unwrap_or_default().to_string();
    let json_ct = "application/json".to_string();
    match (req.method.as_str(), path.as_str()) {
        ("GET", "/version") => {
            let v = json!({"major": "1", "minor": "33", "gitVersion": "v1.33.0", "platform": "linux/amd64",
                           "goVersion": "go1.24", "compiler": "gc", "gitCommit": "x", "gitTreeState": "clean",
                           "buildDate": "2025-01-01T00:00:00Z"});
            (200, json_ct, v.to_string().into_bytes())
        }
        ("GET", "/api" | "/apis") => {
            let ct = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList".to_string();
            (200, ct, discovery(path == "/api").to_string().into_bytes())
        }
        ("GET", "/openapi/v3") => (200, json_ct, openapi::v3_index().to_string().into_bytes()),
        ("GET", p) if p.starts_with("/openapi/v3/") => match openapi::v3_document(&p["/openapi/v3/".len()..]) {
            Some(doc) => (200, json_ct, doc.to_vec()),
            None => not_found(),
        },
        ("GET", p) => match state.lock().unwrap().objects.get(p) {
            Some(obj) => (200, json_ct, obj.to_string().into_bytes()),
            None => not_found(),
        },
        ("POST" | "PATCH", _) => write(state, req, &path),
        _ => not_found(),
    }
}

fn write(state: &Shared, req: Request, path: &str) -> (u16, String, Vec<u8>) {
    let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
    let mut state = state.lock().unwrap();
    state.writes.push((
        req.method.clone(),
        req.target.clone(),
        req.content_type.clone(),
        body.clone(),
    ));
    let (key, object) = if req.method == "POST" {
        let mut object = body;
        object["metadata"]["uid"] = json!("uid-1");
        object["metadata"]["resourceVersion"] = json!("1");
        (
            format!("{path}/{}", object["metadata"]["name"].as_str().unwrap_or_default()),
            object,
        )
    } else {
        let Some(current) = state.objects.get(path) else {
            return not_found();
        };
        let patched = if req.content_type.starts_with("application/strategic-merge-patch+json") {
            smp::strategic_merge(current, &body, definition_of(path)).expect("our SMP rejected kubectl's patch")
        } else {
            let mut merged = current.clone();
            json_patch::merge(&mut merged, &body);
            merged
        };
        (path.to_string(), patched)
    };
    state.objects.insert(key, object.clone());
    let code = if req.method == "POST" { 201 } else { 200 };
    (code, "application/json".into(), object.to_string().into_bytes())
}

fn serve(listener: TcpListener, state: Shared) {
    for stream in listener.incoming().flatten() {
        let state = state.clone();
        std::thread::spawn(move || {
            let Ok(mut writer) = stream.try_clone() else {
                return;
            };
            let mut reader = BufReader::new(stream);
            while let Some(req) = read_request(&mut reader) {
                let (code, content_type, body) = handle(&state, req);
                respond(&mut writer, code, &content_type, &body);
            }
        });
    }
}

struct Kubectl {
    dir: PathBuf,
    server: String,
}

impl Kubectl {
    fn run(&self, args: &[&str], editor: Option<&Path>) -> String {
        let mut cmd = Command::new("kubectl");
        cmd.args(["--server", &self.server, "--cache-dir"])
            .arg(self.dir.join("cache"))
            .args(args)
            .env("KUBECONFIG", self.dir.join("kubeconfig"))
            .env("HOME", &self.dir);
        if let Some(editor) = editor {
            cmd.env("KUBE_EDITOR", editor);
        }
        let out = cmd.output().expect("kubectl must be on PATH for this test");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "kubectl {args:?} failed:\n{text}");
        text
    }

    fn file(&self, name: &str, content: &str) -> String {
        let path = self.dir.join(name);
        std::fs::write(&path, content).unwrap();
        path.to_string_lossy().into_owned()
    }
}

const DEPLOYMENT_V1: &str = "apiVersion: apps/v1
kind: Deployment
metadata: {name: d, namespace: default}
spec:
  strategy: {type: RollingUpdate, rollingUpdate: {maxSurge: 1}}
  selector: {matchLabels: {app: d}}
  template:
    metadata: {labels: {app: d}}
    spec:
      containers:
      - {name: c, image: nginx, ports: [{containerPort: 80}]}
      tolerations:
      - {key: a, operator: Exists}
";

const DEPLOYMENT_V2: &str = "apiVersion: apps/v1
kind: Deployment
metadata: {name: d, namespace: default}
spec:
  strategy: {type: Recreate}
  selector: {matchLabels: {app: d}}
  template:
    metadata: {labels: {app: d}}
    spec:
      containers:
      - {name: c, image: nginx, ports: [{containerPort: 80}, {containerPort: 443}]}
      - {name: side, image: pause}
      tolerations:
      - {key: b, operator: Exists}
";

#[test]
fn kubectl_explains_applies_and_edits_against_our_openapi_and_smp() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let server = format!("http://{}", listener.local_addr().unwrap());
    let state = Shared::default();
    let serving = state.clone();
    std::thread::spawn(move || serve(listener, serving));
    let dir = std::env::temp_dir().join(format!("shoal-api-openapi-kubectl-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let kubectl = Kubectl {
        dir: dir.clone(),
        server,
    };
    kubectl.file("kubeconfig", "apiVersion: v1\nkind: Config\n");

    let explain = kubectl.run(&["explain", "ds.spec"], None);
    assert!(explain.contains("FIELD: spec <DaemonSetSpec>"), "{explain}");
    assert!(
        explain.contains("updateStrategy\t<DaemonSetUpdateStrategy>"),
        "{explain}"
    );
    let containers = kubectl.run(&["explain", "pods.spec.containers"], None);
    assert!(containers.contains("containers <[]Container>"), "{containers}");

    let v1 = kubectl.file("v1.yaml", DEPLOYMENT_V1);
    kubectl.run(&["apply", "-f", &v1], None);
    let v2 = kubectl.file("v2.yaml", DEPLOYMENT_V2);
    kubectl.run(&["apply", "-f", &v2], None);
    let editor = kubectl.file(
        "editor.sh",
        "#!/bin/sh\nsed -i 's/image: nginx$/image: nginx:2/' \"$1\"\n",
    );
    Command::new("chmod").args(["+x", &editor]).status().unwrap();
    kubectl.run(&["edit", "deploy/d"], Some(Path::new(&editor)));

    let state = state.lock().unwrap();
    let writes: Vec<&(String, String, String, Value)> = state.writes.iter().collect();
    assert_eq!(writes.len(), 3, "{writes:#?}");
    assert!(
        writes
            .iter()
            .all(|(_, target, _, _)| target.contains("fieldValidation=Strict"))
    );
    let (_, _, content_type, apply_patch) = writes[1];
    assert_eq!(content_type, "application/strategic-merge-patch+json");
    assert_eq!(
        apply_patch["spec"]["strategy"]["$retainKeys"],
        json!(["type"]),
        "{apply_patch}"
    );
    let order = &apply_patch["spec"]["template"]["spec"]["$setElementOrder/containers"];
    assert_eq!(order, &json!([{"name": "c"}, {"name": "side"}]), "{apply_patch}");

    let object = &state.objects["/apis/apps/v1/namespaces/default/deployments/d"];
    assert_eq!(object["spec"]["strategy"], json!({"type": "Recreate"}));
    let pod = &object["spec"]["template"]["spec"];
    assert_eq!(pod["tolerations"], json!([{"key": "b", "operator": "Exists"}]));
    assert_eq!(pod["containers"][0]["image"], "nginx:2");
    assert_eq!(
        pod["containers"][0]["ports"],
        json!([{"containerPort": 80}, {"containerPort": 443}])
    );
    assert_eq!(pod["containers"][1], json!({"name": "side", "image": "pause"}));
    let _ = std::fs::remove_dir_all(&dir);
}
