//! Continue tokens of paged LISTs.
//!
//! A token is `base64url({"v":"meta.k8s.io/v1","rv":R,"start":K})`: the revision the first
//! page was served at and the key to resume from, **relative to the collection's key
//! prefix**. Decoding checks the relative key is a clean path (no `.`, `..`, empty segment or
//! trailing `/`) and puts the prefix of the request being continued back in front, so a
//! token, however forged, can only range over the collection (and namespace) of the request
//! that presents it. A token from a namespaced list presented to another namespace's list
//! resumes by name inside that other namespace, which is what the caller may read anyway.

use base64::Engine;
use serde_json::{Value, json};
use shoal_store::Revision;

use crate::status::{ApiError, ApiResult};

const VERSION: &str = "meta.k8s.io/v1";

/// The token that resumes a list of the collection at `prefix`, served at `rev`, from `next`
/// (a key under `prefix`). `None` when `next` is not under `prefix`, which is a bug of the
/// caller; the list then ends without a token rather than handing out a key outside it.
pub fn encode(rev: Revision, prefix: &str, next: &str) -> Option<String> {
    let relative = next.strip_prefix(prefix)?;
    let raw = json!({"v": VERSION, "rv": rev, "start": relative}).to_string();
    Some(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw))
}

/// The revision and absolute start key of a client's continue token for the collection at
/// `prefix`. Every malformed token is a 400 with upstream's wording.
pub fn decode(token: &str, prefix: &str) -> ApiResult<(Revision, String)> {
    let invalid = |why: &str| ApiError::bad_request(format!("continue key is not valid: {why}"));
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token.trim_end_matches('='))
        .map_err(|_| invalid("the token is not base64url-encoded"))?;
    let v: Value = serde_json::from_slice(&raw).map_err(|_| invalid("the token is not a JSON object"))?;
    match v["v"].as_str() {
        Some(VERSION) => {}
        Some(other) => {
            return Err(invalid(&format!(
                "server does not recognize this encoded version {other:?}"
            )));
        }
        None => return Err(invalid("server does not recognize this encoded version \"\"")),
    }
    let rev = v["rv"]
        .as_i64()
        .filter(|rv| *rv > 0)
        .ok_or_else(|| invalid("incorrect encoded start resourceVersion (version meta.k8s.io/v1)"))?;
    let start = v["start"].as_str().unwrap_or_default();
    if start.is_empty() {
        return Err(invalid("encoded start key empty (version meta.k8s.io/v1)"));
    }
    let rooted = if start.starts_with('/') {
        start.to_string()
    } else {
        format!("/{start}")
    };
    if !is_clean_path(&rooted) {
        return Err(invalid(start));
    }
    Ok((rev, format!("{prefix}{}", &rooted[1..])))
}

/// Whether `path` (starting with `/`) is what Go's `path.Clean` would leave unchanged: no
/// empty, `.` or `..` segment and no trailing slash (except the root itself).
fn is_clean_path(path: &str) -> bool {
    path == "/"
        || path
            .strip_prefix('/')
            .is_some_and(|rest| rest.split('/').all(|seg| !matches!(seg, "" | "." | "..")))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PODS: &str = "/registry/core/pods/";

    fn forge(v: Value) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    }

    #[test]
    fn tokens_round_trip_relative_to_their_collection() {
        let t = encode(42, PODS, "/registry/core/pods/default/a\0").unwrap();
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(&t).unwrap();
        let v: Value = serde_json::from_slice(&raw).unwrap();
        assert_eq!(v["start"], "default/a\0", "the key is stored without the prefix");
        assert_eq!(
            decode(&t, PODS).unwrap(),
            (42, "/registry/core/pods/default/a\0".to_string())
        );
        assert_eq!(encode(1, PODS, "/registry/core/secrets/x"), None);
    }

    #[test]
    fn a_forged_token_cannot_leave_the_collection() {
        for start in [
            "/registry/core/secrets/",
            "../secrets/",
            "../../core/secrets/default/a",
            "default/../../secrets/",
            "a//b",
            "./a",
            "a/",
        ] {
            let t = forge(json!({"v": VERSION, "rv": 5, "start": start}));
            match decode(&t, PODS) {
                Ok((_, key)) => assert!(
                    key.starts_with(PODS) && !key.contains("/../"),
                    "{start:?} escaped to {key:?}"
                ),
                Err(e) => assert_eq!(e.code, 400, "{start:?}"),
            }
        }
        // An absolute-looking start is taken as relative: it stays under the prefix.
        let t = forge(json!({"v": VERSION, "rv": 5, "start": "/registry/core/secrets/"}));
        assert!(decode(&t, PODS).is_err(), "a trailing slash is not clean");
        let t = forge(json!({"v": VERSION, "rv": 5, "start": "/registry/core/secrets/x"}));
        assert_eq!(
            decode(&t, PODS).unwrap().1,
            "/registry/core/pods/registry/core/secrets/x"
        );
    }

    #[test]
    fn malformed_tokens_are_refused_with_upstream_wording() {
        let msg = |t: &str| decode(t, PODS).unwrap_err().message;
        assert!(msg("nope!").starts_with("continue key is not valid"));
        assert_eq!(
            msg(&forge(json!({"v": "x/v9", "rv": 1, "start": "a"}))),
            "continue key is not valid: server does not recognize this encoded version \"x/v9\""
        );
        assert_eq!(
            msg(&forge(json!({"v": VERSION, "rv": 0, "start": "a"}))),
            "continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)"
        );
        assert!(decode(&forge(json!({"v": VERSION, "rv": -3, "start": "a"})), PODS).is_err());
        assert_eq!(
            msg(&forge(json!({"v": VERSION, "rv": 1, "start": ""}))),
            "continue key is not valid: encoded start key empty (version meta.k8s.io/v1)"
        );
        assert_eq!(
            msg(&forge(json!({"v": VERSION, "rv": 1, "start": "a/../b"}))),
            "continue key is not valid: a/../b"
        );
    }

    #[test]
    fn clean_paths_are_those_go_leaves_alone() {
        for p in ["/", "/a", "/a/b", "/a\0", "/a.b/..c"] {
            assert!(is_clean_path(p), "{p}");
        }
        for p in ["", "a", "//", "/a/", "/./a", "/a/..", "/a//b", "/.."] {
            assert!(!is_clean_path(p), "{p}");
        }
    }
}
