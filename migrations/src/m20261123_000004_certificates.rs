use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

use crate::util::{created_at, index, org_id};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let (org, org_fk) = org_id("certificates");
        manager
            .create_table(
                Table::create()
                    .table("certificates")
                    .if_not_exists()
                    .col(uuid("id").primary_key())
                    .col(org)
                    // Display name: the file name without its password part.
                    .col(string("name"))
                    // The raw path may hold the password, so it is sealed; matching uses the hash.
                    .col(blob_null("source_path_sealed"))
                    .col(string_null("source_path_hash"))
                    .col(string_null("file_stem"))
                    .col(blob_null("pfx_sealed"))
                    .col(blob_null("password_sealed"))
                    .col(string_null("subject"))
                    .col(string_null("cn"))
                    .col(string_null("issuer"))
                    .col(string_null("serial"))
                    .col(timestamp_with_time_zone_null("not_before"))
                    .col(timestamp_with_time_zone_null("not_after"))
                    // SHA-1 of the DER certificate: the Windows thumbprint.
                    .col(string_null("sha1"))
                    .col(string_null("key_algorithm"))
                    .col(integer_null("key_size"))
                    .col(string_len_null("cert_kind", 16))
                    .col(string_len_null("cnpj", 14))
                    .col(string_len_null("cpf", 11))
                    .col(string_null("responsible_name"))
                    .col(text_null("parse_error"))
                    .col(boolean("is_available").default(true))
                    .col(uuid_null("superseded_by"))
                    .col(integer_null("expiry_alert_days"))
                    .col(created_at())
                    .col(timestamp_with_time_zone("updated_at"))
                    .foreign_key(&mut org_fk.clone())
                    .to_owned(),
            )
            .await?;
        index(
            manager,
            "certificates",
            "ix_certificates_org_sha1",
            &["org_id", "sha1"],
            false,
        )
        .await?;
        index(
            manager,
            "certificates",
            "ix_certificates_org_path",
            &["org_id", "source_path_hash"],
            false,
        )
        .await?;
        index(
            manager,
            "certificates",
            "ix_certificates_org_cnpj",
            &["org_id", "cnpj"],
            false,
        )
        .await?;
        index(
            manager,
            "certificates",
            "ix_certificates_org_cpf",
            &["org_id", "cpf"],
            false,
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table("certificates").to_owned())
            .await
    }
}
