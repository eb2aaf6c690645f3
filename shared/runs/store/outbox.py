"""The outbox's rows in the run table: events recorded with their transitions, waiting to be published.

The rows themselves are written in the same batch as the transition they announce (``outbox_row``
in ``shared.runs.outbox``, passed to ``save``, ``create_run`` and ``save_many``). Here they are
read, and deleted once delivered. One publisher at a time publishes a namespace's outbox: it holds
the namespace's publish lease (one row, ``PUBLISH_LEASE_KEY``, taken and renewed under its ETag),
so publishing N events costs N deletes and a few lease writes, not a claim per event as well.
"""

from __future__ import annotations

import json
from datetime import datetime

from azure.core import MatchConditions
from azure.data.tables import UpdateMode

from shared.runs.errors import RunTableRefused
from shared.runs.outbox import OUTBOX_PREFIX, PUBLISH_LEASE_KEY, OutboxEntry, PublishLease
from shared.runs.rows import EPOCH, plain_datetime, usable_key, utc
from shared.runs.store.table import MAX_QUERY_PAGE, RunTable

_LOST_RACE = (404, 409, 412)  # the lease row changed, appeared or went since it was read


class OutboxRows:
    """Read and delete the events waiting in one namespace's partition, under its publish lease."""

    def __init__(self, table: RunTable):
        self._table = table

    def waiting(self, namespace: str, *, limit: int = MAX_QUERY_PAGE) -> list[OutboxEntry]:
        """Events recorded but not yet published, per run in transition order (one query)."""
        if not usable_key(namespace):
            return []
        rows, _ = self._table.query_prefix(namespace, OUTBOX_PREFIX, limit, None)
        return [OutboxEntry(row["RowKey"], row["run_id"], json.loads(row["event"]),
                            row.get("_etag"), plain_datetime(row.get("claimed_until"))) for row in rows]

    def lease_until(self, namespace: str) -> datetime | None:
        """When the namespace's publish lease ends (None: never taken); in the past once released."""
        row = self._table.get(namespace, PUBLISH_LEASE_KEY)
        return None if row is None else plain_datetime(row.get("until"))

    def take_lease(self, namespace: str, now: datetime, until: datetime) -> PublishLease | None:
        """The namespace's publish lease until ``until``, or None while another publisher holds it
        (its lease has not ended at ``now``) or took it a moment before (the write lost its race)."""
        row = self._table.get(namespace, PUBLISH_LEASE_KEY)
        if row is None:
            return self._write_lease(namespace, until, ("create", {}))
        held_until = plain_datetime(row.get("until"))
        if held_until is not None and held_until > utc(now):
            return None
        return self._write_lease(namespace, until, ("update", _guarded(row.metadata.get("etag"))))

    def renew_lease(self, namespace: str, lease: PublishLease, until: datetime) -> PublishLease | None:
        """The same lease, now until ``until``; None when it was lost (taken over after it ended)."""
        return self._write_lease(namespace, until, ("update", _guarded(lease.etag)))

    def release_lease(self, namespace: str, lease: PublishLease) -> None:
        """End the lease now, so the next sweep need not wait for it; one already lost is left alone."""
        self._write_lease(namespace, EPOCH, ("update", _guarded(lease.etag)))

    def delete(self, namespace: str, row_keys: list[str]) -> None:
        """Delete delivered events, 100 per batch; one already gone is not an error."""
        for chunk in _chunks(row_keys, 100):
            operations = [("delete", {"PartitionKey": namespace, "RowKey": key}) for key in chunk]
            try:
                self._table.submit(operations)
            except RunTableRefused as refused:
                if refused.status != 404:
                    raise
                for key in chunk:  # one was gone already: delete the rest one by one
                    try:
                        self._table.delete(namespace, key)
                    except RunTableRefused as again:
                        if again.status != 404:
                            raise

    def _write_lease(self, namespace: str, until: datetime, how: tuple[str, dict]) -> PublishLease | None:
        verb, options = how
        row = {"PartitionKey": namespace, "RowKey": PUBLISH_LEASE_KEY, "kind": "lease", "until": utc(until)}
        try:
            (answer,) = self._table.submit([(verb, row, options)])
        except RunTableRefused as refused:
            if refused.status in _LOST_RACE:
                return None
            raise
        return PublishLease(etag=answer.get("etag"), until=until)


def _guarded(etag: str | None) -> dict:
    return {"mode": UpdateMode.REPLACE, "etag": etag, "match_condition": MatchConditions.IfNotModified}


def _chunks(items: list, size: int):
    for i in range(0, len(items), size):
        yield items[i:i + size]
