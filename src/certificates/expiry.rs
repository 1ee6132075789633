//! Expiry tracking: the alert bucket of a certificate (30, 15 or 7 days left; 0 once expired)
//! and the daily check that moves certificates between buckets, auditing each move towards
//! expiry once so the alert is not repeated every day.

use std::fmt;

use chrono::{DateTime, Duration, Utc};
use sea_orm::entity::prelude::*;
use sea_orm::sea_query::Expr;
use sea_orm::{DerivePartialModel, QueryOrder};
use serde::Serialize;
use serde_json::json;

use super::entity::{Column, Entity as Certificates};
use crate::audit::{self, Actor, AuditAction, Entry};
use crate::domain::OrgId;
use crate::error::AppError;

/// Days before notAfter at which a certificate enters a bucket, most urgent first.
pub const BUCKETS: [i32; 3] = [7, 15, 30];

/// The bucket of a certificate at `now`: `Some(0)` once expired, else the smallest bucket
/// its remaining time fits in, `None` when more than 30 days are left.
pub fn alert_days(not_after: DateTime<Utc>, now: DateTime<Utc>) -> Option<i32> {
    if not_after < now {
        return Some(0);
    }
    let left = not_after - now;
    BUCKETS
        .into_iter()
        .find(|days| left <= Duration::days(i64::from(*days)))
}

/// Lower is closer to expiry; no bucket is the least urgent.
fn urgency(bucket: Option<i32>) -> i32 {
    bucket.unwrap_or(i32::MAX)
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ExpiryReport {
    pub checked: u64,
    /// Rows whose bucket changed (either way).
    pub changed: u64,
    /// `CERT_EXPIRING` entries written.
    pub alerts: u64,
}

impl fmt::Display for ExpiryReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "expiry check: {} certificate(s) checked, {} bucket(s) changed, {} alert(s) written",
            self.checked, self.changed, self.alerts
        )
    }
}

#[derive(Debug, Clone, DerivePartialModel)]
#[sea_orm(entity = "Certificates")]
struct Tracked {
    id: Uuid,
    org_id: i64,
    name: String,
    not_after: Option<DateTimeUtc>,
    expiry_alert_days: Option<i32>,
    is_available: bool,
    superseded_by: Option<Uuid>,
}

impl Tracked {
    fn bucket(&self, now: DateTime<Utc>) -> Option<i32> {
        self.not_after.and_then(|t| alert_days(t, now))
    }

    /// A renewed certificate or one whose file left needs no one to act: it moves silently.
    fn deserves_alert(&self, new: Option<i32>) -> bool {
        urgency(new) < urgency(self.expiry_alert_days)
            && self.is_available
            && self.superseded_by.is_none()
    }
}

/// What the check did to one certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Move {
    Unchanged,
    Silent,
    Alerted,
}

/// Moves one certificate to its bucket at `now`, auditing a move towards expiry.
async fn refresh<C: ConnectionTrait>(
    txn: &C,
    id: Uuid,
    now: DateTime<Utc>,
) -> Result<Move, AppError> {
    let Some(row) = Certificates::find_by_id(id)
        .into_partial_model::<Tracked>()
        .one(txn)
        .await?
    else {
        return Ok(Move::Unchanged);
    };
    let bucket = row.bucket(now);
    if bucket == row.expiry_alert_days {
        return Ok(Move::Unchanged);
    }
    Certificates::update_many()
        .col_expr(Column::ExpiryAlertDays, Expr::value(bucket))
        .filter(Column::Id.eq(row.id))
        .exec(txn)
        .await?;
    if !row.deserves_alert(bucket) {
        return Ok(Move::Silent);
    }
    audit::append(
        txn,
        Entry::new(OrgId(row.org_id), AuditAction::CertExpiring, Actor::System)
            .entity("certificate", row.id)
            .meta(json!({"days": bucket, "not_after": row.not_after, "name": row.name})),
    )
    .await?;
    Ok(Move::Alerted)
}

/// Recomputes `expiry_alert_days` of every certificate of every office.
pub async fn check_all(
    db: &DatabaseConnection,
    now: DateTime<Utc>,
) -> Result<ExpiryReport, AppError> {
    let rows = Certificates::find()
        .order_by_asc(Column::OrgId)
        .order_by_asc(Column::Id)
        .into_partial_model::<Tracked>()
        .all(db)
        .await?;
    let mut report = ExpiryReport::default();
    for row in rows {
        report.checked += 1;
        if row.bucket(now) == row.expiry_alert_days {
            continue;
        }
        // Read again under the write lock: ingest may have replaced the file meanwhile.
        let txn = crate::db::begin_write(db).await?;
        let moved = refresh(&txn, row.id, now).await?;
        txn.commit().await?;
        report.changed += u64::from(moved != Move::Unchanged);
        report.alerts += u64::from(moved == Move::Alerted);
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(days: i64, secs: i64) -> Option<i32> {
        let now = DateTime::parse_from_rfc3339("2026-11-25T09:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        alert_days(now + Duration::days(days) + Duration::seconds(secs), now)
    }

    #[test]
    fn buckets_at_their_boundaries() {
        assert_eq!(at(0, -1), Some(0), "expired a second ago");
        assert_eq!(at(-400, 0), Some(0));
        assert_eq!(
            at(0, 0),
            Some(7),
            "expires right now: not past notAfter yet"
        );
        assert_eq!(at(7, 0), Some(7));
        assert_eq!(at(7, 1), Some(15));
        assert_eq!(at(15, 0), Some(15));
        assert_eq!(at(15, 1), Some(30));
        assert_eq!(at(30, 0), Some(30));
        assert_eq!(at(30, 1), None);
        assert_eq!(at(365, 0), None);
    }

    #[test]
    fn only_moves_towards_expiry_alert() {
        let row = |old, available, superseded: Option<Uuid>| Tracked {
            id: Uuid::nil(),
            org_id: 1,
            name: "X".into(),
            not_after: None,
            expiry_alert_days: old,
            is_available: available,
            superseded_by: superseded,
        };
        assert!(row(None, true, None).deserves_alert(Some(30)));
        assert!(row(Some(30), true, None).deserves_alert(Some(7)));
        assert!(row(Some(7), true, None).deserves_alert(Some(0)));
        assert!(
            !row(Some(7), true, None).deserves_alert(Some(30)),
            "renewed"
        );
        assert!(!row(Some(7), true, None).deserves_alert(None));
        assert!(!row(None, false, None).deserves_alert(Some(7)), "file gone");
        assert!(
            !row(None, true, Some(Uuid::nil())).deserves_alert(Some(7)),
            "superseded"
        );
    }
}
