//! Email templates: `<name>.html` and `<name>.txt` rendered with minijinja.
//!
//! By default the templates of `crates/worker/templates/email/` built into the binary are used (a
//! container needs no folder); with `NCY_WORKER_TEMPLATE_DIR` they are read from that folder instead
//! (each file once, on first use). HTML templates are autoescaped (minijinja escapes by the `.html`
//! extension), text ones are not. Undefined variables are errors, so a template that needs data
//! the job did not carry fails the job instead of sending an email with holes; optional fields use
//! `{% if x is defined %}` or `| default(…)`.
use std::path::PathBuf;
use std::sync::Arc;

use minijinja::{Environment, ErrorKind, UndefinedBehavior};
use serde::Serialize;

macro_rules! builtin {
    ($file:literal) => {
        (
            $file,
            include_str!(concat!("../../templates/email/", $file)),
        )
    };
}
/// The built-in templates (file name, source).
const BUILTIN: &[(&str, &str)] = &[
    builtin!("welcome.html"),
    builtin!("welcome.txt"),
    builtin!("task-assigned.html"),
    builtin!("task-assigned.txt"),
    builtin!("password-reset.html"),
    builtin!("password-reset.txt"),
    builtin!("report-ready.html"),
    builtin!("report-ready.txt"),
    builtin!("notification.html"),
    builtin!("notification.txt"),
];

/// Why an email could not be rendered (never fixed by a retry).
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    /// Neither `<name>.html` nor `<name>.txt` exists.
    #[error("unknown email template \"{0}\"")]
    Unknown(String),
    /// A template failed to parse or render (syntax error, missing variable, unreadable file).
    #[error("cannot render email template \"{file}\": {source:#}")]
    Render {
        file: String,
        #[source]
        source: minijinja::Error,
    },
}

/// The parts of a rendered email; at least one is present.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub html: Option<String>,
    pub text: Option<String>,
}

/// The template set, shared by the email processors.
#[derive(Clone)]
pub struct Templates {
    env: Arc<Environment<'static>>,
}

impl std::fmt::Debug for Templates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Templates").finish_non_exhaustive()
    }
}

impl Templates {
    /// Templates from `dir`, or the built-in ones when `None`.
    pub fn new(dir: Option<PathBuf>) -> Self {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_loader(move |file| match &dir {
            None => Ok(BUILTIN
                .iter()
                .find(|(name, _)| *name == file)
                .map(|(_, source)| (*source).to_owned())),
            Some(dir) => match std::fs::read_to_string(dir.join(file)) {
                Ok(source) => Ok(Some(source)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(minijinja::Error::new(
                    ErrorKind::InvalidOperation,
                    format!("cannot read {}", dir.join(file).display()),
                )
                .with_source(e)),
            },
        });
        Self { env: Arc::new(env) }
    }

    /// Renders template `name` (both parts that exist) with `ctx`.
    pub fn render(&self, name: &str, ctx: &impl Serialize) -> Result<Rendered, TemplateError> {
        let ctx = minijinja::Value::from_serialize(ctx);
        let html = self.part(&format!("{name}.html"), &ctx)?;
        let text = self.part(&format!("{name}.txt"), &ctx)?;
        if html.is_none() && text.is_none() {
            return Err(TemplateError::Unknown(name.to_owned()));
        }
        Ok(Rendered { html, text })
    }

    fn part(&self, file: &str, ctx: &minijinja::Value) -> Result<Option<String>, TemplateError> {
        let render_error = |source| TemplateError::Render {
            file: file.to_owned(),
            source,
        };
        match self.env.get_template(file) {
            Ok(t) => t.render(ctx).map(Some).map_err(render_error),
            Err(e) if e.kind() == ErrorKind::TemplateNotFound => Ok(None),
            Err(e) => Err(render_error(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_builtin_template_renders_with_its_documented_data() {
        let t = Templates::new(None);
        let cases = [
            (
                "welcome",
                json!({"name": "Ada", "email": "ada@example.com", "userId": "u1", "appUrl": "http://app"}),
            ),
            (
                "task-assigned",
                json!({"taskTitle": "Fix it", "appUrl": "http://app"}),
            ),
            ("password-reset", json!({"resetUrl": "http://app/reset/x"})),
            ("report-ready", json!({"downloadUrl": "http://app/r/1"})),
            ("notification", json!({"message": "Hello"})),
        ];
        for (name, ctx) in cases {
            let r = t
                .render(name, &ctx)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(r.html.is_some() && r.text.is_some(), "{name}");
        }
    }

    #[test]
    fn html_is_escaped_and_text_is_not() {
        let t = Templates::new(None);
        let r = t
            .render("notification", &json!({"message": "<b>5 > 3</b> & co"}))
            .expect("renders");
        let html = r.html.expect("html");
        assert!(
            html.contains("&lt;b&gt;5 &gt; 3&lt;&#x2f;b&gt; &amp; co"),
            "{html}"
        );
        assert!(r.text.expect("text").contains("<b>5 > 3</b> & co"));
    }

    #[test]
    fn unknown_template_and_missing_data_are_errors() {
        let t = Templates::new(None);
        let err = t.render("nope", &json!({})).expect_err("unknown");
        assert_eq!(err.to_string(), "unknown email template \"nope\"");
        let err = t
            .render("welcome", &json!({"name": "Ada"}))
            .expect_err("no email");
        assert!(matches!(err, TemplateError::Render { .. }), "{err}");
    }

    #[test]
    fn a_folder_replaces_the_builtin_templates() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("custom.txt"), "Hi {{ who }}").expect("write");
        let t = Templates::new(Some(dir.path().to_owned()));
        let r = t.render("custom", &json!({"who": "Bob"})).expect("renders");
        assert_eq!(
            r,
            Rendered {
                html: None,
                text: Some("Hi Bob".into())
            }
        );
        assert!(matches!(
            t.render("welcome", &json!({})),
            Err(TemplateError::Unknown(_))
        ));
    }
}
