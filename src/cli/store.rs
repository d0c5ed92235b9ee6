//! `vigil store stats`: what the series store holds, as a few lines of text.

use std::fmt::Write;

use chrono::{TimeZone, Utc};

use crate::db::store::stats::{self, TierStats};
use crate::db::Db;
use crate::error::StartupError;

fn when(ms: Option<i64>) -> String {
    ms.and_then(|ms| Utc.timestamp_millis_opt(ms).single())
        .map_or_else(
            || "-".into(),
            |at| at.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
        )
}

/// `bytes` in KiB below a MiB, in MiB below a GiB, in GiB beyond.
fn size(bytes: i64) -> String {
    let b = bytes as f64;
    if b < 1024.0 * 1024.0 {
        format!("{:.1} KiB", b / 1024.0)
    } else if b < 1024.0 * 1024.0 * 1024.0 {
        format!("{:.1} MiB", b / 1024.0 / 1024.0)
    } else {
        format!("{:.2} GiB", b / 1024.0 / 1024.0 / 1024.0)
    }
}

fn tier_line(out: &mut String, name: &str, tier: &TierStats) {
    let per_sample = tier
        .bytes_per_sample()
        .map_or_else(|| "-".into(), |b| format!("{b:.2}"));
    let _ = writeln!(
        out,
        "{name:<6}  {:>13}  {:>14}  {:>12}  {per_sample:>16}  {:<23}  {}",
        tier.polls,
        tier.samples,
        size(tier.bytes),
        when(tier.oldest_ms),
        when(tier.newest_ms),
    );
}

/// The store's figures: series, then one line per tier.
pub async fn stats(db: &Db) -> Result<String, StartupError> {
    let s = db.run(stats::stats).await?;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "series: {} ({} distinct names, catalogue {})",
        s.series,
        s.names,
        size(s.catalogue_bytes)
    );
    let _ = writeln!(
        out,
        "{:<6}  {:>13}  {:>14}  {:>12}  {:>16}  {:<23}  NEWEST",
        "TIER", "POLLS|PERIODS", "SAMPLES", "ON DISK", "BYTES PER SAMPLE", "OLDEST"
    );
    tier_line(&mut out, "raw", &s.raw);
    tier_line(&mut out, "blocks", &s.blocks);
    tier_line(&mut out, "minute", &s.minutes);
    tier_line(&mut out, "hour", &s.hours);
    let _ = write!(out, "latest polls: {}", size(s.latest_bytes));
    if s.old_layout_samples > 0 {
        let _ = write!(
            out,
            "\nold layout: {} samples not moved yet (moved at a node's next start)",
            s.old_layout_samples
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::size;

    #[test]
    fn sizes_read_in_the_unit_that_fits() {
        assert_eq!(size(12_288), "12.0 KiB");
        assert_eq!(size(5 * 1024 * 1024 + 512 * 1024), "5.5 MiB");
        assert_eq!(size(3 * 1024 * 1024 * 1024), "3.00 GiB");
    }
}
