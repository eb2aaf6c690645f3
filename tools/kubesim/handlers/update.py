"""UPDATE and PATCH (k8s.io/apiserver/pkg/endpoints/handlers/update.go and patch.go).

A PUT replaces the object; a PATCH (merge, strategic merge or JSON patch: ``patching``) is
applied to the current object first and then stored the same way. Both honour a
``resourceVersion`` precondition (409 Conflict), keep the fields the server owns, and apply each
resource's update rules: a Job's immutable fields and ``generation``, a pod's spec (only images,
``activeDeadlineSeconds``, tolerations, grace), an immutable Secret. The main endpoint ignores
``status``; the ``/status`` subresource (``subresources``) comes through ``replace`` with
``status_only`` and ignores everything else. A stored Job change wakes the job controller.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING

from .. import admission, deleting, patching, statuses, validation
from ..apirequest import Request, Response, dry_run, json_response
from ..kinds import JOBS, PODS, Resource
from . import Handler

if TYPE_CHECKING:  # pragma: no cover
    from ..apiserver import Route


class UpdateHandler(Handler):
    def update(self, req: Request, route: Route, params: dict[str, str]) -> Response:
        res, current = self.target(route, params)
        return self.replace(req, res, current, self.api.object_body(req, res), status_only=False)

    def patch(self, req: Request, route: Route, params: dict[str, str], status_only: bool = False) -> Response:
        res, current = self.target(route, params)
        patch = self.api.body(req, res)
        patched = patching.apply(req.header("Content-Type"), current, patch)
        if not isinstance(patched, dict):
            raise statuses.bad_request("the patch did not produce an object")
        # A patch names the object by URL; a resourceVersion it carries is a precondition.
        rv = (patch.get("metadata") or {}).get("resourceVersion") if isinstance(patch, dict) else None
        patched.setdefault("metadata", {})["resourceVersion"] = rv or current["metadata"].get("resourceVersion")
        return self.replace(req, res, current, patched, status_only=status_only)

    def replace(self, req: Request, res: Resource, current: dict, new: dict, *, status_only: bool) -> Response:
        meta, new_meta = current["metadata"], new.setdefault("metadata", {})
        name = meta["name"]
        if new_meta.get("name") not in (None, name):
            raise statuses.bad_request(f"the name of the object ({new_meta.get('name')}) does not match the name "
                                       f"on the URL ({name})")
        if new_meta.get("resourceVersion") not in (None, "", meta.get("resourceVersion")):
            raise statuses.conflict(res, name)
        dry = dry_run(req)
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
        body = self.api.encode(res, result)
        if result["metadata"].get("deletionTimestamp") and not result["metadata"].get("finalizers"):
            deleting.finish(self.world, res.plural, result, now)
        elif res is JOBS:
            self.sim.controller.touch(result)
            self.sim.controller.kick(result, now)
        return json_response(200, body)


def _pod_spec_core(spec: dict | None) -> dict:
    spec = copy.deepcopy(spec or {})
    for c in spec.get("containers") or []:
        c.pop("image", None)
    for c in spec.get("initContainers") or []:
        c.pop("image", None)
    for key in ("activeDeadlineSeconds", "tolerations", "terminationGracePeriodSeconds", "nodeName"):
        spec.pop(key, None)
    return spec

