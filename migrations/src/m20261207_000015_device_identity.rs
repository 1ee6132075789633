use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // `hostname` is the name the admin gave the computer; the PC's own host name, as the
        // agent reports it at pairing, is kept beside it. `retired_at`: the computer was
        // removed from the office (its history stays; its certificates were removed first).
        for column in [
            string_len_null("reported_hostname", 200),
            timestamp_with_time_zone_null("retired_at"),
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table("devices")
                        .add_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in ["retired_at", "reported_hostname"] {
            manager
                .alter_table(
                    Table::alter()
                        .table("devices")
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
