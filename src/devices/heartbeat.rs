//! The heartbeat: an agent says it is alive and which version it runs; it is told the server's
//! clock and the agent policy. No write per heartbeat: the contact is kept in memory
//! ([`super::contact`]) and flushed with the others every few seconds.

use chrono::Utc;

use super::policy::agent_policy;
use crate::domain::Version;
use crate::error::AppError;
use crate::identity::AuthDevice;
use crate::protocol::{HeartbeatRequest, HeartbeatResponse};
use crate::state::AppState;

pub fn heartbeat(
    state: &AppState,
    device: &AuthDevice,
    body: HeartbeatRequest,
) -> Result<HeartbeatResponse, AppError> {
    // A blocked agent learns it here (and goes on polling for its removals).
    device.require_allowed()?;
    let agent_version = Version::optional("agent_version", body.agent_version)?.map(String::from);
    let now = Utc::now();
    state
        .contacts
        .heartbeat(device.device.id, now, agent_version);
    Ok(HeartbeatResponse {
        server_time: now,
        policy: agent_policy(&state.settings),
        server_certificate: state.tls.as_ref().map(|served| served.pins()),
    })
}
