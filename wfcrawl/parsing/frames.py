"""The frames parse workers and the crawl process exchange over the worker's
stdin and stdout: a 4-byte big-endian length, then a pickle (protocol 5).

Pickle is used because both ends are wfcrawl on the same machine, over a pipe
no one else holds; nothing from a workflow document or a page is ever
unpickled except what our own worker pickled.

Messages, crawl process -> worker:
  init:  ``{"text", "name", "options", "log_level"}`` (once, first)
  task:  :data:`Task` (one per page)

worker -> crawl process:
  ``("ready", pid)`` once the plan is compiled, or ``("init_error", text)``;
  then one :data:`Result` per task, in any order.
"""

from __future__ import annotations

import pickle
import struct
from typing import IO, Any

HEADER = struct.Struct(">I")

#: (task id, phase, marker, markers, depth, page number, url, response kind
#: ("html", "xml", "text"), Content-Type header or None, explicit encoding or None, body)
Task = tuple[int, str, str, tuple[str, ...], int, "int | None", str, str, "bytes | None", "str | None", bytes]

#: (task id, outputs, counts, warnings, logs, error). Outputs: ``(ITEM, type, data)``,
#: ``(LINK, url, marker, page, render)``, ``(FAILURE, label, error, traceback)``;
#: counts: {stat key: n}; warnings: [(key, msg, args)]; logs: [(logger, level, message)];
#: error: None, or the traceback of a failure outside the nodes (the page then fails
#: as a spider callback error would).
Result = tuple[int, list[tuple[Any, ...]], dict[str, int], list[tuple[Any, str, tuple[Any, ...]]],
               list[tuple[str, int, str]], "str | None"]

ITEM, LINK, FAILURE = 0, 1, 2


def encode(message: Any) -> bytes:
    payload = pickle.dumps(message, protocol=5)
    return HEADER.pack(len(payload)) + payload


def read(stream: IO[bytes]) -> Any:
    """The next message from a blocking stream; None at end of stream."""
    header = stream.read(HEADER.size)
    if len(header) < HEADER.size:
        return None
    (size,) = HEADER.unpack(header)
    payload = stream.read(size)
    if len(payload) < size:
        return None
    return pickle.loads(payload)


class FrameBuffer:
    """Splits a byte stream that arrives in pieces into messages."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[Any]:
        buffer = self._buffer
        buffer += data
        messages = []
        offset = 0
        end = len(buffer)
        with memoryview(buffer) as view:
            while end - offset >= HEADER.size:
                (size,) = HEADER.unpack_from(view, offset)
                if end - offset - HEADER.size < size:
                    break
                start = offset + HEADER.size
                messages.append(pickle.loads(view[start:start + size]))
                offset = start + size
        if offset:
            del buffer[:offset]
        return messages
