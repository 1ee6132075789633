use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

use crate::util::index;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // Display name, CN and responsible person folded to lower case without accents, so
        // "jose" finds "JOSÉ DA SILVA" with the same LIKE on SQLite and PostgreSQL.
        manager
            .alter_table(
                Table::alter()
                    .table("certificates")
                    .add_column(text_null("name_search"))
                    .to_owned(),
            )
            .await?;
        // Searching is a substring match no B-tree helps; listing pages by name is what an
        // index on (org_id, name) serves.
        index(
            manager,
            "certificates",
            "ix_certificates_org_name",
            &["org_id", "name"],
            false,
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("ix_certificates_org_name")
                    .table("certificates")
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table("certificates")
                    .drop_column("name_search")
                    .to_owned(),
            )
            .await
    }
}
