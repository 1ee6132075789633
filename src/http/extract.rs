//! Extractors that authenticate a request: [`AuthUser`] (any role), [`AdminUser`] (ADMIN/DEV)
//! and [`AuthDevice`] (an agent), and where the request came from. Whether a bearer token is
//! good is decided by `accounts::authentication` and `devices::authentication`.

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest, web};

use crate::error::AppError;
pub use crate::identity::{AuthDevice, AuthUser};
use crate::state::AppState;

/// An authenticated ADMIN or DEV.
#[derive(Debug, Clone)]
pub struct AdminUser(pub AuthUser);

/// Where the request came from: the peer, or the client a trusted proxy names
/// (`trusted_proxies`); nobody else's forwarding headers are believed.
pub fn client_origin(req: &HttpRequest) -> super::proxy::ClientOrigin {
    let trusted = req
        .app_data::<web::Data<AppState>>()
        .map(|s| s.settings.trusted_proxies.as_slice())
        .unwrap_or(&[]);
    super::proxy::origin_of(req, trusted)
}

/// The client's address (see [`client_origin`]).
pub fn client_addr(req: &HttpRequest) -> Option<std::net::IpAddr> {
    client_origin(req).ip
}

/// The client's address as the audit log and sessions record it.
pub fn client_ip(req: &HttpRequest) -> Option<String> {
    client_addr(req).map(|ip| ip.to_string())
}

/// The client's address and browser, as a login records them.
pub fn client(req: &HttpRequest) -> crate::accounts::session::Origin {
    crate::accounts::session::Origin {
        ip: client_ip(req),
        user_agent: req
            .headers()
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
    }
}

pub fn bearer(req: &HttpRequest) -> Option<String> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_owned())
}

type Extracted<T> = Pin<Box<dyn Future<Output = Result<T, AppError>>>>;

/// The state, the bearer token and the client's address of `req`, for `check` to decide on.
fn with_token<T: 'static, F>(
    req: &HttpRequest,
    check: fn(web::Data<AppState>, Option<String>, Option<String>) -> F,
) -> Extracted<T>
where
    F: Future<Output = Result<T, AppError>> + 'static,
{
    let state = req.app_data::<web::Data<AppState>>().cloned();
    let token = bearer(req);
    let ip = client_ip(req);
    Box::pin(async move {
        let state = state.ok_or_else(|| AppError::Internal("application state missing".into()))?;
        check(state, token, ip).await
    })
}

async fn user(
    state: web::Data<AppState>,
    token: Option<String>,
    ip: Option<String>,
) -> Result<AuthUser, AppError> {
    crate::accounts::authentication::user_for_token(&state, token, ip).await
}

async fn device(
    state: web::Data<AppState>,
    token: Option<String>,
    ip: Option<String>,
) -> Result<AuthDevice, AppError> {
    crate::devices::authentication::device_for_token(&state, token, ip).await
}

impl FromRequest for AuthUser {
    type Error = AppError;
    type Future = Extracted<Self>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        with_token(req, user)
    }
}

impl FromRequest for AdminUser {
    type Error = AppError;
    type Future = Extracted<Self>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let user = AuthUser::from_request(req, payload);
        Box::pin(async move {
            let user = user.await?;
            user.require_admin()?;
            Ok(AdminUser(user))
        })
    }
}

impl FromRequest for AuthDevice {
    type Error = AppError;
    type Future = Extracted<Self>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        with_token(req, device)
    }
}
