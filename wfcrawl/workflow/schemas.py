"""JSON Schema validators safe for schemas and instances from untrusted documents.

jsonschema, as it comes, matches ``pattern`` and ``patternProperties`` with
Python's backtracking ``re`` (a page's text meeting ``(a+)+$`` in an item schema
would hang the crawl), checks ``format: regex`` by compiling with ``re``, and
without a registry it fetches any ``$ref`` it cannot resolve over HTTP, once per
item (a document could make the crawler connect to 127.0.0.1). Here:

- :data:`Validator` is Draft 2020-12 with ``pattern``, ``patternProperties``,
  ``additionalProperties`` and ``format: regex`` on RE2 (:mod:`wfcrawl.workflow.regex`);
- every validator gets :data:`REGISTRY`, whose retrieval refuses everything:
  nothing is ever fetched;
- :func:`schema_problems` finds, at load, what an item schema may not contain:
  a non-local ``$ref``, ``$id`` (it would move references elsewhere), a pattern
  RE2 cannot compile, a reference cycle that does not descend into the instance,
  ``unevaluatedProperties`` next to ``patternProperties`` (jsonschema would match
  those with ``re``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker, validators
from jsonschema.exceptions import ValidationError
from jsonschema_specifications import REGISTRY as SPECIFICATIONS
from referencing import Registry
from referencing.exceptions import NoSuchResource

from wfcrawl.workflow.regex import RegexError, compile_regex, describe

SchemaPath = tuple[str | int, ...]


def _search(pattern: str, text: str) -> bool:
    return compile_regex(pattern).search(text) is not None


def _pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Iterator[ValidationError]:
    if validator.is_type(instance, "string") and not _search(pattern, instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


def _pattern_properties(validator: Any, properties: Any, instance: Any, schema: Any) -> Iterator[ValidationError]:
    if not validator.is_type(instance, "object"):
        return
    for pattern, subschema in properties.items():
        for key, value in instance.items():
            if _search(pattern, key):
                yield from validator.descend(value, subschema, path=key, schema_path=pattern)


def _extras(instance: dict[str, Any], schema: Any) -> list[str]:
    properties = schema.get("properties", {})
    patterns = list(schema.get("patternProperties", {}))
    return [k for k in instance if k not in properties and not any(_search(p, k) for p in patterns)]


def _additional_properties(validator: Any, extra: Any, instance: Any, schema: Any) -> Iterator[ValidationError]:
    if not validator.is_type(instance, "object"):
        return
    extras = _extras(instance, schema)
    if validator.is_type(extra, "object"):
        for key in extras:
            yield from validator.descend(instance[key], extra, path=key)
    elif not extra and extras:
        shown = ", ".join(repr(k) for k in sorted(extras))
        yield ValidationError(f"Additional properties are not allowed ({shown} {'was' if len(extras) == 1 else 'were'}"
                              " unexpected)")


def _is_regex(instance: object) -> bool:
    if not isinstance(instance, str):
        return True
    compile_regex(instance)
    return True


def _format_checker() -> FormatChecker:
    checker = FormatChecker()
    checker.checkers = dict(Draft202012Validator.FORMAT_CHECKER.checkers)
    checker.checkers["regex"] = (_is_regex, (RegexError,))
    return checker


#: Draft 2020-12 with its regular expressions on RE2.
Validator: Any = validators.extend(
    Draft202012Validator,
    {"pattern": _pattern, "patternProperties": _pattern_properties, "additionalProperties": _additional_properties},
)
FORMAT_CHECKER = _format_checker()


def _refuse(uri: str) -> Any:
    raise NoSuchResource(uri)


#: JSON Schema's own meta-schemas (shipped with jsonschema), and nothing is ever
#: retrieved: any other reference outside the schema is unresolvable.
REGISTRY: Registry[Any] = SPECIFICATIONS.combine(Registry(retrieve=_refuse))  # type: ignore[call-arg]


def validator_for(schema: Any, *, formats: bool = False) -> Any:
    """A validator of ``schema`` that never fetches and never backtracks."""
    return Validator(schema, registry=REGISTRY, format_checker=FORMAT_CHECKER if formats else None)


# ---------------------------------------------------------------- what item schemas may contain

_SAME_INSTANCE = ("allOf", "anyOf", "oneOf")  # lists of subschemas applied to the same instance
_SAME_INSTANCE_ONE = ("not", "if", "then", "else")


def _walk(schema: Any, path: SchemaPath = ()) -> Iterator[tuple[SchemaPath, dict[str, Any]]]:
    stack: list[tuple[SchemaPath, Any]] = [(path, schema)]
    while stack:
        at, node = stack.pop()
        if isinstance(node, dict):
            yield at, node
            stack.extend(((*at, k), v) for k, v in node.items() if k not in ("const", "enum", "default", "examples"))
        elif isinstance(node, list):
            stack.extend(((*at, i), v) for i, v in enumerate(node))


def _pointer(path: SchemaPath) -> str:
    return "#" + "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in path)


def _resolve(schema: Any, ref: str) -> SchemaPath | None:
    """The path a local JSON pointer reference leads to, or None."""
    if ref in ("#", ""):
        return ()
    if not ref.startswith("#/"):
        return None
    node, path = schema, []
    for raw in ref[2:].split("/"):
        part = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node, key = node[int(part)], int(part)
        elif isinstance(node, dict) and part in node:
            node, key = node[part], part  # type: ignore[assignment]
        else:
            return None
        path.append(key)
    return tuple(path)


def schema_problems(schema: Any, report: Callable[[SchemaPath, str], None]) -> None:
    """Report (path inside the schema, message) for what an item schema may not contain."""
    anchors = {n["$anchor"]: p for p, n in _walk(schema) if isinstance(n.get("$anchor"), str)}
    edges: dict[SchemaPath, list[SchemaPath]] = {}
    has_pattern_properties = any("patternProperties" in n for _, n in _walk(schema))
    for path, node in _walk(schema):
        if "$id" in node and path:
            report((*path, "$id"), "$id is not allowed inside an item schema (references stay in this schema)")
        for word in ("$ref", "$dynamicRef"):
            ref = node.get(word)
            if not isinstance(ref, str):
                continue
            target = anchors.get(ref[1:]) if ref.startswith("#") and "/" not in ref and ref != "#" else _resolve(schema, ref)
            if not ref.startswith("#"):
                report((*path, word), f"only references inside this schema ('#/...') are allowed, not {ref!r}:"
                                      " item schemas are never fetched")
            elif target is None:
                report((*path, word), f"reference {ref!r} leads nowhere in this schema")
            else:
                edges.setdefault(path, []).append(target)
        for word in ("pattern",):
            if isinstance(node.get(word), str):
                _check_regex(node[word], (*path, word), report)
        if isinstance(node.get("patternProperties"), dict):
            for pattern in node["patternProperties"]:
                _check_regex(pattern, (*path, "patternProperties", pattern), report)
        if "unevaluatedProperties" in node and has_pattern_properties:
            report((*path, "unevaluatedProperties"), "unevaluatedProperties cannot be combined with"
                                                     " patternProperties here (give additionalProperties)")
        for word in _SAME_INSTANCE:
            if isinstance(node.get(word), list):
                edges.setdefault(path, []).extend((*path, word, i) for i in range(len(node[word])))
        for word in _SAME_INSTANCE_ONE:
            if isinstance(node.get(word), dict):
                edges.setdefault(path, []).append((*path, word))
    cycle = _cycle(edges)
    if cycle is not None:
        report((*cycle, "$ref") if "$ref" in _at(schema, cycle) else cycle,
               "reference cycle: validating would never end (a reference must lead into a property or item)")


def _at(schema: Any, path: SchemaPath) -> Any:
    for part in path:
        schema = schema[part]
    return schema


def _check_regex(pattern: str, path: SchemaPath, report: Callable[[SchemaPath, str], None]) -> None:
    try:
        compile_regex(pattern)
    except RegexError as exc:
        report(path, describe(pattern, exc))


def _cycle(edges: dict[SchemaPath, list[SchemaPath]]) -> SchemaPath | None:
    """A schema on a cycle of same-instance steps ($ref, allOf, not, ...), or None."""
    state: dict[SchemaPath, int] = {}  # 1: on the stack, 2: done
    for start in edges:
        if start in state:
            continue
        stack = [(start, iter(edges.get(start, ())))]
        state[start] = 1
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                state[node] = 2
                stack.pop()
            elif state.get(child) == 1:
                return child
            elif child not in state:
                state[child] = 1
                stack.append((child, iter(edges.get(child, ()))))
    return None
