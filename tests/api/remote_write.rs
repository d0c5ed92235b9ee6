//! Remote write: every sample a monitor server takes also goes to a Prometheus
//! remote-write endpoint, with its device's labels, authenticated; a request the
//! endpoint cannot take is sent again, one it refuses is dropped and counted, and a
//! queue that fills drops its oldest; a real Prometheus with its receiver on answers
//! queries for the fleet's series.

use std::sync::{Arc, Mutex};

use actix_web::http::StatusCode;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use serde_json::json;
use vigil::actors::remote_writer::{RemoteAuth, RemoteWriteSettings};
use vigil::domain::DeviceKind;
use vigil::metrics::remote_write::WriteRequest;
use vigil::probe;
use vigil::startup::MonitorServerOptions;

use crate::helpers::{eventually, Backend, TestCluster};
use crate::prometheus_server::{within, Prometheus, PROMETHEUS};

/// What a fake endpoint was sent: each request's headers that matter and its series.
#[derive(Default)]
struct Received {
    requests: Vec<(Vec<(String, String)>, WriteRequest)>,
    /// Answers to give, in order; 204 once they run out.
    script: Vec<u16>,
}

struct FakeEndpoint {
    url: String,
    received: Arc<Mutex<Received>>,
    handle: actix_web::dev::ServerHandle,
}

impl FakeEndpoint {
    fn spawn(script: Vec<u16>) -> FakeEndpoint {
        let received = Arc::new(Mutex::new(Received {
            requests: Vec::new(),
            script: script.into_iter().rev().collect(),
        }));
        let shared = Arc::clone(&received);
        let server = HttpServer::new(move || {
            let shared = Arc::clone(&shared);
            App::new().route(
                "/api/v1/write",
                web::post().to(move |request: HttpRequest, body: web::Bytes| {
                    let shared = Arc::clone(&shared);
                    async move {
                        let raw = snap::raw::Decoder::new().decompress_vec(&body).unwrap();
                        let decoded =
                            <WriteRequest as prost::Message>::decode(raw.as_slice()).unwrap();
                        let headers = [
                            "content-type",
                            "content-encoding",
                            "x-prometheus-remote-write-version",
                            "authorization",
                        ]
                        .iter()
                        .filter_map(|name| {
                            let value = request.headers().get(*name)?.to_str().ok()?;
                            Some((name.to_string(), value.to_string()))
                        })
                        .collect();
                        let mut received = shared.lock().unwrap();
                        received.requests.push((headers, decoded));
                        let status = received.script.pop().unwrap_or(204);
                        HttpResponse::build(StatusCode::from_u16(status).unwrap()).body("")
                    }
                }),
            )
        })
        .workers(1)
        .bind("127.0.0.1:0")
        .unwrap();
        let url = format!("http://{}/api/v1/write", server.addrs()[0]);
        let server = server.run();
        let handle = server.handle();
        actix_rt::spawn(server);
        FakeEndpoint {
            url,
            received,
            handle,
        }
    }

    /// `(device label, metric name)` of every series received.
    fn series(&self) -> Vec<(String, String)> {
        let received = self.received.lock().unwrap();
        let label = |ts: &vigil::metrics::remote_write::TimeSeries, name: &str| {
            ts.labels
                .iter()
                .find(|l| l.name == name)
                .map(|l| l.value.clone())
                .unwrap_or_default()
        };
        received
            .requests
            .iter()
            .flat_map(|(_, request)| request.timeseries.iter())
            .map(|ts| (label(ts, "device"), label(ts, "__name__")))
            .collect()
    }
}

const SAMPLES: &str = "vigil_remote_write_samples_total";

/// A cluster with one monitor server that sends by remote write as `settings` say, and
/// `count` agent devices of the fleet, started, polled every 200 ms.
async fn cluster_sending(settings: RemoteWriteSettings, count: usize) -> (TestCluster, Vec<i64>) {
    let mut cluster = TestCluster::spawn(Backend::Sqlite, 0).await;
    let options = MonitorServerOptions {
        remote_write: Some(settings),
        ..MonitorServerOptions::default()
    };
    cluster
        .add_server_with_options(options, probe::AddressPolicy::default())
        .await;
    let answer = cluster
        .put("/api/v1/config", json!({"poll_interval_ms": 200}))
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    let company = cluster.company("acme").await;
    let devices = cluster
        .fleet_devices(company, count, DeviceKind::Agent)
        .await;
    let started = cluster.start_company(company).await;
    assert_eq!(started.status, StatusCode::OK, "{started:?}");
    (cluster, devices)
}

/// The value of the monitor server's `/metrics` sample of `family` whose labels hold
/// `labels` (0 when there is none).
async fn server_metric(cluster: &TestCluster, family: &str, labels: &str) -> f64 {
    let text = cluster.server_text(0, "/metrics").await;
    text.lines()
        .filter(|line| line.starts_with(&format!("{family}{{")) && line.contains(labels))
        .find_map(|line| line.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0)
}

#[actix_rt::test]
async fn samples_go_to_the_endpoint_labelled_authenticated_and_again_after_a_failure() {
    let endpoint = FakeEndpoint::spawn(vec![503]);
    let settings = RemoteWriteSettings {
        url: endpoint.url.clone(),
        auth: RemoteAuth::Bearer("the-remote-token".into()),
        queue_readings: 100_000,
    };
    let (cluster, devices) = cluster_sending(settings, 3).await;
    let names: Vec<String> = {
        let listed = cluster.get("/api/v1/devices").await;
        listed
            .body
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(names.len(), devices.len());
    // Every device's `up` and CPU arrive, named as on /metrics, and the request
    // answered 503 is sent again.
    eventually("every device's series at the endpoint", || async {
        let series = endpoint.series();
        let requests = endpoint.received.lock().unwrap().requests.len();
        names
            .iter()
            .all(|name| {
                ["vigil_device_up", "vigil_device_cpu_usage_percent"]
                    .iter()
                    .all(|metric| series.contains(&(name.clone(), metric.to_string())))
            })
            .then_some(())
            .filter(|_| requests >= 2)
    })
    .await;
    {
        let received = endpoint.received.lock().unwrap();
        for (headers, request) in &received.requests {
            let header = |name: &str| {
                headers
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, v)| v.as_str())
            };
            assert_eq!(header("content-type"), Some("application/x-protobuf"));
            assert_eq!(header("content-encoding"), Some("snappy"));
            assert_eq!(header("x-prometheus-remote-write-version"), Some("0.1.0"));
            assert_eq!(header("authorization"), Some("Bearer the-remote-token"));
            for series in &request.timeseries {
                let labels: Vec<&str> = series.labels.iter().map(|l| l.name.as_str()).collect();
                let mut sorted = labels.clone();
                sorted.sort_unstable();
                assert_eq!(labels, sorted, "labels in name order");
                assert!(labels.contains(&"company") && labels.contains(&"device_id"));
                assert!(series
                    .samples
                    .windows(2)
                    .all(|w| w[0].timestamp <= w[1].timestamp));
            }
        }
        // The first request was answered 503 and sent again whole.
        assert!(received.requests.len() >= 2);
        assert_eq!(received.requests[0].1, received.requests[1].1);
    }
    let retried = server_metric(&cluster, "vigil_remote_write_retries_total", "").await;
    assert!(retried >= 1.0, "retries {retried}");
    let sent = server_metric(&cluster, SAMPLES, "outcome=\"sent\"").await;
    assert!(sent > 0.0, "sent {sent}");
    endpoint.handle.stop(false).await;
}

#[actix_rt::test]
async fn refused_requests_are_dropped_and_a_full_queue_drops_its_oldest() {
    // Refused for good: counted, not sent again.
    let refusing = FakeEndpoint::spawn(vec![400; 1000]);
    let settings = RemoteWriteSettings {
        url: refusing.url.clone(),
        auth: RemoteAuth::Basic {
            username: "vigil".into(),
            password: "pw".into(),
        },
        queue_readings: 100_000,
    };
    let (cluster, _) = cluster_sending(settings, 2).await;
    eventually("readings refused and counted", || async {
        let refused = server_metric(&cluster, SAMPLES, "outcome=\"refused\"").await;
        (refused > 0.0).then_some(())
    })
    .await;
    let retried = server_metric(&cluster, "vigil_remote_write_retries_total", "").await;
    assert_eq!(retried, 0.0);
    {
        let received = refusing.received.lock().unwrap();
        let (headers, _) = &received.requests[0];
        // "vigil:pw" in base64.
        assert!(headers.contains(&("authorization".into(), "Basic dmlnaWw6cHc=".into())));
    }

    // An endpoint that is away: the queue fills, its oldest go, counted.
    let away = FakeEndpoint::spawn(vec![503; 100_000]);
    let settings = RemoteWriteSettings {
        url: away.url.clone(),
        auth: RemoteAuth::None,
        queue_readings: 1_000,
    };
    let (cluster, _) = cluster_sending(settings, 5).await;
    eventually("a full queue drops and counts", || async {
        let dropped = server_metric(&cluster, SAMPLES, "outcome=\"dropped\"").await;
        (dropped > 0.0).then_some(())
    })
    .await;
    let pending = server_metric(&cluster, "vigil_remote_write_pending_samples", "").await;
    assert!(pending <= 1_000.0 + 5_000.0, "pending {pending}");
    refusing.handle.stop(false).await;
    away.handle.stop(false).await;
}

#[actix_rt::test]
async fn a_prometheus_with_its_receiver_on_answers_for_the_fleets_series() {
    if !crate::helpers::tool_installed(
        "remote_write::a_prometheus_with_its_receiver_on_answers_for_the_fleets_series",
        PROMETHEUS,
        "prometheus",
    ) {
        return;
    }
    let prometheus = Prometheus::spawn_with(
        "global:\n  scrape_interval: 1h\n",
        &["--web.enable-remote-write-receiver"],
    );
    let settings = RemoteWriteSettings {
        url: format!("http://{}/api/v1/write", prometheus.address),
        auth: RemoteAuth::None,
        queue_readings: 100_000,
    };
    let (cluster, devices) = cluster_sending(settings, 2).await;
    let http = awc::Client::default();
    for device in devices {
        let query = format!("vigil_device_up{{device_id=\"{device}\",company=\"acme\"}}");
        let found = within(&query, || async {
            let result = prometheus.query(&http, &query).await;
            (!result.is_empty()).then_some(result)
        })
        .await;
        assert_eq!(found[0]["value"][1], "1", "{found:?}");
        let cpu = format!("vigil_device_cpu_usage_percent{{device_id=\"{device}\"}}");
        let found = within(&cpu, || async {
            let result = prometheus.query(&http, &cpu).await;
            (!result.is_empty()).then_some(result)
        })
        .await;
        let value: f64 = found[0]["value"][1].as_str().unwrap().parse().unwrap();
        assert!((0.0..=100.0).contains(&value), "{found:?}");
        assert!(found[0]["metric"]["device"].as_str().is_some());
    }
    drop(cluster);
}
