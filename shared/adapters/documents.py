"""Runs as the JSON documents every answer and the CLI show."""

from __future__ import annotations

from shared.runs.model import Run, parameter_changes
from shared.settings import Settings


def run_document(run: Run, settings: Settings) -> dict:
    return {
        "runId": run.run_id,
        "jobName": run.run_id,
        "namespace": run.namespace,
        "externalId": run.external_id,
        "status": str(run.status),
        "phase": str(run.phase),
        "reason": run.reason,
        "message": run.message,
        "terminal": run.terminal,
        "createdAt": _iso(run.created_at),
        "updatedAt": _iso(run.updated_at),
        "startedAt": _iso(run.started_at),
        "finishedAt": _iso(run.finished_at),
        "cancelRequestedAt": _iso(run.cancel_requested_at),
        "parameters": run.parameters,
        "attributes": run.attributes,
        "source": run.source,
        "sourceResourceVersion": run.source_resource_version,
        "specHash": run.spec_hash,
        "idempotencyKey": run.idempotency_key,
        "monitorUrl": settings.monitor_url,
        "history": run.history,
        "parameterChanges": parameter_changes(run),
        "rerunOf": run.rerun_of,
        "diagnostics": run.diagnostics,
    }


def _iso(value) -> str | None:
    return value.isoformat() if value is not None else None
