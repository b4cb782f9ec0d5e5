//! The `ncy-console` binary as a process: bad configuration exits 64 naming the setting, a good
//! one serves until SIGTERM and exits 0, and `hash-password` prints a hash the users file takes.
use std::{
    io::Write,
    process::{Command, Stdio},
    time::Duration,
};

use argon2::{
    Argon2,
    password_hash::{PasswordVerifier, phc::PasswordHash},
};
use ncy_testkit::{ChildService, assert_eventually, free_port, http_get, run_to_exit, set_env};

use crate::support::{Backbone, console_env, users_toml};

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
async fn serves_until_sigterm_then_exits_0() -> anyhow::Result<()> {
    let backbone = Backbone::start().await?;
    let dir = tempfile::tempdir()?;
    let mut env = console_env(backbone.addr, &dir)?;
    let (http, admin) = (free_port(), free_port());
    set_env(&mut env, "NCY_CONSOLE_ADDR", &format!("127.0.0.1:{http}"));
    set_env(&mut env, "NCY_ADMIN_ADDR", &format!("127.0.0.1:{admin}"));
    let child = ChildService::start(BINARY, &env)?;
    let admin = std::net::SocketAddr::from(([127, 0, 0, 1], admin));
    assert_eventually(
        "/readyz answers 200",
        Duration::from_secs(20),
        || async move { matches!(http_get(admin, "/readyz").await, Ok((200, _))) },
    )
    .await;
    let (code, _) = http_get(std::net::SocketAddr::from(([127, 0, 0, 1], http)), "/login").await?;
    assert_eq!(code, 200);
    let status = child.terminate(Duration::from_secs(15)).await?;
    assert!(status.success(), "clean exit on SIGTERM, got {status}");
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
