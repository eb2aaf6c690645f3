"""One sweep-queue consumer as a Functions instance runs it: its own process, its own collaborators.

Azure Functions scales a queue trigger out over instances, each a process (on its own machine)
that builds its collaborators from app settings. ``consume`` is the body of such a process, started
by ``bench.fanout`` through ``multiprocessing`` (spawn): it takes the app settings as environment
variables, builds everything through the composition root (``composition.collaborators()``: its own
Table client, Kubernetes client and queue client), warms them up, says it is ready, waits for the
go, then takes one message at a time from Azurite's queue and hands its body to
``shared.adapters.queue.run_sweep_shard`` - what function_app's ``sweep_shard`` calls - deleting it
afterwards as the Functions host does after a successful run. It stops when the queue is empty and
reports its counts (and its own CPU time) to the parent.

One stand-in: the simulator's clock stands still while the benchmark does not advance it, so the
process's clock is set to the simulator's time (``now_iso``) instead of the wall clock; in Azure
both are real time.

What it deliberately does not do: measure wall time (the parent does, from the fan-out until the
last consumer reports) or judge anything.
"""

from __future__ import annotations

import json
import os
import resource
import time
from datetime import datetime

RECEIVE_VISIBILITY_SECONDS = 300  # longer than any shard takes here: no message is delivered twice


def consume(env: dict[str, str], now_iso: str, ready, go, results) -> None:
    """The consumer process's body (``multiprocessing`` target; every argument picklable)."""
    from shared.settings import SETTINGS

    for spec in SETTINGS:  # only the given app settings, none inherited from the parent
        os.environ.pop(spec.name, None)
    os.environ.update(env)

    from shared import composition
    from shared.adapters.queue import run_sweep_shard

    c = composition.collaborators()
    now = datetime.fromisoformat(now_iso)
    c.clock = lambda: now
    queue = c.queue
    c.kube.server_version()  # the Kubernetes client built (SDK loaded, connected) before the go
    queue.depth()
    table_before, kube_before = dict(c.store.requests), c.kube_requests()
    ready.set()
    go.wait()

    cpu_before = _cpu_seconds()
    started = time.perf_counter()
    shards: list[dict] = []
    while True:
        messages = list(queue.receive(max_messages=1, visibility_timeout=RECEIVE_VISIBILITY_SECONDS))
        if not messages:
            break
        summary = run_sweep_shard(json.dumps(messages[0].body).encode("utf-8"))
        queue.delete(messages[0])
        if summary is not None:
            shards.append(summary)
    busy = time.perf_counter() - started
    table = {op: n - table_before.get(op, 0) for op, n in c.store.requests.items()}
    results.put({"pid": os.getpid(), "shards": shards, "tableOperations": {op: n for op, n in table.items() if n},
                 "kubeRequests": c.kube_requests() - kube_before, "busySeconds": round(busy, 3),
                 "cpuSeconds": round(_cpu_seconds() - cpu_before, 3)})


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime
