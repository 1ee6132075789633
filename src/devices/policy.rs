//! The policy every agent receives with its heartbeat, from the settings.

use crate::protocol::AgentPolicy;
use crate::settings::Settings;

pub fn agent_policy(settings: &Settings) -> AgentPolicy {
    let a = &settings.agent;
    AgentPolicy {
        cleanup_time: a.cleanup_time.format("%H:%M").to_string(),
        timezone: settings.timezone.name().to_owned(),
        max_lease_hours: a.max_lease_hours,
        poll_interval_seconds: a.poll_interval_seconds,
        long_poll_seconds: a.long_poll_seconds,
        heartbeat_interval_seconds: a.heartbeat_interval_seconds,
    }
}
