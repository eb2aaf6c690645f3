"""The run store against a real table service (Azurite), through RunStore's public methods."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from azure.data.tables import TableClient

from shared.errors import BadRequest, ServiceUnavailable, SettingsError
from shared.runs.errors import IdempotencyKeyTaken, RunAlreadyExists, RunTooLarge, StaleRun
from shared.runs.model import HISTORY_LIMIT, Phase, Run, RunState, Status, apply_state
from shared.runs.rows import MAX_PROPERTY_BYTES, REDACTED, new_run_rows, prepare_run
from shared.runs.store import RunStore
from shared.settings import Settings
from tests.fixtures.azurite import unique_table_name
from tools import azurite as azurite_module
from tools.azurite import Azurite, AzuriteMissing, free_port

T0 = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)


def new_run(run_id: str, *, namespace: str = "default", external_id: str = "nightly-etl",
            created_at: datetime = T0, **fields) -> Run:
    return Run(run_id=run_id, namespace=namespace, external_id=external_id, created_at=created_at, **fields)


def raw_table(azurite: Azurite, store: RunStore) -> TableClient:
    """The same table, read around the store: to see exactly what reached Table Storage."""
    return TableClient.from_connection_string(azurite.connection_string, table_name=store.table_name)


def seed_with_batches(store: RunStore, runs: list[Run]) -> None:
    """Insert runs' rows (as create_run would write them) 100 operations per batch, per namespace."""
    operations: list[tuple[str, dict]] = []
    for run in runs:
        rows = new_run_rows(prepare_run(run))
        if len(operations) + len(rows) > 100:
            store.table.submit_transaction(operations)
            operations = []
        operations.extend(("create", row) for row in rows)
    if operations:
        store.table.submit_transaction(operations)


def requests_made(store: RunStore, action) -> tuple[object, Counter]:
    before = store.requests.copy()
    result = action()
    return result, store.requests - before


# -- create and read ---------------------------------------------------------------------------


def test_created_run_reads_back_field_for_field_with_its_etag(run_store):
    run = new_run(
        "nightly-etl-a1b2c",
        status=Status.RUNNING,
        phase=Phase.RUNNING,
        reason="PodRunning",
        message="1 active pod",
        updated_at=T0 + timedelta(seconds=5),
        started_at=T0 + timedelta(seconds=4),
        idempotency_key="polysync-run-77",
        parameters=[{"name": "MODE", "value": "full", "dataType": "String", "direction": "Input"}],
        attributes={"containerImage": "repo/etl:1.2", "containerArgs": ["--all", "ünïcødé"]},
        source="fallback",
        source_resource_version="8812",
        spec_hash="sha256:abc",
        cancel_requested_at=T0 + timedelta(seconds=9),
        missing_sweeps=1,
        history=[{"at": T0.isoformat(), "status": "Running", "phase": "Running", "reason": "PodRunning"}],
        diagnostics={"pods": [{"name": "p-1", "exitCode": None}]},
    )

    created = run_store.create_run(run)
    stored = run_store.get_run("default", "nightly-etl-a1b2c")

    assert created.etag
    assert stored == replace(run, etag=created.etag)
    assert stored.created_at.tzinfo is not None


def test_unknown_run_reads_as_none(run_store):
    run_store.create_run(new_run("known"))

    assert run_store.get_run("default", "unknown") is None
    assert run_store.get_run("other-namespace", "known") is None
    assert run_store.get_run("default", "not/a#key?") is None


def test_run_created_without_created_at_is_stamped_in_utc(run_store):
    created = run_store.create_run(Run(run_id="stamped", namespace="default", external_id="x"))

    assert created.created_at is not None and created.created_at.tzinfo is not None
    assert run_store.get_run("default", "stamped").created_at == created.created_at


def test_ensure_table_accepts_an_existing_table(run_store):
    run_store.create_run(new_run("kept"))

    run_store.ensure_table()

    assert run_store.get_run("default", "kept") is not None


def test_table_requests_are_counted_by_operation(run_store):
    _, create_cost = requests_made(run_store, lambda: run_store.create_run(new_run("counted")))
    _, get_cost = requests_made(run_store, lambda: run_store.get_run("default", "counted"))
    _, list_cost = requests_made(run_store, lambda: run_store.list_active("default"))

    assert create_cost == Counter({"batch": 1})
    assert get_cost == Counter({"get": 1})
    assert list_cost == Counter({"query": 1})


# -- idempotency -------------------------------------------------------------------------------


def test_second_create_with_the_same_key_names_the_first_run_and_writes_nothing(run_store, azurite):
    run_store.create_run(new_run("first", idempotency_key="submit-1"))

    with pytest.raises(IdempotencyKeyTaken) as taken:
        run_store.create_run(new_run("second", idempotency_key="submit-1"))

    assert taken.value.run_id == "first"
    assert taken.value.status == 409
    assert taken.value.to_body()["error"]["runId"] == "first"
    assert run_store.get_run("default", "second") is None
    assert [e["run_id"] for e in raw_table(azurite, run_store).list_entities() if e["kind"] == "run"] == ["first"]


def test_run_is_found_by_an_idempotency_key_holding_characters_row_keys_forbid(run_store):
    key = "order/42#retry?tab\t\\ünï"
    run_store.create_run(new_run("by-key", idempotency_key=key))

    found = run_store.get_run_by_idempotency_key("default", key)

    assert found is not None and found.run_id == "by-key"
    assert run_store.get_run_by_idempotency_key("default", "never-used") is None


def test_idempotency_keys_are_scoped_to_a_namespace(run_store):
    run_store.create_run(new_run("in-a", namespace="team-a", idempotency_key="same"))
    run_store.create_run(new_run("in-b", namespace="team-b", idempotency_key="same"))

    assert run_store.get_run_by_idempotency_key("team-a", "same").run_id == "in-a"
    assert run_store.get_run_by_idempotency_key("team-b", "same").run_id == "in-b"


def test_fifty_concurrent_creates_with_one_key_make_exactly_one_run(run_store, azurite):
    start = threading.Barrier(50)
    winners: list[str] = []
    losers: list[str] = []
    surprises: list[BaseException] = []

    def submit(i: int) -> None:
        start.wait()
        try:
            winners.append(run_store.create_run(new_run(f"race-{i}", idempotency_key="one-key")).run_id)
        except IdempotencyKeyTaken as taken:
            losers.append(taken.run_id)
        except BaseException as err:  # noqa: BLE001 - reported by the assertion below
            surprises.append(err)

    threads = [threading.Thread(target=submit, args=(i,)) for i in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert surprises == []
    assert len(winners) == 1
    assert losers == [winners[0]] * 49
    assert [a.run_id for a in run_store.list_active("default")] == winners
    runs, _ = run_store.list_runs("default")
    assert [r["runId"] for r in runs] == winners
    assert len(list(raw_table(azurite, run_store).list_entities())) == 4  # run, marker, time, claim


def test_same_run_id_twice_without_a_key_is_refused(run_store):
    run_store.create_run(new_run("dup", external_id="first"))

    with pytest.raises(RunAlreadyExists):
        run_store.create_run(new_run("dup", external_id="second"))

    assert run_store.get_run("default", "dup").external_id == "first"


# -- save --------------------------------------------------------------------------------------


def test_save_with_a_stale_etag_raises_stale_run_and_keeps_the_winner(run_store):
    created = run_store.create_run(new_run("stale"))
    run_store.save(replace(created, reason="FirstWriter"))

    with pytest.raises(StaleRun) as stale:
        run_store.save(replace(created, reason="SecondWriter"))

    assert stale.value.run_id == "stale"
    assert run_store.get_run("default", "stale").reason == "FirstWriter"


def test_each_save_returns_the_etag_the_next_save_needs(run_store):
    run = run_store.create_run(new_run("chain"))
    for n in range(3):
        run = run_store.save(replace(run, missing_sweeps=n + 1))

    assert run_store.get_run("default", "chain") == run


def test_sweep_and_cancel_racing_never_lose_a_transition(run_store):
    run_store.create_run(new_run("raced"))
    seen_by_sweep = run_store.get_run("default", "raced")
    seen_by_cancel = run_store.get_run("default", "raced")
    now = T0 + timedelta(seconds=30)

    run_store.save(apply_state(seen_by_sweep, RunState(Status.RUNNING, Phase.RUNNING, "PodRunning"), now))
    cancelling = RunState(Status.RUNNING, Phase.CANCELLING, "CancelRequested")
    with pytest.raises(StaleRun):
        run_store.save(replace(apply_state(seen_by_cancel, cancelling, now), cancel_requested_at=now))
    # The loser re-reads and re-applies its transition on top of the winner's.
    fresh = run_store.get_run("default", "raced")
    run_store.save(replace(apply_state(fresh, cancelling, now), cancel_requested_at=now))

    final = run_store.get_run("default", "raced")
    assert (final.status, final.phase, final.cancel_requested_at) == (Status.RUNNING, Phase.CANCELLING, now)
    assert [h["phase"] for h in final.history] == ["Running", "Cancelling"]


def test_active_marker_mirrors_what_the_sweep_compares(run_store):
    run = run_store.create_run(new_run("mirrored", external_id="etl"))
    saved = run_store.save(replace(run, status=Status.STARTING, phase=Phase.STALLED, reason="ImagePullBackOff",
                                   message="Back-off pulling image", missing_sweeps=1,
                                   cancel_requested_at=T0 + timedelta(minutes=1)))

    [active] = run_store.list_active("default")

    assert (active.run_id, active.namespace, active.external_id, active.job_name) == (
        "mirrored", "default", "etl", "mirrored")
    assert (active.status, active.phase, active.reason, active.message) == (
        saved.status, saved.phase, saved.reason, saved.message)
    assert (active.missing_sweeps, active.cancel_requested_at, active.created_at) == (
        1, saved.cancel_requested_at, saved.created_at)


def test_terminal_save_removes_the_active_marker_and_keeps_the_run(run_store, azurite):
    run = run_store.create_run(new_run("finishing"))
    done = apply_state(run, RunState(Status.SUCCESS, Phase.SUCCEEDED, "Completed"), T0 + timedelta(minutes=5))

    run_store.save(done)

    assert run_store.list_active("default") == []
    assert not [e for e in raw_table(azurite, run_store).list_entities() if e["kind"] == "active"]
    assert run_store.get_run("default", "finishing").status == Status.SUCCESS
    [summary], _ = run_store.list_runs("default")
    assert (summary["status"], summary["phase"]) == ("Success", "Succeeded")


def test_a_finished_run_can_be_saved_again_without_bringing_back_its_marker(run_store):
    run = run_store.create_run(new_run("failed-late"))
    failed = run_store.save(apply_state(run, RunState(Status.FAILED, Phase.FAILED, "BackoffLimitExceeded"), T0))

    again = run_store.save(replace(failed, diagnostics={"pods": [{"name": "p", "exitCode": 3}]}))

    assert run_store.get_run("default", "failed-late") == again
    assert run_store.list_active("default") == []


def test_saving_a_run_that_was_deleted_is_stale(run_store, azurite):
    run = run_store.create_run(new_run("vanished"))
    raw_table(azurite, run_store).delete_entity("default", "run|vanished")

    with pytest.raises(StaleRun):
        run_store.save(replace(run, reason="Late"))


# -- list_active: cost follows active runs only --------------------------------------------------


def test_listing_active_runs_costs_the_same_with_2000_finished_runs(run_store):
    for i in range(2):
        run_store.create_run(new_run(f"active-{i}"))
    active_before, cost_before = requests_made(run_store, lambda: run_store.list_active("default"))

    finished = [new_run(f"done-{i:04d}", status=Status.SUCCESS, phase=Phase.SUCCEEDED,
                        created_at=T0 - timedelta(minutes=i)) for i in range(2000)]
    seed_with_batches(run_store, finished)
    active_after, cost_after = requests_made(run_store, lambda: run_store.list_active("default"))

    assert cost_after == cost_before == Counter({"query": 1})
    assert sorted(a.run_id for a in active_after) == sorted(a.run_id for a in active_before) == [
        "active-0", "active-1"]
    assert run_store.get_run("default", "done-1999").status == Status.SUCCESS  # the seed is really there


def test_list_active_pages_through_more_than_one_answer(run_store):
    seed_with_batches(run_store, [new_run(f"busy-{i:04d}") for i in range(1050)])

    active, cost = requests_made(run_store, lambda: run_store.list_active("default"))

    assert len({a.run_id for a in active}) == 1050
    assert cost == Counter({"query": 2})


# -- list_runs ---------------------------------------------------------------------------------


def test_list_runs_is_newest_first(run_store):
    minutes = {"m": 3, "b": 0, "x": 4, "a": 1, "q": 2}
    for run_id, minute in minutes.items():
        run_store.create_run(new_run(run_id, created_at=T0 + timedelta(minutes=minute)))

    runs, token = run_store.list_runs("default")

    assert [r["runId"] for r in runs] == sorted(minutes, key=minutes.get, reverse=True)
    assert runs[0] == {"runId": "x", "jobName": "x", "namespace": "default", "externalId": "nightly-etl",
                       "status": "Starting", "phase": "Submitting", "reason": None,
                       "createdAt": (T0 + timedelta(minutes=4)).isoformat()}
    assert [r["createdAt"] for r in runs] == sorted((r["createdAt"] for r in runs), reverse=True)
    assert token is None


def test_list_runs_filters_by_status_and_external_id_after_saves(run_store):
    for i, external_id in enumerate(["etl", "report", "etl", "report", "etl"]):
        run = run_store.create_run(new_run(f"run-{i}", external_id=external_id,
                                           created_at=T0 + timedelta(minutes=i)))
        if i % 2 == 0:
            run_store.save(apply_state(run, RunState(Status.RUNNING, Phase.RUNNING), T0))

    running, _ = run_store.list_runs("default", status=Status.RUNNING)
    etl, _ = run_store.list_runs("default", external_id="etl")
    report_starting, _ = run_store.list_runs("default", status="Starting", external_id="report")

    assert [r["runId"] for r in running] == ["run-4", "run-2", "run-0"]
    assert [r["runId"] for r in etl] == ["run-4", "run-2", "run-0"]
    assert [r["runId"] for r in report_starting] == ["run-3", "run-1"]
    assert {(r["status"], r["externalId"]) for r in report_starting} == {("Starting", "report")}


def test_list_runs_continuation_visits_every_run_once_in_order(run_store):
    for i in range(7):
        run_store.create_run(new_run(f"paged-{i}", created_at=T0 + timedelta(seconds=i)))

    pages, token = [], None
    while True:
        page, token = run_store.list_runs("default", page_size=3, continuation=token)
        pages.append([r["runId"] for r in page])
        if token is None:
            break

    assert pages == [["paged-6", "paged-5", "paged-4"], ["paged-3", "paged-2", "paged-1"], ["paged-0"]]


def test_filtered_list_pages_past_rows_that_do_not_match(run_store):
    seed_with_batches(run_store, [new_run(f"other-{i:03d}", external_id="other",
                                          created_at=T0 + timedelta(seconds=i)) for i in range(60)])
    run_store.create_run(new_run("wanted-new", external_id="wanted", created_at=T0 + timedelta(hours=1)))
    run_store.create_run(new_run("wanted-old", external_id="wanted", created_at=T0 - timedelta(hours=1)))

    first, token = run_store.list_runs("default", external_id="wanted", page_size=1)
    second, token = run_store.list_runs("default", external_id="wanted", page_size=1, continuation=token)

    assert [r["runId"] for r in first + second] == ["wanted-new", "wanted-old"]


class StingyTable:
    """The real table, but every query answers at most one row with a continuation.

    Table Storage itself does this: an answer stops after 1,000 scanned rows or 5 seconds, so a
    filtered page can come back short, or empty, with a continuation. Azurite never does.
    """

    def __init__(self, table: TableClient):
        self._table = table

    def query_entities(self, query_filter: str, **kwargs):
        return self._table.query_entities(query_filter, **{**kwargs, "results_per_page": 1})

    def __getattr__(self, name: str):
        return getattr(self._table, name)


def test_short_answers_from_the_service_still_fill_the_page(run_store, azurite):
    for i in range(7):
        run_store.create_run(new_run(f"short-{i}", created_at=T0 + timedelta(seconds=i)))
    stingy = RunStore(StingyTable(raw_table(azurite, run_store)))

    (first, token), cost = requests_made(stingy, lambda: stingy.list_runs("default", page_size=3))
    rest, end = stingy.list_runs("default", page_size=3, continuation=token)

    assert [r["runId"] for r in first] == ["short-6", "short-5", "short-4"]
    assert cost == Counter({"query": 3})
    assert [r["runId"] for r in rest] == ["short-3", "short-2", "short-1"]
    assert end is not None


def test_one_list_call_follows_a_bounded_number_of_short_answers(run_store, azurite):
    for i in range(7):
        run_store.create_run(new_run(f"bounded-{i}", created_at=T0 + timedelta(seconds=i)))
    stingy = RunStore(StingyTable(raw_table(azurite, run_store)))

    (page, token), cost = requests_made(stingy, lambda: stingy.list_runs("default", page_size=50))
    rest, end = stingy.list_runs("default", page_size=50, continuation=token)

    assert 1 <= cost["query"] < 7 and len(page) == cost["query"]
    assert [r["runId"] for r in page + rest] == [f"bounded-{i}" for i in range(6, -1, -1)]
    assert token is not None and end is None


@pytest.mark.parametrize("token", [
    "not base64 at all!",
    "bm90IGpzb24",  # "not json"
    "eyJ2IjoyLCJwayI6ImEiLCJyayI6ImIifQ",  # {"v":2,...}: not a token this store wrote
    "WzEsMiwzXQ",  # [1,2,3]
])
def test_malformed_continuation_is_a_bad_request_naming_the_field(run_store, token):
    with pytest.raises(BadRequest) as bad:
        run_store.list_runs("default", continuation=token)

    assert bad.value.field == "continuation"
    assert bad.value.status == 400


def test_list_runs_refuses_an_unknown_status_filter(run_store):
    with pytest.raises(BadRequest) as bad:
        run_store.list_runs("default", status="Done")

    assert bad.value.field == "status"


# -- size limits -------------------------------------------------------------------------------


def test_oversized_diagnostics_are_trimmed_to_their_tail_not_refused(run_store):
    log_tail = "".join(f"line {n}\n" for n in range(40_000)) + "panic: disk full\n"
    run = run_store.create_run(new_run("noisy"))

    saved = run_store.save(replace(run, diagnostics={"pods": [{"name": "noisy-x", "logTail": log_tail}],
                                                     "events": [f"event {n}" for n in range(5000)]}))
    stored = run_store.get_run("default", "noisy")

    assert stored == saved
    assert stored.diagnostics["truncated"] is True
    assert stored.diagnostics["pods"][0]["logTail"].endswith("panic: disk full\n")
    assert stored.diagnostics["events"][-1] == "event 4999"
    assert len(json.dumps(stored.diagnostics, ensure_ascii=False).encode("utf-16-le")) <= MAX_PROPERTY_BYTES


def test_oversized_history_keeps_its_newest_entries(run_store):
    history = [{"at": f"t{n}", "status": "Running", "phase": "Running", "reason": f"{n}:" + "r" * 3000}
               for n in range(HISTORY_LIMIT)]
    run = run_store.create_run(new_run("chatty"))

    run_store.save(replace(run, history=history))

    stored = run_store.get_run("default", "chatty").history
    assert 0 < len(stored) < HISTORY_LIMIT
    assert stored == history[-len(stored):]


def test_oversized_parameters_are_refused_by_name_and_nothing_is_written(run_store, azurite):
    huge = [{"name": "PAYLOAD", "value": "v" * 40_000, "dataType": "String"}]

    with pytest.raises(RunTooLarge) as too_large:
        run_store.create_run(new_run("bloated", parameters=huge, idempotency_key="k"))

    assert too_large.value.field == "parameters"
    assert too_large.value.status == 413
    assert "parameters" in too_large.value.message and "65,536" in too_large.value.message
    assert "v" * 100 not in too_large.value.message
    assert list(raw_table(azurite, run_store).list_entities()) == []


# -- secrets -----------------------------------------------------------------------------------


def test_secret_parameter_values_never_reach_the_table(run_store, azurite):
    parameters = [{"name": "DB_PASSWORD", "value": "hunter2-s3cret", "dataType": "Secret"},
                  {"name": "MODE", "value": "fast", "dataType": "String"}]
    created = run_store.create_run(new_run("secretive", parameters=parameters))
    # A caller that forgot to redact on a later save is caught too.
    run_store.save(replace(created, parameters=parameters, reason="Saved"))

    rows = list(raw_table(azurite, run_store).list_entities())
    stored = run_store.get_run("default", "secretive")

    assert rows and not [row for row in rows if "hunter2-s3cret" in json.dumps(dict(row), default=str)]
    assert [p["value"] for p in stored.parameters] == [REDACTED, "fast"]
    assert [p["value"] for p in created.parameters] == [REDACTED, "fast"]
    assert parameters[0]["value"] == "hunter2-s3cret"  # the caller's list is not modified


# -- connection, outages, Azurite itself -------------------------------------------------------


def test_unreachable_table_is_service_unavailable(azurite):
    closed_port = free_port()
    settings = Settings(runs_table_connection_string=azurite.connection_string.replace(
        f":{azurite.port}/", f":{closed_port}/"), runs_table_name=unique_table_name())
    store = RunStore.from_settings(settings, retry_total=0)  # no backoff sleeps in this test

    for call in (lambda: store.get_run("default", "r"), lambda: store.create_run(new_run("r")),
                 lambda: store.list_active("default")):
        with pytest.raises(ServiceUnavailable) as unavailable:
            call()
        assert unavailable.value.message.startswith("run table unreachable")


def test_store_keeps_working_across_an_azurite_restart(tmp_path):
    with Azurite(location=tmp_path / "data") as server:
        settings = Settings(runs_table_connection_string=server.connection_string, runs_table_name="restarts")
        store = RunStore.from_settings(settings)
        store.ensure_table()
        before = store.create_run(new_run("survivor"))
        port = server.port

        server.stop()
        with pytest.raises(ServiceUnavailable):
            store.get_run("default", "survivor")
        server.restart()

        assert server.port == port
        assert store.get_run("default", "survivor") == before
        assert store.create_run(new_run("after-restart")).etag


def test_azurite_ends_when_the_process_that_started_it_is_killed():
    starter = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from tools.azurite import Azurite; "
         "a = Azurite(in_memory=True).start(); print(a.port, flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, cwd=azurite_module.REPO_ROOT, text=True)
    try:
        port = int(starter.stdout.readline())
        assert answers_tcp(port)
    finally:
        starter.kill()
        starter.wait()

    deadline = time.monotonic() + 5
    while answers_tcp(port) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not answers_tcp(port)


def answers_tcp(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


def test_azurite_without_its_npm_package_says_run_make_setup(monkeypatch, tmp_path):
    monkeypatch.setattr(azurite_module, "AZURITE_TABLE_BIN", tmp_path / "missing" / "azurite-table")

    with pytest.raises(AzuriteMissing, match="make setup"):
        Azurite().start()


def test_azurite_without_node_says_so(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))

    with pytest.raises(AzuriteMissing, match="node"):
        Azurite().start()


def test_from_settings_needs_a_connection_string_or_an_endpoint():
    with pytest.raises(SettingsError) as missing:
        RunStore.from_settings(Settings())

    assert "RUNS_TABLE_CONNECTION_STRING or RUNS_TABLE_ENDPOINT" in missing.value.message


def test_malformed_connection_string_is_named_without_echoing_it():
    secret_key = "c2VjcmV0LWtleS10aGF0LW11c3Qtbm90LWxlYWs="
    settings = Settings(runs_table_connection_string=f"AccountKey={secret_key};Nonsense",
                        runs_table_name="aksjobruns")

    with pytest.raises(SettingsError) as malformed:
        RunStore.from_settings(settings)

    assert "RUNS_TABLE_CONNECTION_STRING" in malformed.value.message
    assert secret_key not in str(malformed.value) and malformed.value.__cause__ is None


def test_endpoint_with_managed_identity_builds_a_store_without_touching_the_network():
    settings = Settings(runs_table_endpoint="https://acct.table.core.windows.net",
                        runs_table_name="aksjobruns", azure_client_id="00000000-0000-0000-0000-000000000001")

    store = RunStore.from_settings(settings)

    assert store.table_name == "aksjobruns"
    assert store.requests == Counter()



def test_held_at_create_is_kept_on_the_run_and_its_marker_and_rows_without_it_load(azurite, run_store):
    run_store.create_run(replace(new_run("held"), held_at_create=True))
    run_store.create_run(new_run("older"))
    table = raw_table(azurite, run_store)
    for kind in ("run", "active"):  # rows written before the column existed
        row = next(e for e in table.list_entities() if e["kind"] == kind and e["run_id"] == "older")
        del row["held_at_create"]
        table.upsert_entity(row, mode="replace")

    assert run_store.get_run("default", "held").held_at_create is True
    assert run_store.get_run("default", "older").held_at_create is False
    markers = {a.run_id: a.held_at_create for a in run_store.list_active("default")}
    assert markers == {"held": True, "older": False}


# -- the outbox's publish lease ------------------------------------------------------------------


def test_a_namespace_publish_lease_has_one_holder_until_it_ends_or_is_released(run_store):
    outbox, now = run_store.outbox, datetime(2026, 1, 1, tzinfo=UTC)
    first = outbox.take_lease("default", now, now + timedelta(seconds=20))
    assert first is not None and outbox.lease_until("default") == now + timedelta(seconds=20)
    assert outbox.take_lease("default", now + timedelta(seconds=19), now + timedelta(seconds=39)) is None

    renewed = outbox.renew_lease("default", first, now + timedelta(seconds=40))
    assert renewed is not None and renewed.etag != first.etag
    assert outbox.renew_lease("default", first, now + timedelta(seconds=60)) is None  # a stale ETag

    later = now + timedelta(seconds=41)  # ended: the next publisher takes it over
    second = outbox.take_lease("default", later, later + timedelta(seconds=20))
    assert second is not None
    outbox.release_lease("default", renewed)  # the old holder's release changes nothing
    assert outbox.lease_until("default") == later + timedelta(seconds=20)
    outbox.release_lease("default", second)
    assert outbox.take_lease("default", later, later + timedelta(seconds=20)) is not None


def test_two_publishers_creating_a_new_namespace_lease_at_once_get_one_lease(run_store, monkeypatch):
    outbox, now = run_store.outbox, datetime(2026, 1, 1, tzinfo=UTC)
    assert outbox.take_lease("default", now, now + timedelta(seconds=20)) is not None
    table = run_store._table
    real_get = table.get
    monkeypatch.setattr(table, "get", lambda pk, rk: None)  # read before the other one created it
    assert outbox.take_lease("default", now, now + timedelta(seconds=20)) is None  # its create: 409
    monkeypatch.setattr(table, "get", real_get)
    assert outbox.lease_until("default") == now + timedelta(seconds=20)
