//! Refresh sessions: random tokens stored as hashes, rotated on every refresh. Every rotation
//! of one login shares a family; presenting an already-rotated token means it was copied, so
//! the whole family is revoked.

use chrono::{Duration, Utc};
use sea_orm::ActiveValue::Set;
use sea_orm::entity::prelude::*;
use sea_orm::sea_query::Expr;

use crate::crypto::{Token, TokenHash};
use crate::error::AppError;

pub mod entity {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "refresh_sessions")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub org_id: i64,
        pub user_id: Uuid,
        pub family_id: Uuid,
        pub token_hash: String,
        pub expires_at: DateTimeUtc,
        pub rotated_at: Option<DateTimeUtc>,
        pub revoked_at: Option<DateTimeUtc>,
        pub ip: Option<String>,
        pub user_agent: Option<String>,
        pub created_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

use entity::{Column, Entity as Sessions};

/// Where a session was opened from (kept for the user's and the admin's information).
#[derive(Debug, Clone, Default)]
pub struct Origin {
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

async fn insert<C: ConnectionTrait>(
    conn: &C,
    org_id: i64,
    user_id: Uuid,
    family_id: Uuid,
    ttl_days: i64,
    origin: &Origin,
) -> Result<Token, DbErr> {
    let token = Token::generate();
    let now = Utc::now();
    Sessions::insert(entity::ActiveModel {
        id: Set(Uuid::new_v4()),
        org_id: Set(org_id),
        user_id: Set(user_id),
        family_id: Set(family_id),
        token_hash: Set(token.hash().as_str().to_owned()),
        expires_at: Set(now + Duration::days(ttl_days)),
        rotated_at: Set(None),
        revoked_at: Set(None),
        ip: Set(origin.ip.clone()),
        user_agent: Set(origin
            .user_agent
            .as_deref()
            .map(|u| u.chars().take(200).collect())),
        created_at: Set(now),
    })
    .exec_without_returning(conn)
    .await?;
    Ok(token)
}

/// A login's refresh token and its session family (which its access tokens name).
pub struct Login {
    pub token: Token,
    pub family: Uuid,
}

/// Opens a new session family for a login.
pub async fn start<C: ConnectionTrait>(
    conn: &C,
    org_id: i64,
    user_id: Uuid,
    ttl_days: i64,
    origin: &Origin,
) -> Result<Login, DbErr> {
    let family = Uuid::new_v4();
    let token = insert(conn, org_id, user_id, family, ttl_days, origin).await?;
    Ok(Login { token, family })
}

/// Whether the login `family` of `user_id` is still live (not logged out, revoked by a
/// password change or deactivation, nor expired): one indexed read per request.
pub async fn family_is_live<C: ConnectionTrait>(
    conn: &C,
    family: Uuid,
    user_id: Uuid,
) -> Result<bool, DbErr> {
    use sea_orm::{PaginatorTrait, QuerySelect};
    let live = Sessions::find()
        .select_only()
        .column(Column::Id)
        .filter(Column::FamilyId.eq(family))
        .filter(Column::UserId.eq(user_id))
        .filter(Column::RevokedAt.is_null())
        .filter(Column::ExpiresAt.gt(Utc::now()))
        .limit(1)
        .count(conn)
        .await?;
    Ok(live > 0)
}

/// Outcome of presenting a refresh token.
pub enum Rotation {
    Rotated {
        user_id: Uuid,
        org_id: i64,
        login: Login,
    },
    /// A rotated token came back: the family is now revoked.
    ReuseDetected {
        user_id: Uuid,
        org_id: i64,
    },
    Invalid,
}

pub async fn rotate<C: ConnectionTrait>(
    conn: &C,
    presented: &str,
    ttl_days: i64,
    origin: &Origin,
) -> Result<Rotation, AppError> {
    let Some(row) = find_presented(conn, presented).await? else {
        return Ok(Rotation::Invalid);
    };
    if row.revoked_at.is_some() || row.expires_at <= Utc::now() {
        return Ok(Rotation::Invalid);
    }
    // One conditional update: of two concurrent refreshes with the same token, one wins.
    let won = Sessions::update_many()
        .col_expr(Column::RotatedAt, Expr::value(Utc::now()))
        .filter(Column::Id.eq(row.id))
        .filter(Column::RotatedAt.is_null())
        .exec(conn)
        .await?
        .rows_affected
        == 1;
    if !won {
        revoke_family(conn, row.family_id).await?;
        return Ok(Rotation::ReuseDetected {
            user_id: row.user_id,
            org_id: row.org_id,
        });
    }
    let token = insert(
        conn,
        row.org_id,
        row.user_id,
        row.family_id,
        ttl_days,
        origin,
    )
    .await?;
    Ok(Rotation::Rotated {
        user_id: row.user_id,
        org_id: row.org_id,
        login: Login {
            token,
            family: row.family_id,
        },
    })
}

pub async fn revoke_family<C: ConnectionTrait>(conn: &C, family_id: Uuid) -> Result<(), DbErr> {
    Sessions::update_many()
        .col_expr(Column::RevokedAt, Expr::value(Utc::now()))
        .filter(Column::FamilyId.eq(family_id))
        .filter(Column::RevokedAt.is_null())
        .exec(conn)
        .await?;
    Ok(())
}

/// The session row a presented token names (looked up by hash, compared in constant time).
async fn find_presented<C: ConnectionTrait>(
    conn: &C,
    presented: &str,
) -> Result<Option<entity::Model>, DbErr> {
    let hash = TokenHash::of(presented);
    let row = Sessions::find()
        .filter(Column::TokenHash.eq(hash.as_str()))
        .one(conn)
        .await?;
    Ok(row.filter(|r| hash.matches(&r.token_hash)))
}

/// Revokes the family of a presented token (logout). Returns its user when the token was known.
pub async fn revoke_presented<C: ConnectionTrait>(
    conn: &C,
    presented: &str,
) -> Result<Option<(Uuid, i64)>, DbErr> {
    let Some(row) = find_presented(conn, presented).await? else {
        return Ok(None);
    };
    revoke_family(conn, row.family_id).await?;
    Ok(Some((row.user_id, row.org_id)))
}

/// Ends every session of a user (deactivation, password change).
pub async fn revoke_all_for_user<C: ConnectionTrait>(conn: &C, user_id: Uuid) -> Result<(), DbErr> {
    Sessions::update_many()
        .col_expr(Column::RevokedAt, Expr::value(Utc::now()))
        .filter(Column::UserId.eq(user_id))
        .filter(Column::RevokedAt.is_null())
        .exec(conn)
        .await?;
    Ok(())
}

/// The live (not rotated, revoked or expired) session a portal cookie names.
pub async fn find_live<C: ConnectionTrait>(
    conn: &C,
    presented: &str,
) -> Result<Option<entity::Model>, DbErr> {
    let row = find_presented(conn, presented).await?;
    Ok(row
        .filter(|r| r.rotated_at.is_none() && r.revoked_at.is_none() && r.expires_at > Utc::now()))
}
