"""The operator CLI, run in-process through ``main(argv)`` against the real app over HTTP.

The app is served by the dev host (real sockets, the function key checked), backed by Azurite and
the Kubernetes simulator. Where a run has to progress while ``watch`` polls, a background thread
moves the simulated cluster and fires the sweep, as the timer would.
"""

from __future__ import annotations

import io
import json
import socket

from aksjobs_cli import ExitCode, main
from aksjobs_cli.outcomes import exit_code_for
from aksjobs_cli.rendering import run_details, status_line
from tests.fixtures.app import cluster_moving, source_job

FAST_WATCH = ["--interval", "0.1", "--timeout", "30"]


def put_source(app, name: str, env: dict | None = None, *, scenario: str | None = None, **spec) -> None:
    app.sim.put("jobs", "default", source_job(name, env or {}, scenario=scenario, **spec))


def submit_json(capsys, *args: str) -> dict:
    code = main(["--json", "submit", *args])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return json.loads(captured.out)


def table_rows(text: str) -> list[list[str]]:
    """A rendered table's rows (header first), cells split on runs of two or more spaces."""
    import re

    return [re.split(r"\s{2,}", line.strip()) for line in text.strip().splitlines()]


# ------------------------------------------------------------------------------ watch outcomes


def test_watch_exits_0_when_the_run_succeeds(served, capsys):
    put_source(served, "nightly-report", {"REPORT_DATE": "2026-01-01"}, scenario="succeed:after=20")
    run_id = submit_json(capsys, "nightly-report", "-p", "REPORT_DATE=2026-11-26")["runId"]

    with cluster_moving(served):
        code = main(["watch", run_id, *FAST_WATCH])

    out = capsys.readouterr().out
    assert code == ExitCode.SUCCESS == 0
    assert "\r" not in out  # not a terminal: plain lines
    lines = out.strip().splitlines()
    assert lines[-1].startswith(f"run {run_id} finished: Success")
    progress = lines[:-1]
    assert progress and all(line.startswith(run_id) for line in progress)
    assert len(progress) == len(set(progress))  # one line per change, never a repeat
    assert "Success" in progress[-1] and "Success" not in progress[0]


def test_watch_exits_1_when_the_job_fails(served, capsys):
    put_source(served, "flaky", {"X": "1"}, scenario="fail:exit=3:after=1", backoffLimit=0)
    run_id = submit_json(capsys, "flaky")["runId"]

    with cluster_moving(served):
        code = main(["watch", run_id, *FAST_WATCH])

    out = capsys.readouterr().out
    assert code == ExitCode.FAILED == 1
    assert f"run {run_id} finished: Failed" in out


def test_watch_exits_2_when_the_run_is_cancelled(served, capsys):
    put_source(served, "long", scenario="run-forever")
    run_id = submit_json(capsys, "long")["runId"]
    served.advance(5)

    assert main(["cancel", run_id]) == 0
    assert f"cancel requested for run {run_id}" in capsys.readouterr().out
    with cluster_moving(served):
        code = main(["watch", run_id, *FAST_WATCH])

    assert code == ExitCode.CANCELLED == 2
    assert f"run {run_id} finished: Cancelled" in capsys.readouterr().out


def test_submit_with_watch_follows_the_run_and_exits_with_its_outcome(served, capsys):
    put_source(served, "quick", scenario="succeed:after=10")

    with cluster_moving(served):
        code = main(["submit", "quick", "--watch", *FAST_WATCH])

    out = capsys.readouterr().out
    assert code == 0
    assert out.startswith("submitted run quick-")
    assert "finished: Success" in out.strip().splitlines()[-1]


def test_watch_gives_up_at_the_timeout_with_exit_4_and_leaves_the_run_alone(served, capsys):
    put_source(served, "endless", scenario="run-forever")
    run_id = submit_json(capsys, "endless")["runId"]

    code = main(["watch", run_id, "--interval", "0.1", "--timeout", "0.4"])

    captured = capsys.readouterr()
    assert code == ExitCode.TIMEOUT == 4
    assert f"timed out after 0.4s; run {run_id} is still Starting" in captured.err
    assert served.sim.get("jobs", "default", run_id) is not None  # watching is not owning


def test_watch_on_a_terminal_redraws_one_live_line_with_a_spinner(served, capsys, monkeypatch):
    put_source(served, "nightly-report", scenario="succeed:after=20")
    run_id = submit_json(capsys, "nightly-report")["runId"]

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    terminal = Terminal()
    monkeypatch.setattr("sys.stdout", terminal)
    with cluster_moving(served):
        code = main(["watch", run_id, *FAST_WATCH])

    text = terminal.getvalue()
    assert code == 0
    live, outcome = text.rstrip("\n").rsplit("\n", 1)
    assert "\n" not in live  # every redraw of the status line stays on its one line
    redraws = live.split("\r")[1:]
    assert len(redraws) >= 3
    assert {r.split()[0] for r in redraws[:-1]} & set("|/-\\")  # the spinner turns while waiting
    assert "Success" in redraws[-1]
    assert outcome.startswith(f"run {run_id} finished: Success")


# ----------------------------------------------------------------------------------- submit


def test_submit_sends_parameters_as_env_and_secrets_as_secret_never_echoed(served, capsys, monkeypatch):
    put_source(served, "nightly-report", {"REPORT_DATE": "2026-01-01", "LEVEL": "info"})
    monkeypatch.setenv("API_TOKEN", "tok-from-env-5150")

    code = main(["submit", "nightly-report", "-p", "REPORT_DATE=2026-11-26", "-p", "QUERY=a=b",
                 "--secret", "DB_PASSWORD=hunter2-secret", "--secret", "API_TOKEN", "--idempotency-key", "k-1"])
    submitted = capsys.readouterr()
    assert code == 0, submitted.err
    run_id = submitted.out.split()[2]
    assert submitted.out.startswith(f"submitted run {run_id} of nightly-report")

    job = served.sim.get("jobs", "default", run_id)
    env = {e["name"]: e for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert {n: env[n].get("value") for n in ("REPORT_DATE", "LEVEL", "QUERY")} == {
        "REPORT_DATE": "2026-11-26", "LEVEL": "info", "QUERY": "a=b"}
    for name in ("DB_PASSWORD", "API_TOKEN"):
        assert "value" not in env[name] and env[name]["valueFrom"]["secretKeyRef"]
    assert "hunter2-secret" not in json.dumps(job) and "tok-from-env-5150" not in json.dumps(job)

    assert main(["--json", "status", run_id]) == 0
    shown = capsys.readouterr()
    params = {p["name"]: p for p in json.loads(shown.out)["parameters"]}
    assert params["DB_PASSWORD"]["dataType"] == params["API_TOKEN"]["dataType"] == "Secret"
    assert params["REPORT_DATE"] == {"name": "REPORT_DATE", "value": "2026-11-26", "dataType": "String",
                                     "direction": "Input"}
    assert json.loads(shown.out)["idempotencyKey"] == "k-1"
    assert main(["status", run_id]) == 0
    everything = submitted.out + submitted.err + shown.out + shown.err + capsys.readouterr().out
    assert "hunter2-secret" not in everything and "tok-from-env-5150" not in everything


def test_submit_again_with_the_same_idempotency_key_returns_the_same_run(served, capsys):
    put_source(served, "nightly-report", {"REPORT_DATE": "2026-01-01"})
    first = submit_json(capsys, "nightly-report", "--idempotency-key", "daily-2026-11-26")

    assert main(["submit", "nightly-report", "--idempotency-key", "daily-2026-11-26"]) == 0

    out = capsys.readouterr().out
    assert out.startswith(f"already submitted with this idempotency key: run {first['runId']}")


def test_submit_uses_image_command_and_args_as_the_fallback_when_the_source_job_is_gone(served, capsys):
    run = submit_json(capsys, "deleted-source", "--image", "busybox:1.36", "--command", '["sh", "-c"]',
                      "--args", "echo hello $NAME", "-p", "NAME=world")

    container = served.sim.get("jobs", "default", run["runId"])["spec"]["template"]["spec"]["containers"][0]
    assert (container["image"], container["command"], container["args"]) == (
        "busybox:1.36", ["sh", "-c"], ["echo", "hello", "$NAME"])
    assert run["source"] == "fallback"


def test_a_submit_the_cluster_did_not_confirm_says_to_retry_with_the_same_key_which_returns_that_run(
        served, capsys):
    put_source(served, "nightly-report", {"REPORT_DATE": "2026-01-01"})
    served.sim.inject("POST", r"/namespaces/default/jobs$", "status", times=None, status=503)

    assert main(["submit", "nightly-report", "--idempotency-key", "daily-1"]) == 3
    err = capsys.readouterr().err
    assert err.startswith("error: HTTP 502 upstream_error")
    assert "submit again with the same --idempotency-key" in err

    served.sim.clear_faults()
    assert main(["submit", "nightly-report", "--idempotency-key", "daily-1"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("already submitted with this idempotency key: run nightly-report-")
    run_id = out.split("run ", 1)[1].split()[0]
    assert f"(run: {run_id})" in err  # the error named the run the retry returned


# ------------------------------------------------------------------------------------- json


def test_json_output_is_the_apis_documents_and_parses(served, capsys):
    put_source(served, "nightly-report", {"REPORT_DATE": "2026-01-01"}, scenario="succeed:after=10")
    run_id = submit_json(capsys, "nightly-report")["runId"]

    assert main(["--json", "jobs"]) == 0
    assert [j["externalId"] for j in json.loads(capsys.readouterr().out)["jobs"]] == ["nightly-report"]
    assert main(["job", "nightly-report", "--json"]) == 0  # --json after the command works too
    assert json.loads(capsys.readouterr().out)["parameters"][0]["name"] == "REPORT_DATE"
    assert main(["--json", "runs"]) == 0
    assert [r["runId"] for r in json.loads(capsys.readouterr().out)["runs"]] == [run_id]

    with cluster_moving(served):
        code = main(["--json", "watch", run_id, *FAST_WATCH])
    captured = capsys.readouterr()
    assert code == 0
    final = json.loads(captured.out)  # exactly one document: progress went to stderr
    assert (final["runId"], final["status"], final["terminal"]) == (run_id, "Success", True)
    assert f"run {run_id} finished: Success" in captured.err


# ----------------------------------------------------------------------------------- errors


def test_api_errors_exit_3_with_the_apis_code_message_and_field(served, capsys):
    put_source(served, "nightly-report", {"REPORT_DATE": "2026-01-01"})

    assert main(["job", "no-such-job"]) == ExitCode.ERROR == 3
    err = capsys.readouterr().err
    assert "HTTP 404 not_found" in err and "'no-such-job'" in err and "(field: externalId)" in err

    assert main(["submit", "nightly-report", "-p", "BAD NAME=1"]) == 3
    err = capsys.readouterr().err
    assert "HTTP 422 invalid" in err and "(field: parameters[0].name)" in err

    assert main(["status", "no-such-run"]) == 3
    assert "HTTP 404 not_found: No run 'no-such-run' (field: runId)" in capsys.readouterr().err


def test_a_refused_function_key_exits_3_without_echoing_the_key(served, capsys):
    assert main(["--key", "wrong-key-0042", "jobs"]) == 3
    captured = capsys.readouterr()
    assert "HTTP 401" in captured.err and "--key" in captured.err
    assert "wrong-key-0042" not in captured.err + captured.out


def test_an_unreachable_app_exits_3_naming_the_address(capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again when the block ends: nothing listens there

    assert main(["--url", f"http://127.0.0.1:{port}", "jobs"]) == 3
    assert f"cannot reach http://127.0.0.1:{port}" in capsys.readouterr().err


def test_watch_rides_out_a_few_failed_polls_then_gives_up_with_exit_3(capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    code = main(["--url", f"http://127.0.0.1:{port}", "watch", "some-run", "--interval", "0.01"])

    captured = capsys.readouterr()
    assert code == 3
    assert "retrying: no answer" in captured.out  # the status line said it was retrying
    assert "cannot reach" in captured.err


def test_usage_errors_exit_3_not_argparses_2_which_means_cancelled(capsys, monkeypatch):
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    assert main(["watch"]) == 3
    assert main(["submit", "job", "-p", "NOEQUALS"]) == 3
    assert main(["runs", "--status", "Done"]) == 3
    assert main(["--url", "ftp://example", "jobs"]) == 3
    assert main(["submit", "job", "--secret", "NOT_SET_ANYWHERE"]) == 3
    err = capsys.readouterr().err
    assert "'NOEQUALS' has no '='" in err and "NOT_SET_ANYWHERE: no '=value' given" in err
    assert "http:// or https://" in err


def test_a_secret_with_an_empty_name_is_refused_without_echoing_its_value(capsys):
    assert main(["submit", "job", "--secret", "=hunter2-secret"]) == 3
    captured = capsys.readouterr()
    assert "the name is empty" in captured.err
    assert "hunter2-secret" not in captured.err + captured.out


# ---------------------------------------------------------------------------------- listings


def test_jobs_lists_source_jobs_with_parameter_names_and_advice_count(served, capsys):
    put_source(served, "nightly-report", {"REPORT_DATE": "2026-01-01", "LEVEL": "info"})
    put_source(served, "adhoc-export", {"TABLE": "sales"}, activeDeadlineSeconds=None)
    run_id = submit_json(capsys, "nightly-report")["runId"]

    assert main(["jobs"]) == 0

    rows = table_rows(capsys.readouterr().out)
    assert rows[0] == ["EXTERNAL ID", "IMAGE", "PARAMETERS", "ADVICE"]
    assert rows[1:] == [["adhoc-export", "registry.example/report:1.4", "TABLE", "1"],
                        ["nightly-report", "registry.example/report:1.4", "REPORT_DATE,LEVEL", "0"]]
    assert run_id not in str(rows)  # runs are not source Jobs


def test_job_shows_parameters_with_defaults_and_the_advice(served, capsys):
    put_source(served, "adhoc-export", {"TABLE": "sales", "DAY": "2026-01-01"}, activeDeadlineSeconds=None)

    assert main(["job", "adhoc-export"]) == 0

    out = capsys.readouterr().out
    assert "command:    python -m report" in out
    params = table_rows(out.split("parameters:\n")[1].split("advice:")[0])
    assert params == [["NAME", "DEFAULT", "FROM"], ["TABLE", "sales", "value"], ["DAY", "2026-01-01", "value"]]
    assert "  - NoActiveDeadline: Set spec.activeDeadlineSeconds" in out


def test_runs_lists_newest_first_and_filters_by_external_id(served, capsys):
    put_source(served, "alpha")
    put_source(served, "beta")
    ids = []
    for name in ("alpha", "beta", "alpha"):
        ids.append(submit_json(capsys, name)["runId"])
        served.sim.advance(1)  # the app's clock is the simulator's: distinct creation times

    assert main(["runs"]) == 0
    rows = table_rows(capsys.readouterr().out)
    assert rows[0][:4] == ["RUN ID", "EXTERNAL ID", "STATUS", "PHASE"]
    assert [r[0] for r in rows[1:]] == ids[::-1]
    assert {r[2] for r in rows[1:]} == {"Starting"}

    assert main(["runs", "--external-id", "alpha"]) == 0
    assert [r[0] for r in table_rows(capsys.readouterr().out)[1:]] == [ids[2], ids[0]]


def test_runs_all_follows_the_continuation_to_the_last_page(served, capsys):
    put_source(served, "alpha")
    ids = []
    for _ in range(5):
        ids.append(submit_json(capsys, "alpha")["runId"])
        served.sim.advance(1)

    assert main(["runs", "--page-size", "2"]) == 0
    out = capsys.readouterr().out
    assert [r[0] for r in table_rows(out.split("(more runs")[0])[1:]] == ids[::-1][:2]
    assert "(more runs: add --all to list every page)" in out

    assert main(["runs", "--all", "--page-size", "2"]) == 0
    assert [r[0] for r in table_rows(capsys.readouterr().out)[1:]] == ids[::-1]
    assert main(["--json", "runs", "--all", "--page-size", "2"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert ([r["runId"] for r in doc["runs"]], doc["continuation"]) == (ids[::-1], None)


def test_runs_filters_by_status(served, capsys):
    put_source(served, "flaky", scenario="fail:exit=3:after=1", backoffLimit=0)
    put_source(served, "steady", scenario="run-forever")
    failed = submit_json(capsys, "flaky")["runId"]
    running = submit_json(capsys, "steady")["runId"]
    for _ in range(4):
        served.advance(10)

    assert main(["runs", "--status", "Failed"]) == 0
    assert [r[0] for r in table_rows(capsys.readouterr().out)[1:]] == [failed]
    assert main(["runs", "--status", "Running"]) == 0
    assert [r[0] for r in table_rows(capsys.readouterr().out)[1:]] == [running]


def test_cancel_of_a_finished_run_changes_nothing_and_says_so(served, capsys):
    put_source(served, "quick", scenario="succeed:after=5")
    run_id = submit_json(capsys, "quick")["runId"]
    for _ in range(3):
        served.advance(10)

    assert main(["cancel", run_id]) == 0
    assert "already finished as Success" in capsys.readouterr().out
    assert served.run(run_id)["status"] == "Success"


def test_health_reports_each_check(served, capsys):
    assert main(["health"]) == 0
    out = capsys.readouterr().out
    assert {line.split(":")[0]: line.split(": ")[1] for line in out.strip().splitlines()} == {
        "settings": "ok", "runTable": "ok", "cluster": "ok"}


# ------------------------------------------------------------------------- pure rendering


def test_a_lost_run_exits_1_like_a_failed_one_and_a_failing_one_is_not_finished():
    assert exit_code_for({"status": "Failed", "phase": "Lost", "terminal": True}) == ExitCode.FAILED
    assert exit_code_for({"status": "Failed", "phase": "Failing", "terminal": False}) is None
    assert exit_code_for({"status": "Cancelled", "phase": "Cancelled", "terminal": True}) == ExitCode.CANCELLED
    assert exit_code_for({"status": "Running", "phase": "Cancelling", "terminal": False}) is None


def test_text_from_the_cluster_cannot_drive_the_operators_terminal():
    doc = {"runId": "r-1", "status": "Failed", "phase": "Failed", "reason": "Error\x1b]0;pwned\x07",
           "message": "line one\nline two\x1b[2J", "createdAt": "2026-11-26T10:00:00+00:00",
           "finishedAt": "2026-11-26T10:02:05+00:00", "terminal": True,
           "diagnostics": {"pods": [{"name": "p", "logTail": ["ok", "\x1b[31mred"]}]}}
    from datetime import UTC, datetime

    shown = status_line(doc, elapsed=3725, frame="|") + run_details(doc, datetime.now(UTC))
    assert "\x1b" not in shown and "\x07" not in shown
    assert "\\x1b]0;pwned\\x07" in shown
    assert "1h02m05s" in shown and "elapsed:    2m05s" in shown
