"""``form``: submit a form of the page (hidden fields such as CSRF tokens carried over).

A form node submits once, or once per value of its ``iterate`` entries (every
combination of them): the options of a ``<select>`` of the form, the values a
selector finds on the page, or a list. Field values are templates over the
iterated values and the node's ``values``; the values are handed on to the
response's page (``var:``), so dependent selects chain through phases.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from wfcrawl.workflow.compiler import SELECTION_KEYS, Compiler
from wfcrawl.workflow.fields import Field, Scope, extract_object
from wfcrawl.workflow.fieldspec import compile_field, compile_values, uses_json
from wfcrawl.workflow.nodes.base import Node, NodeType, register
from wfcrawl.workflow.page import FormSubmit, Page
from wfcrawl.workflow.regex import Regex
from wfcrawl.workflow.selectors import Selection
from wfcrawl.workflow.source import DocPath
from wfcrawl.workflow.template import Template

#: Keys of an ``iterate`` entry that make up its selector (a field).
_FIELD_KEYS = (*SELECTION_KEYS, "attr", "re", "group")


@dataclass(frozen=True)
class Iteration:
    """One ``iterate`` entry: where its values come from, which form field they set."""

    name: str
    field: str | None  # form field set to each value (options: the select's name by default)
    options: str | None = None  # name of a <select> of the form
    values: tuple[str, ...] = ()  # a constant list
    source: Field | None = None  # values found on the page
    match: Regex | None = None
    exclude: Regex | None = None

    def choices(self, form: Any, page: Page) -> list[tuple[str, str]]:
        """(value, label) pairs, in page order, duplicates removed."""
        if self.options is not None:
            found = [(_option_value(o), " ".join(o.text_content().split()))
                     for o in form.xpath(".//select[@name=$name]//option[not(@disabled)]", name=self.options)]
        elif self.source is not None:
            extracted = self.source.extract(page.context_for(self.source.selection), Scope(page.values, page.base_url))
            found = [(str(v), str(v)) for v in extracted or () if v is not None and v != ""]
        else:
            found = [(v, v) for v in self.values]
        kept: dict[str, str] = {}
        for value, label in found:
            if value == "" or (self.match is not None and self.match.search(value) is None):
                continue
            if self.exclude is not None and self.exclude.search(value) is not None:
                continue
            kept.setdefault(value, label)
        return list(kept.items())


def _option_value(option: Any) -> str:
    value = option.get("value")
    return " ".join(option.text_content().split()) if value is None else str(value)


@dataclass(frozen=True)
class FormNode(Node):
    form: Selection | None
    fields: Mapping[str, Template]
    env: Mapping[str, str]
    click: str | bool | None  # a submit control's name; False: no control (a postback)
    phase: str
    marker: str
    iterate: tuple[Iteration, ...] = ()
    values: tuple[Field, ...] = ()
    values_json: bool = False
    limit: int | None = None

    def _form(self, page: Page) -> tuple[Any, Any] | None:
        """The <form> element and the control to click (None: the first, False: none)."""
        found = self.form.apply(page.root) if self.form is not None else page.root.xpath("//form")
        form = found[0] if found else None
        if form is None or getattr(form, "tag", None) != "form":
            return None
        if not isinstance(self.click, str):
            return form, self.click
        buttons = form.xpath(".//*[@name=$name][@type='submit' or self::button]", name=self.click)
        return (form, buttons[0]) if buttons else None

    def run(self, page: Page) -> Iterator[FormSubmit]:
        found = self._form(page)
        if found is None:
            page.count("wfcrawl/forms/not_found")
            page.warn_once(("form", self.label), "Form node %s found no form%s at %s", self.label,
                           f" with a submit control {self.click!r}" if isinstance(self.click, str) else "", page.url)
            return
        form, click = found
        values: dict[str, Any] = {}
        if self.values:
            context = page.json if self.values_json else page.root
            values = extract_object(self.values, context, Scope(page.values, page.base_url))
        choices = []
        for iteration in self.iterate:
            pairs = iteration.choices(form, page)
            if not pairs:  # e.g. the last page has no "next" link: a normal end, counted
                page.count("wfcrawl/forms/no_values")
                return
            choices.append([(iteration, value, label) for value, label in pairs])
        combinations: Iterator[tuple[tuple[Iteration, str, str], ...]] = itertools.product(*choices)
        total = math.prod(len(c) for c in choices)
        if self.limit is not None and total > self.limit:
            page.count("wfcrawl/forms/dropped/limit", total - self.limit)
            combinations = itertools.islice(combinations, self.limit)
        for combination in combinations:
            submission = dict(values)
            data: dict[str, str] = {}
            for iteration, value, label in combination:
                submission[iteration.name] = value
                if iteration.options is not None:
                    submission[f"{iteration.name}_label"] = label
                if iteration.field is not None:
                    data[iteration.field] = value
            for name, template in self.fields.items():
                text = template.expand(submission, url=False)
                if text is None:
                    page.count("wfcrawl/forms/dropped/missing_value")
                    break
                data[name] = text
            else:
                yield FormSubmit(self, form, data, submission, click)


def _iteration(c: Compiler, name: str, spec: dict[str, Any], path: DocPath) -> Iteration | None:
    kinds = [k for k in ("options", "list") if k in spec] + (["css/xpath/jmespath"] if any(
        k in spec for k in SELECTION_KEYS) else [])
    if len(kinds) != 1:
        c.error(path, "an iterate entry needs exactly one of options (a select's name), list, or a selector"
                + (f"; got {', '.join(kinds)}" if kinds else ""))
        return None
    match = c.regex(spec["match"], (*path, "match")) if "match" in spec else None
    exclude = c.regex(spec["exclude"], (*path, "exclude")) if "exclude" in spec else None
    if "options" in spec:
        extra = [k for k in _FIELD_KEYS if k in spec]
        if extra:
            c.error((*path, extra[0]), f"{extra[0]!r} applies to selector values, not to options", key=True)
        return Iteration(name, spec.get("field", spec["options"]), spec["options"], match=match, exclude=exclude)
    if "list" in spec:
        values = tuple(str(v).lower() if isinstance(v, bool) else str(v) for v in spec["list"])
        return Iteration(name, spec.get("field"), values=values, match=match, exclude=exclude)
    source = compile_field(c, name, {**{k: spec[k] for k in _FIELD_KEYS if k in spec}, "many": True}, path)
    if source is None:
        return None
    return Iteration(name, spec.get("field"), source=source, match=match, exclude=exclude)


def compile_form(
    c: Compiler, spec: dict[str, Any], path: DocPath, label: str, when: frozenset[str] | None
) -> FormNode | None:
    form = c.selection(spec, path) if any(k in spec for k in ("css", "xpath")) else None
    c.unknown_phase(spec["phase"], (*path, "phase"))
    c.env_names.extend(spec.get("env", {}).values())
    values = compile_values(c, spec.get("values"), (*path, "values"))
    iterations = []
    for name, ispec in spec.get("iterate", {}).items():
        iteration = _iteration(c, name, ispec, (*path, "iterate", name))
        if iteration is not None:
            iterations.append(iteration)
    names = [f.short_name for f in values]
    for name, ispec in spec.get("iterate", {}).items():
        names += [name, f"{name}_label"] if "options" in ispec else [name]
    fields = {}
    for name, value in spec.get("fields", {}).items():
        text = str(value).lower() if isinstance(value, bool) else str(value)
        template = c.template(text, (*path, "fields", name), names, hint="values' or 'iterate")
        if template is not None:
            fields[name] = template
    click = spec.get("click")
    if click is True:
        c.error((*path, "click"), "click: true is the default (the form's first submit control); "
                "give a control's name, or false to click none (a postback)")
    return FormNode(
        label, when, form, fields, dict(spec.get("env", {})), click, spec["phase"], spec.get("marker", "form"),
        tuple(iterations), values, uses_json(values), spec.get("limit"),
    )


register(NodeType("form", compile_form, leads_to="phase"))
