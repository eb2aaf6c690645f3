"""Diagnose a failing run: capture its evidence (pods, logs, Warning events) and attach it.

Failure evidence must outlive the cluster's cleanup, so a run the sweep records as failing
(Stalled, crash-looping or retrying a failed pod, Failing, Failed, Lost) gets a bounded capture
(``shared.diagnostics``) - only such runs, so healthy sweeps stay O(namespaces). The state is saved
first; the capture follows with its own ETag-guarded save, best effort, so a failing capture never
holds up or loses a transition.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import replace
from datetime import datetime

from shared import diagnostics
from shared.errors import AppError
from shared.runs.errors import StaleRun
from shared.runs.model import Run
from shared.usecases.collaborators import Collaborators
from shared.usecases.recording import SAVE_ATTEMPTS

log = logging.getLogger(__name__)

# Each capture costs up to ~17 Kubernetes reads; a sweep in which more runs turn failing records
# the rest as "not captured" rather than run for minutes.
MAX_DIAGNOSED_PER_SWEEP = 20


class Budget:
    """How many captures one sweep may still make (its per-run writes run on several threads)."""

    def __init__(self, limit: int = MAX_DIAGNOSED_PER_SWEEP):
        self.limit = limit
        self.used = 0
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            if self.used >= self.limit:
                return False
            self.used += 1
            return True


def diagnose(c: Collaborators, run: Run, now: datetime, budget: Budget) -> None:
    """Capture the failing run's evidence and attach it: best effort, after its state is saved."""
    if not budget.take():
        log.warning("run %s: diagnostics not captured, %d runs were diagnosed in this sweep already",
                    run.run_id, budget.limit)
        capture = {**diagnostics.new_capture(run.state, now),
                   "errors": [f"not captured: more than {budget.limit} runs turned failing in one sweep"]}
    else:
        try:
            capture = diagnostics.collect_diagnostics(
                c.kube, run.namespace, run.run_id, state=run.state, now=now,
                secret_names=diagnostics.secret_parameter_names(run))
        except Exception as err:  # a bug here must not cost the sweep its other runs
            log.warning("run %s: collecting diagnostics failed: %s", run.run_id, type(err).__name__)
            capture = {**diagnostics.new_capture(run.state, now),
                       "errors": [f"collecting diagnostics failed: {type(err).__name__}"]}
    _attach(c, run, capture)


def _attach(c: Collaborators, run: Run, capture: dict) -> None:
    for _ in range(SAVE_ATTEMPTS):
        if capture.get("moment") == diagnostics.OUTCOME and run.diagnostics:
            attached = diagnostics.merge(run.diagnostics, capture)
        else:
            attached = capture
        try:
            c.store.save(replace(run, diagnostics=attached))
            return
        except StaleRun:
            fresh = c.store.get_run(run.namespace, run.run_id)
            if fresh is None or not diagnostics.supersedes(capture, fresh.diagnostics):
                return
            run = fresh
        except AppError as err:  # the table refused or is down: the transition is saved already
            log.warning("run %s: diagnostics not saved: %s", run.run_id, err.message)
            return
