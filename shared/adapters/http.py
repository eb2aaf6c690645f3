"""HTTP in and out: the route handlers, the one error-to-HTTP map, and JSON answers.

The one error-to-HTTP mapping lives here (``answer_error``): ``AppError`` subclasses carry their
status; ``KubeError``s from the cluster become 4xx/5xx with a trimmed message; anything else is a
500 whose details go to the log under the request's correlation id, never to the caller.

Every answer carries ``x-correlation-id``. Asynchronous answers (``202``) carry ``Location`` and
``Retry-After`` pointing at the *poll* route, because Polysync, Logic Apps and Durable-aware
callers all treat a ``200`` from that URL as "finished".

Each route imports its use case module when it runs: the use cases, and the clients they load,
stay out of the Functions host's start-up, which keeps cold start low.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from urllib.parse import quote, urlsplit

import azure.functions as func

from shared import composition, logs
from shared.adapters import submits
from shared.adapters.submits import EXTERNAL_ID, EXTERNAL_ID_RULE, RUN_ID, is_text, shown_path
from shared.errors import (
    AppError,
    BadRequest,
    Forbidden,
    NotFound,
    PayloadTooLarge,
    ServiceUnavailable,
    UnsupportedMediaType,
    UpstreamError,
)
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
from shared.text import json_type

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 256 * 1024
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
        headers = {"Retry-After": str(_retry_after())} if exc.status in (502, 503) else {}
        return answer(exc.to_body(), exc.status, headers)
    log.exception("internal error")
    return answer({"error": {"code": "internal", "message": "Internal error; see the app's logs for this "
                             "request's correlation id", "correlationId": logs.current_correlation_id()}}, 500)


def _from_kube_error(err: KubeError) -> AppError:
    if isinstance(err, KubeNotFound):
        return NotFound(err.message)
    if isinstance(err, (KubeForbidden, KubeUnauthorized)):
        return UpstreamError(f"The cluster refused the app's request ({err.status}): {err.message}. "
                             "Check the identity's Kubernetes RBAC in the namespace")
    if isinstance(err, (KubeUnavailable, KubeTooManyRequests)) or err.retryable:
        return ServiceUnavailable(f"The cluster is unavailable: {err.message}")
    return UpstreamError(f"The cluster answered {err.status}: {err.message}")


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
                                           "Retry-After": str(_retry_after())})


def _retry_after() -> int:
    """A third of the sweep period (``Settings.retry_after_seconds``): polling faster than the sweep
    reads the same state again. With broken settings, the default schedule's."""
    try:
        return get_settings().retry_after_seconds
    except AppError:
        return Settings().retry_after_seconds


def _optional_namespace(req: func.HttpRequest, c) -> str | None:
    """The ``namespace`` query value, checked; None when absent (a run is then looked up in every
    allowed namespace)."""
    return namespace_of(req, c.settings) if req.params.get("namespace") else None


# ----------------------------------------------------------------- requests


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


# ------------------------------------------------------------------ documents


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


# ----------------------------------------------------------------- routes


def list_jobs(req: func.HttpRequest) -> func.HttpResponse:
    from shared.usecases import discovering  # lazy: cold start

    c = composition.collaborators()
    ns = namespace_of(req, c.settings)
    jobs = discovering.discover(c, ns)
    return answer({"namespace": ns, "count": len(jobs), "jobs": jobs})


def get_job(req: func.HttpRequest) -> func.HttpResponse:
    from shared.usecases import discovering  # lazy: cold start

    c = composition.collaborators()
    ns = namespace_of(req, c.settings)
    return answer(discovering.describe(c, ns, external_id_of(req)))


def submit_run(req: func.HttpRequest) -> func.HttpResponse:
    from shared.usecases import submitting  # lazy: cold start

    external_id = external_id_of(req)
    c = composition.collaborators()
    ns = namespace_of(req, c.settings)
    request = submits.submit_request(json_body(req) or {}, external_id, ns,
                                     header_key=req.headers.get("idempotency-key"))
    result = submitting.submit(c, request)
    body = run_document(result.run, c.settings)
    body["created"] = result.created
    if result.ignored_parameters:
        body["ignoredParameters"] = result.ignored_parameters
    return accepted(req, result.run, body)


def rerun_run(req: func.HttpRequest) -> func.HttpResponse:
    """A new run from a run's stored rendered spec: 202 like a submit.

    Body (optional): ``{"parameters": {NAME: value}}`` with the values of the run's Secret
    parameters (they are not kept, so a rerun of a run that had any is 422 without them, naming
    them) and ``"idempotencyKey"`` (or the ``Idempotency-Key`` header) for the rerun itself.
    """
    from shared.usecases import submitting  # lazy: cold start

    run_id = run_id_of(req)
    c = composition.collaborators()
    ns = _optional_namespace(req, c)
    secrets, key = submits.rerun_request(json_body(req) or {}, req.headers.get("idempotency-key"))
    result = submitting.rerun(c, run_id, ns, secret_parameters=secrets, idempotency_key=key)
    doc = run_document(result.run, c.settings)
    doc["created"] = result.created
    return accepted(req, result.run, doc)


def get_run(req: func.HttpRequest) -> func.HttpResponse:
    from shared.usecases import reading  # lazy: cold start

    run_id = run_id_of(req)
    c = composition.collaborators()
    return answer(run_document(reading.get_run(c, run_id, _optional_namespace(req, c)), c.settings))


def poll_run(req: func.HttpRequest) -> func.HttpResponse:
    """The asynchronous pattern: 202 while running, 200 on Success, 409 on Failed or Cancelled."""
    from shared.usecases import reading  # lazy: cold start

    run_id = run_id_of(req)
    c = composition.collaborators()
    run = reading.get_run(c, run_id, _optional_namespace(req, c))
    body = run_document(run, c.settings)
    body["runtimeStatus"] = RUNTIME_STATUS.get(run.status, "Running")
    if not run.terminal:
        return accepted(req, run, body)
    if run.status == Status.SUCCESS:
        return answer(body, 200)
    return answer(body, FAILED_RUN_HTTP_STATUS)


def cancel_run(req: func.HttpRequest) -> func.HttpResponse:
    from shared.usecases import cancelling  # lazy: cold start

    run_id = run_id_of(req)
    c = composition.collaborators()
    run, changed = cancelling.cancel(c, run_id, _optional_namespace(req, c))
    body = run_document(run, c.settings)
    body["cancelled"] = changed
    if not changed:
        body["detail"] = f"Run already finished as {run.status}; nothing was changed"
        return answer(body, 200)
    return accepted(req, run, body)


def list_runs(req: func.HttpRequest) -> func.HttpResponse:
    from shared.usecases import reading  # lazy: cold start

    c = composition.collaborators()
    ns = namespace_of(req, c.settings)
    status = req.params.get("status")
    if status is not None and status not in {s.value for s in Status}:
        raise BadRequest(f"status must be one of {', '.join(s.value for s in Status)}", field="status")
    external_id = req.params.get("externalId")
    if external_id is not None and not submits.EXTERNAL_ID.match(external_id):
        raise BadRequest("externalId is not a valid Job name", field="externalId")
    try:
        page_size = int(req.params.get("pageSize", "50"))
        if not 1 <= page_size <= 200:
            raise ValueError
    except ValueError:
        raise BadRequest("pageSize must be a whole number from 1 to 200", field="pageSize") from None
    runs, token = reading.list_runs(c, ns, status=status, external_id=external_id, page_size=page_size,
                                    continuation=req.params.get("continuation"))
    return answer({"namespace": ns, "runs": runs, "continuation": token})


def liveness(req: func.HttpRequest) -> func.HttpResponse:
    """Anonymous liveness: this process answers. The same constant for everyone: no Table, cluster
    or ARM call, no setting read, nothing about the deployment (readiness, keyed, checks those)."""
    return answer(LIVENESS)


LIVENESS = {"ok": True, "status": "alive"}
READINESS_CACHE_SECONDS = 5.0  # one real check per instance in this window, however often it is called

_readiness_lock = threading.Lock()
_readiness_cache: list[tuple] = []  # [(settings, namespace, expires, body, status)] of the last checks
_monotonic = time.monotonic


def readiness(req: func.HttpRequest) -> func.HttpResponse:
    """Keyed readiness: settings, the run table (one query) and the cluster (one LIST of one Job),
    each reported without a secret or a stack trace; 200 when all pass, else 503.

    Results are kept for ``READINESS_CACHE_SECONDS`` per settings and namespace, and one check runs
    at a time (callers arriving meanwhile get its result), so calling this in a loop cannot
    multiply load on the table, the cluster or ARM.
    """
    try:
        settings = get_settings()
    except AppError as err:  # reading settings calls nothing outside the process: not cached
        return answer({"ok": False, "checks": {"settings": {"ok": False, "message": err.message}}}, 503)
    namespace = namespace_of(req, settings)
    with _readiness_lock:
        # Keyed by the settings object itself (held here, so its identity is never reused): new
        # settings (a redeploy, a test) always check afresh.
        fresh = [e for e in _readiness_cache if e[0] is settings and e[1] == namespace and _monotonic() < e[2]]
        if fresh:
            _, _, _, body, status = fresh[0]
        else:
            body, status = _readiness_checks(settings, namespace)
            _readiness_cache[:] = [e for e in _readiness_cache if e[0] is settings and e[1] != namespace]
            _readiness_cache.append((settings, namespace, _monotonic() + READINESS_CACHE_SECONDS, body, status))
    return answer(body, status)


def _readiness_checks(settings, namespace: str) -> tuple[dict, int]:
    checks: dict[str, dict] = {"settings": {"ok": True, "credentialMode": settings.credential_mode,
                                            "namespace": namespace}}
    try:
        c = composition.collaborators()
        c.store.list_active(namespace)
        checks["runTable"] = {"ok": True, "table": settings.runs_table_name}
    except Exception as err:  # readiness reports, it does not fail
        checks["runTable"] = {"ok": False, "message": _safe_message(err)}
        c = None
    if c is not None:
        try:
            c.kube.list_jobs_page(namespace, limit=1)
            checks["cluster"] = {"ok": True}
        except Exception as err:
            checks["cluster"] = {"ok": False, "message": _safe_message(err)}
    ok = all(check["ok"] for check in checks.values())
    return {"ok": ok, "checks": checks}, 200 if ok else 503


def _safe_message(err: Exception) -> str:
    if isinstance(err, (AppError, KubeError)):
        return err.message
    return type(err).__name__
