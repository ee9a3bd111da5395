"""Regular expressions from documents run on RE2: linear time, whatever the pattern.

Python's ``re`` backtracks: ``(a+)+$`` against a long run of ``a`` followed by
``b`` takes longer than the universe has left, and a crawl whose transition
regex meets such a link never progresses (nor answers SIGTERM: the regex holds
the GIL). Every regex a document gives (a field's ``re``, a link node's
``allow``/``deny``, a transition's ``url``, JSON Schema ``pattern`` and
``patternProperties`` in ``items:`` schemas, and the EXSLT ``re:test()``,
``re:match()`` and ``re:replace()`` functions in XPath) is compiled here, with
Google's RE2, whose matching time is linear in the text.

RE2 has no backreferences and no lookaround (both need backtracking); a pattern
with one is refused at load with a located message saying so. ``$`` means the
end of the text (Python's also matches before a final newline); ``\\Z`` is
written ``\\z``. See docs/workflow-reference.md, "Regular expressions".
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import re2

#: RE2's memory budget per compiled pattern (program and DFA cache); a pattern
#: that needs more is refused as "pattern too large".
MAX_MEMORY = 2 << 20

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False  # RE2 would print every refused pattern on stderr
_OPTIONS.max_mem = MAX_MEMORY

#: What RE2 says about a construct it does not have -> what to tell people.
_UNSUPPORTED = (
    ("invalid escape sequence: \\Z", "\\Z is written \\z in RE2 (end of text)"),
    ("invalid escape sequence: \\", "backreferences (\\1) and this escape are not supported"),
    ("invalid perl operator: (?=", "lookahead (?=...) is not supported"),
    ("invalid perl operator: (?!", "negative lookahead (?!...) is not supported"),
    ("invalid perl operator: (?<", "lookbehind (?<=...) is not supported"),
    ("invalid named capture group: (?P=", "named backreferences (?P=name) are not supported"),
    ("invalid perl operator: (?P", "named backreferences (?P=name) are not supported"),
)
_WHY = "document regexes run on RE2 (linear time, no backtracking)"


class RegexError(ValueError):
    """A document regex RE2 cannot compile; the message says why, for people."""


class Match(Protocol):
    def group(self, group: int | str = 0) -> str | None: ...


class Regex(Protocol):
    """The part of a compiled pattern wfcrawl uses (re2 and re patterns both have it)."""

    @property
    def pattern(self) -> str: ...

    @property
    def groups(self) -> int: ...

    @property
    def groupindex(self) -> Mapping[str, int]: ...

    def search(self, text: str) -> Match | None: ...


def compile_regex(pattern: str, *, ignore_case: bool = False) -> Regex:
    """``pattern`` compiled by RE2; :class:`RegexError` with a readable reason."""
    options = _OPTIONS
    if ignore_case:
        options = re2.Options()
        for name in re2.Options.NAMES:
            setattr(options, name, getattr(_OPTIONS, name))
        options.case_sensitive = False
    try:
        return re2.compile(pattern, options)  # type: ignore[no-any-return]
    except re2.error as exc:
        raise RegexError(_reason(exc)) from None
    except (TypeError, ValueError) as exc:  # e.g. not encodable
        raise RegexError(str(exc)) from None


def _reason(exc: Exception) -> str:
    raw = exc.args[0] if exc.args else ""
    reason = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    for found, told in _UNSUPPORTED:
        if reason.startswith(found):
            return f"{told}: {_WHY}"
    if reason.startswith("pattern too large"):
        return f"pattern too large for RE2's {MAX_MEMORY >> 20} MiB budget"
    return reason


def describe(pattern: str, exc: RegexError) -> str:
    """The located problem's message for a pattern that does not compile."""
    return f"invalid regular expression {pattern!r}: {exc}"


# ---------------------------------------------------------------- EXSLT re: in XPath

#: The EXSLT regular expressions namespace (``re:`` in wfcrawl's XPath).
EXSLT_RE = "http://exslt.org/regular-expressions"


def _string(value: Any) -> str:
    """XPath's string() of an extension function argument."""
    if isinstance(value, list):
        if not value:
            return ""
        value = value[0]
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, str):
        return str(value)
    return "".join(value.itertext()) if hasattr(value, "itertext") else str(value)


def _pattern(rexp: Any, flags: Any) -> Regex:
    # A pattern computed from the page that does not compile fails the node on
    # that page (RegexError, counted like any node error), as EXSLT says.
    return compile_regex(_string(rexp), ignore_case="i" in _string(flags))


def _test(_: Any, s: Any, rexp: Any, flags: Any = "") -> bool:
    return _pattern(rexp, flags).search(_string(s)) is not None


def _match(_: Any, s: Any, rexp: Any, flags: Any = "") -> list[Any]:
    from lxml import etree

    pattern: Any = _pattern(rexp, flags)
    text = _string(s)
    if "g" in _string(flags):
        found = [m if isinstance(m, str) else m[0] for m in pattern.findall(text)]
    else:
        match = pattern.search(text)
        if match is None:
            return []
        found = [match.group(), *match.groups("")]
    root = etree.Element("matches")
    out = []
    for text_match in found:
        element = etree.SubElement(root, "match")
        element.text = text_match
        out.append(element)
    return out


def _replace(_: Any, s: Any, rexp: Any, flags: Any, replacement: Any) -> str:
    pattern: Any = _pattern(rexp, flags)
    text = _string(s)
    return str(pattern.sub(_string(replacement), text, 0 if "g" in _string(flags) else 1))


#: lxml ``extensions=`` for XPath evaluated with ``regexp=False`` (lxml's own
#: EXSLT regex functions use Python's ``re``).
XPATH_EXTENSIONS = {(EXSLT_RE, "test"): _test, (EXSLT_RE, "match"): _match, (EXSLT_RE, "replace"): _replace}
