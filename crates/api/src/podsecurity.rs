//! Pod Security Admission: the Pod Security Standards (`privileged`, `baseline`, `restricted`)
//! as Kubernetes 1.33 applies them, on pods and pod templates held as JSON.
//!
//! What is here, all pure:
//!
//! - the namespace labels that choose a policy (`pod-security.kubernetes.io/enforce`, `audit`,
//!   `warn` and their `-version` labels) and how they are read ([`policy_from_labels`]);
//! - the checks ([`check_pod`]), with the reasons and details clients see;
//! - the messages built from them ([`forbidden_message`], [`warning_message`]);
//! - the admission decisions built on those: a pod or a pod template ([`review`]), a
//!   namespace whose labels change ([`review_namespace`], [`namespace_pod_warnings`]), and
//!   where a workload keeps its pod template ([`pod_template_path`], [`pod_template`]).
//!
//! # Versions
//!
//! A level is paired with a version: `latest` or `v1.N`. Checks are versioned exactly as in
//! 1.33: a `v1.N` policy runs the checks as they stood in 1.N, and any version from `v1.32`
//! on (the last release that changed a check) behaves as `latest`. The differences encoded:
//!
//! - `allowPrivilegeEscalation` (restricted) exists from 1.8; `capabilities` (restricted, which
//!   replaces the baseline capabilities check) from 1.22; `runAsUser` (restricted) from 1.23;
//!   the restricted `seccompProfile` check (replacing the baseline one) from 1.19.
//! - Before 1.19 the baseline seccomp check reads the alpha seccomp annotations, not the fields.
//! - From 1.25 the restricted `allowPrivilegeEscalation`, `capabilities` and `seccompProfile`
//!   checks skip pods with `spec.os.name: windows`.
//! - The SELinux type `container_engine_t` is allowed from 1.31.
//! - Allowed sysctls grow at 1.27 (`net.ipv4.ip_local_reserved_ports`), 1.29 (the four
//!   `net.ipv4.tcp_keepalive_*`/`tcp_fin_timeout` ones) and 1.32 (`net.ipv4.tcp_rmem`,
//!   `net.ipv4.tcp_wmem`).
//!
//! Not encoded: the relaxation of `runAsNonRoot`, `runAsUser` and `procMount` for pods with
//! `hostUsers: false`, which 1.33 applies only behind the alpha, off-by-default
//! `UserNamespacesPodSecurityStandards` feature gate; shoal behaves as that gate's default.
//!
//! # Inputs
//!
//! Objects are hostile JSON: every field may be missing or of the wrong type, and nothing
//! here panics. A field of the wrong type reads as absent, except where reading it as absent
//! would let a pod through that the field's presence should stop (a volume source of any
//! non-null value counts as set). Upstream evaluates objects after defaulting (for example a
//! volume with no source has become an `emptyDir`, and host ports follow container ports under
//! `hostNetwork`), so the server must default before it asks.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt;
use std::fmt::Write as _;

use serde_json::Value;

use crate::field::FieldError;

/// The label choosing the level enforced in a namespace.
pub const ENFORCE_LEVEL_LABEL: &str = "pod-security.kubernetes.io/enforce";
/// The label choosing the version of the enforced level.
pub const ENFORCE_VERSION_LABEL: &str = "pod-security.kubernetes.io/enforce-version";
/// The label choosing the level recorded in audit annotations.
pub const AUDIT_LEVEL_LABEL: &str = "pod-security.kubernetes.io/audit";
/// The label choosing the version of the audited level.
pub const AUDIT_VERSION_LABEL: &str = "pod-security.kubernetes.io/audit-version";
/// The label choosing the level warned about.
pub const WARN_LEVEL_LABEL: &str = "pod-security.kubernetes.io/warn";
/// The label choosing the version of the warned level.
pub const WARN_VERSION_LABEL: &str = "pod-security.kubernetes.io/warn-version";

/// Audit annotation: why a request was exempt (`namespace`, `user` or `runtimeClass`).
pub const EXEMPT_ANNOTATION: &str = "pod-security.kubernetes.io/exempt";
/// Audit annotation: the `would violate PodSecurity ...` text of the audit level.
pub const AUDIT_VIOLATIONS_ANNOTATION: &str = "pod-security.kubernetes.io/audit-violations";
/// Audit annotation: the level and version enforced on a pod (`restricted:latest`).
pub const ENFORCE_POLICY_ANNOTATION: &str = "pod-security.kubernetes.io/enforce-policy";
/// Audit annotation: the namespace labels could not be read (`Failed to parse policy: ...`).
pub const ERROR_ANNOTATION: &str = "pod-security.kubernetes.io/error";

/// Pod subresources never evaluated. Every other pod write (create, update, and the
/// `ephemeralcontainers` and `resize` subresources) goes through [`review`]. For namespaces and
/// pod controllers every subresource is skipped.
pub const IGNORED_POD_SUBRESOURCES: &[&str] = &[
    "exec",
    "attach",
    "binding",
    "eviction",
    "log",
    "portforward",
    "proxy",
    "status",
];

/// How many pods a namespace's new enforce level is checked against at most.
pub const MAX_PODS_TO_CHECK: usize = 3000;

/// A Pod Security Standards level, from least to most restrictive (so `Ord` compares them).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// No restrictions.
    Privileged,
    /// Known privilege escalations prevented.
    Baseline,
    /// Hardened: baseline plus the restricted checks.
    Restricted,
}

impl Level {
    /// The level a label value names, if it names one.
    pub fn parse(s: &str) -> Option<Level> {
        match s {
            "privileged" => Some(Level::Privileged),
            "baseline" => Some(Level::Baseline),
            "restricted" => Some(Level::Restricted),
            _ => None,
        }
    }

    /// The label value naming this level.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Privileged => "privileged",
            Level::Baseline => "baseline",
            Level::Restricted => "restricted",
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A level at a version: `latest` or `v1.N`. Displays as `restricted:latest`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct LevelVersion {
    /// The level.
    pub level: Level,
    /// `latest` or `v1.N` (as [`policy_from_labels`] produces; anything else evaluates as latest).
    pub version: String,
}

impl LevelVersion {
    /// `level` at `version`.
    pub fn new(level: Level, version: impl Into<String>) -> Self {
        Self {
            level,
            version: version.into(),
        }
    }

    /// `level` at `latest`.
    pub fn latest(level: Level) -> Self {
        Self::new(level, "latest")
    }

    /// The minor version of a `v1.N` version; `None` for `latest` (or an unreadable version).
    pub fn minor(&self) -> Option<u64> {
        parse_version(&self.version).flatten()
    }

    /// Whether two level-versions evaluate alike: both privileged, or the same level and version.
    pub fn equivalent(&self, other: &LevelVersion) -> bool {
        (self.level == Level::Privileged && other.level == Level::Privileged) || self == other
    }
}

impl fmt::Display for LevelVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.level, self.version)
    }
}

/// `Some(None)` for `latest`, `Some(Some(n))` for `v1.n`, `None` when neither. As upstream,
/// the minor number has no leading zeros and must fit a signed 64-bit integer.
fn parse_version(v: &str) -> Option<Option<u64>> {
    if v == "latest" {
        return Some(None);
    }
    let digits = v.strip_prefix("v1.")?;
    let well_formed =
        !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) && (digits == "0" || !digits.starts_with('0'));
    if !well_formed {
        return None;
    }
    let n = digits.parse::<i64>().ok()?;
    u64::try_from(n).ok().map(Some)
}

/// The three levels of a namespace: enforced (pods are rejected), audited (recorded in the
/// audit annotations) and warned (returned to the client as warnings).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Pods that violate it are rejected.
    pub enforce: LevelVersion,
    /// Violations are recorded in the `audit-violations` audit annotation.
    pub audit: LevelVersion,
    /// Violations are returned as warnings.
    pub warn: LevelVersion,
}

impl Default for Policy {
    /// `privileged:latest` for all three: the default when no configuration says otherwise.
    fn default() -> Self {
        Self {
            enforce: LevelVersion::latest(Level::Privileged),
            audit: LevelVersion::latest(Level::Privileged),
            warn: LevelVersion::latest(Level::Privileged),
        }
    }
}

impl Policy {
    /// Whether all three levels are privileged (nothing to evaluate).
    pub fn fully_privileged(&self) -> bool {
        self.enforce.level == Level::Privileged
            && self.audit.level == Level::Privileged
            && self.warn.level == Level::Privileged
    }

    /// Whether two policies evaluate alike, level by level (see [`LevelVersion::equivalent`]).
    pub fn equivalent(&self, other: &Policy) -> bool {
        self.enforce.equivalent(&other.enforce)
            && self.audit.equivalent(&other.audit)
            && self.warn.equivalent(&other.warn)
    }
}

const LEVEL_DETAIL: &str = "must be one of privileged, baseline, restricted";
const VERSION_DETAIL: &str = "must be \"latest\" or \"v1.x\"";

/// The policy of a namespace with `labels` (its `metadata.labels`), starting from the default
/// `privileged:latest` for all three levels. See [`policy_from_labels_with_defaults`].
pub fn policy_from_labels(labels: &Value) -> (Policy, Vec<FieldError>) {
    policy_from_labels_with_defaults(labels, &Policy::default())
}

/// The policy of a namespace with `labels`, starting from `defaults` (the admission
/// configuration's), with an error for each label whose value is not understood.
///
/// A policy is always returned, and is the one to evaluate even when there are errors:
/// an unreadable `enforce` level enforces `restricted` (fail closed), an unreadable `audit` or
/// `warn` level is `privileged` (fail open), and an unreadable version is `latest`. When the
/// `enforce` level is set (and readable) but `warn` is not, the warn level is raised to the
/// enforce level if it is lower, and takes the enforce version too unless `warn-version` is
/// set. Label values that are not strings are ignored.
///
/// Errors are `metadata.labels[<label>]: Invalid value: "<value>": <detail>`, in the order
/// enforce, enforce-version, audit, audit-version, warn, warn-version.
pub fn policy_from_labels_with_defaults(labels: &Value, defaults: &Policy) -> (Policy, Vec<FieldError>) {
    let mut policy = defaults.clone();
    let mut errors = Vec::new();
    let Some(map) = labels.as_object().filter(|m| !m.is_empty()) else {
        return (policy, errors);
    };
    let label = |key: &str| map.get(key).and_then(Value::as_str);
    let invalid = |key: &str, value: &str, detail: &str| {
        FieldError::invalid(
            format!("metadata.labels[{key}]"),
            Value::String(value.to_string()),
            detail,
        )
    };

    let mut has_enforce_level = false;
    if let Some(value) = label(ENFORCE_LEVEL_LABEL) {
        match Level::parse(value) {
            Some(level) => {
                policy.enforce.level = level;
                has_enforce_level = true;
            }
            None => {
                policy.enforce.level = Level::Restricted;
                errors.push(invalid(ENFORCE_LEVEL_LABEL, value, LEVEL_DETAIL));
            }
        }
    }
    if let Some(value) = label(ENFORCE_VERSION_LABEL) {
        policy.enforce.version = version_or_latest(value, ENFORCE_VERSION_LABEL, &mut errors);
    }
    if let Some(value) = label(AUDIT_LEVEL_LABEL) {
        policy.audit.level = Level::parse(value).unwrap_or_else(|| {
            errors.push(invalid(AUDIT_LEVEL_LABEL, value, LEVEL_DETAIL));
            Level::Privileged
        });
    }
    if let Some(value) = label(AUDIT_VERSION_LABEL) {
        policy.audit.version = version_or_latest(value, AUDIT_VERSION_LABEL, &mut errors);
    }
    let has_warn_level = label(WARN_LEVEL_LABEL).is_some();
    if let Some(value) = label(WARN_LEVEL_LABEL) {
        policy.warn.level = Level::parse(value).unwrap_or_else(|| {
            errors.push(invalid(WARN_LEVEL_LABEL, value, LEVEL_DETAIL));
            Level::Privileged
        });
    }
    let has_warn_version = label(WARN_VERSION_LABEL).is_some();
    if let Some(value) = label(WARN_VERSION_LABEL) {
        policy.warn.version = version_or_latest(value, WARN_VERSION_LABEL, &mut errors);
    }

    if !has_warn_level && has_enforce_level && policy.enforce.level > policy.warn.level {
        policy.warn.level = policy.enforce.level;
        if !has_warn_version {
            policy.warn.version.clone_from(&policy.enforce.version);
        }
    }
    (policy, errors)
}

fn version_or_latest(value: &str, key: &str, errors: &mut Vec<FieldError>) -> String {
    if parse_version(value).is_some() {
        value.to_string()
    } else {
        errors.push(FieldError::invalid(
            format!("metadata.labels[{key}]"),
            Value::String(value.to_string()),
            VERSION_DETAIL,
        ));
        "latest".to_string()
    }
}

/// Several field errors as one message, as upstream aggregates them: duplicates dropped, one
/// message alone, several as `[a, b]`. Empty for none.
pub fn aggregate_message(errors: &[FieldError]) -> String {
    let mut seen = HashSet::new();
    let messages: Vec<String> = errors
        .iter()
        .map(FieldError::message)
        .filter(|m| seen.insert(m.clone()))
        .collect();
    match messages.as_slice() {
        [] => String::new(),
        [one] => one.clone(),
        many => format!("[{}]", many.join(", ")),
    }
}

/// One failed check: its reason (`privileged`) and detail
/// (`container "c" must not set securityContext.privileged=true`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The short reason.
    pub reason: String,
    /// What exactly is wrong; may be empty.
    pub detail: String,
}

/// A failed check, as `check_pod` collects them.
fn violation(reason: impl Into<String>, detail: String) -> Option<Violation> {
    Some(Violation {
        reason: reason.into(),
        detail,
    })
}

/// The violations of the pod with `metadata` and `spec` at `level`: none at privileged; the
/// baseline checks at baseline; at restricted the baseline checks (less the three the
/// restricted ones replace) then the restricted checks. Checks run in upstream's order (by
/// check name, baseline first), each contributing at most one violation.
pub fn check_pod(level: &LevelVersion, metadata: &Value, spec: &Value) -> Vec<Violation> {
    let restricted = match level.level {
        Level::Privileged => return Vec::new(),
        Level::Baseline => false,
        Level::Restricted => true,
    };
    let minor = level.minor().unwrap_or(u64::MAX);
    let mut out = Vec::new();
    // Baseline checks, by name.
    out.extend(app_armor_profile(metadata, spec));
    if !restricted || minor < 22 {
        out.extend(capabilities_baseline(spec));
    }
    out.extend(host_namespaces(spec));
    if !restricted {
        out.extend(host_path_volumes(spec));
    }
    out.extend(host_ports(spec));
    out.extend(privileged(spec));
    out.extend(proc_mount(spec));
    out.extend(se_linux_options(spec, minor));
    if !restricted || minor < 19 {
        out.extend(seccomp_baseline(metadata, spec, minor));
    }
    out.extend(sysctls(spec, minor));
    out.extend(windows_host_process(spec));
    if !restricted {
        return out;
    }
    // Restricted checks, by name.
    if minor >= 8 {
        out.extend(allow_privilege_escalation(spec, minor));
    }
    if minor >= 22 {
        out.extend(capabilities_restricted(spec, minor));
    }
    out.extend(restricted_volumes(spec));
    out.extend(run_as_non_root(spec));
    if minor >= 23 {
        out.extend(run_as_user(spec));
    }
    if minor >= 19 {
        out.extend(seccomp_fields(spec, true, minor));
    }
    out
}

/// The reasons of `violations` joined by `, ` (what the namespace check lists per pod).
pub fn forbidden_reasons(violations: &[Violation]) -> String {
    violations
        .iter()
        .map(|v| v.reason.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Each violation as `reason (detail)` (or `reason` when it has no detail), joined by `, `.
pub fn forbidden_detail(violations: &[Violation]) -> String {
    let mut out = String::new();
    for (i, v) in violations.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(&v.reason);
        if !v.detail.is_empty() {
            out.push_str(" (");
            out.push_str(&v.detail);
            out.push(')');
        }
    }
    out
}

/// The error of a pod rejected at `level`: `violates PodSecurity "restricted:latest": ...`.
/// The server wraps it as the message of a 403 Forbidden status (see [`pod_forbidden_message`]).
pub fn forbidden_message(level: &LevelVersion, violations: &[Violation]) -> String {
    format!(
        "violates PodSecurity {}: {}",
        go_quote(&level.to_string()),
        forbidden_detail(violations)
    )
}

/// The warning (and `audit-violations` annotation) for violations of `level`:
/// `would violate PodSecurity "restricted:latest": ...`.
pub fn warning_message(level: &LevelVersion, violations: &[Violation]) -> String {
    format!(
        "would violate PodSecurity {}: {}",
        go_quote(&level.to_string()),
        forbidden_detail(violations)
    )
}

/// The message of the 403 Forbidden status for the pod `name` rejected with `denied` (from
/// [`forbidden_message`]): `pods "name" is forbidden: violates PodSecurity ...`
/// (`pods is forbidden: ...` when the name is empty). The status has reason `Forbidden` and
/// details `{"name": name, "kind": "pods"}`.
pub fn pod_forbidden_message(name: &str, denied: &str) -> String {
    if name.is_empty() {
        format!("pods is forbidden: {denied}")
    } else {
        format!("pods {} is forbidden: {denied}", go_quote(name))
    }
}

// ---------------------------------------------------------------------------------------------
// Reading hostile JSON.

/// The init containers, containers and ephemeral containers of `spec`, in that order.
fn containers(spec: &Value) -> impl Iterator<Item = &Value> {
    ["initContainers", "containers", "ephemeralContainers"]
        .into_iter()
        .flat_map(move |k| list(spec, k))
}

fn list<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v.get(key)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

/// The object at `key`, if it is one.
fn obj<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    v.get(key).filter(|x| x.is_object())
}

/// The string at `key`, or empty.
fn text<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

fn name(c: &Value) -> &str {
    text(c, "name")
}

fn is_true(v: &Value, key: &str) -> bool {
    matches!(v.get(key), Some(Value::Bool(true)))
}

/// Whether `key` is set to anything but null.
fn present(v: &Value, key: &str) -> bool {
    v.get(key).is_some_and(|x| !x.is_null())
}

fn sc(container: &Value) -> Option<&Value> {
    obj(container, "securityContext")
}

fn pod_sc(spec: &Value) -> Option<&Value> {
    obj(spec, "securityContext")
}

fn annotation<'a>(meta: &'a Value, key: &str) -> Option<&'a str> {
    meta.get("annotations")?.get(key)?.as_str()
}

fn annotations(meta: &Value) -> impl Iterator<Item = (&str, &str)> {
    meta.get("annotations")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| v.as_str().map(|v| (k.as_str(), v)))
}

fn is_windows(spec: &Value) -> bool {
    spec.get("os").and_then(|os| os.get("name")).and_then(Value::as_str) == Some("windows")
}

// ---------------------------------------------------------------------------------------------
// Phrasing.

fn plural(one: &'static str, many: &'static str, n: usize) -> &'static str {
    if n == 1 { one } else { many }
}

/// `"a", "b"`: each item in double quotes (unescaped, as upstream), joined by `, `.
fn join_quote<S: AsRef<str>>(items: impl IntoIterator<Item = S>) -> String {
    let mut out = String::new();
    for (i, item) in items.into_iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push('"');
        out.push_str(item.as_ref());
        out.push('"');
    }
    out
}

/// `container "a"` or `containers "a", "b"`.
fn containers_phrase(names: &[&str]) -> String {
    format!(
        "{} {}",
        plural("container", "containers", names.len()),
        join_quote(names.iter().copied())
    )
}

/// Who set a forbidden value: `pod`, then the containers (if any).
fn setters(pod: bool, names: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    if pod {
        out.push("pod".to_string());
    }
    if !names.is_empty() {
        out.push(containers_phrase(names));
    }
    out
}

/// A string quoted as Go's `%q` does: `\"` and `\\` escaped, control and other non-printing
/// characters as `\n`, `\x01`, `\u00a0`; printable characters as they are.
fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if u32::from(c) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\x{:02x}", u32::from(c));
            }
            c if !go_printable(c) => {
                if u32::from(c) < 0x1_0000 {
                    let _ = write!(out, "\\u{:04x}", u32::from(c));
                } else {
                    let _ = write!(out, "\\U{:08x}", u32::from(c));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Go's notion of printable, for the characters where it differs from "not a control
/// character": separators other than the ASCII space and the common format characters.
fn go_printable(c: char) -> bool {
    !(c.is_control()
        || matches!(
            c,
            '\u{a0}'
                | '\u{ad}'
                | '\u{61c}'
                | '\u{1680}'
                | '\u{180e}'
                | '\u{2000}'..='\u{200f}'
                | '\u{2028}'..='\u{202f}'
                | '\u{205f}'..='\u{2064}'
                | '\u{2066}'..='\u{206f}'
                | '\u{3000}'
                | '\u{feff}'
                | '\u{fff9}'..='\u{fffb}'
        ))
}

// ---------------------------------------------------------------------------------------------
// Baseline checks.

fn allowed_app_armor_type(t: &str) -> bool {
    t == "RuntimeDefault" || t == "Localhost"
}

fn allowed_app_armor_annotation(v: &str) -> bool {
    v.is_empty() || v == "runtime/default" || v.starts_with("localhost/")
}

const APP_ARMOR_ANNOTATION_PREFIX: &str = "container.apparmor.security.beta.kubernetes.io/";

/// `appArmorProfile`: the profile type (pod and containers) must be `RuntimeDefault` or
/// `Localhost`; the beta container annotations `runtime/default`, `localhost/*` or empty.
fn app_armor_profile(meta: &Value, spec: &Value) -> Option<Violation> {
    let mut bad_values = BTreeSet::new();
    let pod_bad = pod_sc(spec)
        .and_then(|s| obj(s, "appArmorProfile"))
        .map(|p| text(p, "type"))
        .filter(|t| !allowed_app_armor_type(t));
    if let Some(t) = pod_bad {
        bad_values.insert(t);
    }
    let mut bad_containers = Vec::new();
    for c in containers(spec) {
        if let Some(t) = sc(c).and_then(|s| obj(s, "appArmorProfile")).map(|p| text(p, "type"))
            && !allowed_app_armor_type(t)
        {
            bad_containers.push(name(c));
            bad_values.insert(t);
        }
    }
    let mut who = setters(pod_bad.is_some(), &bad_containers);
    let mut values: Vec<String> = bad_values.into_iter().map(str::to_string).collect();
    let mut bad_annotations: Vec<String> = annotations(meta)
        .filter(|(k, v)| k.starts_with(APP_ARMOR_ANNOTATION_PREFIX) && !allowed_app_armor_annotation(v))
        .map(|(k, v)| format!("{k}={}", go_quote(v)))
        .collect();
    if !bad_annotations.is_empty() {
        bad_annotations.sort();
        who.push(plural("annotation", "annotations", bad_annotations.len()).to_string());
        values.append(&mut bad_annotations);
    }
    if who.is_empty() {
        return None;
    }
    violation(
        plural(
            "forbidden AppArmor profile",
            "forbidden AppArmor profiles",
            values.len(),
        ),
        format!(
            "{} must not set AppArmor profile type to {}",
            who.join(" and "),
            join_quote(values.iter().map(String::as_str))
        ),
    )
}

const DEFAULT_CAPABILITIES: &[&str] = &[
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];

/// `capabilities_baseline`: containers may add only capabilities of the default set.
fn capabilities_baseline(spec: &Value) -> Option<Violation> {
    let mut bad = Vec::new();
    let mut caps = BTreeSet::new();
    for c in containers(spec) {
        let Some(capabilities) = sc(c).and_then(|s| obj(s, "capabilities")) else {
            continue;
        };
        let mut valid = true;
        for cap in list(capabilities, "add").iter().filter_map(Value::as_str) {
            if !DEFAULT_CAPABILITIES.contains(&cap) {
                valid = false;
                caps.insert(cap);
            }
        }
        if !valid {
            bad.push(name(c));
        }
    }
    if bad.is_empty() {
        return None;
    }
    violation(
        "non-default capabilities",
        format!(
            "{} must not include {} in securityContext.capabilities.add",
            containers_phrase(&bad),
            join_quote(caps.iter().copied())
        ),
    )
}

/// `hostNamespaces`: no host network, PID or IPC namespace.
fn host_namespaces(spec: &Value) -> Option<Violation> {
    let found: Vec<&str> = [
        ("hostNetwork", "hostNetwork=true"),
        ("hostPID", "hostPID=true"),
        ("hostIPC", "hostIPC=true"),
    ]
    .into_iter()
    .filter(|(key, _)| is_true(spec, key))
    .map(|(_, shown)| shown)
    .collect();
    if found.is_empty() {
        return None;
    }
    violation("host namespaces", found.join(", "))
}

/// `hostPathVolumes` (baseline only; restricted replaces it): no hostPath volumes.
fn host_path_volumes(spec: &Value) -> Option<Violation> {
    let bad: Vec<&str> = list(spec, "volumes")
        .iter()
        .filter(|v| present(v, "hostPath"))
        .map(|v| text(v, "name"))
        .collect();
    if bad.is_empty() {
        return None;
    }
    violation(
        "hostPath volumes",
        format!(
            "{} {}",
            plural("volume", "volumes", bad.len()),
            join_quote(bad.iter().copied())
        ),
    )
}

/// A host port that is set: any number but 0, as it is written.
fn host_port(port: &Value) -> Option<String> {
    match port.get("hostPort") {
        Some(Value::Number(n)) if n.as_i64() != Some(0) => Some(n.to_string()),
        _ => None,
    }
}

/// `hostPorts`: no container port may set a host port.
fn host_ports(spec: &Value) -> Option<Violation> {
    let mut bad = Vec::new();
    let mut ports = BTreeSet::new();
    for c in containers(spec) {
        let mut valid = true;
        for port in list(c, "ports").iter().filter_map(host_port) {
            valid = false;
            ports.insert(port);
        }
        if !valid {
            bad.push(name(c));
        }
    }
    if bad.is_empty() {
        return None;
    }
    violation(
        "hostPort",
        format!(
            "{} {} {} {}",
            containers_phrase(&bad),
            plural("uses", "use", bad.len()),
            plural("hostPort", "hostPorts", ports.len()),
            ports.iter().map(String::as_str).collect::<Vec<_>>().join(", ")
        ),
    )
}

/// `privileged`: no privileged containers.
fn privileged(spec: &Value) -> Option<Violation> {
    let bad: Vec<&str> = containers(spec)
        .filter(|c| sc(c).is_some_and(|s| is_true(s, "privileged")))
        .map(name)
        .collect();
    if bad.is_empty() {
        return None;
    }
    violation(
        "privileged",
        format!(
            "{} must not set securityContext.privileged=true",
            containers_phrase(&bad)
        ),
    )
}

/// `procMount`: only the `Default` proc mount.
fn proc_mount(spec: &Value) -> Option<Violation> {
    let mut bad = Vec::new();
    let mut types = BTreeSet::new();
    for c in containers(spec) {
        if let Some(pm) = sc(c).and_then(|s| s.get("procMount")).and_then(Value::as_str)
            && pm != "Default"
        {
            bad.push(name(c));
            types.insert(pm);
        }
    }
    if bad.is_empty() {
        return None;
    }
    violation(
        "procMount",
        format!(
            "{} must not set securityContext.procMount to {}",
            containers_phrase(&bad),
            join_quote(types.iter().copied())
        ),
    )
}

/// What forbidden SELinux options were seen.
#[derive(Default)]
struct SeLinuxFindings<'a> {
    types: BTreeSet<&'a str>,
    user: bool,
    role: bool,
}

impl<'a> SeLinuxFindings<'a> {
    /// Whether `opts` is allowed, noting what is not.
    fn valid(&mut self, opts: &'a Value, minor: u64) -> bool {
        let mut valid = true;
        let t = text(opts, "type");
        let allowed_type = matches!(t, "" | "container_t" | "container_init_t" | "container_kvm_t")
            || (minor >= 31 && t == "container_engine_t");
        if !allowed_type {
            valid = false;
            self.types.insert(t);
        }
        if !text(opts, "user").is_empty() {
            valid = false;
            self.user = true;
        }
        if !text(opts, "role").is_empty() {
            valid = false;
            self.role = true;
        }
        valid
    }
}

/// `seLinuxOptions`: only the container types; no user or role.
fn se_linux_options(spec: &Value, minor: u64) -> Option<Violation> {
    let mut findings = SeLinuxFindings::default();
    let pod_bad = pod_sc(spec)
        .and_then(|s| obj(s, "seLinuxOptions"))
        .is_some_and(|o| !findings.valid(o, minor));
    let mut bad = Vec::new();
    for c in containers(spec) {
        if let Some(opts) = sc(c).and_then(|s| obj(s, "seLinuxOptions"))
            && !findings.valid(opts, minor)
        {
            bad.push(name(c));
        }
    }
    let who = setters(pod_bad, &bad);
    if who.is_empty() {
        return None;
    }
    let mut data = Vec::new();
    if !findings.types.is_empty() {
        data.push(format!(
            "{} {}",
            plural("type", "types", findings.types.len()),
            join_quote(findings.types.iter().copied())
        ));
    }
    if findings.user {
        data.push("user may not be set".to_string());
    }
    if findings.role {
        data.push("role may not be set".to_string());
    }
    violation(
        "seLinuxOptions",
        format!(
            "{} set forbidden securityContext.seLinuxOptions: {}",
            who.join(" and "),
            data.join("; ")
        ),
    )
}

const SECCOMP_POD_ANNOTATION: &str = "seccomp.security.alpha.kubernetes.io/pod";
const SECCOMP_CONTAINER_ANNOTATION_PREFIX: &str = "container.seccomp.security.alpha.kubernetes.io/";

fn valid_seccomp_type(t: &str) -> bool {
    t == "Localhost" || t == "RuntimeDefault"
}

fn valid_seccomp_annotation(v: &str) -> bool {
    v == "runtime/default" || v == "docker/default" || v.starts_with("localhost/")
}

/// `seccompProfile_baseline`: before 1.19 the alpha annotations, from 1.19 the fields, may
/// name only the runtime default or a localhost profile. (Unset is allowed.)
fn seccomp_baseline(meta: &Value, spec: &Value, minor: u64) -> Option<Violation> {
    if minor >= 19 {
        return seccomp_fields(spec, false, minor);
    }
    let mut forbidden = BTreeSet::new();
    if let Some(v) = annotation(meta, SECCOMP_POD_ANNOTATION)
        && !valid_seccomp_annotation(v)
    {
        forbidden.insert(format!("{SECCOMP_POD_ANNOTATION}={}", go_quote(v)));
    }
    for c in containers(spec) {
        let key = format!("{SECCOMP_CONTAINER_ANNOTATION_PREFIX}{}", name(c));
        if let Some(v) = annotation(meta, &key)
            && !valid_seccomp_annotation(v)
        {
            forbidden.insert(format!("{key}={}", go_quote(v)));
        }
    }
    if forbidden.is_empty() {
        return None;
    }
    violation(
        "seccompProfile",
        format!(
            "forbidden {} {}",
            plural("annotation", "annotations", forbidden.len()),
            forbidden.iter().map(String::as_str).collect::<Vec<_>>().join(", ")
        ),
    )
}

/// The field-based seccomp check: baseline (from 1.19) forbids bad types; restricted (from
/// 1.19) also requires every container to have a good type, its own or the pod's, and from
/// 1.25 skips Windows pods.
fn seccomp_fields(spec: &Value, required: bool, minor: u64) -> Option<Violation> {
    if required && minor >= 25 && is_windows(spec) {
        return None;
    }
    let mut bad_values = BTreeSet::new();
    let mut pod_bad = false;
    let mut pod_set = false;
    if let Some(profile) = pod_sc(spec).and_then(|s| obj(s, "seccompProfile")) {
        let t = text(profile, "type");
        if valid_seccomp_type(t) {
            pod_set = true;
        } else {
            pod_bad = true;
            bad_values.insert(t);
        }
    }
    let mut explicit = Vec::new();
    let mut implicit = Vec::new();
    for c in containers(spec) {
        if let Some(profile) = sc(c).and_then(|s| obj(s, "seccompProfile")) {
            let t = text(profile, "type");
            if !valid_seccomp_type(t) {
                explicit.push(name(c));
                bad_values.insert(t);
            }
        } else if !pod_set {
            implicit.push(name(c));
        }
    }
    let who = setters(pod_bad, &explicit);
    if !who.is_empty() {
        return violation(
            "seccompProfile",
            format!(
                "{} must not set securityContext.seccompProfile.type to {}",
                who.join(" and "),
                join_quote(bad_values.iter().copied())
            ),
        );
    }
    if required && !implicit.is_empty() {
        return violation(
            "seccompProfile",
            format!(
                "pod or {} must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\"",
                containers_phrase(&implicit)
            ),
        );
    }
    None
}

fn sysctl_allowed(name: &str, minor: u64) -> bool {
    match name {
        "kernel.shm_rmid_forced"
        | "net.ipv4.ip_local_port_range"
        | "net.ipv4.tcp_syncookies"
        | "net.ipv4.ping_group_range"
        | "net.ipv4.ip_unprivileged_port_start" => true,
        "net.ipv4.ip_local_reserved_ports" => minor >= 27,
        "net.ipv4.tcp_keepalive_time"
        | "net.ipv4.tcp_fin_timeout"
        | "net.ipv4.tcp_keepalive_intvl"
        | "net.ipv4.tcp_keepalive_probes" => minor >= 29,
        "net.ipv4.tcp_rmem" | "net.ipv4.tcp_wmem" => minor >= 32,
        _ => false,
    }
}

/// `sysctls`: only the safe sysctls (of the version).
fn sysctls(spec: &Value, minor: u64) -> Option<Violation> {
    let bad: Vec<&str> = pod_sc(spec)
        .map(|s| list(s, "sysctls"))
        .unwrap_or_default()
        .iter()
        .map(|s| text(s, "name"))
        .filter(|n| !sysctl_allowed(n, minor))
        .collect();
    if bad.is_empty() {
        return None;
    }
    violation("forbidden sysctls", bad.join(", "))
}

fn host_process(security_context: &Value) -> bool {
    obj(security_context, "windowsOptions").is_some_and(|w| is_true(w, "hostProcess"))
}

/// `windowsHostProcess`: no Windows host-process pod or container.
fn windows_host_process(spec: &Value) -> Option<Violation> {
    let pod = pod_sc(spec).is_some_and(host_process);
    let bad: Vec<&str> = containers(spec)
        .filter(|c| sc(c).is_some_and(host_process))
        .map(name)
        .collect();
    let who = setters(pod, &bad);
    if who.is_empty() {
        return None;
    }
    violation(
        "hostProcess",
        format!(
            "{} must not set securityContext.windowsOptions.hostProcess=true",
            who.join(" and ")
        ),
    )
}

// ---------------------------------------------------------------------------------------------
// Restricted checks.

/// `allowPrivilegeEscalation`: every container must set it to false (from 1.25, not on Windows).
fn allow_privilege_escalation(spec: &Value, minor: u64) -> Option<Violation> {
    if minor >= 25 && is_windows(spec) {
        return None;
    }
    let bad: Vec<&str> = containers(spec)
        .filter(|c| {
            !matches!(
                sc(c).and_then(|s| s.get("allowPrivilegeEscalation")),
                Some(Value::Bool(false))
            )
        })
        .map(name)
        .collect();
    if bad.is_empty() {
        return None;
    }
    violation(
        "allowPrivilegeEscalation != false",
        format!(
            "{} must set securityContext.allowPrivilegeEscalation=false",
            containers_phrase(&bad)
        ),
    )
}

/// `capabilities_restricted`: every container drops `ALL` and adds at most
/// `NET_BIND_SERVICE` (from 1.25, not on Windows).
fn capabilities_restricted(spec: &Value, minor: u64) -> Option<Violation> {
    if minor >= 25 && is_windows(spec) {
        return None;
    }
    let mut missing_drop = Vec::new();
    let mut adding = Vec::new();
    let mut forbidden = BTreeSet::new();
    for c in containers(spec) {
        let Some(caps) = sc(c).and_then(|s| obj(s, "capabilities")) else {
            missing_drop.push(name(c));
            continue;
        };
        if !list(caps, "drop").iter().any(|d| d.as_str() == Some("ALL")) {
            missing_drop.push(name(c));
        }
        let mut added = false;
        for cap in list(caps, "add").iter().filter_map(Value::as_str) {
            if cap != "NET_BIND_SERVICE" {
                added = true;
                forbidden.insert(cap);
            }
        }
        if added {
            adding.push(name(c));
        }
    }
    let mut details = Vec::new();
    if !missing_drop.is_empty() {
        details.push(format!(
            "{} must set securityContext.capabilities.drop=[\"ALL\"]",
            containers_phrase(&missing_drop)
        ));
    }
    if !adding.is_empty() {
        details.push(format!(
            "{} must not include {} in securityContext.capabilities.add",
            containers_phrase(&adding),
            join_quote(forbidden.iter().copied())
        ));
    }
    if details.is_empty() {
        return None;
    }
    violation("unrestricted capabilities", details.join("; "))
}

/// Volume sources the restricted level allows.
const ALLOWED_VOLUME_SOURCES: &[&str] = &[
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "image",
    "persistentVolumeClaim",
    "projected",
    "secret",
];

/// Volume sources the restricted level forbids, in the order a volume's type is named.
const RESTRICTED_VOLUME_SOURCES: &[&str] = &[
    "hostPath",
    "gcePersistentDisk",
    "awsElasticBlockStore",
    "gitRepo",
    "nfs",
    "iscsi",
    "glusterfs",
    "rbd",
    "flexVolume",
    "cinder",
    "cephfs",
    "flocker",
    "fc",
    "azureFile",
    "vsphereVolume",
    "quobyte",
    "azureDisk",
    "photonPersistentDisk",
    "portworxVolume",
    "scaleIO",
    "storageos",
];

/// `restrictedVolumes`: only the allowed volume sources (replaces `hostPathVolumes`).
fn restricted_volumes(spec: &Value) -> Option<Violation> {
    let mut bad = Vec::new();
    let mut types = BTreeSet::new();
    for v in list(spec, "volumes") {
        if ALLOWED_VOLUME_SOURCES.iter().any(|k| present(v, k)) {
            continue;
        }
        bad.push(text(v, "name"));
        types.insert(
            RESTRICTED_VOLUME_SOURCES
                .iter()
                .copied()
                .find(|k| present(v, k))
                .unwrap_or("unknown"),
        );
    }
    if bad.is_empty() {
        return None;
    }
    violation(
        "restricted volume types",
        format!(
            "{} {} {} {} {}",
            plural("volume", "volumes", bad.len()),
            join_quote(bad.iter().copied()),
            plural("uses", "use", bad.len()),
            plural("restricted volume type", "restricted volume types", types.len()),
            join_quote(types.iter().copied())
        ),
    )
}

/// `runAsNonRoot`: the pod or every container sets it true, and nothing sets it false.
fn run_as_non_root(spec: &Value) -> Option<Violation> {
    let pod = pod_sc(spec)
        .and_then(|s| s.get("runAsNonRoot"))
        .and_then(Value::as_bool);
    let pod_bad = pod == Some(false);
    let pod_ok = pod == Some(true);
    let mut explicit = Vec::new();
    let mut implicit = Vec::new();
    for c in containers(spec) {
        match sc(c).and_then(|s| s.get("runAsNonRoot")).and_then(Value::as_bool) {
            Some(false) => explicit.push(name(c)),
            Some(true) => {}
            None if !pod_ok => implicit.push(name(c)),
            None => {}
        }
    }
    let who = setters(pod_bad, &explicit);
    if !who.is_empty() {
        return violation(
            "runAsNonRoot != true",
            format!("{} must not set securityContext.runAsNonRoot=false", who.join(" and ")),
        );
    }
    if !implicit.is_empty() {
        return violation(
            "runAsNonRoot != true",
            format!(
                "pod or {} must set securityContext.runAsNonRoot=true",
                containers_phrase(&implicit)
            ),
        );
    }
    None
}

fn runs_as_root(security_context: &Value) -> bool {
    security_context.get("runAsUser").and_then(Value::as_i64) == Some(0)
}

/// `runAsUser` (from 1.23): nothing sets `runAsUser: 0`.
fn run_as_user(spec: &Value) -> Option<Violation> {
    let pod = pod_sc(spec).is_some_and(runs_as_root);
    let bad: Vec<&str> = containers(spec)
        .filter(|c| sc(c).is_some_and(runs_as_root))
        .map(name)
        .collect();
    let who = setters(pod, &bad);
    if who.is_empty() {
        return None;
    }
    violation("runAsUser=0", format!("{} must not set runAsUser=0", who.join(" and ")))
}

// ---------------------------------------------------------------------------------------------
// Admission.

/// Who and what is never evaluated (the admission configuration's `exemptions`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Exemptions {
    /// Requests by these users.
    pub usernames: Vec<String>,
    /// Requests in these namespaces.
    pub namespaces: Vec<String>,
    /// Pods (and templates) with these `runtimeClassName`s.
    pub runtime_classes: Vec<String>,
}

impl Exemptions {
    /// Whether `namespace` is exempt (never the empty one).
    pub fn namespace(&self, namespace: &str) -> bool {
        !namespace.is_empty() && self.namespaces.iter().any(|n| n == namespace)
    }

    /// Whether `username` is exempt (never the empty one).
    pub fn user(&self, username: &str) -> bool {
        !username.is_empty() && self.usernames.iter().any(|u| u == username)
    }

    /// Whether the pod `spec`'s runtime class is exempt.
    pub fn runtime_class(&self, spec: &Value) -> bool {
        let class = text(spec, "runtimeClassName");
        !class.is_empty() && self.runtime_classes.iter().any(|c| c == class)
    }
}

/// The admission configuration: the policy of unlabelled namespaces and the exemptions.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Config {
    /// Each level's default (privileged:latest unless configured).
    pub defaults: Policy,
    /// What is never evaluated.
    pub exemptions: Exemptions,
}

/// A pod, or the pod template of a workload, to admit.
#[derive(Clone, Copy, Debug)]
pub struct PodRequest<'a> {
    /// The namespace of the request.
    pub namespace: &'a str,
    /// The requesting user's name.
    pub username: &'a str,
    /// The namespace's `metadata.labels`.
    pub namespace_labels: &'a Value,
    /// The pod's (or the template's) `metadata`.
    pub metadata: &'a Value,
    /// The pod's (or the template's) `spec`.
    pub spec: &'a Value,
    /// For a pod update, the old pod's `spec`: an update that changes no image and adds no
    /// container (a label, a status, a resize) is not evaluated. Ignored for templates.
    pub old_spec: Option<&'a Value>,
    /// True for pods (enforce, audit and warn); false for pod templates (audit and warn only:
    /// a workload is never rejected).
    pub is_pod: bool,
}

/// What admission decided.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Review {
    /// Set when the pod is rejected: `violates PodSecurity "...": ...` (see
    /// [`pod_forbidden_message`] for the status message).
    pub denied: Option<String>,
    /// Warnings for the client (only when allowed).
    pub warnings: Vec<String>,
    /// Audit annotations, keys with the `pod-security.kubernetes.io/` prefix.
    pub audit_annotations: BTreeMap<String, String>,
}

impl Review {
    fn annotate(&mut self, key: &str, value: impl Into<String>) {
        self.audit_annotations.insert(key.to_string(), value.into());
    }
}

/// Admits a pod, or a workload's pod template, as the PodSecurity admission plugin does on
/// create and update. The caller skips [`IGNORED_POD_SUBRESOURCES`] for pods and every
/// subresource for workloads, and has defaulted the object.
///
/// In order: an exempt namespace, then an exempt user, annotate `exempt` and allow. A namespace
/// whose labels read without errors allows at once when nothing would be evaluated (all three
/// levels privileged for a pod, annotating `enforce-policy: privileged:latest`; audit and warn
/// privileged for a template). An insignificant pod update is allowed. An exempt runtime class
/// annotates `exempt` and allows. Otherwise label errors are annotated (`error`), a pod is
/// checked against the enforce level (annotating `enforce-policy`, and denied on violations),
/// the audit level's violations are annotated (`audit-violations`), and, when not denied, the
/// warn level's violations become a warning.
pub fn review(config: &Config, req: &PodRequest<'_>) -> Review {
    let mut out = Review::default();
    if config.exemptions.namespace(req.namespace) {
        out.annotate(EXEMPT_ANNOTATION, "namespace");
        return out;
    }
    if config.exemptions.user(req.username) {
        out.annotate(EXEMPT_ANNOTATION, "user");
        return out;
    }
    let (policy, errors) = policy_from_labels_with_defaults(req.namespace_labels, &config.defaults);
    if errors.is_empty() {
        if req.is_pod && policy.fully_privileged() {
            out.annotate(
                ENFORCE_POLICY_ANNOTATION,
                LevelVersion::latest(Level::Privileged).to_string(),
            );
            return out;
        }
        if !req.is_pod && policy.warn.level == Level::Privileged && policy.audit.level == Level::Privileged {
            return out;
        }
    }
    if req.is_pod
        && let Some(old) = req.old_spec
        && !is_significant_pod_update(req.spec, old)
    {
        return out;
    }
    if config.exemptions.runtime_class(req.spec) {
        out.annotate(EXEMPT_ANNOTATION, "runtimeClass");
        return out;
    }
    if !errors.is_empty() {
        out.annotate(
            ERROR_ANNOTATION,
            format!("Failed to parse policy: {}", aggregate_message(&errors)),
        );
    }
    if req.is_pod {
        out.annotate(ENFORCE_POLICY_ANNOTATION, policy.enforce.to_string());
        let violations = check_pod(&policy.enforce, req.metadata, req.spec);
        if !violations.is_empty() {
            out.denied = Some(forbidden_message(&policy.enforce, &violations));
        }
    }
    let audit = check_pod(&policy.audit, req.metadata, req.spec);
    if !audit.is_empty() {
        out.annotate(AUDIT_VIOLATIONS_ANNOTATION, warning_message(&policy.audit, &audit));
    }
    if out.denied.is_none() {
        let warn = check_pod(&policy.warn, req.metadata, req.spec);
        if !warn.is_empty() {
            out.warnings.push(warning_message(&policy.warn, &warn));
        }
    }
    out
}

/// Whether a pod update is evaluated: a container or init container added, removed or given
/// another image, or an ephemeral container (matched by name) added or given another image.
pub fn is_significant_pod_update(new_spec: &Value, old_spec: &Value) -> bool {
    for key in ["containers", "initContainers"] {
        let (new, old) = (list(new_spec, key), list(old_spec, key));
        if new.len() != old.len() {
            return true;
        }
        if new.iter().zip(old).any(|(n, o)| text(n, "image") != text(o, "image")) {
            return true;
        }
    }
    let old_ephemeral = list(old_spec, "ephemeralContainers");
    list(new_spec, "ephemeralContainers").iter().any(|c| {
        old_ephemeral
            .iter()
            .find(|o| text(o, "name") == name(c))
            .is_none_or(|o| text(o, "image") != text(c, "image"))
    })
}

/// Where the pod template of a workload kind lives, as a path of object keys; `None` for
/// kinds without one (and for `Pod`, which is admitted as itself). These are the only kinds
/// whose templates are evaluated (warn and audit only).
pub fn pod_template_path(group: &str, kind: &str) -> Option<&'static [&'static str]> {
    match (group, kind) {
        ("", "PodTemplate") => Some(&["template"]),
        ("", "ReplicationController")
        | ("apps", "Deployment" | "DaemonSet" | "ReplicaSet" | "StatefulSet")
        | ("batch", "Job") => Some(&["spec", "template"]),
        ("batch", "CronJob") => Some(&["spec", "jobTemplate", "spec", "template"]),
        _ => None,
    }
}

static NULL: Value = Value::Null;

/// The pod template of `obj`, a workload of `group` and `kind`: its `metadata` and `spec`
/// (null where absent). `None` when the kind has no template, or for a ReplicationController
/// without one (nothing to evaluate). Every other kind's missing template evaluates as empty.
pub fn pod_template<'a>(group: &str, kind: &str, obj: &'a Value) -> Option<(&'a Value, &'a Value)> {
    let path = pod_template_path(group, kind)?;
    let mut template = Some(obj);
    for key in path {
        template = template.and_then(|t| t.get(*key)).filter(|t| !t.is_null());
    }
    let template = match template {
        Some(t) => t,
        None if kind == "ReplicationController" => return None,
        None => &NULL,
    };
    Some((
        template.get("metadata").unwrap_or(&NULL),
        template.get("spec").unwrap_or(&NULL),
    ))
}

/// What to do with a namespace create or update.
#[derive(Clone, Debug, PartialEq)]
pub enum NamespaceReview {
    /// Reject with 422 Invalid: `Namespace "<name>" is invalid: <aggregate_message(errors)>`,
    /// each error a cause.
    Invalid(Vec<FieldError>),
    /// Allow, with these warnings (maybe none).
    Allowed(Vec<String>),
    /// Allow, warning about the namespace's existing pods under this new enforce level: the
    /// warnings are [`namespace_pod_warnings`] (or, if the pods cannot be listed,
    /// `failed to list pods while checking new PodSecurity enforce level`).
    CheckPods(LevelVersion),
}

/// Reviews a namespace create (`old_labels` None) or update of the namespace `name` whose
/// labels are (and were) `labels` (`old_labels`). The caller skips subresources.
///
/// Labels that do not read are rejected, unless an update leaves the same errors as before.
/// An exempt namespace is allowed, with a warning that its policy is ignored when the labels
/// set one. An update that tightens the enforce level (a new level that is not privileged, and
/// either a new version or a stricter level) checks the existing pods.
pub fn review_namespace(config: &Config, name: &str, labels: &Value, old_labels: Option<&Value>) -> NamespaceReview {
    let (policy, errors) = policy_from_labels_with_defaults(labels, &config.defaults);
    let exempt = config.exemptions.namespace(name);
    let exempt_warning = || {
        NamespaceReview::Allowed(
            exempt_namespace_warning(name, &policy, labels, &config.defaults)
                .into_iter()
                .collect(),
        )
    };
    let Some(old_labels) = old_labels else {
        if !errors.is_empty() {
            return NamespaceReview::Invalid(errors);
        }
        return if exempt {
            exempt_warning()
        } else {
            NamespaceReview::Allowed(Vec::new())
        };
    };
    let (old_policy, old_errors) = policy_from_labels_with_defaults(old_labels, &config.defaults);
    if !errors.is_empty() && (old_errors.is_empty() || errors != old_errors) {
        return NamespaceReview::Invalid(errors);
    }
    if policy.enforce == old_policy.enforce
        || policy.enforce.level == Level::Privileged
        || (policy.enforce.version == old_policy.enforce.version && policy.enforce.level <= old_policy.enforce.level)
    {
        return NamespaceReview::Allowed(Vec::new());
    }
    if exempt {
        return exempt_warning();
    }
    NamespaceReview::CheckPods(policy.enforce)
}

/// The warning for an exempt namespace whose labels set a policy that is not privileged and
/// differs from the defaults: `namespace "x" is exempt from Pod Security, and the policy
/// (enforce=restricted:latest, ...) will be ignored`, naming each non-privileged level whose
/// level or version label is set.
pub fn exempt_namespace_warning(name: &str, policy: &Policy, labels: &Value, defaults: &Policy) -> Option<String> {
    if policy.fully_privileged() || policy.equivalent(defaults) {
        return None;
    }
    let has = |key: &str| labels.get(key).is_some_and(Value::is_string);
    let mut parts = Vec::new();
    for (mode, lv, level_label, version_label) in [
        ("enforce", &policy.enforce, ENFORCE_LEVEL_LABEL, ENFORCE_VERSION_LABEL),
        ("audit", &policy.audit, AUDIT_LEVEL_LABEL, AUDIT_VERSION_LABEL),
        ("warn", &policy.warn, WARN_LEVEL_LABEL, WARN_VERSION_LABEL),
    ] {
        if lv.level != Level::Privileged && (has(level_label) || has(version_label)) {
            parts.push(format!("{mode}={lv}"));
        }
    }
    Some(format!(
        "namespace {} is exempt from Pod Security, and the policy ({}) will be ignored",
        go_quote(name),
        parts.join(", ")
    ))
}

/// The controller owner reference's uid of `pod`, if it has one.
fn controller_uid(pod: &Value) -> Option<&str> {
    pod.get("metadata")?
        .get("ownerReferences")?
        .as_array()?
        .iter()
        .find(|r| is_true(r, "controller"))
        .map(|r| text(r, "uid"))
}

/// The warnings for a namespace `namespace` whose enforce level becomes `enforce`, from its
/// existing `pods` (whole Pod objects), checking at most `max_pods` (upstream:
/// [`MAX_PODS_TO_CHECK`]; it also stops after a second of checking).
///
/// Pods with an exempt runtime class are skipped. Pods are checked in order, but only the
/// first pod of each controller before any second one. Each distinct list of reasons becomes
/// one warning, `<pod>: <reasons>`, `<pod> (and 1 other pod): ...` or `<pod> (and N other
/// pods): ...`, naming the least pod name; these are sorted, after
/// `new PodSecurity enforce level only checked against the first N of M existing pods` (when
/// not all were checked) and `existing pods in namespace "x" violate the new PodSecurity
/// enforce level "restricted:latest"` (when any violate).
pub fn namespace_pod_warnings(
    namespace: &str,
    enforce: &LevelVersion,
    pods: &[Value],
    exemptions: &Exemptions,
    max_pods: usize,
) -> Vec<String> {
    let mut prioritized = Vec::new();
    let mut duplicates = Vec::new();
    let mut controllers = HashSet::new();
    for pod in pods {
        if exemptions.runtime_class(pod.get("spec").unwrap_or(&NULL)) {
            continue;
        }
        if controller_uid(pod).is_some_and(|uid| !controllers.insert(uid)) {
            duplicates.push(pod);
        } else {
            prioritized.push(pod);
        }
    }
    prioritized.append(&mut duplicates);
    let total = prioritized.len();
    let checked = total.min(max_pods);

    // Per distinct reasons: the least pod name and how many pods, in first-seen order.
    let mut order: Vec<String> = Vec::new();
    let mut counts: BTreeMap<String, (&str, usize)> = BTreeMap::new();
    for pod in &prioritized[..checked] {
        let meta = pod.get("metadata").unwrap_or(&NULL);
        let violations = check_pod(enforce, meta, pod.get("spec").unwrap_or(&NULL));
        if violations.is_empty() {
            continue;
        }
        let reasons = forbidden_reasons(&violations);
        let pod_name = text(meta, "name");
        match counts.get_mut(&reasons) {
            Some((least, count)) => {
                if pod_name < *least {
                    *least = pod_name;
                }
                *count += 1;
            }
            None => {
                counts.insert(reasons.clone(), (pod_name, 1));
                order.push(reasons);
            }
        }
    }

    let mut warnings = Vec::new();
    if checked < total {
        warnings.push(format!(
            "new PodSecurity enforce level only checked against the first {checked} of {total} existing pods"
        ));
    }
    if !order.is_empty() {
        warnings.push(format!(
            "existing pods in namespace {} violate the new PodSecurity enforce level {}",
            go_quote(namespace),
            go_quote(&enforce.to_string())
        ));
    }
    let mut pod_warnings: Vec<String> = order
        .into_iter()
        .map(|reasons| {
            let (least, count) = counts.get(&reasons).copied().unwrap_or(("", 0));
            match count {
                0 => reasons,
                1 => format!("{least}: {reasons}"),
                2 => format!("{least} (and 1 other pod): {reasons}"),
                n => format!("{least} (and {} other pods): {reasons}", n - 1),
            }
        })
        .collect();
    pod_warnings.sort();
    warnings.append(&mut pod_warnings);
    warnings
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn latest(level: Level) -> LevelVersion {
        LevelVersion::latest(level)
    }

    fn at(level: Level, version: &str) -> LevelVersion {
        LevelVersion::new(level, version)
    }

    /// The `reason (detail)` list of `spec` at `lv`, with no metadata.
    fn detail(lv: &LevelVersion, spec: Value) -> String {
        forbidden_detail(&check_pod(lv, &json!({}), &spec))
    }

    /// The detail of the violation with `reason`, if any.
    fn reason_detail(lv: &LevelVersion, meta: &Value, spec: &Value, reason: &str) -> Option<String> {
        check_pod(lv, meta, spec)
            .into_iter()
            .find(|v| v.reason == reason)
            .map(|v| v.detail)
    }

    fn restricted_detail(spec: &Value, reason: &str) -> Option<String> {
        reason_detail(&latest(Level::Restricted), &json!({}), spec, reason)
    }

    /// A container that passes every restricted check.
    fn good_container(name: &str) -> Value {
        json!({
            "name": name,
            "image": "busybox",
            "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}
        })
    }

    /// A pod spec that passes every restricted check.
    fn good_spec() -> Value {
        json!({
            "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [good_container("c")]
        })
    }

    const PRIVILEGED_POD_RESTRICTED: &str = "violates PodSecurity \"restricted:latest\": \
        privileged (container \"c\" must not set securityContext.privileged=true), \
        allowPrivilegeEscalation != false (container \"c\" must set securityContext.allowPrivilegeEscalation=false), \
        unrestricted capabilities (container \"c\" must set securityContext.capabilities.drop=[\"ALL\"]), \
        runAsNonRoot != true (pod or container \"c\" must set securityContext.runAsNonRoot=true), \
        seccompProfile (pod or container \"c\" must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\")";

    // Derived from upstream 1.33 (pod-security-admission v0.33): the restricted evaluator runs
    // the baseline checks sorted by ID (appArmorProfile, hostNamespaces, hostPorts, privileged,
    // procMount, seLinuxOptions, sysctls, windowsHostProcess; capabilities_baseline,
    // hostPathVolumes and seccompProfile_baseline are overridden) then the restricted ones sorted
    // by ID (allowPrivilegeEscalation, capabilities_restricted, restrictedVolumes, runAsNonRoot,
    // runAsUser, seccompProfile_restricted). For this pod, privileged fails (privileged=true),
    // allowPrivilegeEscalation fails (unset), capabilities_restricted fails (no capabilities, so
    // no drop of ALL), runAsNonRoot fails implicitly (neither pod nor container sets it),
    // runAsUser passes (unset), seccompProfile_restricted fails implicitly. The failures are
    // joined as `reason (detail)` with `, ` and prefixed with `violates PodSecurity %q: `.
    #[test]
    fn privileged_pod_under_restricted_and_baseline() {
        let spec = json!({"containers": [{"name": "c", "image": "busybox", "securityContext": {"privileged": true}}]});
        let lv = latest(Level::Restricted);
        let v = check_pod(&lv, &json!({}), &spec);
        assert_eq!(forbidden_message(&lv, &v), PRIVILEGED_POD_RESTRICTED);
        assert_eq!(
            forbidden_reasons(&v),
            "privileged, allowPrivilegeEscalation != false, unrestricted capabilities, runAsNonRoot != true, seccompProfile"
        );
        assert_eq!(
            warning_message(&lv, &v),
            PRIVILEGED_POD_RESTRICTED.replacen("violates", "would violate", 1)
        );

        let lv = latest(Level::Baseline);
        let v = check_pod(&lv, &json!({}), &spec);
        assert_eq!(
            forbidden_message(&lv, &v),
            "violates PodSecurity \"baseline:latest\": privileged (container \"c\" must not set securityContext.privileged=true)"
        );
        assert_eq!(
            pod_forbidden_message("p", &forbidden_message(&lv, &v)),
            "pods \"p\" is forbidden: violates PodSecurity \"baseline:latest\": privileged (container \"c\" must not set securityContext.privileged=true)"
        );
        assert!(check_pod(&latest(Level::Privileged), &json!({}), &spec).is_empty());
    }

    #[test]
    fn good_pod_passes_restricted() {
        assert!(check_pod(&latest(Level::Restricted), &json!({}), &good_spec()).is_empty());
        assert!(check_pod(&latest(Level::Restricted), &json!({}), &json!({})).is_empty());
        assert!(
            check_pod(
                &latest(Level::Baseline),
                &json!({}),
                &json!({"containers": [{"name": "c"}]})
            )
            .is_empty()
        );
    }

    #[test]
    fn baseline_order() {
        let spec = json!({
            "hostNetwork": true,
            "containers": [{
                "name": "a",
                "securityContext": {"privileged": true, "capabilities": {"add": ["NET_ADMIN"]}},
                "ports": [{"containerPort": 80, "hostPort": 8080}]
            }],
            "volumes": [{"name": "data", "hostPath": {"path": "/"}}]
        });
        let lv = latest(Level::Baseline);
        let v = check_pod(&lv, &json!({}), &spec);
        assert_eq!(
            forbidden_message(&lv, &v),
            "violates PodSecurity \"baseline:latest\": \
             non-default capabilities (container \"a\" must not include \"NET_ADMIN\" in securityContext.capabilities.add), \
             host namespaces (hostNetwork=true), \
             hostPath volumes (volume \"data\"), \
             hostPort (container \"a\" uses hostPort 8080), \
             privileged (container \"a\" must not set securityContext.privileged=true)"
        );
        assert_eq!(
            forbidden_reasons(&v),
            "non-default capabilities, host namespaces, hostPath volumes, hostPort, privileged"
        );
    }

    #[test]
    fn app_armor() {
        let lv = latest(Level::Baseline);
        let spec = json!({
            "securityContext": {"appArmorProfile": {"type": "Unconfined"}},
            "containers": [
                {"name": "a", "securityContext": {"appArmorProfile": {"type": "Unconfined"}}},
                {"name": "b", "securityContext": {"appArmorProfile": {"type": "Localhost", "localhostProfile": "x"}}}
            ]
        });
        let meta = json!({"annotations": {
            "container.apparmor.security.beta.kubernetes.io/a": "unconfined",
            "container.apparmor.security.beta.kubernetes.io/b": "localhost/foo",
            "container.apparmor.security.beta.kubernetes.io/c": "runtime/default",
            "container.apparmor.security.beta.kubernetes.io/d": ""
        }});
        let v = check_pod(&lv, &meta, &spec);
        assert_eq!(
            forbidden_detail(&v),
            "forbidden AppArmor profiles (pod and container \"a\" and annotation must not set AppArmor profile type to \
             \"Unconfined\", \"container.apparmor.security.beta.kubernetes.io/a=\"unconfined\"\")"
        );
        let spec =
            json!({"containers": [{"name": "foo", "securityContext": {"appArmorProfile": {"type": "Unconfined"}}}]});
        assert_eq!(
            detail(&lv, spec),
            "forbidden AppArmor profile (container \"foo\" must not set AppArmor profile type to \"Unconfined\")"
        );
        let spec =
            json!({"securityContext": {"appArmorProfile": {"type": "RuntimeDefault"}}, "containers": [{"name": "a"}]});
        assert_eq!(detail(&lv, spec), "");
    }

    #[test]
    fn capabilities_baseline_check() {
        let lv = latest(Level::Baseline);
        let spec = json!({"containers": [
            {"name": "a", "securityContext": {"capabilities": {"add": ["NET_ADMIN", "CHOWN"]}}},
            {"name": "b", "securityContext": {"capabilities": {"add": ["SYS_ADMIN"]}}},
            {"name": "c", "securityContext": {"capabilities": {"add": ["KILL"]}}}
        ]});
        assert_eq!(
            detail(&lv, spec),
            "non-default capabilities (containers \"a\", \"b\" must not include \"NET_ADMIN\", \"SYS_ADMIN\" in securityContext.capabilities.add)"
        );
        let spec = json!({"containers": [{"name": "c", "securityContext": {"capabilities": {"add": ["KILL", "NET_BIND_SERVICE"]}}}]});
        assert_eq!(detail(&lv, spec), "");
    }

    #[test]
    fn host_namespaces_check() {
        let lv = latest(Level::Baseline);
        assert_eq!(
            detail(&lv, json!({"hostNetwork": true, "hostPID": true, "hostIPC": true})),
            "host namespaces (hostNetwork=true, hostPID=true, hostIPC=true)"
        );
        assert_eq!(detail(&lv, json!({"hostNetwork": false, "hostPID": false})), "");
    }

    #[test]
    fn host_path_volumes_check() {
        let spec = json!({"volumes": [
            {"name": "a", "hostPath": {"path": "/a"}},
            {"name": "b", "emptyDir": {}},
            {"name": "c", "hostPath": {"path": "/c"}}
        ]});
        assert_eq!(
            detail(&latest(Level::Baseline), spec.clone()),
            "hostPath volumes (volumes \"a\", \"c\")"
        );
        // Restricted reports them as restricted volume types instead.
        assert_eq!(restricted_detail(&spec, "hostPath volumes"), None);
        assert_eq!(
            detail(
                &latest(Level::Baseline),
                json!({"volumes": [{"name": "b", "emptyDir": {}}]})
            ),
            ""
        );
    }

    #[test]
    fn host_ports_check() {
        let lv = latest(Level::Baseline);
        let spec = json!({
            "initContainers": [{"name": "i", "ports": [{"hostPort": 30}]}],
            "containers": [
                {"name": "a", "ports": [{"containerPort": 80, "hostPort": 0}]},
                {"name": "b", "ports": [{"hostPort": 10}, {"hostPort": 20}]}
            ]
        });
        assert_eq!(
            detail(&lv, spec),
            "hostPort (containers \"i\", \"b\" use hostPorts 10, 20, 30)"
        );
        let spec = json!({"containers": [{"name": "a", "ports": [{"containerPort": 80}]}, {"name": "b", "ports": [{"hostPort": 20}]}]});
        assert_eq!(detail(&lv, spec), "hostPort (container \"b\" uses hostPort 20)");
        assert_eq!(
            detail(
                &lv,
                json!({"containers": [{"name": "a", "ports": [{"containerPort": 80}]}]})
            ),
            ""
        );
    }

    #[test]
    fn privileged_check_visits_all_containers() {
        let spec = json!({
            "initContainers": [{"name": "i", "securityContext": {"privileged": true}}],
            "containers": [{"name": "c", "securityContext": {"privileged": true}}, {"name": "d", "securityContext": {"privileged": false}}],
            "ephemeralContainers": [{"name": "e", "securityContext": {"privileged": true}}]
        });
        assert_eq!(
            detail(&latest(Level::Baseline), spec),
            "privileged (containers \"i\", \"c\", \"e\" must not set securityContext.privileged=true)"
        );
    }

    #[test]
    fn proc_mount_check() {
        let lv = latest(Level::Baseline);
        let spec = json!({"containers": [
            {"name": "a", "securityContext": {"procMount": "Unmasked"}},
            {"name": "b", "securityContext": {"procMount": "Default"}},
            {"name": "c", "securityContext": {"procMount": "other"}}
        ]});
        assert_eq!(
            detail(&lv, spec),
            "procMount (containers \"a\", \"c\" must not set securityContext.procMount to \"Unmasked\", \"other\")"
        );
        // Not relaxed for user-namespaced pods (the gate is off by default in 1.33).
        let spec =
            json!({"hostUsers": false, "containers": [{"name": "a", "securityContext": {"procMount": "Unmasked"}}]});
        assert_eq!(
            detail(&lv, spec),
            "procMount (container \"a\" must not set securityContext.procMount to \"Unmasked\")"
        );
    }

    #[test]
    fn se_linux_check() {
        let lv = latest(Level::Baseline);
        let spec = json!({
            "securityContext": {"seLinuxOptions": {"type": "foo", "user": "u"}},
            "containers": [
                {"name": "a", "securityContext": {"seLinuxOptions": {"type": "bar"}}},
                {"name": "b", "securityContext": {"seLinuxOptions": {"role": "r"}}},
                {"name": "c", "securityContext": {"seLinuxOptions": {"type": "container_t", "level": "s0:c1"}}}
            ]
        });
        assert_eq!(
            detail(&lv, spec),
            "seLinuxOptions (pod and containers \"a\", \"b\" set forbidden securityContext.seLinuxOptions: \
             types \"bar\", \"foo\"; user may not be set; role may not be set)"
        );
        let spec = json!({"containers": [{"name": "a", "securityContext": {"seLinuxOptions": {"type": "container_engine_t"}}}]});
        assert_eq!(detail(&lv, spec.clone()), "");
        assert_eq!(detail(&at(Level::Baseline, "v1.31"), spec.clone()), "");
        assert_eq!(
            detail(&at(Level::Baseline, "v1.30"), spec),
            "seLinuxOptions (container \"a\" set forbidden securityContext.seLinuxOptions: type \"container_engine_t\")"
        );
        let spec = json!({"securityContext": {"seLinuxOptions": {"role": "r"}}});
        assert_eq!(
            detail(&lv, spec),
            "seLinuxOptions (pod set forbidden securityContext.seLinuxOptions: role may not be set)"
        );
    }

    #[test]
    fn seccomp_baseline_check() {
        let lv = latest(Level::Baseline);
        let spec = json!({
            "securityContext": {"seccompProfile": {"type": "Unconfined"}},
            "containers": [
                {"name": "a", "securityContext": {"seccompProfile": {"type": "Unconfined"}}},
                {"name": "b", "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}}},
                {"name": "c"}
            ]
        });
        assert_eq!(
            detail(&lv, spec.clone()),
            "seccompProfile (pod and container \"a\" must not set securityContext.seccompProfile.type to \"Unconfined\")"
        );
        // Before 1.19: the annotations, not the fields.
        let meta = json!({"annotations": {
            "seccomp.security.alpha.kubernetes.io/pod": "unconfined",
            "container.seccomp.security.alpha.kubernetes.io/a": "runtime/default",
            "container.seccomp.security.alpha.kubernetes.io/b": "unknown"
        }});
        let old = at(Level::Baseline, "v1.18");
        assert_eq!(
            forbidden_detail(&check_pod(&old, &meta, &spec)),
            "seccompProfile (forbidden annotations container.seccomp.security.alpha.kubernetes.io/b=\"unknown\", \
             seccomp.security.alpha.kubernetes.io/pod=\"unconfined\")"
        );
        assert_eq!(forbidden_detail(&check_pod(&old, &json!({}), &spec)), "");
        assert_eq!(detail(&lv, json!({"containers": [{"name": "c"}]})), "");
    }

    #[test]
    fn sysctls_check() {
        let spec = json!({"securityContext": {"sysctls": [
            {"name": "net.ipv4.tcp_rmem", "value": "1"},
            {"name": "kernel.msgmax", "value": "1"},
            {"name": "net.ipv4.tcp_syncookies", "value": "1"},
            {"name": "a.b", "value": "1"}
        ]}});
        assert_eq!(
            detail(&latest(Level::Baseline), spec.clone()),
            "forbidden sysctls (kernel.msgmax, a.b)"
        );
        assert_eq!(
            detail(&at(Level::Baseline, "v1.32"), spec.clone()),
            "forbidden sysctls (kernel.msgmax, a.b)"
        );
        assert_eq!(
            detail(&at(Level::Baseline, "v1.31"), spec),
            "forbidden sysctls (net.ipv4.tcp_rmem, kernel.msgmax, a.b)"
        );
        let spec = json!({"securityContext": {"sysctls": [{"name": "net.ipv4.ip_local_reserved_ports"}]}});
        assert_eq!(detail(&at(Level::Baseline, "v1.27"), spec.clone()), "");
        assert_eq!(
            detail(&at(Level::Baseline, "v1.26"), spec),
            "forbidden sysctls (net.ipv4.ip_local_reserved_ports)"
        );
    }

    #[test]
    fn windows_host_process_check() {
        let spec = json!({
            "securityContext": {"windowsOptions": {"hostProcess": true}},
            "containers": [
                {"name": "d", "securityContext": {"windowsOptions": {"hostProcess": false}}},
                {"name": "e", "securityContext": {"windowsOptions": {"hostProcess": true}}},
                {"name": "f", "securityContext": {"windowsOptions": {"hostProcess": true}}}
            ]
        });
        assert_eq!(
            detail(&latest(Level::Baseline), spec),
            "hostProcess (pod and containers \"e\", \"f\" must not set securityContext.windowsOptions.hostProcess=true)"
        );
    }

    #[test]
    fn allow_privilege_escalation_check() {
        let mut spec = good_spec();
        spec["containers"] = json!([
            {"name": "a", "securityContext": {"allowPrivilegeEscalation": true, "capabilities": {"drop": ["ALL"]}}},
            {"name": "b", "securityContext": {"capabilities": {"drop": ["ALL"]}}},
            good_container("c")
        ]);
        let want = "containers \"a\", \"b\" must set securityContext.allowPrivilegeEscalation=false";
        assert_eq!(
            restricted_detail(&spec, "allowPrivilegeEscalation != false").as_deref(),
            Some(want)
        );
        assert_eq!(check_pod(&latest(Level::Restricted), &json!({}), &spec).len(), 1);
        // Windows pods are exempt from 1.25.
        spec["os"] = json!({"name": "windows"});
        assert_eq!(restricted_detail(&spec, "allowPrivilegeEscalation != false"), None);
        let v124 = at(Level::Restricted, "v1.24");
        assert_eq!(
            reason_detail(&v124, &json!({}), &spec, "allowPrivilegeEscalation != false").as_deref(),
            Some(want)
        );
        // Not checked before 1.8.
        assert_eq!(
            reason_detail(
                &at(Level::Restricted, "v1.7"),
                &json!({}),
                &spec,
                "allowPrivilegeEscalation != false"
            ),
            None
        );
    }

    #[test]
    fn capabilities_restricted_check() {
        let mut spec = good_spec();
        spec["containers"] = json!([
            {"name": "a", "securityContext": {"allowPrivilegeEscalation": false}},
            {"name": "b", "securityContext": {"allowPrivilegeEscalation": false,
                "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}}},
            {"name": "c", "securityContext": {"allowPrivilegeEscalation": false,
                "capabilities": {"drop": ["NET_RAW"], "add": ["SYS_ADMIN", "CHOWN"]}}}
        ]);
        assert_eq!(
            restricted_detail(&spec, "unrestricted capabilities").as_deref(),
            Some(
                "containers \"a\", \"c\" must set securityContext.capabilities.drop=[\"ALL\"]; \
                 container \"c\" must not include \"CHOWN\", \"SYS_ADMIN\" in securityContext.capabilities.add"
            )
        );
        assert_eq!(restricted_detail(&spec, "non-default capabilities"), None);
        // Before 1.22 restricted uses the baseline capabilities check.
        let v121 = at(Level::Restricted, "v1.21");
        assert_eq!(
            reason_detail(&v121, &json!({}), &spec, "unrestricted capabilities"),
            None
        );
        assert_eq!(
            reason_detail(&v121, &json!({}), &spec, "non-default capabilities").as_deref(),
            Some("container \"c\" must not include \"SYS_ADMIN\" in securityContext.capabilities.add")
        );
    }

    #[test]
    fn restricted_volumes_check() {
        let mut spec = good_spec();
        spec["volumes"] = json!([
            {"name": "a", "configMap": {"name": "x"}},
            {"name": "b", "hostPath": {"path": "/"}},
            {"name": "c", "nfs": {"server": "s", "path": "/"}},
            {"name": "d"},
            {"name": "e", "emptyDir": {}},
            {"name": "f", "image": {"reference": "x"}}
        ]);
        assert_eq!(
            restricted_detail(&spec, "restricted volume types").as_deref(),
            Some("volumes \"b\", \"c\", \"d\" use restricted volume types \"hostPath\", \"nfs\", \"unknown\"")
        );
        spec["volumes"] = json!([{"name": "x", "hostPath": {"path": "/"}}]);
        let lv = latest(Level::Restricted);
        let v = check_pod(&lv, &json!({}), &spec);
        assert_eq!(
            forbidden_detail(&v),
            "restricted volume types (volume \"x\" uses restricted volume type \"hostPath\")"
        );
        spec["volumes"] = json!([{"name": "s", "secret": {"secretName": "s"}}, {"name": "p", "persistentVolumeClaim": {"claimName": "c"}}]);
        assert!(check_pod(&lv, &json!({}), &spec).is_empty());
    }

    #[test]
    fn run_as_non_root_check() {
        let mut spec = good_spec();
        spec["securityContext"] = json!({"seccompProfile": {"type": "RuntimeDefault"}});
        let mut a = good_container("a");
        a["securityContext"]["runAsNonRoot"] = json!(true);
        spec["containers"] = json!([a, good_container("b")]);
        assert_eq!(
            restricted_detail(&spec, "runAsNonRoot != true").as_deref(),
            Some("pod or container \"b\" must set securityContext.runAsNonRoot=true")
        );
        let mut c = good_container("c");
        c["securityContext"]["runAsNonRoot"] = json!(false);
        spec["securityContext"]["runAsNonRoot"] = json!(false);
        spec["containers"] = json!([good_container("b"), c]);
        assert_eq!(
            restricted_detail(&spec, "runAsNonRoot != true").as_deref(),
            Some("pod and container \"c\" must not set securityContext.runAsNonRoot=false")
        );
        spec["securityContext"]["runAsNonRoot"] = json!(true);
        spec["containers"] = json!([good_container("b")]);
        assert_eq!(restricted_detail(&spec, "runAsNonRoot != true"), None);
    }

    #[test]
    fn run_as_user_check() {
        let mut spec = good_spec();
        spec["securityContext"]["runAsUser"] = json!(0);
        let mut c = good_container("c");
        c["securityContext"]["runAsUser"] = json!(0);
        let mut d = good_container("d");
        d["securityContext"]["runAsUser"] = json!(0);
        let mut e = good_container("e");
        e["securityContext"]["runAsUser"] = json!(1000);
        spec["containers"] = json!([c, d, e]);
        let lv = latest(Level::Restricted);
        assert_eq!(
            forbidden_detail(&check_pod(&lv, &json!({}), &spec)),
            "runAsUser=0 (pod and containers \"c\", \"d\" must not set runAsUser=0)"
        );
        // Not checked before 1.23.
        assert!(check_pod(&at(Level::Restricted, "v1.22"), &json!({}), &spec).is_empty());
    }

    #[test]
    fn seccomp_restricted_check() {
        let spec = json!({
            "securityContext": {"runAsNonRoot": true},
            "containers": [good_container("a"), good_container("b")]
        });
        assert_eq!(
            restricted_detail(&spec, "seccompProfile").as_deref(),
            Some(
                "pod or containers \"a\", \"b\" must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\""
            )
        );
        let mut spec = good_spec();
        let mut a = good_container("a");
        a["securityContext"]["seccompProfile"] = json!({"type": "Unconfined"});
        spec["containers"] = json!([a, good_container("b")]);
        assert_eq!(
            restricted_detail(&spec, "seccompProfile").as_deref(),
            Some("container \"a\" must not set securityContext.seccompProfile.type to \"Unconfined\"")
        );
        // Containers may set it themselves instead of the pod.
        let mut b = good_container("b");
        b["securityContext"]["seccompProfile"] = json!({"type": "Localhost", "localhostProfile": "p"});
        let spec = json!({"securityContext": {"runAsNonRoot": true}, "containers": [b]});
        assert!(check_pod(&latest(Level::Restricted), &json!({}), &spec).is_empty());
        // Windows pods are exempt.
        let spec = json!({"os": {"name": "windows"}, "securityContext": {"runAsNonRoot": true}, "containers": [good_container("a")]});
        assert_eq!(restricted_detail(&spec, "seccompProfile"), None);
    }

    #[test]
    fn levels_and_versions() {
        assert_eq!(Level::parse("baseline"), Some(Level::Baseline));
        assert_eq!(Level::parse("Baseline"), None);
        assert_eq!(Level::Restricted.as_str(), "restricted");
        assert!(Level::Privileged < Level::Baseline && Level::Baseline < Level::Restricted);
        assert_eq!(latest(Level::Restricted).to_string(), "restricted:latest");
        assert_eq!(at(Level::Baseline, "v1.25").to_string(), "baseline:v1.25");
        assert_eq!(at(Level::Baseline, "v1.25").minor(), Some(25));
        assert_eq!(latest(Level::Baseline).minor(), None);
        assert_eq!(parse_version("v1.0"), Some(Some(0)));
        for bad in [
            "v1.01",
            "v1.",
            "v2.0",
            "1.25",
            "v1.2x",
            "v1.99999999999999999999",
            "Latest",
            "",
            "v1.-1",
        ] {
            assert_eq!(parse_version(bad), None, "{bad}");
        }
    }

    #[test]
    fn labels() {
        let (p, errs) = policy_from_labels(&json!({}));
        assert_eq!(p, Policy::default());
        assert!(errs.is_empty());
        let (p, errs) = policy_from_labels(&Value::Null);
        assert_eq!(p, Policy::default());
        assert!(errs.is_empty());

        // Warn follows a stricter enforce level, with its version.
        let (p, errs) = policy_from_labels(&json!({ENFORCE_LEVEL_LABEL: "restricted", ENFORCE_VERSION_LABEL: "v1.24"}));
        assert!(errs.is_empty());
        assert_eq!(p.enforce, at(Level::Restricted, "v1.24"));
        assert_eq!(p.warn, at(Level::Restricted, "v1.24"));
        assert_eq!(p.audit, latest(Level::Privileged));

        // ...but not over an explicit warn level, nor its explicit version.
        let (p, _) = policy_from_labels(&json!({ENFORCE_LEVEL_LABEL: "restricted", WARN_LEVEL_LABEL: "baseline"}));
        assert_eq!(p.warn, latest(Level::Baseline));
        let (p, _) = policy_from_labels(&json!({
            ENFORCE_LEVEL_LABEL: "baseline", ENFORCE_VERSION_LABEL: "v1.24", WARN_VERSION_LABEL: "v1.30"
        }));
        assert_eq!(p.warn, at(Level::Baseline, "v1.30"));

        // An unreadable enforce level enforces restricted, and warn is not raised.
        let (p, errs) = policy_from_labels(&json!({ENFORCE_LEVEL_LABEL: "bogus"}));
        assert_eq!(p.enforce, latest(Level::Restricted));
        assert_eq!(p.warn, latest(Level::Privileged));
        assert_eq!(errs.len(), 1);
        assert_eq!(
            errs[0].message(),
            "metadata.labels[pod-security.kubernetes.io/enforce]: Invalid value: \"bogus\": must be one of privileged, baseline, restricted"
        );

        // Unreadable audit and warn levels are privileged; unreadable versions are latest.
        let (p, errs) = policy_from_labels(&json!({
            AUDIT_LEVEL_LABEL: "x", AUDIT_VERSION_LABEL: "v2", WARN_LEVEL_LABEL: "y",
            ENFORCE_LEVEL_LABEL: "baseline", ENFORCE_VERSION_LABEL: "v1.01"
        }));
        assert_eq!(p.enforce, latest(Level::Baseline));
        assert_eq!(p.audit, latest(Level::Privileged));
        assert_eq!(p.warn, latest(Level::Privileged));
        let messages: Vec<String> = errs.iter().map(FieldError::message).collect();
        assert_eq!(
            messages,
            [
                "metadata.labels[pod-security.kubernetes.io/enforce-version]: Invalid value: \"v1.01\": must be \"latest\" or \"v1.x\"",
                "metadata.labels[pod-security.kubernetes.io/audit]: Invalid value: \"x\": must be one of privileged, baseline, restricted",
                "metadata.labels[pod-security.kubernetes.io/audit-version]: Invalid value: \"v2\": must be \"latest\" or \"v1.x\"",
                "metadata.labels[pod-security.kubernetes.io/warn]: Invalid value: \"y\": must be one of privileged, baseline, restricted",
            ]
        );
        assert!(aggregate_message(&errs).starts_with("[metadata.labels[pod-security.kubernetes.io/enforce-version]: "));
        assert_eq!(aggregate_message(&errs[..1]), messages[0]);
    }

    fn request<'a>(labels: &'a Value, spec: &'a Value, is_pod: bool) -> PodRequest<'a> {
        static EMPTY: Value = Value::Null;
        PodRequest {
            namespace: "ns",
            username: "alice",
            namespace_labels: labels,
            metadata: &EMPTY,
            spec,
            old_spec: None,
            is_pod,
        }
    }

    #[test]
    fn review_pods_and_templates() {
        let config = Config::default();
        let privileged_pod =
            json!({"containers": [{"name": "c", "image": "busybox", "securityContext": {"privileged": true}}]});

        // Enforced.
        let labels = json!({ENFORCE_LEVEL_LABEL: "restricted"});
        let r = review(&config, &request(&labels, &privileged_pod, true));
        assert_eq!(r.denied.as_deref(), Some(PRIVILEGED_POD_RESTRICTED));
        assert!(r.warnings.is_empty());
        assert_eq!(
            r.audit_annotations.get(ENFORCE_POLICY_ANNOTATION).map(String::as_str),
            Some("restricted:latest")
        );
        assert_eq!(r.audit_annotations.len(), 1);

        // The same template is only warned about.
        let r = review(&config, &request(&labels, &privileged_pod, false));
        assert_eq!(r.denied, None);
        assert_eq!(
            r.warnings,
            [PRIVILEGED_POD_RESTRICTED.replacen("violates", "would violate", 1)]
        );
        assert!(r.audit_annotations.is_empty());

        // Baseline enforced, restricted warned and audited.
        let labels =
            json!({ENFORCE_LEVEL_LABEL: "baseline", WARN_LEVEL_LABEL: "restricted", AUDIT_LEVEL_LABEL: "restricted"});
        let plain = json!({"containers": [{"name": "c", "image": "busybox"}]});
        let r = review(&config, &request(&labels, &plain, true));
        let want = "would violate PodSecurity \"restricted:latest\": \
            allowPrivilegeEscalation != false (container \"c\" must set securityContext.allowPrivilegeEscalation=false), \
            unrestricted capabilities (container \"c\" must set securityContext.capabilities.drop=[\"ALL\"]), \
            runAsNonRoot != true (pod or container \"c\" must set securityContext.runAsNonRoot=true), \
            seccompProfile (pod or container \"c\" must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\")";
        assert_eq!(r.denied, None);
        assert_eq!(r.warnings, [want]);
        assert_eq!(
            r.audit_annotations.get(AUDIT_VIOLATIONS_ANNOTATION).map(String::as_str),
            Some(want)
        );
        assert_eq!(
            r.audit_annotations.get(ENFORCE_POLICY_ANNOTATION).map(String::as_str),
            Some("baseline:latest")
        );

        // Unlabelled: privileged.
        let r = review(&config, &request(&json!({}), &privileged_pod, true));
        assert_eq!(r.denied, None);
        assert_eq!(
            r.audit_annotations.get(ENFORCE_POLICY_ANNOTATION).map(String::as_str),
            Some("privileged:latest")
        );
        let r = review(&config, &request(&json!({}), &privileged_pod, false));
        assert_eq!(r, Review::default());

        // An unreadable enforce level enforces restricted, and says why.
        let labels = json!({ENFORCE_LEVEL_LABEL: "bogus"});
        let r = review(&config, &request(&labels, &privileged_pod, true));
        assert_eq!(r.denied.as_deref(), Some(PRIVILEGED_POD_RESTRICTED));
        assert_eq!(
            r.audit_annotations.get(ERROR_ANNOTATION).map(String::as_str),
            Some(
                "Failed to parse policy: metadata.labels[pod-security.kubernetes.io/enforce]: Invalid value: \"bogus\": \
                 must be one of privileged, baseline, restricted"
            )
        );
    }

    #[test]
    fn review_exemptions_and_updates() {
        let labels = json!({ENFORCE_LEVEL_LABEL: "restricted"});
        let spec = json!({"runtimeClassName": "kata", "containers": [{"name": "c", "image": "a", "securityContext": {"privileged": true}}]});
        let config = Config {
            defaults: Policy::default(),
            exemptions: Exemptions {
                usernames: vec!["admin".into()],
                namespaces: vec!["kube-system".into()],
                runtime_classes: vec!["kata".into()],
            },
        };
        let exempt = |r: &Review| r.audit_annotations.get(EXEMPT_ANNOTATION).cloned();
        let mut req = request(&labels, &spec, true);
        assert_eq!(exempt(&review(&config, &req)).as_deref(), Some("runtimeClass"));
        req.username = "admin";
        assert_eq!(exempt(&review(&config, &req)).as_deref(), Some("user"));
        req.namespace = "kube-system";
        assert_eq!(exempt(&review(&config, &req)).as_deref(), Some("namespace"));

        // An update that changes no image is not evaluated; one that does is.
        let config = Config::default();
        let old = json!({"containers": [{"name": "c", "image": "a"}]});
        let mut req = request(&labels, &spec, true);
        req.old_spec = Some(&old);
        assert_eq!(review(&config, &req), Review::default());
        let newer = json!({"containers": [{"name": "c", "image": "b", "securityContext": {"privileged": true}}]});
        req.spec = &newer;
        assert!(review(&config, &req).denied.is_some());

        assert!(!is_significant_pod_update(&old, &old));
        assert!(is_significant_pod_update(&json!({}), &old));
        let with_debug =
            json!({"containers": [{"name": "c", "image": "a"}], "ephemeralContainers": [{"name": "d", "image": "x"}]});
        assert!(is_significant_pod_update(&with_debug, &old));
        assert!(!is_significant_pod_update(&with_debug, &with_debug));
    }

    #[test]
    fn namespaces() {
        let config = Config::default();
        let bogus = json!({ENFORCE_LEVEL_LABEL: "bogus"});
        let NamespaceReview::Invalid(errs) = review_namespace(&config, "test", &bogus, None) else {
            panic!("bad labels are invalid");
        };
        assert_eq!(errs.len(), 1);
        // An update that keeps the same bad labels goes through.
        assert_eq!(
            review_namespace(&config, "test", &bogus, Some(&bogus)),
            NamespaceReview::Allowed(vec![])
        );
        assert!(matches!(
            review_namespace(&config, "test", &bogus, Some(&json!({}))),
            NamespaceReview::Invalid(_)
        ));

        let baseline = json!({ENFORCE_LEVEL_LABEL: "baseline"});
        let restricted = json!({ENFORCE_LEVEL_LABEL: "restricted"});
        assert_eq!(
            review_namespace(&config, "test", &restricted, Some(&baseline)),
            NamespaceReview::CheckPods(latest(Level::Restricted))
        );
        assert_eq!(
            review_namespace(&config, "test", &baseline, Some(&restricted)),
            NamespaceReview::Allowed(vec![])
        );
        assert_eq!(
            review_namespace(&config, "test", &restricted, Some(&restricted)),
            NamespaceReview::Allowed(vec![])
        );
        assert_eq!(
            review_namespace(&config, "test", &json!({}), Some(&restricted)),
            NamespaceReview::Allowed(vec![])
        );
        // A version change checks pods even at a looser level.
        let older = json!({ENFORCE_LEVEL_LABEL: "restricted", ENFORCE_VERSION_LABEL: "v1.20"});
        assert_eq!(
            review_namespace(&config, "test", &older, Some(&restricted)),
            NamespaceReview::CheckPods(at(Level::Restricted, "v1.20"))
        );

        let exempting = Config {
            exemptions: Exemptions {
                namespaces: vec!["test".into()],
                ..Exemptions::default()
            },
            ..Config::default()
        };
        assert_eq!(
            review_namespace(&exempting, "test", &restricted, None),
            NamespaceReview::Allowed(vec![
                "namespace \"test\" is exempt from Pod Security, and the policy (enforce=restricted:latest) will be ignored"
                    .to_string()
            ])
        );
        let all = json!({
            ENFORCE_LEVEL_LABEL: "restricted", ENFORCE_VERSION_LABEL: "v1.0",
            AUDIT_LEVEL_LABEL: "restricted", WARN_LEVEL_LABEL: "baseline"
        });
        assert_eq!(
            review_namespace(&exempting, "test", &all, Some(&baseline)),
            NamespaceReview::Allowed(vec![
                "namespace \"test\" is exempt from Pod Security, and the policy \
                 (enforce=restricted:v1.0, audit=restricted:latest, warn=baseline:latest) will be ignored"
                    .to_string()
            ])
        );
        assert_eq!(
            review_namespace(&exempting, "test", &json!({}), None),
            NamespaceReview::Allowed(vec![])
        );
    }

    fn pod(name: &str, spec: Value, controller: Option<&str>) -> Value {
        let mut p = json!({"metadata": {"name": name}, "spec": spec});
        if let Some(uid) = controller {
            p["metadata"]["ownerReferences"] =
                json!([{"uid": uid, "controller": true, "kind": "ReplicaSet", "name": "rs"}]);
        }
        p
    }

    #[test]
    fn existing_pod_warnings() {
        let privileged = json!({"containers": [{"name": "c", "securityContext": {"privileged": true}}]});
        let host = json!({"hostNetwork": true, "containers": [{"name": "c"}]});
        let fine = json!({"containers": [{"name": "c"}]});
        let exempt = json!({"runtimeClassName": "kata", "hostNetwork": true});
        let pods = [
            pod("b-pod", privileged.clone(), None),
            pod("a-pod", privileged, None),
            pod("x-exempt", exempt, None),
            pod("rs-1", host.clone(), Some("u1")),
            pod("rs-2", host.clone(), Some("u1")),
            pod("d-pod", fine, None),
            pod("c-pod", host, None),
        ];
        let exemptions = Exemptions {
            runtime_classes: vec!["kata".into()],
            ..Exemptions::default()
        };
        let lv = latest(Level::Baseline);
        assert_eq!(
            namespace_pod_warnings("ns", &lv, &pods, &exemptions, MAX_PODS_TO_CHECK),
            [
                "existing pods in namespace \"ns\" violate the new PodSecurity enforce level \"baseline:latest\"",
                "a-pod (and 1 other pod): privileged",
                "c-pod (and 2 other pods): host namespaces",
            ]
        );
        // rs-2 is a second replica of u1, so it goes last and is not reached.
        assert_eq!(
            namespace_pod_warnings("ns", &lv, &pods, &exemptions, 4),
            [
                "new PodSecurity enforce level only checked against the first 4 of 6 existing pods",
                "existing pods in namespace \"ns\" violate the new PodSecurity enforce level \"baseline:latest\"",
                "a-pod (and 1 other pod): privileged",
                "rs-1: host namespaces",
            ]
        );
        assert!(namespace_pod_warnings("ns", &lv, &[], &exemptions, MAX_PODS_TO_CHECK).is_empty());
    }

    #[test]
    fn templates() {
        assert_eq!(pod_template_path("apps", "Deployment"), Some(&["spec", "template"][..]));
        assert_eq!(
            pod_template_path("batch", "CronJob"),
            Some(&["spec", "jobTemplate", "spec", "template"][..])
        );
        assert_eq!(pod_template_path("", "PodTemplate"), Some(&["template"][..]));
        assert_eq!(pod_template_path("", "Pod"), None);
        assert_eq!(pod_template_path("apps", "ControllerRevision"), None);

        let cj = json!({"spec": {"jobTemplate": {"spec": {"template": {"metadata": {"labels": {"a": "b"}}, "spec": {"hostPID": true}}}}}});
        let (meta, spec) = pod_template("batch", "CronJob", &cj).expect("a template");
        assert_eq!(meta["labels"]["a"], "b");
        assert_eq!(spec["hostPID"], json!(true));
        assert_eq!(pod_template("", "ReplicationController", &json!({"spec": {}})), None);
        assert_eq!(
            pod_template("apps", "Deployment", &json!({})),
            Some((&Value::Null, &Value::Null))
        );
        assert_eq!(pod_template("", "ConfigMap", &json!({})), None);
    }

    #[test]
    fn quoting() {
        assert_eq!(go_quote("a\"b\\c"), "\"a\\\"b\\\\c\"");
        assert_eq!(go_quote("x\ny\u{1}\u{7f}"), "\"x\\ny\\x01\\x7f\"");
        assert_eq!(go_quote("é\u{a0}"), "\"é\\u00a0\"");
        let meta = json!({"annotations": {"container.apparmor.security.beta.kubernetes.io/a": "bad\"one"}});
        assert_eq!(
            reason_detail(
                &latest(Level::Baseline),
                &meta,
                &json!({}),
                "forbidden AppArmor profile"
            )
            .as_deref(),
            Some(
                "annotation must not set AppArmor profile type to \"container.apparmor.security.beta.kubernetes.io/a=\"bad\\\"one\"\""
            )
        );
    }

    #[test]
    fn hostile_input_never_panics() {
        let junk = [
            Value::Null,
            json!(1),
            json!("x"),
            json!([1, 2]),
            json!({"containers": "x", "volumes": {"a": 1}, "securityContext": 5}),
            json!({
                "initContainers": [null, 3, {"securityContext": []}, {"name": 7, "securityContext": {
                    "capabilities": {"add": "ALL", "drop": 1}, "seLinuxOptions": "x", "privileged": "true",
                    "procMount": 3, "runAsUser": "0", "seccompProfile": {"type": 1}
                }}],
                "containers": [{"ports": [null, {"hostPort": "80"}, {"hostPort": 1.5}], "securityContext": {
                    "appArmorProfile": {}, "windowsOptions": null, "capabilities": {"add": [1, null, "NET_RAW"]}
                }}],
                "ephemeralContainers": {"x": 1},
                "volumes": [1, null, {"name": 5}, {"hostPath": null}],
                "securityContext": {"sysctls": [1, {"name": null}], "seLinuxOptions": {"type": []}},
                "os": 3,
                "hostNetwork": "yes"
            }),
        ];
        let metas = [
            Value::Null,
            json!({"annotations": 1}),
            json!({"annotations": {"container.apparmor.security.beta.kubernetes.io/x": 1}}),
        ];
        for spec in &junk {
            for meta in &metas {
                for lv in [
                    latest(Level::Restricted),
                    latest(Level::Baseline),
                    at(Level::Restricted, "v1.0"),
                    at(Level::Baseline, "junk"),
                ] {
                    let v = check_pod(&lv, meta, spec);
                    let _ = forbidden_message(&lv, &v);
                }
            }
            let config = Config::default();
            let _ = review(&config, &request(spec, spec, true));
            let _ = review_namespace(&config, "x", spec, Some(spec));
            let _ = namespace_pod_warnings(
                "x",
                &latest(Level::Restricted),
                std::slice::from_ref(spec),
                &Exemptions::default(),
                1,
            );
            let _ = is_significant_pod_update(spec, &Value::Null);
            let _ = pod_template("batch", "CronJob", spec);
        }
        // A hostPort given as a float still counts; as a string it does not.
        let spec = json!({"containers": [{"name": "a", "ports": [{"hostPort": 1.5}, {"hostPort": "80"}]}]});
        assert_eq!(
            detail(&latest(Level::Baseline), spec),
            "hostPort (container \"a\" uses hostPort 1.5)"
        );
    }
}
