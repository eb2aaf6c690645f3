"""A caller that behaves the way Polysync's "Azure HTTP Function" job type does (for tests).

What it does, from Polysync's public description of the job type (docs/polysync.md):

- the External Id is the function's route template, e.g. ``jobs/{externalId}/runs``; each
  ``{placeholder}`` is filled from the Polysync parameter of that name, and that parameter is
  still sent in the body too;
- the body is flat: ``{name: value}``, String and Secret as JSON strings, Int as a number, Bool as
  true/false - nothing says which values are Secrets;
- auth is a function key (``x-functions-key`` header) or an Entra ID access token of Polysync's
  service principal (``Authorization: Bearer``), on the submit;
- a 2xx is success; a ``202`` with ``statusQueryUrl`` (or ``Location``) is polled until an answer
  that is not 202, *without* resending any header (the worst case: the status URL must carry its
  own authorisation); any 4xx or 5xx, from the submit or from any poll, makes the run Failed;
- the final answer's top-level JSON properties become outputs (``_response.<field>``).

``poll_gap`` replaces Polysync's wait between polls (tests do not sleep for Retry-After).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field

import requests

DATA_TYPES = ("String", "Secret", "Int", "Bool")
_PLACEHOLDER = re.compile(r"\{(\w+)\}")


@dataclass(frozen=True)
class Parameter:
    name: str
    value: object
    data_type: str = "String"

    def typed(self):
        if self.data_type in ("String", "Secret"):
            return str(self.value)
        if self.data_type == "Int":
            return int(self.value)
        if self.data_type == "Bool":
            return self.value if isinstance(self.value, bool) else str(self.value).lower() == "true"
        raise ValueError(f"data type must be one of {DATA_TYPES}")


@dataclass
class Outcome:
    status: str  # Success | Failed
    answers: list[requests.Response] = field(default_factory=list)
    polls: int = 0

    @property
    def final(self) -> requests.Response:
        return self.answers[-1]

    @property
    def outputs(self) -> dict:
        try:
            doc = self.final.json()
        except ValueError:
            return {}
        return {f"_response.{k}": v for k, v in doc.items()} if isinstance(doc, dict) else {}

    @property
    def statuses(self) -> list[int]:
        return [a.status_code for a in self.answers]


class PolysyncCaller:
    def __init__(self, function_base: str, external_id: str, *, function_key: str | None = None,
                 token=None, method: str = "POST"):
        """``function_base``: ``https://<app>.azurewebsites.net/api``; ``token``: a callable
        returning an access token (Polysync gets a fresh one per call) or None."""
        self.base = function_base.rstrip("/")
        self.external_id = external_id
        self.function_key = function_key
        self.token = token
        self.method = method
        self.session = requests.Session()

    def url(self, parameters: list[Parameter]) -> str:
        values = {p.name: str(p.typed()).lower() if p.data_type == "Bool" else str(p.typed()) for p in parameters}

        def fill(match):
            if match.group(1) not in values:
                raise KeyError(f"no parameter fills {{{match.group(1)}}}")
            return values[match.group(1)]

        return f"{self.base}/{_PLACEHOLDER.sub(fill, self.external_id)}"

    @staticmethod
    def body(parameters: list[Parameter]) -> dict:
        return {p.name: p.typed() for p in parameters}

    def headers(self) -> dict:
        if self.token is not None:
            return {"Authorization": f"Bearer {self.token()}"}
        if self.function_key is not None:
            return {"x-functions-key": self.function_key}
        return {}

    def run(self, parameters: list[Parameter], *, max_polls: int = 500, poll_gap: float = 0.02,
            on_poll=None) -> Outcome:
        outcome = Outcome("Failed")
        answer = self.session.request(self.method, self.url(parameters), json=self.body(parameters),
                                      headers=self.headers(), timeout=30)
        outcome.answers.append(answer)
        while answer.status_code == 202:
            try:
                status_url = answer.json().get("statusQueryUrl") or answer.headers.get("Location")
            except ValueError:
                status_url = answer.headers.get("Location")
            if not status_url or outcome.polls >= max_polls:
                return outcome
            if on_poll is not None:
                on_poll(outcome.polls)
            time.sleep(poll_gap)
            answer = self.session.get(status_url, timeout=30)  # no auth header: the URL must suffice
            outcome.polls += 1
            outcome.answers.append(answer)
        outcome.status = "Success" if 200 <= answer.status_code < 300 else "Failed"
        return outcome
