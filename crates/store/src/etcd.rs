//! The etcd backend: the store's model mapped one to one onto an etcd v3 cluster.
//!
//! A store revision is etcd's revision (so `metadata.resourceVersion` is the `mod_revision`
//! that `etcdctl get -w json` prints), creates and compare-and-swap writes are etcd
//! transactions on `create_revision` / `mod_revision`, range reads are linearizable, and
//! watches are etcd watches with the previous value attached. Several processes may share one
//! etcd: each learns the others' writes through its watches and through the revision in every
//! response header.
//!
//! Keys: the store's keys start with `/registry/`; `prefix` replaces that first segment (the
//! default `/registry` keeps keys as they are, as upstream's `--etcd-prefix`).
//!
//! Every call has a deadline: with etcd out of quorum a write fails after `timeout` with
//! [`Error::Backend`] instead of hanging, and succeeds again once quorum returns.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, DeleteOptions, EventType, GetOptions, GetResponse, Txn, TxnOp,
    TxnOpResponse, TxnResponse, WatchOptions,
};
use tokio::sync::mpsc;

use crate::{Error, Event, EventKind, KeyValue, RangeResult, Result, Revision, Store, WatchStream};

/// The first segment of every key the API server writes.
const ROOT: &str = "/registry";

/// Keys read per request when a range has no limit (one response stays far below gRPC's
/// message limit even with large objects).
const PAGE: i64 = 500;

/// The largest response accepted from etcd (a page of [`PAGE`] large objects).
const MAX_MESSAGE: usize = 256 << 20;

/// Where and how to reach etcd.
#[derive(Clone, Debug)]
pub struct EtcdOptions {
    /// Client URLs (`http://host:port` or `https://host:port`).
    pub endpoints: Vec<String>,
    /// What replaces `/registry` at the start of every key (default `/registry`).
    pub prefix: String,
    /// PEM of the CA that signed the etcd members' certificates.
    pub ca: Option<Vec<u8>>,
    /// PEM client certificate and key, for etcd's `--client-cert-auth`.
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
    /// Deadline of every request (reads, writes, compaction).
    pub timeout: Duration,
}

impl EtcdOptions {
    /// Plain-text access to `endpoints` with the default prefix and a 5-second deadline.
    pub fn new(endpoints: Vec<String>) -> Self {
        EtcdOptions {
            endpoints,
            prefix: ROOT.to_string(),
            ca: None,
            identity: None,
            timeout: Duration::from_secs(5),
        }
    }
}

/// A store on an etcd v3 cluster.
#[derive(Clone)]
pub struct EtcdStore {
    shared: Arc<Shared>,
}

struct Shared {
    client: Client,
    prefix: String,
    timeout: Duration,
    /// The highest revision seen in any response or event.
    current: AtomicI64,
    /// Every revision up to and including this one is known to be compacted.
    compacted: AtomicI64,
}

impl std::fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdStore")
            .field("prefix", &self.shared.prefix)
            .field("current_revision", &self.current_revision())
            .field("compacted_revision", &self.compacted_revision())
            .finish()
    }
}

fn backend(e: impl std::fmt::Display) -> Error {
    Error::Backend(format!("etcd: {e}"))
}

impl EtcdStore {
    /// Connects to etcd and reads its current and compacted revisions. Fails if no endpoint
    /// answers within the options' deadline.
    pub async fn connect(options: EtcdOptions) -> Result<EtcdStore> {
        if options.endpoints.is_empty() {
            return Err(Error::Backend("etcd: no endpoints".into()));
        }
        let mut connect = ConnectOptions::new()
            .with_connect_timeout(options.timeout)
            .with_keep_alive(Duration::from_secs(5), options.timeout)
            .with_keep_alive_while_idle(true)
            .with_require_leader(true);
        if options.ca.is_some() || options.identity.is_some() {
            let mut tls = etcd_client::TlsOptions::new();
            if let Some(ca) = &options.ca {
                tls = tls.ca_certificate(etcd_client::Certificate::from_pem(ca));
            }
            if let Some((cert, key)) = &options.identity {
                tls = tls.identity(etcd_client::Identity::from_pem(cert, key));
            }
            connect = connect.with_tls(tls);
        }
        let client = tokio::time::timeout(options.timeout, Client::connect(&options.endpoints, Some(connect)))
            .await
            .map_err(|_| backend(format!("no endpoint of {:?} answered", options.endpoints)))?
            .map_err(backend)?;
        let store = EtcdStore {
            shared: Arc::new(Shared {
                client,
                prefix: options.prefix.trim_end_matches('/').to_string(),
                timeout: options.timeout,
                current: AtomicI64::new(0),
                compacted: AtomicI64::new(0),
            }),
        };
        store.shared.refresh_current().await?;
        store.shared.learn_compacted().await?;
        Ok(store)
    }
}

impl Shared {
    /// The etcd key of a store key.
    fn etcd_key(&self, key: &str) -> String {
        match key.strip_prefix(ROOT) {
            Some(rest) if self.prefix != ROOT => format!("{}{rest}", self.prefix),
            _ => key.to_string(),
        }
    }

    /// The store key of an etcd key (`None` for keys that are not UTF-8).
    fn store_key(&self, key: &[u8]) -> Option<String> {
        let key = std::str::from_utf8(key).ok()?;
        match key.strip_prefix(self.prefix.as_str()) {
            Some(rest) if self.prefix != ROOT => Some(format!("{ROOT}{rest}")),
            _ => Some(key.to_string()),
        }
    }

    fn key_value(&self, kv: &etcd_client::KeyValue) -> Option<KeyValue> {
        Some(KeyValue {
            key: self.store_key(kv.key())?,
            value: Bytes::copy_from_slice(kv.value()),
            create_revision: kv.create_revision(),
            mod_revision: kv.mod_revision(),
        })
    }

    fn saw(&self, revision: Revision) {
        self.current.fetch_max(revision, Ordering::AcqRel);
    }

    fn saw_header(&self, header: Option<&etcd_client::ResponseHeader>) -> Revision {
        let revision = header.map(|h| h.revision()).unwrap_or_default();
        self.saw(revision);
        revision
    }

    /// Runs one request under the deadline, trying again (another endpoint may answer) while
    /// the request cannot have reached etcd: the connection could not be made, or, for a
    /// read, the endpoint was unavailable. A write that may have been applied is never sent
    /// twice.
    async fn call<T, F, Fut>(&self, what: &str, read: bool, mut request: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, etcd_client::Error>>,
    {
        let attempts = async {
            loop {
                match request().await {
                    Ok(value) => return Ok(value),
                    Err(e) if unsent(&e, read) => {
                        tracing::debug!(error = %e, "etcd: trying the request again");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    Err(e) => return Err(classify(e)),
                }
            }
        };
        match tokio::time::timeout(self.timeout, attempts).await {
            Ok(result) => result,
            Err(_) => Err(Error::Unavailable(format!(
                "etcd: {what} timed out after {:?}",
                self.timeout
            ))),
        }
    }

    async fn get_raw(&self, key: &str, options: Option<GetOptions>) -> Result<GetResponse> {
        let kv = self.client.kv_client().max_decoding_message_size(MAX_MESSAGE);
        let key = self.etcd_key(key);
        let resp = self
            .call("read", true, || {
                let (mut kv, key, options) = (kv.clone(), key.clone(), options.clone());
                async move { kv.get(key, options).await }
            })
            .await?;
        self.saw_header(resp.header());
        Ok(resp)
    }

    async fn txn(&self, txn: Txn) -> Result<(TxnResponse, Revision)> {
        let kv = self.client.kv_client().max_decoding_message_size(MAX_MESSAGE);
        let resp = self
            .call("write", false, || {
                let (mut kv, txn) = (kv.clone(), txn.clone());
                async move { kv.txn(txn).await }
            })
            .await?;
        let revision = self.saw_header(resp.header());
        Ok((resp, revision))
    }

    /// The current revision, asked of etcd.
    async fn refresh_current(&self) -> Result<Revision> {
        let resp = self.get_raw(ROOT, Some(GetOptions::new().with_count_only())).await?;
        Ok(resp.header().map(|h| h.revision()).unwrap_or_default())
    }

    /// Learns how far etcd has been compacted (perhaps by another server). A read at
    /// revision 1 tells whether anything was; only then is the number asked for, with a
    /// watch from revision 1, which etcd cancels with the compacted revision.
    async fn learn_compacted(&self) -> Result<Revision> {
        let first = GetOptions::new().with_revision(1).with_count_only();
        match self.get_raw(ROOT, Some(first)).await {
            Ok(_) => return Ok(self.compacted.load(Ordering::Acquire)),
            Err(Error::Backend(m)) if m.contains("required revision has been compacted") => {}
            Err(e) => return Err(e),
        }
        let client = self.client.watch_client();
        let key = self.etcd_key(ROOT);
        let mut stream = self
            .call("watch", true, || {
                let (mut client, key) = (client.clone(), key.clone());
                async move {
                    client
                        .watch(key, Some(WatchOptions::new().with_start_revision(1)))
                        .await
                }
            })
            .await?;
        let probe = async {
            loop {
                match stream.message().await {
                    Ok(Some(resp)) if resp.canceled() => return Ok(resp.compact_revision()),
                    Ok(Some(_)) => continue,
                    Ok(None) => return Err(backend("the compaction probe ended without an answer")),
                    Err(e) => return Err(classify(e)),
                }
            }
        };
        let compacted = tokio::time::timeout(self.timeout, probe)
            .await
            .map_err(|_| Error::Unavailable("etcd: the compaction probe timed out".into()))??;
        // etcd's compacted revision c keeps c itself readable; ours counts c as gone, which
        // only makes this process refuse one readable revision.
        self.compacted.fetch_max(compacted, Ordering::AcqRel);
        Ok(self.compacted.load(Ordering::Acquire))
    }

    /// Turns an etcd refusal of a range at `requested` into the store's error.
    async fn range_error(&self, e: Error, requested: Revision) -> Error {
        match &e {
            Error::Backend(message) if message.contains("required revision has been compacted") => {
                match self.learn_compacted().await {
                    Ok(compacted) => Error::Compacted {
                        requested,
                        compacted: compacted.max(requested),
                    },
                    Err(e) => e,
                }
            }
            Error::Backend(message) if message.contains("required revision is a future revision") => {
                match self.refresh_current().await {
                    Ok(current) => Error::FutureRevision { requested, current },
                    Err(e) => e,
                }
            }
            _ => e,
        }
    }

    /// Why a conditional write on `key` failed: the key is gone, or it changed.
    fn refusal(&self, resp: &TxnResponse, key: &str, expected: Revision) -> Error {
        let current = resp.op_responses().into_iter().find_map(|op| match op {
            TxnOpResponse::Get(get) => get.kvs().first().and_then(|kv| self.key_value(kv)),
            _ => None,
        });
        match current {
            Some(current) => Error::Conflict {
                key: key.to_string(),
                expected,
                current,
            },
            None => Error::NotFound(key.to_string()),
        }
    }

    /// The compare that guards an update or delete of `key`.
    fn guard(key: &str, expected: Revision) -> Compare {
        if expected == 0 {
            Compare::create_revision(key, CompareOp::Greater, 0)
        } else {
            Compare::mod_revision(key, CompareOp::Equal, expected)
        }
    }

    /// Forwards the changes under `prefix` after `after` to `out` until the receiver goes
    /// away, etcd cancels the watch (compaction) or the connection fails.
    async fn pump(self: Arc<Self>, prefix: String, after: Revision, out: mpsc::Sender<Vec<Event>>) {
        let key = self.etcd_key(&prefix);
        let end = crate::prefix_end(&key);
        let options = WatchOptions::new()
            .with_range(end)
            .with_start_revision(after + 1)
            .with_prev_key();
        let client = self.client.watch_client().max_decoding_message_size(MAX_MESSAGE);
        let opened = self
            .call("watch", true, || {
                let (mut client, key, options) = (client.clone(), key.clone(), options.clone());
                async move { client.watch(key, Some(options)).await }
            })
            .await;
        let mut stream = match opened {
            Ok(stream) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "etcd watch could not start");
                return;
            }
        };
        loop {
            let message = tokio::select! {
                () = out.closed() => return,
                message = stream.message() => message,
            };
            let resp = match message {
                Ok(Some(resp)) => resp,
                Ok(None) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "etcd watch failed");
                    return;
                }
            };
            if resp.canceled() {
                if resp.compact_revision() > 0 {
                    self.compacted.fetch_max(resp.compact_revision(), Ordering::AcqRel);
                }
                tracing::warn!(
                    reason = resp.cancel_reason(),
                    compacted = resp.compact_revision(),
                    "etcd cancelled a watch"
                );
                return;
            }
            let batch: Vec<Event> = resp.events().iter().filter_map(|e| self.event(e)).collect();
            if let Some(last) = batch.last() {
                self.saw(last.kv.mod_revision);
                if out.send(batch).await.is_err() {
                    return;
                }
            }
        }
    }

    fn event(&self, e: &etcd_client::Event) -> Option<Event> {
        let kv = e.kv()?;
        let prev = e.prev_kv().and_then(|p| self.key_value(p));
        match e.event_type() {
            EventType::Put => Some(Event {
                kind: EventKind::Put,
                kv: self.key_value(kv)?,
                prev,
            }),
            EventType::Delete => Some(Event {
                kind: EventKind::Delete,
                kv: KeyValue {
                    key: self.store_key(kv.key())?,
                    value: prev.as_ref().map(|p| p.value.clone()).unwrap_or_default(),
                    create_revision: prev.as_ref().map_or(0, |p| p.create_revision),
                    mod_revision: kv.mod_revision(),
                },
                prev,
            }),
        }
    }
}

/// Whether a failed request cannot have been applied, so that sending it again is safe:
/// no connection was made, or it was a read (or an idempotent compaction).
fn unsent(e: &etcd_client::Error, read: bool) -> bool {
    match e {
        etcd_client::Error::TransportError(_) => true,
        etcd_client::Error::GRpcStatus(status) => {
            status.code() == tonic::Code::Unavailable && (read || status.message().contains("connect"))
        }
        _ => false,
    }
}

/// An etcd client error as the store's error; etcd's refusals are told apart by their text,
/// which is etcd's API (`rpctypes` error strings).
fn classify(e: etcd_client::Error) -> Error {
    match e {
        etcd_client::Error::GRpcStatus(status) if status.code() == tonic::Code::Unavailable => {
            Error::Unavailable(format!("etcd: {}", status.message()))
        }
        etcd_client::Error::GRpcStatus(status) => backend(status.message()),
        etcd_client::Error::TransportError(e) => Error::Unavailable(format!("etcd: {e}")),
        other => backend(other),
    }
}

#[async_trait::async_trait]
impl Store for EtcdStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        let resp = self.shared.get_raw(key, None).await?;
        Ok(resp.kvs().first().and_then(|kv| self.shared.key_value(kv)))
    }

    async fn range(&self, start: &str, end: &str, revision: Revision, limit: usize) -> Result<RangeResult> {
        let compacted = self.compacted_revision();
        if revision != 0 && revision <= compacted {
            return Err(Error::Compacted {
                requested: revision,
                compacted,
            });
        }
        let shared = &self.shared;
        let end_key = shared.etcd_key(end);
        let mut at = revision;
        let mut from = start.to_string();
        let mut kvs = Vec::new();
        let wanted = if limit == 0 { i64::MAX } else { limit as i64 };
        loop {
            if from.as_str() >= end {
                return Ok(RangeResult {
                    kvs,
                    revision: if at == 0 { self.current_revision() } else { at },
                    more: false,
                });
            }
            let page = (wanted - kvs.len() as i64).min(PAGE);
            let options = GetOptions::new()
                .with_range(end_key.clone())
                .with_revision(at)
                .with_limit(page);
            let resp = match shared.get_raw(&from, Some(options)).await {
                Ok(resp) => resp,
                Err(e) => return Err(shared.range_error(e, at).await),
            };
            if at == 0 {
                // Later pages read at the revision the first was served at.
                at = resp.header().map(|h| h.revision()).unwrap_or_default();
            }
            let got = resp.kvs().len() as i64;
            kvs.extend(resp.kvs().iter().filter_map(|kv| shared.key_value(kv)));
            let done = kvs.len() as i64 >= wanted;
            if !resp.more() || got == 0 || done {
                return Ok(RangeResult {
                    kvs,
                    revision: at,
                    more: resp.more() && done,
                });
            }
            let Some(last) = resp.kvs().last().and_then(|kv| shared.store_key(kv.key())) else {
                return Err(backend("a page ended on a key that is not UTF-8"));
            };
            from = format!("{last}\0");
        }
    }

    async fn create(&self, key: &str, value: Bytes) -> Result<Revision> {
        let k = self.shared.etcd_key(key);
        let txn = Txn::new()
            .when([Compare::create_revision(k.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(k, value.to_vec(), None)]);
        let (resp, revision) = self.shared.txn(txn).await?;
        if resp.succeeded() {
            Ok(revision)
        } else {
            Err(Error::AlreadyExists(key.to_string()))
        }
    }

    async fn update(&self, key: &str, value: Bytes, expected_mod_revision: Revision) -> Result<Revision> {
        let k = self.shared.etcd_key(key);
        let txn = Txn::new()
            .when([Shared::guard(&k, expected_mod_revision)])
            .and_then([TxnOp::put(k.clone(), value.to_vec(), None)])
            .or_else([TxnOp::get(k, None)]);
        let (resp, revision) = self.shared.txn(txn).await?;
        if resp.succeeded() {
            Ok(revision)
        } else {
            Err(self.shared.refusal(&resp, key, expected_mod_revision))
        }
    }

    async fn delete(&self, key: &str, expected_mod_revision: Revision) -> Result<(Revision, KeyValue)> {
        let k = self.shared.etcd_key(key);
        let txn = Txn::new()
            .when([Shared::guard(&k, expected_mod_revision)])
            .and_then([TxnOp::delete(k.clone(), Some(DeleteOptions::new().with_prev_key()))])
            .or_else([TxnOp::get(k, None)]);
        let (resp, revision) = self.shared.txn(txn).await?;
        if !resp.succeeded() {
            return Err(self.shared.refusal(&resp, key, expected_mod_revision));
        }
        let deleted = resp.op_responses().into_iter().find_map(|op| match op {
            TxnOpResponse::Delete(d) => d.prev_kvs().first().and_then(|kv| self.shared.key_value(kv)),
            _ => None,
        });
        let deleted = deleted.ok_or_else(|| backend(format!("the delete of {key:?} returned no previous value")))?;
        Ok((revision, deleted))
    }

    fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream> {
        let compacted = self.compacted_revision();
        if after < compacted {
            return Err(Error::Compacted {
                requested: after,
                compacted,
            });
        }
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(self.shared.clone().pump(prefix.to_string(), after, tx));
        Ok(Box::pin(futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|batch| (batch, rx))
        })))
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        if revision <= self.compacted_revision() {
            return Ok(());
        }
        let current = self.shared.refresh_current().await?;
        if revision > current {
            return Err(Error::FutureRevision {
                requested: revision,
                current,
            });
        }
        let kv = self.shared.client.kv_client();
        let compacted = self
            .shared
            .call("compaction", true, || {
                let mut kv = kv.clone();
                async move { kv.compact(revision, None).await }
            })
            .await;
        match compacted {
            Ok(_) => {}
            // Another server compacted further already.
            Err(Error::Backend(m)) if m.contains("required revision has been compacted") => {
                self.shared.learn_compacted().await?;
            }
            Err(e) => return Err(e),
        }
        self.shared.compacted.fetch_max(revision, Ordering::AcqRel);
        Ok(())
    }

    fn current_revision(&self) -> Revision {
        self.shared.current.load(Ordering::Acquire)
    }

    fn compacted_revision(&self) -> Revision {
        self.shared.compacted.load(Ordering::Acquire)
    }

    async fn check(&self) -> Result<()> {
        self.shared.refresh_current().await.map(|_| ())
    }
}
