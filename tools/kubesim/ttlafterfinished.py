"""The TTL-after-finished controller (pkg/controller/ttlafterfinished): finished Jobs expire.

A Job with ``spec.ttlSecondsAfterFinished`` (0 included) is deleted that many seconds after it
finished (the ``lastTransitionTime`` of its ``Complete`` / ``Failed`` condition), with
``Foreground`` propagation as the real controller deletes, so its pods go with it.

In Kubernetes it is a controller of its own that watches finished Jobs; here the job controller
hands each finished Job over at its sync, so the expiry lands in the same ``due`` time that wakes
the Job.
"""

from __future__ import annotations

from . import deleting
from .clock import parse_time
from .jobrules import condition
from .world import JobState, World


class TTLAfterFinishedController:
    def __init__(self, world: World):
        self.w = world

    def sync(self, job: dict, st: JobState, conds: list[dict], now: float) -> None:
        ttl = job["spec"].get("ttlSecondsAfterFinished")
        if ttl is None or job["metadata"].get("deletionTimestamp"):
            return
        if st.finished_at is None:
            done = condition(conds, "Complete") or condition(conds, "Failed") or {}
            st.finished_at = parse_time(done.get("lastTransitionTime")) or now
        expire_at = st.finished_at + float(ttl)
        if now >= expire_at:
            # The TTL-after-finished controller deletes with Foreground propagation.
            deleting.request(self.w, "jobs", job, now, policy="Foreground")
        else:
            st.due = min(st.due, expire_at)
