"""Selections compiled once: CSS (via parsel's translator), XPath, JMESPath.

A :class:`Selection` is applied to a *context*: an lxml element for HTML (the
document root or a row element) or a decoded JSON value. CSS is translated to
XPath at load time and every XPath is compiled with ``lxml.etree.XPath``, so
nothing is parsed per response. The EXSLT ``re:`` functions are wfcrawl's,
on RE2 (:mod:`wfcrawl.workflow.regex`), never lxml's (Python's backtracking
``re``); a literal pattern given to one is checked at load.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jmespath
from lxml import etree
from parsel.csstranslator import HTMLTranslator

from wfcrawl.workflow.regex import EXSLT_RE, XPATH_EXTENSIONS, RegexError, compile_regex, describe

_translator = HTMLTranslator()

#: Namespaces parsel offers in XPath: EXSLT regular expressions and sets.
XPATH_NAMESPACES = {
    "re": EXSLT_RE,
    "set": "http://exslt.org/sets",
}
_RE_NAMESPACE = {"re": XPATH_NAMESPACES["re"]}
#: Tokens of an XPath expression, enough to find the arguments of re: calls.
_XPATH_TOKENS = re.compile(r"""'[^']*'|"[^"]*"|re:(?:test|match|replace)\s*\(|\S""")

#: A small page every XPath is evaluated on once, at load (see _compile_xpath).
_PROBE = etree.HTML("<html><head><title>t</title></head><body><div><p>x</p></div></body></html>")


class SelectionError(ValueError):
    """A selector, regex or JMESPath expression that does not compile."""


@dataclass(frozen=True)
class Selection:
    """A compiled selector; ``kind`` is ``css``, ``xpath`` or ``jmespath``."""

    kind: str
    expression: str
    apply: Callable[[Any], list[Any]]

    @property
    def is_json(self) -> bool:
        return self.kind == "jmespath"


def _compile_xpath(expression: str) -> Callable[[Any], list[Any]]:
    # With the EXSLT sets namespace registered, every evaluation of a compiled
    # XPath adds a spurious ERR_NO_MEMORY entry to its error_log (lxml 6,
    # libxml2 2.14), kept as long as the XPath lives: ~5 KiB more memory per
    # page of a crawl. So it is registered only for expressions that use it (a
    # QName has no spaces: without "set:" the prefix cannot occur), and those
    # are evaluated through a fresh evaluator each time, as parsel does.
    uses_sets = "set:" in expression
    for pattern in _regex_literals(expression):
        try:
            compile_regex(pattern)
        except RegexError as exc:
            raise SelectionError(f"invalid XPath {expression!r}: {describe(pattern, exc)}") from None
    try:
        xpath = etree.XPath(
            expression, namespaces=XPATH_NAMESPACES if uses_sets else _RE_NAMESPACE,
            extensions=XPATH_EXTENSIONS, regexp=False, smart_strings=False,
        )
    except etree.XPathSyntaxError as exc:
        raise SelectionError(f"invalid XPath {expression!r}: {exc}") from None
    evaluate: Callable[[Any], Any] = xpath
    if uses_sets:

        def evaluate(context: Any) -> Any:
            return etree.XPathElementEvaluator(
                context, namespaces=XPATH_NAMESPACES, extensions=XPATH_EXTENSIONS, regexp=False, smart_strings=False,
            )(expression)

    # Errors XPath 1.0 only reports when evaluating, whatever the page: a wrong
    # number of arguments, an unknown function or variable, a wrong argument type
    # (count(1)). Found now, at load, with the document's line, not per page.
    try:
        evaluate(_PROBE)
    except etree.XPathEvalError as exc:
        raise SelectionError(f"invalid XPath {expression!r}: {exc}") from None

    def apply(context: Any) -> list[Any]:
        if not isinstance(context, etree._Element):
            return []
        result = evaluate(context)
        if isinstance(result, list):
            return result
        # Scalar XPath results (count(), string(), boolean()).
        return [result]

    return apply


def _regex_literals(expression: str) -> list[str]:
    """The string literals given as the pattern (2nd argument) of re: calls."""
    found: list[str] = []
    calls: list[list[Any]] = []  # per open re: call: [paren depth, argument index, tokens of arg 2]
    depth = 0
    for token in _XPATH_TOKENS.findall(expression):
        if token.startswith("re:"):
            depth += 1
            calls.append([depth, 0, []])
        elif token == "(":
            depth += 1
        elif token == ")":
            if calls and calls[-1][0] == depth:
                _, _, pattern = calls.pop()
                if len(pattern) == 1 and pattern[0][:1] in ("'", '"'):
                    found.append(pattern[0][1:-1])
            depth -= 1
        elif token == "," and calls and calls[-1][0] == depth:
            calls[-1][1] += 1
        elif calls and calls[-1][1] == 1:
            calls[-1][2].append(token)
    return found


def _compile_jmespath(expression: str) -> Callable[[Any], list[Any]]:
    try:
        parsed = jmespath.compile(expression)
    except jmespath.exceptions.JMESPathError as exc:
        raise SelectionError(jmespath_message(expression, exc)) from None

    def apply(context: Any) -> list[Any]:
        if isinstance(context, etree._Element):
            return []
        result = parsed.search(context)
        if result is None:
            return []
        return result if isinstance(result, list) else [result]

    return apply


def jmespath_message(expression: str, exc: Exception) -> str:
    """One-line message for a JMESPath parse error (jmespath's own has a caret line)."""
    position = getattr(exc, "lex_position", None)
    where = f" at position {position}" if isinstance(position, int) else ""
    first_line = str(exc).splitlines()[0].rstrip(": ") if str(exc) else type(exc).__name__
    return f"invalid JMESPath {expression!r}: {first_line}{where}"


def compile_selection(kind: str, expression: str) -> Selection:
    if kind == "css":
        try:
            xpath = _translator.css_to_xpath(expression)
        except Exception as exc:  # cssselect raises several types (SelectorSyntaxError, ExpressionError)
            raise SelectionError(f"invalid CSS selector {expression!r}: {exc}") from None
        return Selection("css", expression, _compile_xpath(xpath))
    if kind == "xpath":
        return Selection("xpath", expression, _compile_xpath(expression))
    if kind == "jmespath":
        return Selection("jmespath", expression, _compile_jmespath(expression))
    raise SelectionError(f"unknown selection kind {kind!r}")


def text_of(value: Any) -> Any:
    """An element's text content; strings and JSON values pass through."""
    if isinstance(value, etree._Element):
        return "".join(value.itertext())
    return value
