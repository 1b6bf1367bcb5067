//! ClusterRole aggregation, as upstream's clusterrole-aggregation controller: a ClusterRole
//! with an `aggregationRule` holds the rules of every other ClusterRole its selectors match
//! (in name order, each distinct rule once), and follows them as they change. So `admin`,
//! `edit` and `view` grow with the `aggregate-to-*` roles, bootstrap's and a user's CRD
//! roles alike.

use shoal_runtime::controller::{Error, Pacer};
use std::time::Duration;

use k8s_openapi::api::rbac::v1::ClusterRole;
use kube::api::{Api, Patch, PatchParams};
use serde_json::{Map, Value, json};
use shoal_api::selector::LabelSelector;

use crate::informer::{self, Informers};

const MANAGER: &str = "clusterrole-aggregation-controller";

/// The rules `role` aggregates from `roles` (all ClusterRoles), or `None` when it has no
/// aggregation rule. A selector that does not parse matches nothing.
pub fn aggregated_rules(role: &Value, roles: &[&Value]) -> Option<Vec<Value>> {
    let selectors: Vec<LabelSelector> = role["aggregationRule"]["clusterRoleSelectors"]
        .as_array()?
        .iter()
        .filter_map(|s| LabelSelector::from_api(s).ok())
        .collect();
    let own = informer::name(role);
    let mut sources: Vec<&Value> = roles
        .iter()
        .copied()
        .filter(|r| informer::name(r) != own)
        .filter(|r| {
            let empty = Map::new();
            let labels = r["metadata"]["labels"].as_object().unwrap_or(&empty);
            selectors.iter().any(|s| s.matches(labels))
        })
        .collect();
    sources.sort_by_key(|r| informer::name(r).to_string());
    let mut rules: Vec<Value> = Vec::new();
    for r in sources {
        for rule in r["rules"].as_array().into_iter().flatten() {
            if !rules.contains(rule) {
                rules.push(rule.clone());
            }
        }
    }
    Some(rules)
}

/// Runs the controller until the process ends.
pub async fn run(client: kube::Client, informers: Informers) {
    let interest = informers.interest(&[("rbac.authorization.k8s.io", "clusterroles")]);
    let api: Api<ClusterRole> = Api::all(client);
    let params = PatchParams {
        field_manager: Some(MANAGER.into()),
        ..Default::default()
    };
    informers.ready().await;
    let mut pacer = Pacer::new("clusterrole-aggregation", interest, |_| Duration::ZERO);
    loop {
        pacer
            .pass(&informers, async {
                let mut failure: Option<Error> = None;
                let all = informers.of("rbac.authorization.k8s.io", "clusterroles");
                let roles: Vec<&Value> = all.iter().map(|r| &**r).collect();
                for role in &roles {
                    let Some(rules) = aggregated_rules(role, &roles) else {
                        continue;
                    };
                    let current = role["rules"].as_array().cloned().unwrap_or_default();
                    if current == rules {
                        continue;
                    }
                    let name = informer::name(role);
                    let patch = Patch::Merge(json!({"rules": rules}));
                    if let Err(e) = api.patch(name, &params, &patch).await {
                        failure.get_or_insert(e.into());
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

    fn role(name: &str, labels: Value, rules: Value) -> Value {
        json!({"metadata": {"name": name, "labels": labels}, "rules": rules})
    }

    #[test]
    fn aggregated_roles_gather_the_matching_rules_once_in_name_order() {
        let get = json!({"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]});
        let list = json!({"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]});
        let widgets = json!({"apiGroups": ["example.com"], "resources": ["widgets"], "verbs": ["*"]});
        let mut view = role("view", json!({}), Value::Null);
        view["aggregationRule"] =
            json!({"clusterRoleSelectors": [{"matchLabels": {"rbac.authorization.k8s.io/aggregate-to-view": "true"}}]});
        let labels = json!({"rbac.authorization.k8s.io/aggregate-to-view": "true"});
        let b = role("b-widgets", labels.clone(), json!([widgets, get]));
        let a = role("a-pods", labels, json!([get, list]));
        let other = role("other", json!({}), json!([json!({"verbs": ["*"]})]));
        let roles = [&view, &b, &a, &other];
        assert_eq!(aggregated_rules(&view, &roles).unwrap(), vec![get, list, widgets]);
        assert_eq!(aggregated_rules(&a, &roles), None);
        // An aggregated role never aggregates itself, even when its own labels match.
        let mut selfish = view.clone();
        selfish["metadata"]["labels"] = json!({"rbac.authorization.k8s.io/aggregate-to-view": "true"});
        selfish["rules"] = json!([json!({"verbs": ["delete"]})]);
        assert_eq!(aggregated_rules(&selfish, &[&selfish]).unwrap(), Vec::<Value>::new());
    }
}
