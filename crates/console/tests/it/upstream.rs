//! The console as a client of a scheduler that requires API keys: its key goes with every call,
//! and a missing key or one without the scope is a page saying the console's key is refused.
use crate::support::{Backbone, Console, OPERATOR, Origin, VIEWER};

const FULL_KEY: &str = "console-key-console-key-0001";
const READ_KEY: &str = "reader-key-reader-key-reader-01";

#[tokio::test]
async fn the_console_sends_its_key_and_says_when_it_is_refused() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let keys = dir.path().join("keys.toml");
    std::fs::write(
        &keys,
        format!(
            "[[keys]]\nname = \"console\"\nsecret = \"{FULL_KEY}\"\nscopes = [\"jobs:*\"]\n\n\
             [[keys]]\nname = \"reader\"\nsecret = \"{READ_KEY}\"\nscopes = [\"jobs:read\"]\n"
        ),
    )?;
    let keys = keys.to_string_lossy().into_owned();
    let backbone =
        Backbone::start_with(&[("NCY_API_AUTH", "required"), ("NCY_API_KEYS_FILE", &keys)]).await?;

    let keyed = Console::start_with(backbone.addr, &[("NCY_CONSOLE_API_KEY", FULL_KEY)]).await?;
    let mut operator = keyed.signed_in(OPERATOR).await?;
    let page = operator.get("/").await?;
    assert_eq!(page.status, 200, "{}", page.body);
    assert_eq!(page.cell("email", "waiting").as_deref(), Some("0"));
    let paused = operator
        .post("/queues/email/pause", &[], Origin::Console)
        .await?;
    assert_eq!(paused.status, 303, "{}", paused.body);
    keyed.stop().await?;

    let keyless = Console::start(backbone.addr).await?;
    let mut viewer = keyless.signed_in(VIEWER).await?;
    let page = viewer.get("/").await?;
    assert_eq!(page.status, 502, "{}", page.body);
    assert!(page.body.contains("API key refused"), "{}", page.body);
    assert!(page.body.contains("NCY_CONSOLE_API_KEY"), "{}", page.body);
    assert!(page.body.contains("UNAUTHENTICATED"), "{}", page.body);
    keyless.stop().await?;

    let reader = Console::start_with(backbone.addr, &[("NCY_CONSOLE_API_KEY", READ_KEY)]).await?;
    let mut operator = reader.signed_in(OPERATOR).await?;
    let page = operator.get("/queues/email").await?;
    assert_eq!(page.status, 200, "reads need jobs:read only: {}", page.body);
    assert!(
        page.body.contains("badge paused"),
        "paused through the first console"
    );
    let refused = operator
        .post("/queues/email/resume", &[], Origin::Console)
        .await?;
    assert_eq!(refused.status, 502, "{}", refused.body);
    assert!(
        refused.body.contains("PERMISSION_DENIED"),
        "{}",
        refused.body
    );
    reader.stop().await?;
    backbone.stop().await
}
