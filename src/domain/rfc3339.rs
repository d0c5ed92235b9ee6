//! UTC timestamps serialized exactly as chrono's serde writes them (RFC 3339, `Z` for
//! UTC, a fraction of 0, 3, 6 or 9 digits as the value needs), but handed to the
//! serializer as one string: chrono writes through `collect_str`, and serde_json then
//! escapes it one character at a time, which was a tenth of the coordinator's CPU on a
//! device list. For `#[serde(serialize_with = "crate::domain::rfc3339::serialize")]`.

use chrono::{DateTime, Datelike, Timelike, Utc};
use serde::{Serialize, Serializer};

/// `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ`
const LONGEST: usize = 30;

pub fn serialize<S: Serializer>(at: &DateTime<Utc>, serializer: S) -> Result<S::Ok, S::Error> {
    let mut buffer = [0u8; LONGEST];
    match write(at, &mut buffer).and_then(|len| std::str::from_utf8(&buffer[..len]).ok()) {
        Some(text) => serializer.serialize_str(text),
        // A year outside 0–9999: chrono's own form (with a sign).
        None => at.serialize(serializer),
    }
}

/// Writes `at` into `out`; its length, or `None` for a year chrono writes with a sign.
fn write(at: &DateTime<Utc>, out: &mut [u8; LONGEST]) -> Option<usize> {
    let year = u32::try_from(at.year()).ok().filter(|y| *y <= 9999)?;
    let (mut second, mut nano) = (at.second(), at.nanosecond());
    if nano >= 1_000_000_000 {
        // A leap second: chrono writes it as second 60.
        second += 1;
        nano -= 1_000_000_000;
    }
    digits(&mut out[0..4], year);
    out[4] = b'-';
    digits(&mut out[5..7], at.month());
    out[7] = b'-';
    digits(&mut out[8..10], at.day());
    out[10] = b'T';
    digits(&mut out[11..13], at.hour());
    out[13] = b':';
    digits(&mut out[14..16], at.minute());
    out[16] = b':';
    digits(&mut out[17..19], second);
    let mut len = 19;
    let fraction = match nano {
        0 => None,
        n if n % 1_000_000 == 0 => Some((n / 1_000_000, 3)),
        n if n % 1_000 == 0 => Some((n / 1_000, 6)),
        n => Some((n, 9)),
    };
    if let Some((value, width)) = fraction {
        out[len] = b'.';
        digits(&mut out[len + 1..len + 1 + width], value);
        len += 1 + width;
    }
    out[len] = b'Z';
    Some(len + 1)
}

/// `value` in decimal, zero-padded to fill `out`.
fn digits(out: &mut [u8], mut value: u32) {
    for place in out.iter_mut().rev() {
        *place = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

#[cfg(test)]
mod tests {
    use chrono::{NaiveDate, NaiveDateTime, TimeZone};
    use proptest::prelude::*;

    use super::*;

    #[derive(Serialize)]
    struct Ours(#[serde(serialize_with = "serialize")] DateTime<Utc>);

    fn same_as_chrono(at: DateTime<Utc>) {
        let ours = serde_json::to_string(&Ours(at)).unwrap();
        let chrono = serde_json::to_string(&at).unwrap();
        assert_eq!(ours, chrono, "{at:?}");
    }

    #[test]
    fn every_fraction_width_and_the_edges_are_written_as_chrono_writes_them() {
        let day = NaiveDate::from_ymd_opt(2026, 12, 3).unwrap();
        for (second, nano, expected) in [
            (6, 0, "\"2026-12-03T04:05:06Z\""),
            (6, 120_000_000, "\"2026-12-03T04:05:06.120Z\""),
            (6, 120_300_000, "\"2026-12-03T04:05:06.120300Z\""),
            (6, 120_300_004, "\"2026-12-03T04:05:06.120300004Z\""),
            // A leap second (chrono holds it as second 59 with a nanosecond past 1e9).
            (59, 1_000_000_007, "\"2026-12-03T04:05:60.000000007Z\""),
        ] {
            let at = Utc.from_utc_datetime(&day.and_hms_nano_opt(4, 5, second, nano).unwrap());
            assert_eq!(serde_json::to_string(&Ours(at)).unwrap(), expected);
            same_as_chrono(at);
        }
        for at in [
            NaiveDateTime::MIN,
            NaiveDateTime::MAX,
            NaiveDate::from_ymd_opt(0, 1, 1)
                .unwrap()
                .and_hms_opt(0, 0, 0)
                .unwrap(),
            NaiveDate::from_ymd_opt(9999, 12, 31)
                .unwrap()
                .and_hms_nano_opt(23, 59, 59, 1_999_999_999)
                .unwrap(),
        ] {
            same_as_chrono(Utc.from_utc_datetime(&at));
        }
    }

    proptest! {
        #[test]
        fn any_instant_is_written_as_chrono_writes_it(
            seconds in -62_167_219_200i64..253_402_300_800i64,
            nano in prop_oneof![
                Just(0u32),
                (0u32..1000).prop_map(|ms| ms * 1_000_000),
                (0u32..1_000_000).prop_map(|us| us * 1000),
                0u32..1_000_000_000,
            ],
        ) {
            let at = DateTime::from_timestamp(seconds, nano).unwrap();
            same_as_chrono(at);
        }
    }
}
