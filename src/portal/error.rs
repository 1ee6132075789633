//! Errors on portal pages: the status is the one [`AppError`] maps to (one mapping for the API
//! and the portal); the body is a page in pt-BR instead of JSON, and a missing login sends the
//! browser to `/entrar`. Internal detail never reaches the page.

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{StatusCode, header};
use actix_web::middleware::Next;
use actix_web::{FromRequest, HttpResponse, ResponseError};
use maud::{Markup, html};

use super::layout::{Section, frame};
use super::session::{Csrf, PortalUser, Staff};
use crate::error::AppError;
use crate::state::AppState;

#[derive(Debug, thiserror::Error)]
#[error("{error}")]
pub struct PageError {
    pub error: AppError,
    /// Where the page's "Voltar" link leads.
    pub back: Option<String>,
}

impl From<AppError> for PageError {
    fn from(error: AppError) -> Self {
        Self { error, back: None }
    }
}

impl From<sea_orm::DbErr> for PageError {
    fn from(e: sea_orm::DbErr) -> Self {
        AppError::from(e).into()
    }
}

/// The portal's answer to a request the middleware refused before any page ran
/// (`http::middleware::ErrorPage`).
pub fn refusal_page(error: AppError) -> HttpResponse {
    PageError::from(error).error_response()
}

/// `.map_err(back_to("/solicitacoes"))`: an error page whose "Voltar" leads there.
pub fn back_to(path: &str) -> impl FnOnce(AppError) -> PageError + '_ {
    move |error| PageError {
        error,
        back: Some(path.to_owned()),
    }
}

fn heading(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 | 422 => "Dados inválidos",
        403 => "Acesso negado",
        404 => "Não encontrado",
        409 => "Não foi possível concluir",
        410 => "Link expirado",
        413 => "Arquivo grande demais",
        429 => "Muitas tentativas",
        503 => "Serviço indisponível",
        _ => "Erro interno",
    }
}

/// The domain's message in pt-BR where the portal knows it; otherwise as the API says it.
fn detail(error: &AppError) -> String {
    let text = error.to_string();
    let known: &[(&str, &str)] = &[
        (
            "requires the ADMIN or DEV role",
            "Esta página é só para ADMIN ou DEV.",
        ),
        (
            "reason: required to deny",
            "Informe o motivo para negar o pedido.",
        ),
        (
            "this device belongs to another user",
            "Este computador pertence a outro usuário.",
        ),
        ("device blocked", "Este computador está bloqueado."),
        (
            "the office must keep at least one active ADMIN",
            "O escritório precisa manter ao menos um ADMIN ativo.",
        ),
        ("only a DEV", "Somente um DEV pode fazer isso com um DEV."),
        (
            "certificate unavailable",
            "O arquivo deste certificado não está mais na pasta.",
        ),
        (
            "certificate unusable",
            "O arquivo deste certificado não pôde ser aberto.",
        ),
        ("certificate expired", "Este certificado está vencido."),
        (
            "the job is no longer",
            "O pedido mudou de situação enquanto isso; recarregue a página.",
        ),
        (
            "a user with that e-mail already exists",
            "Já existe um usuário com esse e-mail.",
        ),
        (
            "a computer with that name already exists",
            "Já existe um computador com esse nome no escritório. Escolha outro nome.",
        ),
        ("no such", "Não encontrado neste escritório."),
        (
            "formulário expirado",
            "Formulário expirado ou de outra origem. Recarregue a página e tente de novo.",
        ),
    ];
    known
        .iter()
        .find(|(en, _)| text.starts_with(en))
        .map(|(_, pt)| (*pt).to_owned())
        .unwrap_or(text)
}

impl PageError {
    /// The page's heading and body (no frame).
    fn body(&self) -> Markup {
        let status = self.status_code();
        let message = if status.is_server_error() {
            "Algo deu errado do nosso lado. Tente de novo em instantes; se continuar, avise o suporte (o registro do servidor tem o detalhe).".to_owned()
        } else {
            detail(&self.error)
        };
        let back = self.back.clone().unwrap_or_else(|| "/".to_owned());
        html! {
            h1 { (heading(status)) }
            p.error role="alert" { (message) }
            p { a.button href=(back) { "Voltar" } }
        }
    }

    fn respond(&self, framed: Markup, csrf: Option<&Csrf>) -> HttpResponse {
        let mut res = HttpResponse::build(self.status_code());
        res.insert_header((header::CONTENT_TYPE, "text/html; charset=utf-8"));
        if let AppError::TooManyRequests { retry_after_secs } = &self.error {
            res.insert_header((header::RETRY_AFTER, *retry_after_secs));
        }
        if let Some(cookie) = csrf.and_then(|c| c.new_cookie.clone()) {
            res.cookie(cookie);
        }
        res.body(framed.into_string())
    }
}

impl ResponseError for PageError {
    fn status_code(&self) -> StatusCode {
        self.error.status_code()
    }

    fn error_response(&self) -> HttpResponse {
        if matches!(self.error, AppError::Unauthorized) {
            return HttpResponse::SeeOther()
                .insert_header((header::LOCATION, "/entrar"))
                .finish();
        }
        let status = self.status_code();
        if status.is_server_error() {
            tracing::error!(error = %self.error, "portal page failed");
        }
        self.respond(
            super::layout::layout(heading(status), None, None, self.body()),
            None,
        )
    }
}

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
        heading(status),
        error.body(),
    );
    let response = error.respond(framed, Some(&staff.csrf));
    Ok(res.into_response(response).map_into_right_body())
}
