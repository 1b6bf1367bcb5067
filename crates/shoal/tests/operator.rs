//! A controller author's test bed: a kube-rs operator with a derived CustomResourceDefinition,
//! a `Controller` and status updates, run against a real `shoal up` (no nodes needed).
//!
//! The operator keeps, for every `Echo`, a ConfigMap `<name>-echo` holding the echo's message
//! (owned by the echo, so the garbage collector removes it with it), and reports in the
//! echo's status what it observed.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::Cluster;
use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::wait::{await_condition, conditions};
use kube::{Client, CustomResource, CustomResourceExt, Resource, ResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;

/// What an Echo asks for.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, JsonSchema)]
#[kube(
    group = "ops.example.com",
    version = "v1",
    kind = "Echo",
    namespaced,
    status = "EchoStatus",
    shortname = "ec",
    printcolumn = r#"{"name": "Message", "type": "string", "jsonPath": ".spec.message"}"#
)]
pub struct EchoSpec {
    /// What the ConfigMap repeats.
    pub message: String,
}

/// What the operator did.
#[derive(Deserialize, Serialize, Clone, Debug, Default, JsonSchema)]
pub struct EchoStatus {
    /// The message last written to the ConfigMap.
    pub observed: String,
}

/// A failed reconcile (the controller retries it).
#[derive(Debug)]
struct Failed(kube::Error);

impl std::fmt::Display for Failed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for Failed {}

impl From<kube::Error> for Failed {
    fn from(e: kube::Error) -> Failed {
        Failed(e)
    }
}

async fn reconcile(echo: Arc<Echo>, client: Arc<Client>) -> Result<Action, Failed> {
    let ns = echo.namespace().unwrap_or_default();
    let name = echo.name_any();
    let owner = echo.controller_owner_ref(&()).expect("an echo has a uid");
    let configmaps: Api<ConfigMap> = Api::namespaced((*client).clone(), &ns);
    let cm = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": format!("{name}-echo"), "ownerReferences": [owner]},
        "data": {"message": echo.spec.message},
    });
    let apply = PatchParams::apply("echo-operator").force();
    configmaps
        .patch(&format!("{name}-echo"), &apply, &Patch::Apply(&cm))
        .await?;
    let echoes: Api<Echo> = Api::namespaced((*client).clone(), &ns);
    let status = json!({"status": {"observed": echo.spec.message}});
    echoes
        .patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
        .await?;
    Ok(Action::requeue(Duration::from_secs(300)))
}

fn retry(_: Arc<Echo>, _: &Failed, _: Arc<Client>) -> Action {
    Action::requeue(Duration::from_millis(200))
}

/// Polls `f` every 50 ms for up to 20 s.
async fn eventually<T, F: std::future::Future<Output = Option<T>>>(what: &str, mut f: impl FnMut() -> F) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[test]
fn a_kube_rs_operator_runs_against_shoal() {
    let c = Cluster::up(0);
    let kubeconfig = kube::config::Kubeconfig::read_from(c.kubeconfig()).expect("kubeconfig");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
            .await
            .expect("client config");
        let client = Client::try_from(config).expect("client");

        // The derived definition, applied and Established as upstream establishes it.
        let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
        crds.create(&PostParams::default(), &Echo::crd())
            .await
            .expect("create the CRD");
        let established = await_condition(crds.clone(), Echo::crd_name(), conditions::is_crd_established());
        tokio::time::timeout(Duration::from_secs(20), established)
            .await
            .expect("established in time")
            .expect("watching the CRD");

        let echoes: Api<Echo> = Api::namespaced(client.clone(), "default");
        let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
        let controller = Controller::new(echoes.clone(), Default::default())
            .owns(configmaps.clone(), Default::default())
            .run(reconcile, retry, Arc::new(client.clone()))
            .for_each(|_| async {});
        let running = tokio::spawn(controller);

        let hello = Echo::new("hello", EchoSpec { message: "hi".into() });
        echoes
            .create(&PostParams::default(), &hello)
            .await
            .expect("create an echo");
        let cm = eventually("the echo's ConfigMap", || async {
            configmaps.get_opt("hello-echo").await.ok().flatten()
        })
        .await;
        assert_eq!(
            cm.data.unwrap_or_default().get("message").map(String::as_str),
            Some("hi")
        );
        assert_eq!(cm.metadata.owner_references.unwrap_or_default()[0].kind, "Echo");
        eventually("the echo's status", || async {
            let e = echoes.get("hello").await.ok()?;
            (e.status?.observed == "hi").then_some(())
        })
        .await;

        // A change of the spec reaches the ConfigMap and the status.
        let change = json!({"spec": {"message": "hello again"}});
        echoes
            .patch("hello", &PatchParams::default(), &Patch::Merge(&change))
            .await
            .expect("patch the echo");
        eventually("the new message", || async {
            let cm = configmaps.get("hello-echo").await.ok()?;
            let e = echoes.get("hello").await.ok()?;
            let message = cm.data?.get("message")?.clone();
            (message == "hello again" && e.status?.observed == "hello again").then_some(())
        })
        .await;
        let generation = echoes.get("hello").await.expect("the echo").meta().generation;
        assert_eq!(generation, Some(2), "a status write leaves the generation alone");

        // Deleting the echo takes its ConfigMap with it (the garbage collector).
        echoes
            .delete("hello", &DeleteParams::default())
            .await
            .expect("delete the echo");
        eventually("the ConfigMap collected", || async {
            matches!(configmaps.get_opt("hello-echo").await, Ok(None)).then_some(())
        })
        .await;
        running.abort();
    });
}
