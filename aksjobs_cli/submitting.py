"""Submitting: the bodies of ``POST /api/jobs/{externalId}/runs`` and ``POST /api/runs/{runId}/rerun``
from the operator's options.

Pure: options in, a JSON-ready dict out. Validation of names and values is the app's (it knows
the Kubernetes rules and answers with the field at fault); this module only refuses what it
cannot turn into a body at all, such as ``-p`` without ``=``.

The body always uses the list form of ``parameters`` with explicit ``dataType``s, because that is
the only form that can say ``Secret``, and always carries the ``parameters`` key, so the app never
mistakes it for the flat ``{NAME: value}`` shape Polysync sends.

Secret values: they go into the body and nowhere else. No message here repeats an option's text,
because the text of a ``--secret`` option is the secret. ``--secret NAME`` (no ``=``) reads the
value from the environment variable ``NAME``, so it need not appear on a command line at all
(command lines are visible in ``ps`` and shell history).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass


class UsageError(Exception):
    """The command line cannot be turned into a request; exit code 3, like an API error."""


@dataclass(frozen=True)
class Assignment:
    name: str
    value: str
    data_type: str = "String"

    def __repr__(self) -> str:  # never a value: it may be a secret
        return f"Assignment({self.name!r}, {self.data_type})"


def parse_parameter(text: str) -> Assignment:
    """``-p NAME=value``: split at the first ``=``; the value may be empty or contain ``=``."""
    name, sep, value = text.partition("=")
    if not sep:
        raise UsageError(f"-p expects NAME=value; {name[:60]!r} has no '='")
    if not name:
        raise UsageError("-p expects NAME=value; the name before '=' is empty")
    return Assignment(name, value)


def parse_secret(text: str, environ: Mapping[str, str]) -> Assignment:
    """``--secret NAME=value``, or ``--secret NAME`` to take the value from environment variable NAME."""
    name, sep, value = text.partition("=")
    if not name:
        raise UsageError("--secret expects NAME=value or NAME; the name is empty")
    if not sep:
        if name not in environ:
            raise UsageError(f"--secret {name[:60]}: no '=value' given and no environment variable of that name")
        value = environ[name]
    return Assignment(name, value, "Secret")


def submit_body(parameters: Sequence[Assignment], *, image: str | None = None, command: str | None = None,
                args: str | None = None, idempotency_key: str | None = None) -> dict:
    """The submit request body.

    ``command`` and ``args`` are passed as the operator wrote them: the app accepts a JSON array of
    strings or a plain command line and splits it the one documented way. They, and ``image``, are
    the fallback used only when the source Job no longer exists (the job type's Container Image /
    Command / Args attributes); a live source Job always runs as it is defined.
    """
    body: dict = {"parameters": [{"name": p.name, "value": p.value, "dataType": p.data_type} for p in parameters]}
    attributes = {key: value for key, value in (("containerImage", image), ("containerCommand", command),
                                                ("containerArgs", args)) if value}
    if attributes:
        body["attributes"] = attributes
    if idempotency_key:
        body["idempotencyKey"] = idempotency_key
    return body


def rerun_body(secrets: Sequence[Assignment], *, idempotency_key: str | None = None) -> dict:
    """The rerun request body: only the run's Secret values (the app keeps every other value, and
    refuses anything else), and an idempotency key for the rerun itself."""
    body: dict = {"parameters": [{"name": p.name, "value": p.value, "dataType": "Secret"} for p in secrets]}
    if idempotency_key:
        body["idempotencyKey"] = idempotency_key
    return body
