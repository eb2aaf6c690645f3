"""The API server's verbs on Jobs, Pods, Events, Secrets (and Namespaces), away from HTTP.

Routes are the real paths (``/apis/batch/v1/namespaces/{namespace}/jobs/{name}``, ...); each
request is answered as kube-apiserver answers it: get, list (selectors, ``limit``/``continue``),
create (201; defaulting, ``generateName``, validation, 409 AlreadyExists), update (PUT, with
``resourceVersion`` preconditions), patch (merge / strategic merge / JSON patch, on the object or
its ``/status``), delete (grace periods, ``propagationPolicy`` from the query or the
``DeleteOptions`` body, preconditions; the deleted object or a ``Status`` with details, as each
resource does), deletecollection and pod logs (``text/plain``, ``tailLines``, ``container``,
``previous``, ``timestamps``).

Two resource-specific behaviours matter to the app and are exact: a Job deleted without a
propagation policy orphans its pods (batch/v1's default) and the answer carries the API server's
``Warning`` header; and the main endpoint of a Job or Pod ignores ``status`` while ``/status``
ignores everything else.

Deliberately not here: HTTP, authentication, faults and counters (``server``), and anything
that happens after the request (``controller``). Namespaces spring into existence when first
used: the simulator does not answer 404 for a missing namespace.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import admission, deleting, kubelet, patching, statuses, validation
from .clock import parse_time
from .kinds import JOBS, NAMESPACES, PODS, RESOURCES, Resource
from .kubelet import PodPlan
from .statuses import ApiError
from .world import JobState

if TYPE_CHECKING:  # pragma: no cover
    from .sim import KubeSim

JOB_DELETE_WARNING = ('299 - "child pods are preserved by default when jobs are deleted; set '
                      'propagationPolicy=Background to remove them or set propagationPolicy=Orphan to suppress '
                      'this warning"')
VERSION = {
    "major": "1", "minor": "31", "gitVersion": "v1.31.2", "gitCommit": "5864a4677267e6adeae276ad85882a8714d69d9d",
    "gitTreeState": "clean", "buildDate": "2024-10-22T20:28:14Z", "goVersion": "go1.22.8", "compiler": "gc",
    "platform": "linux/amd64",
}
_SEP = (",", ":")


def version_info(version: str) -> dict:
    """``/version`` for a cluster of ``version`` ("1.32" or "1.32.4")."""
    parts = (version.split(".") + ["0", "0"])[:3]
    info = dict(VERSION)
    info.update(major=parts[0], minor=parts[1], gitVersion="v" + ".".join(parts))
    return info


@dataclass
class Request:
    method: str
    path: str
    query: Mapping[str, str] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""

    def header(self, name: str) -> str:
        for key, value in self.headers.items():
            if key.lower() == name.lower():
                return value
        return ""


@dataclass
class Response:
    code: int
    body: bytes
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Route:
    template: str
    endpoint: str  # collection | item | status | log | cluster | version | health | ssar
    plural: str | None
    pattern: re.Pattern


def _route(template: str, endpoint: str, plural: str | None) -> Route:
    regex = re.escape(template).replace(r"\{namespace\}", r"(?P<namespace>[^/]+)").replace(
        r"\{name\}", r"(?P<name>[^/]+)")
    return Route(template, endpoint, plural, re.compile(f"^{regex}/?$"))


def _routes() -> list[Route]:
    out = []
    for res in RESOURCES.values():
        if not res.namespaced:
            continue
        base = f"{res.prefix}/namespaces/{{namespace}}/{res.plural}"
        out.append(_route(base, "collection", res.plural))
        out.append(_route(f"{base}/{{name}}", "item", res.plural))
        if res.plural in ("jobs", "pods"):
            out.append(_route(f"{base}/{{name}}/status", "status", res.plural))
        if res.plural == "pods":
            out.append(_route(f"{base}/{{name}}/log", "log", res.plural))
        out.append(_route(f"{res.prefix}/{res.plural}", "cluster", res.plural))
    out.append(_route("/api/v1/namespaces", "cluster", "namespaces"))
    out.append(_route("/api/v1/namespaces/{name}", "item", "namespaces"))
    out.append(_route("/version", "version", None))
    for probe in ("/healthz", "/livez", "/readyz"):
        out.append(_route(probe, "health", None))
    out.append(_route("/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", "ssar", None))
    return out


ROUTES = _routes()
ANONYMOUS = ("version", "health")

_VERBS: dict[str, dict[str, str]] = {
    "collection": {"GET": "list", "POST": "create", "DELETE": "deletecollection"},
    "item": {"GET": "get", "PUT": "update", "PATCH": "patch", "DELETE": "delete"},
    "status": {"GET": "get", "PUT": "update_status", "PATCH": "patch_status"},
    "log": {"GET": "log"},
    "cluster": {"GET": "list", "POST": "create"},
    "version": {"GET": "version"},
    "health": {"GET": "health"},
    "ssar": {"POST": "ssar"},
}


_WRITE_VERBS = {"POST": "create", "PUT": "update", "PATCH": "patch"}


def authorization_attributes(method: str, path: str, query: Mapping[str, str]) -> tuple[str, str, str] | None:
    """What kube-apiserver asks its RBAC authorizer for one request: ``(apiGroup, resource, verb)``,
    with a subresource as ``resource/subresource`` (``pods/log``); None for a non-resource URL
    (``/version``, ``/healthz``). Follows ``RequestInfoFactory.NewRequestInfo``
    (k8s.io/apiserver/pkg/endpoints/request/requestinfo.go): GET of a collection is ``list`` (or
    ``watch`` with ``watch=true``), GET of one object ``get``, DELETE of a collection
    ``deletecollection``; ``namespaces/{ns}/`` only scopes the resource that follows it."""
    parts = [p for p in path.split("/") if p]
    if len(parts) >= 3 and parts[0] == "api":
        group, rest = "", parts[2:]
    elif len(parts) >= 4 and parts[0] == "apis":
        group, rest = parts[1], parts[3:]
    else:
        return None
    if len(rest) >= 3 and rest[0] == "namespaces":
        rest = rest[2:]  # /namespaces/{ns}/{resource}/...: the namespace is a scope, not the resource
    resource = "/".join(rest[0:1] + rest[2:3])
    named = len(rest) >= 2
    if method in ("GET", "HEAD"):
        verb = "get" if named else ("watch" if query.get("watch") in ("1", "true", "True") else "list")
    elif method == "DELETE":
        verb = "delete" if named else "deletecollection"
    else:
        verb = _WRITE_VERBS.get(method, method.lower())
    return group, resource, verb


def match(path: str) -> tuple[Route | None, dict[str, str]]:
    for route in ROUTES:
        m = route.pattern.match(path)
        if m:
            return route, m.groupdict()
    return None, {}


def json_response(code: int, doc: Any, headers: dict[str, str] | None = None) -> Response:
    """A JSON answer; ``doc`` may already be encoded bytes (cached object JSON)."""
    body = doc if isinstance(doc, bytes) else json.dumps(doc, separators=_SEP).encode()
    return Response(code, body, "application/json", headers or {})


def _int(query: Mapping[str, str], name: str) -> int | None:
    raw = query.get(name)
    if raw in (None, ""):
        return None
    try:
        return int(raw)
    except ValueError:
        raise statuses.bad_request(f"invalid value for {name}: {raw!r}") from None


def _dry_run(req: Request, options: dict | None = None) -> bool:
    values = [req.query.get("dryRun", "")] + list((options or {}).get("dryRun") or [])
    if any(v and v != "All" for v in values):
        raise statuses.bad_request(f"Invalid dry run value: {values}")
    return "All" in values


class ApiServer:
    def __init__(self, sim: KubeSim):
        self.sim = sim

    @property
    def world(self):
        return self.sim.world

    # --- dispatch ------------------------------------------------------------------------------
    def handle(self, req: Request, route: Route | None = None, params: dict[str, str] | None = None) -> Response:
        if route is None:
            route, params = match(req.path)
        if route is None:
            return self._error(statuses.route_not_found())
        verb = _VERBS[route.endpoint].get(req.method)
        if verb == "create" and route.endpoint == "cluster" and route.plural != "namespaces":
            verb = None  # namespaced objects are created under /namespaces/{namespace}/...
        if verb is None:
            return self._error(statuses.method_not_allowed())
        try:
            with self.sim.lock:
                handler: Callable[..., Response] = getattr(self, "_" + verb)
                return handler(req, route, params or {})
        except ApiError as err:
            return self._error(err)

    @staticmethod
    def _error(err: ApiError) -> Response:
        return json_response(err.code, err.body, err.headers)

    def _resource(self, route: Route) -> Resource:
        return RESOURCES[route.plural or ""]

    def _body(self, req: Request, res: Resource) -> Any:
        try:
            return json.loads(req.body or b"null")
        except ValueError as exc:
            raise statuses.bad_request(
                f"the object provided is unrecognized (must be of type {res.kind}): couldn't get version/kind; "
                f"json parse error: {exc.msg}") from None

    def _object_body(self, req: Request, res: Resource) -> dict:
        obj = self._body(req, res)
        if not isinstance(obj, dict):
            raise statuses.bad_request(f"the object provided is unrecognized (must be of type {res.kind})")
        kind = obj.get("kind")
        if kind not in (None, "", res.kind):
            raise statuses.bad_request(f"the object provided is unrecognized (must be of type {res.kind}): "
                                       f"got {kind}")
        if not isinstance(obj.get("metadata", {}), dict):
            raise statuses.bad_request("metadata must be an object")
        return obj

    def _live(self, res: Resource, namespace: str, name: str) -> dict:
        obj = self.world.store.get(res.plural, namespace, name)
        if obj is None:
            raise statuses.not_found(res, name)
        return obj

    def _encode(self, res: Resource, obj: dict) -> bytes:
        return self.world.store.encode(res.plural, obj)

    # --- reads ---------------------------------------------------------------------------------
    def _get(self, req: Request, route: Route, params: dict[str, str]) -> Response:
        res = self._resource(route)
        return json_response(200, self._encode(res, self._live(res, params.get("namespace", ""), params["name"])))

    def _list(self, req: Request, route: Route, params: dict[str, str]) -> Response:
        res = self._resource(route)
        if req.query.get("watch") in ("1", "true", "True"):
            raise statuses.bad_request("watch is not supported by kubesim; poll with list instead")
        if res.plural == "namespaces":
            self.sim.ensure_namespaces()
        namespace = params.get("namespace") if route.endpoint == "collection" else None
        store = self.world.store
        items, meta = store.list(res.plural, namespace, req.query.get("labelSelector"),
                                 req.query.get("fieldSelector"), _int(req.query, "limit"),
                                 req.query.get("continue") or None, self.sim.clock.now())
        head = json.dumps({"kind": res.list_kind, "apiVersion": res.api_version, "metadata": meta},
                          separators=_SEP).encode()
        body = head[:-1] + b',"items":[' + b",".join(store.encode(res.plural, o) for o in items) + b"]}"
        return json_response(200, body)

    def _log(self, req: Request, route: Route, params: dict[str, str]) -> Response:
        pod = self._live(PODS, params["namespace"], params["name"])
        name = pod["metadata"]["name"]
        containers = [c.get("name") for c in pod.get("spec", {}).get("containers") or []]
        container = req.query.get("container")
        if not container:
            if len(containers) != 1:
                raise statuses.bad_request(f"a container name must be specified for pod {name}, choose one of: "
                                           f"[{' '.join(containers)}]")
            container = containers[0]
        elif container not in containers:
            raise statuses.bad_request(f"container {container} is not valid for pod {name}")
        plan = self.world.pods.get(pod["metadata"].get("uid", ""))
        if plan is None:
            return Response(200, b"", "text/plain")
        timeline = kubelet.Timeline(plan, pod)
        now = self.sim.clock.now()
        text = kubelet.render_logs(timeline, container, now, previous=req.query.get("previous") == "true",
                                   tail=_int(req.query, "tailLines"),
                                   timestamps=req.query.get("timestamps") == "true")
        if text is None:
            waiting = next((cs.get("state", {}).get("waiting", {}) for cs in
                            (pod.get("status") or {}).get("containerStatuses") or []
                            if cs.get("name") == container), {})
            if req.query.get("previous") == "true":
                raise statuses.bad_request(f'previous terminated container "{container}" in pod "{name}" not found')
            why = waiting.get("reason") or "ContainerCreating"
            if why in ("ErrImagePull", "ImagePullBackOff"):
                why = "trying and failing to pull image"
            raise statuses.bad_request(f'container "{container}" in pod "{name}" is waiting to start: {why}')
        limit = _int(req.query, "limitBytes")
        data = text.encode()
        if limit is not None and limit >= 0:
            data = data[:limit]
        return Response(200, data, "text/plain")

    def _version(self, req: Request, route: Route, params: dict[str, str]) -> Response:
        return json_response(200, version_info(self.sim.version))

    def _health(self, req: Request, route: Route, params: dict[str, str]) -> Response:
        return Response(200, b"ok", "text/plain")

    def _ssar(self, req: Request, route: Route, params: dict[str, str]) -> Response:
        review = self._body(req, RESOURCES["namespaces"])
        if not isinstance(review, dict) or not isinstance(review.get("spec"), dict):
            raise statuses.bad_request("SelfSubjectAccessReview needs a spec")
        out = {"kind": "SelfSubjectAccessReview", "apiVersion": "authorization.k8s.io/v1",
               "metadata": {"creationTimestamp": None}, "spec": review["spec"],
               "status": {"allowed": True, "reason": "kubesim allows every request with a valid token"}}
        return json_response(201, out)

    # --- create --------------------------------------------------------------------------------
    def _create(self, req: Request, route: Route, params: dict[str, str]) -> Response:
        res = self._resource(route)
        obj = self._object_body(req, res)
        namespace = params.get("namespace", "")
        meta = obj.setdefault("metadata", {})
        if res.namespaced:
            if meta.get("namespace") not in (None, "", namespace):
                raise statuses.bad_request("the namespace of the provided object does not match the namespace "
                                           "sent on the request")
            meta["namespace"] = namespace
        dry = _dry_run(req)
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
        body = self._encode(res, created)
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

    # --- update / patch ------------------------------------------------------------------------
    def _update(self, req: Request, route: Route, params: dict[str, str]) -> Response:
        res = self._resource(route)
        current = self._live(res, params.get("namespace", ""), params["name"])
        return self._replace(req, res, current, self._object_body(req, res), status_only=False)

    def _update_status(self, req: Request, route: Route, params: dict[str, str]) -> Response:
        res = self._resource(route)
        current = self._live(res, params.get("namespace", ""), params["name"])
        return self._replace(req, res, current, self._object_body(req, res), status_only=True)

    def _patch(self, req: Request, route: Route, params: dict[str, str], status_only: bool = False) -> Response:
        res = self._resource(route)
        current = self._live(res, params.get("namespace", ""), params["name"])
        patch = self._body(req, res)
        patched = patching.apply(req.header("Content-Type"), current, patch)
        if not isinstance(patched, dict):
            raise statuses.bad_request("the patch did not produce an object")
        # A patch names the object by URL; a resourceVersion it carries is a precondition.
        rv = (patch.get("metadata") or {}).get("resourceVersion") if isinstance(patch, dict) else None
        patched.setdefault("metadata", {})["resourceVersion"] = rv or current["metadata"].get("resourceVersion")
        return self._replace(req, res, current, patched, status_only=status_only)

    def _patch_status(self, req: Request, route: Route, params: dict[str, str]) -> Response:
        return self._patch(req, route, params, status_only=True)

    def _replace(self, req: Request, res: Resource, current: dict, new: dict, *, status_only: bool) -> Response:
        meta, new_meta = current["metadata"], new.setdefault("metadata", {})
        name = meta["name"]
        if new_meta.get("name") not in (None, name):
            raise statuses.bad_request(f"the name of the object ({new_meta.get('name')}) does not match the name "
                                       f"on the URL ({name})")
        if new_meta.get("resourceVersion") not in (None, "", meta.get("resourceVersion")):
            raise statuses.conflict(res, name)
        dry = _dry_run(req)
        now = self.sim.clock.now()
        if status_only:
            result = copy.deepcopy(current)
            result["status"] = new.get("status") or {}
        else:
            result = new
            result["apiVersion"], result["kind"] = res.api_version, res.kind
            for owned in ("uid", "creationTimestamp", "namespace", "name", "generation", "deletionTimestamp",
                          "deletionGracePeriodSeconds", "managedFields"):
                if owned in meta:
                    new_meta[owned] = meta[owned]
                else:
                    new_meta.pop(owned, None)
            if "status" in current:
                result["status"] = copy.deepcopy(current["status"])
            if res is JOBS:
                admission.default_job(result)
                errors = validation.job_update_errors(current, result)
                if errors:
                    raise statuses.invalid_object(res, name, errors)
                if result.get("spec") != current.get("spec"):
                    new_meta["generation"] = int(meta.get("generation") or 1) + 1
            elif res is PODS:
                if _pod_spec_core(result.get("spec")) != _pod_spec_core(current.get("spec")):
                    raise statuses.invalid_object(res, name, [statuses.forbidden(
                        "spec", "pod updates may not change fields other than `spec.containers[*].image`, "
                                "`spec.initContainers[*].image`, `spec.activeDeadlineSeconds`, "
                                "`spec.tolerations` (only additions to existing tolerations), "
                                "`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was "
                                "previously negative)")])
            elif res.plural == "secrets":
                if current.get("immutable") and (result.get("data") != current.get("data")
                                                 or result.get("immutable") is not True):
                    raise statuses.invalid_object(res, name, [statuses.forbidden(
                        "data", "field is immutable when `immutable` is set")])
                admission.default_secret(result)
                errors = validation.secret_errors(result)
                if errors:
                    raise statuses.invalid_object(res, name, errors)
        if dry:
            return json_response(200, result)
        store = self.world.store
        store.insert(res.plural, result)
        body = self._encode(res, result)
        if result["metadata"].get("deletionTimestamp") and not result["metadata"].get("finalizers"):
            deleting.finish(self.world, res.plural, result, now)
        elif res is JOBS:
            self.sim.controller.touch(result)
            self.sim.controller.kick(result, now)
        return json_response(200, body)

    # --- delete --------------------------------------------------------------------------------
    def _options(self, req: Request, res: Resource) -> dict:
        options = self._body(req, res) if req.body.strip() else None
        options = dict(options) if isinstance(options, dict) else {}
        for key in ("propagationPolicy", "gracePeriodSeconds", "orphanDependents"):
            if key in req.query and options.get(key) is None:
                raw = req.query[key]
                options[key] = (int(raw) if key == "gracePeriodSeconds" else
                                raw.lower() == "true" if key == "orphanDependents" else raw)
        policy, orphan = options.get("propagationPolicy"), options.get("orphanDependents")
        if policy is not None and orphan is not None:
            raise _invalid_options(statuses.invalid("propagationPolicy", policy,
                                                    "orphanDependents and deletionPropagation cannot be both set"))
        if policy is None and orphan is not None:
            options["propagationPolicy"] = "Orphan" if orphan else "Background"
        if options.get("propagationPolicy") not in (None, "Foreground", "Background", "Orphan"):
            raise _invalid_options(statuses.not_supported("propagationPolicy", options["propagationPolicy"],
                                                          ["Foreground", "Background", "Orphan", "nil"]))
        grace = options.get("gracePeriodSeconds")
        if grace is not None and (not isinstance(grace, int) or grace < 0):
            raise statuses.bad_request(f"gracePeriodSeconds must be a non-negative integer, got {grace!r}")
        return options

    def _delete(self, req: Request, route: Route, params: dict[str, str]) -> Response:
        res = self._resource(route)
        options = self._options(req, res)
        obj = self._live(res, params.get("namespace", ""), params["name"])
        return self._delete_one(req, res, obj, options)

    def _delete_one(self, req: Request, res: Resource, obj: dict, options: dict) -> Response:
        meta = obj["metadata"]
        pre = options.get("preconditions") or {}
        if pre.get("uid") and pre["uid"] != meta.get("uid"):
            raise statuses.conflict(res, meta["name"], f"Precondition failed: UID in precondition: {pre['uid']}, "
                                                       f"UID in object meta: {meta.get('uid')}")
        if pre.get("resourceVersion") and pre["resourceVersion"] != meta.get("resourceVersion"):
            raise statuses.conflict(res, meta["name"], f"Precondition failed: ResourceVersion in precondition: "
                                                       f"{pre['resourceVersion']}, ResourceVersion in object meta: "
                                                       f"{meta.get('resourceVersion')}")
        headers: dict[str, str] = {}
        policy = options.get("propagationPolicy")
        if res is JOBS and policy is None:
            policy = "Orphan"  # batch/v1 Jobs orphan their pods unless told otherwise
            headers["Warning"] = JOB_DELETE_WARNING
        if _dry_run(req, options):
            return json_response(200, self._encode(res, obj), headers)
        now = self.sim.clock.now()
        gone = deleting.request(self.world, res.plural, obj, now, policy=policy,
                                grace=options.get("gracePeriodSeconds"))
        if res is PODS:
            # Pods answer with the object, deleted or not (ReturnDeletedObject).
            return json_response(200, json.dumps(obj, separators=_SEP).encode(), headers)
        if gone:
            return json_response(200, statuses.success(res, meta["name"], meta.get("uid", "")), headers)
        return json_response(200, self._encode(res, obj), headers)

    def _deletecollection(self, req: Request, route: Route, params: dict[str, str]) -> Response:
        res = self._resource(route)
        options = self._options(req, res)
        store = self.world.store
        items, _ = store.list(res.plural, params.get("namespace"), req.query.get("labelSelector"),
                              req.query.get("fieldSelector"), None, None, self.sim.clock.now())
        deleted = []
        for obj in list(items):
            response = self._delete_one(req, res, obj, options)
            doc = json.loads(response.body)
            deleted.append(obj if doc.get("kind") == "Status" else doc)
        body = {"kind": res.list_kind, "apiVersion": res.api_version,
                "metadata": {"resourceVersion": str(store.revision)}, "items": deleted}
        return json_response(200, body)


def _invalid_options(err: statuses.FieldError) -> ApiError:
    return ApiError(statuses.status(422, "Invalid", f'DeleteOptions.meta.k8s.io "" is invalid: {err}', {
        "group": "meta.k8s.io", "kind": "DeleteOptions",
        "causes": [{"reason": err.reason, "message": err.body(), "field": err.field}]}))


def _pod_spec_core(spec: dict | None) -> dict:
    spec = copy.deepcopy(spec or {})
    for c in spec.get("containers") or []:
        c.pop("image", None)
    for c in spec.get("initContainers") or []:
        c.pop("image", None)
    for key in ("activeDeadlineSeconds", "tolerations", "terminationGracePeriodSeconds", "nodeName"):
        spec.pop(key, None)
    return spec

