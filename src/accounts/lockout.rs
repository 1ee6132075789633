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

pub async fn record<C: ConnectionTrait>(
    conn: &C,
    org_id: Option<i64>,
    email: &str,
    ip: Option<String>,
    success: bool,
) -> Result<(), DbErr> {
    LoginAttempts::insert(entity::ActiveModel {
        org_id: Set(org_id),
        email: Set(email.to_owned()),
        ip: Set(ip),
        success: Set(success),
        created_at: Set(Utc::now()),
        ..Default::default()
    })
    .exec_without_returning(conn)
    .await?;
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
