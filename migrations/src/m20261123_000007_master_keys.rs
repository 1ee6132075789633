use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

use crate::util::created_at;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One row per master key that ever sealed data here, with a sealed canary: start-up
        // opens it to prove the configured key is the right one before anything is sealed.
        manager
            .create_table(
                Table::create()
                    .table("master_keys")
                    .if_not_exists()
                    .col(string_len("key_id", 16).primary_key())
                    .col(blob("canary"))
                    .col(created_at())
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table("master_keys").to_owned())
            .await
    }
}
