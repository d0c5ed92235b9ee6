-- Core runtime: companies, their devices, the monitor servers, the one-row config
-- and the ownership of each monitored device.
CREATE TABLE companies (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    created_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP
);

CREATE TABLE devices (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    company_id BIGINT NOT NULL REFERENCES companies (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    address TEXT NOT NULL,
    kind TEXT NOT NULL,
    enabled BOOLEAN NOT NULL DEFAULT 1,
    created_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    UNIQUE (company_id, name)
);

CREATE TABLE monitor_servers (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    host TEXT NOT NULL,
    port INTEGER NOT NULL,
    registered_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    UNIQUE (host, port)
);

CREATE TABLE config (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    monitor_server_current BIGINT NOT NULL DEFAULT 0,
    max_monitors_per_server INTEGER NOT NULL DEFAULT 1000,
    poll_interval_ms BIGINT NOT NULL DEFAULT 5000,
    timeout_ms BIGINT NOT NULL DEFAULT 3000,
    alert_threshold INTEGER NOT NULL DEFAULT 70,
    critical_threshold INTEGER NOT NULL DEFAULT 90,
    balance_method TEXT NOT NULL DEFAULT 'round_robin',
    updated_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP
);

INSERT INTO config (id) VALUES (1);

-- One row per device that has ever been scheduled. server_id is NULL while the
-- device is not monitored; epoch grows on every change of owner, release included.
CREATE TABLE assignments (
    device_id BIGINT PRIMARY KEY REFERENCES devices (id) ON DELETE CASCADE,
    server_id BIGINT REFERENCES monitor_servers (id) ON DELETE SET NULL,
    epoch BIGINT NOT NULL,
    updated_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP
);

CREATE INDEX assignments_server_id ON assignments (server_id);
