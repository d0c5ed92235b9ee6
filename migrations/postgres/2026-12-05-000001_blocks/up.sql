-- Blocks: a device's polls of a closed hour, kept as columns (the polls' times, each
-- series' values), each compressed (db::store::block); the days whose hours hold few
-- polls are merged into one block per device and day. Once an hour has closed and its
-- minutes are rolled up, its polls move here; polls keeps the hours still open.
-- No foreign key, as for polls: deleting a device deletes its blocks.
CREATE TABLE blocks (
    id BIGSERIAL PRIMARY KEY,
    device_id BIGINT NOT NULL,
    -- Its first and last poll.
    at_ms BIGINT NOT NULL,
    end_ms BIGINT NOT NULL,
    polls BIGINT NOT NULL,
    samples BIGINT NOT NULL,
    data BYTEA NOT NULL
);

CREATE INDEX blocks_device_at ON blocks (device_id, at_ms);
CREATE INDEX blocks_at ON blocks (at_ms);

-- A block's data is compressed already: stored out of line without a second try.
ALTER TABLE blocks ALTER COLUMN data SET STORAGE EXTERNAL;
