//! A real SMTP server of the test's own (aiosmtpd, see `crates/testkit/smtp/ncy_test_smtp.py`) on a
//! free loopback port, for tests of what the worker sends. Each accepted message is written to the
//! server's own folder as JSON and read back with [`SmtpServer::messages`].
//!
//! The server refuses recipients by address, so a test picks its fault: `reject@…` gets 550
//! (permanent), `busy@…` gets 451 (transient), `down@…` gets 421 (service not available). An
//! outage is [`SmtpServer::stop`] then [`SmtpServer::restart`]: the server comes back on the same
//! port with the messages it had. The Python environment is created on first use by
//! `scripts/test-peers.sh` (under a lock, so parallel tests do not race).
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// First start may install aiosmtpd into the venv.
const START_TIMEOUT: Duration = Duration::from_secs(180);

/// One message the server accepted.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReceivedEmail {
    /// Envelope sender (`MAIL FROM`).
    pub mail_from: String,
    /// Envelope recipients (`RCPT TO`) that were accepted.
    pub rcpt_tos: Vec<String>,
    pub subject: String,
    /// `From:` header.
    pub from: String,
    /// `To:` header.
    pub to: String,
    /// `Cc:` header ("" when absent).
    pub cc: String,
    /// Top-level MIME type, e.g. `multipart/alternative`.
    pub content_type: String,
    /// The decoded `text/plain` part, if any.
    pub text: Option<String>,
    /// The decoded `text/html` part, if any.
    pub html: Option<String>,
    /// The message as received.
    pub raw: String,
}

impl ReceivedEmail {
    /// Asserts that the message has links, and that every `href` of its HTML part and every URL of
    /// its text part starts with `app`.
    pub fn assert_links_point_at(&self, app: &str) {
        let html = self
            .html
            .as_deref()
            .expect("an HTML part")
            .replace("&#x2f;", "/");
        let text = self.text.as_deref().expect("a text part");
        let hrefs: Vec<&str> = html
            .split("href=\"")
            .skip(1)
            .filter_map(|rest| rest.split('"').next())
            .collect();
        let urls: Vec<&str> = text
            .split_whitespace()
            .filter(|w| w.contains("://"))
            .collect();
        assert!(
            !hrefs.is_empty() && !urls.is_empty(),
            "links: {html} {text}"
        );
        for link in hrefs.iter().chain(&urls) {
            assert!(link.starts_with(app), "{link} in {html} {text}");
        }
    }
}

/// A running aiosmtpd server owned by one test; stopped (by its handle) when dropped.
pub struct SmtpServer {
    /// Its port on 127.0.0.1.
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl SmtpServer {
    /// Starts the server on a free port and waits until it listens.
    pub async fn start() -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let (child, port) = spawn(dir.path(), 0).await?;
        Ok(Self {
            port,
            dir,
            child: Some(child),
        })
    }

    /// Starts the server again on its port, after [`SmtpServer::stop`] (or stops it first), and
    /// waits until it listens; the messages received before are kept. Fails if another process
    /// took the port meanwhile.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.stop().await;
        let (child, port) = spawn(self.dir.path(), self.port).await?;
        anyhow::ensure!(port == self.port, "restarted on {port}, not {}", self.port);
        self.child = Some(child);
        Ok(())
    }

    /// `smtp://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// Every message received so far, oldest first.
    pub fn messages(&self) -> anyhow::Result<Vec<ReceivedEmail>> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(self.dir.path())?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        files.sort();
        files
            .iter()
            .map(|p| {
                let text = std::fs::read_to_string(p)?;
                serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))
            })
            .collect()
    }

    /// Waits until at least `n` messages arrived, then returns all of them.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<ReceivedEmail> {
        crate::assert_eventually(
            &format!("{n} message(s) at the SMTP server"),
            timeout,
            || {
                let got = self.messages().map(|m| m.len()).unwrap_or(0);
                async move { got >= n }
            },
        )
        .await;
        self.messages().unwrap_or_default()
    }

    /// Stops the server (SIGKILL, by its handle).
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
        }
    }
}

/// Runs the server writing to `dir` on `port` (0: a free one) and waits until it listens;
/// returns it and its port.
async fn spawn(dir: &std::path::Path, port: u16) -> anyhow::Result<(Child, u16)> {
    let mut child = Command::new("bash")
        .arg(script())
        .arg("smtp")
        .arg(dir)
        .arg(port.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| anyhow::anyhow!("cannot start {}: {e}", script().display()))?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| anyhow::anyhow!("no stdout"))?;
    let mut first = String::new();
    let mut reader = BufReader::new(stdout);
    let listening = match tokio::time::timeout(START_TIMEOUT, reader.read_line(&mut first)).await {
        Ok(Ok(_)) => first.trim().parse::<u16>().ok(),
        _ => None,
    };
    let Some(listening) = listening else {
        let _ = child.kill().await;
        anyhow::bail!("the test SMTP server did not start on port {port} (first line: {first:?})");
    };
    Ok((child, listening))
}

/// `scripts/test-peers.sh` of this workspace.
fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/test-peers.sh")
}

/// The `moto_server` (an S3-compatible server) of the pinned test venv, created if missing by
/// `scripts/test-peers.sh` (which `scripts/deps.sh up` also runs).
pub fn moto_server_bin() -> anyhow::Result<PathBuf> {
    let out = std::process::Command::new("bash")
        .arg(script())
        .arg("moto-bin")
        .stderr(std::process::Stdio::inherit())
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "scripts/test-peers.sh moto-bin failed ({})",
        out.status
    );
    Ok(PathBuf::from(String::from_utf8(out.stdout)?.trim()))
}
