"""Telemetry's own contract: where it records, that it loads nothing at import, that it never fails.

What the sweep and the submit record is proven through their entry points elsewhere
(tests/test_telemetry_entry_points.py); here the module's public functions are driven directly,
with OpenTelemetry's in-memory reader and exporter standing in for Application Insights.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from shared import logs, telemetry
from tests.fixtures.metrics import points

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def recorded():
    reader, spans = InMemoryMetricReader(), InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    telemetry.use_providers(MeterProvider(metric_readers=[reader]), tracer_provider)
    try:
        yield reader, spans
    finally:
        telemetry.reset()


def test_every_instrument_records_what_it_is_given(recorded):
    reader, _ = recorded
    telemetry.run_started("jobs", "job")
    telemetry.run_started("jobs", "job")
    telemetry.run_finished("jobs", "Failed")
    telemetry.active_runs("jobs", {"Running": 3, "Stalled": 1})
    telemetry.sweep_finished(duration_s=0.25, kube_requests=2, table_requests=5)
    telemetry.outbox_backlog("jobs", 7)
    telemetry.submit_finished(0.5, "created")
    got = points(reader)
    assert got["aksjobs.runs.started"] == [({"namespace": "jobs", "source": "job"}, 2)]
    assert got["aksjobs.runs.finished"] == [({"namespace": "jobs", "status": "Failed"}, 1)]
    assert sorted(got["aksjobs.runs.active"], key=str) == [
        ({"namespace": "jobs", "phase": "Running"}, 3), ({"namespace": "jobs", "phase": "Stalled"}, 1)]
    assert got["aksjobs.sweep.duration"] == [({}, (1, 0.25))]
    assert got["aksjobs.sweep.kube_requests"] == [({}, (1, 2))]
    assert got["aksjobs.sweep.table_requests"] == [({}, (1, 5))]
    assert got["aksjobs.outbox.backlog"] == [({"namespace": "jobs"}, 7)]
    assert got["aksjobs.submit.duration"] == [({"outcome": "created"}, (1, 0.5))]


def test_a_span_carries_the_correlation_id_of_the_work(recorded):
    _, spans = recorded
    with logs.correlation("cid-42"), telemetry.span("sweep", namespaces=2):
        pass
    (span,) = spans.get_finished_spans()
    assert span.name == "aksjobs.sweep"
    assert dict(span.attributes) == {"namespaces": 2, "correlation_id": "cid-42"}


def test_recording_never_fails_the_caller():
    def fail(*args, **kwargs):
        raise RuntimeError("export failed")

    class FailingInstrument:  # as an SDK or exporter fault would behave
        add = record = set = staticmethod(fail)

    class FailingMeter:
        def __getattr__(self, _create):
            return lambda *args, **kwargs: FailingInstrument()

    class Provider:
        def get_meter(self, name):
            return FailingMeter()

    telemetry.use_providers(Provider())
    try:
        telemetry.run_started("jobs", "http")
        telemetry.sweep_finished(duration_s=1.0, kube_requests=1, table_requests=1)
        telemetry.submit_finished(0.1, "failed")
    finally:
        telemetry.reset()


def _probe(env: dict) -> dict:
    code = ("import json, sys\n"
            "from shared import telemetry\n"
            "loaded_at_import = sorted(m for m in sys.modules if m.startswith(('opentelemetry', 'azure.monitor')))\n"
            "telemetry.run_started('jobs', 'http')\n"
            "telemetry.submit_finished(0.1, 'created')\n"
            "print(json.dumps({'atImport': loaded_at_import,\n"
            "                  'sdk': any(m.startswith('opentelemetry.sdk') for m in sys.modules),\n"
            "                  'exporter': any(m.startswith('azure.monitor') for m in sys.modules)}))\n")
    environ = {k: v for k, v in os.environ.items() if not k.startswith("APPLICATIONINSIGHTS_")}
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, env={**environ, **env},
                          capture_output=True, text=True, timeout=120, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_without_a_connection_string_nothing_is_loaded_or_recorded():
    assert _probe({}) == {"atImport": [], "sdk": False, "exporter": False}


def test_with_a_connection_string_the_exporter_loads_at_the_first_recording_not_at_import():
    # A closed loopback port: nothing leaves the machine; the periodic export fails quietly.
    env = {"APPLICATIONINSIGHTS_CONNECTION_STRING":
           "InstrumentationKey=00000000-0000-0000-0000-000000000000;IngestionEndpoint=http://127.0.0.1:9/",
           "APPLICATIONINSIGHTS_AUTHENTICATION_STRING": "Authorization=AAD;ClientId=11111111-1111-1111-1111-111111111111"}
    assert _probe(env) == {"atImport": [], "sdk": True, "exporter": True}


def test_the_hosts_authentication_string_selects_the_managed_identity():
    from azure.identity import ManagedIdentityCredential

    assert telemetry.entra_credential("") is None
    assert telemetry.entra_credential("InstrumentationKey=x") is None
    assert isinstance(telemetry.entra_credential("Authorization=AAD;ClientId=abc"), ManagedIdentityCredential)
    assert isinstance(telemetry.entra_credential("Authorization=AAD"), ManagedIdentityCredential)
