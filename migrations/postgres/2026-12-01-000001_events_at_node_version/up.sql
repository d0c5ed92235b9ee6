-- Listing events newest first and retention's deletes by age read events by time alone.
CREATE INDEX events_at ON events (at);

-- The version of Vigil each node runs, shown in GET /api/v1/cluster (NULL for a node
-- of a version that did not record it).
ALTER TABLE nodes ADD COLUMN version TEXT;
