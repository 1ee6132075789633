//! Installation leases: every `DONE` install opens a row in `installations` that says until
//! when the certificate may stay on the device; the agent closes it when it removes the
//! certificate (seed S5, "Regra das 18h").

use chrono::{DateTime, Duration, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;

pub mod entity {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "installations")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub org_id: i64,
        pub device_id: Uuid,
        pub cert_id: Uuid,
        /// Who asked for the install.
        pub user_id: Option<Uuid>,
        pub job_id: Uuid,
        pub thumbprint: String,
        pub installed_at: DateTimeUtc,
        pub expires_at: DateTimeUtc,
        pub removed_at: Option<DateTimeUtc>,
        /// How the agent removed it (`scheduled`, `manual`, `startup`, `lease`).
        pub removal_mode: Option<String>,
        pub key_deleted: Option<bool>,
        pub created_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub use entity::{Column, Entity as Leases, Model as Lease};

/// The first `cleanup` (local time in `tz`) strictly after `at`.
pub fn next_cleanup(at: DateTime<Utc>, cleanup: NaiveTime, tz: Tz) -> DateTime<Utc> {
    let local = at.with_timezone(&tz).naive_local();
    let mut day = local.date();
    loop {
        let candidate = day.and_time(cleanup);
        // In a DST gap the wall-clock time does not exist: the first instant after it does.
        let resolved = tz
            .from_local_datetime(&candidate)
            .earliest()
            .or_else(|| {
                tz.from_local_datetime(&(candidate + Duration::hours(1)))
                    .earliest()
            })
            .map(|t| t.with_timezone(&Utc));
        if let Some(t) = resolved.filter(|t| *t > at) {
            return t;
        }
        day = day.succ_opt().expect("a date far from the end of time");
    }
}

/// When a lease opened at `installed_at` ends: the earliest of the next daily cleanup, the
/// longest lease the office allows, and the duration the requester asked for.
pub fn expires_at(
    installed_at: DateTime<Utc>,
    cleanup: NaiveTime,
    tz: Tz,
    max_lease_hours: i64,
    duration_minutes: Option<i32>,
) -> DateTime<Utc> {
    let mut end = next_cleanup(installed_at, cleanup, tz)
        .min(installed_at + Duration::hours(max_lease_hours));
    if let Some(m) = duration_minutes {
        end = end.min(installed_at + Duration::minutes(i64::from(m)));
    }
    end
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono_tz::America::Sao_Paulo;

    fn six_pm() -> NaiveTime {
        NaiveTime::from_hms_opt(18, 0, 0).unwrap()
    }

    /// A São Paulo wall-clock time (UTC-3 all year since 2019) in UTC.
    fn sp(s: &str) -> DateTime<Utc> {
        let naive = chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M").unwrap();
        Sao_Paulo
            .from_local_datetime(&naive)
            .single()
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn before_six_pm_the_lease_ends_at_six_pm_that_day() {
        let at = sp("2026-11-23 09:15");
        assert_eq!(
            expires_at(at, six_pm(), Sao_Paulo, 24, None),
            sp("2026-11-23 18:00")
        );
        assert_eq!(
            sp("2026-11-23 18:00").to_rfc3339(),
            "2026-11-23T21:00:00+00:00"
        );
    }

    #[test]
    fn at_or_after_six_pm_the_lease_ends_at_six_pm_the_next_day() {
        for t in ["2026-11-23 18:00", "2026-11-23 18:01", "2026-11-23 23:59"] {
            let at = sp(t);
            assert_eq!(
                expires_at(at, six_pm(), Sao_Paulo, 48, None),
                sp("2026-11-24 18:00"),
                "{t}"
            );
        }
    }

    #[test]
    fn the_cap_wins_when_it_comes_first() {
        let at = sp("2026-11-23 19:00");
        assert_eq!(
            expires_at(at, six_pm(), Sao_Paulo, 8, None),
            sp("2026-11-24 03:00")
        );
    }

    #[test]
    fn a_shorter_duration_wins_a_longer_one_does_not() {
        let at = sp("2026-11-23 10:00");
        assert_eq!(
            expires_at(at, six_pm(), Sao_Paulo, 24, Some(90)),
            sp("2026-11-23 11:30")
        );
        assert_eq!(
            expires_at(at, six_pm(), Sao_Paulo, 24, Some(600)),
            sp("2026-11-23 18:00")
        );
        let late = sp("2026-11-23 20:00");
        assert_eq!(
            expires_at(late, six_pm(), Sao_Paulo, 4, Some(600)),
            sp("2026-11-24 00:00"),
            "the office's cap beats a longer request"
        );
    }

    #[test]
    fn the_old_daylight_saving_dates_change_nothing() {
        // São Paulo had DST until 2019; November was once in it, now it is plain UTC-3.
        let at = sp("2026-11-01 17:00");
        assert_eq!(
            expires_at(at, six_pm(), Sao_Paulo, 24, None).to_rfc3339(),
            "2026-11-01T21:00:00+00:00"
        );
    }

    #[test]
    fn a_cleanup_time_inside_a_dst_gap_moves_past_it() {
        // New York skips 02:00-03:00 on 2026-03-08.
        let tz = chrono_tz::America::New_York;
        let at = Utc.with_ymd_and_hms(2026, 3, 8, 5, 0, 0).unwrap();
        let two_thirty = NaiveTime::from_hms_opt(2, 30, 0).unwrap();
        assert_eq!(
            next_cleanup(at, two_thirty, tz).to_rfc3339(),
            "2026-03-08T07:30:00+00:00"
        );
    }
}
