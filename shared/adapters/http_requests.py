"""What an HTTP request says: its JSON body (bounded, checked) and its route and query values."""

from __future__ import annotations

import json

import azure.functions as func

from shared.adapters.submits import EXTERNAL_ID, EXTERNAL_ID_RULE, RUN_ID, is_text, shown_path
from shared.errors import BadRequest, Forbidden, PayloadTooLarge, UnsupportedMediaType
from shared.settings import Settings
from shared.text import json_type

MAX_BODY_BYTES = 256 * 1024
# Deeper than this, no submit body is legitimate, and the parsers and encoders after json.loads
# recurse: a body of 100,000 nested brackets must be a 400, not a RecursionError (500).
MAX_JSON_DEPTH = 64


def json_body(req: func.HttpRequest) -> dict | None:
    """The request's JSON object, None for an empty body; 413/415/400 otherwise."""
    raw = req.get_body() or b""
    if len(raw) > MAX_BODY_BYTES:
        raise PayloadTooLarge(f"The body is {len(raw)} bytes; at most {MAX_BODY_BYTES} are accepted")
    if not raw.strip():
        return None
    ctype = (req.headers.get("content-type") or "").split(";")[0].strip().lower()
    if ctype and ctype != "application/json" and not ctype.endswith("+json"):
        raise UnsupportedMediaType(f"Content-Type must be application/json (got {ctype!r})",
                                   field="Content-Type")
    try:
        doc = json.loads(raw.decode("utf-8"))
    except RecursionError:
        raise BadRequest(f"The body is nested more than {MAX_JSON_DEPTH} levels deep", field="body") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadRequest(f"The body is not valid JSON: {str(exc)[:120]}", field="body") from None
    if not isinstance(doc, dict):
        raise BadRequest(f"The body must be a JSON object, not {json_type(doc)}", field="body")
    check_json_text(doc)
    return doc


def check_json_text(doc: dict) -> None:
    """400 for what json.loads accepts but nothing after it handles: nesting beyond
    ``MAX_JSON_DEPTH``, and lone UTF-16 surrogates (``"\\ud800"``), which are not Unicode text and
    break hashing, Table Storage and the cluster's JSON. Iterative: the walk itself must not recurse."""
    pending: list[tuple[object, str, int]] = [(doc, "body", 1)]
    while pending:
        value, where, depth = pending.pop()
        if depth > MAX_JSON_DEPTH:
            raise BadRequest(f"The body is nested more than {MAX_JSON_DEPTH} levels deep", field="body")
        if isinstance(value, dict):
            for key, item in value.items():
                path = shown_path(key) if where == "body" else f"{where}.{shown_path(key)}"
                if not is_text(key):
                    raise BadRequest(f"A key in {where} is not Unicode text (it holds a lone UTF-16 "
                                     "surrogate)", field=where)
                pending.append((item, path, depth + 1))
        elif isinstance(value, list):
            pending.extend((item, f"{where}[{i}]", depth + 1) for i, item in enumerate(value))
        elif isinstance(value, str) and not is_text(value):
            raise BadRequest(f"The value at {where} is not Unicode text (it holds a lone UTF-16 surrogate)",
                             field=where)


def namespace_of(req: func.HttpRequest, settings: Settings) -> str:
    ns = req.params.get("namespace") or settings.namespace
    if ns not in settings.allowed_namespaces:
        raise Forbidden(f"Namespace {ns[:80]!r} is not in ALLOWED_NAMESPACES", field="namespace")
    return ns


def external_id_of(req: func.HttpRequest) -> str:
    value = req.route_params.get("externalId") or ""
    if not EXTERNAL_ID.match(value):
        raise BadRequest(f"externalId {EXTERNAL_ID_RULE}", field="externalId")
    return value


def run_id_of(req: func.HttpRequest) -> str:
    value = req.route_params.get("runId") or ""
    if not RUN_ID.match(value):
        raise BadRequest("runId must be a run's Job name: lowercase letters, digits and '-', at most 63 "
                         "characters", field="runId")
    return value
