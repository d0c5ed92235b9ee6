//! Property tests: whatever a client sends, every input type of the API (bodies,
//! queries, and the monitor-server wire bodies) is parsed or refused without a panic,
//! and every check a parsed value goes through answers `Ok` or an error, never a panic.

use chrono::Utc;
use proptest::prelude::*;
use serde_json::{Map, Value};

use super::companies::NewCompanyBody;
use super::devices::{self, DevicePatch, ListQuery, NewDeviceBody};
use super::events::EventsQuery;
use super::history::{self, HistoryQuery, Range};
use super::input;
use super::settings::{self, ConfigPatch};
use super::tokens::NewTokenBody;
use crate::domain::{DeviceKind, DeviceSpec, MonitorConfig};
use crate::probe::{self, policy, AddressPolicy};
use crate::remote::wire::{StartBatchRequest, StartMonitorRequest};

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

/// Parses `value` as `T`: `Ok` or a serde error, never a panic.
fn parses<T: serde::de::DeserializeOwned>(value: &Value) -> Option<T> {
    serde_json::from_value(value.clone()).ok()
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
        anything in any_json(),
    ) {
        parses::<NewCompanyBody>(&company);
        parses::<NewDeviceBody>(&device);
        parses::<DevicePatch>(&patch);
        parses::<ConfigPatch>(&config);
        parses::<NewTokenBody>(&token);
        parses::<NewCompanyBody>(&anything);
        parses::<NewDeviceBody>(&anything);
        parses::<ConfigPatch>(&anything);
    }

    #[test]
    fn queries_parse_or_are_refused(
        list in object_of(LIST),
        events in object_of(EVENTS),
        history_query in object_of(HISTORY),
    ) {
        parses::<ListQuery>(&list);
        parses::<EventsQuery>(&events);
        if let Some(query) = parses::<HistoryQuery>(&history_query) {
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
        parses::<DeviceSpec>(&spec);
        parses::<StartMonitorRequest>(&monitor);
        parses::<StartBatchRequest>(&batch);
        if let Some(config) = parses::<MonitorConfig>(&config) {
            let _ = crate::domain::check_limits(&config);
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
