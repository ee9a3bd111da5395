"""What the storage pipelines handle: a store's description, a unit of writing, spill paths.

Used by :class:`wfcrawl.pipelines.buffered.BufferedSink` and its stores.
"""

from __future__ import annotations

import os
import time
from collections.abc import Hashable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Generic, TypeVar

P = TypeVar("P")


@dataclass(frozen=True)
class SinkKind:
    """What tells one store apart in stats, messages, settings and files."""

    #: ``wfcrawl/<name>/...`` stats, the durability store, spill files, thread names.
    name: str
    #: The store in messages ("PostgreSQL"), and one write ("PostgreSQL write").
    label: str
    write: str
    #: The settings that switch it on: ``WFCRAWL_<STORE>_ENABLED`` and the service's address.
    enabled: str
    address: str
    #: What :class:`~wfcrawl.utils.pressure.Pressure` counts ("rows", "bytes"), and the setting bounding it.
    held: str
    limit: str
    #: The spill: its name's suffix, its stat, what its count counts.
    spill_suffix: str
    spilled_stat: str
    spilled: str


@dataclass(eq=False)
class Unit(Generic[P]):
    """What one write carries (``payload``: a batch, an object's lines), from its first item on."""

    payload: P
    #: Its key among the open units, and the lane (writer thread) that writes it.
    key: Hashable = None
    lane: int = 0
    #: Durability number of its first item or quarantine record (None: none, e.g. archived pages only).
    first: int | None = None
    #: What it holds in :class:`~wfcrawl.utils.pressure.Pressure` units.
    size: int = 0
    opened: float = field(default_factory=time.monotonic)
    #: Where it goes, for messages (a GCS object's path).
    name: str = ""


def spill_path(spill_dir: str, kind: SinkKind, workflow: str, execution_id: str | None) -> Path:
    """Where unwritten data of this process goes: one file (or folder) per store and process."""
    return Path(spill_dir) / f"{kind.name}-{workflow}-{execution_id or 'none'}-{os.getpid()}{kind.spill_suffix}"
