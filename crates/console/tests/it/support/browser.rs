//! A browser for the console's tests: HTTP with the session cookie kept by hand from
//! `Set-Cookie` (so a test sees exactly what a browser is sent), POSTs claiming an origin, pages
//! polled until something shows, and Server-Sent Events read one at a time.
use std::{net::SocketAddr, time::Duration};

/// What a request got back.
#[derive(Debug)]
pub struct Page {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl Page {
    /// The `Location` of a redirect.
    pub fn location(&self) -> Option<&str> {
        self.headers.get("location").and_then(|v| v.to_str().ok())
    }

    /// A header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The `Set-Cookie` headers.
    pub fn set_cookies(&self) -> Vec<&str> {
        self.headers
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect()
    }

    /// The row (`<tr>` up to its end) of gateway instance `id`, on a page or overview fragment.
    pub fn instance_row(&self, id: &str) -> Option<&str> {
        instance_row(&self.body, id)
    }

    /// The number shown in the overview cell `queue:state`.
    pub fn cell(&self, queue: &str, state: &str) -> Option<String> {
        let marker = format!("data-cell=\"{queue}:{state}\"");
        let rest = &self.body[self.body.find(&marker)? + marker.len()..];
        let rest = &rest[rest.find('>')? + 1..];
        Some(rest[..rest.find('<')?].trim().to_owned())
    }
}

/// Where a POST claims to come from.
#[derive(Debug, Clone, Copy)]
pub enum Origin {
    /// `Origin` of the console itself, as a browser sends on a form.
    Console,
    /// `Origin` of another site.
    Evil,
    /// Neither `Origin` nor `Sec-Fetch-Site`.
    Absent,
}

/// A browser without a cookie jar: the session cookie is kept by hand from `Set-Cookie`.
pub struct Browser {
    http: reqwest::Client,
    base: String,
    /// The session cookie's value, when the console set one.
    pub cookie: Option<String>,
}

impl Browser {
    /// A browser of the console at `addr`.
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("client"),
            base: format!("http://{addr}"),
            cookie: None,
        }
    }

    fn keep_cookie(&mut self, page: &Page) {
        for set in page.set_cookies() {
            let Some(rest) = set.strip_prefix("ncy_console=") else {
                continue;
            };
            let value = rest.split(';').next().unwrap_or_default();
            self.cookie = if value.is_empty() || set.contains("Max-Age=0") {
                None
            } else {
                Some(value.to_owned())
            };
        }
    }

    async fn send(&mut self, request: reqwest::RequestBuilder) -> anyhow::Result<Page> {
        let request = match &self.cookie {
            Some(c) => request.header("cookie", format!("ncy_console={c}")),
            None => request,
        };
        let response = request.send().await?;
        let page = Page {
            status: response.status().as_u16(),
            headers: response.headers().clone(),
            body: response.text().await?,
        };
        self.keep_cookie(&page);
        Ok(page)
    }

    /// GET `path`.
    pub async fn get(&mut self, path: &str) -> anyhow::Result<Page> {
        let request = self.http.get(format!("{}{path}", self.base));
        self.send(request).await
    }

    /// GETs `path` every 50 ms until `ready` holds for the page, for at most `within`; that page.
    /// For what other instances report on their own schedule.
    pub async fn get_until(
        &mut self,
        path: &str,
        within: Duration,
        what: &str,
        ready: impl Fn(&Page) -> bool,
    ) -> anyhow::Result<Page> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let page = self.get(path).await?;
            if ready(&page) {
                return Ok(page);
            }
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "{what}: not on {path} after {within:?}: {}",
                page.body
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// POST `form` to `path`, claiming to come `from` somewhere.
    pub async fn post(
        &mut self,
        path: &str,
        form: &[(&str, &str)],
        from: Origin,
    ) -> anyhow::Result<Page> {
        let mut request = self.http.post(format!("{}{path}", self.base)).form(form);
        request = match from {
            Origin::Console => request.header("origin", &self.base),
            Origin::Evil => request.header("origin", "http://evil.example"),
            Origin::Absent => request,
        };
        self.send(request).await
    }

    /// Signs in (a same-origin form POST).
    pub async fn login(&mut self, name: &str, password: &str) -> anyhow::Result<Page> {
        self.post(
            "/login",
            &[("name", name), ("password", password)],
            Origin::Console,
        )
        .await
    }

    /// Opens `path` as an event stream.
    pub async fn events(&self, path: &str) -> anyhow::Result<EventStream> {
        let mut request = self
            .http
            .get(format!("{}{path}", self.base))
            .header("accept", "text/event-stream");
        if let Some(c) = &self.cookie {
            request = request.header("cookie", format!("ncy_console={c}"));
        }
        let response = request.send().await?;
        anyhow::ensure!(
            response.status() == 200,
            "events of {path}: {}",
            response.status()
        );
        Ok(EventStream {
            response,
            buffer: String::new(),
        })
    }
}

/// One Server-Sent Event.
#[derive(Debug, Clone, Default)]
pub struct Event {
    pub name: String,
    pub id: String,
    pub data: String,
}

/// A Server-Sent Events response read event by event.
pub struct EventStream {
    response: reqwest::Response,
    buffer: String,
}

impl EventStream {
    /// The next event with data (comments and keep-alives skipped), within `within`.
    pub async fn next(&mut self, within: Duration) -> anyhow::Result<Event> {
        tokio::time::timeout(within, self.next_event())
            .await
            .map_err(|_| anyhow::anyhow!("no event within {within:?}"))?
    }

    async fn next_event(&mut self) -> anyhow::Result<Event> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut event = Event::default();
                let mut data = Vec::new();
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("data:") {
                        data.push(v.strip_prefix(' ').unwrap_or(v).to_owned());
                    } else if let Some(v) = line.strip_prefix("event:") {
                        event.name = v.trim().to_owned();
                    } else if let Some(v) = line.strip_prefix("id:") {
                        event.id = v.trim().to_owned();
                    }
                }
                if !data.is_empty() {
                    event.data = data.join("\n");
                    return Ok(event);
                }
                continue;
            }
            let chunk = self
                .response
                .chunk()
                .await?
                .ok_or_else(|| anyhow::anyhow!("the event stream ended"))?;
            self.buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    }

    /// Whether the stream ends (the server closed it) within `within`, skipping what is left.
    pub async fn ends_within(mut self, within: Duration) -> bool {
        tokio::time::timeout(within, async move {
            while let Ok(Some(_)) = self.response.chunk().await {}
        })
        .await
        .is_ok()
    }
}

/// The row (`<tr>` up to its end) of gateway instance `id` in `html`, if listed.
pub fn instance_row<'a>(html: &'a str, id: &str) -> Option<&'a str> {
    let start = html.find(&format!("data-instance-row=\"{id}\""))?;
    let row = &html[start..];
    Some(&row[..row.find("</tr>")?])
}
