"""The example workflows shipped inside the package (``wfcrawl/examples``).

``wfcrawl/examples`` is the repository's ``workflows/`` directory (a symlink),
shipped as package data, so a scrapyd egg or the Docker image can run them by
name: ``schedule.json -d workflow=shop``. Read with :mod:`importlib.resources`
because in a scrapyd egg they live inside a zip file.
"""

from __future__ import annotations

import os
import re
from importlib import resources

#: What a bundled workflow is named by (its file name without ``.yaml``).
NAME = re.compile(r"[a-z0-9_-]{1,64}\Z")


def bundled_names() -> list[str]:
    """Names of the bundled example workflows."""
    try:
        folder = resources.files("wfcrawl").joinpath("examples")
        return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))
    except (FileNotFoundError, NotADirectoryError):
        return []


def bundled_document(name: str) -> str | None:
    """The text of the bundled workflow ``name``, or None.

    None as well when ``name`` is an existing file: a path always wins over a
    bundled name, so ``-a workflow=shop`` in a directory holding a file
    ``shop`` reads that file.
    """
    if not NAME.match(name) or os.path.exists(name):
        return None
    try:
        return resources.files("wfcrawl").joinpath("examples").joinpath(f"{name}.yaml").read_text("utf-8")
    except (FileNotFoundError, NotADirectoryError, KeyError):
        return None
