"""Calling the app's HTTP API: one request, its JSON answer, and the API's error as an exception.

Stdlib only (``urllib``), so the CLI runs wherever Python 3.11 does with nothing to install, and
it talks to the app exactly as any other caller does: the routes under ``/api`` and the function
key in the ``x-functions-key`` header.

What it deliberately does not do:

- retry: whether a failure is worth another try depends on the command (a watch rides out a 503,
  a submit must not guess), so callers decide, using ``ApiError.transient`` and ``retry_after``;
- follow redirects: the function key travels in a header, and a redirect to another host would
  carry it there. A redirect is reported as an error naming where it pointed;
- print anything, or put the key into a URL or a message.
"""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

DEFAULT_TIMEOUT_SECONDS = 30.0
KEY_HEADER = "x-functions-key"
# Non-JSON bodies (a proxy's error page, a dumped object) are cut short: they are shown to the
# operator only as a hint, and a long one may hold more than anyone meant to print.
MAX_SHOWN_BODY_CHARS = 200
TRANSIENT_STATUSES = frozenset({0, 429, 502, 503, 504})


class ApiError(Exception):
    """The API answered with an error, or did not answer at all (``status`` 0)."""

    def __init__(self, message: str, *, status: int = 0, code: str | None = None, field: str | None = None,
                 details: dict | None = None, retry_after: float | None = None, reached: bool = True):
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.field = field
        self.details = details or {}
        self.retry_after = retry_after
        self.reached = reached  # False only when the request surely never got to the app

    @property
    def transient(self) -> bool:
        """Worth another try later: no answer, throttled, or the app said its upstream is down."""
        return self.status in TRANSIENT_STATUSES

    def describe(self) -> str:
        """One line for the operator: ``HTTP 404 not_found: No run 'x' (field: runId)``."""
        head = f"HTTP {self.status}" if self.status else "no answer"
        if self.code:
            head += f" {self.code}"
        text = f"{head}: {self.message}"
        if self.field:
            text += f" (field: {self.field})"
        run_id = self.details.get("runId")
        if isinstance(run_id, str):
            text += f" (run: {run_id})"
        return text


@dataclass
class Answer:
    status: int
    doc: Any
    headers: dict[str, str] = field(default_factory=dict)


class _RefuseRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None  # urllib then raises HTTPError with the 3xx, which ``Api`` reports


class Api:
    """The app's HTTP API at ``base_url`` (``https://myapp.azurewebsites.net``, no ``/api``)."""

    def __init__(self, base_url: str, key: str | None = None, *, namespace: str | None = None,
                 timeout: float = DEFAULT_TIMEOUT_SECONDS):
        self.base_url = normalize_base_url(base_url)
        self._key = key or None
        self.namespace = namespace or None
        self.timeout = timeout
        self._opener = urllib.request.build_opener(_RefuseRedirects)

    def __repr__(self) -> str:  # never the key
        return f"Api({self.base_url!r}, namespace={self.namespace!r})"

    def get(self, path: str, query: dict | None = None, *, accept: tuple[int, ...] = ()) -> Answer:
        return self.request("GET", path, query=query, accept=accept)

    def post(self, path: str, body: dict | None = None, query: dict | None = None) -> Answer:
        return self.request("POST", path, query=query, body=body)

    def request(self, method: str, path: str, *, query: dict | None = None, body: dict | None = None,
                accept: tuple[int, ...] = ()) -> Answer:
        """``method path`` under ``/api``; the JSON answer, or ApiError for a non-2xx status not in
        ``accept`` (health's 503 is an answer, not an error) or for no answer at all."""
        params = {k: v for k, v in (query or {}).items() if v is not None}
        if self.namespace and "namespace" not in params:
            params["namespace"] = self.namespace
        url = f"{self.base_url}/api/{path.lstrip('/')}"
        if params:
            url += "?" + urlencode(params)
        headers = {"Accept": "application/json"}
        if self._key:
            headers[KEY_HEADER] = self._key
        data = None
        if body is not None:
            data = json.dumps(body).encode("utf-8")
            headers["Content-Type"] = "application/json"
        # The scheme was checked to be http(s) in normalize_base_url.
        req = urllib.request.Request(url, data=data, headers=headers, method=method)  # noqa: S310
        try:
            with self._opener.open(req, timeout=self.timeout) as resp:
                return Answer(resp.status, _json_or_none(resp.read()), dict(resp.headers.items()))
        except urllib.error.HTTPError as err:
            with err:
                raw = err.read()
            if err.code in accept:
                return Answer(err.code, _json_or_none(raw), dict(err.headers.items()) if err.headers else {})
            raise self._error(err.code, raw, dict(err.headers.items()) if err.headers else {}) from None
        except urllib.error.URLError as err:
            # URLError also wraps failures while the request is being sent; only a refused
            # connection or an unknown host surely kept it from the app.
            never_sent = isinstance(err.reason, ConnectionRefusedError | socket.gaierror)
            raise ApiError(f"cannot reach {self.base_url}: {_reason(err.reason)}", reached=not never_sent) from None
        except TimeoutError:
            raise ApiError(f"{self.base_url} did not answer within {self.timeout:g}s") from None
        except (ConnectionError, OSError) as err:
            raise ApiError(f"connection to {self.base_url} failed: {_reason(err)}") from None

    def _error(self, status: int, raw: bytes, headers: dict[str, str]) -> ApiError:
        retry_after = _retry_after(headers)
        if 300 <= status < 400:
            where = _header(headers, "Location") or "?"
            return ApiError(f"the app answered a redirect to {where[:MAX_SHOWN_BODY_CHARS]}; it is not "
                            "followed (the function key would go with it): use the final address as --url",
                            status=status)
        doc = _json_or_none(raw)
        err = doc.get("error") if isinstance(doc, dict) else None
        if isinstance(err, dict) and isinstance(err.get("message"), str):
            details = {k: v for k, v in err.items() if k not in ("code", "message", "field")}
            return ApiError(err["message"], status=status, code=_str_or_none(err.get("code")),
                            field=_str_or_none(err.get("field")), details=details, retry_after=retry_after)
        if status == 401:
            return ApiError("the app refused the function key: pass --key or set AKSJOBS_KEY", status=status)
        if status == 404 and not raw.strip():
            return ApiError(f"no such route at {self.base_url}/api: is --url the app's base address?",
                            status=status)
        text = " ".join(raw.decode("utf-8", "replace").split())[:MAX_SHOWN_BODY_CHARS]
        return ApiError(text or "(empty answer)", status=status, retry_after=retry_after)


def normalize_base_url(url: str) -> str:
    """The app's base address without a trailing ``/`` or ``/api``; only http(s) is accepted."""
    url = (url or "").strip().rstrip("/")
    if url.endswith("/api"):
        url = url[: -len("/api")]
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"--url must be an http:// or https:// address, not {url[:80]!r}")
    return url


def path_segment(value: str) -> str:
    """A run id or External Id as one path segment, whatever the operator typed."""
    return quote(value, safe="")


def _json_or_none(raw: bytes) -> Any:
    if not raw or not raw.strip():
        return None
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None


def _header(headers: dict[str, str], name: str) -> str | None:
    for k, v in headers.items():
        if k.lower() == name.lower():
            return v
    return None


def _retry_after(headers: dict[str, str]) -> float | None:
    value = _header(headers, "Retry-After")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None  # an HTTP date: rare here, and the caller's own interval is a fine wait


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _reason(reason: object) -> str:
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror
    return str(reason) or type(reason).__name__
