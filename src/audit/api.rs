//! The office's audit log over HTTP (ADMIN/DEV): a filtered, paged listing, the same filters
//! as a streamed CSV, and the verification of the office's hash chain.

use actix_web::HttpResponse;
use actix_web::http::header;
use actix_web::web::{self, Bytes};
use chrono::{DateTime, Days, NaiveDate, SecondsFormat, TimeZone, Utc};
use chrono_tz::Tz;
use sea_orm::entity::prelude::*;
use sea_orm::{Condition, DatabaseConnection, PaginatorTrait, QueryOrder, QuerySelect};
use serde::{Deserialize, Serialize};

use super::entity::Column;
use super::{AuditAction, AuditLog, AuditRow};
use crate::domain::OrgId;
use crate::error::AppError;
use crate::http::extract::{AdminUser, AuthUser};
use crate::paging::Paging;
use crate::state::AppState;

/// Rows read per query while streaming the CSV.
const EXPORT_CHUNK: u64 = 500;

/// The filters of the audit listing and its CSV export (the portal's form uses the same names).
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    pub action: Option<String>,
    pub user_id: Option<Uuid>,
    pub device_id: Option<Uuid>,
    pub entity_id: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub page: Option<i64>,
    pub page_size: Option<i64>,
}

/// An RFC 3339 instant, or a `YYYY-MM-DD` day (in the office's time zone). `Ok(Err(day))` for
/// a day.
fn parse_when(name: &str, value: &str) -> Result<Result<DateTime<Utc>, NaiveDate>, AppError> {
    let value = value.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(value) {
        return Ok(Ok(t.with_timezone(&Utc)));
    }
    NaiveDate::parse_from_str(value, "%Y-%m-%d")
        .map(Err)
        .map_err(|_| AppError::Validation(format!("{name}: an RFC 3339 time or YYYY-MM-DD")))
}

/// The instant a day of the office begins (the first valid local time across a DST gap).
fn midnight(day: NaiveDate, tz: Tz) -> DateTime<Utc> {
    let local = day.and_hms_opt(0, 0, 0).unwrap_or_default();
    tz.from_local_datetime(&local)
        .earliest()
        .or_else(|| {
            tz.from_local_datetime(&(local + chrono::Duration::hours(1)))
                .earliest()
        })
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_else(|| local.and_utc())
}

impl AuditQuery {
    /// The rows of `org` these filters select (days in the office's time zone `tz`); 422 on an
    /// unknown action or a bad date.
    pub fn condition(&self, org: OrgId, tz: Tz) -> Result<Condition, AppError> {
        let mut cond = Condition::all().add(Column::OrgId.eq(org.0));
        if let Some(a) = self.action.as_deref().filter(|a| !a.is_empty()) {
            let action: AuditAction = a.parse().map_err(AppError::Validation)?;
            cond = cond.add(Column::Action.eq(action.as_str()));
        }
        if let Some(u) = self.user_id {
            cond = cond.add(
                Condition::any().add(Column::ActorUserId.eq(u)).add(
                    Condition::all()
                        .add(Column::EntityType.eq("user"))
                        .add(Column::EntityId.eq(u.to_string())),
                ),
            );
        }
        if let Some(d) = self.device_id {
            cond = cond.add(
                Condition::any().add(Column::ActorDeviceId.eq(d)).add(
                    Condition::all()
                        .add(Column::EntityType.eq("device"))
                        .add(Column::EntityId.eq(d.to_string())),
                ),
            );
        }
        if let Some(e) = self.entity_id.as_deref().filter(|e| !e.is_empty()) {
            cond = cond.add(Column::EntityId.eq(e));
        }
        if let Some(from) = self.from.as_deref().filter(|v| !v.is_empty()) {
            let from = parse_when("from", from)?.unwrap_or_else(|d| midnight(d, tz));
            cond = cond.add(Column::Timestamp.gte(from));
        }
        if let Some(to) = self.to.as_deref().filter(|v| !v.is_empty()) {
            cond = match parse_when("to", to)? {
                Ok(t) => cond.add(Column::Timestamp.lte(t)),
                // The whole day: before the next midnight.
                Err(day) => {
                    let next = day
                        .checked_add_days(Days::new(1))
                        .ok_or_else(|| AppError::Validation("to: out of range".into()))?;
                    cond.add(Column::Timestamp.lt(midnight(next, tz)))
                }
            };
        }
        Ok(cond)
    }
}

/// One row as the API shows it. The actor is the user, the device, or the server itself.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct AuditItem {
    pub seq: i64,
    pub at: DateTime<Utc>,
    pub action: String,
    /// `user`, `device` or `system`.
    pub actor_type: &'static str,
    pub actor_id: Option<Uuid>,
    pub entity_type: Option<String>,
    pub entity_id: Option<String>,
    pub ip: Option<String>,
    pub meta: serde_json::Value,
}

fn actor_of(row: &AuditRow) -> (&'static str, Option<Uuid>) {
    match (row.actor_user_id, row.actor_device_id) {
        (Some(u), _) => ("user", Some(u)),
        (None, Some(d)) => ("device", Some(d)),
        (None, None) => ("system", None),
    }
}

impl From<AuditRow> for AuditItem {
    fn from(row: AuditRow) -> Self {
        let (actor_type, actor_id) = actor_of(&row);
        let meta = serde_json::from_str(&row.meta_json)
            .unwrap_or(serde_json::Value::String(row.meta_json));
        Self {
            seq: row.seq,
            at: row.timestamp,
            action: row.action,
            actor_type,
            actor_id,
            entity_type: row.entity_type,
            entity_id: row.entity_id,
            ip: row.ip,
            meta,
        }
    }
}

/// `GET /api/v1/audit?action=&user_id=&device_id=&entity_id=&from=&to=&page=&page_size=`
/// (ADMIN/DEV): the office's audit rows, newest first.
pub async fn list(
    state: web::Data<AppState>,
    admin: AdminUser,
    query: web::Query<AuditQuery>,
) -> Result<HttpResponse, AppError> {
    let page = find_page(&state, &admin.0, &query.into_inner()).await?;
    Ok(HttpResponse::Ok().json(page))
}

/// One page of the office's audit rows these filters select, newest first (ADMIN/DEV).
pub async fn find_page(
    state: &AppState,
    admin: &AuthUser,
    q: &AuditQuery,
) -> Result<crate::paging::Page<AuditItem>, AppError> {
    admin.require_admin()?;
    let paging = Paging::parse(q.page, q.page_size)?;
    let select = AuditLog::find()
        .filter(q.condition(admin.org, state.settings.timezone)?)
        .order_by_desc(Column::Seq);
    let total = select.clone().count(&state.db).await?;
    // The page's sequence numbers first, from the (org_id, seq) index alone, then only those
    // rows: a deep page skips index entries instead of whole rows.
    let seqs: Vec<i64> = select
        .select_only()
        .column(Column::Seq)
        .limit(paging.page_size)
        .offset(paging.offset())
        .into_tuple()
        .all(&state.db)
        .await?;
    let rows = AuditLog::find()
        .filter(Column::OrgId.eq(admin.org.0))
        .filter(Column::Seq.is_in(seqs))
        .order_by_desc(Column::Seq)
        .all(&state.db)
        .await?;
    let items = rows.into_iter().map(AuditItem::from).collect();
    Ok(paging.page(total, items))
}

/// One CSV field: quoted (quotes doubled) when it holds a comma, a quote or a line break.
fn csv_field(out: &mut String, value: &str) {
    if value.contains([',', '"', '\n', '\r']) {
        out.push('"');
        out.push_str(&value.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(value);
    }
}

const CSV_HEADER: &str = "seq,at,action,actor_type,actor_id,entity_type,entity_id,ip,meta\r\n";

fn csv_row(out: &mut String, row: &AuditRow) {
    let (actor_type, actor_id) = actor_of(row);
    let fields = [
        row.seq.to_string(),
        row.timestamp.to_rfc3339_opts(SecondsFormat::Micros, true),
        row.action.clone(),
        actor_type.to_owned(),
        actor_id.map(|a| a.to_string()).unwrap_or_default(),
        row.entity_type.clone().unwrap_or_default(),
        row.entity_id.clone().unwrap_or_default(),
        row.ip.clone().unwrap_or_default(),
        // The stored JSON text, as hashed.
        row.meta_json.clone(),
    ];
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        csv_field(out, f);
    }
    out.push_str("\r\n");
}

/// Where the CSV stream is.
enum Export {
    Start,
    /// Rows with a `seq` below this one are still to come.
    Below(i64),
    Done,
}

async fn next_chunk(
    db: &DatabaseConnection,
    cond: &Condition,
    at: Export,
) -> Result<Option<(Bytes, Export)>, AppError> {
    let mut out = String::new();
    let mut select = AuditLog::find().filter(cond.clone());
    match at {
        Export::Done => return Ok(None),
        Export::Start => {
            // The BOM, so Excel reads the file as UTF-8.
            out.push('\u{feff}');
            out.push_str(CSV_HEADER);
        }
        Export::Below(seq) => select = select.filter(Column::Seq.lt(seq)),
    }
    let rows = select
        .order_by_desc(Column::Seq)
        .limit(EXPORT_CHUNK)
        .all(db)
        .await?;
    let next = match rows.last() {
        Some(last) if rows.len() as u64 == EXPORT_CHUNK => Export::Below(last.seq),
        _ => Export::Done,
    };
    for row in &rows {
        csv_row(&mut out, row);
    }
    Ok(Some((Bytes::from(out), next)))
}

/// `GET /api/v1/audit/export.csv` with the filters of [`list`] (ADMIN/DEV): every matching
/// row, newest first, streamed a chunk at a time; UTF-8 with a BOM so Excel reads accents.
pub async fn export_csv(
    state: web::Data<AppState>,
    admin: AdminUser,
    query: web::Query<AuditQuery>,
) -> Result<HttpResponse, AppError> {
    csv_export(&state, &admin.0, &query.into_inner())
}

/// The CSV of every row these filters select, as a streamed response (ADMIN/DEV).
pub fn csv_export(
    state: &AppState,
    admin: &AuthUser,
    q: &AuditQuery,
) -> Result<HttpResponse, AppError> {
    admin.require_admin()?;
    let cond = q.condition(admin.org, state.settings.timezone)?;
    let db = state.db.clone();
    let body = futures_util::stream::unfold(
        (db, cond, Some(Export::Start)),
        |(db, cond, at)| async move {
            let at = at?;
            match next_chunk(&db, &cond, at).await {
                Ok(Some((bytes, next))) => Some((Ok(bytes), (db, cond, Some(next)))),
                Ok(None) => None,
                Err(e) => {
                    tracing::error!(error = %e, "audit CSV export failed");
                    Some((Err(e), (db, cond, None)))
                }
            }
        },
    );
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/csv; charset=utf-8"))
        .insert_header((
            header::CONTENT_DISPOSITION,
            "attachment; filename=\"auditoria.csv\"",
        ))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .streaming(body))
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct BreakView {
    pub seq: i64,
    pub reason: String,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct VerifyView {
    pub ok: bool,
    /// Rows checked before the first break (all of them when `ok`).
    pub rows: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_break: Option<BreakView>,
}

/// `GET /api/v1/audit/verify` (ADMIN/DEV): the office's hash chain, checked now.
pub async fn verify(
    state: web::Data<AppState>,
    admin: AdminUser,
) -> Result<HttpResponse, AppError> {
    Ok(HttpResponse::Ok().json(verify_chain(&state, &admin.0).await?))
}

/// The office's hash chain, checked now from the first row (ADMIN/DEV).
pub async fn verify_chain(state: &AppState, admin: &AuthUser) -> Result<VerifyView, AppError> {
    verify_since(state, admin, super::Checkpoint::default()).await
}

/// The office's hash chain, checked from where it was last found intact: only the rows
/// written since are read (ADMIN/DEV). A break forgets the checkpoint.
pub async fn verify_new_rows(state: &AppState, admin: &AuthUser) -> Result<VerifyView, AppError> {
    let from = state.audit_checkpoints.get(admin.org);
    verify_since(state, admin, from).await
}

async fn verify_since(
    state: &AppState,
    admin: &AuthUser,
    from: super::Checkpoint,
) -> Result<VerifyView, AppError> {
    admin.require_admin()?;
    let (report, reached) = super::verify_org_from(&state.db, admin.org, from).await?;
    match reached {
        Some(at) => state.audit_checkpoints.advance(admin.org, at),
        None => state.audit_checkpoints.reset(admin.org),
    }
    Ok(VerifyView {
        ok: report.first_break.is_none(),
        rows: report.rows,
        first_break: report.first_break.map(|b| BreakView {
            seq: b.seq,
            reason: b.reason,
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quoting() {
        let mut s = String::new();
        csv_field(&mut s, "plain");
        s.push('|');
        csv_field(&mut s, "a,b");
        s.push('|');
        csv_field(&mut s, "say \"hi\"");
        s.push('|');
        csv_field(&mut s, "two\nlines");
        assert_eq!(s, "plain|\"a,b\"|\"say \"\"hi\"\"\"|\"two\nlines\"");
    }

    #[test]
    fn dates() {
        assert!(parse_when("from", "2026-12-02").unwrap().is_err());
        assert!(parse_when("from", "2026-12-02T10:00:00Z").unwrap().is_ok());
        assert!(
            parse_when("from", "2026-12-02T10:00:00-03:00")
                .unwrap()
                .is_ok()
        );
        assert!(parse_when("from", "ontem").is_err());
        assert!(parse_when("from", "2026-13-01").is_err());
    }
}
