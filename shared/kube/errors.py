"""The project's own Kubernetes errors, built from the API server's ``Status`` body.

The official client raises ``kubernetes.client.exceptions.ApiException`` (and urllib3 errors for
transport faults). ``shared.kube.client`` is the only module that catches those; it converts them
with ``from_api_exception`` / ``from_transport_error`` and chains the original as ``__cause__``.
Everything else catches these classes.

Messages are cut to a few hundred characters: a non-``Status`` error body may be a whole dumped
object (with env values), which must never reach a caller or a log line.
"""

from __future__ import annotations

import json

from shared.text import trim

MAX_MESSAGE_CHARS = 300


def _trim(text: str | None) -> str:
    return trim(text or "", MAX_MESSAGE_CHARS)


class KubeError(Exception):
    """A Kubernetes API request failed."""

    retryable = False

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        reason: str | None = None,
        causes: list[dict] | None = None,
        retry_after: float | None = None,
    ):
        self.message = _trim(message)
        super().__init__(self.message)
        self.status = status
        self.reason = reason
        self.causes = causes or []
        self.retry_after = retry_after


class KubeNotFound(KubeError):
    pass


class KubeConflict(KubeError):
    """409: AlreadyExists on create, or a resourceVersion conflict on update."""


class KubeInvalid(KubeError):
    """422: the object was rejected; ``causes`` holds ``{"field", "message", "reason"}`` items."""


class KubeGone(KubeError):
    """410: e.g. an expired list continue token (reason ``Expired``)."""


class KubeUnauthorized(KubeError):
    """401: the credential is not (or no longer) accepted."""


class KubeForbidden(KubeError):
    """403: authenticated, but RBAC does not allow the request."""


class KubeTooManyRequests(KubeError):
    retryable = True


class KubeServerError(KubeError):
    retryable = True


class KubeUnavailable(KubeError):
    """No answer: connection refused or dropped, or the request timed out."""

    retryable = True


_BY_STATUS: dict[int, type[KubeError]] = {
    401: KubeUnauthorized,
    403: KubeForbidden,
    404: KubeNotFound,
    409: KubeConflict,
    410: KubeGone,
    422: KubeInvalid,
    429: KubeTooManyRequests,
}


def _retry_after(headers) -> float | None:
    if not headers:
        return None
    value = headers.get("Retry-After") or headers.get("retry-after")
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def error_from_response(status: int, body: bytes | str | None, headers=None) -> KubeError:
    """Build the matching KubeError from an HTTP status and (ideally) a ``Status`` body."""
    reason = None
    causes: list[dict] = []
    message = ""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else (body or "")
    try:
        doc = json.loads(text) if text else None
    except ValueError:
        doc = None
    if isinstance(doc, dict) and doc.get("kind") == "Status":
        reason = doc.get("reason")
        message = doc.get("message") or ""
        details = doc.get("details") or {}
        causes = [
            {k: str(c.get(k))[:MAX_MESSAGE_CHARS] for k in ("field", "message", "reason") if c.get(k) is not None}
            for c in (details.get("causes") or [])
            if isinstance(c, dict)
        ][:20]
    elif doc is not None:
        # JSON that is not a Status may be a whole dumped object (env values, secrets): say what
        # it was, never what it held.
        message = f"HTTP {status}: a {len(text)}-byte JSON answer that is not a Status (not shown)"
    else:
        # Plain text or an HTML page from a proxy: a short prefix helps and holds no object.
        message = f"HTTP {status}: {text[:120]}" if text else f"HTTP {status}"
    cls = _BY_STATUS.get(status) or (KubeServerError if status >= 500 else KubeError)
    return cls(message or f"HTTP {status}", status=status, reason=reason, causes=causes,
               retry_after=_retry_after(headers))
