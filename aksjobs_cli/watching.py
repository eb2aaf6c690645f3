"""Watching a run until it ends: poll ``GET /api/runs/{runId}``, show progress, report the outcome.

On a terminal the progress is one live line (spinner, state, elapsed time) redrawn in place with
``\\r``; anywhere else (a pipe, a CI log) it is one plain line per change of state, because a
redrawn line there is only noise. The outcome is the run document's, mapped to an exit code by
``outcomes``; the app decides when a run is finished (its sweep moves runs on), this only asks.

Transient failures (no answer, 429, 502-504) are ridden out with the status line saying so, up to
``MAX_TRANSIENT_FAILURES`` in a row; any other API error ends the watch, since asking again will
not change a 404 or a refused key.

It deliberately does not cancel anything on Ctrl-C or on timeout: the run belongs to the app, and
stopping to watch is not stopping the run. Clock and sleep are injected, so the loop is testable
without waiting.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TextIO

from aksjobs_cli.calling import Api, ApiError, path_segment
from aksjobs_cli.outcomes import ExitCode, exit_code_for
from aksjobs_cli.rendering import outcome_line, run_elapsed, status_line

SPINNER = "|/-\\"  # ASCII: draws on any console and encoding
TICK_SECONDS = 0.1  # spinner redraw period between polls
MAX_TRANSIENT_FAILURES = 10
MAX_RETRY_AFTER_SECONDS = 30.0


@dataclass
class WatchResult:
    exit_code: ExitCode
    doc: dict | None  # the last run document seen
    message: str  # the closing line: outcome or timeout


class LiveLine:
    """One terminal line rewritten in place.

    Hazard: a line wider than the terminal wraps, and ``\\r`` then returns only to the start of the
    last row, leaving a trail of stale copies. Lines are cut to the width, and a shorter line is
    padded over the longer one it replaces (no ANSI needed, so old consoles draw it too).
    """

    def __init__(self, stream: TextIO, width: Callable[[], int] | None = None):
        self.stream = stream
        self._width = width or (lambda: shutil.get_terminal_size((80, 24)).columns)
        self._shown = 0

    def show(self, text: str) -> None:
        text = text[: max(self._width() - 1, 10)]
        self.stream.write("\r" + text + " " * max(self._shown - len(text), 0))
        self.stream.flush()
        self._shown = len(text)

    def end(self, text: str | None = None) -> None:
        if text is not None:
            self.show(text)
        if self._shown:
            self.stream.write("\n")
            self.stream.flush()
        self._shown = 0


def watch_run(api: Api, run_id: str, *, interval: float, timeout: float | None, progress: TextIO,
              live: bool, clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
              now: Callable[[], datetime] = lambda: datetime.now(UTC), first: dict | None = None) -> WatchResult:
    """Poll until the run is finished or ``timeout`` seconds pass; progress goes to ``progress``.

    ``first`` is a run document already in hand (a submit's answer): shown at once, then polled.

    Long on purpose: one loop (fetch, finished?, progress, deadline, wait) whose steps share the
    same few locals (last document, failures, note, spinner frame); split, they would be passed
    back and forth on every turn.
    """
    started = clock()
    deadline = started + timeout if timeout is not None else None
    line = LiveLine(progress) if live else None
    last_change = None
    frame = 0
    failures = 0
    doc = first
    note: str | None = None
    path = f"runs/{path_segment(run_id)}"
    fetched = first is not None
    while True:
        wait = interval
        if not fetched:
            try:
                doc = api.get(path).doc
                failures, note = 0, None
            except ApiError as err:
                failures += 1
                if not err.transient or failures > MAX_TRANSIENT_FAILURES:
                    if line is not None:
                        line.end()
                    raise
                note = f"retrying: {err.describe()}"
                if err.retry_after is not None:
                    wait = max(interval, min(err.retry_after, MAX_RETRY_AFTER_SECONDS))
        fetched = False
        shown = doc if isinstance(doc, dict) else {"runId": run_id, "status": "?"}

        code = exit_code_for(shown) if isinstance(doc, dict) else None
        if code is not None:
            message = outcome_line(shown, run_elapsed(shown, now()))
            if line is not None:
                line.end(status_line(shown, elapsed=run_elapsed(shown, now())))
            elif _change(shown, None) != last_change:
                progress.write(status_line(shown, elapsed=run_elapsed(shown, now())) + "\n")
            return WatchResult(code, doc, message)

        if line is None:
            change = _change(shown, note)
            if change != last_change:
                progress.write(status_line(shown, elapsed=run_elapsed(shown, now()), note=note) + "\n")
                progress.flush()
                last_change = change

        if deadline is not None and clock() >= deadline:
            if line is not None:
                line.end()
            return WatchResult(ExitCode.TIMEOUT, doc if isinstance(doc, dict) else None,
                               f"timed out after {timeout:g}s; run {run_id} is still {_state(shown)}")

        until = clock() + wait
        if deadline is not None:
            until = min(until, deadline)
        while True:
            if line is not None:
                line.show(status_line(shown, elapsed=run_elapsed(shown, now()),
                                      frame=SPINNER[frame % len(SPINNER)], note=note))
                frame += 1
            remaining = until - clock()
            if remaining <= 0:
                break
            sleep(min(TICK_SECONDS, remaining) if line is not None else remaining)


def _change(doc: dict, note: str | None) -> tuple:
    return (doc.get("status"), doc.get("phase"), doc.get("reason"), note is not None)


def _state(doc: dict) -> str:
    status, phase = doc.get("status"), doc.get("phase")
    return f"{status} ({phase})" if phase and phase != status else str(status)
