//! What every namespace holds from its start, as upstream's ServiceAccount controller and
//! root-CA publisher keep it: a `default` ServiceAccount, and the ConfigMap
//! `kube-root-ca.crt` with the cluster CA (`ca.crt`). Both come back when deleted.

use shoal_runtime::controller::{Error, Pacer};
use std::collections::HashSet;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, ServiceAccount};
use kube::api::{Api, PostParams};
use serde_json::json;

use crate::informer::{self, Informers};

const MANAGER: &str = "serviceaccount-controller";
/// The ConfigMap with the cluster CA in every namespace.
pub const ROOT_CA: &str = "kube-root-ca.crt";

/// What a namespace lacks: (needs `default`, needs the root-CA ConfigMap).
pub fn missing(
    ns: &str,
    accounts: &HashSet<(String, String)>,
    config_maps: &HashSet<(String, String)>,
    with_ca: bool,
) -> (bool, bool) {
    let has = |set: &HashSet<(String, String)>, name: &str| set.contains(&(ns.to_string(), name.to_string()));
    (!has(accounts, "default"), with_ca && !has(config_maps, ROOT_CA))
}

/// Runs the controller until the process ends. `root_ca` is the cluster CA (PEM), if the
/// cluster has one to publish.
/// `client` makes ServiceAccounts (upstream's ServiceAccount controller), `publisher` the
/// root-CA ConfigMaps (its root-CA publisher).
pub async fn run(client: kube::Client, publisher: kube::Client, informers: Informers, root_ca: Option<String>) {
    let interest = informers.interest(&[("", "namespaces"), ("", "serviceaccounts"), ("", "configmaps")]);
    let pp = PostParams {
        field_manager: Some(MANAGER.into()),
        ..Default::default()
    };
    informers.ready().await;
    let mut pacer = Pacer::new("serviceaccount", interest, |_| Duration::from_millis(20));
    loop {
        pacer.pass(&informers, async {
        let mut failure: Option<Error> = None;
        let key = |o: &serde_json::Value| (informer::namespace(o).to_string(), informer::name(o).to_string());
        let accounts: HashSet<(String, String)> = informers.of("", "serviceaccounts").iter().map(|o| key(o)).collect();
        let config_maps: HashSet<(String, String)> = informers.of("", "configmaps").iter().map(|o| key(o)).collect();
        for ns in informers.of("", "namespaces") {
            if informer::deleting(&ns) {
                continue;
            }
            let name = informer::name(&ns);
            let (account, ca) = missing(name, &accounts, &config_maps, root_ca.is_some());
            if account {
                let sa: Result<ServiceAccount, _> =
                    serde_json::from_value(json!({"metadata": {"name": "default", "namespace": name}}));
                if let Ok(sa) = sa {
                    match Api::<ServiceAccount>::namespaced(client.clone(), name)
                        .create(&pp, &sa)
                        .await
                    {
                        Ok(_) => {}
                        Err(kube::Error::Api(e)) if e.code == 409 => {}
                        Err(e) => {
                            { failure.get_or_insert(e.into()); }
                        }
                    }
                }
            }
            if let (true, Some(pem)) = (ca, root_ca.as_deref()) {
                let cm: Result<ConfigMap, _> = serde_json::from_value(json!({
                    "metadata": {"name": ROOT_CA, "namespace": name,
                                 "annotations": {"kubernetes.io/description": "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters."}},
                    "data": {"ca.crt": pem},
                }));
                if let Ok(cm) = cm {
                    match Api::<ConfigMap>::namespaced(publisher.clone(), name)
                        .create(&pp, &cm)
                        .await
                    {
                        Ok(_) => {}
                        Err(kube::Error::Api(e)) if e.code == 409 => {}
                        Err(e) => { failure.get_or_insert(e.into()); },
                    }
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

    #[test]
    fn namespaces_get_what_they_lack() {
        let sa: HashSet<(String, String)> = [("a".into(), "default".into())].into();
        let cm: HashSet<(String, String)> = [("b".into(), ROOT_CA.into())].into();
        assert_eq!(missing("a", &sa, &cm, true), (false, true));
        assert_eq!(missing("b", &sa, &cm, true), (true, false));
        assert_eq!(missing("c", &sa, &cm, false), (true, false));
    }
}
