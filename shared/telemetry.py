"""Metrics and traces an operator can chart: OpenTelemetry, exported to Application Insights.

Instruments (Application Insights shows them in ``customMetrics`` under these names):

==============================  =========  ==========================================================
``aksjobs.runs.started``        counter    runs created (``namespace``, ``source``: job, fallback, rerun)
``aksjobs.runs.finished``       counter    runs that reached a terminal status (``namespace``, ``status``)
``aksjobs.runs.active``         gauge      active runs by phase after each sweep (``namespace``, ``phase``)
``aksjobs.sweep.duration``      histogram  seconds one sweep took
``aksjobs.sweep.kube_requests`` histogram  Kubernetes requests one sweep sent
``aksjobs.sweep.table_requests`` histogram Table requests one sweep sent
``aksjobs.outbox.backlog``      gauge      run events still waiting to be published after a sweep
                                           (``namespace``)
``aksjobs.submit.duration``     histogram  seconds one submit took (``outcome``: created, existing,
                                           rejected, failed)
==============================  =========  ==========================================================

and one span per sweep and per submit (``aksjobs.sweep``, ``aksjobs.submit``) carrying the
correlation id that every log line of the same work carries.

Where it goes is decided once per process, at the first recording, never at import (the SDK and the
exporter would cost every cold start): with ``APPLICATIONINSIGHTS_CONNECTION_STRING`` set (the host's
own setting, which the Bicep sets), an Azure Monitor exporter for metrics and traces, authenticated
with the managed identity that ``APPLICATIONINSIGHTS_AUTHENTICATION_STRING`` names
(``Authorization=AAD;ClientId=...``: the component refuses keys); without it, nothing is recorded
and nothing is imported. Tests and tools install their own providers with ``use_providers``.

Recording never raises: telemetry that fails must not fail a submit or a sweep.

Deliberately not here: what is measured where (the use cases call these functions), request
telemetry (the Functions host sends it), and log export (the host's logging already reaches
Application Insights, each line with its correlation id: ``shared.logs``).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from shared.logs import current_correlation_id

log = logging.getLogger(__name__)

NAME = "aksjobs"
SERVICE_NAME = "aks-jobs-for-polysync"
EXPORT_INTERVAL_MS = 30_000  # a sweep runs every 30 s by default: one export per sweep or so

_lock = threading.Lock()
_state: dict[str, Any] = {"configured": False, "instruments": None, "tracer": None}


class _Instruments:
    def __init__(self, meter):
        self.runs_started = meter.create_counter(f"{NAME}.runs.started", unit="{run}", description="Runs created")
        self.runs_finished = meter.create_counter(f"{NAME}.runs.finished", unit="{run}",
                                                  description="Runs that reached a terminal status")
        self.runs_active = meter.create_gauge(f"{NAME}.runs.active", unit="{run}",
                                              description="Active runs by phase after a sweep")
        self.sweep_duration = meter.create_histogram(f"{NAME}.sweep.duration", unit="s",
                                                     description="Duration of one sweep")
        self.sweep_kube = meter.create_histogram(f"{NAME}.sweep.kube_requests", unit="{request}",
                                                 description="Kubernetes requests of one sweep")
        self.sweep_table = meter.create_histogram(f"{NAME}.sweep.table_requests", unit="{request}",
                                                  description="Table requests of one sweep")
        self.outbox_backlog = meter.create_gauge(f"{NAME}.outbox.backlog", unit="{event}",
                                                 description="Run events waiting to be published after a sweep")
        self.submit_duration = meter.create_histogram(f"{NAME}.submit.duration", unit="s",
                                                      description="Duration of one submit")


# ------------------------------------------------------------------------------- set-up


def use_providers(meter_provider, tracer_provider=None) -> None:
    """Record into these providers from now on (tests: an in-memory reader; tools: their own)."""
    with _lock:
        _install(meter_provider, tracer_provider)


def reset() -> None:
    """Forget the providers: the next recording decides again from the environment."""
    with _lock:
        _state.update(configured=False, instruments=None, tracer=None)


def _install(meter_provider, tracer_provider) -> None:
    _state.update(configured=True, instruments=_Instruments(meter_provider.get_meter(NAME)),
                  tracer=tracer_provider.get_tracer(NAME) if tracer_provider is not None else None)


def _instruments() -> _Instruments | None:
    if not _state["configured"]:
        with _lock:
            if not _state["configured"]:
                try:
                    _configure_from_environment(os.environ)
                except Exception:  # noqa: BLE001 - a broken exporter must not break the app
                    log.warning("telemetry not configured; continuing without it", exc_info=True)
                    _state["configured"] = True
    return _state["instruments"]


def _configure_from_environment(environ: Mapping[str, str]) -> None:
    connection_string = environ.get("APPLICATIONINSIGHTS_CONNECTION_STRING")
    if not connection_string:
        _state["configured"] = True  # nothing to export to: record nothing
        return
    # Imported here, at the first recording, never at import: these SDKs are heavy and every cold
    # start would pay for them.
    from azure.monitor.opentelemetry.exporter import AzureMonitorMetricExporter, AzureMonitorTraceExporter
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    credential = entra_credential(environ.get("APPLICATIONINSIGHTS_AUTHENTICATION_STRING", ""))
    options = {"connection_string": connection_string, "credential": credential}
    resource = Resource.create({"service.name": SERVICE_NAME})
    meter_provider = MeterProvider(resource=resource, metric_readers=[PeriodicExportingMetricReader(
        AzureMonitorMetricExporter(**options), export_interval_millis=EXPORT_INTERVAL_MS)])
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(BatchSpanProcessor(AzureMonitorTraceExporter(**options)))
    # Both providers flush and stop at interpreter exit (the SDK registers that itself).
    _install(meter_provider, tracer_provider)


def entra_credential(authentication_string: str):
    """The managed identity credential the host's ``Authorization=AAD;ClientId=<id>`` names, or
    None (a key-based connection string, e.g. a developer's own component)."""
    parts = dict(p.split("=", 1) for p in authentication_string.split(";") if "=" in p)
    if parts.get("Authorization", "").upper() != "AAD":
        return None
    # Imported here: only an Entra-authenticated export needs it.
    from azure.identity import ManagedIdentityCredential

    client_id = parts.get("ClientId")
    return ManagedIdentityCredential(client_id=client_id) if client_id else ManagedIdentityCredential()


# ------------------------------------------------------------------------------ recording


def _record(what: str, action) -> None:
    try:
        instruments = _instruments()
        if instruments is not None:
            action(instruments)
    except Exception:  # noqa: BLE001 - telemetry never fails a submit or a sweep
        log.debug("recording %s failed", what, exc_info=True)


def run_started(namespace: str, source: str) -> None:
    _record("runs.started", lambda i: i.runs_started.add(1, {"namespace": namespace, "source": source}))


def run_finished(namespace: str, status: str) -> None:
    _record("runs.finished", lambda i: i.runs_finished.add(1, {"namespace": namespace, "status": status}))


def active_runs(namespace: str, by_phase: Mapping[str, int]) -> None:
    def action(i: _Instruments) -> None:
        for phase, count in by_phase.items():
            i.runs_active.set(count, {"namespace": namespace, "phase": phase})

    _record("runs.active", action)


def sweep_finished(*, duration_s: float, kube_requests: int, table_requests: int) -> None:
    def action(i: _Instruments) -> None:
        i.sweep_duration.record(duration_s)
        i.sweep_kube.record(kube_requests)
        i.sweep_table.record(table_requests)

    _record("sweep", action)


def outbox_backlog(namespace: str, waiting: int) -> None:
    _record("outbox.backlog", lambda i: i.outbox_backlog.set(waiting, {"namespace": namespace}))


def submit_finished(duration_s: float, outcome: str) -> None:
    _record("submit.duration", lambda i: i.submit_duration.record(duration_s, {"outcome": outcome}))


@contextmanager
def span(name: str, **attributes: Any) -> Iterator[None]:
    """A trace span around some work (a no-op without a tracer)."""
    _instruments()
    tracer = _state["tracer"]
    if tracer is None:
        yield
        return

    cid = current_correlation_id()
    attrs = {k: v for k, v in {**attributes, "correlation_id": cid}.items() if v is not None}
    with tracer.start_as_current_span(f"{NAME}.{name}", attributes=attrs):
        yield
