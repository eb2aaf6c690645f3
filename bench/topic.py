"""The Event Grid topic the benchmark publishes to: ``tools.eventgridstub`` on loopback, as the tests use it.

``started_topic()`` starts the stub with its own self-signed certificate, trusts it through
``REQUESTS_CA_BUNDLE`` (what azure-core's transport reads) while the section runs, and yields it;
``topic_settings(stub)`` are the app settings that name it. ``RaceCountingStore`` wraps a run store
to count the writes that lost an ETag race (412), which neither Azurite nor the store counts.

What it deliberately does not do: count or judge events (the sections do).
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

from shared.runs.errors import StaleRun
from tools.certs import trusted_by_azure_sdks
from tools.eventgridstub import EventGridStub

TOPIC_KEY = "bench-topic-key-0123456789abcdef"


@contextmanager
def started_topic() -> Iterator[EventGridStub]:
    stub = EventGridStub(TOPIC_KEY)
    stub.start()
    try:
        with trusted_by_azure_sdks(stub.ca_path):
            yield stub
    finally:
        stub.stop()


def topic_settings(stub: EventGridStub) -> dict[str, str]:
    return {"EVENTGRID_TOPIC_ENDPOINT": stub.endpoint, "EVENTGRID_TOPIC_KEY": stub.key}


class RaceCountingStore:
    """A run store that counts lost races: ``save`` raising ``StaleRun`` (the writer re-reads and
    decides again) and runs ``save_many`` hands back unsaved (the sweep saves them one by one).
    Everything else goes to the wrapped store unchanged."""

    def __init__(self, store):
        self._store = store
        self._lock = threading.Lock()
        self.lost_races: Counter[str] = Counter()

    def __getattr__(self, name: str):
        return getattr(self._store, name)

    def save(self, *args, **kwargs):
        try:
            return self._store.save(*args, **kwargs)
        except StaleRun:
            with self._lock:
                self.lost_races["save"] += 1
            raise

    def save_many(self, *args, **kwargs):
        unsaved = self._store.save_many(*args, **kwargs)
        with self._lock:
            self.lost_races["batched"] += len(unsaved)
        return unsaved
