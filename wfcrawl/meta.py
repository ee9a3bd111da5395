"""Request meta keys wfcrawl sets. All values are plain JSON data.

=====================  =========================================================
``wfcrawl_phase``      phase whose nodes handle the response (str)
``wfcrawl_marker``     marker of the link that led here (str; ``start`` for seeds)
``wfcrawl_markers``    marker chain from the start URL, consecutive repeats once (list)
``wfcrawl_depth``      link hops from the start URL (int; 0 for seeds)
``wfcrawl_page``       page counter of ``paginate`` nodes (int, only on paged links)
``wfcrawl_vars``       values handed to the page: link ``values``, form iterations (dict)
``wfcrawl_render``     render block: fetch in a browser (dict, docs/rendering.md)
``wfcrawl_render_result``  set on rendered responses: clicks, scrolls, file paths (dict)
=====================  =========================================================
"""

from __future__ import annotations

PHASE = "wfcrawl_phase"
MARKER = "wfcrawl_marker"
MARKERS = "wfcrawl_markers"
DEPTH = "wfcrawl_depth"
PAGE = "wfcrawl_page"
VARS = "wfcrawl_vars"
RENDER = "wfcrawl_render"
RENDER_RESULT = "wfcrawl_render_result"
