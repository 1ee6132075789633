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

pub use entity::{Entity as Organizations, Model as Organization};

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
