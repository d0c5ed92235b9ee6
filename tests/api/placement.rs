//! Placement race-free with real processes: two coordinator processes on one database
//! take concurrent starts of the same companies and devices. Each device is started
//! once, runs on one server, is recorded as owned by that server, and the rotating
//! index never goes backwards.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use actix_web::http::{Method, StatusCode};
use futures_util::future::join_all;
use serde_json::{json, Value};
use vigil::domain::DeviceKind;

use crate::helpers::{
    call, client_with, create_in_bulk, eventually, Backend, TestFleet, TEST_CLUSTER_TOKEN,
};
use crate::processes::{
    admin_client, coordinator_process, fast_membership, monitor_server_process, Process,
};

crate::on_both_backends!(two_coordinators_hammered_with_concurrent_starts_own_each_device_once);

const COMPANIES: usize = 3;
const DEVICES_PER_COMPANY: usize = 12;
const ROUNDS: usize = 3;

/// `(server id, device ids it runs)` of every monitor server.
async fn what_runs_where(http: &awc::Client, addresses: &[String]) -> Vec<(i64, Vec<i64>)> {
    let mut found = Vec::new();
    for address in addresses {
        let info = call(http, Method::GET, &format!("http://{address}/info"), None).await;
        assert_eq!(info.status, StatusCode::OK, "{info:?}");
        let ids: Vec<i64> = serde_json::from_value(info.body["device_ids"].clone()).unwrap();
        found.push((info.body["server_id"].as_i64().unwrap(), ids));
    }
    found
}

async fn two_coordinators_hammered_with_concurrent_starts_own_each_device_once(backend: Backend) {
    // Dropped last: the processes are killed before their database goes.
    let scratch = crate::helpers::scratch(backend);
    let db = scratch.url_arg();
    let dir = tempfile::tempdir().unwrap();
    let fleet = TestFleet::calm(COMPANIES * DEVICES_PER_COMPANY);
    let http = admin_client(&db, dir.path());
    let servers_http = client_with(TEST_CLUSTER_TOKEN);
    let (_first, a) = coordinator_process(&db, dir.path()).await;
    fast_membership(&http, &a).await;
    let (_second, b) = coordinator_process(&db, dir.path()).await;
    let mut servers: Vec<(Process, String)> = Vec::new();
    for _ in 0..3 {
        servers.push(monitor_server_process(&db, dir.path()).await);
    }
    let addresses: Vec<String> = servers.iter().map(|(_, a)| a.clone()).collect();

    let mut companies = Vec::new();
    let mut devices = Vec::new();
    for c in 0..COMPANIES {
        let body = json!({ "name": format!("company-{c}") });
        let company = call(&http, Method::POST, &format!("{a}/companies"), Some(body)).await;
        assert_eq!(company.status, StatusCode::CREATED, "{company:?}");
        let company = company.body["id"].as_i64().unwrap();
        companies.push(company);
        let first = c * DEVICES_PER_COMPANY;
        let list = fleet
            .device_list(
                company,
                DeviceKind::Agent,
                first..first + DEVICES_PER_COMPANY,
            )
            .await;
        devices.extend(create_in_bulk(&http, &a, list).await);
    }
    devices.sort_unstable();

    // The rotating index, read over and over while the starts run.
    let indexes = Rc::new(RefCell::new(Vec::new()));
    let sampling = Rc::new(RefCell::new(true));
    let sampler = {
        let (indexes, sampling, http, a) =
            (indexes.clone(), sampling.clone(), http.clone(), a.clone());
        actix_rt::spawn(async move {
            while *sampling.borrow() {
                let config = call(&http, Method::GET, &format!("{a}/config"), None).await;
                if let Some(index) = config.body["monitor_server_current"].as_i64() {
                    indexes.borrow_mut().push(index);
                }
                actix_rt::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };

    for round in 0..ROUNDS {
        // Every company started from both coordinators at once, and a few of its
        // devices one by one from both as well.
        let mut requests = Vec::new();
        for company in &companies {
            for api in [&a, &b] {
                requests.push(format!("{api}/companies/{company}/start"));
            }
        }
        for device in devices.iter().step_by(5) {
            for api in [&b, &a] {
                requests.push(format!("{api}/devices/{device}/start"));
            }
        }
        let answers = join_all(
            requests
                .iter()
                .map(|url| call(&http, Method::POST, url, None)),
        )
        .await;
        let mut started: HashMap<i64, usize> = HashMap::new();
        for (url, answer) in requests.iter().zip(&answers) {
            assert_eq!(
                answer.status,
                StatusCode::OK,
                "round {round}, {url}: {answer:?}"
            );
            for result in answer.body["results"].as_array().unwrap() {
                assert_ne!(result["status"], "failed", "{url}: {result}");
                if result["status"] == "started" {
                    *started
                        .entry(result["device_id"].as_i64().unwrap())
                        .or_default() += 1;
                }
            }
        }
        for device in &devices {
            assert_eq!(
                started.get(device),
                Some(&1),
                "round {round}: device {device} was started once, by one coordinator"
            );
        }

        // Each device runs exactly once, where its ownership record says.
        let placed = what_runs_where(&servers_http, &addresses).await;
        let mut everywhere: Vec<i64> = placed.iter().flat_map(|(_, ids)| ids.clone()).collect();
        everywhere.sort_unstable();
        assert_eq!(everywhere, devices, "round {round}: each device runs once");
        let listed = call(&http, Method::GET, &format!("{b}/devices?limit=1000"), None).await;
        for device in listed.body.as_array().unwrap() {
            let id = device["id"].as_i64().unwrap();
            let runs_on = placed
                .iter()
                .find(|(_, ids)| ids.contains(&id))
                .map(|(server, _)| *server);
            assert_eq!(
                device["monitoring"]["server_id"].as_i64(),
                runs_on,
                "{device}"
            );
        }

        // Stop everything, from both sides at once, for the next round.
        let stop_urls: Vec<String> = companies
            .iter()
            .flat_map(|company| [&a, &b].map(|api| format!("{api}/companies/{company}/stop")))
            .collect();
        let stops = join_all(
            stop_urls
                .iter()
                .map(|url| call(&http, Method::POST, url, None)),
        )
        .await;
        for stop in stops {
            assert_eq!(stop.status, StatusCode::OK, "{stop:?}");
        }
        eventually("nothing runs", || async {
            let placed = what_runs_where(&servers_http, &addresses).await;
            placed.iter().all(|(_, ids)| ids.is_empty()).then_some(())
        })
        .await;
    }
    *sampling.borrow_mut() = false;
    sampler.await.unwrap();
    let indexes: Vec<i64> = indexes.borrow().clone();
    assert!(indexes.len() > 10, "{indexes:?}");
    assert!(
        indexes.windows(2).all(|w| w[0] <= w[1]),
        "the rotating index went backwards: {indexes:?}"
    );
    assert!(
        indexes.last() > indexes.first(),
        "placements moved it on: {indexes:?}"
    );
    let config: Value = call(&http, Method::GET, &format!("{a}/config"), None)
        .await
        .body;
    assert_eq!(config["balance_method"], "round_robin");
}
