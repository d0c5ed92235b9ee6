//! A database of the old layout (`samples`, one row per reading) is moved into the
//! series store at start, and its history, latest poll and counts read the same.

use actix_web::http::StatusCode;
use chrono::{TimeZone, Utc};
use diesel::prelude::*;
use serde_json::json;
use vigil::db::models::NewSample;
use vigil::db::schema::samples;
use vigil::db::{self, Db};
use vigil::startup::open_database;

use crate::helpers::{Backend, TestCluster};

crate::on_both_backends!(a_database_of_the_old_layout_reads_the_same_after_its_samples_move,);

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
