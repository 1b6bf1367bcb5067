//! A container's environment as upstream's kubelet builds it, for runtimes that start real
//! processes: `envFrom` sources first (ConfigMaps and Secrets, with their prefix; keys that
//! are not valid variable names are skipped), then `env` in order. A `value` is expanded
//! ([`crate::expand`]) against what is defined before it and the outer variables; a
//! `valueFrom` reads a field of the pod (`fieldRef`) or a key of a ConfigMap or Secret,
//! where a missing source or key fails the container unless the reference is `optional`.
//!
//! `resourceFieldRef` is not supported yet: a container that uses it gets a clear error.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::{Container, EnvVarSource, Pod};

use crate::expand::expand;

/// Where ConfigMaps and Secrets are read from (in the pod's namespace).
pub trait Sources {
    /// The `data` of ConfigMap `name`, if it exists.
    fn config_map(&self, namespace: &str, name: &str) -> Option<BTreeMap<String, String>>;
    /// The decoded `data` of Secret `name`, if it exists.
    fn secret(&self, namespace: &str, name: &str) -> Option<BTreeMap<String, Vec<u8>>>;
    /// Where the volume bound to claim `name` is on this node, if it is bound to a local one.
    fn claim_path(&self, _namespace: &str, _name: &str) -> Option<std::path::PathBuf> {
        None
    }
    /// A token of the pod's ServiceAccount for `audience` (empty: the API server's) that
    /// lives `seconds`, as the API server issued it for this pod.
    fn service_account_token(&self, _audience: &str, _seconds: i64) -> Option<String> {
        None
    }
}

/// Why a container's environment cannot be built: upstream's message, shown with the
/// `CreateContainerConfigError` waiting reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnvError(pub String);

impl std::fmt::Display for EnvError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The environment of `container` in `pod`, in the order its variables were first
/// defined. `outer` holds variables every container sees (such as Services').
pub fn container_env(
    pod: &Pod,
    container: &Container,
    outer: &HashMap<String, String>,
    sources: &impl Sources,
) -> Result<Vec<(String, String)>, EnvError> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let mut env = Env::default();
    for from in container.env_from.iter().flatten() {
        let prefix = from.prefix.as_deref().unwrap_or_default();
        let refs = [
            from.config_map_ref
                .as_ref()
                .map(|r| (Kind::ConfigMap, &r.name, r.optional)),
            from.secret_ref.as_ref().map(|r| (Kind::Secret, &r.name, r.optional)),
        ];
        for (kind, name, optional) in refs.into_iter().flatten() {
            match kind.read(sources, ns, name) {
                Some(data) => env.set_all(prefix, data),
                None if optional == Some(true) => {}
                None => return Err(kind.not_found(name)),
            }
        }
    }
    for var in container.env.iter().flatten() {
        let value = match &var.value_from {
            Some(source) => match value_from(pod, ns, source, sources)? {
                Some(v) => v,
                // An optional reference to something missing: the variable is not set.
                None => continue,
            },
            None => {
                let raw = var.value.as_deref().unwrap_or_default();
                expand(raw, |n| env.get(n).or_else(|| outer.get(n).map(String::as_str)))
            }
        };
        env.set(var.name.clone(), value);
    }
    Ok(env.into_list())
}

/// The value of a `valueFrom`; `None` for an optional reference to something missing.
fn value_from(pod: &Pod, ns: &str, source: &EnvVarSource, sources: &impl Sources) -> Result<Option<String>, EnvError> {
    if let Some(f) = &source.field_ref {
        return pod_field(pod, &f.field_path)
            .map(Some)
            .ok_or_else(|| EnvError(format!("unsupported fieldRef {:?}", f.field_path)));
    }
    let keyed = [
        source
            .config_map_key_ref
            .as_ref()
            .map(|r| (Kind::ConfigMap, &r.name, &r.key, r.optional)),
        source
            .secret_key_ref
            .as_ref()
            .map(|r| (Kind::Secret, &r.name, &r.key, r.optional)),
    ];
    if let Some((kind, name, key, optional)) = keyed.into_iter().flatten().next() {
        let optional = optional == Some(true);
        return match kind.read(sources, ns, name) {
            None if optional => Ok(None),
            None => Err(kind.not_found(name)),
            Some(mut data) => match data.remove(key) {
                Some(v) => Ok(Some(v)),
                None if optional => Ok(None),
                None => Err(EnvError(format!(
                    "couldn't find key {key} in {} {ns}/{name}",
                    kind.name()
                ))),
            },
        };
    }
    if source.resource_field_ref.is_some() {
        return Err(EnvError(
            "resourceFieldRef is not supported by this runtime yet".to_string(),
        ));
    }
    Err(EnvError("valueFrom names no source".to_string()))
}

/// The downward API value of `path` (the `fieldRef` paths upstream accepts in env).
pub fn pod_field(pod: &Pod, path: &str) -> Option<String> {
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    let status = pod.status.as_ref();
    let subscript = |prefix: &str| -> Option<&str> { path.strip_prefix(prefix)?.strip_suffix("']") };
    let entry = |map: &Option<BTreeMap<String, String>>, key: &str| {
        map.as_ref().and_then(|m| m.get(key)).cloned().unwrap_or_default()
    };
    if let Some(key) = subscript("metadata.labels['") {
        return Some(entry(&meta.labels, key));
    }
    if let Some(key) = subscript("metadata.annotations['") {
        return Some(entry(&meta.annotations, key));
    }
    // A list of IPs, comma-separated, as the downward API gives `status.podIPs`.
    fn joined<'a>(ips: Option<impl Iterator<Item = &'a String>>) -> String {
        ips.map(|l| l.map(String::as_str).collect::<Vec<_>>().join(","))
            .unwrap_or_default()
    }
    Some(match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
        "spec.serviceAccountName" => spec.and_then(|s| s.service_account_name.clone()).unwrap_or_default(),
        "status.podIP" => status.and_then(|s| s.pod_ip.clone()).unwrap_or_default(),
        "status.podIPs" => joined(
            status
                .and_then(|s| s.pod_ips.as_deref())
                .map(|l| l.iter().map(|i| &i.ip)),
        ),
        "status.hostIP" => status.and_then(|s| s.host_ip.clone()).unwrap_or_default(),
        "status.hostIPs" => joined(
            status
                .and_then(|s| s.host_ips.as_deref())
                .map(|l| l.iter().map(|i| &i.ip)),
        ),
        _ => return None,
    })
}

/// The kinds a variable can come from.
#[derive(Clone, Copy)]
enum Kind {
    ConfigMap,
    Secret,
}

impl Kind {
    /// The object's data as text (a Secret's values decoded as UTF-8, lossily).
    fn read(self, sources: &impl Sources, ns: &str, name: &str) -> Option<BTreeMap<String, String>> {
        match self {
            Kind::ConfigMap => sources.config_map(ns, name),
            Kind::Secret => sources.secret(ns, name).map(|data| {
                data.into_iter()
                    .map(|(k, v)| (k, String::from_utf8_lossy(&v).into_owned()))
                    .collect()
            }),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Kind::ConfigMap => "ConfigMap",
            Kind::Secret => "Secret",
        }
    }

    /// Upstream's message for a missing object.
    fn not_found(self, name: &str) -> EnvError {
        EnvError(format!("{} \"{name}\" not found", self.name().to_lowercase()))
    }
}

/// Variables in the order they were first defined; a later definition replaces the value.
#[derive(Default)]
struct Env {
    values: HashMap<String, String>,
    order: Vec<String>,
}

impl Env {
    fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    fn set(&mut self, name: String, value: String) {
        if !self.values.contains_key(&name) {
            self.order.push(name.clone());
        }
        self.values.insert(name, value);
    }

    /// Every `key`, `value` of a source, as `prefix` + `key`, skipping names that are not
    /// valid environment variable names (as upstream's kubelet does).
    fn set_all(&mut self, prefix: &str, data: impl IntoIterator<Item = (String, String)>) {
        for (key, value) in data {
            let name = format!("{prefix}{key}");
            if shoal_api::validation::names::is_relaxed_env_var_name(&name).is_empty() {
                self.set(name, value);
            }
        }
    }

    fn into_list(mut self) -> Vec<(String, String)> {
        self.order
            .into_iter()
            .map(|n| {
                let v = self.values.remove(&n).unwrap_or_default();
                (n, v)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    struct Fixed {
        config_maps: HashMap<String, BTreeMap<String, String>>,
        secrets: HashMap<String, BTreeMap<String, Vec<u8>>>,
    }

    impl Sources for Fixed {
        fn config_map(&self, ns: &str, name: &str) -> Option<BTreeMap<String, String>> {
            self.config_maps.get(&format!("{ns}/{name}")).cloned()
        }

        fn secret(&self, ns: &str, name: &str) -> Option<BTreeMap<String, Vec<u8>>> {
            self.secrets.get(&format!("{ns}/{name}")).cloned()
        }
    }

    fn sources() -> Fixed {
        Fixed {
            config_maps: [(
                "edge/settings".to_string(),
                [("LEVEL", "debug"), ("bad=key", "x"), ("PATH_PART", "/opt")]
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            )]
            .into(),
            secrets: [(
                "edge/creds".to_string(),
                [("password".to_string(), b"s3cret".to_vec())].into(),
            )]
            .into(),
        }
    }

    fn pod(container: serde_json::Value) -> (Pod, Container) {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "agent-x1", "namespace": "edge", "uid": "u-1",
                         "labels": {"app": "agent"}, "annotations": {"note": "hi"}},
            "spec": {"nodeName": "node3", "serviceAccountName": "default", "containers": [container]},
            "status": {"podIP": "10.42.3.7", "podIPs": [{"ip": "10.42.3.7"}, {"ip": "fd00::7"}],
                       "hostIP": "172.20.42.3", "hostIPs": [{"ip": "172.20.42.3"}]},
        }))
        .unwrap();
        let c = pod.spec.as_ref().unwrap().containers[0].clone();
        (pod, c)
    }

    fn env(container: serde_json::Value) -> Result<Vec<(String, String)>, EnvError> {
        let (p, c) = pod(container);
        let outer: HashMap<String, String> = [("SVC_HOST".to_string(), "10.43.0.9".to_string())].into();
        container_env(&p, &c, &outer, &sources())
    }

    #[test]
    fn sources_fields_and_expansion_build_the_environment_in_order() {
        let got = env(json!({"name": "c", "image": "x",
        "envFrom": [{"configMapRef": {"name": "settings"}, "prefix": "CFG_"},
                    {"secretRef": {"name": "creds"}}],
        "env": [
            {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
            {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "IPS", "valueFrom": {"fieldRef": {"fieldPath": "status.podIPs"}}},
            {"name": "HOST", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}},
            {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
            {"name": "NOTE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.annotations['note']"}}},
            {"name": "LEVEL", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "LEVEL"}}},
            {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}}},
            {"name": "GREETING", "value": "on $(NODE) as $(POD) at $(SVC_HOST), $$(NODE) $(LATER)"},
            {"name": "LATER", "value": "later"},
        ]}))
        .unwrap();
        let names: Vec<&str> = got.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "CFG_LEVEL",
                "CFG_PATH_PART",
                "password",
                "NODE",
                "POD",
                "NS",
                "IP",
                "IPS",
                "HOST",
                "APP",
                "NOTE",
                "LEVEL",
                "PASSWORD",
                "GREETING",
                "LATER"
            ],
            "a ConfigMap key that is no valid name is skipped"
        );
        let get = |k: &str| got.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str()).unwrap();
        assert_eq!(get("NODE"), "node3");
        assert_eq!(get("IPS"), "10.42.3.7,fd00::7");
        assert_eq!(get("APP"), "agent");
        assert_eq!(get("NOTE"), "hi");
        let (p, _) = pod(json!({"name": "c"}));
        assert_eq!(pod_field(&p, "metadata.labels['absent']").as_deref(), Some(""));
        assert_eq!(pod_field(&p, "spec.containers"), None);
        assert_eq!(get("CFG_LEVEL"), "debug");
        assert_eq!(get("PASSWORD"), "s3cret");
        assert_eq!(get("GREETING"), "on node3 as agent-x1 at 10.43.0.9, $(NODE) $(LATER)");
    }

    #[test]
    fn missing_sources_fail_the_container_unless_optional() {
        let missing_cm = env(json!({"name": "c", "env": [
            {"name": "A", "valueFrom": {"configMapKeyRef": {"name": "nope", "key": "k"}}}]}));
        assert_eq!(missing_cm, Err(EnvError("configmap \"nope\" not found".into())));
        let missing_key = env(json!({"name": "c", "env": [
            {"name": "A", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "k"}}}]}));
        assert_eq!(
            missing_key,
            Err(EnvError("couldn't find key k in ConfigMap edge/settings".into()))
        );
        let missing_secret_key = env(json!({"name": "c", "env": [
            {"name": "A", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "k"}}}]}));
        assert_eq!(
            missing_secret_key,
            Err(EnvError("couldn't find key k in Secret edge/creds".into()))
        );
        let missing_from = env(json!({"name": "c", "envFrom": [{"secretRef": {"name": "gone"}}]}));
        assert_eq!(missing_from, Err(EnvError("secret \"gone\" not found".into())));
        let optional = env(json!({"name": "c",
            "envFrom": [{"configMapRef": {"name": "gone", "optional": true}}],
            "env": [
                {"name": "A", "valueFrom": {"configMapKeyRef": {"name": "nope", "key": "k", "optional": true}}},
                {"name": "B", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "k", "optional": true}}},
                {"name": "C", "value": "$(A)"}]}))
        .unwrap();
        assert_eq!(
            optional,
            [("C".to_string(), "$(A)".to_string())],
            "optional misses set nothing"
        );
        let resources = env(json!({"name": "c", "env": [
            {"name": "A", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}}]}));
        assert!(resources.unwrap_err().0.contains("resourceFieldRef"));
    }
}
