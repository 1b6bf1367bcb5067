//! Watch streams: replay from a backend's history, then live events from the hub, with no gap
//! and no duplicate in between.

use std::sync::Arc;

use tokio::sync::broadcast::{self, error::RecvError, error::TryRecvError};

use crate::{Event, Result, Revision, WatchStream};

/// The events of one write (or one group-committed batch), shared by every watcher.
pub(crate) type Batch = Arc<Vec<Event>>;

/// Events fetched from history per replay step.
pub(crate) const REPLAY_PAGE: usize = 512;

/// Soft cap on the events gathered into one live batch.
const LIVE_BATCH: usize = 1024;

/// One step of a history replay.
#[derive(Debug)]
pub(crate) struct Replay {
    /// Every matching event with a revision in `(after, through]`, ascending.
    pub(crate) events: Vec<Event>,
    /// How far the step got; greater than `after` when `after < upto`.
    pub(crate) through: Revision,
}

/// A backend's history of committed events, read for watch replay.
#[async_trait::async_trait]
pub(crate) trait History: Send + Sync + 'static {
    /// Events for keys starting with `prefix` with revisions in `(after, upto]`, ascending,
    /// stopping early after at most `limit` (at least 1) events. Fails with `Compacted` when
    /// history after `after` is no longer complete.
    async fn replay(self: Arc<Self>, prefix: String, after: Revision, upto: Revision, limit: usize) -> Result<Replay>;
}

/// Builds the stream of a watch subscribed to the hub (`live`) when the current revision was
/// `subscribed_at`: events in `(after, subscribed_at]` come from `history`, later ones from
/// `live`.
pub(crate) fn stream(
    history: Arc<dyn History>,
    prefix: String,
    after: Revision,
    subscribed_at: Revision,
    live: broadcast::Receiver<Batch>,
) -> WatchStream {
    let watcher = Watcher {
        history,
        prefix,
        live,
        replay_upto: subscribed_at,
        delivered: after,
        received: subscribed_at,
        ended: false,
    };
    Box::pin(futures::stream::unfold(watcher, |mut watcher| async move {
        let batch = watcher.next_batch().await?;
        Some((batch, watcher))
    }))
}

struct Watcher {
    history: Arc<dyn History>,
    prefix: String,
    live: broadcast::Receiver<Batch>,
    /// History is replayed up to and including this revision; the hub delivers the rest.
    replay_upto: Revision,
    /// Every matching event up to this revision has been delivered.
    delivered: Revision,
    /// The last revision received from the hub (every revision passes through the hub, in
    /// order, so the next one must follow it).
    received: Revision,
    /// Set when the stream must end after the batch being returned.
    ended: bool,
}

impl Watcher {
    async fn next_batch(&mut self) -> Option<Vec<Event>> {
        if self.ended {
            return None;
        }
        while self.delivered < self.replay_upto {
            let step = Arc::clone(&self.history)
                .replay(self.prefix.clone(), self.delivered, self.replay_upto, REPLAY_PAGE)
                .await;
            match step {
                Ok(step) if step.through > self.delivered => {
                    self.delivered = step.through;
                    if !step.events.is_empty() {
                        return Some(step.events);
                    }
                }
                Ok(step) => {
                    tracing::error!(
                        through = step.through,
                        "watch replay made no progress; ending the watch"
                    );
                    return None;
                }
                Err(error) => {
                    tracing::debug!(%error, prefix = %self.prefix, "watch replay failed; ending the watch");
                    return None;
                }
            }
        }
        loop {
            let first = match self.live.recv().await {
                Ok(batch) => batch,
                Err(RecvError::Lagged(missed)) => {
                    tracing::debug!(missed, prefix = %self.prefix, "watcher fell behind; ending the watch");
                    return None;
                }
                Err(RecvError::Closed) => return None,
            };
            let mut out = Vec::new();
            self.take(&first, &mut out);
            while !self.ended && out.len() < LIVE_BATCH {
                match self.live.try_recv() {
                    Ok(batch) => self.take(&batch, &mut out),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Lagged(missed)) => {
                        // Deliver what came before the gap, then end.
                        tracing::debug!(missed, prefix = %self.prefix, "watcher fell behind; ending the watch");
                        self.ended = true;
                    }
                    Err(TryRecvError::Closed) => break,
                }
            }
            if !out.is_empty() {
                return Some(out);
            }
            if self.ended {
                return None;
            }
        }
    }

    /// Moves the matching, not yet delivered events of `batch` to `out`. Ends the watch
    /// (after `out` is delivered) if a revision is missing.
    fn take(&mut self, batch: &[Event], out: &mut Vec<Event>) {
        for event in batch {
            let revision = event.kv.mod_revision;
            if revision <= self.received {
                continue;
            }
            if revision != self.received + 1 {
                tracing::error!(
                    expected = self.received + 1,
                    got = revision,
                    "watch hub skipped revisions; ending the watch"
                );
                self.ended = true;
                return;
            }
            self.received = revision;
            if revision > self.delivered {
                self.delivered = revision;
                if event.kv.key.starts_with(&self.prefix) {
                    out.push(event.clone());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Duration;

    use bytes::Bytes;
    use futures::StreamExt;

    use super::*;
    use crate::{Error, EventKind, KeyValue};

    /// History holding a fixed list of events, recording the replay calls it receives.
    struct Fixed {
        events: Vec<Event>,
        calls: Mutex<Vec<(Revision, Revision)>>,
    }

    #[async_trait::async_trait]
    impl History for Fixed {
        async fn replay(
            self: Arc<Self>,
            prefix: String,
            after: Revision,
            upto: Revision,
            limit: usize,
        ) -> Result<Replay> {
            self.calls.lock().expect("test lock").push((after, upto));
            let mut events = Vec::new();
            for event in &self.events {
                let revision = event.kv.mod_revision;
                if revision > after && revision <= upto && event.kv.key.starts_with(&prefix) {
                    events.push(event.clone());
                    if events.len() == limit {
                        return Ok(Replay {
                            events,
                            through: revision,
                        });
                    }
                }
            }
            Ok(Replay { events, through: upto })
        }
    }

    fn put(key: &str, revision: Revision) -> Event {
        Event {
            kind: EventKind::Put,
            kv: KeyValue {
                key: key.to_string(),
                value: Bytes::new(),
                create_revision: revision,
                mod_revision: revision,
            },
            prev: None,
        }
    }

    fn revisions(batch: &[Event]) -> Vec<Revision> {
        batch.iter().map(|e| e.kv.mod_revision).collect()
    }

    async fn next(stream: &mut WatchStream) -> Option<Vec<Event>> {
        tokio::time::timeout(Duration::from_secs(5), stream.next())
            .await
            .expect("watch stalled")
    }

    #[tokio::test]
    async fn replays_in_pages_then_follows_live_without_duplicates() {
        let count = Revision::try_from(REPLAY_PAGE).expect("small") + 10;
        let history = Arc::new(Fixed {
            events: (1..=count).map(|r| put("a", r)).collect(),
            calls: Mutex::new(Vec::new()),
        });
        let (hub, live) = broadcast::channel(16);
        let mut stream = stream(history.clone(), "a".to_string(), 0, count, live);
        // A duplicate of a replayed revision, then the next ones.
        hub.send(Arc::new(vec![put("a", count)])).expect("receiver alive");
        hub.send(Arc::new(vec![put("a", count + 1), put("b", count + 2)]))
            .expect("receiver alive");
        hub.send(Arc::new(vec![put("a", count + 3)])).expect("receiver alive");

        let first = next(&mut stream).await.expect("first page");
        assert_eq!(first.len(), REPLAY_PAGE);
        let second = next(&mut stream).await.expect("second page");
        assert_eq!(revisions(&second), (count - 9..=count).collect::<Vec<_>>());
        let live = next(&mut stream).await.expect("live batch");
        assert_eq!(
            revisions(&live),
            vec![count + 1, count + 3],
            "ready batches are merged, b filtered"
        );
        assert_eq!(history.calls.lock().expect("test lock").len(), 2);
    }

    #[tokio::test]
    async fn a_lagging_watcher_ends_instead_of_skipping() {
        let history = Arc::new(Fixed {
            events: Vec::new(),
            calls: Mutex::new(Vec::new()),
        });
        let (hub, live) = broadcast::channel(4);
        let mut stream = stream(history, String::new(), 0, 0, live);
        for revision in 1..=10 {
            hub.send(Arc::new(vec![put("k", revision)])).expect("receiver alive");
        }
        assert_eq!(next(&mut stream).await, None);
    }

    #[tokio::test]
    async fn a_gap_in_the_hub_ends_the_watch_after_the_events_before_it() {
        let history = Arc::new(Fixed {
            events: Vec::new(),
            calls: Mutex::new(Vec::new()),
        });
        let (hub, live) = broadcast::channel(8);
        let mut stream = stream(history, String::new(), 0, 0, live);
        hub.send(Arc::new(vec![put("k", 1), put("k", 2), put("k", 4)]))
            .expect("receiver alive");
        assert_eq!(next(&mut stream).await.map(|b| revisions(&b)), Some(vec![1, 2]));
        assert_eq!(next(&mut stream).await, None);
    }

    #[tokio::test]
    async fn a_watch_from_the_future_skips_to_after_its_revision() {
        let history = Arc::new(Fixed {
            events: Vec::new(),
            calls: Mutex::new(Vec::new()),
        });
        let (hub, live) = broadcast::channel(8);
        let mut stream = stream(history.clone(), String::new(), 5, 3, live);
        hub.send(Arc::new((4..=7).map(|r| put("k", r)).collect()))
            .expect("receiver alive");
        assert_eq!(next(&mut stream).await.map(|b| revisions(&b)), Some(vec![6, 7]));
        assert!(history.calls.lock().expect("test lock").is_empty(), "nothing to replay");
    }

    #[tokio::test]
    async fn a_failed_replay_ends_the_watch() {
        struct Gone;
        #[async_trait::async_trait]
        impl History for Gone {
            async fn replay(self: Arc<Self>, _: String, after: Revision, _: Revision, _: usize) -> Result<Replay> {
                Err(Error::Compacted {
                    requested: after,
                    compacted: after + 1,
                })
            }
        }
        let (_hub, live) = broadcast::channel(8);
        let mut stream = stream(Arc::new(Gone), String::new(), 0, 3, live);
        assert_eq!(next(&mut stream).await, None);
    }
}
