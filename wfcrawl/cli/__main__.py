"""``python -m wfcrawl.cli``: the ``wfcrawl`` console command."""

from __future__ import annotations

import sys

from wfcrawl.cli import main

sys.exit(main())
