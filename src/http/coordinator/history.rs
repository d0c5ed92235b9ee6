//! `/api/v1/devices/{id}/metrics`: a device's stored series over a time range,
//! downsampled into at most `points` buckets with min/avg/max each; and
//! `/metrics/latest`, its most recent poll.

use std::collections::BTreeMap;

use actix_web::{web, HttpResponse};
use chrono::{DateTime, Duration, TimeZone, Utc};
use serde::{Deserialize, Serialize};

use super::devices::existing;
use super::input::instant;
use super::state::AppState;
use super::views::utc;
use crate::db;
use crate::domain::MAX_RETENTION_HOURS;
use crate::http::auth::Caller;
use crate::http::error::ApiError;
use crate::http::extract::Id;
use crate::metrics::series;

/// Buckets when `points` is not given.
const DEFAULT_POINTS: i64 = 300;
/// Most buckets one answer holds.
const MAX_POINTS: i64 = 10_000;
/// The range when neither `minutes` nor `from` is given.
const DEFAULT_MINUTES: i64 = 15;
/// Most series one `metric` filter names.
const MAX_METRIC_FILTERS: usize = 100;
/// Most points (buckets of all series together) one answer holds.
const MAX_ANSWER_POINTS: i64 = 200_000;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct HistoryQuery {
    minutes: Option<i64>,
    from: Option<String>,
    to: Option<String>,
    points: Option<i64>,
    /// Comma-separated series or metric names (`cpu_usage_percent`,
    /// `disk_usage_percent{mount="/"}`); all series when absent.
    metric: Option<String>,
}

/// The time range and bucket width a history query asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Range {
    from_ms: i64,
    to_ms: i64,
    width_ms: i64,
}

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::bad_request("invalid_query", message)
}

impl Range {
    pub(super) fn of(query: &HistoryQuery, now: DateTime<Utc>) -> Result<Range, ApiError> {
        let max_minutes = MAX_RETENTION_HOURS * 60;
        if query.minutes.is_some() && query.from.is_some() {
            return Err(bad("give either minutes or from, not both"));
        }
        let minutes = query.minutes.unwrap_or(DEFAULT_MINUTES);
        if !(1..=max_minutes).contains(&minutes) {
            return Err(bad(format!(
                "minutes must be between 1 and {max_minutes} (got {minutes})"
            )));
        }
        let to = match &query.to {
            Some(value) => instant("to", value)?,
            None => now,
        };
        let from = match &query.from {
            Some(value) => instant("from", value)?,
            None => to - Duration::minutes(minutes),
        };
        if from >= to {
            return Err(bad(format!("from ({from}) must be before to ({to})")));
        }
        if to - from > Duration::minutes(max_minutes) {
            return Err(bad(format!(
                "the range must be at most {MAX_RETENTION_HOURS} hours"
            )));
        }
        let points = query.points.unwrap_or(DEFAULT_POINTS);
        if !(1..=MAX_POINTS).contains(&points) {
            return Err(bad(format!(
                "points must be between 1 and {MAX_POINTS} (got {points})"
            )));
        }
        let (from_ms, to_ms) = (from.timestamp_millis(), to.timestamp_millis());
        // Round up, so `points` buckets cover the whole range.
        let width_ms = ((to_ms - from_ms) + points - 1) / points;
        Ok(Range {
            from_ms,
            to_ms,
            width_ms: width_ms.max(1),
        })
    }
}

fn at_ms(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms)
        .single()
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// The series a `metric` filter keeps: exact series, or every series of a metric name.
pub(super) fn filter(raw: Option<&str>) -> Result<Option<Vec<String>>, ApiError> {
    let Some(raw) = raw else { return Ok(None) };
    let names: Vec<String> = raw
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect();
    if names.is_empty() {
        return Err(bad("metric must name at least one series"));
    }
    if names.len() > MAX_METRIC_FILTERS {
        return Err(bad(format!(
            "metric names at most {MAX_METRIC_FILTERS} series (got {})",
            names.len()
        )));
    }
    Ok(Some(names))
}

fn wanted(filter: &Option<Vec<String>>, key: &str) -> bool {
    filter
        .as_ref()
        .is_none_or(|names| names.iter().any(|n| n == key || n == series::name(key)))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct Point {
    /// Start of the bucket.
    at: DateTime<Utc>,
    min: f64,
    avg: f64,
    max: f64,
    /// Readings in the bucket.
    count: i64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct Series {
    /// The series as stored: name and labels.
    series: String,
    name: String,
    labels: BTreeMap<String, String>,
    points: Vec<Point>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct History {
    device_id: i64,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    bucket_ms: i64,
    series: Vec<Series>,
}

#[utoipa::path(get, operation_id = "device_history", path = "/api/v1/devices/{id}/metrics", tag = "metrics", params(("id" = i64, Path, minimum = 1), HistoryQuery), responses((status = 200, description = "Every series, min/avg/max per bucket", body = History)))]
pub async fn history(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<Id>,
    query: web::Query<HistoryQuery>,
) -> Result<HttpResponse, ApiError> {
    let device_id = id.into_inner().0;
    let range = Range::of(&query, Utc::now())?;
    let filter = filter(query.metric.as_deref())?;
    existing(&state.db, &caller, device_id).await?;
    let Range {
        from_ms,
        to_ms,
        width_ms,
    } = range;
    let names = filter.clone().unwrap_or_default();
    let buckets = state
        .db
        .run(move |conn| {
            db::store::history(
                conn,
                device_id,
                (from_ms, to_ms, width_ms),
                &names,
                MAX_ANSWER_POINTS + 1,
            )
        })
        .await?;
    if buckets.len() as i64 > MAX_ANSWER_POINTS {
        return Err(bad(format!(
            "the answer would hold more than {MAX_ANSWER_POINTS} points: \
             name fewer series with metric, ask for fewer points, or a shorter range"
        )));
    }
    let mut series: Vec<Series> = Vec::new();
    for bucket in buckets {
        if !wanted(&filter, &bucket.metric) {
            continue;
        }
        if series.last().is_none_or(|s| s.series != bucket.metric) {
            let (name, labels) = series::split(&bucket.metric);
            series.push(Series {
                name: name.to_string(),
                labels: series::parse_labels(labels).into_iter().collect(),
                series: bucket.metric.clone(),
                points: Vec::new(),
            });
        }
        if let Some(current) = series.last_mut() {
            current.points.push(Point {
                at: at_ms(from_ms + bucket.bucket * width_ms),
                min: bucket.min,
                avg: bucket.avg,
                max: bucket.max,
                count: bucket.count,
            });
        }
    }
    Ok(HttpResponse::Ok().json(History {
        device_id,
        from: at_ms(from_ms),
        to: at_ms(to_ms),
        bucket_ms: width_ms,
        series,
    }))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct Latest {
    device_id: i64,
    /// When the latest stored poll happened; `null` when none is stored.
    at: Option<DateTime<Utc>>,
    /// The state of the device's latest health event; `null` before the first.
    state: Option<String>,
    state_since: Option<DateTime<Utc>>,
    metrics: BTreeMap<String, f64>,
}

#[utoipa::path(get, operation_id = "device_latest", path = "/api/v1/devices/{id}/metrics/latest", tag = "metrics", params(("id" = i64, Path, minimum = 1)), responses((status = 200, description = "The newest stored poll and the current state", body = Latest)))]
pub async fn latest(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<Id>,
) -> Result<HttpResponse, ApiError> {
    let device_id = id.into_inner().0;
    existing(&state.db, &caller, device_id).await?;
    let (readings, event) = state
        .db
        .run(move |conn| {
            Ok((
                db::store::latest(conn, device_id)?,
                db::events::latest_of_device(conn, device_id)?,
            ))
        })
        .await?;
    Ok(HttpResponse::Ok().json(Latest {
        device_id,
        at: readings.first().map(|r| at_ms(r.at_ms)),
        state: event.as_ref().map(|e| e.to_state.clone()),
        state_since: event.map(|e| utc(e.at)),
        metrics: readings.into_iter().map(|r| (r.metric, r.value)).collect(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(
        minutes: Option<i64>,
        from: Option<&str>,
        to: Option<&str>,
        points: Option<i64>,
    ) -> HistoryQuery {
        HistoryQuery {
            minutes,
            from: from.map(String::from),
            to: to.map(String::from),
            points,
            metric: None,
        }
    }

    #[test]
    fn ranges_default_to_the_last_fifteen_minutes_in_300_buckets() {
        let now = Utc.with_ymd_and_hms(2026, 11, 23, 12, 0, 0).unwrap();
        let r = Range::of(&query(None, None, None, None), now).unwrap();
        assert_eq!(r.to_ms - r.from_ms, 15 * 60_000);
        assert_eq!(r.width_ms, 3_000);
        let r = Range::of(
            &query(
                None,
                Some("2026-11-23T10:00:00Z"),
                Some("2026-11-23T10:00:10+00:00"),
                Some(3),
            ),
            now,
        )
        .unwrap();
        // 10 s in 3 buckets: 3334 ms each, so three cover it.
        assert_eq!(r.width_ms, 3_334);
        assert!(r.width_ms * 3 >= r.to_ms - r.from_ms);
    }

    #[test]
    fn bad_ranges_are_refused() {
        let now = Utc::now();
        for q in [
            query(Some(0), None, None, None),
            query(Some(5), Some("2026-11-23T10:00:00Z"), None, None),
            query(None, Some("yesterday"), None, None),
            query(
                None,
                Some("2026-11-23T10:00:00Z"),
                Some("2026-11-23T09:00:00Z"),
                None,
            ),
            query(None, None, None, Some(0)),
            query(None, None, None, Some(MAX_POINTS + 1)),
            query(Some(MAX_RETENTION_HOURS * 60 + 1), None, None, None),
        ] {
            assert!(Range::of(&q, now).is_err(), "{q:?} was accepted");
        }
    }

    #[test]
    fn a_filter_keeps_exact_series_or_every_series_of_a_name() {
        let f = filter(Some("cpu_usage_percent, disk_usage_percent{mount=\"/\"}")).unwrap();
        assert!(wanted(&f, "cpu_usage_percent"));
        assert!(wanted(&f, "disk_usage_percent{mount=\"/\"}"));
        assert!(!wanted(&f, "disk_usage_percent{mount=\"/boot\"}"));
        let f = filter(Some("disk_usage_percent")).unwrap();
        assert!(wanted(&f, "disk_usage_percent{mount=\"/boot\"}"));
        assert!(filter(Some(" , ")).is_err());
        assert!(wanted(&None, "anything"));
    }
}
