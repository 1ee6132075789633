//! Painel (`/`): the user's installations now, and for ADMIN/DEV what needs attention — each a
//! link to its list. Counts come from the same listings the pages and the API use.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{Duration, Utc};
use maud::{Markup, html};

use super::components::{self as c, csrf_field};
use super::error::PageError;
use super::layout::{Section, layout};
use super::respond::{page, staff_page};
use super::session::{Csrf, PortalUser, Staff};
use crate::certificates::catalogue::{self, Listing, StatusFilter};
use crate::jobs::JobStatus;
use crate::jobs::installations::{self, InstallationFilter, StateFilter};
use crate::jobs::requests::JobFilter;
use crate::paging::Paging;
use crate::state::AppState;

/// A device that has not called in for this long is shown as offline.
pub const OFFLINE_AFTER_MINUTES: i64 = 10;

pub async fn home(
    state: web::Data<AppState>,
    req: HttpRequest,
    user: PortalUser,
) -> Result<HttpResponse, PageError> {
    if user.0.is_none() {
        let csrf = Csrf::for_request(&req, &state);
        let body = html! {
            h1 { "Cofre de certificados A1" }
            p { "Os certificados digitais do escritório " strong { (state.org_name) } " ficam guardados aqui, criptografados." }
            p { "Peça a instalação de um certificado no seu computador; um administrador aprova e o agente instala. Tudo o que for instalado é removido às 18:00." }
            p { a.button href="/entrar" { "Entrar" } }
        };
        return Ok(page(
            StatusCode::OK,
            layout("Início", None, None, body),
            &csrf,
        ));
    }
    let staff = Staff::from_parts(&req, &state, user)?;
    let mine = installations::find_page(
        &state,
        &staff.user,
        &InstallationFilter {
            user_id: Some(staff.user.user.id),
            ..Default::default()
        },
        Paging::parse(None, Some(20))?,
    )
    .await?;
    let tz = state.settings.timezone;
    let now = Utc::now();
    let attention = if staff.is_admin() {
        Some(attention(&state, &staff).await?)
    } else {
        None
    };
    let body = html! {
        h1 { "Painel" }
        p { "Olá, " strong { (staff.user.user.nome) } "." }
        @if let Some(a) = attention { (a) }
        section aria-labelledby="minhas" {
            h2 id="minhas" { "Meus certificados instalados agora" }
            @if mine.items.is_empty() {
                (c::empty("Nenhum certificado instalado para você agora. Para instalar, escolha um em Certificados."))
                p { a href="/certificados" { "Ver certificados" } }
            } @else {
                table {
                    caption.sr { "Certificados instalados para você" }
                    thead { tr { th scope="col" { "Certificado" } th scope="col" { "Computador" } th scope="col" { "Até" } th scope="col" { "Tempo restante" } th scope="col" { span.sr { "Ações" } } } }
                    tbody {
                        @for i in &mine.items {
                            tr {
                                td { (i.cert.name) }
                                td { (i.device.hostname) }
                                td { (c::time(tz, Some(i.expires_at))) }
                                td { (c::time_left(now, i.expires_at).unwrap_or_else(|| "removendo".into())) }
                                td {
                                    @if i.removal_job.is_none() {
                                        form method="post" action={ "/instalacoes/" (i.id) "/remover" } {
                                            (csrf_field(&staff.csrf.value))
                                            input type="hidden" name="back" value="/";
                                            button.small type="submit" { "Remover agora" }
                                        }
                                    } @else {
                                        span.muted { "remoção pedida" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(staff_page(&staff, Section::Painel, "Painel", body))
}

/// ADMIN/DEV: requests waiting, devices offline, overdue leases, certificates expiring,
/// files that failed to open.
async fn attention(state: &AppState, staff: &Staff) -> Result<Markup, PageError> {
    let one = Paging::parse(None, Some(1))?;
    let waiting = crate::jobs::requests::find_page(
        &state.db,
        &staff.user,
        &JobFilter {
            statuses: vec![JobStatus::Requested],
            ..Default::default()
        },
        one,
    )
    .await?
    .total;
    let overdue = installations::find_page(
        state,
        &staff.user,
        &InstallationFilter {
            state: StateFilter::Overdue,
            ..Default::default()
        },
        one,
    )
    .await?
    .total;
    let now = Utc::now();
    // How many certificates a catalogue filter holds (within `days` for "expiring").
    let count = async |status: StatusFilter, days: i64| {
        let listing = Listing {
            search: Default::default(),
            status,
            within: Duration::days(days),
            paging: one,
        };
        catalogue::find_page(&state.db, staff.user.org, &listing, now)
            .await
            .map(|page| page.total)
    };
    let mut expiring = Vec::new();
    for days in [30, 15, 7] {
        expiring.push((days, count(StatusFilter::Expiring, days).await?));
    }
    let expired = count(StatusFilter::Expired, 30).await?;
    let unreadable = count(StatusFilter::Unreadable, 30).await?;
    let devices =
        crate::devices::provisioning::list_views(&state.db, staff.user.org, &state.contacts)
            .await?;
    let offline = devices
        .iter()
        .filter(|d| d.public_key.is_some() && d.is_allowed)
        .filter(|d| {
            d.last_seen_at
                .is_none_or(|s| now - s > Duration::minutes(OFFLINE_AFTER_MINUTES))
        })
        .count();
    // The words agree with the number: "1 pedido aguardando", "2 pedidos aguardando".
    let tile = |n: u64, (one, many): (&str, &str), href: &str, warn: bool| {
        html! {
            a class=(if warn && n > 0 { "tile warn" } else { "tile" }) href=(href) {
                strong { (n) } span { (if n == 1 { one } else { many }) }
            }
        }
    };
    let broken = super::audit::open_break(state, &staff.user).await?;
    // `certhub doctor`'s findings; plain http:// has its own warning above them.
    let findings: Vec<_> =
        crate::doctor::examine(&state.settings, Ok(&state.db), crate::doctor::Reach::Skip)
            .await
            .into_iter()
            .filter(|f| f.check != "public_url")
            .collect();
    let tz = state.settings.timezone;
    Ok(html! {
        @if let Some(broken) = &broken {
            (super::audit::break_banner(tz, broken, &staff.csrf.value, &[]))
        }
        @if state.settings.plain_http_beyond_localhost() {
            // Only ADMIN/DEV see this part of the Painel.
            div.warn role="alert" {
                strong { "Conexão sem criptografia (http://). " }
                "Quem estiver na rede do escritório pode ler e alterar o que passa entre o servidor, os navegadores e os computadores: "
                "roubar sessões, trocar o agente baixado pela instalação de uma linha e parear um computador como se fosse ele. "
                "Ative o HTTPS (" code { "tls = \"auto\"" } " no config.toml, ou o certificado do escritório) antes de instalar agentes."
            }
        }
        @if !findings.is_empty() {
            section.findings aria-labelledby="verificacao" {
                h2 id="verificacao" { "Verificação da instalação" }
                p.muted { "O mesmo que " code { "certhub doctor" } " mostra no servidor." }
                ul {
                    @for f in &findings {
                        li {
                            strong { (f.check) ": " } (f.problem) ". "
                            span.muted { "Como corrigir: " (f.fix) "." }
                        }
                    }
                }
            }
        }
        section aria-labelledby="atencao" {
            h2 id="atencao" { "Precisa de atenção" }
            div.tiles {
                (tile(waiting, ("pedido aguardando decisão", "pedidos aguardando decisão"), "/solicitacoes?status=REQUESTED", true))
                (tile(offline as u64, ("dispositivo sem contato há mais de 10 min", "dispositivos sem contato há mais de 10 min"), "/dispositivos?situacao=offline", true))
                (tile(overdue, ("instalação atrasada (não removida)", "instalações atrasadas (não removidas)"), "/instalacoes?estado=overdue", true))
                @for (days, n) in &expiring {
                    (tile(*n, (&format!("certificado vence em até {days} dias"), &format!("certificados vencem em até {days} dias")), &format!("/certificados?status=expiring&dias={days}"), *days <= 7))
                }
                (tile(expired, ("certificado vencido", "certificados vencidos"), "/certificados?status=expired", true))
                (tile(unreadable, ("arquivo que não abriu", "arquivos que não abriram"), "/certificados?status=unreadable", true))
            }
        }
    })
}
