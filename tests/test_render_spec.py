"""The workflow's render block: validated like the rest (located errors), compiled to plain data."""

from __future__ import annotations

import json

import pytest

from tests.conftest import problems
from wfcrawl.workflow import check_source
from wfcrawl.workflow.render import plan_renders
from wfcrawl.workflow.source import parse_text

DOC = """\
name: js
base_url: http://localhost:8000
start_urls: [/]
phases:
  listing:
    render: {wait_for: ul.products}
    nodes:
      - type: extract_links
        css: a.product
        marker: product
        render: {wait_for: h1}
    transitions:
      - {marker: product, to: detail}
  detail:
    nodes:
      - type: extract
        item: product
        fields:
          name: h1::text
"""


def with_render(block: str, node_block: str = "{wait_for: h1}") -> str:
    return DOC.replace("render: {wait_for: ul.products}", f"render: {block}").replace(
        "render: {wait_for: h1}", f"render: {node_block}"
    )


def test_full_block_compiles_to_plain_data() -> None:
    block = (
        "{wait_until: networkidle, wait_for: {xpath: '//ul'}, timeout: 5, idle: 0.2, scroll: 3, "
        "click: {selector: 'button.more', times: 4, collect: true}, screenshot: {full_page: true}, "
        "html: true, distinct: true}"
    )
    plan, found = check_source(parse_text(with_render(block), "wf.yaml"))
    assert found == []
    assert plan is not None
    assert plan.phases["listing"].render == {
        "wait_until": "networkidle", "timeout": 5, "idle": 0.2, "scroll": 3, "html": True, "distinct": True,
        "wait_for": "xpath=//ul",
        "click": {"selector": "css=button.more", "times": 4, "collect": True},
        "screenshot": {"full_page": True},
    }
    # Node-level block: the links it yields carry it; the target phase renders nothing.
    assert plan.phases["listing"].nodes[0].render == {"wait_for": "css=h1"}  # type: ignore[attr-defined]
    assert plan.phases["detail"].render is None
    assert plan_renders(plan)
    # Plain data: what travels in request meta survives JSON unchanged.
    assert json.loads(json.dumps(plan.phases["listing"].render)) == plan.phases["listing"].render


def test_screenshot_true_and_empty_block() -> None:
    plan, found = check_source(parse_text(with_render("{screenshot: true}", "{}"), "wf.yaml"))
    assert found == []
    assert plan is not None
    assert plan.phases["listing"].render == {"screenshot": {"full_page": False}}
    assert plan.phases["listing"].nodes[0].render == {}  # type: ignore[attr-defined]


def test_no_render_block_means_no_rendering() -> None:
    text = DOC.replace("    render: {wait_for: ul.products}\n", "").replace("        render: {wait_for: h1}\n", "")
    plan, found = check_source(parse_text(text, "wf.yaml"))
    assert found == [] and plan is not None
    assert not plan_renders(plan)


@pytest.mark.parametrize(
    ("block", "node_block", "expected"),
    [
        pytest.param(
            "{wait_for: 'ul[class'}", "{}",
            ["6:24: $.phases.listing.render.wait_for: invalid CSS selector 'ul[class': Operator expected, got <EOF at 8>"],
            id="bad_css",
        ),
        pytest.param(
            "{}", "{click: {selector: {xpath: '//button['}}}",
            ["11:44: $.phases.listing.nodes[0].render.click.selector.xpath: invalid XPath '//button[': Invalid expression"],
            id="bad_xpath_in_node_click",
        ),
        pytest.param(
            "{wait_for: 'h1::text'}", "{}",
            ["6:24: $.phases.listing.render.wait_for: render selectors select elements; 'h1::text' has the pseudo-element ::text"],
            id="pseudo_element",
        ),
        pytest.param(
            "{click: {selector: 'a::attr(href)'}}", "{}",
            ["6:32: $.phases.listing.render.click.selector: render selectors select elements; 'a::attr(href)' has the pseudo-element ::attr()"],
            id="pseudo_element_function",
        ),
        pytest.param(
            "{wait_for: 'a:contains(Next)'}", "{}",
            ["6:24: $.phases.listing.render.wait_for: 'a:contains(Next)': :contains() is a cssselect extension that browsers do not know; use XPath (contains(., '...'))"],
            id="contains",
        ),
        pytest.param(
            "{wait_for: 'ul[', click: {selector: 'b['}}", "{}",
            [
                "6:24: $.phases.listing.render.wait_for: invalid CSS selector 'ul[': Expected ident or '*', got <EOF at 3>",
                "6:49: $.phases.listing.render.click.selector: invalid CSS selector 'b[': Expected ident or '*', got <EOF at 2>",
            ],
            id="every_error_reported",
        ),
        pytest.param(
            "{scroll: -1, timeout: 0}", "{}",
            [
                "6:22: $.phases.listing.render.scroll: must be at least 0; got -1",
                "6:35: $.phases.listing.render.timeout: must be at least 0.1; got 0",
            ],
            id="ranges",
        ),
        pytest.param(
            "{wait_until: idle}", "{}",
            ["6:26: $.phases.listing.render.wait_until: must be one of 'load', 'domcontentloaded', 'networkidle', 'commit'; got 'idle'"],
            id="wait_until_enum",
        ),
        pytest.param(
            "{click: {times: 2}}", "{}",
            ["6:21: $.phases.listing.render.click: missing required key 'selector'"],
            id="click_needs_selector",
        ),
        pytest.param(
            "{wait_for: {css: a, xpath: //a}}", "{}",
            ["6:24: $.phases.listing.render.wait_for: give only one of css, xpath"],
            id="one_selector_kind",
        ),
        pytest.param(
            "{scrol: 3}", "{}",
            ["6:14: $.phases.listing.render.scrol: unknown key 'scrol'; did you mean 'scroll'?"],
            id="unknown_key_hint",
        ),
        pytest.param(
            "{screenshot: 3}", "{}",
            ["6:26: $.phases.listing.render.screenshot: must be true or false, not an integer"],
            id="screenshot_type",
        ),
    ],
)
def test_bad_render_blocks_are_located(block: str, node_block: str, expected: list[str]) -> None:
    assert problems(with_render(block, node_block)) == expected
