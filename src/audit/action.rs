use std::fmt;
use std::str::FromStr;

macro_rules! actions {
    ($($variant:ident => $name:literal,)*) => {
        /// Every audited action. The names are the seed's, so the runbook's queries keep working.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum AuditAction { $($variant,)* }

        impl AuditAction {
            pub const ALL: &'static [AuditAction] = &[$(AuditAction::$variant,)*];

            pub fn as_str(self) -> &'static str {
                match self { $(AuditAction::$variant => $name,)* }
            }
        }

        impl FromStr for AuditAction {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($name => Ok(AuditAction::$variant),)*
                    _ => Err(format!("unknown audit action {s:?}")),
                }
            }
        }
    };
}

actions! {
    // install jobs (seed S4/S6)
    InstallRequested => "INSTALL_REQUESTED",
    InstallApproved => "INSTALL_APPROVED",
    InstallDenied => "INSTALL_DENIED",
    InstallCancelled => "INSTALL_CANCELLED",
    InstallExpired => "INSTALL_EXPIRED",
    InstallClaimed => "INSTALL_CLAIMED",
    PayloadIssued => "PAYLOAD_ISSUED",
    PayloadDenied => "PAYLOAD_DENIED",
    PayloadRateLimited => "PAYLOAD_RATE_LIMITED",
    InstallDone => "INSTALL_DONE",
    InstallFailed => "INSTALL_FAILED",
    InstallTimeout => "INSTALL_TIMEOUT",
    ResultDuplicate => "RESULT_DUPLICATE",
    CertRemoved18h => "CERT_REMOVED_18H",
    // early removal and overdue leases
    RemoveRequested => "REMOVE_REQUESTED",
    RemoveClaimed => "REMOVE_CLAIMED",
    RemoveDone => "REMOVE_DONE",
    RemoveFailed => "REMOVE_FAILED",
    RemoveTimeout => "REMOVE_TIMEOUT",
    RemoveCancelled => "REMOVE_CANCELLED",
    LeaseOverdue => "LEASE_OVERDUE",
    // the other ways a certificate leaves a PC (CERT_REMOVED_18H is the cleanup routine's)
    CertRemovedLeaseEnd => "CERT_REMOVED_LEASE_END",
    CertRemovedOnRequest => "CERT_REMOVED_ON_REQUEST",
    CertRemovedDeviceBlocked => "CERT_REMOVED_DEVICE_BLOCKED",
    CertRemovedUserDeactivated => "CERT_REMOVED_USER_DEACTIVATED",
    CertRemovedOverdue => "CERT_REMOVED_OVERDUE",
    CertRemovedUninstall => "CERT_REMOVED_UNINSTALL",
    // accounts (seed S2)
    LoginOk => "LOGIN_OK",
    LoginFailed => "LOGIN_FAILED",
    LoginLocked => "LOGIN_LOCKED",
    Logout => "LOGOUT",
    UserCreated => "USER_CREATED",
    UserUpdated => "USER_UPDATED",
    UserUnlocked => "USER_UNLOCKED",
    PasswordSetInitiated => "PASSWORD_SET_INITIATED",
    PasswordSet => "PASSWORD_SET",
    PasswordSetDenied => "PASSWORD_SET_DENIED",
    // devices
    DeviceProvisioned => "DEVICE_PROVISIONED",
    DeviceUpdated => "DEVICE_UPDATED",
    DeviceTokenRotated => "DEVICE_TOKEN_ROTATED",
    DeviceBlocked => "DEVICE_BLOCKED",
    DeviceUnblocked => "DEVICE_UNBLOCKED",
    DeviceRemoved => "DEVICE_REMOVED",
    DeviceUninstalled => "DEVICE_UNINSTALLED",
    DeviceAuthRateLimited => "DEVICE_AUTH_RATE_LIMITED",
    DeviceAuthFailed => "DEVICE_AUTH_FAILED",
    DeviceEnrolled => "DEVICE_ENROLLED",
    DeviceEnrollDenied => "DEVICE_ENROLL_DENIED",
    DeviceKeyRegistered => "DEVICE_KEY_REGISTERED",
    DeviceKeyRejected => "DEVICE_KEY_REJECTED",
    // certificates (seed S4.1)
    CertIngested => "CERT_INGESTED",
    CertUpdated => "CERT_UPDATED",
    CertRemovedFromSource => "CERT_REMOVED_FROM_SOURCE",
    CertParseFailed => "CERT_PARSE_FAILED",
    CertPasswordRejected => "CERT_PASSWORD_REJECTED",
    CertPathRevealed => "CERT_PATH_REVEALED",
    CertUploaded => "CERT_UPLOADED",
    CertExpiring => "CERT_EXPIRING",
    // the server itself
    MasterKeyCreated => "MASTER_KEY_CREATED",
    QueueProbeStarted => "QUEUE_PROBE_STARTED",
    QueueProbeFinished => "QUEUE_PROBE_FINISHED",
    AuditBreakAcknowledged => "AUDIT_BREAK_ACKNOWLEDGED",
}

impl fmt::Display for AuditAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_keep_the_seed_names() {
        for a in AuditAction::ALL {
            assert_eq!(a.as_str().parse::<AuditAction>().unwrap(), *a);
        }
        for seed in [
            "INSTALL_REQUESTED",
            "INSTALL_APPROVED",
            "INSTALL_DENIED",
            "INSTALL_CLAIMED",
            "PAYLOAD_ISSUED",
            "PAYLOAD_DENIED",
            "PAYLOAD_RATE_LIMITED",
            "INSTALL_DONE",
            "INSTALL_FAILED",
            "RESULT_DUPLICATE",
            "CERT_REMOVED_18H",
        ] {
            assert!(seed.parse::<AuditAction>().is_ok(), "{seed}");
        }
    }
}
