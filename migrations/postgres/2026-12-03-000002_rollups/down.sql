ALTER TABLE config DROP COLUMN hour_retention_days;
ALTER TABLE config DROP COLUMN minute_retention_days;
DROP TABLE rollup_marks;
DROP TABLE rollups;
