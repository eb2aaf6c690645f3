"""The one submit parser: an HTTP submit body and an Event Grid submit event become the same
validated ``SubmitRequest`` through the same rules, each problem a ValidationFailed (or Forbidden)
whose ``field`` names it - ``parameters.X`` for HTTP, ``data.parameters.X`` or ``id`` for an event.

Identifiers are matched with ``\\Z``, not ``$``: Python's ``$`` also matches before a trailing
newline, so ``"report\\n"`` would pass and reach the cluster, the table and the Job's labels (the
Functions host URL-decodes route values).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from shared.errors import AppError, Forbidden, NotFound, ValidationFailed
from shared.settings import Settings
from shared.usecases.requests import SubmitRequest

if TYPE_CHECKING:
    from shared.kube.jobspec import Parameter

MAX_IDEMPOTENCY_KEY_CHARS = 256
SUBMIT_KEYS = ("parameters", "attributes", "idempotencyKey")
SUBMIT_DATA_KEYS = ("externalId", "parameters", "attributes", "namespace")
RERUN_KEYS = ("parameters", "idempotencyKey")
ATTRIBUTE_KEYS = ("containerImage", "containerCommand", "containerArgs")
EXTERNAL_ID = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?\Z")
RUN_ID = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\Z")
NAMESPACE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\Z")
EXTERNAL_ID_RULE = ("must be a Kubernetes Job name: lowercase letters, digits, '-' and '.', starting and ending "
                    "with a letter or digit, at most 253 characters")


# ----------------------------------------------------------------------------------- HTTP


def submit_request(body: dict, external_id: str, namespace: str, *, header_key: str | None = None,
                   route_values: dict[str, str] | None = None,
                   relaxed_env_names: bool | Callable[[], bool] = False) -> SubmitRequest:
    """A validated SubmitRequest from an HTTP submit body (``POST /api/jobs/{externalId}/runs``).

    The body is ``{"parameters", "attributes", "idempotencyKey"}``, or - Polysync's Azure HTTP
    Function job type - the parameters alone as the whole body. A parameter named like a route
    value (``route_values``: ``{"externalId": ...}``) is the route's, not the run's: dropped and
    listed in ``ignored_parameters`` when equal, a ValidationFailed when not.
    """
    if any(k in body for k in SUBMIT_KEYS):
        unknown = sorted(set(body) - set(SUBMIT_KEYS))
        if unknown:
            raise ValidationFailed(f"Unknown field {shown_path(str(unknown[0]))!r}; expected "
                                   f"{', '.join(SUBMIT_KEYS)}", field=shown_path(str(unknown[0])))
        raw_params, attributes, key = body.get("parameters"), body.get("attributes"), body.get("idempotencyKey")
    else:  # Polysync's Azure HTTP Function job type sends the parameters as the whole body
        raw_params, attributes, key = body, None, None
    key = idempotency_key(header_key if key is None else key)
    request = _request(external_id, namespace, raw_params, attributes, key, where="",
                       relaxed_env_names=relaxed_env_names)
    if route_values:
        from shared.kube import jobspec  # at the first submit, not at import: it keeps cold start low

        request.parameters, dropped = jobspec.drop_route_values(request.parameters, route_values,
                                                                field_prefix="parameters.")
        request.ignored_parameters = [*request.ignored_parameters, *dropped]
    return request


def rerun_request(body: dict, header_key: str | None) -> tuple[list[Parameter], str | None]:
    """(Secret parameters given again, idempotency key) from a rerun body."""
    from shared.kube import jobspec  # at the first rerun, not at import: it keeps cold start low

    unknown = sorted(set(body) - set(RERUN_KEYS))
    if unknown:
        raise ValidationFailed(f"Unknown field {str(unknown[0])[:60]!r}; a rerun takes {', '.join(RERUN_KEYS)}",
                               field=str(unknown[0])[:60])
    key = idempotency_key(body.get("idempotencyKey") if body.get("idempotencyKey") is not None else header_key)
    secrets, _ = jobspec.normalize_parameters(body.get("parameters"))
    return secrets, key


# ---------------------------------------------------------------------------- Event Grid


def submit_request_from_event(event, settings: Settings, *,
                              relaxed_env_names: bool | Callable[[], bool] = False) -> SubmitRequest:
    """A validated SubmitRequest from an Event Grid submit event.

    ``data`` is ``{"externalId", "parameters"?, "attributes"?, "namespace"?}`` (a JSON string is
    parsed): what ``POST /api/jobs/{externalId}/runs`` would receive, with the event's ``id`` as
    the idempotency key, so a redelivered event returns the first run. Fields are named as the
    event has them (``id``, ``data``, ``data.externalId``, ``data.parameters[0].name`` ...).
    """
    raw_id, data = event_id_and_data(event)
    if not isinstance(raw_id, str) or not raw_id.strip():
        raise ValidationFailed("The event has no id; it is the run's idempotency key", field="id")
    key = idempotency_key(raw_id, field="id", label="The event id")
    data = _event_data(data)
    external_id = data.get("externalId")
    if not isinstance(external_id, str) or not EXTERNAL_ID.match(external_id):
        raise ValidationFailed(f"data.externalId {EXTERNAL_ID_RULE}", field="data.externalId")
    namespace = data.get("namespace")
    if namespace is not None and (not isinstance(namespace, str) or not NAMESPACE.match(namespace)):
        raise ValidationFailed("data.namespace must be a namespace name (a DNS-1123 label)", field="data.namespace")
    namespace = namespace or settings.namespace
    if namespace not in settings.allowed_namespaces:
        raise Forbidden(f"Namespace {namespace!r} is not in ALLOWED_NAMESPACES", field="data.namespace")
    return _request(external_id, namespace, data.get("parameters"), data.get("attributes"), key, where="data.",
                    relaxed_env_names=relaxed_env_names)


def event_id_and_data(event) -> tuple[object, object]:
    """(id, data) of an Event Grid event in any shape the runtime or a test hands over: the
    Functions worker's EventGridEvent / CloudEvent (``get_json()``), azure-core's CloudEvent or
    azure-eventgrid's EventGridEvent (``.data``), or the raw JSON object of either schema."""
    if isinstance(event, dict):
        if "data_base64" in event and "data" not in event:
            raise ValidationFailed("Binary event data (data_base64) is not accepted; send JSON data", field="data")
        return event.get("id"), event.get("data")
    get_json = getattr(event, "get_json", None)
    data = get_json() if callable(get_json) else getattr(event, "data", None)
    return getattr(event, "id", None), data


def _event_data(data) -> dict:
    if isinstance(data, bytes | bytearray):
        data = data.decode("utf-8", "replace")
    if isinstance(data, str):
        try:
            data = json.loads(data)
        except ValueError:
            raise ValidationFailed("The event data is not valid JSON", field="data") from None
    if not isinstance(data, dict):
        shown = "nothing" if data is None else type(data).__name__
        raise ValidationFailed(f"The event data must be an object with externalId, not {shown}", field="data")
    unknown = sorted(str(k) for k in data if k not in SUBMIT_DATA_KEYS)
    if unknown:
        raise ValidationFailed(f"Unknown field {unknown[0][:60]!r} in the event data; expected "
                               f"{', '.join(SUBMIT_DATA_KEYS)}", field=f"data.{unknown[0][:60]}")
    return data


# --------------------------------------------------------------------------------- shared


def cluster_env_rule(kube: Any) -> Callable[[], bool]:
    """Whether the cluster behind ``kube`` accepts relaxed env var names, asked only when a submit
    has a name only 1.32+ accepts (``normalize_parameters`` calls it at most once)."""
    def relaxed() -> bool:
        from shared.kube.jobspec import relaxed_env_names  # at first use: it keeps cold start low

        return relaxed_env_names(kube.server_version())
    return relaxed


def _request(external_id: str, namespace: str, raw_params, attributes, key: str | None, *,
             where: str, relaxed_env_names: bool | Callable[[], bool] = False) -> SubmitRequest:
    """The SubmitRequest both entry points build; ``where`` prefixes every field named in an error."""
    # jobspec (the largest module of the pure core) loads at the first submit, not at import:
    # it keeps cold start low.
    from shared.kube import jobspec

    attributes = {} if attributes is None else attributes  # only null means none: [] or "" is a mistake
    if not isinstance(attributes, dict):
        raise ValidationFailed(f"{where}attributes must be an object", field=f"{where}attributes")
    for name in attributes:
        if name not in ATTRIBUTE_KEYS:
            raise ValidationFailed(f"Unknown attribute {str(name)[:60]!r}; expected {', '.join(ATTRIBUTE_KEYS)}",
                                   field=f"{where}attributes.{str(name)[:60]}")
    attributes = {k: v for k, v in attributes.items() if v not in (None, "", [])}
    with _fields_under(where):
        if attributes:
            _validate_attributes(external_id, attributes)
        # A name only a 1.32+ cluster accepts asks the cluster's version (the rule discovery uses).
        parameters, ignored = jobspec.normalize_parameters(raw_params, relaxed_env_names=relaxed_env_names)
    return SubmitRequest(external_id=external_id, namespace=namespace, parameters=parameters,
                         ignored_parameters=ignored, attributes=attributes, idempotency_key=key)


@contextmanager
def _fields_under(where: str) -> Iterator[None]:
    """Re-point the fields of errors raised inside at ``where`` (``data.`` for an event)."""
    try:
        yield
    except AppError as err:
        if where:
            err.field = where.rstrip(".") if err.field is None else f"{where}{err.field}"
        raise


def _validate_attributes(external_id: str, attributes: dict) -> None:
    """Bad attribute values are refused up front, before any row or Job exists."""
    from shared.kube import jobspec  # at the first submit with attributes: it keeps cold start low

    try:
        jobspec.fallback_job(external_id, attributes)
    except NotFound:
        pass


def idempotency_key(key, *, field: str = "idempotencyKey", label: str = "idempotencyKey") -> str | None:
    """The idempotency key as given, None for none; ValidationFailed naming ``field`` otherwise."""
    if key is None or key == "":
        return None
    if not isinstance(key, str):
        raise ValidationFailed(f"{label} must be a string", field=field)
    if len(key) > MAX_IDEMPOTENCY_KEY_CHARS:
        raise ValidationFailed(f"{label} is {len(key)} characters; at most {MAX_IDEMPOTENCY_KEY_CHARS}", field=field)
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in key):
        raise ValidationFailed(f"{label} must not contain control characters", field=field)
    if not is_text(key):  # the store hashes its UTF-8 bytes; a lone surrogate has none
        raise ValidationFailed(f"{label} is not Unicode text (it holds a lone UTF-16 surrogate)", field=field)
    return key


def is_text(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def shown_path(key: str) -> str:
    """A body key as it may appear in a message or ``field``: short, printable, never a surrogate."""
    shown = "".join(ch if ch.isprintable() and is_text(ch) else "?" for ch in key[:60])
    return shown + ("…" if len(key) > 60 else "")
