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

/// When the account is locked, until when.
pub async fn locked_until<C: ConnectionTrait>(
    conn: &C,
    email: &str,
    threshold: u32,
    window_min: i64,
) -> Result<Option<DateTime<Utc>>, DbErr> {
    let window = Duration::minutes(window_min);
    let recent = LoginAttempts::find()
        .filter(Column::Email.eq(email))
        .filter(Column::CreatedAt.gte(Utc::now() - window))
        .order_by_desc(Column::CreatedAt)
        .order_by_desc(Column::Id)
        .limit(u64::from(threshold))
        .all(conn)
        .await?;
    if recent.len() < threshold as usize || recent.iter().any(|a| a.success) {
        return Ok(None);
    }
    Ok(recent.first().map(|newest| newest.created_at + window))
}

/// Deletes attempts older than 30 days (cron maintenance).
pub async fn purge_old<C: ConnectionTrait>(conn: &C) -> Result<u64, DbErr> {
    let res = LoginAttempts::delete_many()
        .filter(Column::CreatedAt.lt(Utc::now() - Duration::days(30)))
        .exec(conn)
        .await?;
    Ok(res.rows_affected)
}
