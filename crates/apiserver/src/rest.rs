//! The REST verbs on objects: get, list, create, update, patch, delete, deletecollection,
//! and the status, scale and binding subresources. Every write goes through one pipeline:
//! decode, strategy, defaults, validation, store (compare-and-swap), then waits for the
//! watch cache to hold it, so a client always reads its own writes.

use std::sync::Arc;

use bytes::Bytes;
use serde_json::{Map, Value, json};
use shoal_api::catalogue::{self, Resource};
use shoal_api::selector::{FieldSelector, LabelSelector};
use shoal_store::Revision;

use crate::cache::{Entry, set_resource_version};
use crate::output::ListMeta;
use crate::patch::{self, PatchType};
use crate::request::{FieldValidation, Params, Target};
use crate::status::{ApiError, ApiResult};
use crate::{ApiServer, alloc, continuation, keys, managed, strategy};

/// Who is writing and how: `metadata.managedFields` bookkeeping and dry runs.
#[derive(Clone, Debug, Default)]
pub struct WriteOptions {
    /// The field manager: `fieldManager`, else the client's `User-Agent` product.
    pub manager: Option<String>,
    /// True when the request named its `fieldManager` (apply requires one).
    pub manager_given: bool,
    /// `dryRun=All`.
    pub dry_run: bool,
    /// `fieldValidation`.
    pub validation: Option<FieldValidation>,
    /// Fields the body gave more than once (refused under `Strict`, warned of under `Warn`).
    pub duplicates: Vec<String>,
    /// Who writes (`None`: an in-process component): a node's writes pass NodeRestriction
    /// admission, a user's writes of roles and bindings the escalation check, and admission
    /// webhooks are told.
    pub who: Option<crate::nodeauth::Identity>,
}

impl WriteOptions {
    /// Reads the write options of a request; `options` names its options kind for errors
    /// (`CreateOptions`, `UpdateOptions`, `PatchOptions`).
    pub fn from_params(p: &Params, options: &str) -> ApiResult<WriteOptions> {
        if let Some(m) = p.get("fieldManager") {
            use shoal_api::field::{ErrorType, FieldError};
            let mut errors = Vec::new();
            if m.len() > crate::request::FIELD_MANAGER_MAX {
                errors.push(FieldError {
                    kind: ErrorType::TooLong,
                    field: "fieldManager".into(),
                    value: None,
                    detail: format!("may not be more than {} bytes", crate::request::FIELD_MANAGER_MAX),
                });
            }
            if let Some((i, c)) = m.char_indices().find(|(_, c)| c.is_control()) {
                let detail = format!("invalid character U+{:04X} (at position {i})", c as u32);
                errors.push(FieldError::invalid("fieldManager", json!(m), detail));
            }
            if !errors.is_empty() {
                return Err(ApiError::invalid_options(options, &errors));
            }
        }
        Ok(WriteOptions {
            manager: p.field_manager(),
            manager_given: p.get("fieldManager").is_some(),
            dry_run: p.dry_run()?,
            validation: Some(p.field_validation()?),
            duplicates: Vec::new(),
            who: None,
        })
    }

    /// These options for a write by `who` (`None`: an in-process client).
    pub fn by(mut self, who: Option<&crate::nodeauth::Identity>) -> WriteOptions {
        self.who = who.cloned();
        self
    }

    /// The node writing, when a node's credential sent the request.
    pub fn node(&self) -> Option<&str> {
        match &self.who {
            Some(crate::nodeauth::Identity::Node(node)) => Some(node),
            _ => None,
        }
    }

    /// The user writing and its groups, when RBAC authorized the request.
    pub fn user(&self) -> Option<(&str, &[String])> {
        match &self.who {
            Some(crate::nodeauth::Identity::User(u)) => Some((&u.name, &u.groups)),
            _ => None,
        }
    }
}

/// The result of a write: the stored object, and warnings for the client.
pub struct Written {
    /// The object as stored (or as it would be, for a dry run).
    pub obj: Value,
    /// Encoded `obj`.
    pub json: Bytes,
    /// `Warning` headers.
    pub warnings: Vec<String>,
}

impl Written {
    pub(crate) fn from_entry(e: &Entry, warnings: Vec<String>) -> Written {
        Written {
            obj: e.obj(),
            json: e.json(),
            warnings,
        }
    }
    pub(crate) fn from_value(obj: Value, warnings: Vec<String>) -> Written {
        let json = Bytes::from(serde_json::to_vec(&obj).unwrap_or_default());
        Written { obj, json, warnings }
    }
}

/// Current time as upstream prints timestamps (RFC 3339, seconds, UTC).
pub fn now_rfc3339() -> String {
    shoal_api::time::now_rfc3339()
}

fn name_of(obj: &Value) -> &str {
    obj["metadata"]["name"].as_str().unwrap_or("")
}

pub(crate) fn meta_mut(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj["metadata"].is_object() {
        obj["metadata"] = json!({});
    }
    obj["metadata"].as_object_mut().expect("metadata is an object")
}

const GENERATE_CHARS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

pub(crate) fn generate_suffix() -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    (0..5)
        .map(|_| GENERATE_CHARS[rng.random_range(0..GENERATE_CHARS.len())] as char)
        .collect()
}

impl ApiServer {
    /// Allocates cluster IPs and node ports for the Service `svc` (stored at `own`, for an
    /// update) with `allocate`, uniquely across every server on the store. The cluster-wide
    /// record ([`alloc::RECORD_KEY`]) lists the allocations of the last minute: a server
    /// reads it, lets its cache catch up with the store (so every Service created before the
    /// read is seen), allocates around both, and records its choice with a compare-and-swap
    /// on the record. A server that loses the swap allocated concurrently with another and
    /// tries again; the winner's Service is created right after, well within the minute.
    async fn allocate_for_service(
        &self,
        res: &Resource,
        own: Option<&str>,
        svc: &mut Value,
        record: bool,
        mut allocate: impl FnMut(&mut Value, &alloc::InUse) -> ApiResult<()>,
    ) -> ApiResult<()> {
        let prefix = keys::collection(res, None);
        for _ in 0..32 {
            let current = self.store.get(alloc::RECORD_KEY).await?;
            let caught_up = self.cache.wait_for(self.store.current_revision());
            // The latest write may lie outside what the cache follows; then it waits no more.
            let _ = tokio::time::timeout(std::time::Duration::from_secs(2), caught_up).await;
            let now = jiff::Timestamp::now().as_second();
            // What this Service itself holds (an update's own earlier allocation) is not
            // another's.
            let key = keys::object(
                res,
                svc["metadata"]["namespace"].as_str(),
                svc["metadata"]["name"].as_str().unwrap_or_default(),
            );
            let own = own.unwrap_or(&key);
            let recent: Vec<Value> = alloc::recent(current.as_ref().map(|kv| kv.value.as_ref()), now)
                .into_iter()
                .filter(|e| e["key"].as_str() != Some(own))
                .collect();
            let (services, _, _) = self.cache.list(&prefix, None, 0, |e| e.key != own);
            let objs: Vec<Value> = services.iter().map(|e| e.obj()).collect();
            let in_use = alloc::InUse::from_services(objs.iter().chain(recent.iter()));
            let mut candidate = svc.clone();
            allocate(&mut candidate, &in_use)?;
            if !record || !alloc::holds_allocations(&candidate) {
                *svc = candidate;
                return Ok(());
            }
            let value = alloc::record(recent, &candidate, own, now);
            let written = match &current {
                Some(kv) => self.store.update(alloc::RECORD_KEY, value, kv.mod_revision).await,
                None => self.store.create(alloc::RECORD_KEY, value).await,
            };
            match written {
                Ok(_) => {
                    *svc = candidate;
                    return Ok(());
                }
                Err(shoal_store::Error::Conflict { .. } | shoal_store::Error::AlreadyExists(_)) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(ApiError::unavailable(
            "too many Services are being allocated addresses at once; try again",
        ))
    }

    /// `obj` as written at `rev` under `key`. Its JSON is the watch cache's entry for that
    /// very write when the cache holds it (the stored bytes with the resourceVersion spliced
    /// in, as a GET serves them): the object is not encoded a second time. A later write to
    /// the key (or none cached) falls back to encoding `obj`.
    pub(crate) fn written_at(&self, key: &str, rev: Revision, obj: Value, warnings: Vec<String>) -> Written {
        match self.cache.get(key) {
            Some(e) if e.mod_revision == rev => Written {
                obj,
                json: e.json(),
                warnings,
            },
            _ => Written::from_value(obj, warnings),
        }
    }

    /// GET of one object.
    pub fn get_object(&self, t: &Target) -> ApiResult<Arc<Entry>> {
        let name = t.name.as_deref().unwrap_or_default();
        self.cache
            .get(&keys::object(t.res, t.namespace.as_deref(), name))
            .ok_or_else(|| ApiError::not_found(t.res, name))
    }

    /// LIST: the matching objects, and the list's metadata (revision, continue token, and
    /// the count of items after a page when there are no selectors, as upstream).
    pub async fn list_objects(&self, t: &Target, p: &Params) -> ApiResult<(Vec<Arc<Entry>>, ListMeta)> {
        let (labels, fields) = selectors(t.res, p)?;
        let limit = p.int("limit")?.unwrap_or(0).max(0) as usize;
        let prefix = keys::collection(t.res, t.namespace.as_deref());
        let keep = |e: &Entry| matches_entry(t.res, &labels, &fields, e);
        let (items, revision, cont) = if let Some(token) = p.get("continue") {
            let (rev, start) = continuation::decode(token, &prefix)?;
            self.list_from_store(&prefix, &start, rev, limit, keep).await?
        } else {
            match (p.get("resourceVersion"), p.get("resourceVersionMatch")) {
                (Some(rv), Some("Exact")) => {
                    let rev = parse_rv(rv)?;
                    self.list_from_store(&prefix, &prefix, rev, limit, keep).await?
                }
                (rv, _) => {
                    if let Some(rv) = rv.filter(|rv| *rv != "0") {
                        self.wait_for_revision(parse_rv(rv)?).await?;
                    }
                    let (items, rev, more) = self.cache.list(&prefix, None, limit, keep);
                    let token = more
                        .then(|| continuation::encode(rev, &prefix, &after_key(&items)))
                        .flatten();
                    (items, rev, token)
                }
            }
        };
        // Counted in the cache (at its latest revision: an estimate for older pages, as the
        // field's contract allows).
        let remaining = (cont.is_some() && labels.is_none() && fields.is_none())
            .then(|| self.cache.count_from(&prefix, &after_key(&items)))
            .and_then(|n| i64::try_from(n).ok());
        Ok((
            items,
            ListMeta {
                revision,
                cont,
                remaining,
            },
        ))
    }

    /// Waits (up to 3 s, as upstream's watch cache) until the cache has reached `rev`: a
    /// client may have seen a revision from a write this cache has not applied yet. Further
    /// ahead than that is upstream's 504 "Too large resource version".
    pub async fn wait_for_revision(&self, rev: Revision) -> ApiResult<()> {
        if rev <= self.cache.revision() {
            return Ok(());
        }
        tokio::time::timeout(std::time::Duration::from_secs(3), self.cache.wait_for(rev))
            .await
            .map_err(|_| {
                ApiError::from(shoal_store::Error::FutureRevision {
                    requested: rev,
                    current: self.cache.revision(),
                })
            })
    }

    async fn list_from_store(
        &self,
        prefix: &str,
        start: &str,
        rev: Revision,
        limit: usize,
        keep: impl Fn(&Entry) -> bool,
    ) -> ApiResult<(Vec<Arc<Entry>>, Revision, Option<String>)> {
        let end = shoal_store::prefix_end(prefix);
        let mut out = Vec::new();
        let mut from = start.to_string();
        let mut served: Revision;
        loop {
            let page = self.store.range(&from, &end, rev, 500).await?;
            served = page.revision;
            for kv in &page.kvs {
                let Some(e) = Entry::from_kv(kv) else { continue };
                if !keep(&e) {
                    continue;
                }
                if limit > 0 && out.len() == limit {
                    let token = continuation::encode(served, prefix, &after_key(&out));
                    return Ok((out, served, token));
                }
                out.push(e);
            }
            match page.kvs.last() {
                Some(last) if page.more => from = format!("{}\0", last.key),
                _ => break,
            }
        }
        Ok((out, served, None))
    }

    /// Upstream's DefaultStorageClass admission: a claim without a class gets the class
    /// annotated `storageclass.kubernetes.io/is-default-class: "true"`, if there is one.
    fn default_storage_class(&self, res: &Resource, obj: &mut Value) {
        // A class named by the beta annotation is the claim's own, as upstream.
        let beta = obj["metadata"]["annotations"]
            .get("volume.beta.kubernetes.io/storage-class")
            .is_some();
        if res.kind != "PersistentVolumeClaim"
            || beta
            || obj["spec"].get("storageClassName").is_some_and(|c| !c.is_null())
        {
            return;
        }
        let Some(classes) = shoal_api::catalogue::find("storage.k8s.io", "v1", "storageclasses") else {
            return;
        };
        let (found, _, _) = self.cache.list(&keys::collection(classes, None), None, 1, |e| {
            e.obj()["metadata"]["annotations"]["storageclass.kubernetes.io/is-default-class"] == "true"
        });
        if let (Some(class), Some(spec)) = (found.first(), obj.get_mut("spec").and_then(Value::as_object_mut)) {
            spec.insert("storageClassName".into(), class.obj()["metadata"]["name"].clone());
        }
    }

    /// CREATE.
    pub async fn create(&self, t: &Target, obj: Value, opts: &WriteOptions) -> ApiResult<Written> {
        self.create_inner(t, obj, opts, false).await
    }

    /// CREATE, or the create of a server-side apply when `applied` (the body is the apply
    /// configuration and its manager owns exactly its fields).
    async fn create_inner(&self, t: &Target, mut obj: Value, opts: &WriteOptions, applied: bool) -> ApiResult<Written> {
        let res = t.res;
        if self.definition_terminating(res) {
            return Err(ApiError::new(
                405,
                "MethodNotAllowed",
                "create not allowed while custom resource definition is terminating",
            ));
        }
        let apply_config = applied.then(|| obj.clone());
        let warnings = self.decode_checks(res, &mut obj, opts)?;
        let mut obj = strategy::normalize(res, obj)?;
        self.check_namespace_of_body(t, &mut obj)?;
        let meta = meta_mut(&mut obj);
        for k in [
            "resourceVersion",
            "uid",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "selfLink",
            "generation",
        ] {
            meta.remove(k);
        }
        meta.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
        meta.insert("creationTimestamp".into(), json!(now_rfc3339()));
        let generate = meta
            .get("generateName")
            .and_then(Value::as_str)
            .filter(|_| !meta.contains_key("name"))
            .map(str::to_string);
        if let Some(g) = &generate {
            meta.insert("name".into(), json!(format!("{g}{}", generate_suffix())));
        }
        strategy::prepare_create(res, &mut obj);
        self.default_storage_class(res, &mut obj);
        shoal_api::defaults::apply_defaults(res.group, res.kind, &mut obj);
        self.custom_defaults(res, &mut obj);
        shoal_api::defaults::prepare_for_create(res.group, res.kind, &mut obj);
        match (&apply_config, opts.manager.as_deref()) {
            (Some(config), Some(manager)) => {
                let owned = self
                    .with_writer(res, None, manager, |root, w| {
                        managed::apply(&json!({}), config, root, w, true)
                    })
                    .unwrap_or_default();
                // An apply that owns no field leaves no entry (and no `managedFields: null`).
                match owned["metadata"].get("managedFields").filter(|m| !m.is_null()) {
                    Some(mf) => meta_mut(&mut obj).insert("managedFields".into(), mf.clone()),
                    None => meta_mut(&mut obj).remove("managedFields"),
                };
            }
            _ => self.record_manager(res, t, &mut obj, opts, None),
        }
        let name = name_of(&obj).to_string();
        strategy::fill_status(res, &mut obj);
        if let Some(node) = opts.node() {
            crate::nodeauth::admit(node, t, &obj, None)?;
        }
        if let Some((user, groups)) = opts.user()
            && res.group == crate::rbac::GROUP
        {
            let ns = t.namespace.as_deref().unwrap_or_default();
            crate::rbac::check_escalation(self, res.kind, &obj, ns, user, groups)?;
        }
        match (res.group, res.plural) {
            ("", "pods") => self.admit_service_account(&mut obj).await?,
            ("", "secrets") => self.fill_token_secret(&mut obj),
            _ => {}
        }
        self.admit_create(res, &mut obj)?;
        let mut warnings = warnings;
        warnings.extend(
            self.mutate_by_webhooks(crate::webhooks::Operation::Create, t, &mut obj, None, opts)
                .await?,
        );
        let mut errors = shoal_api::validation::validate(res.group, res.kind, &obj, None);
        errors.extend(self.custom_errors(res, &obj, None));
        if !errors.is_empty() {
            return Err(ApiError::invalid(res, &name, &errors));
        }
        if res.namespaced {
            self.check_namespace_open(t.namespace.as_deref().unwrap_or_default(), res, &name)?;
        }
        warnings.extend(self.admit_validate(t, &obj, None, opts).await?);
        // Service creates are serialised so that allocations never collide (across servers
        // too: see `allocate_for_service`).
        let _allocating = if (res.group, res.kind) == ("", "Service") {
            let guard = self.service_allocation.lock().await;
            let range = self.service_range;
            self.allocate_for_service(res, None, &mut obj, !opts.dry_run, |svc, in_use| {
                alloc::allocate(svc, in_use, rand::random(), range)
            })
            .await?;
            Some(guard)
        } else {
            None
        };
        if opts.dry_run {
            if self
                .cache
                .get(&keys::object(res, t.namespace.as_deref(), &name))
                .is_some()
            {
                return Err(ApiError::already_exists(res, &name));
            }
            return Ok(Written::from_value(obj, warnings));
        }
        for attempt in 0..8 {
            let key = keys::object(res, t.namespace.as_deref(), name_of(&obj));
            let bytes = crate::cache::json_bytes(&obj).map_err(|e| ApiError::internal(e.to_string()))?;
            match self.store.create(&key, bytes).await {
                Ok(rev) => {
                    self.cache.wait_for(rev).await;
                    set_resource_version(&mut obj, rev);
                    return Ok(self.written_at(&key, rev, obj, warnings));
                }
                Err(shoal_store::Error::AlreadyExists(_)) if generate.is_some() && attempt < 7 => {
                    let g = generate.as_deref().unwrap_or_default();
                    obj["metadata"]["name"] = json!(format!("{g}{}", generate_suffix()));
                }
                Err(shoal_store::Error::AlreadyExists(_)) => return Err(ApiError::already_exists(res, name_of(&obj))),
                Err(e) => return Err(e.into()),
            }
        }
        Err(ApiError::already_exists(res, name_of(&obj)))
    }

    /// UPDATE (PUT) of the object or of its status subresource.
    pub async fn update(&self, t: &Target, mut obj: Value, opts: &WriteOptions) -> ApiResult<Written> {
        let res = t.res;
        let mut warnings = self.decode_checks(res, &mut obj, opts)?;
        let mut obj = strategy::normalize(res, obj)?;
        self.check_namespace_of_body(t, &mut obj)?;
        let name = t.name.clone().unwrap_or_default();
        let body_name = name_of(&obj).to_string();
        if body_name.is_empty() {
            meta_mut(&mut obj).insert("name".into(), json!(name));
        } else if body_name != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({name})"
            )));
        }
        let current = self.get_object(t)?;
        // An empty resourceVersion is none: the update is unconditional, as upstream's.
        let precondition = obj["metadata"]["resourceVersion"]
            .as_str()
            .filter(|rv| !rv.is_empty())
            .map(parse_rv)
            .transpose()?;
        if precondition.is_some_and(|rv| rv != current.mod_revision) {
            return Err(ApiError::conflict(res, &name));
        }
        let mut w = self
            .finish_update(t, &current, &current.obj(), obj, opts, "Update")
            .await?;
        warnings.append(&mut w.warnings);
        w.warnings = warnings;
        Ok(w)
    }

    /// PATCH of the object or of its status subresource; retried on write races unless the
    /// patch carries its own resourceVersion precondition.
    pub async fn patch(
        &self,
        t: &Target,
        patch_body: Value,
        kind: PatchType,
        opts: &WriteOptions,
        force: bool,
    ) -> ApiResult<Written> {
        let res = t.res;
        let name = t.name.clone().unwrap_or_default();
        if kind == PatchType::Strategic && shoal_api::catalogue::is_custom(res) {
            return Err(ApiError::no_strategic_merge());
        }
        if kind == PatchType::Apply {
            if !opts.manager_given {
                return Err(ApiError::invalid_message(
                    "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
                ));
            }
            if self.get_object(t).is_err() && t.subresource.is_none() {
                let mut obj = patch_body;
                meta_mut(&mut obj).insert("name".into(), json!(name));
                return self.create_inner(t, obj, opts, true).await;
            }
        }
        let precondition = patch_body["metadata"]["resourceVersion"]
            .as_str()
            .filter(|rv| !rv.is_empty())
            .map(parse_rv)
            .transpose()?;
        for _ in 0..16 {
            let current = self.get_object(t)?;
            if precondition.is_some_and(|rv| rv != current.mod_revision) {
                return Err(ApiError::conflict(res, &name));
            }
            let current_obj = current.obj();
            let base = self.subresource_view(t, &current_obj)?;
            let patched = if kind == PatchType::Apply {
                self.server_side_apply(t, &base, &patch_body, opts, force)?
            } else {
                patch::apply(res_for_patch(t), &base, &patch_body, kind)?
            };
            let mut patched = self.subresource_to_object(t, &current_obj, patched)?;
            let mut warnings = if kind == PatchType::Json || t.subresource.is_some() {
                Vec::new()
            } else {
                self.decode_checks(res, &mut patched, opts)?
            };
            let patched = strategy::normalize(res, patched)?;
            let op = if kind == PatchType::Apply { "Apply" } else { "Update" };
            match self.finish_update(t, &current, &current_obj, patched, opts, op).await {
                Err(e) if e.code == 409 && e.reason == "Conflict" && precondition.is_none() => continue,
                Err(e) => return Err(e),
                Ok(mut w) => {
                    warnings.append(&mut w.warnings);
                    w.warnings = warnings;
                    return Ok(w);
                }
            }
        }
        Err(ApiError::conflict(res, &name))
    }

    /// Merges an apply configuration into the live object, or refuses it with upstream's
    /// conflict error.
    fn server_side_apply(
        &self,
        t: &Target,
        live: &Value,
        config: &Value,
        opts: &WriteOptions,
        force: bool,
    ) -> ApiResult<Value> {
        let manager = opts.manager.as_deref().unwrap_or_default();
        let merged = self.with_writer(res_for_patch(t), t.subresource.as_deref(), manager, |root, w| {
            managed::apply(live, config, root, w, force)
        });
        merged.map_err(|conflicts| ApiError::apply_conflicts(&managed::conflicts_message(&conflicts), &conflicts))
    }

    /// The document a patch on this target applies to (the object, or its Scale).
    fn subresource_view(&self, t: &Target, obj: &Value) -> ApiResult<Value> {
        match t.subresource.as_deref() {
            Some("scale") => Ok(scale_of(obj, &self.scale_paths(t.res))),
            _ => Ok(obj.clone()),
        }
    }

    /// Maps a patched subresource document back onto the object.
    fn subresource_to_object(&self, t: &Target, obj: &Value, patched: Value) -> ApiResult<Value> {
        match t.subresource.as_deref() {
            Some("scale") => {
                let replicas = patched["spec"]["replicas"].as_i64().unwrap_or(0);
                let mut out = obj.clone();
                self.scale_paths(t.res).set_replicas(&mut out, replicas);
                Ok(out)
            }
            _ => Ok(patched),
        }
    }

    /// The shared tail of update and patch: strategy, defaults, validation, finalizer-driven
    /// deletion, no-op detection and the compare-and-swap write. `old` is `current` decoded
    /// (the caller has it already).
    async fn finish_update(
        &self,
        t: &Target,
        current: &Entry,
        old: &Value,
        mut obj: Value,
        opts: &WriteOptions,
        op: &str,
    ) -> ApiResult<Written> {
        let res = t.res;
        let name = name_of(old).to_string();
        // Server-owned metadata stays as stored.
        for k in [
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "namespace",
            "name",
        ] {
            match old["metadata"].get(k) {
                Some(v) => {
                    meta_mut(&mut obj).insert(k.into(), v.clone());
                }
                None => {
                    meta_mut(&mut obj).remove(k);
                }
            }
        }
        match t.subresource.as_deref() {
            Some("status") => {
                obj = strategy::status_update(res, &obj, old);
                shoal_api::defaults::apply_defaults(res.group, res.kind, &mut obj);
                self.custom_defaults(res, &mut obj);
            }
            Some("finalize") => {
                // Only spec.finalizers changes through a namespace's finalize subresource.
                let finalizers = obj["spec"]["finalizers"].take();
                obj = old.clone();
                obj["spec"]["finalizers"] = finalizers;
            }
            Some("scale") | None => {
                // Defaults first, so that the generation counts real spec changes only.
                shoal_api::defaults::apply_defaults(res.group, res.kind, &mut obj);
                self.custom_defaults(res, &mut obj);
                strategy::prepare_update(res, &mut obj, old);
                shoal_api::defaults::prepare_for_update(res.group, res.kind, &mut obj, old);
            }
            Some(other) => return Err(ApiError::method_not_allowed(&format!("update of {other}"), res)),
        }
        if op != "Apply" {
            self.record_manager(res, t, &mut obj, opts, Some(old));
        }
        strategy::fill_status(res, &mut obj);
        if let Some(node) = opts.node() {
            crate::nodeauth::admit(node, t, &obj, Some(old))?;
        }
        if let Some((user, groups)) = opts.user()
            && res.group == crate::rbac::GROUP
            && t.subresource.is_none()
        {
            let ns = t.namespace.as_deref().unwrap_or_default();
            crate::rbac::check_escalation(self, res.kind, &obj, ns, user, groups)?;
        }
        // A Service that becomes (or stays) a NodePort or LoadBalancer gets node ports for
        // the ports that lack one; allocations are serialised with creates.
        let _allocating = if (res.group, res.kind) == ("", "Service") && t.subresource.is_none() {
            let guard = self.service_allocation.lock().await;
            let own = keys::object(res, t.namespace.as_deref(), &name);
            self.allocate_for_service(res, Some(&own), &mut obj, !opts.dry_run, |svc, in_use| {
                alloc::allocate_node_ports(svc, in_use, rand::random())
            })
            .await?;
            Some(guard)
        } else {
            None
        };
        if (res.group, res.plural) == ("", "pods") {
            // Priority admission on update: what the pod had stays if a client dropped it.
            for k in ["priority", "preemptionPolicy"] {
                if obj["spec"].get(k).is_none()
                    && let Some(v) = old["spec"].get(k)
                    && let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut)
                {
                    spec.insert(k.into(), v.clone());
                }
            }
        }
        let mut warnings = self
            .mutate_by_webhooks(crate::webhooks::Operation::Update, t, &mut obj, Some(old), opts)
            .await?;
        let mut errors = shoal_api::validation::validate(res.group, res.kind, &obj, Some(old));
        errors.extend(self.custom_errors(res, &obj, Some(old)));
        if !errors.is_empty() {
            return Err(ApiError::invalid(res, &name, &errors));
        }
        if t.subresource.is_none() {
            warnings.extend(self.admit_validate(t, &obj, Some(old), opts).await?);
        } else {
            let attempt = crate::webhooks::Attempt {
                op: crate::webhooks::Operation::Update,
                t,
                obj: Some(&obj),
                old: Some(old),
                opts,
            };
            warnings.extend(self.validate_dynamically(&attempt).await?);
        }
        meta_mut(&mut obj).remove("resourceVersion");
        if same_ignoring_manager_time(&obj, old) {
            return Ok(Written {
                obj: old.clone(),
                json: current.json(),
                warnings: Vec::new(),
            });
        }
        if opts.dry_run {
            set_resource_version(&mut obj, current.mod_revision);
            return Ok(Written::from_value(obj, warnings));
        }
        let key = keys::object(res, t.namespace.as_deref(), &name);
        let terminating = obj["metadata"].get("deletionTimestamp").is_some();
        let no_finalizers = obj["metadata"]["finalizers"].as_array().is_none_or(Vec::is_empty);
        let spec_finalizers_done =
            res.kind != "Namespace" || obj["spec"]["finalizers"].as_array().is_none_or(Vec::is_empty);
        if terminating && no_finalizers && spec_finalizers_done {
            let (rev, _) = self
                .store
                .delete(&key, current.mod_revision)
                .await
                .map_err(|e| store_conflict(e, res, &name))?;
            self.cache.wait_for(rev).await;
            set_resource_version(&mut obj, rev);
            return Ok(Written::from_value(obj, warnings));
        }
        let bytes = crate::cache::json_bytes(&obj).map_err(|e| ApiError::internal(e.to_string()))?;
        let rev = self
            .store
            .update(&key, bytes, current.mod_revision)
            .await
            .map_err(|e| store_conflict(e, res, &name))?;
        self.cache.wait_for(rev).await;
        set_resource_version(&mut obj, rev);
        Ok(self.written_at(&key, rev, obj, warnings))
    }

    /// POST pods/{name}/binding: assigns the pod to a node, once.
    pub async fn bind(&self, t: &Target, binding: &Value) -> ApiResult<()> {
        let name = t.name.clone().unwrap_or_default();
        let node = binding["target"]["name"].as_str().unwrap_or_default().to_string();
        if node.is_empty() {
            return Err(ApiError::invalid(
                t.res,
                &name,
                &[shoal_api::field::FieldError::required("target.name", "")],
            ));
        }
        for _ in 0..16 {
            let current = self.get_object(t)?;
            let current_obj = current.obj();
            if let Some(existing) = current_obj["spec"]["nodeName"].as_str().filter(|s| !s.is_empty()) {
                return Err(ApiError::conflict_with(
                    t.res,
                    &name,
                    &format!("pod {name} is already assigned to node \"{existing}\""),
                ));
            }
            if current_obj["metadata"].get("deletionTimestamp").is_some() {
                return Err(ApiError::conflict_with(
                    t.res,
                    &name,
                    &format!("pod {name} is being deleted, cannot be assigned to a host"),
                ));
            }
            let mut obj = current_obj;
            obj["spec"]["nodeName"] = json!(node);
            let conditions = obj["status"]["conditions"].as_array().cloned().unwrap_or_default();
            let mut conditions: Vec<Value> = conditions.into_iter().filter(|c| c["type"] != "PodScheduled").collect();
            conditions.push(json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": now_rfc3339()}));
            obj["status"]["conditions"] = Value::Array(conditions);
            meta_mut(&mut obj).remove("resourceVersion");
            let key = keys::object(t.res, t.namespace.as_deref(), &name);
            let bytes = crate::cache::json_bytes(&obj).map_err(|e| ApiError::internal(e.to_string()))?;
            match self.store.update(&key, bytes, current.mod_revision).await {
                Ok(rev) => {
                    self.cache.wait_for(rev).await;
                    return Ok(());
                }
                Err(shoal_store::Error::Conflict { current, .. }) => {
                    // Retried once the cache shows the write that won: reading the same
                    // stale entry again would only conflict again.
                    self.cache.wait_for(current.mod_revision).await;
                    continue;
                }
                // Deleted between the read and the write: gone, as for any other write.
                Err(e) => return Err(store_conflict(e, t.res, &name)),
            }
        }
        Err(ApiError::conflict(t.res, &name))
    }

    /// Unknown-field handling per `fieldValidation`, and the apiVersion/kind check.
    fn decode_checks(&self, res: &Resource, obj: &mut Value, opts: &WriteOptions) -> ApiResult<Vec<String>> {
        if !obj.is_object() {
            return Err(ApiError::bad_request(format!(
                "{} in version \"{}\" cannot be handled as a {}: the object must be a JSON object",
                res.kind, res.version, res.kind
            )));
        }
        match obj.get("kind").and_then(Value::as_str) {
            None | Some("") => {
                obj["kind"] = json!(res.kind);
            }
            Some(k) if k == res.kind => {}
            Some(k) => {
                return Err(ApiError::bad_request(format!(
                    "the kind in the data ({k}) does not match the expected kind ({})",
                    res.kind
                )));
            }
        }
        match obj.get("apiVersion").and_then(Value::as_str) {
            None | Some("") => obj["apiVersion"] = json!(res.api_version()),
            Some(v) if v == res.api_version() => {}
            Some(v) => {
                return Err(ApiError::bad_request(format!(
                    "the API version in the data ({v}) does not match the expected API version ({})",
                    res.api_version()
                )));
            }
        }
        let unknown = match self.custom_schema(res) {
            // A custom object: what its schema does not declare is pruned, and reported.
            Some(schema) => shoal_api::structural::prune(schema.get(), obj),
            None => shoal_api::schema::definition_name(res.group, res.version, res.kind)
                .map(|d| shoal_api::schema::unknown_fields(d, obj))
                .unwrap_or_default(),
        };
        // As upstream: each duplicated field once, then the unknown ones (a field both
        // duplicated and unknown is reported as unknown).
        let mut problems: Vec<String> = Vec::new();
        for d in &opts.duplicates {
            let p = format!("duplicate field \"{d}\"");
            if !unknown.contains(d) && !problems.contains(&p) {
                problems.push(p);
            }
        }
        problems.extend(unknown.iter().map(|f| format!("unknown field \"{f}\"")));
        if problems.is_empty() {
            return Ok(Vec::new());
        }
        match opts.validation.unwrap_or(FieldValidation::Warn) {
            FieldValidation::Strict => Err(ApiError::bad_request(format!(
                "{kind} in version \"{version}\" cannot be handled as a {kind}: strict decoding error: {}",
                problems.join(", "),
                kind = res.kind,
                version = res.version,
            ))),
            FieldValidation::Warn => Ok(problems),
            FieldValidation::Ignore => Ok(Vec::new()),
        }
    }

    /// The body's namespace must agree with the URL's; it defaults to it.
    fn check_namespace_of_body(&self, t: &Target, obj: &mut Value) -> ApiResult<()> {
        let meta = meta_mut(obj);
        if !t.res.namespaced {
            meta.remove("namespace");
            return Ok(());
        }
        let url_ns = t.namespace.clone().unwrap_or_default();
        match meta.get("namespace").and_then(Value::as_str) {
            Some(ns) if !ns.is_empty() && ns != url_ns => Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            )),
            _ => {
                meta.insert("namespace".into(), json!(url_ns));
                Ok(())
            }
        }
    }

    /// NamespaceLifecycle: nothing new (`res` named `name`) in a namespace being deleted.
    fn check_namespace_open(&self, ns: &str, res: &Resource, name: &str) -> ApiResult<()> {
        let nsres = catalogue::find("", "v1", "namespaces").expect("namespaces are served");
        let Some(entry) = self.cache.get(&keys::object(nsres, None, ns)) else {
            return Err(ApiError::not_found(nsres, ns));
        };
        #[derive(serde::Deserialize)]
        struct Meta {
            #[serde(rename = "deletionTimestamp")]
            deletion_timestamp: Option<serde::de::IgnoredAny>,
        }
        #[derive(serde::Deserialize)]
        struct Namespace {
            metadata: Option<Meta>,
        }
        let terminating = entry
            .fields::<Namespace>()
            .and_then(|n| n.metadata)
            .is_some_and(|m| m.deletion_timestamp.is_some());
        if terminating {
            // As upstream, the cause says why, so clients match on it rather than the text.
            let message = format!("unable to create new content in namespace {ns} because it is being terminated");
            let name = if name.is_empty() { "Unknown" } else { name };
            return Err(crate::admission::forbidden(res, name, &message).with_details(json!({
                "name": name, "group": res.group, "kind": res.plural,
                "causes": [{"reason": "NamespaceTerminating", "message": message, "field": "metadata.namespace"}],
            })));
        }
        Ok(())
    }
}

fn res_for_patch(t: &Target) -> &'static Resource {
    match t.subresource.as_deref() {
        Some("scale") => &SCALE_RESOURCE,
        _ => t.res,
    }
}

static SCALE_RESOURCE: Resource = Resource {
    group: "autoscaling",
    version: "v1",
    plural: "scales",
    singular: "scale",
    kind: "Scale",
    namespaced: true,
    short_names: &[],
    categories: &[],
    verbs: &[],
    subresources: &[],
};

/// The autoscaling/v1 Scale view of a scalable object.
/// Where a resource keeps what its Scale shows: the built-in kinds' `spec.replicas`,
/// `status.replicas` and `spec.selector` (a LabelSelector), or a custom resource's
/// `specReplicasPath`, `statusReplicasPath` and `labelSelectorPath` (a selector string).
#[derive(Clone, Debug, PartialEq)]
pub struct ScalePaths {
    spec: Vec<String>,
    status: Vec<String>,
    /// None: the built-in `spec.selector` object.
    selector: Option<Vec<String>>,
}

impl Default for ScalePaths {
    fn default() -> Self {
        ScalePaths {
            spec: vec!["spec".into(), "replicas".into()],
            status: vec!["status".into(), "replicas".into()],
            selector: None,
        }
    }
}

impl ScalePaths {
    /// The paths a CRD version's `subresources.scale` names (`.spec.replicas`, ...).
    pub fn of_custom(scale: &Value) -> ScalePaths {
        let path = |key: &str| -> Option<Vec<String>> {
            let p = scale[key].as_str()?.strip_prefix('.')?;
            (!p.is_empty()).then(|| p.split('.').map(str::to_string).collect())
        };
        ScalePaths {
            spec: path("specReplicasPath").unwrap_or_else(|| vec!["spec".into(), "replicas".into()]),
            status: path("statusReplicasPath").unwrap_or_else(|| vec!["status".into(), "replicas".into()]),
            selector: Some(path("labelSelectorPath").unwrap_or_default()),
        }
    }

    fn at<'a>(obj: &'a Value, path: &[String]) -> &'a Value {
        path.iter().fold(obj, |v, k| &v[k.as_str()])
    }

    /// Sets the spec's replicas in `obj` to `replicas`.
    pub fn set_replicas(&self, obj: &mut Value, replicas: i64) {
        let mut at = obj;
        for k in &self.spec {
            if !at.is_object() {
                *at = json!({});
            }
            at = &mut at[k.as_str()];
        }
        *at = json!(replicas);
    }

    /// A merge patch that sets the spec's replicas to `replicas`.
    pub fn replicas_patch(&self, replicas: &Value) -> Value {
        self.spec
            .iter()
            .rev()
            .fold(replicas.clone(), |inner, k| json!({ k: inner }))
    }
}

pub fn scale_of(obj: &Value, paths: &ScalePaths) -> Value {
    let selector = match &paths.selector {
        None => shoal_api::selector::LabelSelector::from_api(&obj["spec"]["selector"])
            .map(|s| s.to_string())
            .unwrap_or_default(),
        Some(p) if p.is_empty() => String::new(),
        Some(p) => ScalePaths::at(obj, p).as_str().unwrap_or_default().to_string(),
    };
    let spec = ScalePaths::at(obj, &paths.spec).as_i64().unwrap_or(0);
    let status = ScalePaths::at(obj, &paths.status).as_i64().unwrap_or(0);
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": obj["metadata"]["name"],
            "namespace": obj["metadata"]["namespace"],
            "uid": obj["metadata"]["uid"],
            "resourceVersion": obj["metadata"]["resourceVersion"],
            "creationTimestamp": obj["metadata"]["creationTimestamp"],
        },
        "spec": {"replicas": spec},
        "status": {"replicas": status, "selector": selector},
    })
}

pub(crate) fn store_conflict(e: shoal_store::Error, res: &Resource, name: &str) -> ApiError {
    match e {
        shoal_store::Error::Conflict { .. } => ApiError::conflict(res, name),
        shoal_store::Error::NotFound(_) => ApiError::not_found(res, name),
        other => other.into(),
    }
}

impl ApiServer {
    /// Records the write in `metadata.managedFields`: an `Update` takes the fields it
    /// changed. Writes without a field manager keep the stored entries as they are.
    fn record_manager(&self, res: &Resource, t: &Target, obj: &mut Value, opts: &WriteOptions, old: Option<&Value>) {
        let Some(manager) = opts.manager.as_deref().filter(|m| !m.is_empty()) else {
            match old.and_then(|o| o["metadata"].get("managedFields")) {
                Some(mf) => {
                    meta_mut(obj).insert("managedFields".into(), mf.clone());
                }
                None => {
                    meta_mut(obj).remove("managedFields");
                }
            }
            return;
        };
        self.with_writer(res, t.subresource.as_deref(), manager, |root, w| {
            managed::record_update(old, obj, root, w)
        });
    }

    /// Calls `f` with the schema of `res` (a built-in kind's definition, or a custom
    /// resource's `openAPIV3Schema`: its list types and map keys decide how fields are
    /// owned) and the [`managed::Writer`] of this write.
    fn with_writer<R>(
        &self,
        res: &Resource,
        subresource: Option<&str>,
        manager: &str,
        f: impl FnOnce(Option<&Value>, &managed::Writer) -> R,
    ) -> R {
        let custom = self.custom_schema(res);
        let root = match &custom {
            Some(schema) => Some(schema.get()),
            None => shoal_api::schema::definition_name(res.group, res.version, res.kind)
                .and_then(shoal_api::schema::definition),
        };
        let api_version = res.api_version();
        let now = now_rfc3339();
        let w = managed::Writer {
            manager,
            api_version: &api_version,
            subresource,
            now: &now,
        };
        f(root, &w)
    }
}

/// True when `a` and `b` differ at most in `metadata.resourceVersion` and in the times of
/// their managedFields entries: a write that changes nothing else is a no-op.
fn same_ignoring_manager_time(a: &Value, b: &Value) -> bool {
    // Compared in place: a write's no-op check must not copy the object (it runs on every
    // update and patch).
    fn same_maps(
        a: &Map<String, Value>,
        b: &Map<String, Value>,
        skip: &str,
        eq: &dyn Fn(&str, &Value, &Value) -> bool,
    ) -> bool {
        let kept = |m: &Map<String, Value>| m.keys().filter(|k| *k != skip).count();
        kept(a) == kept(b)
            && a.iter()
                .filter(|(k, _)| *k != skip)
                .all(|(k, v)| b.get(k).is_some_and(|w| eq(k, v, w)))
    }
    fn same_entry(x: &Value, y: &Value) -> bool {
        match (x.as_object(), y.as_object()) {
            (Some(x), Some(y)) => same_maps(x, y, "time", &|_, v, w| v == w),
            _ => x == y,
        }
    }
    fn same_meta(x: &Value, y: &Value) -> bool {
        match (x.as_object(), y.as_object()) {
            (Some(x), Some(y)) => same_maps(
                x,
                y,
                "resourceVersion",
                &|k, v, w| match (k, v.as_array(), w.as_array()) {
                    ("managedFields", Some(v), Some(w)) => {
                        v.len() == w.len() && v.iter().zip(w).all(|(e, f)| same_entry(e, f))
                    }
                    _ => v == w,
                },
            ),
            _ => x == y,
        }
    }
    match (a.as_object(), b.as_object()) {
        (Some(a), Some(b)) => same_maps(a, b, "", &|k, v, w| {
            if k == "metadata" { same_meta(v, w) } else { v == w }
        }),
        _ => a == b,
    }
}

/// Parses the label and field selectors of a request, validating the field selector for the kind.
pub fn selectors(res: &Resource, p: &Params) -> ApiResult<(Option<LabelSelector>, Option<FieldSelector>)> {
    let labels = p
        .get("labelSelector")
        .map(|s| LabelSelector::parse(s).map_err(|e| ApiError::bad_request(e.to_string())))
        .transpose()?;
    let fields = p
        .get("fieldSelector")
        .map(|s| {
            let f = FieldSelector::parse(s).map_err(|e| ApiError::bad_request(e.to_string()))?;
            f.validate_for(res.group, res.kind)
                .map_err(|e| ApiError::bad_request(e.to_string()))?;
            Ok::<_, ApiError>(f)
        })
        .transpose()?;
    Ok((labels, fields))
}

/// Whether an object passes the selectors.
pub fn matches(res: &Resource, labels: &Option<LabelSelector>, fields: &Option<FieldSelector>, obj: &Value) -> bool {
    if let Some(l) = labels {
        let empty = Map::new();
        if !l.matches(obj["metadata"]["labels"].as_object().unwrap_or(&empty)) {
            return false;
        }
    }
    fields.as_ref().is_none_or(|f| f.matches(res.group, res.kind, obj))
}

/// Whether a cached entry passes the selectors (decoded, without the managed fields no selector
/// reads, only when there are selectors).
pub fn matches_entry(
    res: &Resource,
    labels: &Option<LabelSelector>,
    fields: &Option<FieldSelector>,
    e: &Entry,
) -> bool {
    (labels.is_none() && fields.is_none())
        || matches(
            res,
            labels,
            fields,
            &e.obj_in(&shoal_api::shape::WITHOUT_MANAGED_FIELDS),
        )
}

/// Parses a resourceVersion (400 when it is not a revision).
pub fn parse_rv(rv: &str) -> ApiResult<Revision> {
    rv.parse::<Revision>()
        .map_err(|_| ApiError::bad_request(format!("invalid resource version: {rv:?}")))
}

/// The first key after the last item (the start of the next page).
fn after_key(items: &[Arc<Entry>]) -> String {
    format!("{}\0", items.last().map(|e| e.key.as_str()).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_paths_read_and_write_where_the_definition_says() {
        let paths = ScalePaths::of_custom(
            &json!({"specReplicasPath": ".spec.count", "statusReplicasPath": ".status.n",
            "labelSelectorPath": ".status.selector"}),
        );
        let mut obj = json!({"metadata": {"name": "w"}, "spec": {"count": 2}, "status": {"n": 1, "selector": "a=b"}});
        let scale = scale_of(&obj, &paths);
        assert_eq!(
            (
                &scale["spec"]["replicas"],
                &scale["status"]["replicas"],
                &scale["status"]["selector"]
            ),
            (&json!(2), &json!(1), &json!("a=b"))
        );
        paths.set_replicas(&mut obj, 5);
        assert_eq!(obj["spec"]["count"], 5);
        assert_eq!(paths.replicas_patch(&json!(7)), json!({"spec": {"count": 7}}));
        // Without a selector path, the Scale has an empty selector; built-ins read spec.selector.
        let bare = ScalePaths::of_custom(
            &json!({"specReplicasPath": ".spec.replicas", "statusReplicasPath": ".status.replicas"}),
        );
        assert_eq!(scale_of(&obj, &bare)["status"]["selector"], "");
        let deploy =
            json!({"spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}}}, "status": {"replicas": 3}});
        assert_eq!(
            scale_of(&deploy, &ScalePaths::default())["status"]["selector"],
            "app=web"
        );
    }

    #[test]
    fn a_write_is_a_no_op_when_only_the_resource_version_and_manager_times_differ() {
        let a = json!({"metadata": {"name": "p", "resourceVersion": "1",
                                    "managedFields": [{"manager": "m", "time": "2026-01-01T00:00:00Z"}]},
                       "spec": {"x": 1}});
        let mut b = a.clone();
        b["metadata"]["managedFields"][0]["time"] = json!("2026-01-02T00:00:00Z");
        meta_mut(&mut b).remove("resourceVersion");
        assert!(same_ignoring_manager_time(&a, &b));
        assert!(same_ignoring_manager_time(&b, &a));
        for change in [
            json!({"spec": {"x": 2}}),
            json!({"status": {}}),
            json!({"metadata": {"labels": {"a": "b"}}}),
            json!({"metadata": {"managedFields": [{"manager": "other", "time": "2026-01-01T00:00:00Z"}]}}),
            json!({"metadata": {"managedFields": []}}),
        ] {
            let mut c = b.clone();
            for (k, v) in change.as_object().unwrap() {
                match (k.as_str(), v.as_object()) {
                    ("metadata", Some(m)) => {
                        for (mk, mv) in m {
                            c["metadata"][mk] = mv.clone();
                        }
                    }
                    _ => c[k] = v.clone(),
                }
            }
            assert!(!same_ignoring_manager_time(&a, &c), "{change}");
            assert!(!same_ignoring_manager_time(&c, &a), "{change}");
        }
    }
}
