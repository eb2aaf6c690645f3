"""Run events out to Event Grid: the outbound publisher.

``EventPublisher.publish`` sends events (``shared.runs.events`` builds them) with the azure-eventgrid
SDK (key auth when ``EVENTGRID_TOPIC_KEY`` is set, else the managed identity) and raises
``PublishFailed`` on any failure after the SDK's own short, bounded retries. ``publisher_for`` is
None without a topic. The SDKs load at the first publish, which keeps cold start low.

What this module deliberately does not do: decide *when* to publish or remember what is pending
(the run store's outbox and the sweep do: a transition is recorded with the state write and
published after, so publishing never blocks or loses a state change), or create Event Grid
subscriptions (infra does).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from datetime import datetime
from urllib.parse import urlsplit

from shared.runs.events import CLOUDEVENTS_SPEC_VERSION
from shared.settings import Settings

log = logging.getLogger(__name__)

PUBLISH_TIMEOUT_SECONDS = 5.0
PUBLISH_RETRY_TOTAL = 2
PUBLISH_RETRY_BACKOFF_SECONDS = 0.25
# An event is at most ~2 KB (names are bounded, the message is trimmed), so 100 per request stays
# far below Event Grid's 1 MB batch limit.
MAX_BATCH_EVENTS = 100


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
                # lazy: the Azure SDKs load at the first publish, which keeps cold start low
                from azure.eventgrid import EventGridPublisherClient

                _filter_sdk_noise()
                credential = self._credential
                if credential is None:
                    credential = self._owned_credential = self._settings_credential()
                self._client = EventGridPublisherClient(self.endpoint, credential)
            return self._client

    def _settings_credential(self):
        if self._settings.eventgrid_topic_key:
            # lazy: the Azure SDKs load at the first publish, which keeps cold start low
            from azure.core.credentials import AzureKeyCredential

            return AzureKeyCredential(self._settings.eventgrid_topic_key)
        # lazy: the Azure SDKs load at the first publish, which keeps cold start low
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
    # lazy: the Azure SDKs load at the first publish, which keeps cold start low
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

