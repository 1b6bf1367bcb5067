//! ServiceAccounts at the API server, as upstream's token authenticator, TokenRequest
//! endpoint, tokens controller and ServiceAccount admission plugin:
//!
//! - a JWT signed with the service-account key names a ServiceAccount while that account
//!   (and the pod or secret the token is bound to) still exists with the uid in the token;
//! - `POST .../serviceaccounts/NAME/token` (TokenRequest, `kubectl create token`) issues a
//!   bound token; a node may only ask for one bound to a pod on itself;
//! - a Secret of type `kubernetes.io/service-account-token` is given a legacy token, the
//!   CA and the namespace when it is created;
//! - a pod is admitted only with a ServiceAccount that exists, takes the account's image
//!   pull secrets, and, unless automounting is off, gets the `kube-api-access-*` projected
//!   volume (token, `ca.crt`, `namespace`) mounted at
//!   `/var/run/secrets/kubernetes.io/serviceaccount` in every container.
//!
//! All of it is on once [`ApiServer::enable_service_account_tokens`] gave the server its key.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};
use shoal_api::field::FieldError;

use crate::nodeauth::{Identity, User};
use crate::request::Target;
use crate::satoken::{self, Binding, Signer};
use crate::status::{ApiError, ApiResult};
use crate::{ApiServer, keys};

/// Where the token volume is mounted in every container.
pub const MOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// The Secret type of legacy tokens.
pub const TOKEN_SECRET_TYPE: &str = "kubernetes.io/service-account-token";
/// The annotation naming a token Secret's ServiceAccount.
pub const ACCOUNT_NAME_ANNOTATION: &str = "kubernetes.io/service-account.name";
/// The annotation holding that account's uid.
pub const ACCOUNT_UID_ANNOTATION: &str = "kubernetes.io/service-account.uid";
/// How long the projected volume's token lives (upstream's kubelet default, 1 h and 7 s).
pub const PROJECTED_TOKEN_SECONDS: i64 = 3607;
/// Shortest and longest TokenRequest (10 minutes; 2^32 seconds).
const MIN_SECONDS: i64 = 600;
const MAX_SECONDS: i64 = 1 << 32;
/// How long a token bound to a pod keeps working after the pod's deletion began.
const DELETED_POD_GRACE: i64 = 60;

/// The key and the published addresses of the token issuer.
pub struct Accounts {
    signer: Signer,
    jwks_uri: String,
    ca_pem: String,
}

impl Accounts {
    /// Tokens signed by `signer`; the key set is published at `jwks_uri`; token Secrets and
    /// token volumes carry `ca_pem`.
    pub fn new(signer: Signer, jwks_uri: String, ca_pem: String) -> Accounts {
        Accounts {
            signer,
            jwks_uri,
            ca_pem,
        }
    }

    /// `/.well-known/openid-configuration`.
    pub fn discovery(&self) -> Value {
        satoken::discovery(&self.jwks_uri)
    }

    /// `/openid/v1/jwks`.
    pub fn jwks(&self) -> Value {
        self.signer.jwks()
    }
}

/// The user a ServiceAccount's tokens authenticate as.
pub fn account_user(namespace: &str, name: &str) -> String {
    format!("system:serviceaccount:{namespace}:{name}")
}

/// The groups of every ServiceAccount of `namespace`.
pub fn account_groups(namespace: &str) -> Vec<String> {
    vec![
        "system:serviceaccounts".to_string(),
        format!("system:serviceaccounts:{namespace}"),
        "system:authenticated".to_string(),
    ]
}

fn uid_of(obj: &Value) -> &str {
    obj["metadata"]["uid"].as_str().unwrap_or_default()
}

fn unix_now() -> i64 {
    jiff::Timestamp::now().as_second()
}

/// Whether an object's deletion began more than `grace` seconds before `now`.
fn deleted_before(obj: &Value, now: i64, grace: i64) -> bool {
    obj["metadata"]["deletionTimestamp"]
        .as_str()
        .and_then(|t| t.parse::<jiff::Timestamp>().ok())
        .is_some_and(|t| t.as_second() + grace < now)
}

impl ApiServer {
    /// Turns on ServiceAccount tokens and the ServiceAccount admission plugin. Only the first
    /// call takes effect.
    pub fn enable_service_account_tokens(&self, accounts: Accounts) {
        let _ = self.accounts.set(std::sync::Arc::new(accounts));
    }

    /// The token issuer, once enabled.
    pub fn accounts(&self) -> Option<&Accounts> {
        self.accounts.get().map(|a| a.as_ref())
    }

    /// A core object from the watch cache.
    fn stored_core(&self, plural: &str, namespace: Option<&str>, name: &str) -> Option<Value> {
        let res = shoal_api::catalogue::find_plural("", plural)?;
        self.cache.get(&keys::object(res, namespace, name)).map(|e| e.obj())
    }

    /// The identity a ServiceAccount token names, if it is valid for one of `audiences`
    /// (empty: the API server's own), with the audiences it is valid for.
    pub(crate) fn authenticate_service_account(
        &self,
        token: &str,
        audiences: &[String],
    ) -> Option<(Identity, Vec<String>)> {
        let accounts = self.accounts()?;
        let claims = accounts.signer.verify(token).ok()?;
        let (ns, name, uid) = satoken::subject(&claims)?;
        let account = self.stored_core("serviceaccounts", Some(&ns), &name)?;
        if uid_of(&account) != uid || account["metadata"]["deletionTimestamp"].is_string() {
            return None;
        }
        let api = [satoken::ISSUER.to_string()];
        let wanted = if audiences.is_empty() { &api[..] } else { audiences };
        let mut user = User {
            name: account_user(&ns, &name),
            uid,
            groups: account_groups(&ns),
            extra: BTreeMap::new(),
        };
        let now = unix_now();
        let matched: Vec<String> = if claims["iss"] == satoken::LEGACY_ISSUER {
            // Valid while its Secret holds it, for the API server only.
            let secret_name = claims["kubernetes.io/serviceaccount/secret.name"].as_str()?;
            let secret = self.stored_core("secrets", Some(&ns), secret_name)?;
            let held = secret["data"]["token"]
                .as_str()
                .and_then(|t| B64.decode(t).ok())
                .is_some_and(|t| crate::nodeauth::constant_time_eq(&t, token.as_bytes()));
            if secret["type"] != TOKEN_SECRET_TYPE || !held {
                return None;
            }
            wanted.iter().filter(|a| api.contains(a)).cloned().collect()
        } else {
            if claims["iss"] != satoken::ISSUER || satoken::check_times(&claims, now).is_err() {
                return None;
            }
            let has = satoken::audiences(&claims);
            let matched: Vec<String> = wanted.iter().filter(|a| has.contains(a)).cloned().collect();
            if let Some(b) = satoken::binding(&claims) {
                let plural = if b.kind == "Pod" { "pods" } else { "secrets" };
                let bound = self.stored_core(plural, Some(&ns), &b.name)?;
                if uid_of(&bound) != b.uid || deleted_before(&bound, now, DELETED_POD_GRACE) {
                    return None;
                }
                if b.kind == "Pod" {
                    user.extra
                        .insert("authentication.kubernetes.io/pod-name".into(), vec![b.name.clone()]);
                    user.extra
                        .insert("authentication.kubernetes.io/pod-uid".into(), vec![b.uid.clone()]);
                }
            }
            let node = &claims["kubernetes.io"]["node"];
            if let (Some(n), Some(u)) = (node["name"].as_str(), node["uid"].as_str()) {
                user.extra
                    .insert("authentication.kubernetes.io/node-name".into(), vec![n.to_string()]);
                user.extra
                    .insert("authentication.kubernetes.io/node-uid".into(), vec![u.to_string()]);
            }
            if let Some(jti) = claims["jti"].as_str() {
                user.extra.insert(
                    "authentication.kubernetes.io/credential-id".into(),
                    vec![format!("JTI={jti}")],
                );
            }
            matched
        };
        if matched.is_empty() {
            return None;
        }
        Some((Identity::User(user), matched))
    }

    /// TokenRequest: `POST .../serviceaccounts/NAME/token` by `who`.
    pub(crate) fn token_request(&self, t: &Target, request: &Value, who: Option<&Identity>) -> ApiResult<Value> {
        let ns = t.namespace.clone().unwrap_or_default();
        let name = t.name.clone().unwrap_or_default();
        let Some(accounts) = self.accounts() else {
            return Err(ApiError::no_route());
        };
        if request["kind"].as_str().is_some_and(|k| k != "TokenRequest") {
            return Err(ApiError::bad_request(format!(
                "the body of the request was not a TokenRequest (it was a {})",
                request["kind"].as_str().unwrap_or_default()
            )));
        }
        let spec = &request["spec"];
        let seconds = match &spec["expirationSeconds"] {
            Value::Null => 3600,
            v => v
                .as_i64()
                .ok_or_else(|| ApiError::bad_request("spec.expirationSeconds must be an integer"))?,
        };
        let invalid = |errors: Vec<FieldError>| {
            ApiError::invalid_with(
                "TokenRequest.authentication.k8s.io",
                json!({"name": name, "group": "authentication.k8s.io", "kind": "TokenRequest"}),
                &name,
                &errors,
            )
        };
        if seconds < MIN_SECONDS {
            return Err(invalid(vec![FieldError::invalid(
                "spec.expirationSeconds",
                json!(seconds),
                "may not specify a duration less than 10 minutes",
            )]));
        }
        if seconds > MAX_SECONDS {
            return Err(invalid(vec![FieldError::invalid(
                "spec.expirationSeconds",
                json!(seconds),
                "may not specify a duration larger than 2^32 seconds",
            )]));
        }
        let mut audiences: Vec<String> = spec["audiences"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|a| a.as_str().map(str::to_string))
            .collect();
        if audiences.is_empty() {
            audiences.push(satoken::ISSUER.to_string());
        }
        let account = self
            .stored_core("serviceaccounts", Some(&ns), &name)
            .ok_or_else(|| ApiError::not_found(t.res, &name))?;
        let bound_ref = spec.get("boundObjectRef").filter(|r| !r.is_null());
        let mut bound: Option<Binding> = None;
        let mut node: Option<(String, String)> = None;
        if let Some(r) = bound_ref {
            let kind = r["kind"].as_str().unwrap_or_default();
            let obj_name = r["name"].as_str().unwrap_or_default();
            let (plural, namespaced) = match kind {
                "Pod" => ("pods", true),
                "Secret" => ("secrets", true),
                "Node" => ("nodes", false),
                other => {
                    return Err(ApiError::bad_request(format!(
                        "cannot bind token for serviceaccount {name:?} to object of kind {other:?}"
                    )));
                }
            };
            let Some(res) = shoal_api::catalogue::find_plural("", plural) else {
                return Err(ApiError::internal(format!("no resource {plural}")));
            };
            let obj = self
                .stored_core(plural, namespaced.then_some(ns.as_str()), obj_name)
                .ok_or_else(|| ApiError::not_found(res, obj_name))?;
            if let Some(uid) = r["uid"].as_str().filter(|u| !u.is_empty())
                && uid != uid_of(&obj)
            {
                return Err(ApiError::conflict_with(
                    t.res,
                    &name,
                    &format!(
                        "the UID in the bound object reference ({uid}) does not match the UID in record. The object might have been deleted and then recreated"
                    ),
                ));
            }
            if kind == "Pod" {
                let pod_account = obj["spec"]["serviceAccountName"].as_str().unwrap_or("default");
                if pod_account != name {
                    return Err(ApiError::bad_request(format!(
                        "cannot bind token for serviceaccount {name:?} to pod running with different serviceaccount name."
                    )));
                }
                if let Some(n) = obj["spec"]["nodeName"].as_str().filter(|n| !n.is_empty())
                    && let Some(node_obj) = self.stored_core("nodes", None, n)
                {
                    node = Some((n.to_string(), uid_of(&node_obj).to_string()));
                }
            }
            if kind == "Node" {
                node = Some((obj_name.to_string(), uid_of(&obj).to_string()));
            } else {
                bound = Some(Binding {
                    kind: kind.to_string(),
                    name: obj_name.to_string(),
                    uid: uid_of(&obj).to_string(),
                });
            }
        }
        // NodeRestriction: a node's token requests are for pods bound to it.
        if let Some(Identity::Node(me)) = who {
            let refuse = |why: &str| Err(crate::admission::forbidden(t.res, &name, why));
            match &bound {
                Some(b) if b.kind == "Pod" => {
                    let pod = self.stored_core("pods", Some(&ns), &b.name);
                    let on = pod
                        .as_ref()
                        .and_then(|p| p["spec"]["nodeName"].as_str().map(str::to_string));
                    if on.as_deref() != Some(me.as_str()) {
                        return refuse("node requested token bound to a pod scheduled on a different node");
                    }
                }
                _ => return refuse("node requested token not bound to a pod"),
            }
        }
        let now = unix_now();
        let id = uuid::Uuid::new_v4().to_string();
        let claims = satoken::bound_claims(&satoken::BoundClaims {
            namespace: &ns,
            account: &name,
            account_uid: uid_of(&account),
            audiences: &audiences,
            now,
            seconds,
            bound: bound.as_ref(),
            node: node.as_ref().map(|(n, u)| (n.as_str(), u.as_str())),
            id: &id,
        });
        let token = accounts.signer.sign(&claims);
        let expires = jiff::Timestamp::from_second(now + seconds)
            .map(shoal_api::time::rfc3339)
            .unwrap_or_default();
        let mut spec_out = json!({"audiences": audiences, "expirationSeconds": seconds});
        if let Some(r) = bound_ref {
            spec_out["boundObjectRef"] = r.clone();
        }
        Ok(json!({
            "kind": "TokenRequest",
            "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"name": name, "namespace": ns, "creationTimestamp": shoal_api::time::now_rfc3339()},
            "spec": spec_out,
            "status": {"token": token, "expirationTimestamp": expires},
        }))
    }

    /// The tokens controller's work on a new `kubernetes.io/service-account-token` Secret:
    /// its account's uid, a legacy token, the CA and the namespace (when the account exists;
    /// a Secret for a missing account is left as it is).
    pub(crate) fn fill_token_secret(&self, secret: &mut Value) {
        let Some(accounts) = self.accounts() else {
            return;
        };
        if secret["type"] != TOKEN_SECRET_TYPE || secret["data"]["token"].is_string() {
            return;
        }
        let ns = secret["metadata"]["namespace"].as_str().unwrap_or_default().to_string();
        let name = secret["metadata"]["name"].as_str().unwrap_or_default().to_string();
        let Some(account_name) = secret["metadata"]["annotations"][ACCOUNT_NAME_ANNOTATION]
            .as_str()
            .map(str::to_string)
        else {
            return;
        };
        let Some(account) = self.stored_core("serviceaccounts", Some(&ns), &account_name) else {
            return;
        };
        let uid = uid_of(&account).to_string();
        let token = accounts
            .signer
            .sign(&satoken::legacy_claims(&ns, &account_name, &uid, &name));
        secret["metadata"]["annotations"][ACCOUNT_UID_ANNOTATION] = json!(uid);
        if !secret["data"].is_object() {
            secret["data"] = json!({});
        }
        secret["data"]["token"] = json!(B64.encode(token));
        secret["data"]["ca.crt"] = json!(B64.encode(&accounts.ca_pem));
        secret["data"]["namespace"] = json!(B64.encode(&ns));
    }

    /// The ServiceAccount admission plugin on a pod create.
    pub(crate) async fn admit_service_account(&self, pod: &mut Value) -> ApiResult<()> {
        if self.accounts().is_none() || pod["metadata"]["annotations"]["kubernetes.io/config.mirror"].is_string() {
            return Ok(());
        }
        let ns = pod["metadata"]["namespace"].as_str().unwrap_or("default").to_string();
        let spec = &pod["spec"];
        let name = [&spec["serviceAccountName"], &spec["serviceAccount"]]
            .iter()
            .find_map(|v| v.as_str().filter(|s| !s.is_empty()))
            .unwrap_or("default")
            .to_string();
        let account = self.wait_for_account(&ns, &name).await.ok_or_else(|| {
            let res = shoal_api::catalogue::find_plural("", "pods");
            let why = format!("error looking up service account {ns}/{name}: serviceaccount \"{name}\" not found");
            match res {
                Some(res) => crate::admission::forbidden(res, crate::admission::name_of(pod), &why),
                None => ApiError::forbidden(why),
            }
        })?;
        pod["spec"]["serviceAccountName"] = json!(name);
        let spec = &mut pod["spec"];
        let no_pull_secrets = spec["imagePullSecrets"].as_array().is_none_or(Vec::is_empty);
        if no_pull_secrets && let Some(secrets) = account["imagePullSecrets"].as_array().filter(|s| !s.is_empty()) {
            spec["imagePullSecrets"] = json!(secrets);
        }
        let automount = spec["automountServiceAccountToken"]
            .as_bool()
            .or_else(|| account["automountServiceAccountToken"].as_bool())
            .unwrap_or(true);
        if automount {
            mount_token_volume(spec, &format!("kube-api-access-{}", crate::rest::generate_suffix()));
        }
        Ok(())
    }

    /// The ServiceAccount `ns/name`; a namespace's `default` account may be moments from
    /// being made (the ServiceAccount controller makes it when the namespace appears), so
    /// it is waited for a little.
    async fn wait_for_account(&self, ns: &str, name: &str) -> Option<Value> {
        for _ in 0..100 {
            if let Some(a) = self.stored_core("serviceaccounts", Some(ns), name) {
                return Some(a);
            }
            if name != "default" {
                return None;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        None
    }
}

/// Adds the token volume `volume` to a pod spec and mounts it read-only in every container
/// and init container that does not already mount something at [`MOUNT_PATH`].
pub fn mount_token_volume(spec: &mut Value, volume: &str) {
    let mounted_everywhere = ["containers", "initContainers"]
        .iter()
        .flat_map(|k| spec[*k].as_array().into_iter().flatten())
        .all(mounts_token_path);
    if mounted_everywhere {
        return;
    }
    let source = json!({
        "name": volume,
        "projected": {
            "defaultMode": 420,
            "sources": [
                {"serviceAccountToken": {"expirationSeconds": PROJECTED_TOKEN_SECONDS, "path": "token"}},
                {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
            ],
        },
    });
    match spec["volumes"].as_array_mut() {
        Some(v) => v.push(source),
        None => spec["volumes"] = json!([source]),
    }
    for key in ["containers", "initContainers"] {
        for c in spec[key].as_array_mut().into_iter().flatten() {
            if mounts_token_path(c) {
                continue;
            }
            let mount = json!({"name": volume, "readOnly": true, "mountPath": MOUNT_PATH});
            match c["volumeMounts"].as_array_mut() {
                Some(m) => m.push(mount),
                None => c["volumeMounts"] = json!([mount]),
            }
        }
    }
}

fn mounts_token_path(container: &Value) -> bool {
    container["volumeMounts"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|m| m["mountPath"].as_str().map(|p| p.trim_end_matches('/')) == Some(MOUNT_PATH))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_volume_is_mounted_where_nothing_else_is() {
        let mut spec = json!({
            "containers": [
                {"name": "a", "image": "x"},
                {"name": "b", "image": "x", "volumeMounts": [{"name": "own", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount/"}]},
            ],
            "initContainers": [{"name": "i", "image": "x", "volumeMounts": [{"name": "d", "mountPath": "/d"}]}],
        });
        mount_token_volume(&mut spec, "kube-api-access-abcde");
        assert_eq!(spec["volumes"][0]["name"], "kube-api-access-abcde");
        let sources = &spec["volumes"][0]["projected"]["sources"];
        assert_eq!(sources[0]["serviceAccountToken"]["expirationSeconds"], 3607);
        assert_eq!(sources[1]["configMap"]["name"], "kube-root-ca.crt");
        assert_eq!(
            sources[2]["downwardAPI"]["items"][0]["fieldRef"]["fieldPath"],
            "metadata.namespace"
        );
        assert_eq!(spec["containers"][0]["volumeMounts"][0]["mountPath"], MOUNT_PATH);
        assert_eq!(spec["containers"][0]["volumeMounts"][0]["readOnly"], true);
        assert_eq!(spec["containers"][1]["volumeMounts"].as_array().unwrap().len(), 1);
        assert_eq!(
            spec["initContainers"][0]["volumeMounts"][1]["name"],
            "kube-api-access-abcde"
        );
    }

    #[test]
    fn a_pod_that_mounts_the_path_everywhere_gets_no_volume() {
        let mut spec = json!({"containers": [{"name": "a", "volumeMounts": [{"name": "t", "mountPath": MOUNT_PATH}]}]});
        mount_token_volume(&mut spec, "kube-api-access-abcde");
        assert!(spec.get("volumes").is_none());
    }

    #[test]
    fn deletion_counts_after_its_grace() {
        let pod = json!({"metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z"}});
        let at = "2026-01-01T00:00:00Z".parse::<jiff::Timestamp>().unwrap().as_second();
        assert!(!deleted_before(&pod, at + 60, 60));
        assert!(deleted_before(&pod, at + 61, 60));
        assert!(!deleted_before(&json!({}), at, 60));
    }
}
