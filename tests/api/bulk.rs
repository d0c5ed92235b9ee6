//! `POST /api/v1/devices/bulk`: up to 10,000 devices in one call and one transaction,
//! all of them or none. Refused devices are listed by index and code, and nothing
//! stored changes; roles and tenants hold as for a single create.

use std::collections::BTreeSet;
use std::io::Write;
use std::time::Instant;

use actix_web::http::{Method, StatusCode};
use serde_json::{json, Value};
use vigil::auth::{Grant, Role};
use vigil::db::{self, DbConn};
use vigil::domain::DeviceKind;

use crate::helpers::{
    assert_error, call, client_with, eventually, issue_token, postgres_url, Answer, Backend,
    TestCluster, TestFleet,
};

crate::on_both_backends!(
    ten_thousand_devices_are_created_in_one_call_and_listed_with_their_company,
    one_bad_device_among_many_refuses_them_all_with_its_index_and_code,
);

const BULK: &str = "/api/v1/devices/bulk";
/// Most devices one call creates.
const MAX_DEVICES: usize = 10_000;
/// The largest body the bulk route takes.
const MAX_BULK_BYTES: usize = 4 * 1024 * 1024;
/// The largest body every other route takes.
const MAX_JSON_BYTES: usize = 64 * 1024;
/// Refused devices one answer lists at most.
const MAX_LISTED_ERRORS: usize = 100;
/// A company id no row has.
const UNKNOWN_COMPANY: i64 = 999_999;

/// An `http` device of `company` polling the fleet's `/d/{name}`.
fn item(cluster: &TestCluster, company: i64, name: &str) -> Value {
    json!({
        "company_id": company,
        "name": name,
        "address": cluster.fleet.url(&format!("/d/{name}")),
        "kind": "http",
    })
}

/// `count` agent devices of `company` named `fleet-00000` on: the device list of a
/// simulated fleet of that many, as `vigil fleet` serves it for the bulk API.
async fn fleet_items(company: i64, count: usize) -> Vec<Value> {
    TestFleet::calm(count)
        .device_list(company, DeviceKind::Agent, 0..count)
        .await
}

/// `device` moved to `company`.
fn in_company(device: &Value, company: i64) -> Value {
    let mut device = device.clone();
    device["company_id"] = company.into();
    device
}

/// How many devices are stored, read straight from the database.
async fn stored_devices(cluster: &TestCluster) -> i64 {
    cluster.db.run(db::devices::count).await.unwrap()
}

/// Every device of `company`, through the API a page at a time.
async fn listed(cluster: &TestCluster, company: i64) -> Vec<Value> {
    let mut all = Vec::new();
    loop {
        let page = cluster
            .get(&format!(
                "/api/v1/devices?company_id={company}&limit=1000&offset={}",
                all.len()
            ))
            .await;
        assert_eq!(page.status, StatusCode::OK, "{page:?}");
        let page = page.body.as_array().unwrap().clone();
        if page.is_empty() {
            return all;
        }
        all.extend(page);
    }
}

/// A 422 `invalid_devices`: the JSON error body with its list, each entry a one-line
/// sentence; answers `(index, code)` of every listed device.
#[track_caller]
fn refused(answer: &Answer) -> Vec<(u64, String)> {
    assert_eq!(
        answer.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{answer:?}"
    );
    let body = answer.body.as_object().unwrap();
    let keys: BTreeSet<&str> = body.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        BTreeSet::from(["code", "error", "errors"]),
        "{answer:?}"
    );
    assert_eq!(body["code"], "invalid_devices", "{answer:?}");
    body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let keys: BTreeSet<&str> = e.as_object().unwrap().keys().map(String::as_str).collect();
            assert_eq!(keys, BTreeSet::from(["code", "error", "index"]), "{e}");
            let sentence = e["error"].as_str().unwrap();
            assert!(!sentence.is_empty() && !sentence.contains('\n'), "{e}");
            (
                e["index"].as_u64().unwrap(),
                e["code"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// A client whose token has `role` in `company`.
async fn client_of(cluster: &TestCluster, role: Role, company: i64) -> awc::Client {
    let grant = Grant::new(role, Some(company)).unwrap();
    client_with(&issue_token(&cluster.db, &format!("{role} of {company}"), grant).await)
}

/// One write straight to stderr: libtest swallows `eprintln!` of passing tests.
fn report(line: String) {
    let _ = std::io::stderr().write_all(format!("{line}\n").as_bytes());
}

async fn ten_thousand_devices_are_created_in_one_call_and_listed_with_their_company(
    backend: Backend,
) {
    let cluster = TestCluster::spawn(backend, 0).await;
    let acme = cluster.company("acme").await;
    // Every kind, with and without the optional fields.
    let devices: Vec<Value> = (0..MAX_DEVICES)
        .map(|n| {
            let name = format!("dev-{n:05}");
            let mut device = match n % 4 {
                0 => json!({"name": name, "kind": "http",
                            "address": cluster.fleet.url(&format!("/d/{name}"))}),
                1 => json!({"name": name, "kind": "tcp", "address": format!("127.0.0.1:{}", 1024 + n)}),
                2 => json!({"name": name, "kind": "prometheus",
                            "address": format!("http://10.0.{}.{}:9100/metrics", n / 256, n % 256)}),
                _ => json!({"name": name, "kind": "agent",
                            "address": format!("http://10.1.{}.{}:9109/", n / 256, n % 256)}),
            };
            device["company_id"] = acme.into();
            if n % 8 == 0 {
                device["expected_status"] = 204.into();
            }
            if n % 10 == 0 {
                device["enabled"] = false.into();
            }
            device
        })
        .collect();
    let body = json!({ "devices": devices });
    let size = body.to_string().len();
    assert!(
        (MAX_JSON_BYTES..MAX_BULK_BYTES).contains(&size),
        "{size} bytes"
    );

    let started = Instant::now();
    let answer = cluster.post(BULK, body).await;
    let took = started.elapsed();
    report(format!(
        "bulk create of {MAX_DEVICES} devices on {backend:?}: {} ms ({size} bytes in, answered {})",
        took.as_millis(),
        answer.status
    ));
    assert_eq!(answer.status, StatusCode::CREATED, "{:?}", answer.status);
    assert_eq!(answer.body["created"], MAX_DEVICES);
    let created = answer.body["devices"].as_array().unwrap();
    assert_eq!(created.len(), MAX_DEVICES);
    // In the order of the request, each as a single create answers it.
    for (n, (device, asked)) in created.iter().zip(&devices).enumerate() {
        assert_eq!(device["name"], asked["name"], "{n}");
        assert_eq!(device["address"], asked["address"], "{n}");
        assert_eq!(device["kind"], asked["kind"], "{n}");
        assert_eq!(device["company_id"], acme, "{n}");
        assert_eq!(device["enabled"], n % 10 != 0, "{n}");
        let status = if n % 8 == 0 { json!(204) } else { Value::Null };
        assert_eq!(device["expected_status"], status, "{n}");
        assert_eq!(device["monitoring"], Value::Null, "{n}");
        assert_eq!(device["monitoring_wanted"], false, "{n}");
        assert!(device["id"].as_i64().unwrap() > 0, "{n}");
    }
    let ids: BTreeSet<i64> = created.iter().map(|d| d["id"].as_i64().unwrap()).collect();
    assert_eq!(ids.len(), MAX_DEVICES);

    let all = listed(&cluster, acme).await;
    assert_eq!(all.len(), MAX_DEVICES);
    assert!(all.iter().all(|d| d["company_id"] == acme));
    let listed_ids: BTreeSet<i64> = all.iter().map(|d| d["id"].as_i64().unwrap()).collect();
    assert_eq!(listed_ids, ids);
    let one = cluster
        .get(&format!("/api/v1/devices/{}", created[4321]["id"]))
        .await;
    assert_eq!(one.body["name"], "dev-04321", "{one:?}");
    assert_eq!(stored_devices(&cluster).await, MAX_DEVICES as i64);
}

async fn one_bad_device_among_many_refuses_them_all_with_its_index_and_code(backend: Backend) {
    let cluster = TestCluster::spawn(backend, 0).await;
    let acme = cluster.company("acme").await;
    let other = cluster.company("other").await;
    cluster.device(acme, "taken").await;
    let good = fleet_items(acme, 1000).await;
    // Each way a device is refused, at an index of its own.
    let bad: Vec<(usize, Value, &str)> = vec![
        (
            17,
            json!({"company_id": acme, "name": "x", "address": "ftp://example.com/", "kind": "http"}),
            "invalid_address",
        ),
        (
            123,
            json!({"company_id": acme, "name": "y", "address": "http://example.com/", "kind": "snmp"}),
            "invalid_kind",
        ),
        // Device 399 again.
        (400, good[399].clone(), "duplicate_in_request"),
        // A name stored already; names are compared trimmed, as stored.
        (512, item(&cluster, acme, " taken "), "device_exists"),
        (
            777,
            in_company(&good[777], UNKNOWN_COMPANY),
            "company_not_found",
        ),
    ];
    let before = stored_devices(&cluster).await;

    // Alone among good ones, each refuses the whole call.
    for (index, device, code) in &bad {
        let mut devices = good.clone();
        devices[*index] = device.clone();
        let answer = cluster.post(BULK, json!({ "devices": devices })).await;
        assert_eq!(
            refused(&answer),
            vec![(*index as u64, code.to_string())],
            "{answer:?}"
        );
        assert_eq!(
            answer.body["error"],
            "1 of 1000 devices is not valid; nothing was created"
        );
        assert_eq!(stored_devices(&cluster).await, before);
    }

    // All at once: every one is listed, in index order.
    let mut devices = good.clone();
    for (index, device, _) in &bad {
        devices[*index] = device.clone();
    }
    // The same name in another company is no duplicate.
    devices[900] = in_company(&good[899], other);
    let answer = cluster.post(BULK, json!({ "devices": devices })).await;
    let expected: Vec<(u64, String)> = bad
        .iter()
        .map(|(index, _, code)| (*index as u64, code.to_string()))
        .collect();
    assert_eq!(refused(&answer), expected, "{answer:?}");
    assert_eq!(
        answer.body["error"],
        "5 of 1000 devices are not valid; nothing was created"
    );
    // The duplicate says which device it repeats.
    let repeated = answer.body["errors"][2]["error"].as_str().unwrap();
    assert!(repeated.contains("device 399"), "{repeated}");
    assert_eq!(stored_devices(&cluster).await, before);
    assert_eq!(listed(&cluster, other).await, Vec::<Value>::new());

    // Without the bad ones, the same call is taken.
    let mut devices = good;
    devices[900] = in_company(&devices[899], other);
    let answer = cluster.post(BULK, json!({ "devices": devices })).await;
    assert_eq!(answer.status, StatusCode::CREATED, "{:?}", answer.status);
    assert_eq!(answer.body["created"], 1000);
    assert_eq!(answer.body["devices"][900]["company_id"], other);
    assert_eq!(stored_devices(&cluster).await, before + 1000);
}

#[actix_rt::test]
async fn more_refused_devices_than_an_answer_lists_are_counted_in_its_sentence() {
    let cluster = TestCluster::spawn(Backend::Sqlite, 0).await;
    let acme = cluster.company("acme").await;
    let mut devices = fleet_items(acme, MAX_DEVICES).await;
    for device in devices.iter_mut().skip(1) {
        device["kind"] = "snmp".into();
    }
    let answer = cluster.post(BULK, json!({ "devices": devices })).await;
    let listed = refused(&answer);
    assert_eq!(listed.len(), MAX_LISTED_ERRORS);
    assert_eq!(listed[0], (1, "invalid_kind".to_string()));
    assert_eq!(listed[MAX_LISTED_ERRORS - 1].0, MAX_LISTED_ERRORS as u64);
    assert_eq!(
        answer.body["error"],
        "9999 of 10000 devices are not valid; nothing was created; the first 100 are listed"
    );
    assert_eq!(stored_devices(&cluster).await, 0);
}

#[actix_rt::test]
async fn bodies_the_bulk_route_does_not_take_are_refused_in_json_and_create_nothing() {
    let cluster = TestCluster::spawn(Backend::Sqlite, 0).await;
    let acme = cluster.company("acme").await;
    let json_type = Some("application/json");
    let one = item(&cluster, acme, "one");
    let mut stranger = one.clone();
    stranger["server_id"] = 1.into();
    // A large body that parses: too large for every other route, not for this one.
    let long_name = json!({ "devices": [item(&cluster, acme, &"x".repeat(MAX_JSON_BYTES))] });
    // Nested far deeper than any parser should follow, in 2 MB: refused at once.
    let deep = |at: &str| {
        format!(
            "{{\"devices\": {at}{}{}{}}}",
            "[".repeat(1_000_000),
            "]".repeat(1_000_000),
            if at.is_empty() { "" } else { "}]" }
        )
    };
    let over = json!({ "devices": [item(&cluster, acme, &"x".repeat(MAX_BULK_BYTES))] });
    let cases: Vec<(String, StatusCode, &str)> = vec![
        (
            json!({ "devices": [] }).to_string(),
            StatusCode::BAD_REQUEST,
            "invalid_body",
        ),
        (
            json!({ "devices": fleet_items(acme, MAX_DEVICES + 1).await }).to_string(),
            StatusCode::BAD_REQUEST,
            "invalid_body",
        ),
        (
            json!({ "devices": [one], "dry_run": true }).to_string(),
            StatusCode::BAD_REQUEST,
            "invalid_body",
        ),
        (
            json!({ "devices": [one, stranger] }).to_string(),
            StatusCode::BAD_REQUEST,
            "invalid_body",
        ),
        (
            json!({}).to_string(),
            StatusCode::BAD_REQUEST,
            "invalid_body",
        ),
        (
            json!({ "devices": one }).to_string(),
            StatusCode::BAD_REQUEST,
            "invalid_body",
        ),
        (
            "{\"devices\": [".into(),
            StatusCode::BAD_REQUEST,
            "malformed_json",
        ),
        (deep(""), StatusCode::BAD_REQUEST, "invalid_body"),
        (
            deep("[{\"name\": "),
            StatusCode::BAD_REQUEST,
            "invalid_body",
        ),
        (
            over.to_string(),
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
        ),
    ];
    for (body, status, code) in cases {
        let answer = cluster
            .call_raw(Method::POST, BULK, json_type, body.clone().into_bytes())
            .await;
        let start: String = body.chars().take(80).collect();
        assert_error(&answer, status, code);
        assert_eq!(stored_devices(&cluster).await, 0, "{start}");
    }
    let empty = cluster.post(BULK, json!({ "devices": [] })).await;
    assert!(
        empty.body["error"]
            .as_str()
            .unwrap()
            .contains("from 1 to 10000"),
        "{empty:?}"
    );
    let text = cluster
        .call_raw(
            Method::POST,
            BULK,
            Some("text/plain"),
            json!({ "devices": [item(&cluster, acme, "t")] })
                .to_string()
                .into_bytes(),
        )
        .await;
    assert_error(
        &text,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    );

    // Past 64 KiB the body is read: the name is what is wrong with it.
    let answer = cluster.post(BULK, long_name.clone()).await;
    assert_eq!(refused(&answer), vec![(0, "invalid_name".to_string())]);
    // The larger limit is this route's alone.
    let single = cluster
        .post("/api/v1/devices", long_name["devices"][0].clone())
        .await;
    assert_error(&single, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    assert_eq!(stored_devices(&cluster).await, 0);
}

#[actix_rt::test]
async fn an_operator_creates_in_bulk_in_its_own_company_only_and_a_viewer_not_at_all() {
    let cluster = TestCluster::spawn(Backend::Sqlite, 0).await;
    let a = cluster.company("tenant-a").await;
    let b = cluster.company("tenant-b").await;
    let operator = client_of(&cluster, Role::Operator, a).await;
    let viewer = client_of(&cluster, Role::Viewer, a).await;
    let url = cluster.url(BULK);
    let without_company = |name: &str| {
        let mut device = item(&cluster, a, name);
        device.as_object_mut().unwrap().remove("company_id");
        device
    };

    // An operator's devices go to its company, named or not.
    let made = call(
        &operator,
        Method::POST,
        &url,
        Some(json!({ "devices": [without_company("a-1"), item(&cluster, a, "a-2")] })),
    )
    .await;
    assert_eq!(made.status, StatusCode::CREATED, "{made:?}");
    assert_eq!(made.body["devices"][0]["company_id"], a);
    assert_eq!(made.body["devices"][1]["company_id"], a);

    // Another company's id is refused as a missing company's is, word for word.
    let mut sentences = Vec::new();
    let more = fleet_items(a, 3).await;
    for company in [b, UNKNOWN_COMPANY] {
        let mut devices = more.clone();
        devices.push(item(&cluster, company, "planted"));
        let body = json!({ "devices": devices });
        let answer = call(&operator, Method::POST, &url, Some(body)).await;
        assert_eq!(refused(&answer), vec![(3, "company_not_found".to_string())]);
        let sentence = answer.body["errors"][0]["error"].as_str().unwrap();
        sentences.push(sentence.replace(&company.to_string(), "N"));
    }
    assert_eq!(sentences[0], sentences[1]);
    assert_eq!(listed(&cluster, b).await, Vec::<Value>::new());
    assert_eq!(listed(&cluster, a).await.len(), 2);

    // A viewer writes nothing, even in its own company.
    let refused_viewer = call(
        &viewer,
        Method::POST,
        &url,
        Some(json!({ "devices": [without_company("v-1")] })),
    )
    .await;
    assert_error(&refused_viewer, StatusCode::FORBIDDEN, "forbidden");

    // An admin names each device's company, and may name several.
    let answer = cluster
        .post(
            BULK,
            json!({ "devices": [item(&cluster, a, "x"), without_company("y")] }),
        )
        .await;
    assert_eq!(refused(&answer), vec![(1, "invalid_body".to_string())]);
    let answer = cluster
        .post(
            BULK,
            json!({ "devices": [item(&cluster, a, "shared"), item(&cluster, b, "shared")] }),
        )
        .await;
    assert_eq!(answer.status, StatusCode::CREATED, "{answer:?}");
    assert_eq!(answer.body["devices"][0]["company_id"], a);
    assert_eq!(answer.body["devices"][1]["company_id"], b);
    assert_eq!(stored_devices(&cluster).await, 4);
}

/// On PostgreSQL another transaction can take a name between the check and the
/// insert: the insert waits for it, fails on the unique index, and the whole call is
/// rolled back with 409. (SQLite's write transaction holds the database from the
/// check on, so nothing can come in between there.)
#[actix_rt::test]
async fn a_name_taken_by_a_concurrent_create_rolls_the_whole_call_back_with_409() {
    let test = "api::bulk::a_name_taken_by_a_concurrent_create_rolls_the_whole_call_back_with_409";
    if postgres_url(test).is_none() {
        return;
    }
    let cluster = TestCluster::spawn(Backend::Postgres, 0).await;
    let acme = cluster.company("acme").await;

    // Another client's open transaction holds a device named "racer".
    let (pid_tx, pid_rx) = tokio::sync::oneshot::channel::<i32>();
    let (commit_tx, commit_rx) = tokio::sync::oneshot::channel::<()>();
    let mut holder = cluster.db.dedicated_connection().unwrap();
    let holding = std::thread::spawn(move || {
        use diesel::connection::SimpleConnection;
        use diesel::RunQueryDsl;
        let DbConn::Pg(pg) = &mut holder else {
            panic!("not a PostgreSQL connection")
        };
        pg.batch_execute(&format!(
            "BEGIN; INSERT INTO devices (company_id, name, address, kind) \
             VALUES ({acme}, 'racer', 'http://127.0.0.1:1/', 'http')"
        ))
        .unwrap();
        let pid: i32 = diesel::select(diesel::dsl::sql::<diesel::sql_types::Integer>(
            "pg_backend_pid()",
        ))
        .get_result(pg)
        .unwrap();
        pid_tx.send(pid).unwrap();
        commit_rx.blocking_recv().unwrap();
        pg.batch_execute("COMMIT").unwrap();
    });
    let pid = pid_rx.await.unwrap();

    let mut devices = fleet_items(acme, 500).await;
    devices[250] = item(&cluster, acme, "racer");
    let (client, url) = (cluster.http.clone(), cluster.url(BULK));
    let pending = actix_rt::spawn(async move {
        call(
            &client,
            Method::POST,
            &url,
            Some(json!({ "devices": devices })),
        )
        .await
    });
    // The call passed its checks and waits on the unique index for the other one.
    eventually("the bulk insert waits on the other transaction", || async {
        let waiting: i64 = cluster
            .db
            .run(move |conn| {
                use diesel::RunQueryDsl;
                diesel::select(diesel::dsl::sql::<diesel::sql_types::BigInt>(&format!(
                    "(SELECT count(*) FROM pg_stat_activity \
                      WHERE {pid} = ANY(pg_blocking_pids(pid)))"
                )))
                .get_result(conn)
            })
            .await
            .unwrap();
        (waiting > 0).then_some(())
    })
    .await;
    commit_tx.send(()).unwrap();
    holding.join().unwrap();

    let answer = pending.await.unwrap();
    assert_error(&answer, StatusCode::CONFLICT, "device_exists");
    assert!(
        answer.body["error"]
            .as_str()
            .unwrap()
            .contains("nothing was created"),
        "{answer:?}"
    );
    // Only the other client's device is stored.
    let stored = listed(&cluster, acme).await;
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert_eq!(stored[0]["name"], "racer");
}
