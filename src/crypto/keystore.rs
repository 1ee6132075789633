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
    let (key, source) = match configured_key(settings)? {
        Some(found) => found,
        None if known.is_empty() => {
            let key = MasterKey::generate();
            write_key_file(&settings.master_key_file, &key)?;
            (key, KeySource::Generated)
        }
        None => return Err(missing(settings, &known)),
    };
    if !opens_canary(&key, &known)? {
        entity::Entity::insert(entity::ActiveModel {
            key_id: Set(key.id().to_hex()),
            canary: Set(key.seal(CANARY, CANARY_CONTEXT)),
            created_at: Set(Utc::now()),
        })
        .exec_without_returning(db)
        .await?;
    }
    Ok((key, source))
}

/// What [`load_or_create`] would say, changing nothing (`certhub doctor`): no key on a fresh
/// install is fine (the first start makes one).
pub async fn check(settings: &Settings, db: &DatabaseConnection) -> Result<(), KeyError> {
    let known = entity::Entity::find().all(db).await?;
    match configured_key(settings)? {
        Some((key, _)) => opens_canary(&key, &known).map(|_| ()),
        None if known.is_empty() => Ok(()),
        None => Err(missing(settings, &known)),
    }
}

/// The key from `master_key`, else from the key file; `None` when neither is there.
fn configured_key(settings: &Settings) -> Result<Option<(MasterKey, KeySource)>, KeyError> {
    let path = &settings.master_key_file;
    if let Some(configured) = &settings.master_key {
        Ok(Some((
            MasterKey::from_base64(configured.expose()).map_err(KeyError::BadConfigured)?,
            KeySource::Environment,
        )))
    } else if path.exists() {
        Ok(Some((read_key_file(path)?, KeySource::File)))
    } else {
        Ok(None)
    }
}

fn key_ids(known: &[entity::Model]) -> String {
    known
        .iter()
        .map(|k| k.key_id.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn missing(settings: &Settings, known: &[entity::Model]) -> KeyError {
    KeyError::Missing {
        key_ids: key_ids(known),
        path: settings.master_key_file.display().to_string(),
    }
}

/// Whether `key` is the one the database knows (its canary opens); `Ok(false)` when the
/// database knows no key yet.
fn opens_canary(key: &MasterKey, known: &[entity::Model]) -> Result<bool, KeyError> {
    let ours = key.id().to_hex();
    match known.iter().find(|k| k.key_id == ours) {
        Some(row) => key
            .open(&row.canary, CANARY_CONTEXT)
            .map(|_| true)
            .map_err(|_| KeyError::CanaryFailed(ours)),
        None if known.is_empty() => Ok(false),
        None => Err(KeyError::Wrong {
            expected: key_ids(known),
            found: ours,
        }),
    }
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
