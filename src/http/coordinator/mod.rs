//! The coordinator's REST API under `/api/v1`: one route table, thin handlers that
//! parse, call the scheduler or a db function, and map the answer.

mod cluster;
mod companies;
mod devices;
mod events;
mod exposition;
mod history;
mod input;
pub mod lists;
pub mod live;
mod meta;
mod monitor_servers;
mod openapi;
#[cfg(test)]
mod property_tests;
mod queue;
mod settings;
pub mod state;
mod store;
mod tokens;
pub mod views;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::middleware::{from_fn, Next};
use actix_web::web;

use crate::http::auth::require_token;
use crate::http::extract::{json_config_up_to, resource};

pub use self::state::AppState;

/// One route of the coordinator: method, path (the same in actix and in OpenAPI), and
/// how to build its handler's route. [`routes`] registers exactly these, so the table
/// is the router, and a test holds it against the OpenAPI document.
pub struct Endpoint {
    pub method: Method,
    pub path: &'static str,
    route: fn() -> actix_web::Route,
    /// The largest JSON body the route takes, where it is not the
    /// [`MAX_JSON_BYTES`](crate::http::extract::MAX_JSON_BYTES) of every other route.
    body_limit: Option<usize>,
}

macro_rules! endpoint {
    ($method:ident $path:literal => $handler:path) => {
        endpoint!(@build $method $path => $handler, None)
    };
    ($method:ident $path:literal => $handler:path, body up to $limit:expr) => {
        endpoint!(@build $method $path => $handler, Some($limit))
    };
    (@build $method:ident $path:literal => $handler:path, $limit:expr) => {
        Endpoint {
            method: Method::$method,
            path: $path,
            route: || web::route().method(Method::$method).to($handler),
            body_limit: $limit,
        }
    };
}

/// Open to anyone: the index, the health check and the API's description.
fn public_endpoints() -> Vec<Endpoint> {
    vec![
        endpoint!(GET "/" => meta::index),
        endpoint!(GET "/healthz" => crate::http::healthz),
        endpoint!(HEAD "/healthz" => crate::http::healthz_head),
        endpoint!(GET "/api/v1/openapi.json" => openapi::document),
    ]
}

/// Behind an API token.
fn token_endpoints() -> Vec<Endpoint> {
    vec![
        endpoint!(GET "/metrics" => exposition::metrics),
        endpoint!(GET "/debug/actors" => meta::debug_actors),
        endpoint!(GET "/api/v1/tokens" => tokens::list),
        endpoint!(POST "/api/v1/tokens" => tokens::create),
        endpoint!(GET "/api/v1/tokens/{id}" => tokens::get),
        endpoint!(DELETE "/api/v1/tokens/{id}" => tokens::revoke),
        endpoint!(GET "/api/v1/companies" => companies::list),
        endpoint!(POST "/api/v1/companies" => companies::create),
        endpoint!(GET "/api/v1/companies/{id}" => companies::get),
        endpoint!(DELETE "/api/v1/companies/{id}" => companies::delete),
        endpoint!(POST "/api/v1/companies/{id}/start" => companies::start),
        endpoint!(POST "/api/v1/companies/{id}/stop" => companies::stop),
        endpoint!(GET "/api/v1/devices" => devices::list),
        endpoint!(POST "/api/v1/devices" => devices::create),
        // Before `/devices/{id}`: actix tries resources in order, and `{id}` would take
        // `bulk` (answering it 405).
        endpoint!(POST "/api/v1/devices/bulk" => devices::bulk::create,
            body up to devices::bulk::MAX_BODY_BYTES),
        endpoint!(GET "/api/v1/devices/{id}" => devices::get),
        endpoint!(PUT "/api/v1/devices/{id}" => devices::update),
        endpoint!(DELETE "/api/v1/devices/{id}" => devices::delete),
        endpoint!(POST "/api/v1/devices/{id}/start" => devices::start),
        endpoint!(POST "/api/v1/devices/{id}/stop" => devices::stop),
        endpoint!(GET "/api/v1/devices/{id}/metrics" => history::history),
        endpoint!(GET "/api/v1/devices/{id}/metrics/latest" => history::latest),
        endpoint!(GET "/api/v1/events" => events::list),
        endpoint!(GET "/api/v1/store" => store::stats),
        endpoint!(GET "/api/v1/cluster" => cluster::cluster),
        endpoint!(GET "/api/v1/config" => settings::get),
        endpoint!(PUT "/api/v1/config" => settings::update),
        endpoint!(GET "/api/v1/monitor-servers" => monitor_servers::list),
        endpoint!(GET "/api/v1/monitor-servers/{id}" => monitor_servers::get),
        endpoint!(DELETE "/api/v1/monitor-servers/{id}" => monitor_servers::delete),
        endpoint!(GET "/api/v1/collectors" => queue::list),
        endpoint!(POST "/api/v1/collectors" => queue::create),
        endpoint!(GET "/api/v1/collectors/{id}" => queue::get),
        endpoint!(PUT "/api/v1/collectors/{id}" => queue::update),
        endpoint!(DELETE "/api/v1/collectors/{id}" => queue::delete),
        endpoint!(POST "/api/v1/collectors/{id}/run" => queue::run),
        endpoint!(GET "/api/v1/queue" => queue::queue),
        endpoint!(PUT "/api/v1/queue/config" => queue::configure),
        endpoint!(POST "/api/v1/queue/pause" => queue::pause),
        endpoint!(POST "/api/v1/queue/resume" => queue::resume),
        endpoint!(GET "/api/v1/jobs" => queue::jobs),
        endpoint!(GET "/api/v1/jobs/{id}" => queue::job),
        endpoint!(DELETE "/api/v1/jobs/{id}" => queue::remove),
        endpoint!(POST "/api/v1/jobs/{id}/move" => queue::move_job),
        endpoint!(POST "/api/v1/jobs/{id}/force" => queue::force),
        endpoint!(POST "/api/v1/jobs/{id}/stop" => queue::stop),
        endpoint!(GET "/api/v1/jobs/{id}/report" => queue::report),
        endpoint!(GET "/api/v1/jobs/{id}/export" => queue::export),
        endpoint!(GET "/api/v1/jobs/{id}/output" => queue::output),
    ]
}

/// Every `(method, path)` the coordinator serves.
pub fn endpoints() -> Vec<(Method, &'static str)> {
    public_endpoints()
        .into_iter()
        .chain(token_endpoints())
        .map(|e| (e.method, e.path))
        .collect()
}

/// The endpoints as resources, one per path (in first-seen order, `prefix` taken off
/// the path), each answering 405 in JSON to the methods it does not serve, and taking
/// the larger body its endpoints allow, if any.
fn resources(endpoints: Vec<Endpoint>, prefix: &str) -> Vec<actix_web::Resource> {
    let mut paths: Vec<(&'static str, Vec<Endpoint>)> = Vec::new();
    for endpoint in endpoints {
        match paths.iter_mut().find(|(path, _)| *path == endpoint.path) {
            Some((_, same)) => same.push(endpoint),
            None => paths.push((endpoint.path, vec![endpoint])),
        }
    }
    paths
        .into_iter()
        .map(|(path, endpoints)| {
            let path = path.strip_prefix(prefix).unwrap_or(path);
            let mut resource = resource(path);
            if let Some(limit) = endpoints.iter().filter_map(|e| e.body_limit).max() {
                // Resource data comes before the app's: this config wins here only.
                resource = resource.app_data(json_config_up_to(limit));
            }
            endpoints
                .into_iter()
                .fold(resource, |r, e| r.route((e.route)()))
        })
        .collect()
}

/// Middleware on the API: after a write (any method but GET and HEAD) that passed
/// authentication, every server's load and every device list answer are forgotten,
/// since a start, a stop, a new limit or a changed device may have changed them.
pub async fn forget_after_writes(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let writes = !matches!(*req.method(), Method::GET | Method::HEAD);
    let state = req.app_data::<web::Data<AppState>>().cloned();
    // Dropped when the write ends, however it ends: a client that hangs up does not
    // stop a change already on its way to the database.
    let _forget = state.filter(|_| writes).map(ForgetOnDrop);
    next.call(req).await
}

/// Forgets what a write may have changed when dropped.
struct ForgetOnDrop(web::Data<AppState>);

impl Drop for ForgetOnDrop {
    fn drop(&mut self) {
        self.0.live.forget_loads();
        self.0.lists.forget();
    }
}

/// The coordinator's route table. The public endpoints are open; every other one needs
/// an API token (`require_token`), and each handler checks what its caller may do.
/// Unknown paths under `/api/v1` need a token too, so they reveal nothing.
pub fn routes(cfg: &mut web::ServiceConfig) {
    for open in resources(public_endpoints(), "") {
        cfg.service(open);
    }
    let (api, other): (Vec<Endpoint>, Vec<Endpoint>) = token_endpoints()
        .into_iter()
        .partition(|e| e.path.starts_with("/api/v1/"));
    for guarded in resources(other, "") {
        cfg.service(guarded.wrap(from_fn(require_token)));
    }
    cfg.service(
        resources(api, "/api/v1").into_iter().fold(
            web::scope("/api/v1")
                .wrap(from_fn(forget_after_writes))
                .wrap(from_fn(require_token)),
            |scope, r| scope.service(r),
        ),
    );
}
