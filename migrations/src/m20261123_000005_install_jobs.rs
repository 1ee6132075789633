use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

use crate::util::{created_at, fk, index, org_id};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let (org, org_fk) = org_id("cert_install_jobs");
        manager
            .create_table(
                Table::create()
                    .table("cert_install_jobs")
                    .if_not_exists()
                    .col(uuid("id").primary_key())
                    .col(org)
                    // INSTALL, or REMOVE for an early end of a lease.
                    .col(string_len("job_type", 16).default("INSTALL"))
                    .col(uuid("cert_id"))
                    .col(uuid("device_id"))
                    .col(uuid_null("requested_by_user_id"))
                    .col(uuid_null("approved_by_user_id"))
                    .col(string_len("status", 16))
                    .col(text_null("reason"))
                    .col(text_null("decision_reason"))
                    .col(integer_null("duration_minutes"))
                    .col(timestamp_with_time_zone_null("approved_at"))
                    .col(timestamp_with_time_zone_null("claimed_at"))
                    .col(timestamp_with_time_zone_null("started_at"))
                    .col(timestamp_with_time_zone_null("finished_at"))
                    .col(string_null("thumbprint"))
                    .col(string_null("error_code"))
                    .col(text_null("error_message"))
                    .col(string_len_null("key_storage", 16))
                    .col(string_null("payload_token_hash"))
                    .col(timestamp_with_time_zone_null("payload_token_expires_at"))
                    .col(timestamp_with_time_zone_null("payload_token_used_at"))
                    .col(uuid_null("lease_id"))
                    .col(created_at())
                    .col(timestamp_with_time_zone("updated_at"))
                    .foreign_key(&mut org_fk.clone())
                    .foreign_key(&mut fk("cert_install_jobs", "cert_id", "certificates"))
                    .foreign_key(&mut fk("cert_install_jobs", "device_id", "devices"))
                    .to_owned(),
            )
            .await?;
        index(
            manager,
            "cert_install_jobs",
            "ix_jobs_device_status",
            &["device_id", "status"],
            false,
        )
        .await?;
        index(
            manager,
            "cert_install_jobs",
            "ix_jobs_org_status",
            &["org_id", "status"],
            false,
        )
        .await?;

        let (org, org_fk) = org_id("installations");
        manager
            .create_table(
                Table::create()
                    .table("installations")
                    .if_not_exists()
                    .col(uuid("id").primary_key())
                    .col(org)
                    .col(uuid("device_id"))
                    .col(uuid("cert_id"))
                    .col(uuid_null("user_id"))
                    .col(uuid("job_id"))
                    .col(string("thumbprint"))
                    .col(timestamp_with_time_zone("installed_at"))
                    .col(timestamp_with_time_zone("expires_at"))
                    .col(timestamp_with_time_zone_null("removed_at"))
                    .col(string_len_null("removal_mode", 16))
                    .col(boolean_null("key_deleted"))
                    .col(created_at())
                    .foreign_key(&mut org_fk.clone())
                    .foreign_key(&mut fk("installations", "device_id", "devices"))
                    .foreign_key(&mut fk("installations", "cert_id", "certificates"))
                    .foreign_key(&mut fk("installations", "job_id", "cert_install_jobs"))
                    .to_owned(),
            )
            .await?;
        index(
            manager,
            "installations",
            "ix_installations_device_open",
            &["device_id", "removed_at"],
            false,
        )
        .await?;
        index(
            manager,
            "installations",
            "ix_installations_expiry",
            &["org_id", "expires_at"],
            false,
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for t in ["installations", "cert_install_jobs"] {
            manager
                .drop_table(Table::drop().table(t).to_owned())
                .await?;
        }
        Ok(())
    }
}
