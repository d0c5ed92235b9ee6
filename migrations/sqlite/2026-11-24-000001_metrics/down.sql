DROP TABLE events;
DROP TABLE samples;
ALTER TABLE config DROP COLUMN retention_hours;
ALTER TABLE config DROP COLUMN unreachable_after;
ALTER TABLE devices DROP COLUMN expected_status;
