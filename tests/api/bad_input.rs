//! Bad input (unknown ids, malformed JSON, wrong types, out-of-range config) gets a 4xx
//! JSON error and changes nothing. Every error body is exactly
//! `{"error": "<sentence>", "code": "<code>"}`, and after every refused request the
//! companies, the devices and the config read back as they were.

use actix_web::http::{Method, StatusCode};
use serde_json::{json, Value};
use vigil::domain::DeviceKind;

use crate::helpers::{assert_error, Backend, TestCluster};

crate::on_both_backends!(out_of_range_config_is_refused_and_changes_nothing);

/// An id no row has.
const UNKNOWN: i64 = 999_999;
/// The longest name the API takes.
const MAX_NAME_CHARS: usize = 200;
/// The largest JSON body the API takes (but for the bulk create).
const MAX_JSON_BYTES: usize = 64 * 1024;
/// The largest JSON body the bulk create takes.
const MAX_BULK_JSON_BYTES: usize = 4 * 1024 * 1024;

/// One request and the error it must get.
struct Refusal {
    method: Method,
    path: String,
    content_type: Option<&'static str>,
    body: Vec<u8>,
    status: StatusCode,
    code: &'static str,
}

impl Refusal {
    /// A request with a JSON body, sent as `application/json`.
    fn json(method: Method, path: impl Into<String>, body: &Value, code: &'static str) -> Self {
        Refusal::raw(
            method,
            path,
            Some("application/json"),
            body.to_string(),
            StatusCode::BAD_REQUEST,
            code,
        )
    }

    /// A request without a body or a content type.
    fn bodiless(
        method: Method,
        path: impl Into<String>,
        status: StatusCode,
        code: &'static str,
    ) -> Self {
        Refusal::raw(method, path, None, Vec::new(), status, code)
    }

    fn raw(
        method: Method,
        path: impl Into<String>,
        content_type: Option<&'static str>,
        body: impl Into<Vec<u8>>,
        status: StatusCode,
        code: &'static str,
    ) -> Self {
        Refusal {
            method,
            path: path.into(),
            content_type,
            body: body.into(),
            status,
            code,
        }
    }

    fn status(self, status: StatusCode) -> Self {
        Refusal { status, ..self }
    }
}

/// What the API shows of the stored state: companies, devices (live monitoring reduced
/// to the server it runs on, since poll counters move on their own) and config.
async fn stored_state(cluster: &TestCluster) -> Value {
    let companies = cluster.get("/api/v1/companies").await;
    assert_eq!(companies.status, StatusCode::OK, "{companies:?}");
    let mut devices = cluster.get("/api/v1/devices?limit=1000").await;
    assert_eq!(devices.status, StatusCode::OK, "{devices:?}");
    for device in devices.body.as_array_mut().unwrap() {
        let server = device["monitoring"]["server_id"].clone();
        device["monitoring"] = server;
    }
    let config = cluster.get("/api/v1/config").await;
    assert_eq!(config.status, StatusCode::OK, "{config:?}");
    json!({ "companies": companies.body, "devices": devices.body, "config": config.body })
}

/// Sends every request, checks the error it gets, and checks that the stored state
/// did not move.
async fn refuse_all(cluster: &TestCluster, refusals: Vec<Refusal>) {
    let before = stored_state(cluster).await;
    for refusal in refusals {
        let Refusal {
            method,
            path,
            content_type,
            body,
            status,
            code,
        } = refusal;
        let answer = cluster
            .call_raw(method.clone(), &path, content_type, body)
            .await;
        assert_eq!(
            (answer.status, answer.body["code"].as_str()),
            (status, Some(code)),
            "{method} {path}: {answer:?}"
        );
        assert_error(&answer, status, code);
        assert_eq!(
            stored_state(cluster).await,
            before,
            "{method} {path} was refused but changed the stored state"
        );
    }
}

/// A device body for `POST /api/v1/devices` with one field replaced or added.
fn new_device(cluster: &TestCluster, company: i64, field: &str, value: Value) -> Value {
    let mut body = json!({
        "company_id": company,
        "name": "fresh",
        "address": cluster.fleet.url("/d/fresh"),
        "kind": "http",
    });
    body[field] = value;
    body
}

#[actix_rt::test]
async fn unknown_ids_are_404_not_found_on_every_route_that_takes_one() {
    let cluster = TestCluster::spawn(Backend::Sqlite, 1).await;
    let company = cluster.company("acme").await;
    cluster.device(company, "d").await;
    let renamed = json!({ "name": "renamed" });
    let refusals = vec![
        (Method::GET, format!("/api/v1/companies/{UNKNOWN}"), None),
        (Method::DELETE, format!("/api/v1/companies/{UNKNOWN}"), None),
        (
            Method::POST,
            format!("/api/v1/companies/{UNKNOWN}/start"),
            None,
        ),
        (
            Method::POST,
            format!("/api/v1/companies/{UNKNOWN}/stop"),
            None,
        ),
        (Method::GET, format!("/api/v1/devices/{UNKNOWN}"), None),
        (
            Method::PUT,
            format!("/api/v1/devices/{UNKNOWN}"),
            Some(&renamed),
        ),
        (Method::DELETE, format!("/api/v1/devices/{UNKNOWN}"), None),
        (
            Method::POST,
            format!("/api/v1/devices/{UNKNOWN}/start"),
            None,
        ),
        (
            Method::POST,
            format!("/api/v1/devices/{UNKNOWN}/stop"),
            None,
        ),
        (
            Method::GET,
            format!("/api/v1/monitor-servers/{UNKNOWN}"),
            None,
        ),
    ];
    for (method, path, body) in &refusals {
        let answer = cluster
            .call_url(method.clone(), &cluster.url(path), body.cloned())
            .await;
        assert_error(&answer, StatusCode::NOT_FOUND, "not_found");
        // The route exists and says which record is missing; it is not "no route".
        let sentence = answer.body["error"].as_str().unwrap();
        assert!(
            sentence.contains(&format!("{UNKNOWN} does not exist")),
            "{method} {path}: {answer:?}"
        );
    }
    let refusals = refusals
        .into_iter()
        .map(|(method, path, body)| match body {
            Some(body) => {
                Refusal::json(method, path, body, "not_found").status(StatusCode::NOT_FOUND)
            }
            None => Refusal::bodiless(method, path, StatusCode::NOT_FOUND, "not_found"),
        })
        .collect();
    refuse_all(&cluster, refusals).await;
}

#[actix_rt::test]
async fn a_path_id_that_is_not_an_integer_is_400_invalid_path() {
    let cluster = TestCluster::spawn(Backend::Sqlite, 1).await;
    let company = cluster.company("acme").await;
    cluster.device(company, "d").await;
    let bad = StatusCode::BAD_REQUEST;
    let refusals = vec![
        Refusal::bodiless(Method::GET, "/api/v1/devices/abc", bad, "invalid_path"),
        Refusal::bodiless(Method::DELETE, "/api/v1/devices/abc", bad, "invalid_path"),
        Refusal::bodiless(
            Method::POST,
            "/api/v1/devices/abc/start",
            bad,
            "invalid_path",
        ),
        Refusal::bodiless(
            Method::POST,
            "/api/v1/devices/1.5/stop",
            bad,
            "invalid_path",
        ),
        Refusal::json(
            Method::PUT,
            "/api/v1/devices/abc",
            &json!({ "name": "x" }),
            "invalid_path",
        ),
        Refusal::bodiless(Method::GET, "/api/v1/companies/abc", bad, "invalid_path"),
        Refusal::bodiless(Method::DELETE, "/api/v1/companies/-", bad, "invalid_path"),
        Refusal::bodiless(
            Method::POST,
            "/api/v1/companies/x/start",
            bad,
            "invalid_path",
        ),
        Refusal::bodiless(
            Method::POST,
            "/api/v1/companies/x/stop",
            bad,
            "invalid_path",
        ),
        Refusal::bodiless(
            Method::GET,
            "/api/v1/monitor-servers/abc",
            bad,
            "invalid_path",
        ),
        // Wider than an id can be.
        Refusal::bodiless(
            Method::GET,
            "/api/v1/devices/99999999999999999999",
            bad,
            "invalid_path",
        ),
        // Ids are positive.
        Refusal::bodiless(Method::GET, "/api/v1/devices/0", bad, "invalid_path"),
        Refusal::bodiless(Method::DELETE, "/api/v1/devices/-1", bad, "invalid_path"),
        Refusal::bodiless(Method::GET, "/api/v1/companies/-7", bad, "invalid_path"),
        Refusal::bodiless(Method::DELETE, "/api/v1/tokens/0", bad, "invalid_path"),
        Refusal::bodiless(
            Method::GET,
            "/api/v1/devices/-2/metrics/latest",
            bad,
            "invalid_path",
        ),
    ];
    refuse_all(&cluster, refusals).await;
}

#[actix_rt::test]
async fn deeply_nested_bodies_are_400_and_change_nothing() {
    let cluster = TestCluster::spawn(Backend::Sqlite, 1).await;
    let company = cluster.company("acme").await;
    let device = cluster.device(company, "d").await;
    let json_type = Some("application/json");
    let bad = StatusCode::BAD_REQUEST;
    // 20,000 levels (40 KB, under the size limit): refused at the first bracket where a
    // value is expected, never parsed down to the bottom.
    let deep = |field: &str| {
        format!(
            "{{\"{field}\": {}{}}}",
            "[".repeat(20_000),
            "]".repeat(20_000)
        )
    };
    // 100 levels: parsed, but not what any field holds.
    let nested = |field: &str| format!("{{\"{field}\": {}{}}}", "[".repeat(100), "]".repeat(100));
    let mut refusals = Vec::new();
    for (method, path, field) in [
        (Method::POST, "/api/v1/companies".to_string(), "name"),
        (Method::POST, "/api/v1/devices".to_string(), "address"),
        (Method::POST, "/api/v1/devices/bulk".to_string(), "devices"),
        (Method::PUT, format!("/api/v1/devices/{device}"), "name"),
        (
            Method::PUT,
            "/api/v1/config".to_string(),
            "poll_interval_ms",
        ),
        (Method::POST, "/api/v1/tokens".to_string(), "role"),
    ] {
        refusals.push(Refusal::raw(
            method.clone(),
            path.clone(),
            json_type,
            deep(field),
            bad,
            "invalid_body",
        ));
        refusals.push(Refusal::raw(
            method,
            path,
            json_type,
            nested(field),
            bad,
            "invalid_body",
        ));
    }
    refuse_all(&cluster, refusals).await;
}

#[actix_rt::test]
async fn malformed_json_is_400_malformed_json_and_ill_typed_json_is_400_invalid_body() {
    let cluster = TestCluster::spawn(Backend::Sqlite, 1).await;
    let company = cluster.company("acme").await;
    let device = cluster.device(company, "d").await;
    let json_type = Some("application/json");
    let bad = StatusCode::BAD_REQUEST;
    let malformed = |method: Method, path: &str, body: &'static str| {
        Refusal::raw(method, path, json_type, body, bad, "malformed_json")
    };
    let device_path = format!("/api/v1/devices/{device}");
    let mut refusals = vec![
        malformed(Method::POST, "/api/v1/companies", r#"{"name": "#),
        malformed(Method::POST, "/api/v1/companies", r#"{name: "x"}"#),
        malformed(Method::POST, "/api/v1/companies", r#"{"name": "x",}"#),
        malformed(Method::POST, "/api/v1/companies", ""),
        malformed(Method::POST, "/api/v1/devices", "not json at all"),
        malformed(Method::POST, "/api/v1/devices/bulk", r#"{"devices": ["#),
        malformed(Method::PUT, &device_path, r#"{"name": "x""#),
        malformed(Method::PUT, "/api/v1/config", "{"),
    ];
    let ill_typed = [
        ("/api/v1/companies", json!({ "name": 5 })),
        ("/api/v1/companies", json!({ "name": null })),
        ("/api/v1/companies", json!({})),
        ("/api/v1/companies", json!([])),
        ("/api/v1/companies", json!("acme")),
        (
            "/api/v1/devices",
            new_device(&cluster, company, "company_id", json!(company.to_string())),
        ),
        (
            "/api/v1/devices",
            new_device(&cluster, company, "company_id", json!(1.5)),
        ),
        (
            "/api/v1/devices",
            new_device(&cluster, company, "enabled", json!("yes")),
        ),
        (
            "/api/v1/devices",
            new_device(&cluster, company, "kind", json!(1)),
        ),
        (
            "/api/v1/devices",
            json!({ "company_id": company, "name": "fresh", "kind": "http" }),
        ),
        ("/api/v1/devices/bulk", json!({ "devices": "fresh" })),
        ("/api/v1/devices/bulk", json!({ "devices": [5] })),
        (
            "/api/v1/devices/bulk",
            json!({ "devices": [new_device(&cluster, company, "enabled", json!("yes"))] }),
        ),
        ("/api/v1/devices/bulk", json!([])),
    ];
    refusals.extend(
        ill_typed
            .iter()
            .map(|(path, body)| Refusal::json(Method::POST, *path, body, "invalid_body")),
    );
    refusals.extend([
        Refusal::json(
            Method::PUT,
            &device_path,
            &json!({ "enabled": "yes" }),
            "invalid_body",
        ),
        Refusal::json(
            Method::PUT,
            &device_path,
            &json!({ "name": ["x"] }),
            "invalid_body",
        ),
        Refusal::json(
            Method::PUT,
            "/api/v1/config",
            &json!({ "alert_threshold": "70" }),
            "invalid_body",
        ),
        Refusal::json(
            Method::PUT,
            "/api/v1/config",
            &json!({ "poll_interval_ms": 1.5 }),
            "invalid_body",
        ),
        Refusal::json(
            Method::PUT,
            "/api/v1/config",
            &json!({ "balance_method": 1 }),
            "invalid_body",
        ),
    ]);
    refuse_all(&cluster, refusals).await;
}

#[actix_rt::test]
async fn unknown_fields_are_refused_rather_than_ignored() {
    let cluster = TestCluster::spawn(Backend::Sqlite, 2).await;
    let company = cluster.company("acme").await;
    let device = cluster.device(company, "d").await;
    let device_path = format!("/api/v1/devices/{device}");
    let refusals = vec![
        // Ownership and placement are the scheduler's, never the client's.
        Refusal::json(
            Method::POST,
            "/api/v1/devices",
            &new_device(&cluster, company, "epoch", json!(1)),
            "invalid_body",
        ),
        Refusal::json(
            Method::POST,
            "/api/v1/devices",
            &new_device(&cluster, company, "server_id", json!(cluster.servers[1].id)),
            "invalid_body",
        ),
        Refusal::json(
            Method::POST,
            "/api/v1/devices",
            &new_device(&cluster, company, "id", json!(7)),
            "invalid_body",
        ),
        Refusal::json(
            Method::POST,
            "/api/v1/companies",
            &json!({ "name": "x", "id": 7 }),
            "invalid_body",
        ),
        // In a bulk create, at the top and in every device.
        Refusal::json(
            Method::POST,
            "/api/v1/devices/bulk",
            &json!({ "devices": [new_device(&cluster, company, "name", json!("fresh"))], "atomic": false }),
            "invalid_body",
        ),
        Refusal::json(
            Method::POST,
            "/api/v1/devices/bulk",
            &json!({ "devices": [
                new_device(&cluster, company, "name", json!("fresh")),
                new_device(&cluster, company, "epoch", json!(1)),
            ] }),
            "invalid_body",
        ),
        Refusal::json(
            Method::PUT,
            &device_path,
            &json!({ "company_id": company }),
            "invalid_body",
        ),
        Refusal::json(
            Method::PUT,
            &device_path,
            &json!({ "name": "x", "server_id": 1 }),
            "invalid_body",
        ),
        Refusal::json(
            Method::PUT,
            "/api/v1/config",
            &json!({ "monitor_server_current": 1 }),
            "invalid_body",
        ),
        // A change that names nothing to change is refused, like an empty config change.
        Refusal::json(Method::PUT, &device_path, &json!({}), "invalid_body"),
        Refusal::json(
            Method::PUT,
            &device_path,
            &json!({ "name": null }),
            "invalid_body",
        ),
        Refusal::json(
            Method::PUT,
            "/api/v1/config",
            &json!({ "poll_interval_ms": 250, "poll_intervall_ms": 250 }),
            "invalid_body",
        ),
    ];
    refuse_all(&cluster, refusals).await;
}

/// (The bulk create takes up to 4 MiB, and answers 413 above that.)
#[actix_rt::test]
async fn bodies_not_sent_as_json_are_415_and_bodies_over_64_kib_are_413() {
    let cluster = TestCluster::spawn(Backend::Sqlite, 1).await;
    let company = cluster.company("acme").await;
    let device = cluster.device(company, "d").await;
    let unsupported = StatusCode::UNSUPPORTED_MEDIA_TYPE;
    let too_large = StatusCode::PAYLOAD_TOO_LARGE;
    let company_body = json!({ "name": "fresh" }).to_string();
    let device_body = new_device(&cluster, company, "name", json!("fresh")).to_string();
    let huge_name = json!({ "name": "x".repeat(MAX_JSON_BYTES + 1) }).to_string();
    let huge_config = json!({ "balance_method": "x".repeat(MAX_JSON_BYTES + 1) }).to_string();
    let bulk_body = json!({ "devices": [new_device(&cluster, company, "name", json!("fresh"))] });
    let huge_bulk = json!({ "devices": [new_device(
        &cluster,
        company,
        "name",
        json!("x".repeat(MAX_BULK_JSON_BYTES + 1)),
    )] })
    .to_string();
    let device_path = format!("/api/v1/devices/{device}");
    let refusals = vec![
        Refusal::raw(
            Method::POST,
            "/api/v1/companies",
            None,
            company_body.clone(),
            unsupported,
            "unsupported_media_type",
        ),
        Refusal::raw(
            Method::POST,
            "/api/v1/companies",
            Some("text/plain"),
            company_body.clone(),
            unsupported,
            "unsupported_media_type",
        ),
        Refusal::raw(
            Method::POST,
            "/api/v1/companies",
            Some("application/x-www-form-urlencoded"),
            "name=fresh",
            unsupported,
            "unsupported_media_type",
        ),
        Refusal::raw(
            Method::POST,
            "/api/v1/devices",
            Some("text/plain"),
            device_body,
            unsupported,
            "unsupported_media_type",
        ),
        Refusal::raw(
            Method::POST,
            "/api/v1/devices/bulk",
            Some("text/plain"),
            bulk_body.to_string(),
            unsupported,
            "unsupported_media_type",
        ),
        Refusal::raw(
            Method::PUT,
            &device_path,
            None,
            r#"{"name": "fresh"}"#,
            unsupported,
            "unsupported_media_type",
        ),
        Refusal::raw(
            Method::PUT,
            "/api/v1/config",
            Some("text/plain"),
            r#"{"poll_interval_ms": 250}"#,
            unsupported,
            "unsupported_media_type",
        ),
        Refusal::raw(
            Method::POST,
            "/api/v1/companies",
            Some("application/json"),
            huge_name.clone(),
            too_large,
            "payload_too_large",
        ),
        Refusal::raw(
            Method::PUT,
            &device_path,
            Some("application/json"),
            huge_name,
            too_large,
            "payload_too_large",
        ),
        Refusal::raw(
            Method::PUT,
            "/api/v1/config",
            Some("application/json"),
            huge_config,
            too_large,
            "payload_too_large",
        ),
        Refusal::raw(
            Method::POST,
            "/api/v1/devices/bulk",
            Some("application/json"),
            huge_bulk,
            too_large,
            "payload_too_large",
        ),
    ];
    refuse_all(&cluster, refusals).await;
    // The same body with the right content type is taken: the 415s were about the type.
    let taken = cluster
        .call_raw(
            Method::POST,
            "/api/v1/companies",
            Some("application/json"),
            company_body.into_bytes(),
        )
        .await;
    assert_eq!(taken.status, StatusCode::CREATED, "{taken:?}");
}

#[actix_rt::test]
async fn unknown_routes_are_404_and_wrong_methods_are_405_in_json() {
    let cluster = TestCluster::spawn(Backend::Sqlite, 1).await;
    let company = cluster.company("acme").await;
    let device = cluster.device(company, "d").await;
    let not_found = StatusCode::NOT_FOUND;
    let not_allowed = StatusCode::METHOD_NOT_ALLOWED;
    let refusals = vec![
        Refusal::bodiless(Method::GET, "/api/v1/nothing-here", not_found, "not_found"),
        Refusal::bodiless(Method::GET, "/api/v2/devices", not_found, "not_found"),
        Refusal::bodiless(Method::GET, "/nothing-here", not_found, "not_found"),
        Refusal::bodiless(
            Method::POST,
            format!("/api/v1/devices/{device}/restart"),
            not_found,
            "not_found",
        ),
        Refusal::json(
            Method::PATCH,
            "/api/v1/devices",
            &json!({ "name": "x" }),
            "method_not_allowed",
        )
        .status(not_allowed),
        Refusal::bodiless(
            Method::DELETE,
            "/api/v1/devices",
            not_allowed,
            "method_not_allowed",
        ),
        Refusal::bodiless(
            Method::DELETE,
            "/api/v1/companies",
            not_allowed,
            "method_not_allowed",
        ),
        // `bulk` is a path of its own, not a device id.
        Refusal::bodiless(
            Method::GET,
            "/api/v1/devices/bulk",
            not_allowed,
            "method_not_allowed",
        ),
        Refusal::json(
            Method::PUT,
            "/api/v1/devices/bulk",
            &json!({ "name": "x" }),
            "method_not_allowed",
        )
        .status(not_allowed),
        Refusal::json(
            Method::PUT,
            format!("/api/v1/companies/{company}"),
            &json!({ "name": "x" }),
            "method_not_allowed",
        )
        .status(not_allowed),
        Refusal::json(
            Method::PATCH,
            format!("/api/v1/devices/{device}"),
            &json!({ "name": "x" }),
            "method_not_allowed",
        )
        .status(not_allowed),
        Refusal::bodiless(
            Method::GET,
            format!("/api/v1/devices/{device}/start"),
            not_allowed,
            "method_not_allowed",
        ),
        Refusal::bodiless(
            Method::DELETE,
            "/api/v1/config",
            not_allowed,
            "method_not_allowed",
        ),
        Refusal::json(
            Method::POST,
            "/api/v1/config",
            &json!({ "poll_interval_ms": 250 }),
            "method_not_allowed",
        )
        .status(not_allowed),
        Refusal::bodiless(
            Method::DELETE,
            "/api/v1/monitor-servers",
            not_allowed,
            "method_not_allowed",
        ),
    ];
    refuse_all(&cluster, refusals).await;
}

#[actix_rt::test]
async fn devices_with_an_unknown_kind_a_bad_address_or_no_such_company_are_refused() {
    let cluster = TestCluster::spawn(Backend::Sqlite, 1).await;
    let company = cluster.company("acme").await;
    cluster.device(company, "d").await;
    let post = |body: Value, code| Refusal::json(Method::POST, "/api/v1/devices", &body, code);
    let refusals = vec![
        post(
            new_device(&cluster, company, "kind", json!("snmp")),
            "invalid_kind",
        ),
        post(
            new_device(&cluster, company, "kind", json!("")),
            "invalid_kind",
        ),
        post(
            new_device(&cluster, company, "address", json!("ftp://example.com/")),
            "invalid_address",
        ),
        post(
            new_device(&cluster, company, "address", json!("example.com")),
            "invalid_address",
        ),
        post(
            new_device(&cluster, company, "address", json!("/d/x")),
            "invalid_address",
        ),
        post(
            new_device(&cluster, company, "address", json!("")),
            "invalid_address",
        ),
        post(
            new_device(&cluster, company, "address", json!("http://")),
            "invalid_address",
        ),
        post(
            new_device(
                &cluster,
                company,
                "address",
                json!(format!("http://example.com/{}", "x".repeat(2048))),
            ),
            "invalid_address",
        ),
        post(
            new_device(&cluster, UNKNOWN, "name", json!("fresh")),
            "company_not_found",
        )
        .status(StatusCode::UNPROCESSABLE_ENTITY),
    ];
    refuse_all(&cluster, refusals).await;
    // The same body with a real company is taken.
    let taken = cluster
        .post(
            "/api/v1/devices",
            new_device(&cluster, company, "name", json!("fresh")),
        )
        .await;
    assert_eq!(taken.status, StatusCode::CREATED, "{taken:?}");
}

#[actix_rt::test]
async fn duplicate_names_are_409_and_leave_the_first_alone() {
    let cluster = TestCluster::spawn(Backend::Sqlite, 1).await;
    let company = cluster.company("acme").await;
    let other = cluster.company("other").await;
    cluster.device(company, "d").await;
    let second = cluster.device(company, "e").await;
    let conflict = StatusCode::CONFLICT;
    let refusals = vec![
        Refusal::json(
            Method::POST,
            "/api/v1/companies",
            &json!({ "name": "acme" }),
            "company_exists",
        )
        .status(conflict),
        // Names are stored trimmed, so blanks around one do not make it new.
        Refusal::json(
            Method::POST,
            "/api/v1/companies",
            &json!({ "name": "  acme " }),
            "company_exists",
        )
        .status(conflict),
        Refusal::json(
            Method::POST,
            "/api/v1/devices",
            &new_device(&cluster, company, "name", json!("d")),
            "device_exists",
        )
        .status(conflict),
        Refusal::json(
            Method::POST,
            "/api/v1/devices",
            &new_device(&cluster, company, "name", json!(" d ")),
            "device_exists",
        )
        .status(conflict),
        Refusal::json(
            Method::PUT,
            format!("/api/v1/devices/{second}"),
            &json!({ "name": "d" }),
            "device_exists",
        )
        .status(conflict),
    ];
    refuse_all(&cluster, refusals).await;
    // A device name is unique within its company only.
    let elsewhere = cluster
        .post(
            "/api/v1/devices",
            new_device(&cluster, other, "name", json!("d")),
        )
        .await;
    assert_eq!(elsewhere.status, StatusCode::CREATED, "{elsewhere:?}");
}

#[actix_rt::test]
async fn empty_blank_and_overlong_names_are_400_invalid_name() {
    let cluster = TestCluster::spawn(Backend::Sqlite, 1).await;
    let company = cluster.company("acme").await;
    let device = cluster.device(company, "d").await;
    let too_long = "x".repeat(MAX_NAME_CHARS + 1);
    let bad_names = [
        json!(""),
        json!("   "),
        json!("\t\n"),
        json!(too_long),
        json!("a\u{0}b"),
    ];
    let mut refusals = Vec::new();
    for name in &bad_names {
        refusals.push(Refusal::json(
            Method::POST,
            "/api/v1/companies",
            &json!({ "name": name }),
            "invalid_name",
        ));
        refusals.push(Refusal::json(
            Method::POST,
            "/api/v1/devices",
            &new_device(&cluster, company, "name", name.clone()),
            "invalid_name",
        ));
        refusals.push(Refusal::json(
            Method::PUT,
            format!("/api/v1/devices/{device}"),
            &json!({ "name": name }),
            "invalid_name",
        ));
    }
    refuse_all(&cluster, refusals).await;
    // The longest allowed name is taken.
    let longest = "x".repeat(MAX_NAME_CHARS);
    let taken = cluster
        .post("/api/v1/companies", json!({ "name": longest }))
        .await;
    assert_eq!(taken.status, StatusCode::CREATED, "{taken:?}");
    assert_eq!(taken.body["name"], longest.as_str());
}

#[actix_rt::test]
async fn out_of_range_device_list_queries_are_400_invalid_query() {
    let cluster = TestCluster::spawn(Backend::Sqlite, 1).await;
    let company = cluster.company("acme").await;
    cluster.fleet_devices(company, 2, DeviceKind::Agent).await;
    for query in [
        "limit=0",
        "limit=5000",
        "limit=1001",
        "limit=-1",
        "offset=-1",
        "limit=abc",
        "company_id=x",
        "colour=red",
        "limit=10&sort=name",
    ] {
        let answer = cluster.get(&format!("/api/v1/devices?{query}")).await;
        assert_eq!(
            answer.status,
            StatusCode::BAD_REQUEST,
            "?{query}: {answer:?}"
        );
        assert_error(&answer, StatusCode::BAD_REQUEST, "invalid_query");
    }
    // The bounds themselves are allowed.
    for (query, count) in [
        ("limit=1", 1),
        ("limit=1000", 2),
        ("offset=0", 2),
        ("offset=2", 0),
    ] {
        let answer = cluster.get(&format!("/api/v1/devices?{query}")).await;
        assert_eq!(answer.status, StatusCode::OK, "?{query}: {answer:?}");
        assert_eq!(answer.body.as_array().unwrap().len(), count, "?{query}");
    }
}

#[actix_rt::test]
async fn a_device_change_with_a_bad_address_keeps_the_stored_address_and_the_monitor() {
    let cluster = TestCluster::spawn(Backend::Sqlite, 1).await;
    let company = cluster.company("acme").await;
    let device = cluster.device(company, "d").await;
    let started = cluster.start_device(device).await;
    assert_eq!(started.status, StatusCode::OK, "{started:?}");
    let before = cluster.get(&format!("/api/v1/devices/{device}")).await;
    let path = format!("/api/v1/devices/{device}");
    let refusals = vec![
        Refusal::json(
            Method::PUT,
            &path,
            &json!({ "address": "ftp://example.com/" }),
            "invalid_address",
        ),
        Refusal::json(
            Method::PUT,
            &path,
            &json!({ "address": "not a url" }),
            "invalid_address",
        ),
        Refusal::json(
            Method::PUT,
            &path,
            &json!({ "address": "" }),
            "invalid_address",
        ),
        // A valid field beside a bad one is not saved either.
        Refusal::json(
            Method::PUT,
            &path,
            &json!({ "name": "renamed", "address": "example.com" }),
            "invalid_address",
        ),
        Refusal::json(
            Method::PUT,
            &path,
            &json!({ "name": "renamed", "kind": "snmp" }),
            "invalid_kind",
        ),
    ];
    refuse_all(&cluster, refusals).await;

    let after = cluster.get(&format!("/api/v1/devices/{device}")).await;
    for field in ["name", "address", "kind", "enabled", "updated_at"] {
        assert_eq!(after.body[field], before.body[field], "{field}");
    }
    assert_eq!(after.body["address"], cluster.fleet.url("/d/d").as_str());
    // The running monitor was not handed the refused change.
    let monitor = cluster
        .server_call(0, Method::GET, &format!("/monitors/{device}"), None)
        .await;
    assert_eq!(monitor.status, StatusCode::OK, "{monitor:?}");
    assert_eq!(
        monitor.body["device"]["address"],
        cluster.fleet.url("/d/d").as_str()
    );
    assert_eq!(monitor.body["device"]["name"], "d");
}

/// Each body is refused with `invalid_config`.
fn out_of_range_configs() -> Vec<Value> {
    vec![
        json!({ "alert_threshold": -1 }),
        json!({ "alert_threshold": 101 }),
        json!({ "critical_threshold": -1 }),
        json!({ "critical_threshold": 101 }),
        json!({ "alert_threshold": 90 }),
        json!({ "alert_threshold": 95 }),
        json!({ "critical_threshold": 70 }),
        json!({ "alert_threshold": 80, "critical_threshold": 80 }),
        json!({ "alert_threshold": 99_999_999_999_i64 }),
        json!({ "critical_threshold": -99_999_999_999_i64 }),
        json!({ "poll_interval_ms": 0 }),
        json!({ "poll_interval_ms": -100 }),
        json!({ "poll_interval_ms": 99_999_999_999_i64 }),
        json!({ "timeout_ms": 0 }),
        json!({ "timeout_ms": -1 }),
        json!({ "max_monitors_per_server": 0 }),
        json!({ "max_monitors_per_server": -1 }),
        json!({ "max_monitors_per_server": 99_999_999_999_i64 }),
        json!({ "balance_method": "random" }),
        json!({ "balance_method": "" }),
        json!({}),
        // One bad field refuses the whole change: the good one is not saved.
        json!({ "poll_interval_ms": 250, "alert_threshold": 101 }),
        json!({ "timeout_ms": 500, "balance_method": "random" }),
    ]
}

async fn out_of_range_config_is_refused_and_changes_nothing(backend: Backend) {
    let cluster = TestCluster::spawn(backend, 2).await;
    let company = cluster.company("acme").await;
    let device = cluster.device(company, "d").await;
    let started = cluster.start_device(device).await;
    assert_eq!(started.status, StatusCode::OK, "{started:?}");
    let holder = cluster
        .servers
        .iter()
        .position(|s| Some(s.id) == started.body["results"][0]["server_id"].as_i64())
        .unwrap();
    let monitor_config = || async {
        let monitor = cluster
            .server_call(holder, Method::GET, &format!("/monitors/{device}"), None)
            .await;
        assert_eq!(monitor.status, StatusCode::OK, "{monitor:?}");
        monitor.body["config"].clone()
    };
    let config_before = cluster.get("/api/v1/config").await;
    let monitor_before = monitor_config().await;

    let refusals = out_of_range_configs()
        .iter()
        .map(|body| Refusal::json(Method::PUT, "/api/v1/config", body, "invalid_config"))
        .collect();
    refuse_all(&cluster, refusals).await;

    let config_after = cluster.get("/api/v1/config").await;
    assert_eq!(config_after.body, config_before.body);
    for (field, value) in [
        (
            "poll_interval_ms",
            json!(crate::helpers::TEST_POLL_INTERVAL_MS),
        ),
        ("timeout_ms", json!(1_000)),
        ("alert_threshold", json!(70)),
        ("critical_threshold", json!(90)),
        ("balance_method", json!("round_robin")),
    ] {
        assert_eq!(config_after.body[field], value, "{field}");
    }
    assert_eq!(
        monitor_config().await,
        monitor_before,
        "a refused config reached a monitor"
    );
    for index in 0..2 {
        let info = cluster.server_call(index, Method::GET, "/info", None).await;
        assert_eq!(
            info.body["max_monitors"],
            config_before.body["max_monitors_per_server"]
        );
    }

    // A valid change right after is taken and reaches the monitor.
    let taken = cluster
        .put(
            "/api/v1/config",
            json!({ "alert_threshold": 60, "critical_threshold": 80 }),
        )
        .await;
    assert_eq!(taken.status, StatusCode::OK, "{taken:?}");
    assert_eq!(monitor_config().await["alert_threshold"], 60);
}
