-- Cluster membership: one row per live process (coordinator or monitor server). A
-- node advances its own counter every heartbeat_ms; the master removes a node whose
-- counter did not advance for missed_checks validations in a row. Times are the
-- database's, never a node's.
CREATE TABLE nodes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    role TEXT NOT NULL,
    address TEXT NOT NULL,
    server_id BIGINT REFERENCES monitor_servers (id) ON DELETE SET NULL,
    counter BIGINT NOT NULL DEFAULT 0,
    started_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    last_beat_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP
);

ALTER TABLE config ADD COLUMN heartbeat_ms BIGINT NOT NULL DEFAULT 1000;
ALTER TABLE config ADD COLUMN validate_ms BIGINT NOT NULL DEFAULT 3000;
ALTER TABLE config ADD COLUMN missed_checks INTEGER NOT NULL DEFAULT 1;
