"""What the inbound adapters hand the use cases: plain data, so parsing a request never loads the
use cases themselves (they load at the first call, which keeps cold start low)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # a name for annotations only: jobspec loads at the first submit (cold start)
    from shared.kube.jobspec import Parameter


@dataclass
class SubmitRequest:
    external_id: str
    namespace: str
    parameters: list[Parameter] = field(default_factory=list)
    ignored_parameters: list[str] = field(default_factory=list)
    attributes: dict = field(default_factory=dict)
    idempotency_key: str | None = None
