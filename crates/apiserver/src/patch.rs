//! Patch types: JSON patch, JSON merge patch, strategic merge patch and apply patches.

use serde_json::Value;
use shoal_api::catalogue::Resource;

use crate::status::{ApiError, ApiResult};

/// The patch types kubectl and client libraries send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatchType {
    /// `application/json-patch+json` (RFC 6902).
    Json,
    /// `application/merge-patch+json` (RFC 7386).
    Merge,
    /// `application/strategic-merge-patch+json`.
    Strategic,
    /// `application/apply-patch+yaml` (server-side apply; JSON bodies only).
    Apply,
}

impl PatchType {
    /// The patch type for a `Content-Type`, or 415.
    pub fn from_content_type(ct: &str) -> ApiResult<PatchType> {
        let base = ct.split(';').next().unwrap_or("").trim();
        match base {
            "application/json-patch+json" => Ok(PatchType::Json),
            "application/merge-patch+json" => Ok(PatchType::Merge),
            "application/strategic-merge-patch+json" => Ok(PatchType::Strategic),
            "application/apply-patch+yaml" | "application/apply-patch+cbor" => Ok(PatchType::Apply),
            _ => Err(ApiError::unsupported_media_type(ct)),
        }
    }
}

/// Applies a JSON, merge or strategic patch to `original`.
pub fn apply(res: &Resource, original: &Value, patch: &Value, kind: PatchType) -> ApiResult<Value> {
    match kind {
        PatchType::Json => {
            let ops: json_patch::Patch = serde_json::from_value(patch.clone()).map_err(|e| {
                ApiError::bad_request(format!(
                    "the server rejected our request due to an error in our request: {e}"
                ))
            })?;
            let mut doc = original.clone();
            json_patch::patch(&mut doc, &ops).map_err(|e| {
                ApiError::invalid_message(format!(
                    "the server rejected our request due to an error in our request: {e}"
                ))
            })?;
            Ok(doc)
        }
        PatchType::Merge => {
            if !patch.is_object() {
                return Err(ApiError::bad_request("merge patch body must be a JSON object"));
            }
            let mut doc = original.clone();
            json_patch::merge(&mut doc, patch);
            Ok(doc)
        }
        PatchType::Strategic | PatchType::Apply => {
            if !patch.is_object() {
                return Err(ApiError::bad_request(
                    "strategic merge patch body must be a JSON object",
                ));
            }
            let def = shoal_api::schema::definition_name(res.group, res.version, res.kind).unwrap_or("");
            shoal_api::smp::strategic_merge(original, patch, def).map_err(|e| ApiError::bad_request(e.to_string()))
        }
    }
}
