//! Signing in and out: `GET /login` (the form), `POST /login`, `POST /logout`.
//!
//! A failed sign-in answers 401 with the same words whether the name is unknown or the password
//! wrong, after the same argon2 work (see [`crate::users::verify`]), and is audited with the name
//! tried, never the password. At most [`crate::LOGIN_CONCURRENCY`] verifications run at once, so
//! a flood of sign-ins costs the console bounded CPU and memory (argon2 is made to be expensive).
//! Before any of that, the attempt is counted against the limits shared by every replica
//! ([`crate::login_limit`]): over one, the answer is 429 with the form, how long to wait and
//! `Retry-After`, and no password is verified.
use std::{net::SocketAddr, sync::Arc};

use askama::Template;
use axum::{
    Form,
    extract::{ConnectInfo, Query, State, rejection::FormRejection},
    response::{IntoResponse, Redirect, Response},
};
use http::{
    Extensions, HeaderMap, HeaderValue, StatusCode,
    header::{RETRY_AFTER, SET_COOKIE},
};
use serde::Deserialize;

use super::{Nav, clip, render};
use crate::{
    AppState,
    access::{Subject, audit, check, safe_next},
    error::ConsoleError,
    login_limit::{self, Verdict},
    session::{new_claims, now_secs},
    users,
};

/// The one message of a refused sign-in.
pub const REFUSED: &str = "Unknown user or wrong password.";

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    nav: Nav,
    next: String,
    name: String,
    problem: Option<String>,
}

/// The query of the login form.
#[derive(Debug, Default, Deserialize)]
pub struct LoginQuery {
    next: Option<String>,
}

/// The login form as posted.
#[derive(Default, Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    next: String,
}

/// `GET /login`: the form, or the overview for someone signed in already.
pub async fn form(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(query): Query<LoginQuery>,
) -> Result<Response, ConsoleError> {
    if let Some(value) = app.sessions.cookie_of(&headers)
        && check(&app, value, now_secs()).await.is_ok()
    {
        return Ok(Redirect::to(safe_next(query.next.as_deref())).into_response());
    }
    Ok(render(&LoginPage {
        nav: Nav::login(),
        next: safe_next(query.next.as_deref()).to_owned(),
        name: String::new(),
        problem: None,
    })?
    .into_response())
}

/// `POST /login`.
pub async fn submit(
    State(app): State<Arc<AppState>>,
    extensions: Extensions,
    form: Result<Form<LoginForm>, FormRejection>,
) -> Result<Response, ConsoleError> {
    let Ok(Form(form)) = form else {
        return Err(ConsoleError::BadRequest(
            "The sign-in form was not sent as a form.".into(),
        ));
    };
    let name = form.name.trim().to_owned();
    let peer = extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip());
    if let Verdict::Denied {
        limit,
        retry_after_secs,
    } = login_limit::check(&app.cache, &name, peer).await
    {
        return too_many(&name, &form.next, peer, limit, retry_after_secs);
    }
    let role = {
        let _permit = app.login_permits.acquire().await.ok();
        users::verify(app.users.current().await, name.clone(), form.password).await
    };
    let shown_name = clip(&name, 64);
    let Some(role) = role else {
        metrics::counter!("console_logins_total", "outcome" => "refused").increment(1);
        audit(&shown_name, "", "login", &Subject::default(), "refused");
        let page = render(&LoginPage {
            nav: Nav::login(),
            next: safe_next(Some(&form.next)).to_owned(),
            name: shown_name,
            problem: Some(REFUSED.to_owned()),
        })?;
        return Ok((StatusCode::UNAUTHORIZED, page).into_response());
    };
    metrics::counter!("console_logins_total", "outcome" => "ok").increment(1);
    audit(&name, role.as_str(), "login", &Subject::default(), "ok");
    let claims = new_claims(&name, role, now_secs());
    let mut response = Redirect::to(safe_next(Some(&form.next))).into_response();
    if let Ok(cookie) = HeaderValue::from_str(&app.sessions.set_cookie(&claims)) {
        response.headers_mut().append(SET_COOKIE, cookie);
    }
    Ok(response)
}

/// The answer to an attempt over a limit: the form again with how long to wait, 429 and
/// `Retry-After`; audited with the name tried and the address.
fn too_many(
    name: &str,
    next: &str,
    peer: Option<std::net::IpAddr>,
    limit: &'static str,
    retry_after_secs: u64,
) -> Result<Response, ConsoleError> {
    metrics::counter!("console_logins_total", "outcome" => "rate_limited").increment(1);
    let shown_name = clip(name, 64);
    let address = peer.map(|ip| format!("address:{ip}"));
    let subject = Subject {
        target: address.as_deref(),
        ..Subject::default()
    };
    audit(
        &shown_name,
        "",
        "login",
        &subject,
        &format!("refused: too many attempts (per {limit})"),
    );
    let page = render(&LoginPage {
        nav: Nav::login(),
        next: safe_next(Some(next)).to_owned(),
        name: shown_name,
        problem: Some(format!(
            "Too many sign-in attempts. Wait {} and try again.",
            login_limit::wait_words(retry_after_secs)
        )),
    })?;
    let mut response = (StatusCode::TOO_MANY_REQUESTS, page).into_response();
    response
        .headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from(retry_after_secs));
    Ok(response)
}

/// `POST /logout`: clears the cookie (whatever its state) and goes to the form.
pub async fn logout(State(app): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    if let Some(value) = app.sessions.cookie_of(&headers)
        && let Ok((_, user)) = check(&app, value, now_secs()).await
    {
        user.audit("logout", &Subject::default(), "ok");
    }
    let mut response = Redirect::to("/login").into_response();
    if let Ok(cookie) = HeaderValue::from_str(&app.sessions.clear_cookie()) {
        response.headers_mut().append(SET_COOKIE, cookie);
    }
    response
}
