ALTER TABLE config DROP COLUMN missed_checks;
ALTER TABLE config DROP COLUMN validate_ms;
ALTER TABLE config DROP COLUMN heartbeat_ms;
DROP TABLE nodes;
