"""What a simulated Job's pods do, chosen per Job when it is created.

A scenario is picked for each new Job, in this order:

1. the first rule added with ``KubeSim.set_scenario(prefix, scenario)`` whose prefix starts the
   Job's name (rules are the test's explicit override, so they win over annotations);
2. the annotation ``kubesim.polysync.io/scenario`` on the Job, else on its pod template;
3. the default: ``succeed:after=10``.

Compact spec grammar (the annotation value, or a string given to ``set_scenario``)::

    spec     := outcome ( ":" option )*
    outcome  := "succeed" | "fail" | "oom" | "pull-backoff" | "unschedulable" | "run-forever" | "kueue"
              | "refused"               the API server refuses the Job's pods (ResourceQuota, Pod
                                        Security, Azure Policy): no pod, Warning FailedCreate events
              | "config-error"          the container waits in CreateContainerConfigError (an env
                                        var's Secret is missing)
              | "mount-error"           the pod waits in ContainerCreating with FailedMount events
                                        (a volume's Secret / ConfigMap / PVC is missing)
    option   := "after=" SECONDS        container exits this long after the pod is created
                                        (includes ~1 s of ContainerCreating; default 10)
              | "exit=" CODE            exit code of "fail" (default 1; "oom" means 137 + OOMKilled)
              | "times=" N              "fail" only for the first N pods (or restarts), then succeed
              | "recover=" SECONDS      "pull-backoff"/"unschedulable"/"config-error"/"mount-error"/
                                        "refused" clear after this long, then the container runs
                                        as "succeed"
              | "refusal=" WHY          what refuses the pods of "refused": quota (default),
                                        pod-security or azure-policy
              | "indexes=" I,J,...      "fail" only pods of these completion indexes (Indexed Jobs)
              | "admit-after=" SECONDS  Kueue admits the held Job this long after creation
              | "terminate=" SECONDS    a deleted pod's container exits (143, SIGTERM) this long
                                        after the delete; by default, or when this is not shorter
                                        than the pod's terminationGracePeriodSeconds (30 unless the
                                        template says otherwise), it ignores SIGTERM and is killed
                                        (137, SIGKILL) when the grace period ends
              | "logs=" N               lines the container writes to its log (default 3)
              | "settle=" SECONDS       delay between SuccessCriteriaMet/FailureTarget and
                                        Complete/Failed beyond waiting for pods (default 0)
              | "kueue"                 hold the Job suspended until admitted, as Kueue's webhook
                                        does for a Job labelled kueue.x-k8s.io/queue-name
              | "message=" TEXT         termination message; must come last: TEXT runs to the end
                                        of the spec and may contain ':'

Examples: ``succeed:after=20``, ``fail:exit=3:after=5:message=boom``, ``pull-backoff``,
``unschedulable:recover=60``, ``kueue:admit-after=30``, ``run-forever:terminate=30:logs=50``.

Deliberately not here: running anything. ``kubelet`` turns a scenario plus a clock into pod
states; ``jobcontroller`` turns pods into Job conditions.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

ANNOTATION = "kubesim.polysync.io/scenario"
OUTCOMES = ("succeed", "fail", "pull-backoff", "unschedulable", "run-forever", "refused", "config-error",
            "mount-error")
# Outcomes that keep the pod (or, for "refused", its creation) from going ahead until ``recover``.
BLOCKING = ("pull-backoff", "unschedulable", "config-error", "mount-error", "refused")
REFUSALS = ("quota", "pod-security", "azure-policy")


@dataclass(frozen=True)
class Scenario:
    outcome: str = "succeed"
    after: float = 10.0
    exit_code: int = 1
    reason: str = "Error"  # terminated reason of a failing container: Error or OOMKilled
    message: str = ""
    times: int | None = None
    recover: float | None = None
    kueue: bool = False
    admit_after: float | None = None
    terminate: float | None = None
    logs: int = 3
    settle: float = 0.0
    refusal: str = "quota"
    indexes: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if self.outcome not in OUTCOMES:
            raise ValueError(f"unknown scenario outcome {self.outcome!r}; expected one of {OUTCOMES}")
        if self.refusal not in REFUSALS:
            raise ValueError(f"unknown refusal {self.refusal!r}; expected one of {REFUSALS}")
        for name in ("after", "terminate", "settle"):
            if (getattr(self, name) or 0) < 0:
                raise ValueError(f"scenario {name} must be >= 0")
        if self.logs < 0:
            raise ValueError("scenario logs must be >= 0")

    # Convenience constructors read well in tests: Scenario.fail(exit_code=3, after=5).
    @classmethod
    def succeed(cls, after: float = 10.0, **kw) -> Scenario:
        return cls("succeed", after=after, **kw)

    @classmethod
    def fail(cls, exit_code: int = 1, after: float = 10.0, message: str = "", **kw) -> Scenario:
        return cls("fail", after=after, exit_code=exit_code, message=message, **kw)

    @classmethod
    def oom(cls, after: float = 10.0, **kw) -> Scenario:
        return cls("fail", after=after, exit_code=137, reason="OOMKilled", **kw)

    @classmethod
    def parse(cls, spec: str) -> Scenario:
        return parse(spec)

    def fails_attempt(self, attempt: int, index: int | None = None) -> bool:
        """Does the container of this attempt (0-based pod count or restart; per completion index
        for Indexed Jobs) exit non-zero?"""
        if self.indexes is not None and index not in self.indexes:
            return False
        return self.outcome == "fail" and (self.times is None or attempt < self.times)

    @property
    def spec(self) -> str:
        """The compact spec string that parses back to this scenario."""
        default = Scenario()
        parts = [self.outcome]
        if self.outcome == "fail" and self.reason == "OOMKilled" and self.exit_code == 137:
            parts = ["oom"]
        elif self.exit_code != default.exit_code:
            parts.append(f"exit={self.exit_code}")
        for name, key in (("after", "after"), ("times", "times"), ("recover", "recover"),
                          ("admit_after", "admit-after"), ("terminate", "terminate"), ("logs", "logs"),
                          ("settle", "settle")):
            value = getattr(self, name)
            if value != getattr(default, name):
                parts.append(f"{key}={_num(value)}")
        if self.refusal != default.refusal:
            parts.append(f"refusal={self.refusal}")
        if self.indexes is not None:
            parts.append("indexes=" + ",".join(str(i) for i in self.indexes))
        if self.kueue:
            parts.append("kueue")
        if self.message:
            parts.append(f"message={self.message}")
        return ":".join(parts)


def _num(value: float | int) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _seconds(key: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"scenario option {key}={text!r} is not a number of seconds") from None
    if value < 0:
        raise ValueError(f"scenario option {key} must be >= 0")
    return value


def _indexes(key: str, text: str) -> tuple[int, ...]:
    try:
        return tuple(sorted({int(part) for part in text.split(",") if part.strip()}))
    except ValueError:
        raise ValueError(f"scenario option {key}={text!r} is not a list of indexes") from None


def _word(key: str, text: str) -> str:
    return text.strip()


def _int(key: str, text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"scenario option {key}={text!r} is not an integer") from None


# option key -> (Scenario field, converter)
_OPTIONS = {
    "after": ("after", _seconds),
    "exit": ("exit_code", _int),
    "times": ("times", _int),
    "recover": ("recover", _seconds),
    "admit-after": ("admit_after", _seconds),
    "terminate": ("terminate", _seconds),
    "logs": ("logs", _int),
    "settle": ("settle", _seconds),
    "refusal": ("refusal", _word),
    "indexes": ("indexes", _indexes),
}


def parse(spec: str) -> Scenario:
    """Parse a compact spec (grammar in the module docstring); ValueError names what is wrong."""
    text = (spec or "").strip()
    if not text:
        raise ValueError("empty scenario spec")
    message = None
    if ":message=" in text or text.startswith("message="):
        text, _, message = text.partition("message=")
        text = text.rstrip(":")
    tokens = [t.strip() for t in text.split(":") if t.strip()] if text else []
    if not tokens:
        raise ValueError(f"scenario spec {spec!r} has no outcome")
    head, options = tokens[0], tokens[1:]
    fields: dict = {}
    if head == "oom":
        fields.update(outcome="fail", exit_code=137, reason="OOMKilled")
    elif head == "kueue":
        fields.update(outcome="succeed", kueue=True)
    elif head in OUTCOMES:
        fields["outcome"] = head
    else:
        raise ValueError(f"unknown scenario outcome {head!r} in {spec!r}; expected one of "
                         f"{OUTCOMES + ('oom', 'kueue')}")
    for option in options:
        key, eq, value = option.partition("=")
        if not eq:
            if key == "kueue":
                fields["kueue"] = True
                continue
            raise ValueError(f"scenario option {option!r} in {spec!r} needs a value (key=value)")
        if key not in _OPTIONS:
            raise ValueError(f"unknown scenario option {key!r} in {spec!r}")
        name, convert = _OPTIONS[key]
        fields[name] = convert(key, value)
        if key == "admit-after":
            fields["kueue"] = True
    if message is not None:
        fields["message"] = message
    return Scenario(**fields)


DEFAULT = Scenario()


class ScenarioBook:
    """The rules a test set, and the choice of a scenario for a new Job (order in the docstring)."""

    def __init__(self) -> None:
        self._rules: list[tuple[str, Scenario]] = []
        self.default = DEFAULT

    def add(self, match: str, scenario: Scenario | str) -> Scenario:
        chosen = parse(scenario) if isinstance(scenario, str) else scenario
        if not isinstance(chosen, Scenario):
            raise TypeError("scenario must be a Scenario or a spec string")
        self._rules.append((match, chosen))
        return chosen

    def clear(self) -> None:
        self._rules.clear()

    def choose(self, name: str, annotations: dict | None, template_annotations: dict | None) -> tuple[Scenario, str]:
        """Return (scenario, problem). ``problem`` is non-empty when an annotation did not parse."""
        for prefix, scenario in self._rules:
            if name.startswith(prefix):
                return scenario, ""
        for source in (annotations or {}, template_annotations or {}):
            spec = source.get(ANNOTATION)
            if spec:
                try:
                    return parse(spec), ""
                except ValueError as exc:
                    return self.default, str(exc)
        return self.default, ""


def replace(scenario: Scenario, **changes) -> Scenario:
    return dataclasses.replace(scenario, **changes)
