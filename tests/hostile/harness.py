"""Load every document of the corpus, as ``wfcrawl validate`` does, and report.

Run in a child process (``python -m tests.hostile.harness [ID...]``) under an
address-space limit and a time-out (tests/test_workflow_hostile.py); one JSON
line per document: its problems (``line:col: $.path: message``), the peak of
Python memory allocated while loading it (tracemalloc), and any traceback.
"""

from __future__ import annotations

import json
import sys
import tempfile
import traceback
import tracemalloc
from pathlib import Path
from typing import Any

from tests.hostile.corpus import CORPUS, Case
from wfcrawl.exceptions import WorkflowError
from wfcrawl.workflow import check_source
from wfcrawl.workflow.source import load_source, parse_text


def run(case: Case, directory: Path) -> dict[str, Any]:
    result: dict[str, Any] = {"id": case.id, "problems": [], "traceback": None}
    path = directory / case.name
    if isinstance(case.document, bytes):
        path.write_bytes(case.document)
    tracemalloc.start()
    try:
        source = load_source(path) if isinstance(case.document, bytes) else parse_text(case.document, case.name)
        _, found = check_source(source)
    except WorkflowError as exc:
        found = list(exc.problems)
    except BaseException:
        found = []
        result["traceback"] = traceback.format_exc()
    result["peak"] = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    prefix = f"{path}:" if isinstance(case.document, bytes) else f"{case.name}:"
    result["problems"] = [str(p).removeprefix(prefix) for p in found]
    return result


def main(ids: list[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for case in CORPUS:
            if not ids or case.id in ids:
                print(json.dumps(run(case, Path(tmp))), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
