-- Rollup rows kept in key order (tier, device, period): a device's minutes of a week
-- lie together instead of among every other device's rows of the same minutes, which
-- a history read one by one (vigil bench store). PostgreSQL keeps its heap as it is.
CREATE TABLE rollups_clustered (
    tier SMALLINT NOT NULL,
    device_id BIGINT NOT NULL,
    at_ms BIGINT NOT NULL,
    samples BIGINT NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (tier, device_id, at_ms)
) WITHOUT ROWID;

INSERT INTO rollups_clustered (tier, device_id, at_ms, samples, data)
    SELECT tier, device_id, at_ms, samples, data FROM rollups;
DROP TABLE rollups;
ALTER TABLE rollups_clustered RENAME TO rollups;
CREATE INDEX rollups_tier_at ON rollups (tier, at_ms);
