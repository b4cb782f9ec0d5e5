//! Headless Chromium for the browser test of the JavaScript client, driven over the Chrome DevTools
//! Protocol (CDP) with tokio-tungstenite: no Node, no Playwright.
//!
//! [`Chromium::launch`] starts the Debian `chromium` binary with a fresh profile in a temporary
//! directory and `--remote-debugging-port=0`, and reads the port it picked from
//! `<profile>/DevToolsActivePort`. Dropping it kills the browser by PID (also when a test panics)
//! and removes the profile. [`Chromium::open_page`] opens a tab on its own CDP connection
//! (`Target.createTarget` + a flattened session) and returns a [`Page`], which reads what the page
//! reports with `console.log("ncy-event <json>")` and evaluates expressions in it.

use std::{
    collections::VecDeque,
    io::Write,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async, tungstenite::Message};

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

    /// Opens a tab on its own CDP connection and navigates it to `url`.
    pub async fn open_page(&self, url: &str) -> Page {
        let endpoint = format!("ws://127.0.0.1:{}{}", self.port, self.browser_path);
        let (ws, _) = connect_async(endpoint).await.unwrap();
        let mut page = Page {
            ws,
            session: None,
            next_id: 0,
            buffered: VecDeque::new(),
            notes: VecDeque::new(),
        };
        let target = page
            .call("Target.createTarget", json!({"url": "about:blank"}))
            .await;
        let attached = page
            .call(
                "Target.attachToTarget",
                json!({"targetId": target["targetId"], "flatten": true}),
            )
            .await;
        page.session = Some(attached["sessionId"].as_str().unwrap().to_owned());
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

/// One tab, attached over its own CDP connection.
pub struct Page {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// The flattened CDP session of the tab (None while talking to the browser target).
    session: Option<String>,
    next_id: u64,
    /// Events read while waiting for a command's reply.
    buffered: VecDeque<Value>,
    /// The page's recent errors and other console output, shown when something times out.
    notes: VecDeque<String>,
}

impl Page {
    /// Sends a CDP command (to the tab's session once attached) and returns its result.
    pub async fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut frame = json!({"id": id, "method": method, "params": params});
        if let Some(s) = &self.session {
            frame["sessionId"] = json!(s);
        }
        self.ws
            .send(Message::Text(frame.to_string().into()))
            .await
            .unwrap();
        loop {
            let msg = self.read(method).await;
            if msg["id"] == id {
                assert!(msg.get("error").is_none(), "CDP {method} failed: {msg}");
                return msg["result"].clone();
            }
            self.buffered.push_back(msg);
        }
    }

    /// Evaluates `expression` in the page and returns its value (JSON-serialisable results only).
    pub async fn evaluate(&mut self, expression: &str) -> Value {
        let r = self
            .call(
                "Runtime.evaluate",
                json!({"expression": expression, "returnByValue": true, "awaitPromise": true}),
            )
            .await;
        assert!(
            r.get("exceptionDetails").is_none(),
            "evaluating {expression}: {r}"
        );
        r["result"]["value"].clone()
    }

    /// The next `ncy-event` the page logged that satisfies `pred`; earlier ones are skipped.
    /// Panics after [`WAIT`], or at once when the page could not import the client.
    pub async fn next(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        loop {
            let msg = match self.buffered.pop_front() {
                Some(m) => m,
                None => self.read(what).await,
            };
            self.note(&msg);
            let Some(event) = page_event(&msg) else {
                continue;
            };
            if let Some(err) = event.get("importFailed") {
                panic!(
                    "the page could not import /client.js: {err}\n{}",
                    self.notes()
                );
            }
            if pred(&event) {
                return event;
            }
        }
    }

    async fn read(&mut self, what: &str) -> Value {
        loop {
            let next = match tokio::time::timeout(WAIT, self.ws.next()).await {
                Ok(next) => next,
                Err(_) => panic!("timed out waiting for {what}; page said:\n{}", self.notes()),
            };
            match next {
                Some(Ok(Message::Text(t))) => return serde_json::from_str(&t).unwrap(),
                Some(Ok(_)) => {}
                other => panic!("CDP connection ended ({other:?}) waiting for {what}"),
            }
        }
    }

    /// Keeps what helps explain a failure: exceptions, log entries and stray console output.
    fn note(&mut self, msg: &Value) {
        let p = &msg["params"];
        let line = match msg["method"].as_str() {
            Some("Runtime.exceptionThrown") => {
                let d = &p["exceptionDetails"];
                format!("exception: {} {}", d["text"], d["exception"]["description"])
            }
            Some("Log.entryAdded") => format!(
                "log {}: {} {}",
                p["entry"]["level"], p["entry"]["text"], p["entry"]["url"]
            ),
            Some("Runtime.consoleAPICalled") => {
                format!("console.{}: {}", p["type"], p["args"])
            }
            _ => return,
        };
        if self.notes.len() == 30 {
            self.notes.pop_front();
        }
        self.notes.push_back(line);
    }

    fn notes(&self) -> String {
        Vec::from(self.notes.clone()).join("\n")
    }
}

/// `console.log("ncy-event <json>")` → the JSON.
fn page_event(msg: &Value) -> Option<Value> {
    if msg["method"] != "Runtime.consoleAPICalled" {
        return None;
    }
    let text = msg["params"]["args"][0]["value"].as_str()?;
    serde_json::from_str(text.strip_prefix("ncy-event ")?).ok()
}
