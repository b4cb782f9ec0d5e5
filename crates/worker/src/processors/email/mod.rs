//! `send-email` and `send-welcome-email`: render a template ([`super::templates`]) and send it over
//! SMTP with lettre as multipart/alternative (text + HTML) from `NCY_SMTP_FROM` to `NCY_SMTP_URL`.
//!
//! How failures are classified (the message names the SMTP server, never its credentials):
//! - unknown template, render error, invalid address: fatal (dead letter at once);
//! - the server refused permanently (5xx): fatal, no retry can change its mind;
//! - the server is unreachable, did not answer in time or closes the channel for everyone (421):
//!   an outage of SMTP, the job is postponed without using an attempt ([`crate::outages`]);
//! - any other transient refusal (4xx), a TLS failure: retryable per the job's attempts.
//!
//! Links: every link of an official email points at our own frontend, `FRONTEND_URL`, so whoever
//! can enqueue `send-email` cannot put someone else's links (phishing) into our templates
//! ([`template_context`]):
//! - `appUrl` is always `FRONTEND_URL` itself, never a payload's value (the scheduler refuses one);
//! - every other link of `data` — any key ending in `Url` at any depth: `taskUrl`, `resetUrl`,
//!   `actionUrl`, `downloadUrl`…, see [`ncy_types::jobs::links`] — is resolved against
//!   `FRONTEND_URL` (with a trailing `/`: `tasks/1` lands under its path, `/tasks/1` at its root)
//!   and must then have `FRONTEND_URL`'s origin (scheme, host and port; compared as parsed URLs,
//!   so `https://app.example.com.evil.io` or `https://app.example.com@evil.io` is another origin).
//!   The email carries the resolved absolute URL, exactly what was checked. A link elsewhere fails
//!   the job NON-retryably before anything is rendered or sent ("data.taskUrl points at …").
//! - At enqueue the scheduler (which does not know `FRONTEND_URL`) already refuses what is never a
//!   link to the app: a non-string, control characters, a scheme other than http(s).
//! - `downloadUrl` gets no exception: a `report-ready` email is only ever enqueued by a client (the
//!   `generate-report` processor notifies in the app with its own `NCY_REPORT_LINK_BASE_URL` link
//!   and sends no email), so its link must be ours too.
//! - Custom templates (`NCY_WORKER_TEMPLATE_DIR`) must name their link variables `…Url` to get
//!   this check.
//! - A `FRONTEND_URL` that is not an http(s) URL with a host is a configuration error: the worker
//!   does not start.
//!
//! `emails_sent_total{template,status}` counts outcomes (`sent`, `failed`; template `unknown` for a
//! name that has no template, so payloads cannot create metric series). A job refused for its links
//! never reaches a template and is not counted there (its dead letter says why).
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use ncy_runtime::{ConfigError, Env};
use ncy_types::jobs::{EmailJobData, JobType, WelcomeEmailData};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use tracing::Instrument;
use url::Url;

use super::templates::{Rendered, TemplateError, Templates};
use super::{Dependency, JobContext, JobError, JobResult, Processor};

mod links;

pub use links::template_context;

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
    /// `FRONTEND_URL`: the app's address, `appUrl` in templates (default `http://localhost:3000`),
    /// without a trailing `/`.
    pub app_url: String,
    /// `FRONTEND_URL` parsed, with a trailing `/`: what the links of emails are resolved against.
    pub frontend: Url,
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
        let app_url = env
            .get("FRONTEND_URL")
            .unwrap_or_else(|| "http://localhost:3000".to_owned())
            .trim_end_matches('/')
            .to_owned();
        let frontend = Url::parse(&format!("{app_url}/"))
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.has_host())
            .ok_or_else(|| {
                ConfigError::new(
                    "FRONTEND_URL",
                    "expected the app's http:// or https:// address, e.g. https://app.example.com",
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
            app_url,
            frontend,
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
    frontend: Url,
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
            frontend: settings.frontend.clone(),
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
        // A child of the job's attempt span when the job carries a trace context.
        let span =
            tracing::info_span!("smtp.send", otel.kind = "client", server.address = %self.server);
        let sent = tokio::time::timeout(self.timeout, self.transport.send(message));
        match sent.instrument(span).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(self.classify(&e)),
            Err(_) => Err(JobError::unavailable(
                Dependency::Smtp,
                format!(
                    "SMTP server {} unreachable: no answer within {} ms",
                    self.server,
                    self.timeout.as_millis()
                ),
            )),
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

    /// Permanent refusals are fatal. The server unreachable (connection refused or lost, no
    /// answer in time) or closing the channel for everyone (421) is an outage of SMTP: the job is
    /// fine and is postponed ([`crate::outages`]). Any other transient refusal (a 4xx about this
    /// message or recipient), a TLS failure (more likely configuration than an outage) or an
    /// answer lettre cannot parse is an ordinary retryable failure. Told by lettre's error kind
    /// and the reply code, never the text.
    fn classify(&self, e: &lettre::transport::smtp::Error) -> JobError {
        let server = &self.server;
        if e.is_permanent() {
            JobError::fatal(format!("SMTP server {server} refused the email: {e}"))
        } else if e.status().is_some_and(|code| u16::from(code) == 421) {
            JobError::unavailable(
                Dependency::Smtp,
                format!("SMTP server {server} is not available: {e}"),
            )
        } else if e.is_transient() {
            JobError::retryable(format!(
                "SMTP server {server} refused the email for now: {e}"
            ))
        } else if e.is_timeout()
            || !(e.is_response() || e.is_client() || e.is_tls() || e.is_transport_shutdown())
        {
            // What is left is lettre's connection and network kinds.
            JobError::unavailable(
                Dependency::Smtp,
                format!("SMTP server {server} unreachable: {e}"),
            )
        } else {
            JobError::retryable(format!("SMTP server {server} failed: {e}"))
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
/// always the configured `FRONTEND_URL` and every other link resolved against it and required to
/// point there (see [`template_context`]). Result: `{"to": …, "template": …}`.
#[derive(Debug, Clone)]
pub struct SendEmailProcessor(pub Arc<Mailer>);

impl Processor for SendEmailProcessor {
    const JOB_TYPE: JobType = JobType::SendEmail;
    type Payload = EmailJobData;

    async fn process(&self, _ctx: JobContext, job: EmailJobData) -> JobResult {
        let mailer = &self.0;
        let data = template_context(job.data, &mailer.frontend, &mailer.app_url)?;
        mailer
            .send(&job.template, &job.to, &job.cc, &job.subject, &data)
            .await?;
        Ok(Some(json!({"to": job.to, "template": job.template})))
    }
}

/// `send-welcome-email {userId, email, name}`: the `welcome` template with `{name, email, userId,
/// appUrl}`.
#[derive(Debug, Clone)]
pub struct WelcomeEmailProcessor(pub Arc<Mailer>);

impl Processor for WelcomeEmailProcessor {
    const JOB_TYPE: JobType = JobType::SendWelcomeEmail;
    type Payload = WelcomeEmailData;

    async fn process(&self, _ctx: JobContext, job: WelcomeEmailData) -> JobResult {
        let mailer = &self.0;
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
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
            ("FRONTEND_URL", "app.example.com"),
            ("FRONTEND_URL", "ftp://app.example.com"),
            ("NCY_SMTP_URL", "http://example.com"),
            ("NCY_SMTP_FROM", "not an address"),
            ("NCY_SMTP_TIMEOUT_MS", "0"),
        ] {
            let err = EmailSettings::load(&Env::from_pairs([(var, value)])).expect_err(var);
            assert_eq!(err.var, var, "{err}");
        }
    }
}
