"""The app's own errors, each carrying the HTTP answer it becomes.

``shared.adapters.http`` is the one place that turns these into JSON answers
(``{"error": {"code", "message", "field"?}}``). Code below the API raises these (or lets the
Kubernetes facade's ``shared.kube.errors.KubeError`` rise, which it maps too), and never
builds HTTP answers itself. Messages are written for the caller: they name the field or setting
at fault and never contain secrets, kubeconfigs or whole Kubernetes objects.
"""

from __future__ import annotations


class AppError(Exception):
    status: int = 500
    code: str = "internal"

    def __init__(self, message: str, *, field: str | None = None, details: dict | None = None):
        super().__init__(message)
        self.message = message
        self.field = field
        self.details = details or {}

    def to_body(self) -> dict:
        err: dict = {"code": self.code, "message": self.message}
        if self.field is not None:
            err["field"] = self.field
        if self.details:
            err.update(self.details)
        return {"error": err}


class BadRequest(AppError):
    """Malformed request: not JSON, wrong top-level shape, a bad path or query value."""

    status, code = 400, "bad_request"


class Unauthorized(AppError):
    status, code = 401, "unauthorized"


class Forbidden(AppError):
    """The request names something the app is not allowed to touch (e.g. a namespace)."""

    status, code = 403, "forbidden"


class NotFound(AppError):
    status, code = 404, "not_found"


class Conflict(AppError):
    status, code = 409, "conflict"


class PermanentConflict(Conflict):
    """A conflict no retry resolves: the key or name asked for belongs to something else for good
    (the answer is the same 409; an Event Grid submit hitting one is dropped, not redelivered)."""


class PayloadTooLarge(AppError):
    status, code = 413, "payload_too_large"


class UnsupportedMediaType(AppError):
    status, code = 415, "unsupported_media_type"


class ValidationFailed(AppError):
    """Well-formed JSON whose values are not acceptable (an env name Kubernetes rejects, ...)."""

    status, code = 422, "invalid"


class UpstreamError(AppError):
    """A dependency (cluster, ARM, Table Storage) failed in a way retrying later may fix."""

    status, code = 502, "upstream_error"


class ServiceUnavailable(AppError):
    status, code = 503, "unavailable"


class SettingsError(AppError):
    """One or more app settings are missing or malformed; every problem is named."""

    status, code = 500, "settings"

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("App settings are missing or malformed: " + "; ".join(self.problems))
