//! WATCH: a newline-delimited JSON stream of events from the watch cache, with bookmarks,
//! initial events (`sendInitialEvents`), selectors and Table-formatted events.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::{Value, json};
use shoal_api::catalogue::Resource;
use shoal_api::selector::{FieldSelector, LabelSelector};
use tokio::sync::{broadcast, mpsc};

use crate::cache::{CacheEvent, Entry, EventType, watch_line};
use crate::request::{Params, Target};
use crate::rest::{matches_entry, parse_rv, selectors};
use crate::status::{ApiError, ApiResult};
use crate::{ApiServer, keys};

const BOOKMARK_EVERY: Duration = Duration::from_secs(30);

/// A watch's filter and output format.
struct Watcher {
    res: &'static Resource,
    prefix: String,
    labels: Option<LabelSelector>,
    fields: Option<FieldSelector>,
    table: bool,
    bookmarks: bool,
    tx: mpsc::Sender<Bytes>,
    /// Set when a webhook converts the objects to the version watched: each event's object
    /// is converted on its way out (see [`Watcher::finish`]).
    converter: Option<Arc<ApiServer>>,
}

impl Watcher {
    fn passes(&self, e: &Entry) -> bool {
        e.key.starts_with(&self.prefix) && matches_entry(self.res, &self.labels, &self.fields, e)
    }

    fn encode(&self, kind: EventType, entry: &Entry, pre_encoded: Option<&Bytes>) -> Bytes {
        // Another version of a resource stored in one: each object is converted (here, or in
        // `finish` by a webhook).
        if !self.table && self.converter.is_none() && crate::conversion::storage_of(self.res).is_some() {
            let obj = crate::conversion::from_storage(self.res, entry.obj());
            return watch_line(kind.as_str(), &serde_json::to_vec(&obj).unwrap_or_default());
        }
        if self.table {
            let obj = entry.obj();
            let list = crate::output::ListMeta {
                revision: entry.mod_revision,
                ..Default::default()
            };
            let table = crate::output::table(self.res, std::slice::from_ref(&obj), &list, false);
            return watch_line(kind.as_str(), &serde_json::to_vec(&table).unwrap_or_default());
        }
        match pre_encoded {
            Some(line) => line.clone(),
            None => entry.watch_line(kind.as_str()),
        }
    }

    /// A line as it goes out: its object converted by the definition's webhook when one
    /// converts this version (a failed conversion ends the watch with its error).
    async fn finish(&self, line: Bytes) -> Option<Bytes> {
        let Some(server) = &self.converter else {
            return Some(line);
        };
        let Ok(mut ev) = serde_json::from_slice::<Value>(&line) else {
            return Some(line);
        };
        let kind = ev["type"].as_str().unwrap_or_default().to_string();
        if !matches!(kind.as_str(), "ADDED" | "MODIFIED" | "DELETED") {
            return Some(line);
        }
        match server.present_one(self.res, ev["object"].take()).await {
            Ok(obj) => Some(watch_line(&kind, &serde_json::to_vec(&obj).unwrap_or_default())),
            Err(e) => {
                let status = serde_json::to_vec(&e.to_status()).unwrap_or_default();
                let _ = self.tx.send(watch_line("ERROR", &status)).await;
                None
            }
        }
    }

    /// The line to send for a cache event, if this watcher sees it.
    fn translate(&self, ev: &CacheEvent) -> Option<Bytes> {
        let now = self.passes(&ev.entry);
        let before = ev.prev.as_ref().is_some_and(|p| self.passes(p));
        match (ev.kind, before, now) {
            (EventType::Deleted, _, true) => Some(self.encode(EventType::Deleted, &ev.entry, ev.line.as_ref())),
            (EventType::Deleted, _, false) => None,
            (_, true, true) => Some(self.encode(ev.kind, &ev.entry, ev.line.as_ref())),
            (_, false, true) => Some(self.encode(
                EventType::Added,
                &ev.entry,
                ev.line.as_ref().filter(|_| ev.kind == EventType::Added),
            )),
            (_, true, false) => {
                // The object left the selection: a DELETED of its previous state at the new revision.
                let prev = ev.prev.as_ref()?;
                let e = Entry::new(prev.key.clone(), &prev.obj(), ev.revision());
                Some(self.encode(EventType::Deleted, &e, None))
            }
            (_, false, false) => None,
        }
    }

    fn bookmark(&self, rev: i64, initial_end: bool) -> Bytes {
        let mut meta = json!({"resourceVersion": rev.to_string()});
        if initial_end {
            meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let obj = json!({"kind": self.res.kind, "apiVersion": self.res.api_version(), "metadata": meta});
        watch_line("BOOKMARK", &serde_json::to_vec(&obj).unwrap_or_default())
    }
}

impl ApiServer {
    /// Starts a watch; returns the receiver of encoded lines for the response body.
    pub fn watch(self: &Arc<Self>, t: &Target, p: &Params, table: bool) -> ApiResult<mpsc::Receiver<Bytes>> {
        let (labels, fields) = selectors(t.res, p)?;
        let send_initial = p.get("sendInitialEvents").map(|v| v == "true");
        let bookmarks = p.flag("allowWatchBookmarks");
        if send_initial.is_some() {
            if p.get("resourceVersionMatch") != Some("NotOlderThan") {
                return Err(ApiError::invalid_message(
                    "ListOptions.meta.k8s.io \"\" is invalid: resourceVersionMatch: Forbidden: sendInitialEvents requires setting resourceVersionMatch to NotOlderThan",
                ));
            }
            if !bookmarks && send_initial == Some(true) {
                return Err(ApiError::invalid_message(
                    "ListOptions.meta.k8s.io \"\" is invalid: allowWatchBookmarks: Forbidden: sendInitialEvents requires setting allowWatchBookmarks to true",
                ));
            }
        }
        let mut prefix = keys::collection(t.res, t.namespace.as_deref());
        if let Some(name) = &t.name {
            prefix = keys::object(t.res, t.namespace.as_deref(), name);
        }
        let timeout = p
            .int("timeoutSeconds")?
            .filter(|s| *s > 0)
            .map(|s| Duration::from_secs(s as u64))
            .unwrap_or(Duration::from_secs(1800));
        let (tx, rx) = mpsc::channel(1024);
        let w = Watcher {
            res: t.res,
            prefix: prefix.clone(),
            labels,
            fields,
            table,
            bookmarks,
            tx,
            converter: (!table
                && crate::conversion::storage_of(t.res).is_some()
                && self.conversion_hook(t.res).is_some())
            .then(|| self.clone()),
        };
        let rv = p.get("resourceVersion");
        let initial = matches!((send_initial, rv), (Some(true), _) | (None, None | Some("0")));
        let (mut replay, sub, after, snapshot_end) = if initial {
            let (objs, sub) = self.cache.subscribe_with_snapshot(&prefix);
            let rev = sub.revision;
            let lines: Vec<Bytes> = objs
                .iter()
                .filter(|e| w.passes(e))
                .map(|e| w.encode(EventType::Added, e, None))
                .collect();
            (lines, sub, rev, send_initial == Some(true))
        } else {
            let after = match rv {
                Some(v) => parse_rv(v)?,
                None => self.cache.revision(),
            };
            match self.cache.subscribe(after) {
                Some(sub) => {
                    let lines = sub.replay.iter().filter_map(|ev| w.translate(ev)).collect();
                    let last = after.max(sub.replay.last().map(|e| e.revision()).unwrap_or(after));
                    (lines, sub, last, false)
                }
                None => {
                    let status = ApiError::gone(format!(
                        "too old resource version: {after} ({})",
                        self.cache.oldest_watchable()
                    ))
                    .to_status();
                    let line = watch_line("ERROR", &serde_json::to_vec(&status).unwrap_or_default());
                    let _ = w.tx.try_send(line);
                    return Ok(rx);
                }
            }
        };
        if snapshot_end {
            replay.push(w.bookmark(after, true));
        }
        let metrics = self.metrics.clone();
        tokio::spawn(async move {
            metrics.watch_started();
            run(w, replay, sub.live, after, timeout).await;
            metrics.watch_ended();
        });
        Ok(rx)
    }
}

async fn run(
    w: Watcher,
    replay: Vec<Bytes>,
    mut live: broadcast::Receiver<Arc<CacheEvent>>,
    mut after: i64,
    timeout: Duration,
) {
    for line in replay {
        let Some(line) = w.finish(line).await else { return };
        if w.tx.send(line).await.is_err() {
            return;
        }
    }
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);
    let mut ticker = tokio::time::interval(BOOKMARK_EVERY);
    ticker.tick().await;
    loop {
        tokio::select! {
            _ = &mut deadline => return,
            _ = w.tx.closed() => return,
            _ = ticker.tick() => {
                if w.bookmarks && w.tx.send(w.bookmark(after, false)).await.is_err() {
                    return;
                }
            }
            ev = live.recv() => match ev {
                Ok(ev) => {
                    if ev.revision() <= after {
                        continue;
                    }
                    after = ev.revision();
                    let Some(line) = w.translate(&ev) else { continue };
                    let Some(line) = w.finish(line).await else { return };
                    if w.tx.send(line).await.is_err() {
                        return;
                    }
                }
                // Too slow: end the watch; the client resumes from its last revision.
                Err(_) => return,
            }
        }
    }
}
