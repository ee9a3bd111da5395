-- wfcrawl storage, version 5: execution outcomes (wfcrawl.outcome) and fleet instances.
-- `finished` becomes `succeeded`, `degraded` is new; each execution keeps the
-- machine-readable reasons of its outcome; each crawl process of an execution
-- (one, or a fleet's instances) records itself in execution_instances, so an
-- instance that stops records only itself, never the execution's end.

ALTER TABLE executions DROP CONSTRAINT IF EXISTS executions_status_check;
UPDATE executions SET status = 'succeeded' WHERE status = 'finished';
ALTER TABLE executions ADD CONSTRAINT executions_status_check
    CHECK (status IN ('queued', 'running', 'succeeded', 'degraded', 'failed', 'cancelled'));
ALTER TABLE executions ADD COLUMN reasons jsonb NOT NULL DEFAULT '[]';   -- [{"code", "message", ...}]

CREATE TABLE execution_instances (
    execution_id   text        NOT NULL REFERENCES executions (id) ON DELETE CASCADE,
    instance       text        NOT NULL,      -- host/pid/random (the Redis instance id in a fleet)
    status         text        NOT NULL CHECK (status IN ('running', 'closed')),
    finish_reason  text,                      -- Scrapy's, once closed
    started_at     timestamptz NOT NULL DEFAULT now(),
    finished_at    timestamptz,
    stats          jsonb       NOT NULL DEFAULT '{}',
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (execution_id, instance)
);
