//! Installation leases: every `DONE` install opens a row in `installations` that says until
//! when the certificate may stay on the device; the agent closes it when it removes the
//! certificate (seed S5, "Regra das 18h"), or a `REMOVE` job ends it early. A lease still open
//! `lease_grace_minutes` past its end is overdue: audited once and handed a `REMOVE` job.

use chrono::{DateTime, Duration, Utc};
use sea_orm::entity::prelude::*;
use sea_orm::sea_query::Expr;
use serde_json::json;

use super::entity::{Column as JobColumn, InstallJobs};
use super::status::{Event, JobStatus, JobType, RemovalCause};
use crate::audit::{self, Actor, AuditAction, Entry};
use crate::domain::OrgId;
use crate::error::AppError;
use crate::protocol::CleanupMode;

pub mod entity {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "installations")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub org_id: i64,
        pub device_id: Uuid,
        pub cert_id: Uuid,
        /// Who asked for the install.
        pub user_id: Option<Uuid>,
        pub job_id: Uuid,
        pub thumbprint: String,
        pub installed_at: DateTimeUtc,
        pub expires_at: DateTimeUtc,
        pub removed_at: Option<DateTimeUtc>,
        /// How the agent removed it (`scheduled`, `manual`, `startup`, `lease`).
        pub removal_mode: Option<String>,
        pub key_deleted: Option<bool>,
        pub created_at: DateTimeUtc,
        /// When the sweep found it overdue (and audited `LEASE_OVERDUE`).
        pub overdue_at: Option<DateTimeUtc>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub use entity::Column;
pub type Leases = entity::Entity;
pub type Lease = entity::Model;

/// The audit log's name for an installation.
pub const ENTITY: &str = "installation";

impl Lease {
    /// Open past `expires_at + grace`: the agent has not reported the removal it owed.
    pub fn is_overdue(&self, now: DateTime<Utc>, grace: Duration) -> bool {
        self.removed_at.is_none() && self.expires_at + grace <= now
    }
}

/// How an installation ended, as `installations.removal_mode` records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemovalMode {
    /// Reported by the agent through `POST /api/v1/agent/cleanup`.
    Cleanup(CleanupMode),
    /// The result of a `REMOVE` job, made for its cause.
    RemoveJob(RemovalCause),
}

impl RemovalMode {
    /// `installations.removal_mode`: the cleanup's mode, `remove_job` for one asked for, or
    /// the cause of a `REMOVE` job the server made.
    pub fn as_str(self) -> &'static str {
        match self {
            RemovalMode::Cleanup(mode) => mode.as_str(),
            RemovalMode::RemoveJob(RemovalCause::Requested) => "remove_job",
            RemovalMode::RemoveJob(cause) => cause.as_str(),
        }
    }

    /// The seed's `CERT_REMOVED_18H` for the cleanup routine the runbook checks (the daily
    /// time, `--cleanup --mode manual`, and start-up finishing what 18:00 left), and an action
    /// of its own for every other way a certificate leaves a PC.
    pub fn audit_action(self) -> AuditAction {
        match self {
            RemovalMode::Cleanup(CleanupMode::Lease) => AuditAction::CertRemovedLeaseEnd,
            RemovalMode::Cleanup(CleanupMode::Uninstall) => AuditAction::CertRemovedUninstall,
            RemovalMode::Cleanup(_) => AuditAction::CertRemoved18h,
            RemovalMode::RemoveJob(RemovalCause::Requested) => AuditAction::CertRemovedOnRequest,
            RemovalMode::RemoveJob(RemovalCause::DeviceBlocked) => {
                AuditAction::CertRemovedDeviceBlocked
            }
            RemovalMode::RemoveJob(RemovalCause::UserDeactivated) => {
                AuditAction::CertRemovedUserDeactivated
            }
            RemovalMode::RemoveJob(RemovalCause::Overdue) => AuditAction::CertRemovedOverdue,
        }
    }
}

pub fn not_found() -> AppError {
    AppError::NotFound("no such installation in this office".into())
}

/// The installation `id` of office `org`; another office's is "not found", like a missing one.
pub async fn find<C: ConnectionTrait>(conn: &C, org: OrgId, id: Uuid) -> Result<Lease, AppError> {
    Leases::find_by_id(id)
        .filter(Column::OrgId.eq(org.0))
        .one(conn)
        .await?
        .ok_or_else(not_found)
}

/// Closes `lease` on `conn` (the caller's transaction) unless something closed it first:
/// records when and how, audits it ([`RemovalMode::audit_action`]) and
/// cancels the `REMOVE` jobs still waiting for it. `false` when it was already closed.
pub async fn close<C: ConnectionTrait>(
    conn: &C,
    lease: &Lease,
    mode: RemovalMode,
    key_deleted: Option<bool>,
    actor: Actor,
    ip: Option<String>,
) -> Result<bool, AppError> {
    let now = Utc::now();
    let closed = Leases::update_many()
        .col_expr(Column::RemovedAt, Expr::value(now))
        .col_expr(Column::RemovalMode, Expr::value(mode.as_str()))
        .col_expr(Column::KeyDeleted, Expr::value(key_deleted))
        .filter(Column::Id.eq(lease.id))
        .filter(Column::RemovedAt.is_null())
        .exec(conn)
        .await?
        .rows_affected;
    if closed != 1 {
        return Ok(false);
    }
    let org = OrgId(lease.org_id);
    audit::append(
        conn,
        Entry::new(org, mode.audit_action(), actor)
            .entity("certificate", lease.cert_id)
            .meta(json!({
                "mode": mode.as_str(),
                "thumbprint": lease.thumbprint,
                "key_deleted": key_deleted,
                "installation_id": lease.id,
                "job_id": lease.job_id,
                "device_id": lease.device_id,
            }))
            .ip(ip.clone()),
    )
    .await?;
    let waiting = InstallJobs::find()
        .filter(JobColumn::LeaseId.eq(lease.id))
        .filter(JobColumn::JobType.eq(JobType::Remove.as_str()))
        .filter(JobColumn::Status.eq(JobStatus::Pending.as_str()))
        .all(conn)
        .await?;
    for job in waiting {
        let meta = json!({"reason": "the certificate was removed meanwhile", "removal_mode": mode.as_str()});
        match super::transition::apply(
            conn,
            &job,
            Event::Cancel,
            actor,
            ip.clone(),
            Vec::new(),
            meta,
        )
        .await
        {
            // Claimed meanwhile: the agent will find nothing to remove and report it.
            Ok(_) | Err(AppError::Conflict(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{NaiveTime, TimeZone};
    use chrono_tz::America::Sao_Paulo;
    use chrono_tz::Tz;

    use crate::schedule::{DailyCleanup, LeaseRule};

    /// When a lease opened at `installed_at` ends: the office's rule ([`LeaseRule`], the one the
    /// agent follows too) for the duration the requester asked for.
    fn expires_at(
        installed_at: DateTime<Utc>,
        cleanup: NaiveTime,
        tz: Tz,
        max_lease_hours: i64,
        duration_minutes: Option<i32>,
    ) -> DateTime<Utc> {
        let rule = LeaseRule {
            cleanup: DailyCleanup { time: cleanup, tz },
            max_hours: max_lease_hours,
        };
        rule.end(installed_at, duration_minutes.map(i64::from))
    }

    fn six_pm() -> NaiveTime {
        NaiveTime::from_hms_opt(18, 0, 0).unwrap()
    }

    /// A São Paulo wall-clock time (UTC-3 all year since 2019) in UTC.
    fn sp(s: &str) -> DateTime<Utc> {
        let naive = chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M").unwrap();
        Sao_Paulo
            .from_local_datetime(&naive)
            .single()
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn before_six_pm_the_lease_ends_at_six_pm_that_day() {
        let at = sp("2026-11-23 09:15");
        assert_eq!(
            expires_at(at, six_pm(), Sao_Paulo, 24, None),
            sp("2026-11-23 18:00")
        );
        assert_eq!(
            sp("2026-11-23 18:00").to_rfc3339(),
            "2026-11-23T21:00:00+00:00"
        );
    }

    #[test]
    fn at_or_after_six_pm_the_lease_ends_at_six_pm_the_next_day() {
        for t in ["2026-11-23 18:00", "2026-11-23 18:01", "2026-11-23 23:59"] {
            let at = sp(t);
            assert_eq!(
                expires_at(at, six_pm(), Sao_Paulo, 48, None),
                sp("2026-11-24 18:00"),
                "{t}"
            );
        }
    }

    #[test]
    fn the_cap_wins_when_it_comes_first() {
        let at = sp("2026-11-23 19:00");
        assert_eq!(
            expires_at(at, six_pm(), Sao_Paulo, 8, None),
            sp("2026-11-24 03:00")
        );
    }

    #[test]
    fn a_shorter_duration_wins_a_longer_one_does_not() {
        let at = sp("2026-11-23 10:00");
        assert_eq!(
            expires_at(at, six_pm(), Sao_Paulo, 24, Some(90)),
            sp("2026-11-23 11:30")
        );
        assert_eq!(
            expires_at(at, six_pm(), Sao_Paulo, 24, Some(600)),
            sp("2026-11-23 18:00")
        );
        let late = sp("2026-11-23 20:00");
        assert_eq!(
            expires_at(late, six_pm(), Sao_Paulo, 4, Some(600)),
            sp("2026-11-24 00:00"),
            "the office's cap beats a longer request"
        );
    }

    #[test]
    fn the_old_daylight_saving_dates_change_nothing() {
        // São Paulo had DST until 2019; November was once in it, now it is plain UTC-3.
        let at = sp("2026-11-01 17:00");
        assert_eq!(
            expires_at(at, six_pm(), Sao_Paulo, 24, None).to_rfc3339(),
            "2026-11-01T21:00:00+00:00"
        );
    }

    #[test]
    fn overdue_only_past_the_grace_and_only_while_open() {
        let at = sp("2026-11-23 10:00");
        let lease = Lease {
            id: uuid::Uuid::nil(),
            org_id: 1,
            device_id: uuid::Uuid::nil(),
            cert_id: uuid::Uuid::nil(),
            user_id: None,
            job_id: uuid::Uuid::nil(),
            thumbprint: "AB".repeat(20),
            installed_at: at,
            expires_at: sp("2026-11-23 18:00"),
            removed_at: None,
            removal_mode: None,
            key_deleted: None,
            created_at: at,
            overdue_at: None,
        };
        let grace = Duration::minutes(15);
        assert!(!lease.is_overdue(sp("2026-11-23 18:14"), grace));
        assert!(lease.is_overdue(sp("2026-11-23 18:15"), grace));
        let removed = Lease {
            removed_at: Some(sp("2026-11-23 18:20")),
            ..lease
        };
        assert!(!removed.is_overdue(sp("2026-11-24 09:00"), grace));
        assert_eq!(
            RemovalMode::RemoveJob(RemovalCause::Requested).as_str(),
            "remove_job"
        );
        for mode in [
            CleanupMode::Scheduled,
            CleanupMode::Manual,
            CleanupMode::Startup,
        ] {
            assert_eq!(
                RemovalMode::Cleanup(mode).audit_action(),
                AuditAction::CertRemoved18h
            );
        }
        assert_eq!(
            RemovalMode::RemoveJob(RemovalCause::DeviceBlocked).audit_action(),
            AuditAction::CertRemovedDeviceBlocked
        );
        assert_eq!(
            RemovalMode::Cleanup(CleanupMode::Scheduled).as_str(),
            "scheduled"
        );
    }
}
