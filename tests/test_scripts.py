"""Script nodes: the ready-made callables (tested as docs/scripts.md shows), their
examples crawled against the fixture sites, entry-point lookup, the contract's errors."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from scrapy.http import HtmlResponse

from tests.conftest import ROOT, Crawl, problems, stat_items
from tests.mockserver import MockServer
from wfcrawl.scripts import cfemail, tables
from wfcrawl.workflow import Link, ScriptContext, Value, check_source
from wfcrawl.workflow.source import parse_text


def context(**args: object) -> ScriptContext:
    """A ScriptContext as the spider builds it, for calling a callable directly."""
    return ScriptContext(workflow="test", phase="page", marker="start", markers=("start",), depth=0,
                         url="http://example.com/", args=args, values={})


def response(path: str, url: str = "http://example.com/") -> HtmlResponse:
    return HtmlResponse(url=url, body=(ROOT / "tests/sites" / path).read_bytes(), encoding="utf-8")


def test_tables_records_and_links() -> None:
    out = list(tables.records(response("tables/index.html", "http://example.com/tables/"),
                              context(table="table.elements", link="Name", marker="element")))
    hydrogen = {"name": "Hydrogen", "symbol": "H", "atomic_number": "1", "discovered_year": "1766"}
    assert out[:2] == [hydrogen, Link("http://example.com/tables/element/h.html", "element", values=hydrogen)]
    assert len(out) == 8  # 4 rows, 4 links: the caption and the colspan row are no records
    assert tables.key_of("Discovered (year)") == "discovered_year"


def test_tables_link_needs_a_marker() -> None:
    with pytest.raises(ValueError, match=r"args\.link and args\.marker go together"):
        list(tables.records(response("tables/index.html"), context(link="Name")))


def test_cfemail_decodes_attributes_and_links() -> None:
    assert cfemail.decode(cfemail.encode("a@b.example", key=7)) == "a@b.example"
    assert list(cfemail.emails(response("contact/index.html"), context())) == [
        Value("emails", ["sales@example.com", "support@example.com"])
    ]
    assert list(cfemail.emails(response("contact/index.html"), context(name="mail"))) == [
        Value("mail", ["sales@example.com", "support@example.com"])
    ]


def test_tables_example(server: MockServer, crawl: Callable[..., Crawl]) -> None:
    result = crawl("workflows/tables.yaml", base_url=server.url)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.fields("element") == [
        {"atomic_number": "1", "discovered_year": "1766", "name": "Hydrogen", "symbol": "H"},
        {"atomic_number": "2", "discovered_year": "1868", "name": "Helium", "symbol": "He"},
        {"atomic_number": "3", "discovered_year": "1817", "name": "Lithium", "symbol": "Li"},
        {"atomic_number": "6", "discovered_year": "", "name": "Carbon", "symbol": "C"},
    ]
    assert result.fields("discovery") == [
        {"discoverer": "Henry Cavendish", "name": "Hydrogen", "symbol": "H", "year": 1766},
        {"discoverer": "Johan August Arfwedson", "name": "Lithium", "symbol": "Li", "year": 1817},
        {"discoverer": "Pierre Janssen", "name": "Helium", "symbol": "He", "year": 1868},
        {"discoverer": "unknown", "name": "Carbon", "symbol": "C", "year": None},
    ]
    assert stat_items(result.stats, "wfcrawl/pages/") == {"table": 1, "element": 4}


def test_emails_example(server: MockServer, crawl: Callable[..., Crawl]) -> None:
    result = crawl("workflows/emails.yaml", base_url=server.url)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.fields("contact") == [{"emails": ["sales@example.com", "support@example.com"],
                                         "phone": "+1 555 0100"}]


DOC = """\
name: s
start_urls: [http://x.test/]
phases:
  page:
    nodes:
      - type: script
        callable: {callable}
        markers: [element]
    transitions:
      - {{marker: element, to: page}}
"""


def test_unknown_entry_point_is_a_located_error() -> None:
    assert problems(DOC.format(callable="no-such-script")) == [
        "7:19: $.phases.page.nodes[0].callable: no script named 'no-such-script' in the entry points "
        "'wfcrawl.scripts'; registered: cfemail, jsonld, tables (or give package.module:function)"
    ]


def test_entry_point_module_is_checked_against_the_allowlist() -> None:
    _, found = check_source(parse_text(DOC.format(callable="tables"), "wf.yaml"), script_modules=("myproject",))
    assert [p.message for p in found] == ["script module 'wfcrawl.scripts.tables' is not in the allowed script modules"]


def test_a_link_with_an_undeclared_marker_is_a_node_error(server: MockServer, crawl: Callable[..., Crawl]) -> None:
    text = (ROOT / "workflows/tables.yaml").read_text().replace("markers: [element]", "markers: [row]").replace(
        "{marker: element, to: element}", "{marker: row, to: element}")
    result = crawl(text, base_url=server.url)
    assert result.returncode == 0, result.stderr[-2000:]
    # The first link raises: the items before it stand, the page's other nodes still run.
    assert len(result.of_type("element")) == 1
    assert result.stats["wfcrawl/nodes/error/ValueError"] == 1
    assert "script tables yielded a link with marker 'element', not one of its markers (row)" in result.stderr
