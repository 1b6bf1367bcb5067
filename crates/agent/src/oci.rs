//! The kubelet's side of the OCI runtime: images pulled as upstream's kubelet pulls them
//! (`imagePullPolicy`, `imagePullSecrets`, the `Pulling`/`Pulled`/`Failed` events,
//! `ErrImagePull` then `ImagePullBackOff`), pod sandboxes with their network, and the
//! container spec a shim runs ([`crate::container::ContainerSpec`]).

use std::collections::{BTreeSet, HashMap};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, Pod, Secret};
use kube::api::Api;

use crate::container::{ContainerSpec, Limits};
use crate::image::{Image, ImageStore};
use crate::sandbox::{self, PodNetwork, Sandbox};

/// A pull in flight or just finished.
enum Pull {
    Running,
    Done(Box<Result<Image, String>>, Instant),
}

/// What keeps a container from starting yet.
#[derive(Debug, PartialEq, Eq)]
pub struct NotYet {
    /// The waiting reason (`ContainerCreating`, `ErrImagePull`, `ImagePullBackOff`, ...).
    pub reason: &'static str,
    /// Its message.
    pub message: String,
    /// When to look again.
    pub retry: Duration,
}

/// Images, sandboxes and networks of a node that runs images.
pub struct Oci {
    images: Arc<ImageStore>,
    program: PathBuf,
    net: Option<PodNetwork>,
    pulls: Arc<Mutex<HashMap<String, Pull>>>,
    /// Failed pulls per image, for the back-off.
    failures: Mutex<HashMap<String, (u32, Instant)>>,
    wake: Arc<tokio::sync::Notify>,
    client: kube::Client,
    /// The cluster DNS address for pods' `resolv.conf`.
    dns: Mutex<Option<String>>,
    /// Woken when the node's images change (for `status.images`).
    images_changed: Arc<tokio::sync::Notify>,
}

/// An event a pull reports: about, warning?, reason, message.
pub type PullEvent = (shoal_runtime::events::ObjectRef, bool, &'static str, String);

/// Events the pulls report, for the kubelet to record.
pub type PullEvents = tokio::sync::mpsc::UnboundedSender<PullEvent>;

/// The reference events about `pod` use.
fn about(pod: &Pod) -> shoal_runtime::events::ObjectRef {
    shoal_runtime::events::ObjectRef {
        api_version: "v1".into(),
        kind: "Pod".into(),
        namespace: pod.metadata.namespace.clone().unwrap_or_else(|| "default".into()),
        name: pod.metadata.name.clone().unwrap_or_default(),
        uid: pod.metadata.uid.clone().unwrap_or_default(),
    }
}

/// The kubelet's default pull policy for an image: `Always` for `:latest` or no tag.
pub fn default_pull_policy(image: &str) -> &'static str {
    let name = image.rsplit('/').next().unwrap_or(image);
    if image.contains('@') {
        return "IfNotPresent";
    }
    match name.split_once(':') {
        None => "Always",
        Some((_, "latest")) => "Always",
        Some(_) => "IfNotPresent",
    }
}

/// The command line of `c` run from `image`, as upstream decides it: the container's
/// `command` replaces the image's `Entrypoint`, and its `args` the image's `Cmd` (an
/// image's `Cmd` is dropped when `command` is set). `command` and `args` come expanded.
pub fn command_line(
    c: &Container,
    command: &[String],
    args: &[String],
    image: &crate::image::RunConfig,
) -> Vec<String> {
    let has_command = c.command.as_ref().is_some_and(|v| !v.is_empty());
    let has_args = c.args.as_ref().is_some_and(|v| !v.is_empty());
    match (has_command, has_args) {
        (true, _) => command.iter().chain(args).cloned().collect(),
        (false, true) => image.entrypoint.iter().chain(args).cloned().collect(),
        (false, false) => image.entrypoint.iter().chain(&image.cmd).cloned().collect(),
    }
}

/// `/etc/resolv.conf` of a pod with `dnsPolicy: ClusterFirst` in namespace `ns`.
pub fn cluster_resolv_conf(ns: &str, dns: &str, pod: &Pod) -> String {
    let spec = pod.spec.clone().unwrap_or_default();
    let cfg = spec.dns_config.clone().unwrap_or_default();
    let mut search = vec![
        format!("{ns}.svc.cluster.local"),
        "svc.cluster.local".to_string(),
        "cluster.local".to_string(),
    ];
    let mut servers = vec![dns.to_string()];
    let mut options = vec!["ndots:5".to_string()];
    if spec.dns_policy.as_deref() == Some("None") {
        search.clear();
        servers.clear();
        options.clear();
    }
    search.extend(cfg.searches.clone().unwrap_or_default());
    servers.extend(cfg.nameservers.clone().unwrap_or_default());
    for o in cfg.options.clone().unwrap_or_default() {
        let name = o.name.unwrap_or_default();
        options.retain(|x| x.split(':').next() != Some(name.as_str()));
        options.push(match o.value {
            Some(v) => format!("{name}:{v}"),
            None => name,
        });
    }
    let mut out = String::new();
    if !search.is_empty() {
        out.push_str(&format!("search {}\n", search.join(" ")));
    }
    for s in servers.iter().take(3) {
        out.push_str(&format!("nameserver {s}\n"));
    }
    if !options.is_empty() {
        out.push_str(&format!("options {}\n", options.join(" ")));
    }
    out
}

fn hosts_file(pod: &Pod, hostname: &str, ip: &str) -> String {
    let spec = pod.spec.clone().unwrap_or_default();
    let mut out = String::from(
        "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n",
    );
    let fqdn = match (&spec.subdomain, pod.metadata.namespace.as_deref()) {
        (Some(sub), Some(ns)) => format!("{hostname}.{sub}.{ns}.svc.cluster.local\t"),
        _ => String::new(),
    };
    out.push_str(&format!("{ip}\t{fqdn}{hostname}\n"));
    for a in spec.host_aliases.iter().flatten() {
        out.push_str(&format!(
            "\n# Entries added by HostAliases.\n{}\t{}\n",
            a.ip,
            a.hostnames.clone().unwrap_or_default().join("\t")
        ));
    }
    out
}

/// A pod's host name (`spec.hostname` or its name, cut to 63 characters).
pub fn pod_hostname(pod: &Pod) -> String {
    let spec = pod.spec.as_ref();
    let h = spec
        .and_then(|s| s.hostname.clone())
        .or_else(|| pod.metadata.name.clone())
        .unwrap_or_default();
    h.chars()
        .take(63)
        .collect::<String>()
        .trim_end_matches(['-', '.'])
        .to_string()
}

/// A quantity in thousandths (`128Mi` -> 134217728000, `500m` -> 500).
fn milli(q: &str) -> Option<i64> {
    let m = shoal_api::validation::Quantity::parse(q.trim()).ok()?.milli_value();
    i64::try_from(m).ok().filter(|m| *m > 0)
}

impl Oci {
    /// The OCI side of a kubelet: images in `images`, sandboxes started as
    /// `<program> pause`, pod networks on `net` (none: pods share the node's network).
    pub fn new(
        images: Arc<ImageStore>,
        program: PathBuf,
        net: Option<PodNetwork>,
        wake: Arc<tokio::sync::Notify>,
        client: kube::Client,
    ) -> Oci {
        Oci {
            images,
            program,
            net,
            pulls: Arc::default(),
            failures: Mutex::default(),
            wake,
            client,
            dns: Mutex::default(),
            images_changed: Arc::new(tokio::sync::Notify::new()),
        }
    }

    /// Pulls `name` ahead of need (a DaemonSet's next revision) unless it is present or
    /// being pulled; `about` gets the events. Returns at once.
    pub fn pre_pull(&self, name: &str, about: shoal_runtime::events::ObjectRef, events: &PullEvents) {
        if self.images.find(name).is_some() {
            return;
        }
        let mut pulls = self.pulls.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if pulls.contains_key(name) {
            return;
        }
        pulls.insert(name.to_string(), Pull::Running);
        drop(pulls);
        let (images, pulls, changed) = (self.images.clone(), self.pulls.clone(), self.images_changed.clone());
        let (name, events) = (name.to_string(), events.clone());
        tokio::spawn(async move {
            let _ = events.send((
                about.clone(),
                false,
                "PrePulling",
                format!("Pulling image \"{name}\" before the rollout reaches this node"),
            ));
            let started = Instant::now();
            let result = images.pull(&name, None).await.map_err(|e| e.to_string());
            let (warning, reason, message) = match &result {
                Ok(_) => (
                    false,
                    "PrePulled",
                    format!(
                        "Image \"{name}\" is on the node ({:.3}s)",
                        started.elapsed().as_secs_f64()
                    ),
                ),
                Err(e) => (true, "PrePullFailed", format!("Pre-pulling image \"{name}\": {e}")),
            };
            let _ = events.send((about, warning, reason, message));
            // A pre-pulled image is not handed to a container: the next start finds it.
            pulls
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .remove(&name);
            changed.notify_one();
        });
    }

    /// Keeps the Node's `status.images` as the store holds them (names and sizes, as
    /// upstream's kubelet reports them), until the process ends.
    pub async fn report_images(self: Arc<Self>, client: kube::Client, node: String) {
        let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(client);
        let mut last = serde_json::Value::Null;
        loop {
            let images: Vec<serde_json::Value> = self
                .images
                .list()
                .iter()
                .map(|i| {
                    let mut names = vec![i.image_id()];
                    names.extend(i.names.iter().cloned());
                    serde_json::json!({"names": names, "sizeBytes": i.size})
                })
                .collect();
            let status = serde_json::json!({"status": {"images": images}});
            if status != last {
                let pp = kube::api::PatchParams::default();
                match nodes.patch_status(&node, &pp, &kube::api::Patch::Merge(&status)).await {
                    Ok(_) => last = status,
                    Err(e) => tracing::warn!(error = %e, "agent: reporting the node's images failed"),
                }
            }
            let _ = tokio::time::timeout(Duration::from_secs(60), self.images_changed.notified()).await;
        }
    }

    /// The image store.
    pub fn images(&self) -> &Arc<ImageStore> {
        &self.images
    }

    /// The node's pod network, if pods get one.
    pub fn network(&self) -> Option<&PodNetwork> {
        self.net.as_ref()
    }

    /// Sets the cluster DNS address pods are pointed at.
    pub fn set_dns(&self, ip: Option<String>) {
        *self.dns.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = ip;
    }

    /// The image `c` runs, once present: a pull is started when the policy asks for one,
    /// and until it ends the container waits.
    pub fn image_for(&self, pod: &Pod, c: &Container, events: &PullEvents) -> Result<Image, NotYet> {
        let name = c.image.clone().unwrap_or_default();
        let policy = c
            .image_pull_policy
            .clone()
            .unwrap_or_else(|| default_pull_policy(&name).into());
        let present = self.images.find(&name);
        let mut pulls = self.pulls.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let finished = match pulls.get(&name) {
            Some(Pull::Running) => {
                return Err(NotYet {
                    reason: "ContainerCreating",
                    message: String::new(),
                    retry: Duration::from_millis(500),
                });
            }
            Some(Pull::Done(_, at)) if at.elapsed() < Duration::from_secs(10) => match pulls.remove(&name) {
                Some(Pull::Done(r, _)) => Some(*r),
                _ => None,
            },
            _ => None,
        };
        match finished {
            Some(Ok(image)) => {
                self.images.touch(&image.digest);
                return Ok(image);
            }
            Some(Err(e)) => {
                return Err(NotYet {
                    reason: "ErrImagePull",
                    message: e,
                    retry: self.backoff(&name),
                });
            }
            None => {}
        }
        match (policy.as_str(), present) {
            ("Never", None) => Err(NotYet {
                reason: "ErrImageNeverPull",
                message: format!("Container image \"{name}\" is not present with pull policy of Never"),
                retry: Duration::from_secs(5),
            }),
            ("Never" | "IfNotPresent", Some(image)) => {
                self.images.touch(&image.digest);
                let _ = events.send((
                    about(pod),
                    false,
                    "Pulled",
                    format!("Container image \"{name}\" already present on machine"),
                ));
                Ok(image)
            }
            _ => {
                if let Some(wait) = self.in_backoff(&name) {
                    return Err(NotYet {
                        reason: "ImagePullBackOff",
                        message: format!("Back-off pulling image \"{name}\""),
                        retry: wait,
                    });
                }
                pulls.insert(name.clone(), Pull::Running);
                drop(pulls);
                self.start_pull(pod, name, events.clone());
                Err(NotYet {
                    reason: "ContainerCreating",
                    message: String::new(),
                    retry: Duration::from_millis(500),
                })
            }
        }
    }

    fn backoff(&self, name: &str) -> Duration {
        let mut f = self.failures.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let e = f.entry(name.to_string()).or_insert((0, Instant::now()));
        e.0 += 1;
        e.1 = Instant::now();
        Duration::from_secs((5u64 << e.0.min(6)).min(300))
    }

    fn in_backoff(&self, name: &str) -> Option<Duration> {
        let f = self.failures.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let (n, at) = f.get(name)?;
        let wait = Duration::from_secs((5u64 << (*n).min(6)).min(300));
        wait.checked_sub(at.elapsed())
    }

    fn start_pull(&self, pod: &Pod, name: String, events: PullEvents) {
        let (images, client) = (self.images.clone(), self.client.clone());
        let ns = pod.metadata.namespace.clone().unwrap_or_else(|| "default".into());
        let about = about(pod);
        let secrets: Vec<String> = pod
            .spec
            .as_ref()
            .and_then(|s| s.image_pull_secrets.clone())
            .unwrap_or_default()
            .into_iter()
            .map(|r| r.name)
            .collect();
        let (wake, pulls, changed) = (self.wake.clone(), self.pulls.clone(), self.images_changed.clone());
        tokio::spawn(async move {
            let _ = events.send((about.clone(), false, "Pulling", format!("Pulling image \"{name}\"")));
            let started = Instant::now();
            let auth = pull_auth(&client, &ns, &secrets, &name).await;
            let result = images.pull(&name, auth).await.map_err(|e| e.to_string());
            let event = match &result {
                Ok(i) => (
                    false,
                    "Pulled",
                    format!(
                        "Successfully pulled image \"{name}\" in {:.3}s. Image size: {} bytes.",
                        started.elapsed().as_secs_f64(),
                        i.size
                    ),
                ),
                Err(e) => (true, "Failed", format!("Failed to pull image \"{name}\": {e}")),
            };
            let _ = events.send((about, event.0, event.1, event.2));
            pulls
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(name, Pull::Done(Box::new(result), Instant::now()));
            wake.notify_one();
            changed.notify_one();
        });
    }

    /// Starts the pod's sandbox (or finds it running) and writes its `/etc` files.
    pub fn sandbox(&self, pod: &Pod, pod_dir: &Path, node_ip: &str) -> Result<Sandbox, String> {
        let spec = pod.spec.clone().unwrap_or_default();
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let host_network = spec.host_network == Some(true);
        let hostname = pod_hostname(pod);
        let sb = sandbox::ensure(
            &self.program,
            pod_dir,
            &uid,
            &hostname,
            host_network,
            spec.host_ipc == Some(true),
            self.net.as_ref(),
        )?;
        let etc = pod_dir.join("etc");
        std::fs::create_dir_all(&etc).map_err(|e| format!("creating {}: {e}", etc.display()))?;
        let ip = sb.ip.map_or_else(|| node_ip.to_string(), |i| i.to_string());
        let node_host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
        let shown = if host_network {
            node_host.trim().to_string()
        } else {
            hostname.clone()
        };
        let policy = spec.dns_policy.clone().unwrap_or_else(|| "ClusterFirst".into());
        let dns = self
            .dns
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let resolv = match (policy.as_str(), host_network, dns) {
            ("None", _, _) => cluster_resolv_conf("", "", pod),
            ("ClusterFirst", false, Some(d)) | ("ClusterFirstWithHostNet", _, Some(d)) => {
                cluster_resolv_conf(pod.metadata.namespace.as_deref().unwrap_or("default"), &d, pod)
            }
            _ => std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
        };
        let hosts = if host_network {
            std::fs::read_to_string("/etc/hosts").unwrap_or_default()
        } else {
            hosts_file(pod, &hostname, &ip)
        };
        for (name, text) in [
            ("hosts", hosts),
            ("hostname", format!("{shown}\n")),
            ("resolv.conf", resolv),
        ] {
            std::fs::write(etc.join(name), text).map_err(|e| format!("writing the pod's /etc/{name}: {e}"))?;
        }
        Ok(sb)
    }

    /// The pod's address, when its sandbox has one.
    pub fn pod_ip(pod_dir: &Path) -> Option<Ipv4Addr> {
        sandbox::find(pod_dir).and_then(|s| s.ip)
    }

    /// Stops the pod's sandbox and releases its address.
    pub fn remove(&self, pod_dir: &Path, uid: &str) {
        sandbox::remove(pod_dir, uid, self.net.as_ref());
    }

    /// Releases addresses of pods gone while the agent was away.
    pub fn release_others(&self, live: &BTreeSet<String>) {
        if let Some(n) = &self.net {
            n.release_others(live);
        }
    }

    /// The spec a shim runs `c` of `pod` with (run `n`), from `image`, in `sandbox`.
    #[allow(clippy::too_many_arguments)]
    pub fn spec(
        &self,
        pod: &Pod,
        c: &Container,
        n: u32,
        image: &Image,
        sandbox: &Sandbox,
        pod_dir: &Path,
        mut binds: Vec<crate::volumes::Bind>,
        path: &str,
    ) -> Result<ContainerSpec, String> {
        let spec = pod.spec.clone().unwrap_or_default();
        let psc = spec.security_context.clone().unwrap_or_default();
        let sc = c.security_context.clone().unwrap_or_default();
        let uid_of = sc.run_as_user.or(psc.run_as_user);
        let gid_of = sc.run_as_group.or(psc.run_as_group);
        let user = match (uid_of, gid_of) {
            (Some(u), Some(g)) => format!("{u}:{g}"),
            (Some(u), None) => u.to_string(),
            (None, Some(g)) => {
                let u = image.config.user.split(':').next().unwrap_or_default();
                format!("{}:{g}", if u.is_empty() { "0" } else { u })
            }
            (None, None) => image.config.user.clone(),
        };
        let groups: Vec<u32> = psc
            .supplemental_groups
            .clone()
            .unwrap_or_default()
            .into_iter()
            .chain(psc.fs_group)
            .filter_map(|g| u32::try_from(g).ok())
            .collect();
        let caps = sc.capabilities.clone().unwrap_or_default();
        let capabilities = crate::container::capability_set(
            &caps.add.clone().unwrap_or_default(),
            &caps.drop.clone().unwrap_or_default(),
        )?;
        let etc = pod_dir.join("etc");
        for f in ["hosts", "hostname", "resolv.conf"] {
            let target = PathBuf::from("/etc").join(f);
            if !binds.iter().any(|b| b.target == target) {
                binds.push(crate::volumes::Bind {
                    source: etc.join(f),
                    target,
                    read_only: false,
                });
            }
        }
        let limits = c.resources.as_ref().and_then(|r| r.limits.as_ref());
        let limit = |k: &str| limits.and_then(|l| l.get(k)).map(|q| q.0.clone());
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        Ok(ContainerSpec {
            layers: self.images.layer_dirs(image).map_err(|e| e.to_string())?,
            binds,
            sandbox_pid: Some(sandbox.pid),
            host_pid: spec.host_pid == Some(true),
            user,
            groups,
            capabilities,
            privileged: sc.privileged == Some(true),
            no_new_privileges: sc.allow_privilege_escalation == Some(false),
            read_only_root: sc.read_only_root_filesystem == Some(true),
            path: path.to_string(),
            limits: Limits {
                memory: limit("memory").and_then(|q| milli(&q)).map(|m| (m + 999) / 1000),
                cpu_millis: limit("cpu").and_then(|q| milli(&q)),
                pids: Some(4096),
            },
            cgroup: format!("{uid}_{}_{n}", c.name),
            image: Some(image.digest.clone()),
            image_name: c.image.clone(),
        })
    }
}

/// Digests of the images running containers use (from the specs in the agent's data dir
/// whose shim is alive), which image removal and garbage collection leave be.
pub fn images_in_use(data_dir: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let pods = std::fs::read_dir(data_dir.join("pods")).into_iter().flatten().flatten();
    for pod in pods {
        let containers = std::fs::read_dir(pod.path().join("containers"))
            .into_iter()
            .flatten()
            .flatten();
        for c in containers {
            for run in std::fs::read_dir(c.path()).into_iter().flatten().flatten() {
                let alive = std::fs::read_to_string(crate::shim::shim_pid_file(&run.path()))
                    .ok()
                    .is_some_and(|p| Path::new(&format!("/proc/{}", p.trim())).exists());
                if let (true, Ok(d)) = (alive, std::fs::read_to_string(run.path().join("image"))) {
                    out.insert(d.trim().to_string());
                }
            }
        }
    }
    out
}

/// Credentials for `image` from the pod's `imagePullSecrets`, if one has them.
async fn pull_auth(
    client: &kube::Client,
    ns: &str,
    secrets: &[String],
    image: &str,
) -> Option<oci_client::secrets::RegistryAuth> {
    let r = crate::image::normalise(image).ok()?;
    let api: Api<Secret> = Api::namespaced(client.clone(), ns);
    for name in secrets {
        let Ok(s) = api.get(name).await else { continue };
        let data = s.data.unwrap_or_default();
        for key in [".dockerconfigjson", ".dockercfg"] {
            if let Some(doc) = data.get(key)
                && let Some(a) = crate::image::docker_config_auth(&doc.0, r.registry())
                    .or_else(|| crate::image::docker_config_auth(&doc.0, r.resolve_registry()))
            {
                return Some(a);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pull_policy_defaults_as_upstream() {
        assert_eq!(default_pull_policy("nginx"), "Always");
        assert_eq!(default_pull_policy("nginx:latest"), "Always");
        assert_eq!(default_pull_policy("nginx:1.27"), "IfNotPresent");
        assert_eq!(default_pull_policy("127.0.0.1:5000/web"), "Always");
        assert_eq!(default_pull_policy("127.0.0.1:5000/web:v1"), "IfNotPresent");
        assert_eq!(default_pull_policy("web@sha256:00"), "IfNotPresent");
    }

    #[test]
    fn command_and_args_replace_entrypoint_and_cmd() {
        let img = crate::image::RunConfig {
            entrypoint: vec!["/ep".into()],
            cmd: vec!["c1".into()],
            ..Default::default()
        };
        let mut c = Container::default();
        assert_eq!(command_line(&c, &[], &[], &img), ["/ep", "c1"]);
        c.args = Some(vec!["a".into()]);
        assert_eq!(command_line(&c, &[], &["a".into()], &img), ["/ep", "a"]);
        c.command = Some(vec!["sh".into()]);
        assert_eq!(command_line(&c, &["sh".into()], &["a".into()], &img), ["sh", "a"]);
    }

    #[test]
    fn resolv_conf_points_at_the_cluster_dns() {
        let pod: Pod = serde_json::from_value(serde_json::json!({"metadata": {"name": "p"}, "spec": {"containers": [],
            "dnsConfig": {"options": [{"name": "ndots", "value": "2"}], "searches": ["x.example"]}}}))
        .unwrap();
        let r = cluster_resolv_conf("web", "10.43.0.10", &pod);
        assert_eq!(
            r,
            "search web.svc.cluster.local svc.cluster.local cluster.local x.example\nnameserver 10.43.0.10\noptions ndots:2\n"
        );
    }
}
