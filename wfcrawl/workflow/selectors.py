"""Selections compiled once: CSS (via parsel's translator), XPath, JMESPath.

A :class:`Selection` is applied to a *context*: an lxml element for HTML (the
document root or a row element) or a decoded JSON value. CSS is translated to
XPath at load time and every XPath is compiled with ``lxml.etree.XPath``, so
nothing is parsed per response.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jmespath
from lxml import etree
from parsel.csstranslator import HTMLTranslator

_translator = HTMLTranslator()

#: Namespaces parsel offers in XPath: EXSLT regular expressions and sets.
XPATH_NAMESPACES = {
    "re": "http://exslt.org/regular-expressions",
    "set": "http://exslt.org/sets",
}
_RE_NAMESPACE = {"re": XPATH_NAMESPACES["re"]}

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
    try:
        xpath = etree.XPath(
            expression, namespaces=XPATH_NAMESPACES if uses_sets else _RE_NAMESPACE, smart_strings=False
        )
    except etree.XPathSyntaxError as exc:
        raise SelectionError(f"invalid XPath {expression!r}: {exc}") from None
    evaluate: Callable[[Any], Any] = xpath
    if uses_sets:

        def evaluate(context: Any) -> Any:
            return context.xpath(expression, namespaces=XPATH_NAMESPACES, smart_strings=False)

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
