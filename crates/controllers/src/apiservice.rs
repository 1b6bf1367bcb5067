//! APIService availability, as upstream's aggregator reports it in the `Available`
//! condition: local APIServices (no `spec.service`) are available; one backed by a Service
//! is not while that Service is missing, does not serve the port, or has no endpoints with
//! addresses on it. shoal does not proxy to aggregated API servers, so an APIService whose
//! Service has endpoints fails its discovery check, saying so.

use shoal_runtime::controller::{Error, Pacer};
use std::time::Duration;

use k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1::APIService;
use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};

use crate::informer::{self, Informers};

const MANAGER: &str = "kube-aggregator";

/// (status, reason, message) of an APIService's `Available` condition, given the Services
/// and Endpoints of the cluster.
pub fn availability(api: &Value, services: &[&Value], endpoints: &[&Value]) -> (&'static str, &'static str, String) {
    let svc = &api["spec"]["service"];
    if svc.is_null() {
        return ("True", "Local", "Local APIServices are always available".into());
    }
    let (ns, name) = (
        svc["namespace"].as_str().unwrap_or_default(),
        svc["name"].as_str().unwrap_or_default(),
    );
    let port = svc["port"].as_i64().unwrap_or(443);
    let Some(service) = services
        .iter()
        .find(|s| informer::namespace(s) == ns && informer::name(s) == name)
    else {
        return (
            "False",
            "ServiceNotFound",
            format!("service/{name} in {ns:?} is not present"),
        );
    };
    let cluster_ip = matches!(service["spec"]["type"].as_str(), None | Some("ClusterIP"));
    if cluster_ip {
        let Some(service_port) = service["spec"]["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["port"].as_i64() == Some(port))
        else {
            return (
                "False",
                "ServicePortError",
                format!("service/{name} in {ns:?} is not listening on port {port}"),
            );
        };
        let port_name = service_port["name"].as_str().unwrap_or_default();
        let Some(ep) = endpoints
            .iter()
            .find(|e| informer::namespace(e) == ns && informer::name(e) == name)
        else {
            return (
                "False",
                "EndpointsNotFound",
                format!("cannot find endpoints for service/{name} in {ns:?}"),
            );
        };
        let ready = ep["subsets"].as_array().into_iter().flatten().any(|s| {
            s["addresses"].as_array().is_some_and(|a| !a.is_empty())
                && s["ports"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|p| p["name"].as_str().unwrap_or_default() == port_name)
        });
        if !ready {
            return (
                "False",
                "MissingEndpoints",
                format!("endpoints for service/{name} in {ns:?} have no addresses with port name {port_name:?}"),
            );
        }
    }
    let group = api["spec"]["group"].as_str().unwrap_or_default();
    let version = api["spec"]["version"].as_str().unwrap_or_default();
    (
        "False",
        "FailedDiscoveryCheck",
        format!(
            "failing or missing response from https://{name}.{ns}.svc:{port}/apis/{group}/{version}: this cluster does not proxy to aggregated API servers"
        ),
    )
}

/// Runs the controller until the process ends.
pub async fn run(client: kube::Client, informers: Informers) {
    let interest = informers.interest(&[
        ("apiregistration.k8s.io", "apiservices"),
        ("", "services"),
        ("", "endpoints"),
    ]);
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
                    let services = informers.of("", "services");
                    let endpoints = informers.of("", "endpoints");
                    let services: Vec<&Value> = services.iter().map(|s| &**s).collect();
                    let endpoints: Vec<&Value> = endpoints.iter().map(|e| &**e).collect();
                    for a in &apis {
                        let (status, reason, message) = availability(a, &services, &endpoints);
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
    fn availability_follows_the_service_and_its_endpoints() {
        let api = json!({"spec": {"group": "metrics.k8s.io", "version": "v1beta1",
            "service": {"namespace": "kube-system", "name": "metrics-server", "port": 443}}});
        let local = json!({"spec": {"group": "apps", "version": "v1"}});
        assert_eq!(availability(&local, &[], &[]).1, "Local");
        assert_eq!(
            availability(&api, &[], &[]),
            (
                "False",
                "ServiceNotFound",
                "service/metrics-server in \"kube-system\" is not present".into()
            )
        );
        let svc = json!({"metadata": {"namespace": "kube-system", "name": "metrics-server"},
            "spec": {"type": "ClusterIP", "ports": [{"name": "https", "port": 443}]}});
        assert_eq!(availability(&api, &[&svc], &[]).1, "EndpointsNotFound");
        let empty = json!({"metadata": {"namespace": "kube-system", "name": "metrics-server"}, "subsets": []});
        assert_eq!(
            availability(&api, &[&svc], &[&empty]).2,
            "endpoints for service/metrics-server in \"kube-system\" have no addresses with port name \"https\""
        );
        let ready = json!({"metadata": {"namespace": "kube-system", "name": "metrics-server"},
            "subsets": [{"addresses": [{"ip": "10.0.0.5"}], "ports": [{"name": "https", "port": 4443}]}]});
        assert_eq!(availability(&api, &[&svc], &[&ready]).1, "FailedDiscoveryCheck");
        let mut other_port = api.clone();
        other_port["spec"]["service"]["port"] = json!(8443);
        assert_eq!(availability(&other_port, &[&svc], &[&ready]).1, "ServicePortError");
    }
}
