"""Run status events: every status transition of a run as one CloudEvent 1.0 (pure).

Why this exists: runs are chained by Event Grid subscribers and Logic Apps as well as by Polysync
polling. Event Grid delivers at least once and subscribers filter on what an event says, so the
events follow its conventions exactly:

- ``type`` ``Polysync.AksJob.RunStatusChanged`` for every transition. There are deliberately no
  finer types (``RunSucceeded`` ...): one transition is one event with one id, so a subscriber sees
  a run's transitions in one stream and a redelivery is recognisable by id alone. Subscribers that
  only want finished runs filter on the data (Event Grid advanced filters ``data.status`` /
  ``data.terminal``, or a Logic Apps trigger condition); ``docs/chaining.md`` shows both.
- ``source`` names the cluster and namespace (the AKS resource id + ``/namespaces/{ns}``, or
  ``/kubeconfig/.../namespaces/{ns}`` for a local cluster); ``subject`` is ``runs/{runId}``.
- ``id`` is a UUIDv5 of (namespace, run id, phase, status, transition time), so publishing the
  same transition twice gives the same id, and two transitions never share one.
- ``data`` carries ``runId, externalId, namespace, status, phase, previousStatus, reason, message``
  (trimmed), ``terminal, time, monitorUrl``, and never a parameter value, an attribute or the Job.

Nothing here does I/O or reads the clock (callers pass ``at``). Sending the events is
``shared.publisher``'s; deciding when (the outbox, written with the state) is the use cases'.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from urllib.parse import quote

from shared.runs.model import Run
from shared.settings import Settings
from shared.text import trim

EVENT_TYPE_PREFIX = "Polysync.AksJob."
RUN_STATUS_CHANGED = EVENT_TYPE_PREFIX + "RunStatusChanged"
CLOUDEVENTS_SPEC_VERSION = "1.0"
EVENT_DATA_CONTENT_TYPE = "application/json"
MAX_EVENT_MESSAGE_CHARS = 300

# Fixed for ever: changing it changes every event id, and subscribers deduplicating by id would
# see old transitions as new ones.
EVENT_ID_NAMESPACE = uuid.UUID("5b0f3c1e-8d4a-5a7e-9c61-2f7d0e4b9a13")


def event_time(at: datetime) -> str:
    """RFC 3339 in UTC to the millisecond: what the SDK sends, so an event's time survives publishing
    unchanged (a naive ``at`` is taken as UTC)."""
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _cluster_known(settings: Settings) -> bool:
    return bool(settings.subscription_id and settings.resource_group and settings.cluster_name)


def event_source(settings: Settings, namespace: str) -> str:
    """The cluster and namespace a run lives in, as a CloudEvents ``source`` (a URI reference)."""
    if _cluster_known(settings):
        return f"{settings.cluster_resource_id}/namespaces/{namespace}"
    # A local cluster (kubeconfig mode) has no resource id. The kubeconfig *path* is left out: it
    # names a file on one machine and says nothing to a subscriber.
    if settings.kubeconfig_context:
        return f"/kubeconfig/contexts/{quote(settings.kubeconfig_context, safe='')}/namespaces/{namespace}"
    return f"/kubeconfig/namespaces/{namespace}"


def event_id(run: Run, at: datetime) -> str:
    """Deterministic per transition: the same (run, phase, status, time) always gives the same id."""
    key = "\n".join((run.namespace, run.run_id, str(run.phase), str(run.status), event_time(at)))
    return str(uuid.uuid5(EVENT_ID_NAMESPACE, key))



def transition_event(run: Run, previous_status: str | None, *, settings: Settings, at: datetime) -> dict:
    """The CloudEvent (a plain dict) announcing that ``run`` moved to its current state at ``at``.

    Pure: the same arguments give the same dict, id included. Nothing of the run's parameters,
    attributes or rendered Job is copied: Secret values must never leave the cluster this way.
    """
    when = event_time(at)
    return {
        "specversion": CLOUDEVENTS_SPEC_VERSION,
        "id": event_id(run, at),
        "source": event_source(settings, run.namespace),
        "type": RUN_STATUS_CHANGED,
        "subject": f"runs/{run.run_id}",
        "time": when,
        "datacontenttype": EVENT_DATA_CONTENT_TYPE,
        "data": {
            "runId": run.run_id,
            "externalId": run.external_id,
            "namespace": run.namespace,
            "status": str(run.status),
            "phase": str(run.phase),
            "previousStatus": str(previous_status) if previous_status is not None else None,
            "reason": run.reason,
            "message": trim(run.message, MAX_EVENT_MESSAGE_CHARS),
            "terminal": run.terminal,
            "time": when,
            "monitorUrl": settings.monitor_url if _cluster_known(settings) else None,
        },
    }

