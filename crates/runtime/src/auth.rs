//! API-key authentication of gRPC callers, with a scope per RPC.
//!
//! Every RPC names the scope it needs in its proto (`(ncy.auth.v1.required_scope)`, read at build
//! time into [`ncy_proto::REQUIRED_SCOPES`]). A caller sends `authorization: Bearer <key>`; the
//! [`AuthLayer`] answers `UNAUTHENTICATED` when the key is missing or unknown and
//! `PERMISSION_DENIED` when it lacks the scope, before the request reaches the service. gRPC health and
//! reflection stay open (probes and grpcurl need no key). A path that is no NCY RPC still needs a
//! valid key, so an anonymous caller learns nothing beyond "authenticate first".
//!
//! Keys live in a TOML file (a Kubernetes Secret mounted as a file, or `.run/api-keys.toml` made by
//! `make run`), each with a name (for logs), the key or only its SHA-256, and its scopes:
//!
//! ```toml
//! [[keys]]
//! name = "main-app"
//! secret = "…at least 24 characters…"      # or: sha256 = "<hex SHA-256 of the key>"
//! scopes = ["cache:read", "cache:write", "jobs:enqueue", "realtime:publish"]
//! ```
//!
//! A scope is `<service>:<capability>`, `<service>:*` or `*`. Keys are kept only as SHA-256 digests
//! and compared in constant time. The file is re-read every `NCY_API_KEYS_RELOAD_SECS`; a file that no
//! longer parses keeps the previous keys (logged and counted), so a bad edit cannot lock every caller
//! out. Rotation without dropping a request: add the new key, move callers to it, remove the old one.
use std::{
    future::Future,
    path::{Path, PathBuf},
    pin::Pin,
    sync::{Arc, RwLock},
    task::{Context, Poll},
    time::Duration,
};

use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio_util::sync::CancellationToken;
use tonic::Status;
use tower::{Layer, Service};

/// The shortest key accepted in the file: 24 characters of a random key are ~140 bits.
const MIN_SECRET_LEN: usize = 24;

/// Paths that need no key: gRPC health (probes) and server reflection (grpcurl, debugging).
const OPEN_PREFIXES: [&str; 3] = [
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1.ServerReflection/",
    "/grpc.reflection.v1alpha.ServerReflection/",
];

/// The key a request was made with, put in the request's extensions for the service (audit logs).
#[derive(Debug, Clone)]
pub struct ApiCaller {
    /// The key's name from the keys file.
    pub name: Arc<str>,
}

struct ApiKey {
    name: Arc<str>,
    digest: [u8; 32],
    scopes: Vec<String>,
}

impl ApiKey {
    fn allows(&self, needed: &str) -> bool {
        self.scopes
            .iter()
            .any(|granted| scope_allows(granted, needed))
    }
}

/// `granted` covers `needed`: equal, `*`, or `<service>:*` for a scope of that service.
fn scope_allows(granted: &str, needed: &str) -> bool {
    granted == "*"
        || granted == needed
        || granted
            .strip_suffix('*')
            .is_some_and(|service| service.ends_with(':') && needed.starts_with(service))
}

fn valid_scope(scope: &str) -> bool {
    let word = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase() || b == b'_');
    scope == "*"
        || scope
            .split_once(':')
            .is_some_and(|(service, cap)| word(service) && (cap == "*" || word(cap)))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    #[serde(default)]
    keys: Vec<KeyEntry>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyEntry {
    name: String,
    secret: Option<SecretString>,
    sha256: Option<String>,
    scopes: Vec<String>,
}

/// The keys of one version of the file.
#[derive(Default)]
pub struct KeySet {
    keys: Vec<ApiKey>,
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.keys.iter().map(|k| &k.name))
            .finish()
    }
}

impl KeySet {
    /// Parses and checks a keys file; the error names the key at fault (never a secret).
    pub fn parse(text: &str) -> Result<Self, String> {
        let file: KeyFile = toml::from_str(text).map_err(|e| e.message().to_owned())?;
        let mut keys: Vec<ApiKey> = Vec::with_capacity(file.keys.len());
        for (i, entry) in file.keys.into_iter().enumerate() {
            let at = format!("keys[{i}] ({:?})", entry.name);
            if entry.name.trim().is_empty() {
                return Err(format!("keys[{i}]: name must not be empty"));
            }
            let digest = match (&entry.secret, &entry.sha256) {
                (Some(secret), None) => {
                    let secret = secret.expose_secret();
                    if secret.chars().count() < MIN_SECRET_LEN
                        || secret.contains(char::is_whitespace)
                    {
                        return Err(format!(
                            "{at}: secret must be at least {MIN_SECRET_LEN} characters with no whitespace"
                        ));
                    }
                    Sha256::digest(secret.as_bytes()).into()
                }
                (None, Some(hex_digest)) => {
                    let mut digest = [0u8; 32];
                    hex::decode_to_slice(hex_digest.trim(), &mut digest).map_err(|_| {
                        format!("{at}: sha256 must be 64 hex digits (the SHA-256 of the key)")
                    })?;
                    digest
                }
                _ => return Err(format!("{at}: give exactly one of `secret` and `sha256`")),
            };
            if entry.scopes.is_empty() {
                return Err(format!("{at}: scopes must not be empty"));
            }
            if let Some(bad) = entry.scopes.iter().find(|s| !valid_scope(s)) {
                return Err(format!(
                    "{at}: scope {bad:?} is not `<service>:<capability>`, `<service>:*` or `*`"
                ));
            }
            if keys.iter().any(|k| *k.name == *entry.name) {
                return Err(format!("{at}: another key has the same name"));
            }
            if keys.iter().any(|k| k.digest == digest) {
                return Err(format!("{at}: the same key is listed twice"));
            }
            keys.push(ApiKey {
                name: entry.name.into(),
                digest,
                scopes: entry.scopes,
            });
        }
        Ok(Self { keys })
    }

    /// How many keys there are.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The key whose SHA-256 matches, comparing every key in constant time.
    fn find(&self, presented: &str) -> Option<&ApiKey> {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let mut found = None;
        for key in &self.keys {
            if bool::from(key.digest.ct_eq(&digest)) {
                found = Some(key);
            }
        }
        found
    }
}

/// The keys a server checks against, re-read from their file while it runs.
#[derive(Clone)]
pub struct ApiKeys {
    file: PathBuf,
    current: Arc<RwLock<(Arc<KeySet>, String)>>,
}

impl std::fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKeys")
            .field("file", &self.file)
            .field("keys", &self.snapshot())
            .finish()
    }
}

impl ApiKeys {
    /// Reads `file`; an unreadable, malformed or empty file is an error naming it.
    pub fn load(file: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(file)
            .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
        let set = KeySet::parse(&text).map_err(|e| format!("{}: {e}", file.display()))?;
        if set.is_empty() {
            return Err(format!("{}: lists no keys", file.display()));
        }
        metrics::gauge!("ncy_api_keys").set(set.len() as f64);
        Ok(Self {
            file: file.to_owned(),
            current: Arc::new(RwLock::new((Arc::new(set), text))),
        })
    }

    /// The keys in force now.
    pub fn snapshot(&self) -> Arc<KeySet> {
        match self.current.read() {
            Ok(guard) => guard.0.clone(),
            Err(poisoned) => poisoned.into_inner().0.clone(),
        }
    }

    /// Re-reads the file when its text changed; keeps the old keys when the new text is bad.
    pub fn reload(&self) -> Result<bool, String> {
        let text = std::fs::read_to_string(&self.file)
            .map_err(|e| format!("cannot read {}: {e}", self.file.display()))?;
        let unchanged = match self.current.read() {
            Ok(guard) => guard.1 == text,
            Err(poisoned) => poisoned.into_inner().1 == text,
        };
        if unchanged {
            return Ok(false);
        }
        let set = KeySet::parse(&text).map_err(|e| format!("{}: {e}", self.file.display()))?;
        if set.is_empty() {
            return Err(format!("{}: lists no keys", self.file.display()));
        }
        metrics::gauge!("ncy_api_keys").set(set.len() as f64);
        let set = Arc::new(set);
        match self.current.write() {
            Ok(mut guard) => *guard = (set, text),
            Err(poisoned) => *poisoned.into_inner() = (set, text),
        }
        Ok(true)
    }

    /// Re-reads the file every `every` until `cancel` fires (hot reload of a mounted Secret).
    pub async fn watch(self, every: Duration, cancel: CancellationToken) {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await;
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                _ = ticks.tick() => {}
            }
            match self.reload() {
                Ok(true) => {
                    tracing::info!(file = %self.file.display(), keys = self.snapshot().len(), "API keys reloaded")
                }
                Ok(false) => {}
                Err(error) => {
                    metrics::counter!("ncy_api_keys_reload_failures_total").increment(1);
                    tracing::error!(%error, "API keys file not reloaded; the previous keys stay in force");
                }
            }
        }
    }

    /// Checks a request's `authorization` header against the scope `path` needs.
    fn authorize(&self, headers: &http::HeaderMap, path: &str) -> Result<Arc<str>, Status> {
        let Some(value) = headers.get(http::header::AUTHORIZATION) else {
            return Err(reject(
                "missing",
                Status::unauthenticated(
                    "missing API key: send the metadata `authorization: Bearer <key>`",
                ),
            ));
        };
        let presented = value
            .to_str()
            .ok()
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .ok_or_else(|| {
                reject(
                    "malformed",
                    Status::unauthenticated("authorization: expected `Bearer <key>`"),
                )
            })?;
        let keys = self.snapshot();
        let key = keys
            .find(presented)
            .ok_or_else(|| reject("unknown", Status::unauthenticated("API key not recognised")))?;
        match ncy_proto::required_scope(path) {
            Some(scope) if !key.allows(scope) => Err(reject(
                "scope",
                Status::permission_denied(format!(
                    "API key {:?} lacks the scope {scope:?} that {path} needs",
                    &*key.name
                )),
            )),
            _ => Ok(key.name.clone()),
        }
    }
}

fn reject(reason: &'static str, status: Status) -> Status {
    metrics::counter!("ncy_grpc_auth_rejected_total", "reason" => reason).increment(1);
    status
}

/// Wraps a gRPC server's routes with the API-key check; `None` keys = authentication disabled.
#[derive(Debug, Clone)]
pub struct AuthLayer {
    keys: Option<ApiKeys>,
}

impl AuthLayer {
    /// Checks every call against `keys`, or lets every call through when `None`.
    pub fn new(keys: Option<ApiKeys>) -> Self {
        Self { keys }
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = Auth<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Auth {
            inner,
            keys: self.keys.clone(),
        }
    }
}

/// See [`AuthLayer`].
#[derive(Debug, Clone)]
pub struct Auth<S> {
    inner: S,
    keys: Option<ApiKeys>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B, R> Service<http::Request<B>> for Auth<S>
where
    S: Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    R: Default + Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        if let Some(keys) = &self.keys {
            let path = request.uri().path();
            if !OPEN_PREFIXES.iter().any(|p| path.starts_with(p)) {
                match keys.authorize(request.headers(), path) {
                    Ok(name) => {
                        tracing::Span::current().record("api.key", &*name);
                        request.extensions_mut().insert(ApiCaller { name });
                    }
                    Err(status) => {
                        tracing::debug!(path, code = ?status.code(), "gRPC call refused");
                        return Box::pin(std::future::ready(Ok(status.into_http())));
                    }
                }
            }
        }
        Box::pin(self.inner.call(request))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "k-0123456789abcdef0123456789";

    fn headers(value: &str) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        h.insert(http::header::AUTHORIZATION, value.parse().expect("header"));
        h
    }

    fn keys(text: &str) -> ApiKeys {
        let dir = std::env::temp_dir().join(format!("ncy-keys-{}", uuid_like()));
        std::fs::write(&dir, text).expect("write");
        let keys = ApiKeys::load(&dir).expect("load");
        let _ = std::fs::remove_file(&dir);
        keys
    }

    fn uuid_like() -> String {
        format!("{}-{:?}", std::process::id(), std::time::SystemTime::now())
            .replace(|c: char| !c.is_ascii_alphanumeric(), "")
    }

    #[test]
    fn scopes_cover_their_service_only() {
        assert!(scope_allows("*", "cache:admin"));
        assert!(scope_allows("cache:*", "cache:admin"));
        assert!(scope_allows("cache:read", "cache:read"));
        assert!(!scope_allows("cache:read", "cache:write"));
        assert!(!scope_allows("cache:*", "cachex:read"));
        assert!(!scope_allows("jobs:*", "cache:read"));
        assert!(valid_scope("realtime:publish") && valid_scope("jobs:*") && valid_scope("*"));
        assert!(
            !valid_scope("cache") && !valid_scope("Cache:read") && !valid_scope("cache:read:x")
        );
    }

    #[test]
    fn a_key_is_checked_against_the_rpc_scope() {
        let keys = keys(&format!(
            "[[keys]]\nname = \"reader\"\nsecret = \"{KEY}\"\nscopes = [\"cache:read\"]\n"
        ));
        let get = "/ncy.cache.v1.CacheService/Get";
        let set = "/ncy.cache.v1.CacheService/Set";
        assert_eq!(
            &*keys
                .authorize(&headers(&format!("Bearer {KEY}")), get)
                .expect("ok"),
            "reader"
        );
        let denied = keys
            .authorize(&headers(&format!("Bearer {KEY}")), set)
            .expect_err("scope");
        assert_eq!(denied.code(), tonic::Code::PermissionDenied);
        assert!(denied.message().contains("cache:write"), "{denied:?}");
        for bad in [
            "Bearer nope-nope-nope-nope-nope",
            KEY,
            "Basic abc",
            "Bearer ",
        ] {
            let e = keys.authorize(&headers(bad), get).expect_err(bad);
            assert_eq!(e.code(), tonic::Code::Unauthenticated, "{bad}");
        }
        let e = keys
            .authorize(&http::HeaderMap::new(), get)
            .expect_err("missing");
        assert_eq!(e.code(), tonic::Code::Unauthenticated);
    }

    #[test]
    fn a_key_may_be_given_by_its_digest() {
        let digest = hex::encode(Sha256::digest(KEY.as_bytes()));
        let keys = keys(&format!(
            "[[keys]]\nname = \"h\"\nsha256 = \"{digest}\"\nscopes = [\"*\"]\n"
        ));
        let path = "/ncy.jobs.v1.JobService/PauseQueue";
        assert!(
            keys.authorize(&headers(&format!("Bearer {KEY}")), path)
                .is_ok()
        );
    }

    #[test]
    fn bad_files_are_refused_with_the_key_named() {
        let cases = [
            (
                "[[keys]]\nname = \"a\"\nsecret = \"short\"\nscopes = [\"*\"]\n",
                "at least 24",
            ),
            (
                "[[keys]]\nname = \"a\"\nsecret = \"k-0123456789abcdef0123456789\"\nscopes = [\"Cache\"]\n",
                "scope \"Cache\"",
            ),
            ("[[keys]]\nname = \"a\"\nscopes = [\"*\"]\n", "exactly one"),
            (
                "[[keys]]\nname = \"a\"\nsecret = \"k-0123456789abcdef0123456789\"\nscopes = []\n",
                "must not be empty",
            ),
            (
                "[[keys]]\nname = \"a\"\nsecret = \"k-0123456789abcdef0123456789\"\nscopes = [\"*\"]\n\
                 [[keys]]\nname = \"a\"\nsecret = \"k-0123456789abcdef0123456780\"\nscopes = [\"*\"]\n",
                "same name",
            ),
            (
                "[[keys]]\nname = \"a\"\nsecrt = \"x\"\nscopes = [\"*\"]\n",
                "unknown field",
            ),
        ];
        for (text, expected) in cases {
            let e = KeySet::parse(text).expect_err(text);
            assert!(e.contains(expected), "{e} should contain {expected}");
            assert!(!e.contains("0123456789abcdef"), "secret leaked: {e}");
        }
    }
}
