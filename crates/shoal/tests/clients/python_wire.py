"""The official Python client against shoal: the wire details it relies on.

Run by crates/shoal/tests/python_client.rs with KUBECONFIG set; prints one line per check
and exits non-zero at the first one that fails.
"""
import time
import os
import sys

from kubernetes import client, config
from kubernetes.client.rest import ApiException
from kubernetes.dynamic import DynamicClient

config.load_kube_config(config_file=os.environ["KUBECONFIG"])
api = client.ApiClient()
core = client.CoreV1Api(api)
ns = "py"


def check(name, ok, detail=""):
    print(("ok   " if ok else "FAIL ") + name + ("" if ok else ": " + str(detail)))
    if not ok:
        sys.exit(1)


# GET /version/ (the client asks with the trailing slash).
version = client.VersionApi(api).get_code()
check("version", version.major == "1" and version.minor.startswith("33"), version)

core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))

# Paged lists say how many items remain.
# (Unfiltered: upstream gives no count under a selector. The namespace's kube-root-ca.crt
# arrives on its own, so it is waited for first.)
for _ in range(100):
    if any(c.metadata.name == "kube-root-ca.crt" for c in core.list_namespaced_config_map(ns).items):
        break
    time.sleep(0.1)
for i in range(5):
    core.create_namespaced_config_map(ns, client.V1ConfigMap(metadata=client.V1ObjectMeta(name=f"cm-{i}")))
page = core.list_namespaced_config_map(ns, limit=2)
check("remainingItemCount", page.metadata.remaining_item_count == 4, page.metadata)
filtered = core.list_namespaced_config_map(ns, limit=2, label_selector="none!=here")
check("no count under a selector", filtered.metadata.remaining_item_count is None, filtered.metadata)
check("continue", bool(page.metadata._continue))

# Empty statuses are encoded, so the client builds their objects.
svc = core.create_namespaced_service(ns, client.V1Service(
    metadata=client.V1ObjectMeta(name="web"),
    spec=client.V1ServiceSpec(selector={"app": "web"}, ports=[client.V1ServicePort(port=80)])))
check("service status", svc.status is not None and svc.status.load_balancer is not None, svc.status)

# A Service turned into a NodePort gets its node port.
patched = core.patch_namespaced_service("web", ns, {"spec": {"type": "NodePort"}})
node_port = patched.spec.ports[0].node_port
check("nodePort on type change", node_port is not None and 30000 <= node_port <= 32767, patched.spec.ports)

# Server-side apply with a YAML body.
manifest = (
    "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: applied\n  namespace: py\n"
    "data:\n  greeting: hello\n"
)
# (the dynamic client sends the YAML text as given, as application/apply-patch+yaml)
DynamicClient(api).resources.get(api_version="v1", kind="ConfigMap").server_side_apply(
    body=manifest, name="applied", namespace=ns, field_manager="python")
applied = core.read_namespaced_config_map("applied", ns)
check("apply-patch+yaml", applied.data == {"greeting": "hello"}, applied.data)
check("apply manager", any(m.manager == "python" and m.operation == "Apply" for m in applied.metadata.managed_fields))

# One Event, two APIs.
events = client.EventsV1Api(api)
ev = client.EventsV1Event(
    metadata=client.V1ObjectMeta(name="web.1"),
    event_time="2026-01-01T00:00:00.000000Z",
    reason="Tested", note="seen from both APIs", type="Normal", action="Test",
    reporting_controller="example.com/py", reporting_instance="py-1",
    regarding=client.V1ObjectReference(kind="Service", name="web", namespace=ns))
events.create_namespaced_event(ns, ev)
core_ev = core.read_namespaced_event("web.1", ns)
check("events.k8s.io -> core", core_ev.message == "seen from both APIs" and core_ev.involved_object.name == "web", core_ev)
listed = events.list_namespaced_event(ns, field_selector="regarding.name=web")
check("events field selector", [e.metadata.name for e in listed.items] == ["web.1"], listed.items)

# Both autoscaling versions see one object.
v2 = client.AutoscalingV2Api(api)
v2.create_namespaced_horizontal_pod_autoscaler(ns, client.V2HorizontalPodAutoscaler(
    metadata=client.V1ObjectMeta(name="web"),
    spec=client.V2HorizontalPodAutoscalerSpec(
        scale_target_ref=client.V2CrossVersionObjectReference(api_version="apps/v1", kind="Deployment", name="web"),
        min_replicas=1, max_replicas=4,
        metrics=[client.V2MetricSpec(type="Resource", resource=client.V2ResourceMetricSource(
            name="cpu", target=client.V2MetricTarget(type="Utilization", average_utilization=70)))])))
v1 = client.AutoscalingV1Api(api).read_namespaced_horizontal_pod_autoscaler("web", ns)
check("hpa v2 -> v1", v1.spec.target_cpu_utilization_percentage == 70, v1.spec)

# RBAC and the review APIs.
roles = [r.metadata.name for r in client.RbacAuthorizationV1Api(api).list_cluster_role().items]
check("bootstrap roles", {"cluster-admin", "admin", "edit", "view"} <= set(roles))
review = client.AuthenticationV1Api(api).create_self_subject_review(client.V1SelfSubjectReview())
check("whoami", review.status.user_info.username == "system:admin", review.status)

# Errors are Status objects the client reads.
try:
    core.read_namespaced_config_map("nope", ns)
    check("404", False, "no error")
except ApiException as e:
    check("404", e.status == 404 and '"reason":"NotFound"' in e.body.replace(" ", ""), e.body)

core.delete_namespace(ns)
print("all checks passed")
