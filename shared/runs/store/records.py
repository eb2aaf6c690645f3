"""Runs one at a time: create, read, save under the row's ETag; and the list of active markers.

``create_run`` inserts run row, marker, time row and claim in one batch: a second submit with the
same key fails the whole batch with 409, and nothing of the loser is written. ``save`` replaces the
run row under If-Match and upserts (or deletes) the marker and the time row in the same batch.
``list_active`` reads the active markers: one range query per 1,000 runs in flight.

A ``ServiceUnavailable`` from ``create_run`` does not prove nothing was written (the answer may be
lost after the write): a retried submit with the same idempotency key finds the first row. A
``StaleRun`` is not retried here: the caller re-reads and re-applies.
"""

from __future__ import annotations

import time
from dataclasses import replace

from azure.core import MatchConditions
from azure.data.tables import UpdateMode

from shared.errors import Conflict
from shared.runs.errors import IdempotencyKeyTaken, RunAlreadyExists, RunTableRefused, StaleRun
from shared.runs.markers import ActiveRun
from shared.runs.model import Run
from shared.runs.rows import (
    ACTIVE_PREFIX,
    active_key,
    active_marker_row,
    active_run_from_row,
    idempotency_row_key,
    new_run_rows,
    prepare_run,
    run_from_row,
    run_key,
    run_row,
    time_row,
    usable_key,
)
from shared.runs.store.table import MAX_QUERY_PAGE, RunTable

_CLAIM_READ_DELAYS = (0.0, 0.02, 0.05, 0.1, 0.2)


class RunRecords:
    """Create, read and save single runs in the table; list the namespace's active markers."""

    def __init__(self, table: RunTable):
        self._table = table

    # -- create --------------------------------------------------------------------------------

    def create_run(self, run: Run, *, outbox: list[dict] = ()) -> Run:
        """Insert the run with its marker, time row and idempotency claim, all or nothing.

        ``outbox`` rows (``outbox_row``) are inserted in the same batch: an event is recorded
        exactly when its transition is. Raises IdempotencyKeyTaken(first_run_id) when the key is
        claimed already, RunAlreadyExists when the run id is, RunTooLarge when the row cannot fit.
        """
        run = prepare_run(run)
        operations = [("create", row) for row in [*new_run_rows(run), *outbox]]
        try:
            answers = self._table.submit(operations)
        except RunTableRefused as refused:
            if refused.status == 409:
                raise self._claim_conflict(run) from None
            raise
        return replace(run, etag=answers[0].get("etag"))

    def _claim_conflict(self, run: Run) -> Conflict:
        if run.idempotency_key is not None:
            # The claim and the winner's run row were written in one atomic batch, so the claim is
            # visible by now; retry briefly anyway rather than report the wrong conflict.
            for delay in _CLAIM_READ_DELAYS:
                time.sleep(delay)
                winner = self._idempotency_owner(run.namespace, run.idempotency_key)
                if winner is not None:
                    return IdempotencyKeyTaken(winner)
        return RunAlreadyExists(run.run_id)

    # -- reads ---------------------------------------------------------------------------------

    def get_run(self, namespace: str, run_id: str) -> Run | None:
        if not (usable_key(namespace) and usable_key(run_id)):
            return None
        entity = self._table.get(namespace, run_key(run_id))
        return None if entity is None else run_from_row(entity, entity.metadata.get("etag"))

    def get_run_by_idempotency_key(self, namespace: str, key: str) -> Run | None:
        run_id = self._idempotency_owner(namespace, key)
        return None if run_id is None else self.get_run(namespace, run_id)

    def _idempotency_owner(self, namespace: str, key: str) -> str | None:
        if not usable_key(namespace):
            return None
        entity = self._table.get(namespace, idempotency_row_key(key))
        return None if entity is None else entity["run_id"]

    def list_active(self, namespace: str) -> list[ActiveRun]:
        """Every run in the namespace that is not terminal: one query per 1,000 of them."""
        if not usable_key(namespace):
            return []
        active: list[ActiveRun] = []
        token = None
        while True:
            rows, token = self._table.query_prefix(namespace, ACTIVE_PREFIX, MAX_QUERY_PAGE, token)
            active.extend(active_run_from_row(row, namespace) for row in rows)
            if not token:
                return active

    # -- save ----------------------------------------------------------------------------------

    def save(self, run: Run, *, outbox: list[dict] = ()) -> Run:
        """Replace the run row if its ETag still matches; marker, time row and ``outbox`` rows follow
        in the same batch, so a transition and its event are written together or not at all.

        Raises StaleRun when another writer got there first (or the row is gone): re-read, re-apply.
        """
        if run.etag is None:
            raise ValueError(f"run {run.run_id} has no etag: save() updates stored runs (create_run first)")
        etag = run.etag
        run = prepare_run(run)
        update = ("update", run_row(run),
                  {"mode": UpdateMode.REPLACE, "etag": etag, "match_condition": MatchConditions.IfNotModified})
        index_row = ("upsert", time_row(run), {"mode": UpdateMode.REPLACE})
        events = [("upsert", row, {"mode": UpdateMode.REPLACE}) for row in outbox]
        if not run.terminal:
            answers = self._save_batch(run, [update, index_row, ("upsert", active_marker_row(run),
                                                                {"mode": UpdateMode.REPLACE}), *events])
        else:
            delete_marker = ("delete", {"PartitionKey": run.namespace, "RowKey": active_key(run.run_id)})
            try:
                answers = self._save_batch(run, [update, index_row, delete_marker, *events])
            except _MissingRow:
                # The marker went with an earlier terminal save (a terminal run saved again, e.g.
                # with diagnostics). A missing run row fails this second batch too, as StaleRun.
                answers = self._save_batch(run, [update, index_row, *events])
        return replace(run, etag=answers[0].get("etag"))

    def _save_batch(self, run: Run, operations: list) -> list:
        try:
            return self._table.submit(operations)
        except RunTableRefused as refused:
            if refused.status == 412:
                raise StaleRun(run.run_id) from None
            if refused.status == 404 and refused.error_code != "TableNotFound":
                if (refused.index == 2 or refused.index is None) and len(operations) >= 3 \
                        and operations[2][0] == "delete":
                    raise _MissingRow from None
                raise StaleRun(run.run_id) from None
            raise


class _MissingRow(Exception):
    """A row a batch deleted or updated was not there (internal: save() decides what it means)."""
