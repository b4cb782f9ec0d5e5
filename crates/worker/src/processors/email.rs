//! `send-email` and `send-welcome-email`: render a template ([`super::templates`]) and send it over
//! SMTP with lettre as multipart/alternative (text + HTML) from `NCY_SMTP_FROM` to `NCY_SMTP_URL`.
//!
//! How failures are classified (the message names the SMTP server, never its credentials):
//! - unknown template, render error, invalid address: fatal (dead letter at once);
//! - the server refused permanently (5xx): fatal, no retry can change its mind;
//! - the server is unreachable, refused transiently (4xx) or did not answer in time: retryable.
//!
//! Links: `appUrl` in every template is the configured `FRONTEND_URL`, never a payload's value
//! ([`template_context`]), so a job cannot send our emails with someone else's links in them.
//!
//! `emails_sent_total{template,status}` counts outcomes (`sent`, `failed`; template `unknown` for a
//! name that has no template, so payloads cannot create metric series).
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use ncy_runtime::{ConfigError, Env};
use ncy_types::jobs::{EmailJobData, WelcomeEmailData};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value, json};

use super::templates::{Rendered, TemplateError, Templates};
use super::{JobContext, JobError, ProcessFuture, Processor};

/// Settings of the email processors.
#[derive(Debug, Clone)]
pub struct EmailSettings {
    /// `NCY_SMTP_URL`: `smtp://[user:password@]host:port` (STARTTLS when `?tls=required`),
    /// `smtps://…` (TLS); default `smtp://127.0.0.1:1025`. Secret: it may hold a password.
    pub smtp_url: SecretString,
    /// `NCY_SMTP_FROM`: the sender, e.g. `NCY <no-reply@example.com>`.
    pub from: Mailbox,
    /// `NCY_WORKER_TEMPLATE_DIR`: read templates from this folder (default: the built-in ones).
    pub template_dir: Option<PathBuf>,
    /// `NCY_SMTP_TIMEOUT_MS`: longest wait for one send, connection included (default 10000).
    pub timeout: Duration,
    /// `FRONTEND_URL`: the app's address, `appUrl` in templates (default `http://localhost:3000`).
    pub app_url: String,
}

impl EmailSettings {
    /// Reads the email settings from `env`; an SMTP URL lettre cannot use is an error here.
    pub fn load(env: &Env) -> Result<Self, ConfigError> {
        let url = env
            .get("NCY_SMTP_URL")
            .unwrap_or_else(|| "smtp://127.0.0.1:1025".to_owned());
        AsyncSmtpTransport::<Tokio1Executor>::from_url(&url).map_err(|e| {
            ConfigError::new(
                "NCY_SMTP_URL",
                format!("expected smtp://[user:password@]host:port or smtps://…: {e}"),
            )
        })?;
        let from_raw = env
            .get("NCY_SMTP_FROM")
            .unwrap_or_else(|| "NCY <no-reply@ncy.local>".to_owned());
        let from = from_raw.parse::<Mailbox>().map_err(|e| {
            ConfigError::new(
                "NCY_SMTP_FROM",
                format!("expected an address such as \"NCY <no-reply@example.com>\": {e}"),
            )
        })?;
        let timeout_ms: u64 = env.parse_or("NCY_SMTP_TIMEOUT_MS", 10_000, "milliseconds")?;
        if !(100..=600_000).contains(&timeout_ms) {
            return Err(ConfigError::new(
                "NCY_SMTP_TIMEOUT_MS",
                "must be between 100 and 600000",
            ));
        }
        Ok(Self {
            smtp_url: SecretString::from(url),
            from,
            template_dir: env.get("NCY_WORKER_TEMPLATE_DIR").map(PathBuf::from),
            timeout: Duration::from_millis(timeout_ms),
            app_url: env
                .get("FRONTEND_URL")
                .unwrap_or_else(|| "http://localhost:3000".to_owned())
                .trim_end_matches('/')
                .to_owned(),
        })
    }
}

/// Renders and sends emails; shared by both processors.
#[derive(Debug)]
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    /// `host:port` of the server, for error messages (no credentials).
    server: String,
    from: Mailbox,
    templates: Templates,
    timeout: Duration,
    app_url: String,
}

impl Mailer {
    /// Builds the SMTP transport (no connection yet) and the template set.
    pub fn new(settings: &EmailSettings) -> Result<Self, lettre::transport::smtp::Error> {
        let url = settings.smtp_url.expose_secret();
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)?
            .timeout(Some(settings.timeout))
            .build();
        Ok(Self {
            transport,
            server: server_of(url),
            from: settings.from.clone(),
            templates: Templates::new(settings.template_dir.clone()),
            timeout: settings.timeout,
            app_url: settings.app_url.clone(),
        })
    }

    /// Renders `template` with `ctx` and sends it to `to` (and `cc`).
    pub async fn send(
        &self,
        template: &str,
        to: &str,
        cc: &[String],
        subject: &str,
        ctx: &Value,
    ) -> Result<(), JobError> {
        let rendered = match self.templates.render(template, ctx) {
            Ok(r) => r,
            Err(e) => {
                // Names come from payloads: an unknown one must not become a metric series.
                let label = match e {
                    TemplateError::Unknown(_) => "unknown",
                    TemplateError::Render { .. } => template,
                };
                count(label, "failed");
                return Err(JobError::fatal(e.to_string()));
            }
        };
        let outcome = self.deliver(to, cc, subject, rendered).await;
        count(template, if outcome.is_ok() { "sent" } else { "failed" });
        outcome
    }

    async fn deliver(
        &self,
        to: &str,
        cc: &[String],
        subject: &str,
        rendered: Rendered,
    ) -> Result<(), JobError> {
        let message = self.message(to, cc, subject, rendered)?;
        match tokio::time::timeout(self.timeout, self.transport.send(message)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(self.classify(&e)),
            Err(_) => Err(JobError::retryable(format!(
                "SMTP server {} unreachable: no answer within {} ms",
                self.server,
                self.timeout.as_millis()
            ))),
        }
    }

    fn message(
        &self,
        to: &str,
        cc: &[String],
        subject: &str,
        rendered: Rendered,
    ) -> Result<Message, JobError> {
        let address = |a: &str| {
            a.parse::<Mailbox>()
                .map_err(|e| JobError::fatal(format!("invalid email address {a:?}: {e}")))
        };
        let mut builder = Message::builder()
            .from(self.from.clone())
            .to(address(to)?)
            .subject(subject);
        for c in cc {
            builder = builder.cc(address(c)?);
        }
        let built = match (rendered.text, rendered.html) {
            (Some(text), Some(html)) => {
                builder.multipart(MultiPart::alternative_plain_html(text, html))
            }
            (None, Some(html)) => builder.singlepart(SinglePart::html(html)),
            (Some(text), None) => builder.singlepart(SinglePart::plain(text)),
            (None, None) => return Err(JobError::fatal("the template rendered no part")),
        };
        built.map_err(|e| JobError::fatal(format!("cannot build the email: {e}")))
    }

    /// Permanent refusals are fatal; everything else (down, 4xx, timeout, TLS) is retryable.
    fn classify(&self, e: &lettre::transport::smtp::Error) -> JobError {
        let server = &self.server;
        if e.is_permanent() {
            JobError::fatal(format!("SMTP server {server} refused the email: {e}"))
        } else if e.is_transient() {
            JobError::retryable(format!(
                "SMTP server {server} refused the email for now: {e}"
            ))
        } else {
            JobError::retryable(format!("SMTP server {server} unreachable: {e}"))
        }
    }
}

/// `emails_sent_total{template,status}`.
fn count(template: &str, status: &'static str) {
    metrics::counter!("emails_sent_total", "template" => template.to_owned(), "status" => status)
        .increment(1);
}

/// `host:port` of an SMTP URL, without scheme, credentials, path or query.
fn server_of(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host)
        .to_owned()
}

/// `send-email {to, subject, template, data, cc}`: `data` is the template's context, with `appUrl`
/// always the configured `FRONTEND_URL` (see [`template_context`]). Result: `{"to": …,
/// "template": …}`.
#[derive(Debug, Clone)]
pub struct SendEmailProcessor(pub Arc<Mailer>);

impl Processor for SendEmailProcessor {
    fn process(&self, ctx: JobContext) -> ProcessFuture {
        let mailer = self.0.clone();
        Box::pin(async move {
            let job: EmailJobData = serde_json::from_value(ctx.payload)
                .map_err(|e| JobError::fatal(format!("bad send-email payload: {e}")))?;
            let data = template_context(job.data, &mailer.app_url);
            mailer
                .send(&job.template, &job.to, &job.cc, &job.subject, &data)
                .await?;
            Ok(Some(json!({"to": job.to, "template": job.template})))
        })
    }
}

/// The context of a `send-email` template: the payload's `data` with `appUrl` set to the configured
/// app address. A payload's own `appUrl` is replaced, never used: the scheduler refuses one at
/// enqueue, and a job that reached the queue another way (enqueued before that rule, or written
/// to Redis directly) must still not turn our templates' links into someone else's.
pub fn template_context(mut data: Map<String, Value>, app_url: &str) -> Value {
    data.insert("appUrl".to_owned(), Value::String(app_url.to_owned()));
    Value::Object(data)
}

/// `send-welcome-email {userId, email, name}`: the `welcome` template with `{name, email, userId,
/// appUrl}`.
#[derive(Debug, Clone)]
pub struct WelcomeEmailProcessor(pub Arc<Mailer>);

impl Processor for WelcomeEmailProcessor {
    fn process(&self, ctx: JobContext) -> ProcessFuture {
        let mailer = self.0.clone();
        Box::pin(async move {
            let job: WelcomeEmailData = serde_json::from_value(ctx.payload)
                .map_err(|e| JobError::fatal(format!("bad send-welcome-email payload: {e}")))?;
            let data = json!({
                "name": job.name,
                "email": job.email,
                "userId": job.user_id,
                "appUrl": mailer.app_url,
            });
            let subject = format!("Welcome to NCY, {}!", job.name);
            mailer
                .send("welcome", &job.email, &[], &subject, &data)
                .await?;
            Ok(Some(json!({"to": job.email, "template": "welcome"})))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_configured_app_url_replaces_a_payloads_own() {
        let mut data = Map::new();
        data.insert("appUrl".into(), json!("https://evil.example"));
        data.insert("taskTitle".into(), json!("Fix it"));
        assert_eq!(
            template_context(data, "https://app.ncy.test"),
            json!({"appUrl": "https://app.ncy.test", "taskTitle": "Fix it"})
        );
        assert_eq!(
            template_context(Map::new(), "https://app.ncy.test"),
            json!({"appUrl": "https://app.ncy.test"})
        );
    }

    #[test]
    fn server_of_hides_credentials() {
        assert_eq!(
            server_of("smtps://user:s3cret@mail.example.com:465?tls=wrapper"),
            "mail.example.com:465"
        );
        assert_eq!(server_of("smtp://127.0.0.1:1025"), "127.0.0.1:1025");
        assert_eq!(server_of("smtp://a:p@ss@h:25/"), "h:25");
    }

    #[tokio::test]
    async fn settings_keep_the_password_out_of_debug() {
        let env = Env::from_pairs([
            ("NCY_SMTP_URL", "smtp://mailer:hunter2@127.0.0.1:2525"),
            ("NCY_SMTP_FROM", "Ops <ops@example.com>"),
        ]);
        let s = EmailSettings::load(&env).expect("valid");
        assert!(!format!("{s:?}").contains("hunter2"), "{s:?}");
        let mailer = Mailer::new(&s).expect("transport");
        assert!(!format!("{mailer:?}").contains("hunter2"), "{mailer:?}");
        assert_eq!(mailer.server, "127.0.0.1:2525");
    }

    #[test]
    fn bad_settings_name_the_variable() {
        for (var, value) in [
            ("NCY_SMTP_URL", "http://example.com"),
            ("NCY_SMTP_FROM", "not an address"),
            ("NCY_SMTP_TIMEOUT_MS", "0"),
        ] {
            let err = EmailSettings::load(&Env::from_pairs([(var, value)])).expect_err(var);
            assert_eq!(err.var, var, "{err}");
        }
    }
}
