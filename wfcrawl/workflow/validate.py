"""JSON Schema validation of workflow documents, with located messages.

The schema ships as package data (read with importlib.resources, so it also
works from a zipped egg under scrapyd); the validator is built once. Every
error is reported. Messages are written from ``error.validator`` and the
failing values, never by parsing jsonschema's English.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Callable
from functools import lru_cache
from importlib import resources
from typing import Any

from jsonschema.exceptions import ValidationError

from wfcrawl.exceptions import Problem
from wfcrawl.workflow.limits import non_ascii
from wfcrawl.workflow.schemas import validator_for
from wfcrawl.workflow.source import DocPath, Source

_TYPE_NAMES = {
    "object": "a mapping", "array": "a list", "string": "a string",
    "integer": "an integer", "number": "a number", "boolean": "true or false",
    "null": "null",
}


@lru_cache(maxsize=1)
def schema() -> dict[str, Any]:
    """The workflow JSON Schema (draft 2020-12)."""
    text = resources.files("wfcrawl.workflow").joinpath("schema.json").read_text("utf-8")
    return json.loads(text)  # type: ignore[no-any-return]


@lru_cache(maxsize=1)
def validator() -> Any:
    """The workflow schema's validator (patterns on RE2: ``$`` is the end of the text)."""
    return validator_for(schema())


def _type_of(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true or false"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def _expected(types: Any) -> str:
    if isinstance(types, str):
        types = [types]
    return " or ".join(_TYPE_NAMES.get(t, t) for t in types)


def _confusable(name: object) -> str:
    """`` (it contains U+0430 CYRILLIC SMALL LETTER A)`` for names that only look right."""
    found = non_ascii(name) if isinstance(name, str) else None
    return f" (it contains {found})" if found else ""


def _allowed_keys(error: ValidationError) -> list[str]:
    return sorted(error.schema.get("properties", {}))


#: The message of each validator whose message needs only its value and the instance.
_MESSAGES: dict[str, Callable[[Any, Any], str]] = {
    "type": lambda value, instance: f"must be {_expected(value)}, not {_type_of(instance)}",
    "enum": lambda value, instance: f"must be one of {', '.join(map(repr, value))}; got {instance!r}",
    "const": lambda value, instance: f"must be {value!r}; got {instance!r}",
    "pattern": lambda value, instance: f"{instance!r}{_confusable(instance)} does not match the pattern {value!r}",
    "minimum": lambda value, instance: f"must be at least {value}; got {instance!r}",
    "exclusiveMinimum": lambda value, instance: f"must be at least {value}; got {instance!r}",
    "maximum": lambda value, instance: f"must be at most {value}; got {instance!r}",
    "minLength": lambda value, instance: "must not be empty",
    "maxLength": lambda value, instance: f"must be at most {value} characters long",
    "minItems": lambda value, instance: f"must have at least {value} item(s)",
    "maxItems": lambda value, instance: f"must have at most {value} item(s)",
    "minProperties": lambda value, instance: f"must have at least {value} entr{'y' if value == 1 else 'ies'}",
}


def _problems_for(error: ValidationError, source: Source) -> list[Problem]:
    path: DocPath = tuple(error.absolute_path)
    kind, value, instance = error.validator, error.validator_value, error.instance

    def at(p: DocPath, message: str, *, key: bool = False) -> Problem:
        return source.problem(p, message, kind="schema", key=key)

    if "propertyNames" in error.schema_path and isinstance(instance, str):
        return [at((*path, instance), f"invalid name {instance!r}{_confusable(instance)}"
                   + (f": must match {value!r}" if kind == "pattern" else ""), key=True)]
    if kind == "additionalProperties" and isinstance(instance, dict):
        unknown = [at((*path, extra), message, key=True) for extra, message in _unknown_keys(error, instance)]
        if unknown:
            return unknown
        # additionalProperties holding a schema reports through the nested error.
    if kind == "required":
        missing = [k for k in value if isinstance(instance, dict) and k not in instance]
        return [at(path, f"missing required key {k!r}") for k in missing]
    if kind in _MESSAGES:
        return [at(path, _MESSAGES[kind](value, instance))]
    if kind == "maxProperties" and isinstance(instance, dict):
        return [at(path, f"give only one of {', '.join(sorted(instance))}")]
    message = error.message  # a validator without its own message: jsonschema's, kept short
    return [at(path, message if len(message) <= 300 else message[:300] + "...")]


def _unknown_keys(error: ValidationError, instance: dict[str, Any]) -> list[tuple[str, str]]:
    """(key, message) of each key the schema does not allow, with the closest allowed one."""
    allowed = _allowed_keys(error)
    found = []
    for extra in sorted(set(instance) - set(allowed)):
        hint = difflib.get_close_matches(extra, allowed, n=1)
        suffix = f"; did you mean {hint[0]!r}?" if hint else f"; allowed: {', '.join(k for k in allowed if k != 'type')}"
        found.append((extra, f"unknown key {extra!r}{_confusable(extra)}{suffix}"))
    return found


def schema_problems(source: Source) -> list[Problem]:
    """Every schema violation in ``source``, located."""
    return schema_check(source)[0]


def schema_check(source: Source) -> tuple[list[Problem], list[DocPath]]:
    """Every schema violation, located, and the paths of the parts that have one
    (an unknown key's own path: removing just the key is enough)."""
    problems: list[Problem] = []
    paths: list[DocPath] = []
    for error in validator().iter_errors(source.data):
        found = _problems_for(error, source)
        problems.extend(found)
        path: DocPath = tuple(error.absolute_path)
        if error.validator == "additionalProperties" and isinstance(error.instance, dict):
            paths.extend((*path, k) for k in sorted(set(error.instance) - set(_allowed_keys(error))))
        elif "propertyNames" in error.schema_path and isinstance(error.instance, str):
            paths.append((*path, error.instance))  # the entry whose name is wrong
        else:
            paths.append(path)
    if problems and not isinstance(source.data, dict):
        return problems[:1], [()]
    return problems, paths
