//! Two coordinators on one database racing a stop and a start of the same devices:
//! a stop names the epoch it read, so a copy a later start placed is never killed; a
//! start that lost to a later stop leaves the device stopped. Whatever the order, the
//! record, the wanted flag and what runs agree at the end.

use std::collections::HashMap;

use actix_web::http::{Method, StatusCode};
use futures_util::future::join_all;
use serde_json::Value;
use vigil::db;
use vigil::domain::DeviceKind;

use crate::helpers::{call, client_with, eventually, Backend, TestCluster};

crate::on_both_backends!(
    a_stop_racing_a_start_never_kills_the_newer_copy,
    a_start_landing_inside_a_stop_keeps_its_copy,
);

const DEVICES: usize = 24;
const ROUNDS: usize = 3;

/// `device → [(server, epoch)]` of every copy running anywhere.
async fn copies(cluster: &TestCluster) -> HashMap<i64, Vec<(i64, i64)>> {
    let mut found: HashMap<i64, Vec<(i64, i64)>> = HashMap::new();
    for index in 0..cluster.servers.len() {
        let info = cluster
            .server_call(index, Method::GET, "/info?epochs=true", None)
            .await;
        assert_eq!(info.status, StatusCode::OK, "{info:?}");
        let server = info.body["server_id"].as_i64().unwrap();
        for m in info.body["monitors"].as_array().unwrap() {
            found
                .entry(m["device_id"].as_i64().unwrap())
                .or_default()
                .push((server, m["epoch"].as_i64().unwrap()));
        }
    }
    found
}

/// `device → (server, epoch, wanted)` as stored.
async fn records(cluster: &TestCluster, ids: &[i64]) -> HashMap<i64, (Option<i64>, i64, bool)> {
    let ids = ids.to_vec();
    cluster
        .db
        .run(move |conn| db::assignments::records_of(conn, &ids))
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.device_id, (r.server_id, r.epoch, r.wanted)))
        .collect()
}

async fn a_stop_racing_a_start_never_kills_the_newer_copy(backend: Backend) {
    let cluster = TestCluster::spawn(backend, 3).await;
    cluster.fast_membership().await;
    let b = cluster.second_coordinator().await;
    let a = cluster.url("/api/v1");
    let http = client_with(&cluster.admin_token);
    let company = cluster.company("acme").await;
    let devices = cluster
        .fleet_devices(company, DEVICES, DeviceKind::Agent)
        .await;
    let started = cluster.start_company(company).await;
    assert_eq!(started.status, StatusCode::OK, "{started:?}");

    for round in 0..ROUNDS {
        // Each device stopped through one coordinator while the other stops and starts
        // it again, or only starts it, all at the same moment.
        let work = devices.iter().enumerate().map(|(n, device)| {
            let (http, a, b) = (http.clone(), a.clone(), b.clone());
            let device = *device;
            async move {
                let stop = format!("{a}/devices/{device}/stop");
                let start = format!("{b}/devices/{device}/start");
                let restart = async {
                    if (n + round) % 2 == 0 {
                        let _ = call(
                            &http,
                            Method::POST,
                            &format!("{b}/devices/{device}/stop"),
                            None,
                        )
                        .await;
                    }
                    call(&http, Method::POST, &start, None).await
                };
                let (stopped, started) =
                    futures_util::future::join(call(&http, Method::POST, &stop, None), restart)
                        .await;
                vec![(device, "stop", stopped), (device, "start", started)]
            }
        });
        let answers: Vec<(i64, &str, crate::helpers::Answer)> =
            join_all(work).await.into_iter().flatten().collect();
        let mut started_on: HashMap<i64, i64> = HashMap::new();
        for (device, verb, answer) in &answers {
            assert!(
                [StatusCode::OK, StatusCode::NOT_FOUND, StatusCode::CONFLICT]
                    .contains(&answer.status),
                "round {round}, {verb} of {device}: {answer:?}"
            );
            if *verb == "start" && answer.status == StatusCode::OK {
                let result: &Value = &answer.body["results"][0];
                if result["status"] == "started" {
                    started_on.insert(*device, result["server_id"].as_i64().unwrap());
                }
            }
        }

        // Right after both answered: a wanted device's recorded copy runs (a stop never
        // killed the newer copy), and a device not wanted has no current owner.
        let records = records(&cluster, &devices).await;
        let running = copies(&cluster).await;
        for device in &devices {
            let (server, epoch, wanted) = records[device];
            let copies = running.get(device).cloned().unwrap_or_default();
            if wanted {
                // A start that answered `started` placed the copy that must survive.
                if let Some(on) = started_on.get(device) {
                    assert_eq!(server, Some(*on), "round {round}: device {device}");
                }
                if let Some(server) = server {
                    assert!(
                        copies.contains(&(server, epoch)),
                        "round {round}: device {device} is wanted and recorded on server \
                         {server} under epoch {epoch}, but runs only as {copies:?}"
                    );
                }
            } else {
                assert_eq!(
                    server, None,
                    "round {round}: device {device} is not wanted but owned"
                );
                assert!(
                    !copies.iter().any(|(_, e)| *e == epoch),
                    "round {round}: device {device} is not wanted but runs under its current epoch: {copies:?}"
                );
            }
        }

        // And once the master has looked: what runs is exactly what is wanted.
        eventually(
            "every wanted device runs once, nothing else runs",
            || async {
                let records = self::records(&cluster, &devices).await;
                let running = copies(&cluster).await;
                devices
                    .iter()
                    .all(|device| {
                        let (server, epoch, wanted) = records[device];
                        let copies = running.get(device).cloned().unwrap_or_default();
                        match (wanted, server) {
                            (true, Some(server)) => copies == vec![(server, epoch)],
                            (true, None) => false,
                            (false, _) => copies.is_empty(),
                        }
                    })
                    .then_some(())
            },
        )
        .await;
    }
}

/// A proxy in front of a monitor server that can hold the next `GET /info` until told
/// to let it go: the slow network that lets a start land between a stop's read and its
/// look at the servers.
struct HoldingProxy {
    address: std::net::SocketAddr,
    state: std::sync::Arc<ProxyState>,
}

#[derive(Default)]
struct ProxyState {
    /// Set: the next `/info` waits for the sender to be used or dropped.
    hold: std::sync::Mutex<Option<tokio::sync::oneshot::Receiver<()>>>,
    held: std::sync::atomic::AtomicUsize,
}

impl HoldingProxy {
    fn spawn(target: std::net::SocketAddr) -> HoldingProxy {
        use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
        let state = std::sync::Arc::new(ProxyState::default());
        let shared = web::Data::from(std::sync::Arc::clone(&state));
        let server = HttpServer::new(move || {
            App::new().app_data(shared.clone()).default_service(web::to(
                move |req: HttpRequest, body: web::Bytes, state: web::Data<ProxyState>| async move {
                    if req.path() == "/info" {
                        let wait = state.hold.lock().unwrap().take();
                        if let Some(wait) = wait {
                            state.held.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            let _ = wait.await;
                        }
                    }
                    let url = format!("http://{target}{}", req.uri());
                    let mut forward = awc::Client::new().request(req.method().clone(), url);
                    if let Some(auth) = req.headers().get("authorization") {
                        forward = forward.insert_header(("authorization", auth.clone()));
                    }
                    forward = forward.insert_header(("content-type", "application/json"));
                    let mut answer = forward.send_body(body).await.unwrap();
                    let bytes = answer.body().limit(64 << 20).await.unwrap();
                    HttpResponse::build(answer.status())
                        .content_type("application/json")
                        .body(bytes)
                },
            ))
        })
        .workers(1)
        .disable_signals()
        .bind("127.0.0.1:0")
        .unwrap();
        let address = server.addrs()[0];
        actix_rt::spawn(server.run());
        HoldingProxy { address, state }
    }

    /// Holds the next `/info` until the answer is dropped.
    fn hold_next_info(&self) -> tokio::sync::oneshot::Sender<()> {
        let (release, wait) = tokio::sync::oneshot::channel();
        *self.state.hold.lock().unwrap() = Some(wait);
        release
    }

    fn held(&self) -> usize {
        self.state.held.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// The exact interleaving: coordinator A reads the device for a stop, then coordinator
/// B starts it (claim and copy) before A looks at what the server runs. A must leave
/// B's copy alone: the stop is superseded, the device runs and stays wanted.
async fn a_start_landing_inside_a_stop_keeps_its_copy(backend: Backend) {
    use diesel::prelude::*;
    let cluster = TestCluster::spawn(backend, 1).await;
    let proxy = HoldingProxy::spawn(cluster.servers[0].address);
    let (server_id, port) = (cluster.servers[0].id, i32::from(proxy.address.port()));
    cluster
        .db
        .run(move |conn| {
            diesel::update(vigil::db::schema::monitor_servers::table.find(server_id))
                .set(vigil::db::schema::monitor_servers::port.eq(port))
                .execute(conn)
        })
        .await
        .unwrap();
    let b = cluster.second_coordinator().await;
    let http = client_with(&cluster.admin_token);
    let company = cluster.company("acme").await;
    let device = cluster.device(company, "d").await;

    // A's stop reads the device (not placed yet), then waits on its look at the server.
    let release = proxy.hold_next_info();
    let stop_url = cluster.url(&format!("/api/v1/devices/{device}/stop"));
    let stop = {
        let http = http.clone();
        actix_rt::spawn(async move { call(&http, Method::POST, &stop_url, None).await })
    };
    eventually("A's stop is looking at the server", || async {
        (proxy.held() == 1).then_some(())
    })
    .await;
    // B starts it meanwhile: claimed under a newer epoch, and running.
    let started = call(
        &http,
        Method::POST,
        &format!("{b}/devices/{device}/start"),
        None,
    )
    .await;
    assert_eq!(started.status, StatusCode::OK, "{started:?}");
    assert_eq!(
        started.body["results"][0]["status"], "started",
        "{started:?}"
    );
    drop(release);
    let stopped = stop.await.unwrap();
    assert_eq!(stopped.status, StatusCode::CONFLICT, "{stopped:?}");
    assert_eq!(stopped.body["code"], "superseded", "{stopped:?}");
    let running = copies(&cluster).await;
    let records = records(&cluster, &[device]).await;
    let (owner, epoch, wanted) = records[&device];
    assert_eq!(owner, Some(server_id));
    assert!(wanted, "B's start came after A's stop read it");
    assert_eq!(
        running.get(&device),
        Some(&vec![(server_id, epoch)]),
        "B's copy runs"
    );
}
