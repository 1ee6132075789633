use chrono::Utc;
use sea_orm::entity::prelude::*;
use sea_orm::{ActiveValue::Set, DatabaseConnection, PaginatorTrait};
use serde_json::json;

use crate::audit::{self, Actor, AuditAction, Entry};
use crate::domain::{Email, OrgId, Role};
use crate::error::AppError;

pub mod entity {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "users")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub org_id: i64,
        pub email: String,
        pub nome: String,
        pub role_global: String,
        pub is_active: bool,
        pub auto_approve_install_jobs: bool,
        pub ad_username: Option<String>,
        pub password_hash: Option<String>,
        pub password_set_at: Option<DateTimeUtc>,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub type Users = entity::Entity;
pub type User = entity::Model;

impl User {
    /// The user's role (stored as text; a bad value is a server-side fault).
    pub fn role(&self) -> Result<Role, AppError> {
        self.role_global.parse::<Role>().map_err(AppError::Internal)
    }
}

/// A user to create.
#[derive(Debug, Clone)]
pub struct NewUser {
    pub email: Email,
    pub nome: String,
    pub role: Role,
}

/// Total users across every office; zero means a fresh install.
/// User `id` of office `org`, if there is one.
pub async fn find_in_org<C: ConnectionTrait>(
    db: &C,
    org: OrgId,
    id: Uuid,
) -> Result<Option<User>, DbErr> {
    Users::find_by_id(id)
        .filter(entity::Column::OrgId.eq(org.0))
        .one(db)
        .await
}

pub async fn count_all(db: &DatabaseConnection) -> Result<u64, DbErr> {
    Users::find().count(db).await
}

/// Inserts the user (no password yet) and audits `USER_CREATED`, on `conn`.
pub async fn create<C: ConnectionTrait>(
    conn: &C,
    org_id: OrgId,
    new: &NewUser,
    actor: Actor,
) -> Result<User, AppError> {
    let nome = new.nome.trim();
    if nome.is_empty() || nome.chars().count() > 200 {
        return Err(AppError::Validation(
            "nome: between 1 and 200 characters".into(),
        ));
    }
    let taken = Users::find()
        .filter(entity::Column::Email.eq(new.email.as_str()))
        .one(conn)
        .await?
        .is_some();
    if taken {
        return Err(AppError::Conflict(format!(
            "a user with e-mail {} already exists",
            new.email
        )));
    }
    let now = Utc::now();
    let user = entity::ActiveModel {
        id: Set(Uuid::new_v4()),
        org_id: Set(org_id.0),
        email: Set(new.email.as_str().to_owned()),
        nome: Set(nome.to_owned()),
        role_global: Set(new.role.as_str().to_owned()),
        is_active: Set(true),
        auto_approve_install_jobs: Set(false),
        ad_username: Set(None),
        password_hash: Set(None),
        password_set_at: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
    };
    let id = user.id.clone().unwrap();
    Users::insert(user).exec_without_returning(conn).await?;
    audit::append(
        conn,
        Entry::new(org_id, AuditAction::UserCreated, actor)
            .entity("user", id)
            .meta(json!({"email": new.email.as_str(), "role": new.role.as_str()})),
    )
    .await?;
    Users::find_by_id(id)
        .one(conn)
        .await?
        .ok_or_else(|| AppError::Internal("user vanished after insert".into()))
}

/// Stores a new password hash, ends the user's sessions and audits `PASSWORD_SET`, on `conn`.
pub async fn store_password<C: ConnectionTrait>(
    conn: &C,
    user: &User,
    password_hash: String,
    ip: Option<String>,
) -> Result<(), AppError> {
    let now = Utc::now();
    Users::update(entity::ActiveModel {
        id: Set(user.id),
        password_hash: Set(Some(password_hash)),
        password_set_at: Set(Some(now)),
        updated_at: Set(now),
        ..Default::default()
    })
    .exec(conn)
    .await?;
    super::session::revoke_all_for_user(conn, user.id).await?;
    audit::append(
        conn,
        Entry::new(
            OrgId(user.org_id),
            AuditAction::PasswordSet,
            Actor::User(user.id),
        )
        .entity("user", user.id)
        .ip(ip),
    )
    .await?;
    Ok(())
}
