use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

use crate::util::created_at;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("organizations")
                    .if_not_exists()
                    .col(big_integer("id").primary_key())
                    .col(string("name"))
                    .col(string_null("timezone"))
                    // Head of the audit hash chain: appends lock this row, so the chain never forks.
                    .col(big_integer("audit_seq").default(0))
                    .col(string_null("audit_head"))
                    .col(created_at())
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table("organizations").to_owned())
            .await
    }
}
