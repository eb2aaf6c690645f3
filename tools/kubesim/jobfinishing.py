"""How a Job ends: the terminal target first, then ``Complete`` or ``Failed`` once its pods are gone.

The part of the job controller's ``syncJob`` that picks the finished condition, in its order
(pkg/controller/job/job_controller.go): a ``podFailurePolicy`` ``FailJob`` rule, the backoff limit
(``failed > backoffLimit``, or container restarts for ``OnFailure``), ``activeDeadlineSeconds``,
``maxFailedIndexes`` and failed indexes (``backoffLimitPerIndex``), a ``successPolicy``, and
``completions``. The target condition (``FailureTarget`` / ``SuccessCriteriaMet``) is added at
once; ``enactJobFinished`` adds ``Failed`` / ``Complete`` (with ``completionTime``) only after
every pod has terminated, and ``recordJobFinished`` records the event with it. The finished Job
is then handed to the TTL-after-finished controller.

Deliberately not here: counting pods and keeping them running (``jobcontroller``).
"""

from __future__ import annotations

from .clock import parse_time, rfc3339
from .jobrules import condition, match_success_policy, past_backoff_on_failure, set_condition
from .ttlafterfinished import TTLAfterFinishedController
from .world import JobState, World

BACKOFF_MESSAGE = "Job has reached the specified backoff limit"
MAX_FAILED_INDEXES_MESSAGE = "Job has exceeded the specified maximal number of failed indexes"
FAILED_INDEXES_MESSAGE = "Job has failed indexes"
DEADLINE_MESSAGE = "Job was active longer than specified deadline"
COMPLETIONS_MESSAGE = "Reached expected number of succeeded pods"


class JobFinisher:
    def __init__(self, world: World, ttl: TTLAfterFinishedController):
        self.w = world
        self.ttl = ttl

    @staticmethod
    def target(conds: list[dict]) -> dict | None:
        for type_ in ("FailureTarget", "SuccessCriteriaMet"):
            c = condition(conds, type_)
            if c is not None and c.get("status") == "True":
                return c
        return None

    def decide(self, job: dict, st: JobState, status: dict, conds: list[dict], active: list[dict],
               succeeded: int, failed: int, now: float) -> dict | None:
        """The order of ``syncJob``: pod failure policy, backoff limit, deadline, failed indexes,
        success policy, completions."""
        spec = job["spec"]
        start = parse_time(status.get("startTime")) or now
        deadline = spec.get("activeDeadlineSeconds")
        backoff_limit = int(spec.get("backoffLimit") if spec.get("backoffLimit") is not None else 6)
        completions = spec.get("completions")
        indexed = spec.get("completionMode") == "Indexed"
        if st.fail_message is not None:
            return self.fail(st, conds, "PodFailurePolicy", st.fail_message, now)
        if failed > backoff_limit or past_backoff_on_failure(job, active, backoff_limit):
            return self.fail(st, conds, "BackoffLimitExceeded", BACKOFF_MESSAGE, now)
        if deadline is not None and now >= start + deadline:
            return self.fail(st, conds, "DeadlineExceeded", DEADLINE_MESSAGE, now)
        if deadline is not None:
            st.due = min(st.due, start + deadline)
        if indexed and spec.get("backoffLimitPerIndex") is not None:
            max_failed = spec.get("maxFailedIndexes")
            if max_failed is not None and len(st.failed_indexes) > int(max_failed):
                return self.fail(st, conds, "MaxFailedIndexesExceeded", MAX_FAILED_INDEXES_MESSAGE, now)
            if st.failed_indexes and len(st.failed_indexes) + len(st.succeeded_indexes) >= int(completions or 0):
                return self.fail(st, conds, "FailedIndexes", FAILED_INDEXES_MESSAGE, now)
        if indexed and (matched := match_success_policy(spec.get("successPolicy"), st.succeeded_indexes)):
            return self.succeed(st, conds, "SuccessPolicy", matched, now)
        done = succeeded >= completions if completions is not None else succeeded > 0
        if done and not active:
            return self.succeed(st, conds, "CompletionsReached", COMPLETIONS_MESSAGE, now)
        return None

    @staticmethod
    def fail(st: JobState, conds: list[dict], reason: str, message: str, now: float) -> dict | None:
        # No event here: the Warning is recorded with Failed, in finish (recordJobFinished).
        set_condition(conds, "FailureTarget", "True", reason, message, now)
        st.target_at = now
        return condition(conds, "FailureTarget")

    @staticmethod
    def succeed(st: JobState, conds: list[dict], reason: str, message: str, now: float) -> dict | None:
        set_condition(conds, "SuccessCriteriaMet", "True", reason, message, now)
        st.target_at = now
        return condition(conds, "SuccessCriteriaMet")

    def finish(self, job: dict, st: JobState, status: dict, conds: list[dict], target: dict, now: float) -> None:
        if target["type"] == "SuccessCriteriaMet":
            set_condition(conds, "Complete", "True", target.get("reason", ""), target.get("message", ""), now)
            status["completionTime"] = rfc3339(now)
            self.w.recorder.record(now, job, "Job", "batch/v1", "Normal", "Completed", "Job completed",
                                   "job-controller")
        else:
            set_condition(conds, "Failed", "True", target.get("reason", ""), target.get("message", ""), now)
            # recordJobFinished: the Warning comes with Failed, after every pod has terminated.
            self.w.recorder.record(now, job, "Job", "batch/v1", "Warning", target.get("reason", ""),
                                   target.get("message", ""), "job-controller")
        st.finished_at = now
        self.ttl.sync(job, st, conds, now)
