"""Reading a Kubernetes LIST answer as it arrives, keeping of each item only what the caller needs.

A page of 500 Jobs is about 1 MB of JSON; read into bytes and parsed whole with ``json.loads`` it
becomes some 4 MB of Python objects, all alive until the page has been trimmed. ``read_list``
parses the body in 64 KiB pieces with ijson (its C backend, yajl2) and hands each item to
``keep`` as soon as the item is complete, so a page costs one piece and one whole item at a time,
plus what ``keep`` returns.

The list's own ``metadata`` (its ``continue`` token) and the answer's top-level type are read by a
second, event-level ijson parser fed the same pieces until the metadata has gone by. The API
server writes ``metadata`` before ``items`` (the field order of Go's ``ListMeta`` and ``Items``),
so that is normally within the first few KiB; in any other order the second parser reads on to
the end, slower but with the same result.

A body that is not JSON, stops in the middle of its JSON, or is JSON but not an object raises
``UnreadableList`` (saying which), never a half list: a caller must not take a cut-off page for a
short one. The parser's own messages are not kept: they quote the body. Errors of the transport
(a connection dropped mid-answer, a read timeout) come from ``body.read`` and pass through as
they are.

Deliberately not here: the request, retries, or what an item means.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

CHUNK_BYTES = 64 * 1024  # what the item parser reads from the body at a time
HEAD_PIECE_BYTES = 4 * 1024  # what the metadata parser is fed at a time, so it can stop early
_VALUE_ENDS = frozenset({"end_map", "end_array", "null", "boolean", "integer", "double", "number", "string"})


class UnreadableList(ValueError):
    """A 2xx LIST answer that is not a whole JSON object."""

    NOT_JSON = "not JSON"
    TRUNCATED = "truncated"
    NOT_AN_OBJECT = "not an object"

    def __init__(self, problem: str):
        super().__init__(problem)
        self.problem = problem


def read_list(body, keep: Callable[[Any], Any] | None = None) -> tuple[list, str | None]:
    """The items of the LIST answer ``body`` (a file-like object of bytes), each passed through
    ``keep`` when given, and the list's ``metadata.continue`` (None when there is none)."""
    import ijson  # lazy: the parser loads at the first list, which keeps cold start low

    head = _ListHead(ijson)
    tap = _Tap(body, head)
    items: list = []
    try:
        for item in ijson.items(tap, "items.item", use_float=True, buf_size=CHUNK_BYTES):
            items.append(item if keep is None else keep(item))
    except ijson.JSONError:
        raise UnreadableList(UnreadableList.TRUNCATED if tap.at_end else UnreadableList.NOT_JSON) from None
    if not head.is_object:
        raise UnreadableList(UnreadableList.NOT_AN_OBJECT)
    return items, head.continue_token


class _ListHead:
    """ijson's target for the list's events: notes the top-level type and ``metadata.continue``,
    and says when the metadata has gone by (``done``), after which it is fed nothing more."""

    def __init__(self, ijson):
        self.is_object: bool | None = None
        self.continue_token: str | None = None
        self.done = False
        self._parser = ijson.parse_coro(self)

    def feed(self, chunk: bytes) -> None:
        for start in range(0, len(chunk), HEAD_PIECE_BYTES):
            if self.done:
                return
            self._parser.send(chunk[start:start + HEAD_PIECE_BYTES])

    def send(self, event: tuple[str, str, Any]) -> None:
        prefix, kind, value = event
        if self.is_object is None:
            self.is_object = kind == "start_map"
            self.done = not self.is_object
        elif prefix == "metadata.continue" and kind == "string":
            self.continue_token = value or None
        elif prefix == "metadata" and kind in _VALUE_ENDS:
            self.done = True


class _Tap:
    """The body as the item parser reads it, shown on the way to the metadata parser."""

    def __init__(self, body, head: _ListHead):
        self._body = body
        self._head = head
        self.at_end = False  # the body has ended: a parse error now means it was cut off

    def read(self, size: int = -1) -> bytes:
        chunk = self._body.read(size)
        if chunk:
            self._head.feed(chunk)
        elif size != 0:
            self.at_end = True
        return chunk
