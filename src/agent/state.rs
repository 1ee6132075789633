//! What the agent remembers between runs in `state.json`: the last contact with the server,
//! the clock skew it measured and the policy (so a cleanup without the server still knows the
//! office's `cleanup_time`). `status` and the tray read it; the running agent writes it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::config::{DataDir, read_json};
use super::leases::{DailyCleanup, LeaseRule};
use crate::protocol::AgentPolicy;

/// Clock skew against the server's worth a warning.
pub const MAX_SKEW_SECS: i64 = 120;

/// What `status` shows between runs: the last contact and the policy (so a cleanup without
/// the server still knows the office's `cleanup_time`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentState {
    pub policy: Option<AgentPolicy>,
    pub last_heartbeat_at: Option<DateTime<Utc>>,
    pub clock_skew_seconds: Option<i64>,
    pub last_error: Option<String>,
}

impl AgentState {
    pub fn load(dir: &DataDir) -> Self {
        read_json(&dir.state()).ok().flatten().unwrap_or_default()
    }

    pub fn daily(&self) -> DailyCleanup {
        self.lease_rule().cleanup
    }

    /// The office's lease rule from the last policy (the seed's 18:00 and 10 h before any).
    pub fn lease_rule(&self) -> LeaseRule {
        self.policy
            .as_ref()
            .and_then(LeaseRule::from_policy)
            .unwrap_or_default()
    }
}
