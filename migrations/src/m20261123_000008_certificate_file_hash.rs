use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // SHA-256 of the file's bytes: a rescan skips unchanged files without decrypting them.
        manager
            .alter_table(
                Table::alter()
                    .table("certificates")
                    .add_column(string_null("file_sha256"))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table("certificates")
                    .drop_column("file_sha256")
                    .to_owned(),
            )
            .await
    }
}
