"""The docs cannot drift: generated reference current, every setting and meta key documented."""

from __future__ import annotations

import re

from tests.conftest import ROOT
from wfcrawl.settings import defaults
from wfcrawl.spiders import meta
from wfcrawl.workflow.reference import render


def _docs() -> str:
    return "\n".join(p.read_text() for p in sorted((ROOT / "docs").glob("*.md")))


def test_workflow_reference_is_generated_from_the_schema() -> None:
    assert (ROOT / "docs/workflow-reference.md").read_text() == render(), (
        "regenerate: python -m wfcrawl.workflow.reference > docs/workflow-reference.md"
    )


def test_every_setting_is_documented_with_its_default() -> None:
    docs = _docs()
    names = [n for n in defaults.DEFAULTS if n.startswith("WFCRAWL_")]
    assert names
    undocumented = [n for n in names if f"`{n}`" not in docs]
    assert undocumented == []


def test_every_meta_key_is_documented() -> None:
    docs = _docs()
    keys = [v for k, v in vars(meta).items() if k.isupper() and isinstance(v, str)]
    assert "wfcrawl_phase" in keys
    assert [k for k in keys if f"`{k}`" not in docs] == []


def test_every_stat_the_spider_sets_is_documented() -> None:
    source = (ROOT / "wfcrawl/spiders/workflow.py").read_text() + (ROOT / "wfcrawl/workflow/plan.py").read_text()
    # Literal keys and f-string prefixes: "wfcrawl/pages/failed/{reason}" -> "wfcrawl/pages/failed/"
    keys = {re.sub(r"\{[^}]*\}.*", "", k) for k in re.findall(r'"(wfcrawl/[^"]*)"', source)}
    docs = _docs()
    assert sorted(k for k in keys if f"`{k}" not in docs) == []
