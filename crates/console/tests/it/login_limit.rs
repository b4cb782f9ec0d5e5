//! Sign-in attempts are counted through a real cache-gateway: past the per-name limit even the
//! right password is answered 429 (with the form, a wait and `Retry-After`) while another name
//! still signs in; with the cache-gateway down, sign-in still works (fail open) and says so in
//! `/metrics`.
use ncy_console::login_limit::PER_NAME;

use crate::support::{
    Console, NO_CACHE_GATEWAY, OPERATOR, VIEWER,
    gateways::{CacheGateway, no_scheduler},
};

#[tokio::test]
async fn past_the_limit_a_name_is_refused_even_with_its_password_and_others_sign_in()
-> anyhow::Result<()> {
    let gateway = CacheGateway::start().await?;
    let console =
        Console::start_with(no_scheduler(), &[("NCY_CONSOLE_CACHE_URL", &gateway.url())]).await?;
    let mut browser = console.browser();
    for attempt in 1..=PER_NAME {
        let page = browser.login(OPERATOR.0, "not the password").await?;
        assert_eq!(page.status, 401, "attempt {attempt}: {}", page.body);
    }
    let page = browser.login(OPERATOR.0, OPERATOR.1).await?;
    assert_eq!(page.status, 429, "{}", page.body);
    assert!(browser.cookie.is_none(), "no session past the limit");
    assert!(
        page.body.contains("Too many sign-in attempts. Wait"),
        "{}",
        page.body
    );
    assert!(page.body.contains("<form class=\"login\""), "{}", page.body);
    let retry_after: u64 = page
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!(
        (1..=300).contains(&retry_after),
        "Retry-After {retry_after}"
    );

    let other = browser.login(VIEWER.0, VIEWER.1).await?;
    assert_eq!(other.status, 303, "{}", other.body);
    assert!(browser.cookie.is_some());
    console.stop().await?;
    gateway.stop().await
}

#[tokio::test]
async fn with_the_cache_gateway_down_sign_in_still_works() -> anyhow::Result<()> {
    let console = Console::start_with(
        no_scheduler(),
        &[("NCY_CONSOLE_CACHE_URL", NO_CACHE_GATEWAY)],
    )
    .await?;
    let mut browser = console.browser();
    let wrong = browser.login(OPERATOR.0, "not the password").await?;
    assert_eq!(wrong.status, 401, "{}", wrong.body);
    for _ in 0..=PER_NAME {
        let page = browser.login(OPERATOR.0, OPERATOR.1).await?;
        assert_eq!(page.status, 303, "{}", page.body);
        assert!(browser.cookie.is_some());
    }
    let metrics = reqwest::get(format!("http://{}/metrics", console.admin))
        .await?
        .text()
        .await?;
    let unchecked: f64 = metrics
        .lines()
        .find(|l| l.starts_with("console_login_limit_unchecked_total"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0.0);
    assert!(unchecked >= f64::from(PER_NAME) + 2.0, "{metrics}");
    console.stop().await
}
