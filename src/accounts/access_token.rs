//! Short-lived access tokens (JWT, HS256) for users and devices. The signing key is
//! derived from the master key, so there is no extra secret to manage.

use chrono::Utc;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::crypto::MasterKey;
use crate::domain::{OrgId, Role};
use crate::error::AppError;

/// Who a token speaks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Subject {
    User,
    Device,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub sub: Uuid,
    pub org: i64,
    /// `ADMIN`/`DEV`/`VIEW` for users, `DEVICE` for devices.
    pub role: String,
    pub kind: Subject,
    pub iat: i64,
    pub exp: i64,
    /// A user token's login (refresh-session family): logout and a password change end it at
    /// once, not when the token expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<Uuid>,
    /// A device token's binding to the device token it was minted with (a prefix of its
    /// stored hash): once the device is rotated, no token minted before works.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bind: Option<String>,
}

/// The binding of a DEVICE access token to the stored hash of the device token.
pub fn device_binding(stored_hash: &str) -> &str {
    &stored_hash[..stored_hash.len().min(16)]
}

pub struct AccessTokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    ttl_secs: i64,
    device_ttl_secs: i64,
}

impl AccessTokens {
    pub fn new(master: &MasterKey, ttl_min: i64, device_ttl_min: i64) -> Self {
        let key = master.derive("certhub-access-token-v1");
        Self {
            encoding: EncodingKey::from_secret(key.as_ref()),
            decoding: DecodingKey::from_secret(key.as_ref()),
            ttl_secs: ttl_min * 60,
            device_ttl_secs: device_ttl_min * 60,
        }
    }

    /// Lifetime of a user's access token.
    pub fn ttl_secs(&self) -> i64 {
        self.ttl_secs
    }

    /// Lifetime of a device's access token.
    pub fn device_ttl_secs(&self) -> i64 {
        self.device_ttl_secs
    }

    fn issue(
        &self,
        sub: Uuid,
        org: OrgId,
        role: &str,
        kind: Subject,
        sid: Option<Uuid>,
        bind: Option<String>,
    ) -> Result<String, AppError> {
        let now = Utc::now();
        let ttl = match kind {
            Subject::User => self.ttl_secs,
            Subject::Device => self.device_ttl_secs,
        };
        let claims = Claims {
            sub,
            org: org.0,
            role: role.to_owned(),
            kind,
            iat: now.timestamp(),
            exp: now.timestamp() + ttl,
            sid,
            bind,
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|e| AppError::Internal(format!("signing access token: {e}")))
    }

    /// A user's token for the login (session family) `session`.
    pub fn issue_user(
        &self,
        id: Uuid,
        org: OrgId,
        role: Role,
        session: Uuid,
    ) -> Result<String, AppError> {
        self.issue(id, org, role.as_str(), Subject::User, Some(session), None)
    }

    /// A device's token, bound to the stored hash of the device token it presented.
    pub fn issue_device(
        &self,
        id: Uuid,
        org: OrgId,
        device_token_hash: &str,
    ) -> Result<String, AppError> {
        let bind = device_binding(device_token_hash).to_owned();
        self.issue(id, org, "DEVICE", Subject::Device, None, Some(bind))
    }

    /// Verifies signature and expiry; any failure is a plain 401.
    pub fn decode(&self, token: &str) -> Result<Claims, AppError> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 5;
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation)
            .map(|d| d.claims)
            .map_err(|_| AppError::Unauthorized)
    }
}
