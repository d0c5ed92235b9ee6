//! `vigil bench ingest`: samples per second through a monitor server's `MetricsWriter`,
//! in this process, into SQLite and (with `--postgres`) PostgreSQL, fed polls shaped
//! like an agent's (26 series each, many devices), beside single-row inserts (one
//! `INSERT` per reading, one transaction per poll) for the ratio; then the history
//! query over one device's week (an hour at smoke size).
//!
//! The sender keeps at most `MAX_BACKLOG_ROWS` rows unwritten, so it runs as fast as
//! the writer takes samples without outgrowing the writer's bounded buffer (which
//! would drop the oldest, as it does while the database is away): every sample sent
//! must be written, and the report says how many were dropped.

use std::borrow::Cow;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use actix::Actor;
use anyhow::{bail, Context};
use chrono::{DateTime, Utc};
use diesel::connection::SimpleConnection;
use diesel::RunQueryDsl;

use super::cluster::BenchDb;
use super::report::{median, number, Better, Report, Row};
use super::settings::BenchSettings;
use crate::actors::messages::Sample;
use crate::actors::writer::{Flush, MetricsWriter, WriterSettings};
use crate::db::models::NewSample;
use crate::db::schema::samples;
use crate::db::store::{Catalogue, NewPoll};
use crate::db::{self, Db, DbConn};
use crate::domain::Metrics;
use crate::metrics::series;

/// The poll interval of a deployment, which the write rate is put in terms of.
const POLL_INTERVAL: Duration = Duration::from_secs(5);
/// The shortest poll interval a deployment is likely to run at.
const FAST_POLL_INTERVAL: Duration = Duration::from_secs(1);
/// Rows sent but not yet written at most while sending; a quarter of the writer's
/// default buffer bound, so pacing never makes it drop.
const MAX_BACKLOG_ROWS: u64 = 250_000;
/// How often the sender looks again at a backlog that is too long.
const BACKLOG_CHECK: Duration = Duration::from_millis(1);
/// The peer stops after this long even if some of its polls are left.
const PEER_WITHIN: Duration = Duration::from_secs(20);
/// The old layout's writer: polls per transaction and rows per `INSERT`.
const OLD_POLLS_PER_TRANSACTION: usize = 500;
const OLD_ROWS_PER_INSERT: usize = 1000;
/// Connections of the benchmark's pool (the writer uses one at a time).
const POOL_SIZE: u32 = 8;
/// Polls inserted per transaction while building the history.
const FILL_POLLS_PER_TRANSACTION: usize = 4_000;
/// Buckets a history query asks for (the API's default).
const POINTS: i64 = 300;
/// The limit the history endpoint passes: its `MAX_ANSWER_POINTS` + 1.
const ANSWER_LIMIT: i64 = 200_001;
/// The ranges the history is queried over, ending at the newest poll.
const HISTORY_RANGES: [(&str, Duration); 3] = [
    ("15 min", Duration::from_secs(15 * 60)),
    ("24 h", Duration::from_secs(86_400)),
    ("7 days", Duration::from_secs(7 * 86_400)),
];
/// The targets, in readings (rows) per second.
const SQLITE_TARGET_ROWS_PER_S: f64 = 1_000_000.0;
const POSTGRES_TARGET_ROWS_PER_S: f64 = 500_000.0;

struct Sizes {
    devices: usize,
    /// Polls sent to the writer.
    samples: usize,
    /// Polls written by single-row inserts (unless `PEER_WITHIN` runs out first).
    peer_polls: usize,
    /// How much history the one device gets, and its name in the report.
    history: Duration,
    history_name: &'static str,
    /// Timed runs of each history query, after one untimed.
    history_runs: usize,
}

impl Sizes {
    fn of(settings: &BenchSettings) -> Sizes {
        if settings.smoke {
            Sizes {
                devices: settings.devices.unwrap_or(100),
                samples: 2_000,
                peer_polls: 200,
                history: Duration::from_secs(3_600),
                history_name: "hour",
                history_runs: 1,
            }
        } else {
            Sizes {
                devices: settings.devices.unwrap_or(1_000),
                samples: 50_000,
                peer_polls: 5_000,
                history: Duration::from_secs(7 * 86_400),
                history_name: "week",
                history_runs: 5,
            }
        }
    }
}

pub async fn run(settings: &BenchSettings) -> anyhow::Result<Report> {
    let sizes = Sizes::of(settings);
    let names = poll_series();
    let mut report = Report::new("ingest");
    report.param("devices", sizes.devices);
    report.param("samples", sizes.samples);
    report.param("series_per_sample", names.len());
    report.param("peer_polls", sizes.peer_polls);
    report.param("history", sizes.history_name);
    report.param("history_runs", sizes.history_runs);
    for postgres in settings.backends() {
        let bench_db = BenchDb::new(postgres.as_deref())?;
        let backend = bench_db.backend();
        let target = match postgres {
            Some(_) => POSTGRES_TARGET_ROWS_PER_S,
            None => SQLITE_TARGET_ROWS_PER_S,
        };
        let db = Db::open(bench_db.url().clone(), POOL_SIZE)
            .await
            .context("cannot open the benchmark's database")?;
        // The writer stores only what is reported under a device's current epoch: every
        // device (and the one whose history is built) is placed under epoch 1.
        let devices = sizes.devices + 1;
        let ids = db.run(move |conn| placed_devices(conn, devices)).await?;
        let (ids, history_device) = ids.split_at(sizes.devices);
        let history_device = *history_device.first().context("no history device")?;
        tracing::info!(backend, "ingest: the writer");
        let writer = through_writer(&db, ids, &names, sizes.samples).await?;
        tracing::info!(backend, "ingest: the old layout");
        let old = old_layout(&db, ids, &names, sizes.samples).await?;
        tracing::info!(backend, "ingest: single-row inserts");
        let peer = single_rows(&db, ids, &names, sizes.peer_polls).await?;
        let (writer_samples, peer_samples) = (writer.written.samples_per_s(), peer.samples_per_s());
        let stored = db.run(db::store::stats::stats).await?;
        let per_sample = |bytes: i64, samples: i64| bytes as f64 / samples.max(1) as f64;
        report.row(
            Row::new(
                format!("{backend}: bytes on disk per reading (tables and indexes)"),
                "bytes",
                Better::Lower,
                per_sample(stored.raw.bytes, stored.raw.samples),
            )
            .peer(
                "old layout",
                per_sample(stored.old_layout_bytes, stored.old_layout_samples),
            )
            .at_most(16.0),
        );
        report.row(
            Row::new(
                format!("{backend}: samples (polls) written per second"),
                "samples/s",
                Better::Higher,
                writer_samples,
            )
            .peer("single-row inserts", peer_samples),
        );
        report.row(
            Row::new(
                format!("{backend}: readings (rows) written per second"),
                "rows/s",
                Better::Higher,
                writer.written.rows_per_s(),
            )
            .peer("single-row inserts", peer.rows_per_s())
            .at_least(target),
        );
        report.row(
            Row::new(
                format!("{backend}: readings (rows) written per second, beside the old layout"),
                "rows/s",
                Better::Higher,
                writer.written.rows_per_s(),
            )
            .peer("old layout, batched", old.rows_per_s()),
        );
        report.row(
            Row::new(
                format!("{backend}: samples dropped"),
                "samples",
                Better::Lower,
                writer.dropped as f64,
            )
            .target("= 0", writer.dropped == 0),
        );
        for interval in [POLL_INTERVAL, FAST_POLL_INTERVAL] {
            report.row(
                Row::new(
                    format!(
                        "{backend}: devices that rate keeps up with at a {} s interval",
                        interval.as_secs()
                    ),
                    "devices",
                    Better::Higher,
                    writer_samples * interval.as_secs_f64(),
                )
                .peer("single-row inserts", peer_samples * interval.as_secs_f64()),
            );
        }
        report.row(Row::new(
            format!(
                "{backend}: writer batches (mean {:.0} samples each)",
                writer.written.samples as f64 / writer.batches.max(1) as f64
            ),
            "batches",
            Better::Lower,
            writer.batches as f64,
        ));
        tracing::info!(backend, "ingest: the history");
        history(&db, history_device, &names, &sizes, backend, &mut report).await?;
    }
    report.note(format!(
        "The writer: one `MetricsWriter` with `WriterSettings::default()` in this process, \
         fed {} polls of {} devices ({} series each) as fast as it takes them with at most \
         {} rows unwritten; wall time from the first send to the `Flush` answer. It stores \
         each poll as one row of the series store (`db::store`), fenced (joined with \
         `assignments` on device and epoch), and each device's newest poll in `latest_polls`.",
        number(sizes.samples as f64),
        number(sizes.devices as f64),
        names.len(),
        number(MAX_BACKLOG_ROWS as f64)
    ));
    report.note(format!(
        "The peer: the same polls written one after the other, each in its own transaction \
         (`BEGIN IMMEDIATE` on SQLite) holding one plain `INSERT INTO samples … VALUES (…)` \
         per reading into the old layout's table (diesel, no fence), {} polls or {} s, \
         whichever ends first.",
        number(sizes.peer_polls as f64),
        PEER_WITHIN.as_secs()
    ));
    report.note(
        "The old layout: the same polls into `samples`, one row per reading with its name \
         as text, as the writer stored them before the series store: 500 polls per \
         transaction, 1,000 rows per multi-row `INSERT` (one bound `VALUES` list, as the old \
         writer's statement; without its join on `assignments` for the epoch fence).",
    );
    report.note(
        "The issue's targets (1,000,000 samples/s into SQLite, 500,000 into PostgreSQL) count \
         readings (series values), that is rows: they are held against the rows/s row.",
    );
    report.note(format!(
        "History: one more device gets one {} of polls every {} s, inserted with \
         `db::store::write` {FILL_POLLS_PER_TRANSACTION} polls per transaction \
         (then `ANALYZE polls` on PostgreSQL); `db::store::history` at {POINTS} points \
         over ranges ending at its newest poll, one untimed run, then the median of {}.",
        sizes.history_name,
        POLL_INTERVAL.as_secs(),
        sizes.history_runs
    ));
    Ok(report)
}

/// What a way of writing stored, and how long it took.
struct Written {
    elapsed: Duration,
    samples: u64,
    rows: u64,
}

impl Written {
    fn samples_per_s(&self) -> f64 {
        self.samples as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    fn rows_per_s(&self) -> f64 {
        self.rows as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// What one writer run did.
struct WriterRun {
    written: Written,
    batches: u64,
    dropped: u64,
}

/// Sends `count` polls, round-robin over `devices`, to a fresh writer and waits for
/// its `Flush`.
async fn through_writer(
    db: &Db,
    devices: &[i64],
    names: &[String],
    count: usize,
) -> anyhow::Result<WriterRun> {
    let now = Utc::now();
    let samples: Vec<Sample> = (0..count)
        .map(|n| sample(devices, names, n, now))
        .collect::<anyhow::Result<_>>()?;
    let rows_sent: u64 = samples.iter().map(|s| s.metrics.len() as u64).sum();
    let writer = MetricsWriter::new(db.clone(), WriterSettings::default());
    let stats = writer.stats();
    let writer = writer.start();
    let began = Instant::now();
    let mut sent_rows: u64 = 0;
    for sample in samples {
        while sent_rows.saturating_sub(stats.rows_written.load(Ordering::Relaxed))
            > MAX_BACKLOG_ROWS
        {
            actix_rt::time::sleep(BACKLOG_CHECK).await;
        }
        sent_rows += sample.metrics.len() as u64;
        writer.do_send(sample);
    }
    writer
        .send(Flush)
        .await?
        .map_err(|e| anyhow::anyhow!("the writer's flush failed: {e}"))?;
    let run = WriterRun {
        written: Written {
            elapsed: began.elapsed(),
            samples: stats.samples_written.load(Ordering::Relaxed),
            rows: stats.rows_written.load(Ordering::Relaxed),
        },
        batches: stats.batches.load(Ordering::Relaxed),
        dropped: stats.dropped_samples.load(Ordering::Relaxed),
    };
    let stale = stats.stale_rows.load(Ordering::Relaxed);
    if stale > 0 || (run.dropped == 0 && run.written.rows != rows_sent) {
        bail!(
            "the writer stored {} of {rows_sent} rows ({stale} refused as stale)",
            run.written.rows
        );
    }
    Ok(run)
}

/// Writes `count` polls into the old layout (`samples`, one row per reading), as its
/// writer did: `OLD_POLLS_PER_TRANSACTION` polls per transaction, multi-row `INSERT`s of
/// `OLD_ROWS_PER_INSERT` rows (without the fence's join, which only cost it more).
async fn old_layout(
    db: &Db,
    devices: &[i64],
    names: &[String],
    count: usize,
) -> anyhow::Result<Written> {
    // Two days on, so they never share a timestamp with the others.
    let start = Utc::now() + chrono::Duration::days(2);
    let samples: Vec<Sample> = (0..count)
        .map(|n| sample(devices, names, n, start))
        .collect::<anyhow::Result<_>>()?;
    let began = Instant::now();
    let mut rows = 0;
    for chunk in samples.chunks(OLD_POLLS_PER_TRANSACTION) {
        let chunk = chunk.to_vec();
        rows += db
            .run(move |conn| {
                let rows: Vec<NewSample> = chunk.iter().flat_map(old_rows).collect();
                db::write_transaction(conn, |conn| {
                    let mut stored = 0;
                    for statement in rows.chunks(OLD_ROWS_PER_INSERT) {
                        stored += insert_old_rows(conn, statement)?;
                    }
                    Ok(stored)
                })
            })
            .await?;
    }
    Ok(Written {
        elapsed: began.elapsed(),
        samples: count as u64,
        rows: rows as u64,
    })
}

/// The old layout's rows of one poll: one per reading, its name as text.
fn old_rows(sample: &Sample) -> impl Iterator<Item = NewSample> + '_ {
    let at_ms = sample.at.timestamp_millis();
    sample.metrics.iter().map(move |(metric, value)| NewSample {
        device_id: sample.device_id,
        epoch: sample.epoch,
        at_ms,
        metric: metric.clone(),
        value: *value,
    })
}

/// One multi-row `INSERT` of `rows` into `samples`, as the old writer's statement was
/// (bound values in one `VALUES` list), without its join on `assignments`.
fn insert_old_rows(conn: &mut DbConn, rows: &[NewSample]) -> diesel::QueryResult<usize> {
    use diesel::sql_types::{BigInt, Double, Text};
    let sql = |mark: char| {
        format!(
            "INSERT INTO samples (device_id, epoch, at_ms, metric, value) VALUES {}",
            db::values_list(mark, rows.len(), 5)
        )
    };
    macro_rules! run {
        ($conn:expr, $backend:ty, $mark:expr) => {{
            let mut query = diesel::sql_query(sql($mark)).into_boxed::<$backend>();
            for row in rows {
                query = query
                    .bind::<BigInt, _>(row.device_id)
                    .bind::<BigInt, _>(row.epoch)
                    .bind::<BigInt, _>(row.at_ms)
                    .bind::<Text, _>(row.metric.as_str())
                    .bind::<Double, _>(row.value);
            }
            query.execute($conn)
        }};
    }
    match conn {
        DbConn::Pg(c) => run!(c, diesel::pg::Pg, '$'),
        DbConn::Sqlite(c) => run!(c, diesel::sqlite::Sqlite, '?'),
    }
}

/// Writes up to `count` polls one by one, one transaction per poll and one `INSERT`
/// per reading, for at most `PEER_WITHIN`.
async fn single_rows(
    db: &Db,
    devices: &[i64],
    names: &[String],
    count: usize,
) -> anyhow::Result<Written> {
    // After the writer's polls, so the two never share a timestamp.
    let start = Utc::now() + chrono::Duration::days(1);
    let began = Instant::now();
    let (mut polls, mut rows) = (0, 0);
    while polls < count && began.elapsed() < PEER_WITHIN {
        let sample = sample(devices, names, polls, start)?;
        rows += db
            .run(move |conn| {
                db::write_transaction(conn, |conn| {
                    let mut stored = 0;
                    for row in old_rows(&sample) {
                        stored += diesel::insert_into(samples::table)
                            .values(&row)
                            .execute(conn)?;
                    }
                    Ok(stored)
                })
            })
            .await?;
        polls += 1;
    }
    Ok(Written {
        elapsed: began.elapsed(),
        samples: polls as u64,
        rows: rows as u64,
    })
}

/// Fills one device's history and times the history query over it, adding the rows.
async fn history(
    db: &Db,
    device: i64,
    names: &[String],
    sizes: &Sizes,
    backend: &str,
    report: &mut Report,
) -> anyhow::Result<()> {
    let step_ms = POLL_INTERVAL.as_millis() as i64;
    let polls = (sizes.history.as_millis() as i64 / step_ms) as usize;
    let end_ms = Utc::now().timestamp_millis() - step_ms;
    let start_ms = end_ms - polls as i64 * step_ms;
    let began = Instant::now();
    let mut filled = 0;
    for first in (0..polls).step_by(FILL_POLLS_PER_TRANSACTION) {
        let last = (first + FILL_POLLS_PER_TRANSACTION).min(polls);
        let names = names.to_vec();
        filled += db
            .run(move |conn| {
                let polls: Vec<NewPoll> = (first..last)
                    .map(|p| NewPoll {
                        device_id: device,
                        epoch: 1,
                        at_ms: start_ms + p as i64 * step_ms,
                        readings: readings(&names, device as usize, p)
                            .into_iter()
                            .map(|(metric, value)| (Cow::Owned(metric), value))
                            .collect(),
                        shared: None,
                    })
                    .collect();
                let mut catalogue = Catalogue::default();
                db::write_transaction(conn, |conn| {
                    db::store::write(conn, &mut catalogue, &polls).map(|s| s.samples)
                })
            })
            .await?;
    }
    let fill = began.elapsed();
    // What autovacuum would have done by then in a running deployment.
    db.run(|conn| match conn {
        DbConn::Pg(c) => c.batch_execute("ANALYZE polls"),
        DbConn::Sqlite(_) => Ok(()),
    })
    .await?;
    report.row(Row::new(
        format!(
            "{backend}: insert of the history device's {} ({} rows, \
             {FILL_POLLS_PER_TRANSACTION} polls per transaction)",
            sizes.history_name,
            number(filled as f64)
        ),
        "rows/s",
        Better::Higher,
        filled as f64 / fill.as_secs_f64().max(1e-9),
    ));
    let filters: [(&str, Vec<String>); 2] = [
        ("all series", Vec::new()),
        (
            series::CPU_USAGE_PERCENT,
            vec![series::CPU_USAGE_PERCENT.to_string()],
        ),
    ];
    for (range_name, range) in HISTORY_RANGES {
        let range_ms = range.as_millis() as i64;
        for (filter_name, filter) in &filters {
            let from_ms = end_ms - range_ms;
            // As the endpoint does: round up, so `POINTS` buckets cover the range.
            let width_ms = (range_ms + POINTS - 1) / POINTS;
            let mut times = Vec::with_capacity(sizes.history_runs);
            let mut buckets = 0;
            for run in 0..=sizes.history_runs {
                let filter = filter.clone();
                let began = Instant::now();
                let answer = db
                    .run(move |conn| {
                        db::store::history(
                            conn,
                            device,
                            (from_ms, end_ms, width_ms),
                            &filter,
                            ANSWER_LIMIT,
                        )
                    })
                    .await?;
                if run > 0 {
                    times.push(began.elapsed());
                }
                buckets = answer.len();
            }
            report.row(Row::new(
                format!(
                    "{backend}: history of one device's {}, last {range_name}, {filter_name} \
                     ({buckets} buckets)",
                    sizes.history_name
                ),
                "ms",
                Better::Lower,
                median(&times).as_secs_f64() * 1000.0,
            ));
        }
    }
    Ok(())
}

/// `count` devices of one company, each placed (on no server) under epoch 1; their ids.
pub(super) fn placed_devices(conn: &mut DbConn, count: usize) -> diesel::QueryResult<Vec<i64>> {
    use crate::db::schema::assignments;
    use diesel::ExpressionMethods;
    db::write_transaction(conn, |conn| {
        let company = db::companies::create(conn, "bench")?;
        let mut ids = Vec::with_capacity(count);
        for n in 0..count {
            let name = format!("device-{n}");
            let device = db::devices::create(
                conn,
                &db::models::NewDevice {
                    company_id: company.id,
                    name: &name,
                    address: "http://127.0.0.1:9/",
                    kind: "http",
                    enabled: true,
                    expected_status: None,
                },
            )?;
            diesel::insert_into(assignments::table)
                .values((
                    assignments::device_id.eq(device.id),
                    assignments::epoch.eq(1_i64),
                ))
                .execute(conn)?;
            ids.push(device.id);
        }
        Ok(ids)
    })
}

/// Poll `n` of a run that goes round-robin over `devices`, one round per poll interval
/// from `start`.
fn sample(
    devices: &[i64],
    names: &[String],
    n: usize,
    start: DateTime<Utc>,
) -> anyhow::Result<Sample> {
    if devices.is_empty() {
        bail!("no devices to send polls for");
    }
    let (round, device) = (n / devices.len(), n % devices.len());
    let interval = chrono::Duration::from_std(POLL_INTERVAL)?;
    Ok(Sample {
        device_id: devices[device],
        epoch: 1,
        at: start + interval * round as i32,
        metrics: readings(names, device, round),
        raw: None,
    })
}

/// The series of one agent poll: CPU (total and 2 cores), memory, swap, 4 interfaces,
/// one disk, load, uptime, and the `up` and `latency_seconds` of every poll.
pub(super) fn poll_series() -> Vec<String> {
    let mut names = vec![series::CPU_USAGE_PERCENT.to_string()];
    for core in ["0", "1"] {
        names.push(series::series(
            series::CPU_CORE_USAGE_PERCENT,
            &[("core", core)],
        ));
    }
    for name in [
        series::MEMORY_USED_BYTES,
        series::MEMORY_TOTAL_BYTES,
        series::MEMORY_USAGE_PERCENT,
        series::SWAP_USED_BYTES,
        series::SWAP_TOTAL_BYTES,
        series::SWAP_USAGE_PERCENT,
    ] {
        names.push(name.to_string());
    }
    for interface in ["lo", "eth0", "eth1", "docker0"] {
        for name in [
            series::NETWORK_RECEIVE_BYTES_PER_SECOND,
            series::NETWORK_TRANSMIT_BYTES_PER_SECOND,
        ] {
            names.push(series::series(name, &[("interface", interface)]));
        }
    }
    for name in [
        series::DISK_USED_BYTES,
        series::DISK_TOTAL_BYTES,
        series::DISK_USAGE_PERCENT,
    ] {
        names.push(series::series(name, &[("mount", "/")]));
    }
    for name in [
        series::LOAD1,
        series::LOAD5,
        series::LOAD15,
        series::UPTIME_SECONDS,
        series::UP,
        series::LATENCY_SECONDS,
    ] {
        names.push(name.to_string());
    }
    names
}

/// One poll's readings: values that vary by device, poll and series.
fn readings(names: &[String], device: usize, round: usize) -> Metrics {
    names
        .iter()
        .enumerate()
        .map(|(k, name)| {
            let value = ((device * 31 + round * 17 + k * 7) % 1000) as f64 / 10.0;
            (name.clone(), value)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_poll_is_shaped_like_an_agent_poll() {
        let names = poll_series();
        assert_eq!(names.len(), 26);
        let mut unique = names.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), names.len());
        let start = Utc::now();
        let devices = [7, 8, 9];
        let fourth = sample(&devices, &names, 4, start).unwrap();
        assert_eq!(fourth.device_id, 8);
        assert_eq!(fourth.at, start + chrono::Duration::seconds(5));
        assert_eq!(fourth.metrics.len(), 26);
        assert!(sample(&[], &names, 0, start).is_err());
    }
}
