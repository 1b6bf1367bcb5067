//! Shared informers: one reflector (watch-backed cache) per served resource, as
//! `DynamicObject`s, plus a change signal controllers wait on.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures::StreamExt;
use kube::api::{Api, ApiResource, DynamicObject};
use kube::runtime::reflector::{self, Store, store::Writer};
use kube::runtime::{WatchStreamExt, watcher};
use shoal_api::catalogue::{RESOURCES, Resource};
use tokio::sync::watch;

/// The caches of every resource.
#[derive(Clone)]
pub struct Informers {
    stores: Arc<Vec<(&'static Resource, Store<DynamicObject>)>>,
    changed: watch::Receiver<u64>,
    /// How many caches have had their first list. (kube's `Store::wait_until_ready` wakes
    /// only one of several concurrent waiters, so readiness is counted here.)
    synced: Arc<AtomicUsize>,
}

/// The kube `ApiResource` of a catalogue resource.
pub fn api_resource(r: &Resource) -> ApiResource {
    ApiResource {
        group: r.group.to_string(),
        version: r.version.to_string(),
        api_version: r.api_version(),
        kind: r.kind.to_string(),
        plural: r.plural.to_string(),
    }
}

impl Informers {
    /// Starts a reflector per resource.
    pub fn start(client: kube::Client) -> Informers {
        let (tx, rx) = watch::channel(0u64);
        let tx = Arc::new(tx);
        let synced = Arc::new(AtomicUsize::new(0));
        let mut stores = Vec::new();
        for r in RESOURCES {
            let ar = api_resource(r);
            let api: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
            let writer = Writer::new(ar);
            let reader = writer.as_reader();
            let tx = tx.clone();
            let synced = synced.clone();
            let stream = reflector::reflector(writer, watcher(api, watcher::Config::default())).default_backoff();
            tokio::spawn(async move {
                futures::pin_mut!(stream);
                let mut first = true;
                while let Some(ev) = stream.next().await {
                    match ev {
                        Ok(ev) => {
                            if first && matches!(ev, watcher::Event::InitDone) {
                                first = false;
                                synced.fetch_add(1, Ordering::SeqCst);
                                tracing::debug!(resource = r.plural, group = r.group, "informer: synced");
                            }
                            tx.send_modify(|n| *n += 1)
                        }
                        Err(e) => {
                            tracing::warn!(resource = r.plural, group = r.group, error = %e, "informer: watch failed; retrying")
                        }
                    }
                }
            });
            stores.push((r, reader));
        }
        Informers {
            stores: Arc::new(stores),
            changed: rx,
            synced,
        }
    }

    /// Waits until every cache has had its first list.
    pub async fn ready(&self) {
        let mut changes = self.changed.clone();
        while self.synced.load(Ordering::SeqCst) < self.stores.len() {
            if changes.changed().await.is_err() {
                return;
            }
        }
    }

    /// Every cached object with its resource.
    pub fn all(&self) -> Vec<(&'static Resource, Arc<DynamicObject>)> {
        self.stores
            .iter()
            .flat_map(|(r, s)| s.state().into_iter().map(move |o| (*r, o)))
            .collect()
    }

    /// The cached objects of one resource.
    pub fn of(&self, group: &str, plural: &str) -> Vec<Arc<DynamicObject>> {
        self.stores
            .iter()
            .find(|(r, _)| r.group == group && r.plural == plural)
            .map(|(_, s)| s.state())
            .unwrap_or_default()
    }

    /// A receiver that changes whenever any cache changes.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changed.clone()
    }
}
