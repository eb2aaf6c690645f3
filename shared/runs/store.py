"""Runs as rows in Azure Table Storage: point reads, atomic claims, ETag-guarded updates.

Why this exists: the service needs a run record that survives restarts, that two writers (the
sweep and a cancel) can race on without losing a transition, and that the sweep can read at a
cost proportional to the runs still in flight rather than to every run ever made.

Table design (one table, ``settings.runs_table_name``; every row of a run in one partition):

- ``PartitionKey`` = the run's namespace, so the rows that must change together fit one entity
  group transaction (a batch is atomic only within one partition).
- ``run|{run_id}``: the run row, every ``Run`` field. Lists and dicts as compact JSON strings,
  datetimes as timezone-aware UTC datetimes, status and phase as their strings. The row's ETag
  is ``Run.etag``; every update is conditional on it.
- ``active|{run_id}``: the active marker. It exists while the run is not terminal and mirrors
  the run's state columns (status, phase, reason, message, timestamps, history,
  cancel_requested_at, missing_sweeps, external id, job name), so the sweep's read is one range
  query over ``active|``: O(active runs), whatever the number of finished runs. Every write of an
  active run's row rewrites its marker in the same batch, so the marker's ETag changes exactly
  when the run row does: ``save_many`` guards a change decided from a marker with the marker's
  ETag and merges only the state columns into the run row, without reading the run row at all.
- ``time|{9999999999999 - created_at epoch ms, 13 digits}|{run_id}``: the time index (run id,
  external id, status, phase, created_at). Row keys sort ascending, so this range lists runs
  newest first, filtered server-side by status and external id.
- ``idem|{sha256(idempotency key) hex}``: the idempotency claim, pointing at the run id. Keys are
  hashed because callers may send characters row keys forbid (``/ \\ # ?``). Keys are scoped to
  a namespace, like everything else in a partition.

``create_run`` inserts run row, marker, time row and claim in one batch: a second submit with the
same key fails the whole batch with 409, and nothing of the loser is written. ``save`` replaces the
run row under If-Match and upserts (or deletes) the marker and the time row in the same batch.
``save_many`` saves many runs' state changes of one partition in entity group transactions (up to
100 operations and well under the 4 MiB request limit each), one run's rows never split between
two; a transaction refused with 412 or 404 is retried run by run, and only the runs that lose
again are reported stale.
``list_runs`` answers from the time index alone, as summary dicts in the run document's JSON
words (``runId``, ``externalId``, ``status``, ``phase``, ``createdAt``...). A run's ``created_at``
and ``external_id`` never change after ``create_run``: the time row's key depends on them.

Limits: Table Storage refuses an entity over 1 MiB or a string property over 64 KiB (32 K UTF-16
code units). Before writing, the history is cut to its newest entries and the diagnostics'
longest texts and lists are shortened (marked ``"truncated": true``); whatever still does not fit
is refused with ``RunTooLarge`` naming the property, before anything is sent. ``Secret``-typed
parameter values are replaced by ``***`` here too, whatever the caller already did.

What it deliberately does not do: decide transitions (``shared.runs.model`` does), retry a
``StaleRun`` (the caller re-reads and re-applies), read the clock except to stamp a run created
without ``created_at``, or let an ``azure.core`` exception out: unavailability becomes
``ServiceUnavailable`` ("run table unreachable"), any other refusal ``RunTableRefused`` (502).
A ``ServiceUnavailable`` from ``create_run`` does not prove nothing was written (the answer may be
lost after the write): a retried submit with the same idempotency key finds the first row.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.data.tables import TableClient, UpdateMode

from shared.errors import (
    BadRequest,
    Conflict,
    ServiceUnavailable,
    SettingsError,
)
from shared.runs.errors import IdempotencyKeyTaken, RunAlreadyExists, RunTableRefused, RunTooLarge, StaleRun
from shared.runs.markers import ActiveRun, StateChange
from shared.runs.model import Phase, Run, Status
from shared.runs.outbox import OUTBOX_PREFIX, OutboxEntry
from shared.settings import Settings

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
REDACTED = "***"

RUN_PREFIX = "run|"
ACTIVE_PREFIX = "active|"
TIME_PREFIX = "time|"
IDEM_PREFIX = "idem|"
# '}' is the character after '|': "prefix <= RowKey < prefix-with-'}'" is exactly one prefix range.
_RANGE_END = "}"

_INVERTED_MS_BASE = 9_999_999_999_999
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

MAX_ENTITY_BYTES = 1024 * 1024
MAX_PROPERTY_BYTES = 64 * 1024
MAX_QUERY_PAGE = 1000  # the service's own ceiling for one query answer
MAX_BATCH_OPERATIONS = 100  # the service's ceiling for one entity group transaction
# The service refuses a transaction over 4 MiB; sizes are estimated (entity sizing + the multipart
# envelope of each operation), so stay well under it.
MAX_BATCH_BYTES = 3 * 1024 * 1024
_BATCH_OPERATION_OVERHEAD = 1024
BATCH_WORKERS = 4  # transactions of one save_many in flight at once (network-bound)
# A filtered query may come back short (or empty) with a continuation; list_runs follows at
# most this many continuations before returning what it has, to bound one API call's cost.
_LIST_RUNS_HOPS = 5
_HISTORY_KEEP_STEPS = (10, 1, 0)
# (longest string kept, longest list kept) for each shrinking step of the diagnostics.
_DIAGNOSTICS_STEPS = ((4096, 100), (1024, 30), (256, 10), (64, 3))
_CLAIM_READ_DELAYS = (0.0, 0.02, 0.05, 0.1, 0.2)

# Characters Table Storage refuses in PartitionKey / RowKey values.
_FORBIDDEN_KEY_CHARS = re.compile(r"[/\\#?\x00-\x1f\x7f-\x9f]")

# Client options for the service: fail over to an error quickly rather than let one call
# retry for minutes (the SDK default is 10 retries with backoff up to 120 s) while a timer
# invocation or an HTTP caller waits.
CLIENT_OPTIONS: dict[str, Any] = {
    "retry_total": 3,
    "retry_backoff_factor": 0.2,
    "retry_backoff_max": 2,
    "connection_timeout": 5,
    "read_timeout": 20,
}


# -- plain data read back ---------------------------------------------------------------------


# -- rows (pure) ------------------------------------------------------------------------------


def run_key(run_id: str) -> str:
    return RUN_PREFIX + run_id


def active_key(run_id: str) -> str:
    return ACTIVE_PREFIX + run_id


def time_key(created_at: datetime, run_id: str) -> str:
    ms = (_utc(created_at) - _EPOCH) // timedelta(milliseconds=1)
    return f"{TIME_PREFIX}{_INVERTED_MS_BASE - ms:013d}|{run_id}"


def idempotency_row_key(key: str) -> str:
    return IDEM_PREFIX + hashlib.sha256(key.encode("utf-8")).hexdigest()


def redact_parameters(parameters: list[dict]) -> list[dict]:
    """Parameters with every ``Secret``-typed value replaced by ``***`` (copies; input untouched)."""
    redacted = []
    for item in parameters:
        data_type = next((v for k, v in item.items() if k.lower() in ("datatype", "data_type")), None)
        if isinstance(data_type, str) and data_type.lower() == "secret" and item.get("value") is not None:
            item = {**item, "value": REDACTED}
        redacted.append(item)
    return redacted


def run_row(run: Run) -> dict:
    return {
        "PartitionKey": run.namespace,
        "RowKey": run_key(run.run_id),
        "kind": "run",
        "schema": SCHEMA_VERSION,
        "run_id": run.run_id,
        "namespace": run.namespace,
        "external_id": run.external_id,
        "status": str(run.status),
        "phase": str(run.phase),
        "reason": run.reason,
        "message": run.message,
        "created_at": _utc_or_none(run.created_at),
        "updated_at": _utc_or_none(run.updated_at),
        "started_at": _utc_or_none(run.started_at),
        "finished_at": _utc_or_none(run.finished_at),
        "idempotency_key": run.idempotency_key,
        "parameters": _json(run.parameters),
        "attributes": _json(run.attributes),
        "source": run.source,
        "source_resource_version": run.source_resource_version,
        "spec_hash": run.spec_hash,
        "cancel_requested_at": _utc_or_none(run.cancel_requested_at),
        "missing_sweeps": run.missing_sweeps,
        "held_at_create": run.held_at_create,
        "history": _json(run.history),
        "diagnostics": None if run.diagnostics is None else _json(run.diagnostics),
        "rendered_job": None if run.rendered_job is None else _json(run.rendered_job),
    }


def active_marker_row(run: Run) -> dict:
    return {
        "PartitionKey": run.namespace,
        "RowKey": active_key(run.run_id),
        "kind": "active",
        "run_id": run.run_id,
        "external_id": run.external_id,
        "job_name": run.run_id,  # the run id is the created Job's metadata.name
        "status": str(run.status),
        "phase": str(run.phase),
        "reason": run.reason,
        "message": run.message,
        "cancel_requested_at": _utc_or_none(run.cancel_requested_at),
        "missing_sweeps": run.missing_sweeps,
        "held_at_create": run.held_at_create,
        "created_at": _utc_or_none(run.created_at),
        "updated_at": _utc_or_none(run.updated_at),
        "started_at": _utc_or_none(run.started_at),
        "history": _json(run.history),
    }


# The run row's columns a state change writes (``save_many`` merges just these).
STATE_COLUMNS = ("status", "phase", "reason", "message", "updated_at", "started_at", "finished_at",
                 "missing_sweeps", "history")


def state_columns_row(run: Run) -> dict:
    """The run row's state columns of ``run``, for a MERGE into the stored row.

    A MERGE cannot remove a property (the SDK drops None values), so an absent reason or message
    is written as "" and read back as None; finished_at is only ever set (an active run has none).
    """
    row = run_row(run)
    merged = {"PartitionKey": row["PartitionKey"], "RowKey": row["RowKey"]}
    for name in STATE_COLUMNS:
        value = row[name]
        if value is None and name in ("reason", "message"):
            value = ""
        if value is not None:
            merged[name] = value
    return merged


def time_row(run: Run) -> dict:
    assert run.created_at is not None
    return {
        "PartitionKey": run.namespace,
        "RowKey": time_key(run.created_at, run.run_id),
        "kind": "time",
        "run_id": run.run_id,
        "external_id": run.external_id,
        "status": str(run.status),
        "phase": str(run.phase),
        "reason": run.reason,
        "created_at": _utc(run.created_at),
    }


def idempotency_row(run: Run) -> dict:
    assert run.idempotency_key is not None
    return {
        "PartitionKey": run.namespace,
        "RowKey": idempotency_row_key(run.idempotency_key),
        "kind": "idem",
        "run_id": run.run_id,
        "created_at": _utc_or_none(run.created_at),
    }


def new_run_rows(run: Run) -> list[dict]:
    """Every row ``create_run`` inserts for ``run``, run row first (its answer carries the ETag).

    The run must already be prepared (``prepare_run``): redacted, stamped and fitted.
    """
    rows = [run_row(run), time_row(run)]
    if not run.terminal:
        rows.append(active_marker_row(run))
    if run.idempotency_key is not None:
        rows.append(idempotency_row(run))
    return rows


def run_from_row(row: dict, etag: str | None = None) -> Run:
    diagnostics = row.get("diagnostics")
    return Run(
        run_id=row["run_id"],
        namespace=row["namespace"],
        external_id=row["external_id"],
        status=Status(row["status"]),
        phase=Phase(row["phase"]),
        reason=row.get("reason") or None,
        message=row.get("message") or None,
        created_at=_plain_datetime(row.get("created_at")),
        updated_at=_plain_datetime(row.get("updated_at")),
        started_at=_plain_datetime(row.get("started_at")),
        finished_at=_plain_datetime(row.get("finished_at")),
        idempotency_key=row.get("idempotency_key"),
        parameters=json.loads(row.get("parameters") or "[]"),
        attributes=json.loads(row.get("attributes") or "{}"),
        source=row.get("source") or "job",
        source_resource_version=row.get("source_resource_version"),
        spec_hash=row.get("spec_hash"),
        cancel_requested_at=_plain_datetime(row.get("cancel_requested_at")),
        missing_sweeps=int(row.get("missing_sweeps") or 0),
        held_at_create=row.get("held_at_create") is True,  # absent in rows written before it was kept
        history=json.loads(row.get("history") or "[]"),
        diagnostics=None if diagnostics is None else json.loads(diagnostics),
        rendered_job=json.loads(row["rendered_job"]) if row.get("rendered_job") else None,
        etag=etag,
    )


def active_run_from_row(row: dict, namespace: str) -> ActiveRun:
    history = row.get("history")
    return ActiveRun(
        run_id=row["run_id"],
        namespace=namespace,
        status=Status(row["status"]),
        phase=Phase(row["phase"]),
        reason=row.get("reason") or None,
        message=row.get("message") or None,
        cancel_requested_at=_plain_datetime(row.get("cancel_requested_at")),
        missing_sweeps=int(row.get("missing_sweeps") or 0),
        held_at_create=row.get("held_at_create") is True,
        created_at=_plain_datetime(row.get("created_at")),
        external_id=row["external_id"],
        job_name=row.get("job_name") or row["run_id"],
        updated_at=_plain_datetime(row.get("updated_at")),
        started_at=_plain_datetime(row.get("started_at")),
        history=None if history is None else json.loads(history),
        etag=row.get("_etag"),
    )


def run_summary_from_row(row: dict, namespace: str) -> dict:
    """One line of the run list, from the time index, already in the run document's JSON words."""
    created_at = _plain_datetime(row.get("created_at"))
    return {
        "runId": row["run_id"],
        "jobName": row["run_id"],
        "namespace": namespace,
        "externalId": row["external_id"],
        "status": row["status"],
        "phase": row["phase"],
        "reason": row.get("reason") or None,
        "createdAt": None if created_at is None else created_at.isoformat(),
    }


# -- size limits (pure) -----------------------------------------------------------------------


def property_bytes(value: Any) -> int:
    """Stored size of one property value, after Microsoft's published sizing of table entities."""
    if value is None:
        return 0
    if isinstance(value, str):
        return 4 + _utf16_bytes(value)
    if isinstance(value, bool):
        return 1
    if isinstance(value, int):
        return 4 if -(2**31) <= value < 2**31 else 8
    if isinstance(value, float | datetime):
        return 8
    if isinstance(value, bytes):
        return 4 + len(value)
    return 4 + _utf16_bytes(str(value))


def entity_bytes(row: dict) -> int:
    """4 bytes + both keys in UTF-16 + for each property: 8 bytes + its name in UTF-16 + its value."""
    size = 4 + _utf16_bytes(row["PartitionKey"]) + _utf16_bytes(row["RowKey"])
    for name, value in row.items():
        if name in ("PartitionKey", "RowKey") or value is None:
            continue
        size += 8 + _utf16_bytes(name) + property_bytes(value)
    return size


def oversized_properties(row: dict) -> dict[str, int]:
    """Properties over the 64 KiB limit, with their size in bytes."""
    return {
        name: _utf16_bytes(value)
        for name, value in row.items()
        if isinstance(value, str) and _utf16_bytes(value) > MAX_PROPERTY_BYTES
    }


def fit_run(run: Run) -> Run:
    """The run, with history and diagnostics cut until its row fits; RunTooLarge if it still can't."""
    row = run_row(run)
    if _fits(row):
        return run
    for keep in _HISTORY_KEEP_STEPS:
        if not _history_must_shrink(row) or len(run.history) <= keep:
            continue
        run = replace(run, history=run.history[-keep:] if keep else [])
        row = run_row(run)
        log.warning("run %s: history cut to its newest %d entries to fit the run table", run.run_id, keep)
    for max_chars, max_items in _DIAGNOSTICS_STEPS:
        if run.diagnostics is None or not _diagnostics_must_shrink(row):
            break
        run = replace(run, diagnostics={**_shrink(run.diagnostics, max_chars, max_items), "truncated": True})
        row = run_row(run)
        log.warning("run %s: diagnostics shortened to fit the run table", run.run_id)
    if run.diagnostics is not None and _diagnostics_must_shrink(row):
        run = replace(run, diagnostics={"truncated": True,
                                        "note": "diagnostics were too large for the run table"})
        row = run_row(run)
    if run.rendered_job is not None and "rendered_job" in oversized_properties(row):
        # A rerun then renders from the source Job again instead of replaying this exact spec.
        run = replace(run, rendered_job=None)
        row = run_row(run)
        log.warning("run %s: rendered Job spec too large to keep for reruns", run.run_id)
    if _fits(row):
        return run
    oversized = oversized_properties(row)
    if oversized:
        name, size = max(oversized.items(), key=lambda item: item[1])
        raise RunTooLarge(
            f"run {run.run_id} cannot be stored: {name} is {size:,} bytes, over the run table's "
            f"{MAX_PROPERTY_BYTES:,}-byte limit for one property",
            field=name,
        )
    largest = sorted(
        ((n, property_bytes(v)) for n, v in row.items() if n not in ("PartitionKey", "RowKey")),
        key=lambda item: item[1], reverse=True,
    )[:3]
    raise RunTooLarge(
        f"run {run.run_id} cannot be stored: its row would be {entity_bytes(row):,} bytes, over the "
        f"run table's {MAX_ENTITY_BYTES:,}-byte entity limit (largest: "
        + ", ".join(f"{n} {s:,} bytes" for n, s in largest) + ")",
        field=largest[0][0],
    )


# With today's columns the 1 MiB entity limit is out of reach once every property is under 64 KiB
# (about a dozen free-text columns); the entity check guards columns added later.
def _fits(row: dict) -> bool:
    return entity_bytes(row) <= MAX_ENTITY_BYTES and not oversized_properties(row)


def _history_must_shrink(row: dict) -> bool:
    return "history" in oversized_properties(row) or entity_bytes(row) > MAX_ENTITY_BYTES


def _diagnostics_must_shrink(row: dict) -> bool:
    return "diagnostics" in oversized_properties(row) or entity_bytes(row) > MAX_ENTITY_BYTES


def _shrink(value: Any, max_chars: int, max_items: int) -> Any:
    """Cut long strings to their tail and long lists to their last items (logs end with the cause)."""
    if isinstance(value, str):
        return value if len(value) <= max_chars else "…" + value[-max_chars:]
    if isinstance(value, list):
        return [_shrink(v, max_chars, max_items) for v in value[-max_items:]]
    if isinstance(value, dict):
        return {k: _shrink(v, max_chars, max_items) for k, v in value.items()}
    return value


# -- continuation tokens (pure) ----------------------------------------------------------------


def encode_continuation(token: dict | None) -> str | None:
    if not token:
        return None
    doc = {"v": 1, "pk": token.get("PartitionKey"), "rk": token.get("RowKey")}
    raw = json.dumps(doc, separators=(",", ":")).encode("utf-8")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def decode_continuation(text: str) -> dict:
    malformed = BadRequest("the continuation token is malformed; start again without one", field="continuation")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        doc = json.loads(raw.decode("utf-8"))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise malformed from None
    if not isinstance(doc, dict) or doc.get("v") != 1 or not isinstance(doc.get("pk"), str) \
            or not isinstance(doc.get("rk"), str | None):
        raise malformed
    return {"PartitionKey": doc["pk"], "RowKey": doc["rk"]}


# -- the store (I/O) --------------------------------------------------------------------------

_T = TypeVar("_T")


class RunStore:
    """Runs in one Azure table. ``requests`` counts the Table requests made, by operation."""

    def __init__(self, table_client: TableClient):
        self._table = table_client
        self.requests: Counter[str] = Counter()
        self._requests_lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings, **client_options: Any) -> RunStore:
        """A store on ``RUNS_TABLE_CONNECTION_STRING``, else ``RUNS_TABLE_ENDPOINT`` + managed identity.

        ``client_options`` override ``CLIENT_OPTIONS`` (e.g. ``retry_total=0`` for a health probe).
        """
        name = settings.runs_table_name
        options = {**CLIENT_OPTIONS, **client_options}
        if settings.runs_table_connection_string:
            try:
                client = TableClient.from_connection_string(
                    settings.runs_table_connection_string, table_name=name, **options)
            except (ValueError, TypeError):
                # Not chained: a parser's message may quote the string, account key included.
                raise SettingsError(["RUNS_TABLE_CONNECTION_STRING is not a valid Table Storage "
                                     "connection string"]) from None
            return cls(client)
        if settings.runs_table_endpoint:
            from azure.identity import DefaultAzureCredential  # lazy: only deployed apps need it

            credential = DefaultAzureCredential(managed_identity_client_id=settings.azure_client_id)
            try:
                client = TableClient(endpoint=settings.runs_table_endpoint, table_name=name,
                                     credential=credential, **options)
            except ValueError as err:
                raise SettingsError(["RUNS_TABLE_ENDPOINT is not a usable Table service URL"]) from err
            return cls(client)
        raise SettingsError(["RUNS_TABLE_CONNECTION_STRING or RUNS_TABLE_ENDPOINT is required"])

    @property
    def table_name(self) -> str:
        return self._table.table_name

    @property
    def table(self) -> TableClient:
        """The underlying client, for tests that inspect raw rows. App code uses the methods:
        they count requests and turn azure.core errors into AppErrors; this does neither."""
        return self._table

    # -- table ---------------------------------------------------------------------------------

    def ensure_table(self) -> None:
        """Create the table if it is missing; an existing table is fine."""
        try:
            self._call("create_table", self._table.create_table)
        except RunTableRefused as refused:
            if refused.status != 409:
                raise

    # -- create --------------------------------------------------------------------------------

    def create_run(self, run: Run, *, outbox: list[dict] = ()) -> Run:
        """Insert the run with its marker, time row and idempotency claim, all or nothing.

        ``outbox`` rows (``outbox_row``) are inserted in the same batch: an event is recorded
        exactly when its transition is. Raises IdempotencyKeyTaken(first_run_id) when the key is
        claimed already, RunAlreadyExists when the run id is, RunTooLarge when the row cannot fit.
        """
        run = self.prepare_run(run)
        operations = [("create", row) for row in [*new_run_rows(run), *outbox]]
        try:
            answers = self._call("batch", self._table.submit_transaction, operations)
        except RunTableRefused as refused:
            if refused.status == 409:
                raise self._claim_conflict(run) from None
            raise
        return replace(run, etag=answers[0].get("etag"))

    @staticmethod
    def prepare_run(run: Run) -> Run:
        """The run as it will be stored: keys checked, created_at stamped, secrets redacted, fitted."""
        for what, value in (("namespace", run.namespace), ("run_id", run.run_id)):
            if not _usable_key(value):
                raise ValueError(f"{what} {value!r} cannot be part of a table key")
        if run.created_at is None:
            run = replace(run, created_at=datetime.now(UTC))
        return fit_run(replace(run, parameters=redact_parameters(run.parameters)))

    def _claim_conflict(self, run: Run) -> Conflict:
        if run.idempotency_key is not None:
            # The claim and the winner's run row were written in one atomic batch, so the claim is
            # visible by now; retry briefly anyway rather than report the wrong conflict.
            for delay in _CLAIM_READ_DELAYS:
                time.sleep(delay)
                winner = self._idempotency_owner(run.namespace, run.idempotency_key)
                if winner is not None:
                    return IdempotencyKeyTaken(winner)
        return RunAlreadyExists(run.run_id)

    # -- reads ---------------------------------------------------------------------------------

    def get_run(self, namespace: str, run_id: str) -> Run | None:
        if not (_usable_key(namespace) and _usable_key(run_id)):
            return None
        entity = self._get(namespace, run_key(run_id))
        return None if entity is None else run_from_row(entity, entity.metadata.get("etag"))

    def get_run_by_idempotency_key(self, namespace: str, key: str) -> Run | None:
        run_id = self._idempotency_owner(namespace, key)
        return None if run_id is None else self.get_run(namespace, run_id)

    def _idempotency_owner(self, namespace: str, key: str) -> str | None:
        if not _usable_key(namespace):
            return None
        entity = self._get(namespace, idempotency_row_key(key))
        return None if entity is None else entity["run_id"]

    def _get(self, partition_key: str, row_key: str):
        try:
            return self._call("get", self._table.get_entity, partition_key, row_key)
        except RunTableRefused as refused:
            if refused.status == 404 and refused.error_code != "TableNotFound":
                return None
            raise

    # -- save ----------------------------------------------------------------------------------

    def save(self, run: Run, *, outbox: list[dict] = ()) -> Run:
        """Replace the run row if its ETag still matches; marker, time row and ``outbox`` rows follow
        in the same batch, so a transition and its event are written together or not at all.

        Raises StaleRun when another writer got there first (or the row is gone): re-read, re-apply.
        """
        if run.etag is None:
            raise ValueError(f"run {run.run_id} has no etag: save() updates stored runs (create_run first)")
        etag = run.etag
        run = self.prepare_run(run)
        update = ("update", run_row(run),
                  {"mode": UpdateMode.REPLACE, "etag": etag, "match_condition": MatchConditions.IfNotModified})
        index_row = ("upsert", time_row(run), {"mode": UpdateMode.REPLACE})
        events = [("upsert", row, {"mode": UpdateMode.REPLACE}) for row in outbox]
        if not run.terminal:
            answers = self._save_batch(run, [update, index_row, ("upsert", active_marker_row(run),
                                                                {"mode": UpdateMode.REPLACE}), *events])
        else:
            delete_marker = ("delete", {"PartitionKey": run.namespace, "RowKey": active_key(run.run_id)})
            try:
                answers = self._save_batch(run, [update, index_row, delete_marker, *events])
            except _MissingRow:
                # The marker went with an earlier terminal save (a terminal run saved again, e.g.
                # with diagnostics). A missing run row fails this second batch too, as StaleRun.
                answers = self._save_batch(run, [update, index_row, *events])
        return replace(run, etag=answers[0].get("etag"))

    def _save_batch(self, run: Run, operations: list) -> list:
        try:
            return self._call("batch", self._table.submit_transaction, operations)
        except RunTableRefused as refused:
            if refused.status == 412:
                raise StaleRun(run.run_id) from None
            if refused.status == 404 and refused.error_code != "TableNotFound":
                if (refused.index == 2 or refused.index is None) and len(operations) >= 3 \
                        and operations[2][0] == "delete":
                    raise _MissingRow from None
                raise StaleRun(run.run_id) from None
            raise

    # -- batched state changes -----------------------------------------------------------------

    def save_many(self, namespace: str, changes: list[StateChange], *, workers: int = BATCH_WORKERS,
                  unavailable: list[str] | None = None) -> list[str]:
        """Save runs' state changes decided from their active markers, in as few transactions as fit.

        Each run's rows go in one entity group transaction with other runs' (up to 100 operations
        and ``MAX_BATCH_BYTES`` each, a run never split): its state columns merged into the run
        row, its time row, its marker (replaced, or deleted when the run turned terminal, under the
        marker's ETag - which guards the run row too) and its ``outbox`` rows. A transaction refused
        with 412 or 404 (another writer changed or finished one of its runs) is tried again run by
        run. Returns the ids of the runs not saved: those that lost their race, and changes that
        cannot be merged (a marker without history, a column over the size limit); the caller
        reads them and saves them the per-run way (``save``).

        ``unavailable``: when given, a transaction that got no answer (twice) or a 5xx/429 does not
        raise: its runs' ids are appended there and the other transactions still go. Such a
        transaction may have landed or not; either way each run's marker tells the next reader
        (its ETag and state changed with it, or not), so a later save decides it again safely.
        """
        unsaved: list[str] = []
        planned: list[tuple[str, list]] = []
        for change in changes:
            operations = self._state_operations(namespace, change)
            if operations is None:
                unsaved.append(change.run.run_id)
            else:
                planned.append((change.run.run_id, operations))
        batches = list(_pack(planned))
        if len(batches) <= 1 or workers <= 1:
            results = [self._submit_runs(batch, unavailable) for batch in batches]
        else:
            import contextvars
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(max_workers=min(workers, len(batches)), thread_name_prefix="table-batch") as pool:
                # Each in a copy of the caller's context: log lines keep its correlation id.
                futures = [pool.submit(contextvars.copy_context().run, self._submit_runs, batch, unavailable)
                           for batch in batches]
                results = [f.result() for f in futures]
        for lost in results:
            unsaved.extend(lost)
        return unsaved

    @staticmethod
    def _state_operations(namespace: str, change: StateChange) -> list | None:
        marker, run = change.marker, change.run
        if not marker.complete or run.namespace != namespace or marker.run_id != run.run_id \
                or run.created_at is None:
            return None
        merged = state_columns_row(run)
        marker_row = active_marker_row(run)
        if oversized_properties(merged) or oversized_properties(marker_row):
            return None  # the per-run save fits the row (cuts the history) before writing
        guard = {"etag": marker.etag, "match_condition": MatchConditions.IfNotModified}
        operations: list = [("update", merged, {"mode": UpdateMode.MERGE}),
                            ("upsert", time_row(run), {"mode": UpdateMode.REPLACE})]
        if run.terminal:
            operations.append(("delete", {"PartitionKey": namespace, "RowKey": active_key(run.run_id)}, guard))
        else:
            operations.append(("update", marker_row, {"mode": UpdateMode.REPLACE, **guard}))
        operations.extend(("upsert", row, {"mode": UpdateMode.REPLACE}) for row in change.outbox)
        return operations

    def _submit_runs(self, batch: list[tuple[str, list]], unavailable: list[str] | None = None) -> list[str]:
        """One transaction for the runs of ``batch``; on 412/404 one per run. The runs not saved.

        A transaction whose answer was lost (a connection the service closed under it) is sent
        once more: replaying it is safe, every run in it is guarded by its marker's ETag (a
        replay of one that did land fails with 412 and is retried run by run like any other).
        Without an answer the second time either, its runs go to ``unavailable`` (when given).
        """
        operations = [op for _, ops in batch for op in ops]
        for attempt in range(2):
            try:
                self._call("batch", self._table.submit_transaction, operations)
                return []
            except ServiceUnavailable:
                if attempt:
                    if unavailable is None:
                        raise
                    log.warning("a transaction of %d runs got no answer twice; left for the next sweep", len(batch))
                    unavailable.extend(run_id for run_id, _ in batch)
                    return []
                log.info("a transaction of %d runs got no answer; sending it once more", len(batch))
            except RunTableRefused as refused:
                if not _lost_race(refused):
                    raise
                break
        if len(batch) == 1:
            return [batch[0][0]]
        lost: list[str] = []
        for run_id, operations in batch:
            try:
                self._call("batch", self._table.submit_transaction, operations)
            except ServiceUnavailable:
                if unavailable is None:
                    raise
                unavailable.append(run_id)
            except RunTableRefused as refused:
                if not _lost_race(refused):
                    raise
                lost.append(run_id)
        return lost

    # -- queries -------------------------------------------------------------------------------

    def list_active(self, namespace: str) -> list[ActiveRun]:
        """Every run in the namespace that is not terminal: one query per 1,000 of them."""
        if not _usable_key(namespace):
            return []
        active: list[ActiveRun] = []
        token = None
        while True:
            rows, token = self._query(
                "PartitionKey eq @pk and RowKey ge @lo and RowKey lt @hi",
                {"pk": namespace, "lo": ACTIVE_PREFIX, "hi": ACTIVE_PREFIX[:-1] + _RANGE_END},
                MAX_QUERY_PAGE, token)
            active.extend(active_run_from_row(row, namespace) for row in rows)
            if not token:
                return active

    def list_outbox(self, namespace: str, *, limit: int = MAX_QUERY_PAGE) -> list[OutboxEntry]:
        """Events recorded but not yet published, per run in transition order (one query)."""
        if not _usable_key(namespace):
            return []
        rows, _ = self._query(
            "PartitionKey eq @pk and RowKey ge @lo and RowKey lt @hi",
            {"pk": namespace, "lo": OUTBOX_PREFIX, "hi": OUTBOX_PREFIX[:-1] + _RANGE_END},
            limit, None)
        return [OutboxEntry(row["RowKey"], row["run_id"], json.loads(row["event"]),
                            row.get("_etag"), _plain_datetime(row.get("claimed_until"))) for row in rows]

    def claim_outbox(self, namespace: str, entries: list[OutboxEntry], until: datetime | None
                     ) -> list[OutboxEntry]:
        """Mark entries as being published until ``until`` (None releases them), each under its
        ETag: of two sweeps publishing at once, one claims and the other skips. Returns the entries
        claimed (with their new ETags), a prefix of ``entries`` (100 per atomic batch)."""
        claimed: list[OutboxEntry] = []
        for chunk in _chunks(entries, 100):
            # A None property is dropped by the SDK, and a MERGE would then keep the old lease:
            # a released entry gets a lease that ended at the epoch instead.
            operations = [("update", {"PartitionKey": namespace, "RowKey": e.row_key,
                                      "claimed_until": _EPOCH if until is None else _utc(until)},
                           {"mode": UpdateMode.MERGE, "etag": e.etag, "match_condition": MatchConditions.IfNotModified})
                          for e in chunk]
            try:
                answers = self._call("batch", self._table.submit_transaction, operations)
            except RunTableRefused as refused:
                if refused.status in (404, 412):
                    break
                raise
            claimed.extend(replace(e, etag=a.get("etag"), claimed_until=until) for e, a in zip(chunk, answers, strict=True))
        return claimed

    def delete_outbox(self, namespace: str, row_keys: list[str]) -> None:
        for chunk in _chunks(row_keys, 100):
            operations = [("delete", {"PartitionKey": namespace, "RowKey": key}) for key in chunk]
            try:
                self._call("batch", self._table.submit_transaction, operations)
            except RunTableRefused as refused:
                if refused.status != 404:
                    raise
                for key in chunk:  # one was gone already: delete the rest one by one
                    try:
                        self._call("delete", self._table.delete_entity, namespace, key)
                    except RunTableRefused as again:
                        if again.status != 404:
                            raise

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
        if not _usable_key(namespace):
            return [], None
        query = "PartitionKey eq @pk and RowKey ge @lo and RowKey lt @hi"
        parameters: dict[str, Any] = {"pk": namespace, "lo": TIME_PREFIX, "hi": TIME_PREFIX[:-1] + _RANGE_END}
        if status is not None:
            query += " and status eq @status"
            parameters["status"] = str(status)
        if external_id is not None:
            query += " and external_id eq @external_id"
            parameters["external_id"] = external_id
        runs: list[dict] = []
        for _ in range(_LIST_RUNS_HOPS):
            try:
                rows, token = self._query(query, parameters, page_size - len(runs), token)
            except RunTableRefused as refused:
                if continuation and refused.status == 400:
                    raise BadRequest("the continuation token is not valid here; start again without one",
                                     field="continuation") from None
                raise
            runs.extend(run_summary_from_row(row, namespace) for row in rows)
            if not token or len(runs) >= page_size:
                break
        return runs, encode_continuation(token)

    def _query(self, query: str, parameters: dict, page_size: int, token: dict | None
               ) -> tuple[list[dict], dict | None]:
        """One query request: one page of rows and the service's continuation (None at the end)."""
        pages = self._table.query_entities(query, parameters=parameters, results_per_page=page_size
                                           ).by_page(continuation_token=token)
        rows = self._call("query", lambda: [{**entity, "_etag": entity.metadata.get("etag")} for entity in next(pages)])
        return rows, pages.continuation_token

    # -- the one place azure.core exceptions are caught ----------------------------------------

    def _call(self, operation: str, fn: Callable[..., _T], *args: Any) -> _T:
        with self._requests_lock:
            self.requests[operation] += 1
        try:
            return fn(*args)
        except (ServiceRequestError, ServiceResponseError) as err:
            raise ServiceUnavailable("run table unreachable") from err
        except ClientAuthenticationError as err:
            raise RunTableRefused("run table refused the app's credential",
                                  status=err.status_code, error_code=_error_code(err)) from err
        except HttpResponseError as err:
            status = err.status_code
            if status is not None and (status >= 500 or status == 429):
                raise ServiceUnavailable(f"run table unreachable (HTTP {status})") from err
            code = _error_code(err)
            # Only the status and the service's error code: never the request, which holds run data.
            raise RunTableRefused(f"run table refused {operation} (HTTP {status}, {code})", status=status,
                                  error_code=code, index=getattr(err, "index", None)) from err
        except AzureError as err:
            raise ServiceUnavailable("run table unreachable") from err


def _pack(planned: list[tuple[str, list]]):
    """Runs' operation lists packed into transactions of at most MAX_BATCH_OPERATIONS operations
    and MAX_BATCH_BYTES (estimated), each run's operations kept together, in the given order."""
    batch: list[tuple[str, list]] = []
    count = size = 0
    for run_id, operations in planned:
        run_size = sum(entity_bytes(op[1]) + _BATCH_OPERATION_OVERHEAD for op in operations)
        if batch and (count + len(operations) > MAX_BATCH_OPERATIONS or size + run_size > MAX_BATCH_BYTES):
            yield batch
            batch, count, size = [], 0, 0
        batch.append((run_id, operations))
        count += len(operations)
        size += run_size
    if batch:
        yield batch


def _lost_race(refused: RunTableRefused) -> bool:
    """412 (a row changed since it was read) or 404 (a row is gone): another writer was first."""
    return refused.status == 412 or (refused.status == 404 and refused.error_code != "TableNotFound")


def _chunks(items: list, size: int):
    for i in range(0, len(items), size):
        yield items[i:i + size]


class _MissingRow(Exception):
    """A row a batch deleted or updated was not there (internal: save() decides what it means)."""


# -- small conversions ------------------------------------------------------------------------


def _error_code(err: AzureError) -> str | None:
    code = getattr(err, "error_code", None)
    return None if code is None else str(getattr(code, "value", code))


def _usable_key(value: str) -> bool:
    return isinstance(value, str) and 0 < len(value) <= 255 and not _FORBIDDEN_KEY_CHARS.search(value)


def _utc(value: datetime) -> datetime:
    # A naive datetime is taken as UTC: the SDK would read it as local time.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _utc_or_none(value: datetime | None) -> datetime | None:
    return None if value is None else _utc(value)


def _plain_datetime(value: datetime | None) -> datetime | None:
    """The SDK's datetime subclass as a plain aware datetime (equal to what was written)."""
    if value is None:
        return None
    value = _utc(value)
    return datetime(value.year, value.month, value.day, value.hour, value.minute, value.second,
                    value.microsecond, tzinfo=UTC)


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)


def _utf16_bytes(text: str) -> int:
    return len(text.encode("utf-16-le", "surrogatepass"))

