//! Queries on the one-row `config` table.

use diesel::prelude::*;

use super::models::{ConfigChanges, ConfigRow};
use super::schema::config;
use super::DbConn;
use crate::domain::{MonitorConfig, Settings};

/// The id of the only row; the migrations insert it and a CHECK keeps it alone.
const ROW: i64 = 1;

pub fn get(conn: &mut DbConn) -> QueryResult<ConfigRow> {
    config::table
        .find(ROW)
        .select(ConfigRow::as_select())
        .first(conn)
}

/// Applies a partial update and returns the row as stored.
pub fn update(conn: &mut DbConn, changes: &ConfigChanges) -> QueryResult<ConfigRow> {
    diesel::update(config::table.find(ROW))
        .set((changes, config::updated_at.eq(diesel::dsl::now)))
        .execute(conn)?;
    get(conn)
}

/// Moves the scheduler's rotating index (`monitor_server_current`) up to `index`; an
/// index already past it (another scheduler got further) is left: it never goes back.
pub fn advance_rotation(conn: &mut DbConn, index: i64) -> QueryResult<()> {
    diesel::update(
        config::table
            .find(ROW)
            .filter(config::monitor_server_current.lt(index)),
    )
    .set(config::monitor_server_current.eq(index))
    .execute(conn)
    .map(|_| ())
}

impl ConfigRow {
    /// The row as it would be with `changes` applied.
    pub fn merged(mut self, changes: &ConfigChanges) -> ConfigRow {
        let ConfigChanges {
            max_monitors_per_server,
            poll_interval_ms,
            timeout_ms,
            alert_threshold,
            critical_threshold,
            balance_method,
            unreachable_after,
            retention_hours,
            heartbeat_ms,
            validate_ms,
            missed_checks,
            minute_retention_days,
            hour_retention_days,
        } = changes.clone();
        let row = &mut self;
        row.max_monitors_per_server =
            max_monitors_per_server.unwrap_or(row.max_monitors_per_server);
        row.poll_interval_ms = poll_interval_ms.unwrap_or(row.poll_interval_ms);
        row.timeout_ms = timeout_ms.unwrap_or(row.timeout_ms);
        row.alert_threshold = alert_threshold.unwrap_or(row.alert_threshold);
        row.critical_threshold = critical_threshold.unwrap_or(row.critical_threshold);
        row.balance_method = balance_method.unwrap_or(std::mem::take(&mut row.balance_method));
        row.unreachable_after = unreachable_after.unwrap_or(row.unreachable_after);
        row.retention_hours = retention_hours.unwrap_or(row.retention_hours);
        row.heartbeat_ms = heartbeat_ms.unwrap_or(row.heartbeat_ms);
        row.validate_ms = validate_ms.unwrap_or(row.validate_ms);
        row.missed_checks = missed_checks.unwrap_or(row.missed_checks);
        row.minute_retention_days = minute_retention_days.unwrap_or(row.minute_retention_days);
        row.hour_retention_days = hour_retention_days.unwrap_or(row.hour_retention_days);
        self
    }

    /// The settings this row holds.
    pub fn settings(&self) -> Settings {
        Settings {
            max_monitors_per_server: self.max_monitors_per_server,
            poll_interval_ms: self.poll_interval_ms,
            timeout_ms: self.timeout_ms,
            alert_threshold: self.alert_threshold,
            critical_threshold: self.critical_threshold,
            balance_method: self.balance_method.clone(),
            unreachable_after: self.unreachable_after,
            retention_hours: self.retention_hours,
            heartbeat_ms: self.heartbeat_ms,
            validate_ms: self.validate_ms,
            missed_checks: self.missed_checks,
            minute_retention_days: self.minute_retention_days,
            hour_retention_days: self.hour_retention_days,
        }
    }

    /// What every monitor follows under this row.
    pub fn monitor_config(&self) -> MonitorConfig {
        self.settings().monitor_config()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> ConfigRow {
        ConfigRow {
            monitor_server_current: 0,
            max_monitors_per_server: 1000,
            poll_interval_ms: 5000,
            timeout_ms: 3000,
            alert_threshold: 70,
            critical_threshold: 90,
            balance_method: "round_robin".into(),
            updated_at: chrono::NaiveDateTime::default(),
            unreachable_after: 3,
            retention_hours: 168,
            heartbeat_ms: 1000,
            validate_ms: 3000,
            missed_checks: 1,
            minute_retention_days: 90,
            hour_retention_days: 730,
        }
    }

    #[test]
    fn a_merge_keeps_what_was_not_given() {
        let changes = ConfigChanges {
            timeout_ms: Some(100),
            balance_method: Some("least_monitors".into()),
            ..Default::default()
        };
        let merged = defaults().merged(&changes);
        assert_eq!(merged.timeout_ms, 100);
        assert_eq!(merged.balance_method, "least_monitors");
        assert_eq!(merged.poll_interval_ms, 5000);
        assert_eq!(
            defaults().merged(&ConfigChanges::default()).balance_method,
            "round_robin"
        );
    }

    #[test]
    fn a_merged_row_is_checked_as_a_whole() {
        let changes = ConfigChanges {
            alert_threshold: Some(95),
            ..Default::default()
        };
        let err = defaults().merged(&changes).settings().check().unwrap_err();
        assert!(err.contains("must be below critical_threshold"), "{err}");
        assert_eq!(defaults().monitor_config().poll_interval_ms, 5000);
    }
}
