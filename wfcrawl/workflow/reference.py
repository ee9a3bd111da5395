"""Generate docs/workflow-reference.md from the JSON Schema.

The reference is *generated* so it cannot drift from the schema: a test
compares the committed file with this output. Regenerate with::

    python -m wfcrawl.workflow.reference > docs/workflow-reference.md
"""

from __future__ import annotations

import json
import sys
from typing import Any

from wfcrawl.workflow.limits import LIMITS
from wfcrawl.workflow.regex import MAX_MEMORY
from wfcrawl.workflow.validate import schema

INTRO = """\
# Workflow reference

Generated from `wfcrawl/workflow/schema.json` by `python -m wfcrawl.workflow.reference`
(a test checks that this file is current). Every field, its type, its default and what
it does. Unknown keys are errors. A string where a selector is expected is a CSS
selector. For examples of every node type, see `workflows/`.
"""

TEMPLATES = """\
## Templates

`url` of `extract_links` and `paginate`, and the `fields` of a `form`, are templates: `{name}`
is replaced by a named value (`values`, `iterate`, `{page}`). In URLs the syntax is RFC 6570
levels 1 and 2: `{name}` percent-encodes everything but letters, digits and `-._~` (a value
fills one path segment or query value), `{+name}` keeps reserved characters such as `/?&=`
(a value that is a path or a URL). In form fields both insert the value as it is. A list
value is joined with commas. A name the node does not define is an error at load; a value
that is empty on a page drops that link (`wfcrawl/links/dropped/missing_value`) or submission.
Start URLs are literal URLs (relative ones resolve against `base_url`): templates take values
found on pages, and a start URL has no page yet.

## Values handed on (`var:`)

A request carries *variables*: the `values` of the link (or the `iterate` values of the form
submission) that made it, added to the variables of the page it was found on. A field
`{var: name}` reads them, so an item can combine what a listing showed with what the detail
page shows. Variables travel in the request (meta key `wfcrawl_vars`); the duplicate filter
ignores them, so the first link to a URL decides the values its page gets.
"""

# Sections in reading order: ($defs name or "" for the document, title, example).
SECTIONS: tuple[tuple[str, str, str], ...] = (
    ("", "Document", "name: shop\nbase_url: http://localhost:8000\nstart_urls: [/]\nmax_depth: 3\nphases: {...}"),
    ("start_url", "Start URL (object form)", "start_urls:\n  - /\n  - {url: '/api/items?page=1', phase: api, marker: seed}"),
    ("phase", "Phase", "detail:\n  when_marker: product\n  nodes: [...]\n  transitions: [...]"),
    ("transition", "Transition", "transitions:\n  - {marker: product, to: detail}\n  - {marker: next, to: listing, url: 'page=\\d+', priority: 1}"),
    ("extract_links", "Node `extract_links`", "- type: extract_links\n  css: div.card a.title\n  marker: product\n  limit: 20\n  allow: [/product/]\n"
     "- type: extract_links        # a URL built from a value of each row\n  rows: div.quote\n  url: /author/{slug}/\n"
     "  values: {slug: {css: small.author, attr: data-slug}}\n  marker: author\n"
     "- type: extract_links        # JSON: one link per object, its name handed on\n  rows: {jmespath: items}\n"
     "  url: /api/item/{id}\n  values: {id: {jmespath: id}, name: {jmespath: name}}\n  marker: item"),
    ("extract", "Node `extract`", "- type: extract\n  item: product\n  fields:\n    name: h1::text\n    price: {css: .price::text, type: float, required: true}\n"
     "    list_price: {var: list_price}   # a value the link to this page brought"),
    ("field_object", "Field (object form)", "price: {css: span.price::text, re: '[\\d.,]+', type: float, required: true}\nattributes: {rows: table.attrs tr, key: th, value: td}\nseller: {css: div.seller, fields: {name: .name, rating: {css: .rating, type: float}}}\nreviews: {rows: li.review, fields: {author: .author, stars: {css: .stars, type: int}}}\ntags: {css: ul.tags li, many: true}\nborn: {css: .born, type: date, format: '%B %d, %Y'}"),
    ("paginate", "Node `paginate`", "- type: paginate\n  url: /api/items?page={page}\n  marker: next\n  stop_when: has_next == `false`\n  max_pages: 100\n"
     "- type: paginate             # HTML: until a page shows no results\n  url: /quotes/page/{page}/\n  marker: next\n  stop_when_empty: div.quote"),
    ("form", "Node `form`", "- type: form\n  css: form#login\n  fields: {remember: 'yes'}\n  env: {username: SHOP_USER, password: SHOP_PASSWORD}\n  phase: account\n"
     "- type: form                 # one postback per option of a select\n  css: form#aspnetForm\n"
     "  iterate: {author: {options: ctl00$author}}\n  fields: {__EVENTTARGET: ctl00$author}\n  click: false\n  phase: tags"),
    ("form_iteration", "Form `iterate` entry", "iterate:\n  author: {options: ctl00$author, exclude: '^-+$'}\n  q: {list: [laptops, phones], field: q}\n"
     "  page: {css: a.next, attr: href, re: 'Page\\$\\d+'}"),
    ("script", "Node `script`", "- type: script\n  callable: wfcrawl.scripts.jsonld:objects\n  item: product\n  args: {types: [Product]}\n"
     "- type: script\n  callable: tables             # an entry point of the group wfcrawl.scripts\n  item: row\n"
     "  args: {link: Name, marker: detail}\n  markers: [detail]"),
    ("expect", "Expectations (`expect`)",
     "expect:\n  items:\n    product: {min_count: 100, fill_rates: {name: 1.0, price: 0.95}}\n"
     "  phases:\n    listing: {min_pages: 5, optional_nodes: [next_page]}\n  max_error_rate: 0.05"),
    ("item_expectation", "Item expectation (`expect.items.<type>`)",
     "product: {min_count: 100, fill_rates: {price: 0.95}}"),
    ("phase_expectation", "Phase expectation (`expect.phases.<phase>`)",
     "listing: {min_pages: 5, optional_nodes: [next_page, 'extract_links#2']}")
)


def _bounds(spec: dict[str, Any]) -> str:
    """`` (0 to 3600)``, `` (at most 2048 characters)``: the documented range of a value."""
    out = []
    if "maximum" in spec:
        low = spec.get("minimum", spec.get("exclusiveMinimum"))
        out.append(f"at most {spec['maximum']}" if low is None else f"{low} to {spec['maximum']}")
    if "maxLength" in spec:
        out.append(f"at most {spec['maxLength']} characters")
    if "maxItems" in spec:
        out.append(f"at most {spec['maxItems']} items")
    return f" ({', '.join(out)})" if out else ""


def _type(spec: dict[str, Any], defs: dict[str, Any]) -> str:
    return _kind(spec, defs) + _bounds(spec)


def _kind(spec: dict[str, Any], defs: dict[str, Any]) -> str:
    if "$ref" in spec:
        name = spec["$ref"].rsplit("/", 1)[-1]
        label: str = {"name": "name", "markers": "name or list of names", "regex_list": "regex or list of regexes",
                "selection": "selector", "field": "field", "start_url": "start URL",
                "domain": "domain", "values": "mapping of field", "json_from": "field", "refetch": "integer",
                "condition": "JMESPath or selector",
                "form_iteration": "iterate entry", "expect": "expectations",
                "item_expectation": "item expectation", "phase_expectation": "phase expectation"}.get(name, name)
        return label
    if "enum" in spec:
        return " \\| ".join(f"`{v}`" for v in spec["enum"])
    if "const" in spec:
        return f"`{spec['const']}`"
    kind = spec.get("type")
    if isinstance(kind, list):
        return " or ".join(kind)
    if kind == "array" and "items" in spec:
        return f"list of {_type(spec['items'], defs)}"
    if kind == "object" and isinstance(spec.get("additionalProperties"), dict):
        return f"mapping of {_type(spec['additionalProperties'], defs)}"
    return kind or "any"


def _default(spec: dict[str, Any], required: bool) -> str:
    if required:
        return "**required**"
    if "default" in spec:
        return f"`{json.dumps(spec['default'])}`"
    return "—"


def _description(spec: dict[str, Any], defs: dict[str, Any]) -> str:
    text = spec.get("description", "")
    if not text and "$ref" in spec:
        text = defs.get(spec["$ref"].rsplit("/", 1)[-1], {}).get("description", "")
    return str(text).replace("|", "\\|").replace("\n", " ")


def _table(spec: dict[str, Any], defs: dict[str, Any]) -> list[str]:
    required = set(spec.get("required", ()))
    rows = ["| field | type | default | meaning |", "|---|---|---|---|"]
    for name, prop in spec.get("properties", {}).items():
        if prop is True:
            continue
        rows.append(
            f"| `{name}` | {_type(prop, defs)} | {_default(prop, name in required)} | {_description(prop, defs)} |"
        )
        # Small inline objects (rate_limit) list their own fields right below.
        inner_required = set(prop.get("required", ()))
        for sub, subprop in prop.get("properties", {}).items():
            rows.append(
                f"| `{name}.{sub}` | {_type(subprop, defs)} | {_default(subprop, sub in inner_required)} "
                f"| {_description(subprop, defs)} |"
            )
    return rows


def render() -> str:
    root = schema()
    defs = root["$defs"]
    out = [INTRO]
    for key, title, example in SECTIONS:
        spec = root if not key else defs[key]
        if key == "start_url":
            spec = spec["else"]
        out.append(f"## {title}\n")
        if spec.get("description"):
            out.append(spec["description"] + "\n")
        out.extend(_table(spec, defs))
        out.append("\nExample:\n\n```yaml\n" + example + "\n```\n")
    listed = {key for key, _, _ in SECTIONS}
    for key, spec in defs.items():
        # Sections added to the schema later still get documented (without an example).
        if key not in listed and isinstance(spec, dict) and "properties" in spec and key != "node":
            out.append(f"## `{key}`\n")
            if spec.get("description"):
                out.append(spec["description"] + "\n")
            out.extend(_table(spec, defs))
            out.append("")
    out.append("## Common node keys\n\nEvery node has `type` (required) and may have `name` (a label in logs and "
               "stats) and `when_marker` (run only for responses whose request carries one of these markers).\n")
    out.append("## Selections\n\n" + defs["selection"]["description"] + "\n")
    out.append(TEMPLATES)
    out.append(REGEX_SECTION)
    out.append(LIMITS_INTRO)
    out.extend(["| bound | value | what |", "|---|---|---|"])
    out.extend(f"| {name} | {value} | {what} |" for name, (value, what) in LIMITS.items())
    out.append(LIMITS_OUTRO)
    return "\n".join(out)


REGEX_SECTION = f"""## Regular expressions

Every regular expression a document gives (a field's `re`, `allow`/`deny` of `extract_links`,
a transition's `url`, `pattern` and `patternProperties` in `items:` schemas, and the EXSLT
`re:test()`, `re:match()` and `re:replace()` functions in XPath) runs on
[RE2](https://github.com/google/re2/wiki/Syntax): matching takes time linear in the text,
whatever the pattern, so no document can stall a crawl. RE2 differs from Python's `re`:

- no backreferences (`\\1`, `(?P=name)`) and no lookaround (`(?=`, `(?!`, `(?<=`, `(?<!`):
  a pattern with one is refused at load, located, saying so;
- `$` is the end of the text (Python's `$` also matches before a final newline); `\\Z` is
  written `\\z`;
- a pattern needing more than {MAX_MEMORY >> 20} MiB of RE2's memory is refused ("pattern too large").

A literal pattern given to `re:test()`, `re:match()` or `re:replace()` is checked at load; one
computed from the page that does not compile fails the node on that page (counted).
Item schemas (`items:`) may only reference themselves (`$ref: '#/...'`; nothing is ever fetched),
may not contain `$id`, a reference cycle that does not descend into the item, or
`unevaluatedProperties` together with `patternProperties`.
"""

LIMITS_INTRO = """## Limits

A document is loaded within these bounds whatever its content (documents may come from
people who should not be able to hurt the crawler: the launch API, Pub/Sub, scrapyd). A
document past one is a located problem (`file:line:col: $.path: message`). Numbers must be
finite; each field above gives its own range. Besides: no control characters but tab and
line breaks, no lone surrogates (`"\\ud800"` in JSON), no byte order mark but at the start,
no NUL byte, no YAML tags but the plain ones (`!!python/...`, `!!binary`, `!!set` are
refused), no duplicate keys (a `<<` merge key's values may be overridden), mapping keys are
strings. Bytes that are not UTF-8 are reported at their line. Dates stay strings.
"""

LIMITS_OUTRO = """
Mapping keys count as values. Launchers may lower the document size
(`WFCRAWL_LAUNCHER_MAX_DOCUMENT_BYTES`).
"""


if __name__ == "__main__":  # pragma: no cover
    sys.stdout.write(render())
