//! Auditoria (ADMIN/DEV): the office's audit log filtered by action, user, device, certificate
//! and days (of the office), paged, exported as CSV with the same filters, and the hash chain
//! verified on every view.

use actix_web::{HttpResponse, web};
use maud::html;
use serde::Deserialize;
use uuid::Uuid;

use super::audit_view::{self, action_label};
use super::components as c;
use super::error::PageError;
use super::forms::{CsrfForm, Submitted};
use super::layout::Section;
use super::respond::staff_page;
use super::session::AdminStaff;
use crate::audit::AuditAction;
use crate::audit::breaks::{self, FoundBy, KnownBreak};
use crate::audit::query::{self, AuditQuery};
use crate::audit::verification;
use crate::state::AppState;

/// The page's filters, as the form sends them (empty fields are "any").
#[derive(Debug, Default, Deserialize)]
pub struct Filters {
    #[serde(default)]
    action: String,
    #[serde(default)]
    user_id: String,
    #[serde(default)]
    device_id: String,
    #[serde(default)]
    entity_id: String,
    /// A certificate: its rows and those of its requests and installations.
    #[serde(default)]
    cert_id: String,
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
    page: Option<i64>,
    /// `tudo`: walk the whole chain now instead of the rows written since the last check.
    #[serde(default)]
    verificar: String,
    /// The notice after an action on this page.
    #[serde(default)]
    ok: String,
}

fn uuid_of(name: &str, raw: &str) -> Result<Option<Uuid>, PageError> {
    match raw.trim() {
        "" => Ok(None),
        v => v
            .parse()
            .map(Some)
            .map_err(|_| crate::error::AppError::Validation(format!("{name}: not an id")).into()),
    }
}

fn text(raw: &str) -> Option<String> {
    Some(raw.trim().to_owned()).filter(|v| !v.is_empty())
}

impl Filters {
    fn query(&self) -> Result<AuditQuery, PageError> {
        Ok(AuditQuery {
            action: text(&self.action),
            user_id: uuid_of("user_id", &self.user_id)?,
            device_id: uuid_of("device_id", &self.device_id)?,
            entity_id: text(&self.entity_id),
            from: text(&self.from),
            to: text(&self.to),
            page: self.page,
            page_size: Some(50),
            certificate: None,
        })
    }

    /// [`Self::query`] with a certificate's story resolved: its requests and installations.
    async fn resolved(
        &self,
        state: &AppState,
        org: crate::domain::OrgId,
    ) -> Result<AuditQuery, PageError> {
        let mut q = self.query()?;
        if let Some(cert_id) = uuid_of("cert_id", &self.cert_id)? {
            q.certificate =
                Some(crate::jobs::installations::story_of(&state.db, org, cert_id).await?);
        }
        Ok(q)
    }

    fn base(&self) -> String {
        c::query(&[
            ("action", &self.action),
            ("user_id", &self.user_id),
            ("device_id", &self.device_id),
            ("entity_id", &self.entity_id),
            ("cert_id", &self.cert_id),
            ("from", &self.from),
            ("to", &self.to),
        ])
    }
}

pub async fn page(
    state: web::Data<AppState>,
    admin: AdminStaff,
    filters: web::Query<Filters>,
) -> Result<HttpResponse, PageError> {
    let staff = &admin.0;
    let f = filters.into_inner();
    let rows = query::find_page(
        &state,
        &staff.user,
        &f.resolved(&state, staff.user.org).await?,
    )
    .await?;
    let names = audit_view::names_for(&state.db, &rows.items).await?;
    let story_of = match uuid_of("cert_id", &f.cert_id)? {
        Some(id) => Some(
            crate::jobs::names::Names::load(
                &state.db,
                std::iter::once(id),
                std::iter::empty(),
                std::iter::empty(),
            )
            .await?
            .cert(id),
        ),
        None => None,
    };
    let chain = if f.verificar == "tudo" {
        verification::verify_chain(&state, &staff.user, FoundBy::Portal).await?
    } else {
        verification::verify_new_rows(&state, &staff.user, FoundBy::Portal).await?
    };
    let known = chain_state(&state, &staff.user, &chain).await?;
    let users = crate::accounts::administration::list_users(&state.db, staff.user.org).await?;
    let devices =
        crate::devices::provisioning::list_views(&state.db, staff.user.org, &state.contacts)
            .await?;
    let tz = state.settings.timezone;
    let base = f.base();
    let export = if base.is_empty() {
        "/auditoria/export.csv".to_owned()
    } else {
        format!("/auditoria/export.csv?{base}")
    };
    let body = html! {
        h1 { "Auditoria" }
        @if let Some(cert) = &story_of {
            p.lead { "Tudo sobre o certificado " a href={ "/certificados/" (cert.id) } { (cert.name) }
                ": quem pediu, aprovou, instalou e removeu. " a href="/auditoria" { "Ver toda a auditoria" } }
        }
        (c::notice(Some(&f.ok)))
        @match &known {
            ChainState::Intact { rows } => {
                p.notice role="status" data-chain="ok" {
                    "Cadeia de registros verificada: " (c::count(*rows, "registro íntegro", "registros íntegros"))
                    ". Os registros novos são conferidos a cada visita e todos, a cada hora. "
                    a href="/auditoria?verificar=tudo" { "Verificar tudo de novo" }
                }
            }
            other => { (break_banner(tz, other, &staff.csrf.value, &users)) }
        }
        form.filters method="get" action="/auditoria" {
            label { "Ação"
                select name="action" {
                    option value="" { "Todas" }
                    @for group in audit_view::GROUPS {
                        optgroup label=(group) {
                            @for a in AuditAction::ALL.iter().filter(|a| audit_view::group_of(**a) == group) {
                                option value=(a.as_str()) selected[a.as_str() == f.action] { (action_label(*a)) " (" (a.as_str()) ")" }
                            }
                        }
                    }
                }
            }
            label { "Usuário"
                select name="user_id" {
                    option value="" { "Todos" }
                    @for u in &users { option value=(u.id) selected[u.id.to_string() == f.user_id] { (u.nome) } }
                }
            }
            label { "Dispositivo"
                select name="device_id" {
                    option value="" { "Todos" }
                    @for d in &devices { option value=(d.id) selected[d.id.to_string() == f.device_id] { (d.hostname) } }
                }
            }
            label { "Registro (id)" input type="text" name="entity_id" value=(f.entity_id) maxlength="64"; }
            @if !f.cert_id.is_empty() { input type="hidden" name="cert_id" value=(f.cert_id); }
            label { "De" input type="date" name="from" value=(f.from); }
            label { "Até" input type="date" name="to" value=(f.to); }
            button type="submit" { "Filtrar" }
            a.button.secondary href=(export) download { "Exportar CSV" }
        }
        @if rows.items.is_empty() {
            (c::empty("Nenhum registro com esses filtros."))
        } @else {
            table {
                caption.sr { "Registros de auditoria" }
                thead { tr {
                    th scope="col" { "#" } th scope="col" { "Quando" } th scope="col" { "Ação" }
                    th scope="col" { "Quem" } th scope="col" { "Sobre" } th scope="col" { "Detalhes" } th scope="col" { "IP" }
                } }
                tbody {
                    @for r in &rows.items {
                        tr {
                            td { (r.seq) }
                            td.nowrap { (c::when(tz, r.at)) }
                            td { (audit_view::action_text(&r.action)) br; small.mono { (r.action) } }
                            td { (audit_view::actor_cell(r, &names)) }
                            td { (audit_view::subject_cell(r, &names)) }
                            td.details { (audit_view::details(r)) }
                            td { (r.ip.as_deref().unwrap_or("")) }
                        }
                    }
                }
            }
            (c::pager(&rows, &base))
        }
    };
    Ok(staff_page(staff, Section::Auditoria, "Auditoria", body))
}

/// What the office's chain looks like to the pages: intact, broken with a break nobody has
/// acknowledged (red, on the Painel too), or broken at a break already acknowledged.
pub enum ChainState {
    Intact { rows: u64 },
    Broken(KnownBreak),
    Acknowledged(KnownBreak),
}

/// The office's chain as the last check (`chain`) and the kept breaks say.
async fn chain_state(
    state: &AppState,
    admin: &crate::identity::AuthUser,
    chain: &verification::VerifyView,
) -> Result<ChainState, PageError> {
    if let Some(open) = breaks::open(&state.db, admin.org).await? {
        return Ok(ChainState::Broken(open));
    }
    if let Some(b) = &chain.first_break
        && let Some(known) = breaks::at(&state.db, admin.org, b.seq).await?
    {
        return Ok(ChainState::Acknowledged(known));
    }
    Ok(ChainState::Intact { rows: chain.rows })
}

/// The office's unacknowledged break, for the Painel (no check is run there).
pub async fn open_break(
    state: &AppState,
    admin: &crate::identity::AuthUser,
) -> Result<Option<ChainState>, PageError> {
    Ok(breaks::open(&state.db, admin.org)
        .await?
        .map(ChainState::Broken))
}

/// What a check's English reason means, in the office's words.
fn reason_pt(reason: &str) -> &'static str {
    if reason.starts_with("row missing") {
        "um registro foi apagado"
    } else if reason.contains("prev_hash") {
        "a ligação com o registro anterior foi alterada"
    } else if reason.contains("modified") {
        "o conteúdo do registro foi alterado"
    } else if reason.starts_with("chain ends") {
        "os últimos registros foram apagados"
    } else {
        "o registro não confere"
    }
}

/// The red banner of a break nobody has acknowledged (with the button), or the note of one
/// already acknowledged.
pub fn break_banner(
    tz: chrono_tz::Tz,
    chain: &ChainState,
    csrf: &str,
    users: &[crate::accounts::administration::UserView],
) -> maud::Markup {
    match chain {
        ChainState::Intact { .. } => html! {},
        ChainState::Broken(b) => html! {
            div.error role="alert" data-chain="broken" {
                p {
                    strong { "A cadeia de registros da auditoria está quebrada" }
                    " no registro " (b.seq) ": " (reason_pt(&b.reason)) " fora do CertHub. "
                    "Encontrada em " (c::when(tz, b.found_at)) "."
                }
                p { "Guarde uma cópia do banco de dados como está e avise o suporte. Este aviso fica aqui até alguém registrar que está ciente." }
                form method="post" action="/auditoria/quebra/ciente" {
                    (c::csrf_field(csrf))
                    button.small.danger type="submit" { "Estou ciente" }
                }
            }
        },
        ChainState::Acknowledged(b) => {
            let who = b
                .acknowledged
                .and_then(|(_, id)| id)
                .and_then(|id| users.iter().find(|u| u.id == id))
                .map(|u| u.nome.clone())
                .unwrap_or_else(|| "um administrador".into());
            html! {
                p.warn role="status" data-chain="acknowledged" {
                    "A cadeia está quebrada no registro " (b.seq) " (" (reason_pt(&b.reason)) "). "
                    (who) " registrou ciência"
                    @if let Some((at, _)) = b.acknowledged { " em " (c::when(tz, at)) }
                    ". Os registros depois desse não podem ser verificados. "
                    a href="/auditoria?verificar=tudo" { "Verificar tudo de novo" }
                }
            }
        }
    }
}

/// "Estou ciente": acknowledges the office's open breaks (audited), back to Auditoria.
pub async fn acknowledge(
    state: web::Data<AppState>,
    submitted: Submitted<AdminStaff, CsrfForm>,
) -> Result<HttpResponse, PageError> {
    let admin = submitted.user;
    breaks::acknowledge(&state.db, &admin.0.user)
        .await
        .map_err(super::error::back_to("/auditoria"))?;
    Ok(super::respond::done("/auditoria", "quebra_ciente"))
}

pub async fn export(
    state: web::Data<AppState>,
    admin: AdminStaff,
    filters: web::Query<Filters>,
) -> Result<HttpResponse, PageError> {
    let q = filters
        .into_inner()
        .resolved(&state, admin.0.user.org)
        .await?;
    Ok(crate::audit::routes::csv_response(
        &state,
        &admin.0.user,
        &q,
        office_csv(state.settings.timezone),
    )?)
}

/// The office's CSV: the page's columns in Portuguese, the office's local time, `;` (what a
/// Brazilian spreadsheet splits on) and the BOM (so accents open right).
fn office_csv(tz: chrono_tz::Tz) -> crate::audit::export::CsvFormat {
    crate::audit::export::CsvFormat {
        header: [
            "Registro", "Quando", "Ação", "Código", "Quem", "Sobre", "Detalhes", "IP",
        ]
        .map(str::to_owned)
        .to_vec(),
        delimiter: b';',
        render: std::sync::Arc::new(move |db, rows| {
            Box::pin(async move {
                let items: Vec<query::AuditItem> =
                    rows.into_iter().map(query::AuditItem::from).collect();
                let names = audit_view::names_for(&db, &items).await?;
                Ok(items
                    .iter()
                    .map(|r| {
                        vec![
                            r.seq.to_string(),
                            r.at.with_timezone(&tz)
                                .format("%d/%m/%Y %H:%M:%S")
                                .to_string(),
                            audit_view::action_text(&r.action),
                            r.action.clone(),
                            audit_view::actor_text(r, &names),
                            audit_view::subject_text(r, &names),
                            audit_view::details(r),
                            r.ip.clone().unwrap_or_default(),
                        ]
                    })
                    .collect())
            })
        }),
    }
}
