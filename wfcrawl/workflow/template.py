"""Templates: ``{name}`` filled from named values (URLs, form field values).

The syntax is RFC 6570 (URI Template) levels 1 and 2: ``{name}`` inserts the
value with every character but the unreserved ones (letters, digits, ``-._~``)
percent-encoded, so a value fills one path segment or one query value;
``{+name}`` keeps reserved characters (``/?#&=:``...) and ``%XX`` escapes, for
a value that is itself a path or a URL. In form field values (text, not a
URL) both insert the value unchanged. A list value is joined with commas
(RFC 6570); a missing value (nothing extracted) makes the expansion fail.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

_EXPRESSION = re.compile(r"\{([^{}]*)\}")
_NAME = re.compile(r"^(\+?)([A-Za-z_][A-Za-z0-9_]*)$")
_RESERVED_SAFE = ":/?#[]@!$&'()*+,;=%"


class TemplateError(ValueError):
    """A template that does not parse (the message says where)."""


@dataclass(frozen=True)
class Template:
    """A parsed template: literal text and ``(name, reserved)`` expressions."""

    text: str
    parts: tuple[str | tuple[str, bool], ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(p[0] for p in self.parts if isinstance(p, tuple)))

    def expand(self, values: Mapping[str, Any], *, url: bool = True) -> str | None:
        """The filled template; None when a value is missing (None, '', [])."""
        out = []
        for part in self.parts:
            if isinstance(part, str):
                out.append(part)
                continue
            name, reserved = part
            text = value_text(values.get(name))
            if text is None:
                return None
            if url:
                text = quote(text, safe=_RESERVED_SAFE if reserved else "")
            out.append(text)
        return "".join(out)


def value_text(value: Any) -> str | None:
    """A value as template text: lists joined with commas, booleans lower-case."""
    if value is None or value == "" or value == [] or isinstance(value, dict):
        return None
    if isinstance(value, list):
        texts = [value_text(v) for v in value]
        return ",".join(t for t in texts if t is not None) or None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def parse_template(text: str) -> Template:
    parts: list[str | tuple[str, bool]] = []
    position = 0
    for match in _EXPRESSION.finditer(text):
        literal = text[position:match.start()]
        _check_literal(text, literal, position)
        if literal:
            parts.append(literal)
        name = _NAME.match(match.group(1).strip())
        if name is None:
            raise TemplateError(
                f"invalid expression {match.group()!r} at position {match.start()}: write {{name}} or {{+name}} "
                "(a name is letters, digits and '_')"
            )
        parts.append((name.group(2), bool(name.group(1))))
        position = match.end()
    _check_literal(text, text[position:], position)
    if text[position:]:
        parts.append(text[position:])
    return Template(text, tuple(parts))


def _check_literal(text: str, literal: str, offset: int) -> None:
    for i, char in enumerate(literal):
        if char in "{}":
            raise TemplateError(f"unmatched {char!r} at position {offset + i}")


def unknown_names(template: Template, known: Iterable[str]) -> list[str]:
    allowed = set(known)
    return [n for n in template.names if n not in allowed]
