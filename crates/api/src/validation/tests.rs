//! Table-driven tests for validation, asserting upstream's exact paths and messages. Objects
//! go through the same pipeline the server uses: defaults, create-time preparation, then
//! validation.

use super::*;
use crate::defaults::{apply_defaults, prepare_for_create, prepare_for_update};
use serde_json::{Value, json};

const LABEL_KEY_ERR: &str = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
const DNS_LABEL_ERR: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
const SUBDOMAIN_ERR: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const POD_UPDATE_ERR: &str = "spec: Forbidden: pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)";

/// Defaults, create preparation and validation, as on a create request.
fn create(group: &str, kind: &str, mut obj: Value) -> Vec<String> {
    apply_defaults(group, kind, &mut obj);
    prepare_for_create(group, kind, &mut obj);
    validate(group, kind, &obj, None)
        .iter()
        .map(FieldError::message)
        .collect()
}

/// The stored form of an object (defaulted and prepared).
fn stored(group: &str, kind: &str, mut obj: Value) -> Value {
    apply_defaults(group, kind, &mut obj);
    prepare_for_create(group, kind, &mut obj);
    obj
}

/// Defaults and update validation against `old`.
fn update(group: &str, kind: &str, mut obj: Value, old: &Value) -> Vec<String> {
    apply_defaults(group, kind, &mut obj);
    validate(group, kind, &obj, Some(old))
        .iter()
        .map(FieldError::message)
        .collect()
}

/// Runs `mutate` on a copy of `base` and returns the create messages.
fn create_with(group: &str, kind: &str, base: &Value, mutate: impl FnOnce(&mut Value)) -> Vec<String> {
    let mut obj = base.clone();
    mutate(&mut obj);
    create(group, kind, obj)
}

/// A change applied to a valid base object.
type Mutation = Box<dyn Fn(&mut Value)>;
/// A mutation and the messages it must produce.
type Case<T> = (Mutation, Vec<T>);

fn meta(name: &str) -> Value {
    json!({"name": name, "namespace": "default", "uid": "0b9c1f7e-1111-2222-3333-444455556666"})
}

/// The DaemonSet from the Kubernetes documentation.
fn fluentd() -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": "fluentd-elasticsearch", "namespace": "kube-system", "labels": {"k8s-app": "fluentd-logging"}},
        "spec": {
            "selector": {"matchLabels": {"name": "fluentd-elasticsearch"}},
            "template": {
                "metadata": {"labels": {"name": "fluentd-elasticsearch"}},
                "spec": {
                    "tolerations": [
                        {"key": "node-role.kubernetes.io/control-plane", "operator": "Exists", "effect": "NoSchedule"},
                        {"key": "node-role.kubernetes.io/master", "operator": "Exists", "effect": "NoSchedule"}
                    ],
                    "containers": [{
                        "name": "fluentd-elasticsearch",
                        "image": "quay.io/fluentd_elasticsearch/fluentd:v2.5.2",
                        "resources": {"limits": {"memory": "200Mi"}, "requests": {"cpu": "100m", "memory": "200Mi"}},
                        "volumeMounts": [{"name": "varlog", "mountPath": "/var/log"}]
                    }],
                    "terminationGracePeriodSeconds": 30,
                    "volumes": [{"name": "varlog", "hostPath": {"path": "/var/log"}}]
                }
            }
        }
    })
}

fn deployment() -> Value {
    json!({
        "metadata": meta("web"),
        "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "nginx", "image": "nginx:1.27"}]}}
        }
    })
}

fn pod() -> Value {
    json!({"metadata": meta("p"), "spec": {"containers": [{"name": "c", "image": "busybox"}]}})
}

fn set(v: &mut Value, pointer: &str, x: Value) {
    let (parent, key) = pointer.rsplit_once('/').unwrap();
    let target = if parent.is_empty() {
        v
    } else {
        v.pointer_mut(parent).unwrap()
    };
    match target {
        Value::Object(m) => {
            m.insert(key.to_string(), x);
        }
        Value::Array(a) => a[key.parse::<usize>().unwrap()] = x,
        _ => panic!("not a container: {pointer}"),
    }
}

fn remove(v: &mut Value, pointer: &str) {
    let (parent, key) = pointer.rsplit_once('/').unwrap();
    if let Some(Value::Object(m)) = v.pointer_mut(parent) {
        m.remove(key);
    }
}

// ---------------------------------------------------------------------------------------
// DaemonSet (reference section B)

#[test]
fn daemon_set_seed_is_valid() {
    assert_eq!(create("apps", "DaemonSet", fluentd()), Vec::<String>::new());
}

#[test]
fn daemon_set_rules() {
    let base = fluentd();
    let cases: Vec<(&str, Mutation, Vec<&str>)> = vec![
        (
            "selector does not match template labels",
            Box::new(|v| set(v, "/spec/template/metadata/labels", json!({"name": "other"}))),
            vec![
                r#"spec.template.metadata.labels: Invalid value: map[string]string{"name":"other"}: `selector` does not match template `labels`"#,
            ],
        ),
        (
            "missing selector matches nothing",
            Box::new(|v| remove(v, "/spec/selector")),
            vec![
                r#"spec.template.metadata.labels: Invalid value: map[string]string{"name":"fluentd-elasticsearch"}: `selector` does not match template `labels`"#,
            ],
        ),
        (
            "empty selector",
            Box::new(|v| set(v, "/spec/selector", json!({"matchLabels": {}}))),
            vec![
                "spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: empty selector is invalid for daemonset",
            ],
        ),
        (
            "restartPolicy Never",
            Box::new(|v| set(v, "/spec/template/spec/restartPolicy", json!("Never"))),
            vec![r#"spec.template.spec.restartPolicy: Unsupported value: "Never": supported values: "Always""#],
        ),
        (
            "activeDeadlineSeconds",
            Box::new(|v| set(v, "/spec/template/spec/activeDeadlineSeconds", json!(10))),
            vec![
                "spec.template.spec.activeDeadlineSeconds: Forbidden: activeDeadlineSeconds in DaemonSet is not Supported",
            ],
        ),
        (
            "both zero",
            Box::new(|v| {
                set(
                    v,
                    "/spec/updateStrategy",
                    json!({"rollingUpdate": {"maxUnavailable": 0}}),
                )
            }),
            vec!["spec.updateStrategy.rollingUpdate.maxUnavailable: Required value: cannot be 0 when maxSurge is 0"],
        ),
        (
            "zero percent counts as zero",
            Box::new(|v| {
                set(
                    v,
                    "/spec/updateStrategy",
                    json!({"rollingUpdate": {"maxUnavailable": "0%", "maxSurge": 0}}),
                )
            }),
            vec!["spec.updateStrategy.rollingUpdate.maxUnavailable: Required value: cannot be 0 when maxSurge is 0"],
        ),
        (
            "surge alone keeps the defaulted maxUnavailable of 1",
            Box::new(|v| set(v, "/spec/updateStrategy", json!({"rollingUpdate": {"maxSurge": 1}}))),
            vec![
                "spec.updateStrategy.rollingUpdate.maxSurge: Invalid value: 1: may not be set when maxUnavailable is non-zero",
            ],
        ),
        (
            "percent over 100",
            Box::new(|v| {
                set(
                    v,
                    "/spec/updateStrategy",
                    json!({"rollingUpdate": {"maxUnavailable": "110%"}}),
                )
            }),
            vec![
                "spec.updateStrategy.rollingUpdate.maxUnavailable: Invalid value: 110%: must not be greater than 100%",
            ],
        ),
        (
            "malformed percent",
            Box::new(|v| {
                set(
                    v,
                    "/spec/updateStrategy",
                    json!({"rollingUpdate": {"maxUnavailable": "1x"}}),
                )
            }),
            vec![
                "spec.updateStrategy.rollingUpdate.maxUnavailable: Invalid value: 1x: a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')",
                // "1x" reads as 0 for the zero check, as upstream's IntValue does.
                "spec.updateStrategy.rollingUpdate.maxUnavailable: Required value: cannot be 0 when maxSurge is 0",
            ],
        ),
        (
            "negative maxUnavailable",
            Box::new(|v| {
                set(
                    v,
                    "/spec/updateStrategy",
                    json!({"rollingUpdate": {"maxUnavailable": -1}}),
                )
            }),
            vec![
                "spec.updateStrategy.rollingUpdate.maxUnavailable: Invalid value: -1: must be greater than or equal to 0",
            ],
        ),
        (
            "unknown strategy type",
            Box::new(|v| set(v, "/spec/updateStrategy", json!({"type": "Foo"}))),
            vec![
                r#"spec.updateStrategy: Unsupported value: apps.DaemonSetUpdateStrategy{Type:"Foo", RollingUpdate:(*apps.RollingUpdateDaemonSet)(nil)}: supported values: "RollingUpdate", "OnDelete""#,
            ],
        ),
        (
            "OnDelete with a rollingUpdate block is accepted",
            Box::new(|v| {
                set(
                    v,
                    "/spec/updateStrategy",
                    json!({"type": "OnDelete", "rollingUpdate": {"maxUnavailable": 0}}),
                )
            }),
            vec![],
        ),
        (
            "negative minReadySeconds and revisionHistoryLimit",
            Box::new(|v| {
                set(v, "/spec/minReadySeconds", json!(-1));
                set(v, "/spec/revisionHistoryLimit", json!(-2));
            }),
            vec![
                "spec.minReadySeconds: Invalid value: -1: must be greater than or equal to 0",
                "spec.revisionHistoryLimit: Invalid value: -2: must be greater than or equal to 0",
            ],
        ),
        (
            "invalid label key",
            Box::new(|v| set(v, "/metadata/labels", json!({"bad key": "x"}))),
            vec![],
        ),
        (
            "duplicate container names",
            Box::new(|v| {
                let c = v.pointer("/spec/template/spec/containers/0").unwrap().clone();
                v.pointer_mut("/spec/template/spec/containers")
                    .unwrap()
                    .as_array_mut()
                    .unwrap()
                    .push(c);
            }),
            vec![r#"spec.template.spec.containers[1].name: Duplicate value: "fluentd-elasticsearch""#],
        ),
        (
            "toleration with Exists and a value",
            Box::new(|v| {
                set(
                    v,
                    "/spec/template/spec/tolerations/0",
                    json!({"key": "k", "operator": "Exists", "value": "v", "effect": "NoSchedule"}),
                )
            }),
            vec![
                r#"spec.template.spec.tolerations[0].operator: Invalid value: core.Toleration{Key:"k", Operator:"Exists", Value:"v", Effect:"NoSchedule", TolerationSeconds:(*int64)(nil)}: value must be empty when `operator` is 'Exists'"#,
            ],
        ),
        (
            "bad name",
            Box::new(|v| set(v, "/metadata/name", json!("Fluentd"))),
            vec![],
        ),
    ];
    for (what, mutate, want) in cases {
        let got = create_with("apps", "DaemonSet", &base, |v| mutate(v));
        let want: Vec<String> = match what {
            "invalid label key" => vec![format!("metadata.labels: Invalid value: \"bad key\": {LABEL_KEY_ERR}")],
            "bad name" => vec![format!("metadata.name: Invalid value: \"Fluentd\": {SUBDOMAIN_ERR}")],
            _ => want.iter().map(|s| s.to_string()).collect(),
        };
        assert_eq!(got, want, "{what}");
    }
}

#[test]
fn daemon_set_update_keeps_selector() {
    let old = stored("apps", "DaemonSet", fluentd());
    let mut new = old.clone();
    set(&mut new, "/spec/template/spec/containers/0/image", json!("fluentd:v3"));
    assert_eq!(update("apps", "DaemonSet", new.clone(), &old), Vec::<String>::new());
    set(
        &mut new,
        "/spec/selector/matchLabels",
        json!({"name": "fluentd-elasticsearch", "tier": "logging"}),
    );
    set(&mut new, "/spec/template/metadata/labels/tier", json!("logging"));
    assert_eq!(
        update("apps", "DaemonSet", new, &old),
        vec![
            r#"spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{"name":"fluentd-elasticsearch", "tier":"logging"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: field is immutable"#
        ]
    );
}

#[test]
fn metadata_update_rules() {
    let mut old = stored("apps", "DaemonSet", fluentd());
    set(&mut old, "/metadata/uid", json!("u1"));
    set(&mut old, "/metadata/creationTimestamp", json!("2025-05-01T10:00:00Z"));
    let mut new = old.clone();
    set(&mut new, "/metadata/name", json!("other"));
    set(&mut new, "/metadata/uid", json!("u2"));
    set(&mut new, "/metadata/creationTimestamp", json!("2025-05-02T10:00:00Z"));
    assert_eq!(
        update("apps", "DaemonSet", new, &old),
        vec![
            r#"metadata.name: Invalid value: "other": field is immutable"#,
            r#"metadata.uid: Invalid value: "u2": field is immutable"#,
            "metadata.creationTimestamp: Invalid value: 2025-05-02 10:00:00 +0000 UTC: field is immutable",
        ]
    );
}

// ---------------------------------------------------------------------------------------
// Deployment, ReplicaSet, StatefulSet, ReplicationController, ControllerRevision

#[test]
fn deployment_rules() {
    let base = deployment();
    assert_eq!(create("apps", "Deployment", base.clone()), Vec::<String>::new());
    let cases: Vec<Case<&str>> = vec![
        (
            Box::new(|v| {
                set(
                    v,
                    "/spec/strategy",
                    json!({"rollingUpdate": {"maxUnavailable": 0, "maxSurge": 0}}),
                )
            }),
            vec!["spec.strategy.rollingUpdate.maxUnavailable: Invalid value: 0: may not be 0 when `maxSurge` is 0"],
        ),
        (
            Box::new(|v| {
                set(
                    v,
                    "/spec/strategy",
                    json!({"rollingUpdate": {"maxUnavailable": "0%", "maxSurge": "0%"}}),
                )
            }),
            vec!["spec.strategy.rollingUpdate.maxUnavailable: Invalid value: 0%: may not be 0 when `maxSurge` is 0"],
        ),
        (
            Box::new(|v| {
                set(
                    v,
                    "/spec/strategy",
                    json!({"type": "Recreate", "rollingUpdate": {"maxSurge": 1}}),
                )
            }),
            vec!["spec.strategy.rollingUpdate: Forbidden: may not be specified when strategy `type` is 'Recreate'"],
        ),
        (
            Box::new(|v| set(v, "/spec/strategy", json!({"type": "BlueGreen"}))),
            vec![
                r#"spec.strategy: Unsupported value: apps.DeploymentStrategy{Type:"BlueGreen", RollingUpdate:(*apps.RollingUpdateDeployment)(nil)}: supported values: "Recreate", "RollingUpdate""#,
            ],
        ),
        (
            Box::new(|v| {
                set(v, "/spec/minReadySeconds", json!(30));
                set(v, "/spec/progressDeadlineSeconds", json!(30));
            }),
            vec!["spec.progressDeadlineSeconds: Invalid value: 30: must be greater than minReadySeconds"],
        ),
        (
            Box::new(|v| set(v, "/spec/replicas", json!(-1))),
            vec!["spec.replicas: Invalid value: -1: must be greater than or equal to 0"],
        ),
        (
            Box::new(|v| remove(v, "/spec/selector")),
            vec![
                "spec.selector: Required value",
                r#"spec.template.metadata.labels: Invalid value: map[string]string{"app":"web"}: `selector` does not match template `labels`"#,
            ],
        ),
        (
            Box::new(|v| set(v, "/spec/selector", json!({}))),
            vec![
                "spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string(nil), MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: empty selector is invalid for deployment",
            ],
        ),
        (
            Box::new(|v| set(v, "/spec/template/spec/restartPolicy", json!("OnFailure"))),
            vec![r#"spec.template.spec.restartPolicy: Unsupported value: "OnFailure": supported values: "Always""#],
        ),
        (
            Box::new(|v| set(v, "/spec/template/spec/activeDeadlineSeconds", json!(5))),
            vec![
                "spec.template.spec.activeDeadlineSeconds: Forbidden: activeDeadlineSeconds in ReplicaSet is not Supported",
            ],
        ),
        (
            Box::new(|v| {
                set(
                    v,
                    "/spec/selector",
                    json!({"matchExpressions": [{"key": "app", "operator": "Within", "values": ["web"]}]}),
                )
            }),
            vec![
                r#"spec.selector.matchExpressions[0].operator: Invalid value: "Within": not a valid selector operator"#,
                r#"spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string(nil), MatchExpressions:[]v1.LabelSelectorRequirement{v1.LabelSelectorRequirement{Key:"app", Operator:"Within", Values:[]string{"web"}}}}: invalid label selector"#,
            ],
        ),
    ];
    for (i, (mutate, want)) in cases.into_iter().enumerate() {
        assert_eq!(
            create_with("apps", "Deployment", &base, |v| mutate(v)),
            want,
            "case {i}"
        );
    }
}

#[test]
fn deployment_selector_is_immutable_but_strategy_switch_keeps_rolling_update() {
    let old = stored("apps", "Deployment", deployment());
    let mut new = old.clone();
    set(&mut new, "/spec/strategy/type", json!("Recreate"));
    assert_eq!(
        update("apps", "Deployment", new, &old),
        vec!["spec.strategy.rollingUpdate: Forbidden: may not be specified when strategy `type` is 'Recreate'"]
    );
    let mut new = old.clone();
    set(&mut new, "/spec/selector/matchLabels", json!({"app": "web2"}));
    set(&mut new, "/spec/template/metadata/labels", json!({"app": "web2"}));
    assert_eq!(
        update("apps", "Deployment", new, &old),
        vec![
            r#"spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{"app":"web2"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: field is immutable"#
        ]
    );
}

#[test]
fn replica_set_rules() {
    let mut rs = deployment();
    assert_eq!(create("apps", "ReplicaSet", rs.clone()), Vec::<String>::new());
    set(&mut rs, "/spec/selector", json!({"matchLabels": {}}));
    assert_eq!(
        create("apps", "ReplicaSet", rs),
        vec![
            "spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: empty selector is invalid for deployment"
        ]
    );
}

fn stateful_set() -> Value {
    let mut s = deployment();
    set(&mut s, "/spec/serviceName", json!("web"));
    set(
        &mut s,
        "/spec/volumeClaimTemplates",
        json!([{"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}]),
    );
    s
}

#[test]
fn stateful_set_rules() {
    assert_eq!(create("apps", "StatefulSet", stateful_set()), Vec::<String>::new());
    let got = create_with("apps", "StatefulSet", &stateful_set(), |v| {
        set(v, "/metadata/name", json!("web.v1"))
    });
    assert_eq!(
        got,
        vec!["metadata.name: Invalid value: \"web.v1\": must not contain dots".to_string()]
    );
    let got = create_with("apps", "StatefulSet", &stateful_set(), |v| {
        set(v, "/spec/serviceName", json!("Web_svc"))
    });
    assert_eq!(
        got,
        vec![format!("spec.serviceName: Invalid value: \"Web_svc\": {DNS_LABEL_ERR}")]
    );
    let got = create_with("apps", "StatefulSet", &stateful_set(), |v| {
        set(v, "/spec/podManagementPolicy", json!("Random"))
    });
    assert_eq!(
        got,
        vec![r#"spec.podManagementPolicy: Invalid value: "Random": must be 'OrderedReady' or 'Parallel'"#]
    );
    let got = create_with("apps", "StatefulSet", &stateful_set(), |v| {
        set(
            v,
            "/spec/updateStrategy",
            json!({"type": "OnDelete", "rollingUpdate": {"partition": 2}}),
        )
    });
    assert_eq!(
        got,
        vec![
            "spec.updateStrategy.rollingUpdate: Invalid value: apps.RollingUpdateStatefulSetStrategy{Partition:2, MaxUnavailable:(*intstr.IntOrString)(nil)}: only allowed for updateStrategy 'RollingUpdate'"
        ]
    );
    let got = create_with("apps", "StatefulSet", &stateful_set(), |v| {
        set(
            v,
            "/spec/updateStrategy",
            json!({"type": "RollingUpdate", "rollingUpdate": {"partition": -1, "maxUnavailable": 0}}),
        )
    });
    assert_eq!(
        got,
        vec![
            "spec.updateStrategy.rollingUpdate.partition: Invalid value: -1: must be greater than or equal to 0",
            "spec.updateStrategy.rollingUpdate.maxUnavailable: Invalid value: 0: cannot be 0",
        ]
    );
    let got = create_with("apps", "StatefulSet", &stateful_set(), |v| {
        set(
            v,
            "/spec/persistentVolumeClaimRetentionPolicy",
            json!({"whenDeleted": "Keep"}),
        )
    });
    assert_eq!(
        got,
        vec![
            r#"spec.persistentVolumeClaimRetentionPolicy.whenDeleted: Unsupported value: "Keep": supported values: "Retain", "Delete""#
        ]
    );

    let old = stored("apps", "StatefulSet", stateful_set());
    let mut new = old.clone();
    set(&mut new, "/spec/replicas", json!(5));
    set(&mut new, "/spec/template/spec/containers/0/image", json!("nginx:1.28"));
    assert_eq!(update("apps", "StatefulSet", new.clone(), &old), Vec::<String>::new());
    set(&mut new, "/spec/serviceName", json!("other"));
    assert_eq!(
        update("apps", "StatefulSet", new, &old),
        vec![
            "spec: Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden"
        ]
    );
}

#[test]
fn replication_controller_rules() {
    let rc = json!({
        "metadata": meta("rc"),
        "spec": {"template": {"metadata": {"labels": {"app": "x"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}
    });
    assert_eq!(create("", "ReplicationController", rc.clone()), Vec::<String>::new());
    let got = create_with("", "ReplicationController", &rc, |v| {
        set(v, "/spec/selector", json!({"app": "y"}))
    });
    assert_eq!(
        got,
        vec![
            r#"spec.template.metadata.labels: Invalid value: map[string]string{"app":"x"}: `selector` does not match template `labels`"#
        ]
    );
    let got = create_with("", "ReplicationController", &rc, |v| remove(v, "/spec/template"));
    assert_eq!(
        got,
        vec!["spec.selector: Required value", "spec.template: Required value"]
    );
}

#[test]
fn controller_revision_rules() {
    let cr = json!({"metadata": meta("ds-abc"), "revision": 1, "data": {"spec": {}}});
    assert_eq!(create("apps", "ControllerRevision", cr.clone()), Vec::<String>::new());
    let got = create_with("apps", "ControllerRevision", &cr, |v| {
        remove(v, "/data");
        set(v, "/revision", json!(-1));
    });
    assert_eq!(
        got,
        vec![
            "data: Required value: data is mandatory",
            "revision: Invalid value: -1: must be greater than or equal to 0"
        ]
    );
}

// ---------------------------------------------------------------------------------------
// Jobs and CronJobs

fn job() -> Value {
    json!({
        "metadata": meta("pi"),
        "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "pi", "image": "perl:5.34"}]}}}
    })
}

#[test]
fn job_rules() {
    assert_eq!(create("batch", "Job", job()), Vec::<String>::new());
    let got = create_with("batch", "Job", &job(), |v| {
        remove(v, "/spec/template/spec/restartPolicy")
    });
    assert_eq!(
        got,
        vec![r#"spec.template.spec.restartPolicy: Required value: valid values: "OnFailure", "Never""#]
    );
    let got = create_with("batch", "Job", &job(), |v| {
        set(v, "/spec/template/spec/restartPolicy", json!("Sometimes"))
    });
    assert_eq!(
        got,
        vec![
            r#"spec.template.spec.restartPolicy: Unsupported value: "Sometimes": supported values: "Always", "OnFailure", "Never""#,
            r#"spec.template.spec.restartPolicy: Unsupported value: "Sometimes": supported values: "OnFailure", "Never""#,
        ]
    );
    let got = create_with("batch", "Job", &job(), |v| {
        set(v, "/spec/backoffLimit", json!(-1));
        set(v, "/spec/completionMode", json!("Indexed"));
        remove(v, "/spec/completions");
        set(v, "/spec/parallelism", json!(2));
    });
    assert_eq!(
        got,
        vec![
            "spec.backoffLimit: Invalid value: -1: must be greater than or equal to 0",
            "spec.completions: Required value: when completion mode is Indexed",
        ]
    );
    let got = create_with("batch", "Job", &job(), |v| {
        set(v, "/spec/manualSelector", json!(true));
        set(v, "/spec/selector", json!({"matchLabels": {"app": "pi"}}));
    });
    assert_eq!(
        got,
        vec![
            r#"spec.template.metadata.labels: Invalid value: map[string]string(nil): `selector` does not match template `labels`"#
        ]
    );

    let old = stored("batch", "Job", job());
    let mut new = old.clone();
    set(&mut new, "/spec/completions", json!(3));
    assert_eq!(
        update("batch", "Job", new, &old),
        vec!["spec.completions: Invalid value: 3: field is immutable"]
    );
}

#[test]
fn job_failure_and_success_policies_and_per_index_limits() {
    let indexed = |v: &mut Value| {
        set(v, "/spec/completionMode", json!("Indexed"));
        set(v, "/spec/completions", json!(4));
    };
    let got = create_with("batch", "Job", &job(), |v| {
        set(v, "/spec/maxFailedIndexes", json!(1));
    });
    assert_eq!(
        got,
        vec![
            "spec.backoffLimitPerIndex: Required value: when maxFailedIndexes is specified",
            "spec.maxFailedIndexes: Invalid value: 1: requires indexed completion mode",
        ]
    );
    let got = create_with("batch", "Job", &job(), |v| {
        indexed(v);
        set(v, "/spec/backoffLimitPerIndex", json!(1));
        set(v, "/spec/maxFailedIndexes", json!(5));
    });
    assert_eq!(
        got,
        vec!["spec.maxFailedIndexes: Invalid value: 5: must be less than or equal to completions"]
    );
    let got = create_with("batch", "Job", &job(), |v| {
        set(
            v,
            "/spec/podFailurePolicy",
            json!({"rules": [
            {"action": "FailIndex", "onExitCodes": {"operator": "In", "values": [3, 0, 3]}},
            {"action": "Retry", "onPodConditions": [{"type": "DisruptionTarget", "status": "Maybe"}],
             "onExitCodes": {"operator": "NotIn", "containerName": "sidecar", "values": [1]}},
            {"action": "Ignore"}]}),
        );
    });
    assert_eq!(
        got,
        vec![
            r#"spec.podFailurePolicy.rules[0].action: Invalid value: "FailIndex": requires the backoffLimitPerIndex to be set"#,
            "spec.podFailurePolicy.rules[0].onExitCodes.values[1]: Invalid value: 0: must not be 0 for the In operator",
            "spec.podFailurePolicy.rules[0].onExitCodes.values[2]: Duplicate value: 3",
            "spec.podFailurePolicy.rules[0].onExitCodes.values: Invalid value: []int32{3, 0, 3}: must be ordered",
            r#"spec.podFailurePolicy.rules[1].action: Unsupported value: "Retry": supported values: "Count", "FailIndex", "FailJob", "Ignore""#,
            r#"spec.podFailurePolicy.rules[1].onExitCodes.containerName: Invalid value: "sidecar": must be one of the container or initContainer names in the pod template"#,
            r#"spec.podFailurePolicy.rules[1].onPodConditions[0].status: Unsupported value: "Maybe": supported values: "False", "True", "Unknown""#,
            "spec.podFailurePolicy.rules[1]: Invalid value: specifying both OnExitCodes and OnPodConditions is not supported",
            "spec.podFailurePolicy.rules[2]: Invalid value: specifying one of OnExitCodes and OnPodConditions is required",
        ]
    );
    let got = create_with("batch", "Job", &job(), |v| {
        indexed(v);
        set(
            v,
            "/spec/successPolicy",
            json!({"rules": [
            {"succeededIndexes": "0-2,2", "succeededCount": 1},
            {"succeededIndexes": "1,3", "succeededCount": 5},
            {}]}),
        );
    });
    assert_eq!(
        got,
        vec![
            r#"spec.successPolicy.rules[0].succeededIndexes: Invalid value: "0-2,2": error parsing succeededIndexes: non-increasing order, previous: 2, current: 2"#,
            "spec.successPolicy.rules[0].succeededCount: Invalid value: 1: must be less than or equal to 0 (the number of indexes in the specified succeededIndexes field)",
            "spec.successPolicy.rules[1].succeededCount: Invalid value: 5: must be less than or equal to 4 (the number of specified completions)",
            "spec.successPolicy.rules[1].succeededCount: Invalid value: 5: must be less than or equal to 2 (the number of indexes in the specified succeededIndexes field)",
            "spec.successPolicy.rules[2]: Required value: at least one of succeededCount or succeededIndexes must be specified",
        ]
    );
    let got = create_with("batch", "Job", &job(), |v| {
        indexed(v);
        set(v, "/spec/backoffLimitPerIndex", json!(1));
        set(
            v,
            "/spec/podFailurePolicy",
            json!({"rules": [
            {"action": "FailIndex", "onExitCodes": {"operator": "In", "values": [1, 2]}},
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]}]}),
        );
        set(
            v,
            "/spec/successPolicy",
            json!({"rules": [{"succeededIndexes": "0,2-3", "succeededCount": 2}]}),
        );
    });
    assert_eq!(got, Vec::<String>::new());
}

#[test]
fn job_selector_generation() {
    let j = stored("batch", "Job", job());
    let labels = j.pointer("/spec/template/metadata/labels").unwrap();
    assert_eq!(
        labels["batch.kubernetes.io/controller-uid"],
        "0b9c1f7e-1111-2222-3333-444455556666"
    );
    assert_eq!(labels["controller-uid"], "0b9c1f7e-1111-2222-3333-444455556666");
    assert_eq!(labels["job-name"], "pi");
    assert_eq!(labels["batch.kubernetes.io/job-name"], "pi");
    assert_eq!(
        j.pointer("/spec/selector"),
        Some(&json!({"matchLabels": {"batch.kubernetes.io/controller-uid": "0b9c1f7e-1111-2222-3333-444455556666"}}))
    );
    let mut broken = j.clone();
    set(&mut broken, "/spec/template/metadata/labels/job-name", json!("other"));
    let got: Vec<String> = validate("batch", "Job", &broken, None)
        .iter()
        .map(FieldError::message)
        .collect();
    assert_eq!(got.len(), 1);
    assert!(
        got[0].starts_with("spec.template.metadata.labels[job-name]: Invalid value: map[string]string{"),
        "{got:?}"
    );
    assert!(got[0].ends_with(": must be 'pi'"), "{got:?}");
}

fn cron_job() -> Value {
    json!({
        "metadata": meta("hello"),
        "spec": {
            "schedule": "*/1 * * * *",
            "jobTemplate": {"spec": {"template": {"spec": {"restartPolicy": "OnFailure", "containers": [{"name": "hello", "image": "busybox:1.28"}]}}}}
        }
    })
}

#[test]
fn cron_job_rules() {
    assert_eq!(create("batch", "CronJob", cron_job()), Vec::<String>::new());
    let got = create_with("batch", "CronJob", &cron_job(), |v| {
        set(v, "/spec/schedule", json!("foo"))
    });
    assert_eq!(
        got,
        vec![r#"spec.schedule: Invalid value: "foo": expected exactly 5 fields, found 1: [foo]"#]
    );
    let got = create_with("batch", "CronJob", &cron_job(), |v| {
        set(v, "/spec/schedule", json!("TZ=UTC 0 * * * *"))
    });
    assert_eq!(
        got,
        vec![
            r#"spec.schedule: Invalid value: "TZ=UTC 0 * * * *": cannot use TZ or CRON_TZ in schedule, use timeZone field instead"#
        ]
    );
    let got = create_with("batch", "CronJob", &cron_job(), |v| {
        set(v, "/spec/concurrencyPolicy", json!("Sometimes"))
    });
    assert_eq!(
        got,
        vec![
            r#"spec.concurrencyPolicy: Unsupported value: "Sometimes": supported values: "Allow", "Forbid", "Replace""#
        ]
    );
    let got = create_with("batch", "CronJob", &cron_job(), |v| {
        set(v, "/spec/jobTemplate/spec/selector", json!({"matchLabels": {"a": "b"}}))
    });
    assert_eq!(
        got,
        vec![
            r#"spec.jobTemplate.spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{"a":"b"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: `selector` will be auto-generated"#
        ]
    );
    let long = "a".repeat(53);
    let got = create_with("batch", "CronJob", &cron_job(), |v| {
        set(v, "/metadata/name", json!(long))
    });
    assert_eq!(
        got,
        vec![format!(
            r#"metadata.name: Invalid value: "{long}": must be no more than 52 characters"#
        )]
    );
    let got = create_with("batch", "CronJob", &cron_job(), |v| {
        set(v, "/spec/timeZone", json!("Mars/Olympus"))
    });
    assert_eq!(
        got,
        vec![r#"spec.timeZone: Invalid value: "Mars/Olympus": unknown time zone Mars/Olympus"#]
    );
}

// ---------------------------------------------------------------------------------------
// Pods

#[test]
fn pod_spec_rules() {
    assert_eq!(create("", "Pod", pod()), Vec::<String>::new());
    let c = "/spec/containers/0";
    let cases: Vec<Case<String>> = vec![
        (Box::new(|v| set(v, "/spec/containers", json!([]))), vec!["spec.containers: Required value".into()]),
        (Box::new(move |v| remove(v, &format!("{c}/image"))), vec!["spec.containers[0].image: Required value".into()]),
        (
            Box::new(move |v| set(v, &format!("{c}/name"), json!("Web_1"))),
            vec![format!("spec.containers[0].name: Invalid value: \"Web_1\": {DNS_LABEL_ERR}")],
        ),
        (
            Box::new(move |v| set(v, &format!("{c}/ports"), json!([{"containerPort": 70000, "protocol": "HTTP", "hostPort": 0}]))),
            vec![
                "spec.containers[0].ports[0].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive".into(),
                r#"spec.containers[0].ports[0].protocol: Unsupported value: "HTTP": supported values: "SCTP", "TCP", "UDP""#.into(),
            ],
        ),
        (
            Box::new(move |v| set(v, &format!("{c}/ports"), json!([{"name": "http", "containerPort": 80}, {"name": "http", "containerPort": 81, "hostPort": 99999}]))),
            vec![
                r#"spec.containers[0].ports[1].name: Duplicate value: "http""#.into(),
                "spec.containers[0].ports[1].hostPort: Invalid value: 99999: must be between 1 and 65535, inclusive".into(),
            ],
        ),
        (
            Box::new(move |v| set(v, &format!("{c}/volumeMounts"), json!([{"name": "data", "mountPath": "/data"}]))),
            vec![r#"spec.containers[0].volumeMounts[0].name: Not found: "data""#.into()],
        ),
        (
            Box::new(|v| set(v, "/spec/volumes", json!([{"name": "a", "emptyDir": {}}, {"name": "a", "emptyDir": {}}]))),
            vec![r#"spec.volumes[1].name: Duplicate value: "a""#.into()],
        ),
        (
            Box::new(|v| set(v, "/spec/volumes", json!([{"name": "a", "emptyDir": {}, "configMap": {"name": "cm"}}]))),
            vec!["spec.volumes[0].configMap: Forbidden: may not specify more than 1 volume type".into()],
        ),
        (
            Box::new(|v| set(v, "/spec/volumes", json!([{"name": "s", "secret": {"defaultMode": 1024}}]))),
            vec![
                "spec.volumes[0].secret.secretName: Required value".into(),
                "spec.volumes[0].secret.defaultMode: Invalid value: 1024: must be a number between 0 and 0777 (octal), both inclusive".into(),
            ],
        ),
        (
            Box::new(|v| set(v, "/spec/restartPolicy", json!("Sometimes"))),
            vec![r#"spec.restartPolicy: Unsupported value: "Sometimes": supported values: "Always", "OnFailure", "Never""#.into()],
        ),
        (
            Box::new(|v| set(v, "/spec/dnsPolicy", json!("Cluster"))),
            vec![r#"spec.dnsPolicy: Unsupported value: "Cluster": supported values: "ClusterFirstWithHostNet", "ClusterFirst", "Default", "None""#.into()],
        ),
        (
            Box::new(|v| set(v, "/spec/nodeSelector", json!({"disk type": "ssd"}))),
            vec![format!("spec.nodeSelector: Invalid value: \"disk type\": {LABEL_KEY_ERR}")],
        ),
        (
            Box::new(|v| set(v, "/spec/tolerations", json!([{"key": "k", "operator": "Equal", "value": "v", "effect": "NoRun"}]))),
            vec![r#"spec.tolerations[0].effect: Unsupported value: "NoRun": supported values: "NoSchedule", "PreferNoSchedule", "NoExecute""#.into()],
        ),
        (
            Box::new(|v| set(v, "/spec/tolerations", json!([{"operator": "Equal", "value": "v"}]))),
            vec![r#"spec.tolerations[0].operator: Invalid value: "Equal": operator must be Exists when `key` is empty, which means "match all values and all keys""#.into()],
        ),
        (
            Box::new(|v| set(v, "/spec/tolerations", json!([{"key": "k", "operator": "Exists", "tolerationSeconds": 5}]))),
            vec![r#"spec.tolerations[0].effect: Invalid value: "": effect must be 'NoExecute' when `tolerationSeconds` is set"#.into()],
        ),
        (
            Box::new(move |v| set(v, &format!("{c}/resources"), json!({"limits": {"cpu": "1"}, "requests": {"cpu": "2"}}))),
            vec![r#"spec.containers[0].resources.requests: Invalid value: "2": must be less than or equal to cpu limit of 1"#.into()],
        ),
        (
            Box::new(move |v| set(v, &format!("{c}/resources"), json!({"requests": {"memory": "lots", "gpus": "1"}}))),
            vec![
                r#"spec.containers[0].resources.requests[memory]: Invalid value: "lots": quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"#.into(),
                r#"spec.containers[0].resources.requests[gpus]: Invalid value: "gpus": must be a standard resource type or fully qualified"#.into(),
                r#"spec.containers[0].resources.requests[gpus]: Invalid value: "gpus": must be a standard resource for containers"#.into(),
            ],
        ),
        (
            Box::new(move |v| set(v, &format!("{c}/resources"), json!({"limits": {"example.com/foo": "500m"}}))),
            // Pod defaulting copies limits into requests, so both are reported.
            vec![
                "spec.containers[0].resources.limits[example.com/foo]: Invalid value: 500m: must be an integer".into(),
                "spec.containers[0].resources.requests[example.com/foo]: Invalid value: 500m: must be an integer".into(),
            ],
        ),
        (
            Box::new(move |v| set(v, &format!("{c}/env"), json!([{"name": "A=B", "value": "x"}, {"name": "B", "valueFrom": {}}]))),
            vec![
                r#"spec.containers[0].env[0].name: Invalid value: "A=B": a valid environment variable name must consist only of printable ASCII characters other than '='"#.into(),
                r#"spec.containers[0].env[1].valueFrom: Invalid value: "": must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`"#.into(),
            ],
        ),
        (
            Box::new(move |v| set(v, &format!("{c}/env"), json!([{"name": "N", "valueFrom": {"fieldRef": {"fieldPath": "spec.schedulerName"}}}]))),
            vec![r#"spec.containers[0].env[0].valueFrom.fieldRef.fieldPath: Unsupported value: "spec.schedulerName": supported values: "metadata.name", "metadata.namespace", "metadata.uid", "spec.nodeName", "spec.serviceAccountName", "status.hostIP", "status.hostIPs", "status.podIP", "status.podIPs""#.into()],
        ),
        (
            Box::new(move |v| set(v, &format!("{c}/livenessProbe"), json!({"httpGet": {"port": 0}, "successThreshold": 2}))),
            vec![
                "spec.containers[0].livenessProbe.httpGet.port: Invalid value: 0: must be between 1 and 65535, inclusive".into(),
                "spec.containers[0].livenessProbe.successThreshold: Invalid value: 2: must be 1".into(),
            ],
        ),
        (
            Box::new(move |v| set(v, &format!("{c}/readinessProbe"), json!({"periodSeconds": 5}))),
            vec!["spec.containers[0].readinessProbe: Required value: must specify a handler type".into()],
        ),
        (
            Box::new(|v| set(v, "/spec/activeDeadlineSeconds", json!(0))),
            vec!["spec.activeDeadlineSeconds: Invalid value: 0: must be between 1 and 2147483647, inclusive".into()],
        ),
        (
            Box::new(|v| set(v, "/spec/affinity", json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{"labelSelector": {"matchLabels": {"a": "b"}}}]}}))),
            vec![
                "spec.affinity.podAntiAffinity.requiredDuringSchedulingIgnoredDuringExecution[0].topologyKey: Required value: can not be empty".into(),
                r#"spec.affinity.podAntiAffinity.requiredDuringSchedulingIgnoredDuringExecution[0].topologyKey: Invalid value: "": name part must be non-empty"#.into(),
                format!(r#"spec.affinity.podAntiAffinity.requiredDuringSchedulingIgnoredDuringExecution[0].topologyKey: Invalid value: "": {LABEL_KEY_ERR}"#),
            ],
        ),
        (
            Box::new(|v| set(v, "/spec/ephemeralContainers", json!([{"name": "debug", "image": "busybox"}]))),
            vec!["spec.ephemeralContainers: Forbidden: cannot be set on create".into()],
        ),
        (
            Box::new(move |v| set(v, &format!("{c}/image"), json!(" busybox"))),
            vec![r#"spec.containers[0].image: Invalid value: " busybox": must not have leading or trailing whitespace"#.into()],
        ),
    ];
    for (i, (mutate, want)) in cases.into_iter().enumerate() {
        assert_eq!(create_with("", "Pod", &pod(), |v| mutate(v)), want, "case {i}");
    }
}

#[test]
fn pod_template_paths_are_prefixed() {
    let got = create_with("apps", "Deployment", &deployment(), |v| {
        set(
            v,
            "/spec/template/spec/containers/0/ports",
            json!([{"containerPort": 0}]),
        );
        set(
            v,
            "/spec/template/metadata/annotations",
            json!({"controller.kubernetes.io/pod-deletion-cost": "many"}),
        );
    });
    assert_eq!(
        got,
        vec![
            r#"spec.template.annotations[controller.kubernetes.io/pod-deletion-cost]: Invalid value: "many": must be a 32bit integer"#,
            "spec.template.spec.containers[0].ports[0].containerPort: Required value",
        ]
    );
}

#[test]
fn pod_updates() {
    let old = stored("", "Pod", pod());
    let mut new = old.clone();
    set(&mut new, "/spec/containers/0/image", json!("busybox:1.36"));
    set(&mut new, "/spec/activeDeadlineSeconds", json!(60));
    new.pointer_mut("/spec/tolerations")
        .unwrap()
        .as_array_mut()
        .unwrap()
        .push(json!({"key": "x", "operator": "Exists"}));
    assert_eq!(update("", "Pod", new.clone(), &old), Vec::<String>::new());

    let mut changed = old.clone();
    set(&mut changed, "/spec/restartPolicy", json!("Never"));
    assert_eq!(update("", "Pod", changed, &old), vec![POD_UPDATE_ERR]);

    let mut seconds = old.clone();
    set(&mut seconds, "/spec/tolerations/0/tolerationSeconds", json!(600));
    assert_eq!(update("", "Pod", seconds, &old), Vec::<String>::new());
    let mut retol = old.clone();
    set(&mut retol, "/spec/tolerations/0/key", json!("example.com/other"));
    assert_eq!(
        update("", "Pod", retol, &old),
        vec!["spec.tolerations: Forbidden: existing toleration can not be modified except its tolerationSeconds"]
    );

    let mut more = old.clone();
    more.pointer_mut("/spec/containers")
        .unwrap()
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "d", "image": "x"}));
    assert_eq!(
        update("", "Pod", more, &old),
        vec!["spec.containers: Forbidden: pod updates may not add or remove containers"]
    );

    let mut deadline = new.clone();
    set(&mut deadline, "/spec/activeDeadlineSeconds", json!(60));
    let mut old_with_deadline = old.clone();
    set(&mut old_with_deadline, "/spec/activeDeadlineSeconds", json!(30));
    assert_eq!(
        update("", "Pod", deadline, &old_with_deadline),
        vec!["spec.activeDeadlineSeconds: Invalid value: 60: must be less than or equal to previous value"]
    );
}

#[test]
fn pod_qos() {
    let mut p = pod();
    assert_eq!(pod_qos_class(&p), "BestEffort");
    set(
        &mut p,
        "/spec/containers/0/resources",
        json!({"requests": {"cpu": "100m"}}),
    );
    assert_eq!(pod_qos_class(&p), "Burstable");
    set(
        &mut p,
        "/spec/containers/0/resources",
        json!({"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "1000m", "memory": "1024Mi"}}),
    );
    assert_eq!(pod_qos_class(&p), "Guaranteed");
}

// ---------------------------------------------------------------------------------------
// Object metadata

#[test]
fn object_meta_rules() {
    let cm = json!({"metadata": {"name": "cfg", "namespace": "default"}, "data": {"a": "b"}});
    assert_eq!(create("", "ConfigMap", cm.clone()), Vec::<String>::new());
    let cases: Vec<Case<String>> = vec![
        (Box::new(|v| remove(v, "/metadata/namespace")), vec!["metadata.namespace: Required value".into()]),
        (Box::new(|v| remove(v, "/metadata/name")), vec!["metadata.name: Required value: name or generateName is required".into()]),
        (
            Box::new(|v| set(v, "/metadata/labels", json!({"app": "-bad"}))),
            vec![r#"metadata.labels: Invalid value: "-bad": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"#.into()],
        ),
        (
            Box::new(|v| set(v, "/metadata/annotations", json!({"big": "x".repeat(256 * 1024)}))),
            vec!["metadata.annotations: Too long: may not be more than 262144 bytes".into()],
        ),
        (
            Box::new(|v| set(v, "/metadata/finalizers", json!(["foo", "example.com/ok"]))),
            vec![r#"metadata.finalizers[0]: Invalid value: "foo": name is neither a standard finalizer name nor is it fully qualified"#.into()],
        ),
        (
            Box::new(|v| {
                set(v, "/metadata/ownerReferences", json!([
                    {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "a", "uid": "1", "controller": true},
                    {"apiVersion": "", "kind": "ReplicaSet", "name": "b", "uid": "2", "controller": true}
                ]))
            }),
            vec![
                r#"metadata.ownerReferences.apiVersion: Invalid value: "": version must not be empty"#.into(),
                r#"metadata.ownerReferences: Invalid value: []v1.OwnerReference{v1.OwnerReference{APIVersion:"apps/v1", Kind:"ReplicaSet", Name:"a", UID:"1", Controller:(*bool)(0xc000100000), BlockOwnerDeletion:(*bool)(nil)}, v1.OwnerReference{APIVersion:"", Kind:"ReplicaSet", Name:"b", UID:"2", Controller:(*bool)(0xc000100000), BlockOwnerDeletion:(*bool)(nil)}}: Only one reference can have Controller set to true. Found "true" in references for ReplicaSet/a and ReplicaSet/b"#.into(),
            ],
        ),
        (
            Box::new(|v| set(v, "/data", json!({"bad key": "x", "..": "y"}))),
            vec![
                r#"data[..]: Invalid value: "..": must not be '..'"#.into(),
                r#"data[bad key]: Invalid value: "bad key": a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')"#.into(),
            ],
        ),
        (
            Box::new(|v| set(v, "/metadata/labels", json!({"app": 5}))),
            vec!["metadata.labels[app]: Invalid value: 5: must be a string".into()],
        ),
    ];
    for (i, (mutate, want)) in cases.into_iter().enumerate() {
        assert_eq!(create_with("", "ConfigMap", &cm, |v| mutate(v)), want, "case {i}");
    }
}

// ---------------------------------------------------------------------------------------
// Services and other core kinds

fn service() -> Value {
    json!({"metadata": meta("web"), "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}})
}

#[test]
fn service_rules() {
    assert_eq!(create("", "Service", service()), Vec::<String>::new());
    let cases: Vec<Case<String>> = vec![
        (Box::new(|v| set(v, "/spec/ports", json!([]))), vec!["spec.ports: Required value".into()]),
        (Box::new(|v| {
            set(v, "/spec/ports", json!([]));
            set(v, "/spec/clusterIP", json!("None"));
        }), vec![]),
        (
            Box::new(|v| set(v, "/metadata/name", json!("1web"))),
            vec![r#"metadata.name: Invalid value: "1web": a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"#.into()],
        ),
        (
            Box::new(|v| set(v, "/spec/ports", json!([{"port": 0, "protocol": "ICMP"}]))),
            vec![
                "spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive".into(),
                r#"spec.ports[0].protocol: Unsupported value: "ICMP": supported values: "SCTP", "TCP", "UDP""#.into(),
                "spec.ports[0].targetPort: Invalid value: 0: must be between 1 and 65535, inclusive".into(),
            ],
        ),
        (
            Box::new(|v| set(v, "/spec/ports", json!([{"port": 80}, {"port": 80}]))),
            vec![
                "spec.ports[0].name: Required value".into(),
                "spec.ports[1].name: Required value".into(),
                r#"spec.ports[1]: Duplicate value: core.ServicePort{Name:"", Protocol:"TCP", AppProtocol:(*string)(nil), Port:80, TargetPort:intstr.IntOrString{Type:0, IntVal:0, StrVal:""}, NodePort:0}"#.into(),
            ],
        ),
        (
            Box::new(|v| set(v, "/spec/type", json!("Internal"))),
            vec![r#"spec.type: Unsupported value: "Internal": supported values: "ClusterIP", "ExternalName", "LoadBalancer", "NodePort""#.into()],
        ),
        (
            Box::new(|v| set(v, "/spec/clusterIP", json!("10.0.0"))),
            vec![r#"spec.clusterIPs[0]: Invalid value: "10.0.0": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"#.into()],
        ),
        (
            Box::new(|v| set(v, "/spec/ports/0/nodePort", json!(30080))),
            vec!["spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'".into()],
        ),
        (
            Box::new(|v| {
                set(v, "/spec/type", json!("NodePort"));
                set(v, "/spec/ports/0/nodePort", json!(80));
            }),
            vec!["spec.ports[0].nodePort: Invalid value: 80: provided port is not in the valid range. The range of valid ports is 30000-32767".into()],
        ),
        (
            Box::new(|v| {
                set(v, "/spec/type", json!("ExternalName"));
                set(v, "/spec/externalName", json!("db.example.com"));
            }),
            vec![],
        ),
        (
            Box::new(|v| set(v, "/spec/externalTrafficPolicy", json!("Local"))),
            vec![r#"spec.externalTrafficPolicy: Invalid value: "Local": may only be set for externally-accessible services"#.into()],
        ),
    ];
    for (i, (mutate, want)) in cases.into_iter().enumerate() {
        assert_eq!(create_with("", "Service", &service(), |v| mutate(v)), want, "case {i}");
    }
    let mut old = stored("", "Service", service());
    set(&mut old, "/spec/clusterIP", json!("10.96.0.10"));
    set(&mut old, "/spec/clusterIPs", json!(["10.96.0.10"]));
    let mut new = old.clone();
    set(&mut new, "/spec/clusterIP", json!("10.96.0.11"));
    set(&mut new, "/spec/clusterIPs", json!(["10.96.0.11"]));
    assert_eq!(
        update("", "Service", new, &old),
        vec![r#"spec.clusterIPs[0]: Invalid value: []string{"10.96.0.11"}: may not change once set"#]
    );
}

#[test]
fn other_core_kinds() {
    let ns = json!({"metadata": {"name": "team.a"}});
    assert_eq!(
        create("", "Namespace", ns),
        vec!["metadata.name: Invalid value: \"team.a\": must not contain dots".to_string()]
    );
    let ns = json!({"metadata": {"name": "team-a", "namespace": "x"}});
    assert_eq!(
        create("", "Namespace", ns),
        vec!["metadata.namespace: Forbidden: not allowed on this type"]
    );

    let secret = json!({"metadata": meta("s"), "type": "kubernetes.io/tls", "data": {"tls.crt": "YQ=="}});
    assert_eq!(
        create("", "Secret", secret.clone()),
        vec!["data[tls.key]: Required value"]
    );
    let mut old = stored("", "Secret", secret);
    set(&mut old, "/data/tls.key", json!("Yg=="));
    let mut new = old.clone();
    set(&mut new, "/type", json!("Opaque"));
    assert_eq!(
        update("", "Secret", new, &old),
        vec![r#"type: Invalid value: "Opaque": field is immutable"#]
    );

    let node = json!({"metadata": {"name": "n1"}, "spec": {"taints": [{"key": "k", "effect": "Sometimes"}], "podCIDRs": ["10.0.0.0/33"]}});
    assert_eq!(
        create("", "Node", node),
        vec![
            r#"metadata.taints[0].effect: Unsupported value: "Sometimes": supported values: "NoSchedule", "PreferNoSchedule", "NoExecute""#,
            r#"spec.podCIDRs[0]: Invalid value: "10.0.0.0/33": must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)"#,
        ]
    );

    let pvc = json!({"metadata": meta("c"), "spec": {"accessModes": ["ReadWriteOnce"]}});
    assert_eq!(
        create("", "PersistentVolumeClaim", pvc),
        vec!["spec.resources[storage]: Required value"]
    );
    let pv = json!({"metadata": {"name": "pv"}, "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteMany"], "persistentVolumeReclaimPolicy": "Keep", "hostPath": {"path": "/data"}}});
    assert_eq!(
        create("", "PersistentVolume", pv),
        vec![
            r#"spec.persistentVolumeReclaimPolicy: Unsupported value: "Keep": supported values: "Delete", "Recycle", "Retain""#
        ]
    );

    let ep =
        json!({"metadata": meta("web"), "subsets": [{"addresses": [{"ip": "127.0.0.1"}], "ports": [{"port": 80}]}]});
    assert_eq!(
        create("", "Endpoints", ep),
        vec![
            r#"subsets[0].addresses[0].ip: Invalid value: "127.0.0.1": may not be in the loopback range (127.0.0.0/8, ::1/128)"#
        ]
    );
}

#[test]
fn other_group_kinds() {
    let lease = json!({"metadata": meta("l"), "spec": {"leaseDurationSeconds": 0, "leaseTransitions": -1}});
    assert_eq!(
        create("coordination.k8s.io", "Lease", lease),
        vec![
            "spec.leaseDurationSeconds: Invalid value: 0: must be greater than 0",
            "spec.leaseTransitions: Invalid value: -1: must be greater than or equal to 0",
        ]
    );
    let slice = json!({"metadata": meta("s"), "addressType": "IPv5", "endpoints": [{"addresses": []}], "ports": [{"port": 80}]});
    assert_eq!(
        create("discovery.k8s.io", "EndpointSlice", slice),
        vec![
            r#"addressType: Unsupported value: "IPv5": supported values: "FQDN", "IPv4", "IPv6""#,
            "endpoints[0].addresses: Required value: must contain at least 1 address",
        ]
    );
    let sc = json!({"metadata": {"name": "fast"}, "reclaimPolicy": "Keep"});
    assert_eq!(
        create("storage.k8s.io", "StorageClass", sc),
        vec![
            "provisioner: Required value",
            r#"reclaimPolicy: Unsupported value: "Keep": supported values: "Delete", "Retain""#,
        ]
    );
    let ev = json!({"metadata": {"name": "e", "namespace": "default"}, "involvedObject": {"kind": "Pod", "namespace": "other"}});
    assert_eq!(
        create("", "Event", ev),
        vec![r#"involvedObject.namespace: Invalid value: "other": does not match event.namespace"#]
    );
    let ev = json!({"metadata": {"name": "e", "namespace": "default"}, "eventTime": "2025-05-01T10:00:00.000000Z", "type": "Normal",
        "regarding": {"kind": "Pod", "namespace": "default"}, "reportingController": "shoal/daemonset", "reportingInstance": "x", "action": "Create", "reason": "Created"});
    assert_eq!(create("events.k8s.io", "Event", ev), Vec::<String>::new());
}

#[test]
fn subresource_bodies() {
    let msgs = |group: &str, kind: &str, v: Value| -> Vec<String> {
        validate(group, kind, &v, None)
            .iter()
            .map(FieldError::message)
            .collect()
    };
    let ok = json!({"metadata": {"name": "web-0"}, "target": {"kind": "Node", "name": "node-1"}});
    assert_eq!(msgs("", "Binding", ok), Vec::<String>::new());
    assert_eq!(
        msgs(
            "",
            "Binding",
            json!({"metadata": {"name": "web-0"}, "target": {"kind": "Pod"}})
        ),
        vec![
            r#"target.kind: Unsupported value: "Pod": supported values: "Node", "<empty>""#,
            "target.name: Required value",
        ]
    );
    let scale = json!({"metadata": {"name": "web", "namespace": "default"}, "spec": {"replicas": -1}});
    assert_eq!(
        msgs("autoscaling", "Scale", scale),
        vec!["spec.replicas: Invalid value: -1: must be greater than or equal to 0"]
    );
    let scale = json!({"metadata": {"name": "web", "namespace": "default"}, "spec": {"replicas": 3}});
    assert_eq!(msgs("autoscaling", "Scale", scale), Vec::<String>::new());
}

#[test]
fn int_or_percent_scaling() {
    assert_eq!(int_or_percent(&json!(3), 10, true), Ok(3));
    assert_eq!(int_or_percent(&json!("25%"), 10, true), Ok(3));
    assert_eq!(int_or_percent(&json!("25%"), 10, false), Ok(2));
    assert_eq!(
        int_or_percent(&json!("5"), 10, false),
        Err("invalid value for IntOrString: invalid type: string is not a percentage".into())
    );
    assert_eq!(
        int_or_percent(&json!("x%"), 10, false),
        Err(r#"invalid value for IntOrString: invalid value "x%": strconv.Atoi: parsing "x": invalid syntax"#.into())
    );
    assert!(int_or_percent(&json!(true), 10, false).is_err());
}

#[test]
fn name_warnings_on_create() {
    let deploy = json!({"metadata": {"name": "web.v1"}});
    assert_eq!(
        warnings_on_create("apps", "Deployment", &deploy),
        vec![
            "metadata.name: this is used in Pod names and hostnames, which can result in surprising behavior; a DNS label is recommended: [must not contain dots]"
        ]
    );
    assert_eq!(
        warnings_on_create("", "Pod", &deploy),
        vec![
            "metadata.name: this is used in the Pod's hostname, which can result in surprising behavior; a DNS label is recommended: [must not contain dots]"
        ]
    );
    let long = json!({"metadata": {"name": "a".repeat(64)}});
    assert_eq!(
        warnings_on_create("batch", "Job", &long),
        vec![
            "metadata.name: this is used in Pod names and hostnames, which can result in surprising behavior; a DNS label is recommended: [must be no more than 63 characters]"
        ]
    );
    // Good names, invalid names (an error instead) and other kinds give nothing.
    for (group, kind, name) in [
        ("apps", "Deployment", "web"),
        ("apps", "Deployment", "Web"),
        ("apps", "DaemonSet", "web.v1"),
        ("", "ConfigMap", "web.v1"),
    ] {
        let obj = json!({"metadata": {"name": name}});
        assert!(warnings_on_create(group, kind, &obj).is_empty(), "{kind} {name}");
    }
    assert!(warnings_on_create("", "Pod", &json!([1])).is_empty());
}

#[test]
fn semantic_equality_treats_zero_values_as_absent() {
    assert!(semantic_eq(
        Some(&json!({"a": [], "b": null, "c": ""})),
        Some(&json!({}))
    ));
    assert!(!semantic_eq(Some(&json!({"a": 1})), Some(&json!({}))));
    assert!(semantic_eq(Some(&json!({"x": {"y": false}})), Some(&json!({"x": {}}))));
}

/// Wrong JSON types anywhere never panic, for every kind, through defaults and validation.
#[test]
fn malformed_input_never_panics() {
    let junk = [
        json!(null),
        json!(1),
        json!("s"),
        json!(true),
        json!([1, "x", null]),
        json!({"k": [{}]}),
    ];
    let kinds = [
        ("", "Pod"),
        ("", "Service"),
        ("", "Namespace"),
        ("", "Node"),
        ("", "ConfigMap"),
        ("", "Secret"),
        ("", "ServiceAccount"),
        ("", "Endpoints"),
        ("", "PersistentVolume"),
        ("", "PersistentVolumeClaim"),
        ("", "ReplicationController"),
        ("", "Event"),
        ("events.k8s.io", "Event"),
        ("apps", "DaemonSet"),
        ("apps", "Deployment"),
        ("apps", "ReplicaSet"),
        ("apps", "StatefulSet"),
        ("apps", "ControllerRevision"),
        ("batch", "Job"),
        ("batch", "CronJob"),
        ("coordination.k8s.io", "Lease"),
        ("discovery.k8s.io", "EndpointSlice"),
        ("storage.k8s.io", "StorageClass"),
        ("", "Binding"),
        ("autoscaling", "Scale"),
        ("x", "Unknown"),
    ];
    let seeds = [
        fluentd(),
        deployment(),
        pod(),
        job(),
        cron_job(),
        service(),
        stateful_set(),
    ];
    for (group, kind) in kinds {
        for seed in &seeds {
            let mut paths = Vec::new();
            collect_pointers(seed, String::new(), &mut paths);
            for p in &paths {
                for j in &junk {
                    let mut v = seed.clone();
                    if let Some(slot) = v.pointer_mut(p) {
                        *slot = j.clone();
                    }
                    let old = v.clone();
                    apply_defaults(group, kind, &mut v);
                    prepare_for_create(group, kind, &mut v);
                    let _ = validate(group, kind, &v, None);
                    let _ = validate(group, kind, &v, Some(&old));
                    let _ = validate(group, kind, &old, Some(&v));
                    let mut upd = seed.clone();
                    apply_defaults(group, kind, &mut upd);
                    prepare_for_update(group, kind, &mut upd, &old);
                    prepare_for_update(group, kind, &mut v, seed);
                }
            }
        }
        for j in &junk {
            let mut v = j.clone();
            apply_defaults(group, kind, &mut v);
            let _ = validate(group, kind, &v, Some(j));
        }
    }
}

fn collect_pointers(v: &Value, here: String, out: &mut Vec<String>) {
    out.push(here.clone());
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                collect_pointers(x, format!("{here}/{}", k.replace('~', "~0").replace('/', "~1")), out);
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                collect_pointers(x, format!("{here}/{i}"), out);
            }
        }
        _ => {}
    }
}
