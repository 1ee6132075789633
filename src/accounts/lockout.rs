//! Login attempts per account: after `lockout_threshold` consecutive failures the account is
//! refused until `lockout_window_min` has passed since the last failure, right password or not.

use chrono::{DateTime, Duration, Utc};
use sea_orm::entity::prelude::*;
use sea_orm::{ActiveValue::Set, QueryOrder, QuerySelect};

pub mod entity {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "login_attempts")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub org_id: Option<i64>,
        pub email: String,
        pub ip: Option<String>,
        pub success: bool,
        pub created_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

use entity::{Column, Entity as LoginAttempts};

/// Records an attempt; returns its id. A login records its attempt as failed *before* the
/// password is checked (see [`succeeded`]), so concurrent guesses all count.
pub async fn record<C: ConnectionTrait>(
    conn: &C,
    org_id: Option<i64>,
    email: &str,
    ip: Option<String>,
    success: bool,
) -> Result<i64, DbErr> {
    let res = LoginAttempts::insert(entity::ActiveModel {
        org_id: Set(org_id),
        email: Set(email.to_owned()),
        ip: Set(ip),
        success: Set(success),
        created_at: Set(Utc::now()),
        ..Default::default()
    })
    .exec(conn)
    .await?;
    Ok(res.last_insert_id)
}

/// Marks a recorded attempt as successful (the password was right).
pub async fn succeeded<C: ConnectionTrait>(conn: &C, attempt_id: i64) -> Result<(), DbErr> {
    LoginAttempts::update_many()
        .col_expr(Column::Success, sea_orm::sea_query::Expr::value(true))
        .filter(Column::Id.eq(attempt_id))
        .exec(conn)
        .await?;
    Ok(())
}

/// Serialises the lockout check and the attempt's record for one account until the end of the
/// caller's write transaction. SQLite's write transactions are already serial; PostgreSQL takes
/// a transaction-scoped advisory lock on the account's key.
pub async fn lock_account<C: ConnectionTrait>(conn: &C, email: &str) -> Result<(), DbErr> {
    if conn.get_database_backend() == sea_orm::DbBackend::Postgres {
        conn.execute_raw(sea_orm::Statement::from_sql_and_values(
            sea_orm::DbBackend::Postgres,
            "SELECT pg_advisory_xact_lock(hashtextextended($1, 7411))",
            [format!("login:{email}").into()],
        ))
        .await?;
    }
    Ok(())
}

/// The attempts on `email` within the window, newest first, at most `threshold` of them.
async fn recent<C: ConnectionTrait>(
    conn: &C,
    email: &str,
    threshold: u32,
    window_min: i64,
) -> Result<Vec<entity::Model>, DbErr> {
    LoginAttempts::find()
        .filter(Column::Email.eq(email))
        .filter(Column::CreatedAt.gte(Utc::now() - Duration::minutes(window_min)))
        .order_by_desc(Column::CreatedAt)
        .order_by_desc(Column::Id)
        .limit(u64::from(threshold))
        .all(conn)
        .await
}

/// How many failures in a row (since the last success) the newest-first `attempts` start with.
fn failures_in_a_row(attempts: &[entity::Model]) -> usize {
    attempts.iter().take_while(|a| !a.success).count()
}

/// When the account is locked, until when.
pub async fn locked_until<C: ConnectionTrait>(
    conn: &C,
    email: &str,
    threshold: u32,
    window_min: i64,
) -> Result<Option<DateTime<Utc>>, DbErr> {
    let recent = recent(conn, email, threshold, window_min).await?;
    if failures_in_a_row(&recent) < threshold as usize {
        return Ok(None);
    }
    Ok(recent
        .first()
        .map(|newest| newest.created_at + Duration::minutes(window_min)))
}

/// How many wrong passwords `email` may still give before the lock (0: it is locked).
pub async fn attempts_left<C: ConnectionTrait>(
    conn: &C,
    email: &str,
    threshold: u32,
    window_min: i64,
) -> Result<u32, DbErr> {
    let recent = recent(conn, email, threshold, window_min).await?;
    Ok(threshold.saturating_sub(failures_in_a_row(&recent) as u32))
}

/// Of `emails`, the locked ones and until when (one query for a whole list of users).
pub async fn locked_among<C: ConnectionTrait>(
    conn: &C,
    emails: Vec<String>,
    threshold: u32,
    window_min: i64,
) -> Result<std::collections::HashMap<String, DateTime<Utc>>, DbErr> {
    let window = Duration::minutes(window_min);
    let attempts = LoginAttempts::find()
        .filter(Column::Email.is_in(emails))
        .filter(Column::CreatedAt.gte(Utc::now() - window))
        .order_by_desc(Column::CreatedAt)
        .order_by_desc(Column::Id)
        .all(conn)
        .await?;
    let mut by_email: std::collections::HashMap<String, Vec<entity::Model>> = Default::default();
    for a in attempts {
        by_email.entry(a.email.clone()).or_default().push(a);
    }
    Ok(by_email
        .into_iter()
        .filter_map(|(email, attempts)| {
            let newest = attempts.first()?.created_at;
            (failures_in_a_row(&attempts) >= threshold as usize).then(|| (email, newest + window))
        })
        .collect())
}

/// Forgets the failed attempts on `email`: the account is no longer locked (an unlock by an
/// administrator, or a password set with a one-time link). Returns how many were forgotten.
pub async fn clear<C: ConnectionTrait>(conn: &C, email: &str) -> Result<u64, DbErr> {
    let res = LoginAttempts::delete_many()
        .filter(Column::Email.eq(email))
        .filter(Column::Success.eq(false))
        .exec(conn)
        .await?;
    Ok(res.rows_affected)
}

/// Deletes attempts older than 30 days (cron maintenance).
pub async fn purge_old<C: ConnectionTrait>(conn: &C) -> Result<u64, DbErr> {
    let res = LoginAttempts::delete_many()
        .filter(Column::CreatedAt.lt(Utc::now() - Duration::days(30)))
        .exec(conn)
        .await?;
    Ok(res.rows_affected)
}
