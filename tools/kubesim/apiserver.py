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

``ApiServer`` routes each request to its handler, as kube-apiserver's endpoint installer does:
``handlers.get`` (get, list, the non-resource reads), ``handlers.create`` (create and admission),
``handlers.update`` (update, patch), ``handlers.delete`` (delete, deletecollection) and
``handlers.subresources`` (``/status``, ``/log``). It also holds what they share: the resource of a
route, the decoded body, the live object (404), its cached JSON.

Deliberately not here: HTTP, authentication, faults and counters (``server``), and anything
that happens after the request (``controller``). Namespaces spring into existence when first
used: the simulator does not answer 404 for a missing namespace.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import statuses
from .apirequest import Request, Response, dry_run, json_response, query_int
from .handlers.create import CreateHandler
from .handlers.delete import JOB_DELETE_WARNING, DeleteHandler
from .handlers.get import VERSION, ReadHandlers, version_info
from .handlers.subresources import Subresources
from .handlers.update import UpdateHandler
from .kinds import RESOURCES, Resource
from .statuses import ApiError

if TYPE_CHECKING:  # pragma: no cover
    from .sim import KubeSim

__all__ = ["ApiServer", "Request", "Response", "Route", "ROUTES", "ANONYMOUS", "JOB_DELETE_WARNING", "VERSION",
           "authorization_attributes", "match", "json_response", "version_info", "query_int", "dry_run"]


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


class ApiServer:
    def __init__(self, sim: KubeSim):
        self.sim = sim
        self.reads = ReadHandlers(self)
        self.creates = CreateHandler(self)
        self.updates = UpdateHandler(self)
        self.deletes = DeleteHandler(self)
        self.subresources = Subresources(self)
        self._handlers: dict[str, Callable[[Request, Route, dict[str, str]], Response]] = {
            "get": self.reads.get, "list": self.reads.list, "version": self.reads.version,
            "health": self.reads.health, "ssar": self.reads.ssar, "create": self.creates.create,
            "update": self.updates.update, "patch": self.updates.patch, "delete": self.deletes.delete,
            "deletecollection": self.deletes.deletecollection, "update_status": self.subresources.update_status,
            "patch_status": self.subresources.patch_status, "log": self.subresources.log,
        }

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
                handler = self._handlers[verb]
                return handler(req, route, params or {})
        except ApiError as err:
            return self._error(err)

    @staticmethod
    def _error(err: ApiError) -> Response:
        return json_response(err.code, err.body, err.headers)

    def resource(self, route: Route) -> Resource:
        return RESOURCES[route.plural or ""]

    def body(self, req: Request, res: Resource) -> Any:
        try:
            return json.loads(req.body or b"null")
        except ValueError as exc:
            raise statuses.bad_request(
                f"the object provided is unrecognized (must be of type {res.kind}): couldn't get version/kind; "
                f"json parse error: {exc.msg}") from None

    def object_body(self, req: Request, res: Resource) -> dict:
        obj = self.body(req, res)
        if not isinstance(obj, dict):
            raise statuses.bad_request(f"the object provided is unrecognized (must be of type {res.kind})")
        kind = obj.get("kind")
        if kind not in (None, "", res.kind):
            raise statuses.bad_request(f"the object provided is unrecognized (must be of type {res.kind}): "
                                       f"got {kind}")
        if not isinstance(obj.get("metadata", {}), dict):
            raise statuses.bad_request("metadata must be an object")
        return obj

    def live(self, res: Resource, namespace: str, name: str) -> dict:
        obj = self.world.store.get(res.plural, namespace, name)
        if obj is None:
            raise statuses.not_found(res, name)
        return obj

    def encode(self, res: Resource, obj: dict) -> bytes:
        return self.world.store.encode(res.plural, obj)

    def admit(self, res: Resource, obj: dict, now: float, manager: str, *, seed: bool = False
              ) -> tuple[dict, Callable[[], None]]:
        """Default, mutate and validate a new object (``CreateHandler.admit``)."""
        return self.creates.admit(res, obj, now, manager, seed=seed)
