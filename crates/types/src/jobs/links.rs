//! Links in a `send-email`'s `data`: which values are links, and what a link can never be.
//!
//! A link is the value of any key, at any depth of `data`, whose name ends in `Url` or `URL` (or is
//! `url`): the built-in templates' `appUrl`, `taskUrl`, `resetUrl`, `downloadUrl`, `actionUrl`, and
//! the name every link of a custom template (`NCY_WORKER_TEMPLATE_DIR`) must follow.
//!
//! Every link of an official email must point at our own frontend (`FRONTEND_URL`): an absolute
//! http(s) URL with its scheme, host and port, or a relative reference the worker resolves against
//! it. This crate does not know `FRONTEND_URL`, so at enqueue [`check_links`] refuses only what is
//! never a link to it: a value that is not a string, one with control characters (which URL
//! parsers drop, so `java\tscript:` would read as `javascript:`), and one whose scheme is not
//! `http` or `https` (`javascript:`, `data:`, `mailto:`, `file:`…). The worker checks the origin.

use serde_json::{Map, Value};

use crate::error::ValidationError;

/// Whether the value of `key` in a `send-email`'s `data` is a link.
pub fn is_link_key(key: &str) -> bool {
    key == "url" || key.ends_with("Url") || key.ends_with("URL")
}

/// Calls `f(field, value)` on every link of `data` (at any depth; `field` is relative to `data`,
/// e.g. `taskUrl`, `links[1].actionUrl`), stopping at its first error.
pub fn visit_links_mut<E>(
    data: &mut Map<String, Value>,
    f: &mut impl FnMut(&str, &mut Value) -> Result<(), E>,
) -> Result<(), E> {
    visit_object(data, "", f)
}

fn visit_object<E>(
    object: &mut Map<String, Value>,
    parent: &str,
    f: &mut impl FnMut(&str, &mut Value) -> Result<(), E>,
) -> Result<(), E> {
    for (key, value) in object.iter_mut() {
        let field = if parent.is_empty() {
            key.clone()
        } else {
            format!("{parent}.{key}")
        };
        if is_link_key(key) {
            f(&field, value)?;
        } else {
            visit_value(value, &field, f)?;
        }
    }
    Ok(())
}

fn visit_value<E>(
    value: &mut Value,
    field: &str,
    f: &mut impl FnMut(&str, &mut Value) -> Result<(), E>,
) -> Result<(), E> {
    match value {
        Value::Object(object) => visit_object(object, field, f),
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                visit_value(item, &format!("{field}[{i}]"), f)?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Refuses the links of `data` that can never point at the frontend (see the module header);
/// fields are relative to `data`'s parent (`data.taskUrl`).
pub fn check_links(data: &Map<String, Value>) -> Result<(), ValidationError> {
    // The visitor needs `&mut`; checking a copy keeps the payload untouched.
    let mut data = data.clone();
    visit_links_mut(&mut data, &mut |field, value| {
        check_link(value).map_err(|message| ValidationError::new(format!("data.{field}"), message))
    })
}

fn check_link(value: &Value) -> Result<(), String> {
    let Value::String(link) = value else {
        return Err("must be a link: a string".to_owned());
    };
    if link.chars().any(char::is_control) {
        return Err("must be a link without control characters".to_owned());
    }
    match scheme_of(link.trim_start_matches(' ')) {
        Some(scheme) if !matches!(scheme.to_ascii_lowercase().as_str(), "http" | "https") => Err(
            format!("must be an http(s) link to the app or a relative path, not a {scheme}: URL"),
        ),
        _ => Ok(()),
    }
}

/// The scheme of `link` as URL parsers read it (a letter, then letters, digits, `+`, `-`, `.`,
/// up to the first `:`), or `None` for a relative reference.
fn scheme_of(link: &str) -> Option<&str> {
    let (scheme, _) = link.split_once(':')?;
    let mut chars = scheme.chars();
    let first = chars.next()?;
    (first.is_ascii_alphabetic()
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
    .then_some(scheme)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn data(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            other => panic!("not an object: {other}"),
        }
    }

    #[test]
    fn link_keys_are_the_templates_url_variables() {
        for key in [
            "appUrl",
            "taskUrl",
            "resetUrl",
            "downloadUrl",
            "actionUrl",
            "url",
            "logoURL",
        ] {
            assert!(is_link_key(key), "{key}");
        }
        for key in ["taskTitle", "actionText", "urls", "curlCommand", "URLs"] {
            assert!(!is_link_key(key), "{key}");
        }
    }

    #[test]
    fn http_links_and_relative_paths_pass() {
        let ok = data(json!({
            "taskUrl": "https://app.example.com/tasks/1",
            "resetUrl": "HTTP://app.example.com/reset?t=1",
            "actionUrl": "/notifications/2",
            "downloadUrl": "files/report.csv",
            "links": [{"url": "?page=2"}, {"url": "#top"}],
            "title": "javascript:alert(1) is only text here",
        }));
        assert_eq!(check_links(&ok), Ok(()));
    }

    #[test]
    fn what_is_never_a_link_to_the_app_names_its_field() {
        let cases = [
            (json!({"taskUrl": "javascript:alert(1)"}), "data.taskUrl"),
            (json!({"resetUrl": " JavaScript:alert(1)"}), "data.resetUrl"),
            (
                json!({"actionUrl": "java\tscript:alert(1)"}),
                "data.actionUrl",
            ),
            (
                json!({"downloadUrl": "data:text/html,<b>x</b>"}),
                "data.downloadUrl",
            ),
            (json!({"taskUrl": "mailto:ceo@example.com"}), "data.taskUrl"),
            (json!({"taskUrl": "file:///etc/passwd"}), "data.taskUrl"),
            (json!({"taskUrl": 42}), "data.taskUrl"),
            (json!({"taskUrl": null}), "data.taskUrl"),
            (
                json!({"links": [{}, {"url": "vbscript:x"}]}),
                "data.links[1].url",
            ),
            (
                json!({"nested": {"actionUrl": ["https://a"]}}),
                "data.nested.actionUrl",
            ),
        ];
        for (d, field) in cases {
            let err = check_links(&data(d.clone())).expect_err(&d.to_string());
            assert_eq!(err.field, field, "{d}");
        }
        let err = check_links(&data(json!({"taskUrl": "javascript:alert(1)"}))).expect_err("js");
        assert_eq!(
            err.to_string(),
            "data.taskUrl: must be an http(s) link to the app or a relative path, not a \
             javascript: URL"
        );
    }

    #[test]
    fn the_visitor_can_rewrite_every_link() {
        let mut d = data(json!({"a": {"taskUrl": "x"}, "list": [{"url": "y"}], "other": "z"}));
        visit_links_mut(&mut d, &mut |field, v| {
            *v = Value::String(format!("seen {field}"));
            Ok::<(), ()>(())
        })
        .expect("visits");
        assert_eq!(
            Value::Object(d),
            json!({"a": {"taskUrl": "seen a.taskUrl"}, "list": [{"url": "seen list[0].url"}],
                   "other": "z"})
        );
    }
}
