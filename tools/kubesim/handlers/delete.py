"""DELETE and DELETECOLLECTION (k8s.io/apiserver/pkg/endpoints/handlers/delete.go).

``DeleteOptions`` come from the body or the query (``propagationPolicy``, ``gracePeriodSeconds``,
the older ``orphanDependents``; 422 when both policies are set), with ``uid`` /
``resourceVersion`` preconditions (409). A Job deleted without a policy orphans its pods
(batch/v1's default) and the answer carries the API server's ``Warning`` header. Pods answer with
the object (``ReturnDeletedObject``); other resources with a ``Status`` once gone, or the object
while finalizers hold it. How an object is then deleted is ``deleting``'s.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from .. import deleting, statuses
from ..apirequest import SEP, Request, Response, dry_run, json_response
from ..kinds import JOBS, PODS, Resource
from ..statuses import ApiError
from . import Handler

if TYPE_CHECKING:  # pragma: no cover
    from ..apiserver import Route

JOB_DELETE_WARNING = ('299 - "child pods are preserved by default when jobs are deleted; set '
                      'propagationPolicy=Background to remove them or set propagationPolicy=Orphan to suppress '
                      'this warning"')


class DeleteHandler(Handler):
    def _options(self, req: Request, res: Resource) -> dict:
        options = self.api.body(req, res) if req.body.strip() else None
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

    def delete(self, req: Request, route: Route, params: dict[str, str]) -> Response:
        res = self.api.resource(route)
        options = self._options(req, res)
        obj = self.api.live(res, params.get("namespace", ""), params["name"])
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
        if dry_run(req, options):
            return json_response(200, self.api.encode(res, obj), headers)
        now = self.sim.clock.now()
        gone = deleting.request(self.world, res.plural, obj, now, policy=policy,
                                grace=options.get("gracePeriodSeconds"))
        if res is PODS:
            # Pods answer with the object, deleted or not (ReturnDeletedObject).
            return json_response(200, json.dumps(obj, separators=SEP).encode(), headers)
        if gone:
            return json_response(200, statuses.success(res, meta["name"], meta.get("uid", "")), headers)
        return json_response(200, self.api.encode(res, obj), headers)

    def deletecollection(self, req: Request, route: Route, params: dict[str, str]) -> Response:
        res = self.api.resource(route)
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

