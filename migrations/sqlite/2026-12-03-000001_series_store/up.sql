-- The series store. Each series name (metric name and labels, as the poll reported
-- it) is stored once for the whole fleet, and each series of a device (device, name)
-- once, each with a numeric id; a poll is one row whose series are encoded together
-- (name ids and values, see db::store::codec) instead of one row per series.
-- The old samples table stays: a start moves its rows into polls (db::store::upgrade),
-- including rows a node of the previous version wrote during a rolling upgrade.
CREATE TABLE series_names (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE
);

CREATE TABLE series (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    device_id BIGINT NOT NULL,
    name_id BIGINT NOT NULL,
    UNIQUE (device_id, name_id)
);

-- One row per poll of a device. No foreign key, as for samples: a poll in flight for
-- a device just deleted must not fail its batch (deleting a device deletes its rows).
CREATE TABLE polls (
    id INTEGER PRIMARY KEY,
    device_id BIGINT NOT NULL,
    epoch BIGINT NOT NULL,
    at_ms BIGINT NOT NULL,
    samples BIGINT NOT NULL,
    data BLOB NOT NULL
);

CREATE INDEX polls_device_at ON polls (device_id, at_ms);
CREATE INDEX polls_at ON polls (at_ms);

-- The newest poll of every device, rewritten by the writer with each poll: the
-- latest readings of the whole fleet without a scan of polls.
CREATE TABLE latest_polls (
    device_id BIGINT PRIMARY KEY,
    epoch BIGINT NOT NULL,
    at_ms BIGINT NOT NULL,
    data BLOB NOT NULL
);
