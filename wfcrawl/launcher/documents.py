"""The documents executions ran, kept by digest: ``<workdir>/documents/<sha256>.yaml``.

The launcher records ``params.document_sha256`` on each execution and keeps the text
here (one file per distinct document, however many executions ran it), so that an
execution can be re-run with the same document after its own directory was removed.
The files are on the launcher's machine only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _path(workdir: Path, digest: Any) -> Path | None:
    if not isinstance(digest, str) or len(digest) != 64 or not digest.isalnum():
        return None
    return workdir / "documents" / f"{digest}.yaml"


def archive(workdir: Path, digest: Any, text: str) -> None:
    path = _path(workdir, digest)
    if path is not None and not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def archived(workdir: Path, digest: Any) -> str | None:
    """The document of that digest, if kept here."""
    path = _path(workdir, digest)
    if path is None:
        return None
    try:
        return path.read_text(encoding="utf-8")
    except OSError:
        return None
