"""A script node that never returns and never sees a signal: Python's backtracking
``re`` in C holds the GIL (what a document regex did before RE2). The launcher's
SIGKILL is the only way out. Used by tests/test_launcher_untrusted.py."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def spin(response: Any, context: Any) -> Iterator[Any]:
    marker = os.environ.get("WFCRAWL_TEST_STUCK_MARKER")
    if marker:
        Path(marker).write_text("stuck")  # the test stops the crawl only once it is stuck
    re.match(r"(a+)+$", "a" * 64 + "!")  # 2**64 steps
    yield from ()
