//! `vigil bench store`: a week of a fleet in the series store, written and read.
//! Agent-shaped devices (the `ingest` benchmark's 26 series; percentages and memory
//! wandering with noise, counters growing, rates and load moving, each device on its
//! own seed) are polled every minute for a week, in time order, through
//! `db::store::write` as the writers store them; the closed minutes and hours are
//! rolled up and the closed hours sealed into blocks as the master does; then one
//! device's history is read over 24 hours, 7 days and 90 days at 300 points (the API's
//! default), from the tiers, beside the same queries over the polls alone measured in
//! the same run before the rollups were made, and over one sealed hour from its block
//! beside the same query over its polls; and each tier's bytes per reading.

use std::borrow::Cow;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::Utc;
use diesel::connection::SimpleConnection;

use super::cluster::BenchDb;
use super::gorilla;
use super::ingest::placed_devices;
use super::ingest::poll_series;
use super::report::{median, number, Better, Report, Row};
use super::settings::BenchSettings;
use crate::db::store::stats::{stats, TierStats};
use crate::db::store::{rollup, seal};
use crate::db::store::{Catalogue, NewPoll};
use crate::db::{self, Db, DbConn};

/// Polls per write transaction while filling, about what a writer's batches hold.
const POLLS_PER_TRANSACTION: usize = 4_000;
/// Buckets a history query asks for (the API's default).
const POINTS: i64 = 300;
/// The limit the history endpoint passes: its `MAX_ANSWER_POINTS` + 1.
const ANSWER_LIMIT: i64 = 200_001;
/// The ranges read, ending now, with the target for each, in ms.
const RANGES: [(&str, i64, f64); 3] = [
    ("24 h", 86_400_000, 20.0),
    ("7 days", 7 * 86_400_000, 50.0),
    ("90 days", 90 * 86_400_000, 100.0),
];
/// Issue 13's targets for the raw tier: bytes per reading once sealed, and before.
const TARGET_SEALED_BYTES: f64 = 2.0;
const TARGET_OPEN_BYTES: f64 = 16.0;

struct Sizes {
    devices: usize,
    span_ms: i64,
    span_name: &'static str,
    interval_ms: i64,
    /// Timed runs of each history query, after one untimed.
    runs: usize,
}

impl Sizes {
    fn of(settings: &BenchSettings) -> Sizes {
        if settings.smoke {
            Sizes {
                devices: settings.devices.unwrap_or(20),
                span_ms: 3 * 3_600_000,
                span_name: "3 hours",
                interval_ms: 60_000,
                runs: 1,
            }
        } else {
            Sizes {
                devices: settings.devices.unwrap_or(1_000),
                span_ms: 7 * 86_400_000,
                span_name: "week",
                interval_ms: 60_000,
                runs: 5,
            }
        }
    }
}

pub async fn run(settings: &BenchSettings) -> anyhow::Result<Report> {
    let sizes = Sizes::of(settings);
    let mut report = Report::new("store");
    report.param("devices", sizes.devices);
    report.param("span", sizes.span_name);
    report.param("interval_ms", sizes.interval_ms);
    report.param("points", POINTS);
    report.param("runs", sizes.runs);
    for postgres in settings.backends() {
        let bench_db = BenchDb::new(postgres.as_deref())?;
        let backend = bench_db.backend();
        let db = Db::open(bench_db.url().clone(), 4)
            .await
            .context("cannot open the benchmark's database")?;
        let count = sizes.devices;
        let ids = db.run(move |conn| placed_devices(conn, count)).await?;
        let end_ms = Utc::now().timestamp_millis().div_euclid(sizes.interval_ms)
            * sizes.interval_ms
            - rollup::GRACE_MS
            - 60_000;
        tracing::info!(backend, devices = count, "store: filling");
        let (readings, took) = fill(&db, &ids, &sizes, end_ms).await?;
        report.row(Row::new(
            format!(
                "{backend}: a {} of {} devices polled every {} s written ({} readings, \
                 {POLLS_PER_TRANSACTION} polls per transaction)",
                sizes.span_name,
                number(count as f64),
                sizes.interval_ms / 1000,
                number(readings as f64)
            ),
            "readings/s",
            Better::Higher,
            readings as f64 / took.as_secs_f64().max(1e-9),
        ));
        // What autovacuum would have done by then in a running deployment.
        analyze(&db).await?;
        let device = *ids.first().context("no devices")?;
        tracing::info!(backend, "store: history over the polls alone");
        let mut from_polls = Vec::new();
        for (_, range_ms, _) in RANGES {
            from_polls.push(time_history(&db, device, end_ms, range_ms, sizes.runs).await?);
        }
        // A closed hour a day back (halfway back in a shorter span), read raw (12 s
        // buckets) from its polls.
        let back = (sizes.span_ms / 2).min(seal::DAY_MS);
        let hour_end = (end_ms - back).div_euclid(seal::WINDOW_MS) * seal::WINDOW_MS;
        let hour_from_polls =
            time_history(&db, device, hour_end, seal::WINDOW_MS, sizes.runs).await?;
        tracing::info!(backend, "store: rolling up");
        let began = Instant::now();
        let rolled_rows = roll_all(&db, end_ms + rollup::GRACE_MS + 60_000).await?;
        let rolling = began.elapsed();
        report.row(Row::new(
            format!(
                "{backend}: the {} rolled up into minutes and hours ({} rows)",
                sizes.span_name,
                number(rolled_rows as f64)
            ),
            "readings/s",
            Better::Higher,
            readings as f64 / rolling.as_secs_f64().max(1e-9),
        ));
        let open = db.run(stats).await?.raw;
        report.row(
            tier_row(backend, "raw (every poll a row, before sealing)", &open)
                .at_most(TARGET_OPEN_BYTES),
        );
        tracing::info!(backend, "store: sealing the closed hours into blocks");
        let began = Instant::now();
        let span_start = end_ms - sizes.span_ms;
        let sealed = seal_all(&db, span_start, end_ms + rollup::GRACE_MS + 60_000).await?;
        let sealing = began.elapsed();
        report.row(Row::new(
            format!(
                "{backend}: the closed hours sealed into blocks and their days merged \
                 ({} polls, {} blocks merged away)",
                number(sealed.polls as f64),
                number(sealed.merged as f64)
            ),
            "readings/s",
            Better::Higher,
            (sealed.polls * poll_series().len()) as f64 / sealing.as_secs_f64().max(1e-9),
        ));
        analyze(&db).await?;
        let (pco_bytes, gorilla_bytes, compared) = db.run(compare_codecs).await?;
        report.row(
            Row::new(
                format!(
                    "{backend}: blocks' data, bytes per reading, pco columns (the store) \
                     ({} readings of {CODEC_SAMPLE} blocks)",
                    number(compared as f64)
                ),
                "bytes",
                Better::Lower,
                pco_bytes as f64 / compared.max(1) as f64,
            )
            .peer(
                "Gorilla XOR values, delta-of-delta times",
                gorilla_bytes as f64 / compared.max(1) as f64,
            ),
        );
        let (ms, buckets) =
            time_history(&db, device, hour_end, seal::WINDOW_MS, sizes.runs).await?;
        report.row(
            Row::new(
                format!(
                    "{backend}: one device's history, all series, one sealed hour at {POINTS} \
                     points ({buckets} buckets, from its block)"
                ),
                "ms",
                Better::Lower,
                ms,
            )
            .peer("the same hour's polls", hour_from_polls.0),
        );
        for ((name, range_ms, target), (peer_ms, peer_buckets)) in
            RANGES.into_iter().zip(from_polls)
        {
            let (ms, buckets) = time_history(&db, device, end_ms, range_ms, sizes.runs).await?;
            report.row(
                Row::new(
                    format!(
                        "{backend}: one device's history, all series, last {name} at {POINTS} \
                         points ({buckets} buckets; {peer_buckets} from the polls)"
                    ),
                    "ms",
                    Better::Lower,
                    ms,
                )
                .peer("the polls alone", peer_ms)
                .at_most(target),
            );
        }
        let figures = db.run(stats).await?;
        report.row(tier_row(
            backend,
            "raw (the hours still open)",
            &figures.raw,
        ));
        report.row(
            tier_row(backend, "blocks (the closed hours)", &figures.blocks)
                .at_most(TARGET_SEALED_BYTES),
        );
        report.row(tier_row(backend, "minute", &figures.minutes));
        report.row(tier_row(backend, "hour", &figures.hours));
    }
    report.note(
        "Every device is placed and its polls written under its epoch; its values move as \
         a host's do (a level of its own, a slow wave, noise; sizes steady, uptime growing). The peer is the same history query before any rollup is made, \
         when it reads every poll of the range: the layout before rollups, in the same run.",
    );
    report.note(
        "Bytes per reading: the tier's tables with their indexes on disk over the readings \
         stored (raw, blocks) or summed up (rollups); a rollup row holds count, min, max, \
         sum and last of each series. The closed hours are sealed a day at a time, as the \
         master seals them day after day, with PostgreSQL's blocks vacuumed after each day \
         as autovacuum would. On PostgreSQL a tier's bytes are its files: after sealing, \
         the open hours' raw tier is the polls table at the high-water mark of the whole \
         span written before sealing, not what a live deployment keeps (its open hours).",
    );
    Ok(report)
}

async fn analyze(db: &Db) -> anyhow::Result<()> {
    db.run(|conn| match conn {
        DbConn::Pg(c) => c.batch_execute("ANALYZE polls; ANALYZE rollups; ANALYZE blocks"),
        DbConn::Sqlite(_) => Ok(()),
    })
    .await?;
    Ok(())
}

fn tier_row(backend: &str, tier: &str, t: &TierStats) -> Row {
    Row::new(
        format!(
            "{backend}: {tier} tier, bytes per reading ({} polls or periods, {} readings, \
             {} MiB)",
            number(t.polls as f64),
            number(t.samples as f64),
            number(t.bytes as f64 / 1024.0 / 1024.0)
        ),
        "bytes",
        Better::Lower,
        t.bytes_per_sample().unwrap_or(0.0),
    )
}

/// A number in `[0, 1)` drawn from `seed` (splitmix64).
fn unit(seed: u64) -> f64 {
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (z ^ (z >> 31)) as f64 / (u64::MAX as f64 + 1.0)
}

fn round_to(value: f64, places: i32) -> f64 {
    let scale = 10f64.powi(places);
    (value * scale).round() / scale
}

/// What series `k` named `name` of device `device` reads at minute `minute`: a
/// device's level drawn from its seed, a slow wave and noise, stored as the agent's
/// are (percentages to a hundredth, rates to a whole byte a second: `metrics::series`);
/// sizes whole and steady, memory moving; uptime growing.
fn value(name: &str, device: usize, k: usize, minute: i64) -> f64 {
    let seed = (device as u64) << 32 | (k as u64) << 24;
    let level = unit(seed);
    let phase = unit(seed ^ 1) * std::f64::consts::TAU;
    let wave = ((minute as f64) / (90.0 + 30.0 * level) + phase).sin();
    let noise = unit(seed ^ (minute as u64).wrapping_mul(0x2545_F491_4F6C_DD1D)) - 0.5;
    let total = (4u64 << 30) as f64 * (1.0 + (level * 8.0).floor());
    if name.contains("percent") {
        round_to(
            (15.0 + 60.0 * level + 15.0 * wave + 8.0 * noise).clamp(0.0, 100.0),
            2,
        )
    } else if name.contains("per_second") {
        round_to((2e5 * level * (1.2 + wave) + 2e4 * noise).max(0.0), 0)
    } else if name.contains("total_bytes") {
        total
    } else if name.contains("bytes") {
        (total * (0.3 + 0.3 * level + 0.1 * wave + 0.01 * noise)).round()
    } else if name.starts_with("load") {
        round_to((4.0 * level * (1.0 + wave) + 0.3 * noise).max(0.0), 2)
    } else if name.contains("uptime") {
        (86_400.0 * 30.0 * level).round() + (minute * 60) as f64
    } else if name == "up" {
        1.0
    } else {
        round_to(0.002 + 0.001 * noise, 6)
    }
}

/// The poll of device `id` (the `device`th) at `at_ms`.
fn poll(names: &[String], device: usize, id: i64, at_ms: i64) -> NewPoll<'static> {
    let minute = at_ms / 60_000;
    NewPoll {
        device_id: id,
        epoch: 1,
        at_ms,
        readings: names
            .iter()
            .enumerate()
            .map(|(k, name)| (Cow::Owned(name.clone()), value(name, device, k, minute)))
            .collect(),
        shared: None,
    }
}

/// Writes every device's polls of the span in time order, the next batch made while
/// the last is written; answers readings written and how long it took.
async fn fill(
    db: &Db,
    ids: &[i64],
    sizes: &Sizes,
    end_ms: i64,
) -> anyhow::Result<(usize, Duration)> {
    let names = poll_series();
    let ticks = sizes.span_ms / sizes.interval_ms;
    let start_ms = end_ms - ticks * sizes.interval_ms;
    let total = ticks as usize * ids.len();
    let began = Instant::now();
    let mut written = 0;
    let mut pending: Option<actix_rt::task::JoinHandle<Result<usize, db::DbError>>> = None;
    let mut next = 0usize;
    let mut logged = Instant::now();
    while next < total || pending.is_some() {
        let batch: Vec<NewPoll<'static>> = (next..(next + POLLS_PER_TRANSACTION).min(total))
            .map(|n| {
                let (tick, device) = (n / ids.len(), n % ids.len());
                poll(
                    &names,
                    device,
                    ids[device],
                    start_ms + tick as i64 * sizes.interval_ms,
                )
            })
            .collect();
        next += batch.len();
        if let Some(handle) = pending.take() {
            written += handle.await.context("a fill transaction panicked")??;
        }
        if !batch.is_empty() {
            let db = db.clone();
            pending = Some(actix_rt::spawn(async move {
                db.run(move |conn| {
                    let mut catalogue = Catalogue::default();
                    db::write_transaction(conn, |conn| {
                        db::store::write(conn, &mut catalogue, &batch).map(|s| s.samples)
                    })
                })
                .await
            }));
        }
        if logged.elapsed() > Duration::from_secs(10) {
            logged = Instant::now();
            tracing::info!(
                polls = next,
                of = total,
                readings = written,
                "store: filling"
            );
        }
    }
    Ok((written, began.elapsed()))
}

/// Rolls up until nothing closed by `now_ms` is left; answers rows written.
async fn roll_all(db: &Db, now_ms: i64) -> anyhow::Result<usize> {
    let mut rows = 0;
    loop {
        let rolled = db.run(move |conn| rollup::roll(conn, now_ms)).await?;
        rows += rolled.rows;
        tracing::info!(
            minutes = rolled.minutes,
            hours = rolled.hours,
            rows,
            "store: rolling up"
        );
        if !rolled.behind {
            return Ok(rows);
        }
    }
}

/// Blocks whose columns are compressed both ways, at most.
const CODEC_SAMPLE: i64 = 1_000;

/// Of up to [`CODEC_SAMPLE`] blocks spread over the table: their data's bytes as
/// stored (pco columns), the bytes Gorilla's encoding would take for the same columns
/// (with the same bitmaps of which polls a series is in), and the readings they hold.
fn compare_codecs(conn: &mut DbConn) -> diesel::QueryResult<(usize, usize, usize)> {
    use crate::db::schema::blocks;
    use diesel::prelude::*;
    let all: i64 = blocks::table.count().get_result(conn)?;
    let step = (all / CODEC_SAMPLE).max(1);
    let datas: Vec<Vec<u8>> = blocks::table
        .filter(diesel::dsl::sql::<diesel::sql_types::Bool>(&format!(
            "id % {step} = 0"
        )))
        .select(blocks::data)
        .limit(CODEC_SAMPLE)
        .load(conn)?;
    let (mut pco, mut gorilla_bytes, mut readings) = (0, 0, 0);
    for data in datas {
        let columns =
            crate::db::store::block::decode(&data).map_err(crate::db::store::codec::corrupt)?;
        pco += data.len();
        readings += columns.samples();
        gorilla_bytes += gorilla::times(&columns.times).len();
        for column in &columns.series {
            gorilla_bytes += gorilla::values(&column.values).len();
            if column.polls.is_some() {
                gorilla_bytes += columns.polls().div_ceil(8);
            }
        }
    }
    Ok((pco, gorilla_bytes, readings))
}

/// Seals what is closed by `now_ms` a day at a time from `start_ms`, as the master
/// does day after day, PostgreSQL's dead rows vacuumed after each day as autovacuum
/// would (a merged day's hourly blocks leave their space to the next day's); answers
/// what was done.
async fn seal_all(db: &Db, start_ms: i64, now_ms: i64) -> anyhow::Result<seal::Sealed> {
    let mut total = seal::Sealed::default();
    let mut until = start_ms;
    while until < now_ms {
        until = (until + seal::DAY_MS).min(now_ms);
        loop {
            let sealed = db.run(move |conn| seal::seal(conn, until)).await?;
            total.blocks += sealed.blocks;
            total.polls += sealed.polls;
            total.merged += sealed.merged;
            if !sealed.behind {
                break;
            }
        }
        db.run(|conn| match conn {
            DbConn::Pg(c) => c.batch_execute("VACUUM blocks"),
            DbConn::Sqlite(_) => Ok(()),
        })
        .await?;
        tracing::info!(
            blocks = total.blocks,
            polls = total.polls,
            merged = total.merged,
            "store: sealing"
        );
    }
    Ok(total)
}

/// The median time of the history of `device` over the `range_ms` before `end_ms`, and
/// its buckets.
async fn time_history(
    db: &Db,
    device: i64,
    end_ms: i64,
    range_ms: i64,
    runs: usize,
) -> anyhow::Result<(f64, usize)> {
    let from_ms = end_ms - range_ms;
    // As the endpoint does: round up, so `POINTS` buckets cover the range.
    let width_ms = (range_ms + POINTS - 1) / POINTS;
    let mut times = Vec::with_capacity(runs);
    let mut buckets = 0;
    for run in 0..=runs {
        let began = Instant::now();
        let answer = db
            .run(move |conn| {
                db::store::history(conn, device, (from_ms, end_ms, width_ms), &[], ANSWER_LIMIT)
            })
            .await?;
        if run > 0 {
            times.push(began.elapsed());
        }
        buckets = answer.len();
    }
    Ok((median(&times).as_secs_f64() * 1000.0, buckets))
}
