//! Answering a portal request: an HTML page (with the CSRF cookie when one was minted), a
//! logged-in page in its frame, a redirect, a redirect with a notice after a form.

use actix_web::HttpResponse;
use actix_web::http::header;
use maud::Markup;

use super::layout::{Section, frame};
use super::session::{Csrf, Staff};

/// An HTML response (sets the CSRF cookie when the page minted one).
pub fn page(status: actix_web::http::StatusCode, markup: Markup, csrf: &Csrf) -> HttpResponse {
    let mut res = HttpResponse::build(status);
    res.insert_header((header::CONTENT_TYPE, "text/html; charset=utf-8"));
    if let Some(c) = &csrf.new_cookie {
        res.cookie(c.clone());
    }
    res.body(markup.into_string())
}

pub fn redirect(to: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, to))
        .finish()
}

/// A logged-in page, `200 OK`.
pub fn staff_page(staff: &Staff, section: Section, title: &str, body: Markup) -> HttpResponse {
    let framed = frame(
        &staff.user.user,
        staff.is_admin(),
        &staff.csrf.value,
        section,
        title,
        body,
    );
    page(actix_web::http::StatusCode::OK, framed, &staff.csrf)
}

/// After a form: back to `to` with a notice code (see [`super::components::notice`]).
pub fn done(to: &str, notice: &str) -> HttpResponse {
    let sep = if to.contains('?') { '&' } else { '?' };
    redirect(&format!("{to}{sep}ok={notice}"))
}
