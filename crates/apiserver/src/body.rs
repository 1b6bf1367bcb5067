//! Request bodies: JSON, YAML (`application/yaml`) and Kubernetes protobuf, decoded into one
//! JSON value. JSON is read with a note of every duplicated field (by its path, as upstream
//! names it: `metadata.name`, `spec.containers[0].image`): the last value wins, as in Go, and
//! `fieldValidation=Strict` refuses the body while `Warn` warns.

use std::cell::RefCell;
use std::fmt;

use serde::de::{DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

use crate::protobuf;
use crate::status::{ApiError, ApiResult};

/// A decoded request body.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Body {
    /// The document.
    pub value: Value,
    /// Paths of fields given more than once (JSON only).
    pub duplicates: Vec<String>,
}

/// The media types a body may have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Media {
    Json,
    Yaml,
    Protobuf,
}

fn media(ct: Option<&str>) -> ApiResult<Media> {
    let Some(ct) = ct else {
        return Ok(Media::Json);
    };
    let base = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    match base.as_str() {
        "" | "*/*" | "application/json" => Ok(Media::Json),
        b if b == protobuf::CONTENT_TYPE => Ok(Media::Protobuf),
        "application/yaml" | "application/x-yaml" | "text/yaml" => Ok(Media::Yaml),
        b if b.ends_with("+json") => Ok(Media::Json),
        b if b.ends_with("+yaml") => Ok(Media::Yaml),
        _ => Err(ApiError::unsupported_media_type(ct)),
    }
}

/// Decodes a body sent with content type `ct` (JSON when none is given).
pub fn decode(ct: Option<&str>, bytes: &[u8]) -> ApiResult<Body> {
    let malformed =
        |e: &dyn fmt::Display| ApiError::bad_request(format!("the object provided is unrecognized or malformed: {e}"));
    match media(ct)? {
        Media::Protobuf => Ok(Body {
            value: protobuf::decode(bytes).map_err(ApiError::bad_request)?,
            duplicates: Vec::new(),
        }),
        Media::Yaml => {
            // JSON is YAML: a JSON body sent as YAML keeps its duplicate-field notes.
            if let Ok(body) = json(bytes) {
                return Ok(body);
            }
            let value: Value = serde_yaml_ng::from_slice(bytes).map_err(|e| malformed(&e))?;
            Ok(Body {
                value,
                duplicates: Vec::new(),
            })
        }
        Media::Json => json(bytes)
            .map_err(|e| ApiError::bad_request(format!("the object provided is unrecognized or malformed JSON: {e}"))),
    }
}

/// Reads JSON, noting duplicated fields.
pub fn json(bytes: &[u8]) -> Result<Body, serde_json::Error> {
    let duplicates = RefCell::new(Vec::new());
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = Tracked {
        path: Path::Root,
        duplicates: &duplicates,
    }
    .deserialize(&mut de)?;
    de.end()?;
    Ok(Body {
        value,
        duplicates: duplicates.into_inner(),
    })
}

/// Where a value sits in the document (a chain up to the root, on the stack).
enum Path<'p> {
    Root,
    Key(&'p Path<'p>, &'p str),
    Index(&'p Path<'p>, usize),
}

impl fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Path::Root => Ok(()),
            Path::Key(Path::Root, k) => f.write_str(k),
            Path::Key(parent, k) => write!(f, "{parent}.{k}"),
            Path::Index(parent, i) => write!(f, "{parent}[{i}]"),
        }
    }
}

/// Builds a `Value` like serde_json's own, and notes duplicate keys.
struct Tracked<'p> {
    path: Path<'p>,
    duplicates: &'p RefCell<Vec<String>>,
}

impl<'de> DeserializeSeed<'de> for Tracked<'_> {
    type Value = Value;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Tracked<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        loop {
            let item = Tracked {
                path: Path::Index(&self.path, out.len()),
                duplicates: self.duplicates,
            };
            match seq.next_element_seed(item)? {
                Some(v) => out.push(v),
                None => return Ok(Value::Array(out)),
            }
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let value = map.next_value_seed(Tracked {
                path: Path::Key(&self.path, &key),
                duplicates: self.duplicates,
            })?;
            if out.contains_key(&key) {
                self.duplicates
                    .borrow_mut()
                    .push(Path::Key(&self.path, &key).to_string());
            }
            out.insert(key, value);
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_reads_as_serde_json_does_and_notes_duplicates_by_path() {
        let text = r#"{"kind":"Pod","metadata":{"name":"a","name":"b","labels":{"x":"1"}},
            "spec":{"containers":[{"name":"c","image":"i","image":"j"}],"n":-3,"f":1.5,"u":18446744073709551615,"z":null}}"#;
        let body = json(text.as_bytes()).unwrap();
        assert_eq!(
            body.value,
            serde_json::from_str::<Value>(text).unwrap(),
            "last value wins, as in Go"
        );
        assert_eq!(body.value["metadata"]["name"], "b");
        assert_eq!(body.duplicates, vec!["metadata.name", "spec.containers[0].image"]);
        assert!(json(br#"{"a":1}"#).unwrap().duplicates.is_empty());
        assert!(json(br#"{"a":1} x"#).is_err(), "trailing garbage");
        assert!(
            json(&[b'['; 10_000]).is_err(),
            "deep nesting is an error, not a stack overflow"
        );
    }

    #[test]
    fn yaml_bodies_are_read() {
        let body = decode(
            Some("application/yaml"),
            b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm\ndata:\n  a: \"1\"\n",
        )
        .unwrap();
        assert_eq!(
            body.value,
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm"}, "data": {"a": "1"}})
        );
        let json_as_yaml = decode(Some("application/yaml"), br#"{"a":1,"a":2}"#).unwrap();
        assert_eq!(json_as_yaml.duplicates, vec!["a"]);
        assert_eq!(decode(Some("application/yaml"), b"a: [").unwrap_err().code, 400);
    }

    #[test]
    fn media_types_are_checked() {
        assert!(decode(Some("application/json; charset=utf-8"), b"{}").is_ok());
        assert!(decode(Some("application/merge-patch+json"), b"{}").is_ok());
        assert!(decode(Some("application/apply-patch+yaml"), b"a: 1").is_ok());
        let e = decode(Some("text/plain"), b"{}").unwrap_err();
        assert_eq!((e.code, e.reason), (415, "UnsupportedMediaType"));
    }
}
