"""The outbox's rows: a run's transition event, recorded in the same batch as the state and published
after (``shared.usecases.publishing``). Pure; the run store reads and writes them."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

OUTBOX_PREFIX = "outbox|"
# One row per namespace: which publisher may publish its outbox, and until when.
PUBLISH_LEASE_KEY = "lease|outbox"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def outbox_row(namespace: str, run_id: str, event: dict, at: datetime, sequence: int = 0) -> dict:
    """A transition's event waiting to be published; keys sort per run in transition order
    (time, then ``sequence`` - the run's history length - for transitions in the same instant)."""
    at = at.replace(tzinfo=UTC) if at.tzinfo is None else at  # a naive time is UTC
    micros = int((at - _EPOCH) / timedelta(microseconds=1))
    return {
        "PartitionKey": namespace,
        "RowKey": f"{OUTBOX_PREFIX}{run_id}|{micros:017d}|{sequence:04d}|{event['id']}",
        "kind": "outbox",
        "run_id": run_id,
        "event": json.dumps(event, separators=(",", ":"), ensure_ascii=False, default=str),
        "claimed_until": None,
    }


@dataclass(frozen=True)
class PublishLease:
    """A namespace's publish lease as its holder last wrote it: ``etag`` guards the next renewal."""

    etag: str
    until: datetime


@dataclass(frozen=True)
class OutboxEntry:
    row_key: str
    run_id: str
    event: dict
    etag: str | None
    claimed_until: datetime | None
