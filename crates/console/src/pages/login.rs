//! Signing in and out: `GET /login` (the form), `POST /login`, `POST /logout`.
//!
//! A failed sign-in answers 401 with the same words whether the name is unknown or the password
//! wrong, after the same argon2 work (see [`crate::users::verify`]), and is audited with the name
//! tried, never the password. At most [`crate::LOGIN_CONCURRENCY`] verifications run at once, so
//! a flood of sign-ins costs the console bounded CPU and memory (argon2 is made to be expensive).
use std::sync::Arc;

use askama::Template;
use axum::{
    Form,
    extract::{Query, State, rejection::FormRejection},
    response::{IntoResponse, Redirect, Response},
};
use http::{HeaderMap, HeaderValue, StatusCode, header::SET_COOKIE};
use serde::Deserialize;

use super::{Nav, clip, render};
use crate::{
    AppState,
    access::{Subject, audit, check, safe_next},
    error::ConsoleError,
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
    problem: Option<&'static str>,
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
    form: Result<Form<LoginForm>, FormRejection>,
) -> Result<Response, ConsoleError> {
    let Ok(Form(form)) = form else {
        return Err(ConsoleError::BadRequest(
            "The sign-in form was not sent as a form.".into(),
        ));
    };
    let name = form.name.trim().to_owned();
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
            problem: Some(REFUSED),
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
