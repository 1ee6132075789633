//! Usuários (ADMIN/DEV): create a user, change their role, auto-approve and activation, and
//! generate a password-set link, shown once.

use actix_web::{HttpResponse, web};
use maud::html;
use serde::Deserialize;
use uuid::Uuid;

use super::components::{self as c, csrf_field};
use super::error::{PageError, back_to};
use super::forms::{CsrfForm, Submitted, csrf_form};
use super::layout::Section;
use super::respond::{done, staff_page};
use super::session::AdminStaff;
use crate::accounts::administration::{CreateBody, PatchBody};
use crate::accounts::password_set::PasswordSetLink;
use crate::domain::Role;
use crate::error::AppError;
use crate::state::AppState;

csrf_form!(CreateForm, UpdateForm);

#[derive(Debug, Deserialize)]
pub struct ListParams {
    ok: Option<String>,
}

fn role_label(role: &str) -> &'static str {
    match role {
        "ADMIN" => "ADMIN — aprova pedidos e administra",
        "DEV" => "DEV — suporte técnico",
        _ => "VIEW — pede instalações",
    }
}

/// The roles `admin` may grant: a DEV all, an ADMIN all but DEV.
fn grantable(admin: &AdminStaff) -> Vec<Role> {
    [Role::View, Role::Admin, Role::Dev]
        .into_iter()
        .filter(|r| *r != Role::Dev || admin.0.user.role == Role::Dev)
        .collect()
}

pub async fn list(
    state: web::Data<AppState>,
    admin: AdminStaff,
    params: web::Query<ListParams>,
) -> Result<HttpResponse, PageError> {
    let staff = &admin.0;
    let users =
        crate::accounts::administration::list_users_with_locks(&state, staff.user.org).await?;
    let locked = users.iter().filter(|u| u.locked_until.is_some()).count();
    let tz = state.settings.timezone;
    let csrf = &staff.csrf.value;
    let roles = grantable(&admin);
    let body = html! {
        h1 { "Usuários" }
        (c::notice(params.ok.as_deref()))
        @if locked > 0 {
            p.warn role="status" {
                (c::count(locked as u64, "conta bloqueada", "contas bloqueadas"))
                " por senhas erradas. Quem sabe a senha pode esperar o fim do bloqueio; "
                "quem não sabe precisa de um novo link de senha (que também desbloqueia)."
            }
        }
        table {
            caption.sr { "Usuários do escritório" }
            thead { tr {
                th scope="col" { "Nome" } th scope="col" { "E-mail" } th scope="col" { "Perfil e situação" }
                th scope="col" { "Senha" } th scope="col" { "Criado em" } th scope="col" { span.sr { "Ações" } }
            } }
            tbody {
                @for u in &users {
                    @let manageable = u.role_global != "DEV" || staff.user.role == Role::Dev;
                    tr {
                        td {
                            (u.nome) @if !u.is_active { " " span.badge.muted { "inativo" } }
                            @if let Some(until) = u.locked_until {
                                " " span.badge.bad data-locked-until=(until.to_rfc3339()) { "bloqueada até " (c::clock(tz, until)) }
                            }
                        }
                        td { (u.email) }
                        td {
                            @if manageable {
                                form.inline method="post" action={ "/usuarios/" (u.id) } {
                                    (csrf_field(csrf))
                                    label { span.sr { "Perfil de " (u.nome) }
                                        select name="role_global" {
                                            @for r in &roles {
                                                option value=(r.as_str()) selected[r.as_str() == u.role_global] { (r.as_str()) }
                                            }
                                        }
                                    }
                                    label.check { input type="checkbox" name="auto_approve_install_jobs" value="on" checked[u.auto_approve_install_jobs]; "aprovação automática" }
                                    label.check { input type="checkbox" name="is_active" value="on" checked[u.is_active]; "ativo" }
                                    button.small type="submit" { "Salvar" }
                                }
                            } @else {
                                (role_label(&u.role_global))
                            }
                        }
                        td { (if u.has_password { "definida" } else { "pendente" }) }
                        td.nowrap { (c::when(tz, u.created_at)) }
                        td { div.actions {
                            @if manageable && u.locked_until.is_some() {
                                form method="post" action={ "/usuarios/" (u.id) "/desbloquear" } {
                                    (csrf_field(csrf))
                                    button.small type="submit" { "Desbloquear" span.sr { " " (u.nome) } }
                                }
                            }
                            @if manageable && u.is_active {
                                form method="post" action={ "/usuarios/" (u.id) "/link" } {
                                    (csrf_field(csrf))
                                    button.small.secondary type="submit" { "Gerar link de senha" }
                                }
                            }
                        } }
                    }
                }
            }
        }
        section aria-labelledby="novo" {
            h2 id="novo" { "Novo usuário" }
            form.card method="post" action="/usuarios" {
                (csrf_field(csrf))
                label { "Nome" input type="text" name="nome" required maxlength="200" autocomplete="off"; }
                label { "E-mail" input type="email" name="email" required maxlength="254" autocomplete="off"; }
                label { "Perfil"
                    select name="role_global" {
                        @for r in &roles { option value=(r.as_str()) { (role_label(r.as_str())) } }
                    }
                }
                label.check { input type="checkbox" name="auto_approve_install_jobs" value="on"; "Aprovação automática dos pedidos" }
                button type="submit" { "Criar usuário" }
            }
        }
    };
    Ok(staff_page(staff, Section::Usuarios, "Usuários", body))
}

/// The one showing of a password-set link.
fn link_page(
    admin: &AdminStaff,
    whom: &str,
    link: &PasswordSetLink,
    tz: chrono_tz::Tz,
) -> HttpResponse {
    let body = html! {
        p { a href="/usuarios" { "‹ Usuários" } }
        h1 { "Link para definir a senha" }
        p.warn role="alert" { "Este link aparece só agora. Envie a " strong { (whom) } " por um canal seguro." }
        (c::copyable(link.url.expose()))
        p.muted { "Vale até " (c::when(tz, link.expires_at)) " e só pode ser usado uma vez." }
        p { a.button href="/usuarios" { "Concluído" } }
    };
    staff_page(&admin.0, Section::Usuarios, "Link de senha", body)
}

#[derive(Deserialize)]
pub struct CreateForm {
    #[serde(default)]
    csrf: String,
    nome: String,
    email: String,
    role_global: String,
    #[serde(default)]
    auto_approve_install_jobs: Option<String>,
}

pub async fn create(
    state: web::Data<AppState>,
    submitted: Submitted<AdminStaff, CreateForm>,
) -> Result<HttpResponse, PageError> {
    let Submitted { user: admin, form } = submitted;
    let created = crate::accounts::administration::create_user(
        &state,
        &admin.0.user,
        CreateBody {
            email: form.email,
            nome: form.nome,
            role_global: form.role_global,
            auto_approve_install_jobs: form.auto_approve_install_jobs.is_some(),
            ad_username: None,
        },
    )
    .await
    .map_err(back_to("/usuarios"))?;
    Ok(link_page(
        &admin,
        &created.user.nome,
        &created.link,
        state.settings.timezone,
    ))
}

#[derive(Deserialize)]
pub struct UpdateForm {
    #[serde(default)]
    csrf: String,
    role_global: String,
    #[serde(default)]
    auto_approve_install_jobs: Option<String>,
    #[serde(default)]
    is_active: Option<String>,
}

pub async fn update(
    state: web::Data<AppState>,
    path: web::Path<Uuid>,
    submitted: Submitted<AdminStaff, UpdateForm>,
) -> Result<HttpResponse, PageError> {
    let Submitted { user: admin, form } = submitted;
    crate::accounts::administration::update_user(
        &state,
        &admin.0.user,
        path.into_inner(),
        PatchBody {
            role_global: Some(form.role_global),
            auto_approve_install_jobs: Some(form.auto_approve_install_jobs.is_some()),
            is_active: Some(form.is_active.is_some()),
            ..Default::default()
        },
    )
    .await
    .map_err(back_to("/usuarios"))?;
    Ok(done("/usuarios", "salvo"))
}

pub async fn unlock(
    state: web::Data<AppState>,
    path: web::Path<Uuid>,
    submitted: Submitted<AdminStaff, CsrfForm>,
) -> Result<HttpResponse, PageError> {
    let admin = submitted.user;
    let unlocked =
        crate::accounts::administration::unlock_user(&state, &admin.0.user, path.into_inner())
            .await
            .map_err(back_to("/usuarios"))?;
    Ok(done(
        "/usuarios",
        if unlocked {
            "conta_desbloqueada"
        } else {
            "conta_nao_bloqueada"
        },
    ))
}

pub async fn password_link(
    state: web::Data<AppState>,
    path: web::Path<Uuid>,
    submitted: Submitted<AdminStaff, CsrfForm>,
) -> Result<HttpResponse, PageError> {
    let admin = submitted.user;
    let target = crate::accounts::user::find_in_org(&state.db, admin.0.user.org, path.into_inner())
        .await?
        .ok_or_else(|| AppError::NotFound("no such user in this office".into()))
        .map_err(back_to("/usuarios"))?;
    let link = crate::accounts::administration::issue_password_link(&state, &admin.0.user, &target)
        .await
        .map_err(back_to("/usuarios"))?;
    Ok(link_page(
        &admin,
        &target.nome,
        &link,
        state.settings.timezone,
    ))
}
