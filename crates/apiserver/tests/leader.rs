//! Leader election on a Lease through a real API server: one leader at a time, a killed
//! leader replaced after the lease duration, and a leader cut off from the API stops what it
//! leads before anyone else starts it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use shoal_apiserver::ApiServer;
use shoal_runtime::Components;
use shoal_runtime::leader::{self, LeaseConfig};
use tower::ServiceExt;

/// What the candidates lead: counts how many lead at once, and the most ever seen.
#[derive(Default)]
struct Led {
    now: AtomicUsize,
    most: AtomicUsize,
    starts: AtomicUsize,
}

fn config(identity: &str) -> LeaseConfig {
    let mut c = LeaseConfig::new("kube-system", "test-controller", identity);
    c.lease_duration = Duration::from_millis(1500);
    c.renew_deadline = Duration::from_millis(1000);
    c.retry_period = Duration::from_millis(200);
    c
}

/// A candidate whose API connection can be cut (its requests then fail with 503).
fn candidate(
    api: &Arc<ApiServer>,
    identity: &str,
    led: Arc<Led>,
    cut: Arc<AtomicBool>,
) -> (tokio::task::JoinHandle<()>, tokio::sync::watch::Sender<bool>) {
    let router = api.router();
    let service = tower::service_fn(move |req: http::Request<kube::client::Body>| {
        let (router, cut) = (router.clone(), cut.clone());
        async move {
            if cut.load(Ordering::SeqCst) {
                let resp = http::Response::builder()
                    .status(503)
                    .body(axum::body::Body::from("cut"))
                    .unwrap();
                return Ok::<_, std::convert::Infallible>(resp);
            }
            let req = req.map(axum::body::Body::new);
            router.oneshot(req).await
        }
    });
    let client = kube::Client::new(service, "default");
    let components = Components::new();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(leader::run(
        client,
        config(identity),
        move || {
            let (components, led) = (components.clone(), led.clone());
            async move {
                let (scoped, scope) = components.scope();
                scoped.spawn("led", move || {
                    let led = led.clone();
                    async move {
                        let n = led.now.fetch_add(1, Ordering::SeqCst) + 1;
                        led.most.fetch_max(n, Ordering::SeqCst);
                        led.starts.fetch_add(1, Ordering::SeqCst);
                        // Counted down when the scope stops it (the future is dropped).
                        struct Leaving(Arc<Led>);
                        impl Drop for Leaving {
                            fn drop(&mut self) {
                                self.0.now.fetch_sub(1, Ordering::SeqCst);
                            }
                        }
                        let _leaving = Leaving(led);
                        std::future::pending::<()>().await
                    }
                });
                scope
            }
        },
        stopped,
    ));
    (task, stop)
}

async fn until(what: &str, timeout: Duration, f: impl Fn() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_leader_at_a_time_through_kills_and_cuts() {
    let api = ApiServer::new(Arc::new(shoal_store::MemoryStore::new())).await.unwrap();
    let led = Arc::new(Led::default());
    let cuts: Vec<Arc<AtomicBool>> = (0..3).map(|_| Arc::default()).collect();
    let (mut tasks, stops): (Vec<_>, Vec<_>) = (0..3)
        .map(|i| candidate(&api, &format!("c{i}"), led.clone(), cuts[i].clone()))
        .unzip();
    until("a leader", Duration::from_secs(10), || {
        led.now.load(Ordering::SeqCst) == 1
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(led.starts.load(Ordering::SeqCst), 1, "the others stay candidates");

    let lease: serde_json::Value = {
        let client = kube::Client::new(api.router(), "default");
        let leases: kube::Api<k8s_openapi::api::coordination::v1::Lease> = kube::Api::namespaced(client, "kube-system");
        serde_json::to_value(leases.get("test-controller").await.unwrap()).unwrap()
    };
    let holder = lease["spec"]["holderIdentity"].as_str().unwrap().to_string();
    assert_eq!(lease["spec"]["leaseDurationSeconds"], 1);
    let first: usize = holder[1..].parse().unwrap();

    // Cut the leader off: it stops within its renew deadline, and only then does another
    // take over (after the lease duration).
    cuts[first].store(true, Ordering::SeqCst);
    let cut_at = Instant::now();
    until("the cut leader to stop", Duration::from_secs(5), || {
        led.now.load(Ordering::SeqCst) == 0
    })
    .await;
    assert!(
        cut_at.elapsed() < Duration::from_millis(1600),
        "stopped within the renew deadline"
    );
    until("a new leader", Duration::from_secs(10), || {
        led.starts.load(Ordering::SeqCst) == 2
    })
    .await;
    assert!(
        cut_at.elapsed() >= Duration::from_millis(1000),
        "not before the lease could expire"
    );

    // Kill the new leader's process outright (its scope is never stopped, as with kill -9 the
    // process's work dies with it): the remaining candidate takes over.
    let client = kube::Client::new(api.router(), "default");
    let leases: kube::Api<k8s_openapi::api::coordination::v1::Lease> = kube::Api::namespaced(client, "kube-system");
    let second: usize = leases
        .get("test-controller")
        .await
        .unwrap()
        .spec
        .unwrap()
        .holder_identity
        .unwrap()[1..]
        .parse()
        .unwrap();
    assert_ne!(second, first);
    tasks[second].abort();
    led.now.fetch_sub(1, Ordering::SeqCst);
    until("a third leader", Duration::from_secs(10), || {
        led.starts.load(Ordering::SeqCst) == 3
    })
    .await;
    let third = leases.get("test-controller").await.unwrap().spec.unwrap();
    assert_eq!(third.lease_transitions, Some(2));
    assert_ne!(third.holder_identity.as_deref(), Some(format!("c{second}").as_str()));
    assert_eq!(led.most.load(Ordering::SeqCst), 1, "never two leaders at once");

    // A leader stopped gracefully stops what it leads and hands the Lease back: the first
    // candidate, reconnected, takes it at its next try rather than after the lease.
    let third_id: usize = third.holder_identity.unwrap()[1..].parse().unwrap();
    cuts[first].store(false, Ordering::SeqCst);
    let stopped_at = Instant::now();
    stops[third_id].send_replace(true);
    until("the graceful leader to end", Duration::from_secs(5), || {
        tasks[third_id].is_finished()
    })
    .await;
    assert_eq!(
        led.now.load(Ordering::SeqCst),
        0,
        "its scope stopped before it returned"
    );
    until("the first candidate to lead again", Duration::from_secs(5), || {
        led.starts.load(Ordering::SeqCst) == 4
    })
    .await;
    assert!(
        stopped_at.elapsed() < Duration::from_millis(1400),
        "taken at once: {:?}",
        stopped_at.elapsed()
    );
    assert_eq!(led.most.load(Ordering::SeqCst), 1, "never two leaders at once");
    for t in tasks.drain(..) {
        t.abort();
    }
}
