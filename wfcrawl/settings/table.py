"""The declarative settings table: one :class:`Setting` per wfcrawl setting.

Everything about a setting is written once, here (its entries live in the
section modules of this package, one per component): its default, its type,
its bounds, where it is documented and what it means. From the table come

- the defaults the add-on applies (:data:`DEFAULTS`),
- the typed, checked values components read (:func:`read`, and the frozen
  config dataclasses built with :func:`setting` fields and :class:`Config`),
- the settings tables of the docs (:func:`markdown_table`, written into each
  page by ``python -m wfcrawl.settings.docs``; a test checks they are current),
- the settings the add-on reads from the environment (:func:`environment_settings`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import operator
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from scrapy.settings import BaseSettings

from wfcrawl.exceptions import ConfigurationError

#: Types a setting can have, and how a value given as text (``-s``, environment) is read.
TYPES = ("bool", "int", "float", "str", "list", "dict", "any")
#: Types the items of a "list" setting can have.
ITEM_TYPES = ("str", "int", "float", "any")


@dataclass(frozen=True)
class Setting:
    """One setting: ``name``, ``default``, ``type`` (see :data:`TYPES`), ``doc`` (markdown,
    the docs' "meaning" column), ``page`` (the docs page whose table lists it).

    ``minimum``/``maximum`` bound numbers (inclusive), ``exclusive_minimum``/
    ``exclusive_maximum`` bound them strictly (a timeout: ``exclusive_minimum=0``);
    ``choices`` bounds strings; ``required``: an empty string is refused.
    ``items``: the type of a list's items (see :data:`ITEM_TYPES`).
    ``nullable``: ``None`` (or empty text) is a valid value meaning "off".
    ``environment``: the add-on also reads it from the environment variable of
    the same name (service addresses and secrets).
    ``default_doc`` replaces the default in the docs when it is computed or long.
    ``page`` is a file of ``docs/``, with ``#section`` when the page has several
    settings tables.
    """

    name: str
    default: Any
    type: str
    doc: str
    page: str
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: float | None = None
    exclusive_maximum: float | None = None
    choices: tuple[str, ...] | None = None
    required: bool = False
    items: str = "str"
    nullable: bool = False
    environment: bool = False
    default_doc: str | None = None

    def __post_init__(self) -> None:
        if self.type not in TYPES:
            raise ValueError(f"{self.name}: unknown setting type {self.type!r}")
        if self.items not in ITEM_TYPES:
            raise ValueError(f"{self.name}: unknown list item type {self.items!r}")


_TABLE: dict[str, Setting] = {}


def register(settings: Iterable[Setting]) -> tuple[Setting, ...]:
    """Add a section's settings to the table (each name once)."""
    out = tuple(settings)
    for s in out:
        if s.name in _TABLE:
            raise ValueError(f"setting {s.name} is declared twice")
        _TABLE[s.name] = s
    return out


def table() -> dict[str, Setting]:
    """Every setting, by name (the section modules register theirs when this module is imported)."""
    return dict(_TABLE)


def environment_settings() -> tuple[str, ...]:
    """Settings the add-on reads from the environment variable of the same name."""
    return tuple(s.name for s in _TABLE.values() if s.environment)


def lookup(name: str) -> Setting:
    try:
        return _TABLE[name]
    except KeyError:
        raise KeyError(f"{name} is not in wfcrawl's settings table") from None


_ITEMS: dict[str, Callable[[Any], Any]] = {"str": str, "int": int, "float": float, "any": lambda v: v}


def _list(settings: BaseSettings, name: str) -> list[Any]:
    # A list may also be given as a JSON array (items that contain commas).
    value = settings.get(name)
    if isinstance(value, str) and value.strip().startswith("["):
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError as exc:
            raise ConfigurationError(f"{name}: invalid JSON array: {exc}") from None
        if not isinstance(parsed, list):
            raise ConfigurationError(f"{name}: expected a JSON array")
        items = parsed
    else:
        items = [v for v in settings.getlist(name) if v != ""]
    kind = _TABLE[name].items
    out = [_ITEMS[kind](v) for v in items]  # ValueError/TypeError: reported by read()
    if kind in ("int", "float") and not all(math.isfinite(v) for v in out):
        raise ValueError("items must be finite numbers")
    return out


_GETTERS: dict[str, Callable[[BaseSettings, str], Any]] = {
    "bool": lambda s, n: s.getbool(n),
    "int": lambda s, n: s.getint(n),
    "float": lambda s, n: s.getfloat(n),
    "str": lambda s, n: "" if s.get(n) is None else str(s.get(n)),
    "list": _list,
    "dict": lambda s, n: s.getdict(n),
    "any": lambda s, n: s.get(n),
}


def read(settings: BaseSettings, name: str) -> Any:
    """The typed value of setting ``name``, checked against its bounds.

    Raises :class:`ConfigurationError` naming the setting when the value is of
    the wrong type or out of bounds (never a bare ``ValueError``).
    """
    spec = lookup(name)
    raw = settings.get(name)
    if spec.nullable and (raw is None or raw == ""):
        return None
    try:
        value = _GETTERS[spec.type](settings, name)
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(f"{name}: expected {spec.type}, got {raw!r} ({exc})") from None
    if spec.type in ("int", "float"):
        _check_bounds(spec, value, raw)
    if spec.choices is not None and value not in spec.choices:
        raise ConfigurationError(f"{name} must be one of {', '.join(spec.choices)}, not {raw!r}")
    if spec.required and value == "":
        raise ConfigurationError(f"{name} must not be empty")
    return value


def _check_bounds(spec: Setting, value: float, raw: Any) -> None:
    name = spec.name
    if not math.isfinite(value):
        raise ConfigurationError(f"{name} must be a finite number, not {raw!r}")
    for bound, refused, words in (
        (spec.minimum, operator.lt, "at least"),
        (spec.maximum, operator.gt, "at most"),
        (spec.exclusive_minimum, operator.le, "greater than"),
        (spec.exclusive_maximum, operator.ge, "less than"),
    ):
        if bound is not None and refused(value, bound):
            shown = int(bound) if float(bound).is_integer() else bound  # 1000000, not 1e+06
            raise ConfigurationError(f"{name} must be {words} {shown}, not {raw!r}")


def setting(name: str, convert: Callable[[Any], Any] | None = None) -> Any:
    """A field of a :class:`Config` dataclass, read from setting ``name``.

    ``convert`` turns the typed value into the field's value (a ``Path``, a
    ``frozenset``...); without it a list becomes a tuple (configs are frozen).
    """
    return dataclasses.field(metadata={"setting": name, "convert": convert})


C = TypeVar("C", bound="Config")


class Config:
    """Base of the frozen config dataclasses components read once in ``from_crawler``.

    Fields declared with :func:`setting` are read (typed, bounded) from the
    settings table; other fields must be passed to :meth:`from_settings` as
    keyword arguments, and are declared first (type checkers take a
    :func:`setting` field for one with a default). Subclasses check rules that
    tie fields together in ``__post_init__`` (raising :class:`ConfigurationError`),
    and may override :meth:`from_settings` to add values read from other settings.
    """

    __dataclass_fields__: ClassVar[dict[str, Any]]

    @classmethod
    def from_settings(cls: type[C], settings: BaseSettings, **values: Any) -> C:
        for f in dataclasses.fields(cls):
            name = f.metadata.get("setting")
            if name is not None and f.name not in values:
                values[f.name] = _convert(name, read(settings, name), f.metadata["convert"])
        return cls(**values)


def _convert(name: str, value: Any, convert: Callable[[Any], Any] | None) -> Any:
    if convert is None:
        return tuple(value) if isinstance(value, list) else value
    try:
        return convert(value)
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(f"{name}: {exc}") from None


def _default_text(spec: Setting) -> str:
    if spec.default_doc is not None:
        return spec.default_doc
    if isinstance(spec.default, (str, list, dict)):
        return f"`{json.dumps(spec.default)}`"
    return f"`{spec.default!r}`"


def markdown_table(page: str) -> str:
    """The settings table of a docs page (the rows of the settings documented there)."""
    rows = ["| setting | default | meaning |", "|---|---|---|"]
    rows += [f"| `{s.name}` | {_default_text(s)} | {s.doc} |" for s in _TABLE.values() if s.page == page]
    return "\n".join(rows)


# Every section registers its settings here, once: whoever reads a setting
# imports this module, so the table is complete before the first lookup.
from wfcrawl.settings import core, distributed, launcher, operations, render, storage  # noqa: E402, F401
