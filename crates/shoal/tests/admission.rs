//! Dynamic admission: admission webhooks (a real HTTPS webhook server on a loopback port,
//! written for these tests) and ValidatingAdmissionPolicies, exercised by a real `shoal up`
//! for writes made with the real kubectl.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use base64::Engine as _;
use common::Cluster;
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};

/// What the test webhook server was asked, and where it listens.
struct WebhookServer {
    port: u16,
    ca_b64: String,
    calls: Arc<AtomicUsize>,
    _dir: tempfile::TempDir,
}

/// The test webhook's answer to one AdmissionReview, by path:
/// - `/mutate` labels the object `mutated: "yes"` (a JSON patch), and tries to change its
///   uid and namespace, which the server keeps;
/// - `/validate` refuses a ConfigMap with a `forbidden` key (403) and the delete of one
///   labelled `protected: "true"`, and warns on everything it lets through.
fn answer(path: &str, review: &Value) -> Value {
    let request = &review["request"];
    let uid = request["uid"].clone();
    if path == "/convert" {
        return convert(request);
    }
    let response = match path {
        "/mutate" => {
            let label = if request["object"]["metadata"]["labels"].is_object() {
                json!({"op": "add", "path": "/metadata/labels/mutated", "value": "yes"})
            } else {
                json!({"op": "add", "path": "/metadata/labels", "value": {"mutated": "yes"}})
            };
            // It also tries to take over what the server owns; that part must not stick.
            let patch = json!([label, {"op": "add", "path": "/metadata/uid", "value": "hijacked"},
                               {"op": "add", "path": "/metadata/namespace", "value": "kube-system"}]);
            let patch = base64::engine::general_purpose::STANDARD.encode(patch.to_string());
            json!({"uid": uid, "allowed": true, "patchType": "JSONPatch", "patch": patch})
        }
        _ if request["operation"] == "DELETE" && request["oldObject"]["metadata"]["labels"]["protected"] == "true" => {
            json!({"uid": uid, "allowed": false, "status": {"code": 403, "reason": "Forbidden",
                   "message": "protected config maps stay"}})
        }
        _ if request["object"]["data"].get("forbidden").is_some() => {
            json!({"uid": uid, "allowed": false, "status": {"code": 403, "reason": "Forbidden",
                   "message": "the key forbidden is not allowed"}})
        }
        _ => json!({"uid": uid, "allowed": true, "warnings": ["checked by the test webhook"],
                    "auditAnnotations": {"checked": "yes"}}),
    };
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response})
}

/// The test's aggregated API, `samples.metrics.test.example.com/v1`: its discovery, and one
/// sample per namespace that tells who the front proxy said was asking.
fn aggregated_api(path: &str, headers: &http::HeaderMap) -> Value {
    let gv = "metrics.test.example.com/v1";
    let header = |name: &str| -> Vec<String> {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_string))
            .collect()
    };
    match path.trim_end_matches('/') {
        "/apis/metrics.test.example.com/v1" => {
            json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv,
            "resources": [{"name": "samples", "singularName": "sample", "namespaced": true, "kind": "Sample",
                           "verbs": ["get", "list"], "shortNames": ["smp"]}]})
        }
        p if p.starts_with("/apis/metrics.test.example.com/v1/namespaces/") && p.ends_with("/samples") => {
            let ns = p.split('/').nth(5).unwrap_or_default();
            json!({"kind": "SampleList", "apiVersion": gv, "metadata": {}, "items": [{
                "kind": "Sample", "apiVersion": gv,
                "metadata": {"name": "seen", "namespace": ns, "creationTimestamp": "2026-01-01T00:00:00Z"},
                "user": header("X-Remote-User").join(","), "groups": header("X-Remote-Group"),
                "authorization": header("authorization").len(),
            }]})
        }
        _ => Value::Null,
    }
}

/// The test's conversion webhook for shapes: v1 says `spec.size`, v2 `spec.length`.
fn convert(request: &Value) -> Value {
    let want = request["desiredAPIVersion"].as_str().unwrap_or_default();
    let objects: Vec<Value> = request["objects"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|o| {
            let mut o = o.clone();
            let spec = o["spec"].as_object_mut().expect("a spec");
            let (from, to) = if want.ends_with("/v2") {
                ("size", "length")
            } else {
                ("length", "size")
            };
            if let Some(v) = spec.remove(from) {
                spec.insert(to.into(), v);
            }
            o["apiVersion"] = json!(want);
            o["metadata"]["labels"]["converted-by"] = json!("test-webhook");
            o
        })
        .collect();
    json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "ConversionReview",
           "response": {"uid": request["uid"], "convertedObjects": objects, "result": {"status": "Success"}}})
}

/// Starts the webhook server (HTTPS, a certificate for loopback, `webhook.default.svc` and
/// `sample-api.default.svc`, signed by a CA of its own).
fn webhook_server() -> WebhookServer {
    let dir = tempfile::tempdir().expect("tempdir");
    let names = ["webhook.default.svc".to_string(), "sample-api.default.svc".to_string()];
    let certs = shoal_apiserver::tls::ensure_certs(dir.path(), &names).expect("certs");
    // Serving only: the front proxy's client certificate (signed by the cluster's CA, which
    // this server does not know) is not asked for.
    let config = {
        use tokio_rustls::rustls::pki_types::pem::PemObject as _;
        use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(certs.cert_pem.as_bytes())
            .collect::<Result<_, _>>()
            .expect("the chain");
        let key = PrivateKeyDer::from_pem_slice(certs.key_pem.as_bytes()).expect("the key");
        let mut cfg = tokio_rustls::rustls::ServerConfig::builder_with_provider(Arc::new(
            tokio_rustls::rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("protocols")
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("a server config");
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(cfg)
    };
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
            tx.send(listener.local_addr().expect("addr").port()).expect("port");
            let acceptor = tokio_rustls::TlsAcceptor::from(config);
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let acceptor = acceptor.clone();
                let counted = counted.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else { return };
                    let service = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let counted = counted.clone();
                        async move {
                            counted.fetch_add(1, Ordering::SeqCst);
                            if req.method() == http::Method::GET {
                                let reply = aggregated_api(req.uri().path(), req.headers());
                                return Ok::<_, std::convert::Infallible>(
                                    http::Response::builder()
                                        .status(if reply.is_null() { 404 } else { 200 })
                                        .header("content-type", "application/json")
                                        .body(Full::new(bytes::Bytes::from(reply.to_string())))
                                        .expect("response"),
                                );
                            }
                            let path = req.uri().path().to_string();
                            let timeout = req.uri().query().unwrap_or_default().to_string();
                            let body = req
                                .into_body()
                                .collect()
                                .await
                                .map(|b| b.to_bytes())
                                .unwrap_or_default();
                            let review: Value = serde_json::from_slice(&body).unwrap_or_default();
                            let mut reply = answer(&path, &review);
                            // Upstream tells a webhook its deadline in the query.
                            if timeout != "timeout=10s" {
                                reply["response"]["warnings"] = json!([format!("unexpected query {timeout:?}")]);
                            }
                            Ok::<_, std::convert::Infallible>(
                                http::Response::builder()
                                    .header("content-type", "application/json")
                                    .body(Full::new(bytes::Bytes::from(reply.to_string())))
                                    .expect("response"),
                            )
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                        .await;
                });
            }
        });
    });
    let port = rx.recv().expect("webhook server port");
    WebhookServer {
        port,
        ca_b64: base64::engine::general_purpose::STANDARD.encode(&certs.ca_pem),
        calls,
        _dir: dir,
    }
}

fn configmap(name: &str, data: &str) -> String {
    format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}}}\ndata: {data}\n")
}

#[test]
fn webhooks_mutate_and_deny_as_upstream_calls_them() {
    let hook = webhook_server();
    let c = Cluster::up(0);
    let url = |path: &str| format!("https://127.0.0.1:{}{path}", hook.port);
    let configs = format!(
        r#"
apiVersion: admissionregistration.k8s.io/v1
kind: MutatingWebhookConfiguration
metadata: {{name: label-configmaps}}
webhooks:
- name: label.test.shoal.dev
  admissionReviewVersions: [v1]
  sideEffects: None
  clientConfig: {{url: "{mutate}", caBundle: {ca}}}
  rules: [{{operations: [CREATE], apiGroups: [""], apiVersions: [v1], resources: [configmaps]}}]
  objectSelector: {{matchExpressions: [{{key: skip, operator: DoesNotExist}}]}}
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata: {{name: check-configmaps}}
webhooks:
- name: check.test.shoal.dev
  admissionReviewVersions: [v1]
  sideEffects: None
  clientConfig: {{url: "{validate}", caBundle: {ca}}}
  rules: [{{operations: [CREATE, UPDATE, DELETE], apiGroups: [""], apiVersions: [v1], resources: [configmaps]}}]
  namespaceSelector: {{matchLabels: {{kubernetes.io/metadata.name: default}}}}
  matchConditions:
  - name: not-the-root-ca
    expression: "request.name != 'kube-root-ca.crt'"
"#,
        mutate = url("/mutate"),
        validate = url("/validate"),
        ca = hook.ca_b64,
    );
    c.kubectl_in(&["apply", "-f", "-"], Some(&configs));

    // Mutated, and let through with a warning kubectl shows.
    let created = c.kubectl_output(&["create", "-f", "-"], Some(&configmap("plain", "{a: b}")));
    let stderr = String::from_utf8_lossy(&created.stderr);
    assert!(created.status.success(), "{stderr}");
    assert!(stderr.contains("Warning: checked by the test webhook"), "{stderr}");
    assert_eq!(
        c.kubectl(&["get", "cm", "plain", "-o", "jsonpath={.metadata.labels.mutated}"]),
        "yes"
    );
    let identity = c.kubectl(&[
        "get",
        "cm",
        "plain",
        "-o",
        "jsonpath={.metadata.namespace} {.metadata.uid}",
    ]);
    assert!(
        identity.starts_with("default ") && !identity.contains("hijacked"),
        "{identity}"
    );
    // The object selector leaves this one alone.
    c.kubectl_in(
        &["create", "-f", "-"],
        Some(&configmap("skipped", "{a: b}").replace(
            "metadata: {name: skipped}",
            "metadata: {name: skipped, labels: {skip: 'true'}}",
        )),
    );
    assert_eq!(
        c.kubectl(&["get", "cm", "skipped", "-o", "jsonpath={.metadata.labels.mutated}"]),
        ""
    );

    // Denied with the webhook's code and message, and nothing written.
    let denied = c.kubectl_err(&["create", "-f", "-"], Some(&configmap("bad", "{forbidden: x}")));
    assert!(
        denied.contains(
            "Error from server (Forbidden): error when creating \"STDIN\": admission webhook \"check.test.shoal.dev\" denied the request: the key forbidden is not allowed"
        ),
        "{denied}"
    );
    assert!(c.kubectl_err(&["get", "cm", "bad"], None).contains("NotFound"));
    // An update is checked too.
    let update = c.kubectl_err(
        &[
            "patch",
            "cm",
            "plain",
            "--type=merge",
            "-p",
            r#"{"data":{"forbidden":"y"}}"#,
        ],
        None,
    );
    assert!(
        update.contains("denied the request: the key forbidden is not allowed"),
        "{update}"
    );
    // So is a delete: a protected one stays.
    c.kubectl(&["label", "cm", "plain", "protected=true"]);
    let delete = c.kubectl_err(&["delete", "cm", "plain"], None);
    assert!(
        delete.contains("denied the request: protected config maps stay"),
        "{delete}"
    );
    c.kubectl(&["get", "cm", "plain"]);

    // Another namespace is outside the validating webhook's namespace selector.
    c.kubectl(&["create", "namespace", "elsewhere"]);
    c.kubectl_in(
        &["create", "-n", "elsewhere", "-f", "-"],
        Some(&configmap("free", "{forbidden: x}")),
    );

    // A webhook that cannot be reached fails the request under failurePolicy Fail...
    let calls = hook.calls.load(Ordering::SeqCst);
    let unreachable = |policy: &str| {
        format!(
            r#"
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata: {{name: unreachable}}
webhooks:
- name: unreachable.test.shoal.dev
  admissionReviewVersions: [v1]
  sideEffects: None
  failurePolicy: {policy}
  timeoutSeconds: 2
  clientConfig: {{url: "https://127.0.0.1:1/validate", caBundle: {ca}}}
  rules: [{{operations: [CREATE], apiGroups: [""], apiVersions: [v1], resources: [secrets]}}]
"#,
            ca = hook.ca_b64
        )
    };
    c.kubectl_in(&["apply", "-f", "-"], Some(&unreachable("Fail")));
    let failed = c.kubectl_err(&["create", "secret", "generic", "s1", "--from-literal=a=b"], None);
    assert!(
        failed.contains("Internal error occurred: failed calling webhook \"unreachable.test.shoal.dev\": failed to call webhook: Post \"https://127.0.0.1:1/validate?timeout=2s\""),
        "{failed}"
    );
    // ... and is passed over under Ignore.
    c.kubectl_in(&["apply", "-f", "-"], Some(&unreachable("Ignore")));
    c.kubectl(&["create", "secret", "generic", "s1", "--from-literal=a=b"]);
    assert_eq!(
        hook.calls.load(Ordering::SeqCst),
        calls,
        "secrets are not the test webhook's"
    );

    // A webhook reached through its Service: the endpoint an EndpointSlice names, the
    // certificate checked for webhook.default.svc.
    let service = format!(
        r#"
apiVersion: v1
kind: Service
metadata: {{name: webhook}}
spec:
  ports: [{{name: https, port: 443, targetPort: {port}}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: webhook-1, labels: {{kubernetes.io/service-name: webhook}}}}
addressType: IPv4
endpoints: [{{addresses: [127.0.0.1], conditions: {{ready: true}}}}]
ports: [{{name: https, port: {port}, protocol: TCP}}]
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata: {{name: by-service}}
webhooks:
- name: service.test.shoal.dev
  admissionReviewVersions: [v1]
  sideEffects: None
  clientConfig: {{service: {{namespace: default, name: webhook, path: /validate}}, caBundle: {ca}}}
  rules: [{{operations: [CREATE], apiGroups: [""], apiVersions: [v1], resources: [serviceaccounts]}}]
"#,
        port = hook.port,
        ca = hook.ca_b64
    );
    c.kubectl_in(&["apply", "-f", "-"], Some(&service));
    let sa = c.kubectl_output(&["create", "serviceaccount", "robot"], None);
    assert!(sa.status.success());
    assert!(String::from_utf8_lossy(&sa.stderr).contains("Warning: checked by the test webhook"));
    assert!(hook.calls.load(Ordering::SeqCst) > calls);

    // A dry run is sent only to webhooks without side effects: all of these.
    let dry = c.kubectl_err(
        &["create", "-f", "-", "--dry-run=server"],
        Some(&configmap("dry", "{forbidden: x}")),
    );
    assert!(dry.contains("the key forbidden is not allowed"), "{dry}");
}

fn daemonset(name: &str, ns: &str, resources: &str) -> String {
    format!(
        r#"
apiVersion: apps/v1
kind: DaemonSet
metadata: {{name: {name}, namespace: {ns}}}
spec:
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      containers:
      - {{name: {name}, image: busybox, resources: {resources}}}
      - {{name: sidecar, image: busybox, resources: {{limits: {{memory: 32Mi}}}}}}
"#
    )
}

#[test]
fn a_policy_keeps_daemonsets_without_limits_out_of_labelled_namespaces() {
    let c = Cluster::up(0);
    let policy = r#"
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: {name: daemons-need-limits}
spec:
  failurePolicy: Fail
  matchConstraints:
    resourceRules:
    - {apiGroups: [apps], apiVersions: [v1], operations: [CREATE, UPDATE], resources: [daemonsets]}
  variables:
  - name: unlimited
    expression: "object.spec.template.spec.containers.filter(c, !has(c.resources.limits) || !has(c.resources.limits.memory)).map(c, c.name)"
  validations:
  - expression: "size(variables.unlimited) == 0"
    messageExpression: "'every container of a DaemonSet needs a memory limit: ' + variables.unlimited.join(', ')"
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata: {name: daemons-need-limits-prod}
spec:
  policyName: daemons-need-limits
  validationActions: [Deny]
  matchResources:
    namespaceSelector: {matchLabels: {env: prod}}
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata: {name: daemons-need-limits-dev}
spec:
  policyName: daemons-need-limits
  validationActions: [Warn, Audit]
  matchResources:
    namespaceSelector: {matchLabels: {env: dev}}
"#;
    c.kubectl_in(&["apply", "-f", "-"], Some(policy));
    c.kubectl_in(
        &["apply", "-f", "-"],
        Some("apiVersion: v1\nkind: Namespace\nmetadata: {name: prod, labels: {env: prod}}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: dev, labels: {env: dev}}\n"),
    );

    let denied = c.kubectl_err(&["apply", "-f", "-"], Some(&daemonset("agent", "prod", "{}")));
    assert!(
        denied.contains(
            // kubectl words an Invalid status by its causes, as it does against upstream.
            "The daemonsets \"agent\" is invalid: : ValidatingAdmissionPolicy 'daemons-need-limits' with binding 'daemons-need-limits-prod' denied request: every container of a DaemonSet needs a memory limit: agent"
        ),
        "{denied}"
    );
    assert!(
        c.kubectl_err(&["get", "ds", "agent", "-n", "prod"], None)
            .contains("NotFound")
    );
    // With a limit it goes in.
    c.kubectl_in(
        &["apply", "-f", "-"],
        Some(&daemonset("agent", "prod", "{limits: {memory: 64Mi}}")),
    );
    // Taking the limit away again is an update the policy refuses.
    let update = c.kubectl_err(&["apply", "-f", "-"], Some(&daemonset("agent", "prod", "{}")));
    assert!(
        update.contains("denied request: every container of a DaemonSet needs a memory limit: agent"),
        "{update}"
    );

    // In dev the binding only warns; in an unlabelled namespace the policy does not apply.
    let warned = c.kubectl_output(&["apply", "-f", "-"], Some(&daemonset("agent", "dev", "{}")));
    let stderr = String::from_utf8_lossy(&warned.stderr);
    assert!(warned.status.success(), "{stderr}");
    assert!(
        stderr.contains("Warning: Validation failed for ValidatingAdmissionPolicy 'daemons-need-limits' with binding 'daemons-need-limits-dev': every container of a DaemonSet needs a memory limit: agent"),
        "{stderr}"
    );
    let plain = c.kubectl_output(&["apply", "-f", "-"], Some(&daemonset("agent", "default", "{}")));
    assert!(
        plain.status.success() && plain.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&plain.stderr)
    );
}

#[test]
fn a_policy_reads_its_limits_from_a_parameter_object() {
    let c = Cluster::up(0);
    let policy = r#"
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: {name: replica-limit}
spec:
  paramKind: {apiVersion: v1, kind: ConfigMap}
  matchConstraints:
    resourceRules:
    - {apiGroups: [apps], apiVersions: [v1], operations: [CREATE, UPDATE], resources: [deployments]}
  validations:
  - expression: "object.spec.replicas <= int(params.data.maxReplicas)"
    message: too many replicas
    reason: Forbidden
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata: {name: replica-limit}
spec:
  policyName: replica-limit
  validationActions: [Deny]
  paramRef: {name: replica-limit, namespace: default, parameterNotFoundAction: Deny}
"#;
    c.kubectl_in(&["apply", "-f", "-"], Some(policy));
    let missing = c.kubectl_err(&["create", "deployment", "web", "--image=nginx", "--replicas=2"], None);
    assert!(
        missing.contains("no params found for policy binding with `Deny` parameterNotFoundAction"),
        "{missing}"
    );
    c.kubectl(&["create", "configmap", "replica-limit", "--from-literal=maxReplicas=3"]);
    let many = c.kubectl_err(&["create", "deployment", "web", "--image=nginx", "--replicas=5"], None);
    assert!(
        many.contains("deployments.apps \"web\" is forbidden: ValidatingAdmissionPolicy 'replica-limit' with binding 'replica-limit' denied request: too many replicas"),
        "{many}"
    );
    c.kubectl(&["create", "deployment", "web", "--image=nginx", "--replicas=2"]);
    // An update goes through the same check (the scale subresource would need a rule of
    // its own, `deployments/scale`, as upstream).
    let patched = c.kubectl_err(
        &["patch", "deployment", "web", "-p", r#"{"spec":{"replicas":9}}"#],
        None,
    );
    assert!(patched.contains("too many replicas"), "{patched}");
    c.kubectl(&["scale", "deployment", "web", "--replicas=9"]);
}

#[test]
fn a_conversion_webhook_serves_two_versions_of_one_object() {
    let hook = webhook_server();
    let c = Cluster::up(0);
    let crd = |url: &str| {
        format!(
            r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {{name: shapes.conv.example.com}}
spec:
  group: conv.example.com
  scope: Namespaced
  names: {{plural: shapes, singular: shape, kind: Shape}}
  conversion:
    strategy: Webhook
    webhook:
      conversionReviewVersions: [v1]
      clientConfig: {{url: "{url}", caBundle: {ca}}}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec: {{type: object, properties: {{size: {{type: integer}}}}}}
  - name: v2
    served: true
    storage: false
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec: {{type: object, properties: {{length: {{type: integer}}}}}}
"#,
            ca = hook.ca_b64
        )
    };
    let url = format!("https://127.0.0.1:{}/convert", hook.port);
    c.kubectl_in(&["apply", "-f", "-"], Some(&crd(&url)));
    c.kubectl(&[
        "wait",
        "--for",
        "condition=established",
        "crd/shapes.conv.example.com",
        "--timeout=20s",
    ]);

    // Written in v1, read in v2; written in v2, stored and read in v1.
    c.kubectl_in(
        &["create", "-f", "-"],
        Some("apiVersion: conv.example.com/v1\nkind: Shape\nmetadata: {name: s1}\nspec: {size: 3}\n"),
    );
    c.kubectl_in(
        &["create", "-f", "-"],
        Some("apiVersion: conv.example.com/v2\nkind: Shape\nmetadata: {name: s2}\nspec: {length: 5}\n"),
    );
    let v2 = "shapes.v2.conv.example.com";
    let v1 = "shapes.v1.conv.example.com";
    assert_eq!(
        c.kubectl(&["get", v2, "s1", "-o", "jsonpath={.apiVersion} {.spec.length}"]),
        "conv.example.com/v2 3"
    );
    assert_eq!(
        c.kubectl(&["get", v1, "s2", "-o", "jsonpath={.apiVersion} {.spec.size}"]),
        "conv.example.com/v1 5"
    );
    let listed = c.kubectl(&[
        "get",
        v2,
        "-o",
        "jsonpath={range .items[*]}{.metadata.name}={.spec.length} {end}",
    ]);
    assert_eq!(listed.trim(), "s1=3 s2=5");
    // Labels a webhook sets travel with the object; the rest of its metadata stays.
    assert_eq!(
        c.kubectl(&["get", v2, "s1", "-o", "jsonpath={.metadata.labels.converted-by}"]),
        "test-webhook"
    );
    // Patched through v2, and watched through v2.
    c.kubectl(&["patch", v2, "s1", "--type=merge", "-p", r#"{"spec":{"length":4}}"#]);
    assert_eq!(c.kubectl(&["get", v1, "s1", "-o", "jsonpath={.spec.size}"]), "4");
    let watched = c.kubectl(&[
        "get",
        "--raw",
        "/apis/conv.example.com/v2/namespaces/default/shapes?watch=true&timeoutSeconds=1",
    ]);
    assert!(
        watched.contains(r#""apiVersion":"conv.example.com/v2""#)
            && watched.contains(r#""length":4"#)
            && !watched.contains(r#""size""#),
        "{watched}"
    );

    // A webhook that cannot be called fails the read, in upstream's words.
    c.kubectl_in(&["apply", "-f", "-"], Some(&crd("https://127.0.0.1:1/convert")));
    let failed = c.kubectl_err(&["get", v2, "s1"], None);
    assert!(
        failed.contains("conversion webhook for conv.example.com/v2, Kind=Shape failed: failed to call webhook: Post \"https://127.0.0.1:1/convert?timeout=30s\""),
        "{failed}"
    );
    // The storage version needs no conversion.
    assert_eq!(c.kubectl(&["get", v1, "s1", "-o", "jsonpath={.spec.size}"]), "4");
}

#[test]
fn an_api_service_hands_its_group_to_another_server() {
    let backend = webhook_server();
    let c = Cluster::up(0);
    let objects = format!(
        r#"
apiVersion: v1
kind: Service
metadata: {{name: sample-api}}
spec:
  ports: [{{name: https, port: 443, targetPort: {port}}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: sample-api-1, labels: {{kubernetes.io/service-name: sample-api}}}}
addressType: IPv4
endpoints: [{{addresses: [127.0.0.1], conditions: {{ready: true}}}}]
ports: [{{name: https, port: {port}, protocol: TCP}}]
---
apiVersion: apiregistration.k8s.io/v1
kind: APIService
metadata: {{name: v1.metrics.test.example.com}}
spec:
  group: metrics.test.example.com
  version: v1
  groupPriorityMinimum: 100
  versionPriority: 100
  service: {{namespace: default, name: sample-api}}
  caBundle: {ca}
"#,
        port = backend.port,
        ca = backend.ca_b64
    );
    c.kubectl_in(&["apply", "-f", "-"], Some(&objects));
    let available = c.eventually(20, "the APIService Available", || {
        let s = c.kubectl(&[
            "get",
            "apiservice",
            "v1.metrics.test.example.com",
            "-o",
            r#"jsonpath={.status.conditions[?(@.type=="Available")].status} {.status.conditions[?(@.type=="Available")].reason}"#,
        ]);
        s.starts_with("True").then_some(s)
    });
    assert_eq!(available, "True Passed");
    // Extension servers learn how to trust the front proxy, as from upstream.
    let trust = c.eventually(10, "the front proxy's trust published", || {
        let out = c.kubectl_output(
            &[
                "get",
                "configmap",
                "-n",
                "kube-system",
                "extension-apiserver-authentication",
                "-o",
                r#"jsonpath={.data.requestheader-allowed-names} {.data.requestheader-username-headers}"#,
            ],
            None,
        );
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).to_string())
    });
    assert_eq!(trust, r#"["front-proxy-client"] ["X-Remote-User"]"#);
    let resources = c.eventually(20, "the aggregated resources in discovery", || {
        let r = c.kubectl(&["api-resources", "--api-group", "metrics.test.example.com"]);
        r.contains("samples").then_some(r)
    });
    assert!(
        resources.lines().any(|l| l.split_whitespace().eq([
            "samples",
            "smp",
            "metrics.test.example.com/v1",
            "true",
            "Sample"
        ])),
        "{resources}"
    );
    // Proxied as the user, in the front-proxy headers, without the user's credential.
    let got = c.kubectl(&["get", "samples", "-n", "kube-system", "-o", "json"]);
    let list: Value = serde_json::from_str(&got).expect("a SampleList");
    let item = &list["items"][0];
    assert_eq!(item["metadata"]["namespace"], "kube-system");
    assert!(
        item["groups"]
            .as_array()
            .expect("groups")
            .contains(&json!("system:masters")),
        "{item}"
    );
    assert!(!item["user"].as_str().unwrap_or_default().is_empty(), "{item}");
    assert_eq!(item["authorization"], 0, "the client's token stays here");
    // RBAC applies before the proxy: a user without a grant is refused here.
    let refused = c.kubectl_err(&["get", "samples", "--as=jane"], None);
    assert!(
        refused
            .contains("samples.metrics.test.example.com is forbidden: User \"jane\" cannot list resource \"samples\""),
        "{refused}"
    );

    // A path the backend could read as another resource than RBAC did is not forwarded.
    let encoded = c.kubectl_err(
        &[
            "get",
            "--raw",
            "/apis/metrics.test.example.com/v1/namespaces/default/samples%2F..%2F..%2Fkube-system",
        ],
        None,
    );
    assert!(encoded.contains("may not hold percent-encoded characters"), "{encoded}");

    // A Service without endpoints makes it unavailable, in upstream's terms.
    c.kubectl(&["delete", "endpointslice", "sample-api-1"]);
    let reason = c.eventually(20, "the APIService unavailable", || {
        let s = c.kubectl(&[
            "get",
            "apiservice",
            "v1.metrics.test.example.com",
            "-o",
            r#"jsonpath={.status.conditions[?(@.type=="Available")].reason}"#,
        ]);
        (s == "MissingEndpoints").then_some(s)
    });
    assert_eq!(reason, "MissingEndpoints");
    let down = c.kubectl_err(
        &[
            "get",
            "--raw",
            "/apis/metrics.test.example.com/v1/namespaces/default/samples",
        ],
        None,
    );
    assert!(
        down.contains("the server is currently unable to handle the request"),
        "{down}"
    );
}
