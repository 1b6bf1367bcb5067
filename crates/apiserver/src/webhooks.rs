//! Dynamic admission: the Mutating and Validating WebhookConfigurations of
//! admissionregistration.k8s.io/v1, called as kube-apiserver 1.33 calls them.
//!
//! A write (create, update, delete) is matched against every webhook of every configuration:
//! its rules (operations, groups, versions, resources with `/subresource`, scope), namespace
//! and object selectors, and `matchConditions` (CEL over `object`, `oldObject` and
//! `request`). Mutating webhooks are called one after another in configuration order after
//! the built-in mutating admission, and their JSON patches applied; one with
//! `reinvocationPolicy: IfNeeded` is called once more if a later webhook changed the object.
//! Validating webhooks are called together after the object passed validation. Each call
//! POSTs an `AdmissionReview` (v1) over HTTPS to the webhook's `url`, or to an endpoint of
//! its Service, trusting only its `caBundle`, within its `timeoutSeconds`.
//!
//! A denial is the request's error (`admission webhook "x" denied the request: ...`, with
//! the webhook's code); a webhook that cannot be called fails the request under
//! `failurePolicy: Fail` and is skipped under `Ignore`. Webhooks are not called for the
//! configurations and policies themselves, so a broken webhook can always be removed.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use http::{Request, header};
use http_body_util::{BodyExt, Full, Limited};
use serde_json::{Value, json};
use shoal_api::catalogue::{self, Resource};
use shoal_api::selector::LabelSelector;

use crate::request::Target;
use crate::rest::WriteOptions;
use crate::status::{ApiError, ApiResult};
use crate::{ApiServer, keys};

/// The group whose objects are never sent to webhooks.
pub(crate) const ADMISSION_GROUP: &str = "admissionregistration.k8s.io";

/// Metadata a mutating webhook may not change.
const SERVER_OWNED: &[&str] = &[
    "name",
    "namespace",
    "uid",
    "creationTimestamp",
    "resourceVersion",
    "generation",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
];

/// Most bytes read of a webhook's answer.
const MAX_RESPONSE_BYTES: usize = 16 << 20;

/// What a write does, as an AdmissionReview names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    Create,
    Update,
    Delete,
}

impl Operation {
    fn as_str(self) -> &'static str {
        match self {
            Operation::Create => "CREATE",
            Operation::Update => "UPDATE",
            Operation::Delete => "DELETE",
        }
    }

    fn options_kind(self) -> &'static str {
        match self {
            Operation::Create => "CreateOptions",
            Operation::Update => "UpdateOptions",
            Operation::Delete => "DeleteOptions",
        }
    }
}

/// One rule of a webhook (`rules[]`) or policy (`resourceRules[]`, with `resourceNames`).
#[derive(Debug, Default)]
pub(crate) struct Rule {
    operations: Vec<String>,
    groups: Vec<String>,
    versions: Vec<String>,
    resources: Vec<String>,
    resource_names: Vec<String>,
    scope: String,
}

/// A webhook server to call: where, whom to trust, how long to wait.
#[derive(Debug)]
pub(crate) struct Callee {
    endpoint: Endpoint,
    ca_bundle: Vec<u8>,
    timeout: Duration,
}

impl Callee {
    /// The server a `clientConfig` names (`url` or `service`, `caBundle`); `None` with
    /// neither.
    pub(crate) fn of(client: &Value, timeout: Duration) -> Option<Callee> {
        let endpoint = match (client["url"].as_str(), client.get("service").filter(|s| s.is_object())) {
            (Some(url), _) => Endpoint::Url(url.to_string()),
            (None, Some(s)) => Endpoint::Service {
                namespace: s["namespace"].as_str().unwrap_or_default().to_string(),
                name: s["name"].as_str().unwrap_or_default().to_string(),
                path: s["path"].as_str().unwrap_or("/").to_string(),
                port: s["port"].as_u64().and_then(|p| u16::try_from(p).ok()).unwrap_or(443),
            },
            (None, None) => return None,
        };
        let ca_bundle = client["caBundle"]
            .as_str()
            .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
            .unwrap_or_default();
        Some(Callee {
            endpoint,
            ca_bundle,
            timeout,
        })
    }
}

/// Where a webhook is called.
#[derive(Debug)]
enum Endpoint {
    Url(String),
    Service {
        namespace: String,
        name: String,
        path: String,
        port: u16,
    },
}

/// One webhook of a configuration, decoded.
#[derive(Debug)]
pub(crate) struct Hook {
    configuration: String,
    name: String,
    rules: Vec<Rule>,
    namespace_selector: Option<LabelSelector>,
    object_selector: Option<LabelSelector>,
    equivalent: bool,
    conditions: Vec<(String, String)>,
    fail_closed: bool,
    dry_run_safe: bool,
    reinvoke: bool,
    callee: Callee,
}

/// Every configured webhook, mutating and validating, in the order they are called.
#[derive(Debug, Default)]
pub(crate) struct Hooks {
    mutating: Vec<Hook>,
    validating: Vec<Hook>,
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(str::to_string))
        .collect()
}

/// The webhooks of a configuration object.
fn decode(config: &Value, mutating: bool) -> Vec<Hook> {
    let configuration = config["metadata"]["name"].as_str().unwrap_or_default().to_string();
    let mut out = Vec::new();
    for w in config["webhooks"].as_array().into_iter().flatten() {
        let timeout = Duration::from_secs(w["timeoutSeconds"].as_u64().unwrap_or(10).clamp(1, 30));
        // Validation refuses a webhook with neither a url nor a service; one that slipped by
        // is skipped.
        let Some(callee) = Callee::of(&w["clientConfig"], timeout) else {
            continue;
        };
        let rules = Rule::list(&w["rules"]);
        let conditions = w["matchConditions"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| {
                (
                    c["name"].as_str().unwrap_or_default().to_string(),
                    c["expression"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect();
        out.push(Hook {
            configuration: configuration.clone(),
            name: w["name"].as_str().unwrap_or_default().to_string(),
            rules,
            namespace_selector: selector(&w["namespaceSelector"]),
            object_selector: selector(&w["objectSelector"]),
            equivalent: w["matchPolicy"].as_str() != Some("Exact"),
            conditions,
            fail_closed: w["failurePolicy"].as_str() != Some("Ignore"),
            dry_run_safe: matches!(w["sideEffects"].as_str(), Some("None" | "NoneOnDryRun")),
            reinvoke: mutating && w["reinvocationPolicy"].as_str() == Some("IfNeeded"),
            callee,
        });
    }
    out
}

/// A label selector of a webhook or policy (`None` when absent: everything matches).
pub(crate) fn selector(v: &Value) -> Option<LabelSelector> {
    v.is_object()
        .then(|| LabelSelector::from_api(v).unwrap_or_else(|_| LabelSelector::nothing()))
}

/// `list` holds `want`, or `*`.
fn names(list: &[String], want: &str) -> bool {
    list.iter().any(|x| x == "*" || x == want)
}

/// True if a `resources` entry (`pods`, `pods/status`, `*`, `*/status`, `pods/*`, `*/*`)
/// covers `plural` with `sub`.
fn resource_matches(entry: &str, plural: &str, sub: &str) -> bool {
    let (r, s) = entry.split_once('/').unwrap_or((entry, ""));
    let resource_ok = r == "*" || r == plural;
    let sub_ok = match (s, sub) {
        ("", "") => true,
        ("*", _) => true,
        (s, sub) => s == sub,
    };
    // `*` alone means every resource, but not their subresources.
    resource_ok && sub_ok
}

impl Rule {
    /// The rules of a `rules`/`resourceRules` list.
    pub(crate) fn list(v: &Value) -> Vec<Rule> {
        v.as_array()
            .into_iter()
            .flatten()
            .map(|r| Rule {
                operations: strings(&r["operations"]),
                groups: strings(&r["apiGroups"]),
                versions: strings(&r["apiVersions"]),
                resources: strings(&r["resources"]),
                resource_names: strings(&r["resourceNames"]),
                scope: r["scope"].as_str().unwrap_or("*").to_string(),
            })
            .collect()
    }

    /// True if the rule covers the write (`name`: the object's name, for `resourceNames`).
    pub(crate) fn covers(&self, attempt: &Attempt<'_>, equivalent: bool) -> bool {
        let sub = attempt.t.subresource.as_deref().unwrap_or_default();
        self.matches(attempt.op, attempt.t.res, sub, equivalent)
            && (self.resource_names.is_empty() || self.resource_names.iter().any(|n| n == attempt.name()))
    }

    fn matches(&self, op: Operation, res: &Resource, sub: &str, equivalent: bool) -> bool {
        let scope_ok = match self.scope.as_str() {
            "Cluster" => !res.namespaced,
            "Namespaced" => res.namespaced,
            _ => true,
        };
        let version_ok = names(&self.versions, res.version)
            || (equivalent
                && catalogue::all()
                    .iter()
                    .any(|r| r.group == res.group && r.plural == res.plural && names(&self.versions, r.version)));
        scope_ok
            && names(&self.operations, op.as_str())
            && names(&self.groups, res.group)
            && version_ok
            && self.resources.iter().any(|e| resource_matches(e, res.plural, sub))
    }
}

/// A write being admitted.
pub(crate) struct Attempt<'a> {
    pub op: Operation,
    pub t: &'a Target,
    pub obj: Option<&'a Value>,
    pub old: Option<&'a Value>,
    pub opts: &'a WriteOptions,
}

impl Attempt<'_> {
    pub(crate) fn name(&self) -> &str {
        self.obj
            .or(self.old)
            .and_then(|o| o["metadata"]["name"].as_str())
            .or(self.t.name.as_deref())
            .unwrap_or_default()
    }

    /// The AdmissionReview request.
    pub(crate) fn request(&self, uid: &str) -> Value {
        let res = self.t.res;
        let sub = self.t.subresource.as_deref().unwrap_or_default();
        let kind = json!({"group": res.group, "version": res.version, "kind": res.kind});
        let resource = json!({"group": res.group, "version": res.version, "resource": res.plural});
        let who = self.opts.who.clone().unwrap_or(crate::nodeauth::Identity::Admin);
        let mut options = json!({"apiVersion": "meta.k8s.io/v1", "kind": self.op.options_kind()});
        if let Some(m) = &self.opts.manager
            && self.op != Operation::Delete
        {
            options["fieldManager"] = json!(m);
        }
        let mut request = json!({
            "uid": uid,
            "kind": kind,
            "resource": resource,
            "requestKind": kind,
            "requestResource": resource,
            "name": self.name(),
            "operation": self.op.as_str(),
            "userInfo": crate::review::user_info(&who),
            "object": self.obj.cloned().unwrap_or(Value::Null),
            "oldObject": self.old.cloned().unwrap_or(Value::Null),
            "dryRun": self.opts.dry_run,
            "options": options,
        });
        if !sub.is_empty() {
            request["subResource"] = json!(sub);
            request["requestSubResource"] = json!(sub);
        }
        if let Some(ns) = &self.t.namespace {
            request["namespace"] = json!(ns);
        }
        request
    }
}

/// A webhook's answer, decoded.
struct Answer {
    allowed: bool,
    status: Value,
    patch: Option<Vec<u8>>,
    warnings: Vec<String>,
    audit: Vec<(String, String)>,
}

/// Why a call failed (its text follows `failed calling webhook "x": `).
pub(crate) struct CallError(pub String);

impl ApiServer {
    /// The webhooks configured now (decoded again only after a configuration changed).
    pub(crate) fn hooks(&self) -> Arc<Hooks> {
        let generation = self.cache.admission_generation();
        let mut memo = self
            .webhook_memo
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((g, hooks)) = memo.as_ref()
            && *g == generation
        {
            return hooks.clone();
        }
        let configs = |plural: &str, mutating: bool| {
            let mut objs = self.all_of(ADMISSION_GROUP, plural, None);
            // Called in the order of their names, as upstream sorts them.
            objs.sort_by(|a, b| a["metadata"]["name"].as_str().cmp(&b["metadata"]["name"].as_str()));
            objs.iter().flat_map(|c| decode(c, mutating)).collect::<Vec<_>>()
        };
        let hooks = Arc::new(Hooks {
            mutating: configs("mutatingwebhookconfigurations", true),
            validating: configs("validatingwebhookconfigurations", false),
        });
        *memo = Some((generation, hooks.clone()));
        hooks
    }

    /// Calls the mutating webhooks that match the write, applying their patches to `obj`.
    /// Returns their warnings.
    pub(crate) async fn mutate_by_webhooks(
        &self,
        op: Operation,
        t: &Target,
        obj: &mut Value,
        old: Option<&Value>,
        opts: &WriteOptions,
    ) -> ApiResult<Vec<String>> {
        let hooks = self.hooks();
        if hooks.mutating.is_empty() || t.res.group == ADMISSION_GROUP {
            return Ok(Vec::new());
        }
        // What the server owns of the object's identity stays as it is, whatever a patch says
        // (upstream fills these after mutating admission).
        let kept: Vec<(&str, Option<Value>)> = SERVER_OWNED
            .iter()
            .map(|k| (*k, obj["metadata"].get(*k).cloned()))
            .collect();
        let result = self.call_mutating(&hooks, op, t, obj, old, opts).await;
        if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
            for (k, v) in kept {
                match v {
                    Some(v) => meta.insert(k.to_string(), v),
                    None => meta.remove(k),
                };
            }
        }
        result
    }

    async fn call_mutating(
        &self,
        hooks: &Hooks,
        op: Operation,
        t: &Target,
        obj: &mut Value,
        old: Option<&Value>,
        opts: &WriteOptions,
    ) -> ApiResult<Vec<String>> {
        let mut warnings = Vec::new();
        // Round 0 calls every matching webhook; round 1 those that asked to be called again
        // when a webhook after them changed the object.
        let mut last_change: Option<usize> = None;
        let mut reinvoke: Vec<usize> = Vec::new();
        for round in 0..2 {
            for (i, hook) in hooks.mutating.iter().enumerate() {
                if round == 1 && !reinvoke.contains(&i) {
                    continue;
                }
                let attempt = Attempt {
                    op,
                    t,
                    obj: Some(obj),
                    old,
                    opts,
                };
                let Some(answer) = self.call_if_matching(hook, &attempt).await? else {
                    continue;
                };
                warnings.extend(answer.warnings);
                if !answer.allowed {
                    return Err(denied(hook, &answer.status));
                }
                if let Some(patch) = answer.patch {
                    let before = obj.clone();
                    apply_patch(hook, obj, &patch)?;
                    if *obj != before {
                        crate::audit::annotate(
                            &format!("mutation.webhook.admission.k8s.io/round_{round}_index_{i}"),
                            json!({"configuration": hook.configuration, "webhook": hook.name, "mutated": true})
                                .to_string(),
                        );
                        last_change = Some(i);
                    }
                }
                if round == 0 && hook.reinvoke {
                    reinvoke.push(i);
                }
            }
            // Reinvoked: those called before the last change.
            match last_change {
                Some(changed) if round == 0 => reinvoke.retain(|i| *i < changed),
                _ => break,
            }
            if reinvoke.is_empty() {
                break;
            }
        }
        Ok(warnings)
    }

    /// Calls the validating webhooks that match the write, together; the first denial (or a
    /// failure under `failurePolicy: Fail`) is the write's error. Returns their warnings.
    pub(crate) async fn validate_by_webhooks(&self, attempt: &Attempt<'_>) -> ApiResult<Vec<String>> {
        let hooks = self.hooks();
        if hooks.validating.is_empty() || attempt.t.res.group == ADMISSION_GROUP {
            return Ok(Vec::new());
        }
        let calls = hooks.validating.iter().map(|h| self.call_if_matching(h, attempt));
        let answers = futures::future::join_all(calls).await;
        let mut warnings = Vec::new();
        for (hook, answer) in hooks.validating.iter().zip(answers) {
            match answer? {
                Some(a) if !a.allowed => return Err(denied(hook, &a.status)),
                Some(a) => warnings.extend(a.warnings),
                None => {}
            }
        }
        Ok(warnings)
    }

    /// Calls `hook` if it matches the write: `None` if it does not (or failed and may be
    /// ignored).
    async fn call_if_matching(&self, hook: &Hook, attempt: &Attempt<'_>) -> ApiResult<Option<Answer>> {
        if !self.hook_matches(hook, attempt) {
            return Ok(None);
        }
        let uid = uuid::Uuid::new_v4().to_string();
        let request = attempt.request(&uid);
        match conditions_hold(hook, &request) {
            Ok(true) => {}
            Ok(false) => return Ok(None),
            Err(e) if hook.fail_closed => {
                return Err(ApiError::internal(format!(
                    "failed calling webhook \"{}\": {e}",
                    hook.name
                )));
            }
            Err(_) => return Ok(None),
        }
        if attempt.opts.dry_run && !hook.dry_run_safe {
            return Err(ApiError::bad_request(format!(
                "admission webhook \"{}\" does not support dry run",
                hook.name
            )));
        }
        let review = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request});
        let started = std::time::Instant::now();
        let result = match self.post_json(&hook.callee, &review).await {
            Ok(answer) => decode_answer(&answer, &uid),
            Err(e) => Err(e),
        };
        tracing::debug!(webhook = %hook.name, elapsed = ?started.elapsed(), ok = result.is_ok(), "admission webhook called");
        match result {
            Ok(answer) => {
                for (k, v) in &answer.audit {
                    crate::audit::annotate(&format!("{}/{k}", hook.name), v.clone());
                }
                Ok(Some(answer))
            }
            Err(CallError(e)) if hook.fail_closed => Err(ApiError::internal(format!(
                "failed calling webhook \"{}\": {e}",
                hook.name
            ))),
            Err(CallError(e)) => {
                tracing::warn!(webhook = %hook.name, error = %e, "admission webhook failed; ignored (failurePolicy Ignore)");
                crate::audit::annotate(
                    &format!("failed-open.validating.webhook.admission.k8s.io/{}", hook.name),
                    hook.name.clone(),
                );
                Ok(None)
            }
        }
    }

    fn hook_matches(&self, hook: &Hook, attempt: &Attempt<'_>) -> bool {
        hook.rules.iter().any(|r| r.covers(attempt, hook.equivalent))
            && self.selectors_match(hook.namespace_selector.as_ref(), hook.object_selector.as_ref(), attempt)
    }

    /// The namespace's labels of the write's object (its own, for a Namespace); `None` for
    /// other cluster-scoped objects.
    pub(crate) fn namespace_object(&self, attempt: &Attempt<'_>) -> Option<Value> {
        let res = attempt.t.res;
        if (res.group, res.plural) == ("", "namespaces") {
            return attempt.obj.or(attempt.old).cloned();
        }
        if !res.namespaced {
            return None;
        }
        let ns = attempt.t.namespace.as_deref().unwrap_or_default();
        catalogue::find("", "v1", "namespaces")
            .and_then(|nres| self.cache.get(&keys::object(nres, None, ns)))
            .map(|e| e.obj())
    }

    /// Whether a write is selected by a namespace selector and an object selector (absent
    /// ones select everything).
    pub(crate) fn selectors_match(
        &self,
        namespace: Option<&LabelSelector>,
        object: Option<&LabelSelector>,
        attempt: &Attempt<'_>,
    ) -> bool {
        let labels_of = |o: &Value| o["metadata"]["labels"].as_object().cloned().unwrap_or_default();
        if let Some(selector) = object {
            // Either the new or the old object may match (a create has no old one).
            let matches = |o: &Value| selector.matches(&labels_of(o));
            if !attempt.obj.is_some_and(matches) && !attempt.old.is_some_and(matches) {
                return false;
            }
        }
        if let Some(selector) = namespace {
            let res = attempt.t.res;
            // Cluster-scoped objects other than namespaces: the selector does not apply.
            if !res.namespaced && (res.group, res.plural) != ("", "namespaces") {
                return true;
            }
            let labels = self
                .namespace_object(attempt)
                .map(|n| labels_of(&n))
                .unwrap_or_default();
            if !selector.matches(&labels) {
                return false;
            }
        }
        true
    }

    /// The URL a webhook is called at (for messages), with upstream's `timeout` parameter.
    fn url_of(&self, callee: &Callee) -> String {
        let timeout = format!("timeout={}s", callee.timeout.as_secs());
        let join = |base: &str| {
            let sep = if base.contains('?') { '&' } else { '?' };
            format!("{base}{sep}{timeout}")
        };
        match &callee.endpoint {
            Endpoint::Url(u) => join(u),
            Endpoint::Service {
                namespace,
                name,
                path,
                port,
            } => join(&format!("https://{name}.{namespace}.svc:{port}{path}")),
        }
    }

    /// Where to connect for `hook`: the address, the name its certificate must carry, the
    /// Host header and the request path.
    fn dial_of(&self, callee: &Callee) -> Result<(Dial, String, String, String), CallError> {
        let url = self.url_of(callee);
        match &callee.endpoint {
            Endpoint::Url(u) => {
                let uri: http::Uri = u
                    .parse()
                    .map_err(|e| CallError(format!("failed to call webhook: parse \"{u}\": {e}")))?;
                if uri.scheme_str() != Some("https") {
                    return Err(CallError(format!(
                        "failed to call webhook: {u}: the scheme must be https"
                    )));
                }
                let host = uri.host().unwrap_or_default().trim_matches(['[', ']']).to_string();
                let port = uri.port_u16().unwrap_or(443);
                let timeout = format!("timeout={}s", callee.timeout.as_secs());
                let query = match uri.query() {
                    Some(q) if !q.is_empty() => format!("{q}&{timeout}"),
                    _ => timeout,
                };
                let path = match uri.path() {
                    "" => format!("/?{query}"),
                    p => format!("{p}?{query}"),
                };
                let authority = uri.authority().map(|a| a.to_string()).unwrap_or_default();
                Ok((Dial::Host(host.clone(), port), host, authority, path))
            }
            Endpoint::Service {
                namespace,
                name,
                path,
                port,
            } => {
                let addr = self
                    .service_endpoint(namespace, name, *port)
                    .map_err(|e| CallError(format!("failed to call webhook: Post \"{url}\": {e}")))?;
                let server_name = format!("{name}.{namespace}.svc");
                let authority = format!("{server_name}:{port}");
                let query = url.split_once('?').map(|(_, q)| q).unwrap_or_default();
                Ok((Dial::Addr(addr), server_name, authority, format!("{path}?{query}")))
            }
        }
    }

    /// An address serving port `port` of Service `namespace/name`: a ready endpoint of its
    /// EndpointSlices, as upstream's service resolver picks one.
    pub(crate) fn service_endpoint(
        &self,
        namespace: &str,
        name: &str,
        port: u16,
    ) -> Result<std::net::SocketAddr, String> {
        let service = self
            .all_of("", "services", Some(namespace))
            .into_iter()
            .find(|s| s["metadata"]["name"] == name)
            .ok_or_else(|| format!("service \"{name}\" not found"))?;
        let svc_port = service["spec"]["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["port"].as_u64() == Some(u64::from(port)))
            .ok_or_else(|| format!("no service port {port} found for service \"{name}\""))?;
        let port_name = svc_port["name"].as_str().unwrap_or_default();
        for slice in self.all_of("discovery.k8s.io", "endpointslices", Some(namespace)) {
            if slice["metadata"]["labels"]["kubernetes.io/service-name"] != name {
                continue;
            }
            let Some(target) = slice["ports"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|p| p["name"].as_str().unwrap_or_default() == port_name)
                .and_then(|p| p["port"].as_u64())
                .and_then(|p| u16::try_from(p).ok())
            else {
                continue;
            };
            for ep in slice["endpoints"].as_array().into_iter().flatten() {
                if ep["conditions"]["ready"] == false {
                    continue;
                }
                if let Some(ip) = ep["addresses"][0]
                    .as_str()
                    .and_then(|a| a.parse::<std::net::IpAddr>().ok())
                {
                    return Ok(std::net::SocketAddr::new(ip, target));
                }
            }
        }
        Err(format!("service \"{namespace}/{name}\" has no ready endpoints"))
    }

    /// POSTs `review` (JSON) to a webhook server within its timeout and returns its JSON
    /// answer; the error is worded as upstream's (`failed to call webhook: Post "URL": ...`).
    pub(crate) async fn post_json(&self, callee: &Callee, review: &Value) -> Result<Value, CallError> {
        match tokio::time::timeout(callee.timeout, self.post_json_now(callee, review)).await {
            Ok(result) => result,
            Err(_) => Err(CallError(format!(
                "failed to call webhook: Post \"{}\": context deadline exceeded",
                self.url_of(callee)
            ))),
        }
    }

    async fn post_json_now(&self, callee: &Callee, review: &Value) -> Result<Value, CallError> {
        let url = self.url_of(callee);
        let failed = |e: &dyn std::fmt::Display| CallError(format!("failed to call webhook: Post \"{url}\": {e}"));
        let (dial, server_name, authority, path) = self.dial_of(callee)?;
        let cfg =
            crate::tls::client_config(crate::tls::Trust::Bundle(&callee.ca_bundle), None).map_err(|e| failed(&e))?;
        let connected = match dial {
            Dial::Addr(addr) => crate::tls::connect_http1(addr, &server_name, cfg).await,
            Dial::Host(host, port) => crate::tls::connect_http1((host.as_str(), port), &server_name, cfg).await,
        };
        let mut sender = connected.map_err(|e| failed(&e))?;
        let body = serde_json::to_vec(review).unwrap_or_default();
        let req = Request::post(path)
            .header(header::HOST, authority)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::ACCEPT, "application/json, */*")
            .body(Full::new(bytes::Bytes::from(body)))
            .map_err(|e| failed(&e))?;
        let resp = sender.send_request(req).await.map_err(|e| failed(&e))?;
        let status = resp.status();
        let bytes = Limited::new(resp.into_body(), MAX_RESPONSE_BYTES)
            .collect()
            .await
            .map_err(|e| failed(&e))?
            .to_bytes();
        if !status.is_success() {
            return Err(CallError(format!(
                "failed to call webhook: the server responded with the status code {}: {}",
                status.as_u16(),
                String::from_utf8_lossy(&bytes[..bytes.len().min(1024)])
            )));
        }
        serde_json::from_slice(&bytes).map_err(|e| CallError(format!("received invalid webhook response: {e}")))
    }
}

enum Dial {
    Addr(std::net::SocketAddr),
    Host(String, u16),
}

/// The answer of a webhook, checked against the AdmissionReview v1 contract.
fn decode_answer(answer: &Value, uid: &str) -> Result<Answer, CallError> {
    let invalid = |m: &str| CallError(format!("received invalid webhook response: {m}"));
    if answer["apiVersion"] != "admission.k8s.io/v1" || answer["kind"] != "AdmissionReview" {
        return Err(invalid(&format!(
            "expected webhook response of admission.k8s.io/v1, Kind=AdmissionReview, got {}, Kind={}",
            answer["apiVersion"].as_str().unwrap_or_default(),
            answer["kind"].as_str().unwrap_or_default()
        )));
    }
    let response = &answer["response"];
    if !response.is_object() {
        return Err(invalid("webhook response was absent"));
    }
    if response["uid"] != uid {
        return Err(invalid(&format!(
            "expected response.uid=\"{uid}\", got \"{}\"",
            response["uid"].as_str().unwrap_or_default()
        )));
    }
    let patch = match (response["patch"].as_str(), response["patchType"].as_str()) {
        (None, _) => None,
        (Some(p), Some("JSONPatch")) => Some(
            base64::engine::general_purpose::STANDARD
                .decode(p)
                .map_err(|e| invalid(&format!("patch: {e}")))?,
        ),
        (Some(_), t) => {
            return Err(invalid(&format!(
                "webhook returned invalid patchType: \"{}\"",
                t.unwrap_or_default()
            )));
        }
    };
    Ok(Answer {
        allowed: response["allowed"] == true,
        status: response["status"].clone(),
        patch,
        warnings: strings(&response["warnings"]),
        audit: response["auditAnnotations"]
            .as_object()
            .into_iter()
            .flatten()
            .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
            .collect(),
    })
}

/// Applies a mutating webhook's JSON patch to `obj`.
fn apply_patch(hook: &Hook, obj: &mut Value, patch: &[u8]) -> ApiResult<()> {
    let patch: json_patch::Patch = serde_json::from_slice(patch).map_err(|e| {
        ApiError::internal(format!(
            "received invalid webhook response: patch of webhook \"{}\": {e}",
            hook.name
        ))
    })?;
    json_patch::patch(obj, &patch).map_err(|e| {
        ApiError::internal(format!(
            "failed calling webhook \"{}\": the patch could not be applied: {e}",
            hook.name
        ))
    })
}

/// The match conditions of `hook` over the request: all must hold.
fn conditions_hold(hook: &Hook, request: &Value) -> Result<bool, String> {
    if hook.conditions.is_empty() {
        return Ok(true);
    }
    let vars = [
        ("object", &request["object"]),
        ("oldObject", &request["oldObject"]),
        ("request", request),
    ];
    let bindings = shoal_api::cel::Bindings::new(&vars);
    for (name, expr) in &hook.conditions {
        match bindings.eval_bool(expr) {
            Ok(true) => {}
            Ok(false) => return Ok(false),
            Err(e) => return Err(format!("failed to evaluate match condition {name:?}: {e}")),
        }
    }
    Ok(true)
}

/// The error of a denial, as upstream words it.
fn denied(hook: &Hook, status: &Value) -> ApiError {
    let by = format!("admission webhook \"{}\" denied the request", hook.name);
    let message = match (status["message"].as_str(), status["reason"].as_str()) {
        (Some(m), _) if !m.is_empty() => format!("{by}: {m}"),
        (_, Some(r)) if !r.is_empty() => format!("{by}: {r}"),
        _ => format!("{by} without explanation"),
    };
    let code = status["code"]
        .as_u64()
        .and_then(|c| u16::try_from(c).ok())
        .filter(|c| (400..600).contains(c))
        .unwrap_or(400);
    let reason = match status["reason"].as_str().unwrap_or_default() {
        "Forbidden" => "Forbidden",
        "Unauthorized" => "Unauthorized",
        "NotFound" => "NotFound",
        "AlreadyExists" => "AlreadyExists",
        "Conflict" => "Conflict",
        "Invalid" => "Invalid",
        "BadRequest" => "BadRequest",
        "MethodNotAllowed" => "MethodNotAllowed",
        "TooManyRequests" => "TooManyRequests",
        "InternalError" => "InternalError",
        "ServiceUnavailable" => "ServiceUnavailable",
        "Timeout" => "Timeout",
        _ => "",
    };
    let mut err = ApiError::new(code, reason, message);
    if let Some(details) = status.get("details").filter(|d| d.is_object()) {
        err = err.with_details(details.clone());
    }
    err
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hook(webhook: Value) -> Hook {
        let config = json!({"metadata": {"name": "c"}, "webhooks": [webhook]});
        decode(&config, true).pop().expect("a webhook")
    }

    #[test]
    fn rules_match_as_upstream() {
        let pods = catalogue::find("", "v1", "pods").unwrap();
        let deployments = catalogue::find("apps", "v1", "deployments").unwrap();
        let h = hook(json!({"name": "w", "clientConfig": {"url": "https://127.0.0.1:1/"},
            "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods", "pods/status"]},
                      {"operations": ["*"], "apiGroups": ["apps"], "apiVersions": ["*"], "resources": ["*"], "scope": "Cluster"}]}));
        assert!(h.rules[0].matches(Operation::Create, pods, "", true));
        assert!(h.rules[0].matches(Operation::Create, pods, "status", true));
        assert!(!h.rules[0].matches(Operation::Create, pods, "log", true));
        assert!(!h.rules[0].matches(Operation::Update, pods, "", true));
        // Deployments are namespaced: a Cluster-scoped rule does not cover them.
        assert!(!h.rules[1].matches(Operation::Update, deployments, "", true));
        assert!(resource_matches("*/status", "pods", "status"));
        assert!(resource_matches("pods/*", "pods", "status"));
        assert!(!resource_matches("*", "pods", "status"));
        assert!(resource_matches("*/*", "pods", ""));
        assert!(h.fail_closed && h.callee.timeout == Duration::from_secs(10) && !h.dry_run_safe);
    }

    #[test]
    fn answers_are_held_to_the_contract() {
        let ok = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "response": {"uid": "u1", "allowed": true, "warnings": ["careful"], "patchType": "JSONPatch",
                         "patch": base64::engine::general_purpose::STANDARD.encode(r#"[{"op":"add","path":"/x","value":1}]"#)}});
        let a = decode_answer(&ok, "u1").ok().expect("a good answer");
        assert!(a.allowed && a.warnings == ["careful"] && a.patch.is_some());
        let other_uid = decode_answer(&ok, "u2").err().expect("uid checked").0;
        assert_eq!(
            other_uid,
            "received invalid webhook response: expected response.uid=\"u2\", got \"u1\""
        );
        let mut v1beta1 = ok.clone();
        v1beta1["apiVersion"] = json!("admission.k8s.io/v1beta1");
        assert!(decode_answer(&v1beta1, "u1").is_err());
        let mut bad_type = ok;
        bad_type["response"]["patchType"] = json!("MergePatch");
        assert!(decode_answer(&bad_type, "u1").is_err());
    }

    #[test]
    fn denials_read_as_upstreams() {
        let h = hook(json!({"name": "deny.example.com", "clientConfig": {"url": "https://127.0.0.1:1/"}}));
        let e = denied(
            &h,
            &json!({"code": 403, "reason": "Forbidden", "message": "no pods on Sundays"}),
        );
        assert_eq!((e.code, e.reason), (403, "Forbidden"));
        assert_eq!(
            e.message,
            "admission webhook \"deny.example.com\" denied the request: no pods on Sundays"
        );
        let bare = denied(&h, &Value::Null);
        assert_eq!(bare.code, 400);
        assert_eq!(
            bare.message,
            "admission webhook \"deny.example.com\" denied the request without explanation"
        );
        // A webhook cannot answer a denial with a success code.
        assert_eq!(denied(&h, &json!({"code": 200})).code, 400);
    }
}
