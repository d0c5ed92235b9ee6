-- API tokens: only a SHA-256 of each secret is kept. An admin token has no company;
-- operator and viewer tokens belong to exactly one, and go with it.
CREATE TABLE api_tokens (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('admin', 'operator', 'viewer')),
    company_id BIGINT REFERENCES companies (id) ON DELETE CASCADE,
    secret_hash TEXT NOT NULL UNIQUE,
    prefix TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    CHECK ((role = 'admin') = (company_id IS NULL))
);
CREATE INDEX api_tokens_company ON api_tokens (company_id);
