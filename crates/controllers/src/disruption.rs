//! The disruption controller, as upstream's: every PodDisruptionBudget's status says how
//! many of its pods are healthy (`currentHealthy`, Ready and not being deleted), how many
//! must stay so (`desiredHealthy`), how many there should be (`expectedPods`, from the
//! pods' controllers' scale, or the pods themselves for an integer `minAvailable`), and so
//! how many may be disrupted now (`disruptionsAllowed`), with the `DisruptionAllowed`
//! condition. The eviction API spends from it.

use shoal_runtime::controller::{Error, Pacer};
use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, Patch, PatchParams};
use serde_json::{Map, Value, json};
use shoal_api::selector::LabelSelector;

use crate::informer::{self, Informers};

const MANAGER: &str = "disruption-controller";

/// What the controller needs of a namespace's objects: pods and the controllers that own
/// them (ReplicaSets, Deployments, StatefulSets, ReplicationControllers), by uid.
pub struct World<'a> {
    /// The namespace's pods.
    pub pods: Vec<&'a Value>,
    /// Possible owners by uid, with their kind.
    pub owners: BTreeMap<&'a str, (&'a str, &'a Value)>,
}

/// The pods of `world` a PDB's selector picks (an empty selector picks every pod, a missing
/// one none).
pub fn selected<'a>(pdb: &Value, world: &World<'a>) -> Vec<&'a Value> {
    let Ok(sel) = LabelSelector::from_api(&pdb["spec"]["selector"]) else {
        return Vec::new();
    };
    let empty = Map::new();
    world
        .pods
        .iter()
        .copied()
        .filter(|p| sel.matches(p["metadata"]["labels"].as_object().unwrap_or(&empty)))
        .collect()
}

/// `round_up(value% of total)` or the integer itself.
fn scaled(v: &Value, total: i64) -> Result<i64, String> {
    match v {
        Value::Number(n) => n.as_i64().ok_or_else(|| format!("invalid value for IntOrString: {v}")),
        Value::String(s) => {
            let pct: i64 = s
                .strip_suffix('%')
                .and_then(|p| p.parse().ok())
                .ok_or_else(|| "invalid value for IntOrString: invalid type: string is not a percentage".to_string())?;
            Ok((pct * total + 99) / 100)
        }
        _ => Err(format!("invalid value for IntOrString: {v}")),
    }
}

/// The scale of the controllers owning `pods` (each once): Deployments through their
/// ReplicaSets. Pods without a controller are left out; a controller without a scale (a
/// DaemonSet) is an error, as upstream's.
fn expected_scale(pods: &[&Value], world: &World) -> Result<i64, String> {
    let mut seen = HashSet::new();
    let mut total = 0;
    for pod in pods {
        let Some(uid) = informer::controller_uid(pod) else {
            continue;
        };
        let Some(&(kind, owner)) = world.owners.get(uid) else {
            return Err(format!("found no controllers for pod {:?}", informer::name(pod)));
        };
        let (kind, owner) = match (kind, informer::controller_uid(owner).and_then(|u| world.owners.get(u))) {
            ("ReplicaSet", Some(&("Deployment", d))) => ("Deployment", d),
            _ => (kind, owner),
        };
        if !seen.insert(informer::uid(owner).to_string()) {
            continue;
        }
        match kind {
            "ReplicaSet" | "Deployment" | "StatefulSet" | "ReplicationController" => {
                total += owner["spec"]["replicas"].as_i64().unwrap_or(1);
            }
            "DaemonSet" => return Err("daemonsets.apps does not implement the scale subresource".into()),
            other => return Err(format!("{other} does not implement the scale subresource")),
        }
    }
    Ok(total)
}

/// True for a pod that counts as healthy: Ready and not being deleted.
fn healthy(pod: &Value) -> bool {
    !informer::deleting(pod)
        && pod["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

/// The numbers of a PDB's status: (currentHealthy, desiredHealthy, expectedPods,
/// disruptionsAllowed), or the sync error.
pub fn counts(pdb: &Value, world: &World) -> Result<(i64, i64, i64, i64), String> {
    let pods = selected(pdb, world);
    let spec = &pdb["spec"];
    let (expected, desired) = if let Some(max) = spec.get("maxUnavailable").filter(|v| !v.is_null()) {
        let expected = expected_scale(&pods, world)?;
        (expected, (expected - scaled(max, expected)?).max(0))
    } else if let Some(min) = spec.get("minAvailable").filter(|v| !v.is_null()) {
        if min.is_number() {
            (pods.len() as i64, scaled(min, 0)?)
        } else {
            let expected = expected_scale(&pods, world)?;
            (expected, scaled(min, expected)?)
        }
    } else {
        // Neither given: upstream's default is minAvailable 1.
        (pods.len() as i64, 1)
    };
    let current = pods.iter().filter(|p| healthy(p)).count() as i64;
    let allowed = if expected <= 0 { 0 } else { (current - desired).max(0) };
    Ok((current, desired, expected, allowed))
}

/// The status a PDB should have now; `now` stamps a condition whose status changes.
pub fn desired_status(pdb: &Value, world: &World, now: &str) -> Value {
    let old = &pdb["status"];
    let generation = pdb["metadata"]["generation"].as_i64().unwrap_or(0);
    let (mut status, condition, observed) = match counts(pdb, world) {
        Ok((current, desired, expected, allowed)) => {
            let mut s = json!({
                "currentHealthy": current, "desiredHealthy": desired, "expectedPods": expected,
                "disruptionsAllowed": allowed, "observedGeneration": generation,
            });
            if let Some(d) = old
                .get("disruptedPods")
                .filter(|d| d.as_object().is_some_and(|m| !m.is_empty()))
            {
                s["disruptedPods"] = d.clone();
            }
            let (st, reason) = if allowed > 0 {
                ("True", "SufficientPods")
            } else {
                ("False", "InsufficientPods")
            };
            (
                s,
                json!({"type": "DisruptionAllowed", "status": st, "reason": reason, "message": ""}),
                generation,
            )
        }
        Err(e) => {
            // Fail safe: nothing may be disrupted; the rest stays as it was.
            let mut s = old.as_object().cloned().map(Value::Object).unwrap_or_else(|| json!({}));
            s["disruptionsAllowed"] = json!(0);
            for k in ["currentHealthy", "desiredHealthy", "expectedPods"] {
                if s.get(k).is_none() {
                    s[k] = json!(0);
                }
            }
            let observed = old["observedGeneration"].as_i64().unwrap_or(0);
            (
                s,
                json!({"type": "DisruptionAllowed", "status": "False", "reason": "SyncFailed", "message": e}),
                observed,
            )
        }
    };
    let mut condition = condition;
    condition["observedGeneration"] = json!(observed);
    let previous = old["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == "DisruptionAllowed");
    condition["lastTransitionTime"] = match previous {
        Some(p) if p["status"] == condition["status"] => p["lastTransitionTime"].clone(),
        _ => json!(now),
    };
    status["conditions"] = json!([condition]);
    status
}

/// True when the written status already says everything `want` says.
fn same(have: &Value, want: &Value) -> bool {
    want.as_object()
        .into_iter()
        .flatten()
        .all(|(k, v)| have.get(k).unwrap_or(&Value::Null) == v)
}

/// Runs the controller until the process ends.
pub async fn run(client: kube::Client, informers: Informers) {
    let interest = informers.interest(&[
        ("policy", "poddisruptionbudgets"),
        ("", "pods"),
        ("apps", "replicasets"),
        ("apps", "deployments"),
        ("apps", "statefulsets"),
        ("", "replicationcontrollers"),
    ]);
    let params = PatchParams {
        field_manager: Some(MANAGER.into()),
        ..Default::default()
    };
    informers.ready().await;
    let mut pacer = Pacer::new("disruption", interest, |_| Duration::from_millis(50));
    loop {
        pacer
            .pass(&informers, async {
                let mut failure: Option<Error> = None;
                let pdbs = informers.of("policy", "poddisruptionbudgets");
                if !pdbs.is_empty() {
                    let pods = informers.of("", "pods");
                    let owners_of = [
                        ("apps", "replicasets", "ReplicaSet"),
                        ("apps", "deployments", "Deployment"),
                        ("apps", "statefulsets", "StatefulSet"),
                        ("", "replicationcontrollers", "ReplicationController"),
                        ("apps", "daemonsets", "DaemonSet"),
                    ]
                    .map(|(g, p, k)| (k, informers.of(g, p)));
                    let now = shoal_api::time::now_rfc3339();
                    for pdb in &pdbs {
                        let ns = informer::namespace(pdb);
                        let world = World {
                            pods: pods
                                .iter()
                                .filter(|p| informer::namespace(p) == ns)
                                .map(|p| &**p)
                                .collect(),
                            owners: owners_of
                                .iter()
                                .flat_map(|(k, objs)| {
                                    objs.iter()
                                        .filter(|o| informer::namespace(o) == ns)
                                        .map(move |o| (informer::uid(o), (*k, &**o)))
                                })
                                .collect(),
                        };
                        let want = desired_status(pdb, &world, &now);
                        if same(&pdb["status"], &want) {
                            continue;
                        }
                        let api: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), ns);
                        let name = informer::name(pdb);
                        let patch = Patch::Merge(json!({"status": want}));
                        if let Err(e) = api.patch_status(name, &params, &patch).await {
                            failure.get_or_insert(e.into());
                        }
                    }
                }
                failure.map_or(Ok(Duration::from_secs(30)), Err)
            })
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, ready: bool, owner: Option<&str>) -> Value {
        let mut p = json!({"metadata": {"name": name, "labels": {"app": "web"}},
            "status": {"conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}});
        if let Some(uid) = owner {
            p["metadata"]["ownerReferences"] = json!([{"uid": uid, "controller": true}]);
        }
        p
    }

    fn pdb(spec: Value) -> Value {
        let mut spec = spec;
        spec["selector"] = json!({"matchLabels": {"app": "web"}});
        json!({"metadata": {"name": "web", "generation": 2}, "spec": spec})
    }

    #[test]
    fn budgets_count_healthy_pods_against_their_controllers_scale() {
        let rs = json!({"metadata": {"uid": "rs", "ownerReferences": [{"uid": "d", "controller": true}]}, "spec": {"replicas": 4}});
        let d = json!({"metadata": {"uid": "d"}, "spec": {"replicas": 4}});
        let pods = [
            pod("a", true, Some("rs")),
            pod("b", true, Some("rs")),
            pod("c", true, Some("rs")),
            pod("x", false, Some("rs")),
        ];
        let world = World {
            pods: pods.iter().collect(),
            owners: [("rs", ("ReplicaSet", &rs)), ("d", ("Deployment", &d))].into(),
        };
        // minAvailable 2 (an integer): the pods themselves are expected.
        assert_eq!(counts(&pdb(json!({"minAvailable": 2})), &world), Ok((3, 2, 4, 1)));
        // maxUnavailable 25% of the Deployment's 4, rounded up: 1, so 3 must stay healthy.
        assert_eq!(counts(&pdb(json!({"maxUnavailable": "25%"})), &world), Ok((3, 3, 4, 0)));
        // minAvailable 50% of 4: 2.
        assert_eq!(counts(&pdb(json!({"minAvailable": "50%"})), &world), Ok((3, 2, 4, 1)));
        let status = desired_status(&pdb(json!({"minAvailable": 2})), &world, "T");
        assert_eq!(status["disruptionsAllowed"], 1);
        assert_eq!(status["observedGeneration"], 2);
        assert_eq!(status["conditions"][0]["reason"], "SufficientPods");
        assert_eq!(status["conditions"][0]["lastTransitionTime"], "T");
        let again = desired_status(
            &json!({"metadata": {"generation": 2}, "spec": pdb(json!({"minAvailable": 2}))["spec"], "status": status}),
            &world,
            "U",
        );
        assert_eq!(
            again["conditions"][0]["lastTransitionTime"], "T",
            "no transition, no new time"
        );
    }

    #[test]
    fn daemon_pods_with_a_percentage_fail_safe() {
        let ds = json!({"metadata": {"uid": "ds"}});
        let pods = [pod("a", true, Some("ds"))];
        let world = World {
            pods: pods.iter().collect(),
            owners: [("ds", ("DaemonSet", &ds))].into(),
        };
        let status = desired_status(&pdb(json!({"maxUnavailable": 1})), &world, "T");
        assert_eq!(status["disruptionsAllowed"], 0);
        assert_eq!(status["conditions"][0]["reason"], "SyncFailed");
        assert_eq!(
            status["conditions"][0]["message"],
            "daemonsets.apps does not implement the scale subresource"
        );
        // An integer minAvailable needs no scale.
        assert_eq!(counts(&pdb(json!({"minAvailable": 1})), &world), Ok((1, 1, 1, 0)));
        // Unmanaged pods are skipped: nothing expected, nothing allowed.
        let lone = [pod("l", true, None)];
        let world = World {
            pods: lone.iter().collect(),
            owners: BTreeMap::new(),
        };
        assert_eq!(counts(&pdb(json!({"maxUnavailable": 1})), &world), Ok((1, 0, 0, 0)));
    }
}
