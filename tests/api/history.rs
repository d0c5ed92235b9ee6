//! Stored metrics through the coordinator's API: history downsampled into buckets on
//! known data, the latest poll, retention, health judged from thresholds (with a config
//! change mid-run) and listed as events, and `GET /metrics` of both kinds of node.

use actix_web::http::StatusCode;
use chrono::{Duration, TimeZone, Utc};
use serde_json::{json, Value};
use vigil::actors::membership::GetCluster;
use vigil::actors::retention::{Prune, Pruned};
use vigil::db::models::NewEvent;
use vigil::db::store::{Catalogue, NewPoll};
use vigil::db::{self, Db};
use vigil::startup::Coordinator;

use crate::helpers::{assert_error, eventually, place, promtool_accepts, Backend, TestCluster};

crate::on_both_backends!(
    history_is_downsampled_into_buckets_with_min_avg_max,
    retention_deletes_only_samples_past_retention_hours,
    thresholds_decide_the_state_and_every_change_is_an_event,
);

/// Stores one reading per second of `metric` for `seconds` seconds from `start_ms`,
/// valued 0, 1, 2, …
async fn store_ramp(db: &Db, device_id: i64, metric: &str, start_ms: i64, seconds: i64) {
    let metric = metric.to_string();
    place(db, device_id, 1).await;
    let stored = db
        .run(move |conn| {
            let polls: Vec<NewPoll> = (0..seconds)
                .map(|i| NewPoll {
                    device_id,
                    epoch: 1,
                    at_ms: start_ms + i * 1000,
                    readings: vec![(metric.as_str().into(), i as f64)],
                    shared: None,
                })
                .collect();
            db::store::write(conn, &mut Catalogue::default(), &polls)
        })
        .await
        .unwrap();
    assert_eq!(stored.samples, seconds as usize);
}

fn series<'a>(body: &'a Value, key: &str) -> &'a Value {
    body["series"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["series"] == key)
        .unwrap_or_else(|| panic!("no series {key} in {body}"))
}

async fn history_is_downsampled_into_buckets_with_min_avg_max(backend: Backend) {
    let cluster = TestCluster::spawn(backend, 0).await;
    let company = cluster.company("acme").await;
    let device = cluster.device(company, "web").await;
    let other = cluster.device(company, "db").await;
    let start = Utc.with_ymd_and_hms(2026, 11, 23, 10, 0, 0).unwrap();
    let start_ms = start.timestamp_millis();
    store_ramp(&cluster.db, device, "cpu_usage_percent", start_ms, 60).await;
    store_ramp(
        &cluster.db,
        device,
        r#"disk_usage_percent{mount="/"}"#,
        start_ms,
        60,
    )
    .await;
    store_ramp(&cluster.db, other, "cpu_usage_percent", start_ms, 60).await;

    // One minute in six buckets of ten seconds: bucket k holds 10k … 10k+9.
    let path = format!(
        "/api/v1/devices/{device}/metrics?from=2026-11-23T10:00:00Z&to=2026-11-23T10:01:00Z&points=6"
    );
    let answer = cluster.get(&path).await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    assert_eq!(answer.body["bucket_ms"], 10_000);
    assert_eq!(
        answer.body["series"].as_array().unwrap().len(),
        2,
        "{answer:?}"
    );
    let cpu = series(&answer.body, "cpu_usage_percent");
    assert_eq!(cpu["name"], "cpu_usage_percent");
    let points = cpu["points"].as_array().unwrap();
    assert_eq!(points.len(), 6);
    for (k, point) in points.iter().enumerate() {
        let k = k as f64;
        assert_eq!(point["min"], json!(10.0 * k), "{point}");
        assert_eq!(point["max"], json!(10.0 * k + 9.0), "{point}");
        assert_eq!(point["avg"], json!(10.0 * k + 4.5), "{point}");
        assert_eq!(point["count"], 10);
        let at = (start + Duration::seconds(10 * k as i64))
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        assert_eq!(point["at"], json!(at));
    }
    let disk = series(&answer.body, r#"disk_usage_percent{mount="/"}"#);
    assert_eq!(disk["name"], "disk_usage_percent");
    assert_eq!(disk["labels"], json!({"mount": "/"}));

    // A range that does not divide evenly: 60 s in 7 buckets of 8572 ms; every reading
    // is counted once, and no more than 7 buckets come back.
    let answer = cluster
        .get(&format!(
            "/api/v1/devices/{device}/metrics?from=2026-11-23T10:00:00Z&to=2026-11-23T10:01:00Z&points=7&metric=cpu_usage_percent"
        ))
        .await;
    assert_eq!(
        answer.body["series"].as_array().unwrap().len(),
        1,
        "{answer:?}"
    );
    let points = answer.body["series"][0]["points"].as_array().unwrap();
    assert!(points.len() <= 7);
    let counted: i64 = points.iter().map(|p| p["count"].as_i64().unwrap()).sum();
    assert_eq!(counted, 60);
    assert_eq!(points.first().unwrap()["min"], json!(0.0));
    assert_eq!(points.last().unwrap()["max"], json!(59.0));

    // The half-open range [from, to) keeps the readings of its seconds only.
    let answer = cluster
        .get(&format!(
            "/api/v1/devices/{device}/metrics?from=2026-11-23T10:00:30Z&to=2026-11-23T10:00:40Z&points=1&metric=disk_usage_percent"
        ))
        .await;
    let point = &answer.body["series"][0]["points"][0];
    assert_eq!(
        (
            point["min"].clone(),
            point["max"].clone(),
            point["count"].clone()
        ),
        (json!(30.0), json!(39.0), json!(10))
    );

    // Nothing stored in the last 15 minutes: no series.
    let answer = cluster
        .get(&format!("/api/v1/devices/{device}/metrics"))
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.body["series"], json!([]));

    let missing = cluster.get("/api/v1/devices/999999/metrics").await;
    assert_error(&missing, StatusCode::NOT_FOUND, "not_found");
    for bad in [
        "minutes=0",
        "minutes=5&from=2026-11-23T10:00:00Z",
        "from=yesterday",
        "from=2026-11-23T10:00:00Z&to=2026-11-23T09:00:00Z",
        "points=0",
        "points=10001",
        "metric=",
        "unknown=1",
    ] {
        let answer = cluster
            .get(&format!("/api/v1/devices/{device}/metrics?{bad}"))
            .await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{bad}: {answer:?}");
        assert_eq!(answer.body["code"], "invalid_query", "{bad}: {answer:?}");
    }
}

async fn retention_deletes_only_samples_past_retention_hours(backend: Backend) {
    let cluster = TestCluster::spawn(backend, 0).await;
    let company = cluster.company("acme").await;
    let device = cluster.device(company, "web").await;
    let answer = cluster
        .put("/api/v1/config", json!({"retention_hours": 1}))
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    assert_eq!(answer.body["config"]["retention_hours"], 1);
    let now_ms = Utc::now().timestamp_millis();
    store_ramp(&cluster.db, device, "old", now_ms - 3 * 3_600_000, 30).await;
    store_ramp(&cluster.db, device, "recent", now_ms - 600_000, 30).await;
    let events: Vec<NewEvent> = [3 * 60, 10]
        .into_iter()
        .map(|minutes_ago| NewEvent {
            device_id: device,
            company_id: company,
            epoch: 1,
            from_state: "normal".into(),
            to_state: "alert".into(),
            at: (Utc::now() - Duration::minutes(minutes_ago)).naive_utc(),
            reason: format!("{minutes_ago} minutes ago"),
            kind: db::models::EVENT_STATE,
        })
        .collect();
    cluster
        .db
        .run(move |conn| db::events::insert_current(conn, &events))
        .await
        .unwrap();
    // A second coordinator is not the master: it leaves retention to the first.
    let second = Coordinator::build(
        cluster.db.clone(),
        "127.0.0.1:0".parse().unwrap(),
        crate::helpers::cluster_token(),
        crate::helpers::test_options(),
    )
    .unwrap();
    let second_membership = second.membership();
    eventually("the second coordinator joined", || async {
        let view = second_membership.send(GetCluster).await.unwrap();
        view.this_node.is_some().then_some(())
    })
    .await;
    cluster.coordinator_is_master().await;
    assert_eq!(
        second.retention().send(Prune).await.unwrap().unwrap(),
        Pruned::default()
    );
    let pruned = cluster.retention.send(Prune).await.unwrap().unwrap();
    assert_eq!(
        pruned,
        Pruned {
            polls: 30,
            blocks: 0,
            events: 1,
            rollups: 0
        }
    );
    let left = cluster
        .get(&format!("/api/v1/events?device_id={device}"))
        .await;
    assert_eq!(left.body.as_array().unwrap().len(), 1, "{left:?}");
    assert_eq!(left.body[0]["reason"], "10 minutes ago");
    let answer = cluster
        .get(&format!("/api/v1/devices/{device}/metrics?minutes=240"))
        .await;
    let names: Vec<&str> = answer.body["series"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["series"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["recent"]);
    assert_eq!(
        cluster.retention.send(Prune).await.unwrap().unwrap(),
        Pruned::default()
    );
}

/// Waits until the device's latest event went to `state`; returns the events, newest first.
async fn wait_for_state(cluster: &TestCluster, device: i64, state: &str) -> Vec<Value> {
    eventually(&format!("device {device} becomes {state}"), || async {
        let answer = cluster
            .get(&format!("/api/v1/events?device_id={device}"))
            .await;
        let events = answer.body.as_array()?.clone();
        (events.first()?["to"] == state).then_some(events)
    })
    .await
}

async fn thresholds_decide_the_state_and_every_change_is_an_event(backend: Backend) {
    let cluster = TestCluster::spawn(backend, 1).await;
    let company = cluster.company("acme").await;
    let device = cluster
        .device_at(company, "host", &cluster.fleet.url("/agent/host"))
        .await;
    cluster.fleet.set_cpu("host", 50.0);
    let answer = cluster
        .put(
            &format!("/api/v1/devices/{device}"),
            json!({"kind": "agent"}),
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    let since = Utc::now() - Duration::seconds(1);
    cluster.start_device(device).await;
    wait_for_state(&cluster, device, "normal").await;

    cluster.fleet.set_cpu("host", 80.0);
    let events = wait_for_state(&cluster, device, "alert").await;
    assert!(
        events[0]["reason"]
            .as_str()
            .unwrap()
            .contains("cpu_usage_percent is 80.0, above the alert threshold 70"),
        "{events:?}"
    );
    // Thresholds move while the monitor runs: the same reading is normal at the next poll.
    let answer = cluster
        .put("/api/v1/config", json!({"alert_threshold": 85}))
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    wait_for_state(&cluster, device, "normal").await;
    cluster.fleet.set_cpu("host", 95.0);
    wait_for_state(&cluster, device, "critical").await;

    let events = wait_for_state(&cluster, device, "critical").await;
    let path: Vec<(&str, &str)> = events
        .iter()
        .rev()
        .map(|e| (e["from"].as_str().unwrap(), e["to"].as_str().unwrap()))
        .collect();
    assert_eq!(
        path,
        vec![
            ("pending", "normal"),
            ("normal", "alert"),
            ("alert", "normal"),
            ("normal", "critical")
        ]
    );
    assert!(events
        .iter()
        .all(|e| e["company_id"] == company && e["device_id"] == device));

    // Filters: by company, by time, and a company with no events.
    let by_company = cluster
        .get(&format!("/api/v1/events?company_id={company}&limit=2"))
        .await;
    assert_eq!(by_company.body.as_array().unwrap().len(), 2);
    assert_eq!(by_company.body[0]["to"], "critical");
    let since = since.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let recent = cluster
        .get(&format!("/api/v1/events?device_id={device}&since={since}"))
        .await;
    assert_eq!(recent.body.as_array().unwrap().len(), 4, "{recent:?}");
    let later =
        (Utc::now() + Duration::hours(1)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let none = cluster
        .get(&format!("/api/v1/events?device_id={device}&since={later}"))
        .await;
    assert_eq!(none.body, json!([]));
    let bad = cluster.get("/api/v1/events?since=monday").await;
    assert_error(&bad, StatusCode::BAD_REQUEST, "invalid_query");

    // The latest poll and the current state, from the store.
    let latest = eventually("the latest poll is stored", || async {
        let answer = cluster
            .get(&format!("/api/v1/devices/{device}/metrics/latest"))
            .await;
        (answer.body["metrics"]["cpu_usage_percent"] == json!(95.0)).then_some(answer)
    })
    .await;
    assert_eq!(latest.body["state"], "critical");
    assert_eq!(
        latest.body["metrics"][r#"disk_usage_percent{mount="/"}"#],
        json!(10.0)
    );
    assert_eq!(latest.body["metrics"]["up"], json!(1.0));

    // The coordinator exposes the device's latest reading with its names.
    let text = cluster.get_text("/metrics").await;
    assert!(
        text.contains(&format!(
            "vigil_device_cpu_usage_percent{{device=\"host\",company=\"acme\",device_id=\"{device}\"}} 95\n"
        )),
        "{text}"
    );
    assert!(text.contains("vigil_devices_monitored 1\n"), "{text}");
}

#[actix_rt::test]
async fn failed_polls_make_a_device_unreachable_after_unreachable_after() {
    let cluster = TestCluster::spawn(Backend::Sqlite, 1).await;
    let answer = cluster
        .put("/api/v1/config", json!({"unreachable_after": 2}))
        .await;
    assert_eq!(answer.body["config"]["unreachable_after"], 2, "{answer:?}");
    let company = cluster.company("acme").await;
    let device = cluster
        .device_at(company, "broken", &cluster.fleet.url("/status/500"))
        .await;
    cluster.start_device(device).await;
    let events = wait_for_state(&cluster, device, "unreachable").await;
    assert_eq!(events.len(), 1, "no state before it: {events:?}");
    assert_eq!(events[0]["from"], "pending");
    let reason = events[0]["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("2 failed polls in a row; last: answered HTTP 500"),
        "{reason}"
    );
    // The same device answering its expected status is up.
    let answer = cluster
        .put(
            &format!("/api/v1/devices/{device}"),
            json!({"expected_status": 500}),
        )
        .await;
    assert_eq!(answer.body["device"]["expected_status"], 500, "{answer:?}");
    wait_for_state(&cluster, device, "normal").await;
}

#[actix_rt::test]
async fn a_monitor_server_exposes_its_polls_writer_and_devices() {
    let cluster = TestCluster::spawn(Backend::Sqlite, 1).await;
    let company = cluster.company("acme").await;
    let device = cluster
        .device_at(company, "web", &cluster.fleet.url("/d/web"))
        .await;
    cluster.start_device(device).await;
    let server = cluster.servers[0].id;
    let text = eventually("polls counted and a batch written", || async {
        let text = cluster.server_text(0, "/metrics").await;
        let none_written = text.contains(&format!(
            "vigil_writer_batches_total{{server_id=\"{server}\"}} 0\n"
        ));
        (!none_written && text.contains("vigil_device_up{")).then_some(text)
    })
    .await;
    let value = |series: &str| -> f64 {
        let line = text
            .lines()
            .find(|l| l.starts_with(series))
            .unwrap_or_else(|| panic!("no {series} in\n{text}"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    let labels = format!("{{server_id=\"{server}\"}}");
    assert!(value(&format!("vigil_polls_total{labels}")) >= 1.0);
    assert_eq!(value(&format!("vigil_poll_failures_total{labels}")), 0.0);
    assert!(value(&format!("vigil_poll_duration_seconds_count{labels}")) >= 1.0);
    assert!(value(&format!("vigil_poll_lateness_seconds_count{labels}")) >= 1.0);
    assert!(value(&format!("vigil_writer_samples_written_total{labels}")) >= 1.0);
    assert!(value(&format!("vigil_writer_batch_samples_count{labels}")) >= 1.0);
    assert_eq!(
        value(&format!("vigil_writer_dropped_samples_total{labels}")),
        0.0
    );
    for family in [
        "# TYPE vigil_monitors_running gauge",
        "# TYPE vigil_polls_total counter",
        "# TYPE vigil_poll_failures_total counter",
        "# TYPE vigil_poll_duration_seconds histogram",
        "# TYPE vigil_poll_lateness_seconds histogram",
        "# TYPE vigil_writer_batch_samples histogram",
        "# TYPE vigil_writer_dropped_samples_total counter",
        "# TYPE vigil_writer_lag_seconds gauge",
    ] {
        assert!(text.contains(family), "{family} missing from\n{text}");
    }
    assert!(text.contains(&format!(
        "vigil_monitors_running{{server_id=\"{server}\"}} 1\n"
    )));
    assert!(text.contains(&format!(
        "vigil_device_up{{device=\"web\",company=\"acme\",device_id=\"{device}\"}} 1\n"
    )));
    assert!(text.contains(&format!(
        "vigil_poll_duration_seconds_bucket{{server_id=\"{server}\",le=\"+Inf\"}}"
    )));

    // Its own figures alone, cheap however many monitors it runs.
    let own = cluster.server_text(0, "/metrics?devices=false").await;
    assert!(own.contains("vigil_polls_total{"), "{own}");
    assert!(!own.contains("vigil_device_"), "{own}");
}

#[actix_rt::test]
async fn both_metrics_endpoints_pass_promtool() {
    let cluster = TestCluster::spawn(Backend::Sqlite, 1).await;
    let company = cluster.company("acme").await;
    let device = cluster
        .device_at(company, "host", &cluster.fleet.url("/agent/host"))
        .await;
    cluster
        .put(
            &format!("/api/v1/devices/{device}"),
            json!({"kind": "agent"}),
        )
        .await;
    cluster.start_device(device).await;
    let coordinator = eventually("the host's reading is stored", || async {
        let text = cluster.get_text("/metrics").await;
        text.contains("vigil_device_cpu_usage_percent{")
            .then_some(text)
    })
    .await;
    let server = cluster.server_text(0, "/metrics").await;
    promtool_accepts(&coordinator);
    promtool_accepts(&server);
}

#[actix_rt::test]
async fn a_tcp_device_is_up_while_its_port_accepts() {
    let cluster = TestCluster::spawn(Backend::Sqlite, 1).await;
    let company = cluster.company("acme").await;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let open = listener.local_addr().unwrap();
    let closed = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap()
    };
    let mut ids = Vec::new();
    for (name, address) in [
        ("open", open.to_string()),
        ("closed", format!("tcp://{closed}")),
    ] {
        let answer = cluster
            .post(
                "/api/v1/devices",
                json!({"company_id": company, "name": name, "address": address, "kind": "tcp"}),
            )
            .await;
        assert_eq!(answer.status, StatusCode::CREATED, "{answer:?}");
        let id = answer.body["id"].as_i64().unwrap();
        cluster.start_device(id).await;
        ids.push(id);
    }
    wait_for_state(&cluster, ids[0], "normal").await;
    wait_for_state(&cluster, ids[1], "unreachable").await;
    let answer = cluster.get(&format!("/api/v1/devices/{}", ids[1])).await;
    let error = answer.body["monitoring"]["last_result"]["error"]
        .as_str()
        .unwrap();
    assert!(error.starts_with("could not connect"), "{error}");
    drop(listener);
}

#[actix_rt::test]
async fn device_kinds_and_addresses_are_checked_when_saved() {
    let cluster = TestCluster::spawn(Backend::Sqlite, 0).await;
    let company = cluster.company("acme").await;
    for (kind, address, code) in [
        ("snmp", "10.0.0.1", "invalid_kind"),
        ("tcp", "http://db:5432", "invalid_address"),
        ("tcp", "db", "invalid_address"),
        ("agent", "db:9109", "invalid_address"),
        ("prometheus", "ftp://db:9100", "invalid_address"),
    ] {
        let answer = cluster
            .post(
                "/api/v1/devices",
                json!({"company_id": company, "name": "d", "address": address, "kind": kind}),
            )
            .await;
        assert_error(&answer, StatusCode::BAD_REQUEST, code);
    }
    for (kind, address, status) in [
        ("tcp", "db:1", json!(200)),
        ("http", "http://db/", json!(99)),
        ("http", "http://db/", json!(600)),
    ] {
        let answer = cluster
            .post(
                "/api/v1/devices",
                json!({"company_id": company, "name": "d", "address": address, "kind": kind, "expected_status": status}),
            )
            .await;
        assert_error(&answer, StatusCode::BAD_REQUEST, "invalid_expected_status");
    }
    // Leaving http drops the expected status; null clears it.
    let answer = cluster
        .post(
            "/api/v1/devices",
            json!({"company_id": company, "name": "web", "address": "http://web:80/", "kind": "http", "expected_status": 204}),
        )
        .await;
    assert_eq!(answer.body["expected_status"], 204, "{answer:?}");
    let id = answer.body["id"].as_i64().unwrap();
    let answer = cluster
        .put(
            &format!("/api/v1/devices/{id}"),
            json!({"expected_status": null}),
        )
        .await;
    assert_eq!(
        answer.body["device"]["expected_status"],
        Value::Null,
        "{answer:?}"
    );
    cluster
        .put(
            &format!("/api/v1/devices/{id}"),
            json!({"expected_status": 301}),
        )
        .await;
    let answer = cluster
        .put(
            &format!("/api/v1/devices/{id}"),
            json!({"kind": "prometheus"}),
        )
        .await;
    assert_eq!(answer.body["device"]["kind"], "prometheus", "{answer:?}");
    assert_eq!(answer.body["device"]["expected_status"], Value::Null);
}
