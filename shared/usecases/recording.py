"""Record a run's new state: ETag-guarded, re-read and re-decided when another writer got there
first, the transition's event written in the same batch."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from shared import telemetry
from shared.runs.errors import StaleRun
from shared.runs.model import Phase, Run, RunState, Status, apply_state
from shared.usecases.collaborators import Collaborators
from shared.usecases.publishing import outbox_rows

log = logging.getLogger(__name__)

SAVE_ATTEMPTS = 5  # conflicting writes to one run before a use case gives up on it


def transition(c: Collaborators, run: Run, state: RunState) -> Run:
    """``run`` moved to ``state`` and saved; the stored run unchanged when the move changes nothing.

    When every attempt loses its race, the run is returned as last read and the unrecorded state
    is logged with its reason and message - as an error for a failure, which must never go
    unrecorded silently.
    """
    return record(c, run, lambda _: state, c.clock())[0]


def record(c: Collaborators, run: Run, decide: Callable[[Run], RunState], now: datetime) -> tuple[Run, bool]:
    """(the run as stored, whether this call wrote it): ``decide(run)`` applied and saved with the
    run's ETag; on a lost race the run is read again and decided again (a cancel recorded meanwhile
    changes the answer). After ``SAVE_ATTEMPTS`` lost races the unrecorded state is logged - as an
    error for a failure - and the run is returned as last read."""
    state = None
    for _ in range(SAVE_ATTEMPTS):
        state = decide(run)
        updated = apply_state(run, state, now)
        if updated is None:
            return run, False
        try:
            saved = c.store.save(updated, outbox=outbox_rows(c, run, updated))
        except StaleRun:
            fresh = c.store.get_run(run.namespace, run.run_id)
            if fresh is None:
                return run, False
            run = fresh
            continue
        count_if_finished(run, saved)
        return saved, True
    level = logging.ERROR if state.status == Status.FAILED else logging.WARNING
    log.log(level, "run %s: %s/%s (%s: %s) not recorded, %d writes in a row lost their race", run.run_id,
            state.status, state.phase, state.reason, state.message, SAVE_ATTEMPTS)
    return run, False


def count_if_finished(before: Run, after: Run) -> None:
    """Telemetry: a run that this write made terminal (every writer of a transition calls this)."""
    if after.terminal and not before.terminal:
        telemetry.run_finished(after.namespace, str(after.status))


def fail(c: Collaborators, run: Run, reason: str, message: str) -> Run:
    return transition(c, run, RunState(Status.FAILED, Phase.FAILED, reason, message))
