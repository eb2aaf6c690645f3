"""The simulated cluster the benchmark measures against, run in a process of its own.

Why a separate process: the Kubernetes simulator is pure Python. Inside the benchmark's process
its HTTP threads would share the GIL with the code being timed, and ``tracemalloc`` would count
the server's allocations (encoding a 500-Job page) as the sweep's. A real API server is another
machine; a child process is the closest honest stand-in on one host, and on a 2-core machine it
gets a core of its own while the measured code runs.

``simulated_cluster(latency)`` starts one ``KubeSim`` (manual clock, every request delayed by
``latency`` seconds) behind a ``multiprocessing`` manager and yields a proxy of ``ClusterControl``:
seed Jobs, move the clock, read the request counter. Everything crossing the process
boundary is plain picklable data.

What it deliberately does not do: talk to the app, decide what is measured, or expose the
simulator's faults and scenarios beyond what the benchmark needs (scenarios come from each Job's
``kubesim.polysync.io/scenario`` annotation).
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from multiprocessing.managers import BaseManager

from tools.kubesim import KubeSim


class ClusterControl:
    """What the benchmark asks of the simulator; lives in the cluster's process."""

    def __init__(self, latency: float):
        self._sim = KubeSim(latency=latency, seed=7)
        self._sim.start()

    def url(self) -> str:
        return self._sim.url or ""

    def kubeconfig(self, namespace: str) -> dict:
        return self._sim.kubeconfig(namespace)

    def token(self) -> str:
        return self._sim.token

    def now(self) -> datetime:
        return self._sim.now()

    def put_jobs(self, namespace: str, jobs: list[dict]) -> int:
        """Seed Jobs behind the API's back (not requests: uncounted, no latency)."""
        for job in jobs:
            self._sim.put("jobs", namespace, job)
        return len(jobs)

    def advance(self, seconds: float) -> None:
        self._sim.advance(seconds)

    def request_total(self) -> int:
        """Requests that reached the server since the start (faults and 4xx included)."""
        return sum(self._sim.requests.values())

    def requests_by_route(self) -> dict[str, int]:
        """Requests since the start by ``"METHOD /route/template"`` (a Job GET apart from a LIST)."""
        return {f"{method} {template}": n for (method, template), n in self._sim.requests.items()}

    def pid(self) -> int:
        """The simulator's process (its CPU time is read from /proc)."""
        return os.getpid()

    def stop(self) -> None:
        self._sim.stop()


class _ClusterManager(BaseManager):
    pass


_ClusterManager.register("ClusterControl", ClusterControl)


def _ignore_interrupts() -> None:
    # Ctrl-C reaches the whole process group: the cluster must outlive it long enough for the
    # benchmark's own clean-up to stop it, instead of dying under a proxy call mid-way.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@contextmanager
def simulated_cluster(latency: float) -> Iterator[ClusterControl]:
    """A started simulator in a child process; stopped (and the process ended) on exit."""
    # spawn, not fork: the benchmark's process may already run threads (Azurite's log reader,
    # pytest's), and a forked child would inherit their locks mid-use.
    manager = _ClusterManager(ctx=multiprocessing.get_context("spawn"))
    manager.start(initializer=_ignore_interrupts)
    try:
        cluster = manager.ClusterControl(latency)  # type: ignore[attr-defined]
        try:
            yield cluster
        finally:
            cluster.stop()
    finally:
        manager.shutdown()
