//! Decoding only what a reader needs. A [`Shape`] says which parts of an object a reader
//! reads; [`decode`] builds a `Value` of those parts alone and skips the rest as it parses,
//! without building it. Most of what a JSON decode costs is the small maps of the parts no
//! one reads (managed fields, container specs), so a reader of a few fields pays for those.

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// The parts of a value to build.
#[derive(Debug)]
pub enum Shape {
    /// All of it.
    Whole,
    /// None of it: a field of this shape is left out (an array item is `null`).
    Skip,
    /// An object: the named fields with their shapes, every other field as the second
    /// shape says ([`Shape::Whole`] or [`Shape::Skip`], usually). A value that is not an
    /// object is built whole.
    Object(&'static [(&'static str, Shape)], &'static Shape),
    /// An array: each item with this shape. A value that is not an array is built whole.
    Items(&'static Shape),
}

/// An object's metadata without its `managedFields`, which no reader in the process looks at
/// and which are often the largest part of it.
pub const METADATA: Shape = Shape::Object(&[("managedFields", Shape::Skip)], &Shape::Whole);

/// A whole object but the managed fields of its metadata.
pub const WITHOUT_MANAGED_FIELDS: Shape = Shape::Object(&[("metadata", METADATA)], &Shape::Whole);

/// `json` decoded in `shape`.
pub fn decode(json: &[u8], shape: &Shape) -> serde_json::Result<Value> {
    let mut de = serde_json::Deserializer::from_slice(json);
    let value = shape.deserialize(&mut de)?;
    de.end()?;
    Ok(value)
}

impl<'de> DeserializeSeed<'de> for &Shape {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        match self {
            Shape::Whole => serde::Deserialize::deserialize(d),
            Shape::Skip => {
                <IgnoredAny as serde::Deserialize>::deserialize(d)?;
                Ok(Value::Null)
            }
            Shape::Object(..) | Shape::Items(_) => d.deserialize_any(Shaped(self)),
        }
    }
}

/// Builds a value in a shape that looks inside it ([`Shape::Object`], [`Shape::Items`]).
struct Shaped<'s>(&'s Shape);

impl<'de> Visitor<'de> for Shaped<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
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

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let item = match self.0 {
            Shape::Items(item) => *item,
            _ => &Shape::Whole,
        };
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(v) = seq.next_element_seed(item)? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let (fields, rest) = match self.0 {
            Shape::Object(fields, rest) => (*fields, *rest),
            _ => (&[][..], &Shape::Whole),
        };
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let shape = fields.iter().find(|(k, _)| *k == key).map_or(rest, |(_, s)| s);
            match shape {
                Shape::Skip => {
                    map.next_value::<IgnoredAny>()?;
                }
                shape => {
                    let v = map.next_value_seed(shape)?;
                    out.insert(key, v);
                }
            }
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn only_the_shape_is_built() {
        const SPEC: Shape = Shape::Object(
            &[
                ("nodeName", Shape::Whole),
                (
                    "containers",
                    Shape::Items(&Shape::Object(&[("name", Shape::Whole)], &Shape::Skip)),
                ),
            ],
            &Shape::Skip,
        );
        const POD: Shape = Shape::Object(&[("metadata", METADATA), ("spec", SPEC)], &Shape::Whole);
        let pod = json!({
            "kind": "Pod",
            "metadata": {"name": "p", "managedFields": [{"manager": "m", "fieldsV1": {"f:spec": {}}}], "labels": {"a": "b"}},
            "spec": {"nodeName": "n", "containers": [{"name": "c", "image": "i", "env": [{"name": "X"}]}, {"image": "j"}],
                     "volumes": [{"name": "v"}]},
            "status": {"phase": "Running", "podIPs": [{"ip": "10.0.0.1"}], "n": 1.5, "b": true, "z": null, "i": -3},
        });
        let got = decode(pod.to_string().as_bytes(), &POD).unwrap();
        assert_eq!(
            got,
            json!({
                "kind": "Pod",
                "metadata": {"name": "p", "labels": {"a": "b"}},
                "spec": {"nodeName": "n", "containers": [{"name": "c"}, {}]},
                "status": pod["status"],
            })
        );
        assert_eq!(
            decode(pod.to_string().as_bytes(), &Shape::Whole).unwrap(),
            pod,
            "the whole shape is a plain decode"
        );
    }

    #[test]
    fn values_of_another_type_than_the_shape_expects_are_built_whole() {
        const S: Shape = Shape::Object(
            &[
                ("a", Shape::Items(&Shape::Skip)),
                ("b", Shape::Object(&[], &Shape::Skip)),
            ],
            &Shape::Skip,
        );
        let got = decode(br#"{"a": {"x": 1}, "b": [1, {"y": 2}], "c": 3}"#, &S).unwrap();
        assert_eq!(got, json!({"a": {"x": 1}, "b": [1, {"y": 2}]}));
        let items = decode(br#"{"a": [1, 2]}"#, &S).unwrap();
        assert_eq!(items, json!({"a": [null, null]}));
        assert!(
            decode(br#"{"a": [1, 2]} x"#, &S).is_err(),
            "trailing bytes are an error"
        );
        assert!(decode(br#"{"a": [1, "#, &S).is_err());
    }
}
