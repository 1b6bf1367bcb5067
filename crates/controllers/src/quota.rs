//! The ResourceQuota controller, as upstream's: every quota's `status.hard` mirrors its
//! `spec.hard`, and `status.used` is the namespace's recounted usage of each resource it
//! limits (pods, compute requests and limits, services, claims and storage, object counts
//! `count/<resource>[.<group>]`), for the objects its scopes cover. Admission charges
//! creates at once; this recount also gives back what deleted or finished objects held.

use shoal_runtime::controller::{Error, Pacer};
use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, ResourceQuota};
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::{Map, Value, json};
use shoal_api::quota::{self, Usage};
use shoal_api::validation::quantity::Quantity;

use crate::informer::{self, Informers};

const MANAGER: &str = "resourcequota-controller";

/// The resources whose objects charge more than their count.
const TRACKED: &[(&str, &str)] = &[
    ("", "pods"),
    ("", "services"),
    ("", "persistentvolumeclaims"),
    ("", "configmaps"),
    ("", "secrets"),
    ("", "resourcequotas"),
    ("", "replicationcontrollers"),
];

/// The (group, plural) a `count/<plural>[.<group>]` resource name counts.
pub fn counted(name: &str) -> Option<(String, String)> {
    let rest = name.strip_prefix("count/")?;
    Some(match rest.split_once('.') {
        Some((plural, group)) => (group.to_string(), plural.to_string()),
        None => (String::new(), rest.to_string()),
    })
}

/// `status.used` of a quota over `objects` ((group, plural, object) of its namespace): each
/// resource of `spec.hard`, starting from 0.
pub fn used(quota_obj: &Value, objects: &[(&str, &str, &Value)]) -> Usage {
    let hard = quota::parse_list(&quota_obj["spec"]["hard"]);
    let mut used: Usage = hard.keys().map(|k| (k.clone(), Quantity::from_int(0))).collect();
    for &(group, plural, obj) in objects {
        if informer::deleting(obj) && plural != "pods" {
            continue;
        }
        if !quota::scopes_match(quota_obj, plural, obj) {
            continue;
        }
        for (k, amount) in quota::usage(group, plural, obj) {
            if let Some(total) = used.get_mut(&k) {
                *total = quota::plus(total, &amount);
            }
        }
    }
    used
}

/// True when a quota limits what pods request or are limited to (which needs their
/// containers).
fn limits_compute(q: &Value) -> bool {
    q["spec"]["hard"].as_object().into_iter().flatten().any(|(k, _)| {
        k.starts_with("requests.")
            || k.starts_with("limits.")
            || k.starts_with("hugepages-")
            || matches!(k.as_str(), "cpu" | "memory" | "ephemeral-storage")
    })
}

fn as_json(u: &Usage) -> Map<String, Value> {
    u.iter().map(|(k, v)| (k.clone(), json!(v.canonical()))).collect()
}

/// The merge patch that makes `status` say `hard` and `used` (keys no longer limited are
/// removed), or `None` when it already does.
pub fn status_patch(quota_obj: &Value, used: &Usage) -> Option<Value> {
    let hard = quota::parse_list(&quota_obj["spec"]["hard"]);
    let want_hard = as_json(&hard);
    let want_used = as_json(used);
    let status = &quota_obj["status"];
    let same = |have: &Value, want: &Map<String, Value>| {
        let have = have.as_object().cloned().unwrap_or_default();
        have.len() == want.len()
            && want.iter().all(|(k, v)| {
                have.get(k)
                    .and_then(|h| Quantity::from_json(h).ok())
                    .zip(v.as_str().and_then(|s| Quantity::parse(s).ok()))
                    .is_some_and(|(a, b)| a == b)
            })
    };
    if same(&status["hard"], &want_hard) && same(&status["used"], &want_used) {
        return None;
    }
    let with_removals = |have: &Value, want: Map<String, Value>| {
        let mut out = want;
        for k in have.as_object().into_iter().flatten().map(|(k, _)| k) {
            out.entry(k.clone()).or_insert(Value::Null);
        }
        Value::Object(out)
    };
    Some(json!({"status": {
        "hard": with_removals(&status["hard"], want_hard),
        "used": with_removals(&status["used"], want_used),
    }}))
}

/// Runs the controller until the process ends.
pub async fn run(client: kube::Client, informers: Informers) {
    let interest = informers.interest(TRACKED);
    let params = PatchParams {
        field_manager: Some(MANAGER.into()),
        ..Default::default()
    };
    informers.ready().await;
    let mut pacer = Pacer::new("resourcequota", interest, |_| Duration::from_millis(50));
    loop {
        pacer
            .pass(&informers, async {
                let mut failure: Option<Error> = None;
                let quotas = informers.of("", "resourcequotas");
                let mut by_namespace: BTreeMap<&str, Vec<&Value>> = BTreeMap::new();
                for q in &quotas {
                    by_namespace.entry(informer::namespace(q)).or_default().push(q);
                }
                if !by_namespace.is_empty() {
                    // What each namespace with a quota holds, of the resources any quota counts.
                    let mut resources: Vec<(String, String)> =
                        TRACKED.iter().map(|(g, p)| (g.to_string(), p.to_string())).collect();
                    for q in &quotas {
                        for k in q["spec"]["hard"].as_object().into_iter().flatten().map(|(k, _)| k) {
                            if let Some(gp) = counted(k).filter(|gp| !resources.contains(gp)) {
                                resources.push(gp);
                            }
                        }
                    }
                    let listed: Vec<(&str, &str, Vec<std::sync::Arc<Value>>)> = resources
                        .iter()
                        .map(|(g, p)| (g.as_str(), p.as_str(), informers.of(g, p)))
                        .collect();
                    for (ns, qs) in by_namespace {
                        // The pod cache keeps no container resources: pods are listed whole where a
                        // quota limits compute.
                        let listed_pods = if qs.iter().any(|q| limits_compute(q)) {
                            match Api::<Pod>::namespaced(client.clone(), ns)
                                .list(&ListParams::default())
                                .await
                            {
                                Ok(list) => Some(
                                    list.items
                                        .into_iter()
                                        .filter_map(|p| serde_json::to_value(p).ok())
                                        .collect::<Vec<Value>>(),
                                ),
                                Err(e) => {
                                    failure.get_or_insert(e.into());
                                    continue;
                                }
                            }
                        } else {
                            None
                        };
                        let mut objects: Vec<(&str, &str, &Value)> = listed
                            .iter()
                            .filter(|(g, p, _)| listed_pods.is_none() || (*g, *p) != ("", "pods"))
                            .flat_map(|(g, p, objs)| {
                                objs.iter()
                                    .filter(|o| informer::namespace(o) == ns)
                                    .map(move |o| (*g, *p, &**o))
                            })
                            .collect();
                        objects.extend(listed_pods.iter().flatten().map(|p| ("", "pods", p)));
                        for q in qs {
                            let Some(patch) = status_patch(q, &used(q, &objects)) else {
                                continue;
                            };
                            let api: Api<ResourceQuota> = Api::namespaced(client.clone(), ns);
                            let name = informer::name(q);
                            if let Err(e) = api.patch_status(name, &params, &Patch::Merge(patch)).await {
                                failure.get_or_insert(e.into());
                            }
                        }
                    }
                }
                // Object counts of other resources are recounted at least this often.
                failure.map_or(Ok(Duration::from_secs(10)), Err)
            })
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_is_recounted_for_what_the_quota_limits() {
        let q = json!({"spec": {"hard": {"pods": "4", "requests.cpu": "2", "count/deployments.apps": "1", "configmaps": "5"}},
                       "status": {"hard": {"pods": "2"}, "used": {"pods": "9", "secrets": "1"}}});
        let p1 = json!({"spec": {"containers": [{"name": "a", "resources": {"requests": {"cpu": "500m"}}}]}});
        let done = json!({"spec": {"containers": [{"name": "a", "resources": {"requests": {"cpu": "1"}}}]},
                          "status": {"phase": "Succeeded"}});
        let d = json!({"metadata": {"name": "d"}});
        let objects = [("", "pods", &p1), ("", "pods", &done), ("apps", "deployments", &d)];
        let u = used(&q, &objects);
        let text: BTreeMap<&str, String> = u.iter().map(|(k, v)| (k.as_str(), v.canonical())).collect();
        assert_eq!(
            text,
            [
                ("configmaps", "0".to_string()),
                ("count/deployments.apps", "1".to_string()),
                ("pods", "1".to_string()),
                ("requests.cpu", "500m".to_string())
            ]
            .into()
        );
        let patch = status_patch(&q, &u).unwrap();
        assert_eq!(patch["status"]["hard"]["pods"], "4");
        assert_eq!(patch["status"]["used"]["secrets"], Value::Null);
        assert_eq!(patch["status"]["used"]["requests.cpu"], "500m");
        // Once written, nothing more to write.
        let mut settled = q.clone();
        settled["status"] = json!({"hard": {"pods": "4", "requests.cpu": "2000m", "count/deployments.apps": "1", "configmaps": "5"},
                                   "used": {"pods": "1", "requests.cpu": "0.5", "count/deployments.apps": "1", "configmaps": "0"}});
        assert_eq!(status_patch(&settled, &u), None);
        assert_eq!(
            counted("count/deployments.apps"),
            Some(("apps".into(), "deployments".into()))
        );
        assert_eq!(counted("count/pods"), Some((String::new(), "pods".into())));
        assert_eq!(counted("pods"), None);
    }
}
