-- wfcrawl storage, version 2: the tables of `wfcrawl scheduler` (wfcrawl.cron.locks.PostgresSlotLock).
-- IF NOT EXISTS: wfcrawl before this migration created them when the scheduler started.

-- A claimed (workflow, slot): exactly one replica launches it; also the launch history.
CREATE TABLE IF NOT EXISTS schedule_slots (
    workflow    text        NOT NULL,
    slot        timestamptz NOT NULL,
    owner       text        NOT NULL,
    claimed_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workflow, slot)
);

-- The latest slot handled per workflow (launched or skipped on purpose); only moves forward.
CREATE TABLE IF NOT EXISTS schedule_cursors (
    workflow  text        PRIMARY KEY,
    slot      timestamptz NOT NULL
);
