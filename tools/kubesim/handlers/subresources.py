"""The subresources: a Job's or Pod's ``/status``, and a pod's ``/log``.

``/status`` is the status REST store (``StatusREST`` in pkg/registry/batch/job/storage and
pkg/registry/core/pod/storage): PUT and PATCH change ``status`` and ignore everything else,
through the same ``replace`` as the main endpoint. ``/log`` is the pod log REST
(pkg/registry/core/pod/rest/log.go): ``text/plain`` from the pod's timeline, with ``container``
(required when the pod has several), ``previous``, ``tailLines``, ``limitBytes`` and
``timestamps``, and the kubelet's 400 answers for a container that is waiting or has no previous
run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .. import containerlogs, kubelet, statuses
from ..apirequest import Request, Response, query_int
from ..kinds import PODS
from . import Handler

if TYPE_CHECKING:  # pragma: no cover
    from ..apiserver import Route


class Subresources(Handler):
    def update_status(self, req: Request, route: Route, params: dict[str, str]) -> Response:
        res, current = self.target(route, params)
        return self.api.updates.replace(req, res, current, self.api.object_body(req, res), status_only=True)

    def patch_status(self, req: Request, route: Route, params: dict[str, str]) -> Response:
        return self.api.updates.patch(req, route, params, status_only=True)

    def log(self, req: Request, route: Route, params: dict[str, str]) -> Response:
        pod = self.api.live(PODS, params["namespace"], params["name"])
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
        text = containerlogs.render_logs(timeline, container, now, previous=req.query.get("previous") == "true",
                                         tail=query_int(req.query, "tailLines"),
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
        limit = query_int(req.query, "limitBytes")
        data = text.encode()
        if limit is not None and limit >= 0:
            data = data[:limit]
        return Response(200, data, "text/plain")
