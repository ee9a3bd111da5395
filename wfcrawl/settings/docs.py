"""Write the settings tables of the docs from the settings table.

``python -m wfcrawl.settings.docs [--check] [DOCS_DIR]`` (``DOCS_DIR``: ``docs``):
in each page, the lines between ``<!-- settings:start -->`` and
``<!-- settings:end -->`` become the page's :func:`~wfcrawl.settings.table.markdown_table`.
A page with several settings tables names a section in each start marker
(``<!-- settings:start metrics -->`` lists the settings whose ``page`` is
``operations.md#metrics``). ``--check`` writes nothing and exits 1 when a page
is stale (tests/test_docs.py runs it).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from wfcrawl.settings.table import markdown_table, table

MARKERS = re.compile(
    r"(?P<start><!-- settings:start(?: (?P<section>[\w-]+))? -->\n)(?P<body>.*?)(?P<end><!-- settings:end -->)",
    re.DOTALL,
)


def _key(page: str, section: str | None) -> str:
    return f"{page}#{section}" if section else page


def rendered(path: Path) -> tuple[str, set[str]]:
    """The page with its settings tables written, and the table keys it holds."""
    keys: set[str] = set()

    def write(match: re.Match[str]) -> str:
        key = _key(path.name, match["section"])
        keys.add(key)
        # The blank line ends the table (GitHub would read the marker as a row).
        return f"{match['start']}{markdown_table(key)}\n\n{match['end']}"

    return MARKERS.sub(write, path.read_text()), keys


def problems(docs: Path) -> tuple[list[Path], list[str]]:
    """(stale pages, problems): pages whose tables differ from the settings table,
    and pages of settings without markers, or markers that list no setting."""
    wanted = {spec.page for spec in table().values()}
    stale: list[Path] = []
    found: set[str] = set()
    for path in sorted(docs.glob("*.md")):
        text, keys = rendered(path)
        found |= keys
        if text != path.read_text():
            stale.append(path)
    messages = [f"{key}: settings with no '<!-- settings:start -->' table in {docs}" for key in sorted(wanted - found)]
    messages += [f"{key}: a settings table of no setting" for key in sorted(found - wanted)]
    return stale, messages


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m wfcrawl.settings.docs", description=__doc__.split("\n\n")[0])
    parser.add_argument("docs", nargs="?", default="docs", type=Path, help="the docs folder (default: docs)")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 when a page is stale")
    args = parser.parse_args(argv)
    stale, messages = problems(args.docs)
    for message in messages:
        print(message, file=sys.stderr)
    for path in stale:
        if args.check:
            print(f"{path}: settings tables are stale (python -m wfcrawl.settings.docs)", file=sys.stderr)
        else:
            path.write_text(rendered(path)[0])
            print(f"{path}: settings tables written")
    return 1 if messages or (args.check and stale) else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
