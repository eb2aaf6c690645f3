"""Read runs: one by id (in a namespace, or the first allowed namespace that has it), or a page.

``get_fresh_run`` is what the poll route and the run document use: a run that is not finished and
whose stored state is older than ``POLL_READ_THROUGH_SECONDS`` is read through to its Job
(``sweeping.observe_run``: one GET, the sweep's decoder, an ETag-guarded write), so a caller sees a
finished Job within seconds instead of at the next sweep. Polls of one run share one read per
interval in this process: the first does the GET, the others wait for it and take its answer.
"""

from __future__ import annotations

import logging
import threading
import weakref
from datetime import datetime, timedelta

from shared.errors import AppError, NotFound
from shared.kube.errors import KubeError
from shared.runs.model import Run
from shared.usecases.collaborators import Collaborators
from shared.usecases.sweeping import observe_run

log = logging.getLogger(__name__)


def get_run(c: Collaborators, run_id: str, namespace: str | None = None) -> Run:
    for ns in ([namespace] if namespace else c.settings.allowed_namespaces):
        run = c.store.get_run(ns, run_id)
        if run is not None:
            return run
    raise NotFound(f"No run {run_id!r}", field="runId")


def list_runs(c: Collaborators, namespace: str, *, status: str | None = None, external_id: str | None = None,
              page_size: int = 50, continuation: str | None = None) -> tuple[list[Run], str | None]:
    """Runs newest first, filtered, one page; the continuation token for the next page or None."""
    return c.store.list_runs(namespace, status=status, external_id=external_id, page_size=page_size,
                             continuation=continuation)


def get_fresh_run(c: Collaborators, run_id: str, namespace: str | None = None) -> Run:
    """The run, read through to its Job first when it is unfinished and its state is older than
    ``POLL_READ_THROUGH_SECONDS`` (at most one Kubernetes read per run per interval here)."""
    run = get_run(c, run_id, namespace)
    interval = c.settings.poll_read_through_seconds
    if run.terminal or interval <= 0 or not _older_than(run, c, interval):
        return run
    gate = _gates(c).gate(run.namespace, run.run_id)
    with gate.lock:
        if gate.read_at is not None and c.clock() - gate.read_at < timedelta(seconds=interval):
            # Another poll read through moments ago: what it learnt is in the table now.
            return c.store.get_run(run.namespace, run.run_id) or run
        try:
            observed = observe_run(c, run)
        except (AppError, KubeError) as err:  # the cluster or the table is unreachable: the stored state stands
            log.warning("run %s: reading through to its Job failed: %s", run.run_id, type(err).__name__)
            return run
        gate.read_at = c.clock()
        return observed


def _older_than(run: Run, c: Collaborators, interval: float) -> bool:
    stamp = run.updated_at or run.created_at
    return stamp is None or c.clock() - stamp >= timedelta(seconds=interval)


class _Gate:
    __slots__ = ("lock", "read_at")

    def __init__(self):
        self.lock = threading.Lock()
        self.read_at: datetime | None = None  # the app's clock at this process's last read-through


class _Gates:
    """One gate per run (bounded: the least recently made are forgotten first)."""

    LIMIT = 10_000

    def __init__(self):
        self._lock = threading.Lock()
        self._gates: dict[tuple[str, str], _Gate] = {}

    def gate(self, namespace: str, run_id: str) -> _Gate:
        with self._lock:
            gate = self._gates.get((namespace, run_id))
            if gate is None:
                if len(self._gates) >= self.LIMIT:
                    self._gates.pop(next(iter(self._gates)))
                gate = self._gates[(namespace, run_id)] = _Gate()
            return gate


_GATES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_GATES_LOCK = threading.Lock()


def _gates(c: Collaborators) -> _Gates:
    with _GATES_LOCK:
        gates = _GATES.get(c)
        if gates is None:
            gates = _GATES[c] = _Gates()
        return gates
