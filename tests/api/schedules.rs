//! Scheduled collectors (issue 14, point 4): the master queues one run per due time,
//! keyed by (collector, due time) so a second master or a retry cannot queue it
//! twice; due times missed while no master was up go by the collector's misfire
//! policy; two masters in a row (the first killed with -9) fire each due time once.

use std::collections::BTreeSet;
use std::time::Duration;

use actix_web::http::{Method, StatusCode};
use chrono::{TimeZone, Utc};
use serde_json::{json, Value};
use vigil::db::queue::{self, Collector};

use crate::helpers::{assert_error, call, eventually, Backend, TestCluster};
use crate::processes::{admin_client, cluster_of, coordinator_process, fast_membership, GIVE_UP};

crate::on_both_backends!(
    a_scheduled_collector_fires_once_per_due_time_and_its_schedule_is_checked,
    missed_due_times_go_by_the_misfire_policy,
    a_due_time_handled_once_is_not_fired_again,
);

/// A scheduled snapshot collector over every device of `company` (in the fast lane);
/// its view.
async fn scheduled(
    cluster: &TestCluster,
    company: i64,
    name: &str,
    schedule: &str,
    misfire: &str,
) -> Value {
    let made = cluster
        .post(
            "/api/v1/collectors",
            json!({"company_id": company, "name": name, "kind": "snapshot",
                   "target": {"all": true}, "expected_duration": "fast",
                   "schedule": schedule, "time_zone": "UTC", "misfire": misfire}),
        )
        .await;
    assert_eq!(made.status, StatusCode::CREATED, "{made:?}");
    made.body
}

/// The due times of `collector`'s runs, oldest first, as the jobs list shows them.
fn due_times(jobs: &Value) -> Vec<i64> {
    let mut due: Vec<i64> = jobs
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|job| job["due_at"].as_str())
        .map(|at| {
            chrono::DateTime::parse_from_rfc3339(at)
                .unwrap()
                .timestamp_millis()
        })
        .collect();
    due.sort_unstable();
    due
}

/// Asserts `due` holds no due time twice and misses none between its first and last
/// (`step` ms apart).
fn each_once(due: &[i64], step: i64) {
    let distinct: BTreeSet<i64> = due.iter().copied().collect();
    assert_eq!(distinct.len(), due.len(), "a due time fired twice: {due:?}");
    for pair in due.windows(2) {
        assert_eq!(pair[1] - pair[0], step, "a due time was not fired: {due:?}");
    }
}

async fn a_scheduled_collector_fires_once_per_due_time_and_its_schedule_is_checked(
    backend: Backend,
) {
    let cluster = TestCluster::spawn(backend, 0).await;
    cluster.fast_membership().await;
    cluster.coordinator_is_master().await;
    // No devices: a snapshot of none ends at once, so runs never wait on a poll.
    let company = cluster.company("acme").await;

    // Bad patterns, zones and policies are refused with what is wrong.
    for (field, value, code) in [
        ("schedule", "61 * * * *", "invalid_schedule"),
        ("schedule", "0 0 30 2 *", "invalid_schedule"),
        ("time_zone", "Mars/Olympus", "invalid_time_zone"),
        ("misfire", "twice", "invalid_misfire"),
    ] {
        let mut body = json!({"company_id": company, "name": "bad", "kind": "snapshot",
                              "target": {"all": true}, "expected_duration": "fast",
                              "schedule": "* * * * *"});
        body[field] = json!(value);
        let refused = cluster.post("/api/v1/collectors", body).await;
        assert_error(&refused, StatusCode::BAD_REQUEST, code);
    }

    // Every second: the master queues one run per due time.
    let made = scheduled(&cluster, company, "every-second", "* * * * * *", "once").await;
    let id = made["id"].as_i64().unwrap();
    assert_eq!(made["misfire"], "once");
    assert!(made["next_due_at"].is_string(), "{made}");
    assert!(made["schedule_description"].is_string(), "{made}");
    let jobs = eventually("five scheduled runs done", || async {
        let jobs = cluster
            .get(&format!(
                "/api/v1/jobs?collector_id={id}&status=done&limit=100"
            ))
            .await
            .body;
        (jobs.as_array()?.len() >= 5).then_some(jobs)
    })
    .await;
    let due = due_times(&jobs);
    each_once(&due, 1_000);
    assert!(due.iter().all(|d| d % 1_000 == 0), "{due:?}");

    // Unscheduled: the master fires it no more.
    let patched = cluster
        .put(
            &format!("/api/v1/collectors/{id}"),
            json!({"schedule": null}),
        )
        .await;
    assert_eq!(patched.status, StatusCode::OK, "{patched:?}");
    assert_eq!(patched.body["next_due_at"], Value::Null, "{patched:?}");
    actix_rt::time::sleep(Duration::from_millis(500)).await;
    let count = |jobs: Value| jobs.as_array().unwrap().len();
    let before = count(
        cluster
            .get(&format!("/api/v1/jobs?collector_id={id}&limit=1000"))
            .await
            .body,
    );
    actix_rt::time::sleep(Duration::from_millis(1_500)).await;
    let after = count(
        cluster
            .get(&format!("/api/v1/jobs?collector_id={id}&limit=1000"))
            .await
            .body,
    );
    assert_eq!(before, after);
}

/// Sets collector `id`'s next due time to `due_ms`, as if no master had looked since.
async fn behind(cluster: &TestCluster, id: i64, due_ms: i64) {
    cluster
        .db
        .run(move |conn| {
            use diesel::prelude::*;
            use vigil::db::schema::collectors;
            diesel::update(collectors::table.find(id))
                .set(collectors::next_due_at.eq(due_ms))
                .execute(conn)
        })
        .await
        .unwrap();
}

async fn missed_due_times_go_by_the_misfire_policy(backend: Backend) {
    let cluster = TestCluster::spawn(backend, 0).await;
    cluster.fast_membership().await;
    cluster.coordinator_is_master().await;
    // No devices: a snapshot of none ends at once, so runs never wait on a poll.
    let company = cluster.company("acme").await;
    // New Year's midnight, every year: 2020 to 2026 were missed, none on time.
    let new_year = |year: i32| {
        Utc.with_ymd_and_hms(year, 1, 1, 0, 0, 0)
            .unwrap()
            .timestamp_millis()
    };
    let mut made = Vec::new();
    for misfire in ["skip", "once", "all"] {
        let collector = scheduled(&cluster, company, misfire, "0 0 1 1 *", misfire).await;
        made.push(collector["id"].as_i64().unwrap());
    }
    // Every collector behind since New Year 2020, as if no master had been up since.
    for id in &made {
        behind(&cluster, *id, new_year(2020)).await;
    }
    let this_year = Utc::now().format("%Y").to_string().parse::<i32>().unwrap();
    let jobs_of = |id: i64| {
        let cluster = &cluster;
        async move {
            cluster
                .get(&format!("/api/v1/jobs?collector_id={id}&limit=100"))
                .await
                .body
        }
    };
    let next_due = |id: i64| {
        let cluster = &cluster;
        async move { cluster.get(&format!("/api/v1/collectors/{id}")).await.body["next_due_at"].clone() }
    };
    let next_year = Utc
        .timestamp_millis_opt(new_year(this_year + 1))
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    // all: each missed due time, one after another, oldest first.
    let all = eventually("every missed new year fired", || async {
        let jobs = jobs_of(made[2]).await;
        (jobs.as_array()?.len() == (this_year - 2020 + 1) as usize).then_some(jobs)
    })
    .await;
    let expected: Vec<i64> = (2020..=this_year).map(new_year).collect();
    assert_eq!(due_times(&all), expected);
    // once: one run, keyed by the latest.
    let once = eventually("the latest missed new year fired once", || async {
        let jobs = jobs_of(made[1]).await;
        (!jobs.as_array()?.is_empty()).then_some(jobs)
    })
    .await;
    assert_eq!(due_times(&once), [new_year(this_year)]);
    // skip: none, and it waits for the next one.
    eventually("skip moved on to the next new year", || async {
        let due = next_due(made[0]).await;
        (due.as_str()?.starts_with(&next_year[..19])).then_some(())
    })
    .await;
    assert_eq!(jobs_of(made[0]).await, json!([]));
    for id in &made {
        assert!(
            next_due(*id)
                .await
                .as_str()
                .unwrap()
                .starts_with(&next_year[..19]),
            "{id}"
        );
    }
    // Nothing more is fired afterwards: no burst, no repeat.
    actix_rt::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(jobs_of(made[1]).await.as_array().unwrap().len(), 1);
    assert_eq!(
        jobs_of(made[2]).await.as_array().unwrap().len(),
        expected.len()
    );
}

async fn a_due_time_handled_once_is_not_fired_again(backend: Backend) {
    // Due at 02:00 UTC on 1 January: the cluster's master leaves it alone during the test, which
    // fires it by hand as two masters would.
    let cluster = TestCluster::spawn(backend, 0).await;
    let company = cluster.company("acme").await;
    let made = cluster
        .post(
            "/api/v1/collectors",
            json!({"company_id": company, "name": "nightly", "kind": "report",
                   "target": {"all": true}, "expected_duration": "slow",
                   "params": {"window_hours": 24}, "schedule": "0 2 1 1 *"}),
        )
        .await;
    assert_eq!(made.status, StatusCode::CREATED, "{made:?}");
    let id = made.body["id"].as_i64().unwrap();
    let collector: Collector = cluster
        .db
        .run(move |conn| queue::collector_in(conn, id, None))
        .await
        .unwrap()
        .unwrap();
    let due = collector.next_due_at.unwrap();
    let next = due + 86_400_000;
    let now = Utc::now().timestamp_millis();
    // Two masters that both read `due` as the next due time: one fires, one finds it
    // handled; a retry of the first finds it handled too.
    let (first, second) = {
        let (a, b) = (collector.clone(), collector.clone());
        let db = cluster.db.clone();
        let first = db.run(move |conn| queue::fire(conn, &a, due, Some(due), Some(next), now));
        let second = cluster
            .db
            .run(move |conn| queue::fire(conn, &b, due, Some(due), Some(next), now));
        futures_util::future::join(first, second).await
    };
    let fired: Vec<_> = [first.unwrap(), second.unwrap()]
        .into_iter()
        .flatten()
        .collect();
    assert_eq!(fired.len(), 1, "{fired:?}");
    assert!(fired[0].job.is_some_and(|(_, queued)| queued));
    let again = cluster
        .db
        .run(move |conn| queue::fire(conn, &collector, due, Some(due), Some(next), now))
        .await
        .unwrap();
    assert!(again.is_none());
    let jobs = cluster
        .get(&format!("/api/v1/jobs?collector_id={id}"))
        .await
        .body;
    assert_eq!(due_times(&jobs), [due]);
}

/// Two coordinator processes on one database, a collector due every second: the first
/// (master) is killed with -9 just after a firing; the second takes over and every due
/// time from the first to the last fired is fired exactly once (misfire `all` owes the
/// ones that fell due while no master was up).
#[actix_rt::test]
async fn two_masters_in_a_row_fire_each_due_time_once() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("vigil.db").display());
    let http = admin_client(&db, dir.path());
    let (mut first, first_api) = coordinator_process(&db, dir.path()).await;
    fast_membership(&http, &first_api).await;
    let (_second, second_api) = coordinator_process(&db, dir.path()).await;
    let second = eventually("both coordinators live, the first master", || async {
        let view = cluster_of(&http, &second_api).await;
        let nodes = view["nodes"].as_array()?.clone();
        let second = view["this_node"].as_i64()?;
        (nodes.len() == 2 && nodes.iter().all(|n| n["live"] == true) && view["master"] != second)
            .then_some(second)
    })
    .await;
    let company = call(
        &http,
        Method::POST,
        &format!("{first_api}/companies"),
        Some(json!({"name": "acme"})),
    )
    .await;
    assert_eq!(company.status, StatusCode::CREATED, "{company:?}");
    let made = call(
        &http,
        Method::POST,
        &format!("{first_api}/collectors"),
        Some(
            json!({"company_id": company.body["id"], "name": "every-second",
                    "kind": "snapshot", "target": {"all": true},
                    "expected_duration": "fast", "schedule": "* * * * * *",
                    "misfire": "all"}),
        ),
    )
    .await;
    assert_eq!(made.status, StatusCode::CREATED, "{made:?}");
    let id = made.body["id"].as_i64().unwrap();
    let jobs = |api: String| {
        let http = &http;
        async move {
            call(
                http,
                Method::GET,
                &format!("{api}/jobs?collector_id={id}&limit=1000"),
                None,
            )
            .await
            .body
        }
    };
    // Kill the master right as it fires: the moment a new run appears.
    let fired = eventually("the first master fired three times", || async {
        let n = jobs(first_api.clone()).await.as_array()?.len();
        (n >= 3).then_some(n)
    })
    .await;
    eventually("the first master fired again", || async {
        (jobs(first_api.clone()).await.as_array()?.len() > fired).then_some(())
    })
    .await;
    first.signal("KILL");
    let _ = first.exit_within(GIVE_UP).await;
    let killed_at = Utc::now().timestamp_millis();
    eventually("the second coordinator is master", || async {
        (cluster_of(&http, &second_api).await["master"] == second).then_some(())
    })
    .await;
    // Three due times after the kill fired by the second.
    let all = eventually("the second master fired after the kill", || async {
        let all = jobs(second_api.clone()).await;
        let after = due_times(&all)
            .iter()
            .filter(|d| **d > killed_at + 1_000)
            .count();
        (after >= 3).then_some(all)
    })
    .await;
    let due = due_times(&all);
    each_once(&due, 1_000);
    let nodes: BTreeSet<i64> = all
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|job| job["node_id"].as_i64())
        .collect();
    assert!(nodes.contains(&second), "{all}");
}
