"""Fan-out figures: namespaces x active runs swept through the sweep queue by one or two consumer processes.

Two sets of ``namespaces`` namespaces (``runs`` active runs each, in a table of their own) are
seeded alike, with Jobs that run forever; after a few simulated seconds every pod is Running. Then,
each timed from the timer's fan-out (``sweeping.fan_out``: one message per namespace) until every
consumer has emptied the queue:

- *mass change, one consumer* (first set): every run goes Pending -> Running;
- *steady, two consumers* (first set again): nothing changed (Kubernetes requests counted at the
  simulator, Table writes by the consumers' stores);
- *mass change, two consumers* (second set): the same Pending -> Running of as many runs, in as
  large partitions, so one and two consumers do the same work.

A consumer is what Azure Functions scales out: a separate OS process (``bench.consumer``, started
with ``multiprocessing`` spawn) that builds its own collaborators from app settings through the
composition root and hands each message to ``run_sweep_shard``, as the queue trigger does. Starting
the processes and building their clients is done before the clock starts.

Where the time goes: the CPU time of Azurite's table process, of the simulator's process and of
the consumers over each measurement (from /proc and ``getrusage``). Azurite is one single-threaded
Node process; a share of the wall time near 100% means it serialised the consumers' Table work.

What it deliberately does not do: print or judge (``bench.reporting``).
"""

from __future__ import annotations

import multiprocessing
import time
from collections import Counter
from contextlib import ExitStack

from bench import consumer
from bench.measuring import process_cpu_seconds
from bench.seeding import seed_active_runs
from bench.sweeping import READ_OPERATIONS, STARTUP_SECONDS
from bench.world import World
from shared import composition
from shared.runs.store import RunStore
from shared.settings import load_settings
from shared.usecases import sweeping

READY_TIMEOUT_SECONDS = 120  # a consumer process's start (imports, clients) on a loaded machine
RESULT_TIMEOUT_SECONDS = 1800  # a whole fanned-out mass change; the section fails rather than hang


def fanout_figures(world: World, namespaces: int, runs: int) -> dict:
    with ExitStack() as stack:
        sets = {}
        for label in ("a", "b"):
            names = [f"fan{label}-{i}" for i in range(namespaces)]
            env = world.app_settings(names[0], ALLOWED_NAMESPACES=",".join(names),
                                     SweepQueue=world.azurite_queue.connection_string,
                                     SWEEP_QUEUE_NAME=f"bench-sweep-{label}-{namespaces}x{runs}")
            store = stack.enter_context(world.table(load_settings(env)))
            for name in names:
                seed_active_runs(world.cluster, store, name, runs, now=world.cluster.now(), prefix=name)
            sets[label] = env
        world.cluster.advance(STARTUP_SECONDS)
        mass_one = _fanned_out(world, sets["a"], consumers=1)
        steady = _fanned_out(world, sets["a"], consumers=2)
        mass_two = _fanned_out(world, sets["b"], consumers=2)
    return {
        "namespaces": namespaces,
        "runsPerNamespace": runs,
        "massOneConsumer": mass_one,
        "steady": steady,
        "massTwoConsumers": mass_two,
        "twoOverOne": round(mass_one["wallMs"] / mass_two["wallMs"], 2) if mass_two["wallMs"] else None,
    }


def _fanned_out(world: World, env: dict[str, str], *, consumers: int) -> dict:
    settings = load_settings(env)
    now = world.cluster.now()
    context = multiprocessing.get_context("spawn")  # not fork: this process runs threads
    go, results = context.Event(), context.Queue()
    ready = [context.Event() for _ in range(consumers)]
    processes = [context.Process(target=consumer.consume, args=(env, now.isoformat(), ready[i], go, results),
                                 daemon=True) for i in range(consumers)]
    for process in processes:
        process.start()
    try:
        for event in ready:
            if not event.wait(READY_TIMEOUT_SECONDS):
                raise RuntimeError("a sweep-queue consumer process did not start")
        timer = composition.build(settings, RunStore.from_settings(settings), clock=lambda: now)
        queue = composition.sweep_queue(settings)
        cpu = _cpu_snapshot(world)
        kube_before = world.cluster.request_total()
        started = time.perf_counter()
        enqueued = sweeping.fan_out(timer, queue)
        go.set()
        reports = [results.get(timeout=RESULT_TIMEOUT_SECONDS) for _ in processes]
        wall_s = time.perf_counter() - started
        kube_requests = world.cluster.request_total() - kube_before
        cpu_used = {name: round(after - cpu[name], 2) for name, after in _cpu_snapshot(world).items()
                    if after is not None and cpu[name] is not None}
    finally:
        go.set()
        for process in processes:
            process.join(timeout=30)
            if process.is_alive():
                process.terminate()
    table = Counter()
    for report in reports:
        table.update(report["tableOperations"])
    shards = [s for report in reports for s in report["shards"]]
    cpu_used["consumers"] = round(sum(r["cpuSeconds"] for r in reports), 2)
    return {
        "consumers": consumers,
        "enqueued": enqueued,
        "shards": len(shards),
        "shardsPerConsumer": sorted(len(r["shards"]) for r in reports),
        "changed": sum(s["changed"] for s in shards),
        "runsSeen": sum(s["runsSeen"] for s in shards),
        "wallMs": round(wall_s * 1000, 1),
        "kubeRequests": kube_requests,
        "tableReads": sum(table[op] for op in READ_OPERATIONS),
        "tableWrites": sum(n for op, n in table.items() if op not in READ_OPERATIONS),
        "cpuSeconds": cpu_used,
        "azuriteBusyShare": round(cpu_used["azurite"] / wall_s, 2) if "azurite" in cpu_used and wall_s else None,
        "timerTableRequests": sum(timer.store.requests.values()),
        "timerKubeRequests": timer.kube_requests(),
    }


def _cpu_snapshot(world: World) -> dict[str, float | None]:
    return {"azurite": process_cpu_seconds(world.azurite.pid), "azuriteQueue": process_cpu_seconds(world.azurite_queue.pid),
            "simulator": process_cpu_seconds(world.cluster.pid())}
