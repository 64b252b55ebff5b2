"""The web console in a real browser (Debian's Chromium, driven by Playwright) against a real server
with real jobs: what the page shows must be what the API says, and its actions must act.

One server and one browser serve the whole module; each test opens its own page. Screenshots go to
``test-artifacts/console/`` (or ``$OPENBATCH_TEST_ARTIFACTS/console``).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import yaml

from tests.support import ServerProcess, make_queue, shell_definition, unique, wait_for, wait_for_status

if TYPE_CHECKING:
    from mypy_boto3_batch import BatchClient
    from playwright.sync_api import Browser, Page

CHROMIUM = os.environ.get("OPENBATCH_TEST_CHROMIUM", "/usr/bin/chromium")
STATUSES = ("SUBMITTED", "PENDING", "RUNNABLE", "STARTING", "RUNNING", "SUCCEEDED", "FAILED")
TIMEOUT_MS = 30_000
ADMIN = ("AKIACONSOLEADMIN1", "console-admin-secret")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which(CHROMIUM) is None, reason=f"no Chromium at {CHROMIUM} (apt-get install chromium)"),
]


def artifacts() -> Path:
    root = Path(os.environ.get("OPENBATCH_TEST_ARTIFACTS", Path(__file__).resolve().parents[2] / "test-artifacts"))
    path = root / "console"
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        # --no-sandbox: the tests may run as root, where Chromium's own sandbox refuses to start.
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1440, "height": 900}, color_scheme="light")
    context.set_default_timeout(TIMEOUT_MS)
    opened = context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda error: errors.append(str(error)))
    # The page works offline: everything it loads comes from the server itself (no CDN, no fonts).
    elsewhere: list[str] = []
    opened.on(
        "request",
        lambda r: None if r.url.startswith(("http://127.0.0.1:", "data:", "about:")) else elsewhere.append(r.url),
    )
    try:
        yield opened
        assert not errors, errors
        assert not elsewhere, elsewhere
    finally:
        context.close()


def shot(page: Page, name: str) -> Path:
    path = artifacts() / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def expect() -> Any:
    from playwright.sync_api import expect as playwright_expect

    playwright_expect.set_options(timeout=TIMEOUT_MS)
    return playwright_expect


def count(batch: BatchClient, queue: str, status: str) -> int:
    pages = batch.get_paginator("list_jobs").paginate(jobQueue=queue, jobStatus=status)  # type: ignore[arg-type]
    return sum(len(p["jobSummaryList"]) for p in pages)


def open_job(page: Page, server: ServerProcess, job_id: str) -> None:
    page.goto(f"{server.url}/console/#/jobs/{job_id}")
    expect()(page.locator("#job-name")).to_be_visible()


def test_root_redirects_and_dashboard_counts_match_the_api(
    server: ServerProcess, batch: BatchClient, page: Page
) -> None:
    queue = make_queue(batch, max_vcpus=1)
    ok = shell_definition(batch, "true")
    bad = shell_definition(batch, "exit 3")
    slow = shell_definition(batch, "sleep 60")
    done = [batch.submit_job(jobName=unique("ok"), jobQueue=queue, jobDefinition=ok)["jobId"] for _ in range(3)]
    failed = batch.submit_job(jobName=unique("bad"), jobQueue=queue, jobDefinition=bad)["jobId"]
    for job_id in [*done, failed]:
        wait_for_status(batch, job_id, ["SUCCEEDED", "FAILED"])
    running = batch.submit_job(jobName=unique("slow"), jobQueue=queue, jobDefinition=slow)["jobId"]
    wait_for_status(batch, running, ["RUNNING"])
    # One vCPU is taken: these two wait, one of them behind a dependency.
    waiting_name = unique("wait")
    waiting = batch.submit_job(jobName=waiting_name, jobQueue=queue, jobDefinition=ok)["jobId"]
    batch.submit_job(
        jobName=unique("dep"), jobQueue=queue, jobDefinition=ok, dependsOn=[{"jobId": waiting, "type": "SEQUENTIAL"}]
    )
    wait_for_status(batch, waiting, ["RUNNABLE"])

    page.goto(server.url)
    assert page.url == f"{server.url}/console/"
    row = page.locator(f'#queues tr[data-queue="{queue}"]')
    expect()(row).to_be_visible()
    expect()(page.locator("#live")).to_have_attribute("data-state", "live")
    for status in STATUSES:
        expected = count(batch, queue, status)
        cell = row.locator(f'td[data-status-count="{status}"] [data-count]')
        expect()(cell).to_have_attribute("data-count", str(expected))
    # The head of the queue, with the reason it waits.
    head = page.locator(f'#front tr[data-queue="{queue}"]')
    expect()(head.locator(f'a[href="#/jobs/{waiting}"]')).to_have_text(waiting_name)
    reason = batch.describe_jobs(jobs=[waiting])["jobs"][0].get("statusReason")
    if reason:
        expect()(head).to_contain_text(reason)
    shown = [count(batch, queue, s) for s in ("RUNNING", "SUCCEEDED", "FAILED", "RUNNABLE", "PENDING")]
    assert shown == [1, 3, 1, 1, 1]
    # The throughput chart counts the four finished jobs (and whatever other tests finished this hour).
    label = page.locator(".chart svg").get_attribute("aria-label") or ""
    succeeded, failed_n = int(label.split()[0]), int(label.split(" and ")[1].split()[0])
    assert succeeded >= 3 and failed_n >= 1, label
    shot(page, "dashboard")
    # Live: the running job ends, and the page follows without a reload.
    page.evaluate("window.__same_page = true")
    batch.terminate_job(jobId=running, reason="test")
    expect()(row.locator('td[data-status-count="FAILED"] [data-count]')).to_have_attribute("data-count", "2")
    assert page.evaluate("window.__same_page") is True
    page.emulate_media(color_scheme="dark")
    shot(page, "dashboard-dark")


def test_a_running_jobs_log_appears_live_and_terminate_asks_first(
    server: ServerProcess, batch: BatchClient, page: Page
) -> None:
    queue = make_queue(batch)
    token = unique("line")
    script = f"echo starting; echo PARAM=$P; sleep 3; echo {token}; sleep 60"
    definition = shell_definition(batch, script, container={"environment": [{"name": "P", "value": "x1"}]})
    job_id = batch.submit_job(
        jobName=unique("tail"), jobQueue=queue, jobDefinition=definition, parameters={"day": "2026-01-02"}
    )["jobId"]
    wait_for_status(batch, job_id, ["RUNNING"])
    open_job(page, server, job_id)
    log = page.locator("#log")
    expect()(log).to_contain_text("PARAM=x1")
    page.evaluate("window.__same_page = true")
    expect()(log).to_contain_text(token)
    assert page.evaluate("window.__same_page") is True
    expect()(page.locator("#job-status")).to_contain_text("RUNNING")
    expect()(page.locator("#parameters")).to_contain_text("2026-01-02")
    expect()(page.locator("#environment")).to_contain_text("P")
    shot(page, "job-running")

    # Backing out of the dialog leaves the job alone.
    page.locator("#terminate-job").click()
    dialog = page.locator("#confirm")
    expect()(dialog).to_be_visible()
    page.locator("#confirm-back").click()
    expect()(dialog).to_be_hidden()
    assert batch.describe_jobs(jobs=[job_id])["jobs"][0]["status"] == "RUNNING"

    page.locator("#terminate-job").click()
    page.locator("#confirm-reason").fill("stopped by the browser test")
    page.locator("#confirm-ok").click()
    job = wait_for_status(batch, job_id, ["FAILED"])
    assert job["statusReason"] == "stopped by the browser test"
    expect()(page.locator("#job-status")).to_contain_text("FAILED")
    expect()(page.locator("#terminate-job")).to_have_count(0)


def test_cancel_from_the_page_cancels_the_job(server: ServerProcess, batch: BatchClient, page: Page) -> None:
    queue = make_queue(batch, state="DISABLED")  # its compute environment is disabled: the job stays RUNNABLE
    definition = shell_definition(batch, "true")
    first = batch.submit_job(jobName=unique("first"), jobQueue=queue, jobDefinition=definition)["jobId"]
    job_id = batch.submit_job(
        jobName=unique("doomed"), jobQueue=queue, jobDefinition=definition, dependsOn=[{"jobId": first}]
    )["jobId"]
    wait_for_status(batch, first, ["RUNNABLE"])
    open_job(page, server, job_id)
    expect()(page.locator("#job-status")).to_contain_text("PENDING")
    # Dependencies are links to the jobs they name.
    page.locator(f'#dependencies a[href="#/jobs/{first}"]').click()
    expect()(page.locator(".idline.mono").first).to_have_text(first)
    expect()(page.locator("#job-status")).to_contain_text("RUNNABLE")
    page.locator("#cancel-job").click()
    expect()(page.locator("#confirm")).to_be_visible()
    shot(page, "cancel-dialog")
    page.locator("#confirm-ok").click()
    job = wait_for_status(batch, first, ["FAILED"])
    assert job.get("isCancelled") is True
    assert job["statusReason"] == "Cancelled from the console"
    expect()(page.locator("#job-status")).to_contain_text("FAILED")
    expect()(page.locator("#cancel-job")).to_have_count(0)
    # The job that depended on it fails in turn, and its page (back in history) shows that.
    wait_for_status(batch, job_id, ["FAILED"])
    page.go_back()
    expect()(page.locator("#job-status")).to_contain_text("FAILED")


def test_job_list_filters_pages_and_search(server: ServerProcess, batch: BatchClient, page: Page) -> None:
    queue = make_queue(batch)
    definition = shell_definition(batch, "true")
    prefix = unique("many")
    ids = [
        batch.submit_job(jobName=f"{prefix}-{i}", jobQueue=queue, jobDefinition=definition)["jobId"] for i in range(3)
    ]
    other = batch.submit_job(jobName=unique("other"), jobQueue=queue, jobDefinition=definition)["jobId"]
    for job_id in [*ids, other]:
        wait_for_status(batch, job_id, ["SUCCEEDED"])
    page.goto(f"{server.url}/console/#/jobs?queue={queue}")
    expect()(page.locator("#jobs tbody tr")).to_have_count(4)
    page.select_option("#filter-status", "SUCCEEDED")
    expect()(page.locator("#jobs tbody tr")).to_have_count(4)
    page.select_option("#filter-status", "FAILED")
    expect()(page.locator(".empty")).to_have_text("No jobs match.")
    # "/" focuses the search; a name prefix lists the matching jobs, a job id opens the job.
    page.locator("body").press("Escape")
    page.keyboard.press("/")
    assert page.evaluate("document.activeElement.id") == "search-input"
    page.keyboard.type(prefix)
    page.keyboard.press("Enter")
    expect()(page.locator("#jobs tbody tr")).to_have_count(3)
    assert sorted(page.locator("#jobs tbody tr").evaluate_all("rows => rows.map(r => r.dataset.jobId)")) == sorted(ids)
    page.keyboard.press("/")
    page.keyboard.type(other)
    page.keyboard.press("Enter")
    expect()(page.locator(".idline.mono").first).to_have_text(other)
    # Paging follows nextToken: a queue with more jobs than a page shows a second page.
    many = [{"jobName": f"{prefix}-p{i}", "jobQueue": queue, "jobDefinition": definition} for i in range(100)]
    for request in many:
        batch.submit_job(**request)  # type: ignore[arg-type]
    page.goto(f"{server.url}/console/#/jobs?queue={queue}")
    expect()(page.locator("#jobs tbody tr")).to_have_count(100)
    page.locator("#page-next").click()
    expect()(page.locator("#jobs tbody tr")).to_have_count(4)
    page.locator("#page-prev").click()
    expect()(page.locator("#jobs tbody tr")).to_have_count(100)
    # Keys: t switches light and dark, g d goes to the dashboard, ? lists the keys.
    page.locator("#page-prev").blur()
    theme = page.evaluate("document.documentElement.dataset.theme")
    page.keyboard.press("t")
    assert page.evaluate("document.documentElement.dataset.theme") == ("dark" if theme == "light" else "light")
    page.keyboard.press("g")
    page.keyboard.press("d")
    expect()(page.locator("#queues")).to_be_visible()
    page.keyboard.press("?")
    expect()(page.locator("#help")).to_be_visible()
    page.keyboard.press("Escape")
    expect()(page.locator("#help")).to_be_hidden()


def test_an_arrays_grid_shows_each_childs_state(server: ServerProcess, batch: BatchClient, page: Page) -> None:
    queue = make_queue(batch)
    definition = shell_definition(batch, 'test "$AWS_BATCH_JOB_ARRAY_INDEX" -lt 5')
    parent = batch.submit_job(
        jobName=unique("array"), jobQueue=queue, jobDefinition=definition, arrayProperties={"size": 8}
    )["jobId"]
    wait_for_status(batch, parent, ["FAILED"], timeout=60)
    children = [
        j
        for s in STATUSES
        for j in batch.list_jobs(arrayJobId=parent, jobStatus=s)["jobSummaryList"]  # type: ignore[arg-type]
    ]
    expected = {j["arrayProperties"]["index"]: j["status"] for j in children}
    assert expected == {i: "SUCCEEDED" if i < 5 else "FAILED" for i in range(8)}
    open_job(page, server, parent)
    cells = page.locator("#array-grid a")
    expect()(cells).to_have_count(8)
    shown = cells.evaluate_all("cells => cells.map(c => [Number(c.dataset.index), c.dataset.status])")
    assert dict(shown) == expected
    expect()(page.locator('[data-summary="SUCCEEDED"] strong')).to_have_text("5")
    expect()(page.locator('[data-summary="FAILED"] strong')).to_have_text("3")
    shot(page, "array")
    cells.nth(6).click()
    expect()(page.locator(".idline.mono").first).to_have_text(f"{parent}:6")
    expect()(page.locator("#job-status")).to_contain_text("FAILED")


def test_a_workflow_runs_dag_shows_each_steps_state(server: ServerProcess, page: Page) -> None:
    steps = {
        "extract": {"command": ["true"]},
        "transform": {"command": ["sh", "-c", "exit 4"], "dependsOn": ["extract"]},
        "validate": {"command": ["true"], "dependsOn": ["extract"]},
        "load": {"command": ["true"], "dependsOn": ["transform", "validate"]},
        "report": {"command": ["true"], "dependsOn": ["load"]},
    }
    document = {"name": unique("etl"), "defaults": {"memory": 64}, "steps": steps}
    with httpx.Client(base_url=server.url, timeout=30) as client:
        run = client.post("/api/workflows/runs", json={"definition": json.dumps(document)}).json()
        run_id = run["runId"]

        def finished() -> dict[str, Any] | None:
            view: dict[str, Any] = client.get(f"/api/workflows/runs/{run_id}").json()
            return view if view["status"] != "RUNNING" else None

        final = wait_for(finished, timeout=60)
    states = {name: step["status"] for name, step in final["steps"].items()}
    assert states == {
        "extract": "SUCCEEDED",
        "transform": "FAILED",
        "validate": "SUCCEEDED",
        "load": "NOT_RUN",
        "report": "NOT_RUN",
    }
    page.goto(f"{server.url}/console/#/workflows/runs/{run_id}")
    nodes = page.locator("#dag svg [data-step][data-status]")
    expect()(page.locator('#dag [data-step="report"]').first).to_be_visible()
    for name, status in states.items():
        expect()(page.locator(f'#dag .node[data-step="{name}"]')).to_have_attribute("data-status", status)
    assert nodes.count() >= len(states)
    # Edges follow dependsOn.
    edges = page.locator("#dag path.edge").evaluate_all("paths => paths.map(p => [p.dataset.from, p.dataset.to])")
    assert sorted(map(tuple, edges)) == sorted((d, n) for n, s in steps.items() for d in s.get("dependsOn", []))
    expect()(page.locator("#redrive-run")).to_be_visible()
    shot(page, "workflow")
    # A step with a job links to it.
    page.locator('#dag a.node[data-step="transform"]').click()
    expect()(page.locator("#job-status")).to_contain_text("FAILED")
    page.go_back()
    page.locator("#redrive-run").click()
    expect()(page.locator("#confirm")).to_be_visible()
    page.locator("#confirm-ok").click()
    # The redriven run reruns the failed step as a new job; the page follows it without a reload.
    with httpx.Client(base_url=server.url, timeout=30) as client:

        def redriven() -> dict[str, Any] | None:
            view: dict[str, Any] = client.get(f"/api/workflows/runs/{run_id}").json()
            return view if view["redriveCount"] == 1 and view["status"] != "RUNNING" else None

        again = wait_for(redriven, timeout=60)
    new_job = again["steps"]["transform"]["jobId"]
    assert new_job != final["steps"]["transform"]["jobId"]
    expect()(page.locator('#dag a.node[data-step="transform"]')).to_have_attribute("href", f"#/jobs/{new_job}")
    expect()(page.locator("#run-head")).to_contain_text("redriven 1")


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    auth_file = tmp_path_factory.mktemp("console-auth") / "auth.yaml"
    auth_file.write_text(
        yaml.safe_dump({"keys": [{"accessKeyId": ADMIN[0], "secretAccessKey": ADMIN[1], "user": "admin"}]})
    )
    proc = ServerProcess(tmp_path_factory.mktemp("secured"), auth_file=auth_file, env={"OPENBATCH_GPUS": ""}).start()
    try:
        yield proc
    finally:
        proc.stop()


def test_with_access_keys_the_page_signs_every_call(secured: ServerProcess, page: Page) -> None:
    import boto3

    signed = boto3.client(
        "batch",
        region_name="us-east-1",
        endpoint_url=secured.url,
        aws_access_key_id=ADMIN[0],
        aws_secret_access_key=ADMIN[1],
    )
    queue = make_queue(signed)
    definition = shell_definition(signed, "echo signed-output; sleep 2")
    # The page itself is public; its data is not.
    assert httpx.get(f"{secured.url}/console/js/app.js").status_code == 200
    assert httpx.post(f"{secured.url}/v1/describejobqueues", json={}).status_code == 403
    assert httpx.get(f"{secured.url}/api/jobs/events").status_code == 403

    page.goto(f"{secured.url}/console/#/jobs?queue={queue}")
    login = page.locator("#login")
    expect()(login).to_be_visible()
    page.fill("#login [name=accessKeyId]", ADMIN[0])
    page.fill("#login [name=secretAccessKey]", "not-the-secret")
    page.locator("#login button[type=submit]").click()
    expect()(page.locator("#login-error")).to_contain_text("signature")
    page.fill("#login [name=secretAccessKey]", ADMIN[1])
    page.locator("#login button[type=submit]").click()
    expect()(login).to_be_hidden()
    # The feed connects with a presigned URL; a job submitted now shows up without a reload.
    expect()(page.locator("#live")).to_have_attribute("data-state", "live")
    job_id = signed.submit_job(jobName=unique("signed"), jobQueue=queue, jobDefinition=definition)["jobId"]
    link = page.locator(f'#jobs tr[data-job-id="{job_id}"] a')
    expect()(link).to_be_visible()
    link.click()
    expect()(page.locator("#log")).to_contain_text("signed-output")
    shot(page, "signed-in-job")
    # The fallback SHA-256 (for pages on plain http away from localhost) agrees with WebCrypto.
    agree = page.evaluate(
        """async () => {
            const m = await import("/console/js/sigv4.js");
            const inputs = ["", "abc", "x".repeat(1000), "é✓ unicode", "a".repeat(64), "b".repeat(55)];
            const bytes = (text) => new TextEncoder().encode(text);
            for (const text of inputs) {
                const ours = m.hex(m.sha256Bytes(text));
                const theirs = m.hex(new Uint8Array(await crypto.subtle.digest("SHA-256", bytes(text))));
                if (ours !== theirs) return `sha256 of ${text.length} chars: ${ours} != ${theirs}`;
                const key = await crypto.subtle.importKey(
                    "raw", bytes("k".repeat(70)), {name: "HMAC", hash: "SHA-256"}, false, ["sign"]);
                const mac = m.hex(new Uint8Array(await crypto.subtle.sign("HMAC", key, bytes(text))));
                if (m.hex(m.hmacBytes("k".repeat(70), text)) !== mac) return `hmac of ${text.length} chars differs`;
            }
            return "ok";
        }"""
    )
    assert agree == "ok"
