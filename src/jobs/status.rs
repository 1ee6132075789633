//! The install-job state machine: statuses and types as the seed spells them, and the one
//! table of legal moves.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::audit::AuditAction;

/// Where an install job stands (seed S4/S6: `REQUESTED|PENDING -> IN_PROGRESS -> DONE|FAILED`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JobStatus {
    /// Waiting for an ADMIN/DEV decision.
    Requested,
    /// Approved; waiting for the device's agent to claim it.
    Pending,
    /// Claimed by the agent.
    InProgress,
    Done,
    Failed,
    Denied,
    /// Left `REQUESTED` past `request_ttl_hours`.
    Expired,
    Cancelled,
    /// Reaped: `IN_PROGRESS` past the timeout without a result.
    Timeout,
}

impl JobStatus {
    pub const ALL: [JobStatus; 9] = [
        JobStatus::Requested,
        JobStatus::Pending,
        JobStatus::InProgress,
        JobStatus::Done,
        JobStatus::Failed,
        JobStatus::Denied,
        JobStatus::Expired,
        JobStatus::Cancelled,
        JobStatus::Timeout,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Requested => "REQUESTED",
            JobStatus::Pending => "PENDING",
            JobStatus::InProgress => "IN_PROGRESS",
            JobStatus::Done => "DONE",
            JobStatus::Failed => "FAILED",
            JobStatus::Denied => "DENIED",
            JobStatus::Expired => "EXPIRED",
            JobStatus::Cancelled => "CANCELLED",
            JobStatus::Timeout => "TIMEOUT",
        }
    }

    /// No move leaves this status.
    pub fn is_final(self) -> bool {
        Event::ALL
            .iter()
            .all(|e| JobStatus::transition(Some(self), *e).is_err())
    }

    /// The one table of legal moves; `from` is `None` for a job being created.
    pub fn transition(from: Option<JobStatus>, event: Event) -> Result<JobStatus, TransitionError> {
        use Event as E;
        use JobStatus as S;
        let to = match (from, event) {
            (None, E::Request) => S::Requested,
            // A user with `auto_approve_install_jobs`: requested and approved at once.
            (None, E::AutoApprove) => S::Pending,
            // Ending a lease needs no approval: it only takes access away.
            (None, E::RequestRemoval) => S::Pending,
            (Some(S::Requested), E::Approve) => S::Pending,
            (Some(S::Requested), E::Deny) => S::Denied,
            (Some(S::Requested), E::Expire) => S::Expired,
            (Some(S::Requested | S::Pending), E::Cancel) => S::Cancelled,
            (Some(S::Pending), E::Claim) => S::InProgress,
            // The agent may claim again for a new payload token when the first one failed or
            // its answer was lost.
            (Some(S::InProgress), E::Reclaim) => S::InProgress,
            (Some(S::InProgress), E::Done) => S::Done,
            (Some(S::InProgress), E::Failed) => S::Failed,
            (Some(S::InProgress), E::Timeout) => S::Timeout,
            _ => return Err(TransitionError { from, event }),
        };
        Ok(to)
    }
}

impl fmt::Display for JobStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for JobStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        JobStatus::ALL
            .into_iter()
            .find(|st| st.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| {
                format!(
                    "unknown status {s:?}: expected one of {}",
                    JobStatus::ALL.map(JobStatus::as_str).join(", ")
                )
            })
    }
}

/// What happens to a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Event {
    Request,
    AutoApprove,
    /// The user, an ADMIN/DEV or the overdue-lease sweep ends an installation: a `REMOVE` job.
    RequestRemoval,
    Approve,
    Deny,
    Cancel,
    Expire,
    Claim,
    Reclaim,
    Done,
    Failed,
    Timeout,
}

impl Event {
    pub const ALL: [Event; 12] = [
        Event::Request,
        Event::AutoApprove,
        Event::RequestRemoval,
        Event::Approve,
        Event::Deny,
        Event::Cancel,
        Event::Expire,
        Event::Claim,
        Event::Reclaim,
        Event::Done,
        Event::Failed,
        Event::Timeout,
    ];

    /// The audit entry the move writes for a job of `job_type` (auto-approval also writes
    /// `INSTALL_REQUESTED` first). A `REMOVE` job has its own names, so the seed's `INSTALL_*`
    /// queries count installs only.
    pub fn audit_action(self, job_type: JobType) -> AuditAction {
        if job_type == JobType::Remove {
            match self {
                Event::RequestRemoval => return AuditAction::RemoveRequested,
                Event::Claim | Event::Reclaim => return AuditAction::RemoveClaimed,
                Event::Done => return AuditAction::RemoveDone,
                Event::Failed => return AuditAction::RemoveFailed,
                Event::Timeout => return AuditAction::RemoveTimeout,
                Event::Cancel => return AuditAction::RemoveCancelled,
                _ => {}
            }
        }
        match self {
            Event::Request => AuditAction::InstallRequested,
            Event::RequestRemoval => AuditAction::RemoveRequested,
            Event::AutoApprove | Event::Approve => AuditAction::InstallApproved,
            Event::Deny => AuditAction::InstallDenied,
            Event::Cancel => AuditAction::InstallCancelled,
            Event::Expire => AuditAction::InstallExpired,
            Event::Claim | Event::Reclaim => AuditAction::InstallClaimed,
            Event::Done => AuditAction::InstallDone,
            Event::Failed => AuditAction::InstallFailed,
            Event::Timeout => AuditAction::InstallTimeout,
        }
    }
}

/// A move the table does not allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransitionError {
    pub from: Option<JobStatus>,
    pub event: Event,
}

impl fmt::Display for TransitionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.from {
            Some(s) => write!(f, "a job {s} cannot take {:?}", self.event),
            None => write!(f, "a job cannot start with {:?}", self.event),
        }
    }
}

impl std::error::Error for TransitionError {}

/// `INSTALL`, or `REMOVE` for an early end of a lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum JobType {
    Install,
    Remove,
}

impl JobType {
    pub fn as_str(self) -> &'static str {
        match self {
            JobType::Install => "INSTALL",
            JobType::Remove => "REMOVE",
        }
    }
}

impl FromStr for JobType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "INSTALL" => Ok(JobType::Install),
            "REMOVE" => Ok(JobType::Remove),
            _ => Err(format!("unknown job type {s:?}")),
        }
    }
}

/// The job's type in the agent protocol (`job_type` of the agent's job list and claim).
impl From<JobType> for crate::protocol::AgentJobType {
    fn from(t: JobType) -> Self {
        match t {
            JobType::Install => Self::Install,
            JobType::Remove => Self::Remove,
        }
    }
}

/// The job's status in the agent protocol. A device only ever sees `PENDING`, `IN_PROGRESS`,
/// `DONE` and `FAILED` (the job list, a claim, a result); the rest never reach it.
impl From<JobStatus> for crate::protocol::AgentJobStatus {
    fn from(s: JobStatus) -> Self {
        match s {
            JobStatus::Pending => Self::Pending,
            JobStatus::InProgress => Self::InProgress,
            JobStatus::Done => Self::Done,
            JobStatus::Failed => Self::Failed,
            JobStatus::Requested
            | JobStatus::Denied
            | JobStatus::Expired
            | JobStatus::Cancelled
            | JobStatus::Timeout => Self::Unknown,
        }
    }
}

/// Why a `REMOVE` job was made; its removal is audited under the cause's own action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemovalCause {
    /// "Remover agora" in the portal, or `POST /api/v1/installations/{id}/remove`.
    Requested,
    /// The device was blocked.
    DeviceBlocked,
    /// The user who asked for the install was deactivated.
    UserDeactivated,
    /// The sweep found the lease overdue.
    Overdue,
}

impl RemovalCause {
    pub fn as_str(self) -> &'static str {
        match self {
            RemovalCause::Requested => "requested",
            RemovalCause::DeviceBlocked => "device_blocked",
            RemovalCause::UserDeactivated => "user_deactivated",
            RemovalCause::Overdue => "overdue",
        }
    }

    /// A stored cause; jobs made before causes were recorded were all asked for by someone.
    pub fn parse(raw: Option<&str>) -> Self {
        match raw {
            Some("device_blocked") => RemovalCause::DeviceBlocked,
            Some("user_deactivated") => RemovalCause::UserDeactivated,
            Some("overdue") => RemovalCause::Overdue,
            _ => RemovalCause::Requested,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Event as E;
    use JobStatus as S;

    /// Every legal move, written out once more: anything else must be refused.
    const LEGAL: &[(Option<JobStatus>, Event, JobStatus)] = &[
        (None, E::Request, S::Requested),
        (None, E::AutoApprove, S::Pending),
        (None, E::RequestRemoval, S::Pending),
        (Some(S::Requested), E::Approve, S::Pending),
        (Some(S::Requested), E::Deny, S::Denied),
        (Some(S::Requested), E::Expire, S::Expired),
        (Some(S::Requested), E::Cancel, S::Cancelled),
        (Some(S::Pending), E::Cancel, S::Cancelled),
        (Some(S::Pending), E::Claim, S::InProgress),
        (Some(S::InProgress), E::Reclaim, S::InProgress),
        (Some(S::InProgress), E::Done, S::Done),
        (Some(S::InProgress), E::Failed, S::Failed),
        (Some(S::InProgress), E::Timeout, S::Timeout),
    ];

    #[test]
    fn every_move_is_legal_exactly_when_the_table_says_so() {
        let froms = std::iter::once(None).chain(S::ALL.into_iter().map(Some));
        let mut checked = 0;
        for from in froms {
            for event in E::ALL {
                let expected = LEGAL
                    .iter()
                    .find(|(f, e, _)| *f == from && *e == event)
                    .map(|(_, _, to)| *to);
                match (JobStatus::transition(from, event), expected) {
                    (Ok(to), Some(want)) => assert_eq!(to, want, "{from:?} {event:?}"),
                    (Err(err), None) => assert_eq!(err, TransitionError { from, event }),
                    (got, want) => panic!("{from:?} {event:?}: got {got:?}, want {want:?}"),
                }
                checked += 1;
            }
        }
        assert_eq!(checked, 10 * 12);
    }

    #[test]
    fn final_statuses_are_the_seeds_ends() {
        let finals: Vec<_> = S::ALL.into_iter().filter(|s| s.is_final()).collect();
        assert_eq!(
            finals,
            [
                S::Done,
                S::Failed,
                S::Denied,
                S::Expired,
                S::Cancelled,
                S::Timeout
            ]
        );
    }

    #[test]
    fn names_are_the_seeds() {
        let names = S::ALL.map(JobStatus::as_str);
        assert_eq!(
            names,
            [
                "REQUESTED",
                "PENDING",
                "IN_PROGRESS",
                "DONE",
                "FAILED",
                "DENIED",
                "EXPIRED",
                "CANCELLED",
                "TIMEOUT"
            ]
        );
        for s in S::ALL {
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
            assert_eq!(s.as_str().parse::<JobStatus>().unwrap(), s);
        }
        assert_eq!("pending".parse::<JobStatus>().unwrap(), S::Pending);
        assert!("APPROVED".parse::<JobStatus>().is_err());
        assert_eq!(serde_json::to_value(JobType::Remove).unwrap(), "REMOVE");
        assert_eq!("INSTALL".parse::<JobType>().unwrap(), JobType::Install);
    }
}
