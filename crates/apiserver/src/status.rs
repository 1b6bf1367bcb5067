//! Kubernetes `Status` errors: every refused request is answered with one.

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use serde_json::{Value, json};
use shoal_api::catalogue::Resource;
use shoal_api::field::FieldError;

/// An API error, rendered as a `metav1.Status` with the matching HTTP code.
#[derive(Clone, Debug)]
pub struct ApiError {
    /// HTTP status code (also `Status.code`).
    pub code: u16,
    /// `Status.reason` (`NotFound`, `AlreadyExists`, `Invalid`, ...).
    pub reason: &'static str,
    /// Human-readable message, as upstream words it.
    pub message: String,
    /// `Status.details`, when there is one.
    pub details: Option<Value>,
}

/// `Result` with an [`ApiError`].
pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub(crate) fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            reason,
            message: message.into(),
            details: None,
        }
    }

    pub(crate) fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    /// 400 BadRequest.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    /// 401 Unauthorized.
    pub fn unauthorized() -> Self {
        Self::new(401, "Unauthorized", "Unauthorized")
    }

    /// 403 Forbidden.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(403, "Forbidden", message)
    }

    /// 404 NotFound for an object: `daemonsets.apps "x" not found`.
    pub fn not_found(res: &Resource, name: &str) -> Self {
        Self::new(404, "NotFound", format!("{} \"{name}\" not found", res.qualified())).with_details(details(res, name))
    }

    /// 404 NotFound for a path that serves nothing.
    pub fn no_route() -> Self {
        Self::new(404, "NotFound", "the server could not find the requested resource")
            .with_details(json!({"causes": [{"reason": "UnexpectedServerResponse", "message": "404 page not found"}]}))
    }

    /// 405 MethodNotAllowed.
    pub fn method_not_allowed(verb: &str, res: &Resource) -> Self {
        Self::new(
            405,
            "MethodNotAllowed",
            format!("{verb} is not supported on resources of kind \"{}\"", res.qualified()),
        )
    }

    /// 405 MethodNotAllowed for a path outside the resource API.
    pub fn method_not_allowed_path(verb: &str, path: &str) -> Self {
        Self::new(405, "MethodNotAllowed", format!("{verb} is not supported on {path}"))
    }

    /// 406 NotAcceptable.
    pub fn new_not_acceptable() -> Self {
        Self::new(
            406,
            "NotAcceptable",
            "only the following media types are accepted: application/json",
        )
    }

    /// 409 AlreadyExists.
    pub fn already_exists(res: &Resource, name: &str) -> Self {
        Self::new(
            409,
            "AlreadyExists",
            format!("{} \"{name}\" already exists", res.qualified()),
        )
        .with_details(details(res, name))
    }

    /// 409 Conflict for a stale resourceVersion (optimistic concurrency).
    pub fn conflict(res: &Resource, name: &str) -> Self {
        Self::conflict_with(
            res,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }

    /// 409 Conflict with a specific explanation.
    pub fn conflict_with(res: &Resource, name: &str, why: &str) -> Self {
        Self::new(
            409,
            "Conflict",
            format!("Operation cannot be fulfilled on {} \"{name}\": {why}", res.qualified()),
        )
        .with_details(details(res, name))
    }

    /// 409 Conflict of a server-side apply: one `FieldManagerConflict` cause per field.
    pub fn apply_conflicts(message: &str, conflicts: &[crate::managed::Conflict]) -> Self {
        let causes: Vec<Value> = conflicts
            .iter()
            .map(|c| {
                json!({"type": "FieldManagerConflict",
                       "message": format!("conflict with {}", c.owner()),
                       "field": c.field})
            })
            .collect();
        Self::new(409, "Conflict", message).with_details(json!({"causes": causes}))
    }

    /// 410 Gone (watch or list from a compacted resourceVersion).
    pub fn gone(message: impl Into<String>) -> Self {
        Self::new(410, "Expired", message)
    }

    /// 413 RequestEntityTooLarge.
    pub fn too_large() -> Self {
        Self::new(
            413,
            "RequestEntityTooLarge",
            "Request entity too large: limit is 3145728",
        )
    }

    /// 415 UnsupportedMediaType.
    pub fn unsupported_media_type(content_type: &str) -> Self {
        Self::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf (got {content_type:?})"
            ),
        )
    }

    /// 415 for a strategic merge patch of a custom resource (it has no patch strategy).
    pub fn no_strategic_merge() -> Self {
        Self::new(
            415,
            "UnsupportedMediaType",
            "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml".to_string(),
        )
    }

    /// 422 Invalid with field causes, worded as upstream:
    /// `DaemonSet.apps "x" is invalid: spec.selector: Required value`.
    pub fn invalid(res: &Resource, name: &str, errors: &[FieldError]) -> Self {
        let mut d = details(res, name);
        d["kind"] = json!(res.kind);
        Self::invalid_with(&res.qualified_kind(), d, name, errors)
    }

    /// 422 Invalid for request options (`DeleteOptions`, `ListOptions`, ... of meta.k8s.io):
    /// `DeleteOptions.meta.k8s.io "" is invalid: dryRun: Unsupported value: ...`.
    pub fn invalid_options(kind: &str, errors: &[FieldError]) -> Self {
        let d = json!({"name": "", "group": "meta.k8s.io", "kind": kind});
        Self::invalid_with(&format!("{kind}.meta.k8s.io"), d, "", errors)
    }

    /// 422 Invalid for the options of a core subresource (`PodLogOptions`, ...):
    /// `PodLogOptions "web" is invalid: tailLines: Invalid value: -1: ...`.
    pub fn invalid_core_options(kind: &str, name: &str, errors: &[FieldError]) -> Self {
        Self::invalid_with(kind, json!({"name": name, "kind": kind}), name, errors)
    }

    pub(crate) fn invalid_with(qualified_kind: &str, mut d: Value, name: &str, errors: &[FieldError]) -> Self {
        let messages: Vec<String> = errors.iter().map(FieldError::message).collect();
        let joined = if messages.len() == 1 {
            messages[0].clone()
        } else {
            format!("[{}]", messages.join(", "))
        };
        let causes: Vec<Value> = errors
            .iter()
            .map(|e| {
                let msg = e.message();
                let detail = msg.strip_prefix(&format!("{}: ", e.field)).unwrap_or(&msg).to_string();
                json!({"reason": e.kind.cause_reason(), "message": detail, "field": e.field})
            })
            .collect();
        d["causes"] = json!(causes);
        Self::new(
            422,
            "Invalid",
            format!("{qualified_kind} \"{name}\" is invalid: {joined}"),
        )
        .with_details(d)
    }

    /// 422 Invalid without field causes (e.g. an unsupported `sendInitialEvents`).
    pub fn invalid_message(message: impl Into<String>) -> Self {
        Self::new(422, "Invalid", message)
    }

    /// 429 TooManyRequests.
    pub fn too_many_requests(message: impl Into<String>) -> Self {
        Self::new(429, "TooManyRequests", message)
    }

    /// 500 InternalError from any error.
    pub fn internal_from(e: impl std::fmt::Display) -> Self {
        Self::internal(e.to_string())
    }

    /// 500 InternalError.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(
            500,
            "InternalError",
            format!("Internal error occurred: {}", message.into()),
        )
    }

    /// 503 ServiceUnavailable.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(503, "ServiceUnavailable", message)
    }

    /// The `metav1.Status` body.
    pub fn to_status(&self) -> Value {
        let mut s = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(d) = &self.details {
            s["details"] = d.clone();
        }
        s
    }
}

fn details(res: &Resource, name: &str) -> Value {
    let mut d = json!({"name": name, "kind": res.plural});
    if !res.group.is_empty() {
        d["group"] = json!(res.group);
    }
    d
}

impl From<shoal_store::Error> for ApiError {
    fn from(e: shoal_store::Error) -> Self {
        match e {
            shoal_store::Error::Compacted { requested, compacted } => ApiError::gone(format!(
                "The resourceVersion for the provided list is too old (requested {requested}, compacted {compacted})."
            )),
            shoal_store::Error::FutureRevision { requested, current } => ApiError::new(
                504,
                "Timeout",
                format!("Timeout: Too large resource version: {requested}, current: {current}"),
            )
            .with_details(json!({"causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}], "retryAfterSeconds": 1})),
            // No Retry-After: client-go would retry for a minute before the user hears why.
            shoal_store::Error::Unavailable(why) => {
                ApiError::unavailable(format!("The storage is unavailable now, try again: {why}"))
            }
            other => ApiError::internal(other.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&self.to_status()).unwrap_or_default();
        let mut resp = (
            StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            body,
        )
            .into_response();
        resp.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(secs) = self.details.as_ref().and_then(|d| d["retryAfterSeconds"].as_u64())
            && let Ok(v) = HeaderValue::from_str(&secs.to_string())
        {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        resp
    }
}
