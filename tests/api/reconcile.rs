//! Reconciliation in-process: the master holds what every live server runs against
//! the assignments and mends the difference. A monitor stopped behind the scheduler's
//! back runs again, a claim a dead coordinator left is started, a copy no record names
//! is stopped, and what was done is counted in `/metrics`.

use std::time::{Duration, Instant};

use actix_web::http::{Method, StatusCode};
use diesel::prelude::*;
use serde_json::{json, Value};
use vigil::db::schema::{assignments, devices};
use vigil::db::{self, Db};
use vigil::domain::DeviceKind;

use crate::helpers::{eventually, Backend, TestCluster};

crate::on_both_backends!(
    a_monitor_stopped_behind_the_schedulers_back_runs_again_within_two_validate_periods,
    a_claim_left_by_a_coordinator_that_died_before_starting_is_started,
    copies_no_record_names_are_stopped_and_counted,
    a_server_whose_supervisor_hangs_leaves_and_rejoins_fenced,
    a_server_whose_supervisor_is_gone_leaves_and_stays_out,
);

/// Validation (and so reconciliation) every this long.
const VALIDATE_MS: u64 = 1_000;

async fn cluster(backend: Backend, servers: usize) -> TestCluster {
    let cluster = TestCluster::spawn(backend, servers).await;
    let answer = cluster
        .put(
            "/api/v1/config",
            json!({"heartbeat_ms": 100, "validate_ms": VALIDATE_MS, "missed_checks": 3}),
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    cluster.coordinator_is_master().await;
    cluster
}

/// Moves the device's claim a minute into the past: older than the window in which a
/// start of another scheduler may still be on its way, as every claim is after ten
/// seconds.
async fn age_claim(db: &Db, device_id: i64) {
    let then = chrono::Utc::now().naive_utc() - chrono::TimeDelta::seconds(60);
    db.run(move |conn| {
        diesel::update(assignments::table.find(device_id))
            .set(assignments::updated_at.eq(then))
            .execute(conn)
    })
    .await
    .unwrap();
}

fn index_of(cluster: &TestCluster, server_id: i64) -> usize {
    cluster
        .servers
        .iter()
        .position(|s| s.id == server_id)
        .unwrap()
}

async fn events_of(cluster: &TestCluster, device_id: i64) -> Vec<Value> {
    let answer = cluster
        .get(&format!("/api/v1/events?device_id={device_id}"))
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    answer.body.as_array().unwrap().clone()
}

/// The value of an unlabelled series in the coordinator's `/metrics`.
async fn counter(cluster: &TestCluster, name: &str) -> f64 {
    let text = cluster.get_text("/metrics").await;
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} missing from /metrics:\n{text}"))
}

async fn a_monitor_stopped_behind_the_schedulers_back_runs_again_within_two_validate_periods(
    backend: Backend,
) {
    let cluster = cluster(backend, 2).await;
    let company = cluster.company("acme").await;
    let device = cluster.device(company, "d").await;
    let owner = cluster.monitored_on_after_start(device).await;
    age_claim(&cluster.db, device).await;
    let before = counter(&cluster, "vigil_reconcile_started_total").await;

    // Stopped on the server itself: the scheduler is not told.
    let index = index_of(&cluster, owner);
    let stopped = cluster
        .server_call(index, Method::DELETE, &format!("/monitors/{device}"), None)
        .await;
    assert_eq!(stopped.status, StatusCode::OK, "{stopped:?}");
    let since = Instant::now();
    eventually("the monitor runs again on its server", || async {
        cluster.running(index).await.contains(&device).then_some(())
    })
    .await;
    let took = since.elapsed();
    assert!(
        took <= Duration::from_millis(2 * VALIDATE_MS) + Duration::from_millis(500),
        "restarted after {took:?}, more than two validate periods"
    );
    let events = events_of(&cluster, device).await;
    let restarted = events
        .iter()
        .find(|e| e["kind"] == "restarted")
        .unwrap_or_else(|| panic!("no restarted event: {events:?}"));
    assert_eq!(restarted["from"], format!("server {owner}"), "{restarted}");
    assert_eq!(restarted["to"], format!("server {owner}"), "{restarted}");
    assert!(
        restarted["reason"]
            .as_str()
            .unwrap()
            .contains("did not run it"),
        "{restarted}"
    );
    assert!(counter(&cluster, "vigil_reconcile_started_total").await >= before + 1.0);
    // Once: the other server never got a copy.
    assert!(!cluster.running(1 - index).await.contains(&device));
}

async fn a_claim_left_by_a_coordinator_that_died_before_starting_is_started(backend: Backend) {
    let cluster = cluster(backend, 2).await;
    let company = cluster.company("acme").await;
    let device = cluster.device(company, "d").await;
    let server = cluster.servers[1].id;
    // What a coordinator leaves when it dies between its claim and the batch call:
    // the device wanted, claimed for a live server, started nowhere.
    cluster
        .db
        .run(move |conn| {
            db::devices::set_wanted(conn, &[device], true)?;
            db::assignments::claim(conn, device, None, Some(server))
        })
        .await
        .unwrap()
        .unwrap();
    // Within the in-flight window it is left alone: the start may still come.
    actix_rt::time::sleep(Duration::from_millis(2 * VALIDATE_MS)).await;
    assert!(!cluster.running(1).await.contains(&device));
    assert!(!cluster.running(0).await.contains(&device));
    age_claim(&cluster.db, device).await;
    eventually("the claimed device runs on its server", || async {
        cluster.running(1).await.contains(&device).then_some(())
    })
    .await;
    let listed = cluster.get(&format!("/api/v1/devices/{device}")).await;
    assert_eq!(listed.body["monitoring"]["server_id"], server, "{listed:?}");
    let events = events_of(&cluster, device).await;
    assert!(
        events.iter().any(|e| e["kind"] == "restarted"),
        "{events:?}"
    );
}

async fn copies_no_record_names_are_stopped_and_counted(backend: Backend) {
    let cluster = cluster(backend, 2).await;
    let company = cluster.company("acme").await;
    let device = cluster.device(company, "d").await;
    let owner = cluster.monitored_on_after_start(device).await;
    let (owner_index, other) = (index_of(&cluster, owner), 1 - index_of(&cluster, owner));
    let before = counter(&cluster, "vigil_reconcile_stopped_total").await;

    // A copy started on the other server behind the schedulers' backs.
    cluster.start_copy_on(other, device, company).await;
    eventually("the stray copy is stopped", || async {
        (!cluster.running(other).await.contains(&device)).then_some(())
    })
    .await;
    assert!(cluster.running(owner_index).await.contains(&device));
    assert!(counter(&cluster, "vigil_reconcile_stopped_total").await >= before + 1.0);

    // A device no longer wanted (a stop whose calls never arrived) stops too, after
    // two passes saw it so.
    cluster
        .db
        .run(move |conn| {
            diesel::update(devices::table.find(device))
                .set(devices::monitoring_wanted.eq(false))
                .execute(conn)
        })
        .await
        .unwrap();
    eventually("the unwanted copy is stopped", || async {
        (!cluster.running(owner_index).await.contains(&device)).then_some(())
    })
    .await;
    assert!(counter(&cluster, "vigil_reconcile_stopped_total").await >= before + 2.0);
    // Stopped for good: nothing starts it again.
    actix_rt::time::sleep(Duration::from_millis(2 * VALIDATE_MS)).await;
    assert!(!cluster.running(owner_index).await.contains(&device));
    assert!(!cluster.running(other).await.contains(&device));
}

/// The node ids of the cluster, as the coordinator sees them.
async fn node_ids(cluster: &TestCluster) -> Vec<(i64, Option<i64>)> {
    let view = cluster.get("/api/v1/cluster").await;
    assert_eq!(view.status, StatusCode::OK, "{view:?}");
    view.body["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| (n["id"].as_i64().unwrap(), n["server_id"].as_i64()))
        .collect()
}

/// A monitor server whose supervisor hangs while its heartbeat thread beats on leaves
/// the cluster (its devices move), and once the supervisor answers again it stops its
/// own monitors and rejoins under a new node id.
async fn a_server_whose_supervisor_hangs_leaves_and_rejoins_fenced(backend: Backend) {
    let cluster = cluster(backend, 2).await;
    let company = cluster.company("acme").await;
    let devices = cluster.fleet_devices(company, 4, DeviceKind::Agent).await;
    let started = cluster.start_company(company).await;
    assert_eq!(started.status, StatusCode::OK, "{started:?}");
    let hung = cluster.servers[0].id;
    let hung_node = eventually("the coordinator sees the server's node", || async {
        let nodes = node_ids(&cluster).await;
        nodes.iter().find(|(_, s)| *s == Some(hung)).map(|n| n.0)
    })
    .await;

    let on_hung = cluster.running(0).await;
    assert!(
        !on_hung.is_empty(),
        "round robin put devices on both servers"
    );
    // The supervisor's thread blocks (a monitor gone wrong); the heartbeat thread does not.
    let hang = Duration::from_secs(8);
    cluster.servers[0].supervisor.spawn(async move {
        std::thread::sleep(hang);
    });
    let hung_at = Instant::now();
    eventually("the hung server's devices all run on the other", || async {
        let mut running = cluster.running(1).await;
        running.sort_unstable();
        (running == devices).then_some(())
    })
    .await;
    assert!(
        hung_at.elapsed() < hang,
        "moved only after the supervisor answered again"
    );
    eventually(
        "the hung server's node is gone from the cluster",
        || async {
            (!node_ids(&cluster)
                .await
                .iter()
                .any(|(id, _)| *id == hung_node))
            .then_some(())
        },
    )
    .await;
    for device in &on_hung {
        let events = events_of(&cluster, *device).await;
        assert!(
            events.iter().any(|e| e["kind"] == "moved"),
            "device {device}: {events:?}"
        );
    }
    // Answering again: fenced (it runs nothing) and a member under a new id.
    eventually(
        "the server rejoins under a new node id, running nothing",
        || async {
            let nodes = node_ids(&cluster).await;
            let back = nodes
                .iter()
                .any(|(id, server)| *server == Some(hung) && *id != hung_node);
            (back && cluster.running(0).await.is_empty()).then_some(())
        },
    )
    .await;
}

/// A monitor server whose supervisor is gone (its thread ended) leaves the cluster and
/// stays out: it cannot run what it would be given.
async fn a_server_whose_supervisor_is_gone_leaves_and_stays_out(backend: Backend) {
    let cluster = cluster(backend, 2).await;
    let company = cluster.company("acme").await;
    let devices = cluster.fleet_devices(company, 3, DeviceKind::Agent).await;
    let started = cluster.start_company(company).await;
    assert_eq!(started.status, StatusCode::OK, "{started:?}");
    let gone = cluster.servers[0].id;
    assert!(cluster.servers[0].supervisor.stop());
    eventually("the devices all run on the other server", || async {
        let mut running = cluster.running(1).await;
        running.sort_unstable();
        (running == devices).then_some(())
    })
    .await;
    actix_rt::time::sleep(Duration::from_millis(3 * VALIDATE_MS)).await;
    assert!(
        !node_ids(&cluster)
            .await
            .iter()
            .any(|(_, s)| *s == Some(gone)),
        "a server without a supervisor rejoined"
    );
}
