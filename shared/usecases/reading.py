"""Read runs: one by id (in a namespace, or the first allowed namespace that has it), or a page."""

from __future__ import annotations

from shared.errors import NotFound
from shared.runs.model import Run
from shared.usecases.collaborators import Collaborators


def get_run(c: Collaborators, run_id: str, namespace: str | None = None) -> Run:
    for ns in ([namespace] if namespace else c.settings.allowed_namespaces):
        run = c.store.get_run(ns, run_id)
        if run is not None:
            return run
    raise NotFound(f"No run {run_id!r}", field="runId")


def list_runs(c: Collaborators, namespace: str, *, status: str | None = None, external_id: str | None = None,
              page_size: int = 50, continuation: str | None = None) -> tuple[list[Run], str | None]:
    """Runs newest first, filtered, one page; the continuation token for the next page or None."""
    return c.store.list_runs(namespace, status=status, external_id=external_id, page_size=page_size,
                             continuation=continuation)
