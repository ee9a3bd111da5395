"""Field extraction semantics, unit by unit, on real HTML and JSON (no crawler)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from parsel import Selector

from wfcrawl.workflow import plan_from_source
from wfcrawl.workflow.fields import Scope, extract_object
from wfcrawl.workflow.nodes import ExtractNode
from wfcrawl.workflow.selectors import compile_selection
from wfcrawl.workflow.source import parse_text

HTML = """
<html><body>
  <h1>  Blue
     Lamp </h1>
  <p class="price">Price: EUR 1,299.50</p>
  <p class="count">12 in stock</p>
  <p class="flag">Yes</p>
  <time datetime="2024-03-01T10:20:30">March</time>
  <p class="when">01/02/2024</p>
  <ul><li>a</li><li> b </li><li></li><li>c</li></ul>
  <a class="rel" href="../x/y.html?b=2&amp;a=1">x</a>
  <p class="code">SKU-77-Z</p>
  <p class="bad">n/a</p>
</body></html>
"""


def extract(fields: str, body: str = HTML, url: str = "http://h.test/a/b/page.html") -> dict[str, Any]:
    doc = f"""
name: t
start_urls: [http://h.test/]
phases:
  p:
    nodes:
      - type: extract
        item: t
        fields:
{fields}
"""
    plan = plan_from_source(parse_text(doc, "t.yaml"))
    node = plan.phases["p"].nodes[0]
    assert isinstance(node, ExtractNode)
    context = json.loads(body) if node.uses_json else Selector(text=body).root
    scope = Scope({"seen": ["x", "y"]}, url)
    out = extract_object(node.fields, context, scope)
    out["_invalid"] = scope.invalid
    return out


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("name: h1", "Blue Lamp"),
        ("name: {css: p.code, split: '-', many: true}", ["SKU", "77", "Z"]),
        ("name: {css: p.code, split: '-', re: '^\\d+$', type: int}", 77),
        ("name: {css: p.price, split: ' ', join: '|'}", "Price:|EUR|1,299.50"),
        ("name: {css: h1, normalize: false}", "  Blue\n     Lamp "),
        ("name: {css: p.price, type: float}", 1299.5),
        ("name: {css: p.count, type: int}", 12),
        ("name: {css: p.flag, type: bool}", True),
        ("name: {css: time, attr: datetime, type: date}", "2024-03-01"),
        ("name: {css: time, attr: datetime, type: datetime}", "2024-03-01T10:20:30"),
        ("name: {css: p.when, type: date, format: '%d/%m/%Y'}", "2024-02-01"),
        ("name: {css: li, many: true}", ["a", "b", "c"]),
        ("name: {css: li, join: ', '}", "a, b, c"),
        ("name: {css: li}", "a"),
        ("name: {css: p.code, re: 'SKU-(\\d+)'}", "77"),
        ("name: {css: p.code, re: 'SKU-(?P<n>\\d+)-(?P<s>\\w)', group: s}", "Z"),
        ("name: {css: p.code, re: '\\d+-\\w', group: 0}", "77-Z"),
        ("name: {css: p.code, re: 'nomatch', default: none}", "none"),
        ("name: {css: a.rel, attr: href, type: url}", "http://h.test/a/x/y.html?b=2&a=1"),
        ("name: {css: a.rel::attr(href)}", "../x/y.html?b=2&a=1"),
        ("name: {xpath: 'count(//li)', type: int}", 4),
        ("name: {const: 7}", 7),
        ("name: {var: seen, many: true}", ["x", "y"]),
        ("name: {css: missing}", None),
        ("name: {css: missing, many: true}", []),
        ("name: {rows: missing, fields: {a: b}}", []),
        ("name: {rows: missing, key: a, value: b}", {}),
    ],
)
def test_field(spec: str, expected: Any) -> None:
    assert extract(f"          {spec}")["name"] == expected


def test_invalid_coercion_is_dropped_and_reported() -> None:
    out = extract("          n: {css: p.bad, type: float}\n          m: {css: p.bad, type: bool, default: false}")
    assert (out["n"], out["m"], out["_invalid"]) == (None, False, ["n", "m"])


def test_nested_object_and_lists_of_objects() -> None:
    body = """<div class="s"><b>Acme</b><i>4.5</i></div>
    <table><tr><th> Weight </th><td>1 kg</td></tr><tr><th>Size</th><td> L </td></tr><tr><th></th><td>x</td></tr></table>
    <ul><li class="r"><b>Al</b><i>5</i></li><li class="r"><b>Bo</b></li></ul>"""
    out = extract(
        "          seller: {css: div.s, fields: {name: b, rating: {css: i, type: float}}}\n"
        "          attrs: {rows: tr, key: th, value: td}\n"
        "          reviews: {rows: li.r, fields: {who: b, stars: {css: i, type: int}}}",
        body,
    )
    assert out["seller"] == {"name": "Acme", "rating": 4.5}
    # A row without a key is skipped: a dict needs keys.
    assert out["attrs"] == {"Weight": "1 kg", "Size": "L"}
    assert out["reviews"] == [{"who": "Al", "stars": 5}, {"who": "Bo", "stars": None}]


def test_json_fields() -> None:
    body = json.dumps({"a": {"b": [1, 2]}, "items": [{"k": "x", "v": "1,5"}, {"k": "y", "v": 2}], "flag": True})
    out = extract(
        "          first: {jmespath: 'a.b[0]'}\n"
        "          all: {jmespath: 'a.b', many: true}\n"
        "          kv: {rows: {jmespath: items}, key: {jmespath: k}, value: {jmespath: v, type: float}}\n"
        "          flag: {jmespath: flag, type: bool}",
        body,
    )
    # "1,5" is 15 with ',' as thousands separator: documented behaviour.
    assert {k: out[k] for k in ("first", "all", "kv", "flag")} == {
        "first": 1, "all": [1, 2], "kv": {"x": 15.0, "y": 2.0}, "flag": True,
    }


def test_exslt_functions_and_flat_memory() -> None:
    out = extract(
        "          uniq: {xpath: 'set:distinct(//p/@class)', many: true}\n"
        "          code: {xpath: '//p[re:test(., \"^SKU-\\d+\")]'}"
    )
    assert (out["uniq"][:3], out["code"]) == (["price", "count", "flag"], "SKU-77-Z")
    # A compiled XPath with the EXSLT sets namespace registered keeps one
    # spurious error-log entry per evaluation (lxml 6): memory grew with every
    # page. 5,000 evaluations of each kind must not keep ~150 bytes apiece.
    import tracemalloc

    root = Selector(text=HTML).root
    selections = [compile_selection("css", "li::text"), compile_selection("xpath", "set:distinct(//li)")]
    for selection in selections:
        selection.apply(root)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(5000):
            for selection in selections:
                selection.apply(root)
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < 64 * 1024, grown
