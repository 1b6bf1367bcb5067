//! Field errors: what validation reports, turned into a Kubernetes `Status` by the server.

use serde_json::Value;

/// The type of a field error, as upstream's `field.ErrorType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorType {
    /// "Required value"
    Required,
    /// "Invalid value"
    Invalid,
    /// "Unsupported value"
    NotSupported,
    /// "Forbidden"
    Forbidden,
    /// "Duplicate value"
    Duplicate,
    /// "Too long"
    TooLong,
    /// "Too many"
    TooMany,
    /// "Not found"
    NotFound,
}

impl ErrorType {
    /// The `reason` used in `Status.details.causes[].reason` (e.g. `FieldValueInvalid`).
    pub fn cause_reason(self) -> &'static str {
        match self {
            ErrorType::Required => "FieldValueRequired",
            ErrorType::Invalid => "FieldValueInvalid",
            ErrorType::NotSupported => "FieldValueNotSupported",
            ErrorType::Forbidden => "FieldValueForbidden",
            ErrorType::Duplicate => "FieldValueDuplicate",
            ErrorType::TooLong => "FieldValueTooLong",
            ErrorType::TooMany => "FieldValueTooMany",
            ErrorType::NotFound => "FieldValueNotFound",
        }
    }

    /// The phrase upstream prints (e.g. `Invalid value`).
    pub fn phrase(self) -> &'static str {
        match self {
            ErrorType::Required => "Required value",
            ErrorType::Invalid => "Invalid value",
            ErrorType::NotSupported => "Unsupported value",
            ErrorType::Forbidden => "Forbidden",
            ErrorType::Duplicate => "Duplicate value",
            ErrorType::TooLong => "Too long",
            ErrorType::TooMany => "Too many",
            ErrorType::NotFound => "Not found",
        }
    }
}

/// One validation failure at a field path such as `spec.template.spec.restartPolicy`.
#[derive(Clone, Debug, PartialEq)]
pub struct FieldError {
    /// What kind of failure.
    pub kind: ErrorType,
    /// Dotted path with `[i]` indexes and `[key]` map keys, as upstream prints it.
    pub field: String,
    /// The offending value, when the error type shows one (Invalid, NotSupported, Duplicate).
    pub value: Option<Value>,
    /// Upstream's detail text.
    pub detail: String,
}

impl FieldError {
    /// `Required value` at `field`.
    pub fn required(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            kind: ErrorType::Required,
            field: field.into(),
            value: None,
            detail: detail.into(),
        }
    }
    /// `Invalid value` at `field`.
    pub fn invalid(field: impl Into<String>, value: Value, detail: impl Into<String>) -> Self {
        Self {
            kind: ErrorType::Invalid,
            field: field.into(),
            value: Some(value),
            detail: detail.into(),
        }
    }
    /// `Unsupported value` at `field`; `supported` lists the accepted values.
    pub fn not_supported(field: impl Into<String>, value: Value, supported: &[&str]) -> Self {
        let list = supported
            .iter()
            .map(|s| format!("\"{s}\""))
            .collect::<Vec<_>>()
            .join(", ");
        Self {
            kind: ErrorType::NotSupported,
            field: field.into(),
            value: Some(value),
            detail: format!("supported values: {list}"),
        }
    }
    /// `Forbidden` at `field`.
    pub fn forbidden(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            kind: ErrorType::Forbidden,
            field: field.into(),
            value: None,
            detail: detail.into(),
        }
    }
    /// `Duplicate value` at `field`.
    pub fn duplicate(field: impl Into<String>, value: Value) -> Self {
        Self {
            kind: ErrorType::Duplicate,
            field: field.into(),
            value: Some(value),
            detail: String::new(),
        }
    }

    /// The message for this error alone, as upstream's `field.Error.Error()`:
    /// `spec.x: Invalid value: "v": detail`.
    pub fn message(&self) -> String {
        let mut s = format!("{}: {}", self.field, self.kind.phrase());
        if let Some(v) = &self.value {
            s.push_str(": ");
            s.push_str(&go_value(v));
        }
        if !self.detail.is_empty() {
            s.push_str(": ");
            s.push_str(&self.detail);
        }
        s
    }
}

/// Renders a value the way upstream's error messages print Go values: strings quoted,
/// numbers and booleans bare, objects as `map[string]string{"k":"v"}` when all values are
/// strings, everything else as JSON.
pub fn go_value(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Null => "null".to_string(),
        Value::Object(m) if m.values().all(Value::is_string) => {
            let inner = m
                .iter()
                .map(|(k, v)| format!("{k:?}:{:?}", v.as_str().unwrap_or_default()))
                .collect::<Vec<_>>()
                .join(", ");
            format!("map[string]string{{{inner}}}")
        }
        other => other.to_string(),
    }
}
