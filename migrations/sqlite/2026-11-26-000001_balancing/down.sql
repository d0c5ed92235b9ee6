ALTER TABLE events DROP COLUMN kind;
ALTER TABLE nodes DROP COLUMN threads;
ALTER TABLE nodes DROP COLUMN cpu_percent;
ALTER TABLE nodes DROP COLUMN memory_bytes;
