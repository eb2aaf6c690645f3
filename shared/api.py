"""HTTP in and out: parse and validate requests, call the use cases, render JSON answers.

The one error-to-HTTP mapping lives here (``answer_error``): ``AppError`` subclasses carry their
status; ``KubeError``s from the cluster become 4xx/5xx with a trimmed message; anything else is a
500 whose details go to the log under the request's correlation id, never to the caller.

Every answer carries ``x-correlation-id``. Asynchronous answers (``202``) carry ``Location`` and
``Retry-After`` pointing at the *poll* route, because Polysync, Logic Apps and Durable-aware
callers all treat a ``200`` from that URL as "finished".
"""

from __future__ import annotations

import json
import logging
import re
from functools import lru_cache
from urllib.parse import quote, urlsplit

import azure.functions as func

from shared import logs
from shared.errors import (
    AppError,
    BadRequest,
    Forbidden,
    PayloadTooLarge,
    UnsupportedMediaType,
    UpstreamError,
    ValidationFailed,
)
from shared.kube import jobspec
from shared.kube.errors import (
    KubeError,
    KubeForbidden,
    KubeNotFound,
    KubeTooManyRequests,
    KubeUnauthorized,
    KubeUnavailable,
)
from shared.runs.model import Run, Status, parameter_changes
from shared.settings import Settings, get_settings

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 256 * 1024
MAX_IDEMPOTENCY_KEY_CHARS = 256
RETRY_AFTER_SECONDS = 10
SUBMIT_KEYS = ("parameters", "attributes", "idempotencyKey")
ATTRIBUTE_KEYS = ("containerImage", "containerCommand", "containerArgs")
# \Z, not $: Python's "$" also matches before a trailing newline, so "report\n" would pass and
# reach the cluster, the table and the Job's labels (the Functions host URL-decodes route values).
EXTERNAL_ID = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?\Z")
RUN_ID = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\Z")
# Deeper than this, no submit body is legitimate, and the parsers and encoders after json.loads
# recurse: a body of 100,000 nested brackets must be a 400, not a RecursionError (500).
MAX_JSON_DEPTH = 64
FAILED_RUN_HTTP_STATUS = 409  # poll answer for Failed / Cancelled: a 4xx that Logic Apps does not retry

RUNTIME_STATUS = {
    Status.STARTING: "Pending",
    Status.RUNNING: "Running",
    Status.SUCCESS: "Completed",
    Status.FAILED: "Failed",
    Status.CANCELLED: "Terminated",
    Status.UNKNOWN: "Running",
}


# ------------------------------------------------------------------ plumbing


@lru_cache(maxsize=1)
def service():
    """The process's RunService: settings validated once, table created once, clients cached."""
    from shared.runs.store import RunStore
    from shared.service import RunService

    settings = get_settings()
    store = RunStore.from_settings(settings)
    store.ensure_table()
    return RunService(settings, store)


def reset() -> None:
    """Forget cached settings and clients (tests, and the dev host after changing settings)."""
    service.cache_clear()
    get_settings.cache_clear()
    from shared.kube.credentials import forget_connectors

    forget_connectors()


def handle(req: func.HttpRequest, action) -> func.HttpResponse:
    """Run ``action(req)`` with a correlation id, mapping every error to a JSON answer."""
    cid = logs.new_correlation_id(req.headers.get("x-correlation-id"))
    with logs.correlation(cid):
        try:
            response = action(req)
        except Exception as exc:  # the one place every error becomes an answer
            response = answer_error(exc)
        response.headers["x-correlation-id"] = cid
        return response


def answer(body, status: int = 200, headers: dict | None = None) -> func.HttpResponse:
    return func.HttpResponse(json.dumps(body, default=str), status_code=status,
                             headers=dict(headers or {}), mimetype="application/json")


def answer_error(exc: Exception) -> func.HttpResponse:
    if isinstance(exc, KubeError):
        exc = _from_kube_error(exc)
    if isinstance(exc, AppError):
        if exc.status >= 500:
            log.error("request failed: %s: %s", type(exc).__name__, exc.message)
        headers = {"Retry-After": str(RETRY_AFTER_SECONDS)} if exc.status in (502, 503) else {}
        return answer(exc.to_body(), exc.status, headers)
    log.exception("internal error")
    return answer({"error": {"code": "internal", "message": "Internal error; see the app's logs for this "
                             "request's correlation id", "correlationId": logs.current_correlation_id()}}, 500)


def _from_kube_error(err: KubeError) -> AppError:
    if isinstance(err, KubeNotFound):
        from shared.errors import NotFound

        return NotFound(err.message)
    if isinstance(err, (KubeForbidden, KubeUnauthorized)):
        return UpstreamError(f"The cluster refused the app's request ({err.status}): {err.message}. "
                             "Check the identity's Kubernetes RBAC in the namespace")
    if isinstance(err, (KubeUnavailable, KubeTooManyRequests)) or err.retryable:
        from shared.errors import ServiceUnavailable

        return ServiceUnavailable(f"The cluster is unavailable: {err.message}")
    return UpstreamError(f"The cluster answered {err.status}: {err.message}")


# ----------------------------------------------------------------- parsing


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
        raise BadRequest(f"The body must be a JSON object, not {_json_type(doc)}", field="body")
    _check_json_text(doc)
    return doc


def _json_type(value) -> str:
    if value is None:
        return "null"
    for kind, name in ((bool, "a boolean"), (int | float, "a number"), (str, "a string"), (list, "an array")):
        if isinstance(value, kind):
            return name
    return "an object"


def _check_json_text(doc: dict) -> None:
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
                path = _shown_path(key) if where == "body" else f"{where}.{_shown_path(key)}"
                if not _is_text(key):
                    raise BadRequest(f"A key in {where} is not Unicode text (it holds a lone UTF-16 "
                                     "surrogate)", field=where)
                pending.append((item, path, depth + 1))
        elif isinstance(value, list):
            pending.extend((item, f"{where}[{i}]", depth + 1) for i, item in enumerate(value))
        elif isinstance(value, str) and not _is_text(value):
            raise BadRequest(f"The value at {where} is not Unicode text (it holds a lone UTF-16 surrogate)",
                             field=where)


def _is_text(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _shown_path(key: str) -> str:
    """A body key as it may appear in a message or ``field``: short, printable, never a surrogate."""
    shown = "".join(ch if ch.isprintable() and _is_text(ch) else "?" for ch in key[:60])
    return shown + ("…" if len(key) > 60 else "")


def namespace_of(req: func.HttpRequest, settings: Settings) -> str:
    ns = req.params.get("namespace") or settings.namespace
    if ns not in settings.allowed_namespaces:
        raise Forbidden(f"Namespace {ns[:80]!r} is not in ALLOWED_NAMESPACES", field="namespace")
    return ns


def external_id_of(req: func.HttpRequest) -> str:
    value = req.route_params.get("externalId") or ""
    if not EXTERNAL_ID.match(value):
        raise BadRequest("externalId must be a Kubernetes Job name: lowercase letters, digits, '-' and '.', "
                         "starting and ending with a letter or digit, at most 253 characters",
                         field="externalId")
    return value


def run_id_of(req: func.HttpRequest) -> str:
    value = req.route_params.get("runId") or ""
    if not RUN_ID.match(value):
        raise BadRequest("runId must be a run's Job name: lowercase letters, digits and '-', at most 63 "
                         "characters", field="runId")
    return value


def submit_request(req: func.HttpRequest, external_id: str, namespace: str):
    return submit_request_from_body(json_body(req) or {}, external_id, namespace,
                                    header_key=req.headers.get("idempotency-key"))


def submit_request_from_body(body: dict, external_id: str, namespace: str, *, header_key: str | None = None):
    """A validated SubmitRequest from a submit body (HTTP or an Event Grid event's data)."""
    from shared.service import SubmitRequest

    if any(k in body for k in SUBMIT_KEYS):
        unknown = sorted(set(body) - set(SUBMIT_KEYS))
        if unknown:
            raise ValidationFailed(f"Unknown field {_shown_path(str(unknown[0]))!r}; expected "
                                   f"{', '.join(SUBMIT_KEYS)}", field=_shown_path(str(unknown[0])))
        raw_params = body.get("parameters")
        # Only null means "none": [] or "" or false is a caller's mistake worth naming, not {}.
        attributes = body.get("attributes")
        attributes = {} if attributes is None else attributes
        key = body.get("idempotencyKey")
    else:  # Polysync's Azure HTTP Function job type sends the parameters as the whole body
        raw_params, attributes, key = body, {}, None
    if key is None:
        key = header_key
    key = _idempotency_key(key)
    if not isinstance(attributes, dict):
        raise ValidationFailed("attributes must be an object", field="attributes")
    for name in attributes:
        if name not in ATTRIBUTE_KEYS:
            raise ValidationFailed(f"Unknown attribute {str(name)[:60]!r}; expected {', '.join(ATTRIBUTE_KEYS)}",
                                   field=f"attributes.{str(name)[:60]}")
    attributes = {k: v for k, v in attributes.items() if v not in (None, "", [])}
    if attributes:
        _validate_attributes(external_id, attributes)
    parameters, ignored = jobspec.normalize_parameters(raw_params)
    return SubmitRequest(external_id=external_id, namespace=namespace, parameters=parameters,
                         ignored_parameters=ignored, attributes=attributes, idempotency_key=key)


def _idempotency_key(key) -> str | None:
    if key is None or key == "":
        return None
    if not isinstance(key, str):
        raise ValidationFailed("idempotencyKey must be a string", field="idempotencyKey")
    if len(key) > MAX_IDEMPOTENCY_KEY_CHARS:
        raise ValidationFailed(f"idempotencyKey is {len(key)} characters; at most {MAX_IDEMPOTENCY_KEY_CHARS}",
                               field="idempotencyKey")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in key):
        raise ValidationFailed("idempotencyKey must not contain control characters", field="idempotencyKey")
    if not _is_text(key):  # the store hashes its UTF-8 bytes; a lone surrogate has none
        raise ValidationFailed("idempotencyKey is not Unicode text (it holds a lone UTF-16 surrogate)",
                               field="idempotencyKey")
    return key


def _validate_attributes(external_id: str, attributes: dict) -> None:
    """Bad attribute values are refused up front, before any row or Job exists."""
    from shared.errors import NotFound

    try:
        jobspec.fallback_job(external_id, attributes)
    except NotFound:
        pass


# ---------------------------------------------------------------- answers


def run_document(run: Run, settings: Settings) -> dict:
    return {
        "runId": run.run_id,
        "jobName": run.run_id,
        "namespace": run.namespace,
        "externalId": run.external_id,
        "status": str(run.status),
        "phase": str(run.phase),
        "reason": run.reason,
        "message": run.message,
        "terminal": run.terminal,
        "createdAt": _iso(run.created_at),
        "updatedAt": _iso(run.updated_at),
        "startedAt": _iso(run.started_at),
        "finishedAt": _iso(run.finished_at),
        "cancelRequestedAt": _iso(run.cancel_requested_at),
        "parameters": run.parameters,
        "attributes": run.attributes,
        "source": run.source,
        "sourceResourceVersion": run.source_resource_version,
        "specHash": run.spec_hash,
        "idempotencyKey": run.idempotency_key,
        "monitorUrl": settings.monitor_url,
        "history": run.history,
        "parameterChanges": parameter_changes(run),
        "rerunOf": run.rerun_of,
        "diagnostics": run.diagnostics,
    }


def _iso(value) -> str | None:
    return value.isoformat() if value is not None else None


def run_links(req: func.HttpRequest, run: Run) -> dict:
    """Absolute URLs for a run, carrying the caller's ``code`` so pollers are authorised too."""
    parts = urlsplit(req.url)
    base = f"{parts.scheme}://{parts.netloc}/api/runs/{quote(run.run_id)}"
    query = []
    code = req.params.get("code")
    if code:
        query.append(f"code={quote(code)}")
    if run.namespace != get_settings().namespace:
        query.append(f"namespace={quote(run.namespace)}")
    suffix = ("?" + "&".join(query)) if query else ""
    return {
        "statusQueryGetUri": f"{base}/poll{suffix}",
        "statusQueryUrl": f"{base}/poll{suffix}",
        "runUri": f"{base}{suffix}",
        "cancelPostUri": f"{base}/cancel{suffix}",
    }


def accepted(req: func.HttpRequest, run: Run, body: dict) -> func.HttpResponse:
    links = run_links(req, run)
    return answer({**body, **links}, 202, {"Location": links["statusQueryGetUri"],
                                           "Retry-After": str(RETRY_AFTER_SECONDS)})


# ----------------------------------------------------------------- routes


def list_jobs(req: func.HttpRequest) -> func.HttpResponse:
    svc = service()
    ns = namespace_of(req, svc.settings)
    jobs = svc.discover(ns)
    return answer({"namespace": ns, "count": len(jobs), "jobs": jobs})


def get_job(req: func.HttpRequest) -> func.HttpResponse:
    svc = service()
    ns = namespace_of(req, svc.settings)
    return answer(svc.describe(ns, external_id_of(req)))


def submit_run(req: func.HttpRequest) -> func.HttpResponse:
    external_id = external_id_of(req)
    svc = service()
    ns = namespace_of(req, svc.settings)
    result = svc.submit(submit_request(req, external_id, ns))
    body = run_document(result.run, svc.settings)
    body["created"] = result.created
    if result.ignored_parameters:
        body["ignoredParameters"] = result.ignored_parameters
    return accepted(req, result.run, body)


def get_run(req: func.HttpRequest) -> func.HttpResponse:
    run_id = run_id_of(req)
    svc = service()
    ns = namespace_of(req, svc.settings) if req.params.get("namespace") else None
    return answer(run_document(svc.get_run(run_id, ns), svc.settings))


def poll_run(req: func.HttpRequest) -> func.HttpResponse:
    """The asynchronous pattern: 202 while running, 200 on Success, 409 on Failed or Cancelled."""
    run_id = run_id_of(req)
    svc = service()
    ns = namespace_of(req, svc.settings) if req.params.get("namespace") else None
    run = svc.get_run(run_id, ns)
    body = run_document(run, svc.settings)
    body["runtimeStatus"] = RUNTIME_STATUS.get(run.status, "Running")
    if not run.terminal:
        return accepted(req, run, body)
    if run.status == Status.SUCCESS:
        return answer(body, 200)
    return answer(body, FAILED_RUN_HTTP_STATUS)


def cancel_run(req: func.HttpRequest) -> func.HttpResponse:
    run_id = run_id_of(req)
    svc = service()
    ns = namespace_of(req, svc.settings) if req.params.get("namespace") else None
    run, changed = svc.cancel(run_id, ns)
    body = run_document(run, svc.settings)
    body["cancelled"] = changed
    if not changed:
        body["detail"] = f"Run already finished as {run.status}; nothing was changed"
        return answer(body, 200)
    return accepted(req, run, body)


def list_runs(req: func.HttpRequest) -> func.HttpResponse:
    svc = service()
    ns = namespace_of(req, svc.settings)
    status = req.params.get("status")
    if status is not None and status not in {s.value for s in Status}:
        raise BadRequest(f"status must be one of {', '.join(s.value for s in Status)}", field="status")
    external_id = req.params.get("externalId")
    if external_id is not None and not EXTERNAL_ID.match(external_id):
        raise BadRequest("externalId is not a valid Job name", field="externalId")
    try:
        page_size = int(req.params.get("pageSize", "50"))
        if not 1 <= page_size <= 200:
            raise ValueError
    except ValueError:
        raise BadRequest("pageSize must be a whole number from 1 to 200", field="pageSize") from None
    runs, token = svc.list_runs(ns, status=status, external_id=external_id, page_size=page_size,
                                continuation=req.params.get("continuation"))
    items = [run_document(r, svc.settings) if isinstance(r, Run) else r for r in runs]
    return answer({"namespace": ns, "runs": items, "continuation": token})


def health(req: func.HttpRequest) -> func.HttpResponse:
    """Settings, run table and cluster reachability, without a secret or a stack trace."""
    checks: dict[str, dict] = {}
    try:
        settings = get_settings()
        checks["settings"] = {"ok": True, "credentialMode": settings.credential_mode,
                              "namespace": settings.namespace}
    except AppError as err:
        checks["settings"] = {"ok": False, "message": err.message}
        return answer({"ok": False, "checks": checks}, 503)
    try:
        svc = service()
        svc.store.list_active(settings.namespace)
        checks["runTable"] = {"ok": True, "table": settings.runs_table_name}
    except Exception as err:  # health reports, it does not fail
        checks["runTable"] = {"ok": False, "message": _safe_message(err)}
        svc = None
    if svc is not None:
        try:
            svc.kube.list_jobs_page(settings.namespace, limit=1)
            checks["cluster"] = {"ok": True}
        except Exception as err:
            checks["cluster"] = {"ok": False, "message": _safe_message(err)}
    ok = all(c["ok"] for c in checks.values())
    return answer({"ok": ok, "checks": checks}, 200 if ok else 503)


def _safe_message(err: Exception) -> str:
    if isinstance(err, (AppError, KubeError)):
        return err.message
    return type(err).__name__


def run_sweep() -> dict:
    cid = logs.new_correlation_id()
    with logs.correlation(cid):
        return service().sweep().as_dict()


RERUN_KEYS = ("parameters", "idempotencyKey")


def rerun_run(req: func.HttpRequest) -> func.HttpResponse:
    """A new run from a run's stored rendered spec: 202 like a submit.

    Body (optional): ``{"parameters": {NAME: value}}`` with the values of the run's Secret
    parameters (they are not kept, so a rerun of a run that had any is 422 without them, naming
    them) and ``"idempotencyKey"`` (or the ``Idempotency-Key`` header) for the rerun itself.
    """
    run_id = run_id_of(req)
    svc = service()
    ns = namespace_of(req, svc.settings) if req.params.get("namespace") else None
    body = json_body(req) or {}
    unknown = sorted(set(body) - set(RERUN_KEYS))
    if unknown:
        raise ValidationFailed(f"Unknown field {str(unknown[0])[:60]!r}; a rerun takes {', '.join(RERUN_KEYS)}",
                               field=str(unknown[0])[:60])
    key = _idempotency_key(body.get("idempotencyKey") if body.get("idempotencyKey") is not None
                           else req.headers.get("idempotency-key"))
    secrets, _ = jobspec.normalize_parameters(body.get("parameters"))
    result = svc.rerun(run_id, ns, secret_parameters=secrets, idempotency_key=key)
    doc = run_document(result.run, svc.settings)
    doc["created"] = result.created
    return accepted(req, result.run, doc)
