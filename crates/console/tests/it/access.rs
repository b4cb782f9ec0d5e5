//! Who gets in and what they may do, seen from a browser: sign-in and its cookie, refused
//! sessions (tampered, idle, user gone, role changed), sign-out, cross-site requests, viewers'
//! actions, and the headers every response carries.
use std::time::Duration;

use ncy_console::session::{Claims, SessionKey, now_secs};
use secrecy::SecretString;

use crate::support::{Backbone, Console, OPERATOR, Origin, SECRET, VIEWER, users_toml};

#[tokio::test]
async fn pages_need_a_session_and_sign_in_sets_a_strict_cookie() -> anyhow::Result<()> {
    let backbone = Backbone::start().await?;
    let console = Console::start(backbone.addr).await?;
    let mut browser = console.browser();

    for path in [
        "/",
        "/queues/email",
        "/jobs/some-id",
        "/dead",
        "/events/overview",
    ] {
        let page = browser.get(path).await?;
        assert_eq!(page.status, 303, "{path}");
        let location = page.location().unwrap_or_default();
        assert!(location.starts_with("/login"), "{path} → {location}");
    }
    let page = browser.get("/queues/email?state=dead").await?;
    assert_eq!(
        page.location(),
        Some("/login?next=%2Fqueues%2Femail%3Fstate%3Ddead")
    );
    let form = browser.get("/login").await?;
    assert_eq!(form.status, 200);
    assert!(form.body.contains("name=\"password\""), "{}", form.body);

    // Wrong password and unknown user: the same answer.
    let wrong = browser.login(OPERATOR.0, "not the password").await?;
    let unknown = browser.login("nobody", OPERATOR.1).await?;
    for page in [&wrong, &unknown] {
        assert_eq!(page.status, 401);
        assert!(
            page.body.contains("Unknown user or wrong password."),
            "{}",
            page.body
        );
        assert!(page.set_cookies().is_empty());
    }
    assert!(
        !wrong.body.contains("not the password"),
        "the password is not echoed"
    );
    assert!(browser.cookie.is_none());

    let signed_in = browser
        .post(
            "/login",
            &[
                ("name", OPERATOR.0),
                ("password", OPERATOR.1),
                ("next", "/queues/email?state=dead"),
            ],
            Origin::Console,
        )
        .await?;
    assert_eq!(signed_in.status, 303);
    assert_eq!(signed_in.location(), Some("/queues/email?state=dead"));
    let cookie = signed_in.set_cookies().join("\n");
    for attribute in [
        "ncy_console=",
        "HttpOnly",
        "SameSite=Strict",
        "Path=/",
        "Max-Age=1800",
    ] {
        assert!(cookie.contains(attribute), "{attribute} in {cookie}");
    }
    assert!(
        !cookie.contains("Secure"),
        "not Secure unless configured: {cookie}"
    );

    let overview = browser.get("/").await?;
    assert_eq!(overview.status, 200, "{}", overview.body);
    assert!(overview.body.contains(OPERATOR.0) && overview.body.contains("operator"));
    assert!(
        overview
            .set_cookies()
            .iter()
            .any(|c| c.starts_with("ncy_console=")),
        "the session is sent again on use (sliding idle timeout)"
    );

    // An open redirect is no place to go after signing in.
    let mut other = console.browser();
    let page = other
        .post(
            "/login",
            &[
                ("name", VIEWER.0),
                ("password", VIEWER.1),
                ("next", "//evil.example/"),
            ],
            Origin::Console,
        )
        .await?;
    assert_eq!(page.location(), Some("/"));

    console.stop().await?;
    backbone.stop().await
}

#[tokio::test]
async fn behind_tls_the_cookie_is_secure_and_host_only() -> anyhow::Result<()> {
    let backbone = Backbone::start().await?;
    let console =
        Console::start_with(backbone.addr, &[("NCY_CONSOLE_SECURE_COOKIE", "true")]).await?;
    let mut browser = console.browser();
    let page = browser.login(OPERATOR.0, OPERATOR.1).await?;
    assert_eq!(page.status, 303);
    let cookie = page.set_cookies().join("\n");
    assert!(
        cookie.starts_with("__Host-ncy_console=") && cookie.contains("; Secure"),
        "{cookie}"
    );
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
    console.stop().await?;
    backbone.stop().await
}

#[tokio::test]
async fn tampered_idle_and_outdated_sessions_are_refused() -> anyhow::Result<()> {
    let backbone = Backbone::start().await?;
    let console = Console::start(backbone.addr).await?;
    let mut browser = console.signed_in(OPERATOR).await?;
    let good = browser.cookie.clone().unwrap_or_default();
    assert_eq!(browser.get("/").await?.status, 200);

    // One byte flipped, anywhere: refused.
    let mut bytes = good.clone().into_bytes();
    bytes[3] = if bytes[3] == b'A' { b'B' } else { b'A' };
    browser.cookie = Some(String::from_utf8(bytes)?);
    let page = browser.get("/").await?;
    assert_eq!(page.status, 303, "tampered");
    assert!(browser.cookie.is_none(), "the refused cookie is cleared");

    // Signed with the right key but last used longer ago than the idle timeout.
    let key = SessionKey::new(SecretString::from(SECRET), Duration::from_secs(1800), false);
    let now = now_secs();
    let idle = Claims {
        user: OPERATOR.0.into(),
        role: "operator".into(),
        issued_at: now - 4000,
        last_seen: now - 1801,
    };
    browser.cookie = Some(key.sign(&idle));
    assert_eq!(browser.get("/").await?.status, 303, "idle");

    // A session claiming a role the file does not give, or a user the file does not list.
    for (user, role) in [(VIEWER.0, "operator"), ("mallory", "operator")] {
        let claims = Claims {
            user: user.into(),
            role: role.into(),
            issued_at: now,
            last_seen: now,
        };
        browser.cookie = Some(key.sign(&claims));
        assert_eq!(browser.get("/").await?.status, 303, "{user} as {role}");
    }

    // Signed with another secret.
    let other = SessionKey::new(
        SecretString::from("another-secret-another-secret-another-secret"),
        Duration::from_secs(1800),
        false,
    );
    let claims = Claims {
        user: OPERATOR.0.into(),
        role: "operator".into(),
        issued_at: now,
        last_seen: now,
    };
    browser.cookie = Some(other.sign(&claims));
    assert_eq!(browser.get("/").await?.status, 303, "other secret");
    browser.cookie = Some(key.sign(&claims));
    assert_eq!(
        browser.get("/").await?.status,
        200,
        "the same claims, rightly signed"
    );

    console.stop().await?;
    backbone.stop().await
}

#[tokio::test]
async fn the_users_file_decides_on_every_request() -> anyhow::Result<()> {
    let backbone = Backbone::start().await?;
    let console = Console::start(backbone.addr).await?;
    let mut operator = console.signed_in(OPERATOR).await?;
    let mut viewer = console.signed_in(VIEWER).await?;
    assert_eq!(operator.get("/").await?.status, 200);

    // The operator becomes a viewer, the viewer is removed.
    std::fs::write(
        &console.users_file,
        users_toml(&[(OPERATOR.0, "viewer", OPERATOR.1)]),
    )?;
    assert_eq!(operator.get("/").await?.status, 303, "role changed");
    assert_eq!(viewer.get("/").await?.status, 303, "user removed");
    let again = console.signed_in(OPERATOR).await?;
    let mut again = again;
    let page = again.get("/").await?;
    assert!(
        page.body.contains("viewer"),
        "signed in again with the new role"
    );

    console.stop().await?;
    backbone.stop().await
}

#[tokio::test]
async fn logout_clears_the_cookie() -> anyhow::Result<()> {
    let backbone = Backbone::start().await?;
    let console = Console::start(backbone.addr).await?;
    let mut browser = console.signed_in(VIEWER).await?;
    let kept = browser.cookie.clone();
    let page = browser.post("/logout", &[], Origin::Console).await?;
    assert_eq!(page.status, 303);
    assert_eq!(page.location(), Some("/login"));
    let cleared = page.set_cookies().join("\n");
    assert!(
        cleared.contains("ncy_console=;") && cleared.contains("Max-Age=0"),
        "{cleared}"
    );
    assert!(browser.cookie.is_none());
    assert_eq!(browser.get("/").await?.status, 303);

    // What logout cannot do in this slice (no server-side revocation): a copy taken before
    // stays valid until its idle timeout.
    browser.cookie = kept;
    assert_eq!(browser.get("/").await?.status, 200);

    console.stop().await?;
    backbone.stop().await
}

#[tokio::test]
async fn cross_site_posts_are_refused_login_included() -> anyhow::Result<()> {
    let backbone = Backbone::start().await?;
    let console = Console::start(backbone.addr).await?;
    let mut browser = console.browser();
    for from in [Origin::Evil, Origin::Absent] {
        let page = browser
            .post(
                "/login",
                &[("name", OPERATOR.0), ("password", OPERATOR.1)],
                from,
            )
            .await?;
        assert_eq!(page.status, 403, "{from:?}");
        assert!(browser.cookie.is_none());
    }
    let mut operator = console.signed_in(OPERATOR).await?;
    for from in [Origin::Evil, Origin::Absent] {
        let page = operator.post("/queues/email/pause", &[], from).await?;
        assert_eq!(page.status, 403, "{from:?}");
    }
    assert!(!backbone.stats("email").await?.paused);
    console.stop().await?;
    backbone.stop().await
}

#[tokio::test]
async fn responses_carry_the_security_headers_and_assets_are_cached() -> anyhow::Result<()> {
    let backbone = Backbone::start().await?;
    let console = Console::start(backbone.addr).await?;
    let mut browser = console.signed_in(VIEWER).await?;
    for path in ["/", "/login", "/jobs/nope", "/no/such/page"] {
        let page = browser.get(path).await?;
        let csp = page.header("content-security-policy").unwrap_or_default();
        assert!(
            csp.contains("default-src 'self'") && csp.contains("frame-ancestors 'none'"),
            "{path}: {csp}"
        );
        assert_eq!(
            page.header("x-content-type-options"),
            Some("nosniff"),
            "{path}"
        );
        assert_eq!(
            page.header("referrer-policy"),
            Some("same-origin"),
            "{path}"
        );
    }
    assert_eq!(
        browser.get("/").await?.header("cache-control"),
        Some("no-store")
    );
    let mut anonymous = console.browser();
    for (path, kind) in [
        ("/static/console.js", "text/javascript"),
        ("/static/console.css", "text/css"),
    ] {
        let page = anonymous.get(path).await?;
        assert_eq!(page.status, 200, "{path} needs no session");
        assert!(
            page.header("content-type")
                .unwrap_or_default()
                .starts_with(kind)
        );
        assert!(
            page.header("cache-control")
                .unwrap_or_default()
                .contains("max-age=31536000")
        );
    }
    let script = anonymous.get("/static/console.js").await?.body;
    assert!(script.contains("EventSource") && script.contains("data-confirm"));
    console.stop().await?;
    backbone.stop().await
}
