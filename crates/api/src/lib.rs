//! The Kubernetes API as data: the resource catalogue, defaulting, validation, label and
//! field selectors, table printers, JSON schemas, OpenAPI documents and strategic merge
//! patch. Pure: no I/O, no clocks (callers pass `now`).
//!
//! Objects are handled as `serde_json::Value` at the edges (the API server stores and serves
//! JSON) and decoded into k8s-openapi types where a kind needs typed logic.

pub mod catalogue;
pub mod defaults;
pub mod field;
pub mod network;
pub mod openapi;
pub mod scheduling;
pub mod schema;
pub mod selector;
pub mod smp;
pub mod table;
pub mod validation;
