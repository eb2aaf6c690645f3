"""HTTP in and out: the route handlers, the one error-to-HTTP map, and JSON answers.

The one error-to-HTTP mapping lives here (``answer_error``): ``AppError`` subclasses carry their
status; ``KubeError``s from the cluster become 4xx/5xx with a trimmed message; anything else is a
500 whose details go to the log under the request's correlation id, never to the caller.

Every answer carries ``x-correlation-id``. Asynchronous answers (``202``) carry ``Location`` and
``Retry-After`` pointing at the *poll* route, because Polysync, Logic Apps and Durable-aware
callers all treat a ``200`` from that URL as "finished".

Each route imports its use case module when it runs: the use cases, and the clients they load,
stay out of the Functions host's start-up, which keeps cold start low.

Who may call is decided before a route runs (``shared.auth.access``): in ``entra`` mode every
route but liveness needs a bearer token; the status, run and cancel URLs handed out are the signed
routes (``/api/signed/runs/...``), which need nothing but their own signature. The poll answers
``202`` with the last state it knew while the run table is briefly unreachable: Polysync fails a
run on any 4xx or 5xx from the status URL, so a blip must not look like an end.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import OrderedDict
from urllib.parse import quote, urlsplit

import azure.functions as func

from shared import composition, logs
from shared.adapters import submits
from shared.adapters.submits import EXTERNAL_ID, EXTERNAL_ID_RULE, RUN_ID, is_text, shown_path
from shared.auth import access, signing
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

LAST_SEEN_RUNS = 2048  # runs whose last polled state this process keeps for a table outage
UNREACHABLE_NOTE = ("The run table or the cluster is briefly unreachable: this is the last state known here. "
                    "The run is not affected; poll again after Retry-After.")
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


def handle(req: func.HttpRequest, action, *, public: bool = False) -> func.HttpResponse:
    """Run ``action(req)`` with a correlation id, mapping every error to a JSON answer.

    Unless ``public``, the caller is checked first (``entra`` mode: the bearer token; ``key`` mode:
    the host has checked the function key already)."""
    cid = logs.new_correlation_id(req.headers.get("x-correlation-id"))
    with logs.correlation(cid):
        try:
            if not public:
                access.check_caller(get_settings(), req.headers.get("authorization"))
            response = action(req)
        except Exception as exc:  # the one place every error becomes an answer
            response = answer_error(exc)
        response.headers["x-correlation-id"] = cid
        return response


def handle_signed(req: func.HttpRequest, verb: str, action) -> func.HttpResponse:
    """A signed route: ``action(req)`` once the URL's ``sig`` opens ``verb`` of its run.

    The signature is checked before anything else (before the run id's shape, the namespace or
    the run is looked at), so every bad link gets the same 401."""
    def signed(req: func.HttpRequest) -> func.HttpResponse:
        settings = get_settings()
        namespace = req.params.get("namespace") or settings.namespace
        access.check_signed(settings, req.route_params.get("runId") or "", namespace, verb, req.params.get("sig"))
        return action(req)

    return handle(req, signed, public=True)


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
        headers.update(getattr(exc, "headers", None) or {})  # WWW-Authenticate of a 401 / 403
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
    """Absolute, signed URLs for a run: each opens its verb of this run without a key or token."""
    return signed_links(req, run.run_id, run.namespace)


def signed_links(req: func.HttpRequest, run_id: str, namespace: str) -> dict:
    parts = urlsplit(req.url)
    base = f"{parts.scheme}://{parts.netloc}/api/signed/runs/{quote(run_id)}"
    settings = get_settings()

    def link(path: str, verb: str) -> str:
        sig = signing.sign(settings, run_id, namespace, verb)
        return f"{base}{path}?namespace={quote(namespace)}&sig={sig}"

    poll, cancel = link("/poll", "poll"), link("/cancel", "cancel")
    return {
        "statusQueryGetUri": poll,
        "statusQueryUrl": poll,
        "runUri": link("", "run"),
        "cancelPostUri": cancel,
        "terminatePostUri": cancel,  # the Durable Functions name of the same thing
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
                                     header_key=req.headers.get("idempotency-key"),
                                     route_values={"externalId": external_id},
                                     relaxed_env_names=submits.cluster_env_rule(c.kube))
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
    run = reading.get_fresh_run(c, run_id, _optional_namespace(req, c))
    return answer({**run_document(run, c.settings), **run_links(req, run)})


_last_seen: OrderedDict[str, Run] = OrderedDict()
_last_seen_lock = threading.Lock()


def _remember(run: Run) -> None:
    with _last_seen_lock:
        _last_seen[run.run_id] = run
        _last_seen.move_to_end(run.run_id)
        while len(_last_seen) > LAST_SEEN_RUNS:
            _last_seen.popitem(last=False)


def _remembered(run_id: str, namespace: str | None) -> Run | None:
    with _last_seen_lock:
        run = _last_seen.get(run_id)
    return run if run is not None and namespace in (None, run.namespace) else None


def _briefly_unreachable(err: Exception) -> bool:
    """A dependency that retrying later may fix (not bad input, not broken settings)."""
    if isinstance(err, KubeError):
        return err.retryable or isinstance(err, (KubeUnavailable, KubeTooManyRequests))
    return isinstance(err, (ServiceUnavailable, UpstreamError))


def poll_run(req: func.HttpRequest) -> func.HttpResponse:
    """The asynchronous pattern: 202 while running, 200 on Success, 409 on Failed or Cancelled,
    404 for an unknown run - and 202 with the last known state while the table is unreachable."""
    from shared.usecases import reading  # lazy: cold start

    run_id = run_id_of(req)
    settings = get_settings()
    namespace = namespace_of(req, settings) if req.params.get("namespace") else None
    try:
        run = reading.get_fresh_run(composition.collaborators(), run_id, namespace)
    except Exception as err:
        if not _briefly_unreachable(err):
            raise
        log.warning("poll of %s answered from the last known state: %s", run_id, getattr(err, "message", err))
        return _last_known(req, run_id, namespace or settings.namespace, settings)
    _remember(run)
    return _poll_answer(req, run, settings)


def _poll_answer(req: func.HttpRequest, run: Run, settings, note: str | None = None) -> func.HttpResponse:
    body = run_document(run, settings)
    body["runtimeStatus"] = RUNTIME_STATUS.get(run.status, "Running")
    if note:
        body["note"] = note
    if not run.terminal:
        return accepted(req, run, body)
    body.update(run_links(req, run))
    if run.status == Status.SUCCESS:
        return answer(body, 200)
    return answer(body, FAILED_RUN_HTTP_STATUS)


def _last_known(req: func.HttpRequest, run_id: str, namespace: str, settings) -> func.HttpResponse:
    run = _remembered(run_id, namespace)
    if run is not None:
        return _poll_answer(req, run, settings, UNREACHABLE_NOTE)
    # Never seen here (another instance answered the earlier polls): still running, as far as
    # anyone can tell; the next poll will know.
    links = signed_links(req, run_id, namespace)
    body = {"runId": run_id, "namespace": namespace, "status": "Unknown", "runtimeStatus": "Running",
            "note": UNREACHABLE_NOTE, **links}
    return answer(body, 202, {"Location": links["statusQueryGetUri"], "Retry-After": str(_retry_after())})


def cancel_run(req: func.HttpRequest) -> func.HttpResponse:
    from shared.usecases import cancelling  # lazy: cold start

    run_id = run_id_of(req)
    c = composition.collaborators()
    run, changed = cancelling.cancel(c, run_id, _optional_namespace(req, c))
    body = run_document(run, c.settings)
    body["cancelled"] = changed
    if not changed:
        body["detail"] = f"Run already finished as {run.status}; nothing was changed"
        return answer({**body, **run_links(req, run)}, 200)
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
