"""The sweep queue trigger: one message, one shard of the sweep, under its own correlation id.

A message is ``{"kind": "sweep", "namespace": NAME}`` (``shared.usecases.sweeping.fan_out`` sends
them). A message that is not one, or that names a namespace the app may not use, is logged and
dropped: raising would only have the Functions host deliver it again, five times, then park it in
the poison queue. A failure while sweeping (the table or the cluster unreachable) does raise, so the
host delivers the message again; a redelivered or duplicate message is harmless (every write is
ETag-guarded, and a shard swept twice writes nothing the second time).
"""

from __future__ import annotations

import json
import logging

from shared import composition, logs

log = logging.getLogger(__name__)


def run_sweep_shard(body: bytes | str) -> dict | None:
    """Sweep the shard a queue message names; the summary as logged, or None for a dropped message."""
    from shared.usecases import sweeping  # lazy: the use cases load at the first sweep (cold start)

    with logs.correlation(logs.new_correlation_id()):
        try:
            message = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            log.warning("sweep queue: dropped a message that is not JSON")
            return None
        c = composition.collaborators()
        namespace = message.get("namespace") if isinstance(message, dict) else None
        if not isinstance(message, dict) or message.get("kind") != "sweep" or not isinstance(namespace, str):
            log.warning("sweep queue: dropped a message that is not a sweep shard")
            return None
        if namespace not in c.settings.allowed_namespaces:
            log.warning("sweep queue: dropped a shard of namespace %r, which is not in ALLOWED_NAMESPACES",
                        namespace[:64])
            return None
        return sweeping.sweep_namespace(c, namespace).as_dict()
