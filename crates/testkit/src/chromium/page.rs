//! One browser tab over its own CDP connection, and what a test does with it: send CDP commands,
//! evaluate JavaScript, wait for a condition in the page with a deadline, navigate, click like a
//! user (mouse events at the element's centre), type into inputs, answer `confirm()` dialogs, read
//! the browser's cookies (HttpOnly ones too, which `document.cookie` hides), take PNG screenshots,
//! and read what the page reports with `console.log("ncy-event <json>")`.
//!
//! Everything waits at most [`WAIT`] and then panics with the page's recent errors and console
//! output, so a failing test says what the page saw.

use std::{collections::VecDeque, path::Path, time::Duration};

use base64::Engine;
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, tungstenite::Message};

use super::WAIT;

/// Console events kept for [`Page::next`] at most (a page that logs without anyone reading them
/// drops the oldest).
const KEEP_EVENTS: usize = 10_000;

/// A cookie as the browser holds it (`Network.getCookies`).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Cookie {
    pub name: String,
    pub value: String,
    pub domain: String,
    pub path: String,
    pub http_only: bool,
    pub secure: bool,
    /// `Strict`, `Lax` or `None`; absent when the cookie did not say.
    #[serde(default)]
    pub same_site: Option<String>,
}

/// One tab, attached over its own CDP connection.
pub struct Page {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// The flattened CDP session of the tab (None while talking to the browser target).
    session: Option<String>,
    next_id: u64,
    /// Console events read while waiting for a command's reply, for [`Page::next`].
    buffered: VecDeque<Value>,
    /// The page's recent errors and other console output, shown when something times out.
    notes: VecDeque<String>,
    /// How to answer a JavaScript dialog (accept or dismiss); `None`: leave it open.
    dialog_answer: Option<bool>,
    /// The messages of the dialogs answered, in order.
    dialogs: Vec<String>,
}

impl Page {
    pub(super) fn new(ws: WebSocketStream<MaybeTlsStream<TcpStream>>) -> Self {
        Self {
            ws,
            session: None,
            next_id: 0,
            buffered: VecDeque::new(),
            notes: VecDeque::new(),
            dialog_answer: None,
            dialogs: Vec::new(),
        }
    }

    pub(super) fn attach(&mut self, session: &str) {
        self.session = Some(session.to_owned());
    }

    /// Sends a CDP command (to the tab's session once attached) and returns its result.
    pub async fn call(&mut self, method: &str, params: Value) -> Value {
        match self.try_call(method, params).await {
            Ok(result) => result,
            Err(error) => panic!("CDP {method} failed: {error}"),
        }
    }

    /// Sends a CDP command and returns its result, or the error CDP answered with.
    pub async fn try_call(&mut self, method: &str, params: Value) -> Result<Value, Value> {
        let id = self.send(method, params).await;
        loop {
            let msg = self.recv(method).await;
            if msg["id"] == id {
                return match msg.get("error") {
                    Some(error) => Err(error.clone()),
                    None => Ok(msg["result"].clone()),
                };
            }
            if page_event(&msg).is_some() {
                if self.buffered.len() == KEEP_EVENTS {
                    self.buffered.pop_front();
                }
                self.buffered.push_back(msg);
            }
        }
    }

    async fn send(&mut self, method: &str, params: Value) -> u64 {
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
        id
    }

    /// Evaluates `expression` in the page and returns its value (JSON-serialisable results only).
    pub async fn evaluate(&mut self, expression: &str) -> Value {
        match self.try_evaluate(expression).await {
            Ok(value) => value,
            Err(why) => panic!("evaluating {expression}: {why}"),
        }
    }

    /// Like [`Page::evaluate`], with an exception or a CDP error (the page is between two
    /// documents) returned as text.
    pub async fn try_evaluate(&mut self, expression: &str) -> Result<Value, String> {
        let params = json!({"expression": expression, "returnByValue": true, "awaitPromise": true});
        let r = self
            .try_call("Runtime.evaluate", params)
            .await
            .map_err(|e| e.to_string())?;
        if let Some(details) = r.get("exceptionDetails") {
            return Err(details.to_string());
        }
        Ok(r["result"]["value"].clone())
    }

    /// Polls `expression` until its value is truthy and returns that value; panics after [`WAIT`]
    /// naming `what`, with the last value seen, the page's address and its recent output.
    pub async fn wait_for(&mut self, what: &str, expression: &str) -> Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        let mut pause = Duration::from_millis(20);
        loop {
            let last = self.try_evaluate(expression).await;
            if let Ok(value) = &last
                && truthy(value)
            {
                return value.clone();
            }
            if tokio::time::Instant::now() >= deadline {
                let at = self.try_evaluate("location.href").await;
                panic!(
                    "timed out after {WAIT:?} waiting for {what}\n  ({expression}) was {last:?}\n  \
                     at {at:?}; page said:\n{}",
                    self.notes()
                );
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(200));
        }
    }

    /// Navigates to `url` and waits until the new document has loaded.
    pub async fn goto(&mut self, url: &str) {
        self.mark_document().await;
        let nav = self.call("Page.navigate", json!({"url": url})).await;
        assert!(nav.get("errorText").is_none(), "navigating to {url}: {nav}");
        self.wait_new_document(url).await;
    }

    /// Clicks the element `selector` names and waits until the document it leads to has loaded
    /// (a link, a form's submit button).
    pub async fn click_and_wait_load(&mut self, selector: &str) {
        self.mark_document().await;
        self.click(selector).await;
        self.wait_new_document(&format!("the page after clicking {selector}"))
            .await;
    }

    /// Marks the current document, so [`Page::wait_new_document`] can tell its successor.
    async fn mark_document(&mut self) {
        self.evaluate("window.__ncyOldDocument = true").await;
    }

    async fn wait_new_document(&mut self, what: &str) {
        self.wait_for(
            &format!("{what} to load"),
            "!window.__ncyOldDocument && document.readyState === 'complete'",
        )
        .await;
    }

    /// Clicks the element `selector` names as a user would: scrolled into view, the left mouse
    /// button pressed and released at its centre. A dialog it opens must be answered (see
    /// [`Page::answer_dialogs`]), else the page hangs and this panics after [`WAIT`].
    pub async fn click(&mut self, selector: &str) {
        let sel = serde_json::to_string(selector).unwrap();
        // As a user would, wait for it to be there: a live fragment may be being replaced.
        self.wait_for(
            &format!("{selector} to click"),
            &format!("document.querySelector({sel}) !== null"),
        )
        .await;
        let at = self
            .evaluate(&format!(
                "(() => {{ const e = document.querySelector({sel}); if (!e) return null; \
                 e.scrollIntoView({{block: 'center', inline: 'center'}}); \
                 const r = e.getBoundingClientRect(); \
                 return [r.left + r.width / 2, r.top + r.height / 2]; }})()"
            ))
            .await;
        let (Some(x), Some(y)) = (at[0].as_f64(), at[1].as_f64()) else {
            panic!(
                "no element {selector} to click at {:?}",
                self.try_evaluate("location.href").await
            );
        };
        for kind in ["mouseMoved", "mousePressed", "mouseReleased"] {
            let mut event = json!({"type": kind, "x": x, "y": y});
            if kind != "mouseMoved" {
                event["button"] = json!("left");
                event["clickCount"] = json!(1);
            }
            self.call("Input.dispatchMouseEvent", event).await;
        }
    }

    /// Focuses the input `selector` names, selects what it holds and types `text` over it.
    pub async fn type_into(&mut self, selector: &str, text: &str) {
        let sel = serde_json::to_string(selector).unwrap();
        let found = self
            .evaluate(&format!(
                "(() => {{ const e = document.querySelector({sel}); if (!e) return false; \
                 e.focus(); if (e.select) e.select(); return document.activeElement === e; }})()"
            ))
            .await;
        assert_eq!(found, json!(true), "no input {selector} to type into");
        self.call("Input.insertText", json!({"text": text})).await;
    }

    /// The trimmed text of the first element `selector` names, if there is one.
    pub async fn text(&mut self, selector: &str) -> Option<String> {
        let sel = serde_json::to_string(selector).unwrap();
        let value = self
            .evaluate(&format!(
                "(() => {{ const e = document.querySelector({sel}); \
                 return e ? e.textContent.trim() : null; }})()"
            ))
            .await;
        value.as_str().map(str::to_owned)
    }

    /// From now on answers every JavaScript dialog (`alert`, `confirm`, `prompt`): accepts it
    /// when `accept`, else dismisses it; [`Page::dialogs`] lists their messages.
    pub async fn answer_dialogs(&mut self, accept: bool) {
        self.call("Page.enable", json!({})).await;
        self.dialog_answer = Some(accept);
    }

    /// The messages of the dialogs answered so far.
    pub fn dialogs(&self) -> &[String] {
        &self.dialogs
    }

    /// The cookies the browser would send to the page's address, HttpOnly ones included.
    pub async fn cookies(&mut self) -> Vec<Cookie> {
        let r = self.call("Network.getCookies", json!({})).await;
        serde_json::from_value(r["cookies"].clone()).unwrap()
    }

    /// Lays the page out as a desktop window of `width` × `height` CSS pixels, one device pixel
    /// each (screenshots are that size).
    pub async fn set_viewport(&mut self, width: u32, height: u32) {
        let metrics =
            json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": false});
        self.call("Emulation.setDeviceMetricsOverride", metrics)
            .await;
    }

    /// A PNG of what the viewport shows.
    pub async fn screenshot(&mut self) -> Vec<u8> {
        let shot = self
            .call("Page.captureScreenshot", json!({"format": "png"}))
            .await;
        let data = shot["data"].as_str().unwrap();
        base64::engine::general_purpose::STANDARD
            .decode(data)
            .unwrap()
    }

    /// Writes [`Page::screenshot`] to `path`.
    pub async fn save_screenshot(&mut self, path: &Path) {
        let png = self.screenshot().await;
        std::fs::write(path, png).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    }

    /// The next `ncy-event` the page logged that satisfies `pred`; earlier ones are skipped.
    /// Panics after [`WAIT`], or at once when the page could not import the client.
    pub async fn next(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        loop {
            let msg = match self.buffered.pop_front() {
                Some(m) => m,
                None => self.recv(what).await,
            };
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

    /// The next message from the browser, once noted and, if it opens a dialog, answered.
    async fn recv(&mut self, what: &str) -> Value {
        let msg = self.read(what).await;
        self.note(&msg);
        if msg["method"] == "Page.javascriptDialogOpening"
            && let Some(accept) = self.dialog_answer
        {
            self.dialogs.push(
                msg["params"]["message"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            );
            // Its reply is read (and dropped) by whichever wait comes next.
            self.send("Page.handleJavaScriptDialog", json!({"accept": accept}))
                .await;
        }
        msg
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

    /// The page's recent errors and console output, one a line.
    pub fn notes(&self) -> String {
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

/// JavaScript's truthiness of a JSON value (`undefined` arrives as null).
fn truthy(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(_) | Value::Object(_) => true,
    }
}
