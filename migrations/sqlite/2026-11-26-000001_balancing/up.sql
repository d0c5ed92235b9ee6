-- What each node reports with its heartbeat, for the balancing methods server_memory,
-- server_cpu and server_threads: its process memory (resident bytes), the host's CPU
-- use averaged over 5 s, and its thread count. NULL until its first report.
ALTER TABLE nodes ADD COLUMN memory_bytes BIGINT;
ALTER TABLE nodes ADD COLUMN cpu_percent DOUBLE;
ALTER TABLE nodes ADD COLUMN threads INTEGER;

-- Events are health changes ('state') or moves of a monitor to another server
-- ('moved', from and to naming the servers).
ALTER TABLE events ADD COLUMN kind TEXT NOT NULL DEFAULT 'state';
