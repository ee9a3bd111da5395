"""The docs cannot drift: generated reference current, every setting and meta key documented."""

from __future__ import annotations

import re
from pathlib import Path

from tests.conftest import ROOT
from wfcrawl import meta
from wfcrawl.settings import defaults, docs
from wfcrawl.settings.table import table
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


def test_settings_tables_are_generated_from_the_settings_table() -> None:
    stale, problems = docs.problems(ROOT / "docs")
    assert problems == []
    assert stale == [], "regenerate: python -m wfcrawl.settings.docs"
    # Each setting is a row of exactly one generated table.
    generated = "".join(m["body"] for p in (ROOT / "docs").glob("*.md") for m in docs.MARKERS.finditer(p.read_text()))
    assert sorted(generated.count(f"| `{name}` | ") for name in table()) == [1] * len(table()) == [1] * 144


def test_settings_docs_check_fails_on_a_stale_page(tmp_path: Path) -> None:
    for page in (ROOT / "docs").glob("*.md"):
        (tmp_path / page.name).write_text(page.read_text())
    assert docs.main(["--check", str(tmp_path)]) == 0
    stale = tmp_path / "rendering.md"
    stale.write_text(stale.read_text().replace("| `WFCRAWL_RENDER_IDLE` | `0.5` |", "| `WFCRAWL_RENDER_IDLE` | `1.0` |"))
    assert docs.main(["--check", str(tmp_path)]) == 1
    assert docs.main([str(tmp_path)]) == 0  # rewrites it
    assert stale.read_text() == (ROOT / "docs" / "rendering.md").read_text()
    (tmp_path / "storage.md").write_text("# no settings table\n")
    assert docs.problems(tmp_path)[1] == [
        f"storage.md: settings with no '<!-- settings:start -->' table in {tmp_path}"
    ]


def test_every_setting_read_in_wfcrawl_is_in_the_table() -> None:
    source = "".join(p.read_text() for p in sorted((ROOT / "wfcrawl").rglob("*.py")))
    names = set(re.findall(r'"(WFCRAWL_[A-Z0-9_]+|DATABASE_URL|GCS_BUCKET|REDIS_URL)"', source))
    assert {"WFCRAWL_PUSH_ISSUERS", "DATABASE_URL", "REDIS_URL"} <= names
    assert sorted(names - set(table())) == []
    # ... and read through it: no typed getter of Scrapy's on a wfcrawl setting.
    direct = re.findall(r'\.get(?:bool|int|float|list|dict)?\(\s*"(?:WFCRAWL_|DATABASE_URL|GCS_BUCKET|REDIS_URL)[^"]*"'
                        r'|settings\["(?:WFCRAWL_|DATABASE_URL|GCS_BUCKET|REDIS_URL)[^"]*"\]', source)
    assert direct == []


def test_every_meta_key_is_documented() -> None:
    docs = _docs()
    keys = [v for k, v in vars(meta).items() if k.isupper() and isinstance(v, str)]
    assert "wfcrawl_phase" in keys
    assert [k for k in keys if f"`{k}`" not in docs] == []


def test_every_stat_wfcrawl_sets_is_documented() -> None:
    source = "".join(p.read_text() for p in sorted((ROOT / "wfcrawl").rglob("*.py")))
    # Literal keys and f-string prefixes: "wfcrawl/pages/failed/{reason}" -> "wfcrawl/pages/failed/";
    # not the metric rules' patterns ("(?P<...>") nor prose.
    keys = {
        re.sub(r"\{[^}]*\}.*", "", k) for k in re.findall(r'"(wfcrawl/[^" ]*)"', source) if "(?P<" not in k
    }
    docs = _docs()
    assert sorted(k for k in keys if f"`{k}" not in docs) == []
