-- Rollups: per device, per minute (tier 1) and per hour (tier 2), the count, min,
-- max, sum and last reading of every series of the polls of that period, encoded
-- together (db::store::rollup). Made from polls once their minute has closed, so a
-- long range reads one row per minute or hour instead of every poll; each tier has
-- its own retention (config).
CREATE TABLE rollups (
    tier SMALLINT NOT NULL,
    device_id BIGINT NOT NULL,
    at_ms BIGINT NOT NULL,
    -- Readings summed up in the row, all series.
    samples BIGINT NOT NULL,
    data BYTEA NOT NULL,
    PRIMARY KEY (tier, device_id, at_ms)
);

CREATE INDEX rollups_tier_at ON rollups (tier, at_ms);

-- How far each tier is made: every period before until_ms is rolled up.
CREATE TABLE rollup_marks (
    tier SMALLINT PRIMARY KEY,
    until_ms BIGINT NOT NULL
);

ALTER TABLE config ADD COLUMN minute_retention_days INTEGER NOT NULL DEFAULT 90;
ALTER TABLE config ADD COLUMN hour_retention_days INTEGER NOT NULL DEFAULT 730;
