"""The Job a run starts from: the source Job cloned (or the fallback spec built from attributes),
and what the run changes against it, recorded at submit as an annotation of the rendered Job."""

from __future__ import annotations

import json

from shared.errors import NotFound
from shared.kube import discovery, jobspec
from shared.runs.model import REDACTED
from shared.usecases.collaborators import Collaborators

MAX_SOURCE_VALUE_CHARS = 256  # a source default kept in the parameter-changes annotation
MAX_PARAMETER_CHANGES_CHARS = 16 * 1024  # annotations share 256 KiB per object


def template_for(c: Collaborators, namespace: str, external_id: str, attributes: dict) -> tuple[dict, str, str | None]:
    """(template, source, source resourceVersion): the source Job cloned, or the fallback spec when
    it is gone and attributes allow one."""
    try:
        source = discovery.read_source_job(c.kube, namespace, external_id)
    except NotFound:
        if not attributes:
            raise NotFound(
                f"Source Job {external_id!r} not found in namespace {namespace!r}, and no "
                "fallback attributes were given: set containerImage / containerCommand / "
                "containerArgs to run it without a source Job",
                field="externalId") from None
        return jobspec.fallback_job(external_id, attributes), "fallback", None
    return jobspec.clone_source_job(source), "job", (source.get("metadata") or {}).get("resourceVersion")


def recorded_parameter_changes(template: dict, parameters: list[jobspec.Parameter]) -> str:
    """The parameter-changes annotation (JSON) for a run of ``template`` - the cloned source Job or
    the fallback spec, before the overlay - with ``parameters``.

    One entry per variable the run adds (``"change": "added"``) or sets to another value than the
    source's (``"overridden"``, with ``from``: the source's literal cut to ``MAX_SOURCE_VALUE_CHARS``,
    or ``valueFrom: <kind>`` when the source read it from a Secret, ConfigMap or field). Secret
    parameters are marked ``"secret": true``, never compared (``unchanged`` would confirm a guess),
    and their source literal is ``***``. Recorded at submit, because the source Job may change or
    vanish before anyone asks; kept under ``MAX_PARAMETER_CHANGES_CHARS`` (``from`` values go first).
    """
    spec = ((template.get("spec") or {}).get("template") or {}).get("spec") or {}
    containers = spec.get("containers") or []
    env = containers[0].get("env") if containers and isinstance(containers[0], dict) else None
    source: dict[str, dict] = {}
    for item in env or []:
        if isinstance(item, dict) and isinstance(item.get("name"), str):
            source[item["name"]] = item  # a repeated name: the last entry is the one the container sees
    changes: list[dict] = []
    for p in parameters:
        before = source.get(p.name)
        entry: dict = {"name": p.name, "change": "overridden"}
        if before is None:
            entry = {"name": p.name, "change": "added", "from": None}
        elif isinstance(before.get("valueFrom"), dict):
            entry["from"] = f"valueFrom: {next(iter(before['valueFrom']), '?')}"
        elif p.secret:
            entry["from"] = REDACTED
        else:
            value = str(before.get("value") or "")
            if value == p.value:
                continue
            entry["from"] = value if len(value) <= MAX_SOURCE_VALUE_CHARS else value[:MAX_SOURCE_VALUE_CHARS - 1] + "…"
        if p.secret:
            entry["secret"] = True
        changes.append(entry)
    text = json.dumps(changes, separators=(",", ":"), ensure_ascii=False)
    if len(text) > MAX_PARAMETER_CHANGES_CHARS:
        changes = [{k: v for k, v in c.items() if k != "from"} for c in changes]
        text = json.dumps(changes, separators=(",", ":"), ensure_ascii=False)
    while len(text) > MAX_PARAMETER_CHANGES_CHARS and changes:
        changes = changes[: len(changes) // 2]
        text = json.dumps([*changes, {"truncated": True}], separators=(",", ":"), ensure_ascii=False)
    return text


def annotate(job: dict, key: str, value: str) -> None:
    meta = job.setdefault("metadata", {})
    if not isinstance(meta.get("annotations"), dict):
        meta["annotations"] = {}
    meta["annotations"][key] = value


def index_reserve(template: dict) -> int:
    """Characters an Indexed Job's pod names add to the run id ("-<index>"), kept free in it."""
    spec = template.get("spec") or {}
    if spec.get("completionMode") == "Indexed":
        return len(f"-{max(int(spec.get('completions') or 1) - 1, 0)}")
    return 0
