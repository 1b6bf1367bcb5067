//! Request parsing: which resource a path names, and the query parameters of the REST verbs.

use std::collections::HashMap;

use shoal_api::catalogue::{self, Resource};

use crate::status::{ApiError, ApiResult};

/// What a resource path names.
#[derive(Clone, Debug)]
pub struct Target {
    /// The resource.
    pub res: &'static Resource,
    /// Namespace from the path (`None` for cluster-scoped resources and all-namespace lists).
    pub namespace: Option<String>,
    /// Object name (`None` for collections).
    pub name: Option<String>,
    /// Subresource (`status`, `scale`, ...).
    pub subresource: Option<String>,
}

/// A parsed API path.
#[derive(Clone, Debug)]
pub enum ApiPath {
    /// `/api/v1` or `/apis/<g>/<v>`: resource list of a group-version.
    GroupVersion { group: String, version: String },
    /// `/apis/<g>`: one group.
    Group(String),
    /// A resource, collection or object.
    Resource(Target),
}

/// Parses `/api/...` and `/apis/...` paths. `Ok(None)` for other paths.
pub fn parse_path(path: &str) -> ApiResult<Option<ApiPath>> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').filter(|s| !s.is_empty()).collect();
    let (group, version, rest) = match segs.as_slice() {
        ["api", "v1", rest @ ..] => ("", "v1", rest),
        ["api", ..] => return Ok(None),
        ["apis", g] => return Ok(Some(ApiPath::Group(g.to_string()))),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return Ok(None),
    };
    if rest.is_empty() {
        return Ok(Some(ApiPath::GroupVersion {
            group: group.into(),
            version: version.into(),
        }));
    }
    let lookup = |plural: &str| catalogue::find(group, version, plural).ok_or_else(ApiError::no_route);
    // `/namespaces/{ns}/{resource}...` for namespaced resources.
    if rest[0] == "namespaces"
        && rest.len() >= 3
        && let Some(res) = catalogue::find(group, version, rest[2]).filter(|r| r.namespaced)
    {
        {
            let (name, sub) = match &rest[3..] {
                [] => (None, None),
                [n] => (Some(n.to_string()), None),
                [n, s] => (Some(n.to_string()), Some(s.to_string())),
                _ => return Err(ApiError::no_route()),
            };
            if sub.as_deref().is_some_and(|s| res.subresource(s).is_none()) {
                return Err(ApiError::no_route());
            }
            return Ok(Some(ApiPath::Resource(Target {
                res,
                namespace: Some(rest[1].to_string()),
                name,
                subresource: sub,
            })));
        }
    }
    let res = lookup(rest[0])?;
    let (name, sub) = match &rest[1..] {
        [] => (None, None),
        [n] => (Some(n.to_string()), None),
        [n, s] => (Some(n.to_string()), Some(s.to_string())),
        _ => return Err(ApiError::no_route()),
    };
    if res.namespaced && name.is_some() {
        // A namespaced object must be addressed under /namespaces/{ns}/.
        return Err(ApiError::no_route());
    }
    if sub.as_deref().is_some_and(|s| res.subresource(s).is_none()) {
        return Err(ApiError::no_route());
    }
    Ok(Some(ApiPath::Resource(Target {
        res,
        namespace: None,
        name,
        subresource: sub,
    })))
}

/// Query parameters of list, watch and write requests.
#[derive(Clone, Debug, Default)]
pub struct Params {
    raw: HashMap<String, String>,
    user_agent: Option<String>,
}

impl Params {
    /// Parses a query string.
    pub fn parse(query: Option<&str>) -> Params {
        let mut raw = HashMap::new();
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            raw.insert(decode(k), decode(v));
        }
        Params { raw, user_agent: None }
    }

    /// Records the request's `User-Agent` (writes without a `fieldManager` are recorded
    /// under its product name, as upstream does).
    pub fn with_user_agent(mut self, user_agent: Option<&str>) -> Params {
        self.user_agent = user_agent.map(str::to_string);
        self
    }

    /// The field manager of a write: `fieldManager`, else the `User-Agent`'s product name
    /// (`kubectl` for `kubectl/v1.33.0 (linux/amd64) ...`) without unprintable characters
    /// and cut to 128 bytes.
    pub fn field_manager(&self) -> Option<String> {
        if let Some(m) = self.get("fieldManager") {
            return Some(m.to_string());
        }
        let product = self.user_agent.as_deref()?.split('/').next().unwrap_or_default();
        let mut out = String::new();
        for c in product.chars().filter(|c| !c.is_control()) {
            if out.len() + c.len_utf8() > FIELD_MANAGER_MAX {
                break;
            }
            out.push(c);
        }
        (!out.is_empty()).then_some(out)
    }

    /// A parameter's value, empty strings treated as absent.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.raw.get(key).map(String::as_str).filter(|s| !s.is_empty())
    }

    /// Whether the parameter is present and not `false` or `0` (`?verbose` counts).
    pub fn has(&self, key: &str) -> bool {
        self.raw.get(key).is_some_and(|v| v != "false" && v != "0")
    }

    /// A boolean parameter (`true`/`1`).
    pub fn flag(&self, key: &str) -> bool {
        matches!(self.get(key), Some("true" | "1"))
    }

    /// An integer parameter; a malformed one is a 400.
    pub fn int(&self, key: &str) -> ApiResult<Option<i64>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .parse()
                .map(Some)
                .map_err(|_| ApiError::bad_request(format!("invalid value for {key}: {v:?}"))),
        }
    }

    /// True when `dryRun=All`; any other value is a 400.
    pub fn dry_run(&self) -> ApiResult<bool> {
        match self.get("dryRun") {
            None => Ok(false),
            Some("All") => Ok(true),
            Some(other) => Err(ApiError::bad_request(format!(
                "Invalid dry run value: {other:?}; supported values: \"All\""
            ))),
        }
    }

    /// `fieldValidation`: Strict, Warn (default) or Ignore.
    pub fn field_validation(&self) -> ApiResult<FieldValidation> {
        match self.get("fieldValidation") {
            None | Some("Warn") => Ok(FieldValidation::Warn),
            Some("Strict") => Ok(FieldValidation::Strict),
            Some("Ignore") => Ok(FieldValidation::Ignore),
            Some(other) => Err(ApiError::bad_request(format!(
                "fieldValidation must be one of \"Ignore\", \"Warn\", or \"Strict\", got {other:?}"
            ))),
        }
    }
}

/// Upstream's limit on a field manager's length, in bytes.
pub const FIELD_MANAGER_MAX: usize = 128;

/// How to treat unknown fields in a request body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldValidation {
    /// Refuse the request (400).
    Strict,
    /// Accept, drop the fields, and warn.
    Warn,
    /// Accept and drop the fields silently.
    Ignore,
}

/// Percent-encodes a path segment or query component.
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Decodes a URL path: `%XX` escapes become their bytes, which must make UTF-8. An escape
/// that is not `%` and two hex digits is a 400 (Go's server refuses such a URL before the API
/// server sees it).
pub fn decode_path(raw: &str) -> ApiResult<String> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()))
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            let Some(b) = hex else {
                return Err(ApiError::bad_request(format!(
                    "invalid URL escape {:?} in the path",
                    String::from_utf8_lossy(&bytes[i..(i + 3).min(bytes.len())])
                )));
            };
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| ApiError::bad_request("the path is not UTF-8 once decoded"))
}

/// Decodes a percent-encoded query component (`+` is a space).
pub fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(path: &str) -> Target {
        match parse_path(path).unwrap().unwrap() {
            ApiPath::Resource(t) => t,
            other => panic!("{path}: {other:?}"),
        }
    }

    #[test]
    fn namespaced_paths_name_namespace_object_and_subresource() {
        let t = target("/apis/apps/v1/namespaces/default/daemonsets/x/status");
        assert_eq!(t.res.kind, "DaemonSet");
        assert_eq!(t.namespace.as_deref(), Some("default"));
        assert_eq!(t.name.as_deref(), Some("x"));
        assert_eq!(t.subresource.as_deref(), Some("status"));
        let t = target("/api/v1/pods");
        assert_eq!((t.res.kind, t.namespace, t.name), ("Pod", None, None));
    }

    #[test]
    fn namespace_objects_and_their_subresources() {
        let t = target("/api/v1/namespaces/kube-system");
        assert_eq!((t.res.kind, t.name.as_deref()), ("Namespace", Some("kube-system")));
        let t = target("/api/v1/namespaces/x/finalize");
        assert_eq!(
            (t.name.as_deref(), t.subresource.as_deref()),
            (Some("x"), Some("finalize"))
        );
    }

    #[test]
    fn unknown_resources_and_subresources_are_not_found() {
        assert_eq!(parse_path("/apis/apps/v1/widgets").unwrap_err().code, 404);
        assert_eq!(
            parse_path("/apis/apps/v1/namespaces/d/daemonsets/x/scale")
                .unwrap_err()
                .code,
            404
        );
        assert_eq!(parse_path("/api/v1/pods/x").unwrap_err().code, 404);
        assert!(parse_path("/healthz").unwrap().is_none());
    }

    #[test]
    fn paths_are_decoded_strictly() {
        assert_eq!(
            decode_path("/api/v1/namespaces/a%2Db/pods").unwrap(),
            "/api/v1/namespaces/a-b/pods"
        );
        assert_eq!(decode_path("/api/v1/pods").unwrap(), "/api/v1/pods");
        for bad in [
            "/api/v1/namespaces/%zz/pods",
            "/api/%",
            "/api/%4",
            "/api/%ff%fe",
            "/%+1",
        ] {
            assert_eq!(decode_path(bad).unwrap_err().code, 400, "{bad}");
        }
        // An escaped slash is a slash: it cannot hide inside a name.
        let path = decode_path("/api/v1/namespaces/default/pods/a%2Fstatus").unwrap();
        assert_eq!(target(&path).subresource.as_deref(), Some("status"));
        let path = decode_path("/api/v1/namespaces/default/pods/a%2Fb").unwrap();
        assert_eq!(parse_path(&path).unwrap_err().code, 404);
    }

    #[test]
    fn query_values_are_percent_decoded() {
        let p = Params::parse(Some("labelSelector=app%3Dx%2Ctier+in+(a)&limit=5&watch=1"));
        assert_eq!(p.get("labelSelector"), Some("app=x,tier in (a)"));
        assert_eq!(p.int("limit").unwrap(), Some(5));
        assert!(p.flag("watch"));
        assert_eq!(decode("%zz%4"), "%zz%4");
    }

    #[test]
    fn field_manager_defaults_to_the_user_agent_product() {
        let ua = "kubectl/v1.33.0 (linux/amd64) kubernetes/abc";
        assert_eq!(
            Params::parse(None).with_user_agent(Some(ua)).field_manager().as_deref(),
            Some("kubectl")
        );
        let named = Params::parse(Some("fieldManager=helm")).with_user_agent(Some(ua));
        assert_eq!(named.field_manager().as_deref(), Some("helm"));
        assert_eq!(Params::parse(None).field_manager(), None);
        // Unprintable characters go, and the name stops at 128 bytes on a character boundary.
        let long = format!("a\u{7}{}/1", "é".repeat(100));
        let m = Params::parse(None)
            .with_user_agent(Some(&long))
            .field_manager()
            .unwrap();
        assert!(
            m.starts_with("aé") && m.len() <= FIELD_MANAGER_MAX && m.len() == 127,
            "{m}"
        );
    }
}
