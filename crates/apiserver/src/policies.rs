//! ValidatingAdmissionPolicies and their bindings (admissionregistration.k8s.io/v1), as
//! kube-apiserver 1.33 evaluates them: in process, with CEL, before the validating webhooks.
//!
//! A binding applies its policy to the writes that both the policy's `matchConstraints` and
//! the binding's `matchResources` select (resource rules with names and exclusions, namespace
//! and object selectors). For each parameter object the binding's `paramRef` finds (or once,
//! with none, when the policy has no `paramKind`), the policy's `matchConditions` decide
//! whether it applies, then each validation's expression is evaluated over `object`,
//! `oldObject`, `request`, `params`, `namespaceObject` and `variables`. A validation that
//! fails is acted on as the binding says: `Deny` refuses the write (`ValidatingAdmissionPolicy
//! 'p' with binding 'b' denied request: ...`), `Warn` returns a warning, `Audit` records it in
//! the audit log. An expression that cannot be evaluated denies under `failurePolicy: Fail`.

use std::sync::Arc;

use serde_json::{Value, json};
use shoal_api::catalogue;
use shoal_api::cel::Bindings;
use shoal_api::selector::LabelSelector;

use crate::ApiServer;
use crate::status::{ApiError, ApiResult};
use crate::webhooks::{ADMISSION_GROUP, Attempt, Rule, selector};

/// What selects writes: resource rules, exclusions, and selectors.
#[derive(Debug, Default)]
struct Matcher {
    rules: Vec<Rule>,
    excluded: Vec<Rule>,
    namespace_selector: Option<LabelSelector>,
    object_selector: Option<LabelSelector>,
    equivalent: bool,
}

impl Matcher {
    fn decode(v: &Value) -> Matcher {
        Matcher {
            rules: Rule::list(&v["resourceRules"]),
            excluded: Rule::list(&v["excludeResourceRules"]),
            namespace_selector: selector(&v["namespaceSelector"]),
            object_selector: selector(&v["objectSelector"]),
            equivalent: v["matchPolicy"].as_str() != Some("Exact"),
        }
    }
}

/// One validation of a policy.
#[derive(Debug)]
struct Validation {
    expression: String,
    message: Option<String>,
    message_expression: Option<String>,
    reason: Option<String>,
}

/// A policy, decoded.
#[derive(Debug)]
struct Policy {
    name: String,
    param_kind: Option<(String, String)>,
    constraints: Matcher,
    validations: Vec<Validation>,
    audit_annotations: Vec<(String, String)>,
    conditions: Vec<(String, String)>,
    variables: Vec<(String, String)>,
    fail_closed: bool,
}

/// Where a binding finds its parameters.
#[derive(Debug)]
struct ParamRef {
    name: Option<String>,
    namespace: Option<String>,
    selector: Option<LabelSelector>,
    deny_if_missing: bool,
}

/// A binding, decoded, with its policy.
#[derive(Debug)]
struct Bound {
    name: String,
    policy: Arc<Policy>,
    params: Option<ParamRef>,
    resources: Option<Matcher>,
    deny: bool,
    warn: bool,
    audit: bool,
}

/// Every binding whose policy exists.
#[derive(Debug, Default)]
pub(crate) struct Policies {
    bound: Vec<Bound>,
}

fn pairs(v: &Value, key: &str, value: &str) -> Vec<(String, String)> {
    v.as_array()
        .into_iter()
        .flatten()
        .map(|x| {
            (
                x[key].as_str().unwrap_or_default().to_string(),
                x[value].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

fn decode_policy(p: &Value) -> Policy {
    let spec = &p["spec"];
    Policy {
        name: p["metadata"]["name"].as_str().unwrap_or_default().to_string(),
        param_kind: spec["paramKind"]["kind"].as_str().map(|k| {
            (
                spec["paramKind"]["apiVersion"].as_str().unwrap_or_default().to_string(),
                k.to_string(),
            )
        }),
        constraints: Matcher::decode(&spec["matchConstraints"]),
        validations: spec["validations"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|v| Validation {
                expression: v["expression"].as_str().unwrap_or_default().to_string(),
                message: v["message"].as_str().map(str::to_string),
                message_expression: v["messageExpression"].as_str().map(str::to_string),
                reason: v["reason"].as_str().map(str::to_string),
            })
            .collect(),
        audit_annotations: pairs(&spec["auditAnnotations"], "key", "valueExpression"),
        conditions: pairs(&spec["matchConditions"], "name", "expression"),
        variables: pairs(&spec["variables"], "name", "expression"),
        fail_closed: spec["failurePolicy"].as_str() != Some("Ignore"),
    }
}

fn decode_binding(b: &Value, policy: Arc<Policy>) -> Bound {
    let spec = &b["spec"];
    let actions: Vec<&str> = spec["validationActions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let params = spec.get("paramRef").filter(|r| r.is_object()).map(|r| ParamRef {
        name: r["name"].as_str().map(str::to_string),
        namespace: r["namespace"].as_str().map(str::to_string),
        selector: selector(&r["selector"]),
        deny_if_missing: r["parameterNotFoundAction"].as_str() != Some("Allow"),
    });
    Bound {
        name: b["metadata"]["name"].as_str().unwrap_or_default().to_string(),
        policy,
        params,
        resources: spec
            .get("matchResources")
            .filter(|m| m.is_object())
            .map(Matcher::decode),
        deny: actions.contains(&"Deny"),
        warn: actions.contains(&"Warn"),
        audit: actions.contains(&"Audit"),
    }
}

/// The HTTP code of a denial's reason.
fn code_of(reason: &str) -> (u16, &'static str) {
    match reason {
        "Unauthorized" => (401, "Unauthorized"),
        "Forbidden" => (403, "Forbidden"),
        "RequestEntityTooLarge" => (413, "RequestEntityTooLarge"),
        _ => (422, "Invalid"),
    }
}

/// A failed validation.
struct Failure {
    message: String,
    reason: String,
    index: usize,
}

/// The validations of `b`'s policy that `param` fails for the write (evaluation errors
/// count under `failurePolicy: Fail`).
fn evaluate(b: &Bound, request: &Value, namespace: &Value, param: &Value) -> Vec<Failure> {
    let policy = &b.policy;
    let vars = [
        ("object", &request["object"]),
        ("oldObject", &request["oldObject"]),
        ("request", request),
        ("params", param),
        ("namespaceObject", namespace),
    ];
    let bindings = Bindings::new(&vars).with_variables(&policy.variables);
    let error = |expr: &str, e: String| Failure {
        message: format!("expression '{expr}' resulted in error: {e}"),
        reason: "Invalid".into(),
        index: 0,
    };
    for (name, expr) in &policy.conditions {
        match bindings.eval_bool(expr) {
            Ok(true) => {}
            Ok(false) => return Vec::new(),
            Err(e) if policy.fail_closed => {
                return vec![error(expr, format!("match condition {name:?}: {e}"))];
            }
            Err(_) => return Vec::new(),
        }
    }
    let mut out = Vec::new();
    for (index, v) in policy.validations.iter().enumerate() {
        match bindings.eval_bool(&v.expression) {
            Ok(true) => {}
            Ok(false) => {
                let message = v
                    .message_expression
                    .as_deref()
                    .and_then(|e| bindings.eval_string(e).ok().flatten())
                    .map(|m| m.trim().to_string())
                    .filter(|m| !m.is_empty() && !m.contains('\n'))
                    .or_else(|| v.message.clone())
                    .unwrap_or_else(|| format!("failed expression: {}", v.expression.trim()));
                out.push(Failure {
                    message,
                    reason: v.reason.clone().unwrap_or_else(|| "Invalid".into()),
                    index,
                });
            }
            Err(e) if policy.fail_closed => out.push(Failure {
                index,
                ..error(&v.expression, e)
            }),
            Err(_) => {}
        }
    }
    for (key, expr) in &policy.audit_annotations {
        if let Ok(Some(value)) = bindings.eval_string(expr) {
            crate::audit::annotate(&format!("{}/{key}", policy.name), value);
        }
    }
    out
}

impl ApiServer {
    /// The bindings and their policies now (decoded again only after a change).
    pub(crate) fn policies(&self) -> Arc<Policies> {
        let generation = self.cache.admission_generation();
        let mut memo = self
            .policy_memo
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((g, p)) = memo.as_ref()
            && *g == generation
        {
            return p.clone();
        }
        let policies: Vec<Arc<Policy>> = self
            .all_of(ADMISSION_GROUP, "validatingadmissionpolicies", None)
            .iter()
            .map(|p| Arc::new(decode_policy(p)))
            .collect();
        let mut bindings = self.all_of(ADMISSION_GROUP, "validatingadmissionpolicybindings", None);
        bindings.sort_by(|a, b| a["metadata"]["name"].as_str().cmp(&b["metadata"]["name"].as_str()));
        let bound = bindings
            .iter()
            .filter_map(|b| {
                let policy = policies
                    .iter()
                    .find(|p| b["spec"]["policyName"] == p.name.as_str())?
                    .clone();
                Some(decode_binding(b, policy))
            })
            .collect();
        let policies = Arc::new(Policies { bound });
        *memo = Some((generation, policies.clone()));
        policies
    }

    /// Validating admission of a write: the policies, then the webhooks. Returns warnings.
    pub(crate) async fn validate_dynamically(&self, attempt: &Attempt<'_>) -> ApiResult<Vec<String>> {
        let mut warnings = self.validate_by_policies(attempt)?;
        warnings.extend(self.validate_by_webhooks(attempt).await?);
        Ok(warnings)
    }

    /// Evaluates every binding that selects the write; the first denial is its error.
    fn validate_by_policies(&self, attempt: &Attempt<'_>) -> ApiResult<Vec<String>> {
        let policies = self.policies();
        if policies.bound.is_empty() || attempt.t.res.group == ADMISSION_GROUP {
            return Ok(Vec::new());
        }
        let mut warnings = Vec::new();
        let mut audited = Vec::new();
        // The request and its namespace, built once for every binding that applies.
        let mut context: Option<(Value, Value)> = None;
        for b in &policies.bound {
            if !self.selects(&b.policy.constraints, attempt)
                || b.resources.as_ref().is_some_and(|m| !self.selects(m, attempt))
            {
                continue;
            }
            let params = match self.params_of(b, attempt) {
                Ok(params) => params,
                Err(message) => {
                    return Err(self.denial(b, attempt, &message, "Invalid"));
                }
            };
            let (request, namespace) = context.get_or_insert_with(|| {
                let request = attempt.request(&uuid::Uuid::new_v4().to_string());
                (request, self.namespace_object(attempt).unwrap_or(Value::Null))
            });
            for param in &params {
                for f in evaluate(b, request, namespace, param) {
                    let text = format!(
                        "Validation failed for ValidatingAdmissionPolicy '{}' with binding '{}': {}",
                        b.policy.name, b.name, f.message
                    );
                    if b.audit {
                        let actions: Vec<&str> = [("Deny", b.deny), ("Warn", b.warn), ("Audit", b.audit)]
                            .into_iter()
                            .filter_map(|(a, on)| on.then_some(a))
                            .collect();
                        audited.push(json!({"message": f.message, "policy": b.policy.name, "binding": b.name,
                                            "expressionIndex": f.index, "validationActions": actions}));
                    }
                    if b.warn {
                        warnings.push(text);
                    }
                    if b.deny {
                        if !audited.is_empty() {
                            crate::audit::annotate(
                                "validation.policy.admission.k8s.io/validation_failure",
                                Value::Array(audited).to_string(),
                            );
                        }
                        return Err(self.denial(b, attempt, &f.message, &f.reason));
                    }
                }
            }
        }
        if !audited.is_empty() {
            crate::audit::annotate(
                "validation.policy.admission.k8s.io/validation_failure",
                Value::Array(audited).to_string(),
            );
        }
        Ok(warnings)
    }

    /// Whether `m` selects the write. No resource rules (a binding's `matchResources` may
    /// leave them out) select what the policy does.
    fn selects(&self, m: &Matcher, attempt: &Attempt<'_>) -> bool {
        (m.rules.is_empty() || m.rules.iter().any(|r| r.covers(attempt, m.equivalent)))
            && !m.excluded.iter().any(|r| r.covers(attempt, m.equivalent))
            && self.selectors_match(m.namespace_selector.as_ref(), m.object_selector.as_ref(), attempt)
    }

    /// The parameter objects a binding evaluates its policy with (`[null]` without
    /// `paramKind`; empty when none is found and the binding allows that).
    fn params_of(&self, b: &Bound, attempt: &Attempt<'_>) -> Result<Vec<Value>, String> {
        let (Some((api_version, kind)), Some(r)) = (&b.policy.param_kind, &b.params) else {
            return Ok(vec![Value::Null]);
        };
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        let Some(res) = catalogue::all()
            .into_iter()
            .find(|x| x.group == group && x.version == version && x.kind == kind)
        else {
            return Err(format!(
                "failed to configure binding: paramKind {api_version}, Kind={kind} is not served"
            ));
        };
        // Namespaced parameters are looked up in the binding's namespace, else the request's.
        let namespace = res
            .namespaced
            .then(|| r.namespace.clone().or_else(|| attempt.t.namespace.clone()))
            .flatten();
        let found: Vec<Value> = self
            .all_of(res.group, res.plural, namespace.as_deref())
            .into_iter()
            .filter(|p| match (&r.name, &r.selector) {
                (Some(name), _) => p["metadata"]["name"] == name.as_str(),
                (None, Some(sel)) => sel.matches(&p["metadata"]["labels"].as_object().cloned().unwrap_or_default()),
                (None, None) => false,
            })
            .collect();
        if found.is_empty() && r.deny_if_missing {
            return Err(
                "failed to configure binding: no params found for policy binding with `Deny` parameterNotFoundAction"
                    .into(),
            );
        }
        Ok(found)
    }

    /// The error of a denial: upstream's forbidden message with the validation's reason and
    /// its code.
    fn denial(&self, b: &Bound, attempt: &Attempt<'_>, message: &str, reason: &str) -> ApiError {
        let text = format!(
            "ValidatingAdmissionPolicy '{}' with binding '{}' denied request: {message}",
            b.policy.name, b.name
        );
        let mut err = crate::admission::forbidden(attempt.t.res, attempt.name(), &text);
        let (code, reason) = code_of(reason);
        err.code = code;
        err.reason = reason;
        if let Some(details) = err.details.as_mut() {
            details["causes"] = json!([{"message": text}]);
        }
        err
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bindings_read_their_actions_and_params() {
        let policy = Arc::new(decode_policy(&json!({"metadata": {"name": "p"}, "spec": {
            "paramKind": {"apiVersion": "v1", "kind": "ConfigMap"},
            "validations": [{"expression": "object.x == params.data.x", "reason": "Forbidden"}]}})));
        assert_eq!(policy.param_kind, Some(("v1".into(), "ConfigMap".into())));
        assert!(policy.fail_closed);
        let b = decode_binding(
            &json!({"metadata": {"name": "b"}, "spec": {"policyName": "p", "validationActions": ["Warn", "Audit"],
                    "paramRef": {"name": "limits", "parameterNotFoundAction": "Allow"}}}),
            policy,
        );
        assert!(!b.deny && b.warn && b.audit);
        let params = b.params.expect("a paramRef");
        assert!(!params.deny_if_missing && params.name.as_deref() == Some("limits"));
        assert_eq!(code_of("Forbidden"), (403, "Forbidden"));
        assert_eq!(code_of(""), (422, "Invalid"));
    }
}
