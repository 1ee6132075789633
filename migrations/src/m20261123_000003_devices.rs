use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

use crate::util::{created_at, fk, index, org_id};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let (org, org_fk) = org_id("devices");
        manager
            .create_table(
                Table::create()
                    .table("devices")
                    .if_not_exists()
                    .col(uuid("id").primary_key())
                    .col(org)
                    .col(string("hostname"))
                    .col(string_null("domain"))
                    .col(string_null("os_version"))
                    .col(string_null("agent_version"))
                    .col(uuid_null("owner_user_id"))
                    .col(string_null("device_token_hash"))
                    .col(timestamp_with_time_zone_null("token_rotated_at"))
                    .col(string_null("enrollment_code_hash"))
                    .col(timestamp_with_time_zone_null("enrollment_expires_at"))
                    // X25519 public key the install payload is sealed to (standard base64).
                    .col(string_null("public_key"))
                    .col(boolean("is_allowed").default(true))
                    .col(timestamp_with_time_zone_null("last_seen_at"))
                    .col(timestamp_with_time_zone_null("last_heartbeat_at"))
                    .col(created_at())
                    .foreign_key(&mut org_fk.clone())
                    .foreign_key(&mut fk("devices", "owner_user_id", "users"))
                    .to_owned(),
            )
            .await?;
        index(manager, "devices", "ix_devices_org", &["org_id"], false).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table("devices").to_owned())
            .await
    }
}
