"""Polls racing the sweep: many concurrent polls of runs whose Jobs finished, while a sweep runs.

``runs`` runs are seeded (``Starting/Pending``) with Jobs that succeed ``FINISH_AFTER`` simulated
seconds after they start; the clock is then moved past that, so every Job has succeeded and every
stored state is older than ``POLL_READ_THROUGH_SECONDS``. Two app instances share the table, as
two Functions instances do: one serves polls (``reading.get_fresh_run``, what the poll route
calls) on ``pollers`` threads, each polling every run once in its own order; the other sweeps the
namespace (``sweeping.sweep_namespace``, what the queue trigger calls) at the same moment. A
second sweep afterwards publishes what the first left in the outbox.

Figures (counts, checked against the table and the Event Grid stub, not taken from the app's
word): runs recorded terminal exactly once (one terminal entry in each run's history), events
received per run (exactly one: one transition each), Kubernetes Job GETs at the simulator caused
by the polls, writes that lost an ETag race (412) and were decided again, and the wall time. Before
the race, ``concurrent`` polls of one more finished run, all at once within one interval: Job GETs
at the simulator (the read-through coalesces them to at most one).

What it deliberately does not do: print or judge (``bench.reporting``).
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter

from bench.seeding import seed_active_runs
from bench.sweeping import STARTUP_SECONDS
from bench.topic import RaceCountingStore, started_topic, topic_settings
from bench.world import World
from shared import composition
from shared.runs.model import TERMINAL_STATUSES
from shared.runs.store import RunStore
from shared.usecases import reading, sweeping

FINISH_AFTER = 60  # simulated seconds from a Job's start to its success
JOB_READ_ROUTES = ("GET /apis/batch/v1/namespaces/{namespace}/jobs/{name}",
                   "GET /apis/batch/v1/namespaces/{namespace}/jobs/{name}/status")


def race_figures(world: World, runs: int, *, pollers: int = 8, concurrent: int = 50) -> dict:
    namespace = f"race-{runs}"
    with started_topic() as topic:
        settings = world.settings(namespace, **topic_settings(topic))
        with world.table(settings) as store:
            run_ids = seed_active_runs(world.cluster, store, namespace, runs + 1, now=world.cluster.now(),
                                       prefix=namespace, scenario=f"succeed:after={FINISH_AFTER}")
            world.cluster.advance(STARTUP_SECONDS + FINISH_AFTER)
            now = world.cluster.now()
            poll_store, sweep_store = (RaceCountingStore(RunStore.from_settings(settings)) for _ in range(2))
            polls = composition.build(settings, poll_store, clock=lambda: now)
            sweeper = composition.build(settings, sweep_store, clock=lambda: now)
            for instance in (polls, sweeper):
                instance.kube.server_version()  # clients built before anything is measured
                _ = instance.publisher
            raced, single = run_ids[:runs], run_ids[runs]
            coalesced = _concurrent_polls(world, polls, namespace, single, concurrent)  # before the sweep sees it
            race = _race(world, polls, sweeper, namespace, raced, pollers)
            sweeping.sweep_namespace(sweeper, namespace)  # the next sweep: publishes what is left
            recorded = _terminal_entries(store, namespace, run_ids)
            events = Counter(e["data"]["runId"] for e in topic.received())
            statuses = Counter(e["data"]["status"] for e in topic.received())
    return {
        "runs": runs,
        "pollers": pollers,
        "polls": race["polls"],
        "wallMs": race["wallMs"],
        "sweepChanged": race["sweepChanged"],
        "pollJobGets": race["pollJobGets"],
        "sweepKubeRequests": race["sweepKubeRequests"],
        "lostRaces": {"polls": dict(poll_store.lost_races), "sweep": dict(sweep_store.lost_races)},
        "recordedTerminalOnce": sum(1 for n in recorded.values() if n == 1),
        "recordedTerminalTwiceOrMore": sum(1 for n in recorded.values() if n > 1),
        "notTerminal": sum(1 for n in recorded.values() if n == 0),
        "eventsPublishedOnce": sum(1 for r in run_ids if events[r] == 1),
        "eventsDuplicated": sum(n - 1 for n in events.values() if n > 1),
        "eventsMissing": sum(1 for r in run_ids if events[r] == 0),
        "eventStatuses": dict(statuses),
        "concurrentPolls": coalesced,
    }


def _race(world: World, polls, sweeper, namespace: str, run_ids: list[str], pollers: int) -> dict:
    start = threading.Barrier(pollers + 1)
    done: list[int] = []
    summaries: list = []
    errors: list[BaseException] = []

    def poll_every_run(seed: int) -> None:
        order = list(run_ids)
        random.Random(seed).shuffle(order)
        start.wait()
        try:
            for run_id in order:
                reading.get_fresh_run(polls, run_id, namespace)
            done.append(len(order))
        except BaseException as err:  # reported after the join: a thread's exception is otherwise lost
            errors.append(err)

    def sweep() -> None:
        start.wait()
        summaries.append(sweeping.sweep_namespace(sweeper, namespace))

    routes_before = world.cluster.requests_by_route()
    sweep_kube_before = sweeper.kube_requests()
    threads = [threading.Thread(target=poll_every_run, args=(i,)) for i in range(pollers)]
    threads.append(threading.Thread(target=sweep))
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall_ms = (time.perf_counter() - started) * 1000
    if errors:
        raise errors[0]
    return {
        "polls": sum(done),
        "wallMs": round(wall_ms, 1),
        "sweepChanged": summaries[0].changed if summaries else None,
        "pollJobGets": _job_gets(world, routes_before),
        "sweepKubeRequests": sweeper.kube_requests() - sweep_kube_before,
    }


def _concurrent_polls(world: World, polls, namespace: str, run_id: str, count: int) -> dict:
    start = threading.Barrier(count)
    statuses: list[str] = []

    def poll() -> None:
        start.wait()
        statuses.append(str(reading.get_fresh_run(polls, run_id, namespace).status))

    routes_before = world.cluster.requests_by_route()
    threads = [threading.Thread(target=poll) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {"polls": count, "jobGets": _job_gets(world, routes_before), "statuses": dict(Counter(statuses))}


def _job_gets(world: World, before: dict[str, int]) -> int:
    after = world.cluster.requests_by_route()
    return sum(after.get(route, 0) - before.get(route, 0) for route in JOB_READ_ROUTES)


def _terminal_entries(store, namespace: str, run_ids: list[str]) -> dict[str, int]:
    """Per run: how many entries of its stored history record a terminal status."""
    terminal = {str(s) for s in TERMINAL_STATUSES}
    counts = {}
    for run_id in run_ids:
        run = store.get_run(namespace, run_id)
        counts[run_id] = sum(1 for entry in (run.history if run else []) if entry.get("status") in terminal)
    return counts
