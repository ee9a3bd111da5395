"""The bounds every workflow document is loaded within.

Documents reach wfcrawl from people who should not be able to hurt it (the
launch API, Pub/Sub messages, scrapyd). Loading one is therefore bounded
whatever the input: each bound below is checked while the document is read,
before memory grows, and a document past one is a located problem
(``file:line:col: $.path: message``), never a traceback. docs/workflow-reference.md
lists them (generated from this module).
"""

from __future__ import annotations

import math
import unicodedata
from typing import Any

#: Bytes of UTF-8 text; larger documents are refused before parsing.
MAX_DOCUMENT_BYTES = 1_000_000
#: Nesting of mappings and lists, aliases expanded (a mapping inside a list inside
#: the top mapping is depth 3). Keeps every recursive step (composing, building,
#: schema validation, compiling) far from Python's recursion limit.
MAX_DEPTH = 48
#: Values (mappings, lists and scalars) in the document, each alias counted as
#: the nodes it expands to: an alias bomb is refused while it is composed.
MAX_NODES = 20_000
#: Characters of one string value.
MAX_STRING_LENGTH = 65_536
#: Characters of one mapping key.
MAX_KEY_LENGTH = 256
#: Largest integer magnitude (2**53: every integer a JSON reader keeps exactly).
MAX_INTEGER = 2**53
#: Digits of an integer literal (bigger literals are refused before conversion).
MAX_INTEGER_DIGITS = 20

#: Every bound, for the generated reference (name -> (value, meaning)).
LIMITS: dict[str, tuple[int, str]] = {
    "document size": (MAX_DOCUMENT_BYTES, "bytes of UTF-8 text"),
    "nesting depth": (MAX_DEPTH, "levels of mappings and lists, aliases expanded"),
    "values": (MAX_NODES, "mappings, lists and scalars, each alias counted as what it expands to"),
    "string length": (MAX_STRING_LENGTH, "characters of one string"),
    "key length": (MAX_KEY_LENGTH, "characters of one mapping key"),
    "integer": (MAX_INTEGER, "largest integer magnitude (floats must be finite, at most the same)"),
}

#: Characters a document may not contain anywhere (C0/C1 controls but tab and line
#: breaks, lone surrogates, non-characters, a byte order mark after the start).
_FORBIDDEN = frozenset(
    [*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20), *range(0x7F, 0x85), *range(0x86, 0xA0),
     *range(0xD800, 0xE000), 0xFEFF, 0xFFFE, 0xFFFF]
)
_FORBIDDEN_CHARS = "".join(map(chr, sorted(_FORBIDDEN)))
_FORBIDDEN_TABLE = str.maketrans("", "", _FORBIDDEN_CHARS)


_CONTROL_NAMES = {"\t": "TAB", "\n": "LINE FEED", "\r": "CARRIAGE RETURN"}


def describe_char(char: str) -> str:
    """``U+0430 CYRILLIC SMALL LETTER A`` (for messages about unexpected characters)."""
    code = ord(char)
    if 0xD800 <= code < 0xE000:
        return f"U+{code:04X} (a lone surrogate: not valid Unicode)"
    if code == 0:
        return "U+0000 (NUL)"
    if code == 0xFEFF:
        return "U+FEFF (a byte order mark, allowed only at the start)"
    if char in _CONTROL_NAMES:
        return f"U+{code:04X} {_CONTROL_NAMES[char]}"
    return f"U+{code:04X} " + (unicodedata.name(char, "") or "(a control character)")


def forbidden_chars(text: str) -> list[int]:
    """Offsets of the characters no document may contain (none: an empty list)."""
    if len(text.translate(_FORBIDDEN_TABLE)) == len(text):  # the common case, at C speed
        return []
    return [i for i, ch in enumerate(text) if ord(ch) in _FORBIDDEN]


def non_ascii(name: str) -> str | None:
    """The first character of a name that is not printable ASCII, described (confusables)."""
    for char in name:
        if not (char.isascii() and char.isprintable()):
            return describe_char(char)
    return None


def value_problem(value: Any, *, key: bool = False) -> str | None:
    """Why a loaded scalar (or key) is out of bounds, or None."""
    if isinstance(value, str):
        limit = MAX_KEY_LENGTH if key else MAX_STRING_LENGTH
        if len(value) > limit:
            return f"{'key' if key else 'string'} of {len(value)} characters; the limit is {limit}"
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            return f"invalid Unicode: {describe_char(value[exc.start])}"
        return None
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        if abs(value) > MAX_INTEGER:
            return f"integer out of range: at most {MAX_INTEGER} in magnitude"
        return None
    if isinstance(value, float):
        if not math.isfinite(value):
            return f"number must be finite, not {value}"
        if abs(value) > MAX_INTEGER:
            return f"number out of range: at most {MAX_INTEGER} in magnitude"
    return None
