"""What a container wrote, as the kubelet serves it through ``GET .../pods/{name}/log``.

The simulator's containers write ``logs`` lines spread over their run, and a failing one ends with
an error line; ``render_logs`` answers the pod log subresource from them (``previous``,
``tailLines``, ``timestamps``), as the kubelet's container log reader does (pkg/kubelet/kuberuntime
/logs). The same lines are the ``FallbackToLogsOnError`` termination message (``podstatus``).

Deliberately not here: the request's checks and its 400 answers (``handlers.subresources``).
"""

from __future__ import annotations

from .clock import rfc3339_nano
from .kubelet import Run, Timeline


class ContainerLogs:
    def __init__(self, timeline: Timeline):
        self.tl = timeline

    def lines(self, run: Run, now: float, container: str) -> list[str]:
        """What the container wrote by ``now``: ``logs`` lines spread over its run, and for a
        failing exit a last line with the error."""
        n = self.tl.s.logs
        ended = run.end is not None and now >= run.end
        duration = (run.end - run.start) if run.end is not None else self.tl.s.after
        if ended or duration <= 0:
            visible = n
        else:
            visible = min(n, 1 + int((now - run.start) * n / duration)) if n else 0
        lines = [f"{container}: step {i} of {n} ({self.tl.pod_name})\n" for i in range(1, visible + 1)]
        if ended and run.exit_code != 0 and not run.killed:
            lines.append(f"{container}: error: {run.message or f'exiting with code {run.exit_code}'}\n")
        return lines

    def times(self, run: Run, count: int, now: float) -> list[float]:
        end = run.end if run.end is not None and run.end <= now else now
        if count <= 1:
            return [run.start] * count
        return [run.start + (end - run.start) * i / (count - 1) for i in range(count)]


def render_logs(timeline: Timeline, container: str, now: float, *, previous: bool = False,
                tail: int | None = None, timestamps: bool = False) -> str | None:
    """The text ``GET .../log`` answers, or None when the container has not started."""
    runs = timeline.runs_until(now)
    if previous:
        runs = runs[:-1]
    if not runs:
        return None
    run = runs[-1]
    logs = ContainerLogs(timeline)
    lines = logs.lines(run, now, container)
    if timestamps:
        times = logs.times(run, len(lines), now)
        lines = [f"{rfc3339_nano(t)} {line}" for t, line in zip(times, lines, strict=True)]
    if tail is not None:
        lines = lines[-tail:] if tail > 0 else []
    return "".join(lines)

