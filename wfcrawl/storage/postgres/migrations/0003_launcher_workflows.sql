-- wfcrawl storage, version 3: registered workflows (wfcrawl.launcher.registry.PostgresWorkflowRegistry).
-- IF NOT EXISTS: wfcrawl before this migration created it on first use.

CREATE TABLE IF NOT EXISTS launcher_workflows (
    name        text        PRIMARY KEY,
    document    text        NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
