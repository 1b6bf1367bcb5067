//! Where `metadata.resourceVersion` goes in a stored object's JSON, found by scanning its
//! bytes, so the watch cache can serve the stored bytes with the revision spliced in,
//! without decoding and encoding the object and without keeping a second copy of it.
//!
//! Stored values are compact JSON written by this server (serde_json, keys sorted), without
//! a resourceVersion. The scan places the field where sorting would put it; a value that
//! does carry one has it replaced. Anything the scan does not understand gives `None`, and
//! the caller falls back to decoding.

/// The key the splice adds.
const RV_KEY: &[u8] = b"resourceVersion";

/// What goes where: `json[..start]`, the field, then `json[end..]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Splice {
    start: u32,
    end: u32,
    form: Form,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Form {
    /// `"resourceVersion":"N",` before the key at `start` (which sorts after it).
    Before,
    /// `,"resourceVersion":"N"` before the `}` at `start` (every key sorts before it).
    After,
    /// `"resourceVersion":"N"` into an empty metadata object.
    Only,
    /// `"N"` replaces the value at `start..end` (the object carries a resourceVersion).
    Value,
}

impl Splice {
    /// Finds the place of `metadata.resourceVersion` in `json`, an object.
    pub fn find(json: &[u8]) -> Option<Splice> {
        Scanner::at_metadata(json)?.metadata()
    }

    /// The length of `json` with the field spliced in for `rev`.
    pub fn len(&self, json_len: usize, rev: i64) -> usize {
        json_len - (self.end - self.start) as usize + self.field_len(rev)
    }

    fn field_len(&self, rev: i64) -> usize {
        let digits = digits(rev);
        match self.form {
            Form::Value => digits + 2,
            // "resourceVersion":"N" plus a comma
            Form::Before | Form::After => RV_KEY.len() + 5 + digits + 1,
            Form::Only => RV_KEY.len() + 5 + digits,
        }
    }

    /// Appends `json`, the buffer this splice was found in, with the field spliced in for
    /// `rev` to `out`.
    pub fn write(&self, json: &[u8], rev: i64, out: &mut Vec<u8>) {
        self.write_range(json, 0..json.len(), rev, out);
    }

    /// Appends `json[range]` to `out`, with the field spliced in for `rev` when its place
    /// lies in `range` (the range of the metadata object, say).
    pub fn write_range(&self, json: &[u8], range: std::ops::Range<usize>, rev: i64, out: &mut Vec<u8>) {
        let (start, end) = (self.start as usize, self.end as usize);
        if start < range.start || end > range.end {
            out.extend_from_slice(&json[range]);
            return;
        }
        out.extend_from_slice(&json[range.start..start]);
        let field = |out: &mut Vec<u8>| {
            out.push(b'"');
            out.extend_from_slice(RV_KEY);
            out.extend_from_slice(b"\":\"");
            write_int(out, rev);
            out.push(b'"');
        };
        match self.form {
            Form::Before => {
                field(out);
                out.push(b',');
            }
            Form::After => {
                out.push(b',');
                field(out);
            }
            Form::Only => field(out),
            Form::Value => {
                out.push(b'"');
                write_int(out, rev);
                out.push(b'"');
            }
        }
        out.extend_from_slice(&json[end..range.end]);
    }
}

/// Where the value of the top-level `metadata` key lies in `json`, an object.
pub fn metadata_range(json: &[u8]) -> Option<std::ops::Range<usize>> {
    let mut s = Scanner::at_metadata(json)?;
    let start = s.i;
    s.value()?;
    Some(start..s.i)
}

/// How many bytes `n` takes in decimal.
fn digits(n: i64) -> usize {
    let sign = usize::from(n < 0);
    let mut n = n.unsigned_abs();
    let mut d = 1;
    while n >= 10 {
        n /= 10;
        d += 1;
    }
    sign + d
}

/// Appends `n` in decimal, without an allocation.
fn write_int(out: &mut Vec<u8>, n: i64) {
    use std::io::Write;
    // Writing to a Vec cannot fail.
    let _ = write!(out, "{n}");
}

struct Scanner<'a> {
    json: &'a [u8],
    i: usize,
}

impl<'a> Scanner<'a> {
    /// A scanner of `json`, an object, at the start of its top-level `metadata` value.
    fn at_metadata(json: &'a [u8]) -> Option<Scanner<'a>> {
        let mut s = Scanner { json, i: 0 };
        s.ws();
        s.expect(b'{')?;
        loop {
            s.ws();
            let key = s.string()?;
            s.ws();
            s.expect(b':')?;
            s.ws();
            if key == b"metadata" {
                return Some(s);
            }
            s.value()?;
            s.ws();
            match s.next()? {
                b',' => continue,
                _ => return None,
            }
        }
    }

    fn peek(&self) -> Option<u8> {
        self.json.get(self.i).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.i += 1;
        Some(b)
    }

    fn expect(&mut self, b: u8) -> Option<()> {
        (self.next()? == b).then_some(())
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\n' | b'\r' | b'\t')) {
            self.i += 1;
        }
    }

    /// A string; returns its raw contents (escapes left as they are).
    fn string(&mut self) -> Option<&'a [u8]> {
        self.expect(b'"')?;
        let start = self.i;
        loop {
            match self.next()? {
                b'"' => return Some(&self.json[start..self.i - 1]),
                b'\\' => {
                    self.next()?;
                }
                _ => {}
            }
        }
    }

    /// Skips any value.
    fn value(&mut self) -> Option<()> {
        match self.peek()? {
            b'"' => self.string().map(|_| ()),
            b'{' | b'[' => {
                let mut depth = 0usize;
                loop {
                    match self.peek()? {
                        b'"' => {
                            self.string()?;
                            continue;
                        }
                        b'{' | b'[' => depth += 1,
                        b'}' | b']' => {
                            depth -= 1;
                            if depth == 0 {
                                self.i += 1;
                                return Some(());
                            }
                        }
                        _ => {}
                    }
                    self.i += 1;
                }
            }
            _ => {
                let start = self.i;
                while !matches!(
                    self.peek(),
                    None | Some(b',' | b'}' | b']' | b' ' | b'\n' | b'\r' | b'\t')
                ) {
                    self.i += 1;
                }
                (self.i > start).then_some(())
            }
        }
    }

    /// The metadata object starting here: where its resourceVersion goes.
    fn metadata(&mut self) -> Option<Splice> {
        let at = |i: usize, end: usize, form: Form| {
            Some(Splice {
                start: u32::try_from(i).ok()?,
                end: u32::try_from(end).ok()?,
                form,
            })
        };
        self.expect(b'{')?;
        self.ws();
        if self.peek()? == b'}' {
            return at(self.i, self.i, Form::Only);
        }
        let mut previous: Option<&[u8]> = None;
        // The place, once found; the scan goes on to check the rest of the keys.
        let mut found: Option<(usize, usize, Form)> = None;
        loop {
            self.ws();
            let key_start = self.i;
            let key = self.string()?;
            // Raw bytes order keys as serde_json does only without escapes, and the place
            // found is right only if the keys are sorted: otherwise, no splice.
            if key.contains(&b'\\') || previous.is_some_and(|p| p >= key) {
                return None;
            }
            previous = Some(key);
            self.ws();
            self.expect(b':')?;
            self.ws();
            let value_start = self.i;
            self.value()?;
            if found.is_none() {
                found = match key.cmp(RV_KEY) {
                    std::cmp::Ordering::Greater => Some((key_start, key_start, Form::Before)),
                    std::cmp::Ordering::Equal => Some((value_start, self.i, Form::Value)),
                    std::cmp::Ordering::Less => None,
                };
            }
            self.ws();
            match self.next()? {
                b',' => continue,
                b'}' => {
                    let (start, end, form) = found.unwrap_or((self.i - 1, self.i - 1, Form::After));
                    return at(start, end, form);
                }
                _ => return None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    /// Splices `rev` into `obj` encoded as serde_json does, and checks the result against
    /// decoding, setting the field and encoding again.
    fn check(obj: Value, rev: i64) -> Vec<u8> {
        let json = serde_json::to_vec(&obj).unwrap();
        let splice = Splice::find(&json).unwrap_or_else(|| panic!("no place in {obj}"));
        let mut out = Vec::new();
        splice.write(&json, rev, &mut out);
        assert_eq!(out.len(), splice.len(json.len(), rev));
        let mut want = obj;
        want["metadata"]["resourceVersion"] = json!(rev.to_string());
        assert_eq!(
            String::from_utf8(out.clone()).unwrap(),
            serde_json::to_string(&want).unwrap(),
            "same bytes as decoding and encoding"
        );
        // The metadata alone, with the field spliced in, is the served object's metadata.
        let range = metadata_range(&json).expect("a metadata object");
        let mut meta = Vec::new();
        splice.write_range(&json, range, rev, &mut meta);
        assert_eq!(
            String::from_utf8(meta).unwrap(),
            serde_json::to_string(&want["metadata"]).unwrap()
        );
        out
    }

    #[test]
    fn the_field_goes_where_sorted_keys_put_it() {
        check(
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "uid": "u"}, "spec": {}}),
            42,
        );
        check(json!({"metadata": {"name": "p"}}), 7);
        check(json!({"metadata": {"uid": "u"}}), 7);
        check(json!({"metadata": {}}), 1);
        check(json!({"kind": "X", "metadata": {}, "z": 1}), 1);
        check(
            json!({"metadata": {"annotations": {"a": "}{\"resourceVersion\":"}, "labels": {"b": "["},
                                  "name": "n", "namespace": "ns", "ownerReferences": [{"uid": "x"}],
                                  "selfLink": "", "uid": "u"}}),
            123456789,
        );
    }

    #[test]
    fn strings_with_escapes_and_nested_values_before_metadata_are_skipped() {
        check(
            json!({"apiVersion": "v1", "data": {"k": "a \"quoted\" \\ value } ] {", "list": [1, [2, {"x": null}], true]},
                   "kind": "ConfigMap", "metadata": {"name": "c"}}),
            9,
        );
        check(
            json!({"a": -1.5e3, "b": false, "c": null, "metadata": {"name": "n"}}),
            9,
        );
    }

    #[test]
    fn a_range_without_the_place_is_copied_as_it_is() {
        let json = br#"{"kind":"Pod","metadata":{"name":"p"},"spec":{"x":1}}"#;
        let splice = Splice::find(json).unwrap();
        let mut out = Vec::new();
        splice.write_range(json, 0..12, 5, &mut out);
        assert_eq!(out, br#"{"kind":"Pod"#);
        assert_eq!(metadata_range(br#"{"kind":"Pod"}"#), None);
        assert_eq!(metadata_range(br#"{"metadata":"#), None);
    }

    #[test]
    fn an_existing_resource_version_is_replaced() {
        let obj = json!({"metadata": {"name": "p", "resourceVersion": "3", "uid": "u"}});
        let out = check(obj, 11);
        let back: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(back["metadata"]["resourceVersion"], "11");
    }

    #[test]
    fn revisions_of_any_length_and_sign_are_counted_right() {
        for rev in [0, 7, 10, 99, 100, 123_456_789, i64::MAX, -1, -10, i64::MIN] {
            assert_eq!(digits(rev), rev.to_string().len(), "{rev}");
            let mut out = Vec::new();
            write_int(&mut out, rev);
            assert_eq!(out, rev.to_string().as_bytes());
        }
        check(json!({"metadata": {"name": "p"}}), i64::MAX);
    }

    #[test]
    fn whatever_it_does_not_understand_gives_none() {
        for bad in [
            // Unsorted or escaped metadata keys: the sorted place is unknown.
            &br#"{"metadata":{"uid":"u","resourceVersion":"3"}}"#[..],
            br#"{"metadata":{"resource\"":1}}"#,
            br#"{"metadata":{"resource\u0056ersion":"3"}}"#,
            b"",
            b"[]",
            b"{}",
            b"{\"kind\":\"X\"}",
            b"{\"metadata\":[]}",
            b"{\"metadata\":{\"name\"}}",
            b"{\"metadata\":{\"name\":\"unterminated",
            b"{\"a\":{\"b\":1,\"metadata\":{}",
            b"{\"a\" 1}",
        ] {
            assert_eq!(Splice::find(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }
}
