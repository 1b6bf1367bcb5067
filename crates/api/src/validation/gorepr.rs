//! Renders JSON values the way upstream's error messages print Go values with `%#v` (label
//! selectors, string maps and slices, structs such as tolerations or strategies) or with a
//! `String()` method (int-or-string). These texts go into field errors as "raw" values.

use serde_json::Value;
use std::fmt::Write as _;

/// Go `strconv.Quote` (and `%q`).
pub(crate) fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn str_of(v: Option<&Value>) -> &str {
    v.and_then(Value::as_str).unwrap_or("")
}

/// `map[string]string{"a":"b", "c":"d"}` or `map[string]string(nil)` when absent.
pub(crate) fn string_map(v: Option<&Value>) -> String {
    match v.and_then(Value::as_object) {
        None => "map[string]string(nil)".into(),
        Some(m) => {
            let inner = m
                .iter()
                .map(|(k, v)| format!("{}:{}", quote(k), quote(v.as_str().unwrap_or(""))))
                .collect::<Vec<_>>()
                .join(", ");
            format!("map[string]string{{{inner}}}")
        }
    }
}

/// `[]string{"a", "b"}` or `[]string(nil)`.
pub(crate) fn string_slice<S: AsRef<str>>(items: Option<&[S]>) -> String {
    match items {
        None => "[]string(nil)".into(),
        Some(items) => {
            let inner = items.iter().map(|s| quote(s.as_ref())).collect::<Vec<_>>().join(", ");
            format!("[]string{{{inner}}}")
        }
    }
}

fn json_string_slice(v: Option<&Value>) -> String {
    match v.and_then(Value::as_array) {
        None => string_slice::<&str>(None),
        Some(a) => {
            let items: Vec<&str> = a.iter().map(|x| x.as_str().unwrap_or("")).collect();
            string_slice(Some(&items))
        }
    }
}

/// A `metav1.LabelSelector` value as `%#v` prints it.
pub(crate) fn label_selector(v: Option<&Value>) -> String {
    let Some(sel) = v.filter(|v| !v.is_null()) else {
        return "null".into();
    };
    let exprs = match sel.get("matchExpressions").and_then(Value::as_array) {
        None => "[]v1.LabelSelectorRequirement(nil)".to_string(),
        Some(list) => {
            let items = list
                .iter()
                .map(|r| {
                    format!(
                        "v1.LabelSelectorRequirement{{Key:{}, Operator:{}, Values:{}}}",
                        quote(str_of(r.get("key"))),
                        quote(str_of(r.get("operator"))),
                        json_string_slice(r.get("values"))
                    )
                })
                .collect::<Vec<_>>()
                .join(", ");
            format!("[]v1.LabelSelectorRequirement{{{items}}}")
        }
    };
    format!(
        "v1.LabelSelector{{MatchLabels:{}, MatchExpressions:{}}}",
        string_map(sel.get("matchLabels")),
        exprs
    )
}

/// An int-or-string as its `String()` method prints it (`25%`, `1`).
pub(crate) fn int_or_string(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        other => other.to_string(),
    }
}

/// An int-or-string nested in a struct, as `%#v` prints it.
pub(crate) fn int_or_string_struct(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => format!("intstr.IntOrString{{Type:1, IntVal:0, StrVal:{}}}", quote(s)),
        Some(Value::Number(n)) => format!("intstr.IntOrString{{Type:0, IntVal:{n}, StrVal:\"\"}}"),
        _ => "intstr.IntOrString{Type:0, IntVal:0, StrVal:\"\"}".into(),
    }
}

/// A nested pointer field: `(*T)(nil)` or a stand-in address.
pub(crate) fn pointer(ty: &str, present: bool) -> String {
    if present {
        format!("(*{ty})(0xc000100000)")
    } else {
        format!("(*{ty})(nil)")
    }
}

/// `apps.<Strategy>{Type:"X", RollingUpdate:(*apps.<RU>)(nil)}`.
pub(crate) fn strategy(struct_name: &str, ru_name: &str, v: Option<&Value>) -> String {
    let present = v.and_then(|s| s.get("rollingUpdate")).is_some_and(|r| !r.is_null());
    format!(
        "apps.{struct_name}{{Type:{}, RollingUpdate:{}}}",
        quote(str_of(v.and_then(|s| s.get("type")))),
        pointer(&format!("apps.{ru_name}"), present)
    )
}

/// A `core.Toleration` value.
pub(crate) fn toleration(v: &Value) -> String {
    format!(
        "core.Toleration{{Key:{}, Operator:{}, Value:{}, Effect:{}, TolerationSeconds:{}}}",
        quote(str_of(v.get("key"))),
        quote(str_of(v.get("operator"))),
        quote(str_of(v.get("value"))),
        quote(str_of(v.get("effect"))),
        pointer("int64", v.get("tolerationSeconds").is_some_and(|s| !s.is_null()))
    )
}

/// A `core.Taint` value.
pub(crate) fn taint(v: &Value) -> String {
    format!(
        "core.Taint{{Key:{}, Value:{}, Effect:{}, TimeAdded:{}}}",
        quote(str_of(v.get("key"))),
        quote(str_of(v.get("value"))),
        quote(str_of(v.get("effect"))),
        pointer("v1.Time", v.get("timeAdded").is_some_and(|s| !s.is_null()))
    )
}

/// The `(protocol, port)` key upstream uses to find duplicate service ports.
pub(crate) fn service_port_key(protocol: &str, port: i64) -> String {
    format!(
        "core.ServicePort{{Name:\"\", Protocol:{}, AppProtocol:(*string)(nil), Port:{port}, TargetPort:{}, NodePort:0}}",
        quote(protocol),
        int_or_string_struct(None)
    )
}

/// A Go time value as its `String()` method prints it, from an RFC 3339 timestamp.
pub(crate) fn time(v: Option<&Value>) -> String {
    let Some(s) = v.and_then(Value::as_str) else {
        return "0001-01-01 00:00:00 +0000 UTC".into();
    };
    match s.parse::<jiff::Timestamp>() {
        Ok(ts) => ts.strftime("%Y-%m-%d %H:%M:%S +0000 UTC").to_string(),
        Err(_) => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn selectors_print_like_go() {
        assert_eq!(
            label_selector(Some(&json!({"matchLabels": {"app": "x", "a": "b"}}))),
            r#"v1.LabelSelector{MatchLabels:map[string]string{"a":"b", "app":"x"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}"#
        );
        assert_eq!(
            label_selector(Some(&json!({}))),
            "v1.LabelSelector{MatchLabels:map[string]string(nil), MatchExpressions:[]v1.LabelSelectorRequirement(nil)}"
        );
        assert_eq!(
            label_selector(Some(
                &json!({"matchExpressions": [{"key": "k", "operator": "In", "values": ["a"]}]})
            )),
            r#"v1.LabelSelector{MatchLabels:map[string]string(nil), MatchExpressions:[]v1.LabelSelectorRequirement{v1.LabelSelectorRequirement{Key:"k", Operator:"In", Values:[]string{"a"}}}}"#
        );
    }

    #[test]
    fn structs_print_like_go() {
        assert_eq!(
            strategy(
                "DaemonSetUpdateStrategy",
                "RollingUpdateDaemonSet",
                Some(&json!({"type": "Foo"}))
            ),
            r#"apps.DaemonSetUpdateStrategy{Type:"Foo", RollingUpdate:(*apps.RollingUpdateDaemonSet)(nil)}"#
        );
        assert_eq!(
            toleration(&json!({"key": "k", "operator": "Exists", "value": "v"})),
            r#"core.Toleration{Key:"k", Operator:"Exists", Value:"v", Effect:"", TolerationSeconds:(*int64)(nil)}"#
        );
        assert_eq!(
            time(Some(&json!("2025-05-01T10:00:00Z"))),
            "2025-05-01 10:00:00 +0000 UTC"
        );
        assert_eq!(quote("a\"b\n"), r#""a\"b\n""#);
    }
}
