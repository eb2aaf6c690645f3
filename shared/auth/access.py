"""Who may use a route: the one place the app decides, for every HTTP route but health.

- ``AUTH_MODE=key``: the Functions host checks the function key before the app runs (routes are
  ``FUNCTION`` level), so there is nothing left to check here.
- ``AUTH_MODE=entra``: routes are anonymous at the host (a host with function keys would refuse
  a bearer token), and the app requires an Entra ID token of an allowed application
  (``shared.auth.entra``). Easy Auth, when deployed in front, checks the same thing first.
- Signed routes (``/api/signed/runs/...``) are anonymous at the host in both modes: the URL's
  ``sig`` is the authorisation, for its run, namespace and verb only (``shared.auth.signing``).
  A missing, tampered or foreign signature is a 401 that says nothing about the run - it is
  checked before the run is looked up, so the answer is the same for runs that exist and runs
  that do not.

Why not let the app check function keys itself: the keys live with the host (its secrets store),
the app never sees them, so a route anonymous at the host cannot accept a key. Signed URLs are how
a key caller's poller gets in without the key ever being copied into a URL.
"""

from __future__ import annotations

from shared.auth import signing
from shared.auth.entra import Caller, verifier_for
from shared.errors import Unauthorized
from shared.settings import Settings


class SignatureRejected(Unauthorized):
    """401 for a signed URL that does not verify; the same words whatever was wrong."""

    def __init__(self):
        super().__init__("This link is not valid", field="sig")
        self.headers = {"WWW-Authenticate": 'Signature realm="aks-jobs"'}


def check_caller(settings: Settings, authorization: str | None) -> Caller | None:
    """The Entra ID caller in ``entra`` mode (or TokenRejected / CallerNotAllowed); None in ``key``
    mode, where the host has already checked the key."""
    if settings.auth_mode == "entra":
        return verifier_for(settings).verify(authorization)
    return None


def check_signed(settings: Settings, run_id: str, namespace: str, verb: str, signature: str | None) -> None:
    """Raise SignatureRejected unless ``signature`` opens ``verb`` of this run in this namespace."""
    if not signing.verify(settings, run_id, namespace, verb, signature):
        raise SignatureRejected()
