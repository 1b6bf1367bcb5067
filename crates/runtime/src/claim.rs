//! Claiming dependents, as upstream's `ControllerRefManager`, for every owner kind: an owner
//! keeps the objects it controls that match its selector, adopts matching orphans, and
//! releases the objects it controls that stopped matching. Nothing is adopted or released
//! while the owner or the object is being deleted, and an object controlled by someone else
//! is never touched.

use serde_json::{Value, json};

use crate::informer::{controller_uid, deleting, uid};

/// What an owner does with one candidate object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Claim {
    /// It controls the object and keeps it.
    Owned,
    /// An orphan that matches: take it (see [`adopt_patch`]).
    Adopt,
    /// It controls the object but the selector no longer matches: let go ([`release_patch`]).
    Release,
    /// Not its business.
    Ignore,
}

/// What `owner` does with `object`, given whether `object` matches the owner's selector.
pub fn claim(owner: &Value, object: &Value, matches: bool) -> Claim {
    let owner_deleting = deleting(owner);
    match controller_uid(object) {
        Some(c) if c == uid(owner) => {
            if matches || owner_deleting {
                Claim::Owned
            } else {
                Claim::Release
            }
        }
        Some(_) => Claim::Ignore,
        None if matches && !owner_deleting && !deleting(object) => Claim::Adopt,
        None => Claim::Ignore,
    }
}

/// The merge patch that adds `owner_ref` to `object`'s owner references, guarded by the
/// object's uid and resourceVersion (a changed object is not adopted blindly: the patch
/// fails with a conflict and the next reconcile looks again).
pub fn adopt_patch(object: &Value, owner_ref: Value) -> Value {
    let mut refs = object["metadata"]["ownerReferences"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    refs.push(owner_ref);
    json!({"metadata": {"ownerReferences": refs, "uid": uid(object),
                        "resourceVersion": object["metadata"]["resourceVersion"]}})
}

/// The strategic merge patch that removes `owner_uid`'s reference from `object`.
pub fn release_patch(object: &Value, owner_uid: &str) -> Value {
    json!({"metadata": {"ownerReferences": [{"$patch": "delete", "uid": owner_uid}], "uid": uid(object)}})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(uid: &str, owner: Option<&str>, deleting: bool) -> Value {
        let mut o = json!({"metadata": {"name": uid, "uid": uid, "resourceVersion": "7"}});
        if let Some(owner) = owner {
            o["metadata"]["ownerReferences"] = json!([{"uid": owner, "controller": true}]);
        }
        if deleting {
            o["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        }
        o
    }

    #[test]
    fn upstream_claim_rules() {
        let owner = obj("ds", None, false);
        let gone = obj("ds", None, true);
        assert_eq!(claim(&owner, &obj("p", Some("ds"), false), true), Claim::Owned);
        assert_eq!(claim(&owner, &obj("p", Some("ds"), false), false), Claim::Release);
        assert_eq!(claim(&gone, &obj("p", Some("ds"), false), false), Claim::Owned);
        assert_eq!(claim(&owner, &obj("p", Some("rs"), false), true), Claim::Ignore);
        assert_eq!(claim(&owner, &obj("p", None, false), true), Claim::Adopt);
        assert_eq!(claim(&owner, &obj("p", None, false), false), Claim::Ignore);
        assert_eq!(claim(&owner, &obj("p", None, true), true), Claim::Ignore);
        assert_eq!(claim(&gone, &obj("p", None, false), true), Claim::Ignore);
    }

    #[test]
    fn patches_keep_other_owners_and_guard_the_version() {
        let mut o = obj("p", None, false);
        o["metadata"]["ownerReferences"] = json!([{"uid": "other", "controller": false}]);
        let p = adopt_patch(&o, json!({"uid": "ds", "controller": true}));
        assert_eq!(p["metadata"]["ownerReferences"].as_array().unwrap().len(), 2);
        assert_eq!(p["metadata"]["resourceVersion"], "7");
        assert_eq!(p["metadata"]["uid"], "p");
        let r = release_patch(&o, "ds");
        assert_eq!(r["metadata"]["ownerReferences"][0]["$patch"], "delete");
        assert_eq!(r["metadata"]["ownerReferences"][0]["uid"], "ds");
    }
}
