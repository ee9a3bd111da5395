-- wfcrawl storage, version 1: items, quarantine, executions.
-- Applied by wfcrawl.storage.migrate inside one transaction, with
-- `SET LOCAL search_path` naming the configured schema (WFCRAWL_POSTGRES_SCHEMA):
-- no table here is schema-qualified.

-- One row per (workflow, item type, item key): writes are upserts, so a retried
-- batch or a re-crawl updates the row instead of adding one.
CREATE TABLE items (
    workflow          text        NOT NULL,
    item_type         text        NOT NULL,
    item_key          text        NOT NULL,
    execution_id      text        NOT NULL,   -- the execution that wrote it last
    url               text        NOT NULL,
    phase             text        NOT NULL,
    depth             integer     NOT NULL,
    markers           text[]      NOT NULL,
    scraped_at        timestamptz NOT NULL,   -- when its page was fetched (latest write)
    first_scraped_at  timestamptz NOT NULL,   -- kept from the first write
    item              jsonb       NOT NULL,   -- the extracted fields
    PRIMARY KEY (workflow, item_type, item_key)
);
CREATE INDEX items_execution_idx ON items (execution_id);

-- Items that failed validation (or that the database refused), with the reason:
-- kept, never silently dropped. Same key as items: the latest invalid version.
CREATE TABLE quarantine (
    workflow        text        NOT NULL,
    item_type       text        NOT NULL,
    item_key        text        NOT NULL,
    execution_id    text        NOT NULL,
    url             text,
    phase           text,
    depth           integer,
    markers         text[],
    scraped_at      timestamptz,
    reason          text        NOT NULL,     -- 'invalid' or 'db_error'
    errors          jsonb       NOT NULL,     -- [{"path", "validator", "message"}]
    item            jsonb       NOT NULL,
    quarantined_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workflow, item_type, item_key)
);
CREATE INDEX quarantine_execution_idx ON quarantine (execution_id);

-- The record of one crawl run (wfcrawl.storage.executions.Execution).
CREATE TABLE executions (
    id             text        PRIMARY KEY,
    workflow       text        NOT NULL,
    status         text        NOT NULL
                   CHECK (status IN ('queued', 'running', 'finished', 'failed', 'cancelled')),
    launch_key     text        UNIQUE,
    params         jsonb       NOT NULL DEFAULT '{}',
    created_at     timestamptz NOT NULL DEFAULT now(),
    started_at     timestamptz,
    finished_at    timestamptz,
    finish_reason  text,
    stats          jsonb       NOT NULL DEFAULT '{}',
    error          text,
    updated_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX executions_workflow_idx ON executions (workflow, created_at DESC);
CREATE INDEX executions_status_idx ON executions (status, created_at DESC);
