"""The YAML in the guides is true: every complete document validates, and every list of
nodes compiles inside a minimal document (its markers and phases wired up)."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from tests.conftest import ROOT
from wfcrawl.workflow import check_source
from wfcrawl.workflow.source import parse_text

DOCS = ("docs/guide.md", "docs/scripts.md", "docs/workflow-reference.md", "README.md")
_BLOCK = re.compile(r"^( *)```yaml\n(.*?)^\1```", re.S | re.M)


def blocks() -> list[tuple[str, int, str]]:
    out = []
    for name in DOCS:
        text = (ROOT / name).read_text()
        for match in _BLOCK.finditer(text):
            indent = len(match.group(1))
            body = "".join(line[indent:] + "\n" for line in match.group(2).splitlines())
            out.append((name, text[:match.start()].count("\n") + 1, body))
    return out


BLOCKS = blocks()


def _nodes_document(nodes: list[dict[str, Any]]) -> str:
    """A document running ``nodes`` in phase `p`, each marker routed, each form's phase present."""
    markers: list[str] = []
    phases: dict[str, Any] = {}
    for node in nodes:
        given = node.get("marker", node.get("markers"))
        if node.get("type") in ("extract_links", "paginate", "script") and given:
            markers += [given] if isinstance(given, str) else given
        if node.get("type") == "form":
            phases[node["phase"]] = {"nodes": [{"type": "extract", "item": "x", "fields": {"a": "h1"}}]}
    phases.pop("p", None)
    doc = {
        "name": "doc", "base_url": "http://example.com", "start_urls": ["/"],
        "phases": {"p": {"nodes": nodes, "transitions": [{"marker": m, "to": "p"} for m in dict.fromkeys(markers)]},
                   **phases},
    }
    return yaml.safe_dump(doc, sort_keys=False)


@pytest.mark.parametrize(("name", "line", "body"), BLOCKS, ids=[f"{n}:{ln}" for n, ln, _ in BLOCKS])
def test_yaml_block(name: str, line: int, body: str) -> None:
    data = yaml.safe_load(body)
    if isinstance(data, dict) and "name" in data and "phases" in data:
        text = body if "base_url" in data else "base_url: http://example.com\n" + body
    elif isinstance(data, list) and data and all(isinstance(n, dict) and "type" in n for n in data):
        text = _nodes_document(data)
    else:
        return  # a fragment (fields, a phase, settings): parsed above
    if "{...}" in body or "[...]" in body:
        return  # an outline with elisions
    _, problems = check_source(parse_text(text, f"{name}:{line}"))
    # docs/scripts.md's tutorial package is the reader's own: it is not installed here.
    found = [f"{p.line}:{p.column}: {p.path}: {p.message}" for p in problems
             if not p.message.startswith("cannot import 'myscrapers.")]
    assert found == []


def test_the_guides_have_documents() -> None:
    documents = [b for b in BLOCKS if b[0] == "docs/guide.md" and b[2].startswith("name:")]
    assert len(documents) >= 6
