"""Many runs' state changes in as few entity group transactions as fit (the sweep's writes).

A change decided from an active marker (``shared.runs.markers.StateChange``) is saved without
reading the run row: its state columns are merged into the run row, guarded by the marker's ETag
(every write of an active run rewrites its marker in the same batch, so the marker's ETag changes
exactly when the run row does). The runs of one partition share transactions of up to 100
operations and well under the 4 MiB request limit each, one run's rows never split between two;
a transaction refused with 412 or 404 is retried run by run, and only the runs that lose again
are reported stale.
"""

from __future__ import annotations

import contextvars
import logging
from concurrent.futures import ThreadPoolExecutor

from azure.core import MatchConditions
from azure.data.tables import UpdateMode

from shared.errors import ServiceUnavailable
from shared.runs.errors import RunTableRefused
from shared.runs.markers import StateChange
from shared.runs.rows import (
    active_key,
    active_marker_row,
    entity_bytes,
    oversized_properties,
    state_columns_row,
    time_row,
)
from shared.runs.store.table import RunTable

log = logging.getLogger(__name__)

MAX_BATCH_OPERATIONS = 100  # the service's ceiling for one entity group transaction
# The service refuses a transaction over 4 MiB; sizes are estimated (entity sizing + the multipart
# envelope of each operation), so stay well under it.
MAX_BATCH_BYTES = 3 * 1024 * 1024
_BATCH_OPERATION_OVERHEAD = 1024
BATCH_WORKERS = 4  # transactions of one save_many in flight at once (network-bound)


class StateBatches:
    """Saves state changes decided from active markers, many runs to a transaction."""

    def __init__(self, table: RunTable):
        self._table = table

    def save_many(self, namespace: str, changes: list[StateChange], *, workers: int = BATCH_WORKERS,
                  unavailable: list[str] | None = None) -> list[str]:
        """Save runs' state changes decided from their active markers, in as few transactions as fit.

        Each run's rows go in one entity group transaction with other runs' (up to 100 operations
        and ``MAX_BATCH_BYTES`` each, a run never split): its state columns merged into the run
        row, its time row, its marker (replaced, or deleted when the run turned terminal, under the
        marker's ETag - which guards the run row too) and its ``outbox`` rows. A transaction refused
        with 412 or 404 (another writer changed or finished one of its runs) is tried again run by
        run. Returns the ids of the runs not saved: those that lost their race, and changes that
        cannot be merged (a marker without history, a column over the size limit); the caller
        reads them and saves them the per-run way (``save``).

        ``unavailable``: when given, a transaction that got no answer (twice) or a 5xx/429 does not
        raise: its runs' ids are appended there and the other transactions still go. Such a
        transaction may have landed or not; either way each run's marker tells the next reader
        (its ETag and state changed with it, or not), so a later save decides it again safely.
        """
        unsaved: list[str] = []
        planned: list[tuple[str, list]] = []
        for change in changes:
            operations = self._state_operations(namespace, change)
            if operations is None:
                unsaved.append(change.run.run_id)
            else:
                planned.append((change.run.run_id, operations))
        batches = list(_pack(planned))
        if len(batches) <= 1 or workers <= 1:
            results = [self._submit_runs(batch, unavailable) for batch in batches]
        else:
            with ThreadPoolExecutor(max_workers=min(workers, len(batches)), thread_name_prefix="table-batch") as pool:
                # Each in a copy of the caller's context: log lines keep its correlation id.
                futures = [pool.submit(contextvars.copy_context().run, self._submit_runs, batch, unavailable)
                           for batch in batches]
                results = [f.result() for f in futures]
        for lost in results:
            unsaved.extend(lost)
        return unsaved

    @staticmethod
    def _state_operations(namespace: str, change: StateChange) -> list | None:
        marker, run = change.marker, change.run
        if not marker.complete or run.namespace != namespace or marker.run_id != run.run_id \
                or run.created_at is None:
            return None
        merged = state_columns_row(run)
        marker_row = active_marker_row(run)
        if oversized_properties(merged) or oversized_properties(marker_row):
            return None  # the per-run save fits the row (cuts the history) before writing
        guard = {"etag": marker.etag, "match_condition": MatchConditions.IfNotModified}
        operations: list = [("update", merged, {"mode": UpdateMode.MERGE}),
                            ("upsert", time_row(run), {"mode": UpdateMode.REPLACE})]
        if run.terminal:
            operations.append(("delete", {"PartitionKey": namespace, "RowKey": active_key(run.run_id)}, guard))
        else:
            operations.append(("update", marker_row, {"mode": UpdateMode.REPLACE, **guard}))
        operations.extend(("upsert", row, {"mode": UpdateMode.REPLACE}) for row in change.outbox)
        return operations

    def _submit_runs(self, batch: list[tuple[str, list]], unavailable: list[str] | None = None) -> list[str]:
        """One transaction for the runs of ``batch``; on 412/404 one per run. The runs not saved.

        A transaction whose answer was lost (a connection the service closed under it) is sent
        once more: replaying it is safe, every run in it is guarded by its marker's ETag (a
        replay of one that did land fails with 412 and is retried run by run like any other).
        Without an answer the second time either, its runs go to ``unavailable`` (when given).
        """
        operations = [op for _, ops in batch for op in ops]
        for attempt in range(2):
            try:
                self._table.submit(operations)
                return []
            except ServiceUnavailable:
                if attempt:
                    if unavailable is None:
                        raise
                    log.warning("a transaction of %d runs got no answer twice; left for the next sweep", len(batch))
                    unavailable.extend(run_id for run_id, _ in batch)
                    return []
                log.info("a transaction of %d runs got no answer; sending it once more", len(batch))
            except RunTableRefused as refused:
                if not _lost_race(refused):
                    raise
                break
        if len(batch) == 1:
            return [batch[0][0]]
        lost: list[str] = []
        for run_id, operations in batch:
            try:
                self._table.submit(operations)
            except ServiceUnavailable:
                if unavailable is None:
                    raise
                unavailable.append(run_id)
            except RunTableRefused as refused:
                if not _lost_race(refused):
                    raise
                lost.append(run_id)
        return lost


def _pack(planned: list[tuple[str, list]]):
    """Runs' operation lists packed into transactions of at most MAX_BATCH_OPERATIONS operations
    and MAX_BATCH_BYTES (estimated), each run's operations kept together, in the given order."""
    batch: list[tuple[str, list]] = []
    count = size = 0
    for run_id, operations in planned:
        run_size = sum(entity_bytes(op[1]) + _BATCH_OPERATION_OVERHEAD for op in operations)
        if batch and (count + len(operations) > MAX_BATCH_OPERATIONS or size + run_size > MAX_BATCH_BYTES):
            yield batch
            batch, count, size = [], 0, 0
        batch.append((run_id, operations))
        count += len(operations)
        size += run_size
    if batch:
        yield batch


def _lost_race(refused: RunTableRefused) -> bool:
    """412 (a row changed since it was read) or 404 (a row is gone): another writer was first."""
    return refused.status == 412 or (refused.status == 404 and refused.error_code != "TableNotFound")

