//! The audit log's chain: append-only, written in the same transaction as the change it records, and
//! tamper-evident. Each row carries `hash = SHA-256(canonical row || prev_hash)` chained to the
//! previous row of its organisation; the chain head lives on the organisation row, whose
//! update serialises concurrent appends so the chain cannot fork.

use chrono::{DateTime, SecondsFormat, Timelike, Utc};
use sea_orm::entity::prelude::*;
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{ActiveValue::Set, ConnectionTrait, QueryOrder, QuerySelect};
use sha2::{Digest, Sha256};

use super::action::AuditAction;

use crate::domain::OrgId;
use crate::organizations::Organizations;

/// `prev_hash` of the first row of an organisation.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

pub mod entity {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "audit_log")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub org_id: i64,
        pub seq: i64,
        pub action: String,
        pub actor_user_id: Option<Uuid>,
        pub actor_device_id: Option<Uuid>,
        pub entity_type: Option<String>,
        pub entity_id: Option<String>,
        pub meta_json: String,
        pub ip: Option<String>,
        pub timestamp: DateTimeUtc,
        pub prev_hash: String,
        pub hash: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub type AuditLog = entity::Entity;
pub type AuditRow = entity::Model;

/// Who did it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Actor {
    User(Uuid),
    Device(Uuid),
    /// The server itself (watcher, cron jobs, start-up).
    System,
}

/// One entry to append.
#[derive(Debug, Clone)]
pub struct Entry {
    pub org_id: OrgId,
    pub action: AuditAction,
    pub actor: Actor,
    pub entity_type: Option<&'static str>,
    pub entity_id: Option<String>,
    pub meta: serde_json::Value,
    pub ip: Option<String>,
}

impl Entry {
    pub fn new(org_id: OrgId, action: AuditAction, actor: Actor) -> Self {
        Self {
            org_id,
            action,
            actor,
            entity_type: None,
            entity_id: None,
            meta: serde_json::json!({}),
            ip: None,
        }
    }

    pub fn entity(mut self, entity_type: &'static str, id: impl ToString) -> Self {
        self.entity_type = Some(entity_type);
        self.entity_id = Some(id.to_string());
        self
    }

    pub fn meta(mut self, meta: serde_json::Value) -> Self {
        self.meta = meta;
        self
    }

    pub fn ip(mut self, ip: Option<String>) -> Self {
        self.ip = ip;
        self
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("organisation {0} does not exist")]
    UnknownOrg(OrgId),
    #[error(transparent)]
    Db(#[from] DbErr),
}

impl From<AuditError> for crate::error::AppError {
    fn from(e: AuditError) -> Self {
        match e {
            AuditError::Db(db) => Self::Db(db),
            other => Self::Internal(other.to_string()),
        }
    }
}

/// The fields that are hashed, in a fixed order.
struct Canonical<'a> {
    org_id: i64,
    seq: i64,
    action: &'a str,
    actor_user_id: Option<Uuid>,
    actor_device_id: Option<Uuid>,
    entity_type: Option<&'a str>,
    entity_id: Option<&'a str>,
    meta_json: &'a str,
    ip: Option<&'a str>,
    timestamp: DateTime<Utc>,
    prev_hash: &'a str,
}

impl Canonical<'_> {
    fn hash(&self) -> String {
        let fields = serde_json::json!([
            self.org_id,
            self.seq,
            self.action,
            self.actor_user_id.map(|u| u.to_string()),
            self.actor_device_id.map(|u| u.to_string()),
            self.entity_type,
            self.entity_id,
            self.meta_json,
            self.ip,
            self.timestamp.to_rfc3339_opts(SecondsFormat::Micros, true),
        ]);
        let mut h = Sha256::new();
        h.update(self.prev_hash.as_bytes());
        h.update(b"\n");
        h.update(fields.to_string().as_bytes());
        hex::encode(h.finalize())
    }

    fn of_row(row: &AuditRow) -> Canonical<'_> {
        Canonical {
            org_id: row.org_id,
            seq: row.seq,
            action: &row.action,
            actor_user_id: row.actor_user_id,
            actor_device_id: row.actor_device_id,
            entity_type: row.entity_type.as_deref(),
            entity_id: row.entity_id.as_deref(),
            meta_json: &row.meta_json,
            ip: row.ip.as_deref(),
            timestamp: row.timestamp,
            prev_hash: &row.prev_hash,
        }
    }
}

/// Appends `entry` on `conn`, which should be the transaction of the change being recorded.
/// Returns the new row's sequence number in its organisation's chain.
pub async fn append<C: ConnectionTrait>(conn: &C, entry: Entry) -> Result<i64, AuditError> {
    let org = entry.org_id;
    append_many(conn, org, vec![entry])
        .await?
        .ok_or(AuditError::UnknownOrg(org))
}

/// Records `entry` on its own (a denial, a rate limit: nothing else changes) in a transaction
/// of its own.
pub async fn record(db: &sea_orm::DatabaseConnection, entry: Entry) -> Result<i64, AuditError> {
    let txn = crate::db::begin_write(db).await?;
    let seq = append(&txn, entry).await?;
    txn.commit().await?;
    Ok(seq)
}

/// Appends several entries of one office in one go (a batch of ingested files): the same
/// chain as appending them one by one, in four statements. Returns the last sequence number,
/// `None` when `entries` is empty.
pub async fn append_many<C: ConnectionTrait>(
    conn: &C,
    org: OrgId,
    entries: Vec<Entry>,
) -> Result<Option<i64>, AuditError> {
    use crate::organizations::entity::Column as Org;
    if entries.is_empty() {
        return Ok(None);
    }
    debug_assert!(entries.iter().all(|e| e.org_id == org));
    let org_id = org.0;
    let count = entries.len() as i64;
    // Taking the sequence numbers locks the organisation row until commit.
    let bumped = Organizations::update_many()
        .col_expr(Org::AuditSeq, Expr::col(Org::AuditSeq).add(count))
        .filter(Org::Id.eq(org_id))
        .exec(conn)
        .await?;
    if bumped.rows_affected == 0 {
        return Err(AuditError::UnknownOrg(org));
    }
    let row = Organizations::find_by_id(org_id)
        .one(conn)
        .await?
        .ok_or(AuditError::UnknownOrg(org))?;
    let last = row.audit_seq;
    let mut prev_hash = row.audit_head.unwrap_or_else(|| GENESIS.to_owned());
    let now = Utc::now();
    // Stored and hashed at microsecond precision, which both databases keep exactly.
    let timestamp = now
        .with_nanosecond(now.timestamp_subsec_micros() * 1000)
        .unwrap_or(now);
    let mut rows = Vec::with_capacity(entries.len());
    for (seq, entry) in (last - count + 1..).zip(entries) {
        let meta_json = entry.meta.to_string();
        let (actor_user_id, actor_device_id) = match entry.actor {
            Actor::User(u) => (Some(u), None),
            Actor::Device(d) => (None, Some(d)),
            Actor::System => (None, None),
        };
        let hash = Canonical {
            org_id,
            seq,
            action: entry.action.as_str(),
            actor_user_id,
            actor_device_id,
            entity_type: entry.entity_type,
            entity_id: entry.entity_id.as_deref(),
            meta_json: &meta_json,
            ip: entry.ip.as_deref(),
            timestamp,
            prev_hash: &prev_hash,
        }
        .hash();
        rows.push(entity::ActiveModel {
            org_id: Set(org_id),
            seq: Set(seq),
            action: Set(entry.action.as_str().to_owned()),
            actor_user_id: Set(actor_user_id),
            actor_device_id: Set(actor_device_id),
            entity_type: Set(entry.entity_type.map(str::to_owned)),
            entity_id: Set(entry.entity_id),
            meta_json: Set(meta_json),
            ip: Set(entry.ip),
            timestamp: Set(timestamp),
            prev_hash: Set(std::mem::replace(&mut prev_hash, hash.clone())),
            hash: Set(hash),
            ..Default::default()
        });
    }
    // Well below SQLite's limit on bound parameters per statement.
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        AuditLog::insert_many(rows.by_ref().take(1000))
            .exec_without_returning(conn)
            .await?;
    }
    Organizations::update_many()
        .col_expr(Org::AuditHead, Expr::value(prev_hash))
        .filter(Org::Id.eq(org_id))
        .exec(conn)
        .await?;
    Ok(Some(last))
}

/// Where a chain is broken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Break {
    pub org_id: i64,
    pub seq: i64,
    pub row_id: Option<i64>,
    pub reason: String,
}

/// Result of [`verify`].
#[derive(Debug, Clone, Default)]
pub struct VerifyReport {
    pub organizations: usize,
    pub rows: u64,
    /// `(org_id, seq, head hash)` of every chain checked.
    pub heads: Vec<(i64, i64, String)>,
    pub first_break: Option<Break>,
}

const VERIFY_PAGE: u64 = 1000;

/// Walks every organisation's chain and reports the first broken link, if any.
pub async fn verify<C: ConnectionTrait>(conn: &C) -> Result<VerifyReport, DbErr> {
    let mut report = VerifyReport::default();
    let orgs = Organizations::find()
        .order_by_asc(crate::organizations::entity::Column::Id)
        .all(conn)
        .await?;
    for org in orgs {
        if !verify_chain(conn, &org, &mut report).await? {
            break;
        }
    }
    Ok(report)
}

/// [`verify`] for one organisation's chain (an office's own view of its log). An unknown
/// organisation has no chain: an empty, unbroken report.
pub async fn verify_org<C: ConnectionTrait>(conn: &C, org: OrgId) -> Result<VerifyReport, DbErr> {
    let mut report = VerifyReport::default();
    if let Some(org) = Organizations::find_by_id(org.0).one(conn).await? {
        verify_chain(conn, &org, &mut report).await?;
    }
    Ok(report)
}

/// Where an office's chain was last found intact: the next `seq` to check and the hash the
/// row with that `seq` must name as its `prev_hash`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub next_seq: i64,
    pub prev_hash: String,
    /// Rows found intact up to there.
    pub rows: u64,
}

impl Default for Checkpoint {
    fn default() -> Self {
        Self {
            next_seq: 1,
            prev_hash: GENESIS.to_owned(),
            rows: 0,
        }
    }
}

/// The last intact checkpoint of each office's chain (in memory: a restart walks it again).
#[derive(Debug, Default)]
pub struct Checkpoints(std::sync::Mutex<std::collections::HashMap<i64, Checkpoint>>);

impl Checkpoints {
    pub fn get(&self, org: OrgId) -> Checkpoint {
        let map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.get(&org.0).cloned().unwrap_or_default()
    }

    /// Keeps `at` unless a later checkpoint is already known.
    pub fn advance(&self, org: OrgId, at: Checkpoint) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let entry = map.entry(org.0).or_default();
        if at.next_seq > entry.next_seq {
            *entry = at;
        }
    }

    /// Forgets an office's checkpoint (after a break: the next look starts over).
    pub fn reset(&self, org: OrgId) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.remove(&org.0);
    }
}

/// Checks `org`'s chain from checkpoint `from` up to the office's head as read at the start
/// (rows appended meanwhile wait for the next check): the report counts every intact row,
/// those before `from` included, and the new checkpoint is returned when nothing is broken.
pub async fn verify_org_from<C: ConnectionTrait>(
    conn: &C,
    org: OrgId,
    from: Checkpoint,
) -> Result<(VerifyReport, Option<Checkpoint>), DbErr> {
    use entity::Column;
    let mut report = VerifyReport::default();
    let Some(org) = Organizations::find_by_id(org.0).one(conn).await? else {
        return Ok((report, Some(Checkpoint::default())));
    };
    report.organizations = 1;
    let head_seq = org.audit_seq;
    let head = org.audit_head.clone().unwrap_or_else(|| GENESIS.to_owned());
    let mut at = from;
    report.rows = at.rows;
    while at.next_seq <= head_seq {
        let page = AuditLog::find()
            .filter(Column::OrgId.eq(org.id))
            .filter(Column::Seq.gte(at.next_seq))
            .filter(Column::Seq.lte(head_seq))
            .order_by_asc(Column::Seq)
            .limit(VERIFY_PAGE)
            .all(conn)
            .await?;
        if page.is_empty() {
            break;
        }
        for row in page {
            let reason = if row.seq != at.next_seq {
                Some(format!(
                    "row missing: expected seq {}, found seq {}",
                    at.next_seq, row.seq
                ))
            } else if row.prev_hash != at.prev_hash {
                Some("prev_hash does not match the previous row's hash".into())
            } else if Canonical::of_row(&row).hash() != row.hash {
                Some("row content does not match its hash (modified)".into())
            } else {
                None
            };
            if let Some(reason) = reason {
                report.first_break = Some(Break {
                    org_id: org.id,
                    seq: at.next_seq,
                    row_id: Some(row.id),
                    reason,
                });
                return Ok((report, None));
            }
            report.rows += 1;
            at = Checkpoint {
                next_seq: at.next_seq + 1,
                prev_hash: row.hash,
                rows: at.rows + 1,
            };
        }
    }
    if at.next_seq != head_seq + 1 || at.prev_hash != head {
        report.first_break = Some(Break {
            org_id: org.id,
            seq: at.next_seq,
            row_id: None,
            reason: format!(
                "chain ends at seq {} but the organisation's head says seq {head_seq}",
                at.next_seq - 1
            ),
        });
        return Ok((report, None));
    }
    report.heads.push((org.id, head_seq, head));
    Ok((report, Some(at)))
}

/// Walks `org`'s chain into `report`; `false` when it is broken (`report.first_break`).
async fn verify_chain<C: ConnectionTrait>(
    conn: &C,
    org: &crate::organizations::entity::Model,
    report: &mut VerifyReport,
) -> Result<bool, DbErr> {
    use entity::Column;
    report.organizations += 1;
    let mut expected_prev = GENESIS.to_owned();
    let mut expected_seq = 1i64;
    loop {
        let page = AuditLog::find()
            .filter(Column::OrgId.eq(org.id))
            .filter(Column::Seq.gte(expected_seq))
            .order_by_asc(Column::Seq)
            .limit(VERIFY_PAGE)
            .all(conn)
            .await?;
        let last_page = (page.len() as u64) < VERIFY_PAGE;
        for row in page {
            let broken = |reason: String| Break {
                org_id: org.id,
                seq: expected_seq,
                row_id: Some(row.id),
                reason,
            };
            if row.seq != expected_seq {
                report.first_break = Some(broken(format!(
                    "row missing: expected seq {expected_seq}, found seq {}",
                    row.seq
                )));
            } else if row.prev_hash != expected_prev {
                report.first_break = Some(broken(
                    "prev_hash does not match the previous row's hash".into(),
                ));
            } else if Canonical::of_row(&row).hash() != row.hash {
                report.first_break = Some(broken(
                    "row content does not match its hash (modified)".into(),
                ));
            }
            if report.first_break.is_some() {
                return Ok(false);
            }
            report.rows += 1;
            expected_prev = row.hash;
            expected_seq += 1;
        }
        if last_page {
            break;
        }
    }
    let last_seq = expected_seq - 1;
    let head = org.audit_head.clone().unwrap_or_else(|| GENESIS.to_owned());
    if org.audit_seq != last_seq || head != expected_prev {
        report.first_break = Some(Break {
            org_id: org.id,
            seq: last_seq + 1,
            row_id: None,
            reason: format!(
                "chain ends at seq {last_seq} but the organisation's head says seq {}",
                org.audit_seq
            ),
        });
        return Ok(false);
    }
    report.heads.push((org.id, last_seq, expected_prev));
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_covers_every_field() {
        let base = Canonical {
            org_id: 1,
            seq: 1,
            action: "LOGIN_OK",
            actor_user_id: None,
            actor_device_id: None,
            entity_type: None,
            entity_id: None,
            meta_json: "{}",
            ip: None,
            timestamp: DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
            prev_hash: GENESIS,
        };
        let h = base.hash();
        assert_eq!(h.len(), 64);
        let changed = [
            Canonical { seq: 2, ..base },
            Canonical {
                action: "LOGOUT",
                ..base
            },
            Canonical {
                meta_json: "{\"a\":1}",
                ..base
            },
            Canonical {
                ip: Some("10.0.0.1"),
                ..base
            },
            Canonical {
                prev_hash: "ff",
                ..base
            },
            Canonical {
                entity_id: Some("x"),
                ..base
            },
        ];
        for c in changed {
            assert_ne!(c.hash(), h);
        }
    }
}
