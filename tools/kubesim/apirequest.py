"""A request and its answer as the API server's handlers see them, away from HTTP.

``Request`` and ``Response`` are what ``server`` turns HTTP into and back; ``json_response``
encodes an answer (or passes on cached object JSON), and ``query_int`` / ``dry_run`` read the
query parameters every verb shares, refusing bad values with 400 as kube-apiserver does.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from . import statuses

SEP = (",", ":")


@dataclass
class Request:
    method: str
    path: str
    query: Mapping[str, str] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""

    def header(self, name: str) -> str:
        for key, value in self.headers.items():
            if key.lower() == name.lower():
                return value
        return ""


@dataclass
class Response:
    code: int
    body: bytes
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


def json_response(code: int, doc: Any, headers: dict[str, str] | None = None) -> Response:
    """A JSON answer; ``doc`` may already be encoded bytes (cached object JSON)."""
    body = doc if isinstance(doc, bytes) else json.dumps(doc, separators=SEP).encode()
    return Response(code, body, "application/json", headers or {})


def query_int(query: Mapping[str, str], name: str) -> int | None:
    raw = query.get(name)
    if raw in (None, ""):
        return None
    try:
        return int(raw)
    except ValueError:
        raise statuses.bad_request(f"invalid value for {name}: {raw!r}") from None


def dry_run(req: Request, options: dict | None = None) -> bool:
    values = [req.query.get("dryRun", "")] + list((options or {}).get("dryRun") or [])
    if any(v and v != "All" for v in values):
        raise statuses.bad_request(f"Invalid dry run value: {values}")
    return "All" in values
