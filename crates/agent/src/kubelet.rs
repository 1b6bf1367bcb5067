//! The pods of a real node: their containers run under a [`Runtime`], restart by their
//! policy with back-off, are probed, and end with SIGTERM then SIGKILL; their status is
//! reported through `pods/status` as upstream's kubelet reports it.
//!
//! One task owns every pod's state. It wakes when the node's pods change, when a container
//! ends, when a probe answers, and every second; anything slow (stopping a container,
//! probes, hooks) runs in a task of its own and reports back.
//!
//! On disk, under the agent's data dir: `pods/<uid>/` holds the pod's volumes
//! (`volumes/<name>`), one directory per container run (`containers/<name>/<n>`, the
//! runtime's state) and its logs (`logs/<name>/<n>.log`). A restarted agent finds its
//! running containers there and leaves them running.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Container, LifecycleHandler, Pod, Probe, Secret};
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use serde_json::{Value, json};

use shoal_runtime::events::{EventType, ObjectRef, Recorder};

use crate::lifecycle::{self, ContainerView, ProbeCount, State, Verdict};
use crate::runtime::{Launch, RunState, Runtime, Signal};
use crate::shim::Exit;

const MANAGER: &str = "shoal-agent";
const TICK: Duration = Duration::from_secs(1);

/// A node's pods, as its agent runs them.
pub struct Kubelet {
    client: kube::Client,
    node: String,
    node_ip: String,
    dir: PathBuf,
    runtime: Arc<dyn Runtime>,
    exited: Arc<tokio::sync::Notify>,
    /// Variables every container sees.
    outer: HashMap<String, String>,
    /// The current run of every running container, for exec: (namespace, pod, container).
    runs: Mutex<HashMap<(String, String, String), Launch>>,
    /// Events about pods (`source.component: kubelet`, the node as host).
    events: Recorder,
    /// Images, sandboxes and pod networks, when the runtime runs images.
    oci: Option<Arc<crate::oci::Oci>>,
    /// Events from image pulls, recorded by the sync loop.
    pull_events: crate::oci::PullEvents,
    pull_events_rx: Mutex<Option<tokio::sync::mpsc::UnboundedReceiver<crate::oci::PullEvent>>>,
}

/// The reference Events use for `pod`.
fn pod_ref(pod: &Pod) -> ObjectRef {
    ObjectRef {
        api_version: "v1".into(),
        kind: "Pod".into(),
        namespace: pod.metadata.namespace.clone().unwrap_or_default(),
        name: pod.metadata.name.clone().unwrap_or_default(),
        uid: pod.metadata.uid.clone().unwrap_or_default(),
    }
}

/// The file paths of one pod.
fn pod_dir(dir: &Path, uid: &str) -> PathBuf {
    dir.join("pods").join(uid)
}

/// The log of run `n` of `container` in the pod at `pod_dir`.
pub fn log_path(pod_dir: &Path, container: &str, n: u32) -> PathBuf {
    pod_dir.join("logs").join(container).join(format!("{n}.log"))
}

fn run_dir(pod_dir: &Path, container: &str, n: u32) -> PathBuf {
    pod_dir.join("containers").join(container).join(n.to_string())
}

fn links_file(pod_dir: &Path, container: &str) -> PathBuf {
    pod_dir.join("containers").join(container).join("links")
}

fn now() -> String {
    shoal_api::time::now_rfc3339()
}

/// Which probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum ProbeKind {
    Startup,
    Liveness,
    Readiness,
}

#[derive(Debug)]
struct ProbeResult {
    uid: String,
    container: String,
    run: u32,
    kind: ProbeKind,
    /// Why it failed, if it did.
    error: Option<String>,
}

impl ProbeKind {
    fn name(self) -> &'static str {
        match self {
            ProbeKind::Startup => "Startup",
            ProbeKind::Liveness => "Liveness",
            ProbeKind::Readiness => "Readiness",
        }
    }
}

/// A pod status to write.
struct StatusWrite {
    uid: String,
    namespace: String,
    name: String,
    status: Value,
}

/// A container's environment and its expanded command line.
type EnvAndCommand = (Vec<(String, String)>, Vec<String>);

/// A container run.
struct Run {
    n: u32,
    dir: PathBuf,
    launch: Launch,
    started_at: String,
    started: Instant,
    exit: Option<Exit>,
}

#[derive(Default)]
struct Ctr {
    run: Option<Run>,
    /// The end of the run before the current one.
    last: Option<State>,
    waiting: Option<(String, Option<String>)>,
    next_start: Option<Instant>,
    stopping: bool,
    /// The container is not to run again (policy, or the pod is going away).
    done: bool,
    ready: bool,
    started: bool,
    /// Whether the current run has a readiness probe (it is not ready until it passes).
    has_readiness: bool,
    /// The current run is being replaced (its image changed): the next starts at once.
    replace: bool,
    probes: HashMap<ProbeKind, ProbeSlot>,
}

/// One probe of a run: its results so far, when it is next due, whether one is in flight,
/// and its thresholds.
struct ProbeSlot {
    count: ProbeCount,
    next: Instant,
    in_flight: bool,
    success_threshold: i32,
    failure_threshold: i32,
}

struct PodState {
    about: ObjectRef,
    dir: PathBuf,
    volumes: Option<BTreeMap<String, PathBuf>>,
    containers: BTreeMap<String, Ctr>,
    reported: Option<Value>,
    deleting: bool,
    /// Every init container has completed (sidecars: started), so the containers run.
    initialized: bool,
    /// When the ServiceAccount tokens in the pod's projected volumes are next refreshed.
    refresh_tokens: Option<Instant>,
}

/// ConfigMaps and Secrets a pod refers to, read once for its volumes and environment.
#[derive(Default)]
struct Fetched {
    config_maps: HashMap<String, BTreeMap<String, String>>,
    secrets: HashMap<String, BTreeMap<String, Vec<u8>>>,
    /// Claim -> the path of its bound local volume.
    claims: HashMap<String, PathBuf>,
    /// (audience, seconds) -> a ServiceAccount token bound to the pod.
    tokens: HashMap<(String, i64), String>,
}

impl crate::env::Sources for Fetched {
    fn config_map(&self, _ns: &str, name: &str) -> Option<BTreeMap<String, String>> {
        self.config_maps.get(name).cloned()
    }
    fn secret(&self, _ns: &str, name: &str) -> Option<BTreeMap<String, Vec<u8>>> {
        self.secrets.get(name).cloned()
    }
    fn claim_path(&self, _ns: &str, name: &str) -> Option<PathBuf> {
        self.claims.get(name).cloned()
    }
    fn service_account_token(&self, audience: &str, seconds: i64) -> Option<String> {
        self.tokens.get(&(audience.to_string(), seconds)).cloned()
    }
}

/// The ServiceAccount tokens a pod's projected volumes ask for: (audience, seconds).
fn token_sources(pod: &Pod) -> BTreeSet<(String, i64)> {
    pod.spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .filter_map(|v| v.projected.as_ref())
        .flat_map(|p| p.sources.iter().flatten())
        .filter_map(|s| s.service_account_token.as_ref())
        .map(|t| {
            (
                t.audience.clone().unwrap_or_default(),
                t.expiration_seconds.unwrap_or(3600),
            )
        })
        .collect()
}

/// When tokens that live `seconds` are refreshed, as upstream's kubelet does: at 80% of
/// their life (and at least every 24 hours).
fn token_refresh_after(seconds: i64) -> Duration {
    let life = Duration::from_secs(u64::try_from(seconds).unwrap_or(0));
    (life * 4 / 5).min(Duration::from_secs(24 * 3600))
}

/// The ConfigMaps and Secrets `pod` refers to (volumes, projected sources, env, envFrom).
fn references(pod: &Pod) -> (BTreeSet<String>, BTreeSet<String>) {
    let v = serde_json::to_value(pod.spec.as_ref()).unwrap_or_default();
    let (mut cms, mut secrets) = (BTreeSet::new(), BTreeSet::new());
    let add = |set: &mut BTreeSet<String>, x: &Value| {
        if let Some(s) = x.as_str() {
            set.insert(s.to_string());
        }
    };
    for vol in v["volumes"].as_array().into_iter().flatten() {
        add(&mut cms, &vol["configMap"]["name"]);
        add(&mut secrets, &vol["secret"]["secretName"]);
        for s in vol["projected"]["sources"].as_array().into_iter().flatten() {
            add(&mut cms, &s["configMap"]["name"]);
            add(&mut secrets, &s["secret"]["name"]);
        }
    }
    for c in ["containers", "initContainers"]
        .iter()
        .flat_map(|k| v[*k].as_array().into_iter().flatten())
    {
        for e in c["env"].as_array().into_iter().flatten() {
            add(&mut cms, &e["valueFrom"]["configMapKeyRef"]["name"]);
            add(&mut secrets, &e["valueFrom"]["secretKeyRef"]["name"]);
        }
        for e in c["envFrom"].as_array().into_iter().flatten() {
            add(&mut cms, &e["configMapRef"]["name"]);
            add(&mut secrets, &e["secretRef"]["name"]);
        }
    }
    (cms, secrets)
}

fn grace_of(pod: &Pod) -> Duration {
    let secs = pod
        .metadata
        .deletion_grace_period_seconds
        .or_else(|| pod.spec.as_ref().and_then(|s| s.termination_grace_period_seconds))
        .unwrap_or(30);
    Duration::from_secs(u64::try_from(secs).unwrap_or(0))
}

fn probe_of(c: &Container, kind: ProbeKind) -> Option<&Probe> {
    match kind {
        ProbeKind::Startup => c.startup_probe.as_ref(),
        ProbeKind::Liveness => c.liveness_probe.as_ref(),
        ProbeKind::Readiness => c.readiness_probe.as_ref(),
    }
}

fn secs(v: Option<i32>, default: u64) -> Duration {
    Duration::from_secs(v.and_then(|s| u64::try_from(s).ok()).unwrap_or(default))
}

impl Kubelet {
    /// A kubelet for `node` (address `node_ip`) keeping its pods under `dir`.
    pub fn new(
        client: kube::Client,
        node: &str,
        node_ip: &str,
        dir: &Path,
        runtime: Arc<dyn Runtime>,
        exited: Arc<tokio::sync::Notify>,
        outer: HashMap<String, String>,
    ) -> Kubelet {
        let client_for_events = client.clone();
        let (pull_events, rx) = tokio::sync::mpsc::unbounded_channel();
        Kubelet {
            oci: None,
            pull_events,
            pull_events_rx: Mutex::new(Some(rx)),
            client,
            node: node.into(),
            node_ip: node_ip.into(),
            dir: dir.into(),
            runtime,
            exited,
            outer,
            runs: Mutex::default(),
            events: Recorder::new(client_for_events, "kubelet").on_host(node),
        }
    }

    /// Records an event about a pod, without waiting for it.
    /// Runs images (with `oci`'s images, sandboxes and network).
    pub fn with_oci(mut self, oci: Arc<crate::oci::Oci>) -> Kubelet {
        self.oci = Some(oci);
        self
    }

    /// The OCI side, when the runtime runs images.
    pub fn oci(&self) -> Option<&Arc<crate::oci::Oci>> {
        self.oci.as_ref()
    }

    /// The pause process of the pod `uid`'s sandbox, when the runtime makes sandboxes.
    pub fn sandbox_pid(&self, uid: &str) -> Option<u32> {
        self.oci.as_ref()?;
        crate::sandbox::find(&pod_dir(&self.dir, uid)).map(|s| s.pid)
    }

    /// The address of the pod `uid`: its own, or the node's.
    fn pod_ip(&self, uid: &str) -> String {
        self.oci
            .as_ref()
            .and_then(|_| crate::oci::Oci::pod_ip(&pod_dir(&self.dir, uid)))
            .map_or_else(|| self.node_ip.clone(), |ip| ip.to_string())
    }

    fn event(&self, about: &ObjectRef, kind: EventType, reason: &'static str, message: String) {
        let (events, about) = (self.events.clone(), about.clone());
        tokio::spawn(async move { events.record(&about, kind, reason, &message).await });
    }

    /// The runtime.
    pub fn runtime(&self) -> &Arc<dyn Runtime> {
        &self.runtime
    }

    /// The launch of the running container `container` of pod `namespace/pod`.
    pub fn current_run(&self, namespace: &str, pod: &str, container: &str) -> Option<Launch> {
        let runs = self.runs.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        runs.get(&(namespace.into(), pod.into(), container.into())).cloned()
    }

    /// The uid of pod `namespace/pod` and the launch of one of its running containers, if
    /// one is running here.
    pub fn running_pod(&self, namespace: &str, pod: &str) -> Option<(String, Launch)> {
        let runs = self.runs.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let pods = self.dir.join("pods");
        runs.iter()
            .filter(|((ns, name, _), _)| ns == namespace && name == pod)
            .find_map(|(_, launch)| {
                let rest = launch.state_dir.strip_prefix(&pods).ok()?;
                let uid = rest.components().next()?.as_os_str().to_str()?.to_string();
                Some((uid, launch.clone()))
            })
    }

    /// The pods directory of pod `uid`.
    pub fn pod_dir(&self, uid: &str) -> PathBuf {
        pod_dir(&self.dir, uid)
    }

    /// Runs the node's pods until the process ends.
    pub async fn run(self: Arc<Self>) {
        let pods: Api<Pod> = Api::all(self.client.clone());
        let (reader, writer) = reflector::store();
        let cfg = watcher::Config::default().fields(&format!("spec.nodeName={}", self.node));
        let stream = reflector(writer, watcher(pods, cfg)).default_backoff();
        let changed = Arc::new(tokio::sync::Notify::new());
        let notify = changed.clone();
        // The pod watch is part of the kubelet: its panic is the kubelet's (the agent then
        // stops with it, and takes its pods over from disk when started again).
        let mut watch = shoal_runtime::Subtasks::new();
        let rx = self
            .pull_events_rx
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(mut rx) = rx {
            let me = self.clone();
            watch.spawn(async move {
                while let Some((about, warning, reason, message)) = rx.recv().await {
                    let kind = if warning { EventType::Warning } else { EventType::Normal };
                    me.event(&about, kind, reason, message);
                }
            });
        }
        watch.spawn(async move {
            futures::pin_mut!(stream);
            while let Some(ev) = stream.next().await {
                if let Err(e) = ev {
                    tracing::debug!(error = %e, "agent: pod watch error");
                }
                notify.notify_one();
            }
        });
        tokio::select! {
            () = watch.join_any() => {}
            () = self.sync_loop(reader, changed) => {}
        }
    }

    /// Keeps the node's pods as the watched pods say, until the process ends.
    async fn sync_loop(&self, reader: reflector::Store<Pod>, changed: Arc<tokio::sync::Notify>) {
        let _ = reader.wait_until_ready().await;
        let (probe_tx, mut probe_rx) = tokio::sync::mpsc::channel::<ProbeResult>(256);
        let mut pods: HashMap<String, PodState> = HashMap::new();
        let mut orphans_checked = false;
        loop {
            let snapshot = reader.state();
            let live: BTreeSet<String> = snapshot.iter().filter_map(|p| p.metadata.uid.clone()).collect();
            if !orphans_checked {
                self.remove_orphans(&live);
                orphans_checked = true;
            }
            let mut writes = Vec::new();
            for pod in &snapshot {
                writes.extend(self.sync(pod, &mut pods, &probe_tx).await);
            }
            self.write_statuses(writes, &mut pods).await;
            let gone: Vec<String> = pods.keys().filter(|u| !live.contains(*u)).cloned().collect();
            for uid in gone {
                if let Some(state) = pods.remove(&uid) {
                    self.forget(&state.dir);
                }
            }
            tokio::select! {
                () = changed.notified() => {}
                () = self.exited.notified() => {}
                Some(r) = probe_rx.recv() => self.record_probe(&mut pods, r),
                () = tokio::time::sleep(TICK) => {}
            }
            while let Ok(r) = probe_rx.try_recv() {
                self.record_probe(&mut pods, r);
            }
        }
    }

    /// Pod directories of pods this node no longer has (removed while the agent was away):
    /// their containers are killed and their files removed.
    fn remove_orphans(&self, live: &BTreeSet<String>) {
        let Ok(entries) = std::fs::read_dir(self.dir.join("pods")) else {
            return;
        };
        for e in entries.flatten() {
            let uid = e.file_name().to_string_lossy().to_string();
            if !live.contains(&uid) {
                tracing::info!(%uid, "agent: removing a pod that is gone");
                self.forget(&e.path());
            }
        }
    }

    /// Kills whatever still runs of the pod in `dir` (gone or done) and removes its files.
    fn forget(&self, dir: &Path) {
        let containers = dir.join("containers");
        for c in std::fs::read_dir(&containers).into_iter().flatten().flatten() {
            for run in std::fs::read_dir(c.path()).into_iter().flatten().flatten() {
                // A run still starting finds its directory gone and kills its process.
                if matches!(self.runtime.state(&run.path()), RunState::Running(_)) {
                    self.runtime.signal(&run.path(), Signal::Kill);
                }
            }
            crate::volumes::unmount(&c.path().join("links"));
        }
        let mut runs = self.runs.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        runs.retain(|_, l| !l.state_dir.starts_with(dir));
        drop(runs);
        if let Some(oci) = &self.oci {
            let uid = dir
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default();
            oci.remove(dir, &uid);
        }
        let _ = std::fs::remove_dir_all(dir);
    }

    /// Tokens of the pod's ServiceAccount, bound to the pod, for each of `wanted`
    /// (audience, seconds); a token the API server refuses is left out (the volume then
    /// fails with the reason).
    async fn fetch_tokens(&self, pod: &Pod, wanted: &BTreeSet<(String, i64)>) -> HashMap<(String, i64), String> {
        use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
        let mut out = HashMap::new();
        let (Some(ns), Some(name), Some(uid)) = (
            pod.metadata.namespace.as_deref(),
            pod.metadata.name.clone(),
            pod.metadata.uid.clone(),
        ) else {
            return out;
        };
        let account = pod
            .spec
            .as_ref()
            .and_then(|s| s.service_account_name.clone())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "default".into());
        let api: Api<k8s_openapi::api::core::v1::ServiceAccount> = Api::namespaced(self.client.clone(), ns);
        for (audience, seconds) in wanted {
            let request = TokenRequest {
                spec: TokenRequestSpec {
                    audiences: if audience.is_empty() {
                        Vec::new()
                    } else {
                        vec![audience.clone()]
                    },
                    expiration_seconds: Some(*seconds),
                    bound_object_ref: Some(BoundObjectReference {
                        api_version: Some("v1".into()),
                        kind: Some("Pod".into()),
                        name: Some(name.clone()),
                        uid: Some(uid.clone()),
                    }),
                },
                ..Default::default()
            };
            match api.create_token_request(&account, &Default::default(), &request).await {
                Ok(r) => {
                    if let Some(status) = r.status {
                        out.insert((audience.clone(), *seconds), status.token);
                    }
                }
                Err(e) => tracing::warn!(pod = %name, error = %e, "agent: requesting a ServiceAccount token failed"),
            }
        }
        out
    }

    async fn fetch(&self, pod: &Pod) -> Fetched {
        let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
        let (cms, secrets) = references(pod);
        let mut out = Fetched::default();
        let cm_api: Api<ConfigMap> = Api::namespaced(self.client.clone(), ns);
        for name in cms {
            if let Ok(Some(cm)) = cm_api.get_opt(&name).await {
                out.config_maps.insert(name, cm.data.unwrap_or_default());
            }
        }
        // Claims: their bound volume's path (hostPath or local).
        let pvc_api: Api<k8s_openapi::api::core::v1::PersistentVolumeClaim> = Api::namespaced(self.client.clone(), ns);
        let pv_api: Api<k8s_openapi::api::core::v1::PersistentVolume> = Api::all(self.client.clone());
        let claims = pod
            .spec
            .iter()
            .flat_map(|s| s.volumes.iter().flatten())
            .filter_map(|v| v.persistent_volume_claim.as_ref().map(|c| c.claim_name.clone()));
        for claim in claims {
            let Ok(Some(pvc)) = pvc_api.get_opt(&claim).await else {
                continue;
            };
            let Some(volume) = pvc.spec.and_then(|s| s.volume_name).filter(|v| !v.is_empty()) else {
                continue;
            };
            if let Ok(Some(pv)) = pv_api.get_opt(&volume).await {
                let spec = pv.spec.unwrap_or_default();
                let path = spec.host_path.map(|h| h.path).or(spec.local.map(|l| l.path));
                if let Some(path) = path {
                    out.claims.insert(claim, PathBuf::from(path));
                }
            }
        }
        let sec_api: Api<Secret> = Api::namespaced(self.client.clone(), ns);
        for name in secrets {
            if let Ok(Some(s)) = sec_api.get_opt(&name).await {
                let mut data: BTreeMap<String, Vec<u8>> =
                    s.data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.0)).collect();
                for (k, v) in s.string_data.unwrap_or_default() {
                    data.insert(k, v.into_bytes());
                }
                out.secrets.insert(name, data);
            }
        }
        out
    }

    /// Brings one pod toward what its spec asks; returns its status if it changed.
    async fn sync(
        &self,
        pod: &Pod,
        pods: &mut HashMap<String, PodState>,
        probes: &tokio::sync::mpsc::Sender<ProbeResult>,
    ) -> Option<StatusWrite> {
        let uid = pod.metadata.uid.clone()?;
        let spec = pod.spec.clone().unwrap_or_default();
        let policy = spec.restart_policy.as_deref().unwrap_or("Always");
        let state = pods.entry(uid.clone()).or_insert_with(|| {
            let dir = pod_dir(&self.dir, &uid);
            let containers = spec
                .init_containers
                .iter()
                .flatten()
                .chain(&spec.containers)
                .map(|c| (c.name.clone(), self.recover(&dir, &c.name, policy)))
                .collect();
            PodState {
                about: pod_ref(pod),
                dir,
                volumes: None,
                containers,
                reported: None,
                deleting: false,
                initialized: spec.init_containers.as_ref().is_none_or(Vec::is_empty),
                refresh_tokens: None,
            }
        });
        if pod.metadata.deletion_timestamp.is_some() {
            self.terminate(pod, state).await;
            return None;
        }
        if matches!(
            pod.status.as_ref().and_then(|s| s.phase.as_deref()),
            Some("Succeeded" | "Failed")
        ) && state.reported.is_none()
            && state.containers.values().all(|c| c.run.is_none())
        {
            // A finished pod from before this agent: nothing runs again.
            return None;
        }
        let mut fetched = None;
        let refresh_due = state.refresh_tokens.is_some_and(|at| Instant::now() >= at);
        if state.volumes.is_none() || refresh_due {
            let mut f = self.fetch(pod).await;
            let wanted = token_sources(pod);
            f.tokens = self.fetch_tokens(pod, &wanted).await;
            match crate::volumes::prepare(pod, &state.dir, &f) {
                Ok(v) => {
                    state.volumes = Some(v);
                    state.refresh_tokens = wanted
                        .iter()
                        .map(|(_, s)| *s)
                        .min()
                        .map(|s| Instant::now() + token_refresh_after(s));
                }
                // A refresh that failed is tried again shortly; the old files stay.
                Err(e) if refresh_due => {
                    tracing::warn!(pod = ?pod.metadata.name, error = %e, "agent: refreshing volumes failed");
                    state.refresh_tokens = Some(Instant::now() + TICK * 10);
                }
                Err(e) => {
                    for c in state.containers.values_mut() {
                        c.waiting = Some(("CreateContainerConfigError".into(), Some(e.clone())));
                    }
                }
            }
            fetched = Some(f);
        }
        if let Some(volumes) = state.volumes.clone() {
            // Init containers one after the other (a sidecar, `restartPolicy: Always`, only
            // has to be started); then the containers.
            let mut initialized = true;
            for c in spec.init_containers.iter().flatten() {
                let sidecar = is_sidecar(c);
                let init_policy = match (sidecar, policy) {
                    (true, _) => "Always",
                    (false, "Never") => "Never",
                    (false, _) => "OnFailure",
                };
                let ctr = state.containers.entry(c.name.clone()).or_default();
                self.tend(
                    pod,
                    c,
                    ctr,
                    init_policy,
                    &state.dir,
                    &volumes,
                    &mut fetched,
                    &uid,
                    probes,
                )
                .await;
                let complete = if sidecar {
                    ctr.run.as_ref().is_some_and(|r| r.exit.is_none()) && ctr.started
                } else {
                    init_succeeded(ctr)
                };
                if !complete {
                    initialized = false;
                    break;
                }
            }
            state.initialized = initialized;
            if initialized {
                for c in &spec.containers {
                    let ctr = state.containers.entry(c.name.clone()).or_default();
                    self.tend(pod, c, ctr, policy, &state.dir, &volumes, &mut fetched, &uid, probes)
                        .await;
                }
            }
        }
        let status = self.status(pod, &spec, state);
        (state.reported.as_ref() != Some(&status)).then(|| StatusWrite {
            uid,
            namespace: pod.metadata.namespace.clone().unwrap_or_else(|| "default".into()),
            name: pod.metadata.name.clone().unwrap_or_default(),
            status,
        })
    }

    /// One container's turn: notices its end, restarts it when due, probes it.
    #[allow(clippy::too_many_arguments)]
    async fn tend(
        &self,
        pod: &Pod,
        c: &Container,
        ctr: &mut Ctr,
        policy: &str,
        dir: &Path,
        volumes: &BTreeMap<String, PathBuf>,
        fetched: &mut Option<Fetched>,
        uid: &str,
        probes: &tokio::sync::mpsc::Sender<ProbeResult>,
    ) {
        self.observe(pod, c, ctr, policy);
        self.replace_if_changed(pod, c, ctr);
        if let Some(run) = ctr
            .run
            .as_mut()
            .filter(|r| r.exit.is_none() && r.launch.command.is_empty())
        {
            // Found running after an agent restart: its environment again, for exec.
            if fetched.is_none() {
                *fetched = Some(self.fetch(pod).await);
            }
            let image = self
                .oci
                .as_ref()
                .and_then(|o| o.images().find(c.image.as_deref().unwrap_or_default()));
            if let Some(Ok((env, command))) = fetched.as_ref().map(|f| self.environment(pod, c, f, image.as_ref())) {
                run.launch.env = env;
                run.launch.command = command;
                run.launch.work_dir = work_dir(c, image.as_ref());
                self.remember_run(pod, &c.name, &run.launch);
            }
        }
        let due = !ctr.done
            && !ctr.stopping
            && ctr.run.as_ref().is_none_or(|r| r.exit.is_some())
            && ctr.next_start.is_none_or(|t| t <= Instant::now());
        if due {
            if fetched.is_none() {
                *fetched = Some(self.fetch(pod).await);
            }
            if let Some(f) = fetched.as_ref() {
                self.start(pod, c, ctr, dir, volumes, f);
            }
        }
        self.probe(c, ctr, uid, probes);
    }

    /// A running container whose image the pod now names differently (an in-place update,
    /// `kubectl set image` on the pod) is stopped and started again from the new image, as
    /// upstream's kubelet does: same pod, same address and volumes, restartCount + 1.
    fn replace_if_changed(&self, pod: &Pod, c: &Container, ctr: &mut Ctr) {
        let Some(run) = ctr.run.as_ref().filter(|r| r.exit.is_none()) else {
            return;
        };
        let had = run.launch.container.as_ref().and_then(|s| s.image_name.as_deref());
        if ctr.stopping || had.is_none() || had == c.image.as_deref() {
            return;
        }
        tracing::info!(pod = ?pod.metadata.name, container = %c.name, "agent: image changed; replacing the container");
        self.event(
            &pod_ref(pod),
            EventType::Normal,
            "Killing",
            format!("Container {} definition changed, will be restarted", c.name),
        );
        ctr.stopping = true;
        ctr.ready = false;
        ctr.replace = true;
        let (runtime, dir, grace) = (self.runtime.clone(), run.dir.clone(), grace_of(pod));
        tokio::spawn(async move { stop(runtime, dir, grace).await });
    }

    /// Where image pulls report their events (also for pre-pulls).
    pub fn pull_events(&self) -> &crate::oci::PullEvents {
        &self.pull_events
    }

    /// Writes pod statuses concurrently (one pass may start many containers) and records
    /// the ones written.
    async fn write_statuses(&self, writes: Vec<StatusWrite>, pods: &mut HashMap<String, PodState>) {
        let pp = PatchParams {
            field_manager: Some(MANAGER.into()),
            ..Default::default()
        };
        let done = futures::future::join_all(writes.into_iter().map(|w| {
            let api: Api<Pod> = Api::namespaced(self.client.clone(), &w.namespace);
            let pp = &pp;
            async move {
                let result = api
                    .patch_status(&w.name, pp, &Patch::Merge(json!({"status": w.status})))
                    .await;
                (w, result)
            }
        }))
        .await;
        for (w, result) in done {
            match result {
                Ok(_) => {
                    if let Some(state) = pods.get_mut(&w.uid) {
                        state.reported = Some(w.status);
                    }
                }
                Err(e) => tracing::warn!(pod = %w.name, error = %e, "agent: status update failed"),
            }
        }
    }

    /// What is on disk of `container`'s runs (after an agent restart).
    fn recover(&self, dir: &Path, container: &str, policy: &str) -> Ctr {
        let runs = dir.join("containers").join(container);
        let last = std::fs::read_dir(&runs)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
            .max();
        let mut ctr = Ctr::default();
        if let Some(n) = last {
            let rd = run_dir(dir, container, n);
            let started = std::fs::metadata(crate::shim::pid_file(&rd))
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| jiff::Timestamp::try_from(t).ok())
                .map(shoal_api::time::rfc3339)
                .unwrap_or_else(now);
            let exit = match self.runtime.state(&rd) {
                RunState::Exited(e) => Some(e),
                RunState::Running(_) | RunState::Starting => None,
                RunState::Unknown => return ctr,
            };
            ctr.run = Some(Run {
                n,
                dir: rd.clone(),
                launch: Launch {
                    state_dir: rd.clone(),
                    log: log_path(dir, container, n),
                    work_dir: PathBuf::from("/"),
                    command: Vec::new(),
                    env: Vec::new(),
                    binds: Vec::new(),
                    container: std::fs::read(crate::shim::spec_file(&rd))
                        .ok()
                        .and_then(|b| serde_json::from_slice(&b).ok()),
                },
                started_at: started,
                started: Instant::now(),
                exit,
            });
            ctr.started = true;
            ctr.ready = true;
            // A run that ended while the agent was away counts as it would have: a container
            // its policy does not restart stays ended.
            if let Some(e) = ctr.run.as_ref().and_then(|r| r.exit.as_ref()) {
                ctr.done = !lifecycle::restarts(policy, e.exit_code);
                ctr.ready = false;
            }
        }
        ctr
    }

    /// Notices a run that ended and decides when (if) the container runs again.
    fn observe(&self, pod: &Pod, c: &Container, ctr: &mut Ctr, policy: &str) {
        let Some(run) = ctr.run.as_mut() else {
            return;
        };
        if run.exit.is_some() {
            return;
        }
        let RunState::Exited(exit) = self.runtime.state(&run.dir) else {
            return;
        };
        let ran = run.started.elapsed();
        tracing::info!(pod = ?pod.metadata.name, container = %c.name, code = exit.exit_code, "agent: container exited");
        run.exit = Some(exit.clone());
        ctr.stopping = false;
        ctr.ready = false;
        ctr.probes.clear();
        let key = (
            pod.metadata.namespace.clone().unwrap_or_default(),
            pod.metadata.name.clone().unwrap_or_default(),
            c.name.clone(),
        );
        self.runs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&key);
        if !lifecycle::restarts(policy, exit.exit_code) {
            ctr.done = true;
            return;
        }
        let delay = if std::mem::take(&mut ctr.replace) {
            Duration::ZERO
        } else {
            lifecycle::backoff(run.n + 1, ran)
        };
        ctr.next_start = Some(Instant::now() + delay);
        if !delay.is_zero() {
            let name = pod.metadata.name.as_deref().unwrap_or_default();
            let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
            let uid = pod.metadata.uid.as_deref().unwrap_or_default();
            self.event(
                &pod_ref(pod),
                EventType::Warning,
                "BackOff",
                format!(
                    "Back-off restarting failed container {} in pod {name}_{ns}({uid})",
                    c.name
                ),
            );
            ctr.waiting = Some((
                "CrashLoopBackOff".into(),
                Some(format!(
                    "back-off {}s restarting failed container={} pod={name}_{ns}({uid})",
                    delay.as_secs(),
                    c.name
                )),
            ));
        }
    }

    /// The environment and command line of `c`: the agent's PATH, HOSTNAME, where the API
    /// is, then the container's own variables; its command and args expanded.
    fn environment(
        &self,
        pod: &Pod,
        c: &Container,
        f: &Fetched,
        image: Option<&crate::image::Image>,
    ) -> Result<EnvAndCommand, String> {
        const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
        let mut env: Vec<(String, String)> = match image {
            // An image's own variables, with PATH as runtimes default it.
            Some(i) => {
                let mut env: Vec<(String, String)> = i
                    .config
                    .env
                    .iter()
                    .filter_map(|kv| kv.split_once('='))
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect();
                if !env.iter().any(|(k, _)| k == "PATH") {
                    env.insert(0, ("PATH".into(), DEFAULT_PATH.into()));
                }
                let host = if pod.spec.as_ref().and_then(|s| s.host_network) == Some(true) {
                    self.node.clone()
                } else {
                    crate::oci::pod_hostname(pod)
                };
                env.push(("HOSTNAME".into(), host));
                env
            }
            None => vec![
                (
                    "PATH".into(),
                    std::env::var("PATH").unwrap_or_else(|_| DEFAULT_PATH.into()),
                ),
                ("HOSTNAME".into(), self.node.clone()),
            ],
        };
        // Where the API server is (`KUBERNETES_SERVICE_HOST`, ...), for in-cluster clients:
        // set in every container, before (and overridden by) its own variables.
        let mut outer: Vec<(String, String)> = self.outer.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        outer.sort();
        env.extend(outer);
        // The pod's addresses are known before its first status report: the node's.
        let mut pod = pod.clone();
        let status = pod.status.get_or_insert_with(Default::default);
        let pod_ip = self.pod_ip(pod.metadata.uid.as_deref().unwrap_or_default());
        status.pod_ip = Some(pod_ip.clone());
        status.pod_ips = Some(vec![k8s_openapi::api::core::v1::PodIP { ip: pod_ip }]);
        let ip = || {
            Some(vec![k8s_openapi::api::core::v1::PodIP {
                ip: self.node_ip.clone(),
            }])
        };
        status.host_ip = Some(self.node_ip.clone());
        status.host_ips = ip().map(|l| {
            l.into_iter()
                .map(|p| k8s_openapi::api::core::v1::HostIP { ip: p.ip })
                .collect()
        });
        let vars = crate::env::container_env(&pod, c, &self.outer, f).map_err(|e| e.0)?;
        env.retain(|(k, _)| !vars.iter().any(|(v, _)| v == k));
        env.extend(vars);
        if c.command.as_ref().is_none_or(Vec::is_empty) && self.runtime.needs_command() {
            return Err(format!(
                "the process runtime runs a container's command, and container {:?} has none (image {:?} is not pulled or run): set spec.containers[].command",
                c.name,
                c.image.as_deref().unwrap_or_default()
            ));
        }
        let command = match image {
            Some(i) => {
                let cmd = crate::expand::command_line(c.command.as_deref().unwrap_or_default(), &env);
                let args = crate::expand::command_line(c.args.as_deref().unwrap_or_default(), &env);
                let line = crate::oci::command_line(c, &cmd, &args, &i.config);
                if line.is_empty() {
                    return Err(format!(
                        "no command specified: image {:?} has no Entrypoint or Cmd, and container {:?} no command",
                        c.image.as_deref().unwrap_or_default(),
                        c.name
                    ));
                }
                line
            }
            None => {
                let words: Vec<String> = c
                    .command
                    .iter()
                    .flatten()
                    .chain(c.args.iter().flatten())
                    .cloned()
                    .collect();
                crate::expand::command_line(&words, &env)
            }
        };
        Ok((env, command))
    }

    fn remember_run(&self, pod: &Pod, container: &str, launch: &Launch) {
        self.runs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(
                (
                    pod.metadata.namespace.clone().unwrap_or_default(),
                    pod.metadata.name.clone().unwrap_or_default(),
                    container.to_string(),
                ),
                launch.clone(),
            );
    }

    /// Starts the next run of `c`.
    fn start(
        &self,
        pod: &Pod,
        c: &Container,
        ctr: &mut Ctr,
        dir: &Path,
        volumes: &BTreeMap<String, PathBuf>,
        f: &Fetched,
    ) {
        let about = pod_ref(pod);
        let fail = |ctr: &mut Ctr, reason: &str, message: String| {
            if ctr
                .waiting
                .as_ref()
                .is_none_or(|(_, m)| m.as_deref() != Some(message.as_str()))
            {
                self.event(&about, EventType::Warning, "Failed", format!("Error: {message}"));
            }
            ctr.waiting = Some((reason.into(), Some(message)));
            ctr.next_start = Some(Instant::now() + TICK * 5);
        };
        // An image run needs its image, then its pod's sandbox.
        let prepared = match &self.oci {
            None => None,
            Some(oci) => {
                let image = match oci.image_for(pod, c, &self.pull_events) {
                    Ok(i) => i,
                    Err(wait) => {
                        if wait.reason != "ContainerCreating" && wait.reason != "ErrImagePull" {
                            let changed = ctr.waiting.as_ref().is_none_or(|(r, _)| r != wait.reason);
                            if changed {
                                let kind = if wait.reason == "ImagePullBackOff" {
                                    "BackOff"
                                } else {
                                    "Failed"
                                };
                                self.event(&about, EventType::Warning, kind, wait.message.clone());
                            }
                        }
                        ctr.waiting = Some((wait.reason.into(), (!wait.message.is_empty()).then_some(wait.message)));
                        ctr.next_start = Some(Instant::now() + wait.retry);
                        return;
                    }
                };
                match oci.sandbox(pod, dir, &self.node_ip) {
                    Ok(sb) => Some((oci.clone(), image, sb)),
                    Err(e) => return fail(ctr, "CreateContainerError", e),
                }
            }
        };
        let image = prepared.as_ref().map(|(_, i, _)| i);
        let (env, command) = match self.environment(pod, c, f, image) {
            Ok(x) => x,
            Err(e) => return fail(ctr, "CreateContainerConfigError", e),
        };
        // Bind mounts in the container's own mount namespace, or links on the node's tree.
        let binds = if self.runtime.isolates_mounts() {
            match crate::volumes::binds(c, volumes) {
                Ok(b) => b,
                Err(e) => return fail(ctr, "CreateContainerConfigError", e),
            }
        } else {
            if let Err(e) = crate::volumes::mount(c, volumes, &links_file(dir, &c.name)) {
                return fail(ctr, "CreateContainerConfigError", e);
            }
            Vec::new()
        };
        let n = ctr.run.as_ref().map_or(0, |r| r.n + 1);
        let rd = run_dir(dir, &c.name, n);
        let log = log_path(dir, &c.name, n);
        for d in [Some(rd.as_path()), log.parent()].into_iter().flatten() {
            if let Err(e) = std::fs::create_dir_all(d) {
                return fail(ctr, "RunContainerError", format!("creating {}: {e}", d.display()));
            }
        }
        let container = match &prepared {
            None => None,
            Some((oci, image, sb)) => {
                let path = env
                    .iter()
                    .find(|(k, _)| k == "PATH")
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default();
                match oci.spec(pod, c, n, image, sb, dir, binds.clone(), &path) {
                    Ok(s) => Some(s),
                    Err(e) => return fail(ctr, "CreateContainerConfigError", e),
                }
            }
        };
        let launch = Launch {
            state_dir: rd.clone(),
            log,
            work_dir: work_dir(c, image),
            command,
            env,
            binds,
            container,
        };
        if let Err(e) = self.runtime.start(&launch) {
            return fail(ctr, "RunContainerError", e);
        }
        tracing::info!(pod = ?pod.metadata.name, container = %c.name, run = n, "agent: container started");
        self.event(
            &about,
            EventType::Normal,
            "Created",
            format!("Created container: {}", c.name),
        );
        self.event(
            &about,
            EventType::Normal,
            "Started",
            format!("Started container {}", c.name),
        );
        if let Some(prev) = ctr.run.take() {
            ctr.last = prev.exit.map(|e| State::Terminated(e, prev.started_at));
        }
        ctr.run = Some(Run {
            n,
            dir: rd,
            launch: launch.clone(),
            started_at: now(),
            started: Instant::now(),
            exit: None,
        });
        ctr.waiting = None;
        ctr.next_start = None;
        ctr.started = c.startup_probe.is_none();
        ctr.has_readiness = c.readiness_probe.is_some();
        ctr.ready = ctr.started && !ctr.has_readiness;
        ctr.probes.clear();
        self.remember_run(pod, &c.name, &launch);
        if let Some(h) = c.lifecycle.as_ref().and_then(|l| l.post_start.clone()) {
            let (runtime, ip) = (self.runtime.clone(), self.node_ip.clone());
            let name = c.name.clone();
            tokio::spawn(async move {
                if let Err(e) = run_handler(runtime.as_ref(), &launch, &h, &ip, Duration::from_secs(30)).await {
                    tracing::warn!(container = %name, error = %e, "agent: postStart hook failed; killing the container");
                    runtime.signal(&launch.state_dir, Signal::Kill);
                }
            });
        }
    }

    /// Starts the probes of `c` that are due.
    fn probe(&self, c: &Container, ctr: &mut Ctr, uid: &str, tx: &tokio::sync::mpsc::Sender<ProbeResult>) {
        let Some(run) = ctr.run.as_ref().filter(|r| r.exit.is_none()) else {
            return;
        };
        if ctr.stopping {
            return;
        }
        let kinds: &[ProbeKind] = if ctr.started {
            &[ProbeKind::Liveness, ProbeKind::Readiness]
        } else {
            &[ProbeKind::Startup]
        };
        for kind in kinds {
            let Some(p) = probe_of(c, *kind) else {
                continue;
            };
            let now = Instant::now();
            let first = run.started + secs(p.initial_delay_seconds, 0);
            let slot = ctr.probes.entry(*kind).or_insert_with(|| ProbeSlot {
                count: ProbeCount::default(),
                next: first,
                in_flight: false,
                success_threshold: p.success_threshold.unwrap_or(1),
                failure_threshold: p.failure_threshold.unwrap_or(3),
            });
            if slot.in_flight || slot.next > now {
                continue;
            }
            slot.in_flight = true;
            slot.next = now + secs(p.period_seconds, 10);
            let (runtime, launch, probe, ip) = (self.runtime.clone(), run.launch.clone(), p.clone(), self.pod_ip(uid));
            let (tx, uid, container, n, kind) = (tx.clone(), uid.to_string(), c.name.clone(), run.n, *kind);
            tokio::spawn(async move {
                let timeout = secs(probe.timeout_seconds, 1);
                let error = run_probe(runtime.as_ref(), &launch, &probe, &ip, timeout).await.err();
                let _ = tx
                    .send(ProbeResult {
                        uid,
                        container,
                        run: n,
                        kind,
                        error,
                    })
                    .await;
            });
        }
    }

    fn record_probe(&self, pods: &mut HashMap<String, PodState>, r: ProbeResult) {
        let Some(state) = pods.get_mut(&r.uid) else {
            return;
        };
        let about = state.about.clone();
        let Some(ctr) = state.containers.get_mut(&r.container) else {
            return;
        };
        if ctr.run.as_ref().is_none_or(|run| run.n != r.run || run.exit.is_some()) {
            return;
        }
        let Some(slot) = ctr.probes.get_mut(&r.kind) else {
            return;
        };
        slot.in_flight = false;
        let verdict = slot
            .count
            .record(r.error.is_none(), slot.success_threshold, slot.failure_threshold);
        if let Some(e) = &r.error {
            self.event(
                &about,
                EventType::Warning,
                "Unhealthy",
                format!("{} probe failed: {e}", r.kind.name()),
            );
        }
        let run = ctr.run.as_ref().expect("checked above");
        match (r.kind, verdict) {
            (ProbeKind::Startup, Verdict::Success) => {
                ctr.started = true;
                ctr.probes.remove(&ProbeKind::Startup);
                ctr.ready = !ctr.has_readiness;
            }
            (ProbeKind::Readiness, Verdict::Success) => ctr.ready = true,
            (ProbeKind::Readiness, Verdict::Failure) => ctr.ready = false,
            (ProbeKind::Startup | ProbeKind::Liveness, Verdict::Failure) => {
                tracing::info!(container = %r.container, probe = ?r.kind, "agent: probe failed; restarting the container");
                self.event(
                    &about,
                    EventType::Normal,
                    "Killing",
                    format!(
                        "Container {} failed {} probe, will be restarted",
                        r.container,
                        r.kind.name().to_ascii_lowercase()
                    ),
                );
                ctr.stopping = true;
                ctr.ready = false;
                let (runtime, dir) = (self.runtime.clone(), run.dir.clone());
                let grace = Duration::from_secs(30);
                tokio::spawn(async move { stop(runtime, dir, grace).await });
            }
            _ => {}
        }
    }

    /// A pod being deleted: its containers stop (preStop, SIGTERM, SIGKILL after the grace
    /// period); once none runs its files go and the pod is deleted for good.
    async fn terminate(&self, pod: &Pod, state: &mut PodState) {
        let grace = grace_of(pod);
        let spec = pod.spec.clone().unwrap_or_default();
        let mut running = false;
        for (name, ctr) in state.containers.iter_mut() {
            ctr.done = true;
            let Some(run) = ctr.run.as_mut() else {
                continue;
            };
            if run.exit.is_some() {
                continue;
            }
            match self.runtime.state(&run.dir) {
                RunState::Exited(e) => {
                    run.exit = Some(e);
                    continue;
                }
                // Nothing on disk any more: nothing can be stopped (nor would ever end).
                RunState::Unknown => continue,
                RunState::Running(_) | RunState::Starting => {}
            }
            running = true;
            if !ctr.stopping {
                ctr.stopping = true;
                self.event(
                    &state.about,
                    EventType::Normal,
                    "Killing",
                    format!("Stopping container {name}"),
                );
                let (runtime, dir, launch, ip) = (
                    self.runtime.clone(),
                    run.dir.clone(),
                    run.launch.clone(),
                    self.node_ip.clone(),
                );
                let pre_stop = spec
                    .containers
                    .iter()
                    .find(|c| &c.name == name)
                    .and_then(|c| c.lifecycle.as_ref())
                    .and_then(|l| l.pre_stop.clone());
                tokio::spawn(async move {
                    let started = Instant::now();
                    if let Some(h) = pre_stop
                        && let Err(e) = run_handler(runtime.as_ref(), &launch, &h, &ip, grace).await
                    {
                        tracing::warn!(error = %e, "agent: preStop hook failed");
                    }
                    stop(runtime, dir, grace.saturating_sub(started.elapsed())).await;
                });
            }
        }
        if running || state.deleting {
            return;
        }
        // A pod that finalizers hold after the delete first shows how it ended (as a
        // kubelet's: Succeeded or Failed by its containers' exit codes, Failed if they never
        // ran), so whoever holds it (a Job counting failures) can read that. The final delete
        // follows once the status is back through the watch.
        let terminal = |phase: Option<&str>| matches!(phase, Some("Succeeded" | "Failed"));
        let held = pod.metadata.finalizers.as_ref().is_some_and(|f| !f.is_empty());
        if held && !terminal(pod.status.as_ref().and_then(|s| s.phase.as_deref())) {
            let mut status = self.status(pod, &spec, state);
            if !terminal(status["phase"].as_str()) {
                status["phase"] = json!("Failed");
            }
            let api: Api<Pod> = Api::namespaced(
                self.client.clone(),
                pod.metadata.namespace.as_deref().unwrap_or("default"),
            );
            let name = pod.metadata.name.as_deref().unwrap_or_default();
            let pp = kube::api::PatchParams::default();
            if let Err(e) = api
                .patch_status(name, &pp, &kube::api::Patch::Merge(json!({"status": status})))
                .await
            {
                tracing::warn!(pod = %name, error = %e, "agent: writing a deleted pod's final status failed");
            }
            return;
        }
        state.deleting = true;
        self.forget(&state.dir);
        let api: Api<Pod> = Api::namespaced(
            self.client.clone(),
            pod.metadata.namespace.as_deref().unwrap_or("default"),
        );
        let dp = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: pod.metadata.uid.clone(),
                resource_version: None,
            }),
            ..Default::default()
        };
        let name = pod.metadata.name.as_deref().unwrap_or_default();
        match api.delete(name, &dp).await {
            Ok(_) => tracing::info!(pod = %name, "agent: pod terminated and deleted"),
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            // A conflict: either another pod of that name now (this one is gone from the
            // watch, and with it this state) or a write that raced ours. Tried again on the
            // next pass, never given up on: a pod left behind would stay Terminating.
            Err(kube::Error::Api(e)) if e.code == 409 => {
                tracing::debug!(pod = %name, error = %e, "agent: deleting a terminated pod conflicted; will retry");
                state.deleting = false;
            }
            Err(e) => {
                tracing::warn!(pod = %name, error = %e, "agent: deleting a terminated pod failed");
                state.deleting = false;
            }
        }
    }

    /// How one container looks in the status. `pending` is the waiting reason of a container
    /// that has not run yet.
    fn view(c: &Container, ctr: Option<&Ctr>, policy: &str, pending: &str) -> ContainerView {
        let run = ctr.and_then(|x| x.run.as_ref());
        let live = run.is_some_and(|r| r.exit.is_none());
        let state_now = match (run, ctr.and_then(|x| x.waiting.clone())) {
            (Some(r), _) if r.exit.is_none() => State::Running(r.started_at.clone()),
            (_, Some((reason, msg))) => State::Waiting(reason, msg),
            (Some(r), None) => match &r.exit {
                Some(e) => State::Terminated(e.clone(), r.started_at.clone()),
                None => State::Running(r.started_at.clone()),
            },
            (None, None) => State::Waiting(pending.into(), None),
        };
        let last = match (run, &state_now) {
            // While waiting to restart, the last run is the one that ended.
            (Some(r), State::Waiting(..)) => r.exit.clone().map(|e| State::Terminated(e, r.started_at.clone())),
            _ => ctr.and_then(|x| x.last.clone()),
        };
        ContainerView {
            name: c.name.clone(),
            state: state_now,
            last,
            ready: ctr.is_some_and(|x| x.ready) && live,
            started: ctr.is_some_and(|x| x.started) && live,
            restart_count: run.map_or(0, |r| r.n),
            will_restart: ctr.is_none_or(|x| !x.done) && lifecycle::restarts(policy, 1),
            ever_ran: run.is_some(),
        }
    }

    fn status(&self, pod: &Pod, spec: &k8s_openapi::api::core::v1::PodSpec, state: &PodState) -> Value {
        let uid = pod.metadata.uid.as_deref().unwrap_or_default();
        let policy = spec.restart_policy.as_deref().unwrap_or("Always");
        let pending = if state.initialized {
            "ContainerCreating"
        } else {
            "PodInitializing"
        };
        let views: Vec<ContainerView> = spec
            .containers
            .iter()
            .map(|c| Self::view(c, state.containers.get(&c.name), policy, pending))
            .collect();
        let inits = spec.init_containers.as_deref().unwrap_or_default();
        let init_views: Vec<ContainerView> = inits
            .iter()
            .map(|c| {
                let mut v = Self::view(c, state.containers.get(&c.name), policy, "PodInitializing");
                // An init container that completed is done, whatever the pod's policy.
                v.will_restart &= is_sidecar(c) || !state.containers.get(&c.name).is_some_and(init_succeeded);
                v
            })
            .collect();
        let init_failed = inits.iter().zip(&init_views).any(|(c, v)| {
            !is_sidecar(c) && !v.will_restart && matches!(&v.state, State::Terminated(e, _) if e.exit_code != 0)
        });
        let mut s = crate::pods::old_status(pod);
        let t = now();
        let phase = match (init_failed, state.initialized) {
            (true, _) => "Failed",
            (false, false) => "Pending",
            (false, true) => lifecycle::phase(&views),
        };
        s["phase"] = json!(phase);
        s["hostIP"] = json!(self.node_ip);
        s["hostIPs"] = crate::pods::ips(std::slice::from_ref(&self.node_ip));
        // A pod with a network of its own has no address until its sandbox has one.
        let own_network = spec.host_network != Some(true) && self.oci.as_ref().is_some_and(|o| o.network().is_some());
        let waits_for_sandbox = own_network && crate::oci::Oci::pod_ip(&state.dir).is_none();
        if !waits_for_sandbox {
            let pod_ip = self.pod_ip(uid);
            s["podIP"] = json!(pod_ip);
            s["podIPs"] = crate::pods::ips(std::slice::from_ref(&pod_ip));
        }
        if !s["startTime"].is_string() {
            s["startTime"] = json!(t);
        }
        let (ready, why) = lifecycle::readiness(&views);
        let ready = ready && state.initialized;
        let reason = (!ready).then_some("ContainersNotReady");
        let incomplete: Vec<&str> = inits
            .iter()
            .filter(|c| !state.containers.get(&c.name).is_some_and(init_succeeded) && !is_sidecar(c))
            .map(|c| c.name.as_str())
            .collect();
        let init_reason = (!state.initialized).then_some("ContainersNotInitialized");
        let ours = [
            ("PodReadyToStartContainers", state.volumes.is_some(), None),
            ("Initialized", state.initialized, init_reason),
            ("Ready", ready, reason),
            ("ContainersReady", ready, reason),
        ];
        s["conditions"] = crate::pods::conditions(&s, &ours, &t);
        for c in s["conditions"].as_array_mut().into_iter().flatten() {
            if let Some(why) = why
                .as_ref()
                .filter(|_| c["type"] == "Ready" || c["type"] == "ContainersReady")
            {
                c["message"] = json!(why);
            }
            if c["type"] == "Initialized" && !state.initialized {
                c["message"] = json!(format!("containers with incomplete status: [{}]", incomplete.join(" ")));
            }
        }
        let render = |v: &ContainerView, c: &Container| {
            let n = v.restart_count;
            let id = format!("process://{uid}-{}-{n}", c.name);
            let (image, image_id) = crate::pods::image_ref(c.image.as_deref().unwrap_or_default());
            let last_id = format!("process://{uid}-{}-{}", c.name, n.saturating_sub(1));
            let mut out = json!({
                "name": v.name,
                "image": image,
                "imageID": image_id,
                "ready": v.ready,
                "started": v.started,
                "restartCount": n,
                "state": v.state.to_json(&id),
                "lastState": v.last.as_ref().map_or_else(|| json!({}), |l| l.to_json(&last_id)),
            });
            if v.ever_ran {
                out["containerID"] = json!(id);
            }
            if let Some(m) = crate::pods::volume_mounts(c) {
                out["volumeMounts"] = m;
            }
            out
        };
        let mut statuses: Vec<Value> = views.iter().zip(&spec.containers).map(|(v, c)| render(v, c)).collect();
        statuses.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
        s["containerStatuses"] = Value::Array(statuses);
        if !inits.is_empty() {
            // Init containers stay in spec order.
            s["initContainerStatuses"] =
                Value::Array(init_views.iter().zip(inits).map(|(v, c)| render(v, c)).collect());
        }
        s
    }
}

/// An init container that is not a sidecar (`restartPolicy: Always`).
/// A container's working directory: its own, the image's, or `/`.
fn work_dir(c: &Container, image: Option<&crate::image::Image>) -> PathBuf {
    c.working_dir
        .clone()
        .filter(|w| !w.is_empty())
        .or_else(|| image.map(|i| i.config.working_dir.clone()).filter(|w| !w.is_empty()))
        .map_or_else(|| PathBuf::from("/"), PathBuf::from)
}

fn is_sidecar(c: &Container) -> bool {
    c.restart_policy.as_deref() == Some("Always")
}

/// Whether an init container's last run ended with 0.
fn init_succeeded(ctr: &Ctr) -> bool {
    ctr.run
        .as_ref()
        .and_then(|r| r.exit.as_ref())
        .is_some_and(|e| e.exit_code == 0)
}

/// SIGTERM, then SIGKILL once `grace` has passed with the container still running.
/// A run still starting counts as running: it gets the signal as soon as it has a pid.
async fn stop(runtime: Arc<dyn Runtime>, dir: PathBuf, grace: Duration) {
    let alive = |r: &dyn Runtime| matches!(r.state(&dir), RunState::Running(_) | RunState::Starting);
    runtime.signal(&dir, Signal::Term);
    let deadline = shoal_api::time::instant_after(Instant::now(), grace);
    while Instant::now() < deadline {
        if !alive(runtime.as_ref()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if alive(runtime.as_ref()) {
        runtime.signal(&dir, Signal::Kill);
    }
}

/// Runs one probe: exec (exit 0), httpGet (2xx or 3xx) or tcpSocket (connects).
async fn run_probe(
    runtime: &dyn Runtime,
    launch: &Launch,
    p: &Probe,
    host: &str,
    timeout: Duration,
) -> Result<(), String> {
    let handler = LifecycleHandler {
        exec: p.exec.clone(),
        http_get: p.http_get.clone(),
        tcp_socket: p.tcp_socket.clone(),
        sleep: None,
    };
    run_handler(runtime, launch, &handler, host, timeout).await
}

/// Runs a probe or hook action within `timeout`.
async fn run_handler(
    runtime: &dyn Runtime,
    launch: &Launch,
    h: &LifecycleHandler,
    host: &str,
    timeout: Duration,
) -> Result<(), String> {
    let work = async {
        if let Some(exec) = &h.exec {
            let argv = exec.command.clone().unwrap_or_default();
            let mut cmd = runtime
                .command(launch, &argv)
                .ok_or("this runtime cannot run commands")?;
            cmd.stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null());
            let status = cmd.status().await.map_err(|e| format!("exec {argv:?}: {e}"))?;
            return if status.success() {
                Ok(())
            } else {
                Err(format!("command {argv:?} exited with {status}"))
            };
        }
        if let Some(get) = &h.http_get {
            let port = port_number(&get.port)?;
            let host = get.host.clone().unwrap_or_else(|| host.to_string());
            let path = get.path.clone().unwrap_or_else(|| "/".into());
            return http_get(&host, port, &path).await;
        }
        if let Some(tcp) = &h.tcp_socket {
            let port = port_number(&tcp.port)?;
            let host = tcp.host.clone().unwrap_or_else(|| host.to_string());
            return tokio::net::TcpStream::connect((host.as_str(), port))
                .await
                .map(|_| ())
                .map_err(|e| format!("dial tcp {host}:{port}: {e}"));
        }
        if let Some(s) = &h.sleep {
            tokio::time::sleep(Duration::from_secs(u64::try_from(s.seconds).unwrap_or(0))).await;
            return Ok(());
        }
        Err("no action".into())
    };
    tokio::time::timeout(timeout, work)
        .await
        .unwrap_or_else(|_| Err(format!("timed out after {}s", timeout.as_secs())))
}

fn port_number(p: &k8s_openapi::apimachinery::pkg::util::intstr::IntOrString) -> Result<u16, String> {
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    match p {
        IntOrString::Int(n) => u16::try_from(*n).map_err(|_| format!("invalid port {n}")),
        IntOrString::String(s) => s
            .parse()
            .map_err(|_| format!("named port {s:?}: host-network pods probe numbered ports")),
    }
}

/// A plain HTTP GET; success is a 2xx or 3xx status.
async fn http_get(host: &str, port: u16, path: &str) -> Result<(), String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect((host, port))
        .await
        .map_err(|e| format!("dial tcp {host}:{port}: {e}"))?;
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: kube-probe/1.33\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; 64];
    let n = s.read(&mut buf).await.map_err(|e| e.to_string())?;
    let line = String::from_utf8_lossy(&buf[..n]);
    let code: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("malformed HTTP response {line:?}"))?;
    if (200..400).contains(&code) {
        Ok(())
    } else {
        Err(format!("HTTP probe failed with statuscode: {code}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_refreshed_at_four_fifths_of_their_life_and_daily_at_least() {
        assert_eq!(token_refresh_after(3607), Duration::from_millis(2_885_600));
        assert_eq!(token_refresh_after(600), Duration::from_secs(480));
        assert_eq!(token_refresh_after(365 * 24 * 3600), Duration::from_secs(24 * 3600));
        assert_eq!(token_refresh_after(-5), Duration::ZERO);
    }

    #[test]
    fn references_cover_volumes_env_and_env_from() {
        let pod: Pod = serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": {
            "volumes": [{"name": "a", "configMap": {"name": "cm1"}}, {"name": "b", "secret": {"secretName": "s1"}},
                        {"name": "c", "projected": {"sources": [{"secret": {"name": "s2"}}]}}],
            "containers": [{"name": "c", "env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "cm2", "key": "k"}}}],
                            "envFrom": [{"secretRef": {"name": "s3"}}]}]}}))
        .unwrap();
        let (cms, secrets) = references(&pod);
        assert_eq!(cms.into_iter().collect::<Vec<_>>(), ["cm1", "cm2"]);
        assert_eq!(secrets.into_iter().collect::<Vec<_>>(), ["s1", "s2", "s3"]);
    }
}
