ALTER TABLE nodes DROP COLUMN version;
DROP INDEX events_at;
