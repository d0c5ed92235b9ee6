-- Real metrics: what each poll read (samples), every change of a device's health
-- (events), the status an http device must answer, and the settings that judge
-- health and keep history.
ALTER TABLE devices ADD COLUMN expected_status INTEGER;

ALTER TABLE config ADD COLUMN unreachable_after INTEGER NOT NULL DEFAULT 3;
ALTER TABLE config ADD COLUMN retention_hours INTEGER NOT NULL DEFAULT 168;

-- One row per series per poll. No foreign key: a sample in flight for a device that
-- was just deleted must not fail its whole batch (deleting a device deletes its rows).
-- at_ms is milliseconds since the Unix epoch, so both backends bucket it alike.
CREATE TABLE samples (
    id INTEGER PRIMARY KEY,
    device_id BIGINT NOT NULL,
    epoch BIGINT NOT NULL,
    at_ms BIGINT NOT NULL,
    metric TEXT NOT NULL,
    value DOUBLE PRECISION NOT NULL
);

CREATE INDEX samples_device_at ON samples (device_id, at_ms);
CREATE INDEX samples_at ON samples (at_ms);

CREATE TABLE events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    device_id BIGINT NOT NULL,
    company_id BIGINT NOT NULL,
    epoch BIGINT NOT NULL,
    from_state TEXT NOT NULL,
    to_state TEXT NOT NULL,
    at TIMESTAMP NOT NULL,
    reason TEXT NOT NULL
);

CREATE INDEX events_device_at ON events (device_id, at);
CREATE INDEX events_company_at ON events (company_id, at);
