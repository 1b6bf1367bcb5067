//! Tests for defaulting: whole objects compared with what Kubernetes 1.33 stores and prints.

use super::*;
use serde_json::json;

fn defaulted(group: &str, kind: &str, mut v: Value) -> Value {
    apply_defaults(group, kind, &mut v);
    v
}

fn created(group: &str, kind: &str, mut v: Value) -> Value {
    apply_defaults(group, kind, &mut v);
    prepare_for_create(group, kind, &mut v);
    v
}

/// The container defaults every pod template gets.
fn defaulted_container(name: &str, image: &str, policy: &str) -> Value {
    json!({
        "name": name,
        "image": image,
        "imagePullPolicy": policy,
        "resources": {},
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File"
    })
}

#[test]
fn deployment_matches_kubectl_create_deployment() {
    let d = defaulted(
        "apps",
        "Deployment",
        json!({
            "metadata": {"name": "nginx", "labels": {"app": "nginx"}},
            "spec": {
                "selector": {"matchLabels": {"app": "nginx"}},
                "template": {"metadata": {"labels": {"app": "nginx"}}, "spec": {"containers": [{"name": "nginx", "image": "nginx"}]}}
            }
        }),
    );
    assert_eq!(
        d["spec"],
        json!({
            "progressDeadlineSeconds": 600,
            "replicas": 1,
            "revisionHistoryLimit": 10,
            "selector": {"matchLabels": {"app": "nginx"}},
            "strategy": {"rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}, "type": "RollingUpdate"},
            "template": {
                "metadata": {"creationTimestamp": null, "labels": {"app": "nginx"}},
                "spec": {
                    "containers": [defaulted_container("nginx", "nginx", "Always")],
                    "dnsPolicy": "ClusterFirst",
                    "restartPolicy": "Always",
                    "schedulerName": "default-scheduler",
                    "securityContext": {},
                    "terminationGracePeriodSeconds": 30
                }
            }
        })
    );
    let recreate = defaulted(
        "apps",
        "Deployment",
        json!({"spec": {"strategy": {"type": "Recreate"}}}),
    );
    assert_eq!(recreate["spec"]["strategy"], json!({"type": "Recreate"}));
}

#[test]
fn daemon_set_defaults() {
    let ds = defaulted(
        "apps",
        "DaemonSet",
        json!({
            "spec": {
                "selector": {"matchLabels": {"name": "fluentd"}},
                "template": {
                    "metadata": {"labels": {"name": "fluentd"}},
                    "spec": {
                        "containers": [{
                            "name": "fluentd",
                            "image": "quay.io/fluentd_elasticsearch/fluentd:v2.5.2",
                            "resources": {"limits": {"memory": "200Mi"}, "requests": {"cpu": "0.1", "memory": "200Mi"}},
                            "volumeMounts": [{"name": "varlog", "mountPath": "/var/log"}]
                        }],
                        "volumes": [{"name": "varlog", "hostPath": {"path": "/var/log"}}]
                    }
                }
            }
        }),
    );
    assert_eq!(
        ds["spec"]["updateStrategy"],
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}})
    );
    assert_eq!(ds["spec"]["revisionHistoryLimit"], json!(10));
    let c = &ds["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["imagePullPolicy"], "IfNotPresent");
    // Templates do not copy limits into requests; quantities print canonically.
    assert_eq!(
        c["resources"],
        json!({"limits": {"memory": "200Mi"}, "requests": {"cpu": "100m", "memory": "200Mi"}})
    );
    assert_eq!(
        ds["spec"]["template"]["spec"]["volumes"][0],
        json!({"name": "varlog", "hostPath": {"path": "/var/log", "type": ""}})
    );
    assert!(ds["spec"]["template"]["spec"].get("enableServiceLinks").is_none());

    let on_delete = defaulted(
        "apps",
        "DaemonSet",
        json!({"spec": {"updateStrategy": {"type": "OnDelete"}}}),
    );
    assert_eq!(on_delete["spec"]["updateStrategy"], json!({"type": "OnDelete"}));
    let partial = defaulted(
        "apps",
        "DaemonSet",
        json!({"spec": {"updateStrategy": {"rollingUpdate": {"maxSurge": 1}}}}),
    );
    assert_eq!(
        partial["spec"]["updateStrategy"]["rollingUpdate"],
        json!({"maxSurge": 1, "maxUnavailable": 1})
    );
}

#[test]
fn stateful_set_defaults() {
    let s = defaulted(
        "apps",
        "StatefulSet",
        json!({"spec": {
            "serviceName": "web",
            "template": {"spec": {"containers": [{"name": "c", "image": "i:1"}]}},
            "volumeClaimTemplates": [{"metadata": {"name": "www"}, "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1024Mi"}}}}]
        }}),
    );
    let spec = &s["spec"];
    assert_eq!(spec["podManagementPolicy"], "OrderedReady");
    assert_eq!(
        spec["updateStrategy"],
        json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}})
    );
    assert_eq!(
        spec["persistentVolumeClaimRetentionPolicy"],
        json!({"whenDeleted": "Retain", "whenScaled": "Retain"})
    );
    assert_eq!(spec["replicas"], 1);
    assert_eq!(spec["revisionHistoryLimit"], 10);
    assert_eq!(
        spec["volumeClaimTemplates"][0],
        json!({
            "metadata": {"name": "www", "creationTimestamp": null},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}, "volumeMode": "Filesystem"},
            "status": {"phase": "Pending"}
        })
    );
    let explicit = defaulted(
        "apps",
        "StatefulSet",
        json!({"spec": {"updateStrategy": {"type": "RollingUpdate"}}}),
    );
    assert_eq!(explicit["spec"]["updateStrategy"], json!({"type": "RollingUpdate"}));
}

#[test]
fn replica_set_and_replication_controller_defaults() {
    let rs = defaulted(
        "apps",
        "ReplicaSet",
        json!({"spec": {"template": {"spec": {"containers": []}}}}),
    );
    assert_eq!(rs["spec"]["replicas"], 1);
    let rc = defaulted(
        "",
        "ReplicationController",
        json!({"metadata": {"name": "rc"}, "spec": {"template": {"metadata": {"labels": {"app": "x"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}}),
    );
    assert_eq!(rc["spec"]["selector"], json!({"app": "x"}));
    assert_eq!(rc["metadata"]["labels"], json!({"app": "x"}));
    assert_eq!(rc["spec"]["replicas"], 1);
    assert_eq!(rc["spec"]["template"]["spec"]["restartPolicy"], "Always");
}

#[test]
fn job_and_cron_job_defaults() {
    let j = defaulted(
        "batch",
        "Job",
        json!({"metadata": {"name": "pi"}, "spec": {"template": {"metadata": {"labels": {"app": "pi"}}, "spec": {"restartPolicy": "Never", "containers": [{"name": "pi", "image": "perl:5.34"}]}}}}),
    );
    let spec = &j["spec"];
    assert_eq!(
        (
            spec["completions"].clone(),
            spec["parallelism"].clone(),
            spec["backoffLimit"].clone()
        ),
        (json!(1), json!(1), json!(6))
    );
    assert_eq!(spec["completionMode"], "NonIndexed");
    assert_eq!(spec["suspend"], false);
    assert_eq!(spec["podReplacementPolicy"], "TerminatingOrFailed");
    assert!(spec.get("manualSelector").is_none());
    assert_eq!(j["metadata"]["labels"], json!({"app": "pi"}));

    let parallel = defaulted("batch", "Job", json!({"spec": {"parallelism": 3}}));
    assert!(parallel["spec"].get("completions").is_none());
    let per_index = defaulted(
        "batch",
        "Job",
        json!({"spec": {"backoffLimitPerIndex": 1, "podFailurePolicy": {"rules": [{"onPodConditions": [{"type": "DisruptionTarget"}]}]}}}),
    );
    assert_eq!(per_index["spec"]["backoffLimit"], 2147483647);
    assert_eq!(per_index["spec"]["podReplacementPolicy"], "Failed");
    assert_eq!(
        per_index["spec"]["podFailurePolicy"]["rules"][0]["onPodConditions"][0]["status"],
        "True"
    );

    let cj = defaulted(
        "batch",
        "CronJob",
        json!({"spec": {"schedule": "* * * * *", "jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "h", "image": "busybox:1.28"}]}}}}}}),
    );
    let spec = &cj["spec"];
    assert_eq!(spec["concurrencyPolicy"], "Allow");
    assert_eq!(spec["suspend"], false);
    assert_eq!(spec["successfulJobsHistoryLimit"], 3);
    assert_eq!(spec["failedJobsHistoryLimit"], 1);
    assert_eq!(spec["jobTemplate"]["metadata"], json!({"creationTimestamp": null}));
    // The job template's spec gets pod-template defaults only, not Job defaults.
    assert!(spec["jobTemplate"]["spec"].get("backoffLimit").is_none());
    assert_eq!(
        spec["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"],
        "IfNotPresent"
    );
}

#[test]
fn pod_defaults_and_create_preparation() {
    let p = created(
        "",
        "Pod",
        json!({
            "metadata": {"name": "p", "namespace": "default"},
            "spec": {
                "hostNetwork": true,
                "containers": [{
                    "name": "c",
                    "image": "busybox",
                    "ports": [{"containerPort": 8080}],
                    "env": [{"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}],
                    "resources": {"limits": {"cpu": "500m", "memory": "128974848"}},
                    "livenessProbe": {"httpGet": {"port": 8080}},
                    "readinessProbe": {"grpc": {"port": 9000}, "periodSeconds": 5}
                }],
                "volumes": [
                    {"name": "scratch"},
                    {"name": "cfg", "configMap": {"name": "cfg"}},
                    {"name": "sec", "secret": {"secretName": "s"}},
                    {"name": "info", "downwardAPI": {"items": [{"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]}}
                ]
            }
        }),
    );
    let spec = &p["spec"];
    let c = &spec["containers"][0];
    assert_eq!(c["imagePullPolicy"], "Always");
    assert_eq!(
        c["ports"][0],
        json!({"containerPort": 8080, "hostPort": 8080, "protocol": "TCP"})
    );
    assert_eq!(c["env"][0]["valueFrom"]["fieldRef"]["apiVersion"], "v1");
    assert_eq!(
        c["resources"],
        json!({"limits": {"cpu": "500m", "memory": "128974848"}, "requests": {"cpu": "500m", "memory": "128974848"}})
    );
    assert_eq!(
        c["livenessProbe"],
        json!({"httpGet": {"port": 8080, "path": "/", "scheme": "HTTP"}, "timeoutSeconds": 1, "periodSeconds": 10, "successThreshold": 1, "failureThreshold": 3})
    );
    assert_eq!(c["readinessProbe"]["grpc"], json!({"port": 9000, "service": ""}));
    assert_eq!(c["readinessProbe"]["periodSeconds"], 5);
    assert_eq!(spec["volumes"][0], json!({"name": "scratch", "emptyDir": {}}));
    assert_eq!(
        spec["volumes"][1]["configMap"],
        json!({"name": "cfg", "defaultMode": 420})
    );
    assert_eq!(
        spec["volumes"][2]["secret"],
        json!({"secretName": "s", "defaultMode": 420})
    );
    assert_eq!(
        spec["volumes"][3]["downwardAPI"],
        json!({"defaultMode": 420, "items": [{"path": "labels", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.labels"}}]})
    );
    assert_eq!(spec["enableServiceLinks"], true);
    assert_eq!(spec["serviceAccountName"], "default");
    assert_eq!(spec["serviceAccount"], "default");
    // Priority comes from admission, which reads the PriorityClasses.
    assert!(spec.get("priority").is_none());
    assert_eq!(
        spec["tolerations"],
        json!([
            {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
            {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}
        ])
    );
    // Limits on cpu and memory with requests copied from them: Guaranteed.
    assert_eq!(p["status"], json!({"phase": "Pending", "qosClass": "Guaranteed"}));

    let tolerant = created(
        "",
        "Pod",
        json!({"spec": {"priorityClassName": "system-node-critical", "tolerations": [{"operator": "Exists"}]}}),
    );
    assert_eq!(tolerant["spec"]["tolerations"], json!([{"operator": "Exists"}]));
}

#[test]
fn service_defaults() {
    let s = created(
        "",
        "Service",
        json!({"spec": {"selector": {"app": "web"}, "ports": [{"port": 80}, {"port": 443, "targetPort": "https"}]}}),
    );
    assert_eq!(
        s["spec"],
        json!({
            "selector": {"app": "web"},
            "ports": [{"port": 80, "protocol": "TCP", "targetPort": 80}, {"port": 443, "protocol": "TCP", "targetPort": "https"}],
            "type": "ClusterIP",
            "sessionAffinity": "None",
            "internalTrafficPolicy": "Cluster",
            "ipFamilyPolicy": "SingleStack"
        })
    );
    let np = defaulted(
        "",
        "Service",
        json!({"spec": {"type": "NodePort", "ports": [{"port": 80}]}}),
    );
    assert_eq!(np["spec"]["externalTrafficPolicy"], "Cluster");
    let lb = defaulted(
        "",
        "Service",
        json!({"spec": {"type": "LoadBalancer"}, "status": {"loadBalancer": {"ingress": [{"ip": "1.2.3.4"}]}}}),
    );
    assert_eq!(lb["spec"]["allocateLoadBalancerNodePorts"], true);
    assert_eq!(lb["status"]["loadBalancer"]["ingress"][0]["ipMode"], "VIP");
    let sticky = defaulted("", "Service", json!({"spec": {"sessionAffinity": "ClientIP"}}));
    assert_eq!(
        sticky["spec"]["sessionAffinityConfig"],
        json!({"clientIP": {"timeoutSeconds": 10800}})
    );
    let headless = created("", "Service", json!({"spec": {"clusterIP": "None"}}));
    assert_eq!(headless["spec"]["clusterIPs"], json!(["None"]));
    assert_eq!(headless["spec"]["ipFamilyPolicy"], "RequireDualStack");
    let external = created(
        "",
        "Service",
        json!({"spec": {"type": "ExternalName", "externalName": "db.example.com"}}),
    );
    assert!(external["spec"].get("ipFamilyPolicy").is_none());
    assert!(external["spec"].get("internalTrafficPolicy").is_none());
}

#[test]
fn namespace_secret_and_storage_defaults() {
    let ns = created("", "Namespace", json!({"metadata": {"name": "team-a"}}));
    assert_eq!(
        ns["metadata"]["labels"],
        json!({"kubernetes.io/metadata.name": "team-a"})
    );
    assert_eq!(ns["spec"], json!({"finalizers": ["kubernetes"]}));
    assert_eq!(ns["status"], json!({"phase": "Active"}));
    let again = created("", "Namespace", ns.clone());
    assert_eq!(again, ns);
    // Updates do not bring the finalizer back once the namespace controller removed it.
    let mut finalizing = ns.clone();
    finalizing["spec"]["finalizers"] = json!([]);
    apply_defaults("", "Namespace", &mut finalizing);
    assert_eq!(finalizing["spec"]["finalizers"], json!([]));

    let secret = defaulted(
        "",
        "Secret",
        json!({"stringData": {"user": "admin", "pw": "s3cr3t!"}, "data": {"x": "eA=="}}),
    );
    assert_eq!(
        secret,
        json!({"type": "Opaque", "data": {"x": "eA==", "user": "YWRtaW4=", "pw": "czNjcjN0IQ=="}})
    );

    let pv = defaulted(
        "",
        "PersistentVolume",
        json!({"spec": {"capacity": {"storage": "10240Mi"}, "hostPath": {"path": "/d"}}}),
    );
    assert_eq!(
        pv,
        json!({"spec": {"capacity": {"storage": "10Gi"}, "hostPath": {"path": "/d", "type": ""}, "persistentVolumeReclaimPolicy": "Retain", "volumeMode": "Filesystem"}, "status": {"phase": "Pending"}})
    );
    let pvc = defaulted(
        "",
        "PersistentVolumeClaim",
        json!({"spec": {"resources": {"requests": {"storage": "1e9"}}}}),
    );
    assert_eq!(
        pvc,
        json!({"spec": {"resources": {"requests": {"storage": "1e9"}}, "volumeMode": "Filesystem"}, "status": {"phase": "Pending"}})
    );
    let sc = defaulted("storage.k8s.io", "StorageClass", json!({"provisioner": "x"}));
    assert_eq!(
        sc,
        json!({"provisioner": "x", "reclaimPolicy": "Delete", "volumeBindingMode": "Immediate"})
    );
    let slice = defaulted("discovery.k8s.io", "EndpointSlice", json!({"ports": [{"port": 80}]}));
    assert_eq!(slice["ports"], json!([{"port": 80, "name": "", "protocol": "TCP"}]));
    let ep = defaulted("", "Endpoints", json!({"subsets": [{"ports": [{"port": 80}]}]}));
    assert_eq!(ep["subsets"][0]["ports"][0]["protocol"], "TCP");
    let node = defaulted(
        "",
        "Node",
        json!({"spec": {"podCIDR": "10.244.1.0/24"}, "status": {"capacity": {"cpu": "4000m", "memory": "8Gi"}}}),
    );
    assert_eq!(node["spec"]["podCIDRs"], json!(["10.244.1.0/24"]));
    assert_eq!(node["status"]["allocatable"], json!({"cpu": "4", "memory": "8Gi"}));
}

#[test]
fn image_pull_policies() {
    let cases = [
        ("nginx", "Always"),
        ("nginx:latest", "Always"),
        ("nginx:1.27", "IfNotPresent"),
        ("docker.io/library/nginx", "Always"),
        ("registry.example.com:5000/team/app:latest", "Always"),
        ("localhost:5000/app", "Always"),
        ("localhost:5000/app:v1", "IfNotPresent"),
        (
            "nginx@sha256:0d17b565c37bcbd895e9d92315a05c1c3c9a29f762b011a10c54a66cd53c9b31",
            "IfNotPresent",
        ),
        (
            "nginx:1.27@sha256:0d17b565c37bcbd895e9d92315a05c1c3c9a29f762b011a10c54a66cd53c9b31",
            "IfNotPresent",
        ),
        ("Nginx", "IfNotPresent"),
        ("", "IfNotPresent"),
    ];
    for (image, want) in cases {
        assert_eq!(image_pull_policy(image), want, "{image}");
    }
}

#[test]
fn events_print_go_zero_values() {
    let e = defaulted("", "Event", json!({"metadata": {"name": "e"}, "reason": "Created"}));
    assert_eq!(e["eventTime"], Value::Null);
    assert!(e.as_object().unwrap().contains_key("firstTimestamp"));
    assert_eq!(e["source"], json!({}));
    assert_eq!(e["reportingComponent"], "");
}

#[test]
fn defaulting_is_idempotent() {
    let inputs = [
        (
            "apps",
            "Deployment",
            json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "i", "resources": {"requests": {"cpu": "0.25"}}}]}}}}),
        ),
        (
            "",
            "Pod",
            json!({"spec": {"containers": [{"name": "c", "image": "i", "resources": {"limits": {"memory": "1.5Gi"}}}]}}),
        ),
        ("", "Service", json!({"spec": {"ports": [{"port": 1}]}})),
        ("batch", "CronJob", json!({"spec": {"jobTemplate": {}}})),
    ];
    for (g, k, v) in inputs {
        let once = defaulted(g, k, v);
        assert_eq!(defaulted(g, k, once.clone()), once, "{k}");
    }
    let pod = defaulted(
        "",
        "Pod",
        json!({"spec": {"containers": [{"name": "c", "image": "i", "resources": {"limits": {"memory": "1.5Gi"}}}]}}),
    );
    assert_eq!(
        pod["spec"]["containers"][0]["resources"]["requests"]["memory"],
        "1536Mi"
    );
}

#[test]
fn wrong_types_are_left_for_validation() {
    let mut v = json!({"spec": "oops"});
    apply_defaults("apps", "Deployment", &mut v);
    assert_eq!(v, json!({"spec": "oops"}));
    let mut v = json!({"spec": {"template": {"spec": {"containers": "nope", "volumes": [3]}}}});
    apply_defaults("apps", "DaemonSet", &mut v);
    assert_eq!(v["spec"]["template"]["spec"]["containers"], "nope");
    let mut v = json!([1, 2]);
    apply_defaults("", "Pod", &mut v);
    prepare_for_create("", "Pod", &mut v);
    assert_eq!(v, json!([1, 2]));
}

#[test]
fn service_update_keeps_allocations() {
    let old = json!({
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "type": "NodePort",
            "clusterIP": "10.96.0.5",
            "clusterIPs": ["10.96.0.5"],
            "ipFamilies": ["IPv4"],
            "ipFamilyPolicy": "SingleStack",
            "ports": [
                {"name": "http", "port": 80, "protocol": "TCP", "targetPort": 80, "nodePort": 30080},
                {"name": "https", "port": 443, "protocol": "TCP", "targetPort": 443, "nodePort": 30443}
            ]
        }
    });
    // A replace that leaves the allocated fields out (as `kubectl replace -f` of the
    // original manifest does) and pins the https node port to the http one's old value.
    let mut new = defaulted(
        "",
        "Service",
        json!({
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"type": "NodePort", "ports": [
                {"name": "http", "port": 8080},
                {"name": "https", "port": 443, "nodePort": 30080}
            ]}
        }),
    );
    prepare_for_update("", "Service", &mut new, &old);
    let spec = &new["spec"];
    assert_eq!(spec["clusterIP"], json!("10.96.0.5"));
    assert_eq!(spec["clusterIPs"], json!(["10.96.0.5"]));
    assert_eq!(spec["ipFamilies"], json!(["IPv4"]));
    assert_eq!(spec["ipFamilyPolicy"], json!("SingleStack"));
    // 30080 is taken by the request itself, so http is left for the allocator.
    assert_eq!(spec["ports"][0].get("nodePort"), None);
    assert_eq!(spec["ports"][1]["nodePort"], json!(30080));

    // Switching to ExternalName drops the carry-over.
    let mut ext = defaulted(
        "",
        "Service",
        json!({"metadata": {"name": "web"}, "spec": {"type": "ExternalName", "externalName": "example.com"}}),
    );
    prepare_for_update("", "Service", &mut ext, &old);
    assert_eq!(ext["spec"].get("clusterIP"), None);

    // LoadBalancer with Local traffic keeps its health-check port.
    let old_lb = json!({"spec": {"type": "LoadBalancer", "externalTrafficPolicy": "Local", "healthCheckNodePort": 31000, "ports": []}});
    let mut lb = json!({"spec": {"type": "LoadBalancer", "externalTrafficPolicy": "Local"}});
    prepare_for_update("", "Service", &mut lb, &old_lb);
    assert_eq!(lb["spec"]["healthCheckNodePort"], json!(31000));
}

#[test]
fn namespace_update_keeps_finalizers_and_status() {
    let old = created("", "Namespace", json!({"metadata": {"name": "team-a"}}));
    let mut new = defaulted(
        "",
        "Namespace",
        json!({"metadata": {"name": "team-a", "labels": {"x": "y"}}, "spec": {"finalizers": []}, "status": {"phase": "Terminating"}}),
    );
    prepare_for_update("", "Namespace", &mut new, &old);
    assert_eq!(new["spec"], json!({"finalizers": ["kubernetes"]}));
    assert_eq!(new["status"], json!({"phase": "Active"}));
    // Wrong shapes are left alone.
    let mut odd = json!("not an object");
    prepare_for_update("", "Namespace", &mut odd, &old);
    assert_eq!(odd, json!("not an object"));
}
