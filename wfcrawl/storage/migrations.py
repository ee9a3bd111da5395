"""Versioned SQL migrations shipped as package data, shared by the SQL stores.

A store's migrations are ``<package>/migrations/NNNN_name.sql`` files, applied in
version order and recorded in a ``schema_migrations`` table by the store's own
``migrate`` (:mod:`wfcrawl.storage.postgres.migrate`, :mod:`wfcrawl.storage.sqlite.migrate`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from importlib import resources

_FILE_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


@cache
def load_migrations(package: str) -> tuple[Migration, ...]:
    """The migrations of ``package`` (its ``migrations`` folder), in version order."""
    found = []
    for entry in resources.files(package).joinpath("migrations").iterdir():
        match = _FILE_NAME.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text("utf-8")))
    found.sort(key=lambda m: m.version)
    if [m.version for m in found] != list(range(1, len(found) + 1)):
        raise AssertionError(f"migration versions must be 1..N without gaps: {[m.version for m in found]}")
    return tuple(found)
