//! The `ncy-console` binary as a process: bad configuration exits 64 naming the setting, a good
//! one serves until SIGTERM and exits 0 (its log holding one audit line per sign-in, action and
//! sign-out, and no password), and `hash-password` prints a hash the users file takes.
use std::{
    io::Write,
    net::SocketAddr,
    process::{Command, Stdio},
    time::Duration,
};

use argon2::{
    Argon2,
    password_hash::{PasswordVerifier, phc::PasswordHash},
};
use ncy_testkit::{assert_eventually, free_port, http_get, run_to_exit, set_env};

use crate::support::{Backbone, Browser, OPERATOR, Origin, console_env, users_toml};

const BINARY: &str = env!("CARGO_BIN_EXE_ncy-console");

#[tokio::test]
async fn bad_configuration_exits_64_naming_the_setting() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let env = console_env("127.0.0.1:1".parse()?, &dir)?;
    let bad_role = dir.path().join("bad-role.toml");
    std::fs::write(&bad_role, users_toml(&[("ana", "admin", "pw")]))?;
    let not_phc = dir.path().join("not-phc.toml");
    std::fs::write(
        &not_phc,
        "[[users]]\nname = \"ana\"\nrole = \"viewer\"\npassword_hash = \"hunter2\"\n",
    )?;
    let empty = dir.path().join("empty.toml");
    std::fs::write(&empty, "")?;
    let cases: Vec<(&str, Option<String>)> = vec![
        ("NCY_CONSOLE_USERS_FILE", None),
        ("NCY_CONSOLE_USERS_FILE", Some("/no/such/users.toml".into())),
        (
            "NCY_CONSOLE_USERS_FILE",
            Some(bad_role.to_string_lossy().into()),
        ),
        (
            "NCY_CONSOLE_USERS_FILE",
            Some(not_phc.to_string_lossy().into()),
        ),
        (
            "NCY_CONSOLE_USERS_FILE",
            Some(empty.to_string_lossy().into()),
        ),
        ("NCY_CONSOLE_SESSION_SECRET", None),
        (
            "NCY_CONSOLE_SESSION_SECRET",
            Some("only-31-characters-long-secret!".into()),
        ),
        ("NCY_CONSOLE_SESSION_IDLE_SECS", Some("soon".into())),
        ("NCY_CONSOLE_SECURE_COOKIE", Some("perhaps".into())),
    ];
    for (var, value) in cases {
        let mut env = env.clone();
        match &value {
            Some(v) => set_env(&mut env, var, v),
            None => env.retain(|(k, _)| k != var),
        }
        let (code, stderr) = run_to_exit(BINARY, &env)?;
        assert_eq!(code, Some(64), "{var}={value:?}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
        assert!(stderr.contains(var), "{var}={value:?} named: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    Ok(())
}

#[tokio::test]
async fn serves_until_sigterm_then_exits_0_with_an_audit_trail() -> anyhow::Result<()> {
    let backbone = Backbone::start().await?;
    let dir = tempfile::tempdir()?;
    let mut env = console_env(backbone.addr, &dir)?;
    let (http, admin) = (free_port(), free_port());
    set_env(&mut env, "NCY_CONSOLE_ADDR", &format!("127.0.0.1:{http}"));
    set_env(&mut env, "NCY_ADMIN_ADDR", &format!("127.0.0.1:{admin}"));
    set_env(&mut env, "RUST_LOG", "warn,audit=info");
    let child = Command::new(BINARY)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let admin = SocketAddr::from(([127, 0, 0, 1], admin));
    assert_eventually(
        "/readyz answers 200",
        Duration::from_secs(20),
        || async move { matches!(http_get(admin, "/readyz").await, Ok((200, _))) },
    )
    .await;
    let (code, metrics) = http_get(admin, "/metrics").await?;
    assert_eq!(code, 200);
    assert!(
        !metrics.contains("redis"),
        "the console has no Redis: {metrics}"
    );

    let mut browser = Browser::new(SocketAddr::from(([127, 0, 0, 1], http)));
    assert_eq!(
        browser.login(OPERATOR.0, "a wrong password").await?.status,
        401
    );
    assert_eq!(browser.login(OPERATOR.0, OPERATOR.1).await?.status, 303);
    let paused = browser
        .post("/queues/email/pause", &[], Origin::Console)
        .await?;
    assert_eq!(paused.status, 303);
    assert_eq!(
        browser.post("/logout", &[], Origin::Console).await?.status,
        303
    );

    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()?
            .success()
    );
    let output = tokio::task::spawn_blocking(move || child.wait_with_output()).await??;
    assert!(
        output.status.success(),
        "clean exit on SIGTERM, got {}",
        output.status
    );

    let logs = String::from_utf8(output.stdout)?;
    assert!(
        !logs.contains("a wrong password") && !logs.contains(OPERATOR.1),
        "no password logged"
    );
    let audit: Vec<serde_json::Value> = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|l| l["target"] == "audit")
        .collect();
    let seen: Vec<(String, String, String)> = audit
        .iter()
        .map(|l| {
            let field = |k: &str| l[k].as_str().unwrap_or_default().to_owned();
            (field("user"), field("action"), field("outcome"))
        })
        .collect();
    let expected = [
        (OPERATOR.0, "login", "refused"),
        (OPERATOR.0, "login", "ok"),
        (OPERATOR.0, "pause_queue", "paused"),
        (OPERATOR.0, "logout", "ok"),
    ];
    for (user, action, outcome) in expected {
        assert!(
            seen.iter()
                .any(|(u, a, o)| u == user && a == action && o == outcome),
            "{user} {action} {outcome} in {seen:?}"
        );
    }
    let pause = audit
        .iter()
        .find(|l| l["action"] == "pause_queue")
        .ok_or_else(|| anyhow::anyhow!("no pause line"))?;
    assert_eq!(pause["queue"], "email");
    assert_eq!(pause["role"], "operator");
    backbone.stop().await
}

#[test]
fn hash_password_prints_an_argon2_hash_of_stdin() -> anyhow::Result<()> {
    let mut child = Command::new(BINARY)
        .arg("hash-password")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    child
        .stdin
        .take()
        .ok_or_else(|| anyhow::anyhow!("no stdin"))?
        .write_all(b"correct horse battery staple\n")?;
    let output = child.wait_with_output()?;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout)?;
    let hash = PasswordHash::new(text.trim()).map_err(|e| anyhow::anyhow!("{e}: {text}"))?;
    assert_eq!(hash.algorithm.as_str(), "argon2id");
    assert!(
        Argon2::default()
            .verify_password(b"correct horse battery staple", &hash)
            .is_ok()
    );
    assert!(
        Argon2::default()
            .verify_password(b"correct horse battery staple\n", &hash)
            .is_err(),
        "the line ending is not part of the password"
    );

    let empty = Command::new(BINARY)
        .arg("hash-password")
        .stdin(Stdio::null())
        .output()?;
    assert_eq!(
        empty.status.code(),
        Some(64),
        "an empty password is refused"
    );
    Ok(())
}
