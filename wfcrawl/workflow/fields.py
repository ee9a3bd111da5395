"""Compiled field extractors.

A field turns a context (an lxml element or a JSON value) into a value:
select -> attribute/text -> split -> normalise whitespace -> regex -> join -> coerce ->
first or all -> default. Composite fields build nested objects, lists of
objects and key-value dicts from the same pieces.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from functools import cached_property
from typing import Any
from urllib.parse import urljoin

from lxml import etree

from wfcrawl.workflow.regex import Regex
from wfcrawl.workflow.selectors import Selection, text_of

_NUMBER = re.compile(r"[-+]?\d[\d,]*(?:\.\d+)?|[-+]?\.\d+")
_TRUE = frozenset({"true", "yes", "y", "1", "on"})
_FALSE = frozenset({"false", "no", "n", "0", "off"})

#: Sentinel: a value that failed coercion (dropped and counted).
INVALID = object()


class Scope:
    """Per-response state the fields of one extraction share."""

    __slots__ = ("base_url", "invalid", "values")

    def __init__(self, values: Mapping[str, Any], base_url: str = "") -> None:
        self.values = values
        self.base_url = base_url
        self.invalid: list[str] = []


def _to_number(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        return float(value)
    match = _NUMBER.search(str(value))
    if match is None:
        return None
    return float(match.group().replace(",", ""))


def _coerce_int(value: Any, fmt: str | None, base_url: str) -> Any:
    number = _to_number(value)
    if number is None or not number.is_integer():
        return INVALID
    return int(number)


def _coerce_float(value: Any, fmt: str | None, base_url: str) -> Any:
    number = _to_number(value)
    return INVALID if number is None else number


def _coerce_bool(value: Any, fmt: str | None, base_url: str) -> Any:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    return INVALID


def _coerce_date(value: Any, fmt: str | None, base_url: str) -> Any:
    text = str(value).strip()
    try:
        if fmt:
            return datetime.strptime(text, fmt).date().isoformat()
        try:
            return date.fromisoformat(text).isoformat()
        except ValueError:
            return datetime.fromisoformat(text).date().isoformat()
    except ValueError:
        return INVALID


def _coerce_datetime(value: Any, fmt: str | None, base_url: str) -> Any:
    text = str(value).strip()
    try:
        parsed = datetime.strptime(text, fmt) if fmt else datetime.fromisoformat(text)
    except ValueError:
        return INVALID
    return parsed.isoformat()


def _coerce_string(value: Any, fmt: str | None, base_url: str) -> Any:
    # JSON values keep their own type; text is already normalised.
    return value


def _coerce_url(value: Any, fmt: str | None, base_url: str) -> Any:
    if not isinstance(value, str) or not value.strip():
        return INVALID
    return urljoin(base_url, value.strip())


COERCERS: dict[str, Callable[[Any, str | None, str], Any]] = {
    "url": _coerce_url,
    "string": _coerce_string,
    "int": _coerce_int,
    "float": _coerce_float,
    "bool": _coerce_bool,
    "date": _coerce_date,
    "datetime": _coerce_datetime,
}


@dataclass(frozen=True)
class Field:
    """One compiled field; ``name`` is its dotted path for messages and stats."""

    name: str
    selection: Selection | None = None
    const: Any = None
    has_const: bool = False
    var: str | None = None
    attr: str | None = None
    regex: Regex | None = None
    group: int | str = 0
    many: bool = False
    join: str | None = None
    normalize: bool = True
    #: Split each text value at this separator into several values (then normalise, regex).
    split: str | None = None
    coerce: Callable[[Any, str | None, str], Any] = _coerce_string
    format: str | None = None
    default: Any = None
    required: bool = False
    # Composite forms: nested object (fields), list of objects (rows + fields),
    # key-value dict (rows + key + value).
    fields: tuple[Field, ...] = ()
    rows: Selection | None = None
    key: Field | None = None
    value: Field | None = None

    @cached_property
    def short_name(self) -> str:
        # Cached: extract_object asks for it for every field of every item.
        return self.name.rsplit(".", 1)[-1]

    def extract(self, context: Any, scope: Scope) -> Any:
        if self.rows is not None:
            rows = self.rows.apply(context)
            if self.key is not None and self.value is not None:
                result: Any = {}
                for row in rows:
                    key = self.key.extract(row, scope)
                    if key is not None and key != "":
                        result[str(key)] = self.value.extract(row, scope)
            else:
                result = [extract_object(self.fields, row, scope) for row in rows]
            if result or self.default is None:
                return result  # an empty dict or list, never None: rows were asked for
            return self.default
        if self.fields:
            if self.selection is not None:
                found = self.selection.apply(context)
                if not found:
                    return self._empty()
                context = found[0]
            return extract_object(self.fields, context, scope)
        values = self._raw(context, scope)
        if self.join is not None and values:
            values = [self.join.join(str(v) for v in values)]
        if self.coerce is _coerce_string:
            coerced = values  # the identity, never INVALID: most fields of most items
        else:
            coerced = []
            for raw in values:
                value = self.coerce(raw, self.format, scope.base_url)
                if value is INVALID:
                    scope.invalid.append(self.name)
                else:
                    coerced.append(value)
        if self.many:
            return coerced if coerced else self._empty()
        return coerced[0] if coerced else self._empty()

    def _empty(self) -> Any:
        if self.default is not None:
            return self.default
        return [] if self.many and not self.fields else None

    def _raw(self, context: Any, scope: Scope) -> list[Any]:
        if self.has_const:
            found: list[Any] = [self.const]
        elif self.var is not None:
            value = scope.values.get(self.var)
            found = [] if value is None else (value if isinstance(value, list) else [value])
        elif self.selection is not None:
            found = self.selection.apply(context)
        else:
            found = [context]
        out: list[Any] = []
        attr, split = self.attr, self.split
        for item in found:
            if type(item) is str:
                pass  # text() and @attr results: nothing to take out of an element
            elif attr is not None and isinstance(item, etree._Element):
                item = item.get(attr)
                if item is None:
                    continue
            else:
                item = text_of(item)
            if isinstance(item, str):
                for piece in (item,) if split is None else item.split(split):
                    text = self._clean(piece)
                    if text is not None:
                        out.append(text)
            elif item is not None:
                out.append(item)
        return out

    def _clean(self, text: str) -> str | None:
        """Whitespace normalised, then the regex's match (None: nothing left)."""
        if self.normalize:
            # = re.sub(r"\s+", " ", text).strip(): the same whitespace, faster
            text = " ".join(text.split())
            if not text:
                return None
        if self.regex is not None:
            match = self.regex.search(text)
            if match is None:
                return None
            found: str | None = match.group(self.group)
            return found
        return text


def extract_object(fields: tuple[Field, ...], context: Any, scope: Scope) -> dict[str, Any]:
    return {f.short_name: f.extract(context, scope) for f in fields}


def missing_required(fields: tuple[Field, ...], obj: Mapping[str, Any]) -> list[str]:
    """Dotted names of required fields that came out empty (top level only)."""
    return [
        f.name
        for f in fields
        if f.required and obj.get(f.short_name) in (None, "", [], {})
    ]
