"""``openbatch workflow …``: run, watch, redrive, cancel and schedule workflows; submit them to any Batch endpoint."""

from __future__ import annotations

import json
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

import httpx
import typer
from rich.console import Console
from rich.live import Live
from rich.table import Table

from openbatch.cli import common
from openbatch.domain.errors import BatchError

app = typer.Typer(help="Workflows: a DAG of Batch jobs defined in one YAML/JSON file.", no_args_is_help=True)
schedule_app = typer.Typer(help="Cron schedules that start workflow runs.", no_args_is_help=True)
app.add_typer(schedule_app, name="schedule")

_STYLE = {
    "SUCCEEDED": "green",
    "FAILED": "red",
    "CANCELLED": "red",
    "NOT_RUN": "dim",
    "SKIPPED": "dim",
    "RUNNING": "cyan",
    "STARTING": "cyan",
    "RUNNABLE": "yellow",
    "PENDING": "magenta",
    "WAITING": "magenta",
}
_DONE = ("SUCCEEDED", "FAILED", "CANCELLED")
console = Console(stderr=True)

EndpointOption = common.EndpointOption
ProfileOption = common.ProfileOption
OutputOption = typer.Option("table", "-o", "--output", help="table or json.")
ParamOption = typer.Option(None, "--param", "-p", help="k=v; overrides a workflow parameter (repeatable).")


def fail(message: str, problems: list[str] | None = None) -> NoReturn:
    console.print(f"[red]error:[/red] {message}", highlight=False, markup=True, soft_wrap=True)
    for problem in problems or []:
        console.print(f"  - {problem}", highlight=False, markup=False, soft_wrap=True)
    raise typer.Exit(1)


class Api:
    """The native workflow API; every failure becomes one clean line and exit code 1."""

    def __init__(self, endpoint_url: str | None, profile: str | None = None) -> None:
        try:
            self.target = common.resolve(endpoint_url, profile)
        except common.CliError as exc:
            common.fail(exc.message, exc.hint, exc.code)
        self.endpoint = self.target.endpoint_url

    def call(self, method: str, path: str, body: Any = None, params: dict[str, str] | None = None) -> Any:
        url = str(httpx.URL(self.endpoint + path, params=params))
        content = json.dumps(body).encode() if body is not None else b""
        headers = common.signed_headers(self.target, method, url, content)
        try:
            with httpx.Client(timeout=60.0) as client:
                response = client.request(method, url, content=content, headers=headers)
        except httpx.HTTPError as exc:
            fail(f"cannot reach OpenBatch at {self.endpoint} ({type(exc).__name__}: {exc}); is the server running?")
        try:
            payload = response.json()
        except ValueError:
            fail(f"{method} {path} answered HTTP {response.status_code} with a body that is not JSON")
        if response.status_code >= 400:
            if isinstance(payload, dict):
                message = "the workflow is invalid" if payload.get("problems") else payload.get("message")
                fail(str(message or response.status_code), payload.get("problems"))
            fail(f"HTTP {response.status_code}")
        return payload


def _params(pairs: list[str] | None) -> dict[str, str]:
    from openbatch.workflows.spec import parse_params

    try:
        return parse_params(pairs or [])
    except BatchError as exc:
        fail(exc.message)


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError as exc:
        fail(f"cannot read {path}: {exc.strerror or exc}")


def _check_output(output: str) -> None:
    if output not in ("table", "json"):
        fail(f"--output must be table or json; got {output!r}")


def _table(run: dict[str, Any]) -> Table:
    table = Table(title=f"{run.get('workflowName', '')} run {run['runId']}: {run['status']}", title_justify="left")
    for column in ("step", "status", "job id", "duration", "reason"):
        table.add_column(column, overflow="fold")
    for name, step in (run.get("steps") or {}).items():
        status = step["status"]
        started, stopped = step.get("startedAt"), step.get("stoppedAt")
        duration = f"{(stopped - started) / 1000:.2f}s" if started and stopped else ""
        array = f" [{step['arraySize']}]" if step.get("arraySize") else ""
        table.add_row(
            name + array,
            f"[{_STYLE.get(status, 'white')}]{status}[/]",
            step.get("jobId") or "",
            duration,
            step.get("reason") or "",
        )
    return table


def _follow(fetch: Callable[[], dict[str, Any]], live_view: bool) -> dict[str, Any]:
    """Poll until the run finishes, with a live table on a terminal."""
    run = fetch()
    with _live(live_view) as update:
        while run["status"] not in _DONE:
            update(_table(run))
            time.sleep(0.5)
            run = fetch()
        update(_table(run))
    return run


@contextmanager
def _live(enabled: bool) -> Iterator[Callable[[Table], None]]:
    if not enabled:
        yield lambda table: None
        return
    with Live(console=console, refresh_per_second=4, transient=False) as live:
        yield live.update


def _finish(run: dict[str, Any], output: str, *, printed_live: bool) -> None:
    if output == "json":
        print(json.dumps(run, indent=2))
    elif not printed_live:
        Console().print(_table(run))
        if run.get("statusReason"):
            Console().print(f"reason: {run['statusReason']}", highlight=False)
    elif run.get("statusReason"):
        console.print(f"reason: {run['statusReason']}", highlight=False)
    raise typer.Exit(0 if run["status"] == "SUCCEEDED" else 1)


def _run_and_maybe_wait(api: Api, run: dict[str, Any], wait: bool, output: str) -> None:
    live = wait and output == "table" and sys.stderr.isatty()
    if wait:
        run = _follow(lambda: api.call("GET", f"/api/workflows/runs/{run['runId']}"), live)
        _finish(run, output, printed_live=live)
    if output == "json":
        print(json.dumps(run, indent=2))
    else:
        Console().print(_table(run))


@app.command("run")
def run_cmd(
    file: Path = typer.Argument(..., help="The workflow file (YAML or JSON)."),
    param: list[str] | None = ParamOption,
    wait: bool = typer.Option(False, "--wait", help="Follow the run to its end; exit 0 only if it SUCCEEDED."),
    output: str = OutputOption,
    endpoint_url: str | None = EndpointOption,
    profile: str | None = ProfileOption,
    embedded: bool = typer.Option(
        False, "--embedded", help="Run on a temporary server of its own (SQLite, local executor); implies --wait."
    ),
) -> None:
    """Start a run of the workflow in FILE on the OpenBatch server."""
    _check_output(output)
    text, params = _read(file), _params(param)
    if not embedded:
        api = Api(endpoint_url, profile)
        run = api.call("POST", "/api/workflows/runs", {"definition": text, "parameters": params})
        _run_and_maybe_wait(api, run, wait, output)
        return
    from openbatch.cli.background import free_port, launch_server

    with tempfile.TemporaryDirectory(prefix="openbatch-") as tmp:
        port = free_port()
        console.print(f"starting an embedded OpenBatch server on 127.0.0.1:{port} …", highlight=False)
        try:
            server = launch_server(Path(tmp), port)
        except RuntimeError as exc:
            fail(f"the embedded server did not start: {exc}")
        try:
            api = Api(f"http://127.0.0.1:{port}")
            run = api.call("POST", "/api/workflows/runs", {"definition": text, "parameters": params})
            _run_and_maybe_wait(api, run, True, output)
        finally:
            server.terminate()
            server.wait(30)


@app.command("ls")
def ls_cmd(
    name: str | None = typer.Option(None, help="Only runs of this workflow."),
    status: str | None = typer.Option(None, help="RUNNING, SUCCEEDED, FAILED or CANCELLED."),
    max_results: int = typer.Option(50, help="How many runs (newest first)."),
    output: str = OutputOption,
    endpoint_url: str | None = EndpointOption,
    profile: str | None = ProfileOption,
) -> None:
    """List workflow runs, newest first."""
    _check_output(output)
    query = {"maxResults": str(max_results)}
    if name:
        query["name"] = name
    if status:
        query["status"] = status
    result = Api(endpoint_url, profile).call("GET", "/api/workflows/runs", params=query)
    if output == "json":
        print(json.dumps(result, indent=2))
        return
    table = Table()
    for column in ("run id", "workflow", "status", "created", "steps"):
        table.add_column(column, overflow="fold")
    for run in result["runs"]:
        created = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(run["createdAt"] / 1000))
        counts = ", ".join(f"{k} {v}" for k, v in sorted((run.get("stepCounts") or {}).items()))
        style = _STYLE.get(run["status"], "white")
        table.add_row(run["runId"], run["workflowName"], f"[{style}]{run['status']}[/]", created, counts)
    Console().print(table)


@app.command("show")
def show_cmd(
    run_id: str = typer.Argument(..., metavar="RUN"),
    output: str = OutputOption,
    endpoint_url: str | None = EndpointOption,
    profile: str | None = ProfileOption,
) -> None:
    """Show a run and each step's state."""
    _check_output(output)
    run = Api(endpoint_url, profile).call("GET", f"/api/workflows/runs/{run_id}")
    if output == "json":
        print(json.dumps(run, indent=2))
        return
    Console().print(_table(run))
    if run.get("statusReason"):
        Console().print(f"reason: {run['statusReason']}", highlight=False)


@app.command("redrive")
def redrive_cmd(
    run_id: str = typer.Argument(..., metavar="RUN"),
    wait: bool = typer.Option(False, "--wait", help="Follow the run to its end; exit 0 only if it SUCCEEDED."),
    output: str = OutputOption,
    endpoint_url: str | None = EndpointOption,
    profile: str | None = ProfileOption,
) -> None:
    """Re-run the failed, cancelled and never-run steps of a finished run (same run id)."""
    _check_output(output)
    api = Api(endpoint_url, profile)
    run = api.call("POST", f"/api/workflows/runs/{run_id}/redrive")
    _run_and_maybe_wait(api, run, wait, output)


@app.command("cancel")
def cancel_cmd(
    run_id: str = typer.Argument(..., metavar="RUN"),
    reason: str = typer.Option("Workflow run cancelled", help="Recorded on every step job."),
    output: str = OutputOption,
    endpoint_url: str | None = EndpointOption,
    profile: str | None = ProfileOption,
) -> None:
    """Cancel a run: waiting steps are cancelled and every step job is terminated."""
    _check_output(output)
    run = Api(endpoint_url, profile).call("POST", f"/api/workflows/runs/{run_id}/cancel", {"reason": reason})
    if output == "json":
        print(json.dumps(run, indent=2))
    else:
        Console().print(f"cancelling run {run['runId']} ({run['status']})", highlight=False)


@app.command("validate")
def validate_cmd(
    file: Path = typer.Argument(..., help="The workflow file (YAML or JSON)."),
    param: list[str] | None = ParamOption,
) -> None:
    """Check a workflow file locally (job definitions and queues are checked when it runs)."""
    from openbatch.workflows.spec import WorkflowValidationError, parse

    try:
        spec = parse(_read(file), params=_params(param), source=str(file))
    except WorkflowValidationError as exc:
        fail(f"{file} is invalid", exc.problems)
    Console().print(f"{file}: workflow {spec.name} with {len(spec.steps)} steps is valid", highlight=False)


@app.command("submit")
def submit_cmd(
    file: Path = typer.Argument(..., help="The workflow file (YAML or JSON)."),
    endpoint_url: str | None = typer.Option(
        None, "--endpoint-url", help="Any AWS Batch endpoint; default: the SDK's (AWS_ENDPOINT_URL_BATCH or AWS)."
    ),
    param: list[str] | None = ParamOption,
    wait: bool = typer.Option(False, "--wait", help="Follow every step to its end; exit 0 only if all SUCCEEDED."),
    output: str = OutputOption,
    region: str | None = typer.Option(None, help="AWS region (default: the SDK's)."),
) -> None:
    """Submit the workflow as plain Batch jobs to any Batch endpoint (real AWS included), through boto3."""
    _check_output(output)
    from openbatch.workflows.submitter import SubmitError, Submitter

    try:
        submitter = Submitter.connect(endpoint_url, region)
        result = submitter.submit(_read(file), _params(param))
        if wait:
            live = output == "table" and sys.stderr.isatty()
            result = _follow(lambda: submitter.refresh(result), live)
    except SubmitError as exc:
        fail(exc.message, exc.problems)
    if not wait:
        if output == "json":
            print(json.dumps(result, indent=2))
        else:
            Console().print(_table(result))
        return
    _finish(result, output, printed_live=wait and output == "table" and sys.stderr.isatty())


# --- schedules ---------------------------------------------------------------------------


@schedule_app.command("create")
def schedule_create(
    name: str = typer.Argument(...),
    cron: str = typer.Option(..., help="5 fields (min hour dom mon dow), or 6 with seconds last."),
    workflow: str | None = typer.Option(None, help="A registered workflow (see --file) to run."),
    file: Path | None = typer.Option(None, "--file", help="Register this workflow file and schedule it."),
    job: Path | None = typer.Option(None, "--job", help="Or submit this job (a SubmitJob request as JSON)."),
    timezone: str = typer.Option("UTC", help="IANA time zone of the cron expression."),
    missed: str = typer.Option("RUN_ONCE", "--missed-run-policy", help="RUN_ONCE or SKIP (runs missed while down)."),
    param: list[str] | None = ParamOption,
    output: str = OutputOption,
    endpoint_url: str | None = EndpointOption,
    profile: str | None = ProfileOption,
) -> None:
    """Create a cron schedule that starts a workflow run (or submits a job)."""
    _check_output(output)
    api = Api(endpoint_url, profile)
    body: dict[str, Any] = {
        "name": name,
        "cron": cron,
        "timezone": timezone,
        "parameters": _params(param),
        "missedRunPolicy": missed,
    }
    if job is not None:
        try:
            body["job"] = json.loads(_read(job))
        except ValueError as exc:
            fail(f"{job} is not valid JSON: {exc}")
    else:
        if file is not None:
            workflow = api.call("POST", "/api/workflows/definitions", {"definition": _read(file)})["name"]
        if workflow is None:
            fail("give --workflow NAME, --file FILE or --job FILE")
        body["workflow"] = workflow
    _print_schedules([api.call("POST", "/api/workflows/schedules", body)], output)


@schedule_app.command("ls")
def schedule_ls(
    output: str = OutputOption, endpoint_url: str | None = EndpointOption, profile: str | None = ProfileOption
) -> None:
    """List schedules."""
    _check_output(output)
    _print_schedules(Api(endpoint_url, profile).call("GET", "/api/workflows/schedules")["schedules"], output)


@schedule_app.command("pause")
def schedule_pause(
    name: str,
    output: str = OutputOption,
    endpoint_url: str | None = EndpointOption,
    profile: str | None = ProfileOption,
) -> None:
    """Pause a schedule."""
    _print_schedules([Api(endpoint_url, profile).call("POST", f"/api/workflows/schedules/{name}/pause")], output)


@schedule_app.command("resume")
def schedule_resume(
    name: str,
    output: str = OutputOption,
    endpoint_url: str | None = EndpointOption,
    profile: str | None = ProfileOption,
) -> None:
    """Resume a paused schedule (from its next firing after now)."""
    _print_schedules([Api(endpoint_url, profile).call("POST", f"/api/workflows/schedules/{name}/resume")], output)


@schedule_app.command("delete")
def schedule_delete(name: str, endpoint_url: str | None = EndpointOption, profile: str | None = ProfileOption) -> None:
    """Delete a schedule."""
    Api(endpoint_url, profile).call("DELETE", f"/api/workflows/schedules/{name}")
    Console().print(f"deleted schedule {name}", highlight=False)


def _print_schedules(schedules: list[dict[str, Any]], output: str) -> None:
    if output == "json":
        print(json.dumps(schedules if len(schedules) != 1 else schedules[0], indent=2))
        return
    table = Table()
    for column in ("name", "state", "cron", "timezone", "workflow", "next", "last run"):
        table.add_column(column, overflow="fold")
    for item in schedules:
        table.add_row(
            item["name"],
            item["state"],
            item["cron"],
            item["timezone"],
            item.get("workflow") or "(job)",
            item.get("nextFireTime", ""),
            item.get("lastRunId") or item.get("lastJobId") or "",
        )
    Console().print(table)
