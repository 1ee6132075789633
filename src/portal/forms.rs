//! The preamble of every portal form, in one place: who submits it (for a logged-in page: the
//! session, then the role), the form itself, then its CSRF token, checked in that order
//! before the page's handler runs. A form type says where its token is with [`csrf_form!`].

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest, ResponseError, web};
use serde::de::DeserializeOwned;

use super::error::PageError;
use super::session::Csrf;
use crate::error::AppError;

/// A form that carries the page's CSRF token in its `csrf` field.
pub trait WithCsrf {
    fn csrf(&self) -> &str;
}

/// Implements [`WithCsrf`] for form types with a `csrf: String` field.
macro_rules! csrf_form {
    ($($form:ty),* $(,)?) => {
        $(impl $crate::portal::forms::WithCsrf for $form {
            fn csrf(&self) -> &str {
                &self.csrf
            }
        })*
    };
}
pub(crate) use csrf_form;

/// A form whose only field is its CSRF token (a button that acts).
#[derive(serde::Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    pub csrf: String,
}

csrf_form!(CsrfForm);

type Extracted<T> = Pin<Box<dyn Future<Output = Result<T, actix_web::Error>>>>;

/// Reads form `T` from the request body and checks its CSRF token; a forged or stale token is
/// answered as `E` says (the portal's error page, or the JSON error of the account pages).
async fn checked<T, E>(req: HttpRequest, form: web::Form<T>) -> Result<T, actix_web::Error>
where
    T: WithCsrf,
    E: From<AppError> + ResponseError + 'static,
{
    let form = form.into_inner();
    Csrf::verify(&req, form.csrf()).map_err(E::from)?;
    Ok(form)
}

/// A form posted by a logged-in user `U` (`Staff` or `AdminStaff`): the login and role are
/// checked first (the login page or "access denied"), then the form's CSRF token.
pub struct Submitted<U, T> {
    pub user: U,
    pub form: T,
}

impl<U, T> FromRequest for Submitted<U, T>
where
    U: FromRequest<Error = PageError> + 'static,
    T: DeserializeOwned + WithCsrf + 'static,
{
    type Error = actix_web::Error;
    type Future = Extracted<Self>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let user = U::from_request(req, payload);
        let form = web::Form::<T>::from_request(req, payload);
        let req = req.clone();
        Box::pin(async move {
            let user = user.await?;
            let form = checked::<T, PageError>(req, form.await?).await?;
            Ok(Submitted { user, form })
        })
    }
}

/// A form posted before a login (the account pages): its CSRF token checked, a refusal in
/// error shape `E`.
pub struct PublicForm<T, E = PageError>(pub T, PhantomData<fn() -> E>);

impl<T, E> PublicForm<T, E> {
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T, E> FromRequest for PublicForm<T, E>
where
    T: DeserializeOwned + WithCsrf + 'static,
    E: From<AppError> + ResponseError + 'static,
{
    type Error = actix_web::Error;
    type Future = Extracted<Self>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let form = web::Form::<T>::from_request(req, payload);
        let req = req.clone();
        Box::pin(async move {
            let form = checked::<T, E>(req, form.await?).await?;
            Ok(PublicForm(form, PhantomData))
        })
    }
}
