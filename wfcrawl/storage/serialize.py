"""Item JSON that every store accepts.

PostgreSQL's jsonb refuses ``\\u0000`` and lone UTF-16 surrogates, and strict
JSON parsers (BigQuery, jq, PostgreSQL) refuse ``NaN``/``Infinity``. Rather than
let one such value block a batch forever, they are replaced (NUL and lone
surrogates by U+FFFD, non-finite numbers by null) and the item is counted as
sanitized.
"""

from __future__ import annotations

import json
import math
from typing import Any

# One encoder: json.dumps() with non-default options builds a new encoder per call.
_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"), default=str)
_text = _ENCODER.encode


def _clean(value: Any) -> Any:
    if isinstance(value, str):
        value = value.replace("\x00", "\ufffd")
        if value.isascii():
            return value
        return value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {_clean(str(k)): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def dumps(value: Any) -> tuple[str, bool]:
    """Compact JSON text of ``value`` and whether it had to be sanitized."""
    try:
        text = _text(value)
        if "\\u0000" not in text:
            if not text.isascii():
                text.encode("utf-8")  # lone surrogates fail here
            return text, False
    except (ValueError, UnicodeEncodeError):  # NaN/Infinity; surrogates
        pass
    cleaned = _text(_clean(value))
    try:
        return cleaned, cleaned != _text(value)
    except ValueError:
        return cleaned, True
