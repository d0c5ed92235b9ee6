//! The series store as a whole: a database of the old layout (`samples`, one row per
//! reading) is moved into it at start and reads the same; its figures through
//! `GET /api/v1/store` and `vigil store stats`.

use std::collections::BTreeMap;
use std::sync::Arc;

use actix_web::http::StatusCode;
use chrono::{TimeZone, Utc};
use diesel::prelude::*;
use serde_json::json;
use vigil::db::models::NewSample;
use vigil::db::schema::{polls, samples};
use vigil::db::store::{catalogue, codec, Catalogue, NewPoll};
use vigil::db::{self, Db};
use vigil::domain::SharedReadings;
use vigil::startup::open_database;

use crate::helpers::{place, Backend, TestCluster};

crate::on_both_backends!(
    shared_readings_are_stored_as_the_same_named_readings_are,
    a_database_of_the_old_layout_reads_the_same_after_its_samples_move,
    the_store_tells_its_series_samples_and_bytes,
    a_history_longer_than_a_page_counts_every_poll_once,
);

/// Every stored poll of `device`, oldest first: its time and its readings by name.
async fn stored_polls(db: &Db, device: i64) -> Vec<(i64, BTreeMap<String, f64>)> {
    db.run(move |conn| {
        let rows: Vec<(i64, Vec<u8>)> = polls::table
            .filter(polls::device_id.eq(device))
            .order(polls::at_ms)
            .select((polls::at_ms, polls::data))
            .load(conn)?;
        let decoded: Vec<(i64, Vec<(i64, f64)>)> = rows
            .into_iter()
            .map(|(at, data)| (at, codec::decode(&data).unwrap()))
            .collect();
        let ids: Vec<i64> = decoded
            .iter()
            .flat_map(|(_, r)| r.iter().map(|(id, _)| *id))
            .collect();
        let names = catalogue::names_of(conn, &ids)?;
        Ok(decoded
            .into_iter()
            .map(|(at, readings)| {
                let named = readings.into_iter().map(|(id, v)| (names[&id].clone(), v));
                (at, named.collect())
            })
            .collect())
    })
    .await
    .unwrap()
}

async fn series_of(db: &Db, device: i64) -> i64 {
    db.run(move |conn| {
        vigil::db::schema::series::table
            .filter(vigil::db::schema::series::device_id.eq(device))
            .count()
            .get_result(conn)
    })
    .await
    .unwrap()
}

async fn shared_readings_are_stored_as_the_same_named_readings_are(backend: Backend) {
    let cluster = TestCluster::spawn(backend, 0).await;
    let company = cluster.company("acme").await;
    let (shared_device, named_device) = (
        cluster.device(company, "shared").await,
        cluster.device(company, "named").await,
    );
    place(&cluster.db, shared_device, 1).await;
    place(&cluster.db, named_device, 1).await;
    let first: Arc<[Box<str>]> = ["node_a", "node_b{x=\"1\"}", "ctl\u{1}x", "node_c"]
        .map(Box::from)
        .into();
    let second: Arc<[Box<str>]> = ["node_a", "node_d"].map(Box::from).into();
    // Polls 0-5 with the first list, 6 with the second, 7 with the first again (after
    // the second took its place in the same batch); NaN is no reading, and a named
    // reading wins over a shared one of the same name.
    let shared: Vec<SharedReadings> = (0..8)
        .map(|i| {
            let i = i as f64;
            match i as i64 {
                6 => SharedReadings {
                    names: Arc::clone(&second),
                    values: vec![i, -i],
                },
                _ => SharedReadings {
                    names: Arc::clone(&first),
                    values: vec![i, i * 2.0, 5.0, if i == 2.0 { f64::NAN } else { 0.25 }],
                },
            }
        })
        .collect();
    let named = |i: usize| {
        vec![
            ("cpu_usage_percent".into(), i as f64),
            ("node_a".into(), 99.0),
        ]
    };
    let at = |i: usize| 1_800_000_000_000 + i as i64 * 1000;
    cluster
        .db
        .run(move |conn| {
            let shared_polls: Vec<NewPoll> = shared
                .iter()
                .enumerate()
                .map(|(i, readings)| NewPoll {
                    device_id: shared_device,
                    epoch: 1,
                    at_ms: at(i),
                    readings: named(i),
                    shared: Some(readings),
                })
                .collect();
            let named_polls: Vec<NewPoll> = shared
                .iter()
                .enumerate()
                .map(|(i, readings)| NewPoll {
                    device_id: named_device,
                    epoch: 1,
                    at_ms: at(i),
                    readings: named(i)
                        .into_iter()
                        .chain(readings.iter().map(|(n, v)| (n.into(), v)))
                        .collect(),
                    shared: None,
                })
                .collect();
            // One writer's catalogue over two batches, as a writer keeps it.
            let mut catalogue = Catalogue::default();
            db::store::write(conn, &mut catalogue, &shared_polls[..3])?;
            db::store::write(conn, &mut catalogue, &shared_polls[3..])?;
            db::store::write(conn, &mut Catalogue::default(), &named_polls)
        })
        .await
        .unwrap();

    let stored = stored_polls(&cluster.db, shared_device).await;
    assert_eq!(stored, stored_polls(&cluster.db, named_device).await);
    assert_eq!(stored.len(), 8);
    let (_, poll) = &stored[0];
    assert_eq!(
        poll,
        &[
            ("cpu_usage_percent", 0.0),
            ("ctl?x", 5.0),
            ("node_a", 99.0),
            ("node_b{x=\"1\"}", 0.0),
            ("node_c", 0.25)
        ]
        .map(|(n, v)| (n.to_string(), v))
        .into_iter()
        .collect::<BTreeMap<_, _>>()
    );
    assert!(!stored[2].1.contains_key("node_c"), "NaN is no reading");
    assert_eq!(stored[6].1.get("node_d"), Some(&-6.0));
    assert_eq!(stored[7].1.get("node_b{x=\"1\"}"), Some(&14.0));
    // Every series of the device has its row: four of the first list, node_d, cpu.
    assert_eq!(series_of(&cluster.db, shared_device).await, 6);
    assert_eq!(series_of(&cluster.db, named_device).await, 6);
}

async fn old_rows(db: &Db) -> i64 {
    db.run(|conn| samples::table.count().get_result(conn))
        .await
        .unwrap()
}

async fn a_database_of_the_old_layout_reads_the_same_after_its_samples_move(backend: Backend) {
    let cluster = TestCluster::spawn(backend, 0).await;
    let company = cluster.company("acme").await;
    let device = cluster.device(company, "web").await;
    let start_ms = Utc
        .with_ymd_and_hms(2026, 11, 23, 10, 0, 0)
        .unwrap()
        .timestamp_millis();
    // What a node of the previous version wrote: 40 polls of two series, a row each
    // reading, under epochs 1 then 2 (the device moved once).
    let rows: Vec<NewSample> = (0..40)
        .flat_map(|i: i64| {
            let epoch = if i < 20 { 1 } else { 2 };
            [("cpu_usage_percent", i as f64), ("up", 1.0)]
                .into_iter()
                .map(move |(metric, value)| NewSample {
                    device_id: device,
                    epoch,
                    at_ms: start_ms + i * 1000,
                    metric: metric.to_string(),
                    value,
                })
        })
        .collect();
    cluster
        .db
        .run(move |conn| match conn {
            db::DbConn::Pg(c) => diesel::insert_into(samples::table).values(&rows).execute(c),
            db::DbConn::Sqlite(c) => diesel::insert_into(samples::table).values(&rows).execute(c),
        })
        .await
        .unwrap();
    assert_eq!(old_rows(&cluster.db).await, 80);

    // The next start moves them.
    let reopened = open_database(cluster.db.url().clone(), 2).await.unwrap();
    assert_eq!(old_rows(&reopened).await, 0);
    assert_eq!(reopened.run(db::store::count).await.unwrap(), 80);
    // And the one after finds nothing left to move.
    let again = open_database(cluster.db.url().clone(), 2).await.unwrap();
    assert_eq!(again.run(db::store::count).await.unwrap(), 80);

    let answer = cluster
        .get(&format!(
            "/api/v1/devices/{device}/metrics?from=2026-11-23T10:00:00Z&to=2026-11-23T10:00:40Z&points=4&metric=cpu_usage_percent"
        ))
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    let points = answer.body["series"][0]["points"].as_array().unwrap();
    assert_eq!(points.len(), 4, "{answer:?}");
    for (k, point) in points.iter().enumerate() {
        let k = k as f64;
        assert_eq!(point["min"], json!(10.0 * k));
        assert_eq!(point["max"], json!(10.0 * k + 9.0));
        assert_eq!(point["avg"], json!(10.0 * k + 4.5));
        assert_eq!(point["count"], 10);
    }
    let latest = cluster
        .get(&format!("/api/v1/devices/{device}/metrics/latest"))
        .await;
    assert_eq!(latest.status, StatusCode::OK, "{latest:?}");
    assert_eq!(latest.body["at"], json!("2026-11-23T10:00:39Z"));
    assert_eq!(
        latest.body["metrics"],
        json!({"cpu_usage_percent": 39.0, "up": 1.0})
    );
}

/// Stores 60 polls of `names` for `device`, one a second from `start_ms`.
async fn store_polls(db: &Db, device: i64, names: &'static [&'static str], start_ms: i64) {
    place(db, device, 1).await;
    db.run(move |conn| {
        let polls: Vec<NewPoll> = (0..60)
            .map(|i: i64| NewPoll {
                device_id: device,
                epoch: 1,
                at_ms: start_ms + i * 1000,
                readings: names
                    .iter()
                    .map(|n| ((*n).into(), i as f64 * 1.5))
                    .collect(),
                shared: None,
            })
            .collect();
        db::store::write(conn, &mut Catalogue::default(), &polls)
    })
    .await
    .unwrap();
}

async fn the_store_tells_its_series_samples_and_bytes(backend: Backend) {
    let cluster = TestCluster::spawn(backend, 0).await;
    let company = cluster.company("acme").await;
    let web = cluster.device(company, "web").await;
    let db_device = cluster.device(company, "db").await;
    let start_ms = Utc
        .with_ymd_and_hms(2026, 11, 23, 10, 0, 0)
        .unwrap()
        .timestamp_millis();
    store_polls(&cluster.db, web, &["cpu_usage_percent", "up"], start_ms).await;
    store_polls(
        &cluster.db,
        db_device,
        &["cpu_usage_percent"],
        start_ms + 500,
    )
    .await;

    let answer = cluster.get("/api/v1/store").await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    let body = &answer.body;
    assert_eq!(body["series"], 3, "{body}");
    assert_eq!(body["series_names"], 2, "{body}");
    assert_eq!(body["old_layout_samples"], 0, "{body}");
    let raw = &body["tiers"][0];
    assert_eq!(raw["tier"], "raw");
    assert_eq!(raw["polls"], 120, "{body}");
    assert_eq!(raw["samples"], 180, "{body}");
    assert_eq!(raw["oldest"], json!("2026-11-23T10:00:00Z"));
    assert_eq!(raw["newest"], json!("2026-11-23T10:00:59.500Z"));
    let bytes = raw["bytes"].as_f64().unwrap();
    assert!(bytes > 0.0, "{body}");
    assert_eq!(raw["bytes_per_sample"].as_f64().unwrap(), bytes / 180.0);
    assert!(body["latest_bytes"].as_i64().unwrap() > 0, "{body}");
    assert!(body["catalogue_bytes"].as_i64().unwrap() > 0, "{body}");

    if backend == Backend::Sqlite {
        // The same figures from the command line.
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_vigil"))
            .args(["store", "stats", "--db", &cluster.db.url().to_string()])
            .env_remove("VIGIL_DB")
            .env_remove("VIGIL_CONFIG")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{output:?}");
        assert!(
            stdout.starts_with("series: 3 (2 distinct names"),
            "{stdout}"
        );
        let raw_line = stdout
            .lines()
            .find(|l| l.starts_with("raw "))
            .unwrap_or_else(|| panic!("{stdout}"));
        let fields: Vec<&str> = raw_line.split_whitespace().collect();
        assert_eq!(&fields[1..3], &["120", "180"], "{stdout}");
        assert!(raw_line.contains("2026-11-23 10:00:00 UTC"), "{stdout}");
    }
}

async fn a_history_longer_than_a_page_counts_every_poll_once(backend: Backend) {
    let cluster = TestCluster::spawn(backend, 0).await;
    let company = cluster.company("acme").await;
    let device = cluster.device(company, "web").await;
    let start_ms = 1_800_000_000_000;
    // One poll of `c`, then 6,001 instants each stored as two polls of one series:
    // the history reads 5,000 rows a page, so a page ends between the two rows of an
    // instant.
    store_polls(&cluster.db, device, &["a"], start_ms).await;
    cluster
        .db
        .run(move |conn| {
            let first = NewPoll {
                device_id: device,
                epoch: 1,
                at_ms: start_ms + 60_000,
                readings: vec![("c".into(), 7.0)],
                shared: None,
            };
            let polls: Vec<NewPoll> = std::iter::once(first)
                .chain((0..6_001).flat_map(|i: i64| {
                    ["a", "b"].into_iter().map(move |name| NewPoll {
                        device_id: device,
                        epoch: 1,
                        at_ms: start_ms + 60_000 + i * 10,
                        readings: vec![(name.into(), i as f64)],
                        shared: None,
                    })
                }))
                .collect();
            db::store::write(conn, &mut Catalogue::default(), &polls)
        })
        .await
        .unwrap();
    let buckets = cluster
        .db
        .run(move |conn| {
            db::store::history(
                conn,
                device,
                (start_ms + 60_000, start_ms + 60_000 + 60_010, 60_010),
                &[],
                100,
            )
        })
        .await
        .unwrap();
    let summary: Vec<(String, i64, f64, f64)> = buckets
        .into_iter()
        .map(|b| (b.metric, b.count, b.min, b.max))
        .collect();
    assert_eq!(
        summary,
        vec![
            ("a".to_string(), 6_001, 0.0, 6_000.0),
            ("b".to_string(), 6_001, 0.0, 6_000.0),
            ("c".to_string(), 1, 7.0, 7.0)
        ]
    );
}
