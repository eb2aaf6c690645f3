"""Rendering: the API's JSON documents as text for a person at a terminal.

Pure: documents (and ``now``) in, strings out; the commands print them. ``--json`` bypasses this
module entirely, so nothing here is a contract for scripts.

Hazard: much of what is shown comes from the cluster, not from the app - a container's
termination message, an event's text, a log line. Printed raw, an escape sequence in it would be
interpreted by the operator's terminal (retitle it, move the cursor, hide text). Every string from
a document goes through ``clean``, which makes control characters visible instead.

It deliberately does not show everything: tables keep to what fits a terminal, diagnostics are
cut to a bounded number of lines, and ``status --json`` has the rest.
"""

from __future__ import annotations

import re
import shlex
from datetime import UTC, datetime

MISSING = "-"
MAX_CELL_CHARS = 60
MAX_DIAGNOSTIC_LINES = 40
MAX_DIAGNOSTIC_VALUE_CHARS = 200
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def clean(value: object, *, limit: int | None = None) -> str:
    """One line of text, control characters shown as ``\\xNN`` (``\\n`` as a space), cut at ``limit``."""
    if value is None or value == "":
        return MISSING
    text = str(value).replace("\r\n", " ").replace("\n", " ").replace("\t", " ")
    text = _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)
    if limit is not None and len(text) > limit:
        text = text[: max(limit - 3, 1)] + "..."
    return text


def format_duration(seconds: float | None) -> str:
    """``45s``, ``3m07s``, ``2h05m09s``, ``1d02h03m``; ``-`` when unknown."""
    if seconds is None:
        return MISSING
    s = max(0, int(seconds))
    days, s = divmod(s, 86400)
    hours, s = divmod(s, 3600)
    minutes, s = divmod(s, 60)
    if days:
        return f"{days}d{hours:02d}h{minutes:02d}m"
    if hours:
        return f"{hours}h{minutes:02d}m{s:02d}s"
    if minutes:
        return f"{minutes}m{s:02d}s"
    return f"{s}s"


def parse_time(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def run_elapsed(doc: dict, now: datetime) -> float | None:
    """Seconds since the run was created: to ``finishedAt`` once finished, else to ``now``.

    A finished run's duration uses only the app's timestamps. A running one compares the app's
    ``createdAt`` with this machine's clock; a clock behind the app's would go negative, so it is
    held at zero.
    """
    created = parse_time(doc.get("createdAt"))
    if created is None:
        return None
    end = parse_time(doc.get("finishedAt")) or now
    return max(0.0, (end - created).total_seconds())


def table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]
    lines = [headers, *rows]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
                     for line in lines)


def name_list(names: list[str], limit: int = MAX_CELL_CHARS) -> str:
    """Names joined with ``,`` until ``limit``; the rest counted (``A,B (+3 more)``)."""
    if not names:
        return MISSING
    shown: list[str] = []
    for i, name in enumerate(names):
        rest = len(names) - i
        candidate = ",".join([*shown, name])
        if len(candidate) > limit and shown:
            return f"{','.join(shown)} (+{rest} more)"
        shown.append(name)
    return ",".join(shown)


def command_line(value: object) -> str:
    if isinstance(value, list) and all(isinstance(a, str) for a in value):
        return clean(shlex.join(value)) if value else MISSING
    return clean(value)


# ------------------------------------------------------------------------- jobs


def jobs_table(jobs: list[dict]) -> str:
    rows = [[clean(job.get("externalId")),
             clean(job.get("image"), limit=MAX_CELL_CHARS),
             name_list([clean(p.get("name")) for p in job.get("parameters") or [] if isinstance(p, dict)]),
             str(len(job.get("advice") or []))]
            for job in jobs]
    return table(["EXTERNAL ID", "IMAGE", "PARAMETERS", "ADVICE"], rows)


def job_details(job: dict) -> str:
    lines = [
        f"externalId: {clean(job.get('externalId'))}",
        f"namespace:  {clean(job.get('namespace'))}",
        f"image:      {clean(job.get('image'))}",
        f"command:    {command_line(job.get('command'))}",
        f"args:       {command_line(job.get('args'))}",
    ]
    params = [p for p in job.get("parameters") or [] if isinstance(p, dict)]
    if params:
        lines.append("parameters:")
        rows = [[clean(p.get("name")),
                 MISSING if p.get("valueFrom") else clean(p.get("default"), limit=MAX_CELL_CHARS),
                 f"valueFrom {clean(p.get('valueSource'))}" if p.get("valueFrom") else "value"]
                for p in params]
        lines += ["  " + line for line in table(["NAME", "DEFAULT", "FROM"], rows).splitlines()]
    else:
        lines.append("parameters: none (containers[0] has no env)")
    env_from = [clean(e) for e in job.get("envFrom") or []]
    if env_from:
        lines.append(f"envFrom:    {', '.join(env_from)} (not parameters: runs cannot override them)")
    advice = [a for a in job.get("advice") or [] if isinstance(a, dict)]
    if advice:
        lines.append("advice:")
        lines += [f"  - {clean(a.get('code'))}: {clean(a.get('message'))}" for a in advice]
    else:
        lines.append("advice:     none")
    return "\n".join(lines)


# ------------------------------------------------------------------------- runs


def runs_table(runs: list[dict]) -> str:
    # The API's run list carries summaries (no reason or message): `status RUN_ID` has those.
    rows = [[clean(r.get("runId")), clean(r.get("externalId")), clean(r.get("status")), clean(r.get("phase")),
             clean(r.get("createdAt"))]
            for r in runs]
    return table(["RUN ID", "EXTERNAL ID", "STATUS", "PHASE", "CREATED"], rows)


def state_text(doc: dict) -> str:
    """``Running``, ``Starting (Stalled: ImagePullBackOff)``, ``Failed: BackoffLimitExceeded``."""
    status, phase, reason = doc.get("status"), doc.get("phase"), doc.get("reason")
    text = clean(status)
    if phase and phase != status:
        text += f" ({clean(phase)}"
        text += f": {clean(reason, limit=40)})" if reason else ")"
    elif reason:
        text += f": {clean(reason, limit=40)}"
    return text


def status_line(doc: dict, *, elapsed: float | None, frame: str = "", note: str | None = None) -> str:
    """The watch's one-line status: spinner frame, run, state, elapsed time, and a transient note."""
    parts = [frame] if frame else []
    parts += [clean(doc.get("runId")), state_text(doc), format_duration(elapsed)]
    if note:
        parts.append(f"[{clean(note, limit=60)}]")
    return "  ".join(parts)


def outcome_line(doc: dict, elapsed: float | None) -> str:
    """The line a watch ends with: the outcome, in how long, and the app's message."""
    text = f"run {clean(doc.get('runId'))} finished: {state_text(doc)} after {format_duration(elapsed)}"
    if doc.get("message"):
        text += f": {clean(doc.get('message'), limit=300)}"
    return text


def parameters_text(params: list) -> str:
    # The app has already replaced Secret values by "***": they are shown as it sent them.
    items = [f"{clean(p.get('name'))}={clean(p.get('value'), limit=MAX_CELL_CHARS)}"
             for p in params if isinstance(p, dict)]
    return ", ".join(items) if items else "none"


def run_details(doc: dict, now: datetime) -> str:
    lines = [
        f"run:        {clean(doc.get('runId'))}",
        f"externalId: {clean(doc.get('externalId'))}",
        f"namespace:  {clean(doc.get('namespace'))}",
        f"status:     {clean(doc.get('status'))}",
        f"phase:      {clean(doc.get('phase'))}",
        f"reason:     {clean(doc.get('reason'))}",
        f"message:    {clean(doc.get('message'))}",
        f"created:    {clean(doc.get('createdAt'))}",
        f"started:    {clean(doc.get('startedAt'))}",
        f"finished:   {clean(doc.get('finishedAt'))}",
        f"elapsed:    {format_duration(run_elapsed(doc, now))}",
        f"parameters: {parameters_text(doc.get('parameters') or [])}",
        f"source:     {clean(doc.get('source'))}",
        f"monitor:    {clean(doc.get('monitorUrl'))}",
    ]
    history = [h for h in doc.get("history") or [] if isinstance(h, dict)]
    if history:
        lines.append("history:")
        rows = [[clean(h.get("at")), clean(h.get("status")), clean(h.get("phase")), clean(h.get("reason"))]
                for h in history]
        lines += ["  " + line for line in table(["AT", "STATUS", "PHASE", "REASON"], rows).splitlines()]
    if doc.get("diagnostics"):
        lines.append("diagnostics:")
        lines += ["  " + line for line in diagnostics_lines(doc["diagnostics"])]
    return "\n".join(lines)


def diagnostics_lines(diagnostics: object, limit: int = MAX_DIAGNOSTIC_LINES) -> list[str]:
    """A failure capture as indented ``key: value`` lines, at most ``limit`` of them.

    The capture's shape belongs to the app and may grow; this walks whatever it is rather than
    knowing its fields, and says how much it left out.
    """
    lines: list[str] = []
    _walk(diagnostics, 0, lines)
    if len(lines) > limit:
        left = len(lines) - limit
        lines = [*lines[:limit], f"... {left} more line(s): use `status --json` for the full capture"]
    return lines


def _walk(value: object, depth: int, out: list[str], key: str | None = None) -> None:
    pad = "  " * depth
    label = f"{clean(key)}:" if key is not None else "-"
    if isinstance(value, dict):
        if key is not None:
            out.append(f"{pad}{label}")
            depth += 1
        for k, v in value.items():
            _walk(v, depth, out, str(k))
    elif isinstance(value, list):
        if key is not None:
            out.append(f"{pad}{label}" + ("" if value else " []"))
        for item in value:
            if isinstance(item, dict | list):
                out.append(f"{'  ' * (depth + 1)}-")
                _walk(item, depth + 2, out)
            else:
                out.append(f"{'  ' * (depth + 1)}- {clean(item, limit=MAX_DIAGNOSTIC_VALUE_CHARS)}")
    else:
        out.append(f"{pad}{label} {clean(value, limit=MAX_DIAGNOSTIC_VALUE_CHARS)}")
