# Confusable characters are the point of some documents here.
# ruff: noqa: RUF001
"""Hostile workflow documents, each with the exact problems it must give.

Every entry is (id, document, expected problems as ``line:col: $.path: message``,
file name). A document is text, or bytes for what only bytes can say (encodings).
Expected ``[]`` means the document is valid *and safe*: a regex bomb RE2 runs in
linear time, a BOM at the start, a merge-key override. The expectations were
written with the documents and checked against what wfcrawl reports; they are
kept in ``expected.json`` (one place to read them all, reviewed like code).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

BASE = """\
name: shop
base_url: http://shop.example
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

BASE_JSON = {
    "name": "shop", "base_url": "http://shop.example", "start_urls": ["/"],
    "phases": {
        "listing": {"nodes": [{"type": "extract_links", "css": "a.product", "marker": "product"}],
                    "transitions": [{"marker": "product", "to": "detail"}]},
        "detail": {"nodes": [{"type": "extract", "item": "product", "fields": {"name": "h1::text"}}]},
    },
}


@dataclass(frozen=True)
class Case:
    id: str
    document: str | bytes
    expected: tuple[str, ...]
    name: str = "wf.yaml"


def _json(**changes: object) -> str:
    return json.dumps({**BASE_JSON, **changes}, ensure_ascii=False)


def _top(extra: str) -> str:
    """BASE with top-level YAML added at its end (line 18 on)."""
    return BASE + extra


def _field(spec: str) -> str:
    """BASE with the field ``name`` (line 17, col 17 is its value) replaced."""
    return BASE.replace("name: h1::text", f"name: {spec}")


def _links(extra: str) -> str:
    """BASE with keys added to the extract_links node (line 10 on, column 9)."""
    return BASE.replace("        marker: product\n", "        marker: product\n" + extra, 1)


def _transition(spec: str) -> str:
    return BASE.replace("{marker: product, to: detail}", spec)


def _items(schema: str) -> str:
    return _top(f"items:\n  product:\n    schema: {schema}\n")


BOMB = (
    'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    + "".join(f"{c}: &{c} [" + ",".join([f"*{p}"] * 9) + "]\n" for p, c in zip("abcdefgh", "bcdefghi", strict=True))
)
NESTED_FIELDS = "name: shop\nstart_urls: [http://a.example/]\nphases:\n  p:\n    nodes:\n      - type: extract\n" \
    "        item: x\n        fields:\n" + "".join(
        f"{' ' * (10 + 4 * i)}f:\n{' ' * (12 + 4 * i)}css: div\n{' ' * (12 + 4 * i)}fields:\n" for i in range(97)
    ) + " " * (10 + 4 * 97) + "f: p\n"

E = "invalid regular expression"
RE2 = "document regexes run on RE2 (linear time, no backtracking)"
HINT_UNKNOWN = "allowed: attr, css, domains, jmespath, limit, marker, name, render, when_marker, xpath"

CORPUS: list[Case] = [
    # ---------------------------------------------------------------- bytes and characters
    Case("utf8_invalid_byte", b"name: shop\ndescription: caf\xe9\n", (
        "2:17: $: not UTF-8 text: byte 0xe9 at offset 27: invalid continuation byte",)),
    Case("utf8_truncated_sequence", b"name: shop\n\n\ndescription: \xe2\x82\n", (
        "4:14: $: not UTF-8 text: byte 0xe2 at offset 26: invalid continuation byte",)),
    Case("utf16_document", "name: shop\n".encode("utf-16"), (
        "1:1: $: not UTF-8 text: byte 0xff at offset 0: invalid start byte",)),
    Case("latin1_document", "name: shop\ndescription: Ünïcödé\n".encode("latin-1"), (
        "2:14: $: not UTF-8 text: byte 0xdc at offset 24: invalid continuation byte",)),
    Case("nul_byte", "name: sh\x00op\n", ("1:9: $: character U+0000 (NUL) is not allowed",)),
    Case("nul_byte_in_json", '{"name": "sh\x00op"}', ("1:13: $: character U+0000 (NUL) is not allowed",)),
    Case("lone_surrogate_character", "name: shop\ndescription: a\ud800b\n", (
        "2:15: $: character U+D800 (a lone surrogate: not valid Unicode) is not allowed",)),
    Case("json_lone_surrogate_escape", _json(description="\\ud800").replace("\\\\ud800", "\\ud800"), (
        "1:344: $.description: invalid Unicode: U+D800 (a lone surrogate: not valid Unicode)",
    )),
    Case("json_low_surrogate_escape", '{"name": "\\udc00shop"}', (
        "1:10: $.name: invalid Unicode: U+DC00 (a lone surrogate: not valid Unicode)",)),
    Case("json_surrogate_pair_is_fine", _json(description="\\ud83d\\ude00").replace("\\\\", "\\"), ()),
    Case("yaml_lone_surrogate_escape", 'name: shop\ndescription: "\\ud800"\n', (
        "2:17: $: YAML syntax error: found invalid Unicode character escape code (while parsing a quoted scalar)",
    )),
    Case("bom_at_start_yaml", "\ufeff" + BASE, ()),
    Case("bom_at_start_json", "\ufeff" + _json(), ()),
    Case("bom_inside", BASE.replace("name: shop", "name: sh\ufeffop"), (
        "1:9: $: character U+FEFF (a byte order mark, allowed only at the start) is not allowed",)),
    Case("control_character_soh", BASE.replace("a.product", "a.pro\x01duct"), (
        "8:19: $: character U+0001 (a control character) is not allowed",)),
    Case("control_character_escape", _top("description: \x1b[31mred\n"), (
        "18:14: $: character U+001B (a control character) is not allowed",)),
    Case("control_character_delete", _top("description: a\x7fb\n"), (
        "18:15: $: character U+007F (a control character) is not allowed",)),
    Case("c1_control_csi", _top("description: a\x9bb\n"), (
        "18:15: $: character U+009B (a control character) is not allowed",)),
    Case("noncharacter_ffff", _top("description: a\uffffb\n"), (
        "18:15: $: character U+FFFF (a control character) is not allowed",)),
    Case("many_control_characters", _top("description: " + "\x02" * 30 + "\n"), tuple(
        [f"18:{14 + i}: $: character U+0002 (a control character) is not allowed" for i in range(10)]
        + ["18:24: $: 20 more characters that are not allowed"])),
    Case("tab_indentation", BASE.replace("  detail:", "\tdetail:"), (
        "12:1: $: YAML syntax error: found a tab character where YAML allows only spaces (indent with spaces)"
        " (while scanning for the next token)",)),
    Case("tabs_in_json_are_whitespace", json.dumps(BASE_JSON, indent="\t"), ()),
    Case("crlf_line_ends", BASE.replace("\n", "\r\n"), ()),
    # ---------------------------------------------------------------- YAML structure
    Case("alias_bomb_lists", BOMB, (
        "5:4: $.e: expands to more than 20000 values (aliases counted as what they repeat)",)),
    Case("alias_bomb_in_a_workflow", BASE + "description: &d [" + ",".join(["x"] * 50) + "]\n"
         + "".join(f"x{i}: &x{i} [" + ",".join([f"*{'d' if i == 0 else f'x{i - 1}'}"] * 20) + "]\n" for i in range(4)),
         (
        "20:5: $.x1: expands to more than 20000 values (aliases counted as what they repeat)",
    )),
    Case("alias_bomb_merge_keys", "a: &a {k0: 1, k1: 1, k2: 1, k3: 1, k4: 1, k5: 1, k6: 1, k7: 1}\n" + "".join(
        f"{c}: &{c} [" + ", ".join([f"*{p}"] * 10) + "]\n" for p, c in zip("abcde", "bcdef", strict=True))
        + "g: {<<: *f}\n", ("5:4: $.e: expands to more than 20000 values (aliases counted as what they repeat)",)),
    Case("recursive_alias_list", "a: &a [1, *a]\n", (
        "1:11: $.a[1]: recursive alias *a: it is inside its own anchor",)),
    Case("recursive_alias_mapping", "a: &a {b: {c: *a}}\n", (
        "1:15: $.a.b.c: recursive alias *a: it is inside its own anchor",)),
    Case("undefined_alias", BASE.replace("css: a.product", "css: *nowhere"), (
        "8:14: $: YAML syntax error: found undefined alias 'nowhere'",)),
    Case("duplicate_anchor", "a: &x 1\nb: &x 2\n", (
        "2:4: $: YAML syntax error: found duplicate anchor 'x'; first occurrence (line 1), second occurrence",
    )),
    Case("deep_flow_lists", "a: " + "[" * 10000 + "]" * 10000 + "\n", (
        "1:1003: $: YAML syntax error: exceeded maximum nesting depth (while increasing flow level)",)),
    Case("deep_flow_lists_under_the_limit_of_libyaml", "a: " + "[" * 60 + "]" * 60 + "\n", (
        "1:51: $.a" + "[0]" * 47 + ": nested deeper than 48 levels",)),
    Case("deep_block_mappings", "".join("  " * i + f"k{i}:\n" for i in range(100)) + "  " * 100 + "v\n", (
        "48:95: $.k0.k1.k2.k3.k4.k5.k6.k7.k8.k9.k10.k11.k12.k13.k14.k15.k16.k17.k18.k19.k20.k21.k22.k23.k24.k25.k26.k27.k28.k29.k30.k31.k32.k33.k34.k35.k36.k37.k38.k39.k40.k41.k42.k43.k44.k45.k46: nested deeper than 48 levels",
    )),
    Case("deep_compact_lists", "- " * 5000 + "x\n", ("1:97: $" + "[0]" * 48 + ": nested deeper than 48 levels",)),
    Case("deep_alias_chain", "a0: &a0 {x: 1}\n" + "".join(f"a{i}: &a{i} {{<<: *a{i - 1}}}\n" for i in range(1, 100)),
         ("47:6: $.a46: nested deeper than 48 levels (aliases expanded)",)),
    Case("deep_nested_fields", NESTED_FIELDS, (
        "72:95: $.phases.p.nodes[0].fields.f.fields.f.fields.f.fields.f.fields.f.fields.f.fields.f.fields.f.fields.f.fields.f.fields.f.fields.f.fields.f.fields.f.fields.f.fields.f.fields.f.fields.f.fields.f.fields.f.fields.f.fields: nested deeper than 48 levels",
    )),
    Case("deep_json", '{"a": ' + "[" * 10000 + "]" * 10000 + "}", (
        "1:54: $: nested deeper than 48 levels",
    )),
    Case("deep_json_objects", '{"a": ' + '{"b": ' * 100 + "1" + "}" * 100 + "}", (
        "1:289: $: nested deeper than 48 levels",
    )),
    Case("too_many_values", "a: [" + ",".join(["1"] * 25000) + "]\n", (
        "1:4: $.a: expands to more than 20000 values (aliases counted as what they repeat)",)),
    Case("too_many_keys", "a:\n" + "".join(f"  k{i}: 1\n" for i in range(12000)), (
        "2:3: $.a: expands to more than 20000 values (aliases counted as what they repeat)",)),
    Case("too_many_json_values", '{"a": [' + ",".join(["1"] * 25000) + "]}", (
        "1:7: $.a: expands to more than 20000 values (aliases counted as what they repeat)",)),
    Case("python_object_apply", _top("description: !!python/object/apply:os.system ['touch /tmp/pwned']\n"), (
        "18:14: $.description: YAML tag '!!python/object/apply:os.system' is not allowed: documents are plain data"
        " (strings, numbers, booleans, null, lists and mappings)",)),
    Case("python_name", _top("description: !!python/name:os.system\n"), (
        "18:14: $.description: YAML tag '!!python/name:os.system' is not allowed: documents are plain data"
        " (strings, numbers, booleans, null, lists and mappings)",)),
    Case("python_object_new_mapping", _top("description: !!python/object/new:subprocess.Popen {args: [id]}\n"), (
        "18:14: $.description: YAML tag '!!python/object/new:subprocess.Popen' is not allowed: documents are plain"
        " data (strings, numbers, booleans, null, lists and mappings)",)),
    Case("binary_tag", _top("description: !!binary aGVsbG8=\n"), (
        "18:14: $.description: YAML tag '!!binary' is not allowed: documents are plain data"
        " (strings, numbers, booleans, null, lists and mappings)",)),
    Case("set_tag", _top("allowed_domains: !!set {a.example: null}\n"), (
        "18:18: $.allowed_domains: YAML tag '!!set' is not allowed: documents are plain data"
        " (strings, numbers, booleans, null, lists and mappings)",)),
    Case("custom_tag", BASE.replace("css: a.product", "css: !include other.yaml"), (
        "8:14: $.phases.listing.nodes[0].css: YAML tag '!include' is not allowed: documents are plain data"
        " (strings, numbers, booleans, null, lists and mappings)",)),
    Case("omap_tag", _top("rate_limit: !!omap [{delay: 1}]\n"), (
        "18:13: $.rate_limit: YAML tag '!!omap' is not allowed: documents are plain data"
        " (strings, numbers, booleans, null, lists and mappings)",)),
    Case("dates_stay_strings", _top("description: 2024-01-01\n"), ()),
    Case("duplicate_top_key", _top("name: other\n"), ("18:1: $.name: duplicate key 'name'",)),
    Case("duplicate_nested_key", BASE.replace("        css: a.product\n", "        css: a.product\n        css: a\n"), (
        "9:9: $.phases.listing.nodes[0].css: duplicate key 'css'",)),
    Case("duplicate_json_key", '{"name": "a", "name": "b"}', ("1:15: $.name: duplicate key 'name'",)),
    Case("merge_key_override", BASE.replace("      - type: extract_links\n        css: a.product\n        marker: product\n",
                                            "      - &links {type: extract_links, css: a.product, marker: product}\n"
                                            "      - {<<: *links, css: a.x}\n"), ()),
    Case("merge_key_not_a_mapping", _top("rate_limit: {<<: 1, delay: 1}\n"), (
        "18:18: $.rate_limit: '<<' merges a mapping or a list of mappings",)),
    Case("integer_key", BASE.replace("  detail:", "  7:"), ("12:3: $.phases: mapping key 7 must be a string",)),
    Case("list_key", _top("? [a, b]\n: 1\n"), ("18:3: $: mapping keys must be strings, not a list or mapping",)),
    Case("two_documents", BASE + "---\nname: other\n", (
        "18:1: $: YAML syntax error: expected a single document in the stream (line 1), but found another document",
    )),
    Case("empty_document", "", ("1:1: $: the document is empty",)),
    Case("only_comments", "# nothing\n# here\n", ("1:1: $: the document is empty",)),
    Case("scalar_document", "just a string\n", ("1:1: $: must be a mapping, not a string",)),
    Case("list_document", "- name: shop\n", ("1:1: $: must be a mapping, not a list",)),
    Case("yaml_flow_document", "{name: shop, base_url: 'http://shop.example', start_urls: [/], phases: {listing: "
         "{nodes: [{type: extract, item: p, fields: {n: h1}}]}}}\n", ()),
    Case("json_syntax_error", '{"name": "shop",\n "phases": {,}}', (
        "2:13: $: JSON syntax error: Expecting property name enclosed in double quotes",)),
    Case("json_trailing_comma", '{"name": "shop",}', (
        "1:1: $: missing required key 'phases'",
        "1:1: $: missing required key 'start_urls'",
    )),
    Case("json_by_name_not_json", BASE, ("1:1: $: JSON syntax error: Expecting value",), "wf.json"),
    Case("string_too_long", _top("description: " + "x" * 70000 + "\n"), (
        "18:14: $.description: string of 70000 characters; the limit is 65536",)),
    Case("key_too_long", _top("k" * 300 + ": 1\n"), ("18:1: $: key of 300 characters; the limit is 256",)),
    Case("document_too_large", "description: " + "x" * 1_000_000 + "\n", (
        "1:1: $: document of 1000014 bytes; the limit is 1000000",)),
    # ---------------------------------------------------------------- numbers
    Case("delay_infinite", _top("rate_limit: {delay: .inf}\n"), ("18:21: $.rate_limit.delay: number must be finite, not inf",)),
    Case("delay_not_a_number", _top("rate_limit: {delay: .nan}\n"), (
        "18:21: $.rate_limit.delay: number must be finite, not nan",)),
    Case("delay_negative_infinite", _top("rate_limit: {delay: -.inf}\n"), (
        "18:21: $.rate_limit.delay: number must be finite, not -inf",)),
    Case("delay_1e300_json", _json(rate_limit={"delay": 1e300}), (
        "1:353: $.rate_limit.delay: number out of range: at most 9007199254740992 in magnitude",
    )),
    Case("delay_1e300_yaml", _top("rate_limit: {delay: 1.0e+300}\n"), (
        "18:21: $.rate_limit.delay: number out of range: at most 9007199254740992 in magnitude",)),
    Case("delay_above_maximum", _top("rate_limit: {delay: 86400}\n"), (
        "18:21: $.rate_limit.delay: must be at most 3600; got 86400",)),
    Case("delay_negative", _top("rate_limit: {delay: -1}\n"), ("18:21: $.rate_limit.delay: must be at least 0; got -1",)),
    Case("json_nan", _json().replace('"start_urls"', '"rate_limit": {"delay": NaN}, "start_urls"'), (
        "1:77: $.rate_limit.delay: number must be finite, not nan",
    )),
    Case("json_infinity", _json().replace('"start_urls"', '"max_depth": Infinity, "start_urls"'), (
        "1:66: $.max_depth: number must be finite, not inf",
    )),
    Case("json_negative_infinity", _json().replace('"start_urls"', '"max_depth": -Infinity, "start_urls"'), (
        "1:66: $.max_depth: number must be finite, not -inf",
    )),
    Case("integer_out_of_range", _top("max_depth: 100000000000000000\n"), (
        "18:12: $.max_depth: integer out of range: at most 9007199254740992 in magnitude",)),
    Case("integer_5000_digits", _top("max_depth: " + "9" * 5000 + "\n"), (
        "18:12: $.max_depth: integer literal longer than 20 digits",)),
    Case("json_integer_5000_digits", _json().replace('"start_urls"', '"max_depth": ' + "9" * 5000 + ', "start_urls"'), (
        "1:66: $.max_depth: integer literal longer than 20 digits",
    )),
    Case("hex_integer_too_long", _top("max_depth: 0x" + "F" * 30 + "\n"), (
        "18:12: $.max_depth: integer literal longer than 20 digits",)),
    Case("max_depth_above_maximum", _top("max_depth: 1000000\n"), ("18:12: $.max_depth: must be at most 1000; got 1000000",)),
    Case("concurrency_above_maximum", _top("rate_limit: {concurrency: 100000}\n"), (
        "18:27: $.rate_limit.concurrency: must be at most 128; got 100000",)),
    Case("links_limit_above_maximum", _links("        limit: 10000000\n"), (
        "10:16: $.phases.listing.nodes[0].limit: must be at most 100000; got 10000000",)),
    Case("render_timeout_above_maximum", BASE.replace("  detail:\n", "  detail:\n    render: {timeout: 1e9}\n")
         .replace("1e9", "1.0e+9"), ("13:23: $.phases.detail.render.timeout: must be at most 300; got 1000000000.0",)),
    Case("render_scroll_above_maximum", BASE.replace("  detail:\n", "  detail:\n    render: {scroll: 100000}\n"), (
        "13:22: $.phases.detail.render.scroll: must be at most 200; got 100000",)),
    Case("render_click_times_above_maximum", BASE.replace(
        "  detail:\n", "  detail:\n    render: {click: {selector: a.more, times: 99999}}\n"), (
        "13:47: $.phases.detail.render.click.times: must be at most 200; got 99999",
    )),
    Case("render_idle_above_maximum", BASE.replace("  detail:\n", "  detail:\n    render: {idle: 86400}\n"), (
        "13:20: $.phases.detail.render.idle: must be at most 60; got 86400",)),
    Case("paginate_max_pages_above_maximum", BASE.replace(
        "      - type: extract\n", "      - {type: paginate, url: '/?p={page}', marker: product, max_pages: 1000000000}\n"
        "      - type: extract\n"), (
        "14:53: $.phases.detail.nodes[0].marker: no transition of phase 'detail' routes marker 'product'; its links would all be dropped",
        "14:73: $.phases.detail.nodes[0].max_pages: must be at most 100000; got 1000000000",
    )),
    Case("transition_priority_above_maximum", _transition("{marker: product, to: detail, priority: 99999999}"), (
        "11:49: $.phases.listing.transitions[0].priority: must be at most 1000; got 99999999",
    )),
    Case("field_group_above_maximum", _field("{css: h1, re: '(a)', group: 5000}"), (
        "17:45: $.phases.detail.nodes[0].fields.name.group: must be at most 99; got 5000",
    )),
    # ---------------------------------------------------------------- regular expressions
    Case("transition_url_redos_runs_linear", _transition("{marker: product, to: detail, url: '(a+)+$'}"), ()),
    Case("field_re_redos_runs_linear", _field("{css: h1, re: '^(([a-z])+.)+[A-Z]([a-z])+$'}"), ()),
    Case("allow_redos_runs_linear", _links("        allow: ['(x+x+)+y', '(.*a){20}']\n"), ()),
    Case("field_re_backreference", _field("{css: h1, re: '(a)\\1'}"), (
        "17:31: $.phases.detail.nodes[0].fields.name.re: invalid regular expression '(a)\\\\1': backreferences (\\1) and this escape are not supported: document regexes run on RE2 (linear time, no backtracking)",
    )),
    Case("allow_lookahead", _links("        allow: ['^(?=.*admin)']\n"), (
        f"10:17: $.phases.listing.nodes[0].allow[0]: {E} '^(?=.*admin)': lookahead (?=...) is not supported: {RE2}",)),
    Case("deny_negative_lookahead", _links("        deny: 'a(?!b)'\n"), (
        f"10:15: $.phases.listing.nodes[0].deny: {E} 'a(?!b)': negative lookahead (?!...) is not supported: {RE2}",)),
    Case("transition_lookbehind", _transition("{marker: product, to: detail, url: '(?<=/)p'}"), (
        "11:44: $.phases.listing.transitions[0].url: invalid regular expression '(?<=/)p': lookbehind (?<=...) is not supported: document regexes run on RE2 (linear time, no backtracking)",
    )),
    Case("named_backreference", _field("{css: h1, re: '(?P<x>a)(?P=x)'}"), (
        "17:31: $.phases.detail.nodes[0].fields.name.re: invalid regular expression '(?P<x>a)(?P=x)': named backreferences (?P=name) are not supported: document regexes run on RE2 (linear time, no backtracking)",
    )),
    Case("python_end_of_text", _field("{css: h1, re: 'a\\Z'}"), (
        "17:31: $.phases.detail.nodes[0].fields.name.re: invalid regular expression 'a\\\\Z': \\Z is written \\z in RE2 (end of text): document regexes run on RE2 (linear time, no backtracking)",
    )),
    Case("unbalanced_regex", _transition("{marker: product, to: detail, url: '(('}"), (
        "11:44: $.phases.listing.transitions[0].url: invalid regular expression '((': missing ): ((",
    )),
    Case("repetition_too_large", _field("{css: h1, re: 'a{1001}'}"), (
        "17:31: $.phases.detail.nodes[0].fields.name.re: invalid regular expression 'a{1001}': invalid repetition size: {1001}",
    )),
    Case("nested_repetition_too_large", _field("{css: h1, re: '((((a{100}){100}){100}){100})'}"), (
        "17:31: $.phases.detail.nodes[0].fields.name.re: invalid regular expression '((((a{100}){100}){100}){100})': invalid repetition size: {100}",
    )),
    Case("regex_program_too_large", _field("{css: h1, re: '(\\pL|\\pN){1000}'}"), (
        "17:31: $.phases.detail.nodes[0].fields.name.re: invalid regular expression '(\\\\pL|\\\\pN){1000}': pattern too large for RE2's 2 MiB budget",
    )),
    Case("regex_too_long", _field("{css: h1, re: '" + "a" * 1200 + "'}"), (
        "17:31: $.phases.detail.nodes[0].fields.name.re: must be at most 1000 characters long",
    )),
    Case("xpath_re_test_invalid", _field("{xpath: \"//h1[re:test(., '(')]\"}"), (
        "17:25: $.phases.detail.nodes[0].fields.name.xpath: invalid XPath \"//h1[re:test(., '(')]\": invalid regular expression '(': missing ): (",
    )),
    Case("xpath_re_test_backreference", _field("{xpath: \"//zz[re:test(., '(a)\\\\1')]\"}"), (
        "17:25: $.phases.detail.nodes[0].fields.name.xpath: invalid XPath \"//zz[re:test(., '(a)\\\\1')]\": invalid regular expression '(a)\\\\1': backreferences (\\1) and this escape are not supported: document regexes run on RE2 (linear time, no backtracking)",
    )),
    Case("xpath_re_match_lookahead", _field("{xpath: \"re:match(//h1, '(?=a)')\"}"), (
        "17:25: $.phases.detail.nodes[0].fields.name.xpath: invalid XPath \"re:match(//h1, '(?=a)')\": invalid regular expression '(?=a)': lookahead (?=...) is not supported: document regexes run on RE2 (linear time, no backtracking)",
    )),
    Case("xpath_re_replace_invalid", _field("{xpath: \"re:replace(//h1, '[', 'g', '')\"}"), (
        "17:25: $.phases.detail.nodes[0].fields.name.xpath: invalid XPath \"re:replace(//h1, '[', 'g', '')\": invalid regular expression '[': missing ]: [",
    )),
    Case("xpath_re_redos_runs_linear", _field("{xpath: \"//h1[re:test(., '(a+)+$')]\"}"), ()),
    Case("item_schema_pattern_backreference", _items("{properties: {name: {pattern: '(a)\\1'}}}"), (
        "20:43: $.items.product.schema.properties.name.pattern: invalid regular expression '(a)\\\\1': backreferences (\\1) and this escape are not supported: document regexes run on RE2 (linear time, no backtracking)",
    )),
    Case("item_schema_pattern_properties_lookahead", _items("{patternProperties: {'(?=x)': {}}}"), (
        "20:43: $.items.product.schema.patternProperties[\"(?=x)\"]: invalid regular expression '(?=x)': lookahead (?=...) is not supported: document regexes run on RE2 (linear time, no backtracking)",
    )),
    Case("item_schema_redos_pattern_runs_linear", _items("{properties: {name: {pattern: '^(a+)+$'}}}"), ()),
    # ---------------------------------------------------------------- URLs and references
    Case("start_url_broken_ipv6", BASE.replace("start_urls: [/]", "start_urls: ['https://[::1']"), (
        "3:14: $.start_urls[0]: invalid URL 'https://[::1': Invalid IPv6 URL",)),
    Case("start_url_port_not_a_number", BASE.replace("start_urls: [/]", "start_urls: ['http://a.example:http/']"), (
        "3:14: $.start_urls[0]: invalid URL 'http://a.example:http/': Port could not be cast to integer value as"
        " 'http'",)),
    Case("start_url_file_scheme", BASE.replace("start_urls: [/]", "start_urls: ['file:///etc/passwd']"), (
        "3:14: $.start_urls[0]: start URL 'file:///etc/passwd' must be http or https",)),
    Case("start_url_javascript", BASE.replace("start_urls: [/]", "start_urls: ['javascript:alert(1)']"), (
        "3:14: $.start_urls[0]: start URL 'javascript:alert(1)' must be http or https",)),
    Case("base_url_broken_ipv6", BASE.replace("http://shop.example", "'http://[::1'"), (
        "2:11: $.base_url: invalid URL 'http://[::1': Invalid IPv6 URL",)),
    Case("base_url_gopher", BASE.replace("http://shop.example", "gopher://shop.example"), (
        "2:11: $.base_url: 'gopher://shop.example' does not match the pattern '^https?://[^\\\\s/]+'",)),
    Case("webhook_broken_url", _top("webhooks: [{url: 'http://[::1'}]\n"), (
        "18:18: $.webhooks[0].url: invalid URL 'http://[::1': Invalid IPv6 URL",)),
    Case("webhook_file_url", _top("webhooks: [{url: 'file:///etc/passwd'}]\n"), (
        "18:18: $.webhooks[0].url: 'file:///etc/passwd' does not match the pattern '^https?://[^\\\\s/]+'",)),
    Case("webhook_secret_env_not_a_name", _top("webhooks: [{url: 'https://h.example/', secret_env: 'A B'}]\n"), (
        "18:52: $.webhooks[0].secret_env: 'A B' does not match the pattern '^[A-Za-z_][A-Za-z0-9_]*$'",
    )),
    Case("too_many_webhooks", _top("webhooks: [" + ", ".join(["{url: 'https://h.example/'}"] * 11) + "]\n"), (
        "18:11: $.webhooks: must have at most 10 item(s)",)),
    Case("too_many_start_urls", BASE.replace("start_urls: [/]", "start_urls: [" + ", ".join(["/"] * 1001) + "]"), (
        "3:13: $.start_urls: must have at most 1000 item(s)",)),
    Case("item_schema_remote_ref", _items("{$ref: 'http://169.254.169.254/latest/meta-data/'}"), (
        "20:20: $.items.product.schema[\"$ref\"]: only references inside this schema ('#/...') are allowed, not 'http://169.254.169.254/latest/meta-data/': item schemas are never fetched",
    )),
    Case("item_schema_file_ref", _items("{properties: {name: {$ref: 'file:///etc/passwd'}}}"), (
        "20:40: $.items.product.schema.properties.name[\"$ref\"]: only references inside this schema ('#/...') are allowed, not 'file:///etc/passwd': item schemas are never fetched",
    )),
    Case("item_schema_relative_ref", _items("{$ref: 'other.json#/x'}"), (
        "20:20: $.items.product.schema[\"$ref\"]: only references inside this schema ('#/...') are allowed, not 'other.json#/x': item schemas are never fetched",
    )),
    Case("item_schema_dynamic_ref", _items("{$dynamicRef: 'http://127.0.0.1:6379/'}"), (
        "20:27: $.items.product.schema[\"$dynamicRef\"]: only references inside this schema ('#/...') are allowed, not 'http://127.0.0.1:6379/': item schemas are never fetched",
    )),
    Case("item_schema_nested_id", _items("{properties: {name: {$id: 'http://127.0.0.1/', type: string}}}"), (
        "20:39: $.items.product.schema.properties.name[\"$id\"]: $id is not allowed inside an item schema (references stay in this schema)",
    )),
    Case("item_schema_reference_cycle", _items("{$defs: {a: {allOf: [{$ref: '#/$defs/a'}]}}, $ref: '#/$defs/a'}"), (
        "20:25: $.items.product.schema[\"$defs\"].a: reference cycle: validating would never end (a reference must lead into a property or item)",
    )),
    Case("item_schema_self_reference", _items("{$ref: '#'}"), (
        "20:20: $.items.product.schema[\"$ref\"]: reference cycle: validating would never end (a reference must lead into a property or item)",
    )),
    Case("item_schema_recursion_through_properties_is_fine", _items(
        "{type: object, properties: {name: {type: string}, kids: {type: array, items: {$ref: '#'}}}}"), ()),
    Case("item_schema_dangling_ref", _items("{properties: {name: {$ref: '#/$defs/missing'}}}"), (
        "20:40: $.items.product.schema.properties.name[\"$ref\"]: reference '#/$defs/missing' leads nowhere in this schema",
    )),
    Case("item_schema_unevaluated_with_pattern_properties", _items(
        "{patternProperties: {'^x': {}}, unevaluatedProperties: false}"), (
        "20:68: $.items.product.schema.unevaluatedProperties: unevaluatedProperties cannot be combined with patternProperties here (give additionalProperties)",
    )),
    # ---------------------------------------------------------------- header injection
    Case("user_agent_crlf", _top('user_agent: "bot\\r\\nX-Injected: 1"\n'), (
        "18:13: $.user_agent: 'bot\\r\\nX-Injected: 1' (it contains U+000D CARRIAGE RETURN) does not match the pattern '^[^\\\\r\\\\n]*$'",
    )),
    Case("user_agent_trailing_newline", _top('user_agent: "bot\\n"\n'), (
        "18:13: $.user_agent: 'bot\\n' (it contains U+000A LINE FEED) does not match the pattern '^[^\\\\r\\\\n]*$'",
    )),
    Case("user_agent_block_scalar_newline", _top("user_agent: |\n  bot\n  X-Injected: 1\n"), (
        "18:13: $.user_agent: 'bot\\nX-Injected: 1\\n' (it contains U+000A LINE FEED) does not match the pattern '^[^\\\\r\\\\n]*$'",
    )),
    Case("user_agent_too_long", _top("user_agent: " + "b" * 600 + "\n"), (
        "18:13: $.user_agent: must be at most 512 characters long",)),
    Case("form_field_crlf", BASE.replace("      - type: extract\n", "      - {type: form, phase: detail, fields: "
                                         "{q: \"a\\r\\nb\"}}\n      - type: extract\n"), (
        "14:49: $.phases.detail.nodes[0].fields.q: 'a\\r\\nb' (it contains U+000D CARRIAGE RETURN) does not match the pattern '^[^\\\\r\\\\n]*$'",
    )),
    # ---------------------------------------------------------------- names that only look right
    Case("cyrillic_name", BASE.replace("name: shop", "name: shоp"), (
        "1:7: $.name: 'shоp' (it contains U+043E CYRILLIC SMALL LETTER O) does not match the pattern"
        " '^[a-z][a-z0-9_-]*$'",)),
    Case("cyrillic_key", BASE.replace("name: shop", "nаme: shop"), (
        "1:1: $: missing required key 'name'",
        "1:1: $[\"n\\u0430me\"]: unknown key 'nаme' (it contains U+0430 CYRILLIC SMALL LETTER A); did you mean"
        " 'name'?")),
    Case("zero_width_phase_name", BASE.replace("  detail:", "  de\u200btail:"), (
        "11:31: $.phases.listing.transitions[0].to: unknown phase 'detail'; phases: listing, de​tail",
        "12:3: $.phases[\"de\\u200btail\"]: invalid name 'de\\u200btail' (it contains U+200B ZERO WIDTH SPACE): must match '^[a-z][a-z0-9_-]*$'",
    )),
    Case("fullwidth_marker", BASE.replace("marker: product\n", "marker: ｐroduct\n"), (
        "9:17: $.phases.listing.nodes[0].marker: 'ｐroduct' (it contains U+FF50 FULLWIDTH LATIN SMALL LETTER P)"
        " does not match the pattern '^[a-z][a-z0-9_-]*$'",)),
    Case("right_to_left_override_name", BASE.replace("name: shop", "name: \"shop\u202e\""), (
        "1:7: $.name: 'shop\\u202e' (it contains U+202E RIGHT-TO-LEFT OVERRIDE) does not match the pattern '^[a-z][a-z0-9_-]*$'",
    )),
    Case("name_with_trailing_newline", BASE.replace("name: shop", 'name: "shop\\n"'), (
        "1:7: $.name: 'shop\\n' (it contains U+000A LINE FEED) does not match the pattern '^[a-z][a-z0-9_-]*$'",
    )),
    Case("field_name_homoglyph", _field("h1").replace("          name: h1", "          nаme: h1"), (
        "17:11: $.phases.detail.nodes[0].fields[\"n\\u0430me\"]: invalid name 'nаme' (it contains U+0430 CYRILLIC"
        " SMALL LETTER A): must match '^[A-Za-z][A-Za-z0-9_]*$'",)),
    # ---------------------------------------------------------------- everything at once
    Case("schema_and_semantic_problems_together", _links("        limt: 3\n").replace(
        "to: detail}", "to: nowhere}").replace("name: h1::text", "name: {css: h1, re: '(?=x)'}"), (
        "10:9: $.phases.listing.nodes[0].limt: unknown key 'limt'; did you mean 'limit'?",
        "12:31: $.phases.listing.transitions[0].to: unknown phase 'nowhere'; phases: listing, detail",
        "13:3: $.phases.detail: phase 'detail' is unreachable: no start URL, transition or form leads to it",
        f"18:31: $.phases.detail.nodes[0].fields.name.re: {E} '(?=x)': lookahead (?=...) is not supported: {RE2}",
    )),
]
