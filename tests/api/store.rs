//! The series store as a whole: a database of the old layout (`samples`, one row per
//! reading) is moved into it at start and reads the same; its figures through
//! `GET /api/v1/store` and `vigil store stats`.

use actix_web::http::StatusCode;
use chrono::{TimeZone, Utc};
use diesel::prelude::*;
use serde_json::json;
use vigil::db::models::NewSample;
use vigil::db::schema::samples;
use vigil::db::store::{Catalogue, NewPoll};
use vigil::db::{self, Db};
use vigil::startup::open_database;

use crate::helpers::{place, Backend, TestCluster};

crate::on_both_backends!(
    a_database_of_the_old_layout_reads_the_same_after_its_samples_move,
    the_store_tells_its_series_samples_and_bytes,
    a_history_longer_than_a_page_counts_every_poll_once,
);

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
            };
            let polls: Vec<NewPoll> = std::iter::once(first)
                .chain((0..6_001).flat_map(|i: i64| {
                    ["a", "b"].into_iter().map(move |name| NewPoll {
                        device_id: device,
                        epoch: 1,
                        at_ms: start_ms + 60_000 + i * 10,
                        readings: vec![(name.into(), i as f64)],
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
