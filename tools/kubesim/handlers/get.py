"""GET and LIST (k8s.io/apiserver/pkg/endpoints/handlers/get.go), and the non-resource reads.

One object by name, or one page of a list: label and field selectors, ``limit`` / ``continue``
(paged by ``store``), the list written around the cached JSON of its items. ``watch`` is refused:
clients poll. Also the answers without a resource: ``/version``, the health probes, and a
``SelfSubjectAccessReview`` that allows everything a valid token asks.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from .. import statuses
from ..apirequest import SEP, Request, Response, json_response, query_int
from ..kinds import RESOURCES
from . import Handler

if TYPE_CHECKING:  # pragma: no cover
    from ..apiserver import Route

VERSION = {
    "major": "1", "minor": "31", "gitVersion": "v1.31.2", "gitCommit": "5864a4677267e6adeae276ad85882a8714d69d9d",
    "gitTreeState": "clean", "buildDate": "2024-10-22T20:28:14Z", "goVersion": "go1.22.8", "compiler": "gc",
    "platform": "linux/amd64",
}


def version_info(version: str) -> dict:
    """``/version`` for a cluster of ``version`` ("1.32" or "1.32.4")."""
    parts = (version.split(".") + ["0", "0"])[:3]
    info = dict(VERSION)
    info.update(major=parts[0], minor=parts[1], gitVersion="v" + ".".join(parts))
    return info


class ReadHandlers(Handler):
    def get(self, req: Request, route: Route, params: dict[str, str]) -> Response:
        res, obj = self.target(route, params)
        return json_response(200, self.api.encode(res, obj))

    def list(self, req: Request, route: Route, params: dict[str, str]) -> Response:
        res = self.api.resource(route)
        if req.query.get("watch") in ("1", "true", "True"):
            raise statuses.bad_request("watch is not supported by kubesim; poll with list instead")
        if res.plural == "namespaces":
            self.sim.ensure_namespaces()
        namespace = params.get("namespace") if route.endpoint == "collection" else None
        store = self.world.store
        items, meta = store.list(res.plural, namespace, req.query.get("labelSelector"),
                                 req.query.get("fieldSelector"), query_int(req.query, "limit"),
                                 req.query.get("continue") or None, self.sim.clock.now())
        head = json.dumps({"kind": res.list_kind, "apiVersion": res.api_version, "metadata": meta},
                          separators=SEP).encode()
        body = head[:-1] + b',"items":[' + b",".join(store.encode(res.plural, o) for o in items) + b"]}"
        return json_response(200, body)

    def version(self, req: Request, route: Route, params: dict[str, str]) -> Response:
        return json_response(200, version_info(self.sim.version))

    def health(self, req: Request, route: Route, params: dict[str, str]) -> Response:
        return Response(200, b"ok", "text/plain")

    def ssar(self, req: Request, route: Route, params: dict[str, str]) -> Response:
        review = self.api.body(req, RESOURCES["namespaces"])
        if not isinstance(review, dict) or not isinstance(review.get("spec"), dict):
            raise statuses.bad_request("SelfSubjectAccessReview needs a spec")
        out = {"kind": "SelfSubjectAccessReview", "apiVersion": "authorization.k8s.io/v1",
               "metadata": {"creationTimestamp": None}, "spec": review["spec"],
               "status": {"allowed": True, "reason": "kubesim allows every request with a valid token"}}
        return json_response(201, out)
