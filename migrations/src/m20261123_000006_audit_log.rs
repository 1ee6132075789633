use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

use crate::util::{index, org_id};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let (org, org_fk) = org_id("audit_log");
        manager
            .create_table(
                Table::create()
                    .table("audit_log")
                    .if_not_exists()
                    .col(big_pk_auto("id"))
                    .col(org)
                    // Position in the organisation's hash chain (1, 2, ...).
                    .col(big_integer("seq"))
                    .col(string_len("action", 64))
                    .col(uuid_null("actor_user_id"))
                    .col(uuid_null("actor_device_id"))
                    .col(string_len_null("entity_type", 32))
                    .col(string_null("entity_id"))
                    // Kept as the exact text that was hashed (cast to jsonb on PostgreSQL to query it).
                    .col(text("meta_json"))
                    .col(string_null("ip"))
                    .col(timestamp_with_time_zone("timestamp"))
                    .col(string_len("prev_hash", 64))
                    .col(string_len("hash", 64))
                    .foreign_key(&mut org_fk.clone())
                    .to_owned(),
            )
            .await?;
        index(
            manager,
            "audit_log",
            "ux_audit_log_org_seq",
            &["org_id", "seq"],
            true,
        )
        .await?;
        index(
            manager,
            "audit_log",
            "ix_audit_log_action_time",
            &["action", "timestamp"],
            false,
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table("audit_log").to_owned())
            .await
    }
}
