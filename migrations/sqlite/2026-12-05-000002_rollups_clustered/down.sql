CREATE TABLE rollups_rowid (
    tier SMALLINT NOT NULL,
    device_id BIGINT NOT NULL,
    at_ms BIGINT NOT NULL,
    samples BIGINT NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (tier, device_id, at_ms)
);

INSERT INTO rollups_rowid (tier, device_id, at_ms, samples, data)
    SELECT tier, device_id, at_ms, samples, data FROM rollups;
DROP TABLE rollups;
ALTER TABLE rollups_rowid RENAME TO rollups;
CREATE INDEX rollups_tier_at ON rollups (tier, at_ms);
