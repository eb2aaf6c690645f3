"""Kueue as the simulator plays it: Jobs held suspended until admitted, and preempted again.

A Job Kueue manages (a ``kueue.x-k8s.io/queue-name`` label, every Job with
``kueue_manage_all``, or a scenario's ``kueue``) is created with ``spec.suspend=true``
(``admission.kueue_hold``). Kueue admits it by setting ``suspend`` to false, and preempts an
admitted one by setting it back, which makes the job controller delete its pods; a scenario's
``admit_after`` admits on its own, and a preempted Job then waits for an explicit ``admit``.

Deliberately not here: queues, quotas and workloads; the job controller's side of suspend
(``jobcontroller``).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from .sim import KubeSim


class Kueue:
    def __init__(self, sim: KubeSim):
        self.sim = sim

    def admit(self, namespace: str, job_name: str) -> dict:
        """Kueue admits a held Job: ``suspend`` goes false and its pods start."""
        return self._set_suspend(namespace, job_name, False, held=False)

    def preempt(self, namespace: str, job_name: str) -> dict:
        """Kueue preempts a Job: suspended again (pods deleted) until ``admit``."""
        return self._set_suspend(namespace, job_name, True, held=True)

    def _set_suspend(self, namespace: str, job_name: str, suspend: bool, held: bool) -> dict:
        with self.sim.lock:
            store = self.sim.world.store
            job = store.get("jobs", namespace, job_name)
            if job is None:
                raise KeyError(f"no Job {namespace}/{job_name}")
            st = self.sim.controller.state_for(job, self.sim.clock.now())
            st.held = held
            if held and st.scenario.admit_after is not None:
                # A preempted Job waits for an explicit admit(), not the original timer.
                st.scenario = dataclasses.replace(st.scenario, admit_after=None)
            if bool(job["spec"].get("suspend")) != suspend:
                job["spec"]["suspend"] = suspend
                job["metadata"]["generation"] = int(job["metadata"].get("generation") or 1) + 1
                store.write("jobs", job)
            self.sim.controller.touch(job)
            self.sim.controller.kick(job, self.sim.clock.now())
            return store.copy("jobs", job)
