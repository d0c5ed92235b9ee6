//! [`StoredTime`]: how the row structs read a `Timestamp` column. On SQLite a
//! timestamp is text, and diesel reads it by trying chrono's format strings one after
//! another (about a microsecond each): a tenth of a 100-device page's CPU went there
//! (perf on `GET /api/v1/devices`). What this database holds is always
//! `YYYY-MM-DD HH:MM:SS` with an optional fraction (SQLite's `CURRENT_TIMESTAMP`,
//! diesel's own writes), read here byte by byte; anything else goes to diesel's own
//! reader, as before. PostgreSQL's binary timestamps are read by diesel as they were.

use chrono::{NaiveDate, NaiveDateTime, NaiveTime};
use diesel::backend::Backend;
use diesel::deserialize::{self, FromSql};
use diesel::pg::Pg;
use diesel::sql_types::Timestamp;
use diesel::sqlite::Sqlite;

use super::conn::MultiBackend;

/// A timestamp column's value, read as above; fields take it with
/// `#[diesel(deserialize_as = StoredTime)]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, diesel::deserialize::FromSqlRow)]
pub struct StoredTime(pub NaiveDateTime);

impl From<StoredTime> for NaiveDateTime {
    fn from(time: StoredTime) -> Self {
        time.0
    }
}

impl FromSql<Timestamp, Sqlite> for StoredTime {
    fn from_sql(mut value: <Sqlite as Backend>::RawValue<'_>) -> deserialize::Result<Self> {
        // A number (a Julian day) is not text: only text is read here.
        if value.value_type() == Some(diesel::sqlite::SqliteType::Text) {
            if let Some(time) = read_sqlite_text(value.read_text()) {
                return Ok(StoredTime(time));
            }
        }
        <NaiveDateTime as FromSql<Timestamp, Sqlite>>::from_sql(value).map(StoredTime)
    }
}

impl FromSql<Timestamp, Pg> for StoredTime {
    fn from_sql(value: <Pg as Backend>::RawValue<'_>) -> deserialize::Result<Self> {
        <NaiveDateTime as FromSql<Timestamp, Pg>>::from_sql(value).map(StoredTime)
    }
}

impl FromSql<Timestamp, MultiBackend> for StoredTime {
    fn from_sql(value: <MultiBackend as Backend>::RawValue<'_>) -> deserialize::Result<Self> {
        value.from_sql::<Self, Timestamp>()
    }
}

/// `YYYY-MM-DD HH:MM:SS` with an optional `.` and one to nine digits of fraction;
/// `None` for anything else, an impossible date or time included.
fn read_sqlite_text(text: &str) -> Option<NaiveDateTime> {
    let b = text.as_bytes();
    if b.len() < 19 || b[4] != b'-' || b[7] != b'-' || b[10] != b' ' {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let digits = |from: usize, to: usize| -> Option<u32> {
        b[from..to].iter().try_fold(0u32, |n, &c| {
            c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0'))
        })
    };
    let year = i32::try_from(digits(0, 4)?).ok()?;
    let date = NaiveDate::from_ymd_opt(year, digits(5, 7)?, digits(8, 10)?)?;
    let nanos = match &b[19..] {
        [] => 0,
        [b'.', fraction @ ..] if (1..=9).contains(&fraction.len()) => {
            let value = digits(20, b.len())?;
            value * 10u32.pow(9 - fraction.len() as u32)
        }
        _ => return None,
    };
    let time =
        NaiveTime::from_hms_nano_opt(digits(11, 13)?, digits(14, 16)?, digits(17, 19)?, nanos)?;
    Some(NaiveDateTime::new(date, time))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn what_this_database_writes_is_read_as_chrono_reads_it() {
        for text in [
            "2026-12-04 23:08:49",
            "2026-12-04 23:08:49.5",
            "2026-12-04 23:08:49.123",
            "2026-12-04 23:08:49.123456",
            "2026-12-04 23:08:49.123456789",
            "1970-01-01 00:00:00",
            "2024-02-29 12:00:00.000001",
        ] {
            let chrono = NaiveDateTime::parse_from_str(text, "%F %T%.f").unwrap();
            assert_eq!(read_sqlite_text(text), Some(chrono), "{text}");
        }
    }

    #[test]
    fn anything_else_is_left_to_chrono() {
        for text in [
            "2026-12-04T23:08:49",
            "2026-12-04 23:08:49+00:00",
            "2026-12-04 23:08:49.",
            "2026-12-04 23:08:49.1234567890",
            "2026-13-04 23:08:49",
            "2025-02-29 23:08:49",
            "2026-12-04 24:08:49",
            "2026-12-04 23:08",
            "2026-1a-04 23:08:49",
            "2461000.5",
            "",
        ] {
            assert_eq!(read_sqlite_text(text), None, "{text}");
        }
    }

    proptest! {
        #[test]
        fn any_time_written_as_diesel_writes_it_reads_back(
            secs in 0i64..8_000_000_000, nanos in 0u32..1_000_000_000
        ) {
            let time = chrono::DateTime::from_timestamp(secs, nanos).unwrap().naive_utc();
            let text = time.format("%F %T%.f").to_string();
            prop_assert_eq!(read_sqlite_text(&text), Some(time));
        }
    }
}
