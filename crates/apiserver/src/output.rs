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

/// Objects per chunk of a streamed list.
const LIST_CHUNK: usize = 512;
/// Rows printed per chunk of a streamed Table.
const TABLE_CHUNK: usize = 256;

/// `head`, then `items` written by `write` with commas between them, `per_chunk` to a
/// chunk, then `]}`: a JSON body produced as the client reads it, never whole in memory.
fn chunked(
    head: String,
    items: Vec<Arc<Entry>>,
    per_chunk: usize,
    write: impl Fn(&Entry, &mut Vec<u8>) + Send + 'static,
) -> impl futures::Stream<Item = Bytes> + Send + 'static {
    let chunks = items.len().div_ceil(per_chunk);
    let body = (0..chunks).map(move |c| {
        let start = c * per_chunk;
        let part = &items[start..(start + per_chunk).min(items.len())];
        let mut buf = Vec::with_capacity(part.iter().map(|e| e.json_len() + 1).sum());
        for (i, e) in part.iter().enumerate() {
            if start + i > 0 {
                buf.push(b',');
            }
            write(e, &mut buf);
        }
        Bytes::from(buf)
    });
    let chunks = std::iter::once(Bytes::from(head))
        .chain(body)
        .chain(std::iter::once(Bytes::from_static(b"]}")));
    futures::stream::iter(chunks)
}

/// A `<Kind>List` body spliced from the objects' stored encodings, streamed in chunks as
/// the client reads, so a large list is never copied whole into one buffer.
pub fn list_stream(
    res: &'static Resource,
    items: Vec<Arc<Entry>>,
    list: &ListMeta,
) -> impl futures::Stream<Item = Bytes> + Send + 'static {
    let head = format!(
        "{{\"kind\":\"{}List\",\"apiVersion\":\"{}\",\"metadata\":{},\"items\":[",
        res.kind,
        res.api_version(),
        list.to_json()
    );
    chunked(head, items, LIST_CHUNK, |e, buf| e.write_json(buf))
}

/// A Table of `items`, as [`table`] makes it, streamed in chunks as the client reads: each
/// object is decoded, printed and dropped in turn, so a LIST of 50,000 pods holds one
/// chunk of rows, never the decoded list. Full objects (`includeObject=Object`) are copied
/// from their stored encoding, not re-encoded.
pub fn table_stream(
    res: &'static Resource,
    items: Vec<Arc<Entry>>,
    list: &ListMeta,
    full_objects: bool,
) -> impl futures::Stream<Item = Bytes> + Send + 'static {
    let now = jiff::Timestamp::now();
    let head = format!(
        "{{\"kind\":\"Table\",\"apiVersion\":\"meta.k8s.io/v1\",\"metadata\":{},\"columnDefinitions\":{},\"rows\":[",
        list.to_json(),
        Value::Array(shoal_api::table::column_definitions(res.group, res.kind))
    );
    chunked(head, items, TABLE_CHUNK, move |e, buf| {
        // Only what the columns read is decoded (never the managed fields, which are most of
        // what a whole decode builds); the object's metadata is copied from its stored
        // encoding, managed fields and all.
        let o = e.obj_in(shoal_api::table::row_shape(res.group, res.kind));
        let cells = shoal_api::table::row_cells(res.group, res.kind, &o, now);
        buf.extend_from_slice(b"{\"cells\":");
        let _ = serde_json::to_writer(&mut *buf, &cells);
        buf.extend_from_slice(b",\"object\":");
        if full_objects {
            e.write_json(buf);
        } else {
            buf.extend_from_slice(
                b"{\"kind\":\"PartialObjectMetadata\",\"apiVersion\":\"meta.k8s.io/v1\",\"metadata\":",
            );
            if !e.write_metadata(buf) {
                let _ = serde_json::to_writer(&mut *buf, &o["metadata"]);
            }
            buf.push(b'}');
        }
        buf.push(b'}');
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

    #[tokio::test]
    async fn a_streamed_table_is_the_table() {
        use futures::StreamExt;
        let res = shoal_api::catalogue::find("", "v1", "configmaps").unwrap();
        let objs: Vec<Value> = (0..600)
            .map(|i| {
                json!({"apiVersion": "v1", "kind": "ConfigMap",
                            "metadata": {"name": format!("cm-{i:03}"), "creationTimestamp": "2026-01-01T00:00:00Z"},
                            "data": {"a": "b"}})
            })
            .collect();
        let entries: Vec<Arc<Entry>> = objs
            .iter()
            .enumerate()
            .map(|(i, o)| Arc::new(Entry::new(format!("k{i}"), o, 10 + i as i64)))
            .collect();
        let list = ListMeta {
            revision: 900,
            cont: None,
            remaining: None,
        };
        for full in [false, true] {
            let chunks: Vec<Bytes> = table_stream(res, entries.clone(), &list, full).collect().await;
            assert!(chunks.len() > 3, "streamed in chunks, not at once");
            let body: Vec<u8> = chunks.concat();
            let streamed: Value = serde_json::from_slice(&body).unwrap();
            let whole: Vec<Value> = entries.iter().map(|e| e.obj()).collect();
            // Ages are computed from the time of printing: compare all but the age column.
            let without_ages = |mut t: Value| {
                for row in t["rows"].as_array_mut().unwrap() {
                    row["cells"][2] = Value::Null;
                }
                t
            };
            let got = without_ages(streamed);
            assert_eq!(got, without_ages(table(res, &whole, &list, full)));
            assert_eq!(got["rows"].as_array().unwrap().len(), 600);
        }
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
        let body = |n: usize| -> Vec<Bytes> {
            let items: Vec<Arc<Entry>> = std::iter::repeat_n(e.clone(), n).collect();
            futures::executor::block_on_stream(Box::pin(list_stream(res, items, &list))).collect()
        };
        let v: Value = serde_json::from_slice(&body(2).concat()).unwrap();
        let many = body(1200);
        assert_eq!(many.len(), 5, "head, three chunks, tail");
        let all: Value = serde_json::from_slice(&many.concat()).unwrap();
        assert_eq!(all["items"].as_array().unwrap().len(), 1200);
        let empty: Value = serde_json::from_slice(&body(0).concat()).unwrap();
        assert_eq!(empty["items"], json!([]));
        assert_eq!(v["kind"], "ConfigMapList");
        assert_eq!(
            v["metadata"],
            json!({"resourceVersion": "7", "continue": "tok", "remainingItemCount": 3})
        );
        let item = json!({"a": 1, "metadata": {"name": "n", "resourceVersion": "3"}});
        assert_eq!(v["items"], json!([item, item]));
    }
}
