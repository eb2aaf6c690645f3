"""Fan-out figures: namespaces x active runs swept through the sweep queue, by one or two consumers.

Runs are seeded in ``namespaces`` namespaces (``runs`` each) with Jobs that start after a few
simulated seconds and succeed later (``succeed:after=SUCCEED_AFTER``). Then, timed from the
timer's fan-out until the queue is empty:

- *mass change, one consumer*: every run goes Pending -> Running;
- *steady, one consumer*: nothing changed (Kubernetes requests and Table writes counted);
- *mass change, two consumers*: every run goes Running -> Success (the markers are deleted
  instead of replaced: the same number of Table operations).

A consumer is a thread with its own collaborators (its own Table and Kubernetes clients, as a
second instance would have) taking one message at a time from Azurite's queue and sweeping that
namespace (``sweeping.sweep_namespace``, what the queue trigger calls). Two consumers in one
Python process share the GIL: their gain comes from overlapping the waits on Azurite and the
simulator, on a 2-core machine that also runs both of them.

What it deliberately does not do: print or judge (``bench.reporting``).
"""

from __future__ import annotations

import threading
import time
from collections import Counter

from bench.seeding import seed_active_runs
from bench.sweeping import READ_OPERATIONS, STARTUP_SECONDS
from bench.world import World
from shared import composition
from shared.kube.credentials import connector_for
from shared.runs.store import RunStore
from shared.sweepqueue import SweepQueue
from shared.usecases import sweeping

SUCCEED_AFTER = 600  # simulated seconds from a Job's start to its success


def fanout_figures(world: World, namespaces: int, runs: int) -> dict:
    names = [f"fan-{i}" for i in range(namespaces)]
    settings = world.settings(names[0], ALLOWED_NAMESPACES=",".join(names),
                              SweepQueue=world.azurite_queue.connection_string,
                              SWEEP_QUEUE_NAME=f"bench-sweep-{namespaces}x{runs}")
    with world.table(settings) as store:
        seeded_at = world.cluster.now()
        for name in names:
            seed_active_runs(world.cluster, store, name, runs, now=seeded_at, prefix=name,
                             scenario=f"succeed:after={SUCCEED_AFTER}")
        queue = composition.sweep_queue(settings)
        connector_for(settings).api_client()  # built (SDK imported) before anything is measured
        world.cluster.advance(STARTUP_SECONDS)
        mass_one = _fanned_out(world, settings, queue, consumers=1)
        steady = _fanned_out(world, settings, queue, consumers=1)
        world.cluster.advance(SUCCEED_AFTER)
        mass_two = _fanned_out(world, settings, queue, consumers=2)
        del store
    return {
        "namespaces": namespaces,
        "runsPerNamespace": runs,
        "massOneConsumer": mass_one,
        "steady": steady,
        "massTwoConsumers": mass_two,
        "twoOverOne": round(mass_one["wallMs"] / mass_two["wallMs"], 2) if mass_two["wallMs"] else None,
    }


def _fanned_out(world: World, settings, queue: SweepQueue, *, consumers: int) -> dict:
    now = world.cluster.now()
    instances = [composition.build(settings, RunStore.from_settings(settings), clock=lambda: now)
                 for _ in range(consumers)]
    timer = composition.build(settings, RunStore.from_settings(settings), clock=lambda: now)
    kube_before = world.cluster.request_total()
    summaries: list = []
    lock = threading.Lock()

    def consume(c) -> None:
        while True:
            messages = list(queue.receive(max_messages=1, visibility_timeout=300))
            if not messages:
                return
            summary = sweeping.sweep_namespace(c, messages[0].body["namespace"])
            queue.delete(messages[0])
            with lock:
                summaries.append(summary)

    started = time.perf_counter()
    enqueued = sweeping.fan_out(timer, queue)
    threads = [threading.Thread(target=consume, args=(c,)) for c in instances]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall_ms = (time.perf_counter() - started) * 1000
    table = Counter()
    for c in instances:
        table.update(c.store.requests)
    return {
        "consumers": consumers,
        "enqueued": enqueued,
        "shards": len(summaries),
        "changed": sum(s.changed for s in summaries),
        "runsSeen": sum(s.runs_seen for s in summaries),
        "wallMs": round(wall_ms, 1),
        "kubeRequests": world.cluster.request_total() - kube_before,
        "tableReads": sum(table[op] for op in READ_OPERATIONS),
        "tableWrites": sum(n for op, n in table.items() if op not in READ_OPERATIONS),
        "timerTableRequests": sum(timer.store.requests.values()),
        "timerKubeRequests": timer.kube_requests(),
    }
