//! The console's own script and stylesheet, compiled into the binary (no third-party code, no
//! CDN) and served with a year-long cache: their URLs carry [`version`], a digest of their
//! content, so a new console version is fetched at once.
use std::sync::OnceLock;

use axum::response::IntoResponse;
use http::header;
use sha2::{Digest, Sha256};

const SCRIPT: &str = include_str!("../static/console.js");
const STYLE: &str = include_str!("../static/console.css");
const CACHE_FOREVER: &str = "public, max-age=31536000, immutable";

/// A short digest of the assets, for their URLs.
pub fn version() -> &'static str {
    static VERSION: OnceLock<String> = OnceLock::new();
    VERSION.get_or_init(|| {
        let digest = Sha256::new()
            .chain_update(SCRIPT)
            .chain_update(STYLE)
            .finalize();
        digest.iter().take(6).map(|b| format!("{b:02x}")).collect()
    })
}

/// `GET /static/console.js`.
pub async fn script() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, CACHE_FOREVER),
        ],
        SCRIPT,
    )
}

/// `GET /static/console.css`.
pub async fn style() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, CACHE_FOREVER),
        ],
        STYLE,
    )
}
