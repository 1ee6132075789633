//! The portal's cookie session (a session row like the API's refresh sessions, never rotated
//! by page views) and CSRF protection: every form carries a token that is an HMAC of the
//! browser's session (or, before login, of a random value in an HttpOnly, SameSite=Strict
//! cookie named `__Host-...` over HTTPS), and every POST must match it. A cookie planted from a
//! sibling host or over plain HTTP does not make a token that passes.

use std::future::Future;
use std::pin::Pin;

use actix_web::cookie::{Cookie, SameSite, time::Duration as CookieDuration};
use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest, web};
use sea_orm::EntityTrait;
use subtle::ConstantTimeEq;

use crate::accounts::{User, session};
use crate::crypto::Token;
use crate::error::AppError;
use crate::state::AppState;

pub const SESSION_COOKIE: &str = "certhub_session";
/// The pre-login CSRF cookie; over HTTPS the `__Host-` prefix pins it to this host and path
/// and to secure transport.
pub const CSRF_COOKIE: &str = "certhub_csrf";
pub const CSRF_COOKIE_SECURE: &str = "__Host-certhub_csrf";

pub fn csrf_cookie_name(state: &AppState) -> &'static str {
    if state.settings.cookie_secure {
        CSRF_COOKIE_SECURE
    } else {
        CSRF_COOKIE
    }
}

pub fn session_cookie(state: &AppState, value: String) -> Cookie<'static> {
    Cookie::build(SESSION_COOKIE, value)
        .path("/")
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(state.settings.cookie_secure)
        .max_age(CookieDuration::days(state.settings.refresh_ttl_days))
        .finish()
}

pub fn removal(name: &'static str) -> Cookie<'static> {
    let mut c = Cookie::build(name, "").path("/").finish();
    c.make_removal();
    c
}

/// The CSRF token for this browser's forms, and the pre-login cookie to set when it had none.
pub struct Csrf {
    pub value: String,
    pub new_cookie: Option<Cookie<'static>>,
}

/// What a browser's CSRF token is bound to: its session, else its pre-login value.
fn binding(req: &HttpRequest, state: &AppState) -> Option<String> {
    if let Some(session) = req.cookie(SESSION_COOKIE).filter(|c| !c.value().is_empty()) {
        return Some(format!("session:{}", session.value()));
    }
    req.cookie(csrf_cookie_name(state))
        .map(|c| c.value().to_owned())
        .filter(|v| v.len() == 43)
        .map(|v| format!("pre:{v}"))
}

fn token_for(state: &AppState, binding: &str) -> String {
    use base64::Engine;
    use hmac::{Hmac, Mac};
    let key = state.master_key.derive("certhub-portal-csrf-v1");
    let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(key.as_ref()).expect("any key");
    mac.update(binding.as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
}

impl Csrf {
    pub fn for_request(req: &HttpRequest, state: &AppState) -> Self {
        if let Some(binding) = binding(req, state) {
            return Csrf {
                value: token_for(state, &binding),
                new_cookie: None,
            };
        }
        let pre = Token::generate().expose().to_owned();
        let value = token_for(state, &format!("pre:{pre}"));
        let cookie = Cookie::build(csrf_cookie_name(state), pre)
            .path("/")
            .http_only(true)
            .same_site(SameSite::Strict)
            .secure(state.settings.cookie_secure)
            .finish();
        Csrf {
            value,
            new_cookie: Some(cookie),
        }
    }

    /// A POST is accepted only when its form field is the token of this browser's binding.
    pub fn verify(req: &HttpRequest, submitted: &str) -> Result<(), AppError> {
        let ok = req
            .app_data::<web::Data<AppState>>()
            .and_then(|state| binding(req, state).map(|b| token_for(state, &b)))
            .is_some_and(|expected| bool::from(expected.as_bytes().ct_eq(submitted.as_bytes())));
        if ok {
            Ok(())
        } else {
            Err(AppError::Forbidden(
                "formulário expirado ou de outra origem (CSRF)".into(),
            ))
        }
    }
}

/// The logged-in portal user, if any.
pub struct PortalUser(pub Option<User>);

impl FromRequest for PortalUser {
    type Error = AppError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, AppError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let state = req.app_data::<web::Data<AppState>>().cloned();
        let cookie = req.cookie(SESSION_COOKIE).map(|c| c.value().to_owned());
        Box::pin(async move {
            let (Some(state), Some(cookie)) = (state, cookie) else {
                return Ok(PortalUser(None));
            };
            let Some(row) = session::find_live(&state.db, &cookie).await? else {
                return Ok(PortalUser(None));
            };
            let user = crate::accounts::user::Users::find_by_id(row.user_id)
                .one(&state.db)
                .await?
                .filter(|u| u.is_active);
            Ok(PortalUser(user))
        })
    }
}

/// A logged-in, active user of the portal, as the domain functions take them, with the CSRF
/// token for the page's forms. Without a live session the page redirects to the login.
pub struct Staff {
    pub user: crate::identity::AuthUser,
    pub csrf: Csrf,
}

impl Staff {
    pub fn is_admin(&self) -> bool {
        self.user.is_admin()
    }
}

impl Staff {
    /// The staff member behind `user` (the login page when there is none).
    pub fn from_parts(
        req: &HttpRequest,
        state: &AppState,
        user: PortalUser,
    ) -> Result<Self, super::error::PageError> {
        let Some(user) = user.0 else {
            return Err(AppError::Unauthorized.into());
        };
        Ok(Staff {
            user: crate::identity::AuthUser::new(user, crate::http::extract::client_ip(req))?,
            csrf: Csrf::for_request(req, state),
        })
    }
}

impl FromRequest for Staff {
    type Error = super::error::PageError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let portal_user = PortalUser::from_request(req, payload);
        let req = req.clone();
        Box::pin(async move {
            let user = portal_user.await?;
            let state = req
                .app_data::<web::Data<AppState>>()
                .ok_or_else(|| AppError::Internal("application state missing".into()))?;
            Staff::from_parts(&req, state, user)
        })
    }
}

/// A logged-in ADMIN or DEV; anyone else gets the "access denied" page.
pub struct AdminStaff(pub Staff);

impl FromRequest for AdminStaff {
    type Error = super::error::PageError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let staff = Staff::from_request(req, payload);
        Box::pin(async move {
            let staff = staff.await?;
            staff.user.require_admin()?;
            Ok(AdminStaff(staff))
        })
    }
}
