"""JSON Schema validation of workflow documents, with located messages.

The schema ships as package data (read with importlib.resources, so it also
works from a zipped egg under scrapyd); the validator is built once. Every
error is reported. Messages are written from ``error.validator`` and the
failing values, never by parsing jsonschema's English.
"""

from __future__ import annotations

import difflib
import json
from functools import lru_cache
from importlib import resources
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from wfcrawl.exceptions import Problem
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
def validator() -> Draft202012Validator:
    return Draft202012Validator(schema())


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


def _allowed_keys(error: ValidationError) -> list[str]:
    return sorted(error.schema.get("properties", {}))


def _problems_for(error: ValidationError, source: Source) -> list[Problem]:
    path: DocPath = tuple(error.absolute_path)
    kind, value, instance = error.validator, error.validator_value, error.instance

    def at(p: DocPath, message: str, *, key: bool = False) -> Problem:
        return source.problem(p, message, kind="schema", key=key)

    if "propertyNames" in error.schema_path and isinstance(instance, str):
        return [at((*path, instance), f"invalid name {instance!r}" + (f": must match {value!r}" if kind == "pattern" else ""), key=True)]
    if kind == "additionalProperties" and isinstance(instance, dict):
        allowed = _allowed_keys(error)
        problems = []
        for extra in sorted(set(instance) - set(allowed)):
            hint = difflib.get_close_matches(extra, allowed, n=1)
            suffix = f"; did you mean {hint[0]!r}?" if hint else f"; allowed: {', '.join(k for k in allowed if k != 'type')}"
            problems.append(at((*path, extra), f"unknown key {extra!r}{suffix}", key=True))
        if problems:
            return problems
        # additionalProperties holding a schema reports through the nested error.
    if kind == "required":
        missing = [k for k in value if isinstance(instance, dict) and k not in instance]
        return [at(path, f"missing required key {k!r}") for k in missing]
    if kind == "type":
        return [at(path, f"must be {_expected(value)}, not {_type_of(instance)}")]
    if kind == "enum":
        return [at(path, f"must be one of {', '.join(map(repr, value))}; got {instance!r}")]
    if kind == "const":
        return [at(path, f"must be {value!r}; got {instance!r}")]
    if kind == "pattern":
        return [at(path, f"{instance!r} does not match the pattern {value!r}")]
    if kind in ("minimum", "exclusiveMinimum"):
        return [at(path, f"must be at least {value}; got {instance!r}")]
    if kind == "maximum":
        return [at(path, f"must be at most {value}; got {instance!r}")]
    if kind == "minLength":
        return [at(path, "must not be empty")]
    if kind == "maxLength":
        return [at(path, f"must be at most {value} characters long")]
    if kind == "minItems":
        return [at(path, f"must have at least {value} item(s)")]
    if kind == "minProperties":
        return [at(path, f"must have at least {value} entr{'y' if value == 1 else 'ies'}")]
    if kind == "maxProperties" and isinstance(instance, dict):
        return [at(path, f"give only one of {', '.join(sorted(instance))}")]
    return [at(path, error.message)]


def schema_problems(source: Source) -> list[Problem]:
    """Every schema violation in ``source``, located."""
    problems: list[Problem] = []
    for error in validator().iter_errors(source.data):
        problems.extend(_problems_for(error, source))
    if problems and not isinstance(source.data, dict):
        return problems[:1]
    return problems
