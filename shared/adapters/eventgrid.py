"""The Event Grid-triggered submit: an event's ``data`` becomes a run, the event's id its
idempotency key, so a redelivered event returns the first run instead of creating a second Job.

An invalid event is logged with its id and dropped (raising would only make Event Grid redeliver
it for a day); a transient failure is raised so Event Grid retries.
"""

from __future__ import annotations

import logging

from shared import composition, logs
from shared.adapters.submits import cluster_env_rule, event_id_and_data, submit_request_from_event
from shared.errors import AppError, Conflict, PermanentConflict
from shared.kube.errors import KubeError, KubeNotFound
from shared.settings import get_settings

log = logging.getLogger(__name__)


def handle_submit_event(event) -> None:
    """Submit a run from an Event Grid event; the function ``function_app`` registers.

    Returns normally when the run was submitted (or already had been, for a redelivered event) and
    when the event is invalid (logged with its id, then dropped). Raises on a transient failure
    (cluster or table unavailable, settings broken, a parallel delivery holding the key) so the
    Functions host answers 5xx and Event Grid redelivers.
    """
    from shared.usecases import submitting  # lazy: the use cases load at the first event (cold start)

    shown_id = _safe_event_id(event)
    with logs.correlation(logs.new_correlation_id(shown_id)):
        try:
            c = composition.collaborators()
            request = submit_request_from_event(
                event, get_settings(), relaxed_env_names=cluster_env_rule(c.kube))
            result = submitting.submit(c, request)
        except Exception as exc:
            if _is_invalid(exc):
                field = getattr(exc, "field", None)
                log.warning("submit event %s dropped, it can never succeed: %s%s", shown_id, _message(exc),
                            f" (field {field})" if field else "")
                return
            log.warning("submit event %s failed, Event Grid will redeliver it: %s", shown_id, _message(exc))
            raise
        log.info("submit event %s: run %s of %s %s (%s)", shown_id, result.run.run_id, request.external_id,
                 "created" if result.created else "already submitted", result.run.status)


def _is_invalid(exc: Exception) -> bool:
    """True when redelivering the same event can never succeed: drop it. A 409 for a key or name
    that belongs to something else is one; a 409 for the same key being created right now by a
    parallel delivery, and every 5xx, are worth a retry."""
    if isinstance(exc, KubeNotFound | PermanentConflict):
        return True
    if isinstance(exc, KubeError):
        return False
    return isinstance(exc, AppError) and 400 <= exc.status < 500 and not isinstance(exc, Conflict)


def _safe_event_id(event) -> str:
    """The event's id for a log line: never more than a short printable token."""
    try:
        raw, _ = event_id_and_data(event)
    except AppError:
        raw = getattr(event, "id", None) if not isinstance(event, dict) else event.get("id")
    if not isinstance(raw, str) or not raw:
        return "<no id>"
    shown = "".join(ch if ch.isprintable() else "?" for ch in raw[:80])
    return shown + ("…" if len(raw) > 80 else "")


def _message(exc: Exception) -> str:
    if isinstance(exc, AppError | KubeError):
        return exc.message
    return type(exc).__name__  # an unexpected error's text may quote anything; the type is enough
