"""Node types of the workflow language, one module each, looked up by ``type:``.

:data:`NODE_TYPES` maps each ``type`` to its compiler; importing this package
registers the built-in types.
"""

from __future__ import annotations

from wfcrawl.workflow.nodes import extract, form, links, paginate, script
from wfcrawl.workflow.nodes.base import NODE_TYPES, Node, NodeType, register
from wfcrawl.workflow.nodes.extract import ExtractNode
from wfcrawl.workflow.nodes.form import FormNode
from wfcrawl.workflow.nodes.links import LinksNode, host_allowed
from wfcrawl.workflow.nodes.paginate import PaginateNode
from wfcrawl.workflow.nodes.script import ScriptContext, ScriptNode

__all__ = [
    "NODE_TYPES", "ExtractNode", "FormNode", "LinksNode", "Node", "NodeType", "PaginateNode", "ScriptContext",
    "ScriptNode", "extract", "form", "host_allowed", "links", "paginate", "register", "script",
]
