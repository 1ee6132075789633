//! Breaks of an office's audit chain, as a check found them. Whichever check finds one (the
//! portal's, the API's, `certhub audit verify`, the hourly walk), it is kept here and shown on
//! the Painel and the Auditoria page until an ADMIN/DEV acknowledges it (audited
//! `AUDIT_BREAK_ACKNOWLEDGED`). The same break found again is the same row: acknowledged once.

use chrono::{DateTime, Utc};
use sea_orm::entity::prelude::*;
use sea_orm::sea_query::OnConflict;
use sea_orm::{ActiveValue::Set, QueryOrder};
use serde_json::json;

use super::AuditAction;
use super::chain::{Actor, Break, Entry, append};
use crate::domain::OrgId;
use crate::error::AppError;
use crate::identity::AuthUser;

pub mod entity {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "audit_chain_breaks")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub org_id: i64,
        pub seq: i64,
        pub reason: String,
        pub found_by: String,
        pub created_at: DateTimeUtc,
        pub acknowledged_at: Option<DateTimeUtc>,
        pub acknowledged_by_user_id: Option<Uuid>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

use entity::{Column, Entity as Breaks};

/// Which check found a break.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FoundBy {
    Portal,
    Api,
    Cli,
    Scheduled,
}

impl FoundBy {
    pub fn as_str(self) -> &'static str {
        match self {
            FoundBy::Portal => "portal",
            FoundBy::Api => "api",
            FoundBy::Cli => "cli",
            FoundBy::Scheduled => "scheduled",
        }
    }
}

/// A break as the pages show it.
#[derive(Debug, Clone)]
pub struct KnownBreak {
    pub seq: i64,
    pub reason: String,
    pub found_at: DateTime<Utc>,
    /// When and by whom it was acknowledged (`None`: it still turns the banner red).
    pub acknowledged: Option<(DateTime<Utc>, Option<Uuid>)>,
}

impl From<entity::Model> for KnownBreak {
    fn from(m: entity::Model) -> Self {
        Self {
            seq: m.seq,
            reason: m.reason,
            found_at: m.created_at,
            acknowledged: m.acknowledged_at.map(|at| (at, m.acknowledged_by_user_id)),
        }
    }
}

/// Keeps `found` (a break of office `found.org_id`'s chain); a break already known (same
/// office, same row) is left as it is, acknowledged or not.
pub async fn keep<C: ConnectionTrait>(conn: &C, found: &Break, by: FoundBy) -> Result<(), DbErr> {
    let reason: String = found.reason.chars().take(500).collect();
    let inserted = Breaks::insert(entity::ActiveModel {
        org_id: Set(found.org_id),
        seq: Set(found.seq),
        reason: Set(reason),
        found_by: Set(by.as_str().to_owned()),
        created_at: Set(Utc::now()),
        ..Default::default()
    })
    .on_conflict(
        OnConflict::columns([Column::OrgId, Column::Seq])
            .do_nothing()
            .to_owned(),
    )
    .exec_without_returning(conn)
    .await?;
    if inserted > 0 {
        tracing::error!(
            org = found.org_id,
            seq = found.seq,
            reason = %found.reason,
            found_by = by.as_str(),
            "audit chain broken"
        );
    }
    Ok(())
}

/// The office's oldest break nobody has acknowledged yet.
pub async fn open<C: ConnectionTrait>(conn: &C, org: OrgId) -> Result<Option<KnownBreak>, DbErr> {
    Ok(Breaks::find()
        .filter(Column::OrgId.eq(org.0))
        .filter(Column::AcknowledgedAt.is_null())
        .order_by_asc(Column::Seq)
        .one(conn)
        .await?
        .map(KnownBreak::from))
}

/// The office's break at `seq`, if one was found there.
pub async fn at<C: ConnectionTrait>(
    conn: &C,
    org: OrgId,
    seq: i64,
) -> Result<Option<KnownBreak>, DbErr> {
    Ok(Breaks::find()
        .filter(Column::OrgId.eq(org.0))
        .filter(Column::Seq.eq(seq))
        .one(conn)
        .await?
        .map(KnownBreak::from))
}

/// Acknowledges every open break of the admin's office (ADMIN/DEV), audited
/// `AUDIT_BREAK_ACKNOWLEDGED` with the rows; returns how many there were.
pub async fn acknowledge(
    db: &sea_orm::DatabaseConnection,
    admin: &AuthUser,
) -> Result<u64, AppError> {
    admin.require_admin()?;
    let txn = crate::db::begin_write(db).await?;
    let open = Breaks::find()
        .filter(Column::OrgId.eq(admin.org.0))
        .filter(Column::AcknowledgedAt.is_null())
        .order_by_asc(Column::Seq)
        .all(&txn)
        .await?;
    if open.is_empty() {
        txn.rollback().await?;
        return Ok(0);
    }
    let now = Utc::now();
    Breaks::update_many()
        .col_expr(Column::AcknowledgedAt, sea_orm::sea_query::Expr::value(now))
        .col_expr(
            Column::AcknowledgedByUserId,
            sea_orm::sea_query::Expr::value(admin.user.id),
        )
        .filter(Column::Id.is_in(open.iter().map(|b| b.id)))
        .exec(&txn)
        .await?;
    let rows: Vec<_> = open
        .iter()
        .map(|b| json!({"seq": b.seq, "reason": b.reason, "found_at": b.created_at.to_rfc3339()}))
        .collect();
    append(
        &txn,
        Entry::new(
            admin.org,
            AuditAction::AuditBreakAcknowledged,
            Actor::User(admin.user.id),
        )
        .meta(json!({"breaks": rows}))
        .ip(admin.ip.clone()),
    )
    .await?;
    txn.commit().await?;
    Ok(open.len() as u64)
}
