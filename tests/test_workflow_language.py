"""The language's newer constructs at load: templates, values, form iterations, stop
conditions, when_marker and strptime checks; each problem exact and located."""

from __future__ import annotations

import pytest
from form2request import form2request
from scrapy.http import HtmlResponse

from tests.conftest import problems
from wfcrawl.workflow import load_text
from wfcrawl.workflow.page import FormSubmit, Page
from wfcrawl.workflow.template import TemplateError, parse_template

HEAD = """\
name: t
base_url: http://x.test
start_urls: [/]
phases:
  listing:
    nodes:
"""


def doc(nodes: str, rest: str = "") -> str:
    """A one-phase document (phase `listing`) with these nodes (indented 6) and more phases."""
    return HEAD + nodes + rest


def test_template_expansion() -> None:
    t = parse_template("/a/{name}/{+path}?q={q}")
    assert t.names == ("name", "path", "q")
    assert t.expand({"name": "x y/z", "path": "/p/q?r=1", "q": ["a&b", "c"]}) == "/a/x%20y%2Fz//p/q?r=1?q=a%26b%2Cc"
    assert t.expand({"name": "x", "path": "p"}) is None  # q missing
    assert t.expand({"name": "x", "path": "p", "q": ""}) is None
    assert t.expand({"name": 3, "path": True, "q": 2.5}) == "/a/3/true?q=2.5"
    assert parse_template("{a} & {b}").expand({"a": "x y", "b": "1"}, url=False) == "x y & 1"


@pytest.mark.parametrize(("text", "message"), [
    ("/a/{na me}", "invalid expression '{na me}' at position 3: write {name} or {+name} (a name is letters, digits and '_')"),
    ("/a/{#frag}", "invalid expression '{#frag}' at position 3: write {name} or {+name} (a name is letters, digits and '_')"),
    ("/a/{name", "unmatched '{' at position 3"),
    ("/a/name}", "unmatched '}' at position 7"),
])
def test_template_syntax_errors(text: str, message: str) -> None:
    with pytest.raises(TemplateError) as info:
        parse_template(text)
    assert str(info.value) == message


CASES: list[tuple[str, str, list[str]]] = [
    (
        "url_template_unknown_name",
        doc("""\
      - type: extract_links
        rows: div.quote
        url: /author/{slug}/{id}
        values: {slug: small.author}
        marker: author
    transitions: [{marker: author, to: listing}]
"""),
        ["9:14: $.phases.listing.nodes[0].url: unknown name 'id' in template '/author/{slug}/{id}'; names: slug"],
    ),
    (
        "url_template_without_values",
        doc("""\
      - {type: extract_links, url: '/a/{slug}', marker: a}
    transitions: [{marker: a, to: listing}]
"""),
        ["7:36: $.phases.listing.nodes[0].url: unknown name 'slug' in template '/a/{slug}'; "
         "no names are defined here: give them in 'values'"],
    ),
    (
        "url_template_syntax",
        doc("""\
      - {type: extract_links, url: '/a/{slug', values: {slug: b}, marker: a}
    transitions: [{marker: a, to: listing}]
"""),
        ["7:36: $.phases.listing.nodes[0].url: invalid template '/a/{slug': unmatched '{' at position 3"],
    ),
    (
        "url_and_selector",
        doc("""\
      - {type: extract_links, css: a.x, url: '/a/{s}', values: {s: b}, marker: a}
    transitions: [{marker: a, to: listing}]
"""),
        ["7:31: $.phases.listing.nodes[0].css: give either 'css' (where the links are) or 'url' (a template)"],
    ),
    (
        "values_json_with_html_rows",
        doc("""\
      - {type: extract_links, rows: div.x, url: '/a/{s}', values: {s: {jmespath: id}}, marker: a}
    transitions: [{marker: a, to: listing}]
"""),
        ["7:67: $.phases.listing.nodes[0].values: rows and values must both be JMESPath (JSON) or both CSS/XPath (HTML)"],
    ),
    (
        "values_bad_name",
        doc("""\
      - {type: extract_links, url: '/a/{t}', values: {_s: b, t: c}, marker: a}
    transitions: [{marker: a, to: listing}]
"""),
        ["7:55: $.phases.listing.nodes[0].values._s: invalid name '_s': must match '^[A-Za-z][A-Za-z0-9_]*$'"],
    ),
    (
        "json_from_without_jmespath",
        doc("""\
      - {type: extract, item: q, json_from: 'script::text', fields: {a: h1}}
"""),
        ["7:45: $.phases.listing.nodes[0].json_from: json_from needs JMESPath in rows or fields (it is the JSON they read)"],
    ),
    (
        "json_from_jmespath_itself",
        doc("""\
      - {type: extract, item: q, json_from: {jmespath: a}, rows: {jmespath: b}, fields: {a: {jmespath: c}}}
"""),
        ["7:45: $.phases.listing.nodes[0].json_from: json_from selects the text holding JSON with css or xpath "
         "(and re); its JMESPath expressions go in the node's rows and fields"],
    ),
    (
        "paginate_template_and_conditions",
        doc("""\
      - type: paginate
        url: /p/{page}?c={cursor}
        marker: next
        stop_when: {css: 'li.next..x'}
        stop_when_empty: {xpath: '//div['}
    transitions: [{marker: next, to: listing}]
"""),
        [
            "8:14: $.phases.listing.nodes[0].url: unknown name 'cursor' in template '/p/{page}?c={cursor}'; names: page",
            "10:26: $.phases.listing.nodes[0].stop_when.css: invalid CSS selector 'li.next..x': Expected ident, got <DELIM '.' at 8>",
            "11:34: $.phases.listing.nodes[0].stop_when_empty.xpath: invalid XPath '//div[': Invalid expression",
        ],
    ),
    (
        "paginate_stop_when_no_new_bad_value",
        doc("""\
      - {type: paginate, url: '/p/{page}', marker: next, stop_when_no_new: pages}
    transitions: [{marker: next, to: listing}]
"""),
        ["7:76: $.phases.listing.nodes[0].stop_when_no_new: must be one of 'items', 'links'; got 'pages'"],
    ),
    (
        "form_iterate_problems",
        doc("""\
      - type: form
        iterate:
          a: {options: sel, list: [1, 2]}
          b: {options: sel, attr: x}
          c: {re: '(x)'}
          d: {list: [x], match: '('}
        fields: {q: '{a} {b_label} {d_label}', r: '{e'}
        click: true
        phase: listing
"""),
        [
            "9:14: $.phases.listing.nodes[0].iterate.a: an iterate entry needs exactly one of options (a select's name), "
            "list, or a selector; got options, list",
            "10:29: $.phases.listing.nodes[0].iterate.b.attr: 'attr' applies to selector values, not to options",
            "11:14: $.phases.listing.nodes[0].iterate.c: an iterate entry needs exactly one of options (a select's name), "
            "list, or a selector",
            "12:33: $.phases.listing.nodes[0].iterate.d.match: invalid regular expression '(': missing ): (",
            "13:21: $.phases.listing.nodes[0].fields.q: unknown name 'd_label' in template '{a} {b_label} {d_label}'; "
            "names: a, a_label, b, b_label, c, d",
            "13:51: $.phases.listing.nodes[0].fields.r: invalid template '{e': unmatched '{' at position 0",
            "14:16: $.phases.listing.nodes[0].click: click: true is the default (the form's first submit control); "
            "give a control's name, or false to click none (a postback)",
        ],
    ),
    (
        "when_marker_never_reaches",
        doc("""\
      - {type: extract_links, css: a, marker: detail, when_marker: [start, page]}
    transitions: [{marker: detail, to: detail}]
""", """\
  detail:
    when_marker: product
    nodes:
      - {type: extract, item: x, fields: {a: h1}, when_marker: detail}
"""),
        [
            "7:76: $.phases.listing.nodes[0].when_marker[1]: marker 'page' never reaches phase 'listing'; "
            "the markers that do: start",
            "10:18: $.phases.detail.when_marker: marker 'product' never reaches phase 'detail'; the markers that do: detail",
        ],
    ),
    (
        "when_marker_from_form_and_start",
        doc("""\
      - {type: form, phase: result, marker: search, when_marker: seed}
""", """\
  result:
    when_marker: [search, form]
    nodes:
      - {type: extract, item: x, fields: {a: h1}}
""").replace("start_urls: [/]", "start_urls: [{url: /, marker: seed}]"),
        ["9:27: $.phases.result.when_marker[1]: marker 'form' never reaches phase 'result'; the markers that do: search"],
    ),
    (
        "strptime_formats",
        doc("""\
      - type: extract
        item: x
        fields:
          a: {css: x, type: date, format: '%d %Q %Y'}
          b: {css: x, type: datetime, format: '%H:%M %'}
          c: {css: x, format: '%Y'}
          d: {css: x, type: date, format: '%G-%m'}
          ok: {css: x, type: datetime, format: '%B %d, %Y %I:%M %p'}
"""),
        [
            "10:43: $.phases.listing.nodes[0].fields.a.format: invalid strptime format '%d %Q %Y': unknown directive "
            "'%Q' (see Python's strftime() and strptime() format codes)",
            "11:47: $.phases.listing.nodes[0].fields.b.format: invalid strptime format '%H:%M %': a '%' ends it "
            "(write %% for a '%')",
            "12:23: $.phases.listing.nodes[0].fields.c.format: 'format' needs type: date or datetime",
            "13:43: $.phases.listing.nodes[0].fields.d.format: invalid strptime format '%G-%m': %G needs %V and a "
            "weekday (%u, %a or %A)",
        ],
    ),
    (
        "script_markers_route",
        doc("""\
      - {type: script, callable: 'wfcrawl.scripts.tables:records', markers: [row, cell]}
    transitions: [{marker: row, to: listing}]
"""),
        ["7:83: $.phases.listing.nodes[0].markers[1]: no transition of phase 'listing' routes marker 'cell'; "
         "its links would all be dropped"],
    ),
    (
        "unique_needs_key",
        doc("""\
      - {type: extract, item: x, fields: {a: h1}}
""", "items:\n  x: {unique: true}\n"),
        ["9:7: $.items.x.unique: unique needs 'key': the fields that identify an item"],
    ),
]


@pytest.mark.parametrize(("text", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_problem(text: str, expected: list[str]) -> None:
    assert problems(text) == sorted(expected, key=lambda p: tuple(int(n) for n in p.split(":")[:2]))


TOSCRAPE_LIKE = """\
<html><body>
<form action="/filter.aspx" method="post">
  <select name="author" id="author" onchange="this.form.submit()">
    <option>----------</option>
    <option>Albert Einstein</option>
    <option>J.K. Rowling</option>
    <option disabled>Nobody</option>
  </select>
  <select name="tag" id="tag"><option>----------</option></select>
  <input type="hidden" name="__VIEWSTATE" value="abc=">
  <input type="submit" name="submit_button" value="Search">
</form>
</body></html>
"""


def test_iterate_options_without_values_and_a_plain_postback() -> None:
    """Options without a value attribute (their text is the value), a `----------`
    placeholder excluded, a change that submits the form (click: false, no fields)."""
    plan = load_text("""\
name: t
start_urls: [http://x.test/search.aspx]
phases:
  search:
    nodes:
      - type: form
        iterate: {author: {options: author, exclude: '^-+$'}}
        click: false
        phase: tags
  tags:
    nodes: [{type: extract, item: t, fields: {a: h1}}]
""")

    class Quiet:
        def count(self, key: str, count: int = 1) -> None: ...
        def warn_once(self, key: object, msg: str, *args: object) -> None: ...

    response = HtmlResponse("http://x.test/search.aspx", body=TOSCRAPE_LIKE.encode(), encoding="utf-8")
    page = Page(response, phase="search", marker="start", markers=("start",), depth=0, page_number=None,
                reporter=Quiet())
    outputs = list(plan.phases["search"].run(page))
    submits = [s for s in outputs if isinstance(s, FormSubmit)]
    assert submits == outputs
    assert [(s.data, dict(s.values)) for s in submits] == [
        ({"author": "Albert Einstein"}, {"author": "Albert Einstein", "author_label": "Albert Einstein"}),
        ({"author": "J.K. Rowling"}, {"author": "J.K. Rowling", "author_label": "J.K. Rowling"}),
    ]
    request = form2request(submits[0].form, submits[0].data, click=submits[0].click)
    assert (request.method, request.url) == ("POST", "http://x.test/filter.aspx")
    # The placeholder of the other select and the view state ride along; no submit button.
    assert request.body == b"tag=----------&__VIEWSTATE=abc%3D&author=Albert+Einstein"
