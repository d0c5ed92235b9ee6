//! A monitor server's own HTTP API, called directly as a coordinator would: start,
//! status, change and stop monitors, config, info, health, JSON errors; and
//! `GET /debug/actors` on both kinds of node.

use actix_web::http::{Method, StatusCode};
use serde_json::{json, Value};
use vigil::domain::DeviceKind;

use crate::helpers::{assert_error, eventually, Backend, TestCluster, TEST_POLL_INTERVAL_MS};

/// A config as the coordinator sends it, with room for `max_monitors` monitors.
fn config(max_monitors: u32) -> Value {
    json!({
        "poll_interval_ms": TEST_POLL_INTERVAL_MS,
        "timeout_ms": 1_000,
        "alert_threshold": 70,
        "critical_threshold": 90,
        "max_monitors_per_server": max_monitors,
        "unreachable_after": 3,
    })
}

/// The device body of the monitor-server API, polling the fleet at `/d/{name}`.
fn device(cluster: &TestCluster, id: i64, name: &str) -> Value {
    json!({
        "id": id,
        "company_id": 1,
        "name": name,
        "address": cluster.fleet.url(&format!("/d/{name}")),
        "kind": "http",
    })
}

/// A `StartMonitorRequest`.
fn start_request(device: Value, config: Value) -> Value {
    json!({ "device": device, "config": config, "epoch": 1 })
}

async fn call(
    cluster: &TestCluster,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> crate::helpers::Answer {
    cluster.server_call(0, method, path, body).await
}

async fn start(cluster: &TestCluster, id: i64, name: &str) {
    let request = start_request(device(cluster, id, name), config(1_000));
    let answer = call(cluster, Method::POST, "/monitors", Some(request)).await;
    assert_eq!(answer.status, StatusCode::CREATED, "{answer:?}");
}

async fn info(cluster: &TestCluster) -> Value {
    let answer = call(cluster, Method::GET, "/info", None).await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    answer.body
}

#[actix_rt::test]
async fn a_batch_start_answers_one_outcome_per_device_and_refuses_bad_bodies() {
    let cluster = TestCluster::spawn(Backend::Sqlite, 1).await;
    let server_id = cluster.servers[0].id;
    start(&cluster, 201, "a").await;
    let entry = |id: i64, name: &str| json!({ "device": device(&cluster, id, name), "epoch": 1 });
    let batch = json!({
        "config": config(3),
        "monitors": [entry(201, "a"), entry(202, "b"), entry(203, "c"), entry(204, "d")],
    });
    let answer = call(&cluster, Method::POST, "/monitors/batch", Some(batch)).await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    assert_eq!(
        answer.body,
        json!({
            "server_id": server_id,
            "results": [
                { "device_id": 201, "outcome": "already_running" },
                { "device_id": 202, "outcome": "started" },
                { "device_id": 203, "outcome": "started" },
                { "device_id": 204, "outcome": "at_limit" },
            ],
        })
    );
    assert_eq!(info(&cluster).await["device_ids"], json!([201, 202, 203]));

    let mut bad = config(10);
    bad["timeout_ms"] = json!(0);
    let bad = json!({ "config": bad, "monitors": [entry(205, "e")] });
    let refused = call(&cluster, Method::POST, "/monitors/batch", Some(bad)).await;
    assert_error(&refused, StatusCode::BAD_REQUEST, "invalid_config");
    assert_eq!(
        info(&cluster).await["device_ids"],
        json!([201, 202, 203]),
        "nothing started by a refused batch"
    );
}

/// A rolling upgrade runs a newer coordinator beside this server: fields it does not
/// know, at every level of a batch, are ignored, and the batch starts what it asks.
#[actix_rt::test]
async fn a_batch_with_fields_from_a_newer_coordinator_is_accepted() {
    let cluster = TestCluster::spawn(Backend::Sqlite, 1).await;
    let server_id = cluster.servers[0].id;
    let mut newer_device = device(&cluster, 301, "a");
    newer_device["labels"] = json!({"rack": "r1"});
    let mut newer_config = config(10);
    newer_config["jitter_ms"] = json!(250);
    let batch = json!({
        "config": newer_config,
        "monitors": [
            { "device": newer_device, "epoch": 4, "priority": "high" },
            { "device": device(&cluster, 302, "b"), "epoch": 1 },
        ],
        "coordinator_version": "9.9.9",
    });
    let answer = call(&cluster, Method::POST, "/monitors/batch", Some(batch)).await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    assert_eq!(
        answer.body,
        json!({
            "server_id": server_id,
            "results": [
                { "device_id": 301, "outcome": "started" },
                { "device_id": 302, "outcome": "started" },
            ],
        })
    );
    let status = call(&cluster, Method::GET, "/monitors/301", None).await;
    assert_eq!(status.body["epoch"], 4, "{status:?}");
    assert_eq!(status.body["device"]["name"], "a");
    eventually("the monitor polls its device", || async {
        (cluster.fleet.hits("/d/a") > 0).then_some(())
    })
    .await;
    // Answers an older coordinator reads stay as they were unless it asks for more.
    let plain = info(&cluster).await;
    assert!(plain.get("monitors").is_none(), "{plain}");
    let with_epochs = call(&cluster, Method::GET, "/info?epochs=true&from=newer", None).await;
    assert_eq!(
        with_epochs.body["monitors"],
        json!([{ "device_id": 301, "epoch": 4 }, { "device_id": 302, "epoch": 1 }])
    );
}

/// A stop names the epoch its scheduler read: a copy under a newer epoch (placed by a
/// later start) is kept, and the answer says so; a batch stop answers per device.
#[actix_rt::test]
async fn a_stop_naming_an_older_epoch_keeps_a_newer_copy() {
    let cluster = TestCluster::spawn(Backend::Sqlite, 1).await;
    let server_id = cluster.servers[0].id;
    let mut request = start_request(device(&cluster, 401, "a"), config(1_000));
    request["epoch"] = json!(5);
    let created = call(&cluster, Method::POST, "/monitors", Some(request)).await;
    assert_eq!(created.status, StatusCode::CREATED, "{created:?}");
    start(&cluster, 402, "b").await;

    let kept = call(&cluster, Method::DELETE, "/monitors/401?epoch=4", None).await;
    assert_eq!(kept.status, StatusCode::OK, "{kept:?}");
    assert_eq!(
        kept.body,
        json!({ "device_id": 401, "server_id": server_id, "outcome": "kept_newer", "epoch": 5 })
    );
    let batch = json!({ "monitors": [
        { "device_id": 401, "epoch": 4 },
        { "device_id": 402, "epoch": 1 },
        { "device_id": 403, "epoch": 1 },
    ]});
    let answer = call(&cluster, Method::POST, "/monitors/stop", Some(batch)).await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    assert_eq!(
        answer.body,
        json!({ "server_id": server_id, "results": [
            { "device_id": 401, "outcome": "kept_newer", "epoch": 5 },
            { "device_id": 402, "outcome": "stopped", "epoch": 1 },
            { "device_id": 403, "outcome": "not_running", "epoch": null },
        ]})
    );
    assert_eq!(info(&cluster).await["device_ids"], json!([401]));
    let stopped = call(&cluster, Method::DELETE, "/monitors/401?epoch=5", None).await;
    assert_eq!(stopped.body["outcome"], "stopped", "{stopped:?}");
    let bad = call(&cluster, Method::DELETE, "/monitors/401?epoch=five", None).await;
    assert_error(&bad, StatusCode::BAD_REQUEST, "invalid_query");
    let bad = call(
        &cluster,
        Method::POST,
        "/monitors/stop",
        Some(json!({"monitors": [{"device_id": "x"}]})),
    )
    .await;
    assert_error(&bad, StatusCode::BAD_REQUEST, "invalid_body");
}

#[actix_rt::test]
async fn a_monitor_starts_once_and_the_server_refuses_monitors_beyond_its_limit() {
    let cluster = TestCluster::spawn(Backend::Sqlite, 1).await;
    let server_id = cluster.servers[0].id;
    let first = start_request(device(&cluster, 101, "a"), config(1_000));

    let created = call(&cluster, Method::POST, "/monitors", Some(first.clone())).await;
    assert_eq!(created.status, StatusCode::CREATED, "{created:?}");
    assert_eq!(
        created.body,
        json!({ "device_id": 101, "server_id": server_id })
    );

    let again = call(&cluster, Method::POST, "/monitors", Some(first)).await;
    assert_error(&again, StatusCode::CONFLICT, "already_running");

    let beyond = start_request(device(&cluster, 102, "b"), config(1));
    let refused = call(&cluster, Method::POST, "/monitors", Some(beyond)).await;
    assert_error(&refused, StatusCode::TOO_MANY_REQUESTS, "at_limit");

    let bad_config = start_request(
        device(&cluster, 103, "c"),
        json!({
            "poll_interval_ms": TEST_POLL_INTERVAL_MS,
            "timeout_ms": 1_000,
            "alert_threshold": 90,
            "critical_threshold": 90,
            "max_monitors_per_server": 1_000,
        }),
    );
    let refused = call(&cluster, Method::POST, "/monitors", Some(bad_config)).await;
    assert_error(&refused, StatusCode::BAD_REQUEST, "invalid_config");
    let no_epoch = json!({ "device": device(&cluster, 104, "d"), "config": config(1_000) });
    let refused = call(&cluster, Method::POST, "/monitors", Some(no_epoch)).await;
    assert_error(&refused, StatusCode::BAD_REQUEST, "invalid_body");

    // Only the first monitor runs; the limit the last start carried is the server's now.
    assert_eq!(
        info(&cluster).await,
        json!({
            "server_id": server_id,
            "running_monitors": 1,
            "max_monitors": 1,
            "device_ids": [101],
        })
    );
}

#[actix_rt::test]
async fn a_running_monitor_reports_its_state_and_last_result_after_a_poll() {
    let cluster = TestCluster::spawn(Backend::Sqlite, 1).await;
    start(&cluster, 7, "x").await;

    let status = eventually("the first poll is reported", || async {
        let status = call(&cluster, Method::GET, "/monitors/7", None).await;
        assert_eq!(status.status, StatusCode::OK, "{status:?}");
        (status.body["state"] == "normal").then_some(status.body)
    })
    .await;
    assert_eq!(status["device"], device(&cluster, 7, "x"));
    assert_eq!(status["epoch"], 1);
    assert_eq!(status["last_result"]["up"], true);
    assert_eq!(status["last_result"]["status_code"], 200);
    assert!(status["polls"].as_u64().unwrap() >= 1, "{status}");
    assert_eq!(status["failures"], 0);
    assert_eq!(status["config"], config(1_000));
    assert!(cluster.fleet.hits("/d/x") >= 1);

    start(&cluster, 8, "y").await;
    let all = call(&cluster, Method::GET, "/monitors", None).await;
    assert_eq!(all.status, StatusCode::OK, "{all:?}");
    let ids: Vec<i64> = all
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["device"]["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, vec![7, 8]);
    let some = call(&cluster, Method::GET, "/monitors?ids=8,99", None).await;
    assert_eq!(some.status, StatusCode::OK, "{some:?}");
    assert_eq!(some.body.as_array().unwrap().len(), 1);
    assert_eq!(some.body[0]["device"]["id"], 8);

    let bad_ids = call(&cluster, Method::GET, "/monitors?ids=1,x", None).await;
    assert_error(&bad_ids, StatusCode::BAD_REQUEST, "invalid_query");
    let unknown = call(&cluster, Method::GET, "/monitors/99", None).await;
    assert_error(&unknown, StatusCode::NOT_FOUND, "not_monitored");
    let bad_path = call(&cluster, Method::GET, "/monitors/x", None).await;
    assert_error(&bad_path, StatusCode::BAD_REQUEST, "invalid_path");
}

#[actix_rt::test]
async fn a_device_change_must_name_the_path_device_and_a_running_monitor() {
    let cluster = TestCluster::spawn(Backend::Sqlite, 1).await;
    start(&cluster, 7, "x").await;

    let mismatched = call(
        &cluster,
        Method::PUT,
        "/monitors/7",
        Some(device(&cluster, 8, "y")),
    )
    .await;
    assert_error(&mismatched, StatusCode::BAD_REQUEST, "invalid_body");
    let not_running = call(
        &cluster,
        Method::PUT,
        "/monitors/8",
        Some(device(&cluster, 8, "y")),
    )
    .await;
    assert_error(&not_running, StatusCode::NOT_FOUND, "not_monitored");
    let status = call(&cluster, Method::GET, "/monitors/7", None).await;
    assert_eq!(
        status.body["device"],
        device(&cluster, 7, "x"),
        "a refused change was applied"
    );
    assert_eq!(
        info(&cluster).await["device_ids"],
        json!([7]),
        "a change started a monitor"
    );

    let moved = device(&cluster, 7, "moved");
    let changed = call(&cluster, Method::PUT, "/monitors/7", Some(moved.clone())).await;
    assert_eq!(changed.status, StatusCode::OK, "{changed:?}");
    assert_eq!(
        changed.body,
        json!({ "device_id": 7, "server_id": cluster.servers[0].id })
    );
    let status = call(&cluster, Method::GET, "/monitors/7", None).await;
    assert_eq!(status.body["device"], moved);
    eventually("the monitor polls the new address", || async {
        (cluster.fleet.hits("/d/moved") > 0).then_some(())
    })
    .await;
}

#[actix_rt::test]
async fn a_stopped_monitor_is_gone_and_a_second_stop_is_not_monitored() {
    let cluster = TestCluster::spawn(Backend::Sqlite, 1).await;
    start(&cluster, 7, "x").await;
    start(&cluster, 8, "y").await;

    let stopped = call(&cluster, Method::DELETE, "/monitors/7", None).await;
    assert_eq!(stopped.status, StatusCode::OK, "{stopped:?}");
    assert_eq!(
        stopped.body,
        json!({ "device_id": 7, "server_id": cluster.servers[0].id, "outcome": "stopped", "epoch": 1 })
    );
    let again = call(&cluster, Method::DELETE, "/monitors/7", None).await;
    assert_error(&again, StatusCode::NOT_FOUND, "not_monitored");
    let status = call(&cluster, Method::GET, "/monitors/7", None).await;
    assert_error(&status, StatusCode::NOT_FOUND, "not_monitored");
    let info = info(&cluster).await;
    assert_eq!(info["running_monitors"], 1);
    assert_eq!(info["device_ids"], json!([8]));

    // The stopped monitor no longer polls.
    let settled = cluster.fleet.hits("/d/x");
    let fleet = &cluster.fleet;
    let before = fleet.hits("/d/y");
    eventually("the other monitor polls twice more", || async move {
        (fleet.hits("/d/y") >= before + 2).then_some(())
    })
    .await;
    assert!(
        cluster.fleet.hits("/d/x") <= settled + 1,
        "the stopped monitor still polls"
    );
}

#[actix_rt::test]
async fn config_reaches_every_running_monitor_or_is_refused_whole() {
    let cluster = TestCluster::spawn(Backend::Sqlite, 1).await;
    start(&cluster, 7, "x").await;
    start(&cluster, 8, "y").await;

    let mut changed = config(50);
    changed["poll_interval_ms"] = json!(250);
    changed["alert_threshold"] = json!(60);
    let applied = call(&cluster, Method::PUT, "/config", Some(changed.clone())).await;
    assert_eq!(applied.status, StatusCode::OK, "{applied:?}");
    assert_eq!(applied.body, json!({ "monitors_updated": 2 }));
    let monitors = call(&cluster, Method::GET, "/monitors", None).await;
    for monitor in monitors.body.as_array().unwrap() {
        assert_eq!(monitor["config"], changed, "{monitor}");
    }
    assert_eq!(info(&cluster).await["max_monitors"], 50);

    let mut inverted = changed.clone();
    inverted["alert_threshold"] = json!(90);
    inverted["critical_threshold"] = json!(80);
    let mut zero_poll = changed.clone();
    zero_poll["poll_interval_ms"] = json!(0);
    let mut partial = changed.clone();
    partial.as_object_mut().unwrap().remove("timeout_ms");
    for (body, code) in [
        (inverted, "invalid_config"),
        (zero_poll, "invalid_config"),
        (partial, "invalid_body"),
        (json!({ "alert_threshold": 300 }), "invalid_body"),
    ] {
        let refused = call(&cluster, Method::PUT, "/config", Some(body.clone())).await;
        assert_error(&refused, StatusCode::BAD_REQUEST, code);
        let monitors = call(&cluster, Method::GET, "/monitors", None).await;
        for monitor in monitors.body.as_array().unwrap() {
            assert_eq!(monitor["config"], changed, "{body} reached a monitor");
        }
    }
    assert_eq!(info(&cluster).await["max_monitors"], 50);
}

#[actix_rt::test]
async fn the_monitor_server_answers_health_and_errors_in_json() {
    let cluster = TestCluster::spawn(Backend::Sqlite, 1).await;
    let health = call(&cluster, Method::GET, "/healthz", None).await;
    assert_eq!(health.status, StatusCode::OK, "{health:?}");
    assert_eq!(
        health.body,
        json!({ "status": "ok", "server_id": cluster.servers[0].id })
    );
    // Load balancers probe with HEAD; both servers answer it on /healthz.
    let head = call(&cluster, Method::HEAD, "/healthz", None).await;
    assert_eq!(head.status, StatusCode::OK, "{head:?}");
    let coordinator_head = cluster
        .call_url(Method::HEAD, &cluster.url("/healthz"), None)
        .await;
    assert_eq!(
        coordinator_head.status,
        StatusCode::OK,
        "{coordinator_head:?}"
    );

    let unknown = call(&cluster, Method::GET, "/nothing-here", None).await;
    assert_error(&unknown, StatusCode::NOT_FOUND, "not_found");
    let coordinator_route = call(&cluster, Method::GET, "/api/v1/devices", None).await;
    assert_error(&coordinator_route, StatusCode::NOT_FOUND, "not_found");
    let wrong_method = call(&cluster, Method::PATCH, "/monitors", Some(json!({}))).await;
    assert_error(
        &wrong_method,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
    );
    let wrong_method = call(&cluster, Method::GET, "/config", None).await;
    assert_error(
        &wrong_method,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
    );
}

/// `GET /debug/actors` of a node: its entries, each checked for the common shape.
async fn actors(cluster: &TestCluster, url: &str) -> Vec<Value> {
    // The coordinator takes the admin token, a monitor server the cluster token.
    let client = if url.starts_with(&cluster.url("/")) {
        &cluster.http
    } else {
        &cluster.cluster_http
    };
    let answer = crate::helpers::call(client, Method::GET, url, None).await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    let actors = answer.body["actors"].as_array().unwrap().clone();
    for actor in &actors {
        assert!(
            actor["kind"].is_string() && actor["id"].is_string(),
            "{actor}"
        );
        assert!(actor["mailbox_len"].is_u64(), "{actor}");
        assert!(actor["handled"].is_object(), "{actor}");
        for recent in actor["recent"].as_array().unwrap() {
            assert!(recent["message"].is_string(), "{recent}");
            let at = recent["at"].as_str().unwrap();
            assert!(chrono::DateTime::parse_from_rfc3339(at).is_ok(), "{recent}");
        }
    }
    actors
}

fn of_kind<'a>(actors: &'a [Value], kind: &str) -> Vec<&'a Value> {
    actors.iter().filter(|a| a["kind"] == kind).collect()
}

fn handled(actor: &Value, message: &str) -> u64 {
    actor["handled"][message].as_u64().unwrap_or(0)
}

fn has_recent(actor: &Value) -> bool {
    actor["recent"].as_array().is_some_and(|r| !r.is_empty())
}

#[actix_rt::test]
async fn debug_actors_show_the_scheduler_the_supervisor_and_one_monitor_per_device() {
    let cluster = TestCluster::spawn(Backend::Sqlite, 1).await;
    let company = cluster.company("acme").await;
    let devices = cluster.fleet_devices(company, 2, DeviceKind::Agent).await;
    let started = cluster.start_company(company).await;
    assert_eq!(started.status, StatusCode::OK, "{started:?}");
    info(&cluster).await;

    let coordinator = actors(&cluster, &cluster.url("/debug/actors")).await;
    let scheduler = of_kind(&coordinator, "SchedulerActor");
    assert_eq!(scheduler.len(), 1, "{coordinator:?}");
    assert!(
        handled(scheduler[0], "StartDevices") >= 1,
        "{}",
        scheduler[0]
    );
    assert!(has_recent(scheduler[0]), "{}", scheduler[0]);
    assert!(scheduler[0]["recent"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["message"] == "StartDevices"));

    let server_url = format!("http://{}/debug/actors", cluster.servers[0].address);
    let monitors = eventually("every monitor has polled", || async {
        let actors = actors(&cluster, &server_url).await;
        let polled = of_kind(&actors, "DeviceMonitor")
            .iter()
            .all(|m| handled(m, "Poll") >= 1 && has_recent(m));
        polled.then_some(actors)
    })
    .await;
    let supervisor = of_kind(&monitors, "MonitorServerActor");
    assert_eq!(supervisor.len(), 1, "{monitors:?}");
    assert_eq!(supervisor[0]["id"], cluster.servers[0].id.to_string());
    assert!(handled(supervisor[0], "GetInfo") >= 1, "{}", supervisor[0]);
    assert_eq!(
        handled(supervisor[0], "StartMonitors"),
        1,
        "a company start is one batch per server: {}",
        supervisor[0]
    );
    assert!(has_recent(supervisor[0]), "{}", supervisor[0]);
    let mut monitored: Vec<String> = of_kind(&monitors, "DeviceMonitor")
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_string())
        .collect();
    monitored.sort_unstable();
    let mut expected: Vec<String> = devices.iter().map(ToString::to_string).collect();
    expected.sort_unstable();
    assert_eq!(monitored, expected);

    let stopped = cluster.stop_device(devices[0]).await;
    assert_eq!(stopped.status, StatusCode::OK, "{stopped:?}");
    let after = actors(&cluster, &server_url).await;
    let remaining: Vec<&str> = of_kind(&after, "DeviceMonitor")
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(remaining, vec![devices[1].to_string()]);
    let supervisor = of_kind(&after, "MonitorServerActor");
    assert!(
        handled(supervisor[0], "StopMonitors") >= 1,
        "{}",
        supervisor[0]
    );
    let coordinator = actors(&cluster, &cluster.url("/debug/actors")).await;
    assert!(handled(of_kind(&coordinator, "SchedulerActor")[0], "StopDevices") >= 1);
}

/// A 0.1.0 monitor server: `POST /monitors/stop` falls on `/monitors/{id}`, which takes
/// no POST (405), and `DELETE /monitors/{id}` stops whatever runs, answering without an
/// outcome. A coordinator of this version stops there one device at a time.
#[actix_rt::test]
async fn stops_reach_an_older_server_one_device_at_a_time() {
    use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
    use vigil::db::models::MonitorServer;
    use vigil::remote::wire::{StopEntry, StopOutcome};
    use vigil::remote::MonitorServerClient;

    let deletes = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let seen = std::sync::Arc::clone(&deletes);
    let old = HttpServer::new(move || {
        let seen = std::sync::Arc::clone(&seen);
        App::new().service(
            web::resource("/monitors/{device_id}")
                .route(
                    web::delete().to(move |req: HttpRequest, id: web::Path<i64>| {
                        let seen = std::sync::Arc::clone(&seen);
                        async move {
                            seen.lock().unwrap().push(req.uri().to_string());
                            if *id == 2 {
                                return HttpResponse::NotFound().json(json!({
                                "error": "device 2 is not being monitored", "code": "not_monitored"
                            }));
                            }
                            HttpResponse::Ok().json(json!({ "device_id": *id, "server_id": 9 }))
                        }
                    }),
                )
                .default_service(web::to(|| async {
                    HttpResponse::MethodNotAllowed().json(json!({
                        "error": "/monitors/stop does not take POST", "code": "method_not_allowed"
                    }))
                })),
        )
    })
    .workers(1)
    .disable_signals()
    .bind("127.0.0.1:0")
    .unwrap();
    let port = old.addrs()[0].port();
    actix_rt::spawn(old.run());
    let server = MonitorServer {
        id: 9,
        host: "127.0.0.1".into(),
        port: i32::from(port),
        registered_at: chrono::NaiveDateTime::default(),
    };
    let client = MonitorServerClient::new(&crate::helpers::cluster_token());
    let stops = [
        StopEntry {
            device_id: 1,
            epoch: 4,
        },
        StopEntry {
            device_id: 2,
            epoch: 1,
        },
    ];
    let results = client.stop_batch(&server, &stops).await.unwrap();
    let outcomes: Vec<StopOutcome> = results.iter().map(|r| r.outcome).collect();
    assert_eq!(
        outcomes,
        vec![StopOutcome::Stopped, StopOutcome::NotRunning]
    );
    assert_eq!(
        *deletes.lock().unwrap(),
        vec![
            "/monitors/1?epoch=4".to_string(),
            "/monitors/2?epoch=1".to_string()
        ]
    );
}
