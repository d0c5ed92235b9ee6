//! Blocks: the polls of closed hours sealed into compressed columns read back exactly
//! as they were, a day of small blocks is merged, a poll that comes late gets a block
//! of its own, and blocks go whole with retention and with their device.

use actix_web::http::StatusCode;
use chrono::Utc;
use diesel::prelude::*;
use serde_json::json;
use vigil::actors::retention::{Prune, Roll, Seal};
use vigil::db::schema::{blocks, polls};
use vigil::db::store::seal::{self, DAY_MS, WINDOW_MS};
use vigil::db::{self, Db};

use crate::helpers::{place, Backend, TestCluster};
use crate::rollups::{assert_same, history, roll_all, store_polls};

crate::on_both_backends!(
    sealed_hours_read_back_as_their_polls_in_fewer_bytes,
    blocks_go_whole_with_retention_and_with_their_device,
);

const MINUTE: i64 = 60_000;

async fn count(db: &Db, device: i64) -> (i64, i64) {
    db.run(move |conn| {
        let polls = polls::table
            .filter(polls::device_id.eq(device))
            .count()
            .get_result(conn)?;
        let blocks = blocks::table
            .filter(blocks::device_id.eq(device))
            .count()
            .get_result(conn)?;
        Ok((polls, blocks))
    })
    .await
    .unwrap()
}

/// Seals until nothing sealable is left.
async fn seal_all(db: &Db) -> seal::Sealed {
    let mut total = seal::Sealed::default();
    for _ in 0..100 {
        let sealed = db
            .run(|conn| seal::seal(conn, Utc::now().timestamp_millis()))
            .await
            .unwrap();
        total.blocks += sealed.blocks;
        total.polls += sealed.polls;
        total.merged += sealed.merged;
        if !sealed.behind {
            return total;
        }
    }
    panic!("sealing never caught up");
}

async fn sealed_hours_read_back_as_their_polls_in_fewer_bytes(backend: Backend) {
    let cluster = TestCluster::spawn(backend, 0).await;
    let company = cluster.company("acme").await;
    let slow = cluster.device(company, "slow").await;
    let fast = cluster.device(company, "fast").await;
    place(&cluster.db, slow, 1).await;
    place(&cluster.db, fast, 1).await;
    let now = Utc::now().timestamp_millis();
    let day = now.div_euclid(DAY_MS) * DAY_MS - 3 * DAY_MS;
    // The slow device: a poll a minute over a whole day and two hours of the next;
    // the fast one: every 2 s over two hours of the first day.
    store_polls(
        &cluster.db,
        slow,
        (day, day + DAY_MS + 2 * WINDOW_MS),
        MINUTE,
    )
    .await;
    store_polls(&cluster.db, fast, (day + 3_000, day + 2 * WINDOW_MS), 2_000).await;
    let fast_polls: i64 = 3599;
    // And a poll of now, whose hour is open.
    store_polls(&cluster.db, slow, (now - 1_000, now), 1_000).await;

    // Ranges whose buckets are under a minute read the raw polls.
    let ranges = [
        (slow, (day, day + DAY_MS + 2 * WINDOW_MS, 30_000)),
        (slow, (day + 90_000, day + 5 * WINDOW_MS + 7_000, 45_000)),
        (slow, (day + DAY_MS - 30_000, now + 1, 59_999)),
        (fast, (day, day + 2 * WINDOW_MS, 10_000)),
        (fast, (day + 1_234, day + WINDOW_MS + 5_678, 1_000)),
    ];
    let mut before = Vec::new();
    for (device, range) in ranges {
        before.push(history(&cluster.db, device, range).await);
    }

    // Nothing is sealed before its minutes are rolled up.
    assert_eq!(seal_all(&cluster.db).await, seal::Sealed::default());
    roll_all(&cluster.db).await;
    let sealed = seal_all(&cluster.db).await;
    assert_eq!(sealed.polls as i64, 1440 + 120 + fast_polls, "{sealed:?}");
    // Each device's hours of a day are merged into one block: the slow device's whole
    // day of 1,440 polls, its two hours of the next; the fast device's two hours of
    // 1,800 polls each, together within a block's bound.
    let slow_blocks: Vec<(i64, i64, i64)> = cluster
        .db
        .run(move |conn| {
            blocks::table
                .filter(blocks::device_id.eq(slow))
                .order(blocks::at_ms)
                .select((blocks::at_ms, blocks::end_ms, blocks::polls))
                .load(conn)
        })
        .await
        .unwrap();
    assert_eq!(
        slow_blocks,
        vec![
            (day, day + DAY_MS - MINUTE, 1440),
            (day + DAY_MS, day + DAY_MS + 2 * WINDOW_MS - MINUTE, 120),
        ]
    );
    assert_eq!(
        count(&cluster.db, slow).await,
        (1, 2),
        "the open hour's poll"
    );
    assert_eq!(count(&cluster.db, fast).await, (0, 1));

    // Every range reads what it read from the polls, bit for bit.
    for ((device, range), expected) in ranges.into_iter().zip(&before) {
        let read = history(&cluster.db, device, range).await;
        assert_same(
            &read,
            expected,
            &format!("device {device}, range {range:?}"),
        );
    }

    // A poll that comes late, into an hour sealed already: a block of its own at the
    // next pass, and a history counts it.
    let late = day + WINDOW_MS + 30_000;
    store_polls(&cluster.db, fast, (late, late + 1), 1_000).await;
    let up = |buckets: Vec<vigil::db::store::Bucket>| -> i64 {
        buckets
            .iter()
            .filter(|b| b.metric == "up")
            .map(|b| b.count)
            .sum()
    };
    let range = (day, day + 2 * WINDOW_MS, 10_000);
    assert_eq!(up(history(&cluster.db, fast, range).await), fast_polls + 1);
    let sealed = seal_all(&cluster.db).await;
    assert_eq!((sealed.blocks, sealed.polls), (1, 1), "{sealed:?}");
    assert_eq!(count(&cluster.db, fast).await, (0, 2));
    assert_eq!(up(history(&cluster.db, fast, range).await), fast_polls + 1);

    // The store tells the blocks apart, in fewer bytes a reading than the polls.
    let store = cluster.get("/api/v1/store").await;
    assert_eq!(store.status, StatusCode::OK, "{store:?}");
    let tiers = store.body["tiers"].as_array().unwrap().clone();
    assert_eq!(tiers[1]["tier"], "blocks");
    let sealed_polls = 1440 + 120 + fast_polls + 1;
    assert_eq!(tiers[1]["polls"], sealed_polls, "{}", store.body);
    assert_eq!(tiers[1]["samples"], sealed_polls * 3);
    assert_eq!(tiers[0]["polls"], 1);
    let per_sample = |t: &serde_json::Value| t["bytes_per_sample"].as_f64().unwrap();
    assert!(
        per_sample(&tiers[1]) < per_sample(&tiers[0]),
        "{}",
        store.body
    );
}

async fn blocks_go_whole_with_retention_and_with_their_device(backend: Backend) {
    let cluster = TestCluster::spawn(backend, 0).await;
    let company = cluster.company("acme").await;
    let device = cluster.device(company, "web").await;
    place(&cluster.db, device, 1).await;
    let now = Utc::now().timestamp_millis();
    let hour = now.div_euclid(WINDOW_MS) * WINDOW_MS;
    // Two hours three days ago, two hours yesterday.
    let old = hour - 72 * WINDOW_MS;
    store_polls(&cluster.db, device, (old, old + 2 * WINDOW_MS), 30_000).await;
    let recent = hour - 20 * WINDOW_MS;
    store_polls(
        &cluster.db,
        device,
        (recent, recent + 2 * WINDOW_MS),
        30_000,
    )
    .await;
    // The upkeep rolls up and seals, as the master does every few seconds.
    while cluster.retention.send(Roll).await.unwrap().unwrap().behind {}
    while cluster.retention.send(Seal).await.unwrap().unwrap().behind {}
    let blocks_before = |until: i64| {
        cluster.db.run(move |conn| {
            blocks::table
                .filter(blocks::device_id.eq(device))
                .filter(blocks::at_ms.lt(until))
                .count()
                .get_result::<i64>(conn)
        })
    };
    let old_blocks = blocks_before(old + 2 * WINDOW_MS).await.unwrap();
    let all_blocks = count(&cluster.db, device).await.1;
    assert!(
        old_blocks >= 1 && all_blocks > old_blocks,
        "{old_blocks} of {all_blocks}"
    );

    // Raw data is kept two days: the old hours' blocks go whole, the recent stay.
    let answer = cluster
        .put("/api/v1/config", json!({"retention_hours": 48}))
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    let pruned = cluster.retention.send(Prune).await.unwrap().unwrap();
    assert_eq!((pruned.polls, pruned.blocks), (0, old_blocks as usize));
    assert_eq!(
        count(&cluster.db, device).await,
        (0, all_blocks - old_blocks)
    );
    let range = (recent - WINDOW_MS, recent + 3 * WINDOW_MS, 10_000);
    let kept = history(&cluster.db, device, range).await;
    assert_eq!(
        kept.iter()
            .filter(|b| b.metric == "up")
            .map(|b| b.count)
            .sum::<i64>(),
        240
    );
    assert!(
        history(&cluster.db, device, (old, old + 2 * WINDOW_MS, 10_000))
            .await
            .is_empty()
    );

    // Deleting the device deletes its blocks.
    cluster
        .db
        .run(move |conn| db::assignments::release(conn, device))
        .await
        .unwrap();
    let answer = cluster.delete(&format!("/api/v1/devices/{device}")).await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    assert_eq!(count(&cluster.db, device).await, (0, 0));
}
