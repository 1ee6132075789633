//! Account pages: login, logout, choosing a password with a one-time link, first access.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use maud::{Markup, html};
use sea_orm::{EntityTrait, PaginatorTrait};
use serde::Deserialize;

use super::session::{Csrf, PortalUser, SESSION_COOKIE, removal, session_cookie};
use super::{layout, page, redirect};
use crate::accounts::{NewUser, Password, api, session, user};
use crate::audit::{self, Actor, AuditAction, Entry};
use crate::crypto::TokenHash;
use crate::domain::{Email, OrgId, Role};
use crate::error::AppError;
use crate::http::extract::client_ip;
use crate::state::AppState;

fn error_box(message: Option<&str>) -> Markup {
    html! { @if let Some(m) = message { p.error role="alert" { (m) } } }
}

fn login_form(csrf: &str, email: &str, message: Option<&str>) -> Markup {
    html! {
        h1 { "Entrar" }
        (error_box(message))
        form.card method="post" action="/entrar" {
            input type="hidden" name="csrf" value=(csrf);
            label { "E-mail" input type="email" name="email" value=(email) required autocomplete="username"; }
            label { "Senha" input type="password" name="password" required autocomplete="current-password"; }
            button type="submit" { "Entrar" }
        }
    }
}

pub async fn login_page(
    state: web::Data<AppState>,
    req: HttpRequest,
    user: PortalUser,
) -> HttpResponse {
    if user.0.is_some() {
        return redirect("/");
    }
    let csrf = Csrf::for_request(&req, &state);
    page(
        StatusCode::OK,
        layout("Entrar", None, None, login_form(&csrf.value, "", None)),
        &csrf,
    )
}

#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    csrf: String,
    email: String,
    password: String,
}

pub async fn login_submit(
    state: web::Data<AppState>,
    req: HttpRequest,
    form: web::Form<LoginForm>,
) -> Result<HttpResponse, AppError> {
    let form = form.into_inner();
    Csrf::verify(&req, &form.csrf)?;
    let csrf = Csrf::for_request(&req, &state);
    match api::attempt_login(&state, &req, &form.email, form.password).await {
        Ok((_, login)) => Ok(HttpResponse::SeeOther()
            .insert_header((actix_web::http::header::LOCATION, "/"))
            .cookie(session_cookie(&state, login.token.expose().to_owned()))
            .finish()),
        Err(AppError::InvalidCredentials) => Ok(page(
            StatusCode::UNAUTHORIZED,
            layout(
                "Entrar",
                None,
                None,
                login_form(&csrf.value, &form.email, Some("E-mail ou senha inválidos.")),
            ),
            &csrf,
        )),
        Err(AppError::TooManyRequests { retry_after_secs }) => {
            let minutes = retry_after_secs.div_ceil(60);
            let message = format!("Muitas tentativas. Tente novamente em {minutes} minuto(s).");
            Ok(page(
                StatusCode::TOO_MANY_REQUESTS,
                layout(
                    "Entrar",
                    None,
                    None,
                    login_form(&csrf.value, &form.email, Some(&message)),
                ),
                &csrf,
            ))
        }
        Err(other) => Err(other),
    }
}

pub async fn logout(
    state: web::Data<AppState>,
    req: HttpRequest,
    form: web::Form<super::CsrfForm>,
) -> Result<HttpResponse, AppError> {
    Csrf::verify(&req, &form.csrf)?;
    if let Some(cookie) = req.cookie(SESSION_COOKIE) {
        let txn = crate::db::begin_write(&state.db).await?;
        if let Some((user_id, org_id)) = session::revoke_presented(&txn, cookie.value()).await? {
            audit::append(
                &txn,
                Entry::new(OrgId(org_id), AuditAction::Logout, Actor::User(user_id))
                    .entity("user", user_id)
                    .ip(client_ip(&req)),
            )
            .await?;
        }
        txn.commit().await?;
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

fn set_password_form(csrf: &str, token: &str, message: Option<&str>) -> Markup {
    html! {
        h1 { "Definir senha" }
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
) -> HttpResponse {
    let csrf = Csrf::for_request(&req, &state);
    page(
        StatusCode::OK,
        layout(
            "Definir senha",
            None,
            None,
            set_password_form(&csrf.value, &q.token, None),
        ),
        &csrf,
    )
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
    form: web::Form<SetPasswordForm>,
) -> Result<HttpResponse, AppError> {
    let form = form.into_inner();
    Csrf::verify(&req, &form.csrf)?;
    let csrf = Csrf::for_request(&req, &state);
    let retry = |message: &str| {
        page(
            StatusCode::UNPROCESSABLE_ENTITY,
            layout(
                "Definir senha",
                None,
                None,
                set_password_form(&csrf.value, &form.token, Some(message)),
            ),
            &csrf,
        )
    };
    if form.new_password != form.confirm {
        return Ok(retry("As senhas não conferem."));
    }
    match api::set_password_with_token(&state, &form.token, &form.new_password, client_ip(&req))
        .await
    {
        Ok(()) => Ok(page(
            StatusCode::OK,
            layout(
                "Senha definida",
                None,
                None,
                html! { h1 { "Senha definida" } p { "Pronto. " a href="/entrar" { "Entrar" } } },
            ),
            &csrf,
        )),
        Err(e) => match pt_message(&e) {
            Some(m) => Ok(retry(&m)),
            None => Err(e),
        },
    }
}

fn first_access_form(csrf: &str, token: &str, message: Option<&str>) -> Markup {
    html! {
        h1 { "Primeiro acesso" }
        p { "Crie a conta do primeiro administrador do escritório." }
        (error_box(message))
        form.card method="post" action="/primeiro-acesso" {
            input type="hidden" name="csrf" value=(csrf);
            input type="hidden" name="token" value=(token);
            label { "Nome" input type="text" name="nome" required maxlength="200"; }
            label { "E-mail" input type="email" name="email" required autocomplete="username"; }
            (password_fields())
            button type="submit" { "Criar administrador" }
        }
    }
}

/// Takes the first-access token out of the state when `presented` matches it.
fn take_setup_token(state: &AppState, presented: &str) -> Option<TokenHash> {
    let mut guard = state.setup_token.lock().unwrap_or_else(|p| p.into_inner());
    if is_setup_token(guard.as_ref(), presented) {
        guard.take()
    } else {
        None
    }
}

fn setup_token_matches(state: &AppState, presented: &str) -> bool {
    let guard = state.setup_token.lock().unwrap_or_else(|p| p.into_inner());
    is_setup_token(guard.as_ref(), presented)
}

fn is_setup_token(stored: Option<&TokenHash>, presented: &str) -> bool {
    stored.is_some_and(|h| TokenHash::of(presented).matches(h.as_str()))
}

pub async fn first_access_page(
    state: web::Data<AppState>,
    req: HttpRequest,
    q: web::Query<TokenQuery>,
) -> HttpResponse {
    let csrf = Csrf::for_request(&req, &state);
    if !setup_token_matches(&state, &q.token) {
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
            first_access_form(&csrf.value, &q.token, None),
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
    form: web::Form<FirstAccessForm>,
) -> Result<HttpResponse, AppError> {
    let form = form.into_inner();
    Csrf::verify(&req, &form.csrf)?;
    let csrf = Csrf::for_request(&req, &state);
    if !setup_token_matches(&state, &form.token) {
        return Err(AppError::NotFound("first-access link is not valid".into()));
    }
    let retry = |message: &str| {
        page(
            StatusCode::UNPROCESSABLE_ENTITY,
            layout(
                "Primeiro acesso",
                None,
                None,
                first_access_form(&csrf.value, &form.token, Some(message)),
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
    let cost = state.settings.bcrypt_cost;
    let hash = web::block(move || password.hash(cost))
        .await
        .map_err(|e| AppError::Internal(e.to_string()))??;
    // Consume the link before writing, so two concurrent submissions cannot both succeed.
    let Some(token_hash) = take_setup_token(&state, &form.token) else {
        return Err(AppError::NotFound("first-access link is not valid".into()));
    };
    let created = async {
        let txn = crate::db::begin_write(&state.db).await?;
        if user::Users::find().count(&txn).await? > 0 {
            txn.rollback().await?;
            return Err(AppError::Conflict(
                "the first administrator already exists".into(),
            ));
        }
        let new = NewUser {
            email,
            nome,
            role: Role::Admin,
        };
        let created = user::create(&txn, OrgId(state.settings.org_id), &new, Actor::System).await?;
        user::store_password(&txn, &created, hash, client_ip(&req)).await?;
        txn.commit().await?;
        Ok(())
    }
    .await;
    if let Err(e) = created {
        // Nothing was created: the link stays usable.
        *state.setup_token.lock().unwrap_or_else(|p| p.into_inner()) = Some(token_hash);
        return Err(e);
    }
    Ok(redirect("/entrar"))
}
