-- The collection queue (seed 001). A collector is a saved collection task of a company;
-- each run of it is a job, which waits in its lane (fast, medium, slow: by the
-- collector's expected duration) at a position, runs on the coordinator that claimed it
-- within its lane's concurrency (held across the cluster: a claim locks the lanes), and
-- ends done, failed, stopped or interrupted. Times are epoch milliseconds.
CREATE TABLE collectors (
    id BIGSERIAL PRIMARY KEY,
    company_id BIGINT NOT NULL REFERENCES companies(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('snapshot', 'report', 'export', 'discovery')),
    -- JSON: {"devices": [ids]} or {"all": true}.
    target TEXT NOT NULL,
    -- JSON: what the kind takes (a report's window, ...).
    params TEXT NOT NULL,
    expected_duration TEXT NOT NULL CHECK (expected_duration IN ('fast', 'medium', 'slow')),
    -- A cron pattern (five fields, or six with seconds) read in time_zone; NULL: run
    -- by hand or through the API only.
    schedule TEXT,
    time_zone TEXT NOT NULL DEFAULT 'UTC',
    -- What the master does with due times missed while no master was up.
    misfire TEXT NOT NULL DEFAULT 'once' CHECK (misfire IN ('skip', 'once', 'all')),
    -- The next due time the master has to handle (moved on in the same transaction as
    -- the firing it decides); NULL without a schedule.
    next_due_at BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (company_id, name)
);

CREATE TABLE jobs (
    id BIGSERIAL PRIMARY KEY,
    collector_id BIGINT NOT NULL REFERENCES collectors(id) ON DELETE CASCADE,
    lane TEXT NOT NULL CHECK (lane IN ('fast', 'medium', 'slow')),
    status TEXT NOT NULL
        CHECK (status IN ('waiting', 'running', 'done', 'failed', 'stopped', 'interrupted')),
    -- A waiting job's place in its lane: the lowest goes first.
    position BIGINT,
    -- Started without a free slot in its lane.
    forced BOOLEAN NOT NULL DEFAULT FALSE,
    -- The node (coordinator) running it.
    node_id BIGINT,
    enqueued_at BIGINT NOT NULL,
    started_at BIGINT,
    ended_at BIGINT,
    stop_requested_at BIGINT,
    progress_done BIGINT NOT NULL DEFAULT 0,
    progress_total BIGINT NOT NULL DEFAULT 0,
    rows_written BIGINT NOT NULL DEFAULT 0,
    error TEXT,
    -- A scheduled firing's due time: one job per collector and due time.
    due_at BIGINT,
    UNIQUE (collector_id, due_at)
);

-- What a run produced (a report: JSON), apart from the jobs the queue reads often.
CREATE TABLE job_outputs (
    job_id BIGINT PRIMARY KEY REFERENCES jobs(id) ON DELETE CASCADE,
    output TEXT NOT NULL
);

-- What an export wrote: its CSV in parts of about a MiB, in order.
CREATE TABLE job_parts (
    job_id BIGINT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    part BIGINT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (job_id, part)
);

-- A collector waits in the queue once at most.
CREATE UNIQUE INDEX jobs_one_waiting ON jobs (collector_id) WHERE status = 'waiting';
CREATE INDEX jobs_lane_status ON jobs (lane, status, position);
CREATE INDEX jobs_collector ON jobs (collector_id, id);

CREATE INDEX collectors_next_due ON collectors (next_due_at) WHERE next_due_at IS NOT NULL;

CREATE TABLE queue_lanes (
    lane TEXT PRIMARY KEY,
    max_running INTEGER NOT NULL CHECK (max_running >= 0),
    paused BOOLEAN NOT NULL DEFAULT FALSE,
    -- A run interrupted by its node's death is queued again at the head of the lane
    -- (else it is left interrupted).
    requeue_interrupted BOOLEAN NOT NULL DEFAULT TRUE
);

INSERT INTO queue_lanes (lane, max_running, paused) VALUES
    ('fast', 4, FALSE), ('medium', 2, FALSE), ('slow', 1, FALSE);
