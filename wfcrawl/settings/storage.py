"""Storage: PostgreSQL, Google Cloud Storage, validation, executions (docs/storage.md).

``DATABASE_URL`` and ``GCS_BUCKET`` name the services (also read from the
environment); each store is on when its service is named.
"""

from __future__ import annotations

from wfcrawl.settings.table import Setting, register

PAGE = "storage.md"

SETTINGS = register((
    Setting(
        "DATABASE_URL", "", "str", environment=True, page=PAGE,
        doc="PostgreSQL DSN (URI or `key=value`); also read from the environment. Enables the PostgreSQL "
        "pipeline and the execution record.",
    ),
    Setting(
        "GCS_BUCKET", "", "str", environment=True, page=PAGE,
        doc="Bucket name (`gs://` prefix allowed); also read from the environment. Enables the GCS pipeline.",
    ),
    Setting(
        "WFCRAWL_VALIDATION_ENABLED", True, "bool", page=PAGE,
        doc="Check items against their type's JSON Schema (keys are assigned either way).",
    ),
    Setting(
        "WFCRAWL_POSTGRES_ENABLED", True, "bool", page=PAGE,
        doc="The PostgreSQL pipeline, when `DATABASE_URL` is set.",
    ),
    Setting(
        "WFCRAWL_POSTGRES_SCHEMA", "wfcrawl", "str", required=True, page=PAGE,
        doc="Schema of wfcrawl's tables (created if missing).",
    ),
    Setting(
        "WFCRAWL_POSTGRES_MIGRATE", True, "bool", page=PAGE,
        doc="Apply pending migrations at start; off when a deploy step runs them.",
    ),
    Setting(
        "WFCRAWL_POSTGRES_BATCH_SIZE", 1000, "int", minimum=1, page=PAGE,
        doc="Rows per batch (one transaction).",
    ),
    Setting(
        "WFCRAWL_POSTGRES_FLUSH_INTERVAL", 1.0, "float", exclusive_minimum=0, page=PAGE,
        doc="Seconds: a non-empty batch is written at least this often (when its writer is idle).",
    ),
    Setting(
        "WFCRAWL_POSTGRES_MAX_PENDING", 50000, "int", minimum=1, page=PAGE,
        doc="Rows buffered or being written before `process_item` waits (≥ batch size).",
    ),
    Setting(
        "WFCRAWL_POSTGRES_WRITERS", 2, "int", minimum=1, page=PAGE,
        doc="Writer threads, one connection each.",
    ),
    Setting(
        "WFCRAWL_POSTGRES_CONNECT_TIMEOUT", 10.0, "float", exclusive_minimum=0, page=PAGE,
        doc="Seconds to connect.",
    ),
    Setting(
        # 0: no SET LOCAL at all (the server's statement_timeout applies).
        "WFCRAWL_POSTGRES_STATEMENT_TIMEOUT", 60.0, "float", minimum=0, page=PAGE,
        doc="Seconds, `SET LOCAL statement_timeout` of every write transaction.",
    ),
    Setting(
        "WFCRAWL_POSTGRES_QUARANTINE", True, "bool", page=PAGE,
        doc="Keep invalid items in the `quarantine` table.",
    ),
    Setting(
        "WFCRAWL_GCS_ENABLED", True, "bool", page=PAGE,
        doc="The GCS pipeline, when `GCS_BUCKET` is set.",
    ),
    Setting(
        "WFCRAWL_GCS_PREFIX", "wfcrawl", "str", page=PAGE,
        doc="First folder(s) of every object name; may be empty.",
    ),
    Setting(
        "WFCRAWL_GCS_INSTANCE", "", "str", page=PAGE,
        doc="Instance name in object names; empty: `<hostname>-<random>`.",
    ),
    Setting(
        "WFCRAWL_GCS_ENDPOINT", "", "str", page=PAGE,
        doc="API endpoint (emulators); empty: Google's.",
    ),
    Setting(
        "WFCRAWL_GCS_TOKEN", "", "str", page=PAGE,
        doc="gcsfs token: empty = default credentials, `anon`, or a key file path.",
    ),
    Setting(
        "WFCRAWL_GCS_PROJECT", "", "str", page=PAGE,
        doc="Google Cloud project (gcsfs `project`).",
    ),
    Setting(
        "WFCRAWL_GCS_MAX_ITEMS", 10000, "int", minimum=1, page=PAGE,
        doc="Lines per object.",
    ),
    Setting(
        "WFCRAWL_GCS_MAX_BYTES", 64 * 1024 * 1024, "int", minimum=1, page=PAGE,
        doc="Uncompressed bytes per object (64 MiB).",
    ),
    Setting(
        "WFCRAWL_GCS_MAX_AGE", 60.0, "float", exclusive_minimum=0, page=PAGE,
        doc="Seconds an object stays open.",
    ),
    Setting(
        "WFCRAWL_GCS_MAX_PENDING_BYTES", 256 * 1024 * 1024, "int", minimum=1, page=PAGE,
        doc="Uncompressed bytes held (open and unuploaded objects) before `process_item` waits (256 MiB).",
    ),
    Setting(
        "WFCRAWL_GCS_QUARANTINE", True, "bool", page=PAGE,
        doc="Keep invalid items under `_quarantine/`.",
    ),
    Setting(
        "WFCRAWL_GCS_ARCHIVE_PAGES", False, "bool", page=PAGE,
        doc="Archive every workflow response under `_pages/`.",
    ),
    Setting(
        "WFCRAWL_STORAGE_RETRY_DELAY", 0.5, "float", exclusive_minimum=0, page=PAGE,
        doc="Seconds before the first retry of a failed write; doubles each time.",
    ),
    Setting(
        "WFCRAWL_STORAGE_RETRY_MAX_DELAY", 30.0, "float", exclusive_minimum=0, page=PAGE,
        doc="Longest wait between retries.",
    ),
    Setting(
        "WFCRAWL_STORAGE_CLOSE_TIMEOUT", 300.0, "float", exclusive_minimum=0, page=PAGE,
        doc="Seconds the close waits for unwritten data (writes in flight included: they are interrupted) "
        "before spilling it.",
    ),
    Setting(
        "WFCRAWL_STORAGE_SPILL_DIR", "wfcrawl-spill", "str", required=True, page=PAGE,
        doc="Where unwritten data goes after the close timeout: `postgres-<workflow>-<execution>-<pid>.jsonl` "
        "(one `{\"table\", \"row\"}` per line) and `gcs-<workflow>-<execution>-<pid>/<object path>` (the "
        "objects, same layout), and `executions-<workflow>-<execution>-<pid>.json` (an execution's end that "
        "could not be recorded). `wfcrawl spill load` writes the PostgreSQL files back.",
    ),
    Setting(
        "WFCRAWL_EXECUTIONS_ENABLED", True, "bool", page=PAGE,
        doc="The execution record, when `DATABASE_URL` is set.",
    ),
    Setting(
        "WFCRAWL_EXECUTIONS_INTERVAL", 30.0, "float", exclusive_minimum=0, page=PAGE,
        doc="Seconds between stats updates of the execution record.",
    ),
))
