"""Chaining runs through Event Grid: status events out, submit events in.

Why this exists: runs are chained by Event Grid subscribers and Logic Apps as well as by Polysync
polling. Event Grid delivers at least once and subscribers filter on what an event says, so both
directions must follow its conventions exactly.

**Out.** Every status transition of a run becomes one CloudEvent 1.0 (``transition_event``, pure):

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

``EventPublisher.publish`` sends events with the azure-eventgrid SDK (key auth when
``EVENTGRID_TOPIC_KEY`` is set, else the managed identity) and raises ``PublishFailed`` on any
failure after the SDK's own short, bounded retries. ``publisher_for`` is None without a topic.

**In.** ``handle_submit_event`` is the Event Grid-triggered submit: the event's ``data``
(``externalId``, ``parameters``, ``attributes``, ``namespace``) goes through the same validation as
the HTTP submit, with the event's ``id`` as the idempotency key, so a redelivered event returns the
first run instead of creating a second Job. An invalid event is logged with its id and dropped
(raising would only make Event Grid redeliver it for a day); a transient failure is raised so
Event Grid retries.

What this module deliberately does not do: decide *when* to publish or remember what is pending
(the run store's outbox and the sweep do: a transition is recorded with the state write and
published after, so publishing never blocks or loses a state change), read the clock (callers
pass ``at``), or create Event Grid subscriptions (infra does).
"""

from __future__ import annotations

import json
import logging
import re
import threading
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from urllib.parse import quote, urlsplit

from shared.errors import AppError, Conflict, Forbidden, ValidationFailed
from shared.kube import jobspec
from shared.kube.errors import KubeError, KubeNotFound
from shared.runs.model import Run
from shared.settings import Settings

log = logging.getLogger(__name__)

EVENT_TYPE_PREFIX = "Polysync.AksJob."
RUN_STATUS_CHANGED = EVENT_TYPE_PREFIX + "RunStatusChanged"
EVENT_TYPES = (RUN_STATUS_CHANGED,)
CLOUDEVENTS_SPEC_VERSION = "1.0"
EVENT_DATA_CONTENT_TYPE = "application/json"
MAX_EVENT_MESSAGE_CHARS = 300

# Fixed for ever: changing it changes every event id, and subscribers deduplicating by id would
# see old transitions as new ones.
EVENT_ID_NAMESPACE = uuid.UUID("5b0f3c1e-8d4a-5a7e-9c61-2f7d0e4b9a13")

PUBLISH_TIMEOUT_SECONDS = 5.0
PUBLISH_RETRY_TOTAL = 2
PUBLISH_RETRY_BACKOFF_SECONDS = 0.25
# An event is at most ~2 KB (names are bounded, the message is trimmed), so 100 per request stays
# far below Event Grid's 1 MB batch limit.
MAX_BATCH_EVENTS = 100

SUBMIT_DATA_KEYS = ("externalId", "parameters", "attributes", "namespace")
_NAMESPACE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


# ----------------------------------------------------------------- out: events


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


def _trim(text: str | None) -> str | None:
    if text is None:
        return None
    text = text.strip()
    return text if len(text) <= MAX_EVENT_MESSAGE_CHARS else text[: MAX_EVENT_MESSAGE_CHARS - 1] + "…"


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
            "message": _trim(run.message),
            "terminal": run.terminal,
            "time": when,
            "monitorUrl": settings.monitor_url if _cluster_known(settings) else None,
        },
    }


# -------------------------------------------------------------- out: publishing


class PublishFailed(Exception):
    """Event Grid did not accept some events. ``delivered``: how many of them, from the start of
    the list, were accepted before the failure (they may be published again: same ids)."""

    def __init__(self, message: str, *, delivered: int = 0):
        super().__init__(message)
        self.message = message
        self.delivered = delivered


class _UnknownKwargWarnings(logging.Filter):
    """azure-eventgrid 4.22 drops the constructor's keyword arguments for basic topics, so retry and
    timeout options must go with each ``send``; its legacy CloudEvent model then logs one warning
    per option per event ("... is not a known attribute ... will be ignored"). That noise, and only
    that, is dropped."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "is not a known attribute of class" not in str(record.msg)


_sdk_noise_filtered = False


def _filter_sdk_noise() -> None:
    global _sdk_noise_filtered
    if not _sdk_noise_filtered:
        logging.getLogger("azure.eventgrid._legacy._generated._serialization").addFilter(_UnknownKwargWarnings())
        _sdk_noise_filtered = True


def topic_endpoint(configured: str) -> str:
    """The URL events are POSTed to. ARM's ``properties.endpoint`` already ends in ``/api/events``;
    a bare topic host name (``https://<topic>.<region>-1.eventgrid.azure.net``) is completed."""
    configured = configured.strip()
    if urlsplit(configured).path in ("", "/"):
        return configured.rstrip("/") + "/api/events"
    return configured


class EventPublisher:
    """Sends run events to the configured Event Grid topic as CloudEvents.

    ``credential``: a TokenCredential or AzureKeyCredential to use instead of the settings' choice
    (``EVENTGRID_TOPIC_KEY`` → key auth, else ``DefaultAzureCredential`` with ``AZURE_CLIENT_ID``).
    ``timeout`` bounds one request (connect and read) and, through the retry policy, the whole
    ``publish`` of one batch; ``retry_total`` is the SDK's retries (500/503/504 and 429 for POST;
    a connect failure or timeout on a POST is not retried by azure-core). ``transport_kwargs`` go to
    every request (e.g. ``connection_verify=<ca bundle>``).
    """

    def __init__(self, settings: Settings, *, credential=None, timeout: float = PUBLISH_TIMEOUT_SECONDS,
                 retry_total: int = PUBLISH_RETRY_TOTAL, max_batch_events: int = MAX_BATCH_EVENTS,
                 **transport_kwargs):
        if not settings.eventgrid_topic_endpoint:
            raise ValueError("EVENTGRID_TOPIC_ENDPOINT is not set; use publisher_for(settings)")
        self.endpoint = topic_endpoint(settings.eventgrid_topic_endpoint)
        self._settings = settings
        self._credential = credential
        self._max_batch_events = max(1, max_batch_events)
        self._options = {
            "retry_total": retry_total,
            "retry_backoff_factor": PUBLISH_RETRY_BACKOFF_SECONDS,
            "timeout": timeout,
            "connection_timeout": timeout,
            "read_timeout": timeout,
            **transport_kwargs,
        }
        self._client = None
        self._owned_credential = None
        self._lock = threading.Lock()

    @property
    def auth(self) -> str:
        """``key`` or ``token``: how this publisher authenticates (for health and logs; never the key)."""
        if self._credential is not None:
            return "token" if hasattr(self._credential, "get_token") else "key"
        return "key" if self._settings.eventgrid_topic_key else "token"

    def _sdk_client(self):
        with self._lock:
            if self._client is None:
                from azure.eventgrid import EventGridPublisherClient

                _filter_sdk_noise()
                credential = self._credential
                if credential is None:
                    credential = self._owned_credential = self._settings_credential()
                self._client = EventGridPublisherClient(self.endpoint, credential)
            return self._client

    def _settings_credential(self):
        if self._settings.eventgrid_topic_key:
            from azure.core.credentials import AzureKeyCredential

            return AzureKeyCredential(self._settings.eventgrid_topic_key)
        from azure.identity import DefaultAzureCredential

        return DefaultAzureCredential(managed_identity_client_id=self._settings.azure_client_id)

    def publish(self, events: Sequence[dict]) -> None:
        """Send ``events`` in order, in batches; PublishFailed (with ``delivered``) on any failure."""
        events = list(events)
        delivered = 0
        for start in range(0, len(events), self._max_batch_events):
            batch = events[start:start + self._max_batch_events]
            try:
                self._sdk_client().send([_cloud_event(e) for e in batch], **self._options)
            except Exception as exc:  # the one place SDK and credential errors become ours
                raise PublishFailed(_failure_message(exc, len(events) - delivered, delivered),
                                    delivered=delivered) from exc
            delivered += len(batch)

    def close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
            credential, self._owned_credential = self._owned_credential, None
        for closable in (client, credential):
            close = getattr(closable, "close", None)
            if close is not None:
                try:
                    close()
                except Exception:  # noqa: BLE001 - closing is best effort
                    log.debug("closing %s failed", type(closable).__name__)

    def __enter__(self) -> EventPublisher:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def publisher_for(settings: Settings) -> EventPublisher | None:
    """The publisher for the configured topic; None when ``EVENTGRID_TOPIC_ENDPOINT`` is not set."""
    if not settings.eventgrid_topic_endpoint:
        return None
    return EventPublisher(settings)


def _cloud_event(event: dict):
    from azure.core.messaging import CloudEvent

    return CloudEvent(
        source=event["source"],
        type=event["type"],
        specversion=event.get("specversion", CLOUDEVENTS_SPEC_VERSION),
        id=event["id"],
        time=datetime.fromisoformat(event["time"]) if event.get("time") else None,
        subject=event.get("subject"),
        datacontenttype=event.get("datacontenttype"),
        data=event.get("data"),
    )


def _failure_message(exc: Exception, pending: int, delivered: int) -> str:
    """Short and safe: the status and the service's error code, never the SDK's full message (it
    quotes the response) and never a credential."""
    parts = [type(exc).__name__]
    status = getattr(exc, "status_code", None)
    if status is not None:
        parts.append(f"HTTP {status}")
    error = getattr(exc, "error", None)
    code = getattr(error, "code", None)
    if isinstance(code, str) and code:
        parts.append(code[:60])
    done = f" ({delivered} delivered before it)" if delivered else ""
    return f"Event Grid did not accept {pending} run event(s){done}: {', '.join(parts)}"


# ------------------------------------------------------------------ in: submits


def _event_id_and_data(event) -> tuple[object, object]:
    """(id, data) of an Event Grid event in any shape the runtime or a test hands over: the
    Functions worker's EventGridEvent / CloudEvent (``get_json()``), azure-core's CloudEvent or
    azure-eventgrid's EventGridEvent (``.data``), or the raw JSON object of either schema."""
    if isinstance(event, dict):
        if "data_base64" in event and "data" not in event:
            raise ValidationFailed("Binary event data (data_base64) is not accepted; send JSON data",
                                   field="data")
        return event.get("id"), event.get("data")
    get_json = getattr(event, "get_json", None)
    data = get_json() if callable(get_json) else getattr(event, "data", None)
    return getattr(event, "id", None), data


def _safe_event_id(event) -> str:
    """The event's id for a log line: never more than a short printable token."""
    try:
        raw, _ = _event_id_and_data(event)
    except AppError:
        raw = getattr(event, "id", None) if not isinstance(event, dict) else event.get("id")
    if not isinstance(raw, str) or not raw:
        return "<no id>"
    shown = "".join(ch if ch.isprintable() else "?" for ch in raw[:80])
    return shown + ("…" if len(raw) > 80 else "")


def submit_request_from_event(event) -> tuple[str, str | None, dict, str]:
    """(external id, namespace or None, submit body, idempotency key) from a submit event.

    ``data`` is ``{"externalId", "parameters"?, "attributes"?, "namespace"?}`` (a JSON string is
    parsed); the body is what ``POST /api/jobs/{externalId}/runs`` would receive, and the event's
    ``id`` is the idempotency key. Every problem is a ValidationFailed whose ``field`` names it
    (``id``, ``data``, ``data.externalId``, ``data.parameters[0].name`` ...).
    """
    from shared import api

    raw_id, data = _event_id_and_data(event)
    if not isinstance(raw_id, str) or not raw_id.strip():
        raise ValidationFailed("The event has no id; it is the run's idempotency key", field="id")
    if len(raw_id) > api.MAX_IDEMPOTENCY_KEY_CHARS:
        raise ValidationFailed(f"The event id is {len(raw_id)} characters; at most "
                               f"{api.MAX_IDEMPOTENCY_KEY_CHARS}", field="id")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in raw_id):
        raise ValidationFailed("The event id must not contain control characters", field="id")

    if isinstance(data, bytes | bytearray):
        data = data.decode("utf-8", "replace")
    if isinstance(data, str):
        try:
            data = json.loads(data)
        except ValueError:
            raise ValidationFailed("The event data is not valid JSON", field="data") from None
    if not isinstance(data, dict):
        shown = "nothing" if data is None else type(data).__name__
        raise ValidationFailed(f"The event data must be an object with externalId, not {shown}", field="data")
    unknown = sorted(str(k) for k in data if k not in SUBMIT_DATA_KEYS)
    if unknown:
        raise ValidationFailed(f"Unknown field {unknown[0][:60]!r} in the event data; expected "
                               f"{', '.join(SUBMIT_DATA_KEYS)}", field=f"data.{unknown[0][:60]}")

    external_id = data.get("externalId")
    if not isinstance(external_id, str) or not api.EXTERNAL_ID.match(external_id):
        raise ValidationFailed("data.externalId must be a Kubernetes Job name: lowercase letters, digits, "
                               "'-' and '.', starting and ending with a letter or digit, at most 253 "
                               "characters", field="data.externalId")

    namespace = data.get("namespace")
    if namespace is not None and (not isinstance(namespace, str) or not _NAMESPACE.match(namespace)):
        raise ValidationFailed("data.namespace must be a namespace name (a DNS-1123 label)",
                               field="data.namespace")

    parameters = data.get("parameters")
    try:
        jobspec.normalize_parameters(parameters)
    except ValidationFailed as err:
        raise _in_data(err) from None

    attributes = data.get("attributes")
    if attributes is not None:
        if not isinstance(attributes, dict):
            raise ValidationFailed("data.attributes must be an object", field="data.attributes")
        for name in attributes:
            if name not in api.ATTRIBUTE_KEYS:
                raise ValidationFailed(f"Unknown attribute {str(name)[:60]!r}; expected "
                                       f"{', '.join(api.ATTRIBUTE_KEYS)}", field=f"data.attributes.{str(name)[:60]}")

    body: dict = {}
    if parameters is not None:
        body["parameters"] = parameters
    if attributes:
        body["attributes"] = attributes
    return external_id, namespace, body, raw_id


def _in_data(err: AppError) -> AppError:
    """Re-point a validation error raised for an HTTP body at the event's fields."""
    if err.field is None:
        err.field = "data"
    elif err.field == "idempotencyKey":
        err.field = "id"
    elif err.field not in ("id", "data") and not err.field.startswith("data."):
        err.field = f"data.{err.field}"
    return err


def _is_invalid(exc: Exception) -> bool:
    """True when redelivering the same event can never succeed: drop it. A 409 (the same key being
    created right now by a parallel delivery) and every 5xx are worth a retry."""
    if isinstance(exc, KubeNotFound):
        return True
    if isinstance(exc, KubeError):
        return False
    return isinstance(exc, AppError) and 400 <= exc.status < 500 and not isinstance(exc, Conflict)


def handle_submit_event(event) -> None:
    """Submit a run from an Event Grid event; the function ``function_app`` registers.

    Returns normally when the run was submitted (or already had been, for a redelivered event) and
    when the event is invalid (logged with its id, then dropped). Raises on a transient failure
    (cluster or table unavailable, settings broken, a parallel delivery holding the key) so the
    Functions host answers 5xx and Event Grid redelivers.
    """
    from shared import api, logs

    shown_id = _safe_event_id(event)
    with logs.correlation(logs.new_correlation_id(shown_id)):
        try:
            external_id, namespace, body, key = submit_request_from_event(event)
            svc = api.service()
            ns = namespace or svc.settings.namespace
            if ns not in svc.settings.allowed_namespaces:
                raise Forbidden(f"Namespace {ns!r} is not in ALLOWED_NAMESPACES", field="data.namespace")
            try:
                request = api.submit_request_from_body({**body, "idempotencyKey": key}, external_id, ns)
            except AppError as err:
                raise _in_data(err) from None
            result = svc.submit(request)
        except Exception as exc:
            if _is_invalid(exc):
                field = getattr(exc, "field", None)
                log.warning("submit event %s dropped, it can never succeed: %s%s", shown_id, _message(exc),
                            f" (field {field})" if field else "")
                return
            log.warning("submit event %s failed, Event Grid will redeliver it: %s", shown_id, _message(exc))
            raise
        log.info("submit event %s: run %s of %s %s (%s)", shown_id, result.run.run_id, external_id,
                 "created" if result.created else "already submitted", result.run.status)


def _message(exc: Exception) -> str:
    if isinstance(exc, AppError | KubeError):
        return exc.message
    return type(exc).__name__  # an unexpected error's text may quote anything; the type is enough

