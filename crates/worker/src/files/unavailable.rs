//! Telling an object store that is down (a job that would succeed a moment later) from one that
//! refuses this request (a missing key, bad credentials, a directory that is not writable), so
//! that report and backup jobs wait out an S3 outage without using their attempts
//! ([`crate::outages`]).
//!
//! Told by type, never by message text. `object_store` retries connection failures, timeouts and
//! 5xx answers itself (10 retries or 3 minutes by default); what reaches us after that is an
//! `object_store::Error` whose source chain holds either an [`HttpError`] with its
//! [`HttpErrorKind`] (connect, timeout, request, interrupted: the server is not answering), or a
//! crate-private `RetryError` that keeps an HTTP status only in its text. So that a 5xx can be
//! told by type too, the S3 client's HTTP connector ([`StatusTyped`]) turns a "not serving now"
//! answer (5xx other than 501/505, and 429) into an [`HttpError`] of kind `Request` whose source
//! is [`ServerUnavailable`]: `object_store` retries a `Request` error exactly as it retries a 5xx
//! (always, with the same backoff and limits), so only the type of the final error changes.
//!
//! Not outages: anything from the local file system (a directory that is not writable or a full
//! disk is the operator's to fix), and the S3 answers that are about this request — not found,
//! 401/403, precondition failed, already exists, 501.
use std::error::Error;
use std::future::Future;
use std::pin::Pin;

use futures_util::StreamExt;
use object_store::ClientOptions;
use object_store::client::{
    HttpClient, HttpConnector, HttpError, HttpErrorKind, HttpRequest, HttpResponse, HttpService,
    ReqwestConnector,
};

/// The most of a "not serving" answer's body kept in the error (S3 puts its error code there).
const MAX_BODY_BYTES: usize = 2048;

/// Whether a file store error is an outage of the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileStoreErrorKind {
    /// The object store is unreachable, timed out or answered "not serving now" (5xx, 429) even
    /// after `object_store`'s own retries: the job is fine and would succeed once it is back.
    Unavailable,
    /// Anything else: a local directory that cannot be written, a missing key, bad credentials,
    /// a configuration the store rejects.
    Other,
}

/// The kind of `error`, from the types in its source chain (see the module header).
pub fn kind_of(error: &(dyn Error + 'static)) -> FileStoreErrorKind {
    let mut next = Some(error);
    while let Some(e) = next {
        if let Some(os) = e.downcast_ref::<object_store::Error>() {
            // An answer about this request, whatever happened on the way to it.
            if matches!(
                os,
                object_store::Error::NotFound { .. }
                    | object_store::Error::AlreadyExists { .. }
                    | object_store::Error::Precondition { .. }
                    | object_store::Error::NotModified { .. }
                    | object_store::Error::PermissionDenied { .. }
                    | object_store::Error::Unauthenticated { .. }
            ) {
                return FileStoreErrorKind::Other;
            }
        }
        if let Some(http) = e.downcast_ref::<HttpError>() {
            return match http.kind() {
                HttpErrorKind::Connect
                | HttpErrorKind::Timeout
                | HttpErrorKind::Request
                | HttpErrorKind::Interrupted => FileStoreErrorKind::Unavailable,
                _ => FileStoreErrorKind::Other,
            };
        }
        // An `io::Error` wrapping another error (the buffered uploader's) skips that error in its
        // `source()`: look at it itself.
        if let Some(inner) = e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            return kind_of(inner);
        }
        next = e.source();
    }
    FileStoreErrorKind::Other
}

/// An S3 answer that means the service is not serving for now.
#[derive(Debug, thiserror::Error)]
#[error("the server answered {status} {reason}: {body}")]
pub struct ServerUnavailable {
    pub status: u16,
    reason: &'static str,
    /// The start of the answer's body (S3: `<Error><Code>SlowDown</Code>…`).
    body: String,
}

/// Whether an HTTP status means "not serving for now" rather than "not this request": 5xx except
/// 501 (not implemented) and 505 (HTTP version), which no wait fixes; and 429 (throttled).
fn is_unavailable_status(status: u16) -> bool {
    status == 429 || ((500..600).contains(&status) && status != 501 && status != 505)
}

/// The default (reqwest) HTTP connector of `object_store`, whose "not serving" answers are typed
/// errors ([`ServerUnavailable`]); see the module header.
#[derive(Debug, Default)]
pub struct StatusTyped;

impl HttpConnector for StatusTyped {
    fn connect(&self, options: &ClientOptions) -> object_store::Result<HttpClient> {
        Ok(HttpClient::new(StatusTypedService(
            ReqwestConnector::default().connect(options)?,
        )))
    }
}

#[derive(Debug)]
struct StatusTypedService(HttpClient);

/// What `HttpService::call` returns once `#[async_trait]` has rewritten it (written out here, so
/// the worker needs no `async-trait` of its own).
type CallFuture<'a> = Pin<Box<dyn Future<Output = Result<HttpResponse, HttpError>> + Send + 'a>>;

impl HttpService for StatusTypedService {
    fn call<'s, 'f>(&'s self, request: HttpRequest) -> CallFuture<'f>
    where
        's: 'f,
        Self: 'f,
    {
        Box::pin(async move {
            let response = self.0.execute(request).await?;
            let status = response.status();
            if !is_unavailable_status(status.as_u16()) {
                return Ok(response);
            }
            let mut body = Vec::new();
            let mut chunks = response.into_body().bytes_stream();
            while let Some(Ok(chunk)) = chunks.next().await {
                body.extend_from_slice(&chunk[..chunk.len().min(MAX_BODY_BYTES - body.len())]);
                if body.len() >= MAX_BODY_BYTES {
                    break;
                }
            }
            Err(HttpError::new(
                HttpErrorKind::Request,
                ServerUnavailable {
                    status: status.as_u16(),
                    reason: status.canonical_reason().unwrap_or(""),
                    body: String::from_utf8_lossy(&body).trim().to_owned(),
                },
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use secrecy::SecretString;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;
    use crate::files::{FileStore, FileStoreSettings};

    /// An S3 file store at `endpoint` (plain HTTP, static credentials).
    fn s3(endpoint: &str) -> FileStore {
        let aws = [
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
            ("AWS_REGION", "us-east-1"),
            ("AWS_ENDPOINT", endpoint),
            ("AWS_ALLOW_HTTP", "true"),
        ]
        .into_iter()
        .map(|(k, v)| (k, SecretString::from(v)))
        .collect();
        FileStore::open(&FileStoreSettings::S3 {
            bucket: "bkt".to_owned(),
            prefix: String::new(),
            aws,
        })
        .expect("open")
    }

    /// A server that answers every request with `status` and `body`; returns its URL and how
    /// many requests it has answered.
    async fn answering(status: &'static str, body: &'static str) -> (String, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let answered = Arc::new(AtomicUsize::new(0));
        let count = answered.clone();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let count = count.clone();
                tokio::spawn(async move {
                    // A GET: the request ends with its headers.
                    let mut request = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !request.ends_with(b"\r\n\r\n") {
                        match conn.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => request.extend_from_slice(&buf[..n]),
                        }
                    }
                    count.fetch_add(1, Ordering::SeqCst);
                    let answer = format!(
                        "HTTP/1.1 {status}\r\ncontent-type: application/xml\r\n\
                         content-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = conn.write_all(answer.as_bytes()).await;
                    let _ = conn.shutdown().await;
                });
            }
        });
        (url, answered)
    }

    #[tokio::test]
    async fn an_s3_endpoint_refusing_connections_is_unavailable() {
        // A port nothing listens on: every connection is refused, then object_store gives up.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("port")
            .port();
        let store = s3(&format!("http://127.0.0.1:{port}"));
        let err = store
            .put("k", bytes::Bytes::from("1"))
            .await
            .expect_err("refused");
        assert_eq!(err.kind, FileStoreErrorKind::Unavailable, "{err}");
        assert!(err.is_unavailable());
        assert!(
            err.to_string()
                .starts_with("file store s3://bkt: cannot write k:"),
            "{err}"
        );
        let err = store.list("backups").await.expect_err("refused");
        assert!(err.is_unavailable(), "{err}");
    }

    #[tokio::test]
    async fn an_s3_endpoint_answering_503_slowdown_is_unavailable_after_its_retries() {
        let (url, answered) = answering(
            "503 Service Unavailable",
            "<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>",
        )
        .await;
        let err = s3(&url).list("backups").await.expect_err("503");
        assert_eq!(err.kind, FileStoreErrorKind::Unavailable, "{err}");
        let text = err.to_string();
        assert!(
            text.contains("503 Service Unavailable") && text.contains("SlowDown"),
            "{text}"
        );
        assert!(
            answered.load(Ordering::SeqCst) > 1,
            "object_store retried it before giving up"
        );
    }

    #[tokio::test]
    async fn an_s3_endpoint_refusing_this_request_is_not_an_outage() {
        for status in [
            "403 Forbidden",
            "404 Not Found",
            "400 Bad Request",
            "501 Not Implemented",
        ] {
            let (url, _) = answering(status, "<Error><Code>Nope</Code></Error>").await;
            let err = s3(&url).list("backups").await.expect_err(status);
            assert_eq!(err.kind, FileStoreErrorKind::Other, "{status}: {err}");
        }
    }

    #[test]
    fn which_statuses_mean_not_serving() {
        for s in [500, 502, 503, 504, 429] {
            assert!(is_unavailable_status(s), "{s}");
        }
        for s in [200, 400, 401, 403, 404, 409, 412, 501, 505] {
            assert!(!is_unavailable_status(s), "{s}");
        }
    }

    #[test]
    fn an_answer_about_the_request_is_not_an_outage_whatever_it_wraps() {
        let e = object_store::Error::NotFound {
            path: "k".into(),
            source: Box::new(HttpError::new(
                HttpErrorKind::Interrupted,
                std::io::Error::from(std::io::ErrorKind::ConnectionReset),
            )),
        };
        assert_eq!(kind_of(&e), FileStoreErrorKind::Other);
        let io = std::io::Error::other(object_store::Error::Generic {
            store: "S3",
            source: Box::new(HttpError::new(
                HttpErrorKind::Connect,
                std::io::Error::from(std::io::ErrorKind::ConnectionRefused),
            )),
        });
        assert_eq!(kind_of(&io), FileStoreErrorKind::Unavailable);
        // An I/O error of its own (a local disk) is not, whatever its kind.
        let local = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(kind_of(&local), FileStoreErrorKind::Other);
    }
}
