use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

use crate::util::{created_at, fk, index, org_id};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let (org, org_fk) = org_id("users");
        manager
            .create_table(
                Table::create()
                    .table("users")
                    .if_not_exists()
                    .col(uuid("id").primary_key())
                    .col(org)
                    .col(string("email"))
                    .col(string("nome"))
                    .col(string_len("role_global", 16))
                    .col(boolean("is_active").default(true))
                    .col(boolean("auto_approve_install_jobs").default(false))
                    .col(string_null("ad_username"))
                    .col(string_null("password_hash"))
                    .col(timestamp_with_time_zone_null("password_set_at"))
                    .col(created_at())
                    .col(timestamp_with_time_zone("updated_at"))
                    .foreign_key(&mut org_fk.clone())
                    .to_owned(),
            )
            .await?;
        index(manager, "users", "ux_users_email", &["email"], true).await?;
        index(manager, "users", "ix_users_org", &["org_id"], false).await?;

        let (org, org_fk) = org_id("password_set_tokens");
        manager
            .create_table(
                Table::create()
                    .table("password_set_tokens")
                    .if_not_exists()
                    .col(uuid("id").primary_key())
                    .col(org)
                    .col(uuid("user_id"))
                    .col(string("token_hash"))
                    .col(timestamp_with_time_zone("expires_at"))
                    .col(timestamp_with_time_zone_null("used_at"))
                    .col(uuid_null("created_by_user_id"))
                    .col(created_at())
                    .foreign_key(&mut org_fk.clone())
                    .foreign_key(&mut fk("password_set_tokens", "user_id", "users"))
                    .to_owned(),
            )
            .await?;
        index(
            manager,
            "password_set_tokens",
            "ux_password_set_tokens_hash",
            &["token_hash"],
            true,
        )
        .await?;

        let (org, org_fk) = org_id("refresh_sessions");
        manager
            .create_table(
                Table::create()
                    .table("refresh_sessions")
                    .if_not_exists()
                    .col(uuid("id").primary_key())
                    .col(org)
                    .col(uuid("user_id"))
                    // All rotations of one login share a family; reuse of a rotated token revokes it.
                    .col(uuid("family_id"))
                    .col(string("token_hash"))
                    .col(timestamp_with_time_zone("expires_at"))
                    .col(timestamp_with_time_zone_null("rotated_at"))
                    .col(timestamp_with_time_zone_null("revoked_at"))
                    .col(string_null("ip"))
                    .col(string_null("user_agent"))
                    .col(created_at())
                    .foreign_key(&mut org_fk.clone())
                    .foreign_key(&mut fk("refresh_sessions", "user_id", "users"))
                    .to_owned(),
            )
            .await?;
        index(
            manager,
            "refresh_sessions",
            "ux_refresh_sessions_hash",
            &["token_hash"],
            true,
        )
        .await?;
        index(
            manager,
            "refresh_sessions",
            "ix_refresh_sessions_family",
            &["family_id"],
            false,
        )
        .await?;

        manager
            .create_table(
                Table::create()
                    .table("login_attempts")
                    .if_not_exists()
                    .col(big_pk_auto("id"))
                    // Unknown e-mails have no organisation; the attempt is still counted.
                    .col(big_integer_null("org_id"))
                    .col(string("email"))
                    .col(string_null("ip"))
                    .col(boolean("success"))
                    .col(created_at())
                    .to_owned(),
            )
            .await?;
        index(
            manager,
            "login_attempts",
            "ix_login_attempts_email_time",
            &["email", "created_at"],
            false,
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for t in [
            "login_attempts",
            "refresh_sessions",
            "password_set_tokens",
            "users",
        ] {
            manager
                .drop_table(Table::drop().table(t).to_owned())
                .await?;
        }
        Ok(())
    }
}
