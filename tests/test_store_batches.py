"""RunStore.save_many against Azurite: state changes decided from active markers, saved in
entity group transactions, with a per-run fallback for a transaction that lost a race."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from shared.runs.markers import StateChange, run_from_marker
from shared.runs.model import Phase, Run, RunState, Status, apply_state
from shared.runs.outbox import outbox_row
from shared.runs.rows import new_run_rows, prepare_run
from shared.runs.store import RunStore
from shared.runs.store.batches import MAX_BATCH_OPERATIONS
from tests.test_store import raw_table, requests_made, seed_with_batches

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
RUNNING = RunState(Status.RUNNING, Phase.RUNNING, "PodRunning", "1 active pod")
DONE = RunState(Status.SUCCESS, Phase.SUCCEEDED, "Completed", None)


def pending(run_id: str, **fields) -> Run:
    return Run(run_id=run_id, namespace="default", external_id="nightly-etl", created_at=T0,
               status=Status.STARTING, phase=Phase.PENDING, reason="PodPending",
               parameters=[{"name": "MODE", "value": "full", "dataType": "String", "direction": "Input"}],
               rendered_job={"metadata": {"name": run_id}}, idempotency_key=f"key-{run_id}",
               history=[{"at": T0.isoformat(), "status": "Starting", "phase": "Pending", "reason": "PodPending"}],
               **fields)


def changes_to(store: RunStore, state: RunState, now: datetime, *, with_outbox: bool = False) -> list[StateChange]:
    changes = []
    for marker in store.list_active("default"):
        before = run_from_marker(marker)
        after = apply_state(before, state, now)
        outbox = (outbox_row("default", after.run_id, {"id": f"{after.run_id}-{after.phase}"}, now,
                             len(after.history)),) if with_outbox else ()
        changes.append(StateChange(marker, after, outbox))
    return changes


def kinds(azurite, store: RunStore) -> Counter:
    return Counter(e["kind"] for e in raw_table(azurite, store).list_entities())


def test_a_mass_change_is_saved_in_full_transactions_without_reading_run_rows(run_store):
    seed_with_batches(run_store, [pending(f"run-{i:03d}") for i in range(250)])
    now = T0 + timedelta(minutes=1)
    changes = changes_to(run_store, RUNNING, now)

    unsaved, cost = requests_made(run_store, lambda: run_store.save_many("default", changes))

    # Three operations per run (run row, time row, marker), 100 per transaction, nothing read.
    assert unsaved == []
    assert cost == Counter({"batch": math.ceil(250 / (MAX_BATCH_OPERATIONS // 3))})
    stored = run_store.get_run("default", "run-137")
    assert (stored.status, stored.phase, stored.reason, stored.message) == (
        Status.RUNNING, Phase.RUNNING, "PodRunning", "1 active pod")
    assert (stored.started_at, stored.updated_at) == (now, now)
    assert [h["phase"] for h in stored.history] == ["Pending", "Running"]
    # Merged, not replaced: what the marker does not carry is still there.
    assert stored.parameters[0]["value"] == "full" and stored.rendered_job == {"metadata": {"name": "run-137"}}
    assert stored.idempotency_key == "key-run-137"
    marker = next(m for m in run_store.list_active("default") if m.run_id == "run-137")
    assert (marker.status, marker.phase, marker.history) == (Status.RUNNING, Phase.RUNNING, stored.history)
    summaries, _ = run_store.list_runs("default", status="Running", page_size=1000)
    assert len(summaries) == 250


def test_a_cleared_reason_reads_back_as_none_after_the_merge(run_store):
    seed_with_batches(run_store, [pending("quiet")])
    [change] = changes_to(run_store, RunState(Status.RUNNING, Phase.RUNNING, None, None), T0)

    assert run_store.save_many("default", [change]) == []

    stored = run_store.get_run("default", "quiet")
    [marker] = run_store.list_active("default")
    [summary], _ = run_store.list_runs("default")
    assert (stored.reason, stored.message, marker.reason, marker.message, summary["reason"]) == (
        None, None, None, None, None)


def test_terminal_changes_remove_markers_and_write_each_event_once(run_store, azurite):
    seed_with_batches(run_store, [pending(f"ending-{i:02d}") for i in range(60)])
    changes = changes_to(run_store, DONE, T0 + timedelta(minutes=5), with_outbox=True)

    assert run_store.save_many("default", changes) == []
    # Delivered again (a redelivered message, a second consumer): every marker's ETag is gone.
    assert sorted(run_store.save_many("default", changes)) == sorted(c.run.run_id for c in changes)

    assert run_store.list_active("default") == []
    assert kinds(azurite, run_store)["outbox"] == 60
    assert len({e.run_id for e in run_store.outbox.waiting("default")}) == 60
    assert run_store.get_run("default", "ending-07").finished_at == T0 + timedelta(minutes=5)


def test_a_transaction_that_loses_a_race_falls_back_to_one_save_per_run(run_store, azurite):
    seed_with_batches(run_store, [pending(f"raced-{i:03d}") for i in range(90)])
    changes = changes_to(run_store, RUNNING, T0 + timedelta(minutes=1), with_outbox=True)
    # A cancel wins the race for one run after the sweep read the markers.
    winner = run_store.get_run("default", "raced-040")
    cancelled = apply_state(winner, RunState(Status.RUNNING, Phase.CANCELLING, "CancelRequested"), T0)
    run_store.save(replace(cancelled, cancel_requested_at=T0),
                   outbox=[outbox_row("default", "raced-040", {"id": "cancel"}, T0, len(cancelled.history))])

    unsaved, cost = requests_made(run_store, lambda: run_store.save_many("default", changes))

    assert unsaved == ["raced-040"]
    # Four operations per run with its event: 25 runs per transaction, four transactions; the
    # second (runs 25-49) is refused and retried run by run.
    assert cost == Counter({"batch": 4 + 25})
    assert run_store.get_run("default", "raced-040").phase == Phase.CANCELLING
    assert run_store.get_run("default", "raced-041").phase == Phase.RUNNING
    outbox = Counter(e.run_id for e in run_store.outbox.waiting("default"))
    assert outbox["raced-040"] == 1 and set(outbox.values()) == {1} and len(outbox) == 90


def test_large_rows_are_split_under_the_request_size_limit(run_store):
    wordy = "x" * 30_000
    seed_with_batches(run_store, [pending(f"wordy-{i:02d}") for i in range(60)])
    changes = changes_to(run_store, RunState(Status.RUNNING, Phase.RUNNING, "PodRunning", wordy), T0)

    unsaved, cost = requests_made(run_store, lambda: run_store.save_many("default", changes))

    # Each run carries its 30,000-character message twice (run row, marker): 120 KB as stored;
    # 60 of them would be over 7 MB, far over the service's 4 MiB, in two transactions by count.
    assert unsaved == []
    assert cost["batch"] > math.ceil(60 * 3 / MAX_BATCH_OPERATIONS)
    assert all(m.message == wordy for m in run_store.list_active("default"))


def test_markers_written_before_they_carried_history_are_left_to_the_per_run_save(run_store, azurite):
    run = prepare_run(pending("old-style"))
    rows = new_run_rows(run)
    for row in rows:
        if row["kind"] == "active":
            for column in ("history", "updated_at", "started_at"):
                row.pop(column, None)
    run_store.table.submit_transaction([("create", row) for row in rows])
    [change] = changes_to(run_store, RUNNING, T0)

    assert not change.marker.complete
    assert run_store.save_many("default", [change]) == ["old-style"]
    assert run_store.get_run("default", "old-style").phase == Phase.PENDING


def test_a_run_decided_from_its_marker_cannot_be_saved_whole(run_store):
    seed_with_batches(run_store, [pending("partial")])
    [marker] = run_store.list_active("default")

    partial = run_from_marker(marker)

    assert partial.etag is None and partial.parameters == [] and partial.rendered_job is None
    try:
        run_store.save(apply_state(partial, RUNNING, T0))
    except ValueError as refused:
        assert "no etag" in str(refused)
    else:
        raise AssertionError("save() accepted a run read from its marker")
    assert run_store.get_run("default", "partial").parameters[0]["value"] == "full"
