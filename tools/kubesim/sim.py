"""``KubeSim``: a Kubernetes API server with a job controller, on loopback, for tests and dev.

The one object tests, the benchmark and the dev host hold: it starts and stops the HTTP server,
owns the clock (``now``, ``advance``), seeds and inspects objects behind the API's back
(``put``, ``get``, ``objects``, ``remove``), picks scenarios, injects faults, rotates tokens and
counts requests. Everything it changes happens under one lock, so HTTP threads, the real-time
ticker and the test thread never see half a change.

It is a facade over the parts that do the work: ``backdoor`` (objects behind the API's back),
``kueue`` (admit, preempt), ``disruption`` (evictions), ``access`` (tokens, request counters and
the audit trail) and ``faults``; and the control plane (``controller``) runs up to each new time.

Deliberately not here: what requests mean (``apiserver``), how pods and Jobs move
(``controller``, ``kubelet``), and the wire (``server``). ``put``/``remove`` are not requests:
they are not counted and no fault applies.
"""

from __future__ import annotations

import math
import random
import threading
from datetime import datetime
from typing import Any

from . import server
from .access import RequestAudit, TokenAuthenticator, kubeconfig_for
from .apiserver import ApiServer
from .backdoor import DEFAULT_NAMESPACES, Backdoor
from .clock import Clock, as_datetime
from .controller import Controller
from .disruption import DISRUPTIONS, Disruptions
from .faults import Fault, FaultBook
from .kueue import Kueue
from .scenarios import Scenario, ScenarioBook
from .store import Store
from .world import World

__all__ = ["KubeSim", "DEFAULT_NAMESPACES"]


class KubeSim:
    DISRUPTIONS = DISRUPTIONS

    def __init__(self, token: str = "sim-token", auto_run: bool = False, latency: float = 0.0,  # noqa: S107
                 ssl_context: Any = None, *, host: str = "127.0.0.1", port: int = 0,
                 continue_ttl: float = 300.0, seed: int | None = None, start: datetime | float | None = None,
                 tick: float = 0.5, version: str = "1.31.2", kueue_manage_all: bool = False):
        self.tokens = TokenAuthenticator(token)
        # The cluster's Kubernetes version (``/version``; env names are relaxed from 1.32).
        self.version = version
        # Kueue's ``manageJobsWithoutQueueName``: every new Job is created suspended, label or not.
        self.kueue_manage_all = kueue_manage_all
        self.latency = latency
        self.auto_run = auto_run
        self.ssl_context = ssl_context
        self.host, self.port, self.tick = host, port, tick
        self.url: str | None = None
        self.lock = threading.RLock()
        self.clock = Clock(real_time=auto_run, start=start)
        self.world = World(Store(continue_ttl), ScenarioBook(), random.Random(seed))
        self.controller = Controller(self.world)
        self.apiserver = ApiServer(self)
        self.faults = FaultBook()
        self.audit = RequestAudit()
        # The audit's counters, under the names tests read them by.
        self.requests, self.request_log, self.authorizations = (
            self.audit.requests, self.audit.request_log, self.audit.authorizations)
        self.backdoor, self.kueue, self.disruptions = Backdoor(self), Kueue(self), Disruptions(self)
        self._stopping = threading.Event()
        self._server = None
        self._threads: list[threading.Thread] = []
        self.ensure_namespaces()

    @property
    def token(self) -> str:
        return self.tokens.token

    # --- lifecycle -----------------------------------------------------------------------------
    def start(self) -> str:
        if self._server is not None:
            return self.url or ""
        self._stopping.clear()
        self._server, http_thread = server.serve(self, self.host, self.port, self.ssl_context)
        self._threads = [http_thread]
        host, port = self._server.server_address[:2]
        scheme = "https" if self.ssl_context is not None else "http"
        self.port = port
        self.url = f"{scheme}://{host}:{port}"
        if self.auto_run:
            ticker = threading.Thread(target=self._tick_forever, name=f"kubesim-tick-{port}", daemon=True)
            ticker.start()
            self._threads.append(ticker)
        return self.url

    def stop(self) -> None:
        self._stopping.set()  # also wakes requests that sleep in latency or hang faults
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        for thread in self._threads:
            thread.join(timeout=5)
        self._threads = []

    def __enter__(self) -> KubeSim:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def _tick_forever(self) -> None:
        while not self._stopping.wait(self.tick):
            with self.lock:
                self.controller.run_until(self.clock, self.clock.now())

    def _sleep(self, seconds: float) -> None:
        self._stopping.wait(seconds)

    # --- clock ---------------------------------------------------------------------------------
    def now(self) -> datetime:
        return as_datetime(self.clock.now())

    def advance(self, seconds: float) -> None:
        """Move the simulated clock forward and run every controller up to the new time."""
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        with self.lock:
            if self.clock.real_time:
                self.clock.shift(seconds)
                self.controller.run_until(self.clock, self.clock.now())
            else:
                self.controller.run_until(self.clock, self.clock.now() + seconds)

    def step(self) -> None:
        """One controller pass at the current time (what ``advance(0)`` does)."""
        self.advance(0)

    # --- objects behind the API's back (``backdoor``) --------------------------------------------
    def put(self, kind: str, namespace: str, obj: dict) -> dict:
        """Seed an object directly (not a request); see ``Backdoor.put``."""
        return self.backdoor.put(kind, namespace, obj)

    def get(self, kind: str, namespace: str, name: str) -> dict | None:
        return self.backdoor.get(kind, namespace, name)

    def objects(self, kind: str, namespace: str | None = None) -> list[dict]:
        return self.backdoor.objects(kind, namespace)

    def remove(self, kind: str, namespace: str, name: str) -> bool:
        """Delete behind the app's back: gone at once; see ``Backdoor.remove``."""
        return self.backdoor.remove(kind, namespace, name)

    def ensure_namespace(self, namespace: str) -> None:
        self.backdoor.ensure_namespace(namespace)

    def ensure_namespaces(self) -> None:
        self.backdoor.ensure_namespaces()

    @property
    def relaxed_env_names(self) -> bool:
        """RelaxedEnvironmentVariableValidation: beta and on by default from 1.32, GA in 1.34."""
        major, minor = (int(p) for p in self.version.split(".")[:2])
        return (major, minor) >= (1, 32)

    # --- scenarios and Kueue -------------------------------------------------------------------
    def set_scenario(self, match: str, scenario: Scenario | str) -> Scenario:
        """Jobs created from now on whose name starts with ``match`` follow ``scenario``
        (the first matching rule wins; rules beat annotations)."""
        with self.lock:
            return self.world.scenarios.add(match, scenario)

    def clear_scenarios(self) -> None:
        with self.lock:
            self.world.scenarios.clear()

    def scenario_of(self, namespace: str, job_name: str) -> Scenario | None:
        with self.lock:
            job = self.world.store.get("jobs", namespace, job_name)
            st = self.world.jobs.get(job["metadata"].get("uid", "")) if job else None
            return st.scenario if st else None

    def admit(self, namespace: str, job_name: str) -> dict:
        """Kueue admits a held Job: ``suspend`` goes false and its pods start."""
        return self.kueue.admit(namespace, job_name)

    def preempt(self, namespace: str, job_name: str) -> dict:
        """Kueue preempts a Job: suspended again (pods deleted) until ``admit``."""
        return self.kueue.preempt(namespace, job_name)

    def evict(self, namespace: str, pod_name: str, by: str = "api") -> dict:
        """Disrupt a pod (``api``, ``preemption`` or ``kubelet``); see ``disruption``."""
        return self.disruptions.evict(namespace, pod_name, by)

    # --- faults, auth, counters ----------------------------------------------------------------
    def inject(self, method: str, path_regex: str, fault: str, times: int | None = 1, **opts) -> Fault:
        return self.faults.add(method, path_regex, fault, times, **opts)

    def clear_faults(self) -> None:
        self.faults.clear()

    def rotate_token(self) -> str:
        """Issue a new token; the previous one is refused (401) from now on."""
        return self.tokens.rotate()

    def accept_token(self, token: str) -> None:
        self.tokens.accept(token)

    def revoke_token(self, token: str) -> None:
        self.tokens.revoke(token)

    def reset_counters(self) -> None:
        self.audit.reset()

    def expire_continue_tokens(self) -> None:
        with self.lock:
            self.world.store.expire_tokens()

    # --- conveniences --------------------------------------------------------------------------
    def pods_of(self, namespace: str, job_name: str) -> list[dict]:
        """The pods the Job controller made for ``job_name`` (by the ``job-name`` label)."""
        return [p for p in self.objects("pods", namespace)
                if (p["metadata"].get("labels") or {}).get("batch.kubernetes.io/job-name") == job_name]

    def kubeconfig(self, namespace: str = "default", *, ca_file: str | None = None) -> dict:
        """A kubeconfig (as a dict; write it as YAML or JSON) that points a client at this simulator."""
        if self.url is None:
            raise RuntimeError("start() the simulator first")
        return kubeconfig_for(self.url, self.token, namespace, ca_file)

    @property
    def idle(self) -> bool:
        """True when nothing is scheduled to change any more (every Job and pod at rest)."""
        with self.lock:
            return self.controller.next_due(self.clock.now()) == math.inf
