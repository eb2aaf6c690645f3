"""The run list: runs newest first from the time index alone, one request per page.

Summaries come back in the run document's JSON words (``runId``, ``externalId``, ``status``,
``phase``, ``createdAt``...), filtered server-side by status and external id. A filtered query may
come back short (or empty) with a continuation (the service stops after 1,000 scanned rows or
5 seconds); one call follows a bounded number of them before returning what it has.
"""

from __future__ import annotations

from typing import Any

from shared.errors import BadRequest
from shared.runs.errors import RunTableRefused
from shared.runs.model import Status
from shared.runs.rows import (
    PREFIX_QUERY,
    TIME_PREFIX,
    decode_continuation,
    encode_continuation,
    prefix_parameters,
    run_summary_from_row,
    usable_key,
)
from shared.runs.store.table import MAX_QUERY_PAGE, RunTable

# A filtered query may come back short (or empty) with a continuation; list_runs follows at
# most this many continuations before returning what it has, to bound one API call's cost.
_LIST_RUNS_HOPS = 5


class RunHistory:
    """Pages of run summaries, newest first, from the time index."""

    def __init__(self, table: RunTable):
        self._table = table

    def list_runs(
        self,
        namespace: str,
        *,
        status: Status | str | None = None,
        external_id: str | None = None,
        page_size: int = 50,
        continuation: str | None = None,
    ) -> tuple[list[dict], str | None]:
        """Runs newest first, optionally of one status and/or external id: (summaries, next token or None).

        A summary is ``{"runId", "jobName", "namespace", "externalId", "status", "phase", "createdAt"}``
        (createdAt in ISO 8601), read from the time index alone: one request per page.
        """
        if not 1 <= page_size <= MAX_QUERY_PAGE:
            raise BadRequest(f"page size must be between 1 and {MAX_QUERY_PAGE}", field="pageSize")
        if status is not None and str(status) not in {s.value for s in Status}:
            raise BadRequest(f"status must be one of {', '.join(s.value for s in Status)}", field="status")
        token = decode_continuation(continuation) if continuation else None
        if not usable_key(namespace):
            return [], None
        query = PREFIX_QUERY
        parameters: dict[str, Any] = prefix_parameters(namespace, TIME_PREFIX)
        if status is not None:
            query += " and status eq @status"
            parameters["status"] = str(status)
        if external_id is not None:
            query += " and external_id eq @external_id"
            parameters["external_id"] = external_id
        runs: list[dict] = []
        for _ in range(_LIST_RUNS_HOPS):
            try:
                rows, token = self._table.query(query, parameters, page_size - len(runs), token)
            except RunTableRefused as refused:
                if continuation and refused.status == 400:
                    raise BadRequest("the continuation token is not valid here; start again without one",
                                     field="continuation") from None
                raise
            runs.extend(run_summary_from_row(row, namespace) for row in rows)
            if not token or len(runs) >= page_size:
                break
        return runs, encode_continuation(token)
