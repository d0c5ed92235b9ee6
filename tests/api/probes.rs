//! The `http` probe against real HTTP devices: a 2xx answer is up, anything else or no
//! answer within `timeout_ms` is unreachable.

use actix_web::http::StatusCode;
use serde_json::json;

use vigil::actors::writer::WriterSettings;
use vigil::probe::AddressPolicy;

use crate::helpers::{assert_error, eventually, Backend, TestCluster};

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

#[actix_rt::test]
async fn addresses_in_denied_networks_are_refused_when_saved() {
    let cluster = TestCluster::spawn(Backend::Sqlite, 0).await;
    let company = cluster.company("acme").await;
    for (address, kind) in [
        ("http://169.254.169.254/latest/meta-data/", "http"),
        ("http://[fe80::1]:9100/metrics", "prometheus"),
        ("http://[::ffff:169.254.169.254]/", "agent"),
        ("169.254.10.1:22", "tcp"),
        ("tcp://[fd00:ec2::254]:80", "tcp"),
        ("http://100.100.100.200/latest/meta-data/", "http"),
    ] {
        let body = json!({"company_id": company, "name": "meta", "address": address, "kind": kind});
        let refused = cluster.post("/api/v1/devices", body).await;
        assert_error(&refused, StatusCode::UNPROCESSABLE_ENTITY, "address_denied");
    }
    let device = cluster.device(company, "web").await;
    let before = cluster.get(&format!("/api/v1/devices/{device}")).await;
    let moved = cluster
        .put(
            &format!("/api/v1/devices/{device}"),
            json!({"address": "http://169.254.169.254/"}),
        )
        .await;
    assert_error(&moved, StatusCode::UNPROCESSABLE_ENTITY, "address_denied");
    let after = cluster.get(&format!("/api/v1/devices/{device}")).await;
    assert_eq!(before.body, after.body, "a refused change was stored");
    let listed = cluster
        .get(&format!("/api/v1/devices?company_id={company}"))
        .await;
    assert_eq!(listed.body.as_array().unwrap().len(), 1, "{listed:?}");
}

#[actix_rt::test]
async fn a_name_resolving_into_a_denied_network_is_refused_at_poll_time() {
    // The coordinator takes the name (it is not an IP); the monitor server resolves it
    // at each poll and refuses to connect into 127.0.0.0/8.
    let mut cluster = TestCluster::spawn(Backend::Sqlite, 0).await;
    let loopback = AddressPolicy::new(&["127.0.0.0/8".into(), "::1/128".into()]).unwrap();
    cluster
        .add_server_with(WriterSettings::default(), loopback)
        .await;
    let company = cluster.company("acme").await;
    let port = cluster
        .fleet
        .url("/")
        .split(':')
        .nth(2)
        .unwrap()
        .trim_end_matches('/')
        .to_string();
    let http = cluster
        .device_at(
            company,
            "named",
            &format!("http://localhost:{port}/d/named"),
        )
        .await;
    let tcp = cluster.post(
        "/api/v1/devices",
        json!({"company_id": company, "name": "named-tcp", "address": format!("localhost:{port}"), "kind": "tcp"}),
    ).await;
    assert_eq!(tcp.status, StatusCode::CREATED, "{tcp:?}");
    let tcp = tcp.body["id"].as_i64().unwrap();
    let started = cluster.start_company(company).await;
    assert_eq!(started.status, StatusCode::OK, "{started:?}");
    for device in [http, tcp] {
        let judged = eventually("the device is judged", || async {
            let m = monitoring(&cluster, device).await;
            (m["state"] == "unreachable").then_some(m)
        })
        .await;
        let error = judged["last_result"]["error"].as_str().unwrap();
        assert!(error.contains("address policy"), "{error}");
    }
    assert_eq!(cluster.fleet.hits("/d/named"), 0, "the device was reached");
}
