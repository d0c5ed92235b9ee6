//! Collectors' schedules: a cron pattern (minutes, or seconds when it has six fields)
//! read in a time zone, and what the master does with the due times it finds when it
//! looks: fire the one that is due, and handle the ones missed while no master was up
//! by the collector's misfire policy, never as a burst.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;
use croner::parser::{CronParser, Seconds};
use croner::Cron;
use diesel::QueryResult;

use crate::db::queue::{self, Collector};
use crate::db::DbConn;

/// Missed due times an `all` collector catches up on at most; older ones are skipped.
pub const CATCH_UP_CAP: usize = 10;
/// Missed due times counted one by one at most (a minutely schedule missed for a week
/// would be 10,080): past it they are reported as this many.
const LOOK_AT_MOST: usize = 1_000;

/// A collector's cron pattern in its time zone.
#[derive(Debug, Clone)]
pub struct Schedule {
    cron: Cron,
    zone: Tz,
}

impl Schedule {
    /// Reads `pattern` (five fields, or six with seconds first; `@hourly` and the like)
    /// in `zone` (an IANA name: `UTC`, `Europe/Lisbon`).
    pub fn parse(pattern: &str, zone: &str) -> Result<Schedule, String> {
        let zone = time_zone(zone)?;
        let cron = CronParser::builder()
            .seconds(Seconds::Optional)
            .build()
            .parse(pattern)
            .map_err(|e| format!("schedule {pattern:?} is not a cron pattern: {e}"))?;
        let schedule = Schedule { cron, zone };
        // A pattern that never matches (30 February) would never fire: refused.
        if schedule.next_after(Utc::now().timestamp_millis()).is_none() {
            return Err(format!("schedule {pattern:?} never falls due"));
        }
        Ok(schedule)
    }

    /// The first due time strictly after `ms`, in epoch ms.
    pub fn next_after(&self, ms: i64) -> Option<i64> {
        let after: DateTime<Tz> = self.zone.timestamp_millis_opt(ms).single()?;
        self.cron
            .find_next_occurrence(&after, false)
            .ok()
            .map(|next| next.timestamp_millis())
    }

    /// The last due time at or before `ms`.
    fn last_until(&self, ms: i64) -> Option<i64> {
        let at: DateTime<Tz> = self.zone.timestamp_millis_opt(ms).single()?;
        self.cron
            .find_previous_occurrence(&at, true)
            .ok()
            .map(|last| last.timestamp_millis())
    }

    /// The due times from `first` (one) to `last`, counted up to [`LOOK_AT_MOST`].
    fn count_from(&self, first: i64, last: i64) -> usize {
        let mut count = 1;
        let mut at = first;
        while count < LOOK_AT_MOST {
            match self.next_after(at) {
                Some(next) if next <= last => {
                    count += 1;
                    at = next;
                }
                _ => break,
            }
        }
        count
    }

    /// The latest `n` due times from `first` to `ms` at most, oldest first.
    fn latest_until(&self, ms: i64, first: i64, n: usize) -> Vec<i64> {
        let mut owed = Vec::with_capacity(n);
        let mut at = self.last_until(ms);
        while let Some(due) = at.filter(|due| *due >= first && owed.len() < n) {
            owed.push(due);
            at = self.last_until(due - 1);
        }
        owed.reverse();
        owed
    }

    /// The pattern as a sentence ("At 02:00 on every day").
    pub fn describe(&self) -> String {
        self.cron.describe()
    }
}

/// The IANA time zone `name` (`UTC`, `Europe/Lisbon`).
pub fn time_zone(name: &str) -> Result<Tz, String> {
    Tz::from_str(name).map_err(|_| format!("time_zone {name:?} is not an IANA time zone name"))
}

/// What a scheduled collector does with due times missed while no master was up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Misfire {
    /// Fires none of them (the next due time on time fires as usual).
    Skip,
    /// Fires one run for all of them, keyed by the latest.
    Once,
    /// Fires each, one after another (the next once the previous has left the
    /// waiting line), the latest [`CATCH_UP_CAP`] at most.
    All,
}

impl Misfire {
    pub const ALL: [Misfire; 3] = [Misfire::Skip, Misfire::Once, Misfire::All];

    pub fn as_str(self) -> &'static str {
        match self {
            Misfire::Skip => "skip",
            Misfire::Once => "once",
            Misfire::All => "all",
        }
    }

    pub fn parse(text: &str) -> Option<Misfire> {
        Misfire::ALL.into_iter().find(|m| m.as_str() == text)
    }
}

impl fmt::Display for Misfire {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What one look at a collector whose due time has come decides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Firing {
    /// The due time to queue a run for (its key), if any.
    pub fire: Option<i64>,
    /// Due times passed over, missed and not fired.
    pub skipped: usize,
    /// The due time to look for next (`None`: the pattern falls due no more).
    pub next_due: Option<i64>,
}

/// Decides, at `now`, for a collector whose next due time `due` has come (`due <=
/// now`): a due time is on time while it is at most `grace` ms old and no later due
/// time has come; every other is missed. `waiting`: a run of it waits already (an
/// `all` collector then holds its catch-up until that run has started).
pub fn decide(
    schedule: &Schedule,
    misfire: Misfire,
    due: i64,
    now: i64,
    grace: i64,
    waiting: bool,
) -> Firing {
    let latest = schedule
        .last_until(now)
        .filter(|latest| *latest >= due)
        .unwrap_or(due);
    let count = schedule.count_from(due, latest);
    let on_time = now - latest <= grace;
    let next_due = schedule.next_after(now);
    if count == 1 && on_time {
        return Firing {
            fire: Some(latest),
            skipped: 0,
            next_due,
        };
    }
    match misfire {
        Misfire::Skip => Firing {
            fire: on_time.then_some(latest),
            skipped: count - usize::from(on_time),
            next_due,
        },
        Misfire::Once => Firing {
            fire: Some(latest),
            skipped: count - 1,
            next_due,
        },
        Misfire::All => {
            let owed = schedule.latest_until(now, due, CATCH_UP_CAP);
            let skipped = count.saturating_sub(owed.len());
            match (owed.first(), waiting) {
                // Catch up one run at a time: hold at the first owed due time.
                (Some(first), true) => Firing {
                    fire: None,
                    skipped,
                    next_due: Some(*first),
                },
                (Some(first), false) => Firing {
                    fire: Some(*first),
                    skipped,
                    next_due: owed.get(1).copied().or(next_due),
                },
                (None, _) => Firing {
                    fire: Some(latest),
                    skipped: count - 1,
                    next_due,
                },
            }
        }
    }
}

/// Scheduled collectors handled in one pass at most.
const DUE_PER_PASS: i64 = 500;

/// The master's look at the schedules at `now`: every collector whose due time has
/// come gets its firing decided and recorded (a compare-and-set on its next due time,
/// so a second master or a retry finds it handled); answers how many runs it queued.
pub fn fire_due(conn: &mut DbConn, now: i64, grace: i64) -> QueryResult<usize> {
    let mut queued = 0;
    for (collector, waiting) in queue::due_collectors(conn, now, DUE_PER_PASS)? {
        let Some(due) = collector.next_due_at else {
            continue;
        };
        let firing = match planned(&collector) {
            Ok((schedule, misfire)) => decide(&schedule, misfire, due, now, grace, waiting),
            Err(error) => {
                // Checked when saved; a row written otherwise stops being scheduled.
                tracing::error!(collector.id = collector.id, %error, "collector's schedule is unreadable: no longer scheduled");
                Firing {
                    fire: None,
                    skipped: 0,
                    next_due: None,
                }
            }
        };
        let Some(fired) = queue::fire(conn, &collector, due, firing.fire, firing.next_due, now)?
        else {
            continue; // handled meanwhile by another master
        };
        if firing.skipped > 0 {
            tracing::warn!(
                collector.id = collector.id,
                skipped = firing.skipped,
                misfire = %collector.misfire,
                "scheduled collector: due times missed while no master was up, not fired"
            );
        }
        match (fired.job, firing.fire) {
            (Some((job, true)), Some(due)) => {
                queued += 1;
                tracing::info!(
                    job.id = job,
                    collector.id = collector.id,
                    due_at = due,
                    "scheduled collection job queued"
                );
            }
            (Some((job, false)), Some(due)) => tracing::info!(
                job.id = job,
                collector.id = collector.id,
                due_at = due,
                "scheduled collector due while a run of it waits: that run serves"
            ),
            _ => {}
        }
    }
    Ok(queued)
}

/// A stored collector's schedule and misfire policy.
pub fn planned(collector: &Collector) -> Result<(Schedule, Misfire), String> {
    let pattern = collector
        .schedule
        .as_deref()
        .ok_or_else(|| "no schedule".to_string())?;
    let schedule = Schedule::parse(pattern, &collector.time_zone)?;
    let misfire = Misfire::parse(&collector.misfire)
        .ok_or_else(|| format!("misfire {:?} is not skip, once or all", collector.misfire))?;
    Ok((schedule, misfire))
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000;
    const MIN: i64 = 60 * S;

    fn every_minute() -> Schedule {
        Schedule::parse("* * * * *", "UTC").unwrap()
    }

    #[test]
    fn patterns_and_zones_are_checked() {
        assert!(Schedule::parse("*/5 * * * *", "Europe/Lisbon").is_ok());
        assert!(Schedule::parse("*/2 * * * * *", "UTC").is_ok());
        assert!(Schedule::parse("@hourly", "UTC").is_ok());
        assert!(Schedule::parse("61 * * * *", "UTC")
            .unwrap_err()
            .contains("not a cron pattern"));
        assert!(Schedule::parse("* * * * *", "Mars/Olympus")
            .unwrap_err()
            .contains("IANA"));
        assert!(Schedule::parse("0 0 30 2 *", "UTC")
            .unwrap_err()
            .contains("never"));
    }

    #[test]
    fn due_times_follow_the_time_zone() {
        // 02:00 every day in Lisbon, which is UTC+1 in summer: 01:00 UTC on 1 July.
        let lisbon = Schedule::parse("0 2 * * *", "Europe/Lisbon").unwrap();
        let start = Utc.with_ymd_and_hms(2026, 7, 1, 0, 0, 0).unwrap();
        let next = lisbon.next_after(start.timestamp_millis()).unwrap();
        assert_eq!(
            next,
            Utc.with_ymd_and_hms(2026, 7, 1, 1, 0, 0)
                .unwrap()
                .timestamp_millis()
        );
        let seconds = Schedule::parse("*/10 * * * * *", "UTC").unwrap();
        assert_eq!(
            seconds.next_after(start.timestamp_millis()),
            Some(next - 3_590 * S)
        );
    }

    #[test]
    fn a_due_time_on_time_fires_under_every_policy() {
        let due = 100 * MIN;
        for misfire in Misfire::ALL {
            let firing = decide(&every_minute(), misfire, due, due + 2 * S, 30 * S, false);
            assert_eq!(
                firing,
                Firing {
                    fire: Some(due),
                    skipped: 0,
                    next_due: Some(due + MIN)
                },
                "{misfire}"
            );
        }
    }

    #[test]
    fn missed_due_times_follow_the_policy() {
        let due = 100 * MIN;
        // Five minutes without a master: 100..=105 are due, 105 is 10 s old (on time).
        let now = due + 5 * MIN + 10 * S;
        let schedule = every_minute();
        let skip = decide(&schedule, Misfire::Skip, due, now, 30 * S, false);
        assert_eq!(skip.fire, Some(due + 5 * MIN), "the one on time fires");
        assert_eq!((skip.skipped, skip.next_due), (5, Some(due + 6 * MIN)));
        let once = decide(&schedule, Misfire::Once, due, now, 30 * S, false);
        assert_eq!((once.fire, once.skipped), (Some(due + 5 * MIN), 5));
        let all = decide(&schedule, Misfire::All, due, now, 30 * S, false);
        assert_eq!(
            (all.fire, all.skipped, all.next_due),
            (Some(due), 0, Some(due + MIN))
        );
        // The latest missed too (40 s old): skip fires nothing.
        let late = due + 5 * MIN + 40 * S;
        let skip = decide(&schedule, Misfire::Skip, due, late, 30 * S, false);
        assert_eq!((skip.fire, skip.skipped), (None, 6));
        let once = decide(&schedule, Misfire::Once, due, late, 30 * S, false);
        assert_eq!(once.fire, Some(due + 5 * MIN));
    }

    #[test]
    fn all_catches_up_one_at_a_time_and_at_most_the_cap() {
        let due = 100 * MIN;
        let schedule = every_minute();
        // Thirty minutes missed: only the latest ten are owed, in order.
        let now = due + 30 * MIN + 5 * S;
        let first = decide(&schedule, Misfire::All, due, now, 30 * S, false);
        assert_eq!(first.fire, Some(due + 21 * MIN));
        assert_eq!(first.skipped, 21);
        assert_eq!(first.next_due, Some(due + 22 * MIN));
        // While that run waits, the next owed one is held, not fired.
        let held = decide(&schedule, Misfire::All, due + 22 * MIN, now, 30 * S, true);
        assert_eq!((held.fire, held.next_due), (None, Some(due + 22 * MIN)));
        // Then one by one until the schedule is on time again.
        let mut next = first.next_due;
        let mut fired = vec![first.fire.unwrap()];
        while let Some(due) = next.filter(|d| *d <= now) {
            let firing = decide(&schedule, Misfire::All, due, now, 30 * S, false);
            fired.extend(firing.fire);
            next = firing.next_due;
        }
        let expected: Vec<i64> = (21..=30).map(|m| due + m * MIN).collect();
        assert_eq!(fired, expected);
        assert_eq!(next, Some(due + 31 * MIN));
    }

    #[test]
    fn a_schedule_far_behind_is_not_counted_one_by_one() {
        let due = 100 * MIN;
        let now = due + 30 * 86_400 * S; // a month of a minutely schedule
        let schedule = every_minute();
        for misfire in Misfire::ALL {
            let firing = decide(&schedule, misfire, due, now, 30 * S, false);
            assert!(firing.skipped >= LOOK_AT_MOST - CATCH_UP_CAP, "{misfire}");
            if misfire == Misfire::All {
                // The latest ten are owed, the first of them fired now.
                assert_eq!(firing.fire, Some(now - 9 * MIN), "{misfire}");
            } else {
                assert_eq!(firing.next_due, Some(now + MIN), "{misfire}");
            }
        }
    }
}
