"""The sweep's work queue on Azure Queue Storage: the outbound port the timer's fan-out sends to.

Why: one timer sweeping every namespace on one instance does not scale out; Azure Functions
scales queue consumers by itself. The timer only enqueues one small message per shard of work
(``{"kind": "sweep", "namespace": ...}``) and a queue-triggered function does the shard.

Connection, as the Functions queue trigger binding reads it (``connection="SweepQueue"``): the
app setting ``SweepQueue`` (a connection string; Azurite locally) or, deployed,
``SweepQueue__queueServiceUri`` with the managed identity (``SweepQueue__credential`` and
``SweepQueue__clientId`` are for the Functions host; this module uses ``AZURE_CLIENT_ID``). The
queue is ``SWEEP_QUEUE_NAME``. Messages are JSON, base64-encoded: the queue trigger's default
``messageEncoding``.

What it deliberately does not do: decide what a message means (the sweep use case does), or let
an ``azure.core`` exception out (unreachable -> ``ServiceUnavailable``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from shared.errors import ServiceUnavailable, SettingsError, UpstreamError
from shared.settings import Settings

CONNECTION = "SweepQueue"  # the queue trigger's ``connection``: app settings SweepQueue / SweepQueue__*
CLIENT_OPTIONS: dict[str, Any] = {"retry_total": 3, "retry_backoff_factor": 0.2, "retry_backoff_max": 2,
                                  "connection_timeout": 5, "read_timeout": 20}


@dataclass(frozen=True)
class Received:
    """A message taken from the queue (invisible to others until ``visibility`` seconds pass)."""

    body: dict
    id: str
    pop_receipt: str
    dequeue_count: int


class SweepQueue:
    """One Storage Queue. ``sent`` counts the messages this instance enqueued."""

    def __init__(self, queue_client):
        self._queue = queue_client
        self.sent = 0

    @classmethod
    def from_settings(cls, settings: Settings) -> SweepQueue | None:
        """The configured queue, or None when neither ``SweepQueue`` nor its service URI is set
        (then the timer sweeps in process, as a single instance)."""
        # Lazy: only the timer and the queue trigger use it; function_app's import stays light.
        from azure.storage.queue import BinaryBase64DecodePolicy, BinaryBase64EncodePolicy, QueueClient

        codec = {"message_encode_policy": BinaryBase64EncodePolicy(),
                 "message_decode_policy": BinaryBase64DecodePolicy()}
        if settings.sweep_queue_connection_string:
            try:
                client = QueueClient.from_connection_string(settings.sweep_queue_connection_string,
                                                            settings.sweep_queue_name, **codec, **CLIENT_OPTIONS)
            except (ValueError, TypeError):
                # Not chained: a parser's message may quote the string, account key included.
                raise SettingsError([f"{CONNECTION} is not a valid Queue Storage connection string"]) from None
            return cls(client)
        if settings.sweep_queue_service_uri:
            from azure.identity import DefaultAzureCredential  # lazy: only deployed apps need it

            credential = DefaultAzureCredential(managed_identity_client_id=settings.azure_client_id)
            return cls(QueueClient(settings.sweep_queue_service_uri, settings.sweep_queue_name,
                                   credential=credential, **codec, **CLIENT_OPTIONS))
        return None

    @property
    def name(self) -> str:
        return self._queue.queue_name

    def ensure_queue(self) -> None:
        """Create the queue if it is missing (local runs; Bicep creates it in Azure)."""
        try:
            self._call(self._queue.create_queue)
        except _Exists:
            pass

    def send(self, body: dict, *, ttl_seconds: int | None = None) -> None:
        """Enqueue ``body`` (JSON); it expires after ``ttl_seconds`` when given (the service's
        default, 7 days, otherwise)."""
        self._call(self._queue.send_message, json.dumps(body, separators=(",", ":")).encode("utf-8"),
                   time_to_live=ttl_seconds)
        self.sent += 1

    def receive(self, *, max_messages: int = 32, visibility_timeout: int = 300) -> Iterator[Received]:
        """Messages now visible, each hidden for ``visibility_timeout`` seconds (the dev host's
        stand-in for the Functions queue trigger; in Azure the trigger receives)."""
        pages = self._call(self._queue.receive_messages, max_messages=max_messages,
                           visibility_timeout=visibility_timeout)
        for message in self._call(list, pages):
            content = message.content
            yield Received(json.loads(content.decode("utf-8") if isinstance(content, bytes) else content),
                           message.id, message.pop_receipt, message.dequeue_count)

    def delete(self, received: Received) -> None:
        self._call(self._queue.delete_message, received.id, received.pop_receipt)

    def depth(self) -> int:
        """Approximate number of messages in the queue."""
        return int(self._call(self._queue.get_queue_properties).approximate_message_count or 0)

    def _call(self, fn, *args, **kwargs):
        # Imported at first use, like the queue SDK itself: it keeps cold start low.
        from azure.core.exceptions import AzureError, HttpResponseError, ResourceExistsError

        try:
            return fn(*args, **kwargs)
        except ResourceExistsError:
            raise _Exists from None
        except HttpResponseError as err:
            status = err.status_code
            if status is not None and (status >= 500 or status == 429):
                raise ServiceUnavailable(f"sweep queue unreachable (HTTP {status})") from err
            raise UpstreamError(f"sweep queue refused the request (HTTP {status})") from err
        except AzureError as err:
            raise ServiceUnavailable("sweep queue unreachable") from err


class _Exists(Exception):
    pass
