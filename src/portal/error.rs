//! Errors on portal pages: the status is the one [`AppError`] maps to (one mapping for the API
//! and the portal); the body is a page in pt-BR instead of JSON, and a missing login sends the
//! browser to `/entrar`. Internal detail never reaches the page.

use actix_web::http::{StatusCode, header};
use actix_web::{HttpResponse, ResponseError};
use maud::{Markup, html};

use crate::error::AppError;

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

pub(super) fn heading(status: StatusCode) -> &'static str {
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
            "wrong password",
            "Senha errada: o arquivo do certificado não abriu com essa senha.",
        ),
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
    pub(super) fn body(&self) -> Markup {
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

    pub(super) fn respond(
        &self,
        framed: Markup,
        csrf_cookie: Option<actix_web::cookie::Cookie<'static>>,
    ) -> HttpResponse {
        let mut res = HttpResponse::build(self.status_code());
        res.insert_header((header::CONTENT_TYPE, "text/html; charset=utf-8"));
        if let AppError::TooManyRequests { retry_after_secs } = &self.error {
            res.insert_header((header::RETRY_AFTER, *retry_after_secs));
        }
        if let Some(cookie) = csrf_cookie {
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
