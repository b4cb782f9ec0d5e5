//! Canonical JSON: one text per JSON value, whatever order its object keys arrived in.
//!
//! The `api:{endpoint}:{md5}` cache keys hash the request parameters; two requests that differ only in
//! key order must share one entry. Object keys are sorted (by their UTF-8 bytes) at every depth and
//! the output is compact. The sort is done here rather than relying on `serde_json::Map` being a
//! `BTreeMap`, because any crate in the build can switch on serde_json's `preserve_order` feature.

use md5::{Digest, Md5};
use serde_json::{Map, Value};

/// The compact JSON text of `value` with object keys sorted recursively.
pub fn canonical_json(value: &Value) -> String {
    sorted(value).to_string()
}

/// Lowercase hex MD5 of [`canonical_json`] of `value`.
pub fn canonical_md5_hex(value: &Value) -> String {
    hex::encode(Md5::digest(canonical_json(value).as_bytes()))
}

fn sorted(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            let mut out = Map::new();
            for (key, item) in entries {
                out.insert(key.clone(), sorted(item));
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
        scalar => scalar.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn key_order_does_not_change_the_text() {
        let a: Value =
            serde_json::from_str(r#"{"b":1,"a":{"y":[{"q":1,"p":2}],"x":null},"c":"s"}"#)
                .expect("json");
        let b: Value =
            serde_json::from_str(r#"{"c":"s","a":{"x":null,"y":[{"p":2,"q":1}]},"b":1}"#)
                .expect("json");
        assert_eq!(canonical_json(&a), canonical_json(&b));
        assert_eq!(
            canonical_json(&a),
            r#"{"a":{"x":null,"y":[{"p":2,"q":1}]},"b":1,"c":"s"}"#
        );
        assert_eq!(canonical_md5_hex(&a), canonical_md5_hex(&b));
    }

    #[test]
    fn array_order_still_matters() {
        assert_ne!(
            canonical_md5_hex(&json!([1, 2])),
            canonical_md5_hex(&json!([2, 1]))
        );
    }

    #[test]
    fn md5_is_of_the_compact_text() {
        // md5("{}") computed independently.
        assert_eq!(
            canonical_md5_hex(&json!({})),
            "99914b932bd37a50b983c5e7c90ae93b"
        );
    }
}
