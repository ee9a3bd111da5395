"""The ``expect:`` block: what a successful crawl looks like, checked when it ends.

Compiled like the other parts of a document (:func:`compile_expectations` is
called by :mod:`wfcrawl.workflow.compile`): item types, fields, phases and node
labels it names must exist. The result also carries the facts of the document
the default checks need (the declared item types, every node); the checks
themselves are :func:`wfcrawl.outcome.decide`.
"""

from __future__ import annotations

from typing import Any

from wfcrawl.workflow.compiler import Compiler
from wfcrawl.workflow.itemspecs import item_producers
from wfcrawl.workflow.nodes.base import node_label
from wfcrawl.workflow.plan import Expectations, ItemExpectation, PhaseExpectation
from wfcrawl.workflow.source import DocPath


def node_labels(doc: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    """(phase, label) of every node, in document order (the label the compiler gives it)."""
    return tuple(
        (phase, node_label(nspec, i))
        for phase, pspec in doc["phases"].items()
        for i, nspec in enumerate(pspec["nodes"])
    )


def compile_expectations(c: Compiler) -> Expectations:
    producers, scripts = item_producers(c)
    declared = tuple(dict.fromkeys([*c.doc.get("items", {}), *producers]))
    nodes = node_labels(c.doc)
    spec = c.doc.get("expect", {})
    path: DocPath = ("expect",)
    items = {}
    for item_type, ispec in spec.get("items", {}).items():
        ipath = (*path, "items", item_type)
        if item_type not in declared and not scripts:
            c.error(ipath, f"no extract or script node produces items of type {item_type!r}", key=True)
        fields = {name for _, names in producers.get(item_type, ()) for name in names}
        for name in ispec.get("fill_rates", {}):
            if fields and name not in fields and not scripts:
                c.error((*ipath, "fill_rates", name),
                        f"{name!r} is not a field of {item_type!r} (fields: {', '.join(sorted(fields))})", key=True)
        items[item_type] = ItemExpectation(ispec.get("min_count"), dict(ispec.get("fill_rates", {})))
    phases = {}
    for phase, pspec in spec.get("phases", {}).items():
        ppath = (*path, "phases", phase)
        if c.unknown_phase(phase, ppath):
            continue
        labels = [label for p, label in nodes if p == phase]
        for i, label in enumerate(pspec.get("optional_nodes", ())):
            if label not in labels:
                c.error((*ppath, "optional_nodes", i),
                        f"phase {phase!r} has no node {label!r}; its nodes: {', '.join(labels)}")
        phases[phase] = PhaseExpectation(pspec.get("min_pages"), frozenset(pspec.get("optional_nodes", ())))
    return Expectations(
        items=items, phases=phases, max_error_rate=spec.get("max_error_rate"),
        error_rate_after=spec.get("error_rate_after", 100), on_unmet=spec.get("on_unmet", "failed"),
        item_types=declared, nodes=nodes,
    )
