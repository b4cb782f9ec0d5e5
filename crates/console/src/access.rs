//! Who is asking: the session check in front of every page but `/login` and the static files,
//! the role check of every action, and the audit log of both.
//!
//! A request without a valid session is sent to `/login` (303), with the page it wanted kept in
//! `next` for GETs. A valid session puts a [`CurrentUser`] in the request — with the role the
//! users file gives now, which must still be the session's — and the response carries the cookie
//! again with a new last-use time (the idle timeout slides).
//!
//! Every action and every sign-in and sign-out writes one log line with `target = "audit"`:
//! who, their role, what, which queue / job / dead letter / schedule, and the outcome.
use std::sync::Arc;

use axum::{
    extract::{Request, State},
    middleware::Next,
    response::{IntoResponse, Redirect, Response},
};
use http::{HeaderValue, Method, header::SET_COOKIE};

use crate::{
    AppState,
    error::ConsoleError,
    pages::url_part,
    session::{Claims, Refused, now_secs},
    users::Role,
};

/// The signed-in user of a request.
#[derive(Debug, Clone)]
pub struct CurrentUser {
    /// The name in the users file.
    pub name: String,
    /// The role the users file gives them now.
    pub role: Role,
    /// When the session stops being valid unless used again (Unix seconds): live streams end then.
    pub expires_at: u64,
}

impl CurrentUser {
    /// Whether the user may act (pages show action buttons only then).
    pub fn may_act(&self) -> bool {
        self.role == Role::Operator
    }

    /// Refuses (and audits) an action of a user who may only read.
    pub fn require_operator(
        &self,
        action: &'static str,
        subject: &Subject<'_>,
    ) -> Result<(), ConsoleError> {
        if self.may_act() {
            return Ok(());
        }
        audit(
            &self.name,
            self.role.as_str(),
            action,
            subject,
            "refused: viewer",
        );
        Err(ConsoleError::Forbidden(
            "Your role is viewer: you may read every page, but only an operator may act.",
        ))
    }

    /// Audits an action of this user.
    pub fn audit(&self, action: &'static str, subject: &Subject<'_>, outcome: &str) {
        audit(&self.name, self.role.as_str(), action, subject, outcome);
    }

    /// Audits the failure of an action and hands it on; a success is audited by the caller,
    /// which knows what was done.
    pub fn audit_failure<T>(
        &self,
        action: &'static str,
        subject: &Subject<'_>,
        result: Result<T, ConsoleError>,
    ) -> Result<T, ConsoleError> {
        if let Err(e) = &result {
            self.audit(action, subject, &failed_outcome(e));
        }
        result
    }
}

/// What an action was about.
#[derive(Debug, Default, Clone, Copy)]
pub struct Subject<'a> {
    /// The queue.
    pub queue: Option<&'a str>,
    /// The job.
    pub job_id: Option<&'a str>,
    /// The dead letter.
    pub dead_letter_id: Option<&'a str>,
    /// The schedule.
    pub schedule: Option<&'a str>,
    /// What a cache or realtime action was about: `tag:…`, `pattern:…`, `entity:kind:id`,
    /// `room:…`, `user:…`.
    pub target: Option<&'a str>,
}

/// Writes one audit line. Values that came from a request (a name typed at sign-in, ids from
/// the URL) are cut to 128 characters with control characters replaced, so no line of the text
/// log format can be forged or flooded through them.
pub fn audit(user: &str, role: &str, action: &'static str, subject: &Subject<'_>, outcome: &str) {
    let user = loggable(user);
    let outcome = loggable(outcome);
    tracing::info!(
        target: "audit",
        user = %user,
        role,
        action,
        queue = %loggable(subject.queue.unwrap_or("")),
        job_id = %loggable(subject.job_id.unwrap_or("")),
        dead_letter_id = %loggable(subject.dead_letter_id.unwrap_or("")),
        schedule = %loggable(subject.schedule.unwrap_or("")),
        target = %loggable(subject.target.unwrap_or("")),
        outcome = %outcome,
        "console {action}: {outcome}"
    );
}

/// `text` safe for one log line: at most 128 characters, control characters as `?`.
pub fn loggable(text: &str) -> String {
    text.chars()
        .take(128)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// The outcome text of an action that a service refused or failed.
pub fn failed_outcome(e: &ConsoleError) -> String {
    match e {
        ConsoleError::Upstream { status, .. } => {
            format!("failed: {}", crate::error::code_name(status.code()))
        }
        other => format!("failed: {other}"),
    }
}

/// Checks the session of the request: the claims and the user they are valid for.
pub async fn check(
    app: &AppState,
    value: &str,
    now: u64,
) -> Result<(Claims, CurrentUser), Refused> {
    let claims = app.sessions.open(value, now)?;
    let users = app.users.current().await;
    let user = users.get(&claims.user).ok_or(Refused::UnknownUser)?;
    if user.role.as_str() != claims.role {
        return Err(Refused::RoleChanged);
    }
    let current = CurrentUser {
        name: user.name.clone(),
        role: user.role,
        expires_at: 0,
    };
    Ok((claims, current))
}

/// The middleware in front of every signed-in route. See the module documentation.
pub async fn require_session(
    State(app): State<Arc<AppState>>,
    mut request: Request,
    next: Next,
) -> Response {
    let now = now_secs();
    let cookie = app.sessions.cookie_of(request.headers()).map(str::to_owned);
    let checked = match &cookie {
        Some(value) => Some(check(&app, value, now).await),
        None => None,
    };
    match checked {
        Some(Ok((claims, mut user))) => {
            let renewed = Claims {
                last_seen: now,
                ..claims
            };
            user.expires_at = app.sessions.expires_at(&renewed);
            request.extensions_mut().insert(user);
            let mut response = next.run(request).await;
            if let Ok(value) = HeaderValue::from_str(&app.sessions.set_cookie(&renewed)) {
                response.headers_mut().append(SET_COOKIE, value);
            }
            response
        }
        other => {
            if let Some(Err(reason)) = &other {
                metrics::counter!("console_sessions_refused_total", "reason" => reason.as_str())
                    .increment(1);
                tracing::debug!(reason = reason.as_str(), "session refused");
            }
            let target = if request.method() == Method::GET {
                let wanted = request.uri().path_and_query().map_or("/", |p| p.as_str());
                if wanted == "/" {
                    "/login".to_owned()
                } else {
                    format!("/login?next={}", url_part(wanted))
                }
            } else {
                "/login".to_owned()
            };
            let mut response = Redirect::to(&target).into_response();
            if cookie.is_some()
                && let Ok(value) = HeaderValue::from_str(&app.sessions.clear_cookie())
            {
                response.headers_mut().append(SET_COOKIE, value);
            }
            response
        }
    }
}

/// Where to go after signing in: `next` when it is a path of this site, else the overview.
/// (`//host` and `/\host` are other sites to a browser.)
pub fn safe_next(next: Option<&str>) -> &str {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n.starts_with("/\\")
                && n.len() <= 2048
                && !n.chars().any(char::is_control) =>
        {
            n
        }
        _ => "/",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logged_values_stay_on_one_line() {
        assert_eq!(loggable("ana"), "ana");
        assert_eq!(loggable("ana\n{\"forged\":1}\r"), "ana?{\"forged\":1}?");
        assert_eq!(loggable(&"x".repeat(500)).len(), 128);
    }

    #[test]
    fn next_stays_on_this_site() {
        assert_eq!(safe_next(Some("/jobs/email%3A1")), "/jobs/email%3A1");
        assert_eq!(
            safe_next(Some("/queues/email?state=dead")),
            "/queues/email?state=dead"
        );
        for bad in [
            "//evil.example/",
            "/\\evil.example",
            "https://evil.example",
            "",
            "/a\nb",
        ] {
            assert_eq!(safe_next(Some(bad)), "/", "{bad:?}");
        }
        assert_eq!(safe_next(None), "/");
    }
}
