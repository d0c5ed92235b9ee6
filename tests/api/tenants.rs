//! API tokens, roles and tenant isolation: every `/api/v1` route needs a token; an
//! operator or viewer token sees its own company only, and another company's objects
//! answer exactly as missing ones (OWASP API1, BOLA), with nothing changed.

use actix_web::http::{Method, StatusCode};
use serde_json::{json, Value};
use vigil::auth::{Grant, Role};

use crate::helpers::{
    assert_error, call, client_with, eventually, issue_token, Answer, Backend, TestCluster,
};

crate::on_both_backends!(
    another_companys_objects_answer_404_and_stay_unchanged,
    scoped_tokens_see_and_change_only_their_company,
);

/// Every route of the router but the open ones (`/`, `/healthz`, the OpenAPI
/// document), with ids that exist, and an unknown path under `/api/v1`: each needs a
/// token.
fn protected_routes(company: i64, device: i64) -> Vec<(Method, String)> {
    let open = ["/", "/healthz", "/api/v1/openapi.json"];
    let mut routes: Vec<(Method, String)> = vigil::http::coordinator::endpoints()
        .into_iter()
        .filter(|(_, path)| !open.contains(path))
        .map(|(method, path)| {
            let id = if path.starts_with("/api/v1/companies/") {
                company
            } else if path.starts_with("/api/v1/devices/") {
                device
            } else {
                1
            };
            (method, path.replace("{id}", &id.to_string()))
        })
        .collect();
    assert!(routes.len() >= 28, "{routes:?}");
    routes.push((Method::GET, "/api/v1/no-such-route".to_string()));
    routes
}

async fn call_as(
    cluster: &TestCluster,
    token: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> Answer {
    call(&client_with(token), method, &cluster.url(path), body).await
}

#[actix_rt::test]
async fn every_route_needs_a_valid_token() {
    let cluster = TestCluster::spawn(Backend::Sqlite, 1).await;
    let company = cluster.company("acme").await;
    let device = cluster.device(company, "web").await;
    let anonymous = awc::Client::default();
    let revoked = issue_token(&cluster.db, "gone", Grant::admin()).await;
    let listed = cluster.get("/api/v1/tokens").await;
    let revoked_id = listed.body.as_array().unwrap().last().unwrap()["id"]
        .as_i64()
        .unwrap();
    let answer = cluster
        .delete(&format!("/api/v1/tokens/{revoked_id}"))
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    let well_formed_unknown = format!("vgl_{}", "0".repeat(64));

    for (method, path) in protected_routes(company, device) {
        let body = matches!(method, Method::POST | Method::PUT).then(|| json!({}));
        let mut request = anonymous.request(method.clone(), cluster.url(&path));
        if body.is_some() {
            request = request.insert_header(("content-type", "application/json"));
        }
        let response = request.send_body("{}").await.unwrap();
        assert_eq!(
            response
                .headers()
                .get("www-authenticate")
                .map(|v| v.to_str().unwrap()),
            Some("Bearer realm=\"vigil\""),
            "{method} {path}"
        );
        let none = call(
            &anonymous,
            method.clone(),
            &cluster.url(&path),
            body.clone(),
        )
        .await;
        assert_error(&none, StatusCode::UNAUTHORIZED, "missing_token");
        for bad in [
            "not-a-token",
            well_formed_unknown.as_str(),
            revoked.as_str(),
        ] {
            let wrong = call_as(&cluster, bad, method.clone(), &path, body.clone()).await;
            assert_error(&wrong, StatusCode::UNAUTHORIZED, "invalid_token");
        }
        let basic = anonymous
            .request(method.clone(), cluster.url(&path))
            .insert_header(("authorization", "Basic YWRtaW46YWRtaW4="))
            .send()
            .await
            .unwrap();
        assert_eq!(basic.status(), StatusCode::UNAUTHORIZED, "{method} {path}");
    }
    // Nothing was done by any of those calls.
    let device_now = cluster.get(&format!("/api/v1/devices/{device}")).await;
    assert_eq!(device_now.status, StatusCode::OK, "{device_now:?}");
    assert_eq!(device_now.body["monitoring"], Value::Null);
    // Open: the index and the health check.
    for path in ["/", "/healthz"] {
        let open = call(&anonymous, Method::GET, &cluster.url(path), None).await;
        assert_eq!(open.status, StatusCode::OK, "{path}: {open:?}");
    }
}

#[actix_rt::test]
async fn admins_make_list_and_revoke_tokens_and_secrets_are_shown_once() {
    let cluster = TestCluster::spawn(Backend::Sqlite, 0).await;
    let company = cluster.company("acme").await;
    let made = cluster
        .post(
            "/api/v1/tokens",
            json!({"role": "operator", "company_id": company, "name": "ci deploys"}),
        )
        .await;
    assert_eq!(made.status, StatusCode::CREATED, "{made:?}");
    let secret = made.body["token"].as_str().unwrap().to_string();
    assert!(secret.starts_with("vgl_") && secret.len() == 68, "{made:?}");
    assert_eq!(made.body["role"], "operator");
    assert_eq!(made.body["company_id"], company);
    assert_eq!(made.body["name"], "ci deploys");
    assert!(secret.starts_with(made.body["prefix"].as_str().unwrap()));
    let id = made.body["id"].as_i64().unwrap();

    // The secret works, and is never shown again.
    let own = call_as(&cluster, &secret, Method::GET, "/api/v1/devices", None).await;
    assert_eq!(own.status, StatusCode::OK, "{own:?}");
    let listed = cluster.get("/api/v1/tokens").await;
    assert_eq!(listed.status, StatusCode::OK, "{listed:?}");
    assert!(
        !listed.body.to_string().contains(&secret[10..]),
        "{listed:?}"
    );
    let one = cluster.get(&format!("/api/v1/tokens/{id}")).await;
    assert_eq!(one.body["prefix"], made.body["prefix"], "{one:?}");
    assert!(one.body.get("token").is_none(), "{one:?}");
    let of_company = cluster
        .get(&format!("/api/v1/tokens?company_id={company}"))
        .await;
    assert_eq!(
        of_company.body.as_array().unwrap().len(),
        1,
        "{of_company:?}"
    );

    // Only admins manage tokens.
    for (method, path, body) in [
        (Method::GET, "/api/v1/tokens".to_string(), None),
        (Method::GET, format!("/api/v1/tokens/{id}"), None),
        (Method::DELETE, format!("/api/v1/tokens/{id}"), None),
        (
            Method::POST,
            "/api/v1/tokens".to_string(),
            Some(json!({"role": "admin"})),
        ),
    ] {
        let refused = call_as(&cluster, &secret, method, &path, body).await;
        assert_error(&refused, StatusCode::FORBIDDEN, "forbidden");
    }

    // Bad requests for tokens.
    for (body, code, status) in [
        (
            json!({"role": "root"}),
            "invalid_role",
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"role": "admin", "company_id": company}),
            "invalid_role",
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"role": "viewer"}),
            "invalid_role",
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"role": "viewer", "company_id": 999_999}),
            "company_not_found",
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"role": "viewer", "company_id": company, "name": " "}),
            "invalid_name",
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"role": "viewer", "company_id": company, "secret_hash": "x"}),
            "invalid_body",
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let refused = cluster.post("/api/v1/tokens", body).await;
        assert_error(&refused, status, code);
    }

    // Revoked: at once, and only once.
    let revoked = cluster.delete(&format!("/api/v1/tokens/{id}")).await;
    assert_eq!(revoked.status, StatusCode::OK, "{revoked:?}");
    let after = call_as(&cluster, &secret, Method::GET, "/api/v1/devices", None).await;
    assert_error(&after, StatusCode::UNAUTHORIZED, "invalid_token");
    let again = cluster.delete(&format!("/api/v1/tokens/{id}")).await;
    assert_error(&again, StatusCode::NOT_FOUND, "not_found");

    // A company's tokens go with it.
    let viewer = issue_token(
        &cluster.db,
        "v",
        Grant::new(Role::Viewer, Some(company)).unwrap(),
    )
    .await;
    let deleted = cluster
        .delete(&format!("/api/v1/companies/{company}"))
        .await;
    assert_eq!(deleted.status, StatusCode::OK, "{deleted:?}");
    let gone = call_as(&cluster, &viewer, Method::GET, "/api/v1/devices", None).await;
    assert_error(&gone, StatusCode::UNAUTHORIZED, "invalid_token");
}

/// Two companies with a monitored device each, and an operator and a viewer token for A.
struct Tenants {
    cluster: TestCluster,
    a: i64,
    a_device: i64,
    b: i64,
    b_device: i64,
    /// B's report collector and its run (ended).
    b_collector: i64,
    b_job: i64,
    operator: String,
    viewer: String,
}

impl Tenants {
    async fn spawn(backend: Backend) -> Tenants {
        let cluster = TestCluster::spawn(backend, 1).await;
        let a = cluster.company("tenant-a").await;
        let b = cluster.company("tenant-b").await;
        let a_device = cluster.device(a, "a-web").await;
        let b_device = cluster.device(b, "b-web").await;
        for device in [a_device, b_device] {
            let started = cluster.start_device(device).await;
            assert_eq!(started.status, StatusCode::OK, "{started:?}");
        }
        eventually("both devices have readings", || async {
            let mut all = true;
            for device in [a_device, b_device] {
                let latest = cluster
                    .get(&format!("/api/v1/devices/{device}/metrics/latest"))
                    .await;
                all &= latest.body["state"] == "normal";
            }
            all.then_some(())
        })
        .await;
        let made = cluster
            .post(
                "/api/v1/collectors",
                json!({"company_id": b, "name": "b-report", "kind": "report",
                       "target": {"all": true}, "expected_duration": "fast",
                       "params": {"window_hours": 1}}),
            )
            .await;
        assert_eq!(made.status, StatusCode::CREATED, "{made:?}");
        let b_collector = made.body["id"].as_i64().unwrap();
        let queued = cluster
            .post_empty(&format!("/api/v1/collectors/{b_collector}/run"))
            .await;
        assert_eq!(queued.status, StatusCode::ACCEPTED, "{queued:?}");
        let b_job = queued.body["job"]["id"].as_i64().unwrap();
        eventually("B's report done", || async {
            let job = cluster.get(&format!("/api/v1/jobs/{b_job}")).await;
            (job.body["status"] == "done").then_some(())
        })
        .await;
        let operator = issue_token(
            &cluster.db,
            "a-op",
            Grant::new(Role::Operator, Some(a)).unwrap(),
        )
        .await;
        let viewer = issue_token(
            &cluster.db,
            "a-view",
            Grant::new(Role::Viewer, Some(a)).unwrap(),
        )
        .await;
        Tenants {
            cluster,
            a,
            a_device,
            b,
            b_device,
            b_collector,
            b_job,
            operator,
            viewer,
        }
    }

    async fn as_token(
        &self,
        token: &str,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Answer {
        call_as(&self.cluster, token, method, path, body).await
    }

    /// Company B as an admin sees it: the company, its devices (without live
    /// monitoring figures), where each runs, its events and its stored history.
    async fn b_state(&self) -> Value {
        let c = &self.cluster;
        let company = c.get(&format!("/api/v1/companies/{}", self.b)).await;
        let devices = c
            .get(&format!("/api/v1/devices?company_id={}", self.b))
            .await;
        let devices: Vec<Value> = devices
            .body
            .as_array()
            .unwrap()
            .iter()
            .map(|d| {
                let mut d = d.clone();
                let placed = d["monitoring"]["server_id"].clone();
                d["monitoring"] = placed;
                d
            })
            .collect();
        let events = c
            .get(&format!("/api/v1/events?company_id={}", self.b))
            .await;
        let tokens = c
            .get(&format!("/api/v1/tokens?company_id={}", self.b))
            .await;
        let collectors = c
            .get(&format!("/api/v1/collectors?company_id={}", self.b))
            .await;
        let jobs = c
            .get(&format!("/api/v1/jobs?collector_id={}", self.b_collector))
            .await;
        json!({
            "company": company.body,
            "devices": devices,
            "events": events.body,
            "tokens": tokens.body,
            "collectors": collectors.body,
            "jobs": jobs.body,
        })
    }
}

/// The ids of company B's objects (or of missing ones) the company-scoped routes take.
#[derive(Debug, Clone, Copy)]
struct Ids {
    company: i64,
    device: i64,
    collector: i64,
    job: i64,
}

impl Ids {
    /// The id `path` names, as text.
    fn of(&self, path: &str) -> String {
        let id = if path.contains("/devices/") {
            self.device
        } else if path.contains("/collectors/") {
            self.collector
        } else if path.contains("/jobs/") {
            self.job
        } else {
            self.company
        };
        id.to_string()
    }
}

/// Company-scoped routes (every route of the router that takes a company's, a
/// device's, a collector's or a job's id, but the admin-only company deletion) called
/// with these ids, with a body where they take one.
fn b_routes(ids: Ids) -> Vec<(Method, String, Option<Value>)> {
    let routes: Vec<(Method, String, Option<Value>)> = vigil::http::coordinator::endpoints()
        .into_iter()
        .filter_map(|(method, path)| {
            let id = if path.starts_with("/api/v1/companies/{id}") {
                ids.company
            } else if path.starts_with("/api/v1/devices/{id}") {
                ids.device
            } else if path.starts_with("/api/v1/collectors/{id}") {
                ids.collector
            } else if path.starts_with("/api/v1/jobs/{id}") {
                ids.job
            } else {
                return None;
            };
            if method == Method::DELETE && path == "/api/v1/companies/{id}" {
                return None;
            }
            let body = match (&method, path) {
                (&Method::PUT, "/api/v1/collectors/{id}") => Some(json!({"name": "taken-over"})),
                (&Method::PUT, _) => Some(json!({"name": "taken-over", "enabled": false})),
                (&Method::POST, "/api/v1/jobs/{id}/move") => Some(json!({"position": 1})),
                _ => None,
            };
            Some((method, path.replace("{id}", &id.to_string()), body))
        })
        .collect();
    assert!(routes.len() >= 20, "{routes:?}");
    routes
}

async fn another_companys_objects_answer_404_and_stay_unchanged(backend: Backend) {
    let t = Tenants::spawn(backend).await;
    let before = t.b_state().await;
    let missing_company = 900_000;
    let b_ids = Ids {
        company: t.b,
        device: t.b_device,
        collector: t.b_collector,
        job: t.b_job,
    };
    let missing_ids = Ids {
        company: missing_company,
        device: 900_001,
        collector: 900_002,
        job: 900_003,
    };

    for token in [&t.operator, &t.viewer] {
        for ((method, path, body), (_, missing_path, _)) in
            b_routes(b_ids).into_iter().zip(b_routes(missing_ids))
        {
            let answer = t.as_token(token, method.clone(), &path, body.clone()).await;
            let missing = t.as_token(token, method.clone(), &missing_path, body).await;
            if token == &t.viewer && method != Method::GET {
                // A viewer is refused any change before anything is looked up.
                assert_error(&answer, StatusCode::FORBIDDEN, "forbidden");
                assert_error(&missing, StatusCode::FORBIDDEN, "forbidden");
                continue;
            }
            assert_error(&answer, StatusCode::NOT_FOUND, "not_found");
            assert_error(&missing, StatusCode::NOT_FOUND, "not_found");
            // The same sentence as for a missing object, but for the id.
            let strip = |a: &Answer, id: &str| a.body["error"].as_str().unwrap().replace(id, "N");
            assert_eq!(
                strip(&answer, &b_ids.of(&path)),
                strip(&missing, &missing_ids.of(&path)),
                "{method} {path}"
            );
        }
        // Lists and filters naming B's ids answer as if B had nothing.
        for path in [
            format!("/api/v1/devices?company_id={}", t.b),
            format!("/api/v1/events?company_id={}", t.b),
            format!("/api/v1/events?device_id={}", t.b_device),
            format!("/api/v1/collectors?company_id={}", t.b),
            format!("/api/v1/jobs?collector_id={}", t.b_collector),
        ] {
            let answer = t.as_token(token, Method::GET, &path, None).await;
            assert_eq!(answer.status, StatusCode::OK, "{path}: {answer:?}");
            assert_eq!(answer.body, json!([]), "{path}");
        }
    }
    // A device cannot be put into B, by body or otherwise.
    let into_b = json!({"company_id": t.b, "name": "planted", "address": "http://127.0.0.1:1/", "kind": "http"});
    let refused = t
        .as_token(&t.operator, Method::POST, "/api/v1/devices", Some(into_b))
        .await;
    assert_error(
        &refused,
        StatusCode::UNPROCESSABLE_ENTITY,
        "company_not_found",
    );
    // Nor in bulk: the device naming B is refused as one naming no company, and the
    // others of the call are not created either.
    for company in [t.b, missing_company] {
        let devices = json!({"devices": [
            {"name": "a-fine", "address": "http://127.0.0.1:1/", "kind": "http"},
            {"company_id": company, "name": "planted", "address": "http://127.0.0.1:1/", "kind": "http"},
        ]});
        let refused = t
            .as_token(
                &t.operator,
                Method::POST,
                "/api/v1/devices/bulk",
                Some(devices),
            )
            .await;
        assert_eq!(
            refused.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{refused:?}"
        );
        assert_eq!(refused.body["errors"][0]["index"], 1, "{refused:?}");
        assert_eq!(refused.body["errors"][0]["code"], "company_not_found");
        assert_eq!(
            refused.body["errors"][0]["error"],
            format!("company {company} does not exist")
        );
    }

    let after = t.b_state().await;
    assert_eq!(before, after, "company B changed");
    assert!(
        after["devices"][0]["monitoring"].is_i64(),
        "B's device still runs: {after}"
    );
}

async fn scoped_tokens_see_and_change_only_their_company(backend: Backend) {
    let t = Tenants::spawn(backend).await;
    // Lists hold A only.
    for token in [&t.operator, &t.viewer] {
        for (path, own) in [("/api/v1/companies", t.a), ("/api/v1/devices", t.a_device)] {
            let listed = t.as_token(token, Method::GET, path, None).await;
            let ids: Vec<i64> = listed
                .body
                .as_array()
                .unwrap()
                .iter()
                .map(|o| o["id"].as_i64().unwrap())
                .collect();
            assert_eq!(ids, vec![own], "{path}: {listed:?}");
        }
        let events = t.as_token(token, Method::GET, "/api/v1/events", None).await;
        assert!(
            events
                .body
                .as_array()
                .unwrap()
                .iter()
                .all(|e| e["company_id"] == t.a),
            "{events:?}"
        );
        let own = t
            .as_token(
                token,
                Method::GET,
                &format!("/api/v1/devices/{}/metrics/latest", t.a_device),
                None,
            )
            .await;
        assert_eq!(own.status, StatusCode::OK, "{own:?}");
        // The config's settings, without the infrastructure.
        let config = t.as_token(token, Method::GET, "/api/v1/config", None).await;
        assert_eq!(config.status, StatusCode::OK, "{config:?}");
        assert!(config.body["poll_interval_ms"].is_i64(), "{config:?}");
        assert!(config.body.get("monitor_servers").is_none(), "{config:?}");
        // A scrape shows A's devices and counts only.
        let scrape = client_with(token)
            .get(t.cluster.url("/metrics"))
            .send()
            .await
            .unwrap()
            .body()
            .await
            .unwrap();
        let scrape = String::from_utf8(scrape.to_vec()).unwrap();
        assert!(scrape.contains("company=\"tenant-a\""), "{scrape}");
        assert!(!scrape.contains("tenant-b"), "{scrape}");
        assert!(scrape.contains("\nvigil_devices 1\n"), "{scrape}");
        assert!(!scrape.contains("vigil_monitor_servers"), "{scrape}");
        // Admin-only routes.
        for (method, path, body) in [
            (
                Method::POST,
                "/api/v1/companies",
                Some(json!({"name": "new"})),
            ),
            (Method::DELETE, &*format!("/api/v1/companies/{}", t.a), None),
            (
                Method::PUT,
                "/api/v1/config",
                Some(json!({"poll_interval_ms": 100})),
            ),
            (Method::GET, "/api/v1/cluster", None),
            (Method::GET, "/api/v1/store", None),
            (Method::GET, "/api/v1/monitor-servers", None),
            (Method::GET, "/api/v1/monitor-servers/1", None),
            (Method::DELETE, "/api/v1/monitor-servers/1", None),
            (Method::GET, "/api/v1/tokens", None),
            (Method::GET, "/debug/actors", None),
        ] {
            let refused = t.as_token(token, method, path, body).await;
            assert_error(&refused, StatusCode::FORBIDDEN, "forbidden");
        }
    }
    // The admin's scrape has both.
    let scrape = t.cluster.get_text("/metrics").await;
    assert!(
        scrape.contains("tenant-a") && scrape.contains("tenant-b"),
        "{scrape}"
    );

    // A viewer reads, never writes, even in its own company.
    for (method, path, body) in [
        (
            Method::POST,
            "/api/v1/devices".to_string(),
            Some(json!({"name": "x", "address": "http://127.0.0.1:1/", "kind": "http"})),
        ),
        (
            Method::POST,
            "/api/v1/devices/bulk".to_string(),
            Some(
                json!({"devices": [{"name": "x", "address": "http://127.0.0.1:1/", "kind": "http"}]}),
            ),
        ),
        (
            Method::PUT,
            format!("/api/v1/devices/{}", t.a_device),
            Some(json!({"enabled": false})),
        ),
        (
            Method::POST,
            format!("/api/v1/devices/{}/stop", t.a_device),
            None,
        ),
        (
            Method::POST,
            format!("/api/v1/companies/{}/stop", t.a),
            None,
        ),
    ] {
        let refused = t.as_token(&t.viewer, method, &path, body).await;
        assert_error(&refused, StatusCode::FORBIDDEN, "forbidden");
    }

    // An operator runs its own company: devices go to it without naming it.
    let made = t
        .as_token(
            &t.operator,
            Method::POST,
            "/api/v1/devices",
            Some(json!({"name": "a-api", "address": t.cluster.fleet.url("/d/a-api"), "kind": "http"})),
        )
        .await;
    assert_eq!(made.status, StatusCode::CREATED, "{made:?}");
    assert_eq!(made.body["company_id"], t.a);
    let named = t
        .as_token(
            &t.operator,
            Method::POST,
            "/api/v1/devices",
            Some(json!({"company_id": t.a, "name": "a-db", "address": "127.0.0.1:5432", "kind": "tcp"})),
        )
        .await;
    assert_eq!(named.status, StatusCode::CREATED, "{named:?}");
    // Its own device changed, its company stopped and started, the device stopped and
    // deleted: each answers 200.
    let (a, device) = (t.a, t.a_device);
    for (method, path, body) in [
        (
            Method::PUT,
            format!("/api/v1/devices/{device}"),
            Some(json!({"name": "a-web-2"})),
        ),
        (Method::POST, format!("/api/v1/companies/{a}/stop"), None),
        (Method::POST, format!("/api/v1/companies/{a}/start"), None),
        (Method::POST, format!("/api/v1/devices/{device}/stop"), None),
        (Method::DELETE, format!("/api/v1/devices/{device}"), None),
    ] {
        let answer = t.as_token(&t.operator, method.clone(), &path, body).await;
        assert_eq!(answer.status, StatusCode::OK, "{method} {path}: {answer:?}");
        if path.ends_with("/start") {
            assert_eq!(answer.body["requested"], 3, "{answer:?}");
        }
    }
    // B's device never moved through any of it.
    let b = t
        .cluster
        .get(&format!("/api/v1/devices/{}", t.b_device))
        .await;
    assert_eq!(b.body["name"], "b-web", "{b:?}");
    assert!(b.body["monitoring"]["server_id"].is_i64(), "{b:?}");
}

#[actix_rt::test]
async fn monitor_servers_answer_only_the_cluster_token() {
    let cluster = TestCluster::spawn(Backend::Sqlite, 1).await;
    let server = cluster.servers[0].address;
    for (method, path) in [
        (Method::GET, "/info"),
        (Method::GET, "/monitors"),
        (Method::POST, "/monitors"),
        (Method::POST, "/monitors/batch"),
        (Method::GET, "/monitors/1"),
        (Method::PUT, "/monitors/1"),
        (Method::DELETE, "/monitors/1"),
        (Method::PUT, "/config"),
        (Method::GET, "/metrics"),
        (Method::GET, "/debug/actors"),
        (Method::GET, "/no-such-route"),
    ] {
        let url = format!("http://{server}{path}");
        let none = call(&awc::Client::default(), method.clone(), &url, None).await;
        assert_error(&none, StatusCode::UNAUTHORIZED, "missing_cluster_token");
        // An API token, even an admin's, is not the cluster token.
        for wrong in [cluster.admin_token.as_str(), "test-cluster-token-012345678"] {
            let answer = call(&client_with(wrong), method.clone(), &url, None).await;
            assert_error(&answer, StatusCode::UNAUTHORIZED, "invalid_cluster_token");
        }
    }
    let health = call(
        &awc::Client::default(),
        Method::GET,
        &format!("http://{server}/healthz"),
        None,
    )
    .await;
    assert_eq!(health.status, StatusCode::OK, "{health:?}");
    let info = cluster.server_call(0, Method::GET, "/info", None).await;
    assert_eq!(info.status, StatusCode::OK, "{info:?}");
}

#[actix_rt::test]
async fn serve_keeps_its_admin_token_beside_the_database_until_it_is_revoked() {
    let scratch = crate::helpers::scratch(Backend::Sqlite);
    let db = vigil::db::Db::open(scratch.url().clone(), 2).await.unwrap();
    let path = vigil::startup::beside_database(db.url(), "admin-token");
    assert!(path.to_string_lossy().ends_with(".admin-token"), "{path:?}");
    let first = vigil::startup::admin_token(&db, &path).await.unwrap();
    assert_eq!(std::fs::read_to_string(&path).unwrap().trim(), first);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "the token file is readable by others");
    // A restart reuses it.
    let again = vigil::startup::admin_token(&db, &path).await.unwrap();
    assert_eq!(again, first);
    // Revoked (or replaced by junk), the next start makes a new one.
    let hash = vigil::auth::hash(&first);
    let stored = db
        .run(move |conn| vigil::db::tokens::find_by_hash(conn, &hash))
        .await
        .unwrap()
        .unwrap();
    db.run(move |conn| vigil::db::tokens::revoke(conn, stored.id))
        .await
        .unwrap();
    let renewed = vigil::startup::admin_token(&db, &path).await.unwrap();
    assert_ne!(renewed, first);
    std::fs::write(&path, "junk\n").unwrap();
    let replaced = vigil::startup::admin_token(&db, &path).await.unwrap();
    assert_ne!(replaced, renewed);
    assert_eq!(std::fs::read_to_string(&path).unwrap().trim(), replaced);
}

#[actix_rt::test]
async fn each_token_is_held_to_its_rate_with_429_and_retry_after() {
    let scratch = crate::helpers::scratch(Backend::Sqlite);
    let db = vigil::db::Db::open(scratch.url().clone(), 2).await.unwrap();
    let options = vigil::startup::CoordinatorOptions {
        rate_limit: vigil::http::rate::RateLimit {
            per_second: 1,
            burst: 2,
        },
        ..Default::default()
    };
    let coordinator = vigil::startup::Coordinator::build(
        db.clone(),
        "127.0.0.1:0".parse().unwrap(),
        crate::helpers::cluster_token(),
        options,
    )
    .unwrap();
    let url = format!("http://{}/api/v1/companies", coordinator.address());
    actix_rt::spawn(coordinator.run_until_stopped());
    let busy = client_with(&issue_token(&db, "busy", Grant::admin()).await);
    let quiet = client_with(&issue_token(&db, "quiet", Grant::admin()).await);
    for _ in 0..2 {
        let answer = call(&busy, Method::GET, &url, None).await;
        assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    }
    let response = busy.get(&url).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        response
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap()),
        Some("1")
    );
    let limited = call(&busy, Method::GET, &url, None).await;
    assert_error(&limited, StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    // Another token has its own allowance.
    let other = call(&quiet, Method::GET, &url, None).await;
    assert_eq!(other.status, StatusCode::OK, "{other:?}");
    // After the wait it was told, the busy token is served again.
    actix_rt::time::sleep(std::time::Duration::from_millis(1100)).await;
    let again = call(&busy, Method::GET, &url, None).await;
    assert_eq!(again.status, StatusCode::OK, "{again:?}");
}
