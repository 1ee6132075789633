//! One-time password-set tokens: random, stored as a hash, short-lived, single use.

use chrono::{DateTime, Duration, Utc};
use sea_orm::entity::prelude::*;
use sea_orm::{ActiveValue::Set, ConnectionTrait};
use serde_json::json;

use super::password::Password;
use super::user::{self, User, Users};
use crate::audit::{self, Actor, AuditAction, Entry};
use crate::crypto::{SecretString, Token, TokenHash};
use crate::domain::{Email, OrgId};
use crate::error::AppError;
use crate::state::AppState;

pub mod entity {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "password_set_tokens")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub org_id: i64,
        pub user_id: Uuid,
        pub token_hash: String,
        pub expires_at: DateTimeUtc,
        pub used_at: Option<DateTimeUtc>,
        pub created_by_user_id: Option<Uuid>,
        pub created_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// The link an admin hands to the user. It carries the token, so it is a secret.
pub struct PasswordSetLink {
    pub url: SecretString,
    pub token: Token,
    pub expires_at: DateTime<Utc>,
}

/// Path of the portal page that consumes the token.
pub const PAGE: &str = "/definir-senha";

/// Voids every unused link of `user`: only the newest link, or none once one was used, works.
pub async fn void_unused<C: ConnectionTrait>(conn: &C, user_id: Uuid) -> Result<u64, DbErr> {
    let res = entity::Entity::update_many()
        .col_expr(
            entity::Column::UsedAt,
            sea_orm::sea_query::Expr::value(Utc::now()),
        )
        .filter(entity::Column::UserId.eq(user_id))
        .filter(entity::Column::UsedAt.is_null())
        .exec(conn)
        .await?;
    Ok(res.rows_affected)
}

/// Creates a token for `user` (voiding the earlier unused ones) and audits
/// `PASSWORD_SET_INITIATED` (without the token).
pub async fn issue<C: ConnectionTrait>(
    conn: &C,
    public_url: &str,
    ttl_hours: i64,
    user: &User,
    actor: Actor,
) -> Result<PasswordSetLink, AppError> {
    void_unused(conn, user.id).await?;
    let token = Token::generate();
    let now = Utc::now();
    let expires_at = now + Duration::hours(ttl_hours);
    let id = Uuid::new_v4();
    entity::Entity::insert(entity::ActiveModel {
        id: Set(id),
        org_id: Set(user.org_id),
        user_id: Set(user.id),
        token_hash: Set(token.hash().as_str().to_owned()),
        expires_at: Set(expires_at),
        used_at: Set(None),
        created_by_user_id: Set(match actor {
            Actor::User(u) => Some(u),
            _ => None,
        }),
        created_at: Set(now),
    })
    .exec_without_returning(conn)
    .await?;
    audit::append(
        conn,
        Entry::new(OrgId(user.org_id), AuditAction::PasswordSetInitiated, actor)
            .entity("user", user.id)
            .meta(json!({"expires_at": expires_at.to_rfc3339()})),
    )
    .await?;
    let url = SecretString::new(format!("{public_url}{PAGE}?token={}", token.expose()));
    Ok(PasswordSetLink {
        url,
        token,
        expires_at,
    })
}

/// Deletes tokens that expired more than a day ago (cron maintenance).
pub async fn purge_expired<C: ConnectionTrait>(conn: &C) -> Result<u64, DbErr> {
    let cutoff = Utc::now() - Duration::days(1);
    let res = entity::Entity::delete_many()
        .filter(entity::Column::ExpiresAt.lt(cutoff))
        .exec(conn)
        .await?;
    Ok(res.rows_affected)
}

/// Consumes the one-time `token`, sets the user's password, ends their other sessions. Shared
/// by the API and the portal page.
pub async fn set_password_with_token(
    state: &AppState,
    token: &str,
    new_password: &str,
    ip: Option<String>,
) -> Result<(), AppError> {
    let invalid = || AppError::BadRequest("invalid or expired token".into());
    let hash = TokenHash::of(token);
    let row = valid_row(state, &hash).await?.ok_or_else(invalid)?;
    let target = Users::find_by_id(row.user_id)
        .one(&state.db)
        .await?
        .ok_or_else(invalid)?;
    let email = Email::parse(&target.email).map_err(AppError::Internal)?;
    let password = Password::parse(new_password, &email)?;
    let cost = state.settings.bcrypt_cost;
    let password_hash = super::password::blocking(move || password.hash(cost)).await??;

    let txn = crate::db::begin_write(&state.db).await?;
    // Single use even under concurrency: only one request flips used_at.
    let claimed = entity::Entity::update_many()
        .col_expr(
            entity::Column::UsedAt,
            sea_orm::sea_query::Expr::value(Utc::now()),
        )
        .filter(entity::Column::Id.eq(row.id))
        .filter(entity::Column::UsedAt.is_null())
        .exec(&txn)
        .await?
        .rows_affected;
    if claimed != 1 {
        txn.rollback().await?;
        return Err(invalid());
    }
    void_unused(&txn, target.id).await?;
    user::store_password(&txn, &target, password_hash, ip).await?;
    // The person who just chose a password is the account's owner: a lock from earlier wrong
    // guesses ends with it.
    super::lockout::clear(&txn, &target.email).await?;
    txn.commit().await?;
    Ok(())
}

/// The user a valid, unused `token` sets the password of (the page names whose account it is).
pub async fn holder(state: &AppState, token: &str) -> Result<Option<User>, AppError> {
    let hash = TokenHash::of(token);
    let Some(row) = valid_row(state, &hash).await? else {
        return Ok(None);
    };
    Ok(Users::find_by_id(row.user_id).one(&state.db).await?)
}

async fn valid_row(state: &AppState, hash: &TokenHash) -> Result<Option<entity::Model>, AppError> {
    Ok(entity::Entity::find()
        .filter(entity::Column::TokenHash.eq(hash.as_str()))
        .one(&state.db)
        .await?
        .filter(|r| {
            hash.matches(&r.token_hash) && r.used_at.is_none() && r.expires_at > Utc::now()
        }))
}
