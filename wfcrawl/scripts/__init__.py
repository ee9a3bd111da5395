"""Ready-made callables for ``script`` nodes (``callable: wfcrawl.scripts.<module>:<function>``,
or by their entry-point names in the group ``wfcrawl.scripts``: ``jsonld``, ``tables``, ``cfemail``).

A script callable receives ``(response, context)`` (a
:class:`wfcrawl.workflow.ScriptContext`) and returns or yields
:class:`~wfcrawl.workflow.Item`, :class:`~wfcrawl.workflow.Link`,
:class:`~wfcrawl.workflow.Value` or, when the node sets ``item``, plain dicts.
The whole contract, with a tutorial: docs/scripts.md.
"""
