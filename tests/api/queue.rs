//! The collection queue (seed 001): runs wait in their lane and start within its
//! limit, across coordinators; reorder, move, remove, force, stop and pause do what
//! they say and refuse what they cannot; the order survives a restart and the runs of
//! a node that left are queued again; a report's numbers are the stored samples'.

use std::time::Duration;

use actix_web::http::{Method, StatusCode};
use actix_web::{web, App, HttpResponse, HttpServer};
use chrono::Utc;
use serde_json::{json, Value};
use vigil::db::models::NewEvent;
use vigil::db::store::{Catalogue, NewPoll};
use vigil::db::{self, Db};

use crate::helpers::{assert_error, eventually, place, Answer, Backend, TestCluster, PATIENCE};

crate::on_both_backends!(
    discovery_registers_what_answers_on_loopback_and_refuses_denied_ranges,
    an_export_streams_the_window_raw_or_rolled_up_as_csv,
    a_lane_runs_at_most_its_limit_and_operations_do_what_they_say,
    a_burst_from_two_coordinators_keeps_every_lane_within_its_limit,
    waiting_order_survives_a_restart_and_a_gone_nodes_run_is_queued_again,
    a_report_says_what_the_stored_samples_say,
);

/// An HTTP server on port 0 whose `/slow` answers after `ms`; its base URL.
fn slow_server(ms: u64) -> String {
    let server = HttpServer::new(move || {
        App::new().route(
            "/slow",
            web::get().to(move || async move {
                actix_rt::time::sleep(Duration::from_millis(ms)).await;
                HttpResponse::Ok().body("ok")
            }),
        )
    })
    .workers(1)
    .bind("127.0.0.1:0")
    .unwrap();
    let url = format!("http://{}/slow", server.addrs()[0]);
    actix_rt::spawn(server.run());
    url
}

/// A snapshot collector in the fast lane over `devices`; its id.
async fn collector(
    cluster: &TestCluster,
    company: i64,
    name: &str,
    devices: &[i64],
    lane: &str,
) -> i64 {
    let made = cluster
        .post(
            "/api/v1/collectors",
            json!({"company_id": company, "name": name, "kind": "snapshot",
                   "target": {"devices": devices}, "expected_duration": lane}),
        )
        .await;
    assert_eq!(made.status, StatusCode::CREATED, "{made:?}");
    made.body["id"].as_i64().unwrap()
}

async fn run(cluster: &TestCluster, collector: i64) -> Answer {
    cluster
        .post_empty(&format!("/api/v1/collectors/{collector}/run"))
        .await
}

async fn job(cluster: &TestCluster, id: i64) -> Value {
    let answer = cluster.get(&format!("/api/v1/jobs/{id}")).await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    answer.body
}

async fn until_status(cluster: &TestCluster, id: i64, status: &str) -> Value {
    eventually(&format!("job {id} {status}"), || async {
        let found = job(cluster, id).await;
        (found["status"] == status).then_some(found)
    })
    .await
}

/// The fast lane as `GET /api/v1/queue` shows it.
async fn fast_lane(cluster: &TestCluster) -> Value {
    let answer = cluster.get("/api/v1/queue").await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    answer.body["lanes"][0].clone()
}

fn waiting_ids(lane: &Value) -> Vec<i64> {
    lane["jobs_waiting"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_i64().unwrap())
        .collect()
}

async fn a_lane_runs_at_most_its_limit_and_operations_do_what_they_say(backend: Backend) {
    let cluster = TestCluster::spawn(backend, 0).await;
    let answer = cluster
        .put("/api/v1/queue/config", json!({"fast": 1}))
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    let company = cluster.company("acme").await;
    let slow = slow_server(700);
    let mut devices = Vec::new();
    for n in 0..10 {
        devices.push(
            cluster
                .device_at(company, &format!("slow-{n}"), &slow)
                .await,
        );
    }
    // a polls ten devices (7 s, for the operations below to find it running however
    // loaded the machine is); b, c and d three.
    let mut collectors = Vec::new();
    for name in ["a", "b", "c", "d"] {
        let targets = if name == "a" {
            &devices[..]
        } else {
            &devices[..3]
        };
        collectors.push(collector(&cluster, company, name, targets, "fast").await);
    }
    let mut jobs = Vec::new();
    for c in &collectors {
        let queued = run(&cluster, *c).await;
        assert_eq!(queued.status, StatusCode::ACCEPTED, "{queued:?}");
        jobs.push(queued.body["job"]["id"].as_i64().unwrap());
    }
    // A collector waiting already is not queued twice.
    let again = run(&cluster, collectors[3]).await;
    assert_eq!(again.status, StatusCode::OK, "{again:?}");
    assert_eq!(
        (
            again.body["queued"].as_bool(),
            again.body["job"]["id"].as_i64()
        ),
        (Some(false), Some(jobs[3]))
    );

    // One runs, three wait in order, each with its place and wait time.
    let running = until_status(&cluster, jobs[0], "running").await;
    assert_eq!(running["forced"], false);
    let lane = fast_lane(&cluster).await;
    assert_eq!(
        (lane["running"].as_u64(), lane["max_running"].as_i64()),
        (Some(1), Some(1))
    );
    assert_eq!(waiting_ids(&lane), jobs[1..]);
    let places: Vec<i64> = lane["jobs_waiting"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["position"].as_i64().unwrap())
        .collect();
    assert_eq!(places, [1, 2, 3]);
    assert!(lane["jobs_waiting"][0]["wait_ms"].as_i64().unwrap() >= 0);

    // Reorder: d up (before c), then b to the end, then c to another lane and back.
    let moved = cluster
        .post(
            &format!("/api/v1/jobs/{}/move", jobs[3]),
            json!({"direction": "up"}),
        )
        .await;
    assert_eq!(moved.status, StatusCode::OK, "{moved:?}");
    assert_eq!(
        waiting_ids(&fast_lane(&cluster).await),
        [jobs[1], jobs[3], jobs[2]]
    );
    let moved = cluster
        .post(
            &format!("/api/v1/jobs/{}/move", jobs[1]),
            json!({"position": 3}),
        )
        .await;
    assert_eq!(moved.body["position"], 3, "{moved:?}");
    assert_eq!(
        waiting_ids(&fast_lane(&cluster).await),
        [jobs[3], jobs[2], jobs[1]]
    );
    // The slow lane paused, so c does not start there between the two moves.
    let paused = cluster
        .post("/api/v1/queue/pause", json!({"lane": "slow"}))
        .await;
    assert_eq!(paused.status, StatusCode::OK, "{paused:?}");
    let moved = cluster
        .post(
            &format!("/api/v1/jobs/{}/move", jobs[2]),
            json!({"lane": "slow"}),
        )
        .await;
    assert_eq!(moved.body["lane"], "slow", "{moved:?}");
    let moved = cluster
        .post(
            &format!("/api/v1/jobs/{}/move", jobs[2]),
            json!({"lane": "fast"}),
        )
        .await;
    assert_eq!(moved.body["position"], 3, "{moved:?}");
    assert_eq!(
        waiting_ids(&fast_lane(&cluster).await),
        [jobs[3], jobs[1], jobs[2]]
    );

    // What does not apply is refused with a sentence.
    let refused = cluster
        .post(
            &format!("/api/v1/jobs/{}/move", jobs[0]),
            json!({"direction": "down"}),
        )
        .await;
    assert_error(&refused, StatusCode::CONFLICT, "job_state");
    assert!(
        refused.body["error"]
            .as_str()
            .unwrap()
            .contains("only a waiting job can be moved"),
        "{refused:?}"
    );
    let refused = cluster
        .post_empty(&format!("/api/v1/jobs/{}/stop", jobs[1]))
        .await;
    assert_error(&refused, StatusCode::CONFLICT, "job_state");
    let bad = cluster
        .post(
            &format!("/api/v1/jobs/{}/move", jobs[1]),
            json!({"direction": "sideways"}),
        )
        .await;
    assert_error(&bad, StatusCode::BAD_REQUEST, "invalid_move");

    // Remove: gone from the line.
    let removed = cluster.delete(&format!("/api/v1/jobs/{}", jobs[2])).await;
    assert_eq!(removed.status, StatusCode::OK, "{removed:?}");
    assert_error(
        &cluster.delete(&format!("/api/v1/jobs/{}", jobs[2])).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_eq!(waiting_ids(&fast_lane(&cluster).await), [jobs[3], jobs[1]]);

    // Force: b starts beside a without a slot, tagged, counted apart.
    let forced = cluster
        .post_empty(&format!("/api/v1/jobs/{}/force", jobs[1]))
        .await;
    assert_eq!(forced.status, StatusCode::OK, "{forced:?}");
    assert_eq!(
        (
            forced.body["status"].as_str(),
            forced.body["forced"].as_bool()
        ),
        (Some("running"), Some(true))
    );
    let lane = fast_lane(&cluster).await;
    assert_eq!(
        (lane["running"].as_u64(), lane["forced_running"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(waiting_ids(&lane), [jobs[3]]);

    // Stop: a ends stopped at its next safe point, with the targets it did.
    let stopping = cluster
        .post_empty(&format!("/api/v1/jobs/{}/stop", jobs[0]))
        .await;
    assert_eq!(stopping.status, StatusCode::OK, "{stopping:?}");
    let stopped = until_status(&cluster, jobs[0], "stopped").await;
    assert!(
        stopped["error"].as_str().unwrap().contains("stopped after"),
        "{stopped}"
    );
    let refused = cluster
        .post_empty(&format!("/api/v1/jobs/{}/stop", jobs[0]))
        .await;
    assert_error(&refused, StatusCode::CONFLICT, "job_state");
    // Its slot goes to d; b (forced) runs to its end.
    until_status(&cluster, jobs[3], "running").await;
    let done = until_status(&cluster, jobs[1], "done").await;
    assert_eq!(done["progress"]["done"], 3);
    assert_eq!(done["progress"]["total"], 3);
    assert!(
        done["progress"]["rows_written"].as_i64().unwrap() >= 6,
        "{done}"
    );

    // Pause: a run queued meanwhile waits until the lane resumes.
    let paused = cluster
        .post("/api/v1/queue/pause", json!({"lane": "fast"}))
        .await;
    assert_eq!(paused.body["lanes"][0]["paused"], true, "{paused:?}");
    until_status(&cluster, jobs[3], "done").await;
    let queued = run(&cluster, collectors[0]).await;
    let next = queued.body["job"]["id"].as_i64().unwrap();
    actix_rt::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(job(&cluster, next).await["status"], "waiting");
    let resumed = cluster
        .post("/api/v1/queue/resume", json!({"lane": "fast"}))
        .await;
    assert_eq!(resumed.status, StatusCode::OK, "{resumed:?}");
    until_status(&cluster, next, "running").await;

    // The collector's runs, newest first, with their ends.
    let listed = cluster
        .get(&format!("/api/v1/jobs?collector_id={}", collectors[0]))
        .await;
    let statuses: Vec<&str> = listed
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["status"].as_str().unwrap())
        .collect();
    assert!(statuses.contains(&"stopped"), "{statuses:?}");
}

async fn a_burst_from_two_coordinators_keeps_every_lane_within_its_limit(backend: Backend) {
    let cluster = TestCluster::spawn(backend, 0).await;
    cluster.fast_membership().await;
    let other = cluster.second_coordinator().await;
    let answer = cluster
        .put("/api/v1/queue/config", json!({"fast": 2, "medium": 1}))
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    let company = cluster.company("acme").await;
    let slow = slow_server(150);
    let device = cluster.device_at(company, "slow", &slow).await;
    let mut collectors = Vec::new();
    for n in 0..100 {
        let lane = if n % 4 == 0 { "medium" } else { "fast" };
        collectors.push(collector(&cluster, company, &format!("c{n}"), &[device], lane).await);
    }
    // Half through each coordinator, all at once.
    let base = cluster.url("/api/v1");
    let urls: Vec<String> = collectors
        .iter()
        .enumerate()
        .map(|(n, c)| {
            let url = if n % 2 == 0 { &base } else { &other };
            format!("{url}/collectors/{c}/run")
        })
        .collect();
    let runs = urls
        .iter()
        .map(|url| cluster.call_url(Method::POST, url, None));
    for queued in futures_util::future::join_all(runs).await {
        assert_eq!(queued.status, StatusCode::ACCEPTED, "{queued:?}");
    }
    // Until every run has ended, no lane ever runs more than its limit.
    let deadline = std::time::Instant::now() + PATIENCE * 4;
    loop {
        let running: Vec<(String, bool)> = cluster
            .db
            .run(|conn| {
                use diesel::prelude::*;
                use vigil::db::schema::jobs;
                jobs::table
                    .filter(jobs::status.eq("running"))
                    .select((jobs::lane, jobs::forced))
                    .load(conn)
            })
            .await
            .unwrap();
        let count = |lane: &str| {
            running
                .iter()
                .filter(|(l, forced)| l == lane && !forced)
                .count()
        };
        assert!(count("fast") <= 2 && count("medium") <= 1, "{running:?}");
        let left: i64 = cluster
            .db
            .run(|conn| {
                use diesel::prelude::*;
                use vigil::db::schema::jobs;
                jobs::table
                    .filter(jobs::status.eq_any(["waiting", "running"]))
                    .count()
                    .get_result(conn)
            })
            .await
            .unwrap();
        if left == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{left} jobs never ended"
        );
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
    let done = cluster.get("/api/v1/jobs?status=done&limit=1000").await;
    assert_eq!(done.body.as_array().unwrap().len(), 100, "{done:?}");
    // Both coordinators ran some.
    let nodes: std::collections::BTreeSet<i64> = done
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["node_id"].as_i64().unwrap())
        .collect();
    assert!(!nodes.is_empty());
}

async fn waiting_order_survives_a_restart_and_a_gone_nodes_run_is_queued_again(backend: Backend) {
    let mut cluster = TestCluster::spawn(backend, 0).await;
    cluster.fast_membership().await;
    cluster.coordinator_is_master().await;
    let paused = cluster
        .post("/api/v1/queue/pause", json!({"lane": "slow"}))
        .await;
    assert_eq!(paused.status, StatusCode::OK, "{paused:?}");
    let company = cluster.company("acme").await;
    let device = cluster.device(company, "web").await;
    let mut jobs = Vec::new();
    let mut collectors = Vec::new();
    for name in ["a", "b", "c"] {
        let c = collector(&cluster, company, name, &[device], "slow").await;
        collectors.push(c);
        jobs.push(run(&cluster, c).await.body["job"]["id"].as_i64().unwrap());
    }
    let moved = cluster
        .post(
            &format!("/api/v1/jobs/{}/move", jobs[2]),
            json!({"position": 1}),
        )
        .await;
    assert_eq!(moved.status, StatusCode::OK, "{moved:?}");
    let order = |lane: Value| waiting_ids(&lane);
    let slow_lane = || async { cluster.get("/api/v1/queue").await.body["lanes"][2].clone() };
    assert_eq!(order(slow_lane().await), [jobs[2], jobs[0], jobs[1]]);

    cluster.restart_coordinator().await;
    cluster.coordinator_is_master().await;
    let slow_lane = cluster.get("/api/v1/queue").await.body["lanes"][2].clone();
    assert_eq!(order(slow_lane), [jobs[2], jobs[0], jobs[1]]);

    // A run of a node no longer in the cluster: interrupted, and b queued again at the
    // head of its lane.
    let removed = cluster.delete(&format!("/api/v1/jobs/{}", jobs[1])).await;
    assert_eq!(removed.status, StatusCode::OK, "{removed:?}");
    let gone = collectors[1];
    let orphan = cluster
        .db
        .run(move |conn| {
            use diesel::prelude::*;
            use vigil::db::schema::jobs;
            diesel::insert_into(jobs::table)
                .values((
                    jobs::collector_id.eq(gone),
                    jobs::lane.eq("slow"),
                    jobs::status.eq("running"),
                    jobs::node_id.eq(999_999i64),
                    jobs::enqueued_at.eq(0i64),
                    jobs::started_at.eq(0i64),
                ))
                .execute(conn)?;
            jobs::table
                .select(diesel::dsl::max(jobs::id))
                .first::<Option<i64>>(conn)
        })
        .await
        .unwrap()
        .unwrap();
    let interrupted = until_status(&cluster, orphan, "interrupted").await;
    assert!(
        interrupted["error"]
            .as_str()
            .unwrap()
            .contains("node 999999"),
        "{interrupted}"
    );
    let slow_lane = cluster.get("/api/v1/queue").await.body["lanes"][2].clone();
    let ids = order(slow_lane.clone());
    assert_eq!(ids.len(), 3, "{slow_lane}");
    assert_eq!(&ids[1..], [jobs[2], jobs[0]]);
    assert_eq!(
        slow_lane["jobs_waiting"][0]["collector_id"].as_i64(),
        Some(collectors[1])
    );
    assert_eq!(slow_lane["requeue_interrupted"], true, "{slow_lane}");

    // With the lane set to leave them, an interrupted run stays interrupted.
    let leave = cluster
        .put(
            "/api/v1/queue/config",
            json!({"requeue_interrupted": {"slow": false}}),
        )
        .await;
    assert_eq!(leave.status, StatusCode::OK, "{leave:?}");
    assert_eq!(leave.body["lanes"][2]["requeue_interrupted"], false);
    assert_eq!(leave.body["lanes"][0]["requeue_interrupted"], true);
    let alone = collector(&cluster, company, "alone", &[device], "slow").await;
    let orphan = cluster
        .db
        .run(move |conn| {
            use diesel::prelude::*;
            use vigil::db::schema::jobs;
            diesel::insert_into(jobs::table)
                .values((
                    jobs::collector_id.eq(alone),
                    jobs::lane.eq("slow"),
                    jobs::status.eq("running"),
                    jobs::node_id.eq(999_999i64),
                    jobs::enqueued_at.eq(0i64),
                    jobs::started_at.eq(0i64),
                ))
                .returning(jobs::id)
                .get_result::<i64>(conn)
        })
        .await
        .unwrap();
    until_status(&cluster, orphan, "interrupted").await;
    let slow_lane = cluster.get("/api/v1/queue").await.body["lanes"][2].clone();
    assert_eq!(order(slow_lane), ids, "nothing queued again");
}

/// Stores a poll of `device` at `at_ms` with these readings.
async fn store(db: &Db, device: i64, at_ms: i64, readings: Vec<(&'static str, f64)>) {
    db.run(move |conn| {
        let poll = NewPoll {
            device_id: device,
            epoch: 1,
            at_ms,
            readings: readings.into_iter().map(|(n, v)| (n.into(), v)).collect(),
            shared: None,
        };
        db::store::write(conn, &mut Catalogue::default(), &[poll])
    })
    .await
    .unwrap();
}

async fn a_report_says_what_the_stored_samples_say(backend: Backend) {
    let cluster = TestCluster::spawn(backend, 0).await;
    let company = cluster.company("acme").await;
    let device = cluster.device(company, "web").await;
    place(&cluster.db, device, 1).await;
    let now = Utc::now().timestamp_millis();
    let start = now - 3_000_000;
    // Ten polls a minute apart: CPU 10..100, memory 50, two disks, the fifth failed.
    for k in 0..10i64 {
        let up = if k == 4 { 0.0 } else { 1.0 };
        let mut readings = vec![("up", up), ("memory_usage_percent", 50.0)];
        if up == 1.0 {
            readings.push(("cpu_usage_percent", (k + 1) as f64 * 10.0));
            readings.push((r#"disk_usage_percent{mount="/"}"#, 20.0 + k as f64));
            readings.push((r#"disk_usage_percent{mount="/data"}"#, 25.0));
        }
        store(&cluster.db, device, start + k * 60_000, readings).await;
    }
    // Normal from 30 min ago, critical for 10 minutes from 20 min ago.
    let event = |minutes_ago: i64, from: &str, to: &str| NewEvent {
        device_id: device,
        company_id: company,
        epoch: 1,
        from_state: from.into(),
        to_state: to.into(),
        at: chrono::DateTime::from_timestamp_millis(now - minutes_ago * 60_000)
            .unwrap()
            .naive_utc(),
        reason: "test".into(),
        kind: "state",
    };
    let events = vec![
        event(30, "pending", "normal"),
        event(20, "normal", "critical"),
        event(10, "critical", "normal"),
    ];
    cluster
        .db
        .run(move |conn| db::events::insert_current(conn, &events))
        .await
        .unwrap();

    let made = cluster
        .post(
            "/api/v1/collectors",
            json!({"company_id": company, "name": "hourly", "kind": "report",
                   "target": {"all": true}, "params": {"window_hours": 1}, "expected_duration": "fast"}),
        )
        .await;
    assert_eq!(made.status, StatusCode::CREATED, "{made:?}");
    let id = run(&cluster, made.body["id"].as_i64().unwrap()).await.body["job"]["id"]
        .as_i64()
        .unwrap();
    until_status(&cluster, id, "done").await;
    let report = cluster.get(&format!("/api/v1/jobs/{id}/report")).await;
    assert_eq!(report.status, StatusCode::OK, "{report:?}");
    let d = &report.body["devices"][0];
    assert_eq!(d["device_id"], device);
    assert_eq!(d["polls"], 10);
    assert_eq!(d["availability_percent"], 90.0);
    // CPU of the nine answered polls: 10, 20, 30, 40, 60, ..., 100.
    let cpu = &d["cpu_percent"];
    assert_eq!(
        (
            cpu["min"].as_f64(),
            cpu["max"].as_f64(),
            cpu["p95"].as_f64()
        ),
        (Some(10.0), Some(100.0), Some(100.0))
    );
    let avg = (10 + 20 + 30 + 40 + 60 + 70 + 80 + 90 + 100) as f64 / 9.0;
    assert!((cpu["avg"].as_f64().unwrap() - avg).abs() < 1e-9, "{cpu}");
    // Each poll's fullest disk: 25 while / is under it, then / (29).
    let disk = &d["disk_percent"];
    assert_eq!(
        (disk["min"].as_f64(), disk["max"].as_f64()),
        (Some(25.0), Some(29.0))
    );
    assert_eq!(d["memory_percent"]["avg"], 50.0);
    // In the last hour: pending until 30 min ago, critical 10 minutes, normal 20.
    let seconds = &d["seconds_in_state"];
    let near = |v: &Value, expected: f64| (v.as_f64().unwrap() - expected).abs() < 5.0;
    assert!(
        near(&seconds["critical"], 600.0) && near(&seconds["normal"], 1200.0),
        "{seconds}"
    );
    assert!(near(&seconds["pending"], 1800.0), "{seconds}");
    assert_eq!(d["events"], 3);

    let csv = cluster
        .get_text(&format!("/api/v1/jobs/{id}/report?format=csv"))
        .await;
    let mut lines = csv.lines();
    assert!(lines
        .next()
        .unwrap()
        .starts_with("device_id,name,polls,availability_percent,cpu_min"));
    assert!(
        lines
            .next()
            .unwrap()
            .starts_with(&format!("{device},web,10,90,10,")),
        "{csv}"
    );

    // A bad format is refused.
    let bad = cluster
        .get(&format!("/api/v1/jobs/{id}/report?format=xml"))
        .await;
    assert_error(&bad, StatusCode::BAD_REQUEST, "invalid_query");
}

/// Runs an export collector of `company` with `params` to its end; the job.
async fn exported(cluster: &TestCluster, company: i64, name: &str, params: Value) -> Value {
    let made = cluster
        .post(
            "/api/v1/collectors",
            json!({"company_id": company, "name": name, "kind": "export",
                   "target": {"all": true}, "expected_duration": "medium",
                   "params": params}),
        )
        .await;
    assert_eq!(made.status, StatusCode::CREATED, "{made:?}");
    let queued = run(cluster, made.body["id"].as_i64().unwrap()).await;
    assert_eq!(queued.status, StatusCode::ACCEPTED, "{queued:?}");
    until_status(cluster, queued.body["job"]["id"].as_i64().unwrap(), "done").await
}

async fn an_export_streams_the_window_raw_or_rolled_up_as_csv(backend: Backend) {
    let cluster = TestCluster::spawn(backend, 0).await;
    let company = cluster.company("acme").await;
    let device = cluster.device(company, "web, east").await;
    place(&cluster.db, device, 1).await;
    // Two hours of polls a minute apart, ending five minutes ago: CPU k, memory 50.
    let now = Utc::now().timestamp_millis();
    let first = (now - 125 * 60_000) / 60_000 * 60_000;
    for k in 0..120i64 {
        let readings = vec![
            ("cpu_usage_percent", k as f64),
            ("memory_usage_percent", 50.0),
        ];
        store(&cluster.db, device, first + k * 60_000, readings).await;
    }
    let bad = cluster
        .post(
            "/api/v1/collectors",
            json!({"company_id": company, "name": "bad", "kind": "export",
                   "target": {"all": true}, "expected_duration": "fast",
                   "params": {"tier": "second"}}),
        )
        .await;
    assert_error(&bad, StatusCode::BAD_REQUEST, "invalid_params");

    // Raw, the last three hours: every reading, one line each.
    let job = exported(&cluster, company, "raw", json!({"window_hours": 3})).await;
    let id = job["id"].as_i64().unwrap();
    assert_eq!(job["progress"]["rows_written"], 240, "{job}");
    let csv = cluster.get_text(&format!("/api/v1/jobs/{id}/export")).await;
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0],
        "device_id,device,at,series,value,min,avg,max,count"
    );
    assert_eq!(lines.len(), 241, "{csv}");
    let cpu: Vec<&str> = lines
        .iter()
        .filter(|l| l.contains(",cpu_usage_percent,"))
        .copied()
        .collect();
    assert_eq!(cpu.len(), 120);
    let at = |ms: i64| {
        chrono::DateTime::from_timestamp_millis(ms)
            .unwrap()
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    };
    assert!(
        cpu.contains(&&*format!(
            "{device},\"web, east\",{},cpu_usage_percent,7,,,,",
            at(first + 7 * 60_000)
        )),
        "{csv}"
    );

    // Hourly rollups: per hour min, avg, max, count and the last reading.
    crate::rollups::roll_all(&cluster.db).await;
    let job = exported(
        &cluster,
        company,
        "hourly",
        json!({"window_hours": 4, "tier": "hour"}),
    )
    .await;
    let csv = cluster
        .get_text(&format!("/api/v1/jobs/{}/export", job["id"]))
        .await;
    let hours: Vec<Vec<String>> = csv
        .lines()
        .skip(1)
        .filter(|l| l.contains(",cpu_usage_percent,"))
        .map(|l| l.rsplit(',').take(5).map(String::from).collect())
        .collect();
    // Each full hour of the two holds 60 polls; the readings of one hour are
    // consecutive values of k, so avg is (min + max) / 2 and last is max.
    let full: Vec<&Vec<String>> = hours.iter().filter(|h| h[0] == "60").collect();
    assert!(!full.is_empty(), "{csv}");
    for h in full {
        let (count, max, avg, min, last) = (&h[0], &h[1], &h[2], &h[3], &h[4]);
        let (max, avg, min): (f64, f64, f64) = (
            max.parse().unwrap(),
            avg.parse().unwrap(),
            min.parse().unwrap(),
        );
        assert_eq!(count, "60");
        assert_eq!(max - min, 59.0, "{h:?}");
        assert_eq!(avg, (max + min) / 2.0, "{h:?}");
        assert_eq!(last.parse::<f64>().unwrap(), max, "{h:?}");
    }

    // A report job has no export, and a report's route refuses an export job.
    let refused = cluster.get(&format!("/api/v1/jobs/{id}/report")).await;
    assert_error(&refused, StatusCode::CONFLICT, "no_report");
}

/// An HTTP server on port 0 whose `/metrics` answers a real node_exporter's text; its
/// port.
fn node_exporter_server() -> u16 {
    let body = include_str!("../fixtures/node_exporter_1.prom");
    let server = HttpServer::new(move || {
        App::new().route(
            "/metrics",
            web::get().to(move || async move {
                HttpResponse::Ok()
                    .content_type("text/plain; version=0.0.4")
                    .body(body)
            }),
        )
    })
    .workers(1)
    .bind("127.0.0.1:0")
    .unwrap();
    let port = server.addrs()[0].port();
    actix_rt::spawn(server.run());
    port
}

async fn discovery_registers_what_answers_on_loopback_and_refuses_denied_ranges(backend: Backend) {
    let cluster = TestCluster::spawn(backend, 0).await;
    let company = cluster.company("acme").await;
    let agent = crate::agent::TestAgent::spawn().await;
    let node = node_exporter_server();
    // A port that accepts connections and never answers HTTP, and one nobody holds.
    let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let tcp_port = tcp.local_addr().unwrap().port();
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // The node_exporter is a device of the company already.
    let known = cluster
        .device_at(
            company,
            "known",
            &format!("http://127.0.0.1:{node}/metrics"),
        )
        .await;
    let collector = |name: &str, params: Value| {
        json!({"company_id": company, "name": name, "kind": "discovery",
               "expected_duration": "fast", "params": params})
    };

    // Refused: a denied range or address, a range too large, both or neither given, a
    // target.
    for (params, status, code) in [
        (
            json!({"cidr": "169.254.169.0/24"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "address_denied",
        ),
        (
            json!({"addresses": ["127.0.0.1", "169.254.169.254"]}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "address_denied",
        ),
        (
            json!({"cidr": "10.0.0.0/8"}),
            StatusCode::BAD_REQUEST,
            "invalid_params",
        ),
        (
            json!({"cidr": "10.0.0.0/30", "addresses": ["10.0.0.1"]}),
            StatusCode::BAD_REQUEST,
            "invalid_params",
        ),
        (
            json!({"ports": [9109]}),
            StatusCode::BAD_REQUEST,
            "invalid_params",
        ),
        (
            json!({"addresses": ["127.0.0.1"], "ports": [0]}),
            StatusCode::BAD_REQUEST,
            "invalid_params",
        ),
        (
            json!({"addresses": ["not-an-ip"]}),
            StatusCode::BAD_REQUEST,
            "invalid_params",
        ),
    ] {
        let refused = cluster
            .post("/api/v1/collectors", collector("bad", params.clone()))
            .await;
        assert_error(&refused, status, code);
    }
    let mut with_target = collector("bad", json!({"addresses": ["127.0.0.1"]}));
    with_target["target"] = json!({"all": true});
    let refused = cluster.post("/api/v1/collectors", with_target).await;
    assert_error(&refused, StatusCode::BAD_REQUEST, "invalid_target");

    let ports = [agent.address.port(), node, tcp_port, closed];
    let made = cluster
        .post(
            "/api/v1/collectors",
            collector(
                "loopback",
                json!({"cidr": "127.0.0.1/32", "ports": ports,
                       "look_for": ["agent", "node_exporter", "tcp"], "timeout_ms": 500}),
            ),
        )
        .await;
    assert_eq!(made.status, StatusCode::CREATED, "{made:?}");
    let queued = run(&cluster, made.body["id"].as_i64().unwrap()).await;
    let id = queued.body["job"]["id"].as_i64().unwrap();
    let done = until_status(&cluster, id, "done").await;
    assert_eq!(done["progress"]["done"], 4, "{done}");
    assert_eq!(done["progress"]["total"], 4, "{done}");
    let output = cluster.get(&format!("/api/v1/jobs/{id}/output")).await;
    assert_eq!(output.status, StatusCode::OK, "{output:?}");
    let out = output.body;
    assert_eq!(
        (out["addresses"].as_i64(), out["probed"].as_i64()),
        (Some(1), Some(4))
    );
    let added: std::collections::BTreeSet<(String, String, String)> = out["added"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["found"].as_str().unwrap().to_string(),
                a["kind"].as_str().unwrap().to_string(),
                a["address"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        added,
        [
            (
                "agent".to_string(),
                "agent".to_string(),
                format!("http://127.0.0.1:{}/metrics.json", agent.address.port())
            ),
            (
                "tcp".to_string(),
                "tcp".to_string(),
                format!("127.0.0.1:{tcp_port}")
            ),
        ]
        .into_iter()
        .collect(),
        "{out}"
    );
    assert_eq!(out["skipped"].as_array().unwrap().len(), 1, "{out}");
    assert_eq!(out["skipped"][0]["found"], "node_exporter", "{out}");
    assert!(
        out["skipped"][0]["reason"]
            .as_str()
            .unwrap()
            .contains(&format!("device {known}")),
        "{out}"
    );
    // The devices are the company's, as the API lists them.
    let devices = cluster
        .get(&format!("/api/v1/devices?company_id={company}"))
        .await
        .body;
    let names: Vec<&str> = devices
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&&*format!("127.0.0.1:{tcp_port}")),
        "{devices}"
    );
    assert_eq!(names.len(), 3, "{devices}");
    drop(tcp);

    // Run again: everything found is a device already.
    let again = run(&cluster, made.body["id"].as_i64().unwrap()).await;
    let again_id = again.body["job"]["id"].as_i64().unwrap();
    until_status(&cluster, again_id, "done").await;
    let out = cluster
        .get(&format!("/api/v1/jobs/{again_id}/output"))
        .await
        .body;
    assert_eq!(out["added"], json!([]), "{out}");
}
