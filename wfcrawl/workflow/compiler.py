"""What every part of the compiler shares: the document, its problems, the pieces.

A :class:`Compiler` is made per document. Each part (start URLs, node types,
fields, transitions, the ``items:`` section) takes it, compiles its part of
the document and reports problems through :meth:`Compiler.error`; compiling
goes on after a problem, so one pass finds them all.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from wfcrawl.exceptions import Problem
from wfcrawl.workflow import render as render_spec
from wfcrawl.workflow.regex import Regex, RegexError, compile_regex, describe
from wfcrawl.workflow.selectors import Selection, SelectionError, compile_selection
from wfcrawl.workflow.source import DocPath, Source
from wfcrawl.workflow.template import Template, TemplateError, parse_template

SELECTION_KEYS = ("css", "xpath", "jmespath")


class Compiler:
    def __init__(self, source: Source, base_url: str | None, script_modules: tuple[str, ...] | None) -> None:
        self.source = source
        self.doc: dict[str, Any] = source.data
        self.base_url: str | None = base_url or self.doc.get("base_url")
        self.script_modules = script_modules
        self.problems: list[Problem] = []
        #: Environment variables form nodes read (the launcher checks them).
        self.env_names: list[str] = []
        #: Domains extract_links nodes keep by default (set before nodes compile).
        self.allowed_domains: tuple[str, ...] = ()

    @property
    def phase_names(self) -> list[str]:
        return list(self.doc["phases"])

    def error(self, path: DocPath, message: str, *, key: bool = False) -> None:
        self.problems.append(self.source.problem(path, message, kind="semantic", key=key))

    def unknown_phase(self, name: str, path: DocPath) -> bool:
        """Report ``name`` at ``path`` if it is not a phase; True when it is unknown."""
        if name in self.doc["phases"]:
            return False
        self.error(path, f"unknown phase {name!r}; phases: {', '.join(self.phase_names)}")
        return True

    def regex(self, pattern: str, path: DocPath) -> Regex | None:
        """A document regex, on RE2 (linear time; see :mod:`wfcrawl.workflow.regex`)."""
        try:
            return compile_regex(pattern)
        except RegexError as exc:
            self.error(path, describe(pattern, exc))
            return None

    def regexes(self, spec: Any, path: DocPath) -> tuple[Regex, ...]:
        """One pattern or a list of them (``allow``, ``deny``)."""
        if spec is None:
            return ()
        items = [spec] if isinstance(spec, str) else spec
        paths = [path] if isinstance(spec, str) else [(*path, i) for i in range(len(items))]
        compiled = [self.regex(p, at) for p, at in zip(items, paths, strict=True)]
        return tuple(c for c in compiled if c is not None)

    def selection(self, spec: dict[str, Any], path: DocPath, *, default: str | None = None) -> Selection | None:
        """The one css/xpath/jmespath key of ``spec`` (an error when several)."""
        given = [k for k in SELECTION_KEYS if k in spec]
        if len(given) > 1:
            self.error((*path, given[1]), f"give only one of {', '.join(given)}", key=True)
            return None
        if not given:
            return None if default is None else self.compile_selection("css", default, path)
        kind = given[0]
        return self.compile_selection(kind, spec[kind], (*path, kind))

    def selection_value(self, spec: Any, path: DocPath) -> Selection | None:
        """A `selection` schema value: a CSS string or a one-key mapping."""
        if isinstance(spec, str):
            return self.compile_selection("css", spec, path)
        return self.selection(spec, path)

    def compile_selection(self, kind: str, expression: str, path: DocPath) -> Selection | None:
        try:
            return compile_selection(kind, expression)
        except SelectionError as exc:
            self.error(path, str(exc))
            return None

    def template(self, text: str, path: DocPath, names: Iterable[str], *, hint: str = "values") -> Template | None:
        """A ``{name}`` template whose names are all among ``names`` (each unknown one reported)."""
        try:
            template = parse_template(text)
        except TemplateError as exc:
            self.error(path, f"invalid template {text!r}: {exc}")
            return None
        known = sorted(set(names))
        unknown = [n for n in template.names if n not in known]
        for name in unknown:
            listed = f"names: {', '.join(known)}" if known else f"no names are defined here: give them in {hint!r}"
            self.error(path, f"unknown name {name!r} in template {text!r}; {listed}")
        return None if unknown else template

    @staticmethod
    def markers(spec: Any) -> frozenset[str] | None:
        """A marker or a list of markers (``when_marker``, a transition's ``marker``)."""
        if spec is None:
            return None
        return frozenset([spec] if isinstance(spec, str) else spec)

    def render(self, spec: dict[str, Any], path: DocPath) -> dict[str, Any] | None:
        """The plain-data render block of a phase or node (selectors checked)."""
        if "render" not in spec:
            return None
        return render_spec.compile_render(spec["render"], (*path, "render"), self.error)
