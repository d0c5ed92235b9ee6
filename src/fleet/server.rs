//! The fleet's HTTP server: every device's routes under `/d/{i}/`, the device list,
//! the state control and `/healthz`, built from a bound listener.

use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix_web::dev::{Server, ServerHandle};
use actix_web::http::header::{HeaderValue, RETRY_AFTER};
use actix_web::http::StatusCode;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer, ResponseError};
use serde::{Deserialize, Serialize};

use super::control::{Control, Controls};
use super::devices::{base_url, device_name, DeviceList};
use super::model::{Answer, Band, Reading, Setting};
use super::node_exporter::{Reference, Templates};
use super::options::{document_kind, FleetError, FleetOptions};
use super::profile::{mix, unit, Class, Profile, Shares};
use super::report::agent_report;
use crate::agent::{json_error, no_route, resource};
use crate::domain::DeviceKind;
use crate::metrics::exposition::CONTENT_TYPE;

/// Room for a node_exporter body: a device with the most cores, mounts and sensors
/// writes about 70 KB; one allocation serves the whole body.
const BODY_CAPACITY: usize = 80 * 1024;

/// Why a request gets no document: each answered as `{"error", "code"}` with its status.
#[derive(Debug, thiserror::Error)]
enum Refusal {
    #[error("no device {raw:?}: this fleet has devices 0 to {last}")]
    NoSuchDevice { raw: String, last: usize },
    #[error("a simulated failure (--error-rate)")]
    Simulated,
    /// 503, so Vigil and Prometheus count a failed scrape while the connection stays
    /// open for the other devices on this port.
    #[error("{0} is unreachable (simulated)")]
    Unreachable(String),
    #[error(
        "the body must be {{\"state\": \"normal\"}}, or alert, critical, unreachable, slow or auto"
    )]
    BadState,
    #[error("{message}")]
    BadQuery { code: &'static str, message: String },
}

impl Refusal {
    fn code(&self) -> &'static str {
        match self {
            Refusal::NoSuchDevice { .. } => "no_such_device",
            Refusal::Simulated => "simulated_error",
            Refusal::Unreachable(_) => "device_unreachable",
            Refusal::BadState => "bad_state",
            Refusal::BadQuery { code, .. } => code,
        }
    }
}

impl ResponseError for Refusal {
    fn status_code(&self) -> StatusCode {
        match self {
            Refusal::NoSuchDevice { .. } => StatusCode::NOT_FOUND,
            Refusal::Simulated => StatusCode::INTERNAL_SERVER_ERROR,
            Refusal::Unreachable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Refusal::BadState | Refusal::BadQuery { .. } => StatusCode::BAD_REQUEST,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut answer = json_error(self.status_code(), self.code(), self.to_string());
        if let Refusal::Unreachable(_) = self {
            answer.headers_mut().insert(
                RETRY_AFTER,
                HeaderValue::from_static(UNREACHABLE_RETRY_AFTER),
            );
        }
        answer
    }
}

/// What an unreachable device tells a client to wait, seconds.
const UNREACHABLE_RETRY_AFTER: &str = "10";

/// A running fleet: the HTTP server and what it serves.
pub struct Fleet {
    address: SocketAddr,
    base_url: String,
    server: Server,
}

/// What every worker reads: the options, the templates, the forced states.
struct Simulation {
    devices: usize,
    seed: u64,
    shares: Shares,
    latency: Duration,
    slow: Duration,
    error_rate: f64,
    /// `http://HOST:PORT` of the device list's addresses.
    base_url: String,
    templates: Templates,
    controls: Controls,
    /// Requests answered so far, for `--error-rate`'s draws.
    requests: AtomicU64,
}

impl Fleet {
    /// Binds `options.listen` (port 0 picks a free port) and starts, as [`Fleet::start`].
    pub fn build(options: FleetOptions) -> Result<Fleet, FleetError> {
        options.validate()?;
        let listener = TcpListener::bind(options.listen).map_err(|source| FleetError::Bind {
            address: options.listen,
            source,
        })?;
        Fleet::start(listener, options)
    }

    /// Serves `options.devices` devices on `listener` and writes the device list when
    /// asked to. Must be called inside a running actix system; returns at once.
    pub fn start(listener: TcpListener, options: FleetOptions) -> Result<Fleet, FleetError> {
        options.validate()?;
        let address = listener.local_addr().map_err(FleetError::Server)?;
        let base_url = base_url(options.advertise.as_deref(), address);
        let reference = Reference::builtin().map_err(FleetError::Reference)?;
        if let Some(path) = &options.write_devices {
            let list = DeviceList {
                base: &base_url,
                count: options.devices,
                kind: options.kind,
                company_id: None,
            };
            list.write_to(path)
                .map_err(|source| FleetError::WriteDevices {
                    path: path.clone(),
                    source,
                })?;
            tracing::info!(
                path = %path.display(),
                devices = options.devices,
                kind = %options.kind,
                "wrote the device list"
            );
        }
        let simulation = web::Data::new(Simulation {
            devices: options.devices,
            seed: options.seed,
            shares: options.shares,
            latency: Duration::from_millis(options.latency_ms),
            slow: Duration::from_millis(options.slow_ms),
            error_rate: options.error_rate,
            base_url: base_url.clone(),
            templates: Templates::new(reference),
            controls: Controls::default(),
            requests: AtomicU64::new(0),
        });
        let server = HttpServer::new(move || {
            App::new()
                .app_data(simulation.clone())
                .configure(routes)
                .default_service(web::to(no_route))
        })
        .workers(options.workers)
        .disable_signals()
        .listen(listener)
        .map_err(FleetError::Server)?
        .run();
        tracing::info!(
            %address,
            devices = options.devices,
            seed = options.seed,
            workers = options.workers,
            latency_ms = options.latency_ms,
            error_rate = options.error_rate,
            slow_ms = options.slow_ms,
            "fleet is serving {} devices at {base_url}/d/{{0..{}}}/ (metrics.json, metrics, agent-metrics, state), list at {base_url}/devices.json",
            options.devices,
            options.devices - 1,
        );
        Ok(Fleet {
            address,
            base_url,
            server,
        })
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// `http://HOST:PORT` as the device list writes it.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    /// Serves until stopped through [`Fleet::handle`].
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }
}

/// The fleet's route table; handlers read the [`Simulation`] from the app data.
fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/d/{index}/metrics.json").route(web::get().to(metrics_json)))
        .service(resource("/d/{index}/metrics").route(web::get().to(node_exporter)))
        .service(resource("/d/{index}/agent-metrics").route(web::get().to(agent_metrics)))
        .service(
            resource("/d/{index}/state")
                .route(web::get().to(get_state))
                .route(web::put().to(put_state)),
        )
        .service(resource("/devices.json").route(web::get().to(devices)))
        .service(
            resource("/healthz")
                .route(web::get().to(healthz))
                .route(web::head().to(healthz)),
        );
}

/// Unix time now, in seconds.
fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |since| since.as_secs_f64())
}

/// A device being answered: its profile, its control and the moment it is read at.
struct Device {
    profile: Profile,
    control: Control,
    time: f64,
}

impl Device {
    fn reading(&self) -> Reading<'_> {
        Reading::at(
            &self.profile,
            self.control.setting,
            &self.control.anchor,
            self.time,
        )
    }

    fn name(&self) -> String {
        device_name(self.profile.index)
    }
}

impl Simulation {
    /// The device the request's `{index}` names.
    fn device(&self, req: &HttpRequest) -> Result<Profile, Refusal> {
        let raw = req.match_info().get("index").unwrap_or_default();
        match raw.parse::<usize>() {
            Ok(index) if index < self.devices => Ok(Profile::of(self.seed, &self.shares, index)),
            _ => Err(Refusal::NoSuchDevice {
                raw: raw.to_string(),
                last: self.devices - 1,
            }),
        }
    }

    /// What a metrics route does before its document: the added latency, a simulated
    /// error, the device's unreachable or slow episode. `Ok` carries the device to
    /// read, at the moment the answer goes.
    async fn prepare(&self, req: &HttpRequest) -> Result<Device, Refusal> {
        let profile = self.device(req)?;
        if !self.latency.is_zero() {
            actix_rt::time::sleep(self.latency).await;
        }
        if self.error_rate > 0.0 {
            let draw = self.requests.fetch_add(1, Ordering::Relaxed);
            if unit(mix(self.seed ^ mix(draw))) < self.error_rate {
                return Err(Refusal::Simulated);
            }
        }
        let control = self.controls.get(profile.index);
        let uptime = now() - profile.boot_time;
        match profile.answer(control.setting, uptime) {
            Answer::Now => {}
            Answer::Slowly => actix_rt::time::sleep(self.slow).await,
            Answer::Unavailable => return Err(Refusal::Unreachable(device_name(profile.index))),
        }
        Ok(Device {
            profile,
            control,
            time: now(),
        })
    }
}

/// `GET /d/{i}/metrics.json`: the agent's JSON document.
async fn metrics_json(
    req: HttpRequest,
    sim: web::Data<Simulation>,
) -> Result<HttpResponse, Refusal> {
    let device = sim.prepare(&req).await?;
    Ok(HttpResponse::Ok().json(agent_report(&device.reading(), &device.name())))
}

/// `GET /d/{i}/metrics`: node_exporter's text.
async fn node_exporter(
    req: HttpRequest,
    sim: web::Data<Simulation>,
) -> Result<HttpResponse, Refusal> {
    let device = sim.prepare(&req).await?;
    let template = sim.templates.get(device.profile.shape());
    let mut body = String::with_capacity(BODY_CAPACITY);
    template.render(&device.reading(), &device.name(), &mut body);
    Ok(HttpResponse::Ok().content_type(CONTENT_TYPE).body(body))
}

/// `GET /d/{i}/agent-metrics`: the agent's own Prometheus text of the same reading.
async fn agent_metrics(
    req: HttpRequest,
    sim: web::Data<Simulation>,
) -> Result<HttpResponse, Refusal> {
    let device = sim.prepare(&req).await?;
    let report = agent_report(&device.reading(), &device.name());
    Ok(HttpResponse::Ok()
        .content_type(CONTENT_TYPE)
        .body(report.to_exposition()))
}

/// What `GET` and `PUT /d/{i}/state` answer.
#[derive(Debug, Serialize)]
struct StateView {
    index: usize,
    name: String,
    /// The device's class (what its episodes do).
    profile: Class,
    /// What it was forced into, or `auto`.
    state: Setting,
    /// What it shows now: normal, alert or critical by its readings against Vigil's
    /// default thresholds, or unreachable, or slow.
    now: Showing,
}

#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "snake_case")]
enum Showing {
    Normal,
    Alert,
    Critical,
    Unreachable,
    Slow,
}

fn state_view(profile: Profile, control: Control) -> StateView {
    let device = Device {
        profile,
        control,
        time: now(),
    };
    let reading = device.reading();
    let now = match device.profile.answer(control.setting, reading.uptime) {
        Answer::Unavailable => Showing::Unreachable,
        Answer::Slowly => Showing::Slow,
        Answer::Now => match reading.band() {
            Band::Normal => Showing::Normal,
            Band::Alert => Showing::Alert,
            Band::Critical => Showing::Critical,
        },
    };
    StateView {
        index: device.profile.index,
        name: device.name(),
        profile: device.profile.class,
        state: control.setting,
        now,
    }
}

/// `GET /d/{i}/state`.
async fn get_state(req: HttpRequest, sim: web::Data<Simulation>) -> Result<HttpResponse, Refusal> {
    let profile = sim.device(&req)?;
    let control = sim.controls.get(profile.index);
    Ok(HttpResponse::Ok().json(state_view(profile, control)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StateBody {
    state: Setting,
}

/// `PUT /d/{i}/state` with `{"state": "normal|alert|critical|unreachable|slow|auto"}`.
async fn put_state(
    req: HttpRequest,
    body: web::Bytes,
    sim: web::Data<Simulation>,
) -> Result<HttpResponse, Refusal> {
    let profile = sim.device(&req)?;
    let StateBody { state } = serde_json::from_slice(&body).map_err(|_| Refusal::BadState)?;
    let control = sim.controls.set(&profile, state, now());
    tracing::info!(
        device.index = profile.index,
        state = ?state,
        "device {} is now {state:?}",
        device_name(profile.index)
    );
    Ok(HttpResponse::Ok().json(state_view(profile, control)))
}

/// `GET /devices.json?kind=agent|prometheus[&company_id=C]`: the bulk API's body.
async fn devices(req: HttpRequest, sim: web::Data<Simulation>) -> Result<HttpResponse, Refusal> {
    let mut kind = DeviceKind::Agent;
    let mut company_id = None;
    for (key, value) in url::form_urlencoded::parse(req.query_string().as_bytes()) {
        match key.as_ref() {
            "kind" => {
                kind = document_kind(&value).map_err(|why| Refusal::BadQuery {
                    code: "bad_kind",
                    message: format!("kind: {why}"),
                })?;
            }
            "company_id" => {
                let id = value.parse::<i64>().map_err(|_| Refusal::BadQuery {
                    code: "bad_company_id",
                    message: format!("company_id must be a whole number (got {value:?})"),
                })?;
                company_id = Some(id);
            }
            other => {
                return Err(Refusal::BadQuery {
                    code: "unknown_parameter",
                    message: format!(
                        "unknown query parameter {other:?}: this takes kind and company_id"
                    ),
                })
            }
        }
    }
    let list = DeviceList {
        base: &sim.base_url,
        count: sim.devices,
        kind,
        company_id,
    };
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .body(list.to_json()))
}

/// `GET /healthz`: the fleet is up and serving.
async fn healthz(sim: web::Data<Simulation>) -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "status": "ok", "devices": sim.devices }))
}

#[cfg(test)]
mod tests {
    use actix_web::test;
    use serde_json::Value;

    use super::*;

    /// A fleet of `devices` calm devices (no episodes) as a test service.
    macro_rules! app {
        ($devices:expr) => {
            test::init_service(
                App::new()
                    .app_data(web::Data::new(Simulation {
                        devices: $devices,
                        seed: 1,
                        shares: Shares::parse("0,0,0,0").unwrap(),
                        latency: Duration::ZERO,
                        slow: Duration::from_millis(1),
                        error_rate: 0.0,
                        base_url: "http://fleet:1".into(),
                        templates: Templates::new(Reference::builtin().unwrap()),
                        controls: Controls::default(),
                        requests: AtomicU64::new(0),
                    }))
                    .configure(routes)
                    .default_service(web::to(no_route)),
            )
            .await
        };
    }

    #[actix_web::test]
    async fn out_of_range_and_malformed_devices_are_json_404s() {
        let app = app!(3);
        for path in [
            "/d/3/metrics",
            "/d/-1/metrics.json",
            "/d/x/state",
            "/d/1/nothing",
        ] {
            let response =
                test::call_service(&app, test::TestRequest::get().uri(path).to_request()).await;
            assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
            let body: Value = test::read_body_json(response).await;
            assert!(
                body["error"].is_string() && body["code"].is_string(),
                "{body}"
            );
        }
        let response = test::call_service(
            &app,
            test::TestRequest::post().uri("/d/0/metrics").to_request(),
        )
        .await;
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    }

    #[actix_web::test]
    async fn a_bad_state_or_query_is_a_json_400() {
        let app = app!(3);
        for body in [
            r#"{"state": "asleep"}"#,
            "{}",
            "not json",
            r#"{"state":"auto","x":1}"#,
        ] {
            let request = test::TestRequest::put()
                .uri("/d/0/state")
                .set_payload(body)
                .to_request();
            let response = test::call_service(&app, request).await;
            assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{body}");
            let answer: Value = test::read_body_json(response).await;
            assert_eq!(answer["code"], "bad_state");
        }
        for (query, code) in [
            ("kind=http", "bad_kind"),
            ("company_id=x", "bad_company_id"),
            ("colour=red", "unknown_parameter"),
        ] {
            let uri = format!("/devices.json?{query}");
            let response =
                test::call_service(&app, test::TestRequest::get().uri(&uri).to_request()).await;
            assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{query}");
            let answer: Value = test::read_body_json(response).await;
            assert_eq!(answer["code"], code);
        }
    }

    #[actix_web::test]
    async fn a_forced_device_shows_its_state_and_unreachable_answers_503() {
        let app = app!(3);
        let put = |state: &str| {
            test::TestRequest::put()
                .uri("/d/2/state")
                .set_payload(format!(r#"{{"state": "{state}"}}"#))
                .to_request()
        };
        let view: Value = test::call_and_read_body_json(&app, put("critical")).await;
        assert_eq!(view["state"], "critical");
        assert_eq!(view["now"], "critical");
        assert_eq!(view["name"], "fleet-00002");
        let view: Value = test::call_and_read_body_json(&app, put("unreachable")).await;
        assert_eq!(view["now"], "unreachable");
        for path in ["/d/2/metrics", "/d/2/metrics.json", "/d/2/agent-metrics"] {
            let response =
                test::call_service(&app, test::TestRequest::get().uri(path).to_request()).await;
            assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE, "{path}");
        }
        let view: Value = test::call_and_read_body_json(&app, put("auto")).await;
        assert_eq!(
            (view["state"].as_str(), view["now"].as_str()),
            (Some("auto"), Some("normal"))
        );
        let response = test::call_service(
            &app,
            test::TestRequest::get().uri("/d/2/metrics").to_request(),
        )
        .await;
        assert_eq!(response.status(), StatusCode::OK);
    }
}
