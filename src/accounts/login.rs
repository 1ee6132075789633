//! Logging in and out: the per-IP limit, the account lockout and the password check, the
//! session family a login opens, the refresh rotation and the logout. Shared by the API and
//! the portal's forms.

use chrono::Utc;
use sea_orm::entity::prelude::*;
use serde_json::json;

use super::session::{self, Login, Origin, Rotation};
use super::user::{self, User, Users};
use super::{lockout, password};
use crate::audit::{self, Actor, AuditAction, Entry};
use crate::domain::{Email, OrgId};
use crate::error::AppError;
use crate::state::AppState;

/// Checks the per-IP limit, the account lockout and the password; on success opens a session
/// family and audits `LOGIN_OK`.
pub async fn attempt_login(
    state: &AppState,
    origin: &Origin,
    email: &str,
    presented: String,
) -> Result<(User, Login), AppError> {
    let ip = origin.ip.clone();
    if let Some(ip_addr) = ip.as_deref().and_then(|ip| ip.parse().ok())
        && let Err(refused) = state.login_limiter.check(&ip_addr)
    {
        return Err(AppError::TooManyRequests {
            retry_after_secs: refused.retry_after_secs,
        });
    }
    let settings = &state.settings;
    let cost = settings.bcrypt_cost;
    // Unparseable e-mails are treated like unknown ones: same answer, same work.
    let email = Email::parse(email).ok();
    let key = attempt_key(email.as_ref());
    let user = match &email {
        Some(e) => {
            Users::find()
                .filter(user::entity::Column::Email.eq(e.as_str()))
                .one(&state.db)
                .await?
        }
        None => None,
    };
    let audit_org = OrgId(user.as_ref().map(|u| u.org_id).unwrap_or(settings.org_id));

    // The lockout check and the attempt's record are one step per account: concurrent
    // guesses cannot all pass the check before any of them is counted.
    let txn = crate::db::begin_write(&state.db).await?;
    lockout::lock_account(&txn, &key).await?;
    if let Some(until) = lockout::locked_until(
        &txn,
        &key,
        settings.lockout_threshold,
        settings.lockout_window_min,
    )
    .await?
    {
        audit::append(
            &txn,
            Entry::new(
                audit_org,
                AuditAction::LoginLocked,
                user.as_ref().map_or(Actor::System, |u| Actor::User(u.id)),
            )
            .meta(json!({"email": key, "locked_until": until.to_rfc3339()}))
            .ip(ip.clone()),
        )
        .await?;
        txn.commit().await?;
        return Err(AppError::TooManyRequests {
            retry_after_secs: (until - Utc::now()).num_seconds().max(1) as u64,
        });
    }
    let attempt = lockout::record(&txn, Some(audit_org.0), &key, ip.clone(), false).await?;
    txn.commit().await?;

    let stored = user.as_ref().and_then(|u| u.password_hash.clone());
    let ok =
        password::blocking(move || password::verify(&presented, stored.as_deref(), cost)).await?;
    let active_user = user.filter(|u| u.is_active && ok);

    let txn = crate::db::begin_write(&state.db).await?;
    let Some(user) = active_user else {
        audit::append(
            &txn,
            Entry::new(audit_org, AuditAction::LoginFailed, Actor::System)
                .meta(json!({"email": key}))
                .ip(ip),
        )
        .await?;
        txn.commit().await?;
        return Err(AppError::InvalidCredentials);
    };
    lockout::succeeded(&txn, attempt).await?;
    let refresh = session::start(
        &txn,
        user.org_id,
        user.id,
        settings.refresh_ttl_days,
        origin,
    )
    .await?;
    audit::append(
        &txn,
        Entry::new(
            OrgId(user.org_id),
            AuditAction::LoginOk,
            Actor::User(user.id),
        )
        .entity("user", user.id)
        .ip(ip),
    )
    .await?;
    txn.commit().await?;
    Ok((user, refresh))
}

/// The key login attempts are counted under: the normalised e-mail, one key for all invalid ones.
fn attempt_key(email: Option<&Email>) -> String {
    email.map_or_else(|| "<invalid>".into(), |e| e.as_str().to_owned())
}

/// How many more wrong passwords the account behind `email` takes before it is locked. The
/// same for an e-mail no account has, so the answer does not tell who has an account.
pub async fn attempts_left(state: &AppState, email: &str) -> Result<u32, AppError> {
    let key = attempt_key(Email::parse(email).ok().as_ref());
    Ok(lockout::attempts_left(
        &state.db,
        &key,
        state.settings.lockout_threshold,
        state.settings.lockout_window_min,
    )
    .await?)
}

/// What presenting a refresh token gave.
pub enum Refreshed {
    /// A new refresh token for the same login, and its active user.
    Rotated { user: Box<User>, login: Login },
    /// Unknown, expired, reused (the whole family is revoked, audited) or its user inactive.
    Refused,
}

/// Rotates the refresh token `presented`; a reused one revokes its session family.
pub async fn refresh(
    state: &AppState,
    presented: &str,
    origin: &Origin,
) -> Result<Refreshed, AppError> {
    let txn = crate::db::begin_write(&state.db).await?;
    let outcome = session::rotate(&txn, presented, state.settings.refresh_ttl_days, origin).await?;
    let (user_id, login) = match outcome {
        Rotation::Rotated { user_id, login, .. } => (user_id, login),
        Rotation::ReuseDetected { user_id, org_id } => {
            audit::append(
                &txn,
                Entry::new(OrgId(org_id), AuditAction::Logout, Actor::User(user_id))
                    .entity("user", user_id)
                    .meta(json!({"reason": "refresh_token_reuse", "revoked": "session_family"}))
                    .ip(origin.ip.clone()),
            )
            .await?;
            txn.commit().await?;
            tracing::warn!(%user_id, "refresh token reused: session family revoked");
            return Ok(Refreshed::Refused);
        }
        Rotation::Invalid => {
            txn.rollback().await?;
            return Ok(Refreshed::Refused);
        }
    };
    let user = Users::find_by_id(user_id)
        .one(&txn)
        .await?
        .filter(|u| u.is_active);
    let Some(user) = user else {
        txn.rollback().await?;
        return Ok(Refreshed::Refused);
    };
    txn.commit().await?;
    Ok(Refreshed::Rotated {
        user: Box::new(user),
        login,
    })
}

/// Ends the login behind the refresh (or portal session) token `presented`, or, without one,
/// records the logout of the user a valid access token names; audited `LOGOUT`.
pub async fn logout(
    state: &AppState,
    presented: Option<&str>,
    access_token: Option<&str>,
    ip: Option<String>,
) -> Result<(), AppError> {
    let txn = crate::db::begin_write(&state.db).await?;
    let mut who = None;
    if let Some(presented) = presented {
        who = session::revoke_presented(&txn, presented).await?;
    }
    if who.is_none()
        && let Some(claims) = access_token
            .and_then(|t| state.tokens.decode(t).ok())
            .filter(|c| c.kind == super::access_token::Subject::User)
    {
        who = Some((claims.sub, claims.org));
    }
    if let Some((user_id, org_id)) = who {
        audit::append(
            &txn,
            Entry::new(OrgId(org_id), AuditAction::Logout, Actor::User(user_id))
                .entity("user", user_id)
                .ip(ip),
        )
        .await?;
    }
    txn.commit().await?;
    Ok(())
}
