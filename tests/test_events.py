"""Run status events out to Event Grid, run submits in from Event Grid, and the Logic App recipe.

The publisher is proven against the loopback Event Grid stub with the real azure-eventgrid SDK
(key auth, a TokenCredential, and DefaultAzureCredential through an App Service managed-identity
endpoint); the Event Grid-triggered submit against Azurite and the Kubernetes simulator.
"""

from __future__ import annotations

import json
import logging
import socket
import subprocess
import sys
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import azure.functions as func
import pytest
from azure.core.messaging import CloudEvent

from shared import composition
from shared.adapters.eventgrid import handle_submit_event
from shared.adapters.submits import submit_request_from_event
from shared.errors import ValidationFailed
from shared.kube import jobspec
from shared.kube.errors import KubeUnavailable
from shared.publisher import EventPublisher, PublishFailed, publisher_for
from shared.runs.events import EVENT_TYPE_PREFIX, RUN_STATUS_CHANGED, transition_event
from shared.runs.model import Phase, Run, RunState, Status, apply_state
from shared.settings import Settings
from shared.usecases.requests import SubmitRequest
from tests.fixtures.app import source_job
from tests.fixtures.arm import FakeEntraCredential

# The `eventgrid` and `topic_settings` fixtures; harmless once tests/conftest.py lists the plugin too.
pytest_plugins = ["tests.fixtures.eventgrid"]

ROOT = Path(__file__).resolve().parent.parent
AKS = Settings(subscription_id="sub-1", resource_group="rg-jobs", cluster_name="aks-prod")
T0 = datetime(2026, 11, 26, 2, 0, 0, 123456, tzinfo=UTC)
SECRET_VALUE = "hunter2-do-not-leak"


def _run(**changes) -> Run:
    run = Run(
        run_id="nightly-report-7k3q9x2m4p", namespace="jobs", external_id="nightly-report",
        created_at=T0, updated_at=T0, idempotency_key="polysync-run-42",
        parameters=[{"name": "DB_PASSWORD", "value": SECRET_VALUE, "dataType": "Secret", "direction": "Input"},
                    {"name": "REPORT_DATE", "value": "2026-11-26-plain-value", "dataType": "String",
                     "direction": "Input"}],
        attributes={"containerArgs": ["--token", "attribute-value-xyz"]},
        rendered_job={"spec": {"template": {"spec": {"containers": [{"env": [
            {"name": "REPORT_DATE", "value": "2026-11-26-plain-value"}]}]}}}},
    )
    return replace(run, **changes)


def _moved(run: Run, state: RunState, at: datetime) -> Run:
    moved = apply_state(run, state, at)
    assert moved is not None
    return moved


def _events(count: int, settings: Settings = AKS) -> list[dict]:
    run = _run()
    out = []
    for i in range(count):
        at = T0 + timedelta(seconds=i)
        run = _moved(run, RunState(Status.RUNNING, Phase.RUNNING if i % 2 == 0 else Phase.STALLED,
                                   f"Reason{i}"), at)
        out.append(transition_event(run, Status.STARTING, settings=settings, at=at))
    return out


# --------------------------------------------------------------- transition_event


def test_transition_event_is_a_cloudevent_naming_cluster_namespace_and_run():
    run = _moved(_run(), RunState(Status.SUCCESS, Phase.SUCCEEDED, "Completed", "Job completed"), T0)
    event = transition_event(run, Status.RUNNING, settings=AKS, at=T0)

    assert event["specversion"] == "1.0"
    assert event["type"] == RUN_STATUS_CHANGED == "Polysync.AksJob.RunStatusChanged"
    assert event["type"].startswith(EVENT_TYPE_PREFIX)
    assert event["source"] == ("/subscriptions/sub-1/resourceGroups/rg-jobs/providers/"
                               "Microsoft.ContainerService/managedClusters/aks-prod/namespaces/jobs")
    assert event["subject"] == "runs/nightly-report-7k3q9x2m4p"
    assert event["time"] == "2026-11-26T02:00:00.123Z"
    assert event["datacontenttype"] == "application/json"
    assert event["data"] == {
        "runId": "nightly-report-7k3q9x2m4p",
        "externalId": "nightly-report",
        "namespace": "jobs",
        "status": "Success",
        "phase": "Succeeded",
        "previousStatus": "Running",
        "reason": "Completed",
        "message": "Job completed",
        "terminal": True,
        "time": "2026-11-26T02:00:00.123Z",
        "monitorUrl": AKS.monitor_url,
    }
    json.dumps(event)  # plain JSON all the way down


def test_the_same_transition_gives_the_same_event_and_id():
    run = _moved(_run(), RunState(Status.RUNNING, Phase.RUNNING, "PodRunning"), T0)
    first = transition_event(run, Status.STARTING, settings=AKS, at=T0)
    again = transition_event(replace(run), Status.STARTING, settings=AKS, at=T0)
    assert again == first
    # A stored event re-published later is the same dict: the outbox needs nothing else.
    assert json.loads(json.dumps(first)) == first


def test_every_transition_of_a_run_gets_its_own_id():
    run = _run()
    ids = set()
    steps = [(Status.STARTING, Phase.PENDING), (Status.STARTING, Phase.STALLED), (Status.RUNNING, Phase.RUNNING),
             (Status.STARTING, Phase.STALLED), (Status.RUNNING, Phase.RUNNING), (Status.FAILED, Phase.FAILED)]
    for i, (status, phase) in enumerate(steps):
        at = T0 + timedelta(seconds=i)
        previous = run.status
        run = _moved(run, RunState(status, phase, f"R{i}"), at)
        ids.add(transition_event(run, previous, settings=AKS, at=at)["id"])
    assert len(ids) == len(steps)  # Running twice, at different times: two events
    other_run = transition_event(replace(run, run_id="nightly-report-other"), None, settings=AKS, at=T0)
    other_namespace = transition_event(replace(run, namespace="other"), None, settings=AKS, at=T0)
    assert other_run["id"] not in ids and other_namespace["id"] not in ids


def test_transition_event_carries_no_parameter_value_attribute_or_job():
    run = _moved(_run(), RunState(Status.RUNNING, Phase.RUNNING, "PodRunning"), T0)
    text = json.dumps(transition_event(run, Status.STARTING, settings=AKS, at=T0))
    for leaked in (SECRET_VALUE, "2026-11-26-plain-value", "attribute-value-xyz", "DB_PASSWORD",
                   "polysync-run-42"):
        assert leaked not in text


def test_transition_time_is_utc_and_the_same_instant_gives_the_same_id_in_any_zone():
    run = _moved(_run(), RunState(Status.RUNNING, Phase.RUNNING, "PodRunning"), T0)
    in_utc = transition_event(run, None, settings=AKS, at=T0)
    cet = T0.astimezone(timezone(timedelta(hours=1)))
    in_cet = transition_event(run, None, settings=AKS, at=cet)
    naive = transition_event(run, None, settings=AKS, at=T0.replace(tzinfo=None))
    assert in_utc == in_cet == naive
    assert in_utc["data"]["previousStatus"] is None


def test_without_a_cluster_id_the_source_names_the_kubeconfig_namespace():
    local = Settings(credential_mode="kubeconfig", kubeconfig_path="/home/dev/.kube/config")
    run = _moved(_run(), RunState(Status.RUNNING, Phase.RUNNING, "PodRunning"), T0)
    event = transition_event(run, Status.STARTING, settings=local, at=T0)
    assert event["source"] == "/kubeconfig/namespaces/jobs"
    assert ".kube" not in json.dumps(event)
    assert event["data"]["monitorUrl"] is None
    named = replace(local, kubeconfig_context="kind-dev cluster")
    assert transition_event(run, None, settings=named, at=T0)["source"] == (
        "/kubeconfig/contexts/kind-dev%20cluster/namespaces/jobs")


def test_a_long_message_is_trimmed():
    run = _moved(_run(), RunState(Status.FAILED, Phase.FAILED, "BackoffLimitExceeded", "x" * 5000), T0)
    message = transition_event(run, Status.RUNNING, settings=AKS, at=T0)["data"]["message"]
    assert 0 < len(message) <= 300
    assert message.startswith("xxx")


# ----------------------------------------------------------------------- publishing


def test_importing_the_publisher_module_loads_no_sdk():
    # function_app imports this module: a cold start must not pay for SDKs it may never use.
    probe = ("import sys, shared.publisher; print(sorted(m for m in ('azure.eventgrid', 'azure.identity', "
             "'azure.core.messaging', 'kubernetes') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_publisher_for_is_none_without_a_topic():
    assert publisher_for(AKS) is None
    with pytest.raises(ValueError, match="EVENTGRID_TOPIC_ENDPOINT"):
        EventPublisher(AKS)


def test_publisher_completes_a_bare_topic_host_to_the_events_path():
    bare = publisher_for(replace(AKS, eventgrid_topic_endpoint="https://t1.westeurope-1.eventgrid.azure.net"))
    full = publisher_for(replace(AKS, eventgrid_topic_endpoint="https://t1.westeurope-1.eventgrid.azure.net/api/events"))
    assert bare.endpoint == full.endpoint == "https://t1.westeurope-1.eventgrid.azure.net/api/events"


def test_publisher_delivers_with_key_auth_keeping_id_time_source_and_order(eventgrid, topic_settings, caplog):
    caplog.set_level(logging.WARNING)
    events = _events(3)
    with publisher_for(topic_settings()) as publisher:
        assert publisher.auth == "key"
        publisher.publish(events)

    received = eventgrid.received()
    assert [e["id"] for e in received] == [e["id"] for e in events]
    for sent, got in zip(events, received, strict=True):
        for attribute in ("specversion", "id", "source", "type", "subject", "time", "datacontenttype", "data"):
            assert got[attribute] == sent[attribute], attribute
    [attempt] = eventgrid.attempts
    assert (attempt.auth, attempt.content_type, attempt.status) == ("key", "application/cloudevents-batch+json", 200)
    assert attempt.api_version
    # The SDK's per-option "not a known attribute" warnings are filtered, and nothing else is logged.
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_publisher_delivers_with_a_token_credential(eventgrid, topic_settings):
    credential = FakeEntraCredential("eventgrid-token-1")
    eventgrid.accept_token("eventgrid-token-1")
    settings = topic_settings(key=None)
    publisher = EventPublisher(settings, credential=credential)
    assert publisher.auth == "token"
    publisher.publish(_events(2))
    assert [a.auth for a in eventgrid.attempts] == ["bearer"]
    assert len(eventgrid.received()) == 2
    assert credential.scopes == [("https://eventgrid.azure.net/.default",)]


def test_without_a_key_the_publisher_uses_the_managed_identity_named_by_azure_client_id(
        eventgrid, topic_settings, monkeypatch):
    for name in ("AZURE_CLIENT_ID", "AZURE_TENANT_ID", "AZURE_CLIENT_SECRET", "AZURE_FEDERATED_TOKEN_FILE",
                 "AZURE_USERNAME", "MSI_ENDPOINT", "MSI_SECRET", "IDENTITY_SERVER_THUMBPRINT", "IMDS_ENDPOINT",
                 "AZURE_TOKEN_CREDENTIALS"):
        monkeypatch.delenv(name, raising=False)
    # The App Service managed-identity protocol, as on a Functions host.
    monkeypatch.setenv("IDENTITY_ENDPOINT", eventgrid.identity_endpoint)
    monkeypatch.setenv("IDENTITY_HEADER", eventgrid.identity_header)
    client_id = "3f2b9d4e-1c7a-4e55-9a0b-6d8e2f1c4b7a"
    publisher = publisher_for(topic_settings(key=None, azure_client_id=client_id))
    try:
        publisher.publish(_events(1))
    finally:
        publisher.close()
    assert [a.auth for a in eventgrid.attempts] == ["bearer"]
    assert eventgrid.token_requests == [{"resource": "https://eventgrid.azure.net", "client_id": client_id,
                                         "api_version": "2019-08-01"}]


def test_topic_failing_with_500_is_publish_failed_quickly_and_nothing_is_recorded(eventgrid, topic_settings):
    eventgrid.fail(500)
    publisher = publisher_for(topic_settings())
    events = _events(3)
    started = time.monotonic()
    with pytest.raises(PublishFailed) as failed:
        publisher.publish(events)
    # About 1 s here (two short back-offs); the wide bound only catches a default retry policy
    # (minutes of back-off) on a loaded runner; the attempt count below is the exact check.
    assert time.monotonic() - started < 20
    assert failed.value.delivered == 0
    assert "HTTP 500" in str(failed.value)
    assert len(eventgrid.attempts) == 3  # one try and the SDK's two retries, no more
    assert eventgrid.received() == []

    eventgrid.up()
    publisher.publish(events)  # what the outbox does on the next sweep
    assert [e["id"] for e in eventgrid.received()] == [e["id"] for e in events]


def test_hung_topic_is_publish_failed_within_the_timeout(eventgrid, topic_settings):
    eventgrid.hang()
    publisher = EventPublisher(topic_settings(), timeout=1.0)
    started = time.monotonic()
    with pytest.raises(PublishFailed):
        publisher.publish(_events(1))
    # The topic never answers: without the 1 s timeout this would not return at all.
    assert time.monotonic() - started < 30
    assert eventgrid.received() == []


def test_unreachable_topic_is_publish_failed_quickly():
    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    publisher = publisher_for(replace(AKS, eventgrid_topic_endpoint=f"https://127.0.0.1:{port}/api/events",
                                      eventgrid_topic_key="k"))
    started = time.monotonic()
    with pytest.raises(PublishFailed) as failed:
        publisher.publish(_events(1))
    assert time.monotonic() - started < 20  # refused at once; wide for a loaded runner
    assert failed.value.delivered == 0


def test_failure_after_some_batches_says_how_many_were_delivered_and_loses_none(eventgrid, topic_settings):
    events = _events(5)
    publisher = EventPublisher(topic_settings(), max_batch_events=2)
    eventgrid.fail(500, after=1)  # the first batch is accepted, then the topic goes down
    with pytest.raises(PublishFailed) as failed:
        publisher.publish(events)
    assert failed.value.delivered == 2
    assert eventgrid.ids == [e["id"] for e in events[:2]]

    eventgrid.up()
    publisher.publish(events[failed.value.delivered:])
    assert eventgrid.ids == [e["id"] for e in events]  # every event once, in order


def test_rejected_key_is_publish_failed_and_the_key_is_nowhere_in_errors_or_logs(eventgrid, topic_settings, caplog):
    caplog.set_level(logging.DEBUG)
    wrong_key = "wrong-topic-key-ZZZ9876543210"
    publisher = publisher_for(topic_settings(key=wrong_key))
    with pytest.raises(PublishFailed) as failed:
        publisher.publish(_events(1))
    assert "HTTP 401" in str(failed.value)
    assert eventgrid.attempts[0].status == 401
    for text in (str(failed.value), repr(failed.value), caplog.text):
        assert wrong_key not in text and eventgrid.key not in text


def test_publishing_nothing_sends_nothing(eventgrid, topic_settings):
    publisher_for(topic_settings()).publish([])
    assert eventgrid.attempts == []


# ---------------------------------------------------------------- submit events in

SUBMIT_DATA = {"externalId": "nightly-report", "parameters": {"REPORT_DATE": "2026-11-26"},
               "attributes": {"containerImage": "registry.example/report:1.5"}}
EXPECTED = SubmitRequest(external_id="nightly-report", namespace="default",
                         parameters=[jobspec.Parameter("REPORT_DATE", "2026-11-26")],
                         attributes={"containerImage": "registry.example/report:1.5"}, idempotency_key="evt-1")
TEAMS = Settings(allowed_namespaces=("default", "team-a"))


@pytest.mark.parametrize("event", [
    pytest.param(func.EventGridEvent(id="evt-1", data=SUBMIT_DATA, topic="/t", subject="chain/next",
                                     event_type="Polysync.AksJob.SubmitRun", event_time=None, data_version="1"),
                 id="functions-eventgridevent"),
    pytest.param(func.CloudEvent(id="evt-1", source="/t", type="Polysync.AksJob.SubmitRun", specversion="1.0",
                                 data=SUBMIT_DATA), id="functions-cloudevent"),
    pytest.param(CloudEvent(source="/t", type="Polysync.AksJob.SubmitRun", id="evt-1", data=SUBMIT_DATA),
                 id="azure-core-cloudevent"),
    pytest.param({"id": "evt-1", "eventType": "SubmitRun", "subject": "s", "dataVersion": "1",
                  "eventTime": "2026-11-26T02:00:00Z", "data": SUBMIT_DATA}, id="eventgrid-schema-json"),
    pytest.param({"specversion": "1.0", "id": "evt-1", "source": "/t", "type": "SubmitRun",
                  "data": json.dumps(SUBMIT_DATA)}, id="cloudevent-json-with-string-data"),
])
def test_submit_request_from_event_reads_every_event_shape(event):
    assert submit_request_from_event(event, TEAMS) == EXPECTED


def test_submit_request_from_event_takes_the_namespace_and_list_parameters():
    data = {"externalId": "etl.v2", "namespace": "team-a",
            "parameters": [{"name": "N", "value": 3, "dataType": "Int"}]}
    assert submit_request_from_event({"id": "e", "data": data}, TEAMS) == SubmitRequest(
        external_id="etl.v2", namespace="team-a", parameters=[jobspec.Parameter("N", "3", "Int")],
        idempotency_key="e")


@pytest.mark.parametrize(("event", "field"), [
    ({"data": SUBMIT_DATA}, "id"),
    ({"id": "", "data": SUBMIT_DATA}, "id"),
    ({"id": 42, "data": SUBMIT_DATA}, "id"),
    ({"id": "x" * 257, "data": SUBMIT_DATA}, "id"),
    ({"id": "bad\nid", "data": SUBMIT_DATA}, "id"),
    ({"id": "e"}, "data"),
    ({"id": "e", "data": ["nightly-report"]}, "data"),
    ({"id": "e", "data": "{not json"}, "data"),
    ({"id": "e", "data_base64": "eyJ4IjoxfQ=="}, "data"),
    ({"id": "e", "data": {"parameters": {}}}, "data.externalId"),
    ({"id": "e", "data": {"externalId": "Nightly_Report"}}, "data.externalId"),
    ({"id": "e", "data": {"externalId": 7}}, "data.externalId"),
    ({"id": "e", "data": {"externalId": "a", "parameter": {"X": "1"}}}, "data.parameter"),
    ({"id": "e", "data": {"externalId": "a", "idempotencyKey": "k"}}, "data.idempotencyKey"),
    ({"id": "e", "data": {"externalId": "a", "parameters": "X=1"}}, "data.parameters"),
    ({"id": "e", "data": {"externalId": "a", "parameters": [{"value": "1"}]}}, "data.parameters[0].name"),
    ({"id": "e", "data": {"externalId": "a", "parameters": {"1ST": "x"}}}, "data.parameters.1ST"),
    ({"id": "e", "data": {"externalId": "a", "parameters": [{"name": "A", "value": "1", "dataType": "Blob"}]}},
     "data.parameters[0].dataType"),
    ({"id": "e", "data": {"externalId": "a", "attributes": ["img"]}}, "data.attributes"),
    ({"id": "e", "data": {"externalId": "a", "attributes": {"image": "x"}}}, "data.attributes.image"),
    ({"id": "e", "data": {"externalId": "a", "namespace": "Team_A"}}, "data.namespace"),
    ({"id": "e", "data": {"externalId": "a", "namespace": "default\n"}}, "data.namespace"),
    ({"id": "e", "data": {"externalId": "report\n"}}, "data.externalId"),
    ({"id": "e\ud800", "data": {"externalId": "a"}}, "id"),
])
def test_malformed_submit_event_is_validation_failed_naming_the_field(event, field):
    with pytest.raises(ValidationFailed) as failed:
        submit_request_from_event(event, TEAMS)
    assert failed.value.field == field


# ------------------------------------------------- the Event Grid-triggered submit


def _submit_event(event_id: str, data: dict) -> func.EventGridEvent:
    return func.EventGridEvent(id=event_id, data=data, topic="/chain", subject="chain/next",
                               event_type="Polysync.AksJob.SubmitRun", event_time=None, data_version="1")


def _run_jobs(app, external_id: str) -> list[dict]:
    return [j for j in app.sim.objects("jobs", "default")
            if ((j["metadata"].get("labels") or {}).get(jobspec.RUN_ID_LABEL))
            and j["metadata"]["name"] != external_id]


def test_the_same_submit_event_delivered_three_times_creates_one_job(app):
    app.sim.put("jobs", "default", source_job("nightly-report", {"REPORT_DATE": "2026-01-01"}))
    event = _submit_event("0b9e2f6c-delivery-1", {"externalId": "nightly-report",
                                                  "parameters": {"REPORT_DATE": "2026-11-26"}})
    for _ in range(3):
        handle_submit_event(event)

    [job] = _run_jobs(app, "nightly-report")
    env = {e["name"]: e.get("value") for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env == {"REPORT_DATE": "2026-11-26"}
    runs = app.get("/api/runs").json["runs"]
    assert [r["runId"] for r in runs] == [job["metadata"]["name"]]
    assert app.run(runs[0]["runId"])["idempotencyKey"] == "0b9e2f6c-delivery-1"


@pytest.mark.parametrize("data", [
    {"externalId": "Not A Job"},
    {"externalId": "nightly-report", "parameters": {"BAD NAME": "x"}},
    {"externalId": "nightly-report", "namespace": "not-allowed"},
    {"externalId": "no-such-job"},
    {"externalId": "nightly-report", "parameter": {"REPORT_DATE": "x"}},
], ids=["bad-external-id", "bad-parameter-name", "namespace-not-allowed", "no-source-job", "unknown-field"])
def test_an_invalid_submit_event_creates_nothing_does_not_raise_and_is_logged_with_its_id(app, caplog, data):
    app.sim.put("jobs", "default", source_job("nightly-report", {"REPORT_DATE": "2026-01-01"}))
    caplog.set_level(logging.WARNING, logger="shared.adapters.eventgrid")
    handle_submit_event(_submit_event("evt-invalid-17", data))
    assert _run_jobs(app, "nightly-report") == []
    assert app.get("/api/runs").json["runs"] == []
    assert "evt-invalid-17" in caplog.text and "dropped" in caplog.text


def test_a_transient_failure_is_raised_so_event_grid_redelivers_and_the_redelivery_runs_once(
        app, tmp_path, monkeypatch):
    app.sim.put("jobs", "default", source_job("nightly-report", {"REPORT_DATE": "2026-01-01"}))
    event = _submit_event("evt-transient-1", {"externalId": "nightly-report"})
    reachable = app.env["KUBECONFIG"]
    # The cluster is unreachable: the kubeconfig points at a port nothing listens on.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    unreachable = tmp_path / "unreachable-kubeconfig"
    config = json.loads(Path(reachable).read_text())
    for cluster in config["clusters"]:
        cluster["cluster"]["server"] = f"http://127.0.0.1:{port}"
    unreachable.write_text(json.dumps(config))
    monkeypatch.setenv("KUBECONFIG", str(unreachable))
    monkeypatch.setenv("KUBE_REQUEST_TIMEOUT_SECONDS", "1")
    composition.reset()
    with pytest.raises(KubeUnavailable):
        handle_submit_event(event)
    assert _run_jobs(app, "nightly-report") == []

    monkeypatch.setenv("KUBECONFIG", reachable)
    composition.reset()
    handle_submit_event(event)  # Event Grid's redelivery
    handle_submit_event(event)  # and one more, at least once
    assert len(_run_jobs(app, "nightly-report")) == 1


def test_the_function_app_snippet_serves_submit_events_through_the_event_grid_webhook(app):
    # Exactly what function_app.py registers (see the report to the lead), served by the dev host
    # the way the Functions host exposes Event Grid triggers.
    from tests.fixtures.app import FUNCTION_KEY
    from tools.devhost import DevHost

    functions = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)

    @functions.event_grid_trigger(arg_name="event")
    def submit_from_event(event: func.EventGridEvent) -> None:
        handle_submit_event(event)

    host = DevHost(functions, port=0, function_key=FUNCTION_KEY, timers=False)
    app.sim.put("jobs", "default", source_job("nightly-report", {"REPORT_DATE": "2026-01-01"}))
    path = "/runtime/webhooks/eventgrid?functionName=submit_from_event"
    headers = {"x-functions-key": FUNCTION_KEY, "content-type": "application/json", "aeg-event-type": "Notification"}
    good = [{"id": "webhook-1", "eventType": "SubmitRun", "subject": "chain", "dataVersion": "1",
             "eventTime": "2026-11-26T02:00:00Z", "data": {"externalId": "nightly-report"}}]
    bad = [{**good[0], "id": "webhook-2", "data": {"externalId": "nightly-report", "oops": 1}}]
    statuses = [host.dispatch("POST", path, headers, json.dumps(batch).encode())[0] for batch in (good, good, bad)]
    assert statuses == [200, 200, 200]
    assert len(_run_jobs(app, "nightly-report")) == 1


# ------------------------------------------------------------ the Logic App recipe


def _workflow() -> dict:
    return json.loads((ROOT / "docs" / "logic-app-chain.json").read_text())["definition"]


def test_logic_app_chain_starts_the_second_job_only_after_the_first_succeeded():
    actions = _workflow()["actions"]
    http = {name: a for name, a in actions.items() if a["type"] == "Http"}
    first, second = http["Run_first_job"], http["Run_second_job"]
    for action in (first, second):
        assert action["inputs"]["method"] == "POST"
        assert "/api/jobs/" in action["inputs"]["uri"] and action["inputs"]["uri"].split("?")[0].endswith("/runs")
        # the submit is authorised by the key; the poll URL (Location) is signed and needs none
        assert "?code=@{encodeUriComponent(parameters('functionKey'))}" in action["inputs"]["uri"]
        # a retried POST must not start a second Job
        assert "idempotencyKey" in action["inputs"]["body"]
        # the asynchronous pattern must stay on: the action waits through 202 + Location
        assert "DisableAsyncPattern" not in action.get("operationOptions", "")
        assert set(action["runtimeConfiguration"]["secureData"]["properties"]) == {"inputs", "outputs"}
    assert first["runAfter"] == {}
    assert second["runAfter"] == {"Run_first_job": ["Succeeded"]}
    assert "firstJob" in first["inputs"]["uri"] and "secondJob" in second["inputs"]["uri"]
    assert first["inputs"]["body"]["idempotencyKey"] != second["inputs"]["body"]["idempotencyKey"]


def test_logic_app_chain_fires_at_two_in_the_morning_utc_only():
    """A Recurrence with hours but no minutes takes its minutes from the start time, and without a
    start time it also fires once on save: both are pinned, so the only firing is 02:00:00 UTC."""
    (trigger,) = _workflow()["triggers"].values()
    recurrence = trigger["recurrence"]
    assert (trigger["type"], recurrence["frequency"], recurrence["interval"]) == ("Recurrence", "Day", 1)
    assert recurrence["timeZone"] == "UTC"
    schedule = recurrence["schedule"]
    assert set(schedule) == {"hours", "minutes"}
    assert [int(h) for h in schedule["hours"]] == [2] and [int(m) for m in schedule["minutes"]] == [0]
    # With timeZone set, startTime is a local time without offset; its time of day matches the schedule.
    start = datetime.fromisoformat(recurrence["startTime"])
    assert start.tzinfo is None and (start.hour, start.minute, start.second) == (2, 0, 0)


def test_logic_app_chain_has_run_after_failed_branches_and_no_dangling_references():
    definition = _workflow()
    actions = definition["actions"]
    after_failure = {name for name, a in actions.items()
                     for target, statuses in a.get("runAfter", {}).items()
                     if target == "Run_first_job" and "Failed" in statuses}
    assert after_failure, "no action runs after the first job failed"
    assert any("Failed" in a.get("runAfter", {}).get("Run_second_job", []) for a in actions.values())
    for name, action in actions.items():
        for target in action.get("runAfter", {}):
            assert target in actions, f"{name} runs after unknown action {target}"
    text = json.dumps(definition)
    for parameter in definition["parameters"]:
        assert f"parameters('{parameter}')" in text
    assert definition["parameters"]["functionKey"]["type"] == "SecureString"
    assert "defaultValue" not in definition["parameters"]["functionKey"]
