use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

use crate::util::index;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // When the sweep found the installation past `expires_at` + grace with no removal
        // report: it is audited (`LEASE_OVERDUE`) and handed a REMOVE job once.
        manager
            .alter_table(
                Table::alter()
                    .table("installations")
                    .add_column(timestamp_with_time_zone_null("overdue_at"))
                    .to_owned(),
            )
            .await?;
        // The REMOVE jobs of an installation, and the install job that opened it.
        index(
            manager,
            "cert_install_jobs",
            "ix_jobs_lease",
            &["lease_id"],
            false,
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("ix_jobs_lease")
                    .table("cert_install_jobs")
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table("installations")
                    .drop_column("overdue_at")
                    .to_owned(),
            )
            .await
    }
}
