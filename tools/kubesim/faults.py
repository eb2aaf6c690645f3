"""Injected failures: what a flaky network or an overloaded API server does to a request.

* ``status``: answer ``status`` (429, 500, 503, ...) with a proper ``Status`` body; ``retry_after``
  adds a ``Retry-After`` header (and ``details.retryAfterSeconds`` on a 429), ``message`` overrides
  the message;
* ``latency``: wait ``seconds`` (real time) and then answer normally;
* ``drop``: close the connection without answering;
* ``hang``: answer nothing for ``seconds``, then close (a client timeout fires first);
* ``cut``: the request is served, but only the first ``keep`` bytes of the answer's body go out.
  By default the headers still announce the whole body and the connection is closed after the
  part (a connection lost mid-answer: the client sees an incomplete read); with ``framed=True``
  the part goes out as if it were the whole body (``Content-Length`` of the part, connection
  kept), as a proxy that passed on half an answer would;
* ``body``: answer ``status`` (200 unless given) with the bytes ``body`` as ``content_type``
  (``text/html`` unless given) instead of serving the request: a login or error page of a proxy.

A fault matches by HTTP method (``"*"`` for any) and a regular expression searched in the path
(without the query), fires ``times`` times (``None``: until cleared), and the first live match
wins. Deliberately not here: the HTTP mechanics of each fault (``server``).
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass

KINDS = ("status", "latency", "drop", "hang", "cut", "body")
OPTIONS = {"status", "retry_after", "seconds", "message", "keep", "framed", "body", "content_type"}


@dataclass
class Fault:
    method: str
    path: re.Pattern
    kind: str
    times: int | None = 1
    status: int = 500
    retry_after: float | None = None
    seconds: float = 1.0
    message: str | None = None
    keep: int = 0  # cut: bytes of the body that go out
    framed: bool = False  # cut: the part is announced as the whole body
    body: bytes = b""  # body: what is answered instead
    content_type: str = "text/html"
    fired: int = 0

    @property
    def exhausted(self) -> bool:
        return self.times is not None and self.fired >= self.times


class FaultBook:
    def __init__(self) -> None:
        self._faults: list[Fault] = []
        self._lock = threading.Lock()

    def add(self, method: str, path_regex: str, kind: str, times: int | None = 1, **opts) -> Fault:
        if kind not in KINDS:
            raise ValueError(f"unknown fault {kind!r}; expected one of {KINDS}")
        unknown = set(opts) - OPTIONS
        if unknown:
            raise ValueError(f"unknown fault option(s) {sorted(unknown)}")
        if times is not None and times < 1:
            raise ValueError("times must be >= 1, or None for a fault that stays until cleared")
        if kind == "body":
            opts.setdefault("status", 200)
            if isinstance(opts.get("body"), str):
                opts["body"] = opts["body"].encode()
        fault = Fault(method.upper(), re.compile(path_regex), kind, times, **opts)
        with self._lock:
            self._faults.append(fault)
        return fault

    def take(self, method: str, path: str) -> Fault | None:
        """The fault this request meets, counted as fired; None when the request goes through."""
        with self._lock:
            for fault in self._faults:
                if fault.exhausted:
                    continue
                if fault.method in ("*", method) and fault.path.search(path):
                    fault.fired += 1
                    return fault
        return None

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    @property
    def active(self) -> list[Fault]:
        with self._lock:
            return [f for f in self._faults if not f.exhausted]
