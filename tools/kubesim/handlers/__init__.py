"""The API server's request handlers, one module per verb as in k8s.io/apiserver/pkg/endpoints/handlers.

``get`` (get, list), ``create``, ``update`` (update, patch), ``delete`` (delete, deletecollection)
and ``subresources`` (``/status``, ``/log``). ``apiserver.ApiServer`` routes to them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from ..apiserver import ApiServer, Route
    from ..kinds import Resource
    from ..world import World


class Handler:
    """What every handler shares: the API server it serves (its helpers) and the simulated world."""

    def __init__(self, api: ApiServer):
        self.api = api
        self.sim = api.sim

    @property
    def world(self) -> World:
        return self.sim.world

    def target(self, route: Route, params: dict[str, str]) -> tuple[Resource, dict]:
        """The resource a request names and the live object it addresses (404 when there is none)."""
        res = self.api.resource(route)
        return res, self.api.live(res, params.get("namespace", ""), params["name"])
