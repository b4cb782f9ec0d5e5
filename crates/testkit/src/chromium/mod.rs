//! Headless Chromium for the tests that need a real browser (the realtime gateway's JavaScript
//! client, the console's pages), driven over the Chrome DevTools Protocol (CDP) with
//! tokio-tungstenite: no Node, no Playwright.
//!
//! [`Chromium::launch`] starts the Debian `chromium` binary with a fresh profile in a temporary
//! directory and `--remote-debugging-port=0`, and reads the port it picked from
//! `<profile>/DevToolsActivePort`. Dropping it kills the browser by PID (also when a test panics)
//! and removes the profile. [`Chromium::open_page`] opens a tab on its own CDP connection
//! (`Target.createTarget` + a flattened session) and returns a [`Page`] (see `page.rs` for what a
//! test can do with it).
//!
//! [`binary_or_skip`] is how a test finds the browser: without one it is skipped with a note on
//! stderr, or fails when `CI` is set (CI installs it).

mod page;

use std::{
    io::Write,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use serde_json::json;
use tokio_tungstenite::connect_async;

pub use page::{Cookie, Page};

/// How long to wait for the browser or the page.
pub const WAIT: Duration = Duration::from_secs(20);

/// Flags for a headless browser on a machine with no network beyond loopback.
const FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--remote-debugging-port=0",
];

/// The Chromium binary: `NCY_CHROMIUM`, else `chromium` or `chromium-browser` on `PATH`.
pub fn binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("NCY_CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| ["chromium", "chromium-browser"].map(|name| dir.join(name)))
        .find(|p| p.is_file())
}

/// The binary, or `None` after printing why the test is skipped. Under CI (`CI` set) a missing
/// browser fails the test instead: CI installs it with `scripts/deps.sh up`.
pub fn binary_or_skip(test: &str) -> Option<PathBuf> {
    let found = binary();
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "{test}: Chromium not found (NCY_CHROMIUM, or chromium on PATH); \
             `scripts/deps.sh up` installs Debian's chromium package"
        );
        // Straight to stderr, past the test harness's output capture, so the skip is seen.
        let _ = writeln!(
            std::io::stderr(),
            "{test}: skipped, Chromium not found (install it: apt-get install chromium, \
             or run scripts/deps.sh up; NCY_CHROMIUM=<path> to use another binary)"
        );
    }
    found
}

/// A running headless Chromium; killed by PID when dropped.
pub struct Chromium {
    child: Child,
    /// The DevTools port on 127.0.0.1.
    pub port: u16,
    browser_path: String,
    dir: tempfile::TempDir,
}

impl Chromium {
    pub async fn launch(binary: &Path) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let profile = dir.path().join("profile");
        let log = std::fs::File::create(dir.path().join("chromium.log")).unwrap();
        let child = Command::new(binary)
            .args(FLAGS)
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            // Its scratch files (left behind when it is killed) go into the directory removed on drop.
            .env("TMPDIR", dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        let mut browser = Self {
            child,
            port: 0,
            browser_path: String::new(),
            dir,
        };
        let active = profile.join("DevToolsActivePort");
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            // The file is written whole once the port is open: "<port>\n<browser ws path>".
            let text = std::fs::read_to_string(&active).unwrap_or_default();
            if let Some((port, path)) = text.split_once('\n')
                && let Ok(port) = port.trim().parse()
                && path.starts_with('/')
            {
                browser.port = port;
                browser.browser_path = path.trim().to_owned();
                return browser;
            }
            if let Some(status) = browser.child.try_wait().unwrap() {
                panic!(
                    "chromium exited ({status}) before opening DevTools\n{}",
                    browser.log()
                );
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "chromium wrote no DevToolsActivePort within {WAIT:?}\n{}",
                browser.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The last lines of the browser's stderr, for failure messages.
    pub fn log(&self) -> String {
        let text =
            std::fs::read_to_string(self.dir.path().join("chromium.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Opens a tab on its own CDP connection and navigates it to `url` (without waiting for the
    /// page to load: see [`Page::wait_for`] and [`Page::goto`]).
    pub async fn open_page(&self, url: &str) -> Page {
        let endpoint = format!("ws://127.0.0.1:{}{}", self.port, self.browser_path);
        let (ws, _) = connect_async(endpoint).await.unwrap();
        let mut page = Page::new(ws);
        let target = page
            .call("Target.createTarget", json!({"url": "about:blank"}))
            .await;
        let attached = page
            .call(
                "Target.attachToTarget",
                json!({"targetId": target["targetId"], "flatten": true}),
            )
            .await;
        page.attach(attached["sessionId"].as_str().unwrap());
        page.call("Runtime.enable", json!({})).await;
        page.call("Log.enable", json!({})).await;
        let nav = page.call("Page.navigate", json!({"url": url})).await;
        assert!(nav.get("errorText").is_none(), "navigating to {url}: {nav}");
        page
    }
}

impl Drop for Chromium {
    fn drop(&mut self) {
        // SIGKILL to the browser process (the wrapper script execs it); its helper processes
        // exit when it does. The profile directory goes with `dir` afterwards.
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}
