"""Semantic checks and compilation of a schema-valid document into a Plan.

Compiling *is* the semantic check: a selector, regex or JMESPath expression
that does not compile, a transition to a phase that does not exist, an
unreachable phase, a marker no transition routes, a script callable that
cannot be imported: each is a located problem, all collected in one pass.
Node types compile through their registry (:mod:`wfcrawl.workflow.nodes`).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urljoin, urlsplit

from wfcrawl.exceptions import Problem
from wfcrawl.workflow.compiler import Compiler
from wfcrawl.workflow.expectations import compile_expectations
from wfcrawl.workflow.itemspecs import compile_items
from wfcrawl.workflow.nodes import NODE_TYPES, Node
from wfcrawl.workflow.nodes.base import node_label
from wfcrawl.workflow.plan import (
    DEFAULT_WEBHOOK_EVENTS,
    Phase,
    Plan,
    StartURL,
    Transition,
    Webhook,
    webhook_events,
)
from wfcrawl.workflow.schedule import compile_schedule
from wfcrawl.workflow.source import DocPath, Source


def compile_source(
    source: Source, *, base_url: str | None = None, script_modules: tuple[str, ...] | None = None
) -> tuple[Plan | None, list[Problem]]:
    """Compile a schema-valid document; returns the plan or the problems."""
    c = Compiler(source, base_url, script_modules)
    plan = _plan(c)
    return (None if c.problems else plan), c.problems


def _plan(c: Compiler) -> Plan:
    doc = c.doc
    reachable: set[str] = set()
    starts = _start_urls(c, reachable)
    c.allowed_domains = tuple(d.split(":")[0].lower() for d in doc.get("allowed_domains", ())) or tuple(
        dict.fromkeys((urlsplit(s.url).hostname or "") for s in starts)
    )
    phases = {name: _phase(c, name, spec, reachable) for name, spec in doc["phases"].items()}
    _check_when_markers(c)
    for name in phases:
        if name not in reachable:
            c.error(("phases", name), f"phase {name!r} is unreachable: no start URL, transition or form leads to it",
                    key=True)
    rate = doc.get("rate_limit", {})
    return Plan(
        name=doc["name"], source=c.source.name, start_urls=starts, phases=phases,
        max_depth=doc.get("max_depth"), allowed_domains=c.allowed_domains,
        delay=rate.get("delay"), concurrency=rate.get("concurrency"),
        user_agent=doc.get("user_agent"), obey_robots=doc.get("obey_robots", True),
        headers=dict(doc.get("headers", {})),
        env_names=tuple(dict.fromkeys(c.env_names)), items=compile_items(c),
        webhooks=_webhooks(c),
        schedule=compile_schedule(doc["schedule"], ("schedule",), c.error) if "schedule" in doc else None,
        expect=compile_expectations(c),
    )


def url_problem(url: str) -> str | None:
    """Why ``url`` is not a URL at all (``https://[::1``, a port of letters), or None."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not one
    except ValueError as exc:
        return f"invalid URL {url!r}: {exc}"
    return None


def _webhooks(c: Compiler) -> tuple[Webhook, ...]:
    out = []
    for i, spec in enumerate(c.doc.get("webhooks", ())):
        problem = url_problem(spec["url"])
        if problem is not None:
            c.error(("webhooks", i, "url"), problem)
            continue
        line, column = c.source.position(("webhooks", i))
        events = webhook_events(spec.get("events", DEFAULT_WEBHOOK_EVENTS))
        out.append(Webhook(spec["url"], events, spec.get("secret_env"), line, column, f"$.webhooks[{i}]"))
    return tuple(out)


def _start_urls(c: Compiler, reachable: set[str]) -> tuple[StartURL, ...]:
    first_phase = next(iter(c.doc["phases"]))
    out = []
    for i, spec in enumerate(c.doc["start_urls"]):
        path: DocPath = ("start_urls", i)
        if isinstance(spec, str):
            spec = {"url": spec}
        url, phase = spec["url"], spec.get("phase", first_phase)
        reachable.add(phase)  # reachable even when the URL itself is wrong: report that, not a cascade
        problem = url_problem(url)
        if problem is not None:
            c.error((*path, "url") if (*path, "url") in c.source.positions else path, problem)
            continue
        if not urlsplit(url).scheme:
            if not c.base_url:
                c.error((*path, "url") if (*path, "url") in c.source.positions else path,
                        f"relative URL {url!r} needs base_url")
                continue
            problem = url_problem(c.base_url)
            if problem is not None:
                c.error(("base_url",) if "base_url" in c.doc else path, problem)
                continue
            url = urljoin(c.base_url, url)
            problem = url_problem(url)
            if problem is not None:
                c.error(path, problem)
                continue
        if urlsplit(url).scheme not in ("http", "https"):
            c.error(path, f"start URL {url!r} must be http or https")
            continue
        out.append(StartURL(url, phase, spec.get("marker", "start")))
        c.unknown_phase(phase, (*path, "phase"))
    return tuple(out)


def _phase(c: Compiler, name: str, spec: dict[str, Any], reachable: set[str]) -> Phase:
    path: DocPath = ("phases", name)
    nodes: list[Node] = []
    produced: dict[str, DocPath] = {}  # marker -> where a node that routes it names it
    for i, nspec in enumerate(spec["nodes"]):
        npath = (*path, "nodes", i)
        node_type = NODE_TYPES[nspec["type"]]  # the schema allows no other type
        label = node_label(nspec, i)
        node = node_type.compile(c, nspec, npath, label, c.markers(nspec.get("when_marker")))
        if node is not None:
            nodes.append(node)
        if node_type.routes is not None and node_type.routes in nspec:
            routed = nspec[node_type.routes]
            for j, marker in enumerate([routed] if isinstance(routed, str) else routed):
                mpath = (*npath, node_type.routes) if isinstance(routed, str) else (*npath, node_type.routes, j)
                produced.setdefault(marker, mpath)
        if node_type.leads_to is not None:
            reachable.add(nspec[node_type.leads_to])
    transitions = _transitions(c, name, spec.get("transitions", ()), produced, reachable)
    return Phase(name, tuple(nodes), transitions, c.markers(spec.get("when_marker")), c.render(spec, path))


def _transitions(
    c: Compiler, phase: str, specs: Any, produced: dict[str, DocPath], reachable: set[str]
) -> tuple[Transition, ...]:
    out = []
    routed: set[str] = set()
    for j, tspec in enumerate(specs):
        tpath: DocPath = ("phases", phase, "transitions", j)
        c.unknown_phase(tspec["to"], (*tpath, "to"))
        reachable.add(tspec["to"])
        markers = c.markers(tspec["marker"]) or frozenset()
        routed |= markers
        for marker in sorted(markers - set(produced)):
            c.error((*tpath, "marker"), f"no node of phase {phase!r} produces links with marker {marker!r}")
        url = c.regex(tspec["url"], (*tpath, "url")) if "url" in tspec else None
        out.append(Transition(markers, tspec["to"], url, tspec.get("priority", 0)))
    for marker, mpath in produced.items():
        if marker not in routed:
            c.error(mpath, f"no transition of phase {phase!r} routes marker {marker!r}; its links would all be dropped")
    return tuple(out)


def _check_when_markers(c: Compiler) -> None:
    """A ``when_marker`` (of a phase or a node) naming a marker that never reaches its phase."""
    arriving: dict[str, set[str]] = {name: set() for name in c.doc["phases"]}
    first_phase = next(iter(c.doc["phases"]))
    for start in c.doc["start_urls"]:  # as written: a start URL with a problem still brings its marker
        spec = start if isinstance(start, dict) else {}
        arriving.setdefault(spec.get("phase", first_phase), set()).add(spec.get("marker", "start"))
    for spec in c.doc["phases"].values():
        for tspec in spec.get("transitions", ()):
            arriving.setdefault(tspec["to"], set()).update(c.markers(tspec["marker"]) or ())
        for nspec in spec["nodes"]:
            if nspec["type"] == "form":
                arriving.setdefault(nspec["phase"], set()).add(nspec.get("marker", "form"))
    for name, spec in c.doc["phases"].items():
        places: list[tuple[Any, DocPath]] = [(spec.get("when_marker"), ("phases", name, "when_marker"))]
        places += [(n.get("when_marker"), ("phases", name, "nodes", i, "when_marker"))
                   for i, n in enumerate(spec["nodes"])]
        for when, path in places:
            if when is None:
                continue
            for j, marker in enumerate([when] if isinstance(when, str) else when):
                if marker not in arriving[name]:
                    known = ", ".join(sorted(arriving[name])) or "none"
                    c.error(path if isinstance(when, str) else (*path, j),
                            f"marker {marker!r} never reaches phase {name!r}; the markers that do: {known}")
