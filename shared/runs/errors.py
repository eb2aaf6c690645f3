"""What the run store raises, apart from the store itself: the use cases catch these without
loading the Table SDK (which keeps cold start low)."""

from __future__ import annotations

from shared.errors import Conflict, PayloadTooLarge, UpstreamError


class IdempotencyKeyTaken(Conflict):
    """The idempotency key already belongs to a run: ``run_id`` is that (first) run."""

    code = "idempotency_key_taken"

    def __init__(self, run_id: str):
        super().__init__(f"the idempotency key is already used by run {run_id}", details={"runId": run_id})
        self.run_id = run_id


class RunAlreadyExists(Conflict):
    """A run with this id already exists (and the create carried no matching idempotency key)."""

    code = "run_exists"

    def __init__(self, run_id: str):
        super().__init__(f"run {run_id} already exists", details={"runId": run_id})
        self.run_id = run_id


class StaleRun(Conflict):
    """The run row changed (or vanished) since it was read: re-read, re-apply, save again."""

    code = "stale_run"

    def __init__(self, run_id: str):
        super().__init__(f"run {run_id} was changed by another writer; read it again")
        self.run_id = run_id


class RunTooLarge(PayloadTooLarge):
    code = "run_too_large"


class RunTableRefused(UpstreamError):
    """The table service answered, but refused the request (not a conflict the store handles)."""

    def __init__(self, message: str, *, status: int | None = None, error_code: str | None = None,
                 index: int | None = None):
        super().__init__(message)
        self.status = status
        self.error_code = error_code
        self.index = index
