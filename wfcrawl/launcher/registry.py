"""Registered workflows: documents stored by name, so a message can say "run shop".

The API registers documents (after validating them); Pub/Sub messages and API
launches name them. Three stores with one small interface:

- :class:`PostgresWorkflowRegistry` (``DATABASE_URL`` set): shared by every
  launcher instance, the production choice;
- :class:`DirectoryWorkflowRegistry` (``WFCRAWL_LAUNCHER_WORKFLOWS_DIR``):
  ``<dir>/<name>.yaml`` files, for one machine or an image that ships its workflows;
- :class:`MemoryWorkflowRegistry`: tests.

Each also finds the example workflows bundled in the package by name
(:mod:`wfcrawl.workflow.bundled`) unless a registered one has that name.
"""

from __future__ import annotations

import os
import re
import tempfile
import threading
from pathlib import Path
from typing import Any, Protocol

from wfcrawl.storage.postgres.connection import check_connect, psycopg2_module, transaction
from wfcrawl.storage.postgres.migrate import migrate
from wfcrawl.workflow.bundled import bundled_document, bundled_names

#: Registered names are workflow names (the schema's ``name`` pattern; ``\Z``, not
#: ``$``: a name ending in a newline is not one).
NAME = re.compile(r"[a-z0-9_-]{1,64}\Z")


class WorkflowRegistry(Protocol):
    def get(self, name: str) -> str | None:
        """The document registered (or bundled) as ``name``."""

    def put(self, name: str, document: str) -> bool:
        """Store a (validated) document; True when the name was new."""

    def names(self) -> list[str]: ...


class MemoryWorkflowRegistry:
    def __init__(self, *, bundled: bool = False) -> None:
        self._docs: dict[str, str] = {}
        self._lock = threading.Lock()
        self.bundled = bundled

    def get(self, name: str) -> str | None:
        found = self._docs.get(name)
        return found if found is not None or not self.bundled else bundled_document(name)

    def put(self, name: str, document: str) -> bool:
        with self._lock:
            new = name not in self._docs
            self._docs[name] = document
            return new

    def names(self) -> list[str]:
        return sorted(set(self._docs) | (set(bundled_names()) if self.bundled else set()))


class DirectoryWorkflowRegistry:
    def __init__(self, path: str | Path, *, bundled: bool = True) -> None:
        self.path = Path(path)
        self.bundled = bundled

    def _file(self, name: str) -> Path:
        if not NAME.match(name):  # never a path out of the directory
            raise ValueError(f"invalid workflow name {name!r}")
        return self.path / f"{name}.yaml"

    def get(self, name: str) -> str | None:
        if not NAME.match(name):
            return None
        try:
            return self._file(name).read_text("utf-8")
        except FileNotFoundError:
            return bundled_document(name) if self.bundled else None

    def put(self, name: str, document: str) -> bool:
        target = self._file(name)
        self.path.mkdir(parents=True, exist_ok=True)
        new = not target.exists()
        fd, tmp = tempfile.mkstemp(dir=self.path, prefix=f".{name}.", suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(document)
        os.replace(tmp, target)  # readers never see half a document
        return new

    def names(self) -> list[str]:
        found = {p.stem for p in self.path.glob("*.yaml") if NAME.match(p.stem)} if self.path.is_dir() else set()
        return sorted(found | (set(bundled_names()) if self.bundled else set()))


class PostgresWorkflowRegistry:
    """Table ``<schema>.launcher_workflows`` (the migrations create it, on first use; one transaction per call)."""

    def __init__(self, dsn: str, *, schema: str = "wfcrawl", bundled: bool = True,
                 connect_timeout: float = 10.0) -> None:
        self.dsn = dsn
        self.schema = schema
        self.bundled = bundled
        self.connect_timeout = connect_timeout
        self._table = psycopg2_module().sql.Identifier(schema, "launcher_workflows")
        self._migrated = False
        self._lock = threading.Lock()

    def _run(self, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        statement = psycopg2_module().sql.SQL(query).format(table=self._table)
        with self._lock:
            # A connection per call: registrations are rare, and nothing to go stale.
            conn = check_connect(self.dsn, connect_timeout=self.connect_timeout)
            try:
                if not self._migrated:
                    migrate(conn, self.schema)
                    self._migrated = True
                with transaction(conn) as cur:
                    cur.execute(statement, params)
                    return self._fetch(cur)
            finally:
                conn.close()

    @staticmethod
    def _fetch(cur: Any) -> list[tuple[Any, ...]]:
        return list(cur.fetchall()) if cur.description is not None else []

    def get(self, name: str) -> str | None:
        rows = self._run("SELECT document FROM {table} WHERE name = %s", (name,))
        if rows:
            return str(rows[0][0])
        return bundled_document(name) if self.bundled else None

    def put(self, name: str, document: str) -> bool:
        rows = self._run(
            "INSERT INTO {table} (name, document) VALUES (%s, %s) ON CONFLICT (name) DO UPDATE"
            " SET document = EXCLUDED.document, updated_at = now() RETURNING (xmax = 0)",
            (name, document),
        )
        return bool(rows[0][0])

    def names(self) -> list[str]:
        rows = self._run("SELECT name FROM {table} ORDER BY name")
        return sorted({str(r[0]) for r in rows} | (set(bundled_names()) if self.bundled else set()))
