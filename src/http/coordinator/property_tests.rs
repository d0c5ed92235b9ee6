//! Property tests: whatever a client sends, every input type of the API (bodies,
//! queries, and the monitor-server wire bodies) is parsed or refused without a panic,
//! and every check a parsed value goes through answers `Ok` or an error, never a panic.
//! Valid bodies are accepted as they were meant; the public API refuses fields it does
//! not know while the wire between nodes ignores them; and what a node writes on the
//! wire, the other reads back unchanged.

use chrono::Utc;
use proptest::prelude::*;
use serde_json::{Map, Value};

use super::companies::NewCompanyBody;
use super::devices::bulk::{self, NewDevicesBody};
use super::devices::{self, CheckedDevice, DevicePatch, ListQuery, NewDeviceBody};
use super::events::EventsQuery;
use super::history::{self, HistoryQuery, Range};
use super::input;
use super::settings::{self, ConfigPatch};
use super::tokens::NewTokenBody;
use crate::domain::{DeviceKind, DeviceSpec, MonitorConfig};
use crate::probe::{self, policy, AddressPolicy};
use crate::remote::wire::{
    BatchEntry, RunningMonitor, ServerInfo, StartBatchRequest, StartMonitorRequest, StopAck,
    StopBatchRequest, StopEntry, StopOutcome,
};

/// Any JSON value, a few levels deep.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        any::<String>().prop_map(Value::String),
        "[a-z_]{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{0,10}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// An object with some of `fields` (the type's own names, so parsing gets past the
/// names to the values) and perhaps a stranger, each holding any value.
fn object_of(fields: &'static [&'static str]) -> impl Strategy<Value = Value> {
    (
        prop::collection::vec(
            (prop::sample::select(fields), any_json()),
            0..fields.len() + 1,
        ),
        prop::option::of(("[a-z_]{1,10}", any_json())),
    )
        .prop_map(|(known, stranger)| {
            let mut object = Map::new();
            for (name, value) in known {
                object.insert(name.to_string(), value);
            }
            if let Some((name, value)) = stranger {
                object.insert(name, value);
            }
            Value::Object(object)
        })
}

const COMPANY: &[&str] = &["name"];
const BULK: &[&str] = &["devices"];
const DEVICE: &[&str] = &[
    "company_id",
    "name",
    "address",
    "kind",
    "expected_status",
    "enabled",
];
const CONFIG: &[&str] = &[
    "max_monitors_per_server",
    "poll_interval_ms",
    "timeout_ms",
    "alert_threshold",
    "critical_threshold",
    "balance_method",
    "unreachable_after",
    "retention_hours",
    "minute_retention_days",
    "hour_retention_days",
    "heartbeat_ms",
    "validate_ms",
    "missed_checks",
];
const TOKEN: &[&str] = &["role", "company_id", "name"];
const LIST: &[&str] = &["company_id", "limit", "offset"];
const EVENTS: &[&str] = &["device_id", "company_id", "since", "limit", "offset"];
const HISTORY: &[&str] = &["minutes", "from", "to", "points", "metric"];
const SPEC: &[&str] = &[
    "id",
    "company_id",
    "name",
    "company",
    "address",
    "kind",
    "expected_status",
];
const MONITOR: &[&str] = &["device", "config", "epoch", "first_poll_after_ms"];
const BATCH: &[&str] = &["config", "monitors"];

/// A bulk create body: perhaps its one field, holding a list of objects with some of a
/// device's fields (and perhaps a stranger each) or any value, and perhaps a stranger.
fn bulk_object() -> impl Strategy<Value = Value> {
    let devices = prop_oneof![
        3 => prop::collection::vec(object_of(DEVICE), 0..6).prop_map(Value::Array),
        1 => any_json(),
    ];
    (devices, object_of(BULK)).prop_map(|(devices, mut object)| {
        if let Some(field) = object.get_mut("devices") {
            *field = devices;
        }
        object
    })
}

/// Every key of a bulk body, at the top and in each of its devices, is one its type
/// names.
fn only_bulk_fields(value: &Value) -> bool {
    only_fields(value, BULK)
        && value["devices"]
            .as_array()
            .is_none_or(|devices| devices.iter().all(|d| only_fields(d, DEVICE)))
}

/// Parses `value` as `T`: `Ok` or a serde error, never a panic.
fn parses<T: serde::de::DeserializeOwned>(value: &Value) -> Option<T> {
    serde_json::from_value(value.clone()).ok()
}

/// Every key of `value` (when it is an object) is among `fields`. (serde also reads a
/// struct from an array, by position: there are no names to check then.)
fn only_fields(value: &Value, fields: &[&str]) -> bool {
    value
        .as_object()
        .is_none_or(|map| map.keys().all(|k| fields.contains(&k.as_str())))
}

/// `value` written as JSON and read back.
fn round_trip<T: serde::Serialize + serde::de::DeserializeOwned>(value: &T) -> T {
    let text = serde_json::to_string(value).unwrap_or_default();
    match serde_json::from_str(&text) {
        Ok(back) => back,
        Err(e) => panic!("wrote {text}, could not read it back: {e}"),
    }
}

/// `value` as JSON with `strangers` added to every object in it, read back as `T`.
fn read_with_strangers<T: serde::Serialize + serde::de::DeserializeOwned>(
    value: &T,
    strangers: &[(String, Value)],
) -> T {
    fn add(value: &mut Value, strangers: &[(String, Value)]) {
        match value {
            Value::Object(map) => {
                for child in map.values_mut() {
                    add(child, strangers);
                }
                for (name, extra) in strangers {
                    map.entry(name.clone()).or_insert_with(|| extra.clone());
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|item| add(item, strangers)),
            _ => {}
        }
    }
    let mut json = serde_json::to_value(value).unwrap_or(Value::Null);
    add(&mut json, strangers);
    match serde_json::from_value(json.clone()) {
        Ok(back) => back,
        Err(e) => panic!("refused a newer peer's body {json}: {e}"),
    }
}

/// A name as a person types it (trimmed when stored).
fn name() -> impl Strategy<Value = String> {
    "[A-Za-z0-9][A-Za-z0-9 ._-]{0,40}[A-Za-z0-9]".prop_map(|n| n.trim().to_string())
}

/// A valid device spec, as the coordinator sends it.
fn device_spec() -> impl Strategy<Value = DeviceSpec> {
    (
        1..i64::MAX,
        1..i64::MAX,
        name(),
        prop::option::of(name()),
        kinds(),
        1u16..65535,
        prop::option::of(100u16..600),
    )
        .prop_map(
            |(id, company_id, name, company, kind, port, status)| DeviceSpec {
                id,
                company_id,
                name,
                company: company.unwrap_or_default(),
                address: address_for(kind, port),
                kind,
                expected_status: status.filter(|_| kind == DeviceKind::Http),
            },
        )
}

fn address_for(kind: DeviceKind, port: u16) -> String {
    match kind {
        DeviceKind::Tcp => format!("host-{port}.example:{port}"),
        _ => format!("http://host-{port}.example:{port}/"),
    }
}

/// A valid monitor config.
fn monitor_config() -> impl Strategy<Value = MonitorConfig> {
    (
        1u64..86_400_000,
        1u64..600_000,
        0u8..99,
        1u32..1_000_000,
        1u32..1000,
    )
        .prop_flat_map(|(poll, timeout, alert, max, unreachable)| {
            (alert + 1..=100).prop_map(move |critical| MonitorConfig {
                poll_interval_ms: poll,
                timeout_ms: timeout,
                alert_threshold: alert,
                critical_threshold: critical,
                max_monitors_per_server: max,
                unreachable_after: unreachable,
            })
        })
}

fn start_batch() -> impl Strategy<Value = StartBatchRequest> {
    (
        monitor_config(),
        prop::collection::vec((device_spec(), 1..i64::MAX, 0u64..86_400_000), 0..6),
    )
        .prop_map(|(config, entries)| StartBatchRequest {
            config,
            monitors: entries
                .into_iter()
                .map(|(device, epoch, first_poll_after_ms)| BatchEntry {
                    device,
                    epoch,
                    first_poll_after_ms,
                })
                .collect(),
        })
}

fn server_info() -> impl Strategy<Value = ServerInfo> {
    (
        1..i64::MAX,
        any::<u32>(),
        prop::collection::btree_map(1..i64::MAX, 1..i64::MAX, 0..10),
    )
        .prop_map(|(server_id, max_monitors, running)| ServerInfo {
            server_id,
            running_monitors: running.len(),
            max_monitors,
            device_ids: running.keys().copied().collect(),
            monitors: Some(
                running
                    .into_iter()
                    .map(|(device_id, epoch)| RunningMonitor { device_id, epoch })
                    .collect(),
            ),
        })
}

/// A valid `POST /api/v1/devices` body, and what its checks must make of it.
fn valid_device() -> impl Strategy<Value = (Value, CheckedDevice)> {
    (
        prop::option::of(1..i64::MAX),
        name(),
        kinds(),
        1u16..65535,
        prop::option::of(100i64..600),
        prop::option::of(any::<bool>()),
    )
        .prop_map(|(company_id, name, kind, port, status, enabled)| {
            let status = status.filter(|_| kind == DeviceKind::Http);
            let address = address_for(kind, port);
            let mut json = serde_json::json!({
                "name": format!("  {name} "),
                "address": address,
                "kind": kind.as_str(),
            });
            if let Some(company_id) = company_id {
                json["company_id"] = company_id.into();
            }
            if let Some(status) = status {
                json["expected_status"] = status.into();
            }
            if let Some(enabled) = enabled {
                json["enabled"] = enabled.into();
            }
            let expected = CheckedDevice {
                company_id,
                name,
                address,
                kind,
                expected_status: status.and_then(|s| i32::try_from(s).ok()),
                enabled: enabled.unwrap_or(true),
            };
            (json, expected)
        })
}

/// How many devices a bulk body holds (serde reads `[[…]]` by position too).
fn devices_len(bulk: &Value) -> usize {
    let devices = if bulk.is_array() {
        &bulk[0]
    } else {
        &bulk["devices"]
    };
    devices.as_array().map_or(0, Vec::len)
}

/// A bulk create takes from 1 to `MAX_DEVICES` devices, bounds included.
#[test]
fn bulk_bodies_hold_one_to_the_most_devices() {
    let device = serde_json::json!({"name": "d", "address": "127.0.0.1:22", "kind": "tcp"});
    for (count, taken) in [
        (0, false),
        (1, true),
        (bulk::MAX_DEVICES, true),
        (bulk::MAX_DEVICES + 1, false),
    ] {
        let json = serde_json::json!({ "devices": vec![device.clone(); count] });
        let body = parses::<NewDevicesBody>(&json);
        assert_eq!(
            body.map(|b| b.devices().is_ok()),
            Some(taken),
            "{count} devices"
        );
    }
}

/// An old server's stop answer (no `outcome`) reads as a stop.
#[test]
fn an_older_servers_stop_answer_reads_as_stopped() {
    let ack: StopAck = serde_json::from_str(r#"{"device_id": 3, "server_id": 1}"#).unwrap();
    assert_eq!(ack.outcome, StopOutcome::Stopped);
    let newer: StopAck = serde_json::from_str(
        r#"{"device_id": 3, "server_id": 1, "outcome": "vanished", "epoch": 4}"#,
    )
    .unwrap();
    assert_eq!(newer.outcome, StopOutcome::Unknown);
}

fn kinds() -> impl Strategy<Value = DeviceKind> {
    prop::sample::select(DeviceKind::ALL)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn bodies_parse_or_are_refused(
        company in object_of(COMPANY),
        device in object_of(DEVICE),
        patch in object_of(DEVICE),
        config in object_of(CONFIG),
        token in object_of(TOKEN),
        many in bulk_object(),
        anything in any_json(),
    ) {
        // What parses holds only the fields the type names: the public API refuses
        // the rest (so no `company_id`, `epoch` or `server_id` slips in).
        for (value, fields, parsed) in [
            (&company, COMPANY, parses::<NewCompanyBody>(&company).is_some()),
            (&device, DEVICE, parses::<NewDeviceBody>(&device).is_some()),
            (&patch, DEVICE, parses::<DevicePatch>(&patch).is_some()),
            (&config, CONFIG, parses::<ConfigPatch>(&config).is_some()),
            (&token, TOKEN, parses::<NewTokenBody>(&token).is_some()),
            (&anything, COMPANY, parses::<NewCompanyBody>(&anything).is_some()),
            (&anything, DEVICE, parses::<NewDeviceBody>(&anything).is_some()),
            (&anything, CONFIG, parses::<ConfigPatch>(&anything).is_some()),
        ] {
            prop_assert!(!parsed || only_fields(value, fields), "took a field it does not name: {}", value);
        }
        // A bulk body, at every level; and whatever parses is refused or taken by its
        // count, never a panic.
        for value in [&many, &anything] {
            if let Some(body) = parses::<NewDevicesBody>(value) {
                prop_assert!(only_bulk_fields(value), "took a field it does not name: {}", value);
                let count = devices_len(value);
                prop_assert_eq!(body.devices().is_ok(), (1..=bulk::MAX_DEVICES).contains(&count));
            }
        }
    }

    #[test]
    fn queries_parse_or_are_refused(
        list in object_of(LIST),
        events in object_of(EVENTS),
        history_query in object_of(HISTORY),
    ) {
        prop_assert!(parses::<ListQuery>(&list).is_none() || only_fields(&list, LIST));
        prop_assert!(parses::<EventsQuery>(&events).is_none() || only_fields(&events, EVENTS));
        if let Some(query) = parses::<HistoryQuery>(&history_query) {
            prop_assert!(only_fields(&history_query, HISTORY));
            let _ = Range::of(&query, Utc::now());
        }
    }

    #[test]
    fn monitor_server_bodies_parse_or_are_refused(
        spec in object_of(SPEC),
        monitor in object_of(MONITOR),
        batch in object_of(BATCH),
        config in object_of(CONFIG),
    ) {
        // Whatever parses is what was sent: written again, it reads back the same.
        if let Some(spec) = parses::<DeviceSpec>(&spec) {
            prop_assert_eq!(round_trip(&spec), spec);
        }
        if let Some(monitor) = parses::<StartMonitorRequest>(&monitor) {
            prop_assert_eq!(round_trip(&monitor), monitor);
        }
        if let Some(batch) = parses::<StartBatchRequest>(&batch) {
            prop_assert_eq!(round_trip(&batch), batch);
        }
        if let Some(config) = parses::<MonitorConfig>(&config) {
            let _ = crate::domain::check_limits(&config);
            prop_assert_eq!(round_trip(&config), config);
        }
    }

    #[test]
    fn what_a_node_writes_the_other_reads_back_even_with_fields_it_does_not_know(
        batch in start_batch(),
        stops in prop::collection::vec((1..i64::MAX, 0..i64::MAX), 0..20),
        info in server_info(),
        strangers in prop::collection::vec(("x_[a-z]{1,8}", any_json()), 1..4),
    ) {
        let stops = StopBatchRequest {
            monitors: stops.into_iter().map(|(device_id, epoch)| StopEntry { device_id, epoch }).collect(),
        };
        prop_assert_eq!(round_trip(&batch), batch.clone());
        prop_assert_eq!(round_trip(&stops), stops.clone());
        prop_assert_eq!(round_trip(&info), info.clone());
        // A newer peer's body: the same, with fields added at every level.
        prop_assert_eq!(read_with_strangers::<StartBatchRequest>(&batch, &strangers), batch);
        prop_assert_eq!(read_with_strangers::<StopBatchRequest>(&stops, &strangers), stops);
        prop_assert_eq!(read_with_strangers::<ServerInfo>(&info, &strangers), info);
    }

    #[test]
    fn valid_device_bodies_are_accepted_as_meant_and_strangers_refused(
        body in valid_device(),
        stranger in "[a-z_]{1,10}",
        value in any_json(),
    ) {
        let (json, expected) = body;
        let parsed = parses::<NewDeviceBody>(&json);
        prop_assert!(parsed.is_some(), "refused a valid body: {}", json);
        let checked = parsed.map(|b| b.checked(&AddressPolicy::default()));
        prop_assert!(matches!(checked, Some(Ok(_))), "a valid body failed its checks: {} ({:?})", json, checked);
        if let Some(Ok(checked)) = checked {
            prop_assert_eq!(checked, expected);
        }
        // The public API refuses what it does not know, whatever the field holds.
        let mut extended = json.clone();
        if DEVICE.contains(&stranger.as_str()) {
            return Ok(());
        }
        extended[stranger.as_str()] = value;
        prop_assert!(parses::<NewDeviceBody>(&extended).is_none(), "took an unknown field: {}", extended);
    }

    #[test]
    fn valid_bulk_bodies_are_accepted_as_meant_and_strangers_refused(
        bodies in prop::collection::vec(valid_device(), 1..12),
        at in any::<prop::sample::Index>(),
        stranger in "[a-z_]{1,10}",
        value in any_json(),
    ) {
        let (devices, expected): (Vec<Value>, Vec<CheckedDevice>) = bodies.into_iter().unzip();
        let json = serde_json::json!({ "devices": devices });
        let parsed = parses::<NewDevicesBody>(&json).map(NewDevicesBody::devices);
        prop_assert!(matches!(parsed, Some(Ok(_))), "refused a valid body: {}", json);
        if let Some(Ok(parsed)) = parsed {
            // Each device in its place, checked as a single create checks it.
            let checked: Vec<CheckedDevice> = parsed
                .into_iter()
                .filter_map(|b| b.checked(&AddressPolicy::default()).ok())
                .collect();
            prop_assert_eq!(checked, expected);
        }
        // A stranger, at the top or in any one device, refuses the whole body.
        if stranger != "devices" {
            let mut top = json.clone();
            top[stranger.as_str()] = value.clone();
            prop_assert!(parses::<NewDevicesBody>(&top).is_none(), "took an unknown field: {}", top);
        }
        if !DEVICE.contains(&stranger.as_str()) {
            let mut inner = json.clone();
            let index = at.index(devices_len(&inner));
            inner["devices"][index][stranger.as_str()] = value;
            prop_assert!(parses::<NewDevicesBody>(&inner).is_none(), "took an unknown field: {}", inner);
        }
    }

    #[test]
    fn checks_of_strings_never_panic(
        text in any::<String>(),
        url_like in "(https?|tcp)://[a-z0-9.:\\[\\]%@/-]{0,40}",
        kind in kinds(),
    ) {
        let open = AddressPolicy::default();
        let _ = input::name("name", &text);
        let _ = input::instant("since", &text);
        let _ = devices::kind(&text);
        for candidate in [&text, &url_like] {
            let _ = devices::address(&open, kind, candidate);
            let _ = probe::validate_address(kind, candidate);
            if let Some(host) = probe::host_of(kind, candidate) {
                let _ = policy::literal_ip(&host);
            }
        }
        let _ = history::filter(Some(&text));
        let _ = crate::auth::token_name(&text);
        let _ = crate::auth::ClusterToken::new(&text);
        let _ = crate::auth::looks_like_token(&text);
        let _ = text.parse::<policy::Network>();
        let _ = AddressPolicy::new(std::slice::from_ref(&text));
        let _ = text.parse::<crate::db::DbUrl>();
        let _ = text.parse::<crate::auth::Role>();
        let _ = crate::domain::BalanceMethod::parse(&text);
    }

    #[test]
    fn checks_of_numbers_never_panic(
        limit in any::<Option<i64>>(),
        offset in any::<Option<i64>>(),
        status in any::<Option<i64>>(),
        wide in any::<Option<i64>>(),
        kind in kinds(),
    ) {
        let _ = input::page(limit, offset);
        let _ = devices::expected_status(kind, status);
        let _ = settings::narrow("field", wide);
    }

    #[test]
    fn the_prometheus_parser_takes_any_text(text in any::<String>()) {
        let _ = probe::parse_exposition(&text);
    }

    #[test]
    fn the_prometheus_parser_takes_any_exposition_shaped_text(
        lines in prop::collection::vec(exposition_line(), 0..40),
    ) {
        let _ = probe::parse_exposition(&lines.join("\n"));
    }

    #[test]
    fn the_prometheus_parser_reads_back_every_series_written(
        samples in prop::collection::vec(written_sample(), 1..30),
        comments in prop::collection::vec(exposition_comment(), 0..30),
    ) {
        // Comments between the samples, as exporters write HELP and TYPE lines.
        let mut text = String::new();
        for (i, sample) in samples.iter().enumerate() {
            if let Some(comment) = comments.get(i) {
                text.push_str(comment);
                text.push('\n');
            }
            text.push_str(&sample.line);
            text.push('\n');
        }
        let parsed = probe::parse_exposition(&text);
        prop_assert!(parsed.is_ok(), "{:?}\n{}", parsed, text);
        let Ok(parsed) = parsed else { return Ok(()) };
        prop_assert_eq!(parsed.skipped_lines, 0, "{}", text);

        // Each series once, with its first finite value, keyed as the series writer
        // writes it.
        let mut expected: Vec<(String, f64)> = Vec::new();
        for sample in samples.iter().filter(|s| s.value.is_finite()) {
            if !expected.iter().any(|(key, _)| *key == sample.key) {
                expected.push((sample.key.clone(), sample.value));
            }
        }
        let read: Vec<(String, f64)> = parsed
            .samples
            .iter()
            .map(|s| (s.series().to_string(), s.value()))
            .collect();
        prop_assert_eq!(read, expected, "{}", text);
        for (sample, read) in samples.iter().zip(&parsed.samples) {
            if sample.key == read.series() {
                prop_assert_eq!(read.name(), sample.name.as_str());
                let labels: Vec<(String, String)> = read
                    .labels()
                    .map(|(k, v)| (k.to_string(), v.into_owned()))
                    .collect();
                prop_assert_eq!(labels, sample.labels.clone());
            }
        }
    }
}

/// A sample line written as an exporter may write it, with what the parser should
/// read from it.
#[derive(Debug, Clone)]
struct WrittenSample {
    line: String,
    name: String,
    /// Sorted by name, unescaped.
    labels: Vec<(String, String)>,
    /// The series as [`crate::metrics::series::series`] writes it.
    key: String,
    value: f64,
}

/// Sample lines of any name, labels (any text as values) and value, written with the
/// liberties the format allows: labels in any order, blanks around tokens, a trailing
/// comma, an empty label set, a timestamp; and a few repeated series.
fn written_sample() -> impl Strategy<Value = WrittenSample> {
    use crate::metrics::exposition::write_value;
    use crate::metrics::series::{escape_label_value, series};

    let name = prop_oneof!["[a-zA-Z_:][a-zA-Z0-9_:]{0,16}", Just("m".to_string())];
    let labels = prop::collection::btree_map(
        "[a-zA-Z_][a-zA-Z0-9_]{0,6}",
        prop_oneof![
            any::<String>(),
            "[a-z0-9 \\\\\"{},=\n]{0,8}",
            Just(String::new())
        ],
        0..5,
    );
    let value = prop_oneof![
        any::<f64>(),
        any::<i32>().prop_map(f64::from),
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
    ];
    let blank = prop::sample::select(&["", " ", "\t", "  "][..]);
    let gap = prop::sample::select(&[" ", "\t", "  "][..]);
    (
        name,
        labels,
        value,
        any::<prop::sample::Index>(),
        (blank.clone(), blank.clone(), blank, gap),
        any::<bool>(),
        prop::option::of(any::<i64>()),
    )
        .prop_map(
            |(
                name,
                labels,
                value,
                rotate,
                (inside, around, after, gap),
                trailing_comma,
                timestamp,
            )| {
                let labels: Vec<(String, String)> = labels.into_iter().collect();
                let pairs: Vec<(&str, &str)> = labels
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                let key = series(&name, &pairs);
                // Written in another order than the sorted one.
                let mut order: Vec<usize> = (0..labels.len()).collect();
                if !order.is_empty() {
                    let by = rotate.index(order.len());
                    order.rotate_left(by);
                }
                let mut line = name.clone();
                if !labels.is_empty() || trailing_comma {
                    line.push_str(around);
                    line.push('{');
                    for (i, &at) in order.iter().enumerate() {
                        if i > 0 {
                            line.push_str(inside);
                            line.push(',');
                        }
                        let (k, v) = &labels[at];
                        line.push_str(inside);
                        line.push_str(k);
                        line.push_str(inside);
                        line.push('=');
                        line.push_str(inside);
                        line.push('"');
                        escape_label_value(&mut line, v);
                        line.push('"');
                    }
                    if trailing_comma && !labels.is_empty() {
                        line.push(',');
                    }
                    line.push_str(inside);
                    line.push('}');
                }
                line.push_str(gap);
                write_value(&mut line, value);
                if let Some(timestamp) = timestamp {
                    line.push_str(gap);
                    line.push_str(&timestamp.to_string());
                }
                line.push_str(after);
                WrittenSample {
                    line,
                    name,
                    labels,
                    key,
                    value,
                }
            },
        )
}

/// HELP and TYPE lines, and other comments, of any text.
fn exposition_comment() -> impl Strategy<Value = String> {
    let name = "[a-zA-Z_:][a-zA-Z0-9_:]{0,16}";
    let help = any::<String>().prop_map(|h| h.replace(['\n', '\r'], " "));
    prop_oneof![
        (name, help.clone()).prop_map(|(n, h)| format!("# HELP {n} {h}")),
        (
            name,
            prop::sample::select(&["counter", "gauge", "histogram", "summary", "untyped"][..])
        )
            .prop_map(|(n, t)| format!("# TYPE {n} {t}")),
        help.prop_map(|h| format!("#{h}")),
    ]
}

/// Lines that look like the text format: comments, TYPE and HELP lines, samples with
/// labels, odd values and timestamps, and broken versions of each.
fn exposition_line() -> impl Strategy<Value = String> {
    let name = "[a-z_:][a-z0-9_:]{0,12}";
    let value = prop_oneof![
        any::<f64>().prop_map(|f| f.to_string()),
        Just("NaN".to_string()),
        Just("+Inf".to_string()),
        Just("-Inf".to_string()),
        "[0-9eE.+-]{0,8}",
    ];
    let label =
        ("[a-z_]{0,6}", "[a-z0-9 \\\\\"{},=]{0,8}").prop_map(|(k, v)| format!("{k}=\"{v}\""));
    let labels = prop::collection::vec(label, 0..4).prop_map(|l| {
        if l.is_empty() {
            String::new()
        } else {
            format!("{{{}}}", l.join(","))
        }
    });
    prop_oneof![
        (name, labels, value, prop::option::of(any::<i64>())).prop_map(|(n, l, v, t)| match t {
            Some(t) => format!("{n}{l} {v} {t}"),
            None => format!("{n}{l} {v}"),
        }),
        (
            name,
            prop::sample::select(&["counter", "gauge", "histogram", "summary", "untyped", "x"][..])
        )
            .prop_map(|(n, t)| format!("# TYPE {n} {t}")),
        (name, any::<String>()).prop_map(|(n, h)| format!("# HELP {n} {h}")),
        any::<String>(),
        "[#{}=\" a-z0-9]{0,20}",
    ]
}
