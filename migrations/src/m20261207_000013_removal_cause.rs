use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // Why a REMOVE job was made (`requested`, `device_blocked`, `user_deactivated`,
        // `overdue`): its removal is audited under that name, not as the 18:00 cleanup.
        manager
            .alter_table(
                Table::alter()
                    .table("cert_install_jobs")
                    .add_column(string_len_null("removal_cause", 32))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table("cert_install_jobs")
                    .drop_column("removal_cause")
                    .to_owned(),
            )
            .await
    }
}
