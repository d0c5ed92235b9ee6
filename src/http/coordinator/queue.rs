//! The collection queue's API (seed 001): collectors (`/api/v1/collectors`, company
//! scoped like devices), their runs (`/api/v1/jobs`: list, read, move, remove, force,
//! stop, a report's download) and the lanes (`/api/v1/queue`: what runs and waits in
//! each, with positions, wait times and estimated starts; their concurrency and
//! pausing, admin only: lanes are shared by every company).

use std::collections::HashMap;

use actix_web::http::header::ContentType;
use actix_web::{web, HttpResponse};
use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};

use super::input;
use super::state::AppState;
use crate::actors::membership::GetCluster;
use crate::actors::queue::discovery::DiscoveryParams;
use crate::actors::queue::export::{ExportParams, MAX_EXPORT_HOURS};
use crate::actors::queue::report::csv;
use crate::actors::queue::run::{ReportOutput, ReportParams, Target, MAX_WINDOW_HOURS};
use crate::actors::queue::schedule::{self, Misfire, Schedule};
use crate::actors::queue::{shown_status, Pass, RunForced};
use crate::db::queue::{
    self as db_queue, Collector, CollectorChanges, Job, Lane, Move, NewCollector,
};
use crate::db::{self, Db};
use crate::http::auth::Caller;
use crate::http::error::ApiError;
use crate::http::extract::Id;
use crate::probe::AddressPolicy;

/// Kinds a collector may be of.
const KINDS: [&str; 4] = ["snapshot", "report", "export", "discovery"];
/// What a discovery collector's target is stored as: the company, whose devices tell
/// which addresses it has already.
const DISCOVERY_TARGET: &str = r#"{"all":true}"#;
/// Devices one collector may name at most.
const MAX_TARGET_DEVICES: usize = 10_000;
/// Most concurrent runs a lane may be given.
const MAX_LANE_RUNNING: i32 = 1_000;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewCollectorBody {
    /// Required with an admin token; a scoped token's collectors are its company's.
    company_id: Option<i64>,
    name: String,
    /// `snapshot` (poll every target once now and store the readings), `report`
    /// (availability, CPU, memory and disk, time in each state and events over a
    /// window), `export` (the samples of a window as CSV, raw or rolled up) or
    /// `discovery` (scan addresses for agents, node_exporters or open ports and register
    /// what answers).
    kind: String,
    /// `{"devices": [ids]}` or `{"all": true}`: devices of the collector's company
    /// (required but for a discovery, which takes none).
    target: Option<Target>,
    /// A report's `{"window_hours": 24}`; an export's `{"window_hours": 24, "tier":
    /// "raw"}` (`minute`, `hour`); a discovery's `{"cidr": "10.0.3.0/24"}` or
    /// `{"addresses": [...]}` with `ports`, `look_for` and `timeout_ms`; nothing for a
    /// snapshot.
    #[schema(value_type = Option<Object>)]
    params: Option<serde_json::Value>,
    /// `fast` (a few hours or less), `medium` (up to a day) or `slow`: the lane its runs
    /// wait in.
    expected_duration: String,
    /// A cron pattern (`"0 2 * * *"`; six fields with seconds first; `@hourly`): the
    /// master queues a run at each due time. Absent: run by hand or through the API.
    schedule: Option<String>,
    /// The IANA time zone the schedule is read in (default `UTC`).
    time_zone: Option<String>,
    /// Due times missed while no master was up: `skip`, `once` (default: one run for
    /// them all) or `all` (each, one after another, the latest 10 at most).
    misfire: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CollectorPatch {
    name: Option<String>,
    target: Option<Target>,
    #[schema(value_type = Option<Object>)]
    params: Option<serde_json::Value>,
    expected_duration: Option<String>,
    /// Absent: unchanged; `null`: no longer scheduled.
    #[serde(default, deserialize_with = "input::present")]
    #[schema(value_type = Option<String>)]
    schedule: Option<Option<String>>,
    time_zone: Option<String>,
    misfire: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CollectorView {
    id: i64,
    company_id: i64,
    name: String,
    kind: String,
    target: Target,
    #[schema(value_type = Object)]
    params: serde_json::Value,
    expected_duration: String,
    schedule: Option<String>,
    time_zone: String,
    misfire: String,
    /// The schedule as a sentence.
    schedule_description: Option<String>,
    /// The next due time the master will fire (or handle by the misfire policy).
    next_due_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

fn at(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

impl TryFrom<Collector> for CollectorView {
    type Error = ApiError;

    fn try_from(c: Collector) -> Result<Self, ApiError> {
        let unreadable = |what: &str, e: serde_json::Error| {
            ApiError::Unexpected(anyhow::anyhow!("collector {}'s {what}: {e}", c.id))
        };
        let schedule_description = c
            .schedule
            .as_deref()
            .and_then(|pattern| Schedule::parse(pattern, &c.time_zone).ok())
            .map(|schedule| schedule.describe());
        Ok(CollectorView {
            id: c.id,
            schedule_description,
            next_due_at: c.next_due_at.map(at),
            schedule: c.schedule,
            time_zone: c.time_zone,
            misfire: c.misfire,
            company_id: c.company_id,
            target: serde_json::from_str(&c.target).map_err(|e| unreadable("target", e))?,
            params: serde_json::from_str(&c.params).map_err(|e| unreadable("params", e))?,
            name: c.name,
            kind: c.kind,
            expected_duration: c.expected_duration,
            created_at: at(c.created_at),
            updated_at: at(c.updated_at),
        })
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Progress {
    /// Targets done, of `total`.
    done: i64,
    total: i64,
    rows_written: i64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct JobView {
    id: i64,
    collector_id: i64,
    collector: String,
    company_id: i64,
    kind: String,
    lane: String,
    /// `waiting`, `running`, `stuck` (asked to stop and not ended by its node), `done`,
    /// `failed`, `stopped` or `interrupted` (its node left the cluster while it ran).
    status: String,
    /// Started without a free slot in its lane.
    forced: bool,
    /// A waiting job's place in its lane's line, 1 the next to start.
    position: Option<usize>,
    enqueued_at: DateTime<Utc>,
    started_at: Option<DateTime<Utc>>,
    ended_at: Option<DateTime<Utc>>,
    /// How long it waited (or has waited so far).
    wait_ms: i64,
    /// How long it ran (or has run so far).
    run_ms: Option<i64>,
    /// A waiting job's expected start, from past run times of its collector (or of its
    /// lane) and the jobs before it; `null` when there is nothing to go by.
    estimated_start: Option<DateTime<Utc>>,
    /// The coordinator node running it.
    node_id: Option<i64>,
    stop_requested_at: Option<DateTime<Utc>>,
    progress: Progress,
    error: Option<String>,
    /// The scheduled time it is the firing of.
    due_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LaneView {
    lane: String,
    max_running: i32,
    paused: bool,
    /// A run interrupted by its node's death is queued again at the head of the lane.
    requeue_interrupted: bool,
    /// Runs holding a slot (forced ones take none and are counted apart).
    running: usize,
    forced_running: usize,
    jobs_running: Vec<JobView>,
    jobs_waiting: Vec<JobView>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct QueueView {
    lanes: Vec<LaneView>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Enqueued {
    /// False when the collector was waiting already: `job` is that run.
    queued: bool,
    job: JobView,
}

fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

fn lane(field: &str, value: &str) -> Result<Lane, ApiError> {
    Lane::parse(value).ok_or_else(|| {
        ApiError::bad_request(
            "invalid_lane",
            format!("{field} must be fast, medium or slow (got {value:?})"),
        )
    })
}

fn kind(value: &str) -> Result<String, ApiError> {
    if KINDS.contains(&value) {
        return Ok(value.to_string());
    }
    Err(ApiError::bad_request(
        "invalid_kind",
        format!("kind must be snapshot, report, export or discovery (got {value:?})"),
    ))
}

/// A kind's params checked, as stored.
fn params(
    kind: &str,
    value: Option<serde_json::Value>,
    policy: &AddressPolicy,
) -> Result<String, ApiError> {
    let value = value.unwrap_or_else(|| serde_json::json!({}));
    let invalid = |message: String| ApiError::bad_request("invalid_params", message);
    match kind {
        "report" => {
            let report: ReportParams = serde_json::from_value(value)
                .map_err(|e| invalid(format!("a report's params: {e}")))?;
            if !(1..=MAX_WINDOW_HOURS).contains(&report.window_hours) {
                return Err(invalid(format!(
                    "window_hours must be from 1 to {MAX_WINDOW_HOURS} (got {})",
                    report.window_hours
                )));
            }
            serde_json::to_string(&report).map_err(|e| ApiError::Unexpected(e.into()))
        }
        "discovery" => {
            let discovery: DiscoveryParams = serde_json::from_value(value)
                .map_err(|e| invalid(format!("a discovery's params: {e}")))?;
            discovery.addresses(policy).map_err(|refusal| {
                if refusal.code == "address_denied" {
                    ApiError::unprocessable(refusal.code, refusal.message)
                } else {
                    ApiError::bad_request(refusal.code, refusal.message)
                }
            })?;
            serde_json::to_string(&discovery).map_err(|e| ApiError::Unexpected(e.into()))
        }
        "export" => {
            let export: ExportParams = serde_json::from_value(value)
                .map_err(|e| invalid(format!("an export's params: {e}")))?;
            if !(1..=MAX_EXPORT_HOURS).contains(&export.window_hours) {
                return Err(invalid(format!(
                    "window_hours must be from 1 to {MAX_EXPORT_HOURS} (got {})",
                    export.window_hours
                )));
            }
            serde_json::to_string(&export).map_err(|e| ApiError::Unexpected(e.into()))
        }
        _ => match value.as_object() {
            Some(fields) if fields.is_empty() => Ok("{}".into()),
            _ => Err(invalid(format!("a {kind} collector takes no params"))),
        },
    }
}

/// A target checked against the company's devices, as stored.
async fn target(db: &Db, company: i64, target: &Target) -> Result<String, ApiError> {
    match target {
        Target::All { all: true } => {}
        Target::All { all: false } => {
            return Err(ApiError::bad_request(
                "invalid_target",
                "target must be {\"all\": true} or {\"devices\": [ids]}",
            ))
        }
        Target::Devices { devices } => {
            if devices.is_empty() || devices.len() > MAX_TARGET_DEVICES {
                return Err(ApiError::bad_request(
                    "invalid_target",
                    format!("target must name from 1 to {MAX_TARGET_DEVICES} devices"),
                ));
            }
            let wanted = devices.clone();
            let found = db
                .run(move |conn| db::devices::ids_of_company(conn, company))
                .await?;
            let missing: Vec<i64> = wanted
                .iter()
                .copied()
                .filter(|id| !found.contains(id))
                .collect();
            if !missing.is_empty() {
                return Err(ApiError::unprocessable(
                    "unknown_devices",
                    format!("company {company} has no device {missing:?}"),
                ));
            }
        }
    }
    serde_json::to_string(target).map_err(|e| ApiError::Unexpected(e.into()))
}

/// A schedule and its time zone checked; answers the first due time after now.
fn scheduled(pattern: &str, zone: &str) -> Result<i64, ApiError> {
    schedule::time_zone(zone)
        .map_err(|message| ApiError::bad_request("invalid_time_zone", message))?;
    let schedule = Schedule::parse(pattern, zone)
        .map_err(|message| ApiError::bad_request("invalid_schedule", message))?;
    schedule.next_after(now_ms()).ok_or_else(|| {
        ApiError::bad_request(
            "invalid_schedule",
            format!("schedule {pattern:?} never falls due"),
        )
    })
}

fn misfire(value: &str) -> Result<Misfire, ApiError> {
    Misfire::parse(value).ok_or_else(|| {
        ApiError::bad_request(
            "invalid_misfire",
            format!("misfire must be skip, once or all (got {value:?})"),
        )
    })
}

fn no_discovery_target() -> ApiError {
    ApiError::bad_request(
        "invalid_target",
        "a discovery collector takes no target: the addresses it scans are in its params",
    )
}

fn collector_not_found(id: i64) -> ApiError {
    ApiError::NotFound(format!("collector {id} does not exist"))
}

fn job_not_found(id: i64) -> ApiError {
    ApiError::NotFound(format!("job {id} does not exist"))
}

async fn existing_collector(db: &Db, caller: &Caller, id: i64) -> Result<Collector, ApiError> {
    let scope = caller.scope();
    db.run(move |conn| db_queue::collector_in(conn, id, scope))
        .await?
        .ok_or_else(|| collector_not_found(id))
}

#[utoipa::path(post, operation_id = "create_collector", path = "/api/v1/collectors", tag = "queue", request_body = NewCollectorBody, responses((status = 201, description = "Created", body = CollectorView)))]
pub async fn create(
    state: web::Data<AppState>,
    caller: Caller,
    body: web::Json<NewCollectorBody>,
) -> Result<HttpResponse, ApiError> {
    caller.writer()?;
    let body = body.into_inner();
    let company = match (caller.scope(), body.company_id) {
        (Some(own), None) => own,
        (Some(own), Some(asked)) if asked == own => own,
        (None, Some(asked)) => asked,
        (None, None) => {
            return Err(ApiError::bad_request(
                "invalid_company",
                "company_id is required with an admin token",
            ))
        }
        (Some(_), Some(asked)) => {
            return Err(ApiError::unprocessable(
                "unknown_company",
                format!("company {asked} does not exist"),
            ))
        }
    };
    super::companies::existing(&state.db, &caller, company)
        .await
        .map_err(|_| {
            ApiError::unprocessable(
                "unknown_company",
                format!("company {company} does not exist"),
            )
        })?;
    let name = input::name("name", &body.name)?;
    let kind = kind(&body.kind)?;
    let lane = lane("expected_duration", &body.expected_duration)?;
    let params = params(&kind, body.params, &state.policy)?;
    let target = match (kind.as_str(), &body.target) {
        ("discovery", None) => DISCOVERY_TARGET.to_string(),
        ("discovery", Some(_)) => return Err(no_discovery_target()),
        (_, Some(given)) => target(&state.db, company, given).await?,
        (_, None) => {
            return Err(ApiError::bad_request(
                "invalid_target",
                "target is required: {\"all\": true} or {\"devices\": [ids]}",
            ))
        }
    };
    let time_zone = body.time_zone.unwrap_or_else(|| "UTC".into());
    let misfire = misfire(body.misfire.as_deref().unwrap_or("once"))?;
    let next_due_at = match &body.schedule {
        Some(pattern) => Some(scheduled(pattern, &time_zone)?),
        None => {
            schedule::time_zone(&time_zone)
                .map_err(|message| ApiError::bad_request("invalid_time_zone", message))?;
            None
        }
    };
    let now = now_ms();
    let new = NewCollector {
        schedule: body.schedule,
        time_zone,
        misfire: misfire.as_str().into(),
        next_due_at,
        company_id: company,
        name: name.clone(),
        kind,
        target,
        params,
        expected_duration: lane.as_str().into(),
        created_at: now,
        updated_at: now,
    };
    let collector = state
        .db
        .run(move |conn| db_queue::create_collector(conn, &new))
        .await
        .map_err(|e| {
            if e.is_unique_violation() {
                ApiError::conflict(
                    "collector_exists",
                    format!("company {company} has a collector named {name:?} already"),
                )
            } else {
                e.into()
            }
        })?;
    tracing::info!(
        collector.id = collector.id,
        company.id = company,
        "collector created"
    );
    Ok(HttpResponse::Created().json(CollectorView::try_from(collector)?))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct CollectorsQuery {
    company_id: Option<i64>,
    limit: Option<i64>,
    offset: Option<i64>,
}

#[utoipa::path(get, operation_id = "list_collectors", path = "/api/v1/collectors", tag = "queue", params(CollectorsQuery), responses((status = 200, description = "The collectors the token sees", body = Vec<CollectorView>)))]
pub async fn list(
    state: web::Data<AppState>,
    caller: Caller,
    query: web::Query<CollectorsQuery>,
) -> Result<HttpResponse, ApiError> {
    let (limit, offset) = input::page(query.limit, query.offset)?;
    let Some(company) = caller.list_filter(query.company_id) else {
        return Ok(HttpResponse::Ok().json(Vec::<CollectorView>::new()));
    };
    let collectors = state
        .db
        .run(move |conn| db_queue::collectors_of(conn, company, limit, offset))
        .await?;
    let views = collectors
        .into_iter()
        .map(CollectorView::try_from)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(HttpResponse::Ok().json(views))
}

#[utoipa::path(get, operation_id = "get_collector", path = "/api/v1/collectors/{id}", tag = "queue", params(("id" = i64, Path, minimum = 1)), responses((status = 200, description = "The collector", body = CollectorView)))]
pub async fn get(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<Id>,
) -> Result<HttpResponse, ApiError> {
    let collector = existing_collector(&state.db, &caller, id.into_inner().0).await?;
    Ok(HttpResponse::Ok().json(CollectorView::try_from(collector)?))
}

#[utoipa::path(put, operation_id = "update_collector", path = "/api/v1/collectors/{id}", tag = "queue", params(("id" = i64, Path, minimum = 1)), request_body = CollectorPatch, responses((status = 200, description = "Saved; runs queued from now on take its new lane", body = CollectorView)))]
pub async fn update(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<Id>,
    body: web::Json<CollectorPatch>,
) -> Result<HttpResponse, ApiError> {
    caller.writer()?;
    let id = id.into_inner().0;
    let collector = existing_collector(&state.db, &caller, id).await?;
    let body = body.into_inner();
    let mut changes = CollectorChanges {
        updated_at: Some(now_ms()),
        ..CollectorChanges::default()
    };
    if let Some(name) = &body.name {
        changes.name = Some(input::name("name", name)?);
    }
    if let Some(duration) = &body.expected_duration {
        changes.expected_duration = Some(lane("expected_duration", duration)?.as_str().into());
    }
    if body.params.is_some() {
        changes.params = Some(params(&collector.kind, body.params, &state.policy)?);
    }
    if let Some(t) = &body.target {
        if collector.kind == "discovery" {
            return Err(no_discovery_target());
        }
        changes.target = Some(target(&state.db, collector.company_id, t).await?);
    }
    if let Some(value) = &body.misfire {
        changes.misfire = Some(misfire(value)?.as_str().into());
    }
    // A new pattern or time zone starts the schedule again from now.
    if body.schedule.is_some() || body.time_zone.is_some() {
        let zone = body
            .time_zone
            .clone()
            .unwrap_or(collector.time_zone.clone());
        let pattern = match &body.schedule {
            Some(given) => given.clone(),
            None => collector.schedule.clone(),
        };
        changes.next_due_at = Some(match &pattern {
            Some(pattern) => Some(scheduled(pattern, &zone)?),
            None => {
                schedule::time_zone(&zone)
                    .map_err(|message| ApiError::bad_request("invalid_time_zone", message))?;
                None
            }
        });
        changes.schedule = body.schedule.clone();
        changes.time_zone = body.time_zone.clone();
    }
    let saved = state
        .db
        .run(move |conn| db_queue::update_collector(conn, id, &changes))
        .await
        .map_err(|e| {
            if e.is_unique_violation() {
                ApiError::conflict(
                    "collector_exists",
                    "the company has a collector of that name",
                )
            } else {
                e.into()
            }
        })?;
    Ok(HttpResponse::Ok().json(CollectorView::try_from(saved)?))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Deleted {
    id: i64,
    deleted: bool,
}

#[utoipa::path(delete, operation_id = "delete_collector", path = "/api/v1/collectors/{id}", tag = "queue", params(("id" = i64, Path, minimum = 1)), responses((status = 200, description = "Deleted with its jobs", body = Deleted), (status = 409, description = "One of its jobs runs", body = crate::http::error::ErrorBody)))]
pub async fn delete(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<Id>,
) -> Result<HttpResponse, ApiError> {
    caller.writer()?;
    let id = id.into_inner().0;
    existing_collector(&state.db, &caller, id).await?;
    match state
        .db
        .run(move |conn| db_queue::delete_collector(conn, id))
        .await?
    {
        Ok(()) => Ok(HttpResponse::Ok().json(Deleted { id, deleted: true })),
        Err(refused) => Err(ApiError::conflict("collector_running", refused.0)),
    }
}

#[utoipa::path(post, operation_id = "run_collector", path = "/api/v1/collectors/{id}/run", tag = "queue", params(("id" = i64, Path, minimum = 1)), responses((status = 202, description = "Queued at the end of its lane", body = Enqueued), (status = 200, description = "It was waiting already: that run", body = Enqueued)))]
pub async fn run(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<Id>,
) -> Result<HttpResponse, ApiError> {
    caller.writer()?;
    let collector = existing_collector(&state.db, &caller, id.into_inner().0).await?;
    let queued_for = collector.clone();
    let (job, queued) = state
        .db
        .run(move |conn| db_queue::enqueue(conn, &queued_for, now_ms(), None))
        .await?;
    if queued {
        tracing::info!(job.id = job.id, collector.id = collector.id, lane = %job.lane, "collection job queued");
        state.queue.do_send(Pass);
    }
    let view = views(&state, vec![(job, collector)]).await?.pop();
    let body = Enqueued {
        queued,
        job: view.ok_or_else(|| ApiError::Unexpected(anyhow::anyhow!("no view of a job")))?,
    };
    Ok(if queued {
        HttpResponse::Accepted().json(body)
    } else {
        HttpResponse::Ok().json(body)
    })
}

/// Views of `jobs`, with their positions and estimates counted over every company's
/// jobs in their lanes.
async fn views(state: &AppState, jobs: Vec<(Job, Collector)>) -> Result<Vec<JobView>, ApiError> {
    let (active, run_times, lanes) = state
        .db
        .run(|conn| {
            Ok((
                db_queue::active(conn)?,
                db_queue::mean_run_times(conn)?,
                db_queue::lanes(conn)?,
            ))
        })
        .await?;
    let now = now_ms();
    let estimates = Estimates::of(&active, &run_times, &lanes, now);
    Ok(jobs
        .into_iter()
        .map(|(job, collector)| view(job, collector, &estimates, state, now))
        .collect())
}

/// Where each waiting job stands: its place in its lane and its estimated start.
struct Estimates {
    places: HashMap<i64, (usize, Option<i64>)>,
}

impl Estimates {
    fn of(
        active: &[(Job, Collector)],
        run_times: &db_queue::RunTimes,
        lanes: &[db_queue::LaneRow],
        now: i64,
    ) -> Estimates {
        let mean = |job: &Job| run_times.expected(job.collector_id, &job.lane);
        let mut places = HashMap::new();
        for lane in lanes {
            // When each slot of the lane is free next, in ms from now.
            let mut slots: Vec<Option<f64>> = Vec::new();
            for (job, _) in active.iter().filter(|(j, _)| j.lane == lane.lane) {
                if job.status == db_queue::RUNNING && !job.forced {
                    let ran = (now - job.started_at.unwrap_or(now)) as f64;
                    slots.push(mean(job).map(|m| (m - ran).max(0.0)));
                }
            }
            let max = usize::try_from(lane.max_running).unwrap_or(0);
            while slots.len() < max {
                slots.push(Some(0.0));
            }
            let waiting = active
                .iter()
                .filter(|(j, _)| j.lane == lane.lane && j.status == db_queue::WAITING);
            for (place, (job, _)) in waiting.enumerate() {
                let estimate = if lane.paused || slots.is_empty() {
                    None
                } else {
                    // The slot free soonest takes the next job.
                    let (at, free) = slots
                        .iter()
                        .enumerate()
                        .filter_map(|(i, s)| Some((i, (*s)?)))
                        .fold((None, f64::MAX), |best, (i, s)| {
                            if s < best.1 {
                                (Some(i), s)
                            } else {
                                best
                            }
                        });
                    match (at, mean(job)) {
                        (Some(at), Some(took)) => {
                            slots[at] = Some(free + took);
                            Some(now + free as i64)
                        }
                        (Some(at), None) => {
                            slots[at] = None;
                            Some(now + free as i64)
                        }
                        (None, _) => None,
                    }
                };
                places.insert(job.id, (place + 1, estimate));
            }
        }
        Estimates { places }
    }
}

fn view(
    job: Job,
    collector: Collector,
    estimates: &Estimates,
    state: &AppState,
    now: i64,
) -> JobView {
    let (position, estimate) = estimates
        .places
        .get(&job.id)
        .map_or((None, None), |(place, estimate)| (Some(*place), *estimate));
    let waited_until = job
        .started_at
        .unwrap_or(if job.status == db_queue::WAITING {
            now
        } else {
            job.ended_at.unwrap_or(now)
        });
    JobView {
        id: job.id,
        collector_id: job.collector_id,
        collector: collector.name,
        company_id: collector.company_id,
        kind: collector.kind,
        status: shown_status(&job, now, &state.queue_settings),
        lane: job.lane,
        forced: job.forced,
        position,
        enqueued_at: at(job.enqueued_at),
        started_at: job.started_at.map(at),
        ended_at: job.ended_at.map(at),
        wait_ms: (waited_until - job.enqueued_at).max(0),
        run_ms: job
            .started_at
            .map(|s| (job.ended_at.unwrap_or(now) - s).max(0)),
        estimated_start: estimate.map(at),
        node_id: job.node_id,
        stop_requested_at: job.stop_requested_at.map(at),
        progress: Progress {
            done: job.progress_done,
            total: job.progress_total,
            rows_written: job.rows_written,
        },
        error: job.error,
        due_at: job.due_at.map(at),
    }
}

#[utoipa::path(get, operation_id = "get_queue", path = "/api/v1/queue", tag = "queue", responses((status = 200, description = "Each lane: its limit, what runs and what waits (a scoped token sees its company's jobs; positions count every company's)", body = QueueView)))]
pub async fn queue(state: web::Data<AppState>, caller: Caller) -> Result<HttpResponse, ApiError> {
    let (active, lanes) = state
        .db
        .run(|conn| Ok((db_queue::active(conn)?, db_queue::lanes(conn)?)))
        .await?;
    let counts: Vec<(String, usize, usize)> = lanes
        .iter()
        .map(|lane| {
            let running = active
                .iter()
                .filter(|(j, _)| j.lane == lane.lane && j.status == db_queue::RUNNING);
            let forced = running.clone().filter(|(j, _)| j.forced).count();
            (lane.lane.clone(), running.count() - forced, forced)
        })
        .collect();
    let seen: Vec<(Job, Collector)> = active
        .into_iter()
        .filter(|(_, c)| caller.sees(c.company_id))
        .collect();
    let mut all = views(&state, seen).await?;
    let lanes = lanes
        .into_iter()
        .zip(counts)
        .map(|(lane, (_, running, forced_running))| {
            let (mine, rest): (Vec<JobView>, Vec<JobView>) = std::mem::take(&mut all)
                .into_iter()
                .partition(|j| j.lane == lane.lane);
            all = rest;
            let (jobs_running, mut jobs_waiting): (Vec<JobView>, Vec<JobView>) = mine
                .into_iter()
                .partition(|j| j.status != db_queue::WAITING);
            jobs_waiting.sort_by_key(|j| j.position);
            LaneView {
                lane: lane.lane,
                max_running: lane.max_running,
                paused: lane.paused,
                requeue_interrupted: lane.requeue_interrupted,
                running,
                forced_running,
                jobs_running,
                jobs_waiting,
            }
        })
        .collect();
    Ok(HttpResponse::Ok().json(QueueView { lanes }))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QueueConfigBody {
    fast: Option<i32>,
    medium: Option<i32>,
    slow: Option<i32>,
    /// Per lane, whether a run interrupted by its node's death is queued again at the
    /// head of its lane (`true`, the default) or left interrupted.
    requeue_interrupted: Option<LaneFlags>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LaneFlags {
    fast: Option<bool>,
    medium: Option<bool>,
    slow: Option<bool>,
}

#[utoipa::path(put, operation_id = "configure_queue", path = "/api/v1/queue/config", tag = "queue", request_body = QueueConfigBody, responses((status = 200, description = "Each lane's most concurrent runs, across the cluster", body = QueueView)))]
pub async fn configure(
    state: web::Data<AppState>,
    caller: Caller,
    body: web::Json<QueueConfigBody>,
) -> Result<HttpResponse, ApiError> {
    caller.admin("configure the queue")?;
    let mut limits = Vec::new();
    for (lane, max) in [
        (Lane::Fast, body.fast),
        (Lane::Medium, body.medium),
        (Lane::Slow, body.slow),
    ] {
        if let Some(max) = max {
            if !(0..=MAX_LANE_RUNNING).contains(&max) {
                return Err(ApiError::bad_request(
                    "invalid_queue_config",
                    format!("{lane} must be from 0 to {MAX_LANE_RUNNING} (got {max})"),
                ));
            }
            limits.push((lane, max));
        }
    }
    let requeue: Vec<(Lane, bool)> = body
        .requeue_interrupted
        .as_ref()
        .map(|flags| {
            [
                (Lane::Fast, flags.fast),
                (Lane::Medium, flags.medium),
                (Lane::Slow, flags.slow),
            ]
            .into_iter()
            .filter_map(|(lane, flag)| Some((lane, flag?)))
            .collect()
        })
        .unwrap_or_default();
    if limits.is_empty() && requeue.is_empty() {
        return Err(ApiError::bad_request(
            "invalid_queue_config",
            "give at least one of fast, medium, slow and requeue_interrupted",
        ));
    }
    state
        .db
        .run(move |conn| {
            db::write_transaction(conn, |conn| {
                for (lane, max) in &limits {
                    db_queue::set_max_running(conn, *lane, *max)?;
                }
                for (lane, requeue) in &requeue {
                    db_queue::set_requeue_interrupted(conn, *lane, *requeue)?;
                }
                Ok(())
            })
        })
        .await?;
    state.queue.do_send(Pass);
    queue(state, caller).await
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LaneBody {
    /// `fast`, `medium` or `slow`.
    lane: String,
}

async fn set_paused(
    state: web::Data<AppState>,
    caller: Caller,
    body: LaneBody,
    paused: bool,
) -> Result<HttpResponse, ApiError> {
    caller.admin("pause and resume lanes")?;
    let lane = lane("lane", &body.lane)?;
    state
        .db
        .run(move |conn| db_queue::set_paused(conn, lane, paused))
        .await?;
    tracing::info!(%lane, paused, "queue lane paused or resumed");
    state.queue.do_send(Pass);
    queue(state, caller).await
}

#[utoipa::path(post, operation_id = "pause_lane", path = "/api/v1/queue/pause", tag = "queue", request_body = LaneBody, responses((status = 200, description = "Paused: its waiting jobs wait, its running ones go on", body = QueueView)))]
pub async fn pause(
    state: web::Data<AppState>,
    caller: Caller,
    body: web::Json<LaneBody>,
) -> Result<HttpResponse, ApiError> {
    set_paused(state, caller, body.into_inner(), true).await
}

#[utoipa::path(post, operation_id = "resume_lane", path = "/api/v1/queue/resume", tag = "queue", request_body = LaneBody, responses((status = 200, description = "Resumed", body = QueueView)))]
pub async fn resume(
    state: web::Data<AppState>,
    caller: Caller,
    body: web::Json<LaneBody>,
) -> Result<HttpResponse, ApiError> {
    set_paused(state, caller, body.into_inner(), false).await
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct JobsQuery {
    collector_id: Option<i64>,
    /// `waiting`, `running`, `done`, `failed`, `stopped` or `interrupted`.
    status: Option<String>,
    limit: Option<i64>,
    offset: Option<i64>,
}

#[utoipa::path(get, operation_id = "list_jobs", path = "/api/v1/jobs", tag = "queue", params(JobsQuery), responses((status = 200, description = "Jobs the token sees", body = Vec<JobView>)))]
pub async fn jobs(
    state: web::Data<AppState>,
    caller: Caller,
    query: web::Query<JobsQuery>,
) -> Result<HttpResponse, ApiError> {
    let query = query.into_inner();
    let (limit, offset) = input::page(query.limit, query.offset)?;
    let statuses = [
        db_queue::WAITING,
        db_queue::RUNNING,
        db_queue::DONE,
        db_queue::FAILED,
        db_queue::STOPPED,
        db_queue::INTERRUPTED,
    ];
    let status = match query.status.as_deref() {
        None => None,
        Some(s) => Some(
            statuses
                .into_iter()
                .find(|known| *known == s)
                .ok_or_else(|| {
                    ApiError::bad_request(
                        "invalid_query",
                        format!("status {s:?} is not a job status"),
                    )
                })?,
        ),
    };
    let scope = caller.scope();
    let collector = query.collector_id;
    let found = state
        .db
        .run(move |conn| db_queue::jobs_of(conn, scope, collector, status, limit, offset))
        .await?;
    Ok(HttpResponse::Ok().json(views(&state, found).await?))
}

async fn existing_job(db: &Db, caller: &Caller, id: i64) -> Result<(Job, Collector), ApiError> {
    let scope = caller.scope();
    db.run(move |conn| db_queue::job_in(conn, id, scope))
        .await?
        .ok_or_else(|| job_not_found(id))
}

#[utoipa::path(get, operation_id = "get_job", path = "/api/v1/jobs/{id}", tag = "queue", params(("id" = i64, Path, minimum = 1)), responses((status = 200, description = "The job", body = JobView)))]
pub async fn job(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<Id>,
) -> Result<HttpResponse, ApiError> {
    let found = existing_job(&state.db, &caller, id.into_inner().0).await?;
    let view = views(&state, vec![found]).await?.pop();
    Ok(HttpResponse::Ok().json(view))
}

/// An operation's answer: the job after it, 404 or 409 with the sentence.
async fn answer(
    state: &AppState,
    id: i64,
    outcome: db_queue::Outcome,
) -> Result<HttpResponse, ApiError> {
    match outcome {
        None => Err(job_not_found(id)),
        Some(Err(refused)) => Err(ApiError::conflict("job_state", refused.0)),
        Some(Ok(job)) => {
            let collector_of = job.collector_id;
            let collector = state
                .db
                .run(move |conn| db_queue::collector_in(conn, collector_of, None))
                .await?
                .ok_or_else(|| collector_not_found(collector_of))?;
            let view = views(state, vec![(job, collector)]).await?.pop();
            Ok(HttpResponse::Ok().json(view))
        }
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MoveBody {
    /// `up` or `down`: one place.
    direction: Option<String>,
    /// To this place in its lane, 1 the first.
    position: Option<i64>,
    /// To the end of this lane.
    lane: Option<String>,
}

#[utoipa::path(post, operation_id = "move_job", path = "/api/v1/jobs/{id}/move", tag = "queue", params(("id" = i64, Path, minimum = 1)), request_body = MoveBody, responses((status = 200, description = "Moved", body = JobView), (status = 409, description = "Not waiting", body = crate::http::error::ErrorBody)))]
pub async fn move_job(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<Id>,
    body: web::Json<MoveBody>,
) -> Result<HttpResponse, ApiError> {
    caller.writer()?;
    let id = id.into_inner().0;
    let to = match (&body.direction, body.position, &body.lane) {
        (Some(d), None, None) if d == "up" => Move::Up,
        (Some(d), None, None) if d == "down" => Move::Down,
        (None, Some(position), None) => Move::To(position),
        (None, None, Some(to)) => Move::Lane(lane("lane", to)?),
        _ => {
            return Err(ApiError::bad_request(
                "invalid_move",
                "give one of direction (up or down), position or lane",
            ))
        }
    };
    let scope = caller.scope();
    let outcome = state
        .db
        .run(move |conn| db_queue::move_job(conn, id, scope, to))
        .await?;
    answer(&state, id, outcome).await
}

#[utoipa::path(delete, operation_id = "remove_job", path = "/api/v1/jobs/{id}", tag = "queue", params(("id" = i64, Path, minimum = 1)), responses((status = 200, description = "Taken out of the queue", body = JobView), (status = 409, description = "Not waiting", body = crate::http::error::ErrorBody)))]
pub async fn remove(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<Id>,
) -> Result<HttpResponse, ApiError> {
    caller.writer()?;
    let id = id.into_inner().0;
    let scope = caller.scope();
    let outcome = state
        .db
        .run(move |conn| db_queue::remove(conn, id, scope))
        .await?;
    answer(&state, id, outcome).await
}

#[utoipa::path(post, operation_id = "force_job", path = "/api/v1/jobs/{id}/force", tag = "queue", params(("id" = i64, Path, minimum = 1)), responses((status = 200, description = "Started now on this coordinator, tagged forced", body = JobView), (status = 409, description = "Not waiting", body = crate::http::error::ErrorBody)))]
pub async fn force(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<Id>,
) -> Result<HttpResponse, ApiError> {
    caller.writer()?;
    let id = id.into_inner().0;
    let node = state
        .membership
        .send(GetCluster)
        .await
        .ok()
        .and_then(|c| c.this_node)
        .ok_or_else(|| {
            ApiError::Unavailable(
                "this coordinator is not a member of the cluster now; try again".into(),
            )
        })?;
    let scope = caller.scope();
    let outcome = state
        .db
        .run(move |conn| db_queue::force(conn, id, scope, node, now_ms()))
        .await?;
    if let Some(Ok(job)) = &outcome {
        tracing::info!(job.id = id, "collection job forced");
        state.queue.do_send(RunForced {
            job: job.clone(),
            node,
        });
    }
    answer(&state, id, outcome).await
}

#[utoipa::path(post, operation_id = "stop_job", path = "/api/v1/jobs/{id}/stop", tag = "queue", params(("id" = i64, Path, minimum = 1)), responses((status = 200, description = "Asked to stop at its next safe point", body = JobView), (status = 409, description = "Not running", body = crate::http::error::ErrorBody)))]
pub async fn stop(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<Id>,
) -> Result<HttpResponse, ApiError> {
    caller.writer()?;
    let id = id.into_inner().0;
    let scope = caller.scope();
    let outcome = state
        .db
        .run(move |conn| db_queue::request_stop(conn, id, scope, now_ms()))
        .await?;
    if matches!(outcome, Some(Ok(_))) {
        tracing::info!(job.id = id, "collection job asked to stop");
        state.queue.do_send(Pass);
    }
    answer(&state, id, outcome).await
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ReportQuery {
    /// `json` (default) or `csv`.
    format: Option<String>,
}

#[utoipa::path(get, operation_id = "get_job_report", path = "/api/v1/jobs/{id}/report", tag = "queue", params(("id" = i64, Path, minimum = 1), ReportQuery), responses((status = 200, description = "A done report job's report, as JSON or CSV"), (status = 409, description = "Not a done report", body = crate::http::error::ErrorBody)))]
pub async fn report(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<Id>,
    query: web::Query<ReportQuery>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner().0;
    let csv_wanted = match query.format.as_deref() {
        None | Some("json") => false,
        Some("csv") => true,
        Some(other) => {
            return Err(ApiError::bad_request(
                "invalid_query",
                format!("format must be json or csv (got {other:?})"),
            ))
        }
    };
    let (job, collector) = existing_job(&state.db, &caller, id).await?;
    if collector.kind != "report" || job.status != db_queue::DONE {
        return Err(ApiError::conflict(
            "no_report",
            format!(
                "job {id} is a {} job that is {}: only a done report job has a report",
                collector.kind, job.status
            ),
        ));
    }
    let output = state
        .db
        .run(move |conn| db_queue::output_of(conn, id))
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("job {id}'s report is gone")))?;
    if !csv_wanted {
        return Ok(HttpResponse::Ok()
            .content_type(ContentType::json())
            .body(output));
    }
    let report: ReportOutput =
        serde_json::from_str(&output).map_err(|e| ApiError::Unexpected(e.into()))?;
    Ok(HttpResponse::Ok()
        .content_type("text/csv; charset=utf-8")
        .insert_header((
            "content-disposition",
            format!("attachment; filename=\"report-{id}.csv\""),
        ))
        .body(csv(&report.devices)))
}

#[utoipa::path(get, operation_id = "get_job_export", path = "/api/v1/jobs/{id}/export", tag = "queue", params(("id" = i64, Path, minimum = 1)), responses((status = 200, description = "A done export job's CSV (device_id,device,at,series,value,min,avg,max,count), streamed part by part", content_type = "text/csv"), (status = 409, description = "Not a done export", body = crate::http::error::ErrorBody)))]
pub async fn export(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<Id>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner().0;
    let (job, collector) = existing_job(&state.db, &caller, id).await?;
    if collector.kind != "export" || job.status != db_queue::DONE {
        return Err(ApiError::conflict(
            "no_export",
            format!(
                "job {id} is a {} job that is {}: only a done export job has an export",
                collector.kind, job.status
            ),
        ));
    }
    let parts = state
        .db
        .run(move |conn| db_queue::part_count(conn, id))
        .await?;
    // One part read from the database at a time, as the client takes them.
    let db = state.db.clone();
    let body = futures_util::stream::unfold(0i64, move |part| {
        let db = db.clone();
        async move {
            if part >= parts {
                return None;
            }
            let read = db.run(move |conn| db_queue::part(conn, id, part)).await;
            let chunk = match read {
                Ok(Some(body)) => Ok(web::Bytes::from(body)),
                Ok(None) => Err(actix_web::error::ErrorGone(format!(
                    "job {id}'s export was deleted while it was read"
                ))),
                Err(error) => {
                    tracing::warn!(job.id = id, %error, "cannot read an export's part");
                    Err(actix_web::error::ErrorInternalServerError(
                        "the export could not be read",
                    ))
                }
            };
            Some((chunk, part + 1))
        }
    });
    Ok(HttpResponse::Ok()
        .content_type("text/csv; charset=utf-8")
        .insert_header((
            "content-disposition",
            format!("attachment; filename=\"export-{id}.csv\""),
        ))
        .streaming(body))
}

#[utoipa::path(get, operation_id = "get_job_output", path = "/api/v1/jobs/{id}/output", tag = "queue", params(("id" = i64, Path, minimum = 1)), responses((status = 200, description = "What a done job produced, as JSON: a snapshot's counts, a report, an export's summary, a discovery's devices added and skipped"), (status = 409, description = "Not done", body = crate::http::error::ErrorBody)))]
pub async fn output(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<Id>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner().0;
    let (job, _) = existing_job(&state.db, &caller, id).await?;
    if job.status != db_queue::DONE {
        return Err(ApiError::conflict(
            "no_output",
            format!("job {id} is {}: only a done job has an output", job.status),
        ));
    }
    let output = state
        .db
        .run(move |conn| db_queue::output_of(conn, id))
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("job {id}'s output is gone")))?;
    Ok(HttpResponse::Ok()
        .content_type(ContentType::json())
        .body(output))
}
