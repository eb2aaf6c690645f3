"""Correlation ids in every log line of a request, without threading a logger through the code.

An HTTP answer carries ``x-correlation-id``; every line the app logs while serving that request
starts with the same id, so an operator can go from a caller's error to the server-side story.
The id lives in a context variable (safe with threads and asyncio) and is stamped onto log records
by a record factory, which reaches records of every logger, including the SDKs', whatever handlers
the Functions host installs.
"""

from __future__ import annotations

import contextvars
import logging
import re
import uuid
from contextlib import contextmanager

_correlation_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("correlation_id", default=None)
_VALID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_installed = False


def current_correlation_id() -> str | None:
    return _correlation_id.get()


def new_correlation_id(incoming: str | None = None) -> str:
    """The caller's id when it is a sane token, else a fresh one (never echo arbitrary input)."""
    if incoming and _VALID.fullmatch(incoming):
        return incoming
    return uuid.uuid4().hex


@contextmanager
def correlation(cid: str):
    install()
    token = _correlation_id.set(cid)
    try:
        yield cid
    finally:
        _correlation_id.reset(token)


def install() -> None:
    """Stamp ``correlation_id`` on every record and prefix the app's own messages with it."""
    global _installed
    if _installed:
        return
    _installed = True
    # The SDKs' per-request HTTP logging (headers of every Table call) drowns the app's own lines
    # and costs Application Insights ingestion; failures still surface through the app's errors.
    logging.getLogger("azure.core.pipeline.policies.http_logging_policy").setLevel(logging.WARNING)
    logging.getLogger("azure.identity").setLevel(logging.WARNING)
    previous = logging.getLogRecordFactory()

    def factory(*args, **kwargs):
        record = previous(*args, **kwargs)
        cid = _correlation_id.get()
        record.correlation_id = cid
        if cid and isinstance(record.msg, str) and not record.msg.startswith("[cid="):
            record.msg = f"[cid={cid}] {record.msg}"
        return record

    logging.setLogRecordFactory(factory)
