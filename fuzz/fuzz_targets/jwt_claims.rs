//! Browser JWTs: `realtime_gateway::Verifier::verify`, what `authenticate` and `refresh` frames
//! (and `/ws?token=` when enabled) run on the token a client sends.
//!
//! The first input byte picks a mode; the rest is:
//! - mode 0: the whole token string, as a client could send it (header, signature and all);
//! - other modes: the claims JSON of a token the target signs with HS256 and the verifier's own
//!   secret (the header varies with the mode), so the signature check passes and the claim rules
//!   and the gateway's own claim parsing (`userId`/`sub`, `organizationId`/`orgId`, UUIDs, `exp`)
//!   are what is exercised.
//!
//! Every token is checked by two verifiers: one with no audience or issuer configured and one
//! requiring both. Nothing may panic. For a signed token that is accepted: the claims are a JSON
//! object, `exp` is the claim's value and not in the past, the user is `userId` (else `sub`) and the
//! organization `organizationId` (else `orgId`) as UUIDs, and the strict verifier only accepts
//! claims that carry `aud` and `iss`.
#![no_main]

use std::sync::LazyLock;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use libfuzzer_sys::fuzz_target;
use realtime_gateway::{Identity, JwtSettings, Verifier};
use serde_json::Value;
use uuid::Uuid;

/// 32+ bytes, as the gateway's settings require for HS256.
const SECRET: &[u8] = b"fuzzing-only-secret-0123456789abcdef";
const AUDIENCE: &str = "ncy-realtime";
const ISSUER: &str = "ncy-app";

fn verifier(audience: Option<&str>, issuer: Option<&str>) -> Verifier {
    Verifier::new(&JwtSettings {
        algorithm: Algorithm::HS256,
        key: DecodingKey::from_secret(SECRET),
        audience: audience.map(str::to_owned),
        issuer: issuer.map(str::to_owned),
    })
}

static OPEN: LazyLock<Verifier> = LazyLock::new(|| verifier(None, None));
static STRICT: LazyLock<Verifier> = LazyLock::new(|| verifier(Some(AUDIENCE), Some(ISSUER)));
static SIGNING_KEY: LazyLock<EncodingKey> = LazyLock::new(|| EncodingKey::from_secret(SECRET));

/// Headers a real client library might send (all HS256, the pinned algorithm).
const HEADERS: [&str; 3] = [
    r#"{"alg":"HS256","typ":"JWT"}"#,
    r#"{"alg":"HS256"}"#,
    r#"{"typ":"JWT","alg":"HS256","kid":"k1","cty":"JWT"}"#,
];

fn signed(header: &str, claims: &[u8]) -> String {
    let message = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(claims)
    );
    let signature = jsonwebtoken::crypto::sign(message.as_bytes(), &SIGNING_KEY, Algorithm::HS256)
        .expect("HS256 signing with a valid key");
    format!("{message}.{signature}")
}

fn uuid_claim(claims: &Value, names: &[&str]) -> Option<Uuid> {
    let text = names
        .iter()
        .find_map(|n| claims.get(*n).and_then(Value::as_str))?;
    Some(Uuid::parse_str(text).expect("an accepted claim is a UUID"))
}

/// The claims as a JSON value. serde_json skips a field the gateway does not read without checking
/// its UTF-8 (so `"x":"\xa7"` passes `decode`), while a `Value` checks every string; invalid bytes are
/// replaced first — never JSON syntax, which is ASCII.
fn claims_value(claims: &[u8]) -> Value {
    serde_json::from_str(&String::from_utf8_lossy(claims)).expect("accepted claims are JSON")
}

/// What an accepted identity must say about the claims it came from.
fn check_accepted(identity: &Identity, claims: &[u8], not_before_s: u64) {
    let claims = claims_value(claims);
    assert!(claims.is_object(), "accepted claims are an object");
    assert_eq!(
        Some(identity.exp),
        claims.get("exp").and_then(Value::as_u64)
    );
    assert!(
        identity.exp >= not_before_s,
        "an expired token was accepted"
    );
    assert_eq!(
        Some(identity.user_id),
        uuid_claim(&claims, &["userId", "sub"]),
        "user is userId, else sub"
    );
    assert_eq!(
        identity.org_id,
        uuid_claim(&claims, &["organizationId", "orgId"]),
        "organization is organizationId, else orgId"
    );
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let now = jsonwebtoken::get_current_timestamp();
    if mode % 4 == 0 {
        let Ok(token) = std::str::from_utf8(rest) else {
            return;
        };
        let _ = OPEN.verify(token);
        let _ = STRICT.verify(token);
        return;
    }
    let token = signed(HEADERS[usize::from(mode % 4) - 1], rest);
    if let Ok(identity) = OPEN.verify(&token) {
        check_accepted(&identity, rest, now);
    }
    if let Ok(identity) = STRICT.verify(&token) {
        check_accepted(&identity, rest, now);
        let claims = claims_value(rest);
        assert!(
            claims.get("aud").is_some(),
            "strict verifier accepted claims without aud"
        );
        assert!(
            claims.get("iss").is_some(),
            "strict verifier accepted claims without iss"
        );
    }
});
