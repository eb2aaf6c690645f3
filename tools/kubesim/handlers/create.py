"""CREATE (k8s.io/apiserver/pkg/endpoints/handlers/create.go) with the admission chain before it.

The body is decoded and checked against the URL's namespace; then ``admit`` runs what
kube-apiserver runs before storing: ``generateName``, server metadata, the resource's defaulting
(``admission``), Kueue's suspend on a queued Job, the selector a Job gets, and validation (422).
``dryRun=All`` answers without storing; a name in use is 409 AlreadyExists. What happens once the
object is stored (the Job's scenario notes, the controllers' first look) runs after it, so a
refused create leaves nothing behind. ``KubeSim.put`` seeds through ``admit`` too, keeping the
server fields it was given and skipping validation.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from .. import admission, statuses, validation
from ..apirequest import Request, Response, dry_run, json_response
from ..clock import parse_time
from ..kinds import JOBS, NAMESPACES, PODS, Resource
from ..kubelet import PodPlan
from ..world import JobState
from . import Handler

if TYPE_CHECKING:  # pragma: no cover
    from ..apiserver import Route


class CreateHandler(Handler):
    def create(self, req: Request, route: Route, params: dict[str, str]) -> Response:
        res = self.api.resource(route)
        obj = self.api.object_body(req, res)
        namespace = params.get("namespace", "")
        meta = obj.setdefault("metadata", {})
        if res.namespaced:
            if meta.get("namespace") not in (None, "", namespace):
                raise statuses.bad_request("the namespace of the provided object does not match the namespace "
                                           "sent on the request")
            meta["namespace"] = namespace
        dry = dry_run(req)
        now = self.sim.clock.now()
        manager = (req.header("User-Agent") or "unknown").split("/", 1)[0] or "unknown"
        created, after = self.admit(res, obj, now, manager)
        if dry:
            created["metadata"].pop("resourceVersion", None)
            return json_response(201, created)
        if self.world.store.get(res.plural, namespace, created["metadata"]["name"]) is not None:
            raise statuses.already_exists(res, created["metadata"]["name"])
        self.sim.ensure_namespace(namespace)
        self.world.store.insert(res.plural, created)
        body = self.api.encode(res, created)
        after()
        return json_response(201, body)

    def admit(self, res: Resource, obj: dict, now: float, manager: str, *, seed: bool = False
              ) -> tuple[dict, Callable[[], None]]:
        """Default, mutate and validate a new object; returns it and what to run once it is stored.
        ``seed`` (``KubeSim.put``) keeps server fields the caller set and skips validation."""
        world = self.world
        meta = obj.setdefault("metadata", {})
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = world.generate_name(res.plural, meta.get("namespace", ""), meta["generateName"])
        keep = {k: meta[k] for k in ("uid", "creationTimestamp", "resourceVersion", "managedFields",
                                     "generation", "deletionTimestamp", "deletionGracePeriodSeconds")
                if seed and meta.get(k) is not None}
        admission.server_metadata(obj, world.new_uid(), now, manager)
        meta.update({k: v for k, v in keep.items() if k != "resourceVersion"})
        if seed and "managedFields" not in keep:
            meta.pop("managedFields", None)
        after: Callable[[], None] = lambda: None  # noqa: E731
        if res is JOBS:
            obj, after = self._admit_job(obj, now, seed)
        elif res is PODS:
            obj, after = self._admit_pod(obj, now, seed)
        elif res.plural == "secrets":
            admission.default_secret(obj)
            self._check(res, obj, validation.secret_errors(obj), seed)
        elif res.plural == "events":
            admission.default_event(obj)
            self._check(res, obj, validation.event_errors(obj), seed)
        elif res is NAMESPACES:
            admission.default_namespace(obj)
            self._check(res, obj, validation.namespace_errors(obj), seed)
        return obj, after

    @staticmethod
    def _check(res: Resource, obj: dict, errors: list, seed: bool) -> None:
        if errors and not seed:
            raise statuses.invalid_object(res, obj["metadata"].get("name", ""), errors)

    def _admit_job(self, job: dict, now: float, seed: bool) -> tuple[dict, Callable[[], None]]:
        world, meta = self.world, job["metadata"]
        aliased = admission.default_job(job)
        template_meta = job["spec"]["template"].get("metadata") or {}
        scenario, problem = world.scenarios.choose(meta.get("name", ""), meta.get("annotations"),
                                                   template_meta.get("annotations"))
        held = False
        if not (seed and job.get("status")):
            held = admission.kueue_hold(job, scenario.kueue, self.sim.kueue_manage_all)
        admission.generate_selector(job, aliased)
        meta.setdefault("generation", 1)
        if not seed:
            meta["generation"] = 1
            job["status"] = {}
        else:
            job.setdefault("status", {})
        self._check(JOBS, job, validation.job_errors(job, relaxed_env=self.sim.relaxed_env_names), seed)

        def after() -> None:
            created = world.store.get("jobs", meta["namespace"], meta["name"])
            if created is None:
                return
            start = parse_time(meta.get("creationTimestamp")) or now
            world.jobs[meta["uid"]] = JobState(scenario, start, held=held, problem=problem)
            if problem:
                world.recorder.record(now, created, "Job", "batch/v1", "Warning", "KubesimScenarioInvalid",
                                      problem, "kubesim")
            self.sim.controller.kick(created, now)
        return job, after

    def _admit_pod(self, pod: dict, now: float, seed: bool) -> tuple[dict, Callable[[], None]]:
        world, meta = self.world, pod["metadata"]
        admission.default_pod(pod)
        self._check(PODS, pod, validation.pod_errors(pod, relaxed_env=self.sim.relaxed_env_names), seed)
        if seed:
            pod.setdefault("status", {"phase": "Pending"})
            return pod, lambda: None
        pod["status"] = {"phase": "Pending", "qosClass": admission.qos_class(pod["spec"])}
        scenario, _ = world.scenarios.choose(meta.get("name", ""), meta.get("annotations"), None)

        def after() -> None:
            world.pods[meta["uid"]] = PodPlan(scenario, now)
            created = world.store.get("pods", meta["namespace"], meta["name"])
            if created is not None:
                self.sim.controller.observe_pod(created, now)
        return pod, after
