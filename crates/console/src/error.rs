//! What can go wrong answering a page, and the one place it becomes an HTTP answer: every failure
//! is a page with the layout and a message an operator can act on, never a bare 500.
//!
//! A gRPC status from a service maps as: NOT_FOUND → 404 (the service names what is missing),
//! INVALID_ARGUMENT → 400, FAILED_PRECONDITION → 409 (e.g. cancelling a finished job),
//! UNAVAILABLE or DEADLINE_EXCEEDED → 503 naming the service, PERMISSION_DENIED or
//! UNAUTHENTICATED → 502 "the console's API key is refused", anything else → 500. Details that
//! help only whoever runs the console (transport causes) are logged, not shown.
use askama::Template;
use axum::response::{Html, IntoResponse, Response};
use http::StatusCode;
use tonic::Code;

use crate::pages::Nav;

/// What can go wrong answering a request.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    /// No such queue, job, dead letter or page.
    #[error("not found: {0}")]
    NotFound(String),
    /// A query or form value the console cannot use.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// The signed-in user may not do this (a viewer posting an action).
    #[error("forbidden: {0}")]
    Forbidden(&'static str),
    /// A cross-site or unverifiable state-changing request.
    #[error("cross-site request refused")]
    CrossSite,
    /// A service answered with an error status (or could not be reached).
    #[error("{service}: {}: {}", .status.code(), .status.message())]
    Upstream {
        /// The service called, e.g. `job-scheduler`.
        service: &'static str,
        /// Its answer.
        status: tonic::Status,
    },
    /// A template failed to render (a bug).
    #[error("rendering a page failed: {0}")]
    Render(#[from] askama::Error),
}

/// The error page.
#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    nav: Nav,
    title: String,
    message: String,
}

impl ConsoleError {
    /// The status, the page's title and its message.
    fn parts(&self) -> (StatusCode, String, String) {
        match self {
            Self::NotFound(what) => (StatusCode::NOT_FOUND, "Not found".into(), what.clone()),
            Self::BadRequest(why) => (StatusCode::BAD_REQUEST, "Bad request".into(), why.clone()),
            Self::Forbidden(why) => (StatusCode::FORBIDDEN, "Not allowed".into(), (*why).into()),
            Self::CrossSite => (
                StatusCode::FORBIDDEN,
                "Request refused".into(),
                "This request did not come from a console page (cross-site request \
                 protection). Go back, reload the page and try again."
                    .into(),
            ),
            Self::Upstream { service, status } => upstream_parts(service, status),
            Self::Render(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "Console error".into(),
                "This page could not be shown; the console's log has the cause.".into(),
            ),
        }
    }
}

fn upstream_parts(service: &str, status: &tonic::Status) -> (StatusCode, String, String) {
    match status.code() {
        Code::NotFound => (
            StatusCode::NOT_FOUND,
            "Not found".into(),
            format!("{service}: {}", status.message()),
        ),
        Code::InvalidArgument => (
            StatusCode::BAD_REQUEST,
            "Bad request".into(),
            format!("{service} refused the request: {}", status.message()),
        ),
        Code::FailedPrecondition => (
            StatusCode::CONFLICT,
            "Not possible now".into(),
            format!("{service}: {}", status.message()),
        ),
        Code::Unavailable | Code::DeadlineExceeded => (
            StatusCode::SERVICE_UNAVAILABLE,
            "Service unavailable".into(),
            format!(
                "{service} is unavailable right now ({}). Retry in a moment; its /readyz and \
                 logs say more.",
                code_name(status.code())
            ),
        ),
        Code::PermissionDenied | Code::Unauthenticated => (
            StatusCode::BAD_GATEWAY,
            "API key refused".into(),
            format!(
                "{service} refused the console's API key ({}): check NCY_CONSOLE_API_KEY and the \
                 key's scopes in the service's keys file.",
                code_name(status.code())
            ),
        ),
        other => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "Service error".into(),
            format!(
                "{service} failed ({}); its logs have the cause.",
                code_name(other)
            ),
        ),
    }
}

/// A status code as an operator reads it in gRPC documentation.
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

impl IntoResponse for ConsoleError {
    fn into_response(self) -> Response {
        let (status, title, message) = self.parts();
        if status.is_server_error() || status == StatusCode::BAD_GATEWAY {
            tracing::warn!(error = %self, status = status.as_u16(), "page failed");
        } else {
            tracing::debug!(error = %self, status = status.as_u16(), "page refused");
        }
        let page = ErrorPage {
            nav: Nav::anonymous(),
            title,
            message,
        };
        match page.render() {
            Ok(html) => (status, Html(html)).into_response(),
            Err(e) => {
                tracing::error!(error = %e, "the error page failed to render");
                (status, "error\n").into_response()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_statuses_map_to_pages() {
        let cases = [
            (tonic::Status::not_found("job x"), 404),
            (tonic::Status::invalid_argument("page_token: bad"), 400),
            (tonic::Status::failed_precondition("job is COMPLETED"), 409),
            (tonic::Status::unavailable("redis down"), 503),
            (tonic::Status::deadline_exceeded("slow"), 503),
            (tonic::Status::permission_denied("scope"), 502),
            (tonic::Status::unauthenticated("key"), 502),
            (tonic::Status::internal("bug"), 500),
        ];
        for (status, code) in cases {
            let e = ConsoleError::Upstream {
                service: "job-scheduler",
                status,
            };
            let (got, _, message) = e.parts();
            assert_eq!(got.as_u16(), code, "{e}");
            assert!(message.contains("job-scheduler"), "{message}");
        }
        for service in ["cache-gateway", "realtime-gateway"] {
            let (got, _, message) = ConsoleError::Upstream {
                service,
                status: tonic::Status::unavailable("down"),
            }
            .parts();
            assert_eq!(got.as_u16(), 503);
            assert!(
                message.starts_with(&format!("{service} is unavailable")),
                "{message}"
            );
        }
        let (_, _, message) = ConsoleError::Upstream {
            service: "job-scheduler",
            status: tonic::Status::unauthenticated("no key"),
        }
        .parts();
        assert!(message.contains("the console's API key"), "{message}");
    }
}
