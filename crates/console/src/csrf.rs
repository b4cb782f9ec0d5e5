//! Cross-site request forgery: every state-changing request is a POST from a console page, and
//! the browser says where a request comes from.
//!
//! A request other than GET/HEAD is refused (403) when its `Sec-Fetch-Site` is present and not
//! `same-origin`, when its `Origin` is present and names another host than the request's `Host`,
//! or when it has neither header (a browser always sends at least one on a form POST; a request
//! with neither is a script or an old browser we cannot vouch for). The login form is covered too:
//! a forged login would sign the victim in as the attacker.
//!
//! With the `SameSite=Strict` session cookie this is defence in depth. A TLS-terminating proxy in
//! front of the console must pass the browser's `Host` through (nginx ingress does by default).
use axum::{extract::Request, middleware::Next, response::IntoResponse, response::Response};
use http::{HeaderMap, Method, header};

use crate::error::ConsoleError;

/// The middleware in front of every route.
pub async fn same_origin_writes(request: Request, next: Next) -> Response {
    if request.method() != Method::GET
        && request.method() != Method::HEAD
        && let Err(why) = check(request.headers())
    {
        metrics::counter!("console_csrf_refused_total").increment(1);
        tracing::warn!(
            target: "audit",
            action = "cross_site_request",
            path = request.uri().path(),
            outcome = "refused",
            reason = why,
            "refused a state-changing request: {why}"
        );
        return ConsoleError::CrossSite.into_response();
    }
    next.run(request).await
}

/// Whether a state-changing request's headers show it comes from this site; why not otherwise.
pub fn check(headers: &HeaderMap) -> Result<(), &'static str> {
    let site = headers.get("sec-fetch-site");
    let origin = headers.get(header::ORIGIN);
    if site.is_none() && origin.is_none() {
        return Err("neither Origin nor Sec-Fetch-Site");
    }
    if let Some(site) = site
        && site.as_bytes() != b"same-origin"
    {
        return Err("Sec-Fetch-Site is not same-origin");
    }
    if let Some(origin) = origin {
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .ok_or("no Host to compare the Origin with")?;
        let origin = origin.to_str().map_err(|_| "Origin is not text")?;
        if !origin_matches(origin, host) {
            return Err("Origin is another site");
        }
    }
    Ok(())
}

/// `origin` (`scheme://host[:port]`) names `host` (`host[:port]`), default ports aside.
fn origin_matches(origin: &str, host: &str) -> bool {
    let Some((scheme, authority)) = origin.split_once("://") else {
        return false; // `null` and other opaque origins
    };
    if !(scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https"))
        || authority.contains('/')
    {
        return false;
    }
    let normal = |a: &str| {
        a.strip_suffix(":80")
            .or_else(|| a.strip_suffix(":443"))
            .unwrap_or(a)
            .to_ascii_lowercase()
    };
    !authority.is_empty() && normal(authority) == normal(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, http::HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn same_origin_requests_pass() {
        let host = ("host", "console.example:8090");
        assert!(check(&headers(&[host, ("origin", "http://console.example:8090")])).is_ok());
        assert!(check(&headers(&[host, ("sec-fetch-site", "same-origin")])).is_ok());
        assert!(
            check(&headers(&[
                ("host", "Console.Example"),
                ("origin", "https://console.example:443"),
                ("sec-fetch-site", "same-origin"),
            ]))
            .is_ok()
        );
    }

    #[test]
    fn cross_site_or_unknown_requests_are_refused() {
        let host = ("host", "console.example:8090");
        for bad in [
            headers(&[host]),
            headers(&[host, ("origin", "http://evil.example")]),
            headers(&[host, ("origin", "null")]),
            headers(&[host, ("origin", "http://console.example:8091")]),
            headers(&[host, ("origin", "http://console.example:8090.evil.example")]),
            headers(&[host, ("sec-fetch-site", "cross-site")]),
            headers(&[host, ("sec-fetch-site", "same-site")]),
            headers(&[
                host,
                ("sec-fetch-site", "same-origin"),
                ("origin", "http://evil.example"),
            ]),
            headers(&[("origin", "http://console.example:8090")]),
        ] {
            assert!(check(&bad).is_err(), "{bad:?}");
        }
    }
}
