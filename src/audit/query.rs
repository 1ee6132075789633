//! The audit log's filters (the API's and the portal's) and its paged listing, newest first.

use chrono::{DateTime, Days, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use sea_orm::entity::prelude::*;
use sea_orm::{Condition, PaginatorTrait, QueryOrder, QuerySelect};
use serde::{Deserialize, Serialize};

use super::action::AuditAction;
use super::chain::{AuditLog, AuditRow};
use super::entity::Column;
use crate::domain::OrgId;
use crate::error::AppError;
use crate::identity::AuthUser;
use crate::paging::{Page, Paging};
use crate::state::AppState;

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
    /// A certificate's whole story: the rows about it and those about its requests and
    /// installations (their ids, which the caller resolves). Not a query parameter.
    #[serde(skip)]
    #[schemars(skip)]
    pub certificate: Option<CertificateStory>,
}

/// A certificate and the ids of its requests and installations (see [`AuditQuery::certificate`]).
#[derive(Debug, Clone, Default)]
pub struct CertificateStory {
    pub cert_id: Uuid,
    pub related: Vec<String>,
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
        if let Some(story) = &self.certificate {
            cond = cond.add(
                Condition::any()
                    .add(
                        Condition::all()
                            .add(Column::EntityType.eq("certificate"))
                            .add(Column::EntityId.eq(story.cert_id.to_string())),
                    )
                    .add(
                        Condition::all()
                            .add(Column::EntityType.is_in(["install_job", "installation"]))
                            .add(Column::EntityId.is_in(story.related.clone())),
                    ),
            );
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

pub fn actor_of(row: &AuditRow) -> (&'static str, Option<Uuid>) {
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

/// One page of the office's audit rows these filters select, newest first (ADMIN/DEV).
pub async fn find_page(
    state: &AppState,
    admin: &AuthUser,
    q: &AuditQuery,
) -> Result<Page<AuditItem>, AppError> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
