"""Outcomes: what a run document means for the CLI's exit code.

Scripts branch on the exit code of ``watch`` and ``submit --watch``, so the mapping lives in one
place and is documented in docs/cli.md. Whether a run is finished is the app's call (its
``terminal`` flag, which follows the phase: a run whose status already says Failed may still be
*Failing*, pods terminating), not something re-derived here.
"""

from __future__ import annotations

from enum import IntEnum

TERMINAL_STATUSES = ("Success", "Failed", "Cancelled")
STATUSES = ("Starting", "Running", "Success", "Failed", "Cancelled", "Unknown")


class ExitCode(IntEnum):
    SUCCESS = 0
    FAILED = 1  # Failed, and Lost (the Job vanished without a terminal state or a cancel of ours)
    CANCELLED = 2
    ERROR = 3  # usage or API error
    TIMEOUT = 4  # watch --timeout passed before the run finished
    INTERRUPTED = 130  # Ctrl-C, as shells report SIGINT


def is_terminal(doc: dict) -> bool:
    if isinstance(doc.get("terminal"), bool):
        return doc["terminal"]
    return doc.get("status") in TERMINAL_STATUSES  # an app that does not send the flag


def exit_code_for(doc: dict) -> ExitCode | None:
    """The exit code for a finished run; None while it is not finished."""
    if not is_terminal(doc):
        return None
    status = doc.get("status")
    if status == "Success":
        return ExitCode.SUCCESS
    if status == "Cancelled":
        return ExitCode.CANCELLED
    return ExitCode.FAILED  # Failed, Lost, and any terminal state this CLI does not know
