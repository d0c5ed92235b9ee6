//! The `http` probe against real HTTP devices: a 2xx answer is up, anything else or no
//! answer within `timeout_ms` is unreachable.

use actix_web::http::StatusCode;
use serde_json::json;

use crate::helpers::{eventually, Backend, TestCluster};

async fn monitoring(cluster: &TestCluster, device: i64) -> serde_json::Value {
    let answer = cluster.get(&format!("/api/v1/devices/{device}")).await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    answer.body["monitoring"].clone()
}

#[actix_rt::test]
async fn a_device_answering_an_error_status_is_unreachable() {
    let cluster = TestCluster::spawn(Backend::Sqlite, 1).await;
    let company = cluster.company("acme").await;
    let failing = cluster
        .device_at(company, "failing", &cluster.fleet.url("/status/503"))
        .await;
    let healthy = cluster.device(company, "healthy").await;
    cluster.start_company(company).await;

    let failing = eventually("the 503 is judged", || async {
        let m = monitoring(&cluster, failing).await;
        (m["state"] == "unreachable").then_some(m)
    })
    .await;
    assert_eq!(failing["last_result"]["up"], false);
    assert_eq!(failing["last_result"]["status_code"], 503);
    let error = failing["last_result"]["error"].as_str().unwrap();
    assert!(error.contains("503"), "{error}");

    let healthy = eventually("the 200 is judged", || async {
        let m = monitoring(&cluster, healthy).await;
        (m["state"] == "normal").then_some(m)
    })
    .await;
    assert_eq!(healthy["last_result"]["status_code"], 200);
    assert_eq!(healthy["last_result"]["error"], serde_json::Value::Null);
}

#[actix_rt::test]
async fn a_device_slower_than_the_timeout_is_unreachable() {
    let cluster = TestCluster::spawn(Backend::Sqlite, 1).await;
    let answer = cluster
        .put("/api/v1/config", json!({ "timeout_ms": 200 }))
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    let company = cluster.company("acme").await;
    let slow = cluster
        .device_at(company, "slow", &cluster.fleet.url("/slow/3000"))
        .await;
    cluster.start_device(slow).await;

    let judged = eventually("the slow device is judged", || async {
        let m = monitoring(&cluster, slow).await;
        (m["state"] == "unreachable").then_some(m)
    })
    .await;
    let result = &judged["last_result"];
    assert_eq!(result["status_code"], serde_json::Value::Null);
    assert_eq!(result["error"], "no answer within 200 ms");
    let latency = result["latency_ms"].as_f64().unwrap();
    assert!(
        latency < 3000.0,
        "the poll waited for the device: {latency} ms"
    );
}
