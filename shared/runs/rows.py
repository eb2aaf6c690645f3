"""A run as rows of Azure Table Storage, and back: keys, row mapping, size limits, page tokens (pure).

Nothing here makes a request or catches an ``azure.core`` exception: the store's parts
(``shared.runs.store``) send these rows. The clock is read only to stamp a run prepared without
``created_at``.

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
  when the run row does: a change decided from a marker is guarded by the marker's ETag and
  merges only the state columns (``state_columns_row``) into the run row, without reading it.
- ``time|{9999999999999 - created_at epoch ms, 13 digits}|{run_id}``: the time index (run id,
  external id, status, phase, created_at). Row keys sort ascending, so this range lists runs
  newest first, filtered server-side by status and external id. A run's ``created_at`` and
  ``external_id`` never change after it is created: the time row's key depends on them.
- ``idem|{sha256(idempotency key) hex}``: the idempotency claim, pointing at the run id. Keys are
  hashed because callers may send characters row keys forbid (``/ \\ # ?``). Keys are scoped to
  a namespace, like everything else in a partition.
- ``outbox|...``: events waiting to be published (``shared.runs.outbox``).
- ``lease|outbox``: the namespace's publish lease: until when one publisher may publish its outbox.

Limits: Table Storage refuses an entity over 1 MiB or a string property over 64 KiB (32 K UTF-16
code units). Before writing, the history is cut to its newest entries and the diagnostics'
longest texts and lists are shortened (marked ``"truncated": true``); whatever still does not fit
is refused with ``RunTooLarge`` naming the property, before anything is sent. ``Secret``-typed
parameter values are replaced by ``***`` here too, whatever the caller already did.

Continuation tokens: the service's (partition key, row key) continuation of a run list, as an
opaque URL-safe string for the HTTP caller, and back (a malformed one is a ``BadRequest``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.errors import BadRequest
from shared.runs.errors import RunTooLarge
from shared.runs.markers import ActiveRun
from shared.runs.model import Phase, Run, Status

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
REDACTED = "***"

RUN_PREFIX = "run|"
ACTIVE_PREFIX = "active|"
TIME_PREFIX = "time|"
IDEM_PREFIX = "idem|"
# '}' is the character after '|': "prefix <= RowKey < prefix-with-'}'" is exactly one prefix range.
RANGE_END = "}"
PREFIX_QUERY = "PartitionKey eq @pk and RowKey ge @lo and RowKey lt @hi"

_INVERTED_MS_BASE = 9_999_999_999_999
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

MAX_ENTITY_BYTES = 1024 * 1024
MAX_PROPERTY_BYTES = 64 * 1024
_HISTORY_KEEP_STEPS = (10, 1, 0)
# (longest string kept, longest list kept) for each shrinking step of the diagnostics.
_DIAGNOSTICS_STEPS = ((4096, 100), (1024, 30), (256, 10), (64, 3))

# Characters Table Storage refuses in PartitionKey / RowKey values.
_FORBIDDEN_KEY_CHARS = re.compile(r"[/\\#?\x00-\x1f\x7f-\x9f]")


# -- keys -------------------------------------------------------------------------------------


def run_key(run_id: str) -> str:
    return RUN_PREFIX + run_id


def active_key(run_id: str) -> str:
    return ACTIVE_PREFIX + run_id


def time_key(created_at: datetime, run_id: str) -> str:
    ms = (utc(created_at) - EPOCH) // timedelta(milliseconds=1)
    return f"{TIME_PREFIX}{_INVERTED_MS_BASE - ms:013d}|{run_id}"


def idempotency_row_key(key: str) -> str:
    return IDEM_PREFIX + hashlib.sha256(key.encode("utf-8")).hexdigest()


def prefix_parameters(namespace: str, prefix: str) -> dict[str, str]:
    """The parameters of ``PREFIX_QUERY``: every row of ``namespace`` whose key starts with ``prefix``."""
    return {"pk": namespace, "lo": prefix, "hi": prefix[:-1] + RANGE_END}


# -- rows -------------------------------------------------------------------------------------


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


# The run row's columns a state change writes (a batched state write merges just these).
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
        "created_at": utc(run.created_at),
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


def prepare_run(run: Run) -> Run:
    """The run as it will be stored: keys checked, created_at stamped, secrets redacted, fitted."""
    for what, value in (("namespace", run.namespace), ("run_id", run.run_id)):
        if not usable_key(value):
            raise ValueError(f"{what} {value!r} cannot be part of a table key")
    if run.created_at is None:
        run = replace(run, created_at=datetime.now(UTC))
    return fit_run(replace(run, parameters=redact_parameters(run.parameters)))


def new_run_rows(run: Run) -> list[dict]:
    """Every row a new run is inserted with, run row first (its answer carries the ETag).

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
        created_at=plain_datetime(row.get("created_at")),
        updated_at=plain_datetime(row.get("updated_at")),
        started_at=plain_datetime(row.get("started_at")),
        finished_at=plain_datetime(row.get("finished_at")),
        idempotency_key=row.get("idempotency_key"),
        parameters=json.loads(row.get("parameters") or "[]"),
        attributes=json.loads(row.get("attributes") or "{}"),
        source=row.get("source") or "job",
        source_resource_version=row.get("source_resource_version"),
        spec_hash=row.get("spec_hash"),
        cancel_requested_at=plain_datetime(row.get("cancel_requested_at")),
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
        cancel_requested_at=plain_datetime(row.get("cancel_requested_at")),
        missing_sweeps=int(row.get("missing_sweeps") or 0),
        held_at_create=row.get("held_at_create") is True,
        created_at=plain_datetime(row.get("created_at")),
        external_id=row["external_id"],
        job_name=row.get("job_name") or row["run_id"],
        updated_at=plain_datetime(row.get("updated_at")),
        started_at=plain_datetime(row.get("started_at")),
        history=None if history is None else json.loads(history),
        etag=row.get("_etag"),
    )


def run_summary_from_row(row: dict, namespace: str) -> dict:
    """One line of the run list, from the time index, already in the run document's JSON words."""
    created_at = plain_datetime(row.get("created_at"))
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


# -- size limits ------------------------------------------------------------------------------


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


# -- continuation tokens ----------------------------------------------------------------------


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


# -- small conversions ------------------------------------------------------------------------


def usable_key(value: str) -> bool:
    return isinstance(value, str) and 0 < len(value) <= 255 and not _FORBIDDEN_KEY_CHARS.search(value)


def utc(value: datetime) -> datetime:
    # A naive datetime is taken as UTC: the SDK would read it as local time.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _utc_or_none(value: datetime | None) -> datetime | None:
    return None if value is None else utc(value)


def plain_datetime(value: datetime | None) -> datetime | None:
    """The SDK's datetime subclass as a plain aware datetime (equal to what was written)."""
    if value is None:
        return None
    value = utc(value)
    return datetime(value.year, value.month, value.day, value.hour, value.minute, value.second,
                    value.microsecond, tzinfo=UTC)


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)


def _utf16_bytes(text: str) -> int:
    return len(text.encode("utf-16-le", "surrogatepass"))

