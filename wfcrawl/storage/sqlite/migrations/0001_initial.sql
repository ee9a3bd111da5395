-- wfcrawl's SQLite schema, version 1: executions and the audit log (the same
-- tables as the PostgreSQL schema, wfcrawl/storage/postgres/migrations/).
-- Times are UTC ISO 8601 text with microseconds (they sort as text);
-- params, stats and details are JSON text.

CREATE TABLE executions (
    id             TEXT PRIMARY KEY,
    workflow       TEXT NOT NULL,
    status         TEXT NOT NULL
                   CHECK (status IN ('queued', 'running', 'finished', 'failed', 'cancelled')),
    launch_key     TEXT UNIQUE,
    params         TEXT NOT NULL DEFAULT '{}',
    created_at     TEXT NOT NULL,
    started_at     TEXT,
    finished_at    TEXT,
    finish_reason  TEXT,
    stats          TEXT NOT NULL DEFAULT '{}',
    error          TEXT,
    updated_at     TEXT NOT NULL
);
CREATE INDEX executions_created_idx ON executions (created_at DESC);
CREATE INDEX executions_workflow_idx ON executions (workflow, created_at DESC);
CREATE INDEX executions_status_idx ON executions (status, created_at DESC);

CREATE TABLE audit_log (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    at       TEXT NOT NULL,
    actor    TEXT NOT NULL,
    action   TEXT NOT NULL,
    target   TEXT NOT NULL,
    details  TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_at_idx ON audit_log (at DESC);
CREATE INDEX audit_log_target_idx ON audit_log (target, at DESC);
