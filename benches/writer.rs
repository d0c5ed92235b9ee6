//! Metrics writer and history queries on one machine: the `MetricsWriter` of a monitor
//! server fed samples shaped like agent polls, then the history query over a week of one
//! device.
//!
//! Measures, on a fresh database:
//! - write throughput: `SAMPLES` samples of N devices (default 1000), 26 series each,
//!   sent to one writer with default settings, then `Flush`; samples and rows per second
//!   from the first send to the flush's answer, the batches the writer made, what it
//!   dropped, and how many devices that rate keeps up with;
//! - history latency: one device with 7 days of polls every 5 s (3.1M rows, inserted
//!   in big transactions), `db::samples::history` over 15 min, 24 h and 7 days at 300
//!   points, all series and one series, median of `HISTORY_RUNS`.
//!
//! The sender keeps at most `MAX_BACKLOG_ROWS` rows unwritten, so it runs as fast as the
//! writer takes samples without outgrowing the writer's bounded buffer (which would drop
//! the oldest, as it does when the database is away). Pass `burst` to send everything
//! at once instead.
//!
//! Run: `cargo bench --bench writer` (SQLite), or with `-- 2000` for another N.
//! Set `VIGIL_BENCH_DATABASE_URL=postgres://…` to run on PostgreSQL instead.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use actix::Actor;
use chrono::Utc;
use diesel::connection::SimpleConnection;
use vigil::actors::messages::Sample;
use vigil::actors::writer::{Flush, MetricsWriter, WriterSettings};
use vigil::db::models::NewSample;
use vigil::db::scratch::ScratchDb;
use vigil::db::{self, Db, DbConn};
use vigil::domain::Metrics;
use vigil::metrics::series;

const DEFAULT_DEVICES: usize = 1000;
/// Samples (polls) sent to the writer.
const SAMPLES: usize = 50_000;
/// Rows sent but not yet written at most while sending paced; a quarter of the
/// writer's default buffer bound.
const MAX_BACKLOG_ROWS: u64 = 250_000;
/// The poll interval the figures are put in terms of.
const POLL_INTERVAL: Duration = Duration::from_secs(5);
/// The week of history of one device, one poll per `POLL_INTERVAL`.
const HISTORY_DAYS: i64 = 7;
/// Polls inserted per transaction while building the history.
const FILL_POLLS_PER_TRANSACTION: usize = 4_000;
/// Timed runs of each history query, after one untimed.
const HISTORY_RUNS: usize = 7;
/// Buckets a history query asks for (the API's default).
const POINTS: i64 = 300;
/// The limit the history endpoint passes: its `MAX_ANSWER_POINTS` + 1.
const ANSWER_LIMIT: i64 = 200_001;

/// `count` devices of one company, each placed (on no server) under epoch 1; their ids.
fn placed_devices(conn: &mut DbConn, count: usize) -> diesel::QueryResult<Vec<i64>> {
    use diesel::prelude::*;
    use vigil::db::schema::assignments;
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

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let devices = args
        .iter()
        .find_map(|a| a.parse::<usize>().ok())
        .unwrap_or(DEFAULT_DEVICES);
    let burst = args.iter().any(|a| a == "burst");
    let scratch = match std::env::var("VIGIL_BENCH_DATABASE_URL") {
        Ok(url) => ScratchDb::postgres(&url)?,
        Err(_) => ScratchDb::sqlite(),
    };
    actix_rt::System::new().block_on(run(scratch, devices, burst))
}

async fn run(
    scratch: ScratchDb,
    devices: usize,
    burst: bool,
) -> Result<(), Box<dyn std::error::Error>> {
    let backend = match scratch.url() {
        vigil::db::DbUrl::Sqlite(_) => "sqlite",
        vigil::db::DbUrl::Postgres(_) => "postgres",
    };
    let db = Db::open(scratch.url().clone(), 8).await?;
    // The writer stores only what is reported under a device's current epoch: every
    // device (and the one whose history is built) is placed under epoch 1.
    let ids = db
        .run(move |conn| placed_devices(conn, devices + 1))
        .await?;
    let names = poll_series();
    println!(
        "# writer bench: {devices} devices, {SAMPLES} samples of {} series, {backend}, {}",
        names.len(),
        if burst { "burst" } else { "paced" }
    );

    // Write throughput.
    let now = Utc::now();
    let interval = chrono::Duration::from_std(POLL_INTERVAL)?;
    let samples: Vec<Sample> = (0..SAMPLES)
        .map(|n| {
            let (round, device) = (n / devices, n % devices);
            Sample {
                device_id: ids[device],
                epoch: 1,
                at: now + interval * round as i32,
                metrics: poll(&names, device, round),
            }
        })
        .collect();
    let rows_sent: u64 = samples.iter().map(|s| s.metrics.len() as u64).sum();
    let writer = MetricsWriter::new(db.clone(), WriterSettings::default());
    let stats = writer.stats();
    let writer = writer.start();
    let began = Instant::now();
    let mut sent_rows: u64 = 0;
    for sample in samples {
        if !burst {
            while sent_rows.saturating_sub(stats.rows_written.load(Ordering::Relaxed))
                > MAX_BACKLOG_ROWS
            {
                actix_rt::time::sleep(Duration::from_millis(1)).await;
            }
        }
        sent_rows += sample.metrics.len() as u64;
        writer.do_send(sample);
    }
    writer
        .send(Flush)
        .await?
        .map_err(|e| format!("flush failed: {e}"))?;
    let elapsed = began.elapsed();
    let batches = stats.batches.load(Ordering::Relaxed);
    let written = stats.samples_written.load(Ordering::Relaxed);
    let rows = stats.rows_written.load(Ordering::Relaxed);
    let dropped = stats.dropped_samples.load(Ordering::Relaxed);
    let samples_per_s = written as f64 / elapsed.as_secs_f64();
    let interval_s = POLL_INTERVAL.as_secs_f64();
    println!();
    println!("| write ({SAMPLES} samples, {rows_sent} rows sent) | {backend} |");
    println!("|---|---|");
    println!("| wall time, first send to Flush answered | {elapsed:.2?} |");
    println!("| samples/s written | {samples_per_s:.0} |");
    println!(
        "| rows/s written | {:.0} |",
        rows as f64 / elapsed.as_secs_f64()
    );
    println!(
        "| batches (mean samples per batch) | {batches} ({:.1}) |",
        written as f64 / batches.max(1) as f64
    );
    println!("| samples dropped | {dropped} |");
    println!(
        "| devices sustained at a {interval_s:.0} s interval | {:.0} ({devices} need {:.0} samples/s, {:.1}% of it) |",
        samples_per_s * interval_s,
        devices as f64 / interval_s,
        100.0 * devices as f64 / interval_s / samples_per_s
    );

    // History: a week of one device.
    let device = ids[devices];
    let step_ms = POLL_INTERVAL.as_millis() as i64;
    let polls = (HISTORY_DAYS * 86_400_000 / step_ms) as usize;
    let end_ms = now.timestamp_millis() - 60_000;
    let start_ms = end_ms - polls as i64 * step_ms;
    let began = Instant::now();
    let mut filled = 0;
    for first in (0..polls).step_by(FILL_POLLS_PER_TRANSACTION) {
        let last = (first + FILL_POLLS_PER_TRANSACTION).min(polls);
        let names = names.clone();
        filled += db
            .run(move |conn| {
                let rows: Vec<NewSample> = (first..last)
                    .flat_map(|p| {
                        poll(&names, devices, p)
                            .into_iter()
                            .map(move |(metric, value)| NewSample {
                                device_id: device,
                                epoch: 1,
                                at_ms: start_ms + p as i64 * step_ms,
                                metric,
                                value,
                            })
                    })
                    .collect();
                db::write_transaction(conn, |conn| db::samples::insert_current(conn, &rows))
            })
            .await?;
    }
    let fill = began.elapsed();
    if backend == "postgres" {
        // What autovacuum would have done by then in a running deployment.
        db.run(|conn| match conn {
            DbConn::Pg(c) => c.batch_execute("ANALYZE samples"),
            DbConn::Sqlite(_) => Ok(()),
        })
        .await?;
    }
    let total = db.run(db::samples::count).await?;
    println!();
    println!(
        "history: device {device}, {polls} polls over {HISTORY_DAYS} days, {filled} rows inserted in {fill:.1?} \
         ({:.0} rows/s, {FILL_POLLS_PER_TRANSACTION} polls per transaction); {total} rows in the table",
        filled as f64 / fill.as_secs_f64()
    );
    println!();
    println!("| history, {POINTS} points | series | buckets | median | range |");
    println!("|---|---|---|---|---|");
    let ranges = [
        ("15 min", 15 * 60_000),
        ("24 h", 86_400_000),
        ("7 days", HISTORY_DAYS * 86_400_000),
    ];
    let filters: [(&str, Vec<String>); 2] = [
        ("all", Vec::new()),
        (
            series::CPU_USAGE_PERCENT,
            vec![series::CPU_USAGE_PERCENT.to_string()],
        ),
    ];
    for (label, range_ms) in ranges {
        for (filter_label, filter) in &filters {
            let from_ms = end_ms - range_ms;
            // As the endpoint does: round up, so `POINTS` buckets cover the range.
            let width_ms = (range_ms + POINTS - 1) / POINTS;
            let mut times = Vec::with_capacity(HISTORY_RUNS);
            let mut buckets = 0;
            for run in 0..=HISTORY_RUNS {
                let filter = filter.clone();
                let began = Instant::now();
                let answer = db
                    .run(move |conn| {
                        db::samples::history(
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
            times.sort();
            println!(
                "| {label} | {filter_label} | {buckets} | {:.1?} | {:.1?}–{:.1?} |",
                median(&times),
                times.first().copied().unwrap_or_default(),
                times.last().copied().unwrap_or_default()
            );
        }
    }
    Ok(())
}

/// The series of one agent poll: CPU (total and 2 cores), memory, swap, 4 interfaces,
/// one disk, load, uptime, and the `up` and `latency_seconds` of every poll.
fn poll_series() -> Vec<String> {
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
fn poll(names: &[String], device: usize, round: usize) -> Metrics {
    names
        .iter()
        .enumerate()
        .map(|(k, name)| {
            let value = ((device * 31 + round * 17 + k * 7) % 1000) as f64 / 10.0;
            (name.clone(), value)
        })
        .collect()
}

fn median(sorted: &[Duration]) -> Duration {
    sorted.get(sorted.len() / 2).copied().unwrap_or_default()
}
