//! `vigil fleet`: its documents as the agent probe, the prometheus probe and promtool
//! read them, a Vigil cluster following devices through forced states, the device
//! list, and the `vigil fleet` process.

use std::collections::BTreeSet;
use std::time::Duration;

use actix_web::http::{Method, StatusCode};
use serde_json::{json, Value};
use vigil::agent::AgentReport;
use vigil::domain::{DeviceKind, DeviceSpec, PollResult};
use vigil::fleet::FleetOptions;
use vigil::probe::AddressPolicy;

use crate::helpers::{
    assert_error, call, create_in_bulk, eventually, promtool_accepts, promtool_findings, Backend,
    TestCluster, TestFleet,
};
use crate::processes::{assert_refused, Process, GIVE_UP};

#[actix_rt::test]
async fn the_agent_document_is_an_agent_report_of_the_named_device() {
    let fleet = TestFleet::calm(3);
    let text = fleet.text("/d/2/metrics.json").await;
    let report: AgentReport = serde_json::from_str(&text).unwrap();
    assert_eq!(report.hostname, "fleet-00002");
    assert_eq!(report.agent_version, env!("CARGO_PKG_VERSION"));
    assert!(!report.cpu.cores.is_empty());
    assert!(report.memory.total_bytes > 0);
    assert!(!report.disks.is_empty() && !report.networks.is_empty());
    let age = chrono::Utc::now() - report.collected_at;
    assert!(age.num_seconds().abs() < 5, "collected {age} ago");
    // Serialised as the real agent serialises its report: field for field.
    assert_eq!(
        serde_json::from_str::<Value>(&text).unwrap(),
        serde_json::to_value(&report).unwrap()
    );
    let missing = call(
        &fleet.http,
        Method::GET,
        &fleet.url("/d/3/metrics.json"),
        None,
    )
    .await;
    assert_error(&missing, StatusCode::NOT_FOUND, "no_such_device");
}

#[actix_rt::test]
async fn the_node_exporter_text_passes_promtool_as_the_real_exporter_does() {
    let fleet = TestFleet::spawn(FleetOptions {
        devices: 12,
        ..FleetOptions::default()
    });
    let reference = include_str!("../fixtures/node_exporter_2.prom");
    let Some(known) = promtool_findings(reference) else {
        return;
    };
    // node_exporter's own names draw lint findings (`node_memory_MemTotal_bytes` is
    // not snake case): the fleet may draw those and no others.
    let known: BTreeSet<String> = known.into_iter().collect();
    for index in 0..12 {
        let text = fleet.text(&format!("/d/{index}/metrics")).await;
        let findings = promtool_findings(&text).unwrap();
        let new: Vec<&String> = findings.iter().filter(|f| !known.contains(*f)).collect();
        assert!(new.is_empty(), "device {index}: {new:#?}\n{text}");
        let agent = fleet.text(&format!("/d/{index}/agent-metrics")).await;
        promtool_accepts(&agent);
        assert!(agent.contains(&format!("hostname=\"fleet-{index:05}\"")));
    }
}

/// A device of the fleet as a monitor sees it.
fn spec(id: i64, kind: DeviceKind, address: String) -> DeviceSpec {
    DeviceSpec {
        id,
        company_id: 1,
        name: format!("d{id}"),
        company: String::new(),
        address,
        kind,
        expected_status: None,
    }
}

fn series(result: &PollResult, name: &str) -> f64 {
    *result
        .metrics
        .get(name)
        .unwrap_or_else(|| panic!("no {name} in {:?}", result.metrics))
}

#[actix_rt::test]
async fn both_endpoints_of_a_device_give_vigil_the_same_readings() {
    let fleet = TestFleet::calm(8);
    let probe = vigil::probe::standard(AddressPolicy::default())();
    let timeout = Duration::from_secs(10);
    for index in [0, 5] {
        let agent = spec(
            1,
            DeviceKind::Agent,
            fleet.url(&format!("/d/{index}/metrics.json")),
        );
        let node = spec(
            2,
            DeviceKind::Prometheus,
            fleet.url(&format!("/d/{index}/metrics")),
        );
        for state in ["normal", "critical"] {
            fleet.force(index, state).await;
            // The prometheus probe's CPU usage comes from two scrapes' counters.
            probe.poll(&node, timeout).await;
            actix_rt::time::sleep(Duration::from_millis(300)).await;
            let scraped = probe.poll(&node, timeout).await;
            let reported = probe.poll(&agent, timeout).await;
            assert!(scraped.up && reported.up, "{scraped:?} {reported:?}");
            let (cpu_a, cpu_p) = (
                series(&reported, "cpu_usage_percent"),
                series(&scraped, "cpu_usage_percent"),
            );
            let (memory_a, memory_p) = (
                series(&reported, "memory_usage_percent"),
                series(&scraped, "memory_usage_percent"),
            );
            let disk = r#"disk_usage_percent{mount="/"}"#;
            let (disk_a, disk_p) = (series(&reported, disk), series(&scraped, disk));
            // Jitter moves a few points a second; the probes read a moment apart.
            assert!(
                (cpu_a - cpu_p).abs() < 5.0,
                "{state}: cpu {cpu_a} vs {cpu_p}"
            );
            assert!(
                (memory_a - memory_p).abs() < 1.0,
                "{state}: {memory_a} vs {memory_p}"
            );
            assert!(
                (disk_a - disk_p).abs() < 0.01,
                "{state}: {disk_a} vs {disk_p}"
            );
            let rate = r#"network_receive_bytes_per_second{interface="eth0"}"#;
            let (rate_a, rate_p) = (series(&reported, rate), series(&scraped, rate));
            assert!(
                (rate_a - rate_p).abs() <= 0.05 * rate_a,
                "{rate_a} vs {rate_p}"
            );
            let sensors: Vec<&String> = reported
                .metrics
                .keys()
                .filter(|k| k.starts_with("temperature_celsius"))
                .collect();
            for sensor in sensors {
                let (a, p) = (series(&reported, sensor), series(&scraped, sensor));
                assert!((a - p).abs() < 1.0, "{sensor}: {a} vs {p}");
            }
            for (what, value) in [
                ("cpu", cpu_a),
                ("cpu", cpu_p),
                ("memory", memory_a),
                ("memory", memory_p),
            ] {
                match state {
                    "critical" => assert!(value > 90.0, "critical {what} {value}"),
                    _ => assert!(value < 70.0, "normal {what} {value}"),
                }
            }
        }
    }
}

async fn monitoring(cluster: &TestCluster, device: i64) -> Value {
    let answer = cluster.get(&format!("/api/v1/devices/{device}")).await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    answer.body["monitoring"].clone()
}

async fn reaches(cluster: &TestCluster, devices: &[i64], state: &str) {
    for device in devices {
        eventually(&format!("device {device} is {state}"), || async {
            let m = monitoring(cluster, *device).await;
            (m["state"] == state).then_some(())
        })
        .await;
    }
}

#[actix_rt::test]
async fn vigil_follows_fleet_devices_through_forced_states() {
    let fleet = TestFleet::calm(4);
    let cluster = TestCluster::spawn(Backend::Sqlite, 1).await;
    let company = cluster.company("fleet").await;
    // Device 0 polled as an agent, device 1 as a node_exporter.
    let mut list = fleet.device_list(company, DeviceKind::Agent, 0..1).await;
    list.extend(
        fleet
            .device_list(company, DeviceKind::Prometheus, 1..2)
            .await,
    );
    let devices = create_in_bulk(&cluster.http, &cluster.url("/api/v1"), list).await;
    let answer = cluster.start_company(company).await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    reaches(&cluster, &devices, "normal").await;

    for index in [0, 1] {
        let view = fleet.force(index, "critical").await;
        assert_eq!(view["now"], "critical", "{view}");
    }
    reaches(&cluster, &devices, "critical").await;
    // From both kinds, CPU usage shows it too (the prometheus probe's once both of
    // the scrapes it compares came after the change).
    for device in &devices {
        eventually("CPU usage above the critical threshold", || async {
            let m = monitoring(&cluster, *device).await;
            let cpu = m["last_result"]["metrics"]["cpu_usage_percent"].as_f64()?;
            (cpu > 90.0).then_some(())
        })
        .await;
    }

    for index in [0, 1] {
        fleet.force(index, "unreachable").await;
    }
    reaches(&cluster, &devices, "unreachable").await;
    let m = monitoring(&cluster, devices[1]).await;
    let error = m["last_result"]["error"].as_str().unwrap();
    assert!(error.contains("503"), "{m}");

    for index in [0, 1] {
        fleet.force(index, "auto").await;
    }
    reaches(&cluster, &devices, "normal").await;
}

#[actix_rt::test]
async fn the_device_list_is_the_bulk_apis_body_in_the_file_and_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("devices.json");
    let fleet = TestFleet::spawn(FleetOptions {
        devices: 5,
        write_devices: Some(file.clone()),
        kind: DeviceKind::Prometheus,
        ..FleetOptions::default()
    });
    let written: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_device_list(&written, fleet.base(), 5, "prometheus", "metrics", None);

    let answer = call(
        &fleet.http,
        Method::GET,
        &fleet.url("/devices.json?kind=agent&company_id=42"),
        None,
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    assert_device_list(
        &answer.body,
        fleet.base(),
        5,
        "agent",
        "metrics.json",
        Some(42),
    );
}

#[track_caller]
fn assert_device_list(
    body: &Value,
    base: &str,
    count: usize,
    kind: &str,
    path: &str,
    company: Option<i64>,
) {
    let keys: Vec<&String> = body.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["devices"], "{body}");
    let devices = body["devices"].as_array().unwrap();
    assert_eq!(devices.len(), count);
    for (index, device) in devices.iter().enumerate() {
        let mut expected = json!({
            "name": format!("fleet-{index:05}"),
            "address": format!("{base}/d/{index}/{path}"),
            "kind": kind,
        });
        if let Some(company) = company {
            expected["company_id"] = json!(company);
        }
        assert_eq!(device, &expected);
    }
}

#[actix_rt::test]
async fn the_fleet_process_writes_its_device_list_serves_it_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("devices.json");
    let mut fleet = Process::spawn(
        &[
            "fleet",
            "--devices",
            "3",
            "--listen",
            "127.0.0.1:0",
            "--write-devices",
            file.to_str().unwrap(),
        ],
        dir.path(),
        None,
    );
    fleet.line_containing("fleet is serving 3 devices").await;
    let written: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    let first = written["devices"][0]["address"].as_str().unwrap();
    let base = first.strip_suffix("/d/0/metrics.json").unwrap();
    assert!(!base.ends_with(":0"), "the bound port, not 0: {base}");
    assert_device_list(&written, base, 3, "agent", "metrics.json", None);

    let http = awc::Client::builder().timeout(GIVE_UP).finish();
    let answer = call(&http, Method::GET, first, None).await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    assert_eq!(answer.body["hostname"], "fleet-00000");

    fleet.stops_cleanly_on_sigterm().await;
}

#[actix_rt::test]
async fn bad_fleet_options_exit_with_code_2_and_one_line_on_stderr() {
    assert_refused(&[
        (&["fleet", "--devices", "0"], "--devices must be from 1"),
        (
            &["fleet", "--devices", "3", "--error-rate", "1.5"],
            "--error-rate must be a fraction from 0 to 1",
        ),
        (&["fleet", "--devices", "many"], "--devices"),
        (&["fleet", "--devices", "3", "--kind", "tcp"], "--kind"),
        (
            &["fleet", "--devices", "3", "--shares", "1,1,0,0"],
            "--shares",
        ),
        (
            &["fleet", "--devices", "3", "--listen", "nowhere"],
            "--listen",
        ),
    ])
    .await;
}
