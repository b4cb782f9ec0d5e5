//! What the email tests share: a stack whose worker sends through an SMTP server of the test's
//! own, with FRONTEND_URL set, since every link of an email must point there.
use super::jobs::StackEnv;

/// FRONTEND_URL of the email stacks.
pub const APP: &str = "https://app.ncy.test";

/// A stack whose worker sends email through `smtp_url`; `extra` on top.
pub async fn stack(smtp_url: &str, extra: &[(&str, &str)]) -> anyhow::Result<StackEnv> {
    let base = [
        ("NCY_SMTP_URL", smtp_url),
        ("NCY_SMTP_FROM", "NCY Tests <noreply@ncy.test>"),
        ("NCY_SMTP_TIMEOUT_MS", "5000"),
        ("FRONTEND_URL", APP),
    ];
    StackEnv::new(&[&base[..], extra].concat()).await
}
