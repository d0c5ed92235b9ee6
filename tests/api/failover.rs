//! Failover in-process: devices of a server that left the cluster are re-homed with a
//! `moved` event each and their first polls spread over one poll interval; devices that
//! fit nowhere wait and start once capacity appears; every node reports its load. The
//! process-level cases (kill -9, SIGSTOP, two coordinators) are in `processes` and
//! `placement`.

use actix_web::http::{Method, StatusCode};
use serde_json::{json, Value};
use vigil::domain::DeviceKind;

use crate::helpers::{eventually, Backend, TestCluster};

crate::on_both_backends!(
    a_departed_servers_devices_move_with_an_event_each_and_spread_first_polls,
    devices_that_fit_nowhere_start_once_capacity_appears,
    every_node_reports_its_load_and_every_method_is_accepted,
);

async fn events_of(cluster: &TestCluster, device: i64) -> Vec<Value> {
    let answer = cluster
        .get(&format!("/api/v1/events?device_id={device}"))
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    answer.body["events"]
        .as_array()
        .or(answer.body.as_array())
        .cloned()
        .unwrap_or_default()
}

async fn a_departed_servers_devices_move_with_an_event_each_and_spread_first_polls(
    backend: Backend,
) {
    let cluster = TestCluster::spawn(backend, 2).await;
    cluster.fast_membership().await;
    // A long interval: a first poll put off by half of it is still to come when we look.
    let answer = cluster
        .put("/api/v1/config", json!({"poll_interval_ms": 20_000}))
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    let company = cluster.company("acme").await;
    let devices = cluster.fleet_devices(company, 4, DeviceKind::Agent).await;
    let started = cluster.start_company(company).await;
    assert_eq!(started.body["started"], 4, "{started:?}");
    let (gone, stays) = (cluster.servers[0].id, cluster.servers[1].id);
    let moving = cluster.running(0).await;
    assert_eq!(moving.len(), 2, "round robin put two on each");

    // Server 0 leaves the cluster (its API stops and its node leaves).
    cluster.stop_server(0).await;
    eventually("every device runs on the server that stayed", || async {
        let mut running = cluster.running(1).await;
        running.sort_unstable();
        (running == devices).then_some(())
    })
    .await;
    let mut first_polls = Vec::new();
    for device in &moving {
        let status = cluster
            .server_call(1, Method::GET, &format!("/monitors/{device}"), None)
            .await;
        assert_eq!(status.status, StatusCode::OK, "{status:?}");
        first_polls.push(status.body["polls"].as_u64().unwrap());
        assert_eq!(cluster.monitored_on(*device).await, Some(stays));
        // The pass records the moves once the servers have taken the devices.
        let moved = eventually("one move event", || async {
            let moved: Vec<Value> = events_of(&cluster, *device)
                .await
                .into_iter()
                .filter(|e| e["kind"] == "moved")
                .collect();
            (!moved.is_empty()).then_some(moved)
        })
        .await;
        assert_eq!(moved.len(), 1, "one move event: {moved:?}");
        assert_eq!(moved[0]["from"], format!("server {gone}"));
        assert_eq!(moved[0]["to"], format!("server {stays}"));
        let reason = moved[0]["reason"].as_str().unwrap();
        assert!(reason.contains("left the cluster"), "{reason}");
    }
    // Two devices over 20 s: the second's first poll comes 10 s after the first's.
    assert!(
        first_polls.contains(&0),
        "not every re-homed monitor polls at once: {first_polls:?}"
    );
    let listed = cluster.get("/api/v1/monitor-servers").await;
    let listed = listed.body.as_array().unwrap().clone();
    assert_eq!(listed[0]["status"], "down", "{listed:?}");
    assert_eq!(listed[1]["running_monitors"], 4, "{listed:?}");
}

async fn devices_that_fit_nowhere_start_once_capacity_appears(backend: Backend) {
    let mut cluster = TestCluster::spawn(backend, 1).await;
    cluster.fast_membership().await;
    let answer = cluster
        .put("/api/v1/config", json!({"max_monitors_per_server": 2}))
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    let company = cluster.company("acme").await;
    let devices = cluster.fleet_devices(company, 5, DeviceKind::Agent).await;
    let started = cluster.start_company(company).await;
    assert_eq!(started.body["started"], 2, "{started:?}");
    assert_eq!(started.body["failed"], 3, "{started:?}");
    let waiting = cluster
        .get(&format!("/api/v1/devices/{}", devices[4]))
        .await;
    assert_eq!(waiting.body["monitoring_wanted"], true, "{waiting:?}");

    // The limit is raised: one more fits.
    let answer = cluster
        .put("/api/v1/config", json!({"max_monitors_per_server": 3}))
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    eventually("a third device starts", || async {
        (cluster.running(0).await.len() == 3).then_some(())
    })
    .await;

    // A device is stopped: a waiting one takes its place.
    let first = cluster.running(0).await[0];
    let stopped = cluster.stop_device(first).await;
    assert_eq!(stopped.status, StatusCode::OK, "{stopped:?}");
    eventually("a waiting device takes the freed place", || async {
        let running = cluster.running(0).await;
        (running.len() == 3 && !running.contains(&first)).then_some(())
    })
    .await;

    // A server joins: the last waiting device starts there.
    cluster.add_server().await;
    let wanted: Vec<i64> = devices.iter().copied().filter(|d| *d != first).collect();
    eventually("every wanted device runs, once", || async {
        let mut all = cluster.running(0).await;
        all.extend(cluster.running(1).await);
        all.sort_unstable();
        (all == wanted).then_some(())
    })
    .await;
    for device in wanted {
        assert!(cluster.monitored_on(device).await.is_some(), "{device}");
    }
    assert_eq!(
        cluster.monitored_on(first).await,
        None,
        "a stopped one stays stopped"
    );
}

async fn every_node_reports_its_load_and_every_method_is_accepted(backend: Backend) {
    let cluster = TestCluster::spawn(backend, 2).await;
    cluster.fast_membership().await;
    let nodes = eventually("every node reported its load", || async {
        let view = cluster.get("/api/v1/cluster").await.body;
        let nodes = view["nodes"].as_array()?.clone();
        (nodes.len() == 3 && nodes.iter().all(|n| n["memory_bytes"].as_i64().is_some()))
            .then_some(nodes)
    })
    .await;
    for node in &nodes {
        assert!(node["memory_bytes"].as_i64().unwrap() > 1_000_000, "{node}");
        assert!(node["threads"].as_i64().unwrap() >= 1, "{node}");
        let cpu = node["cpu_percent"].as_f64().unwrap();
        assert!((0.0..=100.0).contains(&cpu), "{node}");
    }
    let company = cluster.company("acme").await;
    let devices = cluster.fleet_devices(company, 5, DeviceKind::Agent).await;
    for (method, device) in [
        "least_monitors",
        "server_memory",
        "server_cpu",
        "server_threads",
        "round_robin",
    ]
    .into_iter()
    .zip(&devices)
    {
        let answer = cluster
            .put("/api/v1/config", json!({"balance_method": method}))
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
        assert_eq!(answer.body["config"]["balance_method"], method);
        let started = cluster.start_device(*device).await;
        assert_eq!(started.body["started"], 1, "{method}: {started:?}");
    }
    // least_monitors put the first on server 0 (a tie at zero goes to the lowest id).
    assert_eq!(
        cluster.monitored_on(devices[0]).await,
        Some(cluster.servers[0].id)
    );
}
