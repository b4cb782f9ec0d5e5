//! The console's pages, one module each, and what they share: the layout's navigation data, the
//! way a template becomes a response, and how job fields are shown (states, times, JSON).
//!
//! Templates live in `templates/` and are compiled in by askama, which escapes every value in an
//! `.html` template: payloads, errors and ids from jobs reach the browser as text, never markup.
//! The only `|safe` values are fragments these templates rendered themselves.
use askama::Template;
use axum::response::Html;
use ncy_proto::jobs::v1::JobState;

use crate::access::CurrentUser;
use crate::error::ConsoleError;

pub mod bulk;
pub mod cache;
pub mod dead;
pub mod history;
pub mod instances;
pub mod job;
pub mod job_actions;
pub mod login;
pub mod overview;
pub mod queue;
pub mod realtime;
pub mod schedules;

/// What the layout shows: the section, and who is signed in (absent on error pages and login).
pub struct Nav {
    /// `overview`, `dead`, `schedules`, `cache`, `realtime`, `queue`, `job`, or empty.
    pub section: &'static str,
    /// The signed-in user.
    pub user: Option<NavUser>,
    /// Appended to asset URLs so a new console version is fetched despite the long cache.
    pub assets: &'static str,
}

/// The signed-in user as the navigation shows them.
pub struct NavUser {
    /// The name.
    pub name: String,
    /// `viewer` or `operator`.
    pub role: &'static str,
}

impl Nav {
    /// Navigation for `user` on `section`.
    pub fn for_user(section: &'static str, user: &CurrentUser) -> Self {
        Self {
            section,
            user: Some(NavUser {
                name: user.name.clone(),
                role: user.role.as_str(),
            }),
            assets: crate::assets::version(),
        }
    }

    /// Navigation of the sign-in form: no links that would lead back to it.
    pub fn login() -> Self {
        Self {
            section: "login",
            ..Self::anonymous()
        }
    }

    /// Navigation without a user (error pages).
    pub fn anonymous() -> Self {
        Self {
            section: "",
            user: None,
            assets: crate::assets::version(),
        }
    }
}

/// Renders a page.
pub fn render(page: &impl Template) -> Result<Html<String>, ConsoleError> {
    Ok(Html(page.render()?))
}

/// The states a queue page has tabs for, in the order of a job's life, with their URL names.
pub const STATES: [(JobState, &str); 7] = [
    (JobState::Waiting, "waiting"),
    (JobState::Delayed, "delayed"),
    (JobState::Active, "active"),
    (JobState::Failed, "failed"),
    (JobState::Completed, "completed"),
    (JobState::Cancelled, "cancelled"),
    (JobState::Dead, "dead"),
];

/// A state by its URL name.
pub fn state_named(name: &str) -> Option<JobState> {
    STATES.iter().find(|(_, n)| *n == name).map(|(s, _)| *s)
}

/// A state's URL name (`unknown` for a value this console does not know).
pub fn state_name(state: i32) -> &'static str {
    STATES
        .iter()
        .find(|(s, _)| *s as i32 == state)
        .map_or("unknown", |(_, n)| n)
}

/// A Unix-ms time as `2026-12-07 21:04:10 UTC`, or `—` when unset.
pub fn time(ms: i64) -> String {
    if ms <= 0 {
        return "—".to_owned();
    }
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|| ms.to_string())
}

/// JSON text indented for reading; the text as it is when it is not JSON; `—` when empty.
pub fn pretty_json(text: &str) -> String {
    if text.trim().is_empty() {
        return "—".to_owned();
    }
    serde_json::from_str::<serde_json::Value>(text)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| text.to_owned())
}

/// Free text shortened for a table cell.
pub fn clip(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// What a URL part may keep as it is: RFC 3986's unreserved characters.
const URL_PART: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// A value for a URL path segment or query (`/`, `?` and `&` in an id stay data).
pub fn url_part(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, URL_PART).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip_by_name() {
        for (state, name) in STATES {
            assert_eq!(state_named(name), Some(state));
            assert_eq!(state_name(state as i32), name);
        }
        assert_eq!(state_named("bogus"), None);
        assert_eq!(state_name(99), "unknown");
    }

    #[test]
    fn display_helpers() {
        assert_eq!(time(0), "—");
        assert_eq!(time(1_700_000_000_000), "2023-11-14 22:13:20 UTC");
        assert_eq!(pretty_json(r#"{"a":1}"#), "{\n  \"a\": 1\n}");
        assert_eq!(pretty_json("not json"), "not json");
        assert_eq!(clip("abcdef", 4), "abc…");
        assert_eq!(url_part("email.1:2/3&x"), "email.1%3A2%2F3%26x");
    }
}
