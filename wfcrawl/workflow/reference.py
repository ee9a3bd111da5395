"""Generate docs/workflow-reference.md from the JSON Schema.

The reference is *generated* so it cannot drift from the schema: a test
compares the committed file with this output. Regenerate with::

    python -m wfcrawl.workflow.reference > docs/workflow-reference.md
"""

from __future__ import annotations

import json
import sys
from typing import Any

from wfcrawl.workflow.validate import schema

INTRO = """\
# Workflow reference

Generated from `wfcrawl/workflow/schema.json` by `python -m wfcrawl.workflow.reference`
(a test checks that this file is current). Every field, its type, its default and what
it does. Unknown keys are errors. A string where a selector is expected is a CSS
selector. For examples of every node type, see `workflows/`.
"""

# Sections in reading order: ($defs name or "" for the document, title, example).
SECTIONS: tuple[tuple[str, str, str], ...] = (
    ("", "Document", "name: shop\nbase_url: http://localhost:8000\nstart_urls: [/]\nmax_depth: 3\nphases: {...}"),
    ("start_url", "Start URL (object form)", "start_urls:\n  - /\n  - {url: /api/items?page=1, phase: api, marker: seed}"),
    ("phase", "Phase", "detail:\n  when_marker: product\n  nodes: [...]\n  transitions: [...]"),
    ("transition", "Transition", "transitions:\n  - {marker: product, to: detail}\n  - {marker: next, to: listing, url: 'page=\\d+', priority: 1}"),
    ("extract_links", "Node `extract_links`", "- type: extract_links\n  css: div.card a.title\n  marker: product\n  limit: 20\n  allow: [/product/]"),
    ("extract", "Node `extract`", "- type: extract\n  item: product\n  fields:\n    name: h1::text\n    price: {css: .price::text, type: float, required: true}"),
    ("field_object", "Field (object form)", "price: {css: span.price::text, re: '[\\d.,]+', type: float, required: true}\nattributes: {rows: table.attrs tr, key: th, value: td}\nseller: {css: div.seller, fields: {name: .name, rating: {css: .rating, type: float}}}\nreviews: {rows: li.review, fields: {author: .author, stars: {css: .stars, type: int}}}\ntags: {css: ul.tags li, many: true}"),
    ("paginate", "Node `paginate`", "- type: paginate\n  url: /api/items?page={page}\n  marker: next\n  stop_when: has_next == `false`\n  max_pages: 100"),
    ("form", "Node `form`", "- type: form\n  css: form#login\n  fields: {remember: 'yes'}\n  env: {username: SHOP_USER, password: SHOP_PASSWORD}\n  phase: account"),
    ("script", "Node `script`", "- type: script\n  callable: wfcrawl.scripts.jsonld:objects\n  item: product\n  args: {types: [Product]}"),
)


def _type(spec: dict[str, Any], defs: dict[str, Any]) -> str:
    if "$ref" in spec:
        name = spec["$ref"].rsplit("/", 1)[-1]
        label: str = {"name": "name", "markers": "name or list of names", "regex_list": "regex or list of regexes",
                "selection": "selector", "field": "field", "start_url": "start URL",
                "domain": "domain"}.get(name, name)
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
    return "\n".join(out)


if __name__ == "__main__":  # pragma: no cover
    sys.stdout.write(render())
