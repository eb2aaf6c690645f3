"""Everything the simulated cluster knows, in one place the API server and controllers share.

The API objects live in ``store``; ``jobs`` and ``pods`` hold the simulator's private notes per
object uid (chosen scenario, Kueue hold, pod timelines) that a real cluster keeps in controllers'
memory and on nodes, never in the objects. All access happens under ``KubeSim``'s lock.
"""

from __future__ import annotations

import math
import random
import uuid
from dataclasses import dataclass, field

from .events import Recorder
from .kubelet import PodPlan
from .scenarios import Scenario, ScenarioBook
from .store import Store

# k8s.io/apimachinery/pkg/util/rand: no vowels or confusable characters.
NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
MAX_GENERATED_BASE = 58  # 63 - 5 random characters


@dataclass
class JobState:
    scenario: Scenario
    created: float
    held: bool = False  # suspended by Kueue until admitted
    pods_created: int = 0
    failures: int = 0  # pod failures since the last success (pod-creation back-off)
    last_failure: float | None = None
    target_at: float | None = None  # when SuccessCriteriaMet / FailureTarget was added
    finished_at: float | None = None
    due: float = math.inf
    problem: str = ""
    create_failures: int = 0  # pod creations refused in a row (FailedCreate)
    create_retry_at: float | None = None
    fail_message: str | None = None  # a podFailurePolicy FailJob rule matched
    succeeded_indexes: set[int] = field(default_factory=set)
    failed_indexes: set[int] = field(default_factory=set)
    index_failures: dict[int, int] = field(default_factory=dict)
    index_pods: dict[int, int] = field(default_factory=dict)  # pods created per index


@dataclass
class World:
    store: Store
    scenarios: ScenarioBook
    rand: random.Random
    jobs: dict[str, JobState] = field(default_factory=dict)
    pods: dict[str, PodPlan] = field(default_factory=dict)
    kills: dict[str, float] = field(default_factory=dict)  # deleted pods the kubelet does not drive
    recorder: Recorder = field(init=False)

    def __post_init__(self) -> None:
        self.recorder = Recorder(self.store, self.new_uid)

    def new_uid(self) -> str:
        return str(uuid.UUID(int=self.rand.getrandbits(128), version=4))

    def random_suffix(self, n: int = 5) -> str:
        return "".join(self.rand.choice(NAME_ALPHABET) for _ in range(n))

    def generate_name(self, plural: str, namespace: str, base: str) -> str:
        """``generateName``: base cut to 58 characters plus 5 random ones, retried on collision
        (as the API server does since KEP-4420)."""
        base = base[:MAX_GENERATED_BASE]
        for _ in range(8):
            name = base + self.random_suffix()
            if self.store.get(plural, namespace, name) is None:
                return name
        return base + self.random_suffix()

    def forget(self, obj: dict) -> None:
        uid = obj["metadata"].get("uid")
        self.jobs.pop(uid, None)
        self.pods.pop(uid, None)
        self.kills.pop(uid, None)
