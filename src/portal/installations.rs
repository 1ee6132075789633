//! Instalações: open, overdue and removed installations — who, where, until when — with
//! "Remover agora" (the early-removal API); a VIEW sees their own, ADMIN/DEV everyone's.

use actix_web::{HttpResponse, web};
use chrono::Utc;
use maud::html;
use serde::Deserialize;
use uuid::Uuid;

use super::components::{self as c, csrf_field};
use super::error::{PageError, back_to};
use super::forms::{Submitted, csrf_form};
use super::layout::Section;
use super::respond::{done, staff_page};
use super::session::Staff;
use crate::jobs::installations::{self, InstallationFilter, StateFilter};
use crate::paging::Paging;
use crate::state::AppState;

csrf_form!(RemoveForm);

#[derive(Debug, Deserialize)]
pub struct ListParams {
    estado: Option<String>,
    page: Option<i64>,
    ok: Option<String>,
}

const STATES: [(&str, &str, StateFilter); 4] = [
    ("open", "Instaladas agora", StateFilter::Open),
    ("overdue", "Atrasadas", StateFilter::Overdue),
    ("removed", "Removidas", StateFilter::Removed),
    ("all", "Todas", StateFilter::All),
];

fn removal_label(mode: Option<&str>) -> &'static str {
    match mode {
        Some("scheduled") => "removida às 18:00",
        Some("lease") => "removida no fim do prazo",
        Some("remove_job") => "removida a pedido",
        Some("startup") => "removida ao ligar o PC",
        Some("manual") => "removida manualmente",
        Some("uninstall") => "removida ao desinstalar o agente",
        _ => "removida",
    }
}

pub async fn list(
    state: web::Data<AppState>,
    staff: Staff,
    params: web::Query<ListParams>,
) -> Result<HttpResponse, PageError> {
    let p = params.into_inner();
    let key = p.estado.as_deref().unwrap_or("open");
    let (key, _, filter_state) = STATES
        .iter()
        .find(|(k, _, _)| *k == key)
        .copied()
        .unwrap_or(STATES[0]);
    let filter = InstallationFilter {
        state: filter_state,
        ..Default::default()
    };
    let found = installations::find_page(
        &state,
        &staff.user,
        &filter,
        Paging::parse(p.page, Some(25))?,
    )
    .await?;
    let tz = state.settings.timezone;
    let now = Utc::now();
    let back = format!("/instalacoes?estado={key}");
    let base = c::query(&[("estado", key)]);
    let body = html! {
        h1 { (if staff.is_admin() { "Instalações do escritório" } else { "Minhas instalações" }) }
        (c::notice(p.ok.as_deref()))
        nav.tabs aria-label="Filtrar instalações" {
            @for (k, label, _) in STATES {
                a href={ "/instalacoes?estado=" (k) } aria-current=[(k == key).then_some("page")] { (label) }
            }
        }
        @if found.items.is_empty() {
            (c::empty("Nenhuma instalação nesta lista."))
        } @else {
            table {
                caption.sr { "Instalações" }
                thead { tr {
                    th scope="col" { "Certificado" } th scope="col" { "Computador" }
                    @if staff.is_admin() { th scope="col" { "Para quem" } }
                    th scope="col" { "Instalado em" } th scope="col" { "Até" } th scope="col" { "Situação" }
                    th scope="col" { span.sr { "Ações" } }
                } }
                tbody {
                    @for i in &found.items {
                        tr {
                            td { (i.cert.name) }
                            td { (i.device.hostname) }
                            @if staff.is_admin() { td { (i.user.as_ref().map(|u| u.name.as_str()).unwrap_or("—")) } }
                            td.nowrap { (c::time(tz, Some(i.installed_at))) }
                            td.nowrap { (c::time(tz, Some(i.expires_at))) }
                            td {
                                @if let Some(at) = i.removed_at {
                                    span.badge.muted { (removal_label(i.removal_mode.as_deref())) } " " (c::when(tz, at))
                                } @else if i.overdue {
                                    span.badge.bad { "atrasada" }
                                } @else if let Some(left) = c::time_left(now, i.expires_at) {
                                    span.badge.ok { "restam " (left) }
                                } @else {
                                    span.badge.wait { "removendo" }
                                }
                            }
                            td { div.actions {
                                @if i.removed_at.is_none() {
                                    @if let Some(job) = &i.removal_job {
                                        span.muted { "remoção: " (c::status_label(job.status)) }
                                    } @else {
                                        form method="post" action={ "/instalacoes/" (i.id) "/remover" } {
                                            (csrf_field(&staff.csrf.value))
                                            input type="hidden" name="back" value=(back);
                                            button.small type="submit" { "Remover agora" }
                                        }
                                    }
                                }
                            } }
                        }
                    }
                }
            }
            (c::pager(&found, &base))
        }
    };
    Ok(staff_page(
        &staff,
        Section::Instalacoes,
        "Instalações",
        body,
    ))
}

#[derive(Deserialize)]
pub struct RemoveForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    back: String,
}

/// Only pages of this portal are followed after the form.
fn local_back(raw: &str) -> &str {
    if raw == "/" || (raw.starts_with("/instalacoes") && !raw.contains("//")) {
        raw
    } else {
        "/instalacoes"
    }
}

pub async fn remove(
    state: web::Data<AppState>,
    path: web::Path<Uuid>,
    submitted: Submitted<Staff, RemoveForm>,
) -> Result<HttpResponse, PageError> {
    let Submitted { user: staff, form } = submitted;
    let back = local_back(&form.back);
    installations::request_removal(
        &state,
        &staff.user,
        path.into_inner(),
        Some("Remover agora (portal)".to_owned()),
    )
    .await
    .map_err(back_to(back))?;
    Ok(done(back, "remocao"))
}
