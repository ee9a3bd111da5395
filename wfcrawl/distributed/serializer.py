"""Requests to and from Redis as JSON: no pickle, so data in Redis cannot run code.

scrapy-redis's ``SCHEDULER_SERIALIZER`` hook: a module with ``dumps``/``loads``.
It serializes the dict of :meth:`scrapy.Request.to_dict` (callbacks by name).
JSON has no bytes and only string keys, so two tagged forms are used:

- ``{"$b": "<base64>"}`` for bytes (headers, body);
- ``{"$d": [[key, value], ...]}`` for a dict with a non-string key, or a key
  starting with ``$`` (so that user data can never be mistaken for a tag).

Tuples come back as lists. Anything else that is not plain data (str, int, float,
bool, None, list, tuple, dict, bytes) raises :class:`SerializationError` naming
where it is, e.g. ``meta['page_object']``.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from wfcrawl.exceptions import WfcrawlError


class SerializationError(WfcrawlError, TypeError):
    """A request holds a value that cannot travel through Redis as data."""

    def __init__(self, path: str, value: Any) -> None:
        self.path = path
        super().__init__(f"{path} holds a {type(value).__name__}, which cannot be sent through Redis (plain data only)")


def _key_path(path: str, key: Any) -> str:
    return f"{path}[{key!r}]"


def _plain(value: Any, path: str) -> Any:
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, bytes):
        return {"$b": base64.b64encode(value).decode("ascii")}
    if isinstance(value, (list, tuple)):
        return [_plain(v, f"{path}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict):
        if all(isinstance(k, str) and not k.startswith("$") for k in value):
            return {k: _plain(v, _key_path(path, k)) for k, v in value.items()}
        pairs = []
        for k, v in value.items():
            if not isinstance(k, (str, bytes, int, float, bool)) and k is not None:
                raise SerializationError(f"{path} key {k!r}", k)
            pairs.append([_plain(k, path), _plain(v, _key_path(path, k))])
        return {"$d": pairs}
    raise SerializationError(path, value)


def _restore(obj: dict[str, Any]) -> Any:
    if len(obj) == 1:
        if "$b" in obj:
            return base64.b64decode(obj["$b"])
        if "$d" in obj:
            return {_hashable(k): v for k, v in obj["$d"]}
    return obj


def _hashable(key: Any) -> Any:
    return tuple(key) if isinstance(key, list) else key


def dumps(obj: dict[str, Any]) -> bytes:
    """The request dict as compact UTF-8 JSON."""
    return json.dumps({k: _plain(v, k) for k, v in obj.items()}, separators=(",", ":"),
                      ensure_ascii=False, allow_nan=False).encode("utf-8")


def loads(data: bytes | str) -> dict[str, Any]:
    obj = json.loads(data, object_hook=_restore)
    if not isinstance(obj, dict):
        raise ValueError("a serialized request must be a JSON object")
    return obj
