"""``Status`` bodies shaped exactly as the Kubernetes API server shapes them.

Clients branch on ``code``, ``reason`` and ``details`` (``KubeError`` in ``shared/kube/errors.py``
does), so every failure the simulator answers goes through one of these builders. Messages follow
the API server's wording (``jobs.batch "x" not found``, ``Job.batch "x" is invalid: ...``) because
people read them in logs and tests compare them.

Deliberately not here: deciding *when* a request fails (that is ``apiserver`` / ``validation``).
Nothing in a Status echoes a whole object: only names, field paths and the offending field value.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from .kinds import Resource


class ApiError(Exception):
    """A request the simulated API server answers with a ``Status`` and a non-2xx code."""

    def __init__(self, body: dict, headers: dict[str, str] | None = None):
        super().__init__(body.get("message", ""))
        self.body = body
        self.code: int = body["code"]
        self.headers = headers or {}


def status(code: int, reason: str, message: str, details: dict | None = None, *,
           metadata: dict | None = None) -> dict:
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": metadata or {},
        "status": "Failure",
        "message": message,
        "reason": reason,
    }
    if details is not None:
        body["details"] = details
    body["code"] = code
    return body


def _details(res: Resource, name: str, kind: str | None = None) -> dict:
    details = {"name": name}
    if res.group:
        details["group"] = res.group
    details["kind"] = kind or res.plural
    return details


def success(res: Resource, name: str, uid: str) -> dict:
    """What a DELETE answers when the object was removed at once (no finalizers left)."""
    details = _details(res, name)
    details["uid"] = uid
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details}


def not_found(res: Resource, name: str) -> ApiError:
    return ApiError(status(404, "NotFound", f'{res.qualified} "{name}" not found', _details(res, name)))


def route_not_found() -> ApiError:
    return ApiError(status(404, "NotFound", "the server could not find the requested resource", {}))


def already_exists(res: Resource, name: str) -> ApiError:
    return ApiError(status(409, "AlreadyExists", f'{res.qualified} "{name}" already exists', _details(res, name)))


def conflict(res: Resource, name: str, why: str = "the object has been modified; please apply your "
             "changes to the latest version and try again") -> ApiError:
    return ApiError(status(409, "Conflict", f'Operation cannot be fulfilled on {res.qualified} "{name}": {why}',
                           _details(res, name)))


def bad_request(message: str) -> ApiError:
    return ApiError(status(400, "BadRequest", message))


def method_not_allowed() -> ApiError:
    return ApiError(status(405, "MethodNotAllowed", "the server does not allow this method on the requested resource",
                           {}))


def unsupported_media_type(content_type: str) -> ApiError:
    return ApiError(status(415, "UnsupportedMediaType",
                           f"the body of the request was in an unknown format - accepted media types include: "
                           f"application/json-patch+json, application/merge-patch+json, "
                           f"application/strategic-merge-patch+json (got {content_type!r})"))


def unauthorized() -> ApiError:
    return ApiError(status(401, "Unauthorized", "Unauthorized"))


# The API server's own message for an expired continue token, including the offer of a token that
# finishes the list inconsistently (apiserver returns it in metadata.continue since k8s 1.12).
EXPIRED_CONTINUE = (
    "The provided continue parameter is too old to display a consistent list result. You can start a new "
    "list without the continue parameter, or use the continue token in this response to retrieve the "
    "remainder of the results. Continuing with the provided token results in an inconsistent list - objects "
    "that were created, modified, or deleted between the time the first chunk was returned and now may show "
    "up in the list."
)


def expired(inconsistent_continue: str | None) -> ApiError:
    metadata = {"continue": inconsistent_continue} if inconsistent_continue else {}
    return ApiError(status(410, "Expired", EXPIRED_CONTINUE, metadata=metadata))


# Reasons and messages for codes a fault may inject: what a real API server (or the load
# balancer in front of it) says for each.
_BY_CODE: dict[int, tuple[str, str]] = {
    400: ("BadRequest", "the server rejected our request for an unknown reason"),
    401: ("Unauthorized", "Unauthorized"),
    403: ("Forbidden", "forbidden: the request was denied by the simulator's injected fault"),
    404: ("NotFound", "the server could not find the requested resource"),
    405: ("MethodNotAllowed", "the server does not allow this method on the requested resource"),
    409: ("Conflict", "the server reported a conflict"),
    410: ("Expired", EXPIRED_CONTINUE),
    422: ("Invalid", "the server rejected the object"),
    429: ("TooManyRequests", "Too many requests, please try again later."),
    500: ("InternalError", "Internal error occurred: injected fault"),
    502: ("InternalError", "an error on the server (\"Bad Gateway\") has prevented the request from succeeding"),
    503: ("ServiceUnavailable", "the server is currently unable to handle the request"),
    504: ("Timeout", "Timeout: request did not complete within requested timeout - context deadline exceeded"),
}


def for_code(code: int, message: str | None = None, retry_after: float | None = None) -> ApiError:
    reason, default = _BY_CODE.get(code, ("InternalError" if code >= 500 else "BadRequest", f"HTTP {code}"))
    details: dict | None = None
    if code == 429:
        details = {"retryAfterSeconds": int(retry_after if retry_after is not None else 1)}
    elif code == 500:
        details = {"causes": [{"message": message or "injected fault"}]}
    headers = {}
    if retry_after is not None or code == 429:
        headers["Retry-After"] = str(int(retry_after if retry_after is not None else 1))
    return ApiError(status(code, reason, message or default, details), headers)


# --- field errors (k8s.io/apimachinery/pkg/util/validation/field) ---------------------------------

_TYPE_TEXT = {
    "FieldValueRequired": "Required value",
    "FieldValueInvalid": "Invalid value",
    "FieldValueNotSupported": "Unsupported value",
    "FieldValueDuplicate": "Duplicate value",
    "FieldValueForbidden": "Forbidden",
    "FieldValueTooLong": "Too long",
}

_NO_VALUE = object()


@dataclass(frozen=True)
class FieldError:
    """One validation failure, rendered like ``field.Error`` (``<field>: <type>: <value>: <detail>``)."""

    reason: str
    field: str
    detail: str = ""
    value: Any = field(default=_NO_VALUE, compare=False)

    def body(self) -> str:
        text = _TYPE_TEXT.get(self.reason, self.reason)
        if self.reason not in ("FieldValueRequired", "FieldValueForbidden", "FieldValueTooLong") \
                and self.value is not _NO_VALUE:
            text = f"{text}: {go_value(self.value)}"
        if self.detail:
            text = f"{text}: {self.detail}"
        return text

    def __str__(self) -> str:
        return f"{self.field}: {self.body()}"


def required(path: str, detail: str = "") -> FieldError:
    return FieldError("FieldValueRequired", path, detail)


def invalid(path: str, value: Any, detail: str) -> FieldError:
    return FieldError("FieldValueInvalid", path, detail, value)


def not_supported(path: str, value: Any, supported: list[str]) -> FieldError:
    return FieldError("FieldValueNotSupported", path, "supported values: " + ", ".join(f'"{s}"' for s in supported),
                      value)


def duplicate(path: str, value: Any) -> FieldError:
    return FieldError("FieldValueDuplicate", path, "", value)


def forbidden(path: str, detail: str) -> FieldError:
    return FieldError("FieldValueForbidden", path, detail)


def go_value(value: Any) -> str:
    """Render a bad value the way Go's ``%q`` / ``%v`` / ``%#v`` would in a field error."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, dict) and all(isinstance(v, str) for v in value.values()):
        inner = ", ".join(f"{json.dumps(k)}:{json.dumps(v)}" for k, v in sorted(value.items()))
        return "map[string]string{" + inner + "}"
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def invalid_object(res: Resource, name: str, errors: list[FieldError]) -> ApiError:
    """422 Invalid, with one cause per error and the aggregated (de-duplicated) message."""
    causes = [{"reason": e.reason, "message": e.body(), "field": e.field} for e in errors]
    seen: list[str] = []
    for e in errors:
        if str(e) not in seen:
            seen.append(str(e))
    aggregate = seen[0] if len(seen) == 1 else "[" + ", ".join(seen) + "]"
    message = f'{res.qualified_kind} "{name}" is invalid: {aggregate}'
    details = {"name": name}
    if res.group:
        details["group"] = res.group
    details["kind"] = res.kind
    details["causes"] = causes
    return ApiError(status(422, "Invalid", message, details))
