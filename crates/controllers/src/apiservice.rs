//! APIService availability for local APIServices (no `spec.service`): they are always
//! available, as upstream's aggregator reports them. One backed by a Service is the API
//! server's to check (its aggregation layer reaches the backend and writes the condition).

use shoal_runtime::controller::{Error, Pacer};
use std::time::Duration;

use k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1::APIService;
use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};

use crate::informer::{self, Informers};

const MANAGER: &str = "kube-aggregator";

/// (status, reason, message) of a local APIService's `Available` condition; `None` for one
/// backed by a Service.
pub fn availability(api: &Value) -> Option<(&'static str, &'static str, String)> {
    api["spec"]["service"]
        .is_null()
        .then(|| ("True", "Local", "Local APIServices are always available".into()))
}

/// Runs the controller until the process ends.
pub async fn run(client: kube::Client, informers: Informers) {
    let interest = informers.interest(&[("apiregistration.k8s.io", "apiservices")]);
    let api: Api<APIService> = Api::all(client);
    let params = PatchParams {
        field_manager: Some(MANAGER.into()),
        ..Default::default()
    };
    informers.ready().await;
    let mut pacer = Pacer::new("apiservice-availability", interest, |_| Duration::ZERO);
    loop {
        pacer
            .pass(&informers, async {
                let mut failure: Option<Error> = None;
                let apis = informers.of("apiregistration.k8s.io", "apiservices");
                if !apis.is_empty() {
                    for a in &apis {
                        let Some((status, reason, message)) = availability(a) else {
                            continue;
                        };
                        let current = a["status"]["conditions"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .find(|c| c["type"] == "Available");
                        let unchanged = current.is_some_and(|c| {
                            c["status"] == status && c["reason"] == reason && c["message"] == message.as_str()
                        });
                        if unchanged {
                            continue;
                        }
                        let since = match current {
                            Some(c) if c["status"] == status => c["lastTransitionTime"].clone(),
                            _ => json!(shoal_api::time::now_rfc3339()),
                        };
                        let condition = json!({"type": "Available", "status": status, "reason": reason,
                                       "message": message, "lastTransitionTime": since});
                        let name = informer::name(a);
                        let patch = Patch::Merge(json!({"status": {"conditions": [condition]}}));
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

    #[test]
    fn local_api_services_are_available_and_others_left_to_the_aggregator() {
        let local = json!({"spec": {"group": "apps", "version": "v1"}});
        assert_eq!(availability(&local).map(|a| a.1), Some("Local"));
        let remote = json!({"spec": {"group": "metrics.k8s.io", "version": "v1beta1",
            "service": {"namespace": "kube-system", "name": "metrics-server", "port": 443}}});
        assert_eq!(availability(&remote), None);
    }
}
