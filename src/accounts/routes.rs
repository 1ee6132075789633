//! The accounts API (`/api/v1/auth/*`, `/api/v1/admin/users`): thin handlers over
//! [`super::login`], [`super::administration`] and [`super::password_set`]; the refresh token
//! travels in an HttpOnly cookie.

use actix_web::cookie::{Cookie, SameSite, time::Duration as CookieDuration};
use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::administration::{self, CreateBody, PatchBody, UserView};
use super::login::{self, Refreshed};
use super::session::Login;
use super::user::User;
use crate::domain::OrgId;
use crate::error::AppError;
use crate::http::extract::{AdminUser, AuthUser, bearer, client, client_ip};
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

/// Response of `POST /api/v1/admin/users`: the user and their one-time password-set link.
#[derive(Serialize, schemars::JsonSchema)]
pub struct CreatedResponse {
    pub user: UserView,
    pub password_set_link: String,
    pub expires_at: chrono::DateTime<chrono::Utc>,
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

/// `POST /api/v1/auth/login`
pub async fn login(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<LoginBody>,
) -> Result<HttpResponse, AppError> {
    let LoginBody { email, password } = body.into_inner();
    let (user, login) = login::attempt_login(&state, &client(&req), &email, password).await?;
    tokens_response(&state, &user, &login)
}

/// `{access_token}` for `user`, with `refresh` set as the HttpOnly cookie.
fn tokens_response(state: &AppState, user: &User, login: &Login) -> Result<HttpResponse, AppError> {
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
    match login::refresh(&state, &presented, &client(&req)).await? {
        Refreshed::Rotated { user, login } => tokens_response(&state, &user, &login),
        Refreshed::Refused => Ok(unauthorized_clearing_cookie(&state)),
    }
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
    let cookie = req.cookie(REFRESH_COOKIE);
    let access_token = bearer(&req);
    login::logout(
        &state,
        cookie.as_ref().map(|c| c.value()),
        access_token.as_deref(),
        client_ip(&req),
    )
    .await?;
    Ok(HttpResponse::Ok()
        .cookie(clear_cookie(&state))
        .json(Acknowledged { ok: true }))
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
    let target = administration::find_by_email(&state.db, admin.org, &body.email).await?;
    let link = administration::issue_password_link(&state, &admin, &target).await?;
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
    super::password_set::set_password_with_token(&state, &token, &new_password, client_ip(&req))
        .await?;
    Ok(HttpResponse::Ok().json(Acknowledged { ok: true }))
}

/// `GET /api/v1/admin/users`
pub async fn list(state: web::Data<AppState>, admin: AdminUser) -> Result<HttpResponse, AppError> {
    Ok(HttpResponse::Ok().json(administration::list_users_with_locks(&state, admin.0.org).await?))
}

/// Response of `POST /api/v1/admin/users/{id}/unlock`.
#[derive(Serialize, schemars::JsonSchema)]
pub struct Unlocked {
    pub ok: bool,
    /// `false` when the account was not locked (nothing changed, nothing audited).
    pub unlocked: bool,
}

/// `POST /api/v1/admin/users/{id}/unlock`
pub async fn unlock(
    state: web::Data<AppState>,
    admin: AdminUser,
    path: web::Path<Uuid>,
) -> Result<HttpResponse, AppError> {
    let unlocked = administration::unlock_user(&state, &admin.0, path.into_inner()).await?;
    Ok(HttpResponse::Ok().json(Unlocked { ok: true, unlocked }))
}

/// `POST /api/v1/admin/users`: creates the user and returns their one-time password-set link.
pub async fn create(
    state: web::Data<AppState>,
    admin: AdminUser,
    body: web::Json<CreateBody>,
) -> Result<HttpResponse, AppError> {
    let created = administration::create_user(&state, &admin.0, body.into_inner()).await?;
    Ok(HttpResponse::Created().json(CreatedResponse {
        user: created.user,
        password_set_link: created.link.url.expose().to_owned(),
        expires_at: created.link.expires_at,
    }))
}

/// `PATCH /api/v1/admin/users/{id}`
pub async fn patch(
    state: web::Data<AppState>,
    admin: AdminUser,
    path: web::Path<Uuid>,
    body: web::Json<PatchBody>,
) -> Result<HttpResponse, AppError> {
    let view =
        administration::update_user(&state, &admin.0, path.into_inner(), body.into_inner()).await?;
    Ok(HttpResponse::Ok().json(view))
}
