//! ServiceAccount tokens: JSON Web Tokens signed with the cluster's service-account key
//! (ES256, ECDSA P-256 with SHA-256; the key is `tls/service-account.key` in the data dir).
//!
//! Two kinds are issued, as upstream issues them:
//! - **bound tokens** (TokenRequest, `kubectl create token`, the projected
//!   `kube-api-access-*` volume): issuer [`ISSUER`], an audience, an expiry, and the
//!   ServiceAccount (and the pod, secret or node the token is bound to) by name and uid in
//!   the private claim `kubernetes.io`;
//! - **legacy tokens** (a `kubernetes.io/service-account-token` Secret): issuer
//!   [`LEGACY_ISSUER`], no expiry, valid while the Secret holds them.
//!
//! This module signs and checks the signature and the time claims; whether the objects a
//! token names still exist is the API server's question ([`crate::ApiServer::authenticate`]).
//! Only ES256 with this key is accepted: the header's `alg` must say so, so a token
//! claiming `none` or an HMAC over the public key is refused before anything else.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, KeyPair};
use serde_json::{Value, json};

/// The issuer (and default audience) of bound tokens, as upstream's default
/// `--service-account-issuer` on most distributions.
pub const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
/// The issuer of legacy Secret-based tokens.
pub const LEGACY_ISSUER: &str = "kubernetes/serviceaccount";
/// How far a token's `nbf` may lie in the future (clock skew between servers), in seconds.
const LEEWAY: i64 = 60;

/// The DER prefix of a P-256 SubjectPublicKeyInfo, before the uncompressed point.
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce,
    0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// Why a token is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Not a JWT at all (another authenticator's token).
    NotAJwt,
    /// A JWT this key did not sign, or one that is malformed.
    BadSignature,
    /// Past its `exp`.
    Expired,
    /// Not valid before a time still to come.
    NotYetValid,
    /// Issued by someone else, or for another audience.
    WrongIssuerOrAudience,
}

/// The key that signs and checks ServiceAccount tokens.
pub struct Signer {
    key: EcdsaKeyPair,
    kid: String,
    rng: SystemRandom,
}

impl Signer {
    /// A signer over a PKCS#8 key in PEM (`-----BEGIN PRIVATE KEY-----`).
    pub fn from_pem(pem: &str) -> Result<Signer, String> {
        let der = rcgen::KeyPair::from_pem(pem)
            .map_err(|e| format!("reading the service-account key: {e}"))?
            .serialize_der();
        let rng = SystemRandom::new();
        let key = EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &der, &rng)
            .map_err(|e| format!("the service-account key is not an ECDSA P-256 key: {e}"))?;
        let mut spki = P256_SPKI_PREFIX.to_vec();
        spki.extend_from_slice(key.public_key().as_ref());
        // The key id, as upstream derives it: the SHA-256 of the public key's DER.
        let kid = B64.encode(ring::digest::digest(&ring::digest::SHA256, &spki));
        Ok(Signer { key, kid, rng })
    }

    /// A new key, in PEM.
    pub fn generate_pem() -> Result<String, String> {
        rcgen::KeyPair::generate()
            .map(|k| k.serialize_pem())
            .map_err(|e| e.to_string())
    }

    /// The key's id (the `kid` of the tokens it signs).
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// A signed token carrying `claims`.
    pub fn sign(&self, claims: &Value) -> String {
        let header = json!({"alg": "ES256", "kid": self.kid});
        let mut token = format!("{}.{}", B64.encode(header.to_string()), B64.encode(claims.to_string()));
        match self.key.sign(&self.rng, token.as_bytes()) {
            Ok(sig) => {
                token.push('.');
                token.push_str(&B64.encode(sig.as_ref()));
            }
            // The system's random source failing leaves no signature: a token nobody accepts.
            Err(_) => token.push_str(".-"),
        }
        token
    }

    /// The claims of `token` if this key signed it (the header must say ES256; any `kid`
    /// must be this key's). Time and issuer are checked by [`check_times`] and the caller.
    pub fn verify(&self, token: &str) -> Result<Value, Refusal> {
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(sig), None) = (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(Refusal::NotAJwt);
        };
        let decode = |s: &str| B64.decode(s).map_err(|_| Refusal::NotAJwt);
        let header: Value = serde_json::from_slice(&decode(header)?).map_err(|_| Refusal::NotAJwt)?;
        if header["alg"] != "ES256" || header.get("kid").is_some_and(|k| k != self.kid.as_str()) {
            return Err(Refusal::BadSignature);
        }
        let signed = &token[..token.len() - sig.len() - 1];
        signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, self.key.public_key().as_ref())
            .verify(signed.as_bytes(), &decode(sig)?)
            .map_err(|_| Refusal::BadSignature)?;
        let claims: Value = serde_json::from_slice(&decode(payload)?).map_err(|_| Refusal::BadSignature)?;
        if !claims.is_object() {
            return Err(Refusal::BadSignature);
        }
        Ok(claims)
    }

    /// The JSON Web Key Set with this key (`/openid/v1/jwks`).
    pub fn jwks(&self) -> Value {
        let point = self.key.public_key().as_ref();
        // An uncompressed P-256 point: 0x04, then x and y of 32 bytes each.
        let (x, y) = point
            .get(1..)
            .unwrap_or_default()
            .split_at(32.min(point.len().saturating_sub(1)));
        json!({"keys": [{
            "use": "sig",
            "kty": "EC",
            "kid": self.kid,
            "crv": "P-256",
            "alg": "ES256",
            "x": B64.encode(x),
            "y": B64.encode(y),
        }]})
    }
}

/// The OpenID discovery document (`/.well-known/openid-configuration`), with the key set
/// at `jwks_uri`.
pub fn discovery(jwks_uri: &str) -> Value {
    json!({
        "issuer": ISSUER,
        "jwks_uri": jwks_uri,
        "response_types_supported": ["id_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["ES256"],
    })
}

/// Checks a bound token's `exp` and `nbf` against `now` (Unix seconds).
pub fn check_times(claims: &Value, now: i64) -> Result<(), Refusal> {
    match claims["exp"].as_i64() {
        Some(exp) if exp > now => {}
        _ => return Err(Refusal::Expired),
    }
    if claims["nbf"].as_i64().is_some_and(|nbf| nbf > now + LEEWAY) {
        return Err(Refusal::NotYetValid);
    }
    Ok(())
}

/// The audiences of `claims` (`aud` is a string or a list).
pub fn audiences(claims: &Value) -> Vec<String> {
    match &claims["aud"] {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect(),
        _ => Vec::new(),
    }
}

/// What a bound token names.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Binding {
    /// `Pod`, `Secret` or `Node`, or empty for a token bound to nothing but its account.
    pub kind: String,
    /// The bound object's name.
    pub name: String,
    /// Its uid.
    pub uid: String,
}

/// What to put in a bound token.
pub struct BoundClaims<'a> {
    /// The ServiceAccount's namespace, name and uid.
    pub namespace: &'a str,
    pub account: &'a str,
    pub account_uid: &'a str,
    /// Who may accept it.
    pub audiences: &'a [String],
    /// Issued at (Unix seconds) and for how long.
    pub now: i64,
    pub seconds: i64,
    /// What it is bound to.
    pub bound: Option<&'a Binding>,
    /// The node of a bound pod (name, uid).
    pub node: Option<(&'a str, &'a str)>,
    /// A unique id for the token (upstream's credential id).
    pub id: &'a str,
}

/// The claims of a bound token.
pub fn bound_claims(c: &BoundClaims) -> Value {
    let mut private = json!({
        "namespace": c.namespace,
        "serviceaccount": {"name": c.account, "uid": c.account_uid},
    });
    if let Some(b) = c.bound {
        let key = b.kind.to_ascii_lowercase();
        private[key] = json!({"name": b.name, "uid": b.uid});
    }
    if let Some((name, uid)) = c.node {
        private["node"] = json!({"name": name, "uid": uid});
    }
    json!({
        "aud": c.audiences,
        "exp": c.now + c.seconds,
        "iat": c.now,
        "iss": ISSUER,
        "jti": c.id,
        "kubernetes.io": private,
        "nbf": c.now,
        "sub": format!("system:serviceaccount:{}:{}", c.namespace, c.account),
    })
}

/// The claims of a legacy token kept in Secret `secret` for the account.
pub fn legacy_claims(namespace: &str, account: &str, account_uid: &str, secret: &str) -> Value {
    json!({
        "iss": LEGACY_ISSUER,
        "kubernetes.io/serviceaccount/namespace": namespace,
        "kubernetes.io/serviceaccount/secret.name": secret,
        "kubernetes.io/serviceaccount/service-account.name": account,
        "kubernetes.io/serviceaccount/service-account.uid": account_uid,
        "sub": format!("system:serviceaccount:{namespace}:{account}"),
    })
}

/// The subject of a token's claims: (namespace, ServiceAccount name, its uid), from either
/// kind of token.
pub fn subject(claims: &Value) -> Option<(String, String, String)> {
    let s = |v: &Value| v.as_str().filter(|s| !s.is_empty()).map(str::to_string);
    if claims["iss"] == LEGACY_ISSUER {
        return Some((
            s(&claims["kubernetes.io/serviceaccount/namespace"])?,
            s(&claims["kubernetes.io/serviceaccount/service-account.name"])?,
            s(&claims["kubernetes.io/serviceaccount/service-account.uid"])?,
        ));
    }
    let k = &claims["kubernetes.io"];
    Some((
        s(&k["namespace"])?,
        s(&k["serviceaccount"]["name"])?,
        s(&k["serviceaccount"]["uid"])?,
    ))
}

/// The object a bound token's claims are bound to, if any (a pod before a secret).
pub fn binding(claims: &Value) -> Option<Binding> {
    let k = &claims["kubernetes.io"];
    ["pod", "secret"].iter().find_map(|kind| {
        let o = &k[*kind];
        Some(Binding {
            kind: if *kind == "pod" { "Pod" } else { "Secret" }.to_string(),
            name: o["name"].as_str()?.to_string(),
            uid: o["uid"].as_str()?.to_string(),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> Signer {
        Signer::from_pem(&Signer::generate_pem().unwrap()).unwrap()
    }

    fn claims(now: i64, seconds: i64) -> Value {
        let aud = vec![ISSUER.to_string()];
        bound_claims(&BoundClaims {
            namespace: "default",
            account: "builder",
            account_uid: "u-1",
            audiences: &aud,
            now,
            seconds,
            bound: Some(&Binding {
                kind: "Pod".into(),
                name: "web".into(),
                uid: "p-1".into(),
            }),
            node: Some(("node1", "n-1")),
            id: "j-1",
        })
    }

    #[test]
    fn a_signed_token_verifies_and_carries_its_claims() {
        let s = signer();
        let token = s.sign(&claims(1000, 600));
        let got = s.verify(&token).unwrap();
        assert_eq!(got["sub"], "system:serviceaccount:default:builder");
        assert_eq!(got["exp"], 1600);
        assert_eq!(subject(&got), Some(("default".into(), "builder".into(), "u-1".into())));
        assert_eq!(binding(&got).unwrap().name, "web");
        assert_eq!(got["kubernetes.io"]["node"]["name"], "node1");
        assert_eq!(check_times(&got, 1599), Ok(()));
        assert_eq!(check_times(&got, 1600), Err(Refusal::Expired));
        assert_eq!(check_times(&got, 900), Err(Refusal::NotYetValid));
        assert_eq!(audiences(&got), vec![ISSUER.to_string()]);
    }

    #[test]
    fn another_keys_token_and_tampered_tokens_are_refused() {
        let (a, b) = (signer(), signer());
        let token = a.sign(&claims(1000, 600));
        assert_eq!(b.verify(&token), Err(Refusal::BadSignature));
        // A changed payload under the original signature.
        let mut parts: Vec<&str> = token.split('.').collect();
        let forged = B64.encode(claims(1000, 999_999).to_string());
        parts[1] = &forged;
        assert_eq!(a.verify(&parts.join(".")), Err(Refusal::BadSignature));
        // `alg: none` with an empty signature.
        let none = format!(
            "{}.{}.",
            B64.encode(r#"{"alg":"none"}"#),
            B64.encode(claims(1000, 600).to_string())
        );
        assert_eq!(a.verify(&none), Err(Refusal::BadSignature));
        for junk in ["", "a.b", "a.b.c.d", "!!.??.**", "shoal-node.abc"] {
            assert!(a.verify(junk).is_err(), "{junk}");
        }
    }

    #[test]
    fn the_key_set_names_the_key_the_tokens_name() {
        let s = signer();
        let jwks = s.jwks();
        let key = &jwks["keys"][0];
        assert_eq!(key["kid"], s.kid());
        assert_eq!(B64.decode(key["x"].as_str().unwrap()).unwrap().len(), 32);
        assert_eq!(B64.decode(key["y"].as_str().unwrap()).unwrap().len(), 32);
        let token = s.sign(&json!({"sub": "x"}));
        let header: Value = serde_json::from_slice(&B64.decode(token.split('.').next().unwrap()).unwrap()).unwrap();
        assert_eq!(header["kid"], s.kid());
        assert_eq!(discovery("https://h/openid/v1/jwks")["issuer"], ISSUER);
    }

    #[test]
    fn legacy_claims_name_their_account() {
        let c = legacy_claims("ns", "sa", "u-9", "sa-token");
        assert_eq!(subject(&c), Some(("ns".into(), "sa".into(), "u-9".into())));
        assert_eq!(binding(&c), None);
    }
}
