-- wfcrawl storage, version 4: the audit log of the control plane
-- (wfcrawl.storage.audit: who launched, cancelled, registered what, and when).

CREATE TABLE audit_log (
    id       bigserial   PRIMARY KEY,
    at       timestamptz NOT NULL DEFAULT now(),
    actor    text        NOT NULL,   -- key:<API key name>, pubsub:<subscription>
    action   text        NOT NULL,   -- execution.launched, workflow.registered, ...
    target   text        NOT NULL,   -- an execution id, a workflow name, a key name
    details  jsonb       NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_at_idx ON audit_log (at DESC);
CREATE INDEX audit_log_target_idx ON audit_log (target, at DESC);
