"""Per-run signed URLs: the status, run and cancel links a submit hands out open without a key.

A poller that does not resend the submit's headers (Polysync, Logic Apps, a browser) must still
be able to follow the links, and a function key or bearer token must never be copied into a URL.
So each link carries ``sig``: an HMAC-SHA256, keyed with ``RUN_URL_SIGNING_KEY``, over the run id,
its namespace and the verb (``poll``, ``run``, ``cancel``). A link opens only its own run and only
for its verb; it is checked in constant time (``hmac.compare_digest``) against every configured
key, so keys rotate by listing the new one first and the old one after it until the runs signed
with it are done.

Without ``RUN_URL_SIGNING_KEY`` (a developer machine), a random key is made once per process and
a warning says so: links work until the process restarts and only on that process. Azure always
has one (Bicep sets it), so links work on every instance and across restarts.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets
import threading

from shared.settings import Settings

log = logging.getLogger(__name__)

VERBS = ("poll", "run", "cancel")
SIGNATURE_CHARS = 43  # 256 bits, base64url without padding
_DOMAIN = b"aks-jobs run url v1"

_process_key: str | None = None
_process_key_lock = threading.Lock()


def _keys(settings: Settings) -> tuple[str, ...]:
    global _process_key
    if settings.run_url_signing_keys:
        return settings.run_url_signing_keys
    with _process_key_lock:
        if _process_key is None:
            _process_key = secrets.token_urlsafe(32)
            log.warning("RUN_URL_SIGNING_KEY is not set: signing run URLs with a key made for this process; "
                        "they stop working when it restarts and are refused by other instances")
        return (_process_key,)


def _mac(key: str, run_id: str, namespace: str, verb: str) -> str:
    if verb not in VERBS:
        raise ValueError(f"verb must be one of {VERBS}")
    message = b"\n".join((_DOMAIN, namespace.encode(), run_id.encode(), verb.encode()))
    digest = hmac.new(key.encode(), message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def sign(settings: Settings, run_id: str, namespace: str, verb: str) -> str:
    """The ``sig`` value for this run's ``verb`` URL (signed with the first key)."""
    return _mac(_keys(settings)[0], run_id, namespace, verb)


def verify(settings: Settings, run_id: str, namespace: str, verb: str, signature: str | None) -> bool:
    """True when ``signature`` is this run's ``verb`` signature under one of the keys."""
    if not signature or len(signature) != SIGNATURE_CHARS:
        return False
    given = signature.encode("ascii", "replace")
    ok = False
    for key in _keys(settings):  # every key, always: the time taken does not tell which matched
        ok |= hmac.compare_digest(given, _mac(key, run_id, namespace, verb).encode("ascii"))
    return ok
