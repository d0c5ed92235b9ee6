//! The collection queue's tables: collectors (saved collection tasks of a company),
//! jobs (their runs: waiting in a lane at a position, running on a node, or ended),
//! and the lanes with their concurrency. Every change of a job's place or state is one
//! statement or one write transaction; a claim locks the lanes first, so two
//! coordinators claiming at once never run more than a lane takes.

use std::fmt;

use diesel::prelude::*;

use super::schema::{collectors, job_outputs, job_parts, jobs, queue_lanes};
use super::{write_transaction, DbConn};

/// A lane, by a collector's expected duration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Lane {
    Fast,
    Medium,
    Slow,
}

impl Lane {
    pub const ALL: [Lane; 3] = [Lane::Fast, Lane::Medium, Lane::Slow];

    pub fn as_str(self) -> &'static str {
        match self {
            Lane::Fast => "fast",
            Lane::Medium => "medium",
            Lane::Slow => "slow",
        }
    }

    pub fn parse(text: &str) -> Option<Lane> {
        Lane::ALL.into_iter().find(|lane| lane.as_str() == text)
    }
}

impl fmt::Display for Lane {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

pub const WAITING: &str = "waiting";
pub const RUNNING: &str = "running";
pub const DONE: &str = "done";
pub const FAILED: &str = "failed";
pub const STOPPED: &str = "stopped";
pub const INTERRUPTED: &str = "interrupted";

#[derive(Debug, Clone, PartialEq, Queryable, Selectable)]
#[diesel(table_name = collectors)]
pub struct Collector {
    pub id: i64,
    pub company_id: i64,
    pub name: String,
    pub kind: String,
    pub target: String,
    pub params: String,
    pub expected_duration: String,
    pub schedule: Option<String>,
    pub time_zone: String,
    pub misfire: String,
    pub next_due_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = collectors)]
pub struct NewCollector {
    pub company_id: i64,
    pub name: String,
    pub kind: String,
    pub target: String,
    pub params: String,
    pub expected_duration: String,
    pub schedule: Option<String>,
    pub time_zone: String,
    pub misfire: String,
    pub next_due_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// What a change of a collector sets (`None`: unchanged).
#[derive(Debug, Clone, Default, AsChangeset)]
#[diesel(table_name = collectors)]
pub struct CollectorChanges {
    pub name: Option<String>,
    pub target: Option<String>,
    pub params: Option<String>,
    pub expected_duration: Option<String>,
    pub schedule: Option<Option<String>>,
    pub time_zone: Option<String>,
    pub misfire: Option<String>,
    pub next_due_at: Option<Option<i64>>,
    pub updated_at: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Queryable, Selectable)]
#[diesel(table_name = jobs)]
pub struct Job {
    pub id: i64,
    pub collector_id: i64,
    pub lane: String,
    pub status: String,
    pub position: Option<i64>,
    pub forced: bool,
    pub node_id: Option<i64>,
    pub enqueued_at: i64,
    pub started_at: Option<i64>,
    pub ended_at: Option<i64>,
    pub stop_requested_at: Option<i64>,
    pub progress_done: i64,
    pub progress_total: i64,
    pub rows_written: i64,
    pub error: Option<String>,
    pub due_at: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = queue_lanes)]
pub struct LaneRow {
    pub lane: String,
    pub max_running: i32,
    pub paused: bool,
    pub requeue_interrupted: bool,
}

/// Why an operation does not apply to a job, as a sentence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused(pub String);

/// An operation on a job: `Ok` with the job after it, `Err` when it does not apply,
/// `None` when the job does not exist (or is another company's).
pub type Outcome = Option<Result<Job, Refused>>;

pub fn create_collector(conn: &mut DbConn, new: &NewCollector) -> QueryResult<Collector> {
    diesel::insert_into(collectors::table)
        .values(new)
        .returning(collectors::all_columns)
        .get_result(conn)
}

/// Collectors of `company` (every company: `None`), by id.
pub fn collectors_of(
    conn: &mut DbConn,
    company: Option<i64>,
    limit: i64,
    offset: i64,
) -> QueryResult<Vec<Collector>> {
    let mut query = collectors::table
        .select(Collector::as_select())
        .order(collectors::id)
        .limit(limit)
        .offset(offset)
        .into_boxed();
    if let Some(company) = company {
        query = query.filter(collectors::company_id.eq(company));
    }
    query.load(conn)
}

/// Collector `id`, if it is `company`'s (any company's: `None`).
pub fn collector_in(
    conn: &mut DbConn,
    id: i64,
    company: Option<i64>,
) -> QueryResult<Option<Collector>> {
    let mut query = collectors::table
        .filter(collectors::id.eq(id))
        .select(Collector::as_select())
        .into_boxed();
    if let Some(company) = company {
        query = query.filter(collectors::company_id.eq(company));
    }
    query.first(conn).optional()
}

pub fn update_collector(
    conn: &mut DbConn,
    id: i64,
    changes: &CollectorChanges,
) -> QueryResult<Collector> {
    diesel::update(collectors::table.find(id))
        .set(changes)
        .returning(collectors::all_columns)
        .get_result(conn)
}

/// Deletes a collector with its finished and waiting jobs; refused while one runs.
pub fn delete_collector(conn: &mut DbConn, id: i64) -> QueryResult<Result<(), Refused>> {
    write_transaction(conn, |conn| {
        let running: i64 = jobs::table
            .filter(jobs::collector_id.eq(id))
            .filter(jobs::status.eq(RUNNING))
            .count()
            .get_result(conn)?;
        if running > 0 {
            return Ok(Err(Refused(format!(
                "collector {id} has a running job; stop it first"
            ))));
        }
        diesel::delete(collectors::table.find(id)).execute(conn)?;
        Ok(Ok(()))
    })
}

/// A job, if its collector is `company`'s (any company's: `None`), with its collector.
pub fn job_in(
    conn: &mut DbConn,
    id: i64,
    company: Option<i64>,
) -> QueryResult<Option<(Job, Collector)>> {
    let mut query = jobs::table
        .inner_join(collectors::table)
        .filter(jobs::id.eq(id))
        .select((Job::as_select(), Collector::as_select()))
        .into_boxed();
    if let Some(company) = company {
        query = query.filter(collectors::company_id.eq(company));
    }
    query.first(conn).optional()
}

/// The lanes, fast to slow.
pub fn lanes(conn: &mut DbConn) -> QueryResult<Vec<LaneRow>> {
    let mut rows: Vec<LaneRow> = queue_lanes::table.select(LaneRow::as_select()).load(conn)?;
    rows.sort_by_key(|row| Lane::parse(&row.lane));
    Ok(rows)
}

pub fn set_max_running(conn: &mut DbConn, lane: Lane, max: i32) -> QueryResult<usize> {
    diesel::update(queue_lanes::table.find(lane.as_str()))
        .set(queue_lanes::max_running.eq(max))
        .execute(conn)
}

pub fn set_requeue_interrupted(conn: &mut DbConn, lane: Lane, requeue: bool) -> QueryResult<usize> {
    diesel::update(queue_lanes::table.find(lane.as_str()))
        .set(queue_lanes::requeue_interrupted.eq(requeue))
        .execute(conn)
}

pub fn set_paused(conn: &mut DbConn, lane: Lane, paused: bool) -> QueryResult<usize> {
    diesel::update(queue_lanes::table.find(lane.as_str()))
        .set(queue_lanes::paused.eq(paused))
        .execute(conn)
}

/// The end of `lane`'s waiting line: the position after the last.
fn next_position(conn: &mut DbConn, lane: Lane) -> QueryResult<i64> {
    let last: Option<i64> = jobs::table
        .filter(jobs::lane.eq(lane.as_str()))
        .filter(jobs::status.eq(WAITING))
        .select(diesel::dsl::max(jobs::position))
        .first(conn)?;
    Ok(last.map_or(1, |p| p + 1))
}

/// The head of `lane`'s waiting line: a position before the first.
fn head_position(conn: &mut DbConn, lane: Lane) -> QueryResult<i64> {
    let first: Option<i64> = jobs::table
        .filter(jobs::lane.eq(lane.as_str()))
        .filter(jobs::status.eq(WAITING))
        .select(diesel::dsl::min(jobs::position))
        .first(conn)?;
    Ok(first.map_or(1, |p| p - 1))
}

/// The waiting job of a collector, if it has one.
fn waiting_of(conn: &mut DbConn, collector_id: i64) -> QueryResult<Option<Job>> {
    jobs::table
        .filter(jobs::collector_id.eq(collector_id))
        .filter(jobs::status.eq(WAITING))
        .select(Job::as_select())
        .first(conn)
        .optional()
}

/// A run of `collector` queued at the end of its lane; a collector already waiting is
/// not queued twice (answers its waiting job and `false`). `due_at`: the scheduled
/// firing it is (one job per collector and due time).
pub fn enqueue(
    conn: &mut DbConn,
    collector: &Collector,
    now_ms: i64,
    due_at: Option<i64>,
) -> QueryResult<(Job, bool)> {
    write_transaction(conn, |conn| enqueue_within(conn, collector, now_ms, due_at))
}

/// [`enqueue`] within the caller's write transaction.
fn enqueue_within(
    conn: &mut DbConn,
    collector: &Collector,
    now_ms: i64,
    due_at: Option<i64>,
) -> QueryResult<(Job, bool)> {
    if let Some(waiting) = waiting_of(conn, collector.id)? {
        return Ok((waiting, false));
    }
    let lane = Lane::parse(&collector.expected_duration).unwrap_or(Lane::Slow);
    let position = next_position(conn, lane)?;
    let job = diesel::insert_into(jobs::table)
        .values((
            jobs::collector_id.eq(collector.id),
            jobs::lane.eq(lane.as_str()),
            jobs::status.eq(WAITING),
            jobs::position.eq(position),
            jobs::enqueued_at.eq(now_ms),
            jobs::due_at.eq(due_at),
        ))
        .returning(jobs::all_columns)
        .get_result(conn)?;
    Ok((job, true))
}

/// Scheduled collectors whose next due time has come by `now_ms`, soonest first, with
/// whether a run of each waits already.
pub fn due_collectors(
    conn: &mut DbConn,
    now_ms: i64,
    limit: i64,
) -> QueryResult<Vec<(Collector, bool)>> {
    let due: Vec<Collector> = collectors::table
        .filter(collectors::next_due_at.le(now_ms))
        .order(collectors::next_due_at)
        .limit(limit)
        .select(Collector::as_select())
        .load(conn)?;
    let ids: Vec<i64> = due.iter().map(|c| c.id).collect();
    let waiting: Vec<i64> = jobs::table
        .filter(jobs::collector_id.eq_any(&ids))
        .filter(jobs::status.eq(WAITING))
        .select(jobs::collector_id)
        .load(conn)?;
    Ok(due
        .into_iter()
        .map(|c| {
            let waits = waiting.contains(&c.id);
            (c, waits)
        })
        .collect())
}

/// What the master decided for a scheduled collector whose due time `seen_due` came.
#[derive(Debug, Clone, Copy)]
pub struct Fired {
    /// The job queued (or the run waiting already), `None` when nothing was fired.
    pub job: Option<(i64, bool)>,
}

/// Handles due time `seen_due` of `collector` in one write transaction: its next due
/// time becomes `next_due` only if it is still `seen_due` (a compare-and-set: another
/// master or a retry that handled it already makes this answer `None`), and a run
/// keyed by (`collector`, `fire`) is queued when `fire` is set and no run has that key.
pub fn fire(
    conn: &mut DbConn,
    collector: &Collector,
    seen_due: i64,
    fire: Option<i64>,
    next_due: Option<i64>,
    now_ms: i64,
) -> QueryResult<Option<Fired>> {
    write_transaction(conn, |conn| {
        let moved = diesel::update(
            collectors::table
                .filter(collectors::id.eq(collector.id))
                .filter(collectors::next_due_at.eq(seen_due)),
        )
        .set(collectors::next_due_at.eq(next_due))
        .execute(conn)?;
        if moved == 0 {
            return Ok(None);
        }
        let Some(due) = fire else {
            return Ok(Some(Fired { job: None }));
        };
        let fired_before: i64 = jobs::table
            .filter(jobs::collector_id.eq(collector.id))
            .filter(jobs::due_at.eq(due))
            .count()
            .get_result(conn)?;
        if fired_before > 0 {
            return Ok(Some(Fired { job: None }));
        }
        let (job, queued) = enqueue_within(conn, collector, now_ms, Some(due))?;
        Ok(Some(Fired {
            job: Some((job.id, queued)),
        }))
    })
}

/// Locks the lanes for the rest of the transaction (PostgreSQL; SQLite's write
/// transaction holds the whole database): claims made meanwhile by another node wait.
fn lock_lanes(conn: &mut DbConn) -> QueryResult<Vec<LaneRow>> {
    match conn {
        DbConn::Pg(pg) => queue_lanes::table
            .select((
                queue_lanes::lane,
                queue_lanes::max_running,
                queue_lanes::paused,
                queue_lanes::requeue_interrupted,
            ))
            .order(queue_lanes::lane)
            .for_update()
            .load::<(String, i32, bool, bool)>(pg)
            .map(|rows| {
                rows.into_iter()
                    .map(|(lane, max_running, paused, requeue_interrupted)| LaneRow {
                        lane,
                        max_running,
                        paused,
                        requeue_interrupted,
                    })
                    .collect()
            }),
        DbConn::Sqlite(_) => queue_lanes::table.select(LaneRow::as_select()).load(conn),
    }
}

/// Claims for `node`, in one write transaction with the lanes locked, the first
/// waiting jobs of every lane that is not paused, as many as its free slots (forced
/// runs take none); answers them, running.
pub fn claim(conn: &mut DbConn, node: i64, now_ms: i64) -> QueryResult<Vec<Job>> {
    write_transaction(conn, |conn| {
        let mut claimed = Vec::new();
        for lane in lock_lanes(conn)? {
            if lane.paused {
                continue;
            }
            let running: i64 = jobs::table
                .filter(jobs::lane.eq(&lane.lane))
                .filter(jobs::status.eq(RUNNING))
                .filter(jobs::forced.eq(false))
                .count()
                .get_result(conn)?;
            let free = i64::from(lane.max_running) - running;
            if free <= 0 {
                continue;
            }
            let next: Vec<i64> = jobs::table
                .filter(jobs::lane.eq(&lane.lane))
                .filter(jobs::status.eq(WAITING))
                .order((jobs::position, jobs::id))
                .select(jobs::id)
                .limit(free)
                .load(conn)?;
            for id in next {
                if let Some(job) = start(conn, id, node, now_ms, false)? {
                    claimed.push(job);
                }
            }
        }
        Ok(claimed)
    })
}

/// Waiting job `id` running on `node` from `now_ms`: a compare-and-set on its status.
fn start(
    conn: &mut DbConn,
    id: i64,
    node: i64,
    now_ms: i64,
    forced: bool,
) -> QueryResult<Option<Job>> {
    diesel::update(
        jobs::table
            .filter(jobs::id.eq(id))
            .filter(jobs::status.eq(WAITING)),
    )
    .set((
        jobs::status.eq(RUNNING),
        jobs::position.eq(None::<i64>),
        jobs::node_id.eq(node),
        jobs::started_at.eq(now_ms),
        jobs::forced.eq(forced),
    ))
    .returning(jobs::all_columns)
    .get_result(conn)
    .optional()
}

fn must_wait(job: &Job, what: &str) -> Result<(), Refused> {
    if job.status == WAITING {
        Ok(())
    } else {
        Err(Refused(format!(
            "job {} is {}: only a waiting job can be {what}",
            job.id, job.status
        )))
    }
}

/// Where a waiting job goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Move {
    Up,
    Down,
    /// To this place in its lane, 1 the first.
    To(i64),
    /// To the end of another lane.
    Lane(Lane),
}

/// Moves waiting job `id` (of `company`, any: `None`).
pub fn move_job(
    conn: &mut DbConn,
    id: i64,
    company: Option<i64>,
    to: Move,
) -> QueryResult<Outcome> {
    write_transaction(conn, |conn| {
        let Some((job, _)) = job_in(conn, id, company)? else {
            return Ok(None);
        };
        if let Err(refused) = must_wait(&job, "moved") {
            return Ok(Some(Err(refused)));
        }
        let lane = Lane::parse(&job.lane).unwrap_or(Lane::Slow);
        if let Move::Lane(other) = to {
            let position = next_position(conn, other)?;
            let moved = diesel::update(jobs::table.find(id))
                .set((jobs::lane.eq(other.as_str()), jobs::position.eq(position)))
                .returning(jobs::all_columns)
                .get_result(conn)?;
            return Ok(Some(Ok(moved)));
        }
        let mut line: Vec<i64> = jobs::table
            .filter(jobs::lane.eq(lane.as_str()))
            .filter(jobs::status.eq(WAITING))
            .order((jobs::position, jobs::id))
            .select(jobs::id)
            .load(conn)?;
        let Some(at) = line.iter().position(|j| *j == id) else {
            return Ok(None);
        };
        let target = match to {
            Move::Up => at.saturating_sub(1),
            Move::Down => (at + 1).min(line.len() - 1),
            Move::To(place) => {
                if place < 1 {
                    return Ok(Some(Err(Refused(format!(
                        "position {place} is not a place in a line: the first is 1"
                    )))));
                }
                usize::try_from(place - 1)
                    .unwrap_or(usize::MAX)
                    .min(line.len() - 1)
            }
            Move::Lane(_) => at,
        };
        line.remove(at);
        line.insert(target, id);
        for (place, job) in line.iter().enumerate() {
            diesel::update(jobs::table.find(job))
                .set(jobs::position.eq(place as i64 + 1))
                .execute(conn)?;
        }
        let moved = jobs::table.find(id).select(Job::as_select()).first(conn)?;
        Ok(Some(Ok(moved)))
    })
}

/// Takes waiting job `id` out of the queue (it never ran: it is deleted).
pub fn remove(conn: &mut DbConn, id: i64, company: Option<i64>) -> QueryResult<Outcome> {
    write_transaction(conn, |conn| {
        let Some((job, _)) = job_in(conn, id, company)? else {
            return Ok(None);
        };
        if let Err(refused) = must_wait(&job, "removed") {
            return Ok(Some(Err(refused)));
        }
        diesel::delete(jobs::table.find(id)).execute(conn)?;
        Ok(Some(Ok(job)))
    })
}

/// Starts waiting job `id` on `node` now, with or without a free slot: tagged forced.
pub fn force(
    conn: &mut DbConn,
    id: i64,
    company: Option<i64>,
    node: i64,
    now_ms: i64,
) -> QueryResult<Outcome> {
    write_transaction(conn, |conn| {
        let Some((job, _)) = job_in(conn, id, company)? else {
            return Ok(None);
        };
        if let Err(refused) = must_wait(&job, "forced") {
            return Ok(Some(Err(refused)));
        }
        Ok(start(conn, id, node, now_ms, true)?
            .map(Ok)
            .or(Some(Err(Refused(format!("job {id} started meanwhile"))))))
    })
}

/// Asks running job `id` to stop (its node stops it at its next safe point).
pub fn request_stop(
    conn: &mut DbConn,
    id: i64,
    company: Option<i64>,
    now_ms: i64,
) -> QueryResult<Outcome> {
    write_transaction(conn, |conn| {
        let Some((job, _)) = job_in(conn, id, company)? else {
            return Ok(None);
        };
        if job.status != RUNNING {
            return Ok(Some(Err(Refused(format!(
                "job {id} is {}: only a running job can be stopped{}",
                job.status,
                if job.status == WAITING {
                    " (remove a waiting one)"
                } else {
                    ""
                }
            )))));
        }
        if job.stop_requested_at.is_some() {
            return Ok(Some(Ok(job)));
        }
        let asked = diesel::update(jobs::table.find(id))
            .set(jobs::stop_requested_at.eq(now_ms))
            .returning(jobs::all_columns)
            .get_result(conn)?;
        Ok(Some(Ok(asked)))
    })
}

/// The running jobs of `node` asked to stop: `(id, when asked)`.
pub fn stops_asked(conn: &mut DbConn, node: i64) -> QueryResult<Vec<(i64, i64)>> {
    let rows: Vec<(i64, Option<i64>)> = jobs::table
        .filter(jobs::node_id.eq(node))
        .filter(jobs::status.eq(RUNNING))
        .filter(jobs::stop_requested_at.is_not_null())
        .select((jobs::id, jobs::stop_requested_at))
        .load(conn)?;
    Ok(rows
        .into_iter()
        .filter_map(|(id, at)| Some((id, at?)))
        .collect())
}

/// Progress of running job `id`.
pub fn progress(conn: &mut DbConn, id: i64, done: i64, total: i64, rows: i64) -> QueryResult<()> {
    diesel::update(
        jobs::table
            .filter(jobs::id.eq(id))
            .filter(jobs::status.eq(RUNNING)),
    )
    .set((
        jobs::progress_done.eq(done),
        jobs::progress_total.eq(total),
        jobs::rows_written.eq(rows),
    ))
    .execute(conn)?;
    Ok(())
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Ending {
    pub status: &'static str,
    pub error: Option<String>,
    pub output: Option<String>,
}

/// Ends running job `id` of `node`; false when it was not running there (ended by
/// another: interrupted as its node was taken for dead).
pub fn finish(
    conn: &mut DbConn,
    id: i64,
    node: i64,
    now_ms: i64,
    ending: &Ending,
) -> QueryResult<bool> {
    write_transaction(conn, |conn| {
        let ended = diesel::update(
            jobs::table
                .filter(jobs::id.eq(id))
                .filter(jobs::node_id.eq(node))
                .filter(jobs::status.eq(RUNNING)),
        )
        .set((
            jobs::status.eq(ending.status),
            jobs::ended_at.eq(now_ms),
            jobs::error.eq(&ending.error),
        ))
        .execute(conn)?;
        if ended == 1 {
            if let Some(output) = &ending.output {
                diesel::insert_into(job_outputs::table)
                    .values((job_outputs::job_id.eq(id), job_outputs::output.eq(output)))
                    .execute(conn)?;
            }
        }
        Ok(ended == 1)
    })
}

pub fn output_of(conn: &mut DbConn, id: i64) -> QueryResult<Option<String>> {
    job_outputs::table
        .find(id)
        .select(job_outputs::output)
        .first(conn)
        .optional()
}

/// Marks `interrupted` every running job whose node is not among `live`, and, with
/// `requeue`, puts a new run of its collector at the head of its lane (unless the
/// collector waits already); answers the interrupted jobs.
pub fn interrupt_orphans(conn: &mut DbConn, live: &[i64], now_ms: i64) -> QueryResult<Vec<Job>> {
    write_transaction(conn, |conn| {
        let requeued: Vec<String> = queue_lanes::table
            .filter(queue_lanes::requeue_interrupted.eq(true))
            .select(queue_lanes::lane)
            .load(conn)?;
        let orphans: Vec<Job> = jobs::table
            .filter(jobs::status.eq(RUNNING))
            .filter(
                jobs::node_id
                    .is_null()
                    .or(jobs::node_id.ne_all(live.to_vec())),
            )
            .select(Job::as_select())
            .load(conn)?;
        for job in &orphans {
            diesel::update(jobs::table.find(job.id))
                .set((
                    jobs::status.eq(INTERRUPTED),
                    jobs::ended_at.eq(now_ms),
                    jobs::error.eq(format!(
                        "node {} running it stopped before it ended",
                        job.node_id.unwrap_or(0)
                    )),
                ))
                .execute(conn)?;
            if requeued.contains(&job.lane) && waiting_of(conn, job.collector_id)?.is_none() {
                let lane = Lane::parse(&job.lane).unwrap_or(Lane::Slow);
                let position = head_position(conn, lane)?;
                diesel::insert_into(jobs::table)
                    .values((
                        jobs::collector_id.eq(job.collector_id),
                        jobs::lane.eq(lane.as_str()),
                        jobs::status.eq(WAITING),
                        jobs::position.eq(position),
                        jobs::enqueued_at.eq(now_ms),
                    ))
                    .execute(conn)?;
            }
        }
        Ok(orphans)
    })
}

/// Jobs of `company` (every company: `None`) with their collectors: waiting and
/// running ones (every lane, waiting in line order), or, with `collector`, that
/// collector's jobs, newest first.
pub fn jobs_of(
    conn: &mut DbConn,
    company: Option<i64>,
    collector: Option<i64>,
    status: Option<&str>,
    limit: i64,
    offset: i64,
) -> QueryResult<Vec<(Job, Collector)>> {
    let mut query = jobs::table
        .inner_join(collectors::table)
        .select((Job::as_select(), Collector::as_select()))
        .limit(limit)
        .offset(offset)
        .into_boxed();
    if let Some(company) = company {
        query = query.filter(collectors::company_id.eq(company));
    }
    if let Some(collector) = collector {
        query = query.filter(jobs::collector_id.eq(collector));
    }
    if let Some(status) = status {
        query = query.filter(jobs::status.eq(status.to_string()));
    }
    query = query.order((jobs::lane, jobs::position, jobs::id.desc()));
    query.load(conn)
}

/// The waiting and running jobs of every company, for the queue's view (and its
/// estimates, which count every company's jobs ahead).
pub fn active(conn: &mut DbConn) -> QueryResult<Vec<(Job, Collector)>> {
    jobs::table
        .inner_join(collectors::table)
        .filter(jobs::status.eq_any([WAITING, RUNNING]))
        .order((jobs::lane, jobs::position, jobs::id))
        .select((Job::as_select(), Collector::as_select()))
        .load(conn)
}

/// Mean run times in ms of the last runs that ended `done`.
#[derive(Debug, Default)]
pub struct RunTimes {
    /// Per collector.
    pub per_collector: std::collections::BTreeMap<i64, f64>,
    /// Per lane, over all its collectors.
    pub per_lane: std::collections::BTreeMap<String, f64>,
}

impl RunTimes {
    /// What a run of `collector` in `lane` is expected to take: its own mean, else its
    /// lane's, else nothing known.
    pub fn expected(&self, collector: i64, lane: &str) -> Option<f64> {
        self.per_collector
            .get(&collector)
            .or_else(|| self.per_lane.get(lane))
            .copied()
    }
}

/// The mean run time of the last 1,000 runs that ended `done`, per collector and per
/// lane: what an estimated start is made of.
pub fn mean_run_times(conn: &mut DbConn) -> QueryResult<RunTimes> {
    let rows: Vec<(i64, String, Option<i64>, Option<i64>)> = jobs::table
        .filter(jobs::status.eq(DONE))
        .order(jobs::id.desc())
        .limit(1000)
        .select((
            jobs::collector_id,
            jobs::lane,
            jobs::started_at,
            jobs::ended_at,
        ))
        .load(conn)?;
    let mut per_collector: std::collections::BTreeMap<i64, (f64, f64)> = Default::default();
    let mut per_lane: std::collections::BTreeMap<String, (f64, f64)> = Default::default();
    for (collector, lane, started, ended) in rows {
        let (Some(started), Some(ended)) = (started, ended) else {
            continue;
        };
        let took = (ended - started).max(0) as f64;
        for (sum, n) in [
            per_collector.entry(collector).or_default(),
            per_lane.entry(lane).or_default(),
        ] {
            *sum += took;
            *n += 1.0;
        }
    }
    let mean = |(sum, n): (f64, f64)| sum / n.max(1.0);
    Ok(RunTimes {
        per_collector: per_collector
            .into_iter()
            .map(|(k, v)| (k, mean(v)))
            .collect(),
        per_lane: per_lane.into_iter().map(|(k, v)| (k, mean(v))).collect(),
    })
}

/// Writes part `part` of job `job`'s CSV.
pub fn append_part(conn: &mut DbConn, job: i64, part: i64, body: &str) -> QueryResult<usize> {
    diesel::insert_into(job_parts::table)
        .values((
            job_parts::job_id.eq(job),
            job_parts::part.eq(part),
            job_parts::body.eq(body),
        ))
        .execute(conn)
}

/// How many parts job `job` wrote.
pub fn part_count(conn: &mut DbConn, job: i64) -> QueryResult<i64> {
    job_parts::table
        .filter(job_parts::job_id.eq(job))
        .count()
        .get_result(conn)
}

/// Part `part` of job `job`'s CSV, if it exists.
pub fn part(conn: &mut DbConn, job: i64, part: i64) -> QueryResult<Option<String>> {
    job_parts::table
        .find((job, part))
        .select(job_parts::body)
        .first(conn)
        .optional()
}

/// Deletes up to `limit` ended jobs that ended before `before_ms`; answers how many.
pub fn delete_ended_before(conn: &mut DbConn, before_ms: i64, limit: i64) -> QueryResult<usize> {
    let ids: Vec<i64> = jobs::table
        .filter(jobs::status.eq_any([DONE, FAILED, STOPPED, INTERRUPTED]))
        .filter(jobs::ended_at.lt(before_ms))
        .select(jobs::id)
        .order(jobs::id)
        .limit(limit)
        .load(conn)?;
    if ids.is_empty() {
        return Ok(0);
    }
    diesel::delete(job_outputs::table.filter(job_outputs::job_id.eq_any(&ids))).execute(conn)?;
    diesel::delete(job_parts::table.filter(job_parts::job_id.eq_any(&ids))).execute(conn)?;
    diesel::delete(jobs::table.filter(jobs::id.eq_any(&ids))).execute(conn)
}
