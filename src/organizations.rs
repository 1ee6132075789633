//! Offices. The server makes sure the configured office (`org_id`) exists at start-up.

use chrono::Utc;
use sea_orm::entity::prelude::*;
use sea_orm::{ActiveValue::Set, ConnectionTrait};

use crate::domain::OrgId;

pub mod entity {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "organizations")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: i64,
        pub name: String,
        pub timezone: Option<String>,
        pub audit_seq: i64,
        pub audit_head: Option<String>,
        pub created_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub type Organizations = entity::Entity;
pub type Organization = entity::Model;

/// Creates the office if it does not exist yet; returns it.
pub async fn ensure<C: ConnectionTrait>(
    db: &C,
    id: OrgId,
    name: &str,
) -> Result<Organization, DbErr> {
    if let Some(org) = Organizations::find_by_id(id.0).one(db).await? {
        return Ok(org);
    }
    let org = entity::ActiveModel {
        id: Set(id.0),
        name: Set(name.to_owned()),
        timezone: Set(None),
        audit_seq: Set(0),
        audit_head: Set(None),
        created_at: Set(Utc::now()),
    };
    Organizations::insert(org)
        .exec_without_returning(db)
        .await?;
    Organizations::find_by_id(id.0)
        .one(db)
        .await?
        .ok_or_else(|| DbErr::RecordNotFound(format!("organization {id}")))
}

/// Serialises decisions about the office's accounts (such as "the last active ADMIN") until the
/// end of the caller's transaction. SQLite's write transactions are serial already; PostgreSQL
/// locks the office's row.
pub async fn lock<C: sea_orm::ConnectionTrait>(conn: &C, org: i64) -> Result<(), sea_orm::DbErr> {
    if conn.get_database_backend() == sea_orm::DbBackend::Postgres {
        conn.execute_raw(sea_orm::Statement::from_sql_and_values(
            sea_orm::DbBackend::Postgres,
            "SELECT id FROM organizations WHERE id = $1 FOR UPDATE",
            [org.into()],
        ))
        .await?;
    }
    Ok(())
}
