use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // When the agent was uninstalled from the PC (`Certhub.Agent.exe uninstall` told the
        // server): its installations closed, its token and key void until it is paired again.
        manager
            .alter_table(
                Table::alter()
                    .table("devices")
                    .add_column(timestamp_with_time_zone_null("uninstalled_at"))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table("devices")
                    .drop_column("uninstalled_at")
                    .to_owned(),
            )
            .await
    }
}
