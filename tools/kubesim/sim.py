"""``KubeSim``: a Kubernetes API server with a job controller, on loopback, for tests and dev.

The one object tests, the benchmark and the dev host hold: it starts and stops the HTTP server,
owns the clock (``now``, ``advance``), seeds and inspects objects behind the API's back
(``put``, ``get``, ``objects``, ``remove``), picks scenarios, injects faults, rotates tokens and
counts requests. Everything it changes happens under one lock, so HTTP threads, the real-time
ticker and the test thread never see half a change.

Deliberately not here: what requests mean (``apiserver``), how pods and Jobs move
(``controller``, ``kubelet``), and the wire (``server``). ``put``/``remove`` are not requests:
they are not counted and no fault applies.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import random
import secrets
import threading
from collections import Counter
from datetime import datetime
from typing import Any

from . import apiserver, deleting, kinds, server
from .apiserver import ApiServer
from .clock import Clock, as_datetime, rfc3339
from .controller import Controller
from .faults import Fault, FaultBook
from .scenarios import Scenario, ScenarioBook
from .store import Store
from .world import World

DEFAULT_NAMESPACES = ("default", "kube-system")


class KubeSim:
    def __init__(self, token: str = "sim-token", auto_run: bool = False, latency: float = 0.0,  # noqa: S107
                 ssl_context: Any = None, *, host: str = "127.0.0.1", port: int = 0,
                 continue_ttl: float = 300.0, seed: int | None = None, start: datetime | float | None = None,
                 tick: float = 0.5, version: str = "1.31.2", kueue_manage_all: bool = False):
        self.token = token
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
        self.requests: Counter = Counter()
        self.request_log: list[dict] = []
        # What RBAC would be asked for each request: (apiGroup, resource, verb) -> count.
        self.authorizations: Counter = Counter()
        self._extra_tokens: set[str] = set()
        self._counter_lock = threading.Lock()
        self._stopping = threading.Event()
        self._server = None
        self._threads: list[threading.Thread] = []
        self.ensure_namespaces()

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
                self._run_until(self.clock.now())

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
                self._run_until(self.clock.now())
            else:
                self._run_until(self.clock.now() + seconds)

    def step(self) -> None:
        """One controller pass at the current time (what ``advance(0)`` does)."""
        self.advance(0)

    def _run_until(self, target: float) -> None:
        # Step from one change to the next so every transition happens at its own instant,
        # however far the clock jumps.
        now = self.clock.now()
        if not self.clock.real_time:
            now = min(now, target)
        self.controller.step(now)
        for _ in range(1_000_000):
            due = self.controller.next_due(now)
            if due > target:
                break
            now = max(due, now) if due > now else now + 1e-3
            if now > target:
                break
            self.clock.set(now)
            self.controller.step(now)
        self.clock.set(target)
        if now < target:
            self.controller.step(target)

    # --- objects behind the API's back ---------------------------------------------------------
    def put(self, kind: str, namespace: str, obj: dict) -> dict:
        """Seed an object directly (not a request). Server fields it lacks are filled in and Jobs
        get the controller's treatment like created ones; no validation, so odd states can be
        seeded on purpose. An object with the same name is replaced."""
        res = self._seedable(kind)
        obj = copy.deepcopy(obj)
        meta = obj.setdefault("metadata", {})
        if not (meta.get("name") or meta.get("generateName")):
            raise ValueError("a seeded object needs metadata.name (or generateName)")
        meta["namespace"] = namespace
        with self.lock:
            now = self.clock.now()
            created, after = self.apiserver.admit(res, obj, now, "kubesim", seed=True)
            self.ensure_namespace(namespace)
            old = self.world.store.get(kind, namespace, created["metadata"]["name"])
            if old is not None:
                self.world.forget(old)
            self.world.store.insert(kind, created)
            after()
            return self.world.store.copy(kind, created)

    def get(self, kind: str, namespace: str, name: str) -> dict | None:
        res = kinds.resource(kind)
        with self.lock:
            obj = self.world.store.get(res.plural, namespace if res.namespaced else "", name)
            return None if obj is None else self.world.store.copy(res.plural, obj)

    def objects(self, kind: str, namespace: str | None = None) -> list[dict]:
        res = kinds.resource(kind)
        with self.lock:
            store = self.world.store
            return [store.copy(res.plural, o) for o in store.all(res.plural, namespace)]

    def remove(self, kind: str, namespace: str, name: str) -> bool:
        """Delete behind the app's back: gone at once, no finalizers, no propagation. (Dependents
        that point at it are then orphans, and the garbage collector treats them as on a real
        cluster: it deletes them at its next pass.)"""
        res = self._seedable(kind)
        with self.lock:
            obj = self.world.store.get(res.plural, namespace, name)
            if obj is None:
                return False
            deleting.remove(self.world, res.plural, obj)
            return True

    @staticmethod
    def _seedable(kind: str):
        if kind not in kinds.SEEDABLE:
            raise ValueError(f"kind must be one of {kinds.SEEDABLE}, not {kind!r}")
        return kinds.resource(kind)

    def ensure_namespace(self, namespace: str) -> None:
        if namespace and self.world.store.get("namespaces", "", namespace) is None:
            ns = {"metadata": {"name": namespace}}
            created, _ = self.apiserver.admit(kinds.NAMESPACES, ns, self.clock.now(), "kubesim", seed=True)
            self.world.store.insert("namespaces", created)

    def ensure_namespaces(self) -> None:
        with self.lock:
            for ns in DEFAULT_NAMESPACES:
                self.ensure_namespace(ns)

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
        return self._set_suspend(namespace, job_name, False, held=False)

    def preempt(self, namespace: str, job_name: str) -> dict:
        """Kueue preempts a Job: suspended again (pods deleted) until ``admit``."""
        return self._set_suspend(namespace, job_name, True, held=True)

    def _set_suspend(self, namespace: str, job_name: str, suspend: bool, held: bool) -> dict:
        with self.lock:
            store = self.world.store
            job = store.get("jobs", namespace, job_name)
            if job is None:
                raise KeyError(f"no Job {namespace}/{job_name}")
            st = self.controller.state_for(job, self.clock.now())
            st.held = held
            if held and st.scenario.admit_after is not None:
                # A preempted Job waits for an explicit admit(), not the original timer.
                st.scenario = dataclasses.replace(st.scenario, admit_after=None)
            if bool(job["spec"].get("suspend")) != suspend:
                job["spec"]["suspend"] = suspend
                job["metadata"]["generation"] = int(job["metadata"].get("generation") or 1) + 1
                store.write("jobs", job)
            self.controller.touch(job)
            self.controller.kick(job, self.clock.now())
            return store.copy("jobs", job)

    DISRUPTIONS = {
        "api": ("EvictionByEvictionAPI", "Eviction API: evicting"),
        "preemption": ("PreemptionByScheduler",
                       "default-scheduler: preempting to accommodate a higher priority pod"),
        "kubelet": ("TerminationByKubelet", "The node was low on resource: memory. Threshold quantity: 100Mi, "
                                            "available: 88944Ki. "),
    }

    def evict(self, namespace: str, pod_name: str, by: str = "api") -> dict:
        """Disrupt a pod: ``api`` (the Eviction API, as a node drain or autoscaler scale-down uses)
        and ``preemption`` (the scheduler) add ``DisruptionTarget`` and delete the pod gracefully;
        ``kubelet`` (node-pressure eviction) kills its containers at once and leaves it ``Failed``
        with reason ``Evicted`` and the same condition (reason ``TerminationByKubelet``)."""
        if by not in self.DISRUPTIONS:
            raise ValueError(f"by must be one of {sorted(self.DISRUPTIONS)}")
        reason, message = self.DISRUPTIONS[by]
        with self.lock:
            now = self.clock.now()
            pod = self.world.store.get("pods", namespace, pod_name)
            if pod is None:
                raise KeyError(f"no pod {namespace}/{pod_name}")
            plan = self.world.pods.get(pod["metadata"].get("uid", ""))
            stamp = rfc3339(now)
            cond = {"type": "DisruptionTarget", "status": "True", "lastProbeTime": None,
                    "lastTransitionTime": stamp, "reason": reason, "message": message}
            if plan is not None:
                plan.disruption = cond
                plan.due = now
            if by == "kubelet":
                if plan is not None:
                    plan.evicted = message
                    plan.kill_at, plan.kill_code = now, 137
                self.world.recorder.record(now, pod, "Pod", "v1", "Warning", "Evicted", message, "kubelet",
                                           host=(pod.get("spec") or {}).get("nodeName"))
                self.controller.observe_pod(pod, now)
            else:
                self.controller.observe_pod(pod, now)
                deleting.request(self.world, "pods", pod, now)
            self._run_until(now)
            return self.world.store.copy("pods", pod)

    # --- faults, auth, counters ----------------------------------------------------------------
    def inject(self, method: str, path_regex: str, fault: str, times: int | None = 1, **opts) -> Fault:
        return self.faults.add(method, path_regex, fault, times, **opts)

    def clear_faults(self) -> None:
        self.faults.clear()

    def rotate_token(self) -> str:
        """Issue a new token; the previous one is refused (401) from now on."""
        self.token = secrets.token_urlsafe(24)
        return self.token

    def accept_token(self, token: str) -> None:
        self._extra_tokens.add(token)

    def revoke_token(self, token: str) -> None:
        self._extra_tokens.discard(token)

    def _authorized(self, header: str | None) -> bool:
        if not header:
            return False
        scheme, _, token = header.strip().partition(" ")
        token = token.strip()
        return scheme.lower() == "bearer" and bool(token) and (
            secrets.compare_digest(token, self.token) or token in self._extra_tokens)

    def _record_request(self, method: str, template: str, path: str, query: dict) -> dict:
        entry = {"method": method, "path": path, "query": dict(query), "status": None}
        with self._counter_lock:
            self.requests[(method, template)] += 1
            self.request_log.append(entry)
            attributes = apiserver.authorization_attributes(method, path, query)
            if attributes is not None:
                self.authorizations[attributes] += 1
        return entry

    def reset_counters(self) -> None:
        with self._counter_lock:
            self.requests.clear()
            self.request_log.clear()
            self.authorizations.clear()

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
        cluster: dict[str, Any] = {"server": self.url}
        if ca_file:
            cluster["certificate-authority"] = ca_file
        elif self.url.startswith("https"):
            cluster["insecure-skip-tls-verify"] = True
        return {
            "apiVersion": "v1", "kind": "Config", "current-context": "kubesim",
            "clusters": [{"name": "kubesim", "cluster": cluster}],
            "users": [{"name": "kubesim", "user": {"token": self.token}}],
            "contexts": [{"name": "kubesim", "context": {"cluster": "kubesim", "user": "kubesim",
                                                         "namespace": namespace}}],
        }

    @property
    def idle(self) -> bool:
        """True when nothing is scheduled to change any more (every Job and pod at rest)."""
        with self.lock:
            return self.controller.next_due(self.clock.now()) == math.inf
