//! CustomResourceDefinitions come to life here: a supervised component follows them in the
//! watch cache, decides whose names are accepted (the first definition to claim a plural,
//! singular, short name or kind in its group keeps it), writes their status as upstream's
//! naming and establishing controllers do (`NamesAccepted`, `Established`,
//! `acceptedNames`, `storedVersions`), serves the versions of the Established ones
//! ([`shoal_api::catalogue::set_custom`]), and deletes a definition's objects once it is
//! gone.

use std::collections::HashSet;
use std::sync::Arc;

use serde_json::{Value, json};
use shoal_api::catalogue::{self, CustomVersion};

use crate::ApiServer;
use crate::request::Target;
use crate::rest::WriteOptions;

/// Where definitions are stored.
pub const PREFIX: &str = "/registry/apiextensions.k8s.io/customresourcedefinitions/";

/// The (group, plural) of a definition: where its objects are stored
/// (`/registry/<group>/<plural>/...`).
fn crd_names(crd: &Value) -> (String, String) {
    let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
    (s(&crd["spec"]["group"]), s(&crd["spec"]["names"]["plural"]))
}

/// Upstream's version priority: GA before beta before alpha, higher numbers first, other
/// names last in alphabetical order.
fn version_rank(v: &str) -> (u8, i64, i64, String) {
    let parse = |rest: &str| -> Option<(u8, i64, i64)> {
        let (major, rest) = rest.split_at(rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len()));
        let major: i64 = major.parse().ok()?;
        if rest.is_empty() {
            return Some((0, -major, 0));
        }
        for (tag, level) in [("beta", 1), ("alpha", 2)] {
            if let Some(n) = rest.strip_prefix(tag) {
                return Some((level, -major, -n.parse::<i64>().ok()?));
            }
        }
        None
    };
    match v.strip_prefix('v').and_then(parse) {
        Some((level, major, minor)) => (level, major, minor, String::new()),
        None => (3, 0, 0, v.to_string()),
    }
}

/// The names of a definition, each as a (what, value) pair checked against the others of
/// its group.
fn claimed(names: &Value) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    for (what, key) in [
        ("PluralConflict", "plural"),
        ("SingularConflict", "singular"),
        ("KindConflict", "kind"),
        ("ListKindConflict", "listKind"),
    ] {
        if let Some(v) = names[key].as_str().filter(|v| !v.is_empty()) {
            out.push((what, v.to_string()));
        }
    }
    for short in names["shortNames"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        out.push(("ShortNamesConflict", short.to_string()));
    }
    out
}

/// A condition as upstream writes it, keeping `lastTransitionTime` when its status holds.
fn condition(old: &Value, kind: &str, status: bool, reason: &str, message: &str, now: &str) -> Value {
    let status = if status { "True" } else { "False" };
    let before = old["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == kind);
    let since = match before {
        Some(c) if c["status"] == status => c["lastTransitionTime"].clone(),
        _ => json!(now),
    };
    json!({"type": kind, "status": status, "lastTransitionTime": since, "reason": reason, "message": message})
}

/// The status `crd` should have, given the names `taken` by earlier definitions of its
/// group; and whether it is Established.
pub fn desired_status(crd: &Value, taken: &HashSet<(String, String)>, now: &str) -> (Value, bool) {
    let spec = &crd["spec"];
    let group = spec["group"].as_str().unwrap_or_default();
    let names = &spec["names"];
    let conflict = claimed(names)
        .into_iter()
        .find(|(_, v)| taken.contains(&(group.to_string(), v.clone())));
    let accepted = conflict.is_none();
    let named = match &conflict {
        None => condition(crd, "NamesAccepted", true, "NoConflicts", "no conflicts found", now),
        Some((reason, v)) => condition(
            crd,
            "NamesAccepted",
            false,
            reason,
            &format!("{v:?} is already in use"),
            now,
        ),
    };
    let established = if accepted {
        condition(
            crd,
            "Established",
            true,
            "InitialNamesAccepted",
            "the initial names have been accepted",
            now,
        )
    } else {
        condition(
            crd,
            "Established",
            false,
            "NotAccepted",
            "not all names are accepted",
            now,
        )
    };
    let mut accepted_names = json!({});
    if accepted {
        for key in ["plural", "singular", "shortNames", "kind", "listKind", "categories"] {
            if !names[key].is_null() {
                accepted_names[key] = names[key].clone();
            }
        }
    } else {
        accepted_names = crd["status"]["acceptedNames"].clone();
        if accepted_names.is_null() {
            accepted_names = json!({"plural": "", "kind": ""});
        }
    }
    // The storage version joins those ever stored; none is dropped here (only a client may
    // remove a version from `storedVersions`, once its objects are migrated).
    let mut stored: Vec<Value> = crd["status"]["storedVersions"].as_array().cloned().unwrap_or_default();
    for v in spec["versions"].as_array().into_iter().flatten() {
        if v["storage"] == true && !stored.contains(&v["name"]) {
            stored.push(v["name"].clone());
        }
    }
    let mut conditions = vec![named, established];
    if !crd["metadata"]["deletionTimestamp"].is_null() {
        conditions.push(condition(
            crd,
            "Terminating",
            true,
            "InstanceDeletionInProgress",
            "CustomResource deletion is in progress",
            now,
        ));
    }
    let status = json!({
        "conditions": conditions,
        "acceptedNames": accepted_names,
        "storedVersions": stored,
    });
    (status, accepted)
}

/// The finalizer a definition being deleted holds until its objects are gone.
pub const CLEANUP_FINALIZER: &str = "customresourcecleanup.apiextensions.k8s.io";

/// The served versions of an Established definition, the preferred first.
pub fn served_versions(crd: &Value) -> Vec<CustomVersion> {
    let spec = &crd["spec"];
    let names = &spec["names"];
    let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
    let mut versions: Vec<&Value> = spec["versions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|v| v["served"] == true)
        .collect();
    versions.sort_by_key(|v| version_rank(v["name"].as_str().unwrap_or_default()));
    let kind = s(&names["kind"]);
    versions
        .into_iter()
        .map(|v| CustomVersion {
            group: s(&spec["group"]),
            version: s(&v["name"]),
            plural: s(&names["plural"]),
            singular: names["singular"]
                .as_str()
                .map_or_else(|| kind.to_lowercase(), str::to_string),
            kind: kind.clone(),
            namespaced: spec["scope"] == "Namespaced",
            short_names: crate::rbac::strings(&names["shortNames"]),
            categories: crate::rbac::strings(&names["categories"]),
            status: !v["subresources"]["status"].is_null(),
            scale: !v["subresources"]["scale"].is_null(),
            storage: v["storage"] == true,
        })
        .collect()
}

/// The schema of one served version of a custom resource, in its decoded definition.
pub struct CustomSchema {
    crd: Arc<Value>,
    version: usize,
}

impl CustomSchema {
    /// The version's `openAPIV3Schema`.
    pub fn get(&self) -> &Value {
        &self.crd["spec"]["versions"][self.version]["schema"]["openAPIV3Schema"]
    }
}

impl std::ops::Deref for CustomSchema {
    type Target = Value;
    fn deref(&self) -> &Value {
        self.get()
    }
}

/// Publishes the OpenAPI documents of the served custom resources (for `kubectl
/// explain`, and for kubectl to know how to patch them).
fn publish_openapi(crds: &[&Value]) {
    let mut kinds = Vec::new();
    for crd in crds {
        for v in served_versions(crd) {
            let Some(resource) = catalogue::find(&v.group, &v.version, &v.plural) else {
                continue;
            };
            if !catalogue::is_custom(resource) {
                continue;
            }
            let schema = crd["spec"]["versions"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|x| x["name"] == v.version.as_str())
                .map(|x| x["schema"]["openAPIV3Schema"].clone())
                .unwrap_or_default();
            kinds.push(shoal_api::openapi::CustomKind { resource, schema });
        }
    }
    shoal_api::openapi::set_custom(kinds);
}

impl ApiServer {
    /// The schema of custom resource `res` (None for a built-in resource), from its
    /// definition as decoded once per revision.
    pub(crate) fn custom_schema(&self, res: &shoal_api::catalogue::Resource) -> Option<CustomSchema> {
        let crd = self.definition_of(res)?;
        let version = crd["spec"]["versions"]
            .as_array()?
            .iter()
            .position(|v| v["name"] == res.version)?;
        Some(CustomSchema { crd, version })
    }

    /// Where `res` keeps what its Scale shows (a custom resource's definition says).
    pub(crate) fn scale_paths(&self, res: &shoal_api::catalogue::Resource) -> crate::rest::ScalePaths {
        match self.custom_schema(res) {
            Some(s) => {
                crate::rest::ScalePaths::of_custom(&s.crd["spec"]["versions"][s.version]["subresources"]["scale"])
            }
            None => crate::rest::ScalePaths::default(),
        }
    }

    /// Fills the schema's defaults into custom object `obj` of `res` (nothing for a built-in
    /// resource).
    pub(crate) fn custom_defaults(&self, res: &shoal_api::catalogue::Resource, obj: &mut Value) {
        if let Some(schema) = self.custom_schema(res) {
            shoal_api::structural::apply_defaults(&schema, obj);
        }
    }

    /// What in custom object `obj` of `res` breaks its schema or its CEL rules (nothing for a
    /// built-in); `old` is the stored object on an update (for transition rules).
    pub(crate) fn custom_errors(
        &self,
        res: &shoal_api::catalogue::Resource,
        obj: &Value,
        old: Option<&Value>,
    ) -> Vec<shoal_api::field::FieldError> {
        match self.custom_schema(res) {
            Some(schema) => {
                let mut errors = shoal_api::structural::validate(&schema, obj);
                if let Some(old) = old {
                    errors = shoal_api::structural::ratchet(errors, obj, old);
                }
                errors.extend(shoal_api::cel::validate(&schema, obj, old));
                errors
            }
            None => Vec::new(),
        }
    }

    /// The conversion webhook of custom resource `res`'s definition, when its strategy is
    /// `Webhook`.
    pub(crate) fn conversion_hook(&self, res: &shoal_api::catalogue::Resource) -> Option<crate::webhooks::Callee> {
        let crd = self.definition_of(res)?;
        let conversion = &crd["spec"]["conversion"];
        if conversion["strategy"] != "Webhook" {
            return None;
        }
        // Upstream gives a conversion webhook 30 seconds.
        crate::webhooks::Callee::of(
            &conversion["webhook"]["clientConfig"],
            std::time::Duration::from_secs(30),
        )
    }

    /// Custom objects of `to`'s kind in the version `to` serves: those in another version
    /// are converted by the definition's webhook (one ConversionReview for all of them), or
    /// by the `None` strategy (only `apiVersion` changes). A converted object keeps its
    /// metadata but for labels and annotations, as upstream keeps it.
    pub(crate) async fn convert_custom(
        &self,
        to: &shoal_api::catalogue::Resource,
        mut objs: Vec<Value>,
    ) -> crate::status::ApiResult<Vec<Value>> {
        let want = to.api_version();
        let Some(callee) = self.conversion_hook(to) else {
            for o in &mut objs {
                o["apiVersion"] = json!(want);
            }
            return Ok(objs);
        };
        let todo: Vec<usize> = (0..objs.len())
            .filter(|i| objs[*i]["apiVersion"] != want.as_str())
            .collect();
        if todo.is_empty() {
            return Ok(objs);
        }
        let failed = |m: &str| {
            crate::status::ApiError::internal(format!("conversion webhook for {want}, Kind={} failed: {m}", to.kind))
        };
        let uid = uuid::Uuid::new_v4().to_string();
        let review = json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "ConversionReview",
            "request": {"uid": uid, "desiredAPIVersion": want,
                        "objects": todo.iter().map(|i| objs[*i].clone()).collect::<Vec<_>>()}});
        let answer = self
            .post_json(&callee, &review)
            .await
            .map_err(|crate::webhooks::CallError(e)| failed(&e))?;
        let response = &answer["response"];
        if response["uid"] != uid.as_str() {
            return Err(failed(&format!(
                "expected response.uid=\"{uid}\", got \"{}\"",
                response["uid"].as_str().unwrap_or_default()
            )));
        }
        if response["result"]["status"] != "Success" {
            return Err(failed(
                response["result"]["message"].as_str().unwrap_or("conversion failed"),
            ));
        }
        let converted = response["convertedObjects"].as_array().cloned().unwrap_or_default();
        if converted.len() != todo.len() {
            return Err(failed(&format!(
                "returned {} objects, expected {}",
                converted.len(),
                todo.len()
            )));
        }
        for (i, mut c) in todo.into_iter().zip(converted) {
            if c["apiVersion"] != want.as_str() || c["kind"] != objs[i]["kind"] {
                return Err(failed(&format!(
                    "invalid converted object: expected {want}, Kind={}, got {}, Kind={}",
                    to.kind,
                    c["apiVersion"].as_str().unwrap_or_default(),
                    c["kind"].as_str().unwrap_or_default()
                )));
            }
            let mut metadata = objs[i]["metadata"].clone();
            for k in ["labels", "annotations"] {
                match c["metadata"].get(k) {
                    Some(v) => metadata[k] = v.clone(),
                    None => {
                        if let Some(m) = metadata.as_object_mut() {
                            m.remove(k);
                        }
                    }
                }
            }
            c["metadata"] = metadata;
            objs[i] = c;
        }
        Ok(objs)
    }

    /// Stored objects as `res` (a served version) shows them.
    pub(crate) async fn present(
        &self,
        res: &shoal_api::catalogue::Resource,
        objs: Vec<Value>,
    ) -> crate::status::ApiResult<Vec<Value>> {
        if catalogue::is_custom(res) {
            return self.convert_custom(res, objs).await;
        }
        Ok(objs
            .into_iter()
            .map(|o| crate::conversion::from_storage(res, o))
            .collect())
    }

    /// One stored object as `res` shows it.
    pub(crate) async fn present_one(
        &self,
        res: &shoal_api::catalogue::Resource,
        obj: Value,
    ) -> crate::status::ApiResult<Value> {
        Ok(self.present(res, vec![obj]).await?.pop().unwrap_or_default())
    }

    /// An object written through `res` (a served version) in its stored form (`stored`).
    pub(crate) async fn stored_form(
        &self,
        res: &shoal_api::catalogue::Resource,
        stored: &shoal_api::catalogue::Resource,
        obj: Value,
    ) -> crate::status::ApiResult<Value> {
        if catalogue::is_custom(res) {
            return Ok(self.convert_custom(stored, vec![obj]).await?.pop().unwrap_or_default());
        }
        Ok(crate::conversion::to_storage(res, obj))
    }

    /// Follows the definitions until the process ends (a supervised component).
    pub(crate) async fn run_crd_registry(self: Arc<Self>) {
        let (_, mut sub) = self.cache.subscribe_with_snapshot(PREFIX);
        // The definitions being cleaned up, each by a task of its own.
        let mut cleaning: std::collections::HashMap<String, tokio::task::JoinHandle<()>> = Default::default();
        self.sync_crds().await;
        self.clean_up_deleted(&mut cleaning);
        loop {
            match sub.live.recv().await {
                Ok(ev) if ev.entry.key.starts_with(PREFIX) => {
                    self.sync_crds().await;
                    if ev.kind == crate::cache::EventType::Deleted {
                        // Gone without the cleanup (a store restored, say): its objects go too.
                        self.delete_custom_objects(&ev.entry.obj()).await;
                    }
                }
                Ok(_) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => self.sync_crds().await,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            }
            self.clean_up_deleted(&mut cleaning);
        }
    }

    /// Starts the cleanup of every definition being deleted that holds the cleanup
    /// finalizer (one task per definition).
    fn clean_up_deleted(
        self: &Arc<Self>,
        cleaning: &mut std::collections::HashMap<String, tokio::task::JoinHandle<()>>,
    ) {
        cleaning.retain(|_, task| !task.is_finished());
        for crd in self.all_of("apiextensions.k8s.io", "customresourcedefinitions", None) {
            let name = crd["metadata"]["name"].as_str().unwrap_or_default().to_string();
            let holds = crd["metadata"]["finalizers"]
                .as_array()
                .is_some_and(|f| f.iter().any(|x| x == CLEANUP_FINALIZER));
            if crd["metadata"]["deletionTimestamp"].is_null() || !holds || cleaning.contains_key(&name) {
                continue;
            }
            let server = self.clone();
            let task = tokio::spawn(async move { server.clean_up(&name).await });
            cleaning.insert(crd["metadata"]["name"].as_str().unwrap_or_default().to_string(), task);
        }
    }

    /// Deletes the objects of definition `name` through the API (their finalizers honoured),
    /// waits until none is left, then lets the definition go by removing its finalizer.
    async fn clean_up(&self, name: &str) {
        let Some(res) = catalogue::find("apiextensions.k8s.io", "v1", "customresourcedefinitions") else {
            return;
        };
        loop {
            let Some(entry) = self.cache.get(&format!("{PREFIX}{name}")) else {
                return;
            };
            let crd = entry.obj();
            let (group, plural) = crd_names(&crd);
            let prefix = format!("{}{group}/{plural}/", crate::keys::ROOT);
            let (objects, _, _) = self.cache.list(&prefix, None, 0, |_| true);
            if objects.is_empty() {
                let mut done = crd.clone();
                if let Some(f) = done["metadata"]["finalizers"].as_array_mut() {
                    f.retain(|x| x != CLEANUP_FINALIZER);
                }
                let t = Target {
                    res,
                    namespace: None,
                    name: Some(name.to_string()),
                    subresource: None,
                };
                match self.update(&t, done, &WriteOptions::default()).await {
                    Ok(_) => return,
                    // Changed meanwhile: read it again.
                    Err(e) => tracing::debug!(crd = name, error = %e.message, "crd cleanup: finalizer not removed yet"),
                }
            }
            let stored = catalogue::find_plural(&group, &plural).map(catalogue::stored_as);
            for o in objects.iter().map(|e| e.obj()) {
                let (Some(stored), true) = (stored, o["metadata"]["deletionTimestamp"].is_null()) else {
                    continue;
                };
                let t = Target {
                    res: stored,
                    namespace: o["metadata"]["namespace"].as_str().map(str::to_string),
                    name: o["metadata"]["name"].as_str().map(str::to_string),
                    subresource: None,
                };
                if let Err(e) = self.delete(&t, &crate::delete::DeleteOptions::default()).await
                    && e.code != 404
                {
                    tracing::warn!(crd = name, error = %e.message, "crd cleanup: a custom object was not deleted");
                }
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    /// Whether custom resource `res`'s definition is being deleted (no new objects then).
    pub(crate) fn definition_terminating(&self, res: &shoal_api::catalogue::Resource) -> bool {
        self.definition_of(res)
            .is_some_and(|crd| !crd["metadata"]["deletionTimestamp"].is_null())
    }

    /// The definition of custom resource `res` (None for a built-in resource), decoded once
    /// per revision.
    fn definition_of(&self, res: &shoal_api::catalogue::Resource) -> Option<Arc<Value>> {
        if !catalogue::is_custom(res) {
            return None;
        }
        let entry = self.cache.get(&format!("{PREFIX}{}.{}", res.plural, res.group))?;
        Some(self.decoded_once(&entry))
    }

    /// Writes every definition's status as it should be, and serves the Established ones.
    async fn sync_crds(&self) {
        let Some(res) = catalogue::find("apiextensions.k8s.io", "v1", "customresourcedefinitions") else {
            return;
        };
        let mut crds = self.all_of("apiextensions.k8s.io", "customresourcedefinitions", None);
        // A contested name stays with the definition that has it accepted already, as
        // upstream's naming controller decides; between new ones, the earlier created.
        crds.sort_by(|a, b| {
            let key = |c: &Value| {
                let accepted = c["status"]["conditions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|x| x["type"] == "NamesAccepted" && x["status"] == "True");
                (
                    !accepted,
                    c["metadata"]["creationTimestamp"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                    c["metadata"]["name"].as_str().unwrap_or_default().to_string(),
                )
            };
            key(a).cmp(&key(b))
        });
        let now = shoal_api::time::now_rfc3339();
        let mut taken: HashSet<(String, String)> = HashSet::new();
        let mut served = Vec::new();
        let mut published = Vec::new();
        for crd in &crds {
            let (status, established) = desired_status(crd, &taken, &now);
            let group = crd["spec"]["group"].as_str().unwrap_or_default().to_string();
            if established {
                for (_, v) in claimed(&crd["spec"]["names"]) {
                    taken.insert((group.clone(), v));
                }
                // A definition being deleted is still served: its objects are read and
                // deleted through the API until they are gone.
                served.extend(served_versions(crd));
                published.push(crd);
            }
            if crd["status"] != status {
                let mut updated = crd.clone();
                updated["status"] = status;
                let t = Target {
                    res,
                    namespace: None,
                    name: crd["metadata"]["name"].as_str().map(str::to_string),
                    subresource: Some("status".into()),
                };
                if let Err(e) = self.update(&t, updated, &WriteOptions::default()).await {
                    // A conflict means a newer version is on its way: its event syncs again.
                    tracing::debug!(crd = ?t.name, error = %e.message, "crd registry: status not written");
                }
            }
        }
        catalogue::set_custom(&served);
        publish_openapi(&published);
        // Each kind prints its preferred version's columns.
        let mut columns = std::collections::HashMap::new();
        for crd in crds.iter().filter(|c| c["metadata"]["deletionTimestamp"].is_null()) {
            let Some(preferred) = served_versions(crd).into_iter().next() else {
                continue;
            };
            let printer = crd["spec"]["versions"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|v| v["name"] == preferred.version.as_str())
                .and_then(|v| v["additionalPrinterColumns"].as_array().cloned())
                .unwrap_or_default();
            columns.insert((preferred.group, preferred.kind), Arc::new(printer));
        }
        shoal_api::table::set_custom_columns(columns);
        // Field selectors on a kind's `selectableFields`: its storage version's, where the
        // objects are matched.
        let mut fields = std::collections::HashMap::new();
        for crd in &published {
            let group = crd["spec"]["group"].as_str().unwrap_or_default().to_string();
            let kind = crd["spec"]["names"]["kind"].as_str().unwrap_or_default().to_string();
            let storage = crd["spec"]["versions"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|v| v["storage"] == true);
            let labels: Vec<String> = storage
                .and_then(|v| v["selectableFields"].as_array())
                .into_iter()
                .flatten()
                .filter_map(|f| f["jsonPath"].as_str()?.strip_prefix('.').map(str::to_string))
                .collect();
            if !labels.is_empty() {
                fields.insert((group, kind), Arc::new(labels));
            }
        }
        shoal_api::selector::set_custom_fields(fields);
    }

    /// Deletes every object of the definition `crd` (gone now), as upstream's finalizer
    /// controller does before it lets a definition go.
    async fn delete_custom_objects(&self, crd: &Value) {
        let (group, plural) = crd_names(crd);
        if group.is_empty() || plural.is_empty() {
            return;
        }
        let prefix = format!("{}{group}/{plural}/", crate::keys::ROOT);
        let (entries, _, _) = self.cache.list(&prefix, None, 0, |_| true);
        for e in entries {
            if let Err(e) = self.store.delete(&e.key, e.mod_revision).await {
                tracing::warn!(error = %e, "crd registry: a custom object of a deleted definition was not deleted");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crd(name: &str, plural: &str, kind: &str) -> Value {
        json!({"metadata": {"name": format!("{plural}.example.com")}, "spec": {"group": "example.com", "scope": "Namespaced",
            "names": {"plural": plural, "singular": name, "kind": kind, "listKind": format!("{kind}List"), "shortNames": ["w"]},
            "versions": [{"name": "v1beta1", "served": true, "storage": false}, {"name": "v1", "served": true, "storage": true,
                          "subresources": {"status": {}}}, {"name": "v2alpha1", "served": false, "storage": false}]}})
    }

    #[test]
    fn a_definition_being_deleted_says_so() {
        let mut c = crd("widget", "widgets", "Widget");
        let (status, _) = desired_status(&c, &HashSet::new(), "2026-01-01T00:00:00Z");
        assert!(!status.to_string().contains("Terminating"));
        c["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        let (status, established) = desired_status(&c, &HashSet::new(), "2026-01-01T00:00:01Z");
        assert!(established, "still served while its objects go");
        let terminating = &status["conditions"][2];
        assert_eq!(
            (&terminating["type"], &terminating["status"], &terminating["reason"]),
            (
                &json!("Terminating"),
                &json!("True"),
                &json!("InstanceDeletionInProgress")
            )
        );
    }

    #[test]
    fn the_first_definition_keeps_its_names() {
        let mut taken = HashSet::new();
        let (status, ok) = desired_status(&crd("widget", "widgets", "Widget"), &taken, "2026-01-01T00:00:00Z");
        assert!(ok);
        assert_eq!(status["conditions"][0]["reason"], "NoConflicts");
        assert_eq!(status["conditions"][1]["type"], "Established");
        assert_eq!(status["conditions"][1]["status"], "True");
        assert_eq!(status["acceptedNames"]["kind"], "Widget");
        assert_eq!(status["storedVersions"], json!(["v1"]));
        for (_, v) in claimed(&crd("widget", "widgets", "Widget")["spec"]["names"]) {
            taken.insert(("example.com".to_string(), v));
        }
        let (status, ok) = desired_status(&crd("gadget", "gadgets", "Widget"), &taken, "2026-01-01T00:00:00Z");
        assert!(!ok);
        assert_eq!(status["conditions"][0]["status"], "False");
        assert_eq!(status["conditions"][1]["reason"], "NotAccepted");
    }

    #[test]
    fn served_versions_put_the_preferred_first() {
        let versions = served_versions(&crd("widget", "widgets", "Widget"));
        let names: Vec<&str> = versions.iter().map(|v| v.version.as_str()).collect();
        assert_eq!(names, ["v1", "v1beta1"]);
        assert!(versions[0].status && !versions[1].status);
        let mut ranked = vec!["v1alpha1", "foo", "v2", "v1beta2", "v1", "v1beta1", "v10"];
        ranked.sort_by_key(|v| version_rank(v));
        assert_eq!(ranked, ["v10", "v2", "v1", "v1beta2", "v1beta1", "v1alpha1", "foo"]);
    }

    #[test]
    fn a_kept_condition_keeps_its_transition_time() {
        let mut c = crd("widget", "widgets", "Widget");
        let (first, _) = desired_status(&c, &HashSet::new(), "2026-01-01T00:00:00Z");
        c["status"] = first.clone();
        let (again, _) = desired_status(&c, &HashSet::new(), "2026-02-02T00:00:00Z");
        assert_eq!(first, again, "nothing to write when nothing changed");
    }
}
