"""The ``items:`` section: key fields, table and JSON Schema per item type."""

from __future__ import annotations

from typing import Any

from jsonschema import Draft202012Validator

from wfcrawl.workflow.compiler import Compiler
from wfcrawl.workflow.plan import ItemSpec
from wfcrawl.workflow.schemas import schema_problems, validator_for
from wfcrawl.workflow.source import DocPath, json_path

#: Tables of wfcrawl's own PostgreSQL schema, which items may not be written into
#: (the storage checks it again; every table a migration creates is named here).
RESERVED_TABLES = frozenset({
    "quarantine", "executions", "execution_instances", "schema_migrations", "launcher_workflows", "schedule_slots",
    "schedule_cursors", "audit_log",
})


def item_producers(c: Compiler) -> tuple[dict[str, list[tuple[DocPath, list[str]]]], bool]:
    """The extract nodes of each item type (path, field names); whether a script node exists."""
    producers: dict[str, list[tuple[DocPath, list[str]]]] = {}
    scripts = False
    for pname, pspec in c.doc["phases"].items():
        for i, nspec in enumerate(pspec["nodes"]):
            if nspec["type"] == "extract":
                producers.setdefault(nspec["item"], []).append((("phases", pname, "nodes", i), list(nspec["fields"])))
            scripts = scripts or nspec["type"] == "script"
    return producers, scripts


def _validator(c: Compiler, schema: Any, path: DocPath) -> Any:
    meta = validator_for(Draft202012Validator.META_SCHEMA)
    errors = sorted(meta.iter_errors(schema), key=lambda e: list(map(str, e.absolute_path)))
    for exc in errors:
        c.error((*path, *exc.absolute_path), f"invalid JSON Schema: {exc.message}")
    if errors:
        return None
    before = len(c.problems)
    # Never fetched, never backtracking, never endless (wfcrawl.workflow.schemas).
    schema_problems(schema, lambda at, message: c.error((*path, *at), message))
    if len(c.problems) > before:
        return None
    return validator_for(schema, formats=True)


def compile_items(c: Compiler) -> dict[str, ItemSpec]:
    producers, scripts = item_producers(c)
    out: dict[str, ItemSpec] = {}
    for item_type, spec in c.doc.get("items", {}).items():
        path: DocPath = ("items", item_type)
        if item_type not in producers and not scripts:
            c.error(path, f"no extract or script node produces items of type {item_type!r}", key=True)
        for i, name in enumerate(spec.get("key", ())):
            for npath, fields in producers.get(item_type, ()):
                if name not in fields:
                    c.error((*path, "key", i),
                            f"key field {name!r} is not a field of {json_path(npath)} (fields: {', '.join(fields)})")
                    break
        if spec.get("table") in RESERVED_TABLES:
            c.error((*path, "table"), f"table name {spec['table']!r} is reserved by wfcrawl")
        validator = _validator(c, spec["schema"], (*path, "schema")) if "schema" in spec else None
        if spec.get("unique") and "key" not in spec:
            c.error((*path, "unique"), "unique needs 'key': the fields that identify an item", key=True)
        out[item_type] = ItemSpec(item_type, tuple(spec.get("key", ())), spec.get("table"), spec.get("schema"), validator,
                                  bool(spec.get("unique", False)))
    return out
