"""The outbox's rows in the run table: events recorded with their transitions, waiting to be published.

The rows themselves are written in the same batch as the transition they announce (``outbox_row``
in ``shared.runs.outbox``, passed to ``save``, ``create_run`` and ``save_many``). Here they are
read, leased to one publisher at a time under their ETags, and deleted once delivered.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime

from azure.core import MatchConditions
from azure.data.tables import UpdateMode

from shared.runs.errors import RunTableRefused
from shared.runs.outbox import OUTBOX_PREFIX, OutboxEntry
from shared.runs.rows import EPOCH, plain_datetime, usable_key, utc
from shared.runs.store.table import MAX_QUERY_PAGE, RunTable


class OutboxRows:
    """Read, claim and delete the events waiting in one namespace's partition."""

    def __init__(self, table: RunTable):
        self._table = table

    def waiting(self, namespace: str, *, limit: int = MAX_QUERY_PAGE) -> list[OutboxEntry]:
        """Events recorded but not yet published, per run in transition order (one query)."""
        if not usable_key(namespace):
            return []
        rows, _ = self._table.query_prefix(namespace, OUTBOX_PREFIX, limit, None)
        return [OutboxEntry(row["RowKey"], row["run_id"], json.loads(row["event"]),
                            row.get("_etag"), plain_datetime(row.get("claimed_until"))) for row in rows]

    def claim(self, namespace: str, entries: list[OutboxEntry], until: datetime | None) -> list[OutboxEntry]:
        """Mark entries as being published until ``until`` (None releases them), each under its
        ETag: of two sweeps publishing at once, one claims and the other skips. Returns the entries
        claimed (with their new ETags), a prefix of ``entries`` (100 per atomic batch)."""
        claimed: list[OutboxEntry] = []
        for chunk in _chunks(entries, 100):
            # A None property is dropped by the SDK, and a MERGE would then keep the old lease:
            # a released entry gets a lease that ended at the epoch instead.
            operations = [("update", {"PartitionKey": namespace, "RowKey": e.row_key,
                                      "claimed_until": EPOCH if until is None else utc(until)},
                           {"mode": UpdateMode.MERGE, "etag": e.etag, "match_condition": MatchConditions.IfNotModified})
                          for e in chunk]
            try:
                answers = self._table.submit(operations)
            except RunTableRefused as refused:
                if refused.status in (404, 412):
                    break
                raise
            claimed.extend(replace(e, etag=a.get("etag"), claimed_until=until) for e, a in zip(chunk, answers, strict=True))
        return claimed

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


def _chunks(items: list, size: int):
    for i in range(0, len(items), size):
        yield items[i:i + size]
