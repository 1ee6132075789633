//! Dispositivos (ADMIN/DEV): provision a PC and show its id, token and enrollment code **once**
//! with the PowerShell line that installs and pairs the agent; owner, token rotation,
//! block/unblock, last contact, agent version, online/offline and what is installed now.

use actix_web::{HttpResponse, web};
use chrono::{Duration, Utc};
use maud::{Markup, html};
use serde::Deserialize;
use uuid::Uuid;

use super::components::{self as c, csrf_field};
use super::dashboard::OFFLINE_AFTER_MINUTES;
use super::error::{PageError, back_to};
use super::forms::{CsrfForm, Submitted, csrf_form};
use super::layout::Section;
use super::respond::{done, staff_page};
use super::session::AdminStaff;
use crate::accounts::administration::UserView;
use crate::devices::provisioning::{
    self as admin, CreateBody, CredentialsResponse, DeviceView, PatchBody,
};
use crate::state::AppState;

csrf_form!(ProvisionForm, UpdateForm);

fn online(d: &DeviceView, now: chrono::DateTime<Utc>) -> bool {
    d.last_seen_at
        .is_some_and(|s| now - s <= Duration::minutes(OFFLINE_AFTER_MINUTES))
}

/// What the PC itself says it is (its own host name and system), beside the admin's name.
fn reported(d: &DeviceView) -> Markup {
    let own = d
        .reported_hostname
        .as_deref()
        .filter(|h| !h.eq_ignore_ascii_case(&d.hostname));
    html! {
        @if own.is_some() || d.os_version.is_some() {
            div.muted data-reported {
                "no PC: "
                (own.unwrap_or(d.hostname.as_str()))
                @if let Some(os) = &d.os_version { " · " (os) }
            }
        }
    }
}

fn state_badge(d: &DeviceView, now: chrono::DateTime<Utc>) -> Markup {
    if !d.is_allowed {
        html! { span.badge.bad { "bloqueado" } }
    } else if d.uninstalled_at.is_some() {
        html! { span.badge.muted { "agente desinstalado" } }
    } else if d.public_key.is_none() {
        html! { span.badge.wait { "aguardando pareamento" } }
    } else if online(d, now) {
        html! { span.badge.ok { "online" } }
    } else {
        html! { span.badge.muted { "offline" } }
    }
}

#[derive(Debug, Deserialize)]
pub struct ListParams {
    situacao: Option<String>,
    ok: Option<String>,
}

fn owner_select(users: &[UserView], current: Option<Uuid>) -> Markup {
    html! {
        select name="owner_user_id" {
            option value="" selected[current.is_none()] { "Qualquer usuário do escritório" }
            @for u in users.iter().filter(|u| u.is_active) {
                option value=(u.id) selected[current == Some(u.id)] { (u.nome) " (" (u.email) ")" }
            }
        }
    }
}

pub async fn list(
    state: web::Data<AppState>,
    admin: AdminStaff,
    params: web::Query<ListParams>,
) -> Result<HttpResponse, PageError> {
    let staff = admin.0;
    let p = params.into_inner();
    let now = Utc::now();
    let offline_only = p.situacao.as_deref() == Some("offline");
    let devices: Vec<DeviceView> = admin::list_views(&state.db, staff.user.org, &state.contacts)
        .await?
        .into_iter()
        .filter(|d| !offline_only || (d.public_key.is_some() && d.is_allowed && !online(d, now)))
        .collect();
    let users = crate::accounts::administration::list_users(&state.db, staff.user.org).await?;
    let tz = state.settings.timezone;
    let body = html! {
        h1 { "Dispositivos" }
        (c::notice(p.ok.as_deref()))
        nav.tabs aria-label="Filtrar dispositivos" {
            a href="/dispositivos" aria-current=[(!offline_only).then_some("page")] { "Todos" }
            a href="/dispositivos?situacao=offline" aria-current=[offline_only.then_some("page")] { "Sem contato há mais de 10 min" }
        }
        @if devices.is_empty() {
            (c::empty(if offline_only { "Todos os dispositivos pareados fizeram contato nos últimos 10 minutos." } else { "Nenhum computador cadastrado. Cadastre o primeiro abaixo." }))
        } @else {
            table {
                caption.sr { "Dispositivos" }
                thead { tr {
                    th scope="col" { "Computador" } th scope="col" { "Dono" } th scope="col" { "Situação" }
                    th scope="col" { "Último contato" } th scope="col" { "Agente" } th scope="col" { "Instalados agora" }
                } }
                tbody {
                    @for d in &devices {
                        tr {
                            td {
                                a href={ "/dispositivos/" (d.id) } { (d.hostname) }
                                (reported(d))
                            }
                            td { (d.owner.as_ref().map(|o| o.nome.as_str()).unwrap_or("qualquer usuário")) }
                            td { (state_badge(d, now)) }
                            td.nowrap { (c::time(tz, d.last_seen_at)) }
                            td { (d.agent_version.as_deref().unwrap_or("—")) }
                            td { (d.installed.len()) }
                        }
                    }
                }
            }
        }
        (server_certificate(&state))
        section aria-labelledby="novo" {
            h2 id="novo" { "Cadastrar um computador" }
            form.card method="post" action="/dispositivos" {
                (csrf_field(&staff.csrf.value))
                label { "Nome do computador" input type="text" name="hostname" required maxlength="255" placeholder="ex.: PC-RECEPCAO"; }
                label { "Dono" (owner_select(&users, None)) }
                button type="submit" { "Cadastrar" }
            }
        }
    };
    Ok(staff_page(
        &staff,
        Section::Dispositivos,
        "Dispositivos",
        body,
    ))
}

/// The certificate this server answers HTTPS with: the fingerprint to compare on a PC (the
/// agents pin it at pairing), or why there is none.
fn server_certificate(state: &AppState) -> Markup {
    html! {
        section aria-labelledby="certificado-servidor" {
            h2 id="certificado-servidor" { "Certificado do servidor" }
            @if let Some(served) = &state.tls {
                p { "Os computadores conferem o servidor por esta impressão digital (SHA-256) do certificado HTTPS:" }
                (c::copyable(served.fingerprint().as_str()))
            } @else if state.settings.plain_http_beyond_localhost() {
                p.warn { "Este servidor atende por http://, sem criptografia: não há certificado a conferir." }
            } @else {
                p.muted { "O HTTPS é feito por um proxy à frente deste servidor." }
            }
        }
    }
}

#[derive(Deserialize)]
pub struct ProvisionForm {
    #[serde(default)]
    csrf: String,
    hostname: String,
    #[serde(default)]
    owner_user_id: String,
}

fn owner_of(raw: &str) -> Result<Option<Uuid>, PageError> {
    match raw.trim() {
        "" => Ok(None),
        id => id.parse().map(Some).map_err(|_| {
            crate::error::AppError::Validation("owner_user_id: not a user id".into()).into()
        }),
    }
}

/// The one showing of a device's secrets, with the line to paste on the PC.
fn credentials_page(
    admin: &AdminStaff,
    creds: &CredentialsResponse,
    settings: &crate::settings::Settings,
) -> HttpResponse {
    let tz = settings.timezone;
    let missing = crate::devices::distribution::agent_missing(settings);
    let pin_option = creds
        .server_fingerprint
        .as_deref()
        .map(|f| format!(" --fingerprint {f}"))
        .unwrap_or_default();
    let body = html! {
        p { a href="/dispositivos" { "‹ Dispositivos" } }
        h1 { "Credenciais de " (creds.device.hostname) }
        p.warn role="alert" { "Estas informações aparecem só agora. Copie o comando antes de sair desta página." }
        h2 { "Instalar e parear o agente" }
        @if let Some(why) = missing {
            // Never a line that would fail at its download: say what is missing instead.
            p.warn role="alert" {
                "A instalação por uma linha não está disponível: " (why) ". "
                "Copie o Certhub.Agent.exe para o computador por outro meio e, no PowerShell do usuário, na pasta dele, rode:"
            }
            (c::copyable(&format!(".\\Certhub.Agent.exe pair --server {} --code {}{}", settings.public_url, creds.enrollment_code, pin_option)))
        } @else if !crate::devices::distribution::plain_http_allowed(settings) {
            p.warn role="alert" {
                "A instalação por uma linha está desligada: este servidor usa http:// sem criptografia e alguém na rede poderia trocar o agente baixado. "
                "Configure HTTPS (tls = \"auto\") ou, aceitando o risco, agent_install_over_http = true. Enquanto isso, copie o Certhub.Agent.exe por outro meio e rode:"
            }
            (c::copyable(&format!(".\\Certhub.Agent.exe pair --server {} --code {}", settings.public_url, creds.enrollment_code)))
        } @else {
            p { "No computador, abra o PowerShell do usuário e cole:" }
            (c::copyable(&creds.install_command))
        }
        p.muted { "O código de pareamento vale até " (c::when(tz, creds.enrollment_expires_at)) " e só pode ser usado uma vez." }
        dl.facts {
            dt { "Id do dispositivo" } dd.mono { (creds.id) }
            dt { "Código de pareamento" } dd.mono { (creds.enrollment_code) }
            dt { "Token do dispositivo" } dd.mono { (creds.device_token) }
            @if let Some(f) = &creds.server_fingerprint {
                dt { "Certificado do servidor (SHA-256)" } dd.mono { (f) }
            }
        }
        p { a.button href={ "/dispositivos/" (creds.id) } { "Concluído" } }
    };
    staff_page(
        &admin.0,
        Section::Dispositivos,
        "Credenciais do dispositivo",
        body,
    )
}

pub async fn provision(
    state: web::Data<AppState>,
    submitted: Submitted<AdminStaff, ProvisionForm>,
) -> Result<HttpResponse, PageError> {
    let Submitted { user: admin, form } = submitted;
    let creds = admin::provision(
        &state,
        &admin.0.user,
        CreateBody {
            hostname: form.hostname,
            owner_user_id: owner_of(&form.owner_user_id)?,
            ..Default::default()
        },
    )
    .await
    .map_err(back_to("/dispositivos"))?;
    Ok(credentials_page(&admin, &creds, &state.settings))
}

#[derive(Debug, Deserialize)]
pub struct DetailParams {
    ok: Option<String>,
}

pub async fn detail(
    state: web::Data<AppState>,
    admin: AdminStaff,
    path: web::Path<Uuid>,
    params: web::Query<DetailParams>,
) -> Result<HttpResponse, PageError> {
    let staff = &admin.0;
    let d = admin::find_view(
        &state.db,
        staff.user.org,
        path.into_inner(),
        &state.contacts,
    )
    .await
    .map_err(back_to("/dispositivos"))?;
    let users = crate::accounts::administration::list_users(&state.db, staff.user.org).await?;
    let tz = state.settings.timezone;
    let now = Utc::now();
    let csrf = &staff.csrf.value;
    let body = html! {
        p { a href="/dispositivos" { "‹ Dispositivos" } }
        h1 { (d.hostname) " " (state_badge(&d, now)) }
        (c::notice(params.ok.as_deref()))
        dl.facts {
            dt { "Id" } dd.mono { (d.id) }
            dt { "Nome no próprio PC" } dd { (d.reported_hostname.as_deref().unwrap_or("— (ainda não pareado)")) }
            dt { "Último contato" } dd { (c::time(tz, d.last_seen_at)) }
            dt { "Último heartbeat" } dd { (c::time(tz, d.last_heartbeat_at)) }
            dt { "Versão do agente" } dd { (d.agent_version.as_deref().unwrap_or("—")) }
            dt { "Sistema" } dd { (d.os_version.as_deref().unwrap_or("—")) }
            dt { "Pareado" } dd { (if d.public_key.is_some() { "sim" } else { "não" }) }
            @if let Some(until) = d.enrollment_expires_at { dt { "Código de pareamento válido até" } dd { (c::when(tz, until)) } }
            dt { "Cadastrado em" } dd { (c::when(tz, d.created_at)) }
        }
        section aria-labelledby="instalados" {
            h2 id="instalados" { "Instalados agora" }
            @if d.installed.is_empty() {
                (c::empty("Nenhum certificado instalado neste computador agora."))
            } @else {
                ul { @for i in &d.installed {
                    li { (i.name.as_deref().unwrap_or("certificado")) " — até " (c::when(tz, i.expires_at)) }
                } }
                p { a href="/instalacoes" { "Ver em Instalações" } }
            }
        }
        section aria-labelledby="alterar" {
            h2 id="alterar" { "Nome e dono" }
            form.card method="post" action={ "/dispositivos/" (d.id) } {
                (csrf_field(csrf))
                label { "Nome do computador" input type="text" name="hostname" value=(d.hostname) required maxlength="255"; }
                label { "Dono" (owner_select(&users, d.owner.as_ref().map(|o| o.id))) }
                button type="submit" { "Salvar" }
            }
        }
        section aria-labelledby="seguranca" {
            h2 id="seguranca" { "Segurança" }
            div.row {
                form method="post" action={ "/dispositivos/" (d.id) "/token" } data-confirm="Gerar um novo token? O agente atual para de funcionar até ser pareado de novo." {
                    (csrf_field(csrf))
                    button.secondary type="submit" { "Gerar novo token e código" }
                }
                form method="post" action={ "/dispositivos/" (d.id) "/remover" } data-confirm="Remover este computador do escritório? Os certificados instalados nele serão removidos pelo agente; o histórico fica na auditoria." {
                    (csrf_field(csrf))
                    button.danger type="submit" { "Remover computador" }
                }
                @if d.is_allowed {
                    form method="post" action={ "/dispositivos/" (d.id) "/bloquear" } data-confirm="Bloquear este computador? Os pedidos em espera para ele serão cancelados." {
                        (csrf_field(csrf))
                        button.danger type="submit" { "Bloquear" }
                    }
                } @else {
                    form method="post" action={ "/dispositivos/" (d.id) "/desbloquear" } {
                        (csrf_field(csrf))
                        button type="submit" { "Desbloquear" }
                    }
                }
            }
        }
    };
    Ok(staff_page(staff, Section::Dispositivos, &d.hostname, body))
}

#[derive(Deserialize)]
pub struct UpdateForm {
    #[serde(default)]
    csrf: String,
    hostname: String,
    #[serde(default)]
    owner_user_id: String,
}

pub async fn update(
    state: web::Data<AppState>,
    path: web::Path<Uuid>,
    submitted: Submitted<AdminStaff, UpdateForm>,
) -> Result<HttpResponse, PageError> {
    let Submitted { user: admin, form } = submitted;
    let id = path.into_inner();
    let back = format!("/dispositivos/{id}");
    admin::update(
        &state,
        &admin.0.user,
        id,
        PatchBody {
            hostname: Some(form.hostname),
            owner_user_id: Some(owner_of(&form.owner_user_id)?),
        },
    )
    .await
    .map_err(back_to(&back))?;
    Ok(done(&back, "salvo"))
}

pub async fn rotate(
    state: web::Data<AppState>,
    path: web::Path<Uuid>,
    submitted: Submitted<AdminStaff, CsrfForm>,
) -> Result<HttpResponse, PageError> {
    let admin = submitted.user;
    let id = path.into_inner();
    let creds = admin::rotate(&state, &admin.0.user, id)
        .await
        .map_err(back_to(&format!("/dispositivos/{id}")))?;
    Ok(credentials_page(&admin, &creds, &state.settings))
}

async fn set_allowed(
    state: &AppState,
    admin: &AdminStaff,
    id: Uuid,
    allowed: bool,
) -> Result<HttpResponse, PageError> {
    let back = format!("/dispositivos/{id}");
    admin::set_allowed(state, &admin.0.user, id, allowed)
        .await
        .map_err(back_to(&back))?;
    Ok(done(
        &back,
        if allowed { "desbloqueado" } else { "bloqueado" },
    ))
}

pub async fn block(
    state: web::Data<AppState>,
    path: web::Path<Uuid>,
    submitted: Submitted<AdminStaff, CsrfForm>,
) -> Result<HttpResponse, PageError> {
    set_allowed(&state, &submitted.user, path.into_inner(), false).await
}

pub async fn unblock(
    state: web::Data<AppState>,
    path: web::Path<Uuid>,
    submitted: Submitted<AdminStaff, CsrfForm>,
) -> Result<HttpResponse, PageError> {
    set_allowed(&state, &submitted.user, path.into_inner(), true).await
}

pub async fn remove(
    state: web::Data<AppState>,
    path: web::Path<Uuid>,
    submitted: Submitted<AdminStaff, CsrfForm>,
) -> Result<HttpResponse, PageError> {
    let id = path.into_inner();
    admin::retire(&state, &submitted.user.0.user, id)
        .await
        .map_err(back_to(&format!("/dispositivos/{id}")))?;
    Ok(done("/dispositivos", "computador_removido"))
}
