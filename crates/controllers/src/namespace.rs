//! Namespace lifecycle: a namespace being deleted (phase Terminating) has its contents
//! deleted; once nothing is left, its `kubernetes` finalizer is removed through the
//! `finalize` subresource and the API server deletes it.
//!
//! As upstream's controller, it starts on a namespace [`DELETION_GRACE`] after its deletion
//! began: clients deleting a whole manifest (`kubectl delete -f`, namespace first) find the
//! objects after it still there to delete, instead of a row of NotFound errors.

use shoal_runtime::controller::{Error, Pacer};
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, PostParams, PropagationPolicy};
use shoal_api::catalogue::Resource;

use crate::informer::{self, Informers, api_resource};

/// How long after a namespace's deletion began its contents start to be deleted.
pub const DELETION_GRACE: Duration = Duration::from_secs(5);

/// How much longer a namespace whose deletion began at `since` (RFC 3339) waits before it is
/// drained, as of `now`; zero once the grace is over (or the timestamp does not parse).
fn grace_left(since: &str, now: jiff::Timestamp) -> Duration {
    let Ok(since) = since.parse::<jiff::Timestamp>() else {
        return Duration::ZERO;
    };
    let waited = now.duration_since(since);
    let grace = jiff::SignedDuration::try_from(DELETION_GRACE).unwrap_or_default();
    (grace - waited)
        .try_into()
        .unwrap_or(Duration::ZERO)
        .min(DELETION_GRACE)
}

/// Runs the namespace controller until the process ends.
pub async fn run(client: kube::Client, informers: Informers) {
    let interest = informers.ownership_interest();
    informers.ready().await;
    let mut pacer = Pacer::new("namespace", interest, |_| Duration::from_millis(50));
    loop {
        pacer
            .pass(&informers, async {
                let mut failure: Option<Error> = None;
                let mut next = Duration::from_secs(5);
                for ns in informers.of("", "namespaces") {
                    let Some(since) = ns["metadata"]["deletionTimestamp"].as_str() else {
                        continue;
                    };
                    let left = grace_left(since, jiff::Timestamp::now());
                    if !left.is_zero() {
                        next = next.min(left);
                        continue;
                    }
                    let name = informer::name(&ns).to_string();
                    match drain(&client, &informers, &name).await {
                        Ok(true) => {
                            if let Err(e) = finalize(&client, &name).await {
                                failure.get_or_insert(e.into());
                            }
                        }
                        Ok(false) => {}
                        Err(e) => {
                            failure.get_or_insert(e.into());
                        }
                    }
                }
                failure.map_or(Ok(next), Err)
            })
            .await;
    }
}

/// Deletes what is left in `ns`; true when it is empty. Cached resources are read from
/// their caches, the others ([`informer::is_cached`]) are listed through the API.
async fn drain(client: &kube::Client, informers: &Informers, ns: &str) -> Result<bool, kube::Error> {
    let mut empty = true;
    // Each namespaced resource once (in its preferred version), and only what is stored (the
    // review kinds are created and answered, never kept).
    let stored =
        |r: &&'static Resource| r.namespaced && r.verbs.contains(&"list") && shoal_api::catalogue::is_stored_form(r);
    // Custom resources too: each (group, plural) once, in its preferred version.
    let mut seen = std::collections::HashSet::new();
    let all = shoal_api::catalogue::all();
    for r in all
        .into_iter()
        .filter(stored)
        .filter(|r| seen.insert((r.group, r.plural)))
    {
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &api_resource(r));
        // (name, being deleted) of what is left.
        let left: Vec<(String, bool)> = if informer::is_cached(r) {
            informers
                .of(r.group, r.plural)
                .into_iter()
                .filter(|o| informer::namespace(o) == ns)
                .map(|o| (informer::name(&o).to_string(), informer::deleting(&o)))
                .collect()
        } else {
            api.list_metadata(&ListParams::default())
                .await?
                .items
                .into_iter()
                .map(|o| {
                    (
                        o.metadata.name.unwrap_or_default(),
                        o.metadata.deletion_timestamp.is_some(),
                    )
                })
                .collect()
        };
        if left.is_empty() {
            continue;
        }
        empty = false;
        let dp = DeleteParams {
            propagation_policy: Some(PropagationPolicy::Background),
            ..Default::default()
        };
        for (name, _) in left.iter().filter(|(_, deleting)| !deleting) {
            match api.delete(name, &dp).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(empty)
}

async fn finalize(client: &kube::Client, name: &str) -> Result<(), kube::Error> {
    let api: Api<Namespace> = Api::all(client.clone());
    let Some(mut ns) = api.get_opt(name).await? else {
        return Ok(());
    };
    if let Some(spec) = ns.spec.as_mut() {
        spec.finalizers = Some(vec![]);
    }
    api.replace_subresource("finalize", name, &PostParams::default(), &ns)
        .await
        .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_grace_counts_from_the_deletion() {
        let now: jiff::Timestamp = "2026-01-01T00:00:10Z".parse().unwrap();
        assert_eq!(grace_left("2026-01-01T00:00:08Z", now), Duration::from_secs(3));
        assert_eq!(grace_left("2026-01-01T00:00:05Z", now), Duration::ZERO);
        assert_eq!(grace_left("2025-12-31T00:00:00Z", now), Duration::ZERO);
        // A clock behind the timestamp waits the whole grace at most.
        assert_eq!(grace_left("2026-01-01T00:01:00Z", now), DELETION_GRACE);
        assert_eq!(grace_left("garbage", now), Duration::ZERO);
    }
}
