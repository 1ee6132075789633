//! The CertHub schema, one migration per file. Table and column names follow the seed
//! (`users`, `devices`, `certificates`, `cert_install_jobs`, `audit_log`) so the pilot
//! runbook's SQL keeps working.

pub use sea_orm_migration::prelude::*;

mod m20261123_000001_organizations;
mod m20261123_000002_accounts;
mod m20261123_000003_devices;
mod m20261123_000004_certificates;
mod m20261123_000005_install_jobs;
mod m20261123_000006_audit_log;
mod m20261123_000007_master_keys;
mod m20261123_000008_certificate_file_hash;
mod m20261125_000009_certificate_search;
mod m20261125_000010_certificate_path_unique;
mod m20261129_000011_lease_overdue;
mod m20261203_000012_portal_listing_indexes;
mod m20261207_000013_removal_cause;
mod m20261207_000014_audit_breaks;
mod m20261207_000015_device_identity;
mod m20261207_000016_device_uninstalled;
mod util;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261123_000001_organizations::Migration),
            Box::new(m20261123_000002_accounts::Migration),
            Box::new(m20261123_000003_devices::Migration),
            Box::new(m20261123_000004_certificates::Migration),
            Box::new(m20261123_000005_install_jobs::Migration),
            Box::new(m20261123_000006_audit_log::Migration),
            Box::new(m20261123_000007_master_keys::Migration),
            Box::new(m20261123_000008_certificate_file_hash::Migration),
            Box::new(m20261125_000009_certificate_search::Migration),
            Box::new(m20261125_000010_certificate_path_unique::Migration),
            Box::new(m20261129_000011_lease_overdue::Migration),
            Box::new(m20261203_000012_portal_listing_indexes::Migration),
            Box::new(m20261207_000013_removal_cause::Migration),
            Box::new(m20261207_000014_audit_breaks::Migration),
            Box::new(m20261207_000015_device_identity::Migration),
            Box::new(m20261207_000016_device_uninstalled::Migration),
        ]
    }
}
