//! Policy kinds that act, with the real kubectl: upstream's bootstrap RBAC roles and their
//! aggregation, PriorityClasses and Priority admission, LimitRange and ResourceQuota
//! admission with quota status, PodDisruptionBudget status and the eviction API, and
//! APIService availability.

mod common;

use common::Cluster;
use serde_json::Value;

fn json(c: &Cluster, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["-o", "json"]);
    serde_json::from_str(&c.kubectl(&all)).expect("json")
}

#[test]
fn bootstrap_roles_are_upstreams_and_aggregate() {
    let c = Cluster::up(1);
    let roles = c.kubectl(&["get", "clusterroles", "-o", "name"]);
    for r in [
        "cluster-admin",
        "admin",
        "edit",
        "view",
        "system:aggregate-to-view",
        "system:node",
        "system:controller:daemon-set-controller",
    ] {
        assert!(
            roles
                .lines()
                .any(|l| l == format!("clusterrole.rbac.authorization.k8s.io/{r}")),
            "{r} in\n{roles}"
        );
    }
    let binding = json(&c, &["get", "clusterrolebinding", "cluster-admin"]);
    assert_eq!(binding["subjects"][0]["name"], "system:masters");
    assert_eq!(
        binding["metadata"]["labels"]["kubernetes.io/bootstrapping"],
        "rbac-defaults"
    );
    // view holds what the aggregate-to-view roles hold.
    let view = c.eventually(20, "view aggregated", || {
        let v = json(&c, &["get", "clusterrole", "view"]);
        v["rules"].as_array().is_some_and(|r| r.len() > 5).then_some(v)
    });
    assert!(view["rules"].to_string().contains("\"pods\""), "{}", view["rules"]);
    // A CRD's role labelled aggregate-to-view joins view, edit and admin... view only here.
    let widgets = r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: widgets-view
  labels: {rbac.authorization.k8s.io/aggregate-to-view: "true"}
rules:
- apiGroups: [example.com]
  resources: [widgets]
  verbs: [get, list, watch]
"#;
    c.kubectl_in(&["apply", "-f", "-"], Some(widgets));
    c.eventually(20, "widgets in view", || {
        json(&c, &["get", "clusterrole", "view"])["rules"]
            .to_string()
            .contains("widgets")
            .then_some(())
    });
    // edit aggregates view (view is labelled aggregate-to-edit), so it follows too.
    c.eventually(20, "widgets in edit", || {
        json(&c, &["get", "clusterrole", "edit"])["rules"]
            .to_string()
            .contains("widgets")
            .then_some(())
    });
    c.kubectl(&["delete", "clusterrole", "widgets-view"]);
    c.eventually(20, "widgets gone from view", || {
        (!json(&c, &["get", "clusterrole", "view"])["rules"]
            .to_string()
            .contains("widgets"))
        .then_some(())
    });
}

#[test]
fn priority_classes_and_priority_admission() {
    let c = Cluster::up(1);
    let pcs = c.kubectl(&["get", "priorityclasses"]);
    assert!(
        pcs.contains("system-node-critical") && pcs.contains("2000001000"),
        "{pcs}"
    );
    let err = c.kubectl_err(&["delete", "priorityclass", "system-cluster-critical"], None);
    assert!(
        err.contains(r#"priorityclasses.scheduling.k8s.io "system-cluster-critical" is forbidden: this is a system priority class and cannot be deleted"#),
        "{err}"
    );
    // A pod naming a class that does not exist is refused.
    let err = c.kubectl_err(
        &[
            "run",
            "p",
            "--image=nginx",
            r#"--overrides={"spec":{"priorityClassName":"gold"}}"#,
        ],
        None,
    );
    assert!(
        err.contains(r#"pods "p" is forbidden: no PriorityClass with name gold was found"#),
        "{err}"
    );
    // One global default; pods without a class get it.
    let classes = r#"
apiVersion: scheduling.k8s.io/v1
kind: PriorityClass
metadata: {name: normal}
value: 1000
globalDefault: true
---
apiVersion: scheduling.k8s.io/v1
kind: PriorityClass
metadata: {name: gold}
value: 100000
preemptionPolicy: Never
"#;
    c.kubectl_in(&["apply", "-f", "-"], Some(classes));
    c.kubectl(&["run", "plain", "--image=nginx"]);
    let plain = json(&c, &["get", "pod", "plain"]);
    assert_eq!(plain["spec"]["priorityClassName"], "normal");
    assert_eq!(plain["spec"]["priority"], 1000);
    c.kubectl(&[
        "run",
        "rich",
        "--image=nginx",
        r#"--overrides={"spec":{"priorityClassName":"gold"}}"#,
    ]);
    let rich = json(&c, &["get", "pod", "rich"]);
    assert_eq!(
        (
            rich["spec"]["priority"].clone(),
            rich["spec"]["preemptionPolicy"].clone()
        ),
        (100000.into(), "Never".into())
    );
    // A pod may not claim a priority of its own.
    let err = c.kubectl_err(
        &[
            "run",
            "liar",
            "--image=nginx",
            r#"--overrides={"spec":{"priorityClassName":"gold","priority":5}}"#,
        ],
        None,
    );
    assert!(
        err.contains("the integer value of priority (5) must not be provided in pod spec"),
        "{err}"
    );
    let second = "apiVersion: scheduling.k8s.io/v1\nkind: PriorityClass\nmetadata: {name: other}\nvalue: 5\nglobalDefault: true\n";
    let err = c.kubectl_err(&["create", "-f", "-"], Some(second));
    assert!(
        err.contains(r#"priorityclasses.scheduling.k8s.io "other" is forbidden: PriorityClass normal is already marked as default. Only one default can exist"#),
        "{err}"
    );
}

const QUOTA: &str = r#"
apiVersion: v1
kind: ResourceQuota
metadata: {name: compute, namespace: team}
spec:
  hard: {pods: "2", requests.cpu: "1", limits.cpu: "2", count/deployments.apps: "1", services.loadbalancers: "0"}
---
apiVersion: v1
kind: LimitRange
metadata: {name: defaults, namespace: team}
spec:
  limits:
  - type: Container
    default: {cpu: 500m}
    defaultRequest: {cpu: 250m}
    max: {cpu: "1"}
"#;

#[test]
fn limit_ranges_and_quotas_are_enforced_and_counted() {
    let c = Cluster::up(1);
    c.kubectl(&["create", "namespace", "team"]);
    c.kubectl_in(&["apply", "-f", "-"], Some(QUOTA));
    // The controller fills the quota's status; until then it constrains nothing.
    c.eventually(20, "quota status", || {
        json(&c, &["get", "quota", "compute", "-n", "team"])["status"]["hard"]["pods"]
            .as_str()
            .map(str::to_string)
    });
    c.kubectl(&["run", "a", "-n", "team", "--image=nginx"]);
    let a = json(&c, &["get", "pod", "a", "-n", "team"]);
    assert_eq!(a["spec"]["containers"][0]["resources"]["requests"]["cpu"], "250m");
    assert_eq!(a["spec"]["containers"][0]["resources"]["limits"]["cpu"], "500m");
    assert_eq!(
        a["metadata"]["annotations"]["kubernetes.io/limit-ranger"],
        "LimitRanger plugin set: cpu request for container a; cpu limit for container a"
    );
    let err = c.kubectl_err(
        &["run", "big", "-n", "team", "--image=nginx", r#"--overrides={"spec":{"containers":[{"name":"big","image":"nginx","resources":{"limits":{"cpu":"2"}}}]}}"#],
        None,
    );
    assert!(
        err.contains(r#"pods "big" is forbidden: maximum cpu usage per Container is 1, but limit is 2"#),
        "{err}"
    );
    c.kubectl(&["run", "b", "-n", "team", "--image=nginx"]);
    let err = c.kubectl_err(&["run", "c", "-n", "team", "--image=nginx"], None);
    assert!(
        err.contains(
            r#"pods "c" is forbidden: exceeded quota: compute, requested: pods=1, used: pods=2, limited: pods=2"#
        ),
        "{err}"
    );
    let described = c.kubectl(&["describe", "quota", "compute", "-n", "team"]);
    assert!(described.contains("requests.cpu            500m  1"), "{described}");
    // Object counts: one Deployment fits, a second does not.
    c.kubectl(&[
        "create",
        "deployment",
        "one",
        "-n",
        "team",
        "--image=nginx",
        "--replicas=0",
    ]);
    let err = c.kubectl_err(&["create", "deployment", "two", "-n", "team", "--image=nginx"], None);
    assert!(
        err.contains("exceeded quota: compute, requested: count/deployments.apps=1"),
        "{err}"
    );
    // Deleting a pod gives its share back.
    c.kubectl(&[
        "delete",
        "pod",
        "a",
        "-n",
        "team",
        "--wait=false",
        "--grace-period=0",
        "--force",
    ]);
    c.eventually(20, "pods recounted", || {
        (json(&c, &["get", "quota", "compute", "-n", "team"])["status"]["used"]["pods"] == "1").then_some(())
    });
    c.kubectl(&["run", "c", "-n", "team", "--image=nginx"]);
    // An update is charged for what it adds: a Service may not become a LoadBalancer.
    c.kubectl(&["create", "service", "clusterip", "web", "-n", "team", "--tcp=80:80"]);
    let err = c.kubectl_err(
        &[
            "patch",
            "svc",
            "web",
            "-n",
            "team",
            "-p",
            r#"{"spec":{"type":"LoadBalancer"}}"#,
        ],
        None,
    );
    assert!(
        err.contains("exceeded quota: compute, requested: services.loadbalancers=1, used: services.loadbalancers=0, limited: services.loadbalancers=0"),
        "{err}"
    );
    assert_eq!(
        c.kubectl(&["get", "svc", "web", "-n", "team", "-o", "jsonpath={.spec.type}"]),
        "ClusterIP"
    );
    c.kubectl(&["label", "svc", "web", "-n", "team", "tier=front"]);
}

#[test]
fn disruption_budgets_count_pods_and_guard_evictions() {
    let c = Cluster::up(2);
    c.kubectl(&["create", "deployment", "web", "--image=nginx", "--replicas=3"]);
    c.kubectl(&["rollout", "status", "deploy/web", "--timeout=60s"]);
    let pdb = "apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata: {name: web}\nspec:\n  minAvailable: 3\n  selector: {matchLabels: {app: web}}\n";
    c.kubectl_in(&["apply", "-f", "-"], Some(pdb));
    let status = c.eventually(20, "pdb status", || {
        let s = json(&c, &["get", "pdb", "web"])["status"].clone();
        (s["currentHealthy"] == 3 && s["observedGeneration"] == 1).then_some(s)
    });
    assert_eq!(
        (status["desiredHealthy"].clone(), status["expectedPods"].clone()),
        (3.into(), 3.into())
    );
    assert_eq!(status["disruptionsAllowed"], 0);
    assert_eq!(status["conditions"][0]["reason"], "InsufficientPods");
    let pods = c.kubectl(&[
        "get",
        "pods",
        "-l",
        "app=web",
        "-o",
        "jsonpath={.items[0].metadata.name}",
    ]);
    let eviction = format!(
        r#"{{"apiVersion":"policy/v1","kind":"Eviction","metadata":{{"name":"{pods}","namespace":"default"}}}}"#
    );
    let path = format!("/api/v1/namespaces/default/pods/{pods}/eviction");
    let err = c.kubectl_err(&["create", "--raw", &path, "-f", "-"], Some(&eviction));
    assert!(
        err.contains("Cannot evict pod as it would violate the pod's disruption budget"),
        "{err}"
    );
    // With room for one disruption the eviction goes through and is spent.
    c.kubectl_in(
        &["apply", "-f", "-"],
        Some(&pdb.replace("minAvailable: 3", "minAvailable: 2")),
    );
    c.eventually(20, "one disruption allowed", || {
        (json(&c, &["get", "pdb", "web"])["status"]["disruptionsAllowed"] == 1).then_some(())
    });
    c.kubectl_in(&["create", "--raw", &path, "-f", "-"], Some(&eviction));
    let gone = c.kubectl_output(&["get", "pod", &pods], None);
    let text = String::from_utf8_lossy(&gone.stdout).to_string() + &String::from_utf8_lossy(&gone.stderr);
    assert!(!gone.status.success() || text.contains("Terminating"), "{text}");
    c.kubectl(&["rollout", "status", "deploy/web", "--timeout=60s"]);

    // As upstream (test/e2e/apps/disruption.go's eviction, PodDisruptionConditions): the
    // evicted pod is marked DisruptionTarget before it is deleted. A finalizer holds this
    // one so the mark can be read.
    c.kubectl_in(
        &["apply", "-f", "-"],
        Some("apiVersion: v1\nkind: Pod\nmetadata: {name: held, finalizers: [example.com/hold]}\nspec:\n  containers: [{name: c, image: nginx}]\n"),
    );
    c.eventually(30, "the held pod running", || {
        (c.kubectl(&["get", "pod", "held", "-o", "jsonpath={.status.phase}"]) == "Running").then_some(())
    });
    c.kubectl_in(
        &[
            "create",
            "--raw",
            "/api/v1/namespaces/default/pods/held/eviction",
            "-f",
            "-",
        ],
        Some(r#"{"apiVersion":"policy/v1","kind":"Eviction","metadata":{"name":"held","namespace":"default"}}"#),
    );
    let condition = json(&c, &["get", "pod", "held"])["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "DisruptionTarget").cloned())
        .expect("a DisruptionTarget condition");
    assert_eq!(
        (&condition["status"], &condition["reason"], &condition["message"]),
        (
            &"True".into(),
            &"EvictionByEvictionAPI".into(),
            &"Eviction API: evicting".into()
        )
    );
    c.kubectl(&[
        "patch",
        "pod",
        "held",
        "--type=merge",
        "-p",
        r#"{"metadata":{"finalizers":null}}"#,
    ]);
}

#[test]
fn apiservices_report_their_availability() {
    let c = Cluster::up(1);
    let api = r#"
apiVersion: apiregistration.k8s.io/v1
kind: APIService
metadata: {name: v1beta1.metrics.k8s.io}
spec:
  group: metrics.k8s.io
  version: v1beta1
  service: {name: metrics-server, namespace: kube-system}
  groupPriorityMinimum: 100
  versionPriority: 100
  insecureSkipTLSVerify: true
"#;
    c.kubectl_in(&["apply", "-f", "-"], Some(api));
    let row = c.eventually(20, "availability", || {
        let out = c.kubectl(&["get", "apiservice", "v1beta1.metrics.k8s.io"]);
        out.contains("False (ServiceNotFound)").then_some(out)
    });
    assert!(row.contains("kube-system/metrics-server"), "{row}");
    let svc = "apiVersion: v1\nkind: Service\nmetadata: {name: metrics-server, namespace: kube-system}\nspec:\n  ports: [{name: https, port: 443, targetPort: 4443}]\n  selector: {app: metrics-server}\n";
    c.kubectl_in(&["apply", "-f", "-"], Some(svc));
    c.eventually(20, "missing endpoints", || {
        let out = c.kubectl(&[
            "get",
            "apiservice",
            "v1beta1.metrics.k8s.io",
            "-o",
            "jsonpath={.status.conditions[0].reason}",
        ]);
        (out == "MissingEndpoints").then_some(())
    });
    // The built-in group versions are local APIServices, always available.
    let local = c.eventually(20, "local APIServices", || {
        let out = c.kubectl(&["get", "apiservices", "--no-headers"]);
        out.lines()
            .any(|l| l.starts_with("v2.autoscaling ") && l.contains(" Local ") && l.contains(" True "))
            .then_some(out)
    });
    assert_eq!(local.lines().filter(|l| l.contains(" Local ")).count(), 20, "{local}");
    assert!(local.lines().any(|l| l.starts_with("v1. ")), "{local}");
}

const PREEMPTION: &str = r#"
apiVersion: scheduling.k8s.io/v1
kind: PriorityClass
metadata: {name: batch-low}
value: 10
---
apiVersion: scheduling.k8s.io/v1
kind: PriorityClass
metadata: {name: serving-high}
value: 1000
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: filler}
spec:
  replicas: 2
  selector: {matchLabels: {app: filler}}
  template:
    metadata: {labels: {app: filler}}
    spec:
      priorityClassName: batch-low
      containers: [{name: c, image: busybox, resources: {requests: {cpu: 1500m}}}]
"#;

#[test]
fn higher_priority_pods_preempt_lower_ones() {
    let c = Cluster::up(1);
    c.kubectl_in(&["apply", "-f", "-"], Some(PREEMPTION));
    c.kubectl(&["rollout", "status", "deploy/filler", "--timeout=60s"]);
    // 3 of the node's 4 CPUs are taken; the important pod needs 2.
    let vip = r#"{"spec":{"priorityClassName":"serving-high","containers":[{"name":"vip","image":"nginx","resources":{"requests":{"cpu":"2"}}}]}}"#;
    c.kubectl(&["run", "vip", "--image=nginx", &format!("--overrides={vip}")]);
    c.kubectl(&["wait", "--for=condition=Ready", "pod/vip", "--timeout=60s"]);
    assert_eq!(
        c.kubectl(&["get", "pod", "vip", "-o", "jsonpath={.status.nominatedNodeName}"]),
        "node1"
    );
    // One filler went, with upstream's condition and event; its replacement waits, and
    // being less important, preempts no one.
    let preempted = c.eventually(30, "Preempted event", || {
        let out = c.kubectl(&[
            "get",
            "events",
            "--field-selector",
            "reason=Preempted",
            "-o",
            "jsonpath={.items[*].message}",
        ]);
        (!out.is_empty()).then_some(out)
    });
    let uid = c.kubectl(&["get", "pod", "vip", "-o", "jsonpath={.metadata.uid}"]);
    assert_eq!(preempted, format!("Preempted by pod {uid} on node node1"));
    let pending = c.eventually(30, "the replacement waits", || {
        let out = c.kubectl(&[
            "get",
            "pods",
            "-l",
            "app=filler",
            "-o",
            "jsonpath={range .items[?(@.status.phase==\"Pending\")]}{.status.conditions[?(@.type==\"PodScheduled\")].message}{end}",
        ]);
        (!out.is_empty()).then_some(out)
    });
    assert_eq!(
        pending,
        "0/1 nodes are available: 1 Insufficient cpu. preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod."
    );
    assert_eq!(
        c.kubectl(&[
            "get",
            "pods",
            "-l",
            "app=filler",
            "--field-selector=status.phase=Running",
            "-o",
            "name"
        ])
        .lines()
        .count(),
        1
    );
}

#[test]
fn pod_security_admission_enforces_warns_and_checks_namespaces_as_upstream() {
    let c = Cluster::up(1);
    c.kubectl(&["create", "namespace", "secure"]);
    // A privileged pod is admitted under the default (privileged) level.
    c.kubectl(&["run", "old", "--image=nginx", "--privileged", "-n", "secure"]);

    // Labelling the namespace names the pods that break the new level.
    let out = c.kubectl_output(
        &[
            "label",
            "namespace",
            "secure",
            "pod-security.kubernetes.io/enforce=restricted",
        ],
        None,
    );
    assert!(out.status.success());
    let warnings = String::from_utf8_lossy(&out.stderr);
    assert!(
        warnings.contains(r#"Warning: existing pods in namespace "secure" violate the new PodSecurity enforce level "restricted:latest""#),
        "{warnings}"
    );
    assert!(
        warnings.contains("Warning: old: privileged, allowPrivilegeEscalation != false, unrestricted capabilities, runAsNonRoot != true, seccompProfile"),
        "{warnings}"
    );

    // Enforced: upstream's message, nothing stored.
    let err = c.kubectl_err(&["run", "priv", "--image=nginx", "--privileged", "-n", "secure"], None);
    assert!(
        err.contains(r#"Error from server (Forbidden): pods "priv" is forbidden: violates PodSecurity "restricted:latest": privileged (container "priv" must not set securityContext.privileged=true), allowPrivilegeEscalation != false (container "priv" must set securityContext.allowPrivilegeEscalation=false), unrestricted capabilities (container "priv" must set securityContext.capabilities.drop=["ALL"]), runAsNonRoot != true (pod or container "priv" must set securityContext.runAsNonRoot=true), seccompProfile (pod or container "priv" must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost")"#),
        "{err}"
    );
    assert!(
        c.kubectl_err(&["get", "pod", "priv", "-n", "secure"], None)
            .contains("NotFound")
    );

    // A pod that meets `restricted` is admitted.
    let fine = "apiVersion: v1\nkind: Pod\nmetadata: {name: fine, namespace: secure}\nspec:\n  securityContext: {runAsNonRoot: true, runAsUser: 1000, seccompProfile: {type: RuntimeDefault}}\n  containers:\n  - name: c\n    image: busybox\n    securityContext: {allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}}\n";
    c.kubectl_in(&["apply", "-f", "-"], Some(fine));

    // A workload is warned about, never refused; its controller's creates are refused and
    // say why in its events.
    let out = c.kubectl_output(&["create", "deployment", "web", "--image=nginx", "-n", "secure"], None);
    assert!(out.status.success());
    let warning = String::from_utf8_lossy(&out.stderr);
    assert!(
        warning.contains(r#"Warning: would violate PodSecurity "restricted:latest": allowPrivilegeEscalation != false (container "nginx" must set securityContext.allowPrivilegeEscalation=false)"#),
        "{warning}"
    );
    let event = c.eventually(30, "the ReplicaSet's FailedCreate event", || {
        let out = c.kubectl(&[
            "get",
            "events",
            "-n",
            "secure",
            "--field-selector",
            "reason=FailedCreate",
            "-o",
            "jsonpath={.items[0].message}",
        ]);
        (!out.is_empty()).then_some(out)
    });
    assert!(
        event.starts_with("Error creating: pods \"web-")
            && event.contains(r#"is forbidden: violates PodSecurity "restricted:latest": "#),
        "{event}"
    );

    // `warn` alone warns and admits.
    c.kubectl(&["create", "namespace", "lenient"]);
    c.kubectl(&[
        "label",
        "namespace",
        "lenient",
        "pod-security.kubernetes.io/warn=baseline",
    ]);
    let out = c.kubectl_output(&["run", "p", "--image=nginx", "--privileged", "-n", "lenient"], None);
    assert!(out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(r#"Warning: would violate PodSecurity "baseline:latest": privileged (container "p" must not set securityContext.privileged=true)"#),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A label value that is no level is refused, and the namespace keeps its labels.
    let err = c.kubectl_err(
        &[
            "label",
            "namespace",
            "secure",
            "--overwrite",
            "pod-security.kubernetes.io/enforce=bogus",
        ],
        None,
    );
    assert!(
        err.contains(r#"The Namespace "secure" is invalid: metadata.labels[pod-security.kubernetes.io/enforce]: Invalid value: "bogus": must be one of privileged, baseline, restricted"#),
        "{err}"
    );
    assert_eq!(
        c.kubectl(&[
            "get",
            "namespace",
            "secure",
            "-o",
            "jsonpath={.metadata.labels.pod-security\\.kubernetes\\.io/enforce}"
        ]),
        "restricted"
    );
}

/// Follows test/e2e/apps/replica_set.go ("should surface a failure condition on a common
/// issue like exceeded quota"): a ReplicaSet whose pods a ResourceQuota refuses says so in
/// its ReplicaFailure condition (and `kubectl describe`), the owning Deployment carries the
/// same condition, and both clear once the quota has room.
#[test]
fn a_refused_pod_is_a_replica_failure_on_the_set_and_its_deployment() {
    let c = Cluster::up(1);
    c.kubectl_in(
        &["apply", "-f", "-"],
        Some("apiVersion: v1\nkind: ResourceQuota\nmetadata: {name: two-pods}\nspec:\n  hard: {pods: \"2\"}\n"),
    );
    c.eventually(20, "quota status", || {
        (json(&c, &["get", "resourcequota", "two-pods"])["status"]["hard"]["pods"] == "2").then_some(())
    });
    c.kubectl(&["create", "deployment", "web", "--image=nginx", "--replicas=3"]);
    let failure = |c: &Cluster, kind: &str| -> Option<serde_json::Value> {
        let items = json(c, &["get", kind, "-l", "app=web"]);
        items["items"][0]["status"]["conditions"]
            .as_array()?
            .iter()
            .find(|x| x["type"] == "ReplicaFailure" && x["status"] == "True")
            .cloned()
    };
    let rs = c.eventually(30, "the ReplicaSet's ReplicaFailure", || failure(&c, "rs"));
    assert_eq!(rs["reason"], "FailedCreate");
    let message = rs["message"].as_str().unwrap_or_default();
    assert!(message.contains("exceeded quota: two-pods"), "{message}");
    let d = c.eventually(30, "the Deployment's ReplicaFailure", || {
        let d = json(&c, &["get", "deployment", "web"]);
        d["status"]["conditions"]
            .as_array()?
            .iter()
            .find(|x| x["type"] == "ReplicaFailure" && x["status"] == "True")
            .cloned()
    });
    // (Each retry names its own generated pod: the message matches but for that name.)
    assert_eq!(d["reason"], "FailedCreate");
    let copied = d["message"].as_str().unwrap_or_default();
    assert!(
        copied.starts_with("Error creating: pods \"web-")
            && copied.ends_with("exceeded quota: two-pods, requested: pods=1, used: pods=2, limited: pods=2"),
        "{copied}"
    );
    let described = c.kubectl(&["describe", "rs", "-l", "app=web"]);
    assert!(
        described.contains("ReplicaFailure   True    FailedCreate"),
        "{described}"
    );
    // Room again: the third pod is made and both conditions go.
    c.kubectl(&[
        "patch",
        "resourcequota",
        "two-pods",
        "--type=merge",
        "-p",
        r#"{"spec":{"hard":{"pods":"3"}}}"#,
    ]);
    c.eventually(60, "the failure cleared", || {
        (failure(&c, "rs").is_none() && failure(&c, "deployment").is_none()).then_some(())
    });
    c.kubectl(&["rollout", "status", "deploy/web", "--timeout=60s"]);
}
