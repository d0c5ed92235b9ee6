//! `GET /api/v1/store`: what the series store holds and what it costs on disk. Admin
//! only: it counts every company's data.

use actix_web::{web, HttpResponse};
use chrono::{DateTime, TimeZone, Utc};
use serde::Serialize;

use super::state::AppState;
use crate::db;
use crate::db::store::stats::{StoreStats, TierStats};
use crate::http::auth::Caller;
use crate::http::error::ApiError;

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct Tier {
    /// `raw`: the polls of the hours still open, one row each, every reading as it
    /// was taken; `blocks`: the polls of the closed hours, sealed per device in
    /// compressed columns; `minute`, `hour`: the rollups, one row per device and
    /// period with each series' count, min, max, sum and last reading.
    tier: &'static str,
    /// Polls for `raw` and `blocks`, device-periods for the rollups.
    polls: i64,
    /// Readings (one series' value at one poll); for a rollup, the readings it sums up.
    samples: i64,
    /// On disk, the tier's tables with their indexes.
    bytes: i64,
    /// `null` while the tier is empty.
    bytes_per_sample: Option<f64>,
    oldest: Option<DateTime<Utc>>,
    newest: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct StoreView {
    /// Series of devices (device, name and labels).
    series: i64,
    /// Distinct series names (name and labels) across the fleet.
    series_names: i64,
    catalogue_bytes: i64,
    tiers: Vec<Tier>,
    /// The newest poll of every device.
    latest_bytes: i64,
    /// Readings of the layout before the series store still to be moved (at a node's
    /// next start).
    old_layout_samples: i64,
}

fn at(ms: Option<i64>) -> Option<DateTime<Utc>> {
    ms.and_then(|ms| Utc.timestamp_millis_opt(ms).single())
}

fn tier(name: &'static str, stats: TierStats) -> Tier {
    Tier {
        tier: name,
        polls: stats.polls,
        samples: stats.samples,
        bytes: stats.bytes,
        bytes_per_sample: stats.bytes_per_sample(),
        oldest: at(stats.oldest_ms),
        newest: at(stats.newest_ms),
    }
}

impl From<StoreStats> for StoreView {
    fn from(s: StoreStats) -> Self {
        StoreView {
            series: s.series,
            series_names: s.names,
            catalogue_bytes: s.catalogue_bytes,
            tiers: vec![
                tier("raw", s.raw),
                tier("blocks", s.blocks),
                tier("minute", s.minutes),
                tier("hour", s.hours),
            ],
            latest_bytes: s.latest_bytes,
            old_layout_samples: s.old_layout_samples,
        }
    }
}

#[utoipa::path(get, operation_id = "get_store", path = "/api/v1/store", tag = "metrics", responses((status = 200, description = "Series, samples and bytes per tier", body = StoreView)))]
pub async fn stats(state: web::Data<AppState>, caller: Caller) -> Result<HttpResponse, ApiError> {
    caller.admin("see the store")?;
    let stats = state.db.run(db::store::stats::stats).await?;
    Ok(HttpResponse::Ok().json(StoreView::from(stats)))
}
