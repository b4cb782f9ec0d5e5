//! The links of a `send-email`: `appUrl` set to `FRONTEND_URL`, every other link resolved against it
//! and required to have its origin (the rule is in the header of [`super`]).
use serde_json::{Map, Value};
use url::{Origin, Url};

use crate::processors::JobError;

/// The context of a `send-email` template: the payload's `data` with `appUrl` set to the configured
/// app address and every other link resolved against `frontend` ([`resolve_link`]). A payload's
/// own `appUrl` is replaced, never used, and a link elsewhere is a fatal error: the scheduler
/// refuses what it can at enqueue, but a job that reached the queue another way (enqueued before
/// a rule, or written to Redis directly) must still not turn our templates' links into someone
/// else's.
pub fn template_context(
    mut data: Map<String, Value>,
    frontend: &Url,
    app_url: &str,
) -> Result<Value, JobError> {
    // Replaced as it is, not resolved: `appUrl` is FRONTEND_URL verbatim (no trailing `/` added).
    data.remove("appUrl");
    ncy_types::jobs::links::visit_links_mut(&mut data, &mut |field, value| {
        resolve_link(frontend, field, value)
    })?;
    data.insert("appUrl".to_owned(), Value::String(app_url.to_owned()));
    Ok(Value::Object(data))
}

/// Replaces the link `value` (of `data.<field>`) by its absolute URL resolved against `frontend`,
/// when that URL has `frontend`'s origin; anything else is fatal.
fn resolve_link(frontend: &Url, field: &str, value: &mut Value) -> Result<(), JobError> {
    let ours = frontend.origin().ascii_serialization();
    let refuse = |what: String| {
        JobError::fatal(format!(
            "data.{field} {what}, not at FRONTEND_URL {ours}: a link of our emails must be an \
             absolute URL there or a relative path"
        ))
    };
    let Value::String(link) = value else {
        return Err(refuse("is not a string".to_owned()));
    };
    let resolved = frontend
        .join(link)
        .map_err(|e| refuse(format!("is not a URL ({e})")))?;
    match resolved.origin() {
        origin if origin == frontend.origin() => {
            *value = Value::String(resolved.into());
            Ok(())
        }
        origin @ Origin::Tuple(..) => Err(refuse(format!(
            "points at {}",
            origin.ascii_serialization()
        ))),
        Origin::Opaque(_) => Err(refuse(format!("is a {}: URL", resolved.scheme()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const APP: &str = "https://app.ncy.test";

    fn frontend(app_url: &str) -> Url {
        Url::parse(&format!("{app_url}/")).expect("a URL")
    }

    fn context(data: Value, app_url: &str) -> Result<Value, JobError> {
        let Value::Object(data) = data else {
            panic!("not an object: {data}")
        };
        template_context(data, &frontend(app_url), app_url)
    }

    #[test]
    fn the_configured_app_url_replaces_a_payloads_own() {
        assert_eq!(
            context(
                json!({"appUrl": "https://evil.example", "taskTitle": "Fix it"}),
                APP
            ),
            Ok(json!({"appUrl": APP, "taskTitle": "Fix it"}))
        );
        assert_eq!(context(json!({}), APP), Ok(json!({"appUrl": APP})));
    }

    #[test]
    fn links_to_the_frontend_are_kept_and_relative_ones_resolved_against_it() {
        let got = context(
            json!({"taskUrl": "https://APP.ncy.test:443/tasks/1?x=1#c", "resetUrl": "/reset/t0k",
                   "actionUrl": "inbox", "links": [{"url": "?page=2"}],
                   "title": "https://evil.example is text, not a link"}),
            APP,
        );
        assert_eq!(
            got,
            Ok(
                json!({"appUrl": APP, "taskUrl": "https://app.ncy.test/tasks/1?x=1#c",
                      "resetUrl": "https://app.ncy.test/reset/t0k",
                      "actionUrl": "https://app.ncy.test/inbox",
                      "links": [{"url": "https://app.ncy.test/?page=2"}],
                      "title": "https://evil.example is text, not a link"})
            )
        );
        // Under a FRONTEND_URL with a path, a relative path stays under it; a rooted one does not.
        let got = context(
            json!({"a": {"taskUrl": "tasks/1"}, "resetUrl": "/reset"}),
            "http://h.test:8080/app",
        );
        assert_eq!(
            got,
            Ok(json!({"appUrl": "http://h.test:8080/app",
                      "a": {"taskUrl": "http://h.test:8080/app/tasks/1"},
                      "resetUrl": "http://h.test:8080/reset"}))
        );
    }

    #[test]
    fn a_link_anywhere_else_is_fatal_and_names_its_field() {
        let cases = [
            (
                "taskUrl",
                json!("https://app.ncy.test.evil.io/tasks/1"),
                "points at https://app.ncy.test.evil.io",
            ),
            (
                "taskUrl",
                json!("https://app.ncy.test@evil.io/"),
                "points at https://evil.io",
            ),
            (
                "resetUrl",
                json!("http://app.ncy.test/reset"),
                "points at http://app.ncy.test",
            ),
            (
                "resetUrl",
                json!("https://app.ncy.test:8443/"),
                "points at https://app.ncy.test:8443",
            ),
            (
                "actionUrl",
                json!("//evil.io/x"),
                "points at https://evil.io",
            ),
            (
                "actionUrl",
                json!("/\\evil.io/x"),
                "points at https://evil.io",
            ),
            (
                "actionUrl",
                json!(" https://evil.io"),
                "points at https://evil.io",
            ),
            (
                "downloadUrl",
                json!("javascript:alert(1)"),
                "is a javascript: URL",
            ),
            (
                "downloadUrl",
                json!("java\tscript:alert(1)"),
                "is a javascript: URL",
            ),
            ("downloadUrl", json!("data:text/html,hi"), "is a data: URL"),
            ("downloadUrl", json!(7), "is not a string"),
            ("downloadUrl", json!("https://[::1"), "is not a URL"),
        ];
        for (key, link, what) in cases {
            let err = context(json!({ key: link.clone() }), APP).expect_err(&link.to_string());
            assert!(!err.retryable, "{err:?}");
            assert!(
                err.message.starts_with(&format!("data.{key} {what}")),
                "{link}: {}",
                err.message
            );
            assert!(
                err.message
                    .contains("not at FRONTEND_URL https://app.ncy.test"),
                "{}",
                err.message
            );
        }
        let err = context(json!({"links": [{"url": "https://evil.io"}]}), APP).expect_err("nested");
        assert!(
            err.message.starts_with("data.links[0].url points at"),
            "{}",
            err.message
        );
    }
}
