"""Semantic checks and compilation of a schema-valid document into a Plan.

Compiling *is* the semantic check: a selector, regex or JMESPath expression
that does not compile, a transition to a phase that does not exist, an
unreachable phase, a marker no transition routes, a script callable that
cannot be imported: each is a located problem, all collected in one pass.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import urljoin, urlsplit

import jmespath

from wfcrawl.exceptions import Problem
from wfcrawl.render import spec as render_spec  # module import: no cycle through wfcrawl.workflow
from wfcrawl.workflow.fields import COERCERS, Field
from wfcrawl.workflow.plan import (
    ExtractNode,
    FormNode,
    ItemSpec,
    LinksNode,
    Node,
    PaginateNode,
    Phase,
    Plan,
    ScriptNode,
    StartURL,
    Transition,
)
from wfcrawl.workflow.selectors import Selection, SelectionError, compile_selection, jmespath_message
from wfcrawl.workflow.source import DocPath, Source

_SELECTION_KEYS = ("css", "xpath", "jmespath")


class _Compiler:
    def __init__(self, source: Source, base_url: str | None, script_modules: tuple[str, ...] | None) -> None:
        self.source = source
        self.doc: dict[str, Any] = source.data
        self.base_url = base_url or self.doc.get("base_url")
        self.script_modules = script_modules
        self.problems: list[Problem] = []
        self.env_names: list[str] = []
        self.start_phases: set[str] = set()

    def error(self, path: DocPath, message: str, *, key: bool = False) -> None:
        self.problems.append(self.source.problem(path, message, kind="semantic", key=key))

    # ------------------------------------------------------------ pieces

    def regex(self, pattern: str, path: DocPath) -> re.Pattern[str] | None:
        try:
            return re.compile(pattern)
        except re.error as exc:
            self.error(path, f"invalid regular expression {pattern!r}: {exc}")
            return None

    def regexes(self, spec: Any, path: DocPath) -> tuple[re.Pattern[str], ...]:
        if spec is None:
            return ()
        items = [spec] if isinstance(spec, str) else spec
        paths = [path] if isinstance(spec, str) else [(*path, i) for i in range(len(items))]
        compiled = [self.regex(p, at) for p, at in zip(items, paths, strict=True)]
        return tuple(c for c in compiled if c is not None)

    def selection(self, spec: dict[str, Any], path: DocPath, *, default: str | None = None) -> Selection | None:
        """The one css/xpath/jmespath key of ``spec`` (an error when several)."""
        given = [k for k in _SELECTION_KEYS if k in spec]
        if len(given) > 1:
            self.error((*path, given[1]), f"give only one of {', '.join(given)}", key=True)
            return None
        if not given:
            return None if default is None else self._compile("css", default, path)
        kind = given[0]
        return self._compile(kind, spec[kind], (*path, kind))

    def selection_value(self, spec: Any, path: DocPath) -> Selection | None:
        """A `selection` schema value: a CSS string or a one-key mapping."""
        if isinstance(spec, str):
            return self._compile("css", spec, path)
        return self.selection(spec, path)

    def _compile(self, kind: str, expression: str, path: DocPath) -> Selection | None:
        try:
            return compile_selection(kind, expression)
        except SelectionError as exc:
            self.error(path, str(exc))
            return None

    @staticmethod
    def markers(spec: Any) -> frozenset[str] | None:
        if spec is None:
            return None
        return frozenset([spec] if isinstance(spec, str) else spec)

    # ------------------------------------------------------------ fields

    def field(self, name: str, spec: Any, path: DocPath) -> Field | None:
        if isinstance(spec, str):
            sel = self._compile("css", spec, path)
            return Field(name, selection=sel) if sel else None
        sources = [k for k in (*_SELECTION_KEYS, "const", "var") if k in spec]
        if len(sources) > 1:
            self.error((*path, sources[1]), f"give only one of {', '.join(sources)}", key=True)
            return None
        selection = self.selection(spec, path)
        regex = self.regex(spec["re"], (*path, "re")) if "re" in spec else None
        group: int | str = spec.get("group", 0)
        if regex is not None:
            if "group" not in spec and regex.groups == 1:
                group = 1
            elif isinstance(group, int) and group > regex.groups:
                self.error((*path, "group"), f"the regex has {regex.groups} group(s), not {group}")
            elif isinstance(group, str) and group not in regex.groupindex:
                self.error((*path, "group"), f"the regex has no group named {group!r}")
        elif "group" in spec:
            self.error((*path, "group"), "'group' needs 're'", key=True)
        kw: dict[str, Any] = {}
        if "rows" in spec:
            kw["rows"] = self.selection_value(spec["rows"], (*path, "rows"))
            if "key" in spec or "value" in spec:
                if not ("key" in spec and "value" in spec):
                    self.error(path, "a key-value field needs both 'key' and 'value'")
                if "fields" in spec:
                    self.error((*path, "fields"), "give either 'fields' (list of objects) or 'key'/'value' (a dict)", key=True)
                kw["key"] = self.field(f"{name}.key", spec.get("key", "::text"), (*path, "key"))
                kw["value"] = self.field(f"{name}.value", spec.get("value", "::text"), (*path, "value"))
            elif "fields" not in spec:
                self.error(path, "'rows' needs 'fields' (a list of objects) or 'key' and 'value' (a dict)")
        elif "key" in spec or "value" in spec:
            self.error(path, "'key'/'value' need 'rows' (the row selector)")
        if "fields" in spec:
            kw["fields"] = self.fields(spec["fields"], (*path, "fields"), prefix=name)
            if spec.get("many"):
                self.error((*path, "many"), "a list of objects is written with 'rows', not 'many'", key=True)
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
            coerce=COERCERS[spec.get("type", "string")],
            format=spec.get("format"),
            default=spec.get("default"),
            required=bool(spec.get("required", False)),
            **kw,
        )

    def fields(self, specs: dict[str, Any], path: DocPath, prefix: str = "") -> tuple[Field, ...]:
        out = []
        for name, spec in specs.items():
            compiled = self.field(f"{prefix}.{name}" if prefix else name, spec, (*path, name))
            if compiled is not None:
                out.append(compiled)
        return tuple(out)

    @staticmethod
    def uses_json(fields: tuple[Field, ...]) -> bool:
        """Whether any selection among these fields (recursively) is JMESPath."""
        for f in fields:
            if any(s is not None and s.is_json for s in (f.selection, f.rows)):
                return True
            parts = tuple(x for x in (f.key, f.value) if x is not None)
            if _Compiler.uses_json(parts) or _Compiler.uses_json(f.fields):
                return True
        return False

    # ------------------------------------------------------------ nodes

    def node(self, spec: dict[str, Any], path: DocPath, allowed: tuple[str, ...]) -> Node | None:
        kind = spec["type"]
        label = spec.get("name") or f"{kind}#{path[-1]}"
        when = self.markers(spec.get("when_marker"))
        if kind == "extract_links":
            sel = self.selection(spec, path, default="a")
            if sel is None:
                return None
            return LinksNode(
                label, when, sel, spec.get("attr", "href"), spec["marker"], spec.get("limit"),
                self.regexes(spec.get("allow"), (*path, "allow")),
                self.regexes(spec.get("deny"), (*path, "deny")),
                spec.get("domains", "allowed"), allowed,
                self.render(spec, path),
            )
        if kind == "extract":
            rows = self.selection_value(spec["rows"], (*path, "rows")) if "rows" in spec else None
            fields = self.fields(spec["fields"], (*path, "fields"))
            json_fields = self.uses_json(fields)
            if rows is not None and rows.is_json != json_fields and fields:
                self.error((*path, "rows"), "rows and fields must all be JMESPath (JSON) or all CSS/XPath (HTML)")
            return ExtractNode(label, when, spec["item"], rows, fields, json_fields or bool(rows and rows.is_json))
        if kind == "paginate":
            stop = None
            if "stop_when" in spec:
                try:
                    stop = jmespath.compile(spec["stop_when"])
                except jmespath.exceptions.JMESPathError as exc:
                    self.error((*path, "stop_when"), jmespath_message(spec["stop_when"], exc))
            if "stop_when" not in spec and "max_pages" not in spec:
                self.error(path, "paginate needs 'stop_when' or 'max_pages' (or both), or it never stops")
            return PaginateNode(
                label, when, spec["url"], spec["marker"], spec.get("start", 1), spec.get("step", 1),
                stop, spec.get("max_pages"),
            )
        if kind == "form":
            if "css" in spec and "xpath" in spec:
                self.error((*path, "xpath"), "give only one of css, xpath", key=True)
            for key in ("css", "xpath"):
                if key in spec:
                    self._compile(key, spec[key], (*path, key))
            self.env_names.extend(spec.get("env", {}).values())
            return FormNode(
                label, when, spec.get("css"), spec.get("xpath"),
                {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in spec.get("fields", {}).items()},
                dict(spec.get("env", {})), spec.get("click"), spec["phase"], spec.get("marker", "form"),
            )
        if kind == "script":
            function = self.script(spec["callable"], (*path, "callable"))
            if function is None:
                return None
            return ScriptNode(
                label, when, spec["callable"], function, spec.get("item"), dict(spec.get("args", {})),
                self.doc["name"],
            )
        raise AssertionError(kind)  # the schema allows no other type

    def render(self, spec: dict[str, Any], path: DocPath) -> dict[str, Any] | None:
        """The plain-data render block of a phase or node (selectors checked)."""
        if "render" not in spec:
            return None
        return render_spec.compile_render(spec["render"], (*path, "render"), self.error)

    def script(self, name: str, path: DocPath) -> Callable[..., Any] | None:
        module_name, _, attr = name.partition(":")
        if self.script_modules is not None and not any(
            module_name == m or module_name.startswith(m + ".") for m in self.script_modules
        ):
            self.error(path, f"script module {module_name!r} is not in the allowed script modules")
            return None
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:  # ImportError, or any error the module raises at import
            self.error(path, f"cannot import {module_name!r}: {type(exc).__name__}: {exc}")
            return None
        function = getattr(module, attr, None)
        if not callable(function):
            self.error(path, f"{module_name!r} has no callable {attr!r}")
            return None
        return function  # type: ignore[no-any-return]

    # ------------------------------------------------------------ document

    def start_urls(self, first_phase: str) -> tuple[StartURL, ...]:
        out = []
        for i, spec in enumerate(self.doc["start_urls"]):
            path: DocPath = ("start_urls", i)
            if isinstance(spec, str):
                spec = {"url": spec}
            url = spec["url"]
            # Reachable even when the URL itself is wrong: report that, not a cascade.
            self.start_phases.add(spec.get("phase", first_phase))
            if not urlsplit(url).scheme:
                if not self.base_url:
                    self.error((*path, "url") if (*path, "url") in self.source.positions else path,
                               f"relative URL {url!r} needs base_url")
                    continue
                url = urljoin(self.base_url, url)
            if urlsplit(url).scheme not in ("http", "https"):
                self.error(path, f"start URL {url!r} must be http or https")
                continue
            out.append(StartURL(url, spec.get("phase", first_phase), spec.get("marker", "start")))
            if spec.get("phase", first_phase) not in self.doc["phases"]:
                self.error((*path, "phase"), f"unknown phase {spec['phase']!r}; phases: {', '.join(self.doc['phases'])}")
        return tuple(out)

    def items(self, phases_spec: dict[str, Any]) -> dict[str, ItemSpec]:
        """The ``items:`` section: key fields, table and JSON Schema per item type."""
        from jsonschema import Draft202012Validator

        from wfcrawl.storage.connection import RESERVED_TABLES
        from wfcrawl.workflow.source import json_path

        producers: dict[str, list[tuple[DocPath, list[str]]]] = {}
        scripts = False
        for pname, pspec in phases_spec.items():
            for i, nspec in enumerate(pspec["nodes"]):
                if nspec["type"] == "extract":
                    producers.setdefault(nspec["item"], []).append((("phases", pname, "nodes", i), list(nspec["fields"])))
                scripts = scripts or nspec["type"] == "script"
        out: dict[str, ItemSpec] = {}
        for item_type, spec in self.doc.get("items", {}).items():
            path: DocPath = ("items", item_type)
            if item_type not in producers and not scripts:
                self.error(path, f"no extract or script node produces items of type {item_type!r}", key=True)
            for i, name in enumerate(spec.get("key", ())):
                for npath, fields in producers.get(item_type, ()):
                    if name not in fields:
                        self.error((*path, "key", i), f"key field {name!r} is not a field of {json_path(npath)} (fields: {', '.join(fields)})")
                        break
            if spec.get("table") in RESERVED_TABLES:
                self.error((*path, "table"), f"table name {spec['table']!r} is reserved by wfcrawl")
            validator = None
            if "schema" in spec:
                meta = Draft202012Validator(Draft202012Validator.META_SCHEMA)
                errors = sorted(meta.iter_errors(spec["schema"]), key=lambda e: list(map(str, e.absolute_path)))
                for exc in errors:
                    self.error((*path, "schema", *exc.absolute_path), f"invalid JSON Schema: {exc.message}")
                if not errors:
                    validator = Draft202012Validator(spec["schema"], format_checker=Draft202012Validator.FORMAT_CHECKER)
            out[item_type] = ItemSpec(item_type, tuple(spec.get("key", ())), spec.get("table"), spec.get("schema"), validator)
        return out

    def operations(self) -> tuple[tuple[Any, ...], Any]:
        """The ``webhooks:`` list and the ``schedule:`` block (docs/operations.md)."""
        from wfcrawl.scheduling import cron  # croniter only when a document has a schedule
        from wfcrawl.workflow.plan import Webhook

        hooks = tuple(
            Webhook(spec["url"], frozenset(spec.get("events", ("finished", "failed"))), spec.get("secret_env"))
            for spec in self.doc.get("webhooks", ())
        )
        schedule = None
        if "schedule" in self.doc:
            schedule = cron.compile_schedule(self.doc["schedule"], ("schedule",), self.error)
        return hooks, schedule

    def compile(self) -> Plan | None:
        doc = self.doc
        phases_spec: dict[str, Any] = doc["phases"]
        first_phase = next(iter(phases_spec))
        starts = self.start_urls(first_phase)
        allowed = tuple(d.split(":")[0].lower() for d in doc.get("allowed_domains", ())) or tuple(
            dict.fromkeys((urlsplit(s.url).hostname or "") for s in starts)
        )
        phases: dict[str, Phase] = {}
        reachable = set(self.start_phases)
        for pname, pspec in phases_spec.items():
            ppath: DocPath = ("phases", pname)
            nodes = []
            produced: dict[str, DocPath] = {}
            for i, nspec in enumerate(pspec["nodes"]):
                npath = (*ppath, "nodes", i)
                node = self.node(nspec, npath, allowed)
                if node is not None:
                    nodes.append(node)
                if "marker" in nspec and nspec["type"] in ("extract_links", "paginate"):
                    produced.setdefault(nspec["marker"], (*npath, "marker"))
                if nspec["type"] == "form":
                    reachable.add(nspec["phase"])
                    if nspec["phase"] not in phases_spec:
                        self.error((*npath, "phase"), f"unknown phase {nspec['phase']!r}; phases: {', '.join(phases_spec)}")
            transitions = []
            routed: set[str] = set()
            for j, tspec in enumerate(pspec.get("transitions", ())):
                tpath = (*ppath, "transitions", j)
                if tspec["to"] not in phases_spec:
                    self.error((*tpath, "to"), f"unknown phase {tspec['to']!r}; phases: {', '.join(phases_spec)}")
                reachable.add(tspec["to"])
                markers = self.markers(tspec["marker"]) or frozenset()
                routed |= markers
                for marker in sorted(markers - set(produced)):
                    self.error((*tpath, "marker"), f"no node of phase {pname!r} produces links with marker {marker!r}")
                url = self.regex(tspec["url"], (*tpath, "url")) if "url" in tspec else None
                transitions.append(Transition(markers, tspec["to"], url, tspec.get("priority", 0)))
            for marker, mpath in produced.items():
                if marker not in routed:
                    self.error(mpath, f"no transition of phase {pname!r} routes marker {marker!r}; its links would all be dropped")
            phases[pname] = Phase(pname, tuple(nodes), tuple(transitions), self.markers(pspec.get("when_marker")),
                                  self.render(pspec, ppath))
        for pname in phases_spec:
            if pname not in reachable:
                self.error(("phases", pname), f"phase {pname!r} is unreachable: no start URL, transition or form leads to it", key=True)
        items = self.items(phases_spec)
        webhooks, schedule = self.operations()
        if self.problems:
            return None
        rate = doc.get("rate_limit", {})
        return Plan(
            name=doc["name"],
            source=self.source.name,
            start_urls=starts,
            phases=phases,
            max_depth=doc.get("max_depth"),
            allowed_domains=allowed,
            delay=rate.get("delay"),
            concurrency=rate.get("concurrency"),
            user_agent=doc.get("user_agent"),
            obey_robots=doc.get("obey_robots", True),
            env_names=tuple(dict.fromkeys(self.env_names)),
            items=items,
            webhooks=webhooks,
            schedule=schedule,
        )


def compile_source(
    source: Source, *, base_url: str | None = None, script_modules: tuple[str, ...] | None = None
) -> tuple[Plan | None, list[Problem]]:
    """Compile a schema-valid document; returns the plan or the problems."""
    compiler = _Compiler(source, base_url, script_modules)
    plan = compiler.compile()
    return plan, compiler.problems
