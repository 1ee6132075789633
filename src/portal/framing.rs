//! The portal's error pages for someone logged in, and where a login returns: a middleware
//! over every response. An error page keeps the frame (menu, name, "Sair"); a page that met no
//! session sends the browser to the login with the page to come back to.

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::middleware::Next;
use actix_web::{FromRequest, HttpResponse};

use super::error::PageError;
use super::layout::{Section, frame};
use super::session::{PortalUser, Staff};
use crate::error::AppError;
use crate::state::AppState;

/// Where a login should return to after the `GET` `req` met no session: the page itself. (A
/// form sent without a session names no page, the portal sends no `Referer`: the page's
/// script remembers it, see `static/portal.js`.)
fn return_path(req: &actix_web::HttpRequest) -> Option<String> {
    if req.method() != actix_web::http::Method::GET {
        return None;
    }
    let path = match req.query_string() {
        "" => req.path().to_owned(),
        q => format!("{}?{q}", req.path()),
    };
    safe_return(&path).then_some(path)
}

/// A path the login may send the browser to: on this site, a page (not the login itself, the
/// event stream or a download), of a sane length.
pub fn safe_return(path: &str) -> bool {
    path.starts_with('/')
        && !path.starts_with("//")
        && !path.starts_with("/\\")
        && path.len() <= 1000
        && !path.chars().any(|c| c.is_control() || c == '\\')
        && ![
            "/entrar",
            "/sair",
            "/solicitacoes/eventos",
            "/auditoria/export.csv",
            "/static/",
        ]
        .iter()
        .any(|p| path.starts_with(p))
}

/// Middleware: a portal error page shown to someone logged in keeps the frame (the menu their
/// role may open, their name, "Sair"), so an error is a page of the portal, not a dead end.
pub async fn framed(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let res = next.call(req).await?;
    let status = res.status();
    let Some(error) = res
        .response()
        .error()
        .and_then(|e| e.as_error::<PageError>())
    else {
        return Ok(res.map_into_left_body());
    };
    if matches!(error.error, AppError::Unauthorized) {
        // No session (or it expired): the login comes back here afterwards.
        let to = match return_path(res.request()) {
            Some(path) => format!("/entrar?volta={}", super::components::encode(&path)),
            None => "/entrar".to_owned(),
        };
        let response = HttpResponse::SeeOther()
            .insert_header((header::LOCATION, to))
            .finish();
        return Ok(res.into_response(response).map_into_right_body());
    }
    if !(status.is_client_error() || status.is_server_error()) {
        return Ok(res.map_into_left_body());
    }
    let request = res.request().clone();
    let Some(state) = request
        .app_data::<actix_web::web::Data<AppState>>()
        .cloned()
    else {
        return Ok(res.map_into_left_body());
    };
    let Ok(PortalUser(Some(user))) = PortalUser::extract(&request).await else {
        return Ok(res.map_into_left_body());
    };
    let Ok(staff) = Staff::from_parts(&request, &state, PortalUser(Some(user))) else {
        return Ok(res.map_into_left_body());
    };
    let framed = frame(
        &staff.user.user,
        staff.is_admin(),
        &staff.csrf.value,
        Section::of_path(request.path()),
        super::error::heading(status),
        error.body(),
    );
    let response = error.respond(framed, staff.csrf.new_cookie.clone());
    Ok(res.into_response(response).map_into_right_body())
}
