"""Runs as rows in Azure Table Storage: point reads, atomic claims, ETag-guarded updates.

Why this exists: the service needs a run record that survives restarts, that two writers (the
sweep and a cancel) can race on without losing a transition, and that the sweep can read at a
cost proportional to the runs still in flight rather than to every run ever made.

``RunStore`` is what the use cases hold. Its parts share one table client and one request
counter (``RunTable``, in ``table``):

- ``records``: one run at a time (create, read, save) and the active markers the sweep lists;
- ``batches``: many runs' state changes in few transactions (the sweep's writes);
- ``history``: the run list, newest first, from the time index;
- ``outbox``: the events waiting to be published (``store.outbox``).

The rows they read and write, the table's layout and its size limits are ``shared.runs.rows``
(pure).

What it deliberately does not do: decide transitions (``shared.runs.model`` does), retry a
``StaleRun`` (the caller re-reads and re-applies), read the clock except to stamp a run created
without ``created_at``, or let an ``azure.core`` exception out: unavailability becomes
``ServiceUnavailable`` ("run table unreachable"), any other refusal ``RunTableRefused`` (502).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from azure.data.tables import TableClient

from shared.runs.markers import ActiveRun, StateChange
from shared.runs.model import Run, Status
from shared.runs.store.batches import BATCH_WORKERS, StateBatches
from shared.runs.store.history import RunHistory
from shared.runs.store.outbox import OutboxRows
from shared.runs.store.records import RunRecords
from shared.runs.store.table import RunTable, table_client
from shared.settings import Settings


class RunStore:
    """Runs in one Azure table. ``requests`` counts the Table requests made, by operation.

    The run verbs hand over to the part that does them; ``outbox`` holds the events' rows.
    """

    def __init__(self, client: TableClient):
        self._table = RunTable(client)
        self._records = RunRecords(self._table)
        self._batches = StateBatches(self._table)
        self._history = RunHistory(self._table)
        self.outbox = OutboxRows(self._table)

    @classmethod
    def from_settings(cls, settings: Settings, **client_options: Any) -> RunStore:
        """A store on ``RUNS_TABLE_CONNECTION_STRING``, else ``RUNS_TABLE_ENDPOINT`` + managed identity.

        ``client_options`` override ``CLIENT_OPTIONS`` (e.g. ``retry_total=0`` for a health probe).
        """
        return cls(table_client(settings, **client_options))

    @property
    def requests(self) -> Counter[str]:
        """Table requests made so far by every part, by operation (one counter, shared)."""
        return self._table.requests

    @property
    def table_name(self) -> str:
        return self._table.client.table_name

    @property
    def table(self) -> TableClient:
        """The underlying client, for tests that inspect raw rows. App code uses the methods:
        they count requests and turn azure.core errors into AppErrors; this does neither."""
        return self._table.client

    def ensure_table(self) -> None:
        """Create the table if it is missing; an existing table is fine."""
        self._table.ensure()

    # -- one run at a time (records) -----------------------------------------------------------

    def create_run(self, run: Run, *, outbox: list[dict] = ()) -> Run:
        return self._records.create_run(run, outbox=outbox)

    def get_run(self, namespace: str, run_id: str) -> Run | None:
        return self._records.get_run(namespace, run_id)

    def get_run_by_idempotency_key(self, namespace: str, key: str) -> Run | None:
        return self._records.get_run_by_idempotency_key(namespace, key)

    def save(self, run: Run, *, outbox: list[dict] = ()) -> Run:
        return self._records.save(run, outbox=outbox)

    def list_active(self, namespace: str) -> list[ActiveRun]:
        return self._records.list_active(namespace)

    # -- many runs (batches, history) ----------------------------------------------------------

    def save_many(self, namespace: str, changes: list[StateChange], *, workers: int = BATCH_WORKERS,
                  unavailable: list[str] | None = None) -> list[str]:
        return self._batches.save_many(namespace, changes, workers=workers, unavailable=unavailable)

    def list_runs(self, namespace: str, *, status: Status | str | None = None, external_id: str | None = None,
                  page_size: int = 50, continuation: str | None = None) -> tuple[list[dict], str | None]:
        return self._history.list_runs(namespace, status=status, external_id=external_id,
                                       page_size=page_size, continuation=continuation)
