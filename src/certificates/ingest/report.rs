//! What an ingest did: one [`Item`] per file and the [`Report`] of a scan.

use serde::Serialize;

/// What happened to one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Ingested,
    Updated,
    Unchanged,
    /// Stored with a `parse_error` (wrong password, corrupt file...), or refused while the
    /// last good copy is kept.
    Failed,
    /// Marked unavailable: the file left the folder.
    Removed,
    /// Not a candidate (directory, symbolic link, too large, bad name); logged, not stored.
    Skipped,
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Item {
    /// The file name with any password replaced by `***`.
    pub file: String,
    pub action: Action,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

pub(super) fn item(file: &str, action: Action, detail: Option<String>) -> Item {
    Item {
        file: file.to_owned(),
        action,
        detail,
    }
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Report {
    pub dry_run: bool,
    pub ingested: usize,
    pub updated: usize,
    pub unchanged: usize,
    pub failed: usize,
    pub removed: usize,
    pub skipped: usize,
    pub items: Vec<Item>,
}

impl Report {
    pub(super) fn new(dry_run: bool, items: Vec<Item>) -> Self {
        let count = |a: Action| items.iter().filter(|i| i.action == a).count();
        Self {
            dry_run,
            ingested: count(Action::Ingested),
            updated: count(Action::Updated),
            unchanged: count(Action::Unchanged),
            failed: count(Action::Failed),
            removed: count(Action::Removed),
            skipped: count(Action::Skipped),
            items,
        }
    }
}
