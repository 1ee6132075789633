use sea_orm_migration::prelude::*;

use crate::util::index;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One row per file of the folder: two concurrent scans (the server's and
        // `certhub ingest`) cannot both insert the same new file. Rows that let go of their
        // path have a NULL hash, which a unique index does not compare.
        manager
            .drop_index(
                Index::drop()
                    .name("ix_certificates_org_path")
                    .table("certificates")
                    .to_owned(),
            )
            .await?;
        index(
            manager,
            "certificates",
            "ux_certificates_org_path",
            &["org_id", "source_path_hash"],
            true,
        )
        .await?;
        // Dedup falls back to serial + issuer when the thumbprint is new (every new file).
        index(
            manager,
            "certificates",
            "ix_certificates_org_serial",
            &["org_id", "serial"],
            false,
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("ix_certificates_org_serial")
                    .table("certificates")
                    .to_owned(),
            )
            .await?;
        manager
            .drop_index(
                Index::drop()
                    .name("ux_certificates_org_path")
                    .table("certificates")
                    .to_owned(),
            )
            .await?;
        index(
            manager,
            "certificates",
            "ix_certificates_org_path",
            &["org_id", "source_path_hash"],
            false,
        )
        .await
    }
}
