//! The built-in kinds a 1.33 API server serves beyond the workloads, with the real kubectl:
//! RBAC, policy, networking, autoscaling, scheduling, quota, storage, certificates, admission,
//! flow control, the aggregator and the review APIs; and the wire details real clients rely on.

mod common;

use common::Cluster;
use serde_json::Value;

/// Objects of many kinds, as public manifests carry them.
const MANIFEST: &str = r#"
apiVersion: v1
kind: ServiceAccount
metadata: {name: exporter}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: "system:exporter"}
rules:
- apiGroups: [""]
  resources: [nodes, nodes/metrics, services, endpoints, pods]
  verbs: [get, list, watch]
- nonResourceURLs: [/metrics]
  verbs: [get]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "system:exporter"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "system:exporter"}
subjects:
- {kind: ServiceAccount, name: exporter, namespace: default}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: leader-election}
rules:
- apiGroups: [coordination.k8s.io]
  resources: [leases]
  verbs: [get, create, update]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: leader-election}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: leader-election}
subjects:
- {kind: ServiceAccount, name: exporter}
- {kind: User, name: jane, apiGroup: rbac.authorization.k8s.io}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: web}
spec:
  minAvailable: 1
  selector: {matchLabels: {app: web}}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-ingress}
spec:
  podSelector: {}
  policyTypes: [Ingress]
---
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: {name: nginx}
spec: {controller: k8s.io/ingress-nginx}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: web}
spec:
  ingressClassName: nginx
  rules:
  - host: web.example.com
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}
---
apiVersion: scheduling.k8s.io/v1
kind: PriorityClass
metadata: {name: high}
value: 100000
description: important workloads
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: web}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web}
  minReplicas: 1
  maxReplicas: 5
  metrics:
  - type: Resource
    resource: {name: cpu, target: {type: Utilization, averageUtilization: 60}}
---
apiVersion: v1
kind: ResourceQuota
metadata: {name: compute}
spec:
  hard: {pods: "20", requests.cpu: "4", limits.memory: 8Gi}
---
apiVersion: v1
kind: LimitRange
metadata: {name: defaults}
spec:
  limits:
  - type: Container
    default: {cpu: 500m, memory: 256Mi}
    defaultRequest: {cpu: 100m, memory: 64Mi}
---
apiVersion: node.k8s.io/v1
kind: RuntimeClass
metadata: {name: gvisor}
handler: runsc
---
apiVersion: storage.k8s.io/v1
kind: CSIDriver
metadata: {name: ebs.csi.aws.com}
spec: {attachRequired: true, podInfoOnMount: false}
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata: {name: policy.example.com}
webhooks:
- name: validate.policy.example.com
  admissionReviewVersions: [v1]
  sideEffects: None
  clientConfig:
    service: {name: policy, namespace: default, path: /validate}
  rules:
  - {apiGroups: [""], apiVersions: [v1], operations: [CREATE], resources: [pods], scope: "*"}
---
apiVersion: apiregistration.k8s.io/v1
kind: APIService
metadata: {name: v1beta1.metrics.k8s.io}
spec:
  group: metrics.k8s.io
  version: v1beta1
  groupPriorityMinimum: 100
  versionPriority: 100
  insecureSkipTLSVerify: true
  service: {name: metrics-server, namespace: kube-system}
---
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.example.com}
spec:
  group: example.com
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget, shortNames: [wd]}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec: {type: object, x-kubernetes-preserve-unknown-fields: true}
"#;

#[test]
fn manifests_of_every_common_kind_apply_and_print() {
    let c = Cluster::up(2);
    let out = c.kubectl_in(&["apply", "-f", "-"], Some(MANIFEST));
    for created in [
        "clusterrole.rbac.authorization.k8s.io/system:exporter created",
        "rolebinding.rbac.authorization.k8s.io/leader-election created",
        "poddisruptionbudget.policy/web created",
        "networkpolicy.networking.k8s.io/deny-ingress created",
        "ingress.networking.k8s.io/web created",
        "priorityclass.scheduling.k8s.io/high created",
        "horizontalpodautoscaler.autoscaling/web created",
        "resourcequota/compute created",
        "limitrange/defaults created",
        "runtimeclass.node.k8s.io/gvisor created",
        "csidriver.storage.k8s.io/ebs.csi.aws.com created",
        "validatingwebhookconfiguration.admissionregistration.k8s.io/policy.example.com created",
        "apiservice.apiregistration.k8s.io/v1beta1.metrics.k8s.io created",
        "customresourcedefinition.apiextensions.k8s.io/widgets.example.com created",
    ] {
        assert!(out.contains(created), "{created} in\n{out}");
    }
    // A second apply writes nothing. (kubectl still prints "configured" for a PDB, as against
    // upstream: its selector patches by `replace`, so kubectl sends a patch that changes
    // nothing.)
    let before = versions(&c, MANIFEST);
    let again = c.kubectl_in(&["apply", "-f", "-"], Some(MANIFEST));
    assert!(!again.contains("created"), "{again}");
    let configured: Vec<&str> = again.lines().filter(|l| l.ends_with(" configured")).collect();
    assert_eq!(configured, ["poddisruptionbudget.policy/web configured"], "{again}");
    assert_eq!(versions(&c, MANIFEST), before);
    // Server-side apply of the same file takes the objects over from client-side apply; a
    // second one writes nothing.
    let ssa = c.kubectl_in(&["apply", "--server-side", "-f", "-"], Some(MANIFEST));
    assert!(ssa.contains("serverside-applied"), "{ssa}");
    let taken = versions(&c, MANIFEST);
    c.kubectl_in(&["apply", "--server-side", "-f", "-"], Some(MANIFEST));
    assert_eq!(versions(&c, MANIFEST), taken);

    // Tables with upstream's columns.
    let pdb = c.kubectl(&["get", "pdb", "web"]);
    assert!(
        pdb.contains("MIN AVAILABLE") && pdb.contains("MAX UNAVAILABLE") && pdb.contains("N/A"),
        "{pdb}"
    );
    let rb = c.kubectl(&["get", "rolebinding", "leader-election", "-o", "wide"]);
    assert!(
        rb.contains("Role/leader-election") && rb.contains("jane") && rb.contains("/exporter"),
        "{rb}"
    );
    let hpa = c.kubectl(&["get", "hpa", "web"]);
    assert!(
        hpa.contains("Deployment/web") && hpa.contains("cpu: <unknown>/60%"),
        "{hpa}"
    );
    let ing = c.kubectl(&["get", "ingress", "web"]);
    assert!(ing.contains("nginx") && ing.contains("web.example.com"), "{ing}");
    let pc = c.kubectl(&["get", "priorityclass", "high"]);
    assert!(pc.contains("100000") && pc.contains("PreemptLowerPriority"), "{pc}");
    let quota = c.kubectl(&["get", "quota", "compute"]);
    assert!(quota.contains("REQUEST") && quota.contains("LIMIT"), "{quota}");
    // Defaults upstream applies.
    assert_eq!(
        c.kubectl(&["get", "priorityclass", "high", "-o", "jsonpath={.preemptionPolicy}"]),
        "PreemptLowerPriority"
    );
    // kubectl explain reads the new kinds from OpenAPI.
    let explain = c.kubectl(&["explain", "networkpolicy.spec.policyTypes"]);
    assert!(explain.contains("policyTypes"), "{explain}");
    // api-resources lists every group.
    let resources = c.kubectl(&["api-resources", "-o", "name"]);
    for r in [
        "clusterroles.rbac.authorization.k8s.io",
        "poddisruptionbudgets.policy",
        "horizontalpodautoscalers.autoscaling",
        "customresourcedefinitions.apiextensions.k8s.io",
        "apiservices.apiregistration.k8s.io",
        "selfsubjectreviews.authentication.k8s.io",
        "flowschemas.flowcontrol.apiserver.k8s.io",
        "volumeattachments.storage.k8s.io",
    ] {
        assert!(resources.lines().any(|l| l == r), "{r} in\n{resources}");
    }
    // The built-in resources, and the manifest's custom resource once its definition is
    // Established.
    assert!(resources.lines().any(|l| l == "widgets.example.com"), "{resources}");
    assert_eq!(resources.lines().count(), 61, "{resources}");
    // Everything goes again.
    let out = c.kubectl_in(&["delete", "-f", "-"], Some(MANIFEST));
    assert!(out.contains("\"web\" deleted") || out.contains("web deleted"), "{out}");
    assert!(
        c.kubectl_err(&["get", "clusterrole", "system:exporter"], None)
            .contains("NotFound")
    );
}

/// Every object of `manifest` as `kind/name resourceVersion`, one per line.
fn versions(c: &Cluster, manifest: &str) -> String {
    let template = "jsonpath={range .items[*]}{.kind}/{.metadata.name} {.metadata.resourceVersion}{\"\\n\"}{end}";
    c.kubectl_in(&["get", "-f", "-", "-o", template], Some(manifest))
}

#[test]
fn kubectl_auth_answers_for_the_admin() {
    let c = Cluster::up(1);
    let who = c.kubectl(&["auth", "whoami"]);
    assert!(who.contains("system:admin") && who.contains("system:masters"), "{who}");
    assert_eq!(c.kubectl(&["auth", "can-i", "create", "daemonsets"]).trim(), "yes");
    assert_eq!(c.kubectl(&["auth", "can-i", "*", "*"]).trim(), "yes");
    let list = c.kubectl(&["auth", "can-i", "--list"]);
    assert!(list.contains("*.*"), "{list}");
    // Another user has no grants unless a binding gives them.
    let no = c.kubectl_output(&["auth", "can-i", "get", "pods", "--as=jane"], None);
    assert!(!no.status.success());
}

#[test]
fn wire_details_real_clients_rely_on() {
    let c = Cluster::up(1);
    // GET /version/ with a trailing slash (kr8s).
    let v: Value = serde_json::from_str(&c.kubectl(&["get", "--raw", "/version/"])).expect("version");
    assert_eq!(v["major"], "1");
    // Paged lists say how many items remain (once the namespace's own configmap is there).
    c.eventually(30, "kube-root-ca.crt", || {
        c.kubectl_output(&["get", "cm", "kube-root-ca.crt"], None)
            .status
            .success()
            .then_some(())
    });
    for i in 0..5 {
        c.kubectl(&["create", "configmap", &format!("cm-{i}")]);
    }
    let page: Value =
        serde_json::from_str(&c.kubectl(&["get", "--raw", "/api/v1/namespaces/default/configmaps?limit=2"]))
            .expect("page");
    let total: Value =
        serde_json::from_str(&c.kubectl(&["get", "--raw", "/api/v1/namespaces/default/configmaps"])).expect("list");
    let all = total["items"].as_array().unwrap().len() as i64;
    assert_eq!(
        page["metadata"]["remainingItemCount"],
        serde_json::json!(all - 2),
        "{}",
        page["metadata"]
    );
    // Statuses are encoded even when empty, as Go encodes them.
    c.kubectl(&["create", "service", "clusterip", "web", "--tcp=80:8080"]);
    let svc: Value = serde_json::from_str(&c.kubectl(&["get", "svc", "web", "-o", "json"])).expect("svc");
    assert_eq!(svc["status"], serde_json::json!({"loadBalancer": {}}));
    // A Service that becomes a NodePort gets its node port.
    c.kubectl(&["patch", "svc", "web", "-p", r#"{"spec":{"type":"NodePort"}}"#]);
    let port = c.kubectl(&["get", "svc", "web", "-o", "jsonpath={.spec.ports[0].nodePort}"]);
    let port: u16 = port.parse().expect("a node port");
    assert!((30000..=32767).contains(&port), "{port}");
    // A claim naming its class by the beta annotation keeps it.
    let pvc = "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata:\n  name: old-style\n  annotations: {volume.beta.kubernetes.io/storage-class: fast}\nspec:\n  accessModes: [ReadWriteOnce]\n  resources: {requests: {storage: 1Gi}}\n";
    c.kubectl_in(&["apply", "-f", "-"], Some(pvc));
    assert_eq!(
        c.kubectl(&["get", "pvc", "old-style", "-o", "jsonpath={.spec.storageClassName}"]),
        ""
    );
    // The built-in class is k3s's, so the public local-path-provisioner manifest applies.
    let sc = "apiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata: {name: local-path}\nprovisioner: rancher.io/local-path\nvolumeBindingMode: WaitForFirstConsumer\nreclaimPolicy: Delete\n";
    c.eventually(30, "the default class", || {
        (!c.kubectl(&["get", "sc", "-o", "name"]).is_empty()).then_some(())
    });
    let out = c.kubectl_in(&["apply", "-f", "-"], Some(sc));
    assert!(out.contains("storageclass.storage.k8s.io/local-path"), "{out}");
    // Server-side apply with a YAML body.
    let cm = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: from-ssa}\ndata: {a: '1'}\n";
    c.kubectl_in(&["apply", "--server-side", "-f", "-"], Some(cm));
    assert_eq!(c.kubectl(&["get", "cm", "from-ssa", "-o", "jsonpath={.data.a}"]), "1");
    // Streaming subresources are served; a pod on a simulated node has no process behind them.
    c.kubectl(&["run", "sim", "--image=nginx"]);
    c.kubectl(&["wait", "--for=condition=Ready", "pod/sim", "--timeout=60s"]);
    let err = c.kubectl_err(&["port-forward", "pod/sim", "8080"], None);
    assert!(
        err.contains("runs on a simulated node: there is no process to forward to"),
        "{err}"
    );
    let err = c.kubectl_err(&["attach", "sim"], None);
    assert!(
        err.contains("runs on a simulated node: there is no process to attach to"),
        "{err}"
    );
    let subs = c.kubectl(&["get", "--raw", "/api/v1"]);
    assert!(
        subs.contains("\"pods/portforward\"") && subs.contains("\"pods/attach\""),
        "{subs}"
    );
}

#[test]
fn autoscalers_are_one_object_in_two_versions() {
    let c = Cluster::up(1);
    let v1 = "apiVersion: autoscaling/v1\nkind: HorizontalPodAutoscaler\nmetadata: {name: php}\nspec:\n  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: php}\n  minReplicas: 1\n  maxReplicas: 10\n  targetCPUUtilizationPercentage: 50\n";
    c.kubectl_in(&["apply", "-f", "-"], Some(v1));
    let as_v2: Value = serde_json::from_str(&c.kubectl(&[
        "get",
        "--raw",
        "/apis/autoscaling/v2/namespaces/default/horizontalpodautoscalers/php",
    ]))
    .expect("v2");
    assert_eq!(
        as_v2["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"],
        50
    );
    let as_v1: Value = serde_json::from_str(&c.kubectl(&[
        "get",
        "--raw",
        "/apis/autoscaling/v1/namespaces/default/horizontalpodautoscalers/php",
    ]))
    .expect("v1");
    assert_eq!(as_v1["apiVersion"], "autoscaling/v1");
    assert_eq!(as_v1["spec"]["targetCPUUtilizationPercentage"], 50);
    // A second apply through v1 changes nothing; a change through v1 shows in v2.
    let again = c.kubectl_in(&["apply", "-f", "-"], Some(v1));
    assert!(again.contains("unchanged"), "{again}");
    let changed = v1.replace(
        "targetCPUUtilizationPercentage: 50",
        "targetCPUUtilizationPercentage: 70",
    );
    c.kubectl_in(&["apply", "-f", "-"], Some(&changed));
    assert_eq!(
        c.kubectl(&[
            "get",
            "hpa.v2.autoscaling",
            "php",
            "-o",
            "jsonpath={.spec.metrics[0].resource.target.averageUtilization}"
        ]),
        "70"
    );
    let list: Value = serde_json::from_str(&c.kubectl(&[
        "get",
        "--raw",
        "/apis/autoscaling/v1/namespaces/default/horizontalpodautoscalers",
    ]))
    .expect("list");
    assert_eq!(list["kind"], "HorizontalPodAutoscalerList");
    assert_eq!(list["items"][0]["spec"]["targetCPUUtilizationPercentage"], 70);
    assert!(c.kubectl(&["get", "hpa", "php"]).contains("cpu: <unknown>/70%"));
    c.kubectl(&["delete", "hpa", "php"]);
    assert!(c.kubectl_err(&["get", "hpa", "php"], None).contains("NotFound"));
}

const DNS: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: dns}
spec:
  replicas: 2
  selector: {matchLabels: {app: dns}}
  template:
    metadata: {labels: {app: dns}}
    spec:
      containers:
      - name: dns
        image: coredns:1.12
        ports:
        - {containerPort: 53, name: dns, protocol: UDP}
        - {containerPort: 53, name: dns-tcp, protocol: TCP}
        - {containerPort: 9153, name: metrics}
"#;

#[test]
fn server_side_apply_keys_lists_as_upstream() {
    let c = Cluster::up(1);
    // Ports keyed by [containerPort, protocol]: 53/UDP and 53/TCP are two items.
    let out = c.kubectl_in(&["apply", "--server-side", "-f", "-"], Some(DNS));
    assert!(out.contains("deployment.apps/dns serverside-applied"), "{out}");
    c.kubectl(&["rollout", "status", "deploy/dns", "--timeout=60s"]);
    let rv = c.kubectl(&["get", "deploy", "dns", "-o", "jsonpath={.metadata.resourceVersion}"]);
    c.kubectl_in(&["apply", "--server-side", "-f", "-"], Some(DNS));
    assert_eq!(
        c.kubectl(&["get", "deploy", "dns", "-o", "jsonpath={.metadata.resourceVersion}"]),
        rv
    );
    let ports = c.kubectl(&[
        "get",
        "deploy",
        "dns",
        "-o",
        "jsonpath={.spec.template.spec.containers[0].ports[*].name}",
    ]);
    assert_eq!(ports, "dns dns-tcp metrics");
    let fields = c.kubectl(&[
        "get",
        "deploy",
        "dns",
        "-o",
        "jsonpath={.metadata.managedFields[0].fieldsV1}",
        "--show-managed-fields",
    ]);
    assert!(
        fields.contains(r#"k:{\"containerPort\":53,\"protocol\":\"UDP\"}"#),
        "{fields}"
    );
    assert!(
        fields.contains(r#"k:{\"containerPort\":9153,\"protocol\":\"TCP\"}"#),
        "{fields}"
    );
    // Dropping 53/TCP from the configuration removes exactly that port.
    let fewer = DNS.replace("        - {containerPort: 53, name: dns-tcp, protocol: TCP}\n", "");
    c.kubectl_in(&["apply", "--server-side", "-f", "-"], Some(&fewer));
    let ports = c.kubectl(&[
        "get",
        "deploy",
        "dns",
        "-o",
        "jsonpath={.spec.template.spec.containers[0].ports[*].name}",
    ]);
    assert_eq!(ports, "dns metrics");
    // The markers are published in OpenAPI v3, as upstream's.
    let v3: Value = serde_json::from_str(&c.kubectl(&["get", "--raw", "/openapi/v3/api/v1"])).expect("openapi");
    let ports = &v3["components"]["schemas"]["io.k8s.api.core.v1.Container"]["properties"]["ports"];
    assert_eq!(ports["x-kubernetes-list-type"], "map", "{ports}");
    assert_eq!(
        ports["x-kubernetes-list-map-keys"],
        serde_json::json!(["containerPort", "protocol"])
    );
    assert_eq!(ports["x-kubernetes-patch-merge-key"], "containerPort");

    // An apply that owns no field (a bare namespace) records no manager, and applying it
    // again writes nothing.
    let bare = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: bare\n";
    c.kubectl_in(&["apply", "--server-side", "-f", "-"], Some(bare));
    let first = c.kubectl(&["get", "ns", "bare", "-o", "json", "--show-managed-fields"]);
    assert!(!first.contains("managedFields"), "{first}");
    c.kubectl_in(&["apply", "--server-side", "-f", "-"], Some(bare));
    let second = c.kubectl(&["get", "ns", "bare", "-o", "json", "--show-managed-fields"]);
    assert_eq!(first, second);
}

#[test]
fn client_side_apply_upgrades_to_server_side() {
    let c = Cluster::up(1);
    let dns = DNS.replace("replicas: 2", "replicas: 1");
    c.kubectl_in(&["apply", "-f", "-"], Some(&dns));
    // kubectl scales it through the scale subresource: replicas is "kubectl"'s (the manager
    // a write without fieldManager gets from its User-Agent), and no longer matches
    // last-applied.
    c.kubectl(&["scale", "deploy", "dns", "--replicas=3"]);
    // kubectl takes over what its client-side apply set without conflicts...
    let image = dns
        .replace("coredns:1.12", "coredns:1.13")
        .replace("  replicas: 1\n", "");
    let out = c.kubectl_in(&["apply", "--server-side", "-f", "-"], Some(&image));
    assert!(out.contains("serverside-applied"), "{out}");
    let got = c.kubectl(&[
        "get",
        "deploy",
        "dns",
        "-o",
        "jsonpath={.spec.template.spec.containers[0].image} {.spec.replicas}",
    ]);
    assert_eq!(got, "coredns:1.13 3");
    // ...and keeps the annotation in step, so client-side apply still works after it.
    let last = c.kubectl(&[
        "get",
        "deploy",
        "dns",
        "-o",
        "jsonpath={.metadata.annotations.kubectl\\.kubernetes\\.io/last-applied-configuration}",
    ]);
    assert!(
        last.contains("coredns:1.13") && !last.contains("\"replicas\""),
        "{last}"
    );
    // A field someone else changed away from last-applied still conflicts.
    let err = c.kubectl_err(&["apply", "--server-side", "-f", "-"], Some(&dns));
    assert!(
        err.contains(r#"conflict with "kubectl" with subresource "scale" using apps/v1: .spec.replicas"#),
        "{err}"
    );
}

#[test]
fn lists_and_kinds_without_a_definition_apply_as_upstream() {
    let c = Cluster::up(1);
    let list = r#"
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: ConfigMap
  metadata: {name: listed}
  data: {x: "1"}
- apiVersion: rbac.authorization.k8s.io/v1
  kind: ClusterRole
  metadata: {name: lister}
  rules: [{apiGroups: [""], resources: [pods], verbs: [list]}]
"#;
    // kubectl validates a List's items against OpenAPI v2, which it reads as protobuf.
    let out = c.kubectl_in(&["apply", "-f", "-"], Some(list));
    assert!(
        out.contains("configmap/listed created")
            && out.contains("clusterrole.rbac.authorization.k8s.io/lister created"),
        "{out}"
    );
    let out = c.kubectl_in(&["apply", "--server-side", "-f", "-"], Some(list));
    assert!(out.contains("configmap/listed serverside-applied"), "{out}");
    let explain = c.kubectl(&["explain", "--output=plaintext-openapiv2", "clusterrole.rules"]);
    assert!(
        explain.contains("PolicyRule") && explain.contains("rules <[]Object>"),
        "{explain}"
    );
    // A kind nobody defined fails alone; the ordinary objects around it go in.
    let mixed = r#"
apiVersion: v1
kind: ConfigMap
metadata: {name: before}
---
apiVersion: example.com/v1
kind: Widget
metadata: {name: w}
spec: {size: 1}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: after}
"#;
    let out = c.kubectl_output(&["apply", "-f", "-"], Some(mixed));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(r#"no matches for kind "Widget" in version "example.com/v1""#),
        "{err}"
    );
    let names = c.kubectl(&["get", "cm", "before", "after", "-o", "name"]);
    assert_eq!(names.trim(), "configmap/before\nconfigmap/after");
}

#[test]
fn events_are_one_resource_seen_through_two_apis() {
    let c = Cluster::up(1);
    let core = r#"
apiVersion: v1
kind: Event
metadata: {name: web.1, namespace: default}
involvedObject: {kind: Pod, name: web, namespace: default}
reason: Pulled
message: pulled the image
type: Normal
source: {component: kubelet}
"#;
    c.kubectl_in(&["create", "-f", "-"], Some(core));
    let seen: Value =
        serde_json::from_str(&c.kubectl(&["get", "events.v1.events.k8s.io", "web.1", "-o", "json"])).expect("event");
    assert_eq!(seen["apiVersion"], "events.k8s.io/v1");
    assert_eq!(seen["note"], "pulled the image");
    assert_eq!(seen["regarding"]["name"], "web");
    assert_eq!(seen["deprecatedSource"]["component"], "kubelet");
    let api = r#"
apiVersion: events.k8s.io/v1
kind: Event
metadata: {name: web.2, namespace: default}
regarding: {kind: Pod, name: web, namespace: default}
reason: Started
note: started the container
type: Normal
action: Start
reportingController: example.com/agent
reportingInstance: node-1
eventTime: "2026-01-01T00:00:00.000000Z"
"#;
    c.kubectl_in(&["create", "-f", "-"], Some(api));
    let core_view: Value =
        serde_json::from_str(&c.kubectl(&["get", "events.v1.", "web.2", "-o", "json"])).expect("event");
    assert_eq!(core_view["apiVersion"], "v1");
    assert_eq!(core_view["message"], "started the container");
    assert_eq!(core_view["reportingComponent"], "example.com/agent");
    // One list, either way; selectors in each API's spelling.
    let names = c.kubectl(&[
        "get",
        "events.v1.events.k8s.io",
        "--field-selector",
        "regarding.name=web",
        "-o",
        "name",
    ]);
    assert_eq!(names.lines().count(), 2, "{names}");
    let names = c.kubectl(&[
        "get",
        "events.v1.",
        "--field-selector",
        "involvedObject.name=web",
        "-o",
        "name",
    ]);
    assert_eq!(names.lines().count(), 2, "{names}");
    // The events API's own rules apply to writes through it.
    let bad = api.replace("web.2", "web.3").replace("action: Start\n", "");
    let err = c.kubectl_err(&["create", "-f", "-"], Some(&bad));
    assert!(err.contains("action"), "{err}");
    // Deleting through one API deletes the one object.
    c.kubectl(&["delete", "events.v1.events.k8s.io", "web.1"]);
    assert!(
        c.kubectl_err(&["get", "events.v1.", "web.1"], None)
            .contains("NotFound")
    );
}

#[test]
fn component_statuses_report_this_process() {
    let c = Cluster::up(1);
    let out = c.kubectl_output(&["get", "componentstatuses"], None);
    assert!(out.status.success());
    let table = String::from_utf8_lossy(&out.stdout);
    for part in ["scheduler", "controller-manager", "etcd-0"] {
        assert!(
            table
                .lines()
                .any(|l| l.starts_with(part) && l.contains("Healthy") && l.contains("ok")),
            "{table}"
        );
    }
    assert!(String::from_utf8_lossy(&out.stderr).contains("Warning: v1 ComponentStatus is deprecated in v1.19+"));
    let one: Value = serde_json::from_str(&c.kubectl(&["get", "cs", "etcd-0", "-o", "json"])).expect("cs");
    assert_eq!(one["conditions"][0]["type"], "Healthy");
    assert!(
        c.kubectl_err(&["get", "cs", "nope"], None)
            .contains("Component not found: nope")
    );
}

#[test]
fn pods_with_unbound_claims_stay_pending() {
    let c = Cluster::up(2);
    let manifest = r#"
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: nowhere}
spec:
  storageClassName: fast
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 1Gi}}
---
apiVersion: v1
kind: Pod
metadata: {name: needs-claim}
spec:
  containers: [{name: c, image: nginx}]
  volumes: [{name: d, persistentVolumeClaim: {claimName: nowhere}}]
---
apiVersion: v1
kind: Pod
metadata: {name: needs-missing}
spec:
  containers: [{name: c, image: nginx}]
  volumes: [{name: d, persistentVolumeClaim: {claimName: missing}}]
"#;
    c.kubectl_in(&["apply", "-f", "-"], Some(manifest));
    for (pod, why) in [
        (
            "needs-claim",
            "0/2 nodes are available: pod has unbound immediate PersistentVolumeClaims. \
             preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling.",
        ),
        (
            "needs-missing",
            "0/2 nodes are available: persistentvolumeclaim \"missing\" not found. \
             preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling.",
        ),
    ] {
        let message = c.eventually(20, "unschedulable", || {
            let m = c.kubectl(&[
                "get",
                "pod",
                pod,
                "-o",
                "jsonpath={.status.conditions[?(@.type==\"PodScheduled\")].message}",
            ]);
            (!m.is_empty()).then_some(m)
        });
        assert_eq!(message, why);
        assert_eq!(c.kubectl(&["get", "pod", pod, "-o", "jsonpath={.spec.nodeName}"]), "");
    }
    // The missing claim appears (in the default class, bound on first use): the pod runs.
    let claim = "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: missing}\nspec:\n  accessModes: [ReadWriteOnce]\n  resources: {requests: {storage: 1Gi}}\n";
    c.kubectl_in(&["apply", "-f", "-"], Some(claim));
    c.eventually(30, "scheduled once the claim exists", || {
        (!c.kubectl(&["get", "pod", "needs-missing", "-o", "jsonpath={.spec.nodeName}"])
            .is_empty())
        .then_some(())
    });
}

#[test]
fn a_crd_whose_schema_is_not_structural_is_refused_as_upstream() {
    let c = Cluster::up(1);
    let bad = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: gadgets.example.com}
spec:
  group: example.com
  scope: Namespaced
  names: {plural: gadgets, singular: gadget, kind: Gadget}
  versions:
  - name: v1
    served: true
    storage: true
    subresources: {status: {}}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          metadata: {type: object, properties: {labels: {type: object}}}
          spec:
            properties:
              size: {type: integer}
              port: {type: string, x-kubernetes-int-or-string: true}
          tags: {type: array}
          ids: {type: array, uniqueItems: true, items: {type: string}}
"#;
    let err = c.kubectl_err(&["apply", "-f", "-"], Some(bad));
    let at = "spec.versions[0].schema.openAPIV3Schema";
    for want in [
        "The CustomResourceDefinition \"gadgets.example.com\" is invalid:".to_string(),
        format!("* {at}.properties[spec].type: Required value: must not be empty for specified object fields"),
        format!("* {at}.properties[tags].items: Required value: must be specified"),
        format!(
            "* {at}.properties[spec].properties[port].type: Invalid value: \"string\": must be empty if x-kubernetes-int-or-string is true"
        ),
        format!(
            "* {at}.properties[ids].uniqueItems: Forbidden: uniqueItems cannot be set to true since the runtime complexity becomes quadratic"
        ),
        format!(
            "* {at}.properties[metadata]: Forbidden: must not specify anything other than name and generateName, but metadata is implicitly specified"
        ),
    ] {
        assert!(err.contains(&want), "{want:?} in\n{err}");
    }
    let gone = c.kubectl_err(&["get", "crd", "gadgets.example.com"], None);
    assert!(gone.contains("NotFound"), "nothing was stored: {gone}");
    // The same definition made structural is accepted.
    let good = bad
        .replace(
            "            properties:\n              size",
            "            type: object\n            properties:\n              size",
        )
        .replace(
            "port: {type: string, x-kubernetes-int-or-string: true}",
            "port: {x-kubernetes-int-or-string: true}",
        )
        .replace("tags: {type: array}", "tags: {type: array, items: {type: string}}")
        .replace("uniqueItems: true, ", "x-kubernetes-list-type: set, ")
        .replace(
            "properties: {labels: {type: object}}",
            "properties: {name: {type: string, maxLength: 20}}",
        );
    let out = c.kubectl_in(&["apply", "-f", "-"], Some(&good));
    assert!(
        out.contains("customresourcedefinition.apiextensions.k8s.io/gadgets.example.com created"),
        "{out}"
    );
}
