//! Cluster membership in-process: every node joins, counters advance, the lowest live
//! id is master, a node whose counter stops is removed, and a node that finds its row
//! gone registers again. The process-level cases (kill -9, SIGSTOP) are in `processes`.

use actix_web::http::StatusCode;
use serde_json::{json, Value};
use vigil::db::models::NewNode;
use vigil::db::{self};

use crate::helpers::{eventually, Backend, TestCluster};

crate::on_both_backends!(
    every_node_joins_and_the_lowest_live_id_is_master,
    a_node_whose_counter_stops_is_removed_and_a_removed_node_joins_again,
    a_saturated_pool_does_not_hold_up_heartbeats,
);

async fn cluster_view(cluster: &TestCluster) -> Value {
    let answer = cluster.get("/api/v1/cluster").await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    answer.body
}

fn nodes(view: &Value) -> Vec<Value> {
    view["nodes"].as_array().unwrap().clone()
}

async fn every_node_joins_and_the_lowest_live_id_is_master(backend: Backend) {
    let cluster = TestCluster::spawn(backend, 2).await;
    cluster.fast_membership().await;
    let view = eventually(
        "a coordinator and two monitor servers, all live",
        || async {
            let view = cluster_view(&cluster).await;
            let nodes = nodes(&view);
            // The coordinator's own view follows the new settings from its next look on.
            (nodes.len() == 3
                && nodes.iter().all(|n| n["live"] == true)
                && view["validate_ms"] == 250)
                .then_some(view)
        },
    )
    .await;
    let nodes = nodes(&view);
    let lowest = nodes
        .iter()
        .map(|n| n["id"].as_i64().unwrap())
        .min()
        .unwrap();
    assert_eq!(view["master"], lowest, "{view}");
    assert_eq!(
        nodes.iter().filter(|n| n["master"] == true).count(),
        1,
        "{view}"
    );
    let roles: Vec<&str> = nodes.iter().map(|n| n["role"].as_str().unwrap()).collect();
    assert_eq!(
        roles.iter().filter(|r| **r == "monitor_server").count(),
        2,
        "{view}"
    );
    let mut server_ids: Vec<i64> = nodes
        .iter()
        .filter_map(|n| n["server_id"].as_i64())
        .collect();
    server_ids.sort_unstable();
    let mut expected: Vec<i64> = cluster.servers.iter().map(|s| s.id).collect();
    expected.sort_unstable();
    assert_eq!(server_ids, expected);
    assert!(view["this_node"].is_i64(), "{view}");
    assert_eq!(view["heartbeat_ms"], 50);
    // Every node says which version it runs, for a rolling upgrade to be watched.
    assert!(
        nodes
            .iter()
            .all(|n| n["version"] == env!("CARGO_PKG_VERSION")),
        "{view}"
    );

    // Counters advance, with the database's time of the last advance.
    let first: Vec<i64> = nodes
        .iter()
        .map(|n| n["counter"].as_i64().unwrap())
        .collect();
    eventually("every counter advances", || async {
        let later = cluster_view(&cluster).await;
        let later: Vec<i64> = self::nodes(&later)
            .iter()
            .map(|n| n["counter"].as_i64().unwrap())
            .collect();
        (later.len() == first.len() && later.iter().zip(&first).all(|(l, f)| l > f)).then_some(())
    })
    .await;
    assert!(nodes.iter().all(|n| n["last_advance"].is_string()));
}

async fn a_node_whose_counter_stops_is_removed_and_a_removed_node_joins_again(backend: Backend) {
    let cluster = TestCluster::spawn(backend, 1).await;
    cluster.fast_membership().await;
    // A node that registered and never beats: a process that died at once.
    let ghost = cluster
        .db
        .run(|conn| {
            db::nodes::register(
                conn,
                &NewNode {
                    role: "monitor_server",
                    address: "10.9.9.9:8081",
                    server_id: None,
                    version: "0.0.1",
                },
            )
        })
        .await
        .unwrap()
        .id;
    eventually("the ghost is removed", || async {
        let stored = cluster.db.run(db::nodes::list).await.unwrap();
        (stored.len() == 2 && stored.iter().all(|n| n.id != ghost)).then_some(())
    })
    .await;

    // The monitor server's row goes (as if it had been judged dead): it joins again,
    // as the same monitor server under a new node id.
    let server = cluster.servers[0].id;
    let before = cluster
        .db
        .run(db::nodes::list)
        .await
        .unwrap()
        .into_iter()
        .find(|n| n.server_id == Some(server))
        .unwrap();
    cluster
        .db
        .run(move |conn| db::nodes::leave(conn, before.id))
        .await
        .unwrap();
    let again = eventually("the monitor server joins again", || async {
        let stored = cluster.db.run(db::nodes::list).await.unwrap();
        stored
            .into_iter()
            .find(|n| n.server_id == Some(server) && n.id != before.id)
    })
    .await;
    assert!(again.id > before.id);
    assert_eq!(again.role, "monitor_server");
    eventually("the cluster view shows the new id live", || async {
        let view = cluster_view(&cluster).await;
        nodes(&view)
            .iter()
            .any(|n| n["id"] == again.id && n["live"] == true)
            .then_some(())
    })
    .await;
}

#[actix_rt::test]
async fn membership_settings_are_checked_as_a_whole() {
    let cluster = TestCluster::spawn(Backend::Sqlite, 0).await;
    for body in [
        json!({"heartbeat_ms": 5}),
        json!({"validate_ms": 900, "heartbeat_ms": 1000}),
        json!({"missed_checks": 0}),
    ] {
        let answer = cluster.put("/api/v1/config", body.clone()).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{body}: {answer:?}");
        assert_eq!(answer.body["code"], "invalid_config", "{body}: {answer:?}");
    }
}

/// The node's counter, read on a connection of its own (off the test's event loop).
async fn counter_of(db: &db::Db, node: i64) -> i64 {
    let db = db.clone();
    actix_rt::task::spawn_blocking(move || {
        let mut conn = db.dedicated_connection().unwrap();
        db::nodes::list(&mut conn)
            .unwrap()
            .into_iter()
            .find(|n| n.id == node)
            .map(|n| n.counter)
            .unwrap()
    })
    .await
    .unwrap()
}

async fn a_saturated_pool_does_not_hold_up_heartbeats(backend: Backend) {
    use std::time::Duration;
    use vigil::actors::membership::{GetCluster, Identity, Membership, Role};
    use vigil::actors::registry::ActorRegistry;
    use vigil::db::models::ConfigChanges;

    let scratch = crate::helpers::scratch(backend);
    // Two pooled connections, both about to be held by slow API work.
    let db = db::Db::open(scratch.url().clone(), 2).await.unwrap();
    db.run(|conn| {
        db::config::update(
            conn,
            &ConfigChanges {
                heartbeat_ms: Some(50),
                ..Default::default()
            },
        )
    })
    .await
    .unwrap();
    let registry = ActorRegistry::new();
    let identity = Identity {
        role: Role::Coordinator,
        address: "127.0.0.1:1".into(),
        server_id: None,
    };
    let membership = Membership::launch(db.clone(), identity, &registry);
    let node = eventually("the node joined", || async {
        membership.send(GetCluster).await.unwrap().this_node
    })
    .await;

    // Both connections are held until the test lets go, however slow the machine is.
    let release = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let holders: Vec<_> = (0..2)
        .map(|_| {
            let (db, release) = (db.clone(), std::sync::Arc::clone(&release));
            actix_rt::spawn(async move {
                db.run(move |_conn| {
                    let since = std::time::Instant::now();
                    while !release.load(std::sync::atomic::Ordering::SeqCst)
                        && since.elapsed() < Duration::from_secs(30)
                    {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    Ok(())
                })
                .await
            })
        })
        .collect();
    actix_rt::time::sleep(Duration::from_millis(200)).await;
    // The pool is exhausted: a third piece of work waits for a held connection.
    let third = {
        let db = db.clone();
        actix_rt::spawn(async move { db.run(|_conn| Ok(())).await })
    };
    let before = counter_of(&db, node).await;
    // Five beats of 50 ms while every pooled connection is held; a heartbeat that
    // needed the pool would not advance at all, and the wait gives up after PATIENCE.
    eventually("five heartbeats while the pool is held", || async {
        (counter_of(&db, node).await >= before + 5).then_some(())
    })
    .await;
    assert!(!third.is_finished(), "the pool was not saturated");
    release.store(true, std::sync::atomic::Ordering::SeqCst);
    third.await.unwrap().unwrap();
    for holder in holders {
        holder.await.unwrap().unwrap();
    }
    let _ = membership.send(vigil::actors::membership::Leave).await;
}
