//! Solicitações: a VIEW user's requests and their live status; for ADMIN/DEV the approval
//! queue (approve / deny with a reason) and every request of the office. The page follows
//! changes through Server-Sent Events fed by the job hub (woken after each commit), not by
//! polling: `GET /solicitacoes/eventos` sends each changed row, rendered here.

use std::time::Duration as StdDuration;

use actix_web::http::header;
use actix_web::web::Bytes;
use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use maud::{Markup, html};
use sea_orm::EntityTrait;
use serde::Deserialize;
use uuid::Uuid;

use super::components::{self as c, csrf_field};
use super::error::{PageError, back_to};
use super::forms::{Submitted, csrf_form};
use super::layout::Section;
use super::respond::{done, staff_page};
use super::session::Staff;
use crate::identity::AuthUser;
use crate::jobs::requests::{Decision, JobFilter, JobView};
use crate::jobs::{JobStatus, JobType};
use crate::paging::Paging;
use crate::state::AppState;

/// A live page keeps its stream this long, then reconnects (and the session is checked again).
const STREAM_LIFETIME: StdDuration = StdDuration::from_secs(15 * 60);
/// A comment line this often keeps proxies from closing an idle stream.
const KEEPALIVE: StdDuration = StdDuration::from_secs(20);
/// How often an open stream looks at its session again.
const RECHECK: StdDuration = StdDuration::from_millis(500);

#[derive(Debug, Deserialize)]
pub struct ListParams {
    status: Option<String>,
    page: Option<i64>,
    ok: Option<String>,
}

/// The tabs of the list, in order ("Todas" comes first).
const TABS: [JobStatus; 8] = [
    JobStatus::Requested,
    JobStatus::Pending,
    JobStatus::InProgress,
    JobStatus::Done,
    JobStatus::Failed,
    JobStatus::Denied,
    JobStatus::Cancelled,
    JobStatus::Expired,
];

/// Which list a page shows (its tab and page): a decision made from it returns to it.
#[derive(Clone, Copy, Default)]
struct Listing {
    status: Option<JobStatus>,
    page: Option<u64>,
}

impl Listing {
    /// From submitted text: anything that does not parse is the default list.
    fn parse(status: Option<&str>, page: Option<i64>) -> Self {
        Self {
            status: status.and_then(|s| s.parse().ok()),
            page: page.filter(|p| *p > 1).map(|p| p as u64),
        }
    }

    fn status_key(&self) -> &'static str {
        self.status.map(|s| s.as_str()).unwrap_or_default()
    }

    /// `/solicitacoes?status=DENIED&page=2`: built from parsed values only, never from the URL.
    fn url(&self) -> String {
        let page = self.page.map(|p| p.to_string()).unwrap_or_default();
        let query = c::query(&[("status", self.status_key()), ("page", &page)]);
        if query.is_empty() {
            "/solicitacoes".to_owned()
        } else {
            format!("/solicitacoes?{query}")
        }
    }

    /// The hidden fields a decision form carries to come back here.
    fn fields(&self) -> Markup {
        html! {
            @if let Some(s) = self.status { input type="hidden" name="status" value=(s.as_str()); }
            @if let Some(p) = self.page { input type="hidden" name="page" value=(p); }
        }
    }
}

/// What the requester asked for: `até a limpeza das 18:00` or a number of hours and minutes.
fn requested_duration(cleanup: chrono::NaiveTime, minutes: Option<i32>) -> String {
    match minutes {
        None => format!("até a limpeza das {}", cleanup.format("%H:%M")),
        Some(m) => c::minutes_text(i64::from(m)),
    }
}

pub async fn list(
    state: web::Data<AppState>,
    staff: Staff,
    params: web::Query<ListParams>,
) -> Result<HttpResponse, PageError> {
    let p = params.into_inner();
    let status = p
        .status
        .as_deref()
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<JobStatus>())
        .transpose()
        .map_err(|e| crate::error::AppError::Validation(format!("status: {e}")))?;
    let filter = JobFilter {
        statuses: status.into_iter().collect(),
        job_type: Some(JobType::Install),
        ..Default::default()
    };
    // Rendered as of now: the stream sends what changes after this instant.
    let since = Utc::now();
    let found = crate::jobs::requests::find_page(
        &state.db,
        &staff.user,
        &filter,
        Paging::parse(p.page, Some(25))?,
    )
    .await?;
    let tz = state.settings.timezone;
    let listing = Listing {
        status,
        page: (found.page > 1).then_some(found.page),
    };
    let status_key = listing.status_key();
    let base = c::query(&[("status", status_key)]);
    let live = format!(
        "/solicitacoes/eventos?{}",
        c::query(&[
            ("desde", &since.timestamp_micros().to_string()),
            ("status", status_key),
            (
                "page",
                &listing.page.map(|p| p.to_string()).unwrap_or_default()
            ),
        ])
    );
    let view = RowView {
        tz,
        cleanup: state.settings.agent.cleanup_time,
        user: &staff.user,
        csrf: &staff.csrf.value,
        listing,
    };
    let heading = if staff.is_admin() {
        "Solicitações do escritório"
    } else {
        "Minhas solicitações"
    };
    let body = html! {
        h1 { (heading) }
        (c::notice(p.ok.as_deref()))
        nav.tabs aria-label="Filtrar por situação" {
            a href="/solicitacoes" aria-current=[status.is_none().then_some("page")] { "Todas" }
            @for s in TABS {
                a href={ "/solicitacoes?status=" (s.as_str()) } aria-current=[(status == Some(s)).then_some("page")] {
                    (c::status_label(s))
                }
            }
        }
        @if found.items.is_empty() {
            (c::empty(if staff.is_admin() {
                "Nenhuma solicitação nesta lista."
            } else {
                "Você ainda não pediu nenhuma instalação. Escolha um certificado em Certificados e clique em \"Instalar no meu computador\"."
            }))
        }
        table data-live=(live) data-insert=(if found.page == 1 { "yes" } else { "no" }) data-filter=(status_key) {
            caption.sr { (heading) }
            thead { tr {
                th scope="col" { "Pedido em" } th scope="col" { "Certificado" } th scope="col" { "Computador" }
                @if staff.is_admin() { th scope="col" { "Quem pediu" } }
                th scope="col" { "Situação" } th scope="col" { span.sr { "Ações" } }
            } }
            tbody {
                @for job in &found.items { (row(&view, job)) }
            }
        }
        (c::pager(&found, &base))
        p.live-note aria-live="polite" { span.dot {} "A situação se atualiza sozinha." }
    };
    Ok(staff_page(&staff, Section::Solicitacoes, heading, body))
}

/// What a row needs besides its job: the page and the event stream render the same markup.
struct RowView<'a> {
    tz: chrono_tz::Tz,
    cleanup: chrono::NaiveTime,
    user: &'a AuthUser,
    csrf: &'a str,
    listing: Listing,
}

/// One request as a table row.
fn row(view: &RowView<'_>, job: &JobView) -> Markup {
    let RowView { tz, user, csrf, .. } = *view;
    let mine = job
        .requested_by
        .as_ref()
        .is_some_and(|r| r.id == user.user.id);
    html! {
        tr data-job=(job.id) data-status=(job.status.as_str()) {
            td.nowrap { (c::time(tz, Some(job.created_at))) }
            td {
                a href={ "/certificados/" (job.cert.id) } { (job.cert.name) }
                div.muted data-duration { "Duração: " (requested_duration(view.cleanup, job.duration_minutes)) }
                @if let Some(reason) = job.reason.as_deref().filter(|r| !r.trim().is_empty()) {
                    div.reason data-reason { "Motivo do pedido: " (reason) }
                }
            }
            td { (job.device.hostname) }
            @if user.is_admin() {
                td { (job.requested_by.as_ref().map(|u| u.name.as_str()).unwrap_or("—")) }
            }
            td {
                (c::status_badge(job.status))
                @if job.status == JobStatus::Failed || job.status == JobStatus::Timeout {
                    @if let Some(m) = job.error_message.as_deref().or(job.error_code.as_deref()) {
                        div.reason { "Motivo: " (m) }
                    }
                }
                @if job.status == JobStatus::Denied {
                    @if let Some(m) = &job.decision_reason { div.reason { "Motivo da recusa: " (m) } }
                }
            }
            td { div.actions {
                @if job.status == JobStatus::Requested && user.is_admin() {
                    form method="post" action={ "/solicitacoes/" (job.id) "/aprovar" } {
                        (csrf_field(csrf))
                        (view.listing.fields())
                        button.small type="submit" { "Aprovar" }
                    }
                    form.deny method="post" action={ "/solicitacoes/" (job.id) "/negar" } {
                        (csrf_field(csrf))
                        (view.listing.fields())
                        label { span.sr { "Motivo para negar" }
                            input type="text" name="reason" required maxlength="500" placeholder="Motivo para negar";
                        }
                        button.small.danger type="submit" { "Negar" }
                    }
                }
                @if matches!(job.status, JobStatus::Requested | JobStatus::Pending) && (mine || user.is_admin()) {
                    form method="post" action={ "/solicitacoes/" (job.id) "/cancelar" } {
                        (csrf_field(csrf))
                        (view.listing.fields())
                        button.small.secondary type="submit" { "Cancelar" }
                    }
                }
            } }
        }
    }
}

#[derive(Deserialize)]
pub struct DecisionForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    reason: String,
    /// The list the decision was made from (its tab and page), to return to.
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    page: Option<i64>,
}

csrf_form!(DecisionForm);

/// A request decided from the list: the decision, then back to the list with its notice.
async fn decide(
    state: &AppState,
    id: Uuid,
    submitted: Submitted<Staff, DecisionForm>,
    decision: fn(Option<String>) -> Decision,
    notice: &str,
) -> Result<HttpResponse, PageError> {
    let Submitted { user: staff, form } = submitted;
    let back = Listing::parse(form.status.as_deref(), form.page).url();
    crate::jobs::requests::decide(state, &staff.user, id, decision(Some(form.reason)))
        .await
        .map_err(back_to(&back))?;
    Ok(done(&back, notice))
}

pub async fn approve(
    state: web::Data<AppState>,
    path: web::Path<Uuid>,
    submitted: Submitted<Staff, DecisionForm>,
) -> Result<HttpResponse, PageError> {
    decide(
        &state,
        path.into_inner(),
        submitted,
        Decision::Approve,
        "aprovado",
    )
    .await
}

pub async fn deny(
    state: web::Data<AppState>,
    path: web::Path<Uuid>,
    submitted: Submitted<Staff, DecisionForm>,
) -> Result<HttpResponse, PageError> {
    decide(
        &state,
        path.into_inner(),
        submitted,
        Decision::Deny,
        "negado",
    )
    .await
}

pub async fn cancel(
    state: web::Data<AppState>,
    path: web::Path<Uuid>,
    submitted: Submitted<Staff, DecisionForm>,
) -> Result<HttpResponse, PageError> {
    decide(
        &state,
        path.into_inner(),
        submitted,
        |_| Decision::Cancel,
        "cancelado",
    )
    .await
}

#[derive(Debug, Deserialize)]
pub struct EventsParams {
    /// Microseconds since the epoch: the instant the page was rendered.
    desde: Option<i64>,
    /// The page's list (its forms return to it).
    status: Option<String>,
    page: Option<i64>,
}

struct Live {
    state: web::Data<AppState>,
    /// The portal session the stream was opened with: the stream ends with it.
    session: String,
    user: AuthUser,
    csrf: String,
    listing: Listing,
    changes: tokio::sync::watch::Receiver<u64>,
    since: DateTime<Utc>,
    /// Look at the database before waiting (the first round: what changed since the render).
    look: bool,
    until: tokio::time::Instant,
    /// Since the last chunk sent: a keep-alive after KEEPALIVE of silence.
    quiet_since: tokio::time::Instant,
}

/// One Server-Sent Event per changed job: `event: job`, data `{id, status, row}`.
fn event_of(tz: chrono_tz::Tz, live: &Live, job: &JobView) -> String {
    let data = serde_json::json!({
        "id": job.id,
        "status": job.status,
        "type": job.job_type,
        "row": row(
            &RowView {
                tz,
                cleanup: live.state.settings.agent.cleanup_time,
                user: &live.user,
                csrf: &live.csrf,
                listing: live.listing,
            },
            job
        )
        .into_string(),
    });
    format!("event: job\ndata: {data}\n\n")
}

impl Live {
    /// Whether the session is still live and its user still active with the same role: a
    /// logout, an expiry, a deactivation or a demotion ends the stream at its next chunk.
    async fn still_signed_in(&self) -> bool {
        let db = &self.state.db;
        let Ok(Some(row)) = crate::accounts::session::find_live(db, &self.session).await else {
            return false;
        };
        let user = crate::accounts::user::Users::find_by_id(row.user_id)
            .one(db)
            .await
            .ok()
            .flatten();
        user.is_some_and(|u| {
            u.is_active && u.id == self.user.user.id && u.role().ok() == Some(self.user.role)
        })
    }
}

/// The next chunk of the stream: changed rows, a keep-alive, or the end.
async fn next(mut live: Live) -> Option<(Result<Bytes, PageError>, Live)> {
    loop {
        if tokio::time::Instant::now() >= live.until || live.state.job_hub.is_closing() {
            return None;
        }
        if !live.still_signed_in().await {
            // The page's script says the session ended; a reconnect meets the login.
            return Some((
                Ok(Bytes::from_static(b"event: ended\ndata: {}\n\n")),
                Live {
                    until: tokio::time::Instant::now(),
                    ..live
                },
            ));
        }
        if live.look {
            live.look = false;
            let changed =
                match crate::jobs::requests::changed_since(&live.state.db, &live.user, live.since)
                    .await
                {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!(error = %e, "live requests stream ended");
                        return None;
                    }
                };
            if let Some(newest) = changed.iter().map(|j| j.updated_at).max() {
                live.since = live.since.max(newest);
            }
            let changed: Vec<JobView> = changed
                .into_iter()
                .filter(|j| j.job_type == JobType::Install)
                .collect();
            if changed.is_empty() {
                continue;
            }
            let tz = live.state.settings.timezone;
            let mut out = String::new();
            for job in &changed {
                out.push_str(&event_of(tz, &live, job));
            }
            live.quiet_since = tokio::time::Instant::now();
            return Some((Ok(Bytes::from(out)), live));
        }
        // Woken by a change, or every RECHECK to look at the session again (a logout, a
        // demotion or a deactivation, in this process or another, ends the stream within it).
        let wait = tokio::time::timeout(RECHECK, live.changes.changed()).await;
        match wait {
            Ok(Ok(())) => live.look = true,
            // The hub is gone: the server is stopping.
            Ok(Err(_)) => return None,
            Err(_) if live.quiet_since.elapsed() >= KEEPALIVE => {
                live.quiet_since = tokio::time::Instant::now();
                return Some((Ok(Bytes::from_static(b": keep-alive\n\n")), live));
            }
            Err(_) => {}
        }
    }
}

pub async fn events(
    state: web::Data<AppState>,
    req: actix_web::HttpRequest,
    staff: Staff,
    params: web::Query<EventsParams>,
) -> Result<HttpResponse, PageError> {
    let session = req
        .cookie(super::session::SESSION_COOKIE)
        .map(|c| c.value().to_owned())
        .unwrap_or_default();
    let now = Utc::now();
    // Never further back than a day: a stale page reloads instead of replaying history.
    let since = params
        .desde
        .and_then(DateTime::<Utc>::from_timestamp_micros)
        .filter(|t| *t <= now && now - *t < chrono::Duration::days(1))
        .unwrap_or(now);
    // Subscribed before the first look, so a change committed in between is not lost.
    let changes = state.job_hub.subscribe();
    let live = Live {
        state: state.clone(),
        session,
        user: staff.user,
        csrf: staff.csrf.value,
        listing: Listing::parse(params.status.as_deref(), params.page),
        changes,
        since,
        look: true,
        until: tokio::time::Instant::now() + STREAM_LIFETIME,
        quiet_since: tokio::time::Instant::now(),
    };
    let opening = futures_util::stream::once(async {
        Ok::<_, PageError>(Bytes::from_static(b"retry: 2000\n\n"))
    });
    let body = futures_util::StreamExt::chain(opening, futures_util::stream::unfold(live, next));
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/event-stream"))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(body))
}
