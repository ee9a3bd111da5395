"""Samples of a running crawl's progress: (seconds since start, pages, items).

The launcher takes one each time the crawl rewrites its stats file
(``WFCRAWL_STATS_FILE_INTERVAL``; read with :func:`read_json`) and keeps them on the execution's stats under
``SAMPLES_STAT`` as text, so that they stay a plain value like every stat; the
dashboard draws pages/s over time from them.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

#: Stats key of the (seconds since start, pages, items) samples of a crawl, as text
#: ``"t:pages:items t:pages:items ..."`` (a plain value, like every stat).
SAMPLES_STAT = "wfcrawl/launcher/samples"
#: At most this many samples are kept (every other one is dropped when it is reached).
MAX_SAMPLES = 400


def samples_text(samples: Sequence[tuple[float, int, int]]) -> str:
    return " ".join(f"{t:g}:{p}:{i}" for t, p, i in samples)


def parse_samples(text: Any) -> list[tuple[float, int, int]]:
    """The samples of ``SAMPLES_STAT`` (malformed parts skipped)."""
    out: list[tuple[float, int, int]] = []
    if not isinstance(text, str):
        return out
    for part in text.split():
        try:
            t, p, i = part.split(":")
            out.append((float(t), int(p), int(i)))
        except ValueError:
            continue
    return out


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object file (the crawl's stats file), or {} if it is missing, partial or not an object."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


class Sampler:
    """The samples of one running crawl, taken from its stats file at ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.started = time.monotonic()
        self._samples: list[tuple[float, int, int]] = []
        self._mtime = 0.0
        self._lock = threading.Lock()

    def take(self) -> dict[str, Any] | None:
        """A sample if the stats file changed since the last one: its stats, with the
        samples so far under ``SAMPLES_STAT`` (None: nothing new)."""
        try:
            mtime = self.path.stat().st_mtime
        except OSError:
            return None
        if mtime == self._mtime:
            return None
        self._mtime = mtime
        stats = read_json(self.path)
        if not stats:
            return None
        pages = stats.get("response_received_count", 0)
        items = stats.get("item_scraped_count", 0)
        sample = (round(time.monotonic() - self.started, 1), pages if isinstance(pages, int) else 0,
                  items if isinstance(items, int) else 0)
        with self._lock:
            self._samples.append(sample)
            if len(self._samples) > MAX_SAMPLES:
                del self._samples[1::2]
            stats[SAMPLES_STAT] = samples_text(self._samples)
        return stats

    def samples(self) -> list[tuple[float, int, int]]:
        with self._lock:
            return list(self._samples)
