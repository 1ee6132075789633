use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

use crate::util::{created_at, fk, index, org_id};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // A break of an office's audit chain, as a check found it: it stays on the Painel and
        // the Auditoria page until an ADMIN/DEV acknowledges it (audited).
        let (org, org_fk) = org_id("audit_chain_breaks");
        manager
            .create_table(
                Table::create()
                    .table("audit_chain_breaks")
                    .if_not_exists()
                    .col(big_pk_auto("id"))
                    .col(org)
                    .col(big_integer("seq"))
                    .col(string_len("reason", 500))
                    // Which check found it: portal, api, cli, scheduled, startup.
                    .col(string_len("found_by", 32))
                    .col(created_at())
                    .col(timestamp_with_time_zone_null("acknowledged_at"))
                    .col(uuid_null("acknowledged_by_user_id"))
                    .foreign_key(&mut org_fk.clone())
                    .foreign_key(&mut fk(
                        "audit_chain_breaks",
                        "acknowledged_by_user_id",
                        "users",
                    ))
                    .to_owned(),
            )
            .await?;
        index(
            manager,
            "audit_chain_breaks",
            "ux_audit_chain_breaks_org_seq",
            &["org_id", "seq"],
            true,
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table("audit_chain_breaks").to_owned())
            .await
    }
}
