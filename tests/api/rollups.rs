//! Rollups: minutes and hours made from the polls read the same as the polls, a
//! history reads them for long ranges with the polls no tier holds yet, and each tier
//! goes after its own retention.

use actix_web::http::StatusCode;
use chrono::Utc;
use diesel::prelude::*;
use serde_json::json;
use vigil::actors::retention::{Prune, Roll};
use vigil::db::schema::rollups;
use vigil::db::store::rollup::{self, Tier};
use vigil::db::store::{Bucket, Catalogue, NewPoll};
use vigil::db::{self, Db};

use crate::helpers::{assert_error, place, Backend, TestCluster};

crate::on_both_backends!(
    long_ranges_read_from_rollups_the_same_as_from_polls,
    each_tier_is_kept_for_its_own_retention,
);

const MINUTE: i64 = 60_000;
const HOUR: i64 = 3_600_000;

/// Stores a poll every `every_ms` in `[start_ms, end_ms)`: a wandering gauge with
/// fractions, a growing counter and `up`.
pub async fn store_polls(db: &Db, device: i64, (start_ms, end_ms): (i64, i64), every_ms: i64) {
    db.run(move |conn| {
        let polls: Vec<NewPoll> = (0..)
            .map(|i: i64| start_ms + i * every_ms)
            .take_while(|at| *at < end_ms)
            .enumerate()
            .map(|(i, at_ms)| NewPoll {
                device_id: device,
                epoch: 1,
                at_ms,
                readings: vec![
                    ("cpu_usage_percent".into(), (i % 97) as f64 * 0.37),
                    ("network_received_bytes_total".into(), (i * 1_500) as f64),
                    ("up".into(), 1.0),
                ],
                shared: None,
            })
            .collect();
        db::store::write(conn, &mut Catalogue::default(), &polls)
    })
    .await
    .unwrap();
}

pub async fn history(db: &Db, device: i64, range: (i64, i64, i64)) -> Vec<Bucket> {
    db.run(move |conn| db::store::history(conn, device, range, &[], 100_000))
        .await
        .unwrap()
}

/// Rolls up until nothing closed is left.
pub async fn roll_all(db: &Db) {
    for _ in 0..100 {
        let rolled = db
            .run(|conn| rollup::roll(conn, Utc::now().timestamp_millis()))
            .await
            .unwrap();
        if !rolled.behind {
            return;
        }
    }
    panic!("the rollups never caught up");
}

async fn rows_of(db: &Db, tier: Tier, device: i64) -> i64 {
    db.run(move |conn| {
        rollups::table
            .filter(rollups::tier.eq(tier.code()))
            .filter(rollups::device_id.eq(device))
            .count()
            .get_result(conn)
    })
    .await
    .unwrap()
}

/// The same buckets, averages to rounding.
pub fn assert_same(read: &[Bucket], expected: &[Bucket], what: &str) {
    assert_eq!(read.len(), expected.len(), "{what}: {read:?}");
    for (r, e) in read.iter().zip(expected) {
        assert_eq!(
            (&r.metric, r.bucket, r.count, r.min, r.max),
            (&e.metric, e.bucket, e.count, e.min, e.max),
            "{what}"
        );
        assert!(
            (r.avg - e.avg).abs() <= 1e-9 * e.avg.abs().max(1.0),
            "{what}: {r:?} against {e:?}"
        );
    }
}

/// Per series: readings, least and greatest over the whole range.
fn totals(buckets: &[Bucket]) -> Vec<(String, i64, f64, f64)> {
    let mut totals: Vec<(String, i64, f64, f64)> = Vec::new();
    for b in buckets {
        match totals.last_mut() {
            Some(t) if t.0 == b.metric => {
                t.1 += b.count;
                t.2 = t.2.min(b.min);
                t.3 = t.3.max(b.max);
            }
            _ => totals.push((b.metric.clone(), b.count, b.min, b.max)),
        }
    }
    totals
}

async fn long_ranges_read_from_rollups_the_same_as_from_polls(backend: Backend) {
    let cluster = TestCluster::spawn(backend, 0).await;
    let company = cluster.company("acme").await;
    let web = cluster.device(company, "web").await;
    let other = cluster.device(company, "db").await;
    place(&cluster.db, web, 1).await;
    place(&cluster.db, other, 1).await;
    let now = Utc::now().timestamp_millis();
    let base = now.div_euclid(HOUR) * HOUR - 5 * HOUR;
    // Four hours of a poll every 10 s; another device beside it.
    store_polls(&cluster.db, web, (base, base + 4 * HOUR), 10_000).await;
    store_polls(&cluster.db, other, (base + 500, base + 4 * HOUR), 30_000).await;

    // Ranges with buckets of the minute tier (aligned and not) and the hour tier.
    let ranges = [
        (base, base + 4 * HOUR, 5 * MINUTE),
        (base + 90_000, base + 3 * HOUR + 30_000, 10 * MINUTE),
        (base, base + 4 * HOUR, HOUR),
        (base + 30 * MINUTE, base + 4 * HOUR, 2 * HOUR),
    ];
    let mut from_polls = Vec::new();
    for range in ranges {
        from_polls.push(history(&cluster.db, web, range).await);
    }
    roll_all(&cluster.db).await;

    // Every minute and hour with polls is made, and the marks are where the closed
    // minutes end.
    assert_eq!(rows_of(&cluster.db, Tier::Minute, web).await, 240);
    assert_eq!(rows_of(&cluster.db, Tier::Hour, web).await, 4);
    assert_eq!(rows_of(&cluster.db, Tier::Minute, other).await, 240);
    let (minute_mark, hour_mark) = cluster
        .db
        .run(|conn| {
            Ok((
                rollup::mark(conn, Tier::Minute)?,
                rollup::mark(conn, Tier::Hour)?,
            ))
        })
        .await
        .unwrap();
    let minute_mark = minute_mark.unwrap();
    assert!(minute_mark >= base + 4 * HOUR && minute_mark % MINUTE == 0);
    assert!(minute_mark > now - rollup::GRACE_MS - 2 * MINUTE);
    assert_eq!(hour_mark, Some(minute_mark.div_euclid(HOUR) * HOUR));

    for (range, expected) in ranges.into_iter().zip(&from_polls) {
        let read = history(&cluster.db, web, range).await;
        if (range.0 - base) % range.2 == 0 && range.2 % MINUTE == 0 {
            assert_same(&read, expected, &format!("range {range:?}"));
        } else {
            // Buckets not on minute edges: a minute counts in the bucket where it
            // starts, so buckets differ at their edges, and the whole range does not.
            assert_eq!(totals(&read), totals(expected), "range {range:?}");
        }
    }
    let count: i64 = from_polls[0]
        .iter()
        .filter(|b| b.metric == "up")
        .map(|b| b.count)
        .sum();
    assert_eq!(count, 4 * 360, "every poll counted once");

    // Polls newer than the rollups are read from the polls: a range up to now counts
    // them beside the rolled-up hours.
    store_polls(&cluster.db, web, (now - 5_000, now - 4_000), 1_000).await;
    let to = Utc::now().timestamp_millis() + 1;
    let up_total = |buckets: Vec<Bucket>| -> i64 {
        buckets
            .iter()
            .filter(|b| b.metric == "up")
            .map(|b| b.count)
            .sum()
    };
    let width = (to - base).div_euclid(4) + 1;
    assert!(width >= HOUR);
    assert_eq!(
        up_total(history(&cluster.db, web, (base, to, width)).await),
        4 * 360 + 1
    );

    // Rolling again makes nothing twice.
    roll_all(&cluster.db).await;
    assert_eq!(rows_of(&cluster.db, Tier::Minute, web).await, 240);

    // The API answers the same shape from the tiers.
    let answer = cluster
        .get(&format!(
            "/api/v1/devices/{web}/metrics?from={}&to={}&points=4&metric=up",
            chrono::DateTime::from_timestamp_millis(base)
                .unwrap()
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            chrono::DateTime::from_timestamp_millis(base + 4 * HOUR)
                .unwrap()
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        ))
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    let points = answer.body["series"][0]["points"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(points.len(), 4, "{}", answer.body);
    assert!(points.iter().all(|p| p["count"] == 360 && p["avg"] == 1.0));

    // The store tells each tier.
    let store = cluster.get("/api/v1/store").await;
    let tiers = store.body["tiers"].as_array().unwrap().clone();
    let names: Vec<&str> = tiers.iter().map(|t| t["tier"].as_str().unwrap()).collect();
    assert_eq!(names, ["raw", "blocks", "minute", "hour"]);
    assert_eq!(tiers[2]["polls"], 480, "{}", store.body);
    assert_eq!(
        tiers[2]["samples"],
        (4 * 360 + 4 * 120) * 3,
        "{}",
        store.body
    );
    assert_eq!(tiers[3]["polls"], 8, "{}", store.body);
    assert!(tiers[2]["bytes"].as_i64().unwrap() > 0, "{}", store.body);
}

async fn each_tier_is_kept_for_its_own_retention(backend: Backend) {
    let cluster = TestCluster::spawn(backend, 0).await;
    let company = cluster.company("acme").await;
    let device = cluster.device(company, "web").await;
    place(&cluster.db, device, 1).await;
    let now = Utc::now().timestamp_millis();
    // An hour of polls two days ago, and one a minute old.
    let old = now.div_euclid(HOUR) * HOUR - 50 * HOUR;
    store_polls(&cluster.db, device, (old, old + HOUR), 30_000).await;
    store_polls(&cluster.db, device, (now - MINUTE, now - MINUTE + 1), 1_000).await;
    // The coordinator's upkeep rolls up, as it does every ROLL_EVERY.
    let mut rolled = cluster.retention.send(Roll).await.unwrap().unwrap();
    while rolled.behind {
        rolled = cluster.retention.send(Roll).await.unwrap().unwrap();
    }
    assert_eq!(rows_of(&cluster.db, Tier::Minute, device).await, 60);
    assert_eq!(rows_of(&cluster.db, Tier::Hour, device).await, 1);

    // Each tier's retention is set through the config and checked.
    let answer = cluster
        .put(
            "/api/v1/config",
            json!({"retention_hours": 24, "minute_retention_days": 1}),
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    assert_eq!(answer.body["config"]["minute_retention_days"], 1);
    assert_eq!(answer.body["config"]["hour_retention_days"], 730);
    let refused = cluster
        .put("/api/v1/config", json!({"hour_retention_days": 0}))
        .await;
    assert_error(&refused, StatusCode::BAD_REQUEST, "invalid_config");
    assert!(
        refused.body["error"]
            .as_str()
            .unwrap()
            .contains("hour_retention_days must be between 1 and 3650"),
        "{refused:?}"
    );

    let pruned = cluster.retention.send(Prune).await.unwrap().unwrap();
    assert_eq!((pruned.polls, pruned.rollups), (120, 60), "{pruned:?}");
    assert_eq!(rows_of(&cluster.db, Tier::Minute, device).await, 0);
    assert_eq!(rows_of(&cluster.db, Tier::Hour, device).await, 1);
    // The old hour still answers a long range; the recent poll is still there.
    let buckets = history(&cluster.db, device, (old, now, 12 * HOUR)).await;
    let up: Vec<(i64, i64)> = buckets
        .iter()
        .filter(|b| b.metric == "up")
        .map(|b| (b.bucket, b.count))
        .collect();
    assert_eq!(up, vec![(0, 120), ((now - MINUTE - old) / (12 * HOUR), 1)]);

    // Deleting the device deletes its rollups.
    cluster
        .db
        .run(move |conn| db::assignments::release(conn, device))
        .await
        .unwrap();
    let answer = cluster.delete(&format!("/api/v1/devices/{device}")).await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    assert_eq!(rows_of(&cluster.db, Tier::Hour, device).await, 0);
}
