//! The scheduler over real monitor servers: rotation, skipping, limits, stop search,
//! config and device changes. Every test runs on SQLite and on PostgreSQL.

use actix_web::http::{Method, StatusCode};
use serde_json::{json, Value};
use vigil::db;
use vigil::domain::DeviceKind;

use crate::helpers::{eventually, Backend, TestCluster};

crate::on_both_backends!(
    rotation_goes_round_the_servers_and_survives_a_coordinator_restart,
    a_server_that_is_down_is_skipped_and_shown_down,
    servers_at_their_limit_give_started_6_of_7_with_the_reason,
    a_device_already_monitored_is_not_started_twice,
    stop_finds_the_device_on_whichever_server_holds_it,
    company_stop_ignores_devices_that_are_not_monitored,
    config_change_is_saved_and_reaches_every_server,
    device_change_reaches_only_the_monitor_of_that_device,
    disabling_a_device_stops_its_monitor,
    a_company_with_monitored_devices_cannot_be_deleted,
    deleting_a_device_stops_its_monitor_first,
    devices_list_shows_live_monitoring,
    starts_and_stops_show_at_once_in_the_live_monitoring,
    lists_show_changes_made_through_their_coordinator_at_once_and_others_within_half_a_second,
    stop_takes_down_every_copy_of_a_device,
    start_keeps_one_copy_of_a_device_found_running_twice,
    copies_no_record_names_are_replaced_by_one_recorded_start,
    deleting_while_starting_leaves_no_monitor_of_a_deleted_device,
    concurrent_changes_leave_the_monitor_with_the_stored_device,
    a_dead_server_can_be_forgotten_and_its_devices_released,
    a_company_start_spreads_first_polls_over_one_interval,
);

fn results(answer: &Value) -> Vec<(i64, String, Option<i64>)> {
    answer["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["device_id"].as_i64().unwrap(),
                r["status"].as_str().unwrap().to_string(),
                r["server_id"].as_i64(),
            )
        })
        .collect()
}

async fn rotation_index(cluster: &TestCluster) -> i64 {
    let config = cluster.get("/api/v1/config").await;
    config.body["monitor_server_current"].as_i64().unwrap()
}

async fn rotation_goes_round_the_servers_and_survives_a_coordinator_restart(backend: Backend) {
    let mut cluster = TestCluster::spawn(backend, 3).await;
    let ids: Vec<i64> = cluster.servers.iter().map(|s| s.id).collect();
    let company = cluster.company("acme").await;
    let devices = cluster.fleet_devices(company, 5, DeviceKind::Agent).await;

    let mut chosen = Vec::new();
    let mut indexes = Vec::new();
    for device in &devices[..4] {
        let answer = cluster.start_device(*device).await;
        assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
        assert_eq!(answer.body["message"], "started 1 of 1 monitors");
        chosen.push(answer.body["results"][0]["server_id"].as_i64().unwrap());
        indexes.push(rotation_index(&cluster).await);
    }
    assert_eq!(
        chosen,
        vec![ids[0], ids[1], ids[2], ids[0]],
        "servers 0 → 1 → 2 → 0"
    );
    assert_eq!(
        indexes,
        vec![1, 2, 3, 4],
        "the persisted index after each start: it counts turns and only grows"
    );

    cluster.restart_coordinator().await;
    assert_eq!(
        rotation_index(&cluster).await,
        4,
        "the index survives the restart"
    );
    let answer = cluster.start_device(devices[4]).await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    assert_eq!(
        answer.body["results"][0]["server_id"].as_i64(),
        Some(ids[1])
    );
    for (device, server) in devices.iter().zip([ids[0], ids[1], ids[2], ids[0], ids[1]]) {
        assert_eq!(cluster.monitored_on(*device).await, Some(server));
    }
}

async fn a_server_that_is_down_is_skipped_and_shown_down(backend: Backend) {
    let cluster = TestCluster::spawn(backend, 3).await;
    let ids: Vec<i64> = cluster.servers.iter().map(|s| s.id).collect();
    cluster.stop_server(0).await;
    let company = cluster.company("acme").await;
    let devices = cluster.fleet_devices(company, 3, DeviceKind::Agent).await;

    let answer = cluster.start_company(company).await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    let servers: Vec<Option<i64>> = results(&answer.body).into_iter().map(|r| r.2).collect();
    assert_eq!(servers, vec![Some(ids[1]), Some(ids[2]), Some(ids[1])]);
    // Past server 1 (2), past server 2 (3), then past server 0 (down) to server 1 (5).
    assert_eq!(rotation_index(&cluster).await, 5);

    let listed = cluster.get("/api/v1/monitor-servers").await;
    assert_eq!(listed.status, StatusCode::OK);
    let listed = listed.body.as_array().unwrap().clone();
    assert_eq!(listed.len(), 3);
    assert_eq!(listed[0]["status"], "down");
    assert_eq!(listed[0]["running_monitors"], Value::Null);
    assert_eq!(listed[1]["status"], "up");
    assert_eq!(listed[1]["running_monitors"], 2);
    assert_eq!(listed[2]["running_monitors"], 1);
    let one = cluster
        .get(&format!("/api/v1/monitor-servers/{}", ids[0]))
        .await;
    assert_eq!(one.status, StatusCode::OK);
    assert_eq!(one.body["status"], "down");
    assert_eq!(devices.len(), 3);
}

async fn servers_at_their_limit_give_started_6_of_7_with_the_reason(backend: Backend) {
    let cluster = TestCluster::spawn(backend, 3).await;
    let answer = cluster
        .put("/api/v1/config", json!({ "max_monitors_per_server": 2 }))
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    let company = cluster.company("acme").await;
    let devices = cluster.fleet_devices(company, 7, DeviceKind::Agent).await;

    let answer = cluster.start_company(company).await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE, "{answer:?}");
    assert_eq!(answer.body["requested"], 7);
    assert_eq!(answer.body["started"], 6);
    assert_eq!(answer.body["failed"], 1);
    assert_eq!(answer.body["message"], "started 6 of 7 monitors, 1 failed");
    let last = &answer.body["results"][6];
    assert_eq!(last["device_id"].as_i64(), Some(devices[6]));
    assert_eq!(last["status"], "failed");
    let reason = last["reason"].as_str().unwrap();
    assert!(reason.contains("at its limit"), "{reason}");
    for index in 0..3 {
        assert_eq!(cluster.running(index).await.len(), 2);
    }
    assert_eq!(cluster.monitored_on(devices[6]).await, None);
}

async fn a_device_already_monitored_is_not_started_twice(backend: Backend) {
    let cluster = TestCluster::spawn(backend, 3).await;
    let company = cluster.company("acme").await;
    let devices = cluster.fleet_devices(company, 2, DeviceKind::Agent).await;
    let first = cluster.start_device(devices[0]).await;
    let owner = first.body["results"][0]["server_id"].as_i64();

    let again = cluster.start_device(devices[0]).await;
    assert_eq!(again.status, StatusCode::OK, "{again:?}");
    assert_eq!(again.body["already_running"], 1);
    assert_eq!(again.body["results"][0]["status"], "already_running");
    assert_eq!(again.body["results"][0]["server_id"].as_i64(), owner);

    // With the ownership record lost, the copy that runs writes nothing (its epoch is
    // not the device's any more): it is replaced, never doubled.
    let device = devices[0];
    cluster
        .db
        .run(move |conn| db::assignments::release(conn, device))
        .await
        .unwrap();
    let company_start = cluster.start_company(company).await;
    assert_eq!(company_start.status, StatusCode::OK, "{company_start:?}");
    assert_eq!(company_start.body["started"], 2, "{company_start:?}");
    let mut everywhere = Vec::new();
    for index in 0..3 {
        everywhere.extend(cluster.running(index).await);
    }
    everywhere.sort_unstable();
    assert_eq!(everywhere, devices, "each device runs exactly once");
    for (n, result) in results(&company_start.body).into_iter().enumerate() {
        assert_eq!(cluster.monitored_on(devices[n]).await, result.2, "recorded");
    }
}

async fn stop_finds_the_device_on_whichever_server_holds_it(backend: Backend) {
    let cluster = TestCluster::spawn(backend, 3).await;
    let company = cluster.company("acme").await;
    let device = cluster.device(company, "d").await;
    let started = cluster.start_device(device).await;
    let holder = started.body["results"][0]["server_id"].as_i64().unwrap();
    // The record says another server owns it: stop must search and still find it.
    let wrong = cluster
        .servers
        .iter()
        .map(|s| s.id)
        .find(|id| *id != holder)
        .unwrap();
    let assigned = cluster
        .db
        .run(move |conn| {
            let now = db::assignments::get(conn, device)?.map(|a| a.epoch);
            db::assignments::claim(conn, device, now, Some(wrong))
        })
        .await
        .unwrap();
    assert!(assigned.is_some());

    let stopped = cluster.stop_device(device).await;
    assert_eq!(stopped.status, StatusCode::OK, "{stopped:?}");
    assert_eq!(stopped.body["status"], "stopped");
    assert_eq!(stopped.body["server_id"].as_i64(), Some(holder));
    for index in 0..3 {
        assert!(cluster.running(index).await.is_empty());
    }

    let again = cluster.stop_device(device).await;
    assert_eq!(again.status, StatusCode::NOT_FOUND, "{again:?}");
    assert_eq!(
        again.body["error"],
        format!("device {device} is not being monitored")
    );
    assert_eq!(again.body["code"], "not_monitored");
}

async fn company_stop_ignores_devices_that_are_not_monitored(backend: Backend) {
    let cluster = TestCluster::spawn(backend, 2).await;
    let company = cluster.company("acme").await;
    let devices = cluster.fleet_devices(company, 3, DeviceKind::Agent).await;
    for device in &devices[..2] {
        cluster.start_device(*device).await;
    }
    let answer = cluster.stop_company(company).await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    assert_eq!(answer.body["requested"], 3);
    assert_eq!(answer.body["stopped"], 2);
    assert_eq!(answer.body["not_running"], 1);
    let statuses: Vec<String> = results(&answer.body).into_iter().map(|r| r.1).collect();
    assert_eq!(statuses, vec!["stopped", "stopped", "not_running"]);
    assert!(cluster.running(0).await.is_empty() && cluster.running(1).await.is_empty());
}

async fn config_change_is_saved_and_reaches_every_server(backend: Backend) {
    let cluster = TestCluster::spawn(backend, 3).await;
    let company = cluster.company("acme").await;
    cluster.fleet_devices(company, 4, DeviceKind::Agent).await;
    cluster.start_company(company).await;

    let answer = cluster
        .put(
            "/api/v1/config",
            json!({ "poll_interval_ms": 250, "alert_threshold": 60 }),
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    assert_eq!(answer.body["config"]["poll_interval_ms"], 250);
    assert_eq!(
        answer.body["config"]["critical_threshold"], 90,
        "untouched fields are kept"
    );
    let applied: Vec<i64> = answer.body["applied"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["monitors_updated"].as_i64().unwrap())
        .collect();
    assert_eq!(applied, vec![2, 1, 1]);
    assert_eq!(answer.body["unreachable"], json!([]));
    for index in 0..3 {
        let monitors = cluster
            .server_call(index, Method::GET, "/monitors", None)
            .await;
        for monitor in monitors.body.as_array().unwrap() {
            assert_eq!(monitor["config"]["poll_interval_ms"], 250);
            assert_eq!(monitor["config"]["alert_threshold"], 60);
        }
    }
    let stored = cluster.get("/api/v1/config").await;
    assert_eq!(stored.body["poll_interval_ms"], 250);
    assert_eq!(stored.body["monitor_servers"].as_array().unwrap().len(), 3);

    cluster.stop_server(2).await;
    let answer = cluster
        .put("/api/v1/config", json!({ "timeout_ms": 500 }))
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    assert_eq!(answer.body["applied"].as_array().unwrap().len(), 2);
    let unreachable = answer.body["unreachable"].as_array().unwrap();
    assert_eq!(unreachable.len(), 1);
    assert_eq!(
        unreachable[0]["server_id"].as_i64(),
        Some(cluster.servers[2].id)
    );
}

async fn device_change_reaches_only_the_monitor_of_that_device(backend: Backend) {
    let cluster = TestCluster::spawn(backend, 3).await;
    let company = cluster.company("acme").await;
    let devices = cluster.devices(company, "d", 3).await;
    cluster.start_company(company).await;
    let moved = cluster.fleet.url("/d/moved");

    let answer = cluster
        .put(
            &format!("/api/v1/devices/{}", devices[1]),
            json!({ "address": moved, "name": "renamed" }),
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    assert_eq!(answer.body["device"]["address"], moved.as_str());
    assert_eq!(answer.body["routing"]["status"], "delivered");
    let owner = cluster.monitored_on(devices[1]).await;
    assert_eq!(answer.body["routing"]["server_id"].as_i64(), owner);

    eventually("the monitor polls the new address", || async {
        (cluster.fleet.hits("/d/moved") > 0).then_some(())
    })
    .await;
    let before = (cluster.fleet.hits("/d/d-0"), cluster.fleet.hits("/d/d-2"));
    eventually("the other monitors keep their own addresses", || async {
        let now = (cluster.fleet.hits("/d/d-0"), cluster.fleet.hits("/d/d-2"));
        (now.0 > before.0 && now.1 > before.1).then_some(())
    })
    .await;
    for index in 0..3 {
        let monitors = cluster
            .server_call(index, Method::GET, "/monitors", None)
            .await;
        for monitor in monitors.body.as_array().unwrap() {
            let is_changed = monitor["device"]["id"].as_i64() == Some(devices[1]);
            assert_eq!(
                monitor["device"]["name"] == "renamed",
                is_changed,
                "{monitor}"
            );
        }
    }
    // The old address is no longer polled once the change is in.
    let old = cluster.fleet.hits("/d/d-1");
    actix_rt::time::sleep(std::time::Duration::from_millis(400)).await;
    assert!(
        cluster.fleet.hits("/d/d-1") <= old + 1,
        "the old address is still polled"
    );
}

async fn disabling_a_device_stops_its_monitor(backend: Backend) {
    let cluster = TestCluster::spawn(backend, 2).await;
    let company = cluster.company("acme").await;
    let device = cluster.device(company, "d").await;
    cluster.start_device(device).await;
    let answer = cluster
        .put(
            &format!("/api/v1/devices/{device}"),
            json!({ "enabled": false }),
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    assert_eq!(answer.body["routing"]["status"], "stopped");
    assert_eq!(answer.body["device"]["monitoring"], Value::Null);
    let refused = cluster.start_device(device).await;
    assert_eq!(refused.status, StatusCode::CONFLICT, "{refused:?}");
    assert_eq!(refused.body["code"], "device_disabled");
    let company_start = cluster.start_company(company).await;
    assert_eq!(
        company_start.body["requested"], 0,
        "disabled devices are not asked for"
    );
}

async fn a_company_with_monitored_devices_cannot_be_deleted(backend: Backend) {
    let cluster = TestCluster::spawn(backend, 1).await;
    let company = cluster.company("acme").await;
    let device = cluster.device(company, "d").await;
    cluster.start_device(device).await;
    let refused = cluster
        .delete(&format!("/api/v1/companies/{company}"))
        .await;
    assert_eq!(refused.status, StatusCode::CONFLICT, "{refused:?}");
    assert_eq!(refused.body["code"], "company_monitored");
    assert_eq!(
        cluster
            .get(&format!("/api/v1/devices/{device}"))
            .await
            .status,
        StatusCode::OK
    );

    cluster.stop_company(company).await;
    let deleted = cluster
        .delete(&format!("/api/v1/companies/{company}"))
        .await;
    assert_eq!(deleted.status, StatusCode::OK, "{deleted:?}");
    assert_eq!(
        cluster
            .get(&format!("/api/v1/companies/{company}"))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        cluster
            .get(&format!("/api/v1/devices/{device}"))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}

async fn deleting_a_device_stops_its_monitor_first(backend: Backend) {
    let cluster = TestCluster::spawn(backend, 2).await;
    let company = cluster.company("acme").await;
    let device = cluster.device(company, "d").await;
    cluster.start_device(device).await;
    let deleted = cluster.delete(&format!("/api/v1/devices/{device}")).await;
    assert_eq!(deleted.status, StatusCode::OK, "{deleted:?}");
    assert!(cluster.running(0).await.is_empty() && cluster.running(1).await.is_empty());
    assert_eq!(
        cluster
            .get(&format!("/api/v1/devices/{device}"))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}

async fn devices_list_shows_live_monitoring(backend: Backend) {
    let cluster = TestCluster::spawn(backend, 2).await;
    let company = cluster.company("acme").await;
    let other = cluster.company("other").await;
    let devices = cluster.fleet_devices(company, 2, DeviceKind::Agent).await;
    let elsewhere = cluster.fleet_devices(other, 1, DeviceKind::Agent).await[0];
    cluster.start_device(devices[0]).await;

    let listed = eventually("the first poll is reported", || async {
        let listed = cluster.get("/api/v1/devices").await;
        (listed.body[0]["monitoring"]["state"] == "normal").then_some(listed)
    })
    .await;
    let all = listed.body.as_array().unwrap();
    assert_eq!(all.len(), 3);
    assert_eq!(all[0]["monitoring"]["last_result"]["status_code"], 200);
    assert_eq!(all[1]["monitoring"], Value::Null);

    let filtered = cluster
        .get(&format!("/api/v1/devices?company_id={other}"))
        .await;
    let filtered = filtered.body.as_array().unwrap();
    assert_eq!(filtered.len(), 1);
    assert_eq!(filtered[0]["id"].as_i64(), Some(elsewhere));
    let page = cluster.get("/api/v1/devices?limit=1&offset=1").await;
    assert_eq!(
        page.body.as_array().unwrap()[0]["id"].as_i64(),
        Some(devices[1])
    );
}

/// A coordinator reuses what a server said of a device for a moment, but a start or a
/// stop (each moves the device's assignment on) shows in the very next read, and so
/// does a server's monitor count after a change made through the API.
async fn starts_and_stops_show_at_once_in_the_live_monitoring(backend: Backend) {
    let cluster = TestCluster::spawn(backend, 1).await;
    let company = cluster.company("acme").await;
    let device = cluster.fleet_devices(company, 1, DeviceKind::Agent).await[0];
    let path = format!("/api/v1/devices/{device}");
    let running_monitors = || async {
        let listed = cluster.get("/api/v1/monitor-servers").await;
        listed.body[0]["running_monitors"].clone()
    };
    for round in 1..=3 {
        // Each read is within the reuse window of the one before it.
        assert_eq!(cluster.get(&path).await.body["monitoring"], Value::Null);
        assert_eq!(running_monitors().await, 0, "round {round}");
        let started = cluster.start_device(device).await;
        assert_eq!(started.status, StatusCode::OK, "{started:?}");
        let seen = cluster.get(&path).await;
        let epoch = seen.body["monitoring"]["epoch"].as_i64();
        assert!(epoch.is_some(), "round {round}: {seen:?}");
        let listed = cluster.get("/api/v1/devices").await;
        assert_eq!(listed.body[0]["monitoring"]["epoch"].as_i64(), epoch);
        assert_eq!(running_monitors().await, 1, "round {round}");
        let stopped = cluster.stop_device(device).await;
        assert_eq!(stopped.status, StatusCode::OK, "{stopped:?}");
        let listed = cluster.get("/api/v1/devices").await;
        assert_eq!(listed.body[0]["monitoring"], Value::Null, "round {round}");
    }
}

async fn lists_show_changes_made_through_their_coordinator_at_once_and_others_within_half_a_second(
    backend: Backend,
) {
    let cluster = TestCluster::spawn(backend, 1).await;
    let company = cluster.company("acme").await;
    let first = cluster.device(company, "first").await;
    let other = cluster.second_coordinator().await;
    let names = |answer: &crate::helpers::Answer| -> Vec<String> {
        let list = answer.body.as_array().unwrap();
        list.iter()
            .map(|d| d["name"].as_str().unwrap().to_string())
            .collect()
    };
    let servers = |answer: &crate::helpers::Answer| answer.body[0]["running_monitors"].clone();
    assert_eq!(names(&cluster.get("/api/v1/devices").await), ["first"]);
    assert_eq!(servers(&cluster.get("/api/v1/monitor-servers").await), 0);
    let asked = std::time::Instant::now();

    // Through the other coordinator: a new device and a start.
    let made = cluster
        .call_url(
            Method::POST,
            &format!("{other}/devices"),
            Some(json!({"company_id": company, "name": "second", "address": "127.0.0.1:9", "kind": "tcp"})),
        )
        .await;
    assert_eq!(made.status, StatusCode::CREATED, "{made:?}");
    let started = cluster
        .call_url(
            Method::POST,
            &format!("{other}/devices/{first}/start"),
            None,
        )
        .await;
    assert_eq!(started.status, StatusCode::OK, "{started:?}");
    let listed = cluster.get("/api/v1/devices").await;
    let counted = cluster.get("/api/v1/monitor-servers").await;
    if asked.elapsed() < vigil::http::coordinator::lists::FRESH_FOR {
        // This coordinator answers what it answered a moment ago.
        assert_eq!(names(&listed), ["first"]);
        assert_eq!(servers(&counted), 0);
    }
    // Half a second on, both show.
    tokio::time::sleep(vigil::http::coordinator::lists::FRESH_FOR).await;
    assert_eq!(
        names(&cluster.get("/api/v1/devices").await),
        ["first", "second"]
    );
    assert_eq!(servers(&cluster.get("/api/v1/monitor-servers").await), 1);

    // Through this coordinator, a change shows in the very next read, and a page is
    // answered for its own limit and offset.
    let renamed = cluster
        .put(
            &format!("/api/v1/devices/{first}"),
            json!({"name": "renamed"}),
        )
        .await;
    assert_eq!(renamed.status, StatusCode::OK, "{renamed:?}");
    assert_eq!(
        names(&cluster.get("/api/v1/devices").await),
        ["renamed", "second"]
    );
    assert_eq!(
        names(&cluster.get("/api/v1/devices?limit=1&offset=1").await),
        ["second"]
    );
    let stopped = cluster.stop_device(first).await;
    assert_eq!(stopped.status, StatusCode::OK, "{stopped:?}");
    assert_eq!(servers(&cluster.get("/api/v1/monitor-servers").await), 0);
}

async fn stop_takes_down_every_copy_of_a_device(backend: Backend) {
    let cluster = TestCluster::spawn(backend, 3).await;
    let company = cluster.company("acme").await;
    let device = cluster.device(company, "d").await;
    let started = cluster.start_device(device).await;
    let owner = started.body["results"][0]["server_id"].as_i64().unwrap();
    let other = cluster.servers.iter().position(|s| s.id != owner).unwrap();
    cluster.start_copy_on(other, device, company).await;

    let stopped = cluster.stop_device(device).await;
    assert_eq!(stopped.status, StatusCode::OK, "{stopped:?}");
    assert_eq!(
        stopped.body["server_id"].as_i64(),
        Some(owner),
        "the owner first"
    );
    for index in 0..3 {
        assert!(
            cluster.running(index).await.is_empty(),
            "a copy survived on server {index}"
        );
    }
}

async fn start_keeps_one_copy_of_a_device_found_running_twice(backend: Backend) {
    let cluster = TestCluster::spawn(backend, 3).await;
    let company = cluster.company("acme").await;
    let device = cluster.device(company, "d").await;
    let started = cluster.start_device(device).await;
    let owner = started.body["results"][0]["server_id"].as_i64();
    let owner_index = cluster
        .servers
        .iter()
        .position(|s| Some(s.id) == owner)
        .unwrap();
    let other = (owner_index + 1) % 3;
    cluster.start_copy_on(other, device, company).await;

    let answer = cluster.start_device(device).await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    assert_eq!(answer.body["results"][0]["status"], "already_running");
    assert_eq!(answer.body["results"][0]["server_id"].as_i64(), owner);
    assert_eq!(cluster.running(owner_index).await, vec![device]);
    assert!(
        cluster.running(other).await.is_empty(),
        "the extra copy still runs"
    );
    assert_eq!(cluster.monitored_on(device).await, owner);
}

async fn copies_no_record_names_are_replaced_by_one_recorded_start(backend: Backend) {
    let cluster = TestCluster::spawn(backend, 3).await;
    let company = cluster.company("acme").await;
    let device = cluster.device(company, "d").await;
    cluster.start_copy_on(0, device, company).await;
    cluster.start_copy_on(1, device, company).await;

    let answer = cluster.start_device(device).await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    assert_eq!(answer.body["results"][0]["status"], "started");
    let placed = answer.body["results"][0]["server_id"].as_i64();
    let mut everywhere = Vec::new();
    for index in 0..3 {
        everywhere.extend(cluster.running(index).await);
    }
    assert_eq!(everywhere, vec![device], "one copy runs");
    assert_eq!(
        cluster.monitored_on(device).await,
        placed,
        "and it is recorded"
    );
}

async fn deleting_while_starting_leaves_no_monitor_of_a_deleted_device(backend: Backend) {
    let cluster = TestCluster::spawn(backend, 2).await;
    let company = cluster.company("acme").await;
    let devices = cluster.fleet_devices(company, 8, DeviceKind::Agent).await;
    let races = devices.iter().map(|&device| {
        let cluster = &cluster;
        async move {
            let path = format!("/api/v1/devices/{device}");
            tokio::join!(cluster.start_device(device), cluster.delete(&path))
        }
    });
    for (start, delete) in futures_util::future::join_all(races).await {
        assert!(
            matches!(start.status.as_u16(), 200 | 404 | 503),
            "{start:?}"
        );
        assert_eq!(delete.status, StatusCode::OK, "{delete:?}");
    }
    for index in 0..2 {
        let running = cluster.running(index).await;
        assert!(
            running.is_empty(),
            "monitors of deleted devices run on server {index}: {running:?}"
        );
    }
}

async fn concurrent_changes_leave_the_monitor_with_the_stored_device(backend: Backend) {
    let cluster = TestCluster::spawn(backend, 2).await;
    let company = cluster.company("acme").await;
    let device = cluster.device(company, "d").await;
    cluster.start_device(device).await;
    let path = format!("/api/v1/devices/{device}");
    let changes = (0..8).map(|n| {
        let (cluster, path) = (&cluster, &path);
        async move {
            let address = cluster.fleet.url(&format!("/d/v{n}"));
            cluster.put(path, json!({ "address": address })).await
        }
    });
    for answer in futures_util::future::join_all(changes).await {
        assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    }
    let stored = cluster.get(&path).await.body["address"].clone();
    let owner = cluster.monitored_on(device).await.unwrap();
    let index = cluster.servers.iter().position(|s| s.id == owner).unwrap();
    let monitor = cluster
        .server_call(index, Method::GET, &format!("/monitors/{device}"), None)
        .await;
    assert_eq!(
        monitor.body["device"]["address"], stored,
        "the monitor polls what is not stored"
    );
}

async fn a_dead_server_can_be_forgotten_and_its_devices_released(backend: Backend) {
    let cluster = TestCluster::spawn(backend, 2).await;
    let (dead, alive) = (cluster.servers[0].id, cluster.servers[1].id);
    let company = cluster.company("acme").await;
    let device = cluster.device(company, "d").await;
    assert_eq!(cluster.monitored_on_after_start(device).await, dead);

    let refused = cluster
        .delete(&format!("/api/v1/monitor-servers/{dead}"))
        .await;
    assert_eq!(refused.status, StatusCode::CONFLICT, "{refused:?}");
    assert_eq!(refused.body["code"], "server_up");

    cluster.stop_server(0).await;
    let stuck = cluster.stop_device(device).await;
    assert_eq!(stuck.status, StatusCode::SERVICE_UNAVAILABLE, "{stuck:?}");
    let kept = cluster.delete(&format!("/api/v1/devices/{device}")).await;
    assert_eq!(kept.status, StatusCode::SERVICE_UNAVAILABLE, "{kept:?}");

    let forgotten = cluster
        .delete(&format!("/api/v1/monitor-servers/{dead}"))
        .await;
    assert_eq!(forgotten.status, StatusCode::OK, "{forgotten:?}");
    assert_eq!(forgotten.body["devices_released"], 1);
    let listed = cluster.get("/api/v1/monitor-servers").await;
    let ids: Vec<i64> = listed
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, vec![alive]);
    let missing = cluster
        .delete(&format!("/api/v1/monitor-servers/{dead}"))
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND, "{missing:?}");

    let restarted = cluster.start_device(device).await;
    assert_eq!(restarted.status, StatusCode::OK, "{restarted:?}");
    assert_eq!(
        restarted.body["results"][0]["server_id"].as_i64(),
        Some(alive)
    );
    let deleted = cluster.delete(&format!("/api/v1/devices/{device}")).await;
    assert_eq!(deleted.status, StatusCode::OK, "{deleted:?}");
}

async fn a_company_start_spreads_first_polls_over_one_interval(backend: Backend) {
    let cluster = TestCluster::spawn(backend, 2).await;
    // Four devices over 20 s: first polls at 0, 5, 10 and 15 s.
    let answer = cluster
        .put("/api/v1/config", json!({"poll_interval_ms": 20_000}))
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    let company = cluster.company("acme").await;
    let devices = cluster.fleet_devices(company, 4, DeviceKind::Agent).await;
    let started = cluster.start_company(company).await;
    assert_eq!(started.body["started"], 4, "{started:?}");
    let polled = |listed: &Value| {
        listed
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["monitoring"]["polls"].as_u64().unwrap_or(0) > 0)
            .count()
    };
    let listed = eventually("the first device is polled", || async {
        let listed = cluster.get("/api/v1/devices").await;
        (polled(&listed.body) > 0).then_some(listed)
    })
    .await;
    assert_eq!(
        polled(&listed.body),
        1,
        "one device polls at once, the others later in the interval: {listed:?}"
    );
    assert_eq!(listed.body.as_array().unwrap().len(), devices.len());
}
