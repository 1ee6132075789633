//! `/api/v1/auth/*`: login, refresh by cookie, logout, me, and the password-set flow
//! (seed stage S2).

use actix_web::cookie::{Cookie, SameSite, time::Duration as CookieDuration};
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::Utc;
use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::session::{self, Origin, Rotation};
use super::user::{self, Users};
use super::{Password, lockout, password, password_set};
use crate::audit::{self, Actor, AuditAction, Entry};
use crate::crypto::TokenHash;
use crate::domain::{Email, OrgId};
use crate::error::AppError;
use crate::http::extract::{AdminUser, AuthUser, bearer, client_addr, client_ip};
use crate::state::AppState;

pub const REFRESH_COOKIE: &str = "certhub_refresh";
const REFRESH_PATH: &str = "/api/v1/auth";

#[derive(Deserialize, schemars::JsonSchema)]
pub struct LoginBody {
    email: String,
    password: String,
}

#[derive(Serialize, schemars::JsonSchema)]
pub struct AccessTokenResponse {
    access_token: String,
    token_type: &'static str,
    expires_in: i64,
}

fn origin(req: &HttpRequest) -> Origin {
    Origin {
        ip: client_ip(req),
        user_agent: req
            .headers()
            .get(actix_web::http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
    }
}

fn refresh_cookie(state: &AppState, value: String) -> Cookie<'static> {
    Cookie::build(REFRESH_COOKIE, value)
        .path(REFRESH_PATH)
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(state.settings.cookie_secure)
        .max_age(CookieDuration::days(state.settings.refresh_ttl_days))
        .finish()
}

fn clear_cookie(state: &AppState) -> Cookie<'static> {
    let mut c = refresh_cookie(state, String::new());
    c.make_removal();
    c
}

/// Checks the per-IP limit, the account lockout and the password; on success opens a session
/// family and audits `LOGIN_OK`. Shared by the API and the portal's login form.
pub async fn attempt_login(
    state: &AppState,
    req: &HttpRequest,
    email: &str,
    presented: String,
) -> Result<(super::User, session::Login), AppError> {
    let ip = client_ip(req);
    if let Some(ip_addr) = client_addr(req)
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
    let key = email
        .as_ref()
        .map(|e| e.as_str().to_owned())
        .unwrap_or_else(|| "<invalid>".into());
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
    let ok = web::block(move || password::verify(&presented, stored.as_deref(), cost))
        .await
        .map_err(|e| AppError::Internal(e.to_string()))?;
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
        &origin(req),
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

/// `POST /api/v1/auth/login`
pub async fn login(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<LoginBody>,
) -> Result<HttpResponse, AppError> {
    let LoginBody { email, password } = body.into_inner();
    let (user, login) = attempt_login(&state, &req, &email, password).await?;
    tokens_response(&state, &user, &login)
}

/// `{access_token}` for `user`, with `refresh` set as the HttpOnly cookie.
fn tokens_response(
    state: &AppState,
    user: &super::User,
    login: &session::Login,
) -> Result<HttpResponse, AppError> {
    let access_token =
        state
            .tokens
            .issue_user(user.id, OrgId(user.org_id), user.role()?, login.family)?;
    Ok(HttpResponse::Ok()
        .cookie(refresh_cookie(state, login.token.expose().to_owned()))
        .json(AccessTokenResponse {
            access_token,
            token_type: "bearer",
            expires_in: state.tokens.ttl_secs(),
        }))
}

/// `POST /api/v1/auth/refresh`: rotates the refresh cookie and returns a new access token.
pub async fn refresh(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, AppError> {
    let Some(presented) = req.cookie(REFRESH_COOKIE).map(|c| c.value().to_owned()) else {
        return Err(AppError::Unauthorized);
    };
    let txn = crate::db::begin_write(&state.db).await?;
    let outcome = session::rotate(
        &txn,
        &presented,
        state.settings.refresh_ttl_days,
        &origin(&req),
    )
    .await?;
    let (user_id, token) = match outcome {
        Rotation::Rotated { user_id, login, .. } => (user_id, login),
        Rotation::ReuseDetected { user_id, org_id } => {
            audit::append(
                &txn,
                Entry::new(OrgId(org_id), AuditAction::Logout, Actor::User(user_id))
                    .entity("user", user_id)
                    .meta(json!({"reason": "refresh_token_reuse", "revoked": "session_family"}))
                    .ip(client_ip(&req)),
            )
            .await?;
            txn.commit().await?;
            tracing::warn!(%user_id, "refresh token reused: session family revoked");
            return Ok(unauthorized_clearing_cookie(&state));
        }
        Rotation::Invalid => {
            txn.rollback().await?;
            return Ok(unauthorized_clearing_cookie(&state));
        }
    };
    let user = Users::find_by_id(user_id)
        .one(&txn)
        .await?
        .filter(|u| u.is_active);
    let Some(user) = user else {
        txn.rollback().await?;
        return Ok(unauthorized_clearing_cookie(&state));
    };
    txn.commit().await?;
    tokens_response(&state, &user, &token)
}

fn unauthorized_clearing_cookie(state: &AppState) -> HttpResponse {
    use actix_web::ResponseError;
    let mut res = AppError::Unauthorized.error_response();
    let _ = res.add_cookie(&clear_cookie(state));
    res
}

/// `POST /api/v1/auth/logout`: revokes the session family of the cookie, clears it.
pub async fn logout(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, AppError> {
    let txn = crate::db::begin_write(&state.db).await?;
    let mut who = None;
    if let Some(c) = req.cookie(REFRESH_COOKIE) {
        who = session::revoke_presented(&txn, c.value()).await?;
    }
    if who.is_none()
        && let Some(claims) = bearer(&req)
            .and_then(|t| state.tokens.decode(&t).ok())
            .filter(|c| c.kind == super::access_token::Subject::User)
    {
        who = Some((claims.sub, claims.org));
    }
    if let Some((user_id, org_id)) = who {
        audit::append(
            &txn,
            Entry::new(OrgId(org_id), AuditAction::Logout, Actor::User(user_id))
                .entity("user", user_id)
                .ip(client_ip(&req)),
        )
        .await?;
    }
    txn.commit().await?;
    Ok(HttpResponse::Ok()
        .cookie(clear_cookie(&state))
        .json(Acknowledged { ok: true }))
}

/// The answer of an action that has nothing else to say.
#[derive(Serialize, schemars::JsonSchema)]
pub struct Acknowledged {
    /// Always `true`.
    pub ok: bool,
}

/// Response of `POST /api/v1/auth/password/set/init`: the one-time link, shown once.
#[derive(Serialize, schemars::JsonSchema)]
pub struct PasswordLinkResponse {
    pub ok: bool,
    pub link: String,
    pub expires_at: chrono::DateTime<chrono::Utc>,
    /// The bare token, in development mode only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

/// A user as the API shows it (no password hash).
#[derive(Serialize, schemars::JsonSchema)]
pub struct UserView {
    pub id: Uuid,
    pub org_id: i64,
    pub email: String,
    pub nome: String,
    pub role_global: String,
    pub is_active: bool,
    pub auto_approve_install_jobs: bool,
    pub ad_username: Option<String>,
    pub has_password: bool,
    pub created_at: chrono::DateTime<Utc>,
}

impl From<&super::User> for UserView {
    fn from(u: &super::User) -> Self {
        Self {
            id: u.id,
            org_id: u.org_id,
            email: u.email.clone(),
            nome: u.nome.clone(),
            role_global: u.role_global.clone(),
            is_active: u.is_active,
            auto_approve_install_jobs: u.auto_approve_install_jobs,
            ad_username: u.ad_username.clone(),
            has_password: u.password_hash.is_some(),
            created_at: u.created_at,
        }
    }
}

/// `GET /api/v1/auth/me`
pub async fn me(user: AuthUser) -> HttpResponse {
    HttpResponse::Ok().json(UserView::from(&user.user))
}

#[derive(Deserialize, schemars::JsonSchema)]
pub struct SetInitBody {
    email: String,
}

/// `POST /api/v1/auth/password/set/init` (ADMIN/DEV): a one-time link for a user of the office.
pub async fn password_set_init(
    state: web::Data<AppState>,
    admin: AdminUser,
    body: web::Json<SetInitBody>,
) -> Result<HttpResponse, AppError> {
    let admin = admin.0;
    let email = Email::parse(&body.email).map_err(AppError::Validation)?;
    let target = Users::find()
        .filter(user::entity::Column::Email.eq(email.as_str()))
        .filter(user::entity::Column::OrgId.eq(admin.org.0))
        .one(&state.db)
        .await?
        .ok_or_else(|| AppError::NotFound("no user with that e-mail in this office".into()))?;
    let link = issue_password_link(&state, &admin, &target).await?;
    Ok(HttpResponse::Ok().json(PasswordLinkResponse {
        ok: true,
        link: link.url.expose().to_owned(),
        expires_at: link.expires_at,
        token: state
            .settings
            .dev_mode
            .then(|| link.token.expose().to_owned()),
    }))
}

/// A one-time password-set link for `target` (a user of the admin's office), issued by an
/// ADMIN/DEV who may administer them; a refusal is audited `PASSWORD_SET_DENIED`.
pub async fn issue_password_link(
    state: &AppState,
    admin: &AuthUser,
    target: &super::User,
) -> Result<password_set::PasswordSetLink, AppError> {
    admin.require_admin()?;
    if target.org_id != admin.org.0 {
        return Err(AppError::NotFound("no such user in this office".into()));
    }
    if !admin.role.may_administer(target.role()?) {
        // Setting a DEV's password would let an ADMIN log in as the DEV and grant itself DEV.
        audit::record(
            &state.db,
            Entry::new(
                admin.org,
                AuditAction::PasswordSetDenied,
                Actor::User(admin.user.id),
            )
            .entity("user", target.id)
            .meta(json!({"reason": "target_is_dev"}))
            .ip(admin.ip.clone()),
        )
        .await?;
        return Err(AppError::Forbidden(
            "only a DEV can issue a password link for a DEV".into(),
        ));
    }
    let txn = crate::db::begin_write(&state.db).await?;
    let link = password_set::issue(
        &txn,
        &state.settings.public_url,
        state.settings.password_set_ttl_hours,
        target,
        Actor::User(admin.user.id),
    )
    .await?;
    txn.commit().await?;
    Ok(link)
}

#[derive(Deserialize, schemars::JsonSchema)]
pub struct SetConfirmBody {
    token: String,
    new_password: String,
}

/// `POST /api/v1/auth/password/set/confirm`: consumes the token, sets the password, ends the
/// user's other sessions.
pub async fn password_set_confirm(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<SetConfirmBody>,
) -> Result<HttpResponse, AppError> {
    let SetConfirmBody {
        token,
        new_password,
    } = body.into_inner();
    set_password_with_token(&state, &token, &new_password, client_ip(&req)).await?;
    Ok(HttpResponse::Ok().json(Acknowledged { ok: true }))
}

/// Shared by the API and the portal page.
pub async fn set_password_with_token(
    state: &AppState,
    token: &str,
    new_password: &str,
    ip: Option<String>,
) -> Result<(), AppError> {
    let invalid = || AppError::BadRequest("invalid or expired token".into());
    let hash = TokenHash::of(token);
    let row = password_set::entity::Entity::find()
        .filter(password_set::entity::Column::TokenHash.eq(hash.as_str()))
        .one(&state.db)
        .await?
        .filter(|r| hash.matches(&r.token_hash) && r.used_at.is_none() && r.expires_at > Utc::now())
        .ok_or_else(invalid)?;
    let target = Users::find_by_id(row.user_id)
        .one(&state.db)
        .await?
        .ok_or_else(invalid)?;
    let email = Email::parse(&target.email).map_err(AppError::Internal)?;
    let password = Password::parse(new_password, &email)?;
    let cost = state.settings.bcrypt_cost;
    let password_hash = web::block(move || password.hash(cost))
        .await
        .map_err(|e| AppError::Internal(e.to_string()))??;

    let txn = crate::db::begin_write(&state.db).await?;
    // Single use even under concurrency: only one request flips used_at.
    let claimed = password_set::entity::Entity::update_many()
        .col_expr(
            password_set::entity::Column::UsedAt,
            sea_orm::sea_query::Expr::value(Utc::now()),
        )
        .filter(password_set::entity::Column::Id.eq(row.id))
        .filter(password_set::entity::Column::UsedAt.is_null())
        .exec(&txn)
        .await?
        .rows_affected;
    if claimed != 1 {
        txn.rollback().await?;
        return Err(invalid());
    }
    password_set::void_unused(&txn, target.id).await?;
    user::store_password(&txn, &target, password_hash, ip).await?;
    txn.commit().await?;
    Ok(())
}
