"""Bad workflow documents: every problem reported, each at its exact place."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import problems
from wfcrawl.exceptions import WorkflowError
from wfcrawl.workflow import check_source, load_plan
from wfcrawl.workflow.source import parse_text

GOOD = """\
name: shop
base_url: http://localhost:8000
start_urls: [/]
phases:
  listing:
    nodes:
      - type: extract_links
        css: a.product
        marker: product
    transitions:
      - {marker: product, to: detail}
  detail:
    nodes:
      - type: extract
        item: product
        fields:
          name: h1::text
"""


def test_good_document_has_no_problems() -> None:
    assert problems(GOOD) == []


# (document, exact problems). Lines and columns are 1-based, in the dedented text.
CASES: list[tuple[str, str, list[str]]] = [
    (
        "yaml_syntax",
        "name: shop\nstart_urls: [/\nphases: {}\n",
        ["3:7: $: YAML syntax error: did not find expected ',' or ']' (while parsing a flow sequence)"],
    ),
    (
        "yaml_tab_indent",
        "name: shop\nphases:\n\tlisting: {}\n",
        ["3:1: $: YAML syntax error: found a tab character where YAML allows only spaces (indent with spaces) (while scanning for the next token)"],
    ),
    (
        "json_syntax",
        '{"name": "shop",\n "start_urls": ["/"],\n "phases": {,}}\n',
        ["3:13: $: JSON syntax error: Expecting property name enclosed in double quotes"],
    ),
    ("empty_document", "# nothing\n", ["1:1: $: the document is empty"]),
    (
        "control_character",
        "name: shop\nstart_urls: [a\x81b]\n",
        ["2:15: $: character U+0081 (a control character) is not allowed"],
    ),
    ("not_a_mapping", "- a\n- b\n", ["1:1: $: must be a mapping, not a list"]),
    (
        "duplicate_key",
        GOOD.replace("  detail:\n", "  listing:\n    nodes: [{type: extract, item: x, fields: {a: b}}]\n  detail:\n"),
        ["12:3: $.phases.listing: duplicate key 'listing'"],
    ),
    (
        "missing_required",
        "name: shop\nphases:\n  a:\n    nodes: [{type: extract, item: x, fields: {a: b}}]\n",
        ["1:1: $: missing required key 'start_urls'"],
    ),
    (
        "unknown_top_level_key_with_hint",
        GOOD + "max_dept: 3\n",
        ["18:1: $.max_dept: unknown key 'max_dept'; did you mean 'max_depth'?"],
    ),
    (
        "bad_name",
        GOOD.replace("name: shop", "name: My Shop"),
        ["1:7: $.name: 'My Shop' does not match the pattern '^[a-z][a-z0-9_-]*$'"],
    ),
    (
        "bad_phase_name",
        GOOD.replace("  detail:", "  Detail:").replace("to: detail", "to: Detail"),
        [
            "11:31: $.phases.listing.transitions[0].to: 'Detail' does not match the pattern '^[a-z][a-z0-9_-]*$'",
            "12:3: $.phases.Detail: invalid name 'Detail': must match '^[a-z][a-z0-9_-]*$'",
        ],
    ),
    (
        "wrong_type_max_depth",
        GOOD + "max_depth: deep\n",
        ["18:12: $.max_depth: must be an integer or null, not a string"],
    ),
    (
        "negative_delay",
        GOOD + "rate_limit: {delay: -1}\n",
        ["18:21: $.rate_limit.delay: must be at least 0; got -1"],
    ),
    (
        "unknown_node_type",
        GOOD.replace("type: extract_links", "type: links"),
        ["7:15: $.phases.listing.nodes[0].type: must be one of 'extract_links', 'extract', 'paginate', 'form', 'script'; got 'links'"],
    ),
    (
        "unknown_node_key",
        GOOD.replace("        marker: product\n", "        marker: product\n        limt: 3\n"),
        ["10:9: $.phases.listing.nodes[0].limt: unknown key 'limt'; did you mean 'limit'?"],
    ),
    (
        "links_without_marker",
        GOOD.replace("        marker: product\n", ""),
        ["7:9: $.phases.listing.nodes[0]: missing required key 'marker'"],
    ),
    (
        "limit_zero",
        GOOD.replace("        marker: product\n", "        marker: product\n        limit: 0\n"),
        ["10:16: $.phases.listing.nodes[0].limit: must be at least 1; got 0"],
    ),
    (
        "empty_nodes",
        GOOD.replace(
            "    nodes:\n      - type: extract\n        item: product\n        fields:\n          name: h1::text\n",
            "    nodes: []\n",
        ),
        ["13:12: $.phases.detail.nodes: must have at least 1 item(s)"],
    ),
    (
        "bad_field_type",
        GOOD.replace("name: h1::text", "name: {css: h1, type: integer}"),
        ["17:33: $.phases.detail.fields.name.type: must be one of 'string', 'int', 'float', 'bool', 'date', 'datetime', 'url'; got 'integer'".replace("detail.fields", "detail.nodes[0].fields")],
    ),
    (
        "unknown_field_key",
        GOOD.replace("name: h1::text", "name: {css: h1, requird: true}"),
        ["17:27: $.phases.detail.nodes[0].fields.name.requird: unknown key 'requird'; did you mean 'required'?"],
    ),
    (
        "transition_to_unknown_phase",
        GOOD.replace("to: detail}", "to: details}"),
        [
            "11:31: $.phases.listing.transitions[0].to: unknown phase 'details'; phases: listing, detail",
            "12:3: $.phases.detail: phase 'detail' is unreachable: no start URL, transition or form leads to it",
        ],
    ),
    (
        "unreachable_phase",
        GOOD + "  orphan:\n    nodes: [{type: extract, item: x, fields: {a: b}}]\n",
        ["18:3: $.phases.orphan: phase 'orphan' is unreachable: no start URL, transition or form leads to it"],
    ),
    (
        "start_in_unknown_phase",
        GOOD.replace("start_urls: [/]", "start_urls: [{url: /, phase: home}]"),
        [
            "3:30: $.start_urls[0].phase: unknown phase 'home'; phases: listing, detail",
            "5:3: $.phases.listing: phase 'listing' is unreachable: no start URL, transition or form leads to it",
        ],
    ),
    (
        "relative_start_without_base_url",
        GOOD.replace("base_url: http://localhost:8000\n", ""),
        ["2:14: $.start_urls[0]: relative URL '/' needs base_url"],
    ),
    (
        "bad_css_selector",
        GOOD.replace("css: a.product", "css: a..product"),
        ["8:14: $.phases.listing.nodes[0].css: invalid CSS selector 'a..product': Expected ident, got <DELIM '.' at 2>"],
    ),
    (
        "bad_xpath",
        GOOD.replace("css: a.product", "xpath: //a[@class="),
        ["8:16: $.phases.listing.nodes[0].xpath: invalid XPath '//a[@class=': Invalid expression"],
    ),
    (
        "bad_field_css",
        GOOD.replace("name: h1::text", "name: 'h1:::text'"),
        ["17:17: $.phases.detail.nodes[0].fields.name: invalid CSS selector 'h1:::text': Expected ident, got <DELIM ':' at 4>"],
    ),
    (
        "bad_regex",
        GOOD.replace("name: h1::text", "name: {css: h1, re: '(\\d+'}"),
        ["17:31: $.phases.detail.nodes[0].fields.name.re: invalid regular expression '(\\\\d+': missing ): (\\d+"],
    ),
    (
        "regex_group_out_of_range",
        GOOD.replace("name: h1::text", "name: {css: h1, re: '(a)(b)', group: 3}"),
        ["17:48: $.phases.detail.nodes[0].fields.name.group: the regex has 2 group(s), not 3"],
    ),
    (
        "bad_allow_regex",
        GOOD.replace("        marker: product\n", "        marker: product\n        allow: ['/p/', '[']\n"),
        ["10:24: $.phases.listing.nodes[0].allow[1]: invalid regular expression '[': missing ]: ["],
    ),
    (
        "bad_jmespath",
        GOOD.replace("name: h1::text", "name: {jmespath: 'items[?'}"),
        ["17:28: $.phases.detail.nodes[0].fields.name.jmespath: invalid JMESPath 'items[?': Invalid jmespath expression: Incomplete expression at position 7"],
    ),
    (
        "two_selectors",
        GOOD.replace("css: a.product", "css: a.product\n        xpath: //a"),
        ["9:9: $.phases.listing.nodes[0].xpath: give only one of css, xpath"],
    ),
    (
        "key_value_without_value",
        GOOD.replace("name: h1::text", "attrs: {rows: tr, key: th}"),
        ["17:18: $.phases.detail.nodes[0].fields.attrs: a key-value field needs both 'key' and 'value'"],
    ),
    (
        "marker_without_transition",
        GOOD.replace(
            "        marker: product\n",
            "        marker: product\n      - type: extract_links\n        css: a.next\n        marker: next\n",
        ),
        ["12:17: $.phases.listing.nodes[1].marker: no transition of phase 'listing' routes marker 'next'; its links would all be dropped"],
    ),
    (
        "transition_for_unproduced_marker",
        GOOD.replace("      - {marker: product, to: detail}\n", "      - {marker: product, to: detail}\n      - {marker: nxt, to: listing}\n"),
        ["12:18: $.phases.listing.transitions[1].marker: no node of phase 'listing' produces links with marker 'nxt'"],
    ),
    (
        "script_not_importable",
        GOOD.replace("      - type: extract\n", "      - type: script\n        callable: no_such_pkg.mod:func\n      - type: extract\n"),
        ["15:19: $.phases.detail.nodes[0].callable: cannot import 'no_such_pkg.mod': ModuleNotFoundError: No module named 'no_such_pkg'"],
    ),
    (
        "script_missing_function",
        GOOD.replace("      - type: extract\n", "      - type: script\n        callable: json:no_such_function\n      - type: extract\n"),
        ["15:19: $.phases.detail.nodes[0].callable: 'json' has no callable 'no_such_function'"],
    ),
    (
        "script_code_text_refused",
        GOOD.replace("      - type: extract\n", "      - type: script\n        callable: \"__import__('os').system('x')\"\n      - type: extract\n"),
        ["15:19: $.phases.detail.nodes[0].callable: \"__import__('os').system('x')\" does not match the pattern '^([A-Za-z_][A-Za-z0-9_.]*:[A-Za-z_][A-Za-z0-9_]*|[A-Za-z0-9][A-Za-z0-9_.-]*)$'"],
    ),
    (
        "paginate_never_stops",
        GOOD.replace(
            "        marker: product\n",
            "        marker: product\n      - type: paginate\n        url: /p?page={page}\n        marker: product\n",
        ),
        ["10:9: $.phases.listing.nodes[1]: paginate needs a stop condition (stop_when, stop_when_empty, stop_when_no_new) or max_pages (or several), or it never stops"],
    ),
    (
        "paginate_url_without_placeholder",
        GOOD.replace(
            "        marker: product\n",
            "        marker: product\n      - type: paginate\n        url: /p?page=1\n        marker: product\n        max_pages: 2\n",
        ),
        ["11:14: $.phases.listing.nodes[1].url: '/p?page=1' does not match the pattern '\\\\{page\\\\}'"],
    ),
    (
        "form_to_unknown_phase",
        GOOD.replace("      - type: extract\n", "      - type: form\n        phase: account\n      - type: extract\n"),
        ["15:16: $.phases.detail.nodes[0].phase: unknown phase 'account'; phases: listing, detail"],
    ),
    (
        "several_errors_at_once",
        GOOD.replace("css: a.product", "css: a..product").replace("to: detail}", "to: nowhere}").replace(
            "name: h1::text", "name: {css: h1, re: '('}"
        ),
        [
            "8:14: $.phases.listing.nodes[0].css: invalid CSS selector 'a..product': Expected ident, got <DELIM '.' at 2>",
            "11:31: $.phases.listing.transitions[0].to: unknown phase 'nowhere'; phases: listing, detail",
            "12:3: $.phases.detail: phase 'detail' is unreachable: no start URL, transition or form leads to it",
            "17:31: $.phases.detail.nodes[0].fields.name.re: invalid regular expression '(': missing ): (",
        ],
    ),
    (
        # The README's example: schema and semantic problems in one report.
        "schema_and_semantic_problems_together",
        GOOD.replace("        marker: product\n", "        marker: product\n        limt: 3\n", 1)
        .replace("to: detail}", "to: details}").replace("name: h1::text", "name: {css: h1, re: '('}"),
        [
            "10:9: $.phases.listing.nodes[0].limt: unknown key 'limt'; did you mean 'limit'?",
            "12:31: $.phases.listing.transitions[0].to: unknown phase 'details'; phases: listing, detail",
            "13:3: $.phases.detail: phase 'detail' is unreachable: no start URL, transition or form leads to it",
            "18:31: $.phases.detail.nodes[0].fields.name.re: invalid regular expression '(': missing ): (",
        ],
    ),
    (
        # A node the schema refuses is left out of the semantic checks, with what
        # only follows from its absence; the rest is checked.
        "broken_node_and_semantic_problem",
        GOOD.replace("type: extract_links", "type: extract_link").replace("name: h1::text", "name: {css: 'h1[', many: true}"),
        [
            "7:15: $.phases.listing.nodes[0].type: must be one of 'extract_links', 'extract', 'paginate', 'form', 'script';"
            " got 'extract_link'",
            "17:23: $.phases.detail.nodes[0].fields.name.css: invalid CSS selector 'h1[': Expected ident or '*', got <EOF at 3>",
        ],
    ),
]


@pytest.mark.parametrize(("text", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_document(text: str, expected: list[str]) -> None:
    assert problems(text) == expected


def test_case_count() -> None:
    assert len({c[0] for c in CASES}) == len(CASES) >= 25


def test_json_document_positions() -> None:
    text = '{\n  "name": "shop",\n  "start_urls": ["http://x.test/"],\n  "phases": {\n    "a": {"nodes": [{"type": "extract", "item": "x", "fields": {"f": "h1"}, "bogus": 1}]}\n  }\n}\n'
    assert problems(text, "wf.json") == [
        "5:77: $.phases.a.nodes[0].bogus: unknown key 'bogus'; allowed: fields, item, json_from, name, rows, when_marker"
    ]


def test_load_plan_names_file_and_raises_all(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text(GOOD.replace("to: detail}", "to: nowhere}"))
    with pytest.raises(WorkflowError) as info:
        load_plan(path)
    assert str(info.value).splitlines() == [
        f"{path}:11:31: $.phases.listing.transitions[0].to: unknown phase 'nowhere'; phases: listing, detail",
        f"{path}:12:3: $.phases.detail: phase 'detail' is unreachable: no start URL, transition or form leads to it",
    ]


def test_missing_file_is_a_located_error(tmp_path: Path) -> None:
    with pytest.raises(WorkflowError) as info:
        load_plan(tmp_path / "nope.yaml")
    assert str(info.value) == f"{tmp_path / 'nope.yaml'}:1:1: $: cannot read the file: No such file or directory"


def test_script_allowlist() -> None:
    text = GOOD.replace("      - type: extract\n", "      - type: script\n        callable: json:dumps\n      - type: extract\n")
    _, found = check_source(parse_text(text, "wf.yaml"), script_modules=("wfcrawl_scripts",))
    assert [str(p) for p in found] == [
        "wf.yaml:15:19: $.phases.detail.nodes[0].callable: script module 'json' is not in the allowed script modules"
    ]
    plan, found = check_source(parse_text(text, "wf.yaml"), script_modules=("json",))
    assert found == [] and plan is not None


def test_xpath_errors_found_only_by_evaluating_are_found_at_load() -> None:
    """XPath 1.0 reports these only when evaluating: an XPath is evaluated once on a
    small probe page at load, which finds those its evaluation reaches there (not,
    say, a bad call inside a predicate on elements the probe lacks)."""
    assert problems("""\
        name: t
        start_urls: [http://x/]
        phases:
          p:
            nodes:
              - {type: extract_links, xpath: "concat('/p/', $page)", marker: m}
              - type: extract
                item: a
                fields:
                  n: {xpath: "count(1)"}
                  m: {xpath: "substring()"}
                  f: {xpath: "foo()"}
                  ok: {xpath: "count(//p)"}
                  sets: {xpath: "set:distinct(//p)"}
                  regex: {xpath: "//p[re:test(., '^x')]"}
            transitions:
              - {marker: m, to: p}
        """) == [
        "6:38: $.phases.p.nodes[0].xpath: invalid XPath \"concat('/p/', $page)\": Undefined variable",
        "10:22: $.phases.p.nodes[1].fields.n.xpath: invalid XPath 'count(1)': Invalid type",
        "11:22: $.phases.p.nodes[1].fields.m.xpath: invalid XPath 'substring()': Invalid number of arguments",
        "12:22: $.phases.p.nodes[1].fields.f.xpath: invalid XPath 'foo()': Unregistered function",
    ]
