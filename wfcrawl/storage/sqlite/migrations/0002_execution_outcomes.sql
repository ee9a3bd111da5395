-- wfcrawl's SQLite schema, version 2: execution outcomes (wfcrawl.outcome) and fleet
-- instances, as PostgreSQL's version 5. `finished` becomes `succeeded`, `degraded` is
-- new; each execution keeps the machine-readable reasons of its outcome (JSON text);
-- each crawl process of an execution records itself in execution_instances.
-- SQLite cannot change a CHECK constraint: the table is rebuilt.

CREATE TABLE executions_v2 (
    id             TEXT PRIMARY KEY,
    workflow       TEXT NOT NULL,
    status         TEXT NOT NULL
                   CHECK (status IN ('queued', 'running', 'succeeded', 'degraded', 'failed', 'cancelled')),
    launch_key     TEXT UNIQUE,
    params         TEXT NOT NULL DEFAULT '{}',
    created_at     TEXT NOT NULL,
    started_at     TEXT,
    finished_at    TEXT,
    finish_reason  TEXT,
    stats          TEXT NOT NULL DEFAULT '{}',
    error          TEXT,
    reasons        TEXT NOT NULL DEFAULT '[]',   -- [{"code", "message", ...}]
    updated_at     TEXT NOT NULL
);
INSERT INTO executions_v2 (id, workflow, status, launch_key, params, created_at, started_at, finished_at,
                           finish_reason, stats, error, updated_at)
    SELECT id, workflow, CASE status WHEN 'finished' THEN 'succeeded' ELSE status END, launch_key, params,
           created_at, started_at, finished_at, finish_reason, stats, error, updated_at
    FROM executions;
DROP TABLE executions;
ALTER TABLE executions_v2 RENAME TO executions;
CREATE INDEX executions_created_idx ON executions (created_at DESC);
CREATE INDEX executions_workflow_idx ON executions (workflow, created_at DESC);
CREATE INDEX executions_status_idx ON executions (status, created_at DESC);

CREATE TABLE execution_instances (
    execution_id   TEXT NOT NULL REFERENCES executions (id) ON DELETE CASCADE,
    instance       TEXT NOT NULL,      -- host/pid/random (the Redis instance id in a fleet)
    status         TEXT NOT NULL CHECK (status IN ('running', 'closed')),
    finish_reason  TEXT,               -- Scrapy's, once closed
    started_at     TEXT NOT NULL,
    finished_at    TEXT,
    stats          TEXT NOT NULL DEFAULT '{}',
    updated_at     TEXT NOT NULL,
    PRIMARY KEY (execution_id, instance)
);
