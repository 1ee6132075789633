//! The office's day, one rule for the server and the agent: the daily cleanup (18:00 in the
//! office's timezone, seed S5 "Regra das 18h"), the longest lease, the working hours, and how an
//! instant reads on a page or a balloon ("18:00", "09:07 de amanhã").

use chrono::{DateTime, Duration, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;

use crate::protocol::AgentPolicy;

/// The daily cleanup: `time` in the office's timezone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DailyCleanup {
    pub time: NaiveTime,
    pub tz: Tz,
}

impl Default for DailyCleanup {
    /// The seed's rule until the server says otherwise: 18:00 in São Paulo.
    fn default() -> Self {
        Self {
            time: NaiveTime::from_hms_opt(18, 0, 0).unwrap_or_default(),
            tz: chrono_tz::America::Sao_Paulo,
        }
    }
}

impl DailyCleanup {
    /// From the heartbeat's policy; `None` for a value it cannot read.
    pub fn from_policy(policy: &AgentPolicy) -> Option<Self> {
        let time = NaiveTime::parse_from_str(&policy.cleanup_time, "%H:%M").ok()?;
        let tz = policy.timezone.parse::<Tz>().ok()?;
        Some(Self { time, tz })
    }

    /// The first cleanup instant strictly after `at`. A wall-clock time that a DST gap skips
    /// resolves to an hour later.
    pub fn next_after(&self, at: DateTime<Utc>) -> DateTime<Utc> {
        let local = at.with_timezone(&self.tz).naive_local();
        let mut day = local.date();
        loop {
            let candidate = day.and_time(self.time);
            let resolved = self
                .tz
                .from_local_datetime(&candidate)
                .earliest()
                .or_else(|| {
                    self.tz
                        .from_local_datetime(&(candidate + Duration::hours(1)))
                        .earliest()
                })
                .map(|t| t.with_timezone(&Utc));
            if let Some(t) = resolved.filter(|t| *t > at) {
                return t;
            }
            match day.succ_opt() {
                Some(d) => day = d,
                None => return at,
            }
        }
    }

    /// `at` is outside the working day: before `workday_start` or at or after the cleanup, in
    /// the office's local time.
    pub fn is_after_hours(&self, at: DateTime<Utc>, workday_start: NaiveTime) -> bool {
        let t = at.with_timezone(&self.tz).time();
        !(workday_start <= t && t < self.time)
    }
}

/// When an installation ends: the earliest of the next daily cleanup, the longest lease the
/// office allows and the duration the requester asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseRule {
    pub cleanup: DailyCleanup,
    pub max_hours: i64,
}

/// The seed's cap until the server says otherwise.
pub const DEFAULT_MAX_LEASE_HOURS: i64 = 10;

impl Default for LeaseRule {
    fn default() -> Self {
        Self {
            cleanup: DailyCleanup::default(),
            max_hours: DEFAULT_MAX_LEASE_HOURS,
        }
    }
}

impl LeaseRule {
    /// From the heartbeat's policy; `None` for a value it cannot read.
    pub fn from_policy(policy: &AgentPolicy) -> Option<Self> {
        let cleanup = DailyCleanup::from_policy(policy)?;
        (policy.max_lease_hours > 0).then_some(Self {
            cleanup,
            max_hours: policy.max_lease_hours,
        })
    }

    /// The end of a lease opened at `start` for `duration_minutes` (none: as long as allowed).
    pub fn end(&self, start: DateTime<Utc>, duration_minutes: Option<i64>) -> DateTime<Utc> {
        let mut end = self
            .cleanup
            .next_after(start)
            .min(start + Duration::hours(self.max_hours));
        if let Some(m) = duration_minutes {
            end = end.min(start + Duration::minutes(m));
        }
        end
    }

    /// A lease opened at `start` ends at the day's cleanup (not at the cap, nor later).
    pub fn ends_at_cleanup(&self, start: DateTime<Utc>) -> bool {
        self.end(start, None) == self.cleanup.next_after(start)
    }
}

/// `at` as the office reads it from `now`: "18:00" on the same local day, "09:07 de amanhã" on
/// the next, "24/12 às 09:07" further off.
pub fn local_time(at: DateTime<Utc>, now: DateTime<Utc>, tz: Tz) -> String {
    let local = at.with_timezone(&tz);
    let today = now.with_timezone(&tz).date_naive();
    let clock = local.format("%H:%M");
    match (local.date_naive() - today).num_days() {
        0 => clock.to_string(),
        1 => format!("{clock} de amanhã"),
        _ => format!("{} às {clock}", local.format("%d/%m")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn hm(s: &str) -> NaiveTime {
        NaiveTime::parse_from_str(s, "%H:%M").unwrap()
    }

    #[test]
    fn eighteen_hundred_in_sao_paulo_is_21_utc_all_year() {
        // Brazil has had no DST since 2019: 18:00 is 21:00 UTC in January and July alike.
        let daily = DailyCleanup::default();
        assert_eq!(
            daily.next_after(utc("2026-01-15T12:00:00Z")),
            utc("2026-01-15T21:00:00Z")
        );
        assert_eq!(
            daily.next_after(utc("2026-07-15T12:00:00Z")),
            utc("2026-07-15T21:00:00Z")
        );
        // At or after 18:00 local it is tomorrow's.
        assert_eq!(
            daily.next_after(utc("2026-07-15T21:00:00Z")),
            utc("2026-07-16T21:00:00Z")
        );
        assert_eq!(
            daily.next_after(utc("2026-07-15T23:30:00Z")),
            utc("2026-07-16T21:00:00Z")
        );
    }

    #[test]
    fn the_daily_rule_follows_the_policy_timezone_and_its_dst() {
        let policy = |time: &str, tz: &str| crate::protocol::AgentPolicy {
            cleanup_time: time.into(),
            timezone: tz.into(),
            max_lease_hours: 10,
            poll_interval_seconds: 5,
            long_poll_seconds: 25,
            heartbeat_interval_seconds: 60,
        };
        let ny = DailyCleanup::from_policy(&policy("18:00", "America/New_York")).unwrap();
        assert_eq!(
            ny.next_after(utc("2026-01-15T12:00:00Z")),
            utc("2026-01-15T23:00:00Z")
        );
        assert_eq!(
            ny.next_after(utc("2026-07-15T12:00:00Z")),
            utc("2026-07-15T22:00:00Z")
        );
        // 02:30 does not exist on the spring-forward day: an hour later.
        let gap = DailyCleanup::from_policy(&policy("02:30", "America/New_York")).unwrap();
        assert_eq!(
            gap.next_after(utc("2026-03-08T05:00:00Z")),
            utc("2026-03-08T07:30:00Z")
        );
        let tokyo = DailyCleanup::from_policy(&policy("18:00", "Asia/Tokyo")).unwrap();
        assert_eq!(
            tokyo.next_after(utc("2026-07-15T12:00:00Z")),
            utc("2026-07-16T09:00:00Z")
        );
        assert!(DailyCleanup::from_policy(&policy("6pm", "America/Sao_Paulo")).is_none());
        assert!(DailyCleanup::from_policy(&policy("18:00", "Mars/Olympus")).is_none());
    }

    #[test]
    fn a_request_after_the_cleanup_ends_at_the_cap_and_says_so() {
        let rule = LeaseRule::default();
        // 23:06 in São Paulo (02:06 UTC): the next 18:00 is 19 h away, the 10 h cap comes first.
        let late = utc("2026-12-08T02:06:00Z");
        assert_eq!(rule.end(late, None), utc("2026-12-08T12:06:00Z"));
        assert!(!rule.ends_at_cleanup(late));
        assert_eq!(
            local_time(rule.end(late, None), late, rule.cleanup.tz),
            "09:06 de amanhã"
        );
        // 20:00 local: the cap ends at 06:00 the next day.
        let evening = utc("2026-12-07T23:00:00Z");
        assert_eq!(
            local_time(rule.end(evening, None), evening, rule.cleanup.tz),
            "06:00 de amanhã"
        );
        assert_eq!(
            local_time(rule.end(evening, Some(60)), evening, rule.cleanup.tz),
            "21:00"
        );
        // 10:00 local: 18:00 today, before the cap.
        let morning = utc("2026-12-07T13:00:00Z");
        assert!(rule.ends_at_cleanup(morning));
        assert_eq!(
            local_time(rule.end(morning, None), morning, rule.cleanup.tz),
            "18:00"
        );
        assert_eq!(
            local_time(utc("2026-12-24T12:07:00Z"), morning, rule.cleanup.tz),
            "24/12 às 09:07"
        );
    }

    #[test]
    fn after_hours_is_outside_the_working_day_in_local_time() {
        let daily = DailyCleanup::default();
        let start = hm("07:00");
        for (at, after) in [
            ("2026-12-07T09:59:00Z", true),  // 06:59
            ("2026-12-07T10:00:00Z", false), // 07:00
            ("2026-12-07T20:59:00Z", false), // 17:59
            ("2026-12-07T21:00:00Z", true),  // 18:00
            ("2026-12-08T02:06:00Z", true),  // 23:06
        ] {
            assert_eq!(daily.is_after_hours(utc(at), start), after, "{at}");
        }
    }
}
