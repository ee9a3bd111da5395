"""Ready-made callables for ``script`` nodes (``callable: wfcrawl.scripts.<module>:<function>``).

A script callable receives ``(response, context)`` (a
:class:`wfcrawl.workflow.ScriptContext`) and returns or yields
:class:`~wfcrawl.workflow.Item`, :class:`~wfcrawl.workflow.Link`,
:class:`~wfcrawl.workflow.Value` or, when the node sets ``item``, plain dicts.
"""
