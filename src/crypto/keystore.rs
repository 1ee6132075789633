//! Finding the master key at start-up and proving it is the one the database was sealed with.
//!
//! Order: `master_key` (`CERTHUB_MASTER_KEY`), else the key file (`master_key_file`, default
//! `<data_dir>/master.key`), else, only while the database holds no sealed data, a new key
//! written to the key file with mode 0600.

use std::io::Write;
use std::path::Path;

use chrono::Utc;
use sea_orm::entity::prelude::*;
use sea_orm::{ActiveValue::Set, DatabaseConnection};

use super::{MasterKey, SealError};
use crate::settings::Settings;

const CANARY: &[u8] = b"certhub master key canary";
const CANARY_CONTEXT: &str = "master_keys.canary";

pub mod entity {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "master_keys")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub key_id: String,
        pub canary: Vec<u8>,
        pub created_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("`master_key` (CERTHUB_MASTER_KEY): {0}")]
    BadConfigured(SealError),
    #[error("master key file {path}: {why}")]
    BadFile { path: String, why: String },
    #[error(
        "the database holds data sealed with master key {key_ids}, but no master key was found \
         (looked for CERTHUB_MASTER_KEY and {path}); restore the key file from your backup or set \
         CERTHUB_MASTER_KEY. Refusing to start."
    )]
    Missing { key_ids: String, path: String },
    #[error(
        "wrong master key: the database was sealed with key {expected}, the configured key is {found}. \
         Refusing to start."
    )]
    Wrong { expected: String, found: String },
    #[error(
        "master key {0} does not open its own canary in the database (corrupted row?). Refusing to start."
    )]
    CanaryFailed(String),
    #[error(transparent)]
    Db(#[from] DbErr),
}

/// How the key was obtained, for the start-up log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySource {
    Environment,
    File,
    Generated,
}

/// Loads (or on a fresh install, creates) the master key and checks it against the database.
pub async fn load_or_create(
    settings: &Settings,
    db: &DatabaseConnection,
) -> Result<(MasterKey, KeySource), KeyError> {
    let known = entity::Entity::find().all(db).await?;
    let path = &settings.master_key_file;
    let (key, source) = if let Some(configured) = &settings.master_key {
        (
            MasterKey::from_base64(configured.expose()).map_err(KeyError::BadConfigured)?,
            KeySource::Environment,
        )
    } else if path.exists() {
        (read_key_file(path)?, KeySource::File)
    } else if known.is_empty() {
        let key = MasterKey::generate();
        write_key_file(path, &key)?;
        (key, KeySource::Generated)
    } else {
        return Err(KeyError::Missing {
            key_ids: known
                .iter()
                .map(|k| k.key_id.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            path: path.display().to_string(),
        });
    };
    let ours = key.id().to_hex();
    match known.iter().find(|k| k.key_id == ours) {
        Some(row) => {
            key.open(&row.canary, CANARY_CONTEXT)
                .map_err(|_| KeyError::CanaryFailed(ours.clone()))?;
        }
        None if known.is_empty() => {
            entity::Entity::insert(entity::ActiveModel {
                key_id: Set(ours),
                canary: Set(key.seal(CANARY, CANARY_CONTEXT)),
                created_at: Set(Utc::now()),
            })
            .exec_without_returning(db)
            .await?;
        }
        None => {
            return Err(KeyError::Wrong {
                expected: known
                    .iter()
                    .map(|k| k.key_id.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                found: ours,
            });
        }
    }
    Ok((key, source))
}

fn read_key_file(path: &Path) -> Result<MasterKey, KeyError> {
    let bad = |why: String| KeyError::BadFile {
        path: path.display().to_string(),
        why,
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)
            .map_err(|e| bad(e.to_string()))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(bad(format!(
                "readable by group or others (mode {:o}); run `chmod 600 {}` and start again",
                mode & 0o777,
                path.display()
            )));
        }
    }
    let text =
        zeroize::Zeroizing::new(std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?);
    MasterKey::from_base64(&text).map_err(|e| bad(e.to_string()))
}

fn write_key_file(path: &Path, key: &MasterKey) -> Result<(), KeyError> {
    let bad = |why: String| KeyError::BadFile {
        path: path.display().to_string(),
        why,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        crate::db::create_private_dir(dir).map_err(|e| bad(e.to_string()))?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(|e| bad(e.to_string()))?;
    file.write_all(key.to_base64().as_bytes())
        .and_then(|_| file.write_all(b"\n"))
        .and_then(|_| file.sync_all())
        .map_err(|e| bad(e.to_string()))
}
