use sea_orm_migration::prelude::*;

use crate::util::index;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// `(table, index, columns)`: what the portal's listings and the dashboard's counts filter and
/// order by, measured with `cargo bench --bench portal` (docs/benchmarks.md).
const INDEXES: [(&str, &str, &[&str]); 6] = [
    // Certificates expiring within N days (the dashboard counts 30, 15 and 7).
    (
        "certificates",
        "ix_certificates_org_expiry",
        &["org_id", "not_after"],
    ),
    // Open installations (removed_at IS NULL) and the overdue ones among them.
    (
        "installations",
        "ix_installations_org_open",
        &["org_id", "removed_at", "expires_at"],
    ),
    // Install jobs newest first.
    (
        "cert_install_jobs",
        "ix_jobs_org_created",
        &["org_id", "created_at"],
    ),
    // The requests page: install jobs (not REMOVE ones) newest first, and its count.
    (
        "cert_install_jobs",
        "ix_jobs_org_type_created",
        &["org_id", "job_type", "created_at"],
    ),
    // The live requests stream: what changed since the page was rendered.
    (
        "cert_install_jobs",
        "ix_jobs_org_updated",
        &["org_id", "updated_at"],
    ),
    // The audit log filtered by action, newest first, and its count.
    (
        "audit_log",
        "ix_audit_log_org_action_seq",
        &["org_id", "action", "seq"],
    ),
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for (table, name, columns) in INDEXES {
            index(manager, table, name, columns, false).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for (table, name, _) in INDEXES {
            manager
                .drop_index(Index::drop().name(name).table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
