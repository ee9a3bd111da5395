"""The frames parse workers and the crawl process exchange over the worker's
stdin and stdout: a 4-byte big-endian length, then a pickle (protocol 5).

Pickle is used because both ends are wfcrawl on the same machine, over a pipe
no one else holds; nothing from a workflow document or a page is ever
unpickled except what our own worker pickled.

Messages, crawl process -> worker:
  init:  ``{"text", "name", "options", "log_level"}`` (once, first)
  task:  :class:`Task` (one per page)

worker -> crawl process:
  ``("ready", pid)`` once the plan is compiled, or ``("init_error", text)``;
  then one :class:`Result` per task, in any order.
"""

from __future__ import annotations

import pickle
import struct
import traceback
from collections.abc import Iterable
from typing import IO, Any, NamedTuple

from scrapy.http import HtmlResponse, TextResponse, XmlResponse

from wfcrawl.workflow.page import FormSubmit, Item, Link, NodeFailure, Page

HEADER = struct.Struct(">I")


class Task(NamedTuple):
    """One page to parse (a tuple on the wire: pickled compactly)."""

    id: int
    phase: str
    marker: str
    markers: tuple[str, ...]
    depth: int
    page_number: int | None
    url: str
    #: "html", "xml" or "text": the response class (:data:`RESPONSE_CLASSES`).
    kind: str
    #: The Content-Type header, if any.
    content_type: bytes | None
    #: An explicit encoding, else None (inferred from the headers and body, as Scrapy does).
    encoding: str | None
    body: bytes
    #: The page's variables (link values, form iterations).
    variables: dict[str, Any]


class Result(NamedTuple):
    """What the worker sends back for a :class:`Task`."""

    id: int
    #: ``(ITEM, type, data)``, ``(LINK, url, marker, page, render, values, refetch, if_new)``,
    #: ``(FAILURE, label, error, traceback)``.
    outputs: list[tuple[Any, ...]]
    #: {stat key: n}
    counts: dict[str, int]
    #: [(key, msg, args)]: warnings once per key.
    warnings: list[tuple[Any, str, tuple[Any, ...]]]
    #: [(logger, level, message)]
    logs: list[tuple[str, int, str]]
    #: None, or the traceback of a failure outside the nodes (the page then fails
    #: as a spider callback error would).
    error: str | None = None


ITEM, LINK, FAILURE = 0, 1, 2

#: The response classes by the kind a :class:`Task` names.
RESPONSE_CLASSES: dict[str, type[TextResponse]] = {"html": HtmlResponse, "xml": XmlResponse, "text": TextResponse}


def response_kind(response: TextResponse) -> str:
    if isinstance(response, HtmlResponse):
        return "html"
    if isinstance(response, XmlResponse):
        return "xml"
    return "text"


def task(task_id: int, response: TextResponse, page: Page) -> Task:
    """The task for ``page`` (of ``response``)."""
    # An encoding given to the response (e.g. by a browser handler); None: the
    # worker infers it from the same headers and body, as this process would.
    encoding = getattr(response, "_encoding", None)
    return Task(
        task_id, page.phase, page.marker, page.markers, page.depth, page.page_number,
        response.url, response_kind(response), response.headers.get(b"Content-Type"), encoding, response.body,
        dict(page.variables),
    )


def encode_outputs(outputs: Iterable[Item | Link | FormSubmit | NodeFailure]) -> list[tuple[Any, ...]]:
    """A page's outputs as a :class:`Result` carries them (the worker's side)."""
    encoded: list[tuple[Any, ...]] = []
    for out in outputs:
        if isinstance(out, Link):
            encoded.append((LINK, out.url, out.marker, out.page, out.render, out.values, out.refetch, out.if_new))
        elif isinstance(out, Item):
            encoded.append((ITEM, out.type, out.data))
        elif isinstance(out, NodeFailure):
            text = "".join(traceback.format_exception(out.exc)) if out.exc is not None else None
            encoded.append((FAILURE, out.label, out.error, text))
        else:  # offloadable phases yield nothing else
            raise TypeError(f"a parse worker cannot send {type(out).__name__}")
    return encoded


def decode_outputs(outputs: list[tuple[Any, ...]]) -> list[Item | Link | NodeFailure]:
    """The outputs a :class:`Result` carries (the crawl process's side)."""
    decoded: list[Item | Link | NodeFailure] = []
    for out in outputs:
        kind = out[0]
        if kind == LINK:
            decoded.append(Link(*out[1:]))
        elif kind == ITEM:
            decoded.append(Item(out[1], out[2]))
        elif kind == FAILURE:
            decoded.append(NodeFailure(out[1], out[2], None, out[3]))
    return decoded


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
