//! The test harness: a coordinator and N monitor servers as real HTTP servers on port 0
//! over one scratch database (SQLite file or PostgreSQL schema), the fleet simulator
//! (`vigil fleet`) in-process for tests that need many devices, a few fake devices for
//! what only they do (a chosen status, a slow answer, a hit counter), and typed helpers
//! to call the API.

use std::cell::{Cell, OnceCell};
use std::collections::HashMap;
use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::dev::ServerHandle;
use actix_web::http::{Method, StatusCode};
use actix_web::{web, App, HttpResponse, HttpServer};
use serde_json::{json, Value};
use vigil::actors::membership::{IsMaster, Membership};
use vigil::actors::registry::Tracked;
use vigil::actors::retention::Retention;
use vigil::actors::writer::WriterSettings;
use vigil::auth::{ClusterToken, Grant};
use vigil::db::models::ConfigChanges;
use vigil::db::scratch::ScratchDb;
use vigil::db::{self, Db};
use vigil::domain::DeviceKind;
use vigil::fleet::{FleetOptions, Shares, DEFAULT_SEED};
use vigil::http::rate::RateLimit;
use vigil::probe;
use vigil::startup::{Coordinator, CoordinatorOptions, MonitorServerNode, MonitorServerOptions};

/// Polls in tests run this often, so state is visible within a fraction of a second.
pub const TEST_POLL_INTERVAL_MS: i64 = 100;
/// The cluster token of every test cluster (in-process and processes).
pub const TEST_CLUSTER_TOKEN: &str = "test-cluster-token-0123456789";

/// A coordinator's options in tests: the default address policy, no rate limit (tests
/// call as fast as they can; the rate limit has its own test).
pub fn test_options() -> CoordinatorOptions {
    CoordinatorOptions {
        rate_limit: RateLimit::OFF,
        // The queue claims five times a second, cancels a job that has not stopped
        // two seconds after it was asked to, and takes a due time found more than two
        // seconds late for missed.
        queue: vigil::actors::queue::QueueSettings {
            tick: Duration::from_millis(200),
            stop_deadline: Duration::from_secs(2),
            misfire_grace: Duration::from_secs(2),
            ..Default::default()
        },
        ..CoordinatorOptions::default()
    }
}

pub fn cluster_token() -> ClusterToken {
    ClusterToken::new(TEST_CLUSTER_TOKEN).unwrap()
}

/// Stores a new token for `grant` straight in the database and returns its secret.
pub async fn issue_token(db: &Db, name: &str, grant: Grant) -> String {
    let request = vigil::auth::TokenRequest {
        grant,
        name: name.to_string(),
    };
    let (_, token) = vigil::auth::issue(db, request)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("the token's company does not exist"));
    token
}

/// A client that sends `token` as its bearer on every call.
pub fn client_with(token: &str) -> awc::Client {
    // Idle connections are given up before the server's keep-alive closes them, so a
    // call after a pause does not go out on a connection being closed.
    let connector = awc::Connector::new().conn_keep_alive(vigil::remote::POOLED_CONNECTION_IDLE);
    awc::Client::builder()
        .connector(connector)
        .timeout(Duration::from_secs(60))
        .bearer_auth(token)
        .finish()
}

/// How long a test waits for an eventually-true condition before failing.
pub const PATIENCE: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The PostgreSQL URL tests run against, or `None` when PostgreSQL tests are skipped
/// here (no `VIGIL_TEST_DATABASE_URL` outside CI; the skip is reported on stderr).
/// Under `CI=true` a missing URL fails the test instead of skipping it.
pub fn postgres_url(test: &str) -> Option<String> {
    match std::env::var("VIGIL_TEST_DATABASE_URL") {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ if std::env::var("CI").as_deref() == Ok("true") => panic!(
            "CI=true but VIGIL_TEST_DATABASE_URL is not set: PostgreSQL test {test} must not be skipped"
        ),
        _ => {
            // One write, straight to stderr: libtest swallows eprintln! of passing tests.
            let line = format!("skipped PostgreSQL test {test}: set VIGIL_TEST_DATABASE_URL to run it\n");
            let _ = std::io::stderr().write_all(line.as_bytes());
            None
        }
    }
}

/// A scratch database on `backend`. Call only after [`postgres_url`] said PostgreSQL runs.
pub fn scratch(backend: Backend) -> ScratchDb {
    match backend {
        Backend::Sqlite => ScratchDb::sqlite(),
        Backend::Postgres => {
            let url = std::env::var("VIGIL_TEST_DATABASE_URL").unwrap();
            ScratchDb::postgres(&url).unwrap_or_else(|e| {
                panic!("cannot create a schema in VIGIL_TEST_DATABASE_URL: {e}")
            })
        }
    }
}

/// Generates one `#[actix_rt::test]` per backend for each named `async fn(Backend)`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[actix_rt::test]
                async fn $name() {
                    super::$name($crate::helpers::Backend::Sqlite).await;
                }
            )*
        }
        mod postgres {
            $(
                #[actix_rt::test]
                async fn $name() {
                    let test = concat!(module_path!(), "::", stringify!($name));
                    if $crate::helpers::postgres_url(test).is_some() {
                        super::$name($crate::helpers::Backend::Postgres).await;
                    }
                }
            )*
        }
    };
}

/// The fleet simulator (`vigil fleet`) served in-process on 127.0.0.1:0 with one
/// worker, stopped when dropped.
pub struct TestFleet {
    base: String,
    handle: ServerHandle,
    pub http: awc::Client,
}

impl TestFleet {
    /// `devices` devices that never have episodes (`--shares 0,0,0,0`): each stays
    /// normal, with the same readings on every run (the fixed seed), until forced.
    pub fn calm(devices: usize) -> TestFleet {
        TestFleet::spawn(FleetOptions {
            devices,
            seed: DEFAULT_SEED,
            shares: Shares::parse("0,0,0,0").unwrap(),
            ..FleetOptions::default()
        })
    }

    pub fn spawn(options: FleetOptions) -> TestFleet {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let options = FleetOptions {
            listen: listener.local_addr().unwrap(),
            workers: 1,
            ..options
        };
        let fleet = vigil::fleet::Fleet::start(listener, options).unwrap();
        let (base, handle) = (fleet.base_url().to_string(), fleet.handle());
        actix_rt::spawn(fleet.run_until_stopped());
        TestFleet {
            base,
            handle,
            http: awc::Client::builder()
                .timeout(Duration::from_secs(30))
                .finish(),
        }
    }

    /// `http://127.0.0.1:PORT`, as the fleet's device list writes it.
    pub fn base(&self) -> &str {
        &self.base
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// GETs a text document; fails on a non-200.
    pub async fn text(&self, path: &str) -> String {
        let mut response = self.http.get(self.url(path)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "GET {path}");
        let body = response.body().limit(1 << 20).await.unwrap();
        String::from_utf8(body.to_vec()).unwrap()
    }

    /// Forces device `index` into `state` (`PUT /d/{index}/state`); answers its view.
    pub async fn force(&self, index: usize, state: &str) -> Value {
        let answer = call(
            &self.http,
            Method::PUT,
            &self.url(&format!("/d/{index}/state")),
            Some(json!({ "state": state })),
        )
        .await;
        assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
        assert_eq!(answer.body["state"], state, "{answer:?}");
        answer.body
    }

    /// Devices `range` of the fleet's own device list (`GET /devices.json`) as `kind`
    /// devices of `company`: items of the bulk API's body.
    pub async fn device_list(
        &self,
        company: i64,
        kind: DeviceKind,
        range: Range<usize>,
    ) -> Vec<Value> {
        let path = format!("/devices.json?kind={kind}&company_id={company}");
        let list = call(&self.http, Method::GET, &self.url(&path), None).await;
        assert_eq!(list.status, StatusCode::OK, "{list:?}");
        let devices = list.body["devices"].as_array().unwrap();
        assert!(
            range.end <= devices.len(),
            "the fleet serves {} devices, not {range:?}",
            devices.len()
        );
        devices[range].to_vec()
    }
}

impl Drop for TestFleet {
    fn drop(&mut self) {
        // Not awaited: the runtime goes with the test.
        drop(self.handle.stop(false));
    }
}

/// Creates `devices` in one `POST {api}/devices/bulk` (`api` ends in `/api/v1`);
/// answers their ids, in order.
pub async fn create_in_bulk(http: &awc::Client, api: &str, devices: Vec<Value>) -> Vec<i64> {
    let count = devices.len();
    let body = json!({ "devices": devices });
    let answer = call(
        http,
        Method::POST,
        &format!("{api}/devices/bulk"),
        Some(body),
    )
    .await;
    assert_eq!(answer.status, StatusCode::CREATED, "{answer:?}");
    let ids: Vec<i64> = answer.body["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids.len(), count, "{answer:?}");
    ids
}

/// How many devices the fleet behind [`TestCluster::fleet_devices`] serves: more than
/// any test draws, at no cost (a device is a function of its index until forced).
const CLUSTER_FLEET_DEVICES: usize = 1_000;

/// Fake devices: `GET /d/{name}` answers 200, `GET /status/{code}` answers that code,
/// `GET /slow/{ms}` answers 200 after that many milliseconds, `GET /agent/{name}`
/// answers an agent report whose CPU usage the test sets with [`Fleet::set_cpu`]
/// (memory and disk at 10%); every request is counted by path.
pub struct Fleet {
    pub address: SocketAddr,
    hits: Arc<Mutex<HashMap<String, u64>>>,
    cpu: Arc<Mutex<HashMap<String, f64>>>,
}

impl Fleet {
    pub fn spawn() -> Fleet {
        let hits: Arc<Mutex<HashMap<String, u64>>> = Arc::default();
        let cpu: Arc<Mutex<HashMap<String, f64>>> = Arc::default();
        let counted = web::Data::new(Arc::clone(&hits));
        let cpu_data = web::Data::new(Arc::clone(&cpu));
        let server = HttpServer::new(move || {
            App::new()
                .app_data(counted.clone())
                .app_data(cpu_data.clone())
                .route("/d/{name}", web::get().to(ok))
                .route("/agent/{name}", web::get().to(agent))
                .route("/status/{code}", web::get().to(status))
                .route("/slow/{ms}", web::get().to(slow))
        })
        .workers(1)
        .disable_signals()
        .bind("127.0.0.1:0")
        .unwrap();
        let address = server.addrs()[0];
        actix_rt::spawn(server.run());
        Fleet { address, hits, cpu }
    }

    /// Sets the CPU usage `GET /agent/{name}` reports.
    pub fn set_cpu(&self, name: &str, percent: f64) {
        self.cpu.lock().unwrap().insert(name.to_string(), percent);
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    pub fn hits(&self, path: &str) -> u64 {
        self.hits.lock().unwrap().get(path).copied().unwrap_or(0)
    }
}

type Hits = web::Data<Arc<Mutex<HashMap<String, u64>>>>;

fn count(req: &actix_web::HttpRequest, hits: &Hits) {
    *hits
        .lock()
        .unwrap()
        .entry(req.path().to_string())
        .or_insert(0) += 1;
}

async fn ok(req: actix_web::HttpRequest, hits: Hits) -> HttpResponse {
    count(&req, &hits);
    HttpResponse::Ok().body("up")
}

async fn agent(
    req: actix_web::HttpRequest,
    name: web::Path<String>,
    hits: Hits,
    cpu: web::Data<Arc<Mutex<HashMap<String, f64>>>>,
) -> HttpResponse {
    count(&req, &hits);
    let usage = cpu
        .lock()
        .unwrap()
        .get(name.as_str())
        .copied()
        .unwrap_or(0.0);
    HttpResponse::Ok().json(agent_report(&name, usage))
}

/// An agent report of a host named `name` with this CPU usage and 10% memory and disk.
pub fn agent_report(name: &str, cpu_percent: f64) -> vigil::agent::AgentReport {
    use vigil::agent::*;
    let memory = Memory {
        used_bytes: 1 << 30,
        total_bytes: 10 << 30,
        usage_percent: 10.0,
    };
    AgentReport {
        hostname: name.to_string(),
        agent_version: "test".into(),
        collected_at: chrono::Utc::now(),
        interval_ms: 1000,
        uptime_seconds: 100,
        load_average: LoadAverage {
            one: 0.5,
            five: 0.25,
            fifteen: 0.125,
        },
        cpu: Cpu {
            usage_percent: cpu_percent,
            cores: vec![CpuCore {
                name: "cpu0".into(),
                usage_percent: cpu_percent,
                frequency_mhz: 2000,
            }],
        },
        memory,
        swap: memory,
        networks: vec![Network {
            interface: "eth0".into(),
            receive_bytes_per_second: 1000.0,
            transmit_bytes_per_second: 500.0,
            receive_bytes_total: 10_000,
            transmit_bytes_total: 5_000,
        }],
        disks: vec![Disk {
            mount: "/".into(),
            device: "/dev/test".into(),
            file_system: "ext4".into(),
            used_bytes: 1 << 30,
            total_bytes: 10 << 30,
            usage_percent: 10.0,
        }],
        temperatures: Vec::new(),
    }
}

async fn slow(req: actix_web::HttpRequest, ms: web::Path<u64>, hits: Hits) -> HttpResponse {
    count(&req, &hits);
    actix_rt::time::sleep(Duration::from_millis(*ms)).await;
    HttpResponse::Ok().body("late")
}

async fn status(req: actix_web::HttpRequest, code: web::Path<u16>, hits: Hits) -> HttpResponse {
    count(&req, &hits);
    HttpResponse::build(StatusCode::from_u16(*code).unwrap_or(StatusCode::IM_A_TEAPOT)).finish()
}

/// One monitor server of the cluster.
pub struct TestServer {
    pub id: i64,
    pub address: SocketAddr,
    pub handle: ServerHandle,
    /// The thread its supervisor and monitors run on.
    pub supervisor: actix::ArbiterHandle,
}

pub struct TestCluster {
    pub db: Db,
    pub coordinator: SocketAddr,
    coordinator_handle: ServerHandle,
    pub retention: Tracked<Retention>,
    pub membership: Tracked<Membership>,
    pub servers: Vec<TestServer>,
    pub fleet: Fleet,
    /// The fleet simulator [`TestCluster::fleet_devices`] draws from, started by its
    /// first call.
    simulator: OnceCell<TestFleet>,
    /// How many of the simulator's devices have been drawn: the next starts here.
    drawn: Cell<usize>,
    /// Calls the coordinator with an admin token.
    pub http: awc::Client,
    pub admin_token: String,
    /// Calls monitor servers with the cluster token.
    pub cluster_http: awc::Client,
    /// Dropped last: removes the database.
    _scratch: ScratchDb,
}

/// An answer from the API: status and JSON body (`Value::Null` when the body is empty).
pub struct Answer {
    pub status: StatusCode,
    pub body: Value,
}

impl std::fmt::Debug for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status, self.body)
    }
}

impl TestCluster {
    /// A coordinator and `servers` monitor servers.
    pub async fn spawn(backend: Backend, servers: usize) -> TestCluster {
        let scratch = scratch(backend);
        let db = Db::open(scratch.url().clone(), 4).await.unwrap();
        db.run(|conn| {
            db::config::update(
                conn,
                &ConfigChanges {
                    poll_interval_ms: Some(TEST_POLL_INTERVAL_MS),
                    timeout_ms: Some(1_000),
                    ..Default::default()
                },
            )
        })
        .await
        .unwrap();
        let admin_token = issue_token(&db, "test admin", Grant::admin()).await;
        let coordinator = Coordinator::build(
            db.clone(),
            "127.0.0.1:0".parse().unwrap(),
            cluster_token(),
            test_options(),
        )
        .unwrap();
        let (coordinator_address, coordinator_handle, retention, membership) = (
            coordinator.address(),
            coordinator.handle(),
            coordinator.retention(),
            coordinator.membership(),
        );
        actix_rt::spawn(coordinator.run_until_stopped());
        let mut cluster = TestCluster {
            db,
            coordinator: coordinator_address,
            coordinator_handle,
            retention,
            membership,
            servers: Vec::new(),
            fleet: Fleet::spawn(),
            simulator: OnceCell::new(),
            drawn: Cell::new(0),
            http: client_with(&admin_token),
            admin_token,
            cluster_http: client_with(TEST_CLUSTER_TOKEN),
            _scratch: scratch,
        };
        for _ in 0..servers {
            cluster.add_server().await;
        }
        cluster
    }

    /// Starts one more monitor server on port 0.
    pub async fn add_server(&mut self) -> &TestServer {
        self.add_server_with_writer(WriterSettings::default()).await
    }

    /// Starts one more monitor server on port 0 whose writer batches as `writer` says.
    pub async fn add_server_with_writer(&mut self, writer: WriterSettings) -> &TestServer {
        self.add_server_with(writer, probe::AddressPolicy::default())
            .await
    }

    /// Starts one more monitor server on port 0 with this writer and address policy.
    pub async fn add_server_with(
        &mut self,
        writer: WriterSettings,
        policy: probe::AddressPolicy,
    ) -> &TestServer {
        let options = MonitorServerOptions {
            writer,
            ..MonitorServerOptions::default()
        };
        self.add_server_with_options(options, policy).await
    }

    /// Starts one more monitor server on port 0 with these options and address policy.
    pub async fn add_server_with_options(
        &mut self,
        options: MonitorServerOptions,
        policy: probe::AddressPolicy,
    ) -> &TestServer {
        let node = MonitorServerNode::build_with(
            self.db.clone(),
            "127.0.0.1:0".parse().unwrap(),
            None,
            cluster_token(),
            probe::standard(policy),
            options,
        )
        .await
        .unwrap();
        let server = TestServer {
            id: node.server_id(),
            address: node.address(),
            handle: node.handle(),
            supervisor: node.supervisor_arbiter(),
        };
        actix_rt::spawn(node.run_until_stopped());
        self.servers.push(server);
        self.servers.last().unwrap()
    }

    /// Heartbeats every 50 ms, a look every 250 ms, three missed looks: a dead node goes
    /// within a second, and a heartbeat held up by a loaded machine is not death.
    pub async fn fast_membership(&self) {
        let answer = self
            .put(
                "/api/v1/config",
                json!({"heartbeat_ms": 50, "validate_ms": 250, "missed_checks": 3}),
            )
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    }

    /// Stops a monitor server's HTTP API: from the coordinator's side it is down.
    pub async fn stop_server(&self, index: usize) {
        self.servers[index].handle.stop(false).await;
    }

    /// Stops the coordinator and starts a new one (new port) on the same database.
    pub async fn restart_coordinator(&mut self) {
        self.coordinator_handle.stop(true).await;
        let coordinator = Coordinator::build(
            self.db.clone(),
            "127.0.0.1:0".parse().unwrap(),
            cluster_token(),
            test_options(),
        )
        .unwrap();
        self.coordinator = coordinator.address();
        self.coordinator_handle = coordinator.handle();
        self.retention = coordinator.retention();
        self.membership = coordinator.membership();
        actix_rt::spawn(coordinator.run_until_stopped());
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.coordinator)
    }

    /// Calls `url` with `method` and an optional JSON body.
    pub async fn call_url(&self, method: Method, url: &str, body: Option<Value>) -> Answer {
        call(&self.http, method, url, body).await
    }

    /// Calls the coordinator with a body sent as given: any bytes, any content type
    /// (`None`: no `Content-Type` header at all). For bodies `send_json` cannot make.
    pub async fn call_raw(
        &self,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> Answer {
        let mut request = self.http.request(method, self.url(path));
        if let Some(content_type) = content_type {
            request = request.insert_header(("content-type", content_type));
        }
        read(request.send_body(body).await.unwrap()).await
    }

    /// GETs a text answer (an exposition) from the coordinator; fails on a non-200.
    pub async fn get_text(&self, path: &str) -> String {
        text_of(&self.http, &self.url(path)).await
    }

    /// GETs a text answer from monitor server `index`; fails on a non-200.
    pub async fn server_text(&self, index: usize, path: &str) -> String {
        let url = format!("http://{}{path}", self.servers[index].address);
        text_of(&self.cluster_http, &url).await
    }

    /// Waits until the coordinator is the cluster's master (master-only tasks run).
    pub async fn coordinator_is_master(&self) {
        eventually("the coordinator is master", || async {
            self.membership.send(IsMaster).await.unwrap().then_some(())
        })
        .await;
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.call_url(Method::GET, &self.url(path), None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Answer {
        self.call_url(Method::POST, &self.url(path), Some(body))
            .await
    }

    pub async fn post_empty(&self, path: &str) -> Answer {
        self.call_url(Method::POST, &self.url(path), None).await
    }

    pub async fn put(&self, path: &str, body: Value) -> Answer {
        self.call_url(Method::PUT, &self.url(path), Some(body))
            .await
    }

    pub async fn delete(&self, path: &str) -> Answer {
        self.call_url(Method::DELETE, &self.url(path), None).await
    }

    /// Calls a monitor server's own API.
    pub async fn server_call(
        &self,
        index: usize,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Answer {
        let url = format!("http://{}{path}", self.servers[index].address);
        call(&self.cluster_http, method, &url, body).await
    }

    /// `POST /api/v1/devices/{id}/start`.
    pub async fn start_device(&self, device_id: i64) -> Answer {
        self.post_empty(&format!("/api/v1/devices/{device_id}/start"))
            .await
    }

    /// `POST /api/v1/devices/{id}/stop`.
    pub async fn stop_device(&self, device_id: i64) -> Answer {
        self.post_empty(&format!("/api/v1/devices/{device_id}/stop"))
            .await
    }

    /// `POST /api/v1/companies/{id}/start`.
    pub async fn start_company(&self, company_id: i64) -> Answer {
        self.post_empty(&format!("/api/v1/companies/{company_id}/start"))
            .await
    }

    /// `POST /api/v1/companies/{id}/stop`.
    pub async fn stop_company(&self, company_id: i64) -> Answer {
        self.post_empty(&format!("/api/v1/companies/{company_id}/stop"))
            .await
    }

    /// Creates a company and returns its id.
    pub async fn company(&self, name: &str) -> i64 {
        let answer = self
            .post("/api/v1/companies", json!({ "name": name }))
            .await;
        assert_eq!(answer.status, StatusCode::CREATED, "{answer:?}");
        answer.body["id"].as_i64().unwrap()
    }

    /// Creates an `http` device pointing at the fleet's `/d/{name}` and returns its id.
    pub async fn device(&self, company_id: i64, name: &str) -> i64 {
        self.device_at(company_id, name, &self.fleet.url(&format!("/d/{name}")))
            .await
    }

    /// Creates an `http` device polling `address` and returns its id.
    pub async fn device_at(&self, company_id: i64, name: &str, address: &str) -> i64 {
        let body = json!({
            "company_id": company_id,
            "name": name,
            "address": address,
            "kind": "http",
        });
        let answer = self.post("/api/v1/devices", body).await;
        assert_eq!(answer.status, StatusCode::CREATED, "{answer:?}");
        answer.body["id"].as_i64().unwrap()
    }

    /// Creates `count` devices named `{prefix}-{n}` and returns their ids.
    pub async fn devices(&self, company_id: i64, prefix: &str, count: usize) -> Vec<i64> {
        let mut ids = Vec::with_capacity(count);
        for n in 0..count {
            ids.push(self.device(company_id, &format!("{prefix}-{n}")).await);
        }
        ids
    }

    /// Creates `count` devices of `kind` in one bulk call, each a device of the fleet
    /// simulator no other device of this cluster polls; answers their ids in order.
    pub async fn fleet_devices(&self, company_id: i64, count: usize, kind: DeviceKind) -> Vec<i64> {
        let simulator = self
            .simulator
            .get_or_init(|| TestFleet::calm(CLUSTER_FLEET_DEVICES));
        let first = self.drawn.get();
        self.drawn.set(first + count);
        let devices = simulator
            .device_list(company_id, kind, first..first + count)
            .await;
        create_in_bulk(&self.http, &self.url("/api/v1"), devices).await
    }

    /// The id of the server a device is monitored on, per `GET /api/v1/devices/{id}`.
    pub async fn monitored_on(&self, device_id: i64) -> Option<i64> {
        let answer = self.get(&format!("/api/v1/devices/{device_id}")).await;
        assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
        answer.body["monitoring"]["server_id"].as_i64()
    }

    /// Starts a device and returns the server it was placed on.
    pub async fn monitored_on_after_start(&self, device_id: i64) -> i64 {
        let answer = self.start_device(device_id).await;
        assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
        answer.body["results"][0]["server_id"].as_i64().unwrap()
    }

    /// Starts a copy of `device` straight on monitor server `index` under epoch 99,
    /// behind the scheduler's back (as a partition or a lost answer can leave one).
    pub async fn start_copy_on(&self, index: usize, device: i64, company: i64) {
        let body = json!({
            "device": {
                "id": device,
                "company_id": company,
                "name": "d",
                "address": self.fleet.url("/d/d"),
                "kind": "http",
            },
            "config": {
                "poll_interval_ms": TEST_POLL_INTERVAL_MS,
                "timeout_ms": 1000,
                "alert_threshold": 70,
                "critical_threshold": 90,
                "max_monitors_per_server": 1000,
            },
            "epoch": 99,
        });
        let answer = self
            .server_call(index, Method::POST, "/monitors", Some(body))
            .await;
        assert_eq!(answer.status, StatusCode::CREATED, "{answer:?}");
    }

    /// A second coordinator on this cluster's database; answers its API's base URL.
    pub async fn second_coordinator(&self) -> String {
        let second = Coordinator::build(
            self.db.clone(),
            "127.0.0.1:0".parse().unwrap(),
            cluster_token(),
            test_options(),
        )
        .unwrap();
        let url = format!("http://{}/api/v1", second.address());
        actix_rt::spawn(second.run_until_stopped());
        url
    }

    /// Device ids running on each monitor server, per its `/info`.
    pub async fn running(&self, index: usize) -> Vec<i64> {
        let info = self.server_call(index, Method::GET, "/info", None).await;
        assert_eq!(info.status, StatusCode::OK, "{info:?}");
        serde_json::from_value(info.body["device_ids"].clone()).unwrap()
    }
}

/// Calls `url` with `method` and an optional JSON body, on any client.
pub async fn call(client: &awc::Client, method: Method, url: &str, body: Option<Value>) -> Answer {
    let request = client.request(method, url);
    let sent = match body {
        Some(body) => request.send_json(&body).await,
        None => request.send().await,
    };
    read(sent.unwrap()).await
}

/// Asserts an error answer: `status`, and a body that is exactly
/// `{"error": "<one sentence>", "code": code}`, nothing more.
async fn text_of(client: &awc::Client, url: &str) -> String {
    let mut response = client.get(url).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK, "GET {url}");
    let body = response.body().limit(16 << 20).await.unwrap();
    String::from_utf8(body.to_vec()).unwrap()
}

#[track_caller]
pub fn assert_error(answer: &Answer, status: StatusCode, code: &str) {
    assert_eq!(answer.status, status, "{answer:?}");
    let body = answer
        .body
        .as_object()
        .unwrap_or_else(|| panic!("the error body is not a JSON object: {answer:?}"));
    let mut keys: Vec<&str> = body.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["code", "error"], "{answer:?}");
    assert_eq!(body["code"], code, "{answer:?}");
    let sentence = body["error"]
        .as_str()
        .unwrap_or_else(|| panic!("\"error\" is not a string: {answer:?}"));
    assert!(
        !sentence.trim().is_empty() && !sentence.contains('\n'),
        "\"error\" is not one sentence: {answer:?}"
    );
}

async fn read<S>(mut response: awc::ClientResponse<S>) -> Answer
where
    S: futures_util::stream::Stream<Item = Result<actix_web::web::Bytes, awc::error::PayloadError>>
        + Unpin,
{
    let status = response.status();
    let bytes = response.body().limit(64 * 1024 * 1024).await.unwrap();
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            panic!(
                "{status}: body is not JSON ({e}): {}",
                String::from_utf8_lossy(&bytes)
            )
        })
    };
    Answer { status, body }
}

/// Waits until `check` returns `Some`, polling; panics with `what` after [`PATIENCE`].
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "gave up waiting: {what}");
        actix_rt::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Whether the test partner at `path` (from Debian's package `package`) is installed.
/// Under `CI=true` a missing one fails `test`: `.ci/run` installs it, so a CI run never
/// skips a test for want of it. Elsewhere the skip is reported on stderr.
pub fn tool_installed(test: &str, path: &str, package: &str) -> bool {
    if std::path::Path::new(path).exists() {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "CI=true but {path} is not installed: {test} must not be skipped \
         (`apt-get install {package}`; .ci/run does it)"
    );
    // One write, straight to stderr: libtest swallows eprintln! of passing tests.
    let line =
        format!("skipped {test}: {path} is not installed; `apt-get install {package}` to run it\n");
    let _ = std::io::stderr().write_all(line.as_bytes());
    false
}

/// Where Debian's `prometheus` package puts promtool.
pub const PROMTOOL: &str = "/usr/bin/promtool";

/// Feeds an exposition to `promtool check metrics` (names, units, `_total` on counters,
/// HELP on every family) when Prometheus's tools are installed; `None` when they are not
/// (see [`tool_installed`]).
pub fn promtool_accepts(text: &str) -> Option<()> {
    let findings = promtool_findings(text)?;
    assert!(
        findings.is_empty(),
        "promtool refused the exposition:\n{}\n{text}",
        findings.join("\n")
    );
    Some(())
}

/// What `promtool check metrics` finds in an exposition that parses: the lint
/// findings, one a line (none: it passes). Fails the test when promtool cannot parse
/// it. `None` when promtool is not installed (see [`tool_installed`]).
pub fn promtool_findings(text: &str) -> Option<Vec<String>> {
    use std::io::Write;
    use std::process::{Command, Stdio};
    /// promtool's exit code for an exposition that parses but has lint findings.
    const LINT_FINDINGS: i32 = 3;
    if !tool_installed("promtool check metrics", PROMTOOL, "prometheus") {
        return None;
    }
    let mut child = Command::new(PROMTOOL)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() || out.status.code() == Some(LINT_FINDINGS),
        "promtool could not read the exposition ({}):\n{said}\n{text}",
        out.status
    );
    Some(said.lines().map(String::from).collect())
}

/// Records `device_id` as placed under `epoch` (on no server), so that the fenced
/// inserts of the metrics writer take what is reported under that epoch.
pub async fn place(db: &Db, device_id: i64, epoch: i64) {
    use diesel::prelude::*;
    use vigil::db::schema::assignments;
    db.run(move |conn| {
        diesel::delete(assignments::table.find(device_id)).execute(conn)?;
        diesel::insert_into(assignments::table)
            .values((
                assignments::device_id.eq(device_id),
                assignments::server_id.eq(None::<i64>),
                assignments::epoch.eq(epoch),
            ))
            .execute(conn)?;
        Ok(())
    })
    .await
    .unwrap();
}

/// A new company named `name` with one device, placed under `epoch`:
/// `(company id, device id)`.
pub async fn placed_device(db: &Db, name: &str, epoch: i64) -> (i64, i64) {
    let name = name.to_string();
    let (company, device) = db
        .run(move |conn| {
            let company = db::companies::create(conn, &name)?;
            let device = db::devices::create(
                conn,
                &db::models::NewDevice {
                    company_id: company.id,
                    name: &name,
                    address: "http://127.0.0.1:9/",
                    kind: "http",
                    enabled: true,
                    expected_status: None,
                },
            )?;
            Ok((company.id, device.id))
        })
        .await
        .unwrap();
    place(db, device, epoch).await;
    (company, device)
}
