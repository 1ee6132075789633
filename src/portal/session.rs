//! The portal's cookie session (a session row like the API's refresh sessions, never rotated
//! by page views) and CSRF protection by double submit: every form carries the value of an
//! HttpOnly, SameSite=Strict cookie, and every POST must match it.

use std::future::Future;
use std::pin::Pin;

use actix_web::cookie::{Cookie, SameSite, time::Duration as CookieDuration};
use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest, web};
use sea_orm::EntityTrait;
use subtle::ConstantTimeEq;

use crate::accounts::{User, session};
use crate::crypto::Token;
use crate::http::AppError;
use crate::startup::AppState;

pub const SESSION_COOKIE: &str = "certhub_session";
pub const CSRF_COOKIE: &str = "certhub_csrf";

pub fn session_cookie(state: &AppState, value: String) -> Cookie<'static> {
    Cookie::build(SESSION_COOKIE, value)
        .path("/")
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(state.settings.tls.is_some())
        .max_age(CookieDuration::days(state.settings.refresh_ttl_days))
        .finish()
}

pub fn removal(name: &'static str) -> Cookie<'static> {
    let mut c = Cookie::build(name, "").path("/").finish();
    c.make_removal();
    c
}

/// The CSRF value for this browser: the cookie's, or a fresh one to set.
pub struct Csrf {
    pub value: String,
    pub new_cookie: Option<Cookie<'static>>,
}

impl Csrf {
    pub fn for_request(req: &HttpRequest, state: &AppState) -> Self {
        match req
            .cookie(CSRF_COOKIE)
            .map(|c| c.value().to_owned())
            .filter(|v| v.len() == 43)
        {
            Some(value) => Csrf {
                value,
                new_cookie: None,
            },
            None => {
                let value = Token::generate().expose().to_owned();
                let cookie = Cookie::build(CSRF_COOKIE, value.clone())
                    .path("/")
                    .http_only(true)
                    .same_site(SameSite::Strict)
                    .secure(state.settings.tls.is_some())
                    .finish();
                Csrf {
                    value,
                    new_cookie: Some(cookie),
                }
            }
        }
    }

    /// A POST is accepted only when its form field matches the cookie.
    pub fn verify(req: &HttpRequest, submitted: &str) -> Result<(), AppError> {
        let cookie = req
            .cookie(CSRF_COOKIE)
            .map(|c| c.value().to_owned())
            .unwrap_or_default();
        let ok = !cookie.is_empty() && bool::from(cookie.as_bytes().ct_eq(submitted.as_bytes()));
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
