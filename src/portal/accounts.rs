//! Account pages: login, logout, choosing a password with a one-time link, first access.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use maud::{Markup, html};
use serde::Deserialize;

use super::forms::{CsrfForm, PublicForm, csrf_form};
use super::layout::layout;
use super::respond::{page, redirect};
use super::session::{Csrf, PortalUser, SESSION_COOKIE, removal, session_cookie};
use crate::accounts::{Password, first_access, login, password_set};
use crate::domain::Email;
use crate::error::AppError;
use crate::http::extract::{client, client_ip};
use crate::state::AppState;

csrf_form!(LoginForm, SetPasswordForm, FirstAccessForm);

fn error_box(message: Option<&str>) -> Markup {
    html! { @if let Some(m) = message { p.error role="alert" { (m) } } }
}

fn login_form(csrf: &str, email: &str, volta: &str, message: Option<&str>) -> Markup {
    html! {
        h1 { "Entrar" }
        @if !volta.is_empty() && message.is_none() {
            p.notice role="status" { "Sua sessão terminou. Entre de novo para voltar à página em que estava." }
        }
        (error_box(message))
        form.card method="post" action="/entrar" {
            input type="hidden" name="csrf" value=(csrf);
            @if !volta.is_empty() { input type="hidden" name="volta" value=(volta); }
            label { "E-mail" input type="email" name="email" value=(email) required autocomplete="username"; }
            label { "Senha" input type="password" name="password" required autocomplete="current-password"; }
            button type="submit" { "Entrar" }
        }
    }
}

/// `?volta=`: the page a login returns to, when it is one of the portal's.
#[derive(Deserialize)]
pub struct LoginQuery {
    #[serde(default)]
    volta: String,
}

/// `volta` if the login may return there, else empty.
fn return_to(volta: &str) -> &str {
    if super::framing::safe_return(volta) {
        volta
    } else {
        ""
    }
}

pub async fn login_page(
    state: web::Data<AppState>,
    req: HttpRequest,
    user: PortalUser,
    q: web::Query<LoginQuery>,
) -> HttpResponse {
    let volta = return_to(&q.volta);
    if user.0.is_some() {
        return redirect(if volta.is_empty() { "/" } else { volta });
    }
    let csrf = Csrf::for_request(&req, &state);
    page(
        StatusCode::OK,
        layout(
            "Entrar",
            None,
            None,
            login_form(&csrf.value, "", volta, None),
        ),
        &csrf,
    )
}

#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    csrf: String,
    email: String,
    password: String,
    #[serde(default)]
    volta: String,
}

pub async fn login_submit(
    state: web::Data<AppState>,
    req: HttpRequest,
    form: PublicForm<LoginForm, AppError>,
) -> Result<HttpResponse, AppError> {
    let form = form.into_inner();
    let csrf = Csrf::for_request(&req, &state);
    let volta = return_to(&form.volta).to_owned();
    let again = |status: StatusCode, message: &str| {
        page(
            status,
            layout(
                "Entrar",
                None,
                None,
                login_form(&csrf.value, &form.email, &volta, Some(message)),
            ),
            &csrf,
        )
    };
    match login::attempt_login(&state, &client(&req), &form.email, form.password).await {
        Ok((_, login)) => Ok(HttpResponse::SeeOther()
            .insert_header((
                actix_web::http::header::LOCATION,
                if volta.is_empty() {
                    "/"
                } else {
                    volta.as_str()
                },
            ))
            .cookie(session_cookie(&state, login.token.expose().to_owned()))
            .finish()),
        Err(AppError::InvalidCredentials) => {
            let message = match login::attempts_left(&state, &form.email).await? {
                1 => format!(
                    "E-mail ou senha inválidos. Atenção: mais uma senha errada bloqueia esta conta por {}.",
                    minutes(state.settings.lockout_window_min.max(0) as u64)
                ),
                _ => "E-mail ou senha inválidos.".to_owned(),
            };
            Ok(again(StatusCode::UNAUTHORIZED, &message))
        }
        Err(AppError::TooManyRequests { retry_after_secs }) => {
            let message = format!(
                "Muitas tentativas. Tente novamente em {}, ou peça ao administrador que desbloqueie a conta.",
                minutes(retry_after_secs.div_ceil(60))
            );
            Ok(again(StatusCode::TOO_MANY_REQUESTS, &message))
        }
        Err(other) => Err(other),
    }
}

/// `1 minuto`, `15 minutos`.
fn minutes(n: u64) -> String {
    super::components::count(n, "minuto", "minutos")
}

pub async fn logout(
    state: web::Data<AppState>,
    req: HttpRequest,
    _form: PublicForm<CsrfForm, AppError>,
) -> Result<HttpResponse, AppError> {
    if let Some(cookie) = req.cookie(SESSION_COOKIE) {
        login::logout(&state, Some(cookie.value()), None, client_ip(&req)).await?;
    }
    Ok(HttpResponse::SeeOther()
        .insert_header((actix_web::http::header::LOCATION, "/entrar"))
        .cookie(removal(SESSION_COOKIE))
        .finish())
}

#[derive(Deserialize)]
pub struct TokenQuery {
    #[serde(default)]
    token: String,
}

fn password_fields() -> Markup {
    html! {
        label { "Nova senha (mínimo 10 caracteres)" input type="password" name="new_password" required minlength="10" autocomplete="new-password"; }
        label { "Confirme a senha" input type="password" name="confirm" required minlength="10" autocomplete="new-password"; }
    }
}

/// The account a password link is for, as its page names it.
struct Whose {
    nome: String,
    email: String,
}

async fn whose(state: &AppState, token: &str) -> Result<Option<Whose>, AppError> {
    Ok(password_set::holder(state, token).await?.map(|u| Whose {
        nome: u.nome,
        email: u.email,
    }))
}

fn invalid_link_page() -> Markup {
    layout(
        "Definir senha",
        None,
        None,
        html! {
            h1 { "Definir senha" }
            p.error role="alert" { "Este link é inválido, expirou ou já foi usado. Peça um novo ao administrador do escritório." }
        },
    )
}

fn set_password_form(csrf: &str, token: &str, whose: &Whose, message: Option<&str>) -> Markup {
    html! {
        h1 { "Definir senha" }
        p data-account { "Conta de " strong { (whose.nome) } " (" (whose.email) ")." }
        (error_box(message))
        form.card method="post" action="/definir-senha" {
            input type="hidden" name="csrf" value=(csrf);
            input type="hidden" name="token" value=(token);
            (password_fields())
            button type="submit" { "Definir senha" }
        }
    }
}

pub async fn set_password_page(
    state: web::Data<AppState>,
    req: HttpRequest,
    q: web::Query<TokenQuery>,
) -> Result<HttpResponse, AppError> {
    let csrf = Csrf::for_request(&req, &state);
    let Some(whose) = whose(&state, &q.token).await? else {
        return Ok(page(StatusCode::NOT_FOUND, invalid_link_page(), &csrf));
    };
    Ok(page(
        StatusCode::OK,
        layout(
            "Definir senha",
            None,
            None,
            set_password_form(&csrf.value, &q.token, &whose, None),
        ),
        &csrf,
    ))
}

#[derive(Deserialize)]
pub struct SetPasswordForm {
    #[serde(default)]
    csrf: String,
    token: String,
    new_password: String,
    confirm: String,
}

fn pt_message(e: &AppError) -> Option<String> {
    match e {
        AppError::Validation(m) if m.contains("at least") => {
            Some("A senha precisa ter pelo menos 10 caracteres.".into())
        }
        AppError::Validation(m) if m.contains("at most") => {
            Some("A senha é longa demais (máximo 256 caracteres).".into())
        }
        AppError::Validation(m) if m.contains("e-mail") => {
            Some("A senha não pode ser o seu e-mail.".into())
        }
        AppError::BadRequest(_) => {
            Some("Link inválido ou expirado. Peça um novo ao administrador.".into())
        }
        _ => None,
    }
}

pub async fn set_password_submit(
    state: web::Data<AppState>,
    req: HttpRequest,
    form: PublicForm<SetPasswordForm, AppError>,
) -> Result<HttpResponse, AppError> {
    let form = form.into_inner();
    let csrf = Csrf::for_request(&req, &state);
    let Some(account) = whose(&state, &form.token).await? else {
        return Ok(page(StatusCode::NOT_FOUND, invalid_link_page(), &csrf));
    };
    let retry = |message: &str| {
        page(
            StatusCode::UNPROCESSABLE_ENTITY,
            layout(
                "Definir senha",
                None,
                None,
                set_password_form(&csrf.value, &form.token, &account, Some(message)),
            ),
            &csrf,
        )
    };
    if form.new_password != form.confirm {
        return Ok(retry("As senhas não conferem."));
    }
    match password_set::set_password_with_token(
        &state,
        &form.token,
        &form.new_password,
        client_ip(&req),
    )
    .await
    {
        Ok(()) => Ok(page(
            StatusCode::OK,
            layout(
                "Senha definida",
                None,
                None,
                html! {
                    h1 { "Senha definida" }
                    p { "Pronto: a senha de " strong { (account.nome) } " (" (account.email) ") foi definida." }
                    p { a.button href="/entrar" { "Entrar" } }
                },
            ),
            &csrf,
        )),
        Err(e) => match pt_message(&e) {
            Some(m) => Ok(retry(&m)),
            None => Err(e),
        },
    }
}

/// What the first-access form had typed, kept when it comes back with a message.
#[derive(Default)]
struct Typed<'a> {
    nome: &'a str,
    email: &'a str,
}

fn first_access_form(csrf: &str, token: &str, typed: Typed<'_>, message: Option<&str>) -> Markup {
    html! {
        h1 { "Primeiro acesso" }
        p { "Crie a conta do primeiro administrador do escritório." }
        (error_box(message))
        form.card method="post" action="/primeiro-acesso" {
            input type="hidden" name="csrf" value=(csrf);
            input type="hidden" name="token" value=(token);
            label { "Nome" input type="text" name="nome" value=(typed.nome) required maxlength="200"; }
            label { "E-mail" input type="email" name="email" value=(typed.email) required autocomplete="username"; }
            (password_fields())
            button type="submit" { "Criar administrador" }
        }
    }
}

pub async fn first_access_page(
    state: web::Data<AppState>,
    req: HttpRequest,
    q: web::Query<TokenQuery>,
) -> HttpResponse {
    let csrf = Csrf::for_request(&req, &state);
    if !first_access::setup_token_matches(&state, &q.token) {
        let body = html! { h1 { "Primeiro acesso" } p { "Este link não é válido (o administrador já foi criado, ou o servidor foi reiniciado e imprimiu um novo link)." } };
        return page(
            StatusCode::NOT_FOUND,
            layout("Primeiro acesso", None, None, body),
            &csrf,
        );
    }
    page(
        StatusCode::OK,
        layout(
            "Primeiro acesso",
            None,
            None,
            first_access_form(&csrf.value, &q.token, Typed::default(), None),
        ),
        &csrf,
    )
}

#[derive(Deserialize)]
pub struct FirstAccessForm {
    #[serde(default)]
    csrf: String,
    token: String,
    nome: String,
    email: String,
    new_password: String,
    confirm: String,
}

pub async fn first_access_submit(
    state: web::Data<AppState>,
    req: HttpRequest,
    form: PublicForm<FirstAccessForm, AppError>,
) -> Result<HttpResponse, AppError> {
    let form = form.into_inner();
    let csrf = Csrf::for_request(&req, &state);
    if !first_access::setup_token_matches(&state, &form.token) {
        return Err(AppError::NotFound("first-access link is not valid".into()));
    }
    let retry = |message: &str| {
        page(
            StatusCode::UNPROCESSABLE_ENTITY,
            layout(
                "Primeiro acesso",
                None,
                None,
                first_access_form(
                    &csrf.value,
                    &form.token,
                    Typed {
                        nome: &form.nome,
                        email: &form.email,
                    },
                    Some(message),
                ),
            ),
            &csrf,
        )
    };
    let Ok(email) = Email::parse(&form.email) else {
        return Ok(retry("E-mail inválido."));
    };
    if form.new_password != form.confirm {
        return Ok(retry("As senhas não conferem."));
    }
    let password = match Password::parse(&form.new_password, &email) {
        Ok(p) => p,
        Err(e) => {
            return Ok(retry(
                &pt_message(&e).unwrap_or_else(|| "Senha inválida.".into()),
            ));
        }
    };
    let nome = form.nome.trim().to_owned();
    if nome.is_empty() || nome.chars().count() > 200 {
        return Ok(retry("Informe o nome (até 200 caracteres)."));
    }
    let shown = html! {
        h1 { "Administrador criado" }
        p role="status" { "A conta de " strong { (nome) } " (" (email.as_str()) ") foi criada com o perfil ADMIN." }
        p { "Entre com esse e-mail e a senha escolhida. Depois, em Usuários, crie as contas da equipe." }
        p { a.button href="/entrar" { "Entrar" } }
    };
    first_access::create_first_admin(&state, &form.token, nome, email, password, client_ip(&req))
        .await?;
    Ok(page(
        StatusCode::OK,
        layout("Administrador criado", None, None, shown),
        &csrf,
    ))
}
