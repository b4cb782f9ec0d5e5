//! JWT verification for browser sockets.
//!
//! The algorithm is pinned by settings (HS256 or RS256); a token whose header names another
//! algorithm — `none` included — is rejected before its signature is looked at. `exp` is required,
//! `nbf`, `aud` and `iss` are checked, with no leeway: the gateway closes a socket at `exp`, so
//! accepting an already expired token would only earn it an immediate close.
//!
//! Claims: the user is `userId` (the seed's claim) or else `sub`; the organization is
//! `organizationId` (or `orgId`), optional — a token without one joins no `org:` room. Both must be
//! UUIDs.
use jsonwebtoken::{DecodingKey, Validation, decode};
use serde::Deserialize;
use uuid::Uuid;

use crate::settings::JwtSettings;

/// Who a socket is, from its token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The user.
    pub user_id: Uuid,
    /// The user's organization, if the token names one.
    pub org_id: Option<Uuid>,
    /// Expiry (seconds since the Unix epoch).
    pub exp: u64,
}

#[derive(Deserialize)]
struct Claims {
    #[serde(rename = "userId")]
    user_id: Option<String>,
    sub: Option<String>,
    #[serde(rename = "organizationId", alias = "orgId")]
    org_id: Option<String>,
    exp: u64,
}

/// Verifies tokens with the configured key and rules.
pub struct Verifier {
    key: DecodingKey,
    validation: Validation,
}

impl Verifier {
    /// A verifier from settings.
    pub fn new(settings: &JwtSettings) -> Self {
        let mut validation = Validation::new(settings.algorithm);
        validation.leeway = 0;
        validation.validate_nbf = true;
        // jsonwebtoken checks `aud` and `iss` only when the token carries them: a configured claim
        // must also be required, or a token without it (another of the app's tokens signed with the
        // same secret, say a password-reset token) would open a socket.
        let mut required = vec!["exp"];
        match &settings.audience {
            Some(aud) => {
                validation.set_audience(&[aud]);
                required.push("aud");
            }
            None => validation.validate_aud = false,
        }
        if let Some(iss) = &settings.issuer {
            validation.set_issuer(&[iss]);
            required.push("iss");
        }
        validation.set_required_spec_claims(&required);
        Self {
            key: settings.key.clone(),
            validation,
        }
    }

    /// Checks `token`; the error is a short reason safe to send to the client.
    pub fn verify(&self, token: &str) -> Result<Identity, String> {
        let data = decode::<Claims>(token, &self.key, &self.validation).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind as K;
            match e.kind() {
                K::ExpiredSignature => "token expired".to_owned(),
                K::ImmatureSignature => "token not yet valid".to_owned(),
                K::InvalidAudience => "wrong audience".to_owned(),
                K::InvalidIssuer => "wrong issuer".to_owned(),
                K::InvalidAlgorithm => "algorithm not allowed".to_owned(),
                K::InvalidSignature => "bad signature".to_owned(),
                K::MissingRequiredClaim(c) => format!("missing claim {c}"),
                _ => "invalid token".to_owned(),
            }
        })?;
        let claims = data.claims;
        let user = claims
            .user_id
            .or(claims.sub)
            .ok_or_else(|| "missing claim userId".to_owned())?;
        let user_id = Uuid::parse_str(&user).map_err(|_| "userId is not a UUID".to_owned())?;
        let org_id = match claims.org_id {
            Some(o) => {
                Some(Uuid::parse_str(&o).map_err(|_| "organizationId is not a UUID".to_owned())?)
            }
            None => None,
        };
        Ok(Identity {
            user_id,
            org_id,
            exp: claims.exp,
        })
    }
}
