//! The `MetricsWriter` driven directly, on a real database: samples go in batches of at
//! most `batch_samples`, a partial batch within `flush_every`, nothing is lost while
//! the database is away as long as the buffer holds, and the oldest go first when it
//! does not; a node that stops writes what its writer still held.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use actix::Actor;
use chrono::{TimeZone, Utc};
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use serde_json::json;
use vigil::actors::messages::{Sample, StateChanged};
use vigil::actors::sample_queue::SampleQueue;
use vigil::actors::writer::{Flush, MetricsWriter, WriterSettings};
use vigil::db::schema::polls;
use vigil::db::{self, Db};
use vigil::domain::{HealthState, Metrics, SharedReadings};

use crate::helpers::{eventually, placed_device, scratch, Backend, TestCluster};

crate::on_both_backends!(
    samples_are_written_in_batches_of_at_most_batch_samples,
    samples_wait_while_the_database_is_away_and_the_oldest_go_when_the_buffer_is_full,
    state_changes_are_written_as_events,
    readings_of_a_stale_epoch_are_refused_by_the_insert_and_counted,
    shared_readings_are_counted_and_bad_named_readings_left_out,
    a_monitor_whose_device_moved_on_is_stopped_by_its_refused_readings,
    a_stopped_monitor_server_writes_what_its_writer_held,
);

fn sample(device_id: i64, second: i64) -> Sample {
    let metrics: Metrics = [
        ("cpu_usage_percent".to_string(), second as f64),
        ("memory_usage_percent".to_string(), 50.0),
        (r#"disk_usage_percent{mount="/"}"#.to_string(), 10.0),
    ]
    .into_iter()
    .collect();
    Sample {
        device_id,
        epoch: 1,
        at: Utc.timestamp_opt(1_800_000_000 + second, 0).unwrap(),
        metrics,
        raw: None,
    }
}

async fn rows(db: &Db) -> i64 {
    db.run(db::store::count).await.unwrap()
}

/// The distinct poll times stored, in seconds after the first test sample.
async fn stored_seconds(db: &Db) -> Vec<i64> {
    let mut at: Vec<i64> = db
        .run(|conn| {
            polls::table
                .select(polls::at_ms)
                .distinct()
                .load::<i64>(conn)
        })
        .await
        .unwrap();
    at.sort_unstable();
    at.into_iter().map(|ms| ms / 1000 - 1_800_000_000).collect()
}

/// The stored events of a device, newest first.
async fn events_of(db: &Db, device: i64) -> Vec<vigil::db::models::Event> {
    db.run(move |conn| {
        db::events::list(
            conn,
            &db::events::EventFilter {
                device_id: Some(device),
                ..Default::default()
            },
            10,
            0,
        )
    })
    .await
    .unwrap()
}

async fn open(backend: Backend) -> (Db, vigil::db::scratch::ScratchDb) {
    let scratch = scratch(backend);
    let db = Db::open(scratch.url().clone(), 4).await.unwrap();
    (db, scratch)
}

async fn samples_are_written_in_batches_of_at_most_batch_samples(backend: Backend) {
    let (db, _scratch) = open(backend).await;
    let writer = MetricsWriter::new(
        db.clone(),
        WriterSettings {
            batch_samples: 50,
            flush_every: Duration::from_secs(3600),
            ..WriterSettings::default()
        },
    );
    let stats = writer.stats();
    let writer = writer.start();
    let (_, device) = placed_device(&db, "acme", 1).await;
    for second in 0..120 {
        writer.do_send(sample(device, second));
    }
    writer.send(Flush).await.unwrap().unwrap();
    assert_eq!(rows(&db).await, 360, "three series per sample");
    assert_eq!(stored_seconds(&db).await, (0..120).collect::<Vec<_>>());
    let batches = stats.batches.load(Ordering::Relaxed);
    assert!(
        batches >= 3,
        "120 samples in batches of 50 took {batches} batches"
    );
    let sizes = stats.batch_sizes.snapshot();
    // Bounds are 1, 10, 50, 100, …: nothing above 50.
    assert_eq!(sizes.bounds[2], 50.0);
    assert_eq!(sizes.counts[3..].iter().sum::<u64>(), 0, "{sizes:?}");
    assert_eq!(sizes.count, batches);
    assert_eq!(stats.samples_written.load(Ordering::Relaxed), 120);
    assert_eq!(stats.rows_written.load(Ordering::Relaxed), 360);
}

#[actix_rt::test]
async fn samples_left_in_the_queue_are_written_a_full_batch_at_a_time() {
    let (db, _scratch) = open(Backend::Sqlite).await;
    let queue = Arc::new(SampleQueue::new());
    let writer = MetricsWriter::new(
        db.clone(),
        WriterSettings {
            batch_samples: 50,
            flush_every: Duration::from_secs(3600),
            ..WriterSettings::default()
        },
    )
    .taking_from(Arc::clone(&queue))
    .start();
    let (_, device) = placed_device(&db, "acme", 1).await;
    // Pushed from another thread, as poll threads do.
    let pushing = Arc::clone(&queue);
    std::thread::spawn(move || {
        for second in 0..120 {
            pushing.push(sample(device, second));
        }
    })
    .join()
    .unwrap();
    // The queue tells the writer of each full batch; no flush interval passes.
    eventually("the two full batches are written", || async {
        (rows(&db).await == 300).then_some(())
    })
    .await;
    assert_eq!(stored_seconds(&db).await, (0..100).collect::<Vec<_>>());
    // The rest waits for a flush, which takes what the queue holds.
    writer.send(Flush).await.unwrap().unwrap();
    assert_eq!(stored_seconds(&db).await, (0..120).collect::<Vec<_>>());
    assert!(queue.take().samples.is_empty());
}

#[actix_rt::test]
async fn a_partial_batch_is_written_within_the_flush_interval() {
    let (db, _scratch) = open(Backend::Sqlite).await;
    let writer = MetricsWriter::new(
        db.clone(),
        WriterSettings {
            batch_samples: 1000,
            flush_every: Duration::from_millis(100),
            ..WriterSettings::default()
        },
    )
    .start();
    let (_, device) = placed_device(&db, "acme", 1).await;
    writer.do_send(sample(device, 0));
    writer.do_send(sample(device, 1));
    eventually("two samples written without a flush being asked", || {
        let db = db.clone();
        async move { (rows(&db).await == 6).then_some(()) }
    })
    .await;
}

async fn rename(db: &Db, from: &'static str, to: &'static str) {
    db.run(move |conn| conn.batch_execute(&format!("ALTER TABLE {from} RENAME TO {to}")))
        .await
        .unwrap();
}

async fn samples_wait_while_the_database_is_away_and_the_oldest_go_when_the_buffer_is_full(
    backend: Backend,
) {
    let (db, _scratch) = open(backend).await;
    let writer = MetricsWriter::new(
        db.clone(),
        WriterSettings {
            batch_samples: 5,
            flush_every: Duration::from_millis(50),
            // Three rows a sample: ten samples.
            max_buffered_rows: 30,
            max_buffered_events: 10,
        },
    );
    let stats = writer.stats();
    let writer = writer.start();
    let (_, device) = placed_device(&db, "acme", 1).await;
    // The table is away: every write fails, as with a database that is down.
    rename(&db, "polls", "polls_away").await;
    for second in 0..25 {
        writer.do_send(sample(device, second));
    }
    eventually("a write fails", || {
        let failed = stats.failed_writes.load(Ordering::Relaxed);
        async move { (failed >= 1).then_some(()) }
    })
    .await;
    let flushed = writer.send(Flush).await.unwrap();
    assert!(
        flushed.is_err(),
        "a flush while the table is away reports the failure"
    );
    assert_eq!(stats.dropped_samples.load(Ordering::Relaxed), 15);
    assert_eq!(stats.buffered_samples.load(Ordering::Relaxed), 10);
    assert_eq!(stats.buffered_rows.load(Ordering::Relaxed), 30);
    rename(&db, "polls_away", "polls").await;
    eventually(
        "the held samples are written once the table is back",
        || {
            let db = db.clone();
            async move { (rows(&db).await == 30).then_some(()) }
        },
    )
    .await;
    assert_eq!(
        stored_seconds(&db).await,
        (15..25).collect::<Vec<_>>(),
        "the newest ten were kept"
    );
    assert_eq!(stats.dropped_samples.load(Ordering::Relaxed), 15);
    assert_eq!(stats.buffered_samples.load(Ordering::Relaxed), 0);
    // Every series keeps its name: what the failed writes put in the catalogue was
    // rolled back with them, and the writer forgot it.
    let latest = db
        .run(move |conn| db::store::latest(conn, device))
        .await
        .unwrap();
    let mut names: Vec<String> = latest.into_iter().map(|r| r.metric).collect();
    names.sort();
    let mut expected: Vec<String> = sample(device, 0).metrics.into_keys().collect();
    expected.sort();
    assert_eq!(names, expected);
}

async fn state_changes_are_written_as_events(backend: Backend) {
    let (db, _scratch) = open(backend).await;
    let writer = MetricsWriter::new(db.clone(), WriterSettings::default()).start();
    let at = Utc.timestamp_opt(1_800_000_000, 0).unwrap();
    let (company, device) = placed_device(&db, "acme", 2).await;
    writer.do_send(StateChanged {
        device_id: device,
        company_id: company,
        epoch: 2,
        from: HealthState::Normal,
        to: HealthState::Critical,
        at,
        reason: "cpu_usage_percent is 95.0, above the critical threshold 90".into(),
    });
    writer.send(Flush).await.unwrap().unwrap();
    let events = events_of(&db, device).await;
    assert_eq!(events.len(), 1);
    let e = &events[0];
    assert_eq!((e.company_id, e.epoch), (company, 2));
    assert_eq!(
        (e.from_state.as_str(), e.to_state.as_str()),
        ("normal", "critical")
    );
    assert_eq!(e.at.and_utc(), at);
    assert!(e.reason.contains("above the critical threshold"));
}

async fn shared_readings_are_counted_and_bad_named_readings_left_out(backend: Backend) {
    let (db, _scratch) = open(backend).await;
    let writer = MetricsWriter::new(db.clone(), WriterSettings::default());
    let stats = writer.stats();
    let writer = writer.start();
    let (_, device) = placed_device(&db, "acme", 2).await;
    // More shared readings than named ones, as a node_exporter's are.
    let names: Arc<[Box<str>]> = (0..8)
        .map(|n| format!("node_filler{{n=\"{n}\"}}").into_boxed_str())
        .chain([
            "node_load1".into(),
            "node_cpu_seconds_total{cpu=\"0\",mode=\"idle\"}".into(),
            "node_hwmon_temp{chip=\"x\"}".into(),
        ])
        .collect();
    let poll = |epoch: i64, second: i64| {
        let mut sample = sample(device, second);
        sample.epoch = epoch;
        // A value a device should never send, and a name with control characters.
        sample.metrics.insert("nan".into(), f64::NAN);
        sample.metrics.insert("inf".into(), f64::INFINITY);
        sample
            .metrics
            .insert("rx{interface=\"eth\u{0}\n\"}".into(), 5.0);
        sample.raw = Some(SharedReadings {
            names: Arc::clone(&names),
            values: (0..8)
                .map(f64::from)
                .chain([0.5, 1234.0, f64::NAN])
                .collect(),
        });
        sample
    };
    writer.do_send(poll(2, 0));
    writer.do_send(poll(2, 1));
    // A monitor the device has moved away from.
    writer.do_send(poll(1, 2));
    writer.send(Flush).await.unwrap().unwrap();
    // Per poll: three named series, the cleaned name, ten of the eleven shared.
    assert_eq!(rows(&db).await, 2 * 14);
    assert_eq!(stats.rows_written.load(Ordering::Relaxed), 2 * 14);
    assert_eq!(stats.stale_rows.load(Ordering::Relaxed), 14);
    let latest = db
        .run(move |conn| db::store::latest(conn, device))
        .await
        .unwrap();
    let names: Vec<&str> = latest.iter().map(|r| r.metric.as_str()).collect();
    assert_eq!(
        names,
        [
            "cpu_usage_percent",
            r#"disk_usage_percent{mount="/"}"#,
            "memory_usage_percent",
            r#"node_cpu_seconds_total{cpu="0",mode="idle"}"#,
            r#"node_filler{n="0"}"#,
            r#"node_filler{n="1"}"#,
            r#"node_filler{n="2"}"#,
            r#"node_filler{n="3"}"#,
            r#"node_filler{n="4"}"#,
            r#"node_filler{n="5"}"#,
            r#"node_filler{n="6"}"#,
            r#"node_filler{n="7"}"#,
            "node_load1",
            r#"rx{interface="eth??"}"#,
        ]
    );
}

async fn readings_of_a_stale_epoch_are_refused_by_the_insert_and_counted(backend: Backend) {
    let (db, _scratch) = open(backend).await;
    let writer = MetricsWriter::new(db.clone(), WriterSettings::default());
    let stats = writer.stats();
    let writer = writer.start();
    let (company, device) = placed_device(&db, "acme", 2).await;
    let change = |epoch| StateChanged {
        device_id: device,
        company_id: company,
        epoch,
        from: HealthState::Normal,
        to: HealthState::Alert,
        at: Utc.timestamp_opt(1_800_000_000, 0).unwrap(),
        reason: format!("judged under epoch {epoch}"),
    };
    // Epoch 1 is a monitor the device has moved away from; 3 is one whose start is not
    // recorded yet: neither is the device's epoch now.
    for epoch in [1, 2, 3] {
        writer.do_send(Sample {
            epoch,
            ..sample(device, epoch)
        });
        writer.do_send(change(epoch));
    }
    writer.send(Flush).await.unwrap().unwrap();
    assert_eq!(stored_seconds(&db).await, vec![2], "only epoch 2 is stored");
    assert_eq!(stats.rows_written.load(Ordering::Relaxed), 3);
    assert_eq!(stats.stale_rows.load(Ordering::Relaxed), 6);
    assert_eq!(stats.events_written.load(Ordering::Relaxed), 1);
    assert_eq!(stats.stale_events.load(Ordering::Relaxed), 2);
    let events = events_of(&db, device).await;
    let reasons: Vec<&str> = events.iter().map(|e| e.reason.as_str()).collect();
    assert_eq!(reasons, vec!["judged under epoch 2"]);
    // The statement itself refuses them, whoever calls it.
    let stale = vec![vigil::db::store::NewPoll {
        device_id: device,
        epoch: 1,
        at_ms: 1,
        readings: vec![("up".into(), 1.0)],
        shared: None,
    }];
    let stored = db
        .run(move |conn| {
            db::store::write(conn, &mut vigil::db::store::Catalogue::default(), &stale)
        })
        .await
        .unwrap();
    assert_eq!((stored.polls, stored.stale), (0, vec![(device, 1)]));
}

async fn a_monitor_whose_device_moved_on_is_stopped_by_its_refused_readings(backend: Backend) {
    let mut cluster = TestCluster::spawn(backend, 0).await;
    cluster
        .add_server_with_writer(WriterSettings {
            flush_every: Duration::from_millis(100),
            ..WriterSettings::default()
        })
        .await;
    let company = cluster.company("acme").await;
    let device = cluster
        .device_at(company, "web", &cluster.fleet.url("/d/web"))
        .await;
    cluster.start_device(device).await;
    eventually("readings stored", || async {
        let stored = cluster.db.run(db::store::count).await.unwrap();
        (stored > 0).then_some(())
    })
    .await;
    // Another coordinator placed the device elsewhere meanwhile (a later epoch), and
    // could not reach this server to stop its copy.
    cluster
        .db
        .run(move |conn| {
            use vigil::db::schema::assignments;
            diesel::update(assignments::table.find(device))
                .set(assignments::epoch.eq(assignments::epoch + 1))
                .execute(conn)
        })
        .await
        .unwrap();
    eventually("the stale monitor stopped", || async {
        cluster.running(0).await.is_empty().then_some(())
    })
    .await;
    let metrics = cluster.server_text(0, "/metrics").await;
    let stale: f64 = metrics
        .lines()
        .find(|line| line.starts_with("vigil_writer_stale_rows_total{"))
        .and_then(|line| line.rsplit(' ').next()?.parse().ok())
        .unwrap_or_default();
    assert!(stale >= 1.0, "{metrics}");
}

async fn a_stopped_monitor_server_writes_what_its_writer_held(backend: Backend) {
    let mut cluster = TestCluster::spawn(backend, 0).await;
    // A writer that writes only when asked to: nothing is stored while the server runs.
    cluster
        .add_server_with_writer(WriterSettings {
            batch_samples: 100_000,
            flush_every: Duration::from_secs(3600),
            ..WriterSettings::default()
        })
        .await;
    let company = cluster.company("acme").await;
    let device = cluster
        .device_at(company, "web", &cluster.fleet.url("/d/web"))
        .await;
    cluster.start_device(device).await;
    eventually("a few polls", || async {
        let answer = cluster.get(&format!("/api/v1/devices/{device}")).await;
        (answer.body["monitoring"]["polls"].as_u64()? >= 3).then_some(())
    })
    .await;
    assert_eq!(cluster.db.run(db::store::count).await.unwrap(), 0);
    // The server's run ends by flushing its writer.
    cluster.stop_server(0).await;
    eventually("samples stored after the stop", || async {
        let stored = cluster.db.run(db::store::count).await.unwrap();
        (stored >= 3 * 2).then_some(())
    })
    .await;
    let answer = cluster
        .get(&format!("/api/v1/devices/{device}/metrics/latest"))
        .await;
    assert_eq!(answer.body["metrics"]["up"], json!(1.0), "{answer:?}");
    assert!(
        answer.body["metrics"]["latency_seconds"].as_f64().is_some(),
        "{answer:?}"
    );
}
