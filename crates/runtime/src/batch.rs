//! Upstream's `slowStartBatch`: writes go out in batches of 1, 2, 4, ... (at most `cap` at
//! once), and stop at the first batch with a failure. A controller whose creations all fail
//! (a quota, an admission webhook, a broken template) makes one failing call, not thousands.

use std::future::Future;

use futures::StreamExt;

/// The outcome of [`slow_start`]: results of the calls made, in order of the items, and how
/// many items were never tried.
#[derive(Debug)]
pub struct Batched<T, R, E> {
    /// Each tried item with its result.
    pub done: Vec<(T, Result<R, E>)>,
    /// Items not tried because an earlier batch failed.
    pub skipped: Vec<T>,
}

impl<T, R, E> Batched<T, R, E> {
    /// The first error, if any call failed.
    pub fn first_error(&self) -> Option<&E> {
        self.done.iter().find_map(|(_, r)| r.as_ref().err())
    }
}

/// Calls `call` on every item in slow-start batches (from `initial`, doubling, at most `cap`
/// concurrently), stopping after the first batch in which a call failed.
pub async fn slow_start<T, R, E, F, Fut>(items: Vec<T>, initial: usize, cap: usize, call: F) -> Batched<T, R, E>
where
    T: Clone,
    F: Fn(T) -> Fut,
    Fut: Future<Output = Result<R, E>>,
{
    let mut rest = items.into_iter();
    let mut done = Vec::new();
    let mut size = initial.max(1);
    loop {
        let batch: Vec<T> = rest.by_ref().take(size).collect();
        if batch.is_empty() {
            break;
        }
        let results: Vec<(T, Result<R, E>)> = futures::stream::iter(batch.into_iter().map(|t| {
            let fut = call(t.clone());
            async move { (t, fut.await) }
        }))
        .buffered(cap.max(1))
        .collect()
        .await;
        let failed = results.iter().any(|(_, r)| r.is_err());
        done.extend(results);
        if failed {
            break;
        }
        size = size.saturating_mul(2);
    }
    Batched {
        done,
        skipped: rest.collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[tokio::test]
    async fn batches_double_and_stop_at_the_first_failure() {
        let calls = Mutex::new(Vec::new());
        let r = slow_start((0..100).collect(), 1, 64, |i: u32| {
            calls.lock().unwrap().push(i);
            async move { if i == 5 { Err("quota") } else { Ok(i) } }
        })
        .await;
        // Batches 1, 2, 4: item 5 is in the third batch (3..7), which finishes; then stop.
        assert_eq!(calls.lock().unwrap().len(), 7);
        assert_eq!(r.first_error(), Some(&"quota"));
        assert_eq!(r.skipped.len(), 93);
        assert_eq!(r.skipped[0], 7);
    }

    #[tokio::test]
    async fn all_succeeding_items_are_all_tried() {
        let r = slow_start((0..10).collect(), 1, 4, |i: u32| async move { Ok::<_, ()>(i * 2) }).await;
        assert!(r.first_error().is_none());
        assert!(r.skipped.is_empty());
        let got: Vec<u32> = r.done.into_iter().map(|(_, r)| r.unwrap()).collect();
        assert_eq!(got, (0..10).map(|i| i * 2).collect::<Vec<_>>());
    }
}
