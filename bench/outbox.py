"""Outbox figures: after a mass change of N runs, how long until every event is out on Event Grid.

N runs in one namespace (seeded ``Starting/Pending``, Jobs running by the time the sweep looks)
with an Event Grid topic configured (``tools.eventgridstub`` on loopback, as the tests use it):
the first sweep (``sweeping.sweep_namespace``, what a queue consumer runs) moves every run to
Running and writes each transition's event to the outbox in the same transactions, then publishes.
Further sweeps follow, one after another, until the stub has received every event.

The publishing is timed apart from the recording: the sweep's publish step
(``sweeping.publish_pending``) is wrapped with a timer for the section, so each sweep's figures
split into recording and publishing. The verdict counts the sweeps that published and the
seconds spent publishing against two sweep periods (``SWEEP_SCHEDULE``); the mass change's own
recording time is reported beside it as it is.

What it deliberately does not do: print or judge (``bench.reporting``).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

from bench.seeding import seed_active_runs
from bench.sweeping import STARTUP_SECONDS
from bench.topic import started_topic, topic_settings
from bench.world import World
from shared import composition
from shared.usecases import sweeping

MAX_SWEEPS = 10  # the section stops after this many sweeps even if events are still missing


def outbox_figures(world: World, runs: int) -> dict:
    namespace = f"outbox-{runs}"
    with started_topic() as topic:
        settings = world.settings(namespace, **topic_settings(topic))
        with world.table(settings) as store:
            seed_active_runs(world.cluster, store, namespace, runs, now=world.cluster.now(), prefix=namespace)
            world.cluster.advance(STARTUP_SECONDS)
            now = world.cluster.now()
            c = composition.build(settings, store, clock=lambda: now)
            c.kube.server_version()  # clients built before anything is measured
            _ = c.publisher
            sweeps = []
            with _timed_publishing() as publishing:
                while len(sweeps) < MAX_SWEEPS:
                    started = time.perf_counter()
                    summary = sweeping.sweep_namespace(c, namespace)
                    total = time.perf_counter() - started
                    spent = publishing.pop()
                    sweeps.append({"changed": summary.changed, "published": summary.published,
                                   "recordingSeconds": round(total - spent, 2), "publishingSeconds": round(spent, 2),
                                   "receivedSoFar": len(topic.received())})
                    if len(topic.received()) >= runs or (summary.published == 0 and len(sweeps) > 1):
                        break
            ids = Counter(e["id"] for e in topic.received())
            runs_announced = Counter(e["data"]["runId"] for e in topic.received())
    publishing_sweeps = [i + 1 for i, s in enumerate(sweeps) if s["published"]]
    return {
        "runs": runs,
        "sweepPeriodSeconds": settings.sweep_period_seconds,
        "sweeps": sweeps,
        "eventsReceived": sum(ids.values()),
        "eventsUnique": len(ids),
        "eventsDuplicated": sum(n - 1 for n in ids.values() if n > 1),
        "runsAnnounced": len(runs_announced),
        "sweepsUntilAllPublished": publishing_sweeps[-1] if len(ids) >= runs and publishing_sweeps else None,
        "publishingSeconds": round(sum(s["publishingSeconds"] for s in sweeps), 2),
        "recordingSeconds": sweeps[0]["recordingSeconds"],
        "publishAttempts": len(topic.attempts),
    }


@contextmanager
def _timed_publishing() -> Iterator[list[float]]:
    """The sweep's publish step timed: each call's seconds appended to the yielded list (summed by
    ``pop`` below per sweep). Restored afterwards."""
    original = sweeping.publish_pending
    spent = _Spent()

    def timed(c, namespace):
        started = time.perf_counter()
        try:
            return original(c, namespace)
        finally:
            spent.append(time.perf_counter() - started)

    sweeping.publish_pending = timed
    try:
        yield spent
    finally:
        sweeping.publish_pending = original


class _Spent(list):
    def pop(self) -> float:  # type: ignore[override] - the seconds since the last pop, summed
        total = sum(self)
        self.clear()
        return total
