//! The agent's HTTP server: `GET /metrics.json`, `GET /metrics` and `/healthz`, all
//! answered from the collector's latest sample, so a request never waits on sampling.

use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use actix_web::dev::{Server, ServerHandle};
use actix_web::http::header::RETRY_AFTER;
use actix_web::{web, App, HttpResponse, HttpServer};

use actix_web::http::StatusCode;
use actix_web::HttpRequest;
use serde_json::json;

use super::collect::{CollectError, Collector, Latest, NoSample};
use crate::metrics::exposition::CONTENT_TYPE;

/// One worker: a scraper calls every few seconds, and each answer is a copy of a
/// sample already taken.
const HTTP_WORKERS: usize = 1;

/// Why an agent could not start. The agent runs on monitored hosts and links nothing
/// of the database or the monitoring runtime: this is its own error type.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("cannot listen on {address}: {source}")]
    Bind {
        address: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot start the HTTP server: {0}")]
    Server(std::io::Error),
    #[error(transparent)]
    Collector(#[from] CollectError),
}

/// A running agent: the collector thread and the HTTP server that reads from it. The
/// collector lives as long as this value, or as long as [`Agent::run_until_stopped`]
/// runs.
pub struct Agent {
    address: SocketAddr,
    server: Server,
    /// Kept here so the sampling thread ends when the agent does.
    collector: Collector,
}

impl Agent {
    /// Binds `listen` (port 0 picks a free port) and starts, as [`Agent::start`].
    pub fn build(listen: SocketAddr, interval: Duration) -> Result<Agent, AgentError> {
        let listener = TcpListener::bind(listen).map_err(|source| AgentError::Bind {
            address: listen,
            source,
        })?;
        Agent::start(listener, interval)
    }

    /// Starts sampling every `interval` (at least [`super::MIN_INTERVAL`]) and serves
    /// on `listener`. Must be called inside a running actix system; returns at once,
    /// and the endpoints answer 503 `no_sample_yet` until the first sample is in.
    pub fn start(listener: TcpListener, interval: Duration) -> Result<Agent, AgentError> {
        let address = listener.local_addr().map_err(AgentError::Server)?;
        let collector = Collector::start(interval)?;
        let latest = web::Data::new(collector.latest());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(latest.clone())
                .configure(routes)
                .default_service(web::to(no_route))
        })
        .workers(HTTP_WORKERS)
        .disable_signals()
        .listen(listener)
        .map_err(AgentError::Server)?
        .run();
        tracing::info!(
            %address,
            interval_ms = collector.interval().as_millis() as u64,
            "agent is serving http://{address}"
        );
        Ok(Agent {
            address,
            server,
            collector,
        })
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    /// A reader of the latest sample, for callers in the same process.
    pub fn latest(&self) -> Latest {
        self.collector.latest()
    }

    /// Serves until the server is stopped (through [`Agent::handle`]), then stops the
    /// collector.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let Agent {
            server, collector, ..
        } = self;
        let ended = server.await;
        // Dropping ends the thread at once (it waits on a channel this closes); not
        // joined, so the event loop never waits on a sysinfo refresh.
        drop(collector);
        ended
    }
}

/// The agent's route table; handlers read a [`Latest`] from the app data.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/metrics.json").route(web::get().to(metrics_json)))
        .service(resource("/metrics").route(web::get().to(metrics)))
        .service(
            resource("/healthz")
                .route(web::get().to(healthz))
                .route(web::head().to(healthz)),
        );
}

/// A resource whose unserved methods answer 405 with a JSON body.
pub fn resource(path: &str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(wrong_method))
}

/// The JSON error body every Vigil server sends (DESIGN.md).
pub fn json_error(status: StatusCode, code: &str, message: String) -> HttpResponse {
    HttpResponse::build(status).json(json!({ "error": message, "code": code }))
}

/// The default service: 404 with a JSON body naming the method and path.
pub async fn no_route(req: HttpRequest) -> HttpResponse {
    let message = format!("no route for {} {}", req.method(), req.path());
    json_error(StatusCode::NOT_FOUND, "not_found", message)
}

async fn wrong_method(req: HttpRequest) -> HttpResponse {
    let message = format!("{} does not take {}", req.path(), req.method());
    json_error(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        message,
    )
}

/// `GET /healthz`: the agent is up and serving.
async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

/// `GET /metrics.json`: the latest [`AgentReport`](super::AgentReport).
async fn metrics_json(latest: web::Data<Latest>) -> HttpResponse {
    match latest.get() {
        Ok(report) => HttpResponse::Ok().json(&*report),
        Err(why) => no_sample(why),
    }
}

/// `GET /metrics`: the latest sample in the Prometheus text format.
async fn metrics(latest: web::Data<Latest>) -> HttpResponse {
    match latest.get() {
        Ok(report) => HttpResponse::Ok()
            .content_type(CONTENT_TYPE)
            .body(report.to_exposition()),
        Err(why) => no_sample(why),
    }
}

fn no_sample(why: NoSample) -> HttpResponse {
    let (code, message) = match why {
        NoSample::NotYet => (
            "no_sample_yet",
            "the agent has not finished its first sample yet; try again in a second",
        ),
        NoSample::Stopped => (
            "collector_stopped",
            "the agent's collector has stopped; the agent's log says why",
        ),
    };
    let mut answer = json_error(StatusCode::SERVICE_UNAVAILABLE, code, message.into());
    answer.headers_mut().insert(
        RETRY_AFTER,
        actix_web::http::header::HeaderValue::from_static("1"),
    );
    answer
}

#[cfg(test)]
mod tests {
    use actix_web::http::StatusCode;
    use actix_web::test;
    use serde_json::Value;

    use super::*;

    async fn get(latest: Latest, path: &str) -> (StatusCode, Value) {
        let app = test::init_service(
            App::new()
                .app_data(web::Data::new(latest))
                .configure(routes)
                .default_service(web::to(no_route)),
        )
        .await;
        let response =
            test::call_service(&app, test::TestRequest::get().uri(path).to_request()).await;
        let status = response.status();
        let body: Value = test::read_body_json(response).await;
        (status, body)
    }

    #[actix_web::test]
    async fn before_the_first_sample_both_endpoints_answer_503_no_sample_yet() {
        let (_publish, latest) = Latest::channel();
        for path in ["/metrics.json", "/metrics"] {
            let (status, body) = get(latest.clone(), path).await;
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{path}: {body}");
            assert_eq!(body["code"], "no_sample_yet", "{path}: {body}");
            assert!(body["error"].as_str().unwrap().contains("first sample"));
        }
    }

    #[actix_web::test]
    async fn a_gone_collector_answers_503_rather_than_a_stale_sample() {
        let (publish, latest) = Latest::channel();
        publish.send_replace(Some(std::sync::Arc::new(sample())));
        let (status, body) = get(latest.clone(), "/metrics.json").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["hostname"], "box");
        drop(publish);
        let (status, body) = get(latest, "/metrics").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert_eq!(body["code"], "collector_stopped");
    }

    fn sample() -> super::super::AgentReport {
        serde_json::from_value(serde_json::json!({
            "hostname": "box",
            "agent_version": "0.1.0",
            "collected_at": "2026-01-01T00:00:00Z",
            "interval_ms": 1000,
            "uptime_seconds": 5,
            "load_average": {"one": 0.0, "five": 0.0, "fifteen": 0.0},
            "cpu": {"usage_percent": 1.0, "cores": []},
            "memory": {"used_bytes": 1, "total_bytes": 2, "usage_percent": 50.0},
            "swap": {"used_bytes": 0, "total_bytes": 0, "usage_percent": 0.0},
            "networks": [],
            "disks": [],
            "temperatures": []
        }))
        .unwrap()
    }
}
