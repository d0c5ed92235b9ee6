//! The coordinator's `GET /metrics`: how many devices, monitored devices and monitor
//! servers there are, and the latest stored reading of every device, labelled with the
//! device's and its company's names, for a Prometheus to scrape or federate. An admin
//! token sees everything; a company's token its own devices and counts only.

use std::collections::BTreeMap;

use actix_web::{web, HttpResponse};
use chrono::Utc;

use super::state::AppState;
use crate::db::{self, DbConn};
use crate::http::auth::Caller;
use crate::http::error::ApiError;
use crate::http::metrics::{respond, write_devices, write_reconcile, DeviceReading};
use crate::metrics::exposition::{Exposition, Kind};

/// A reading older than this many poll intervals (and at least `MIN_FRESH_MS`) is
/// stale: the device is no longer polled, and its last value is not current.
const FRESH_POLLS: i64 = 3;
const MIN_FRESH_MS: i64 = 10 * 60 * 1000;

struct Scrape {
    devices: i64,
    monitored: i64,
    /// `None` for a company's token: servers are shared infrastructure.
    servers: Option<usize>,
    readings: Vec<DeviceReading>,
}

/// What one scrape shows: every company's devices, or only `company`'s.
fn collect(conn: &mut DbConn, company: Option<i64>) -> diesel::QueryResult<Scrape> {
    let config = db::config::get(conn)?.monitor_config();
    let interval_ms = i64::try_from(config.poll_interval_ms).unwrap_or(i64::MAX);
    let fresh_ms = interval_ms.saturating_mul(FRESH_POLLS).max(MIN_FRESH_MS);
    let since_ms = Utc::now().timestamp_millis().saturating_sub(fresh_ms);
    // A company's token: its devices only, chosen in the query.
    let readings = db::store::latest_of_all(conn, since_ms, company)?;
    let mut by_device: BTreeMap<i64, BTreeMap<String, f64>> = BTreeMap::new();
    for r in readings {
        by_device
            .entry(r.device_id)
            .or_default()
            .insert(r.metric, r.value);
    }
    let ids: Vec<i64> = by_device.keys().copied().collect();
    let names: BTreeMap<i64, (String, String)> = db::devices::names_of(conn, &ids)?
        .into_iter()
        .map(|(id, device, company)| (id, (device, company)))
        .collect();
    let readings = by_device
        .into_iter()
        .filter_map(|(id, metrics)| {
            // A device deleted since its last sample has no names and is left out.
            let (device, company) = names.get(&id)?.clone();
            Some(DeviceReading {
                labels: vec![
                    ("device", device),
                    ("company", company),
                    ("device_id", id.to_string()),
                ],
                metrics,
            })
        })
        .collect();
    Ok(match company {
        Some(id) => Scrape {
            devices: db::devices::count_of_company(conn, id)?,
            monitored: db::assignments::monitored_in_company(conn, id)?,
            servers: None,
            readings,
        },
        None => Scrape {
            devices: db::devices::count(conn)?,
            monitored: db::assignments::count_monitored(conn)?,
            servers: Some(db::monitor_servers::list(conn)?.len()),
            readings,
        },
    })
}

#[utoipa::path(get, operation_id = "metrics", path = "/metrics", tag = "metrics", responses((status = 200, description = "Prometheus text exposition", body = String, content_type = "text/plain")))]
pub async fn metrics(state: web::Data<AppState>, caller: Caller) -> Result<HttpResponse, ApiError> {
    let scope = caller.scope();
    let scrape = state.db.run(move |conn| collect(conn, scope)).await?;
    let mut out = Exposition::new();
    let servers = scrape.servers.map(|n| {
        (
            "vigil_monitor_servers",
            "Monitor servers registered.",
            n as f64,
        )
    });
    for (name, help, value) in [
        (
            "vigil_devices",
            "Devices registered.",
            scrape.devices as f64,
        ),
        (
            "vigil_devices_monitored",
            "Devices assigned to a monitor server.",
            scrape.monitored as f64,
        ),
    ]
    .into_iter()
    .chain(servers)
    {
        out.family(name, Kind::Gauge, help);
        out.sample(name, &[], value);
    }
    if scrape.servers.is_some() {
        write_reconcile(&mut out, &state.reconciled);
    }
    write_devices(&mut out, &scrape.readings);
    Ok(respond(out.finish()))
}
