//! Response encodings: lists spliced from pre-encoded objects, and `meta.k8s.io/v1` Tables.

use std::sync::Arc;

use bytes::Bytes;
use serde_json::{Value, json};
use shoal_api::catalogue::Resource;

use crate::cache::Entry;

/// `Content-Type` of Table responses.
pub const TABLE_CONTENT_TYPE: &str = "application/json;as=Table;v=v1;g=meta.k8s.io";

/// True when the `Accept` header asks for a Table (kubectl get).
pub fn wants_table(accept: Option<&str>) -> bool {
    accept.is_some_and(|a| {
        a.split(',').any(|part| {
            let p = part.replace(' ', "");
            p.contains("as=Table") && p.contains("g=meta.k8s.io")
        })
    })
}

/// A `<Kind>List` body built from already-encoded objects.
/// A list's `metadata`: the revision served, and for a page, the continue token and how
/// many items remain after it (when the list has no selectors, as upstream).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ListMeta {
    /// The revision the list was served at.
    pub revision: i64,
    /// The token of the next page.
    pub cont: Option<String>,
    /// Items after this page.
    pub remaining: Option<i64>,
}

impl ListMeta {
    /// The list's `metadata`.
    pub fn to_json(&self) -> Value {
        let mut meta = json!({"resourceVersion": self.revision.to_string()});
        if let Some(c) = &self.cont {
            meta["continue"] = json!(c);
        }
        if let Some(n) = self.remaining {
            meta["remainingItemCount"] = json!(n);
        }
        meta
    }
}

pub fn list_bytes(res: &Resource, items: &[Arc<Entry>], list: &ListMeta) -> Bytes {
    let meta = list.to_json();
    let head = format!(
        "{{\"kind\":\"{}List\",\"apiVersion\":\"{}\",\"metadata\":{},\"items\":[",
        res.kind,
        res.api_version(),
        meta
    );
    let mut buf = Vec::with_capacity(head.len() + items.iter().map(|e| e.json_len() + 1).sum::<usize>() + 2);
    buf.extend_from_slice(head.as_bytes());
    for (i, e) in items.iter().enumerate() {
        if i > 0 {
            buf.push(b',');
        }
        e.write_json(&mut buf);
    }
    buf.extend_from_slice(b"]}");
    Bytes::from(buf)
}

/// A Table of `objs` with the kind's upstream columns. Rows carry the object's metadata
/// (`includeObject=Metadata`, the default) or the whole object.
pub fn table(res: &Resource, objs: &[Value], list: &ListMeta, full_objects: bool) -> Value {
    let now = jiff::Timestamp::now();
    let rows: Vec<Value> = objs
        .iter()
        .map(|o| {
            let object = if full_objects {
                o.clone()
            } else {
                json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": o["metadata"]})
            };
            json!({"cells": shoal_api::table::row_cells(res.group, res.kind, o, now), "object": object})
        })
        .collect();
    let meta = list.to_json();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": meta,
        "columnDefinitions": shoal_api::table::column_definitions(res.group, res.kind),
        "rows": rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_accept_is_recognised() {
        assert!(wants_table(Some(
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
        )));
        assert!(wants_table(Some("application/json; as=Table; v=v1; g=meta.k8s.io")));
        assert!(!wants_table(Some("application/json")));
        assert!(!wants_table(None));
    }

    #[test]
    fn lists_splice_encoded_items() {
        let res = shoal_api::catalogue::find("", "v1", "configmaps").unwrap();
        let e = Arc::new(Entry::new("k".into(), &json!({"a": 1, "metadata": {"name": "n"}}), 3));
        let list = ListMeta {
            revision: 7,
            cont: Some("tok".into()),
            remaining: Some(3),
        };
        let b = list_bytes(res, &[e.clone(), e], &list);
        let v: Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(v["kind"], "ConfigMapList");
        assert_eq!(
            v["metadata"],
            json!({"resourceVersion": "7", "continue": "tok", "remainingItemCount": 3})
        );
        let item = json!({"a": 1, "metadata": {"name": "n", "resourceVersion": "3"}});
        assert_eq!(v["items"], json!([item, item]));
    }
}
