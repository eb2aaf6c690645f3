"""kubesim: a faithful loopback stand-in for the Kubernetes API server that the app uses.

The official ``kubernetes`` client talks to it unchanged over HTTP(S) on 127.0.0.1: batch/v1
Jobs, v1 Pods (with logs), Events and Secrets; selectors, paging with expiring continue tokens,
``Status`` errors, delete propagation, bearer tokens, a job controller driven by scenarios and a
clock tests move by hand, injectable faults and request counters. See ``KubeSim`` (``sim``) for
the API, ``scenarios`` for the scenario grammar, and ``python -m tools.kubesim --help``.
"""

from .faults import Fault
from .samples import seed_samples
from .scenarios import ANNOTATION as SCENARIO_ANNOTATION
from .scenarios import Scenario
from .sim import KubeSim

__all__ = ["KubeSim", "Scenario", "Fault", "seed_samples", "SCENARIO_ANNOTATION"]
