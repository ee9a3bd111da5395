"""Compile the ``fields:`` of an ``extract`` node into :class:`~wfcrawl.workflow.fields.Field` objects.

A field is a CSS string or a mapping: one source (a selection, ``const`` or
``var``), then attribute, regex (and its group), join, type, default; or a
composite: a nested object (``fields``), a list of objects (``rows`` +
``fields``) or a key-value table (``rows`` + ``key`` + ``value``).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from wfcrawl.workflow.compiler import SELECTION_KEYS, Compiler
from wfcrawl.workflow.fields import COERCERS, Field
from wfcrawl.workflow.regex import Regex
from wfcrawl.workflow.source import DocPath


def compile_fields(c: Compiler, specs: dict[str, Any], path: DocPath, prefix: str = "") -> tuple[Field, ...]:
    out = []
    for name, spec in specs.items():
        compiled = compile_field(c, f"{prefix}.{name}" if prefix else name, spec, (*path, name))
        if compiled is not None:
            out.append(compiled)
    return tuple(out)


def compile_field(c: Compiler, name: str, spec: Any, path: DocPath) -> Field | None:
    if isinstance(spec, str):
        sel = c.compile_selection("css", spec, path)
        return Field(name, selection=sel) if sel else None
    sources = [k for k in (*SELECTION_KEYS, "const", "var") if k in spec]
    if len(sources) > 1:
        c.error((*path, sources[1]), f"give only one of {', '.join(sources)}", key=True)
        return None
    selection = c.selection(spec, path)
    regex, group = _regex(c, spec, path)
    if "format" in spec:
        _check_format(c, spec, path)
    return Field(
        name,
        selection=selection,
        const=spec.get("const"),
        has_const="const" in spec,
        var=spec.get("var"),
        attr=spec.get("attr"),
        regex=regex,
        group=group,
        many=bool(spec.get("many", False)),
        join=spec.get("join"),
        normalize=bool(spec.get("normalize", True)),
        split=spec.get("split"),
        coerce=COERCERS[spec.get("type", "string")],
        format=spec.get("format"),
        default=spec.get("default"),
        required=bool(spec.get("required", False)),
        **_composite(c, name, spec, path),
    )


#: The directives time.strptime knows (Python 3.10+).
_STRPTIME_DIRECTIVES = frozenset("aAbBcdfGhHIjmMpSuUVwWxXyYzZ%")


def _check_format(c: Compiler, spec: dict[str, Any], path: DocPath) -> None:
    """A ``format`` is a strptime format of a date or datetime field: every directive known."""
    fmt = spec["format"]
    if spec.get("type") not in ("date", "datetime"):
        c.error((*path, "format"), "'format' needs type: date or datetime", key=True)
        return
    i = 0
    while i < len(fmt):
        if fmt[i] == "%":
            directive = fmt[i + 1:i + 2]
            if not directive:
                c.error((*path, "format"), f"invalid strptime format {fmt!r}: a '%' ends it (write %% for a '%')")
                return
            if directive not in _STRPTIME_DIRECTIVES:
                c.error((*path, "format"), f"invalid strptime format {fmt!r}: unknown directive '%{directive}' "
                        "(see Python's strftime() and strptime() format codes)")
                return
            i += 2
        else:
            i += 1
    if "%G" in fmt and not ("%V" in fmt and ("%u" in fmt or "%a" in fmt or "%A" in fmt)):
        c.error((*path, "format"), f"invalid strptime format {fmt!r}: %G needs %V and a weekday (%u, %a or %A)")


def _regex(c: Compiler, spec: dict[str, Any], path: DocPath) -> tuple[Regex | None, int | str]:
    """The field's regex and the group it takes (a single group by default)."""
    group: int | str = spec.get("group", 0)
    if "re" not in spec:
        if "group" in spec:
            c.error((*path, "group"), "'group' needs 're'", key=True)
        return None, group
    regex = c.regex(spec["re"], (*path, "re"))
    if regex is None:
        return None, group
    if "group" not in spec and regex.groups == 1:
        group = 1
    elif isinstance(group, int) and group > regex.groups:
        c.error((*path, "group"), f"the regex has {regex.groups} group(s), not {group}")
    elif isinstance(group, str) and group not in regex.groupindex:
        c.error((*path, "group"), f"the regex has no group named {group!r}")
    return regex, group


def _composite(c: Compiler, name: str, spec: dict[str, Any], path: DocPath) -> dict[str, Any]:
    """``rows``/``key``/``value``/``fields``: a key-value table, a list or a nested object."""
    kw: dict[str, Any] = {}
    has_key_value = "key" in spec or "value" in spec
    if "rows" in spec:
        kw["rows"] = c.selection_value(spec["rows"], (*path, "rows"))
        if has_key_value:
            if not ("key" in spec and "value" in spec):
                c.error(path, "a key-value field needs both 'key' and 'value'")
            if "fields" in spec:
                c.error((*path, "fields"), "give either 'fields' (list of objects) or 'key'/'value' (a dict)", key=True)
            kw["key"] = compile_field(c, f"{name}.key", spec.get("key", "::text"), (*path, "key"))
            kw["value"] = compile_field(c, f"{name}.value", spec.get("value", "::text"), (*path, "value"))
        elif "fields" not in spec:
            c.error(path, "'rows' needs 'fields' (a list of objects) or 'key' and 'value' (a dict)")
    elif has_key_value:
        c.error(path, "'key'/'value' need 'rows' (the row selector)")
    if "fields" in spec:
        kw["fields"] = compile_fields(c, spec["fields"], (*path, "fields"), prefix=name)
        if spec.get("many"):
            c.error((*path, "many"), "a list of objects is written with 'rows', not 'many'", key=True)
    return kw


def uses_json(fields: tuple[Field, ...]) -> bool:
    """Whether any selection among these fields (recursively) is JMESPath."""
    for f in fields:
        if any(s is not None and s.is_json for s in (f.selection, f.rows)):
            return True
        parts = tuple(x for x in (f.key, f.value) if x is not None)
        if uses_json(parts) or uses_json(f.fields):
            return True
    return False


def compile_values(c: Compiler, specs: dict[str, Any] | None, path: DocPath) -> tuple[Field, ...]:
    """The ``values:`` of a node: named fields whose values fill its templates
    and are handed to the pages it leads to (``var:`` reads them there)."""
    return compile_fields(c, specs or {}, path)


def compile_json_from(c: Compiler, spec: Any, path: DocPath) -> Field | None:
    """``json_from``: the page text holding JSON (a script tag), a field (its
    first value); whitespace is kept unless the field says ``normalize: true``."""
    if spec is None:
        return None
    field = compile_field(c, "json_from", spec, path)
    if field is None:
        return None
    if field.fields or field.rows is not None or field.selection is None or field.selection.is_json:
        c.error(path, "json_from selects the text holding JSON with css or xpath (and re); "
                "its JMESPath expressions go in the node's rows and fields")
        return None
    normalize = isinstance(spec, dict) and bool(spec.get("normalize", False))
    return replace(field, normalize=normalize)
