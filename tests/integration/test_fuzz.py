"""Property-based requests over every operation of the AWS models, sent raw to a real server.

Bodies are generated from botocore's own input shapes (``batch`` and ``logs``):
well-typed values, values of the wrong type, boundary strings (lone surrogates,
control characters, very long text), huge numbers and deep nesting; then
headers, methods and paths. Every answer must be below 500, every 4xx must
carry AWS's error shape, and afterwards the server must be healthy and every
Describe* must still parse in boto3 (nothing mistyped was stored). The
server's RSS is printed at the end.

``OPENBATCH_FUZZ_SCALE`` multiplies the number of examples (default 1: about
12,000 requests from 1,800 examples).
"""

from __future__ import annotations

import json
import os
import re
import string
from collections import Counter
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path
from random import Random
from typing import Any
from urllib.parse import quote

import botocore.session
import httpx
import pytest
from botocore.model import ListShape, MapShape, ServiceModel, Shape, StructureShape
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support import ServerProcess, batch_client

pytestmark = pytest.mark.slow

SCALE = float(os.environ.get("OPENBATCH_FUZZ_SCALE", "1"))
MIN_REQUESTS = 10_000
BATCH = botocore.session.get_session().get_service_model("batch")
LOGS = botocore.session.get_session().get_service_model("logs")
LOGS_SERVED = ("GetLogEvents", "DescribeLogStreams")
MAX_DEPTH = 4
"""Deeper structures are generated empty: the shapes are wide, and depth is fuzzed on its own."""

SENT: Counter[str] = Counter()
"""Requests sent, by test; the last test checks the total."""
FINISHED: set[str] = set()


def _examples(n: int) -> int:
    return max(1, int(n * SCALE))


def _settings(n: int) -> settings:
    return settings(
        max_examples=_examples(n),
        deadline=None,
        suppress_health_check=list(HealthCheck),
        print_blob=True,
    )


# --- value strategies from the model ---------------------------------------------------------

BOUNDARY_STRINGS = [
    "",
    " ",
    "\ud800",
    "a\udfffb",
    "\x00",
    "tab\tand\nnewline",
    "\x1b[31mred",
    "\x7f\x85",
    "\ufffe",
    "\U0001f600",
    "名前",
    "../../../etc/passwd",
    "%00",
    "Ref::missing",
    "*",
    "x" * 129,
    "y" * 2000,
    "arn:aws:batch:us-east-1:123456789012:job-queue/",
    "arn:aws:batch:us-east-1:123456789012:compute-environment/fuzz-ce",
    "arn:aws:batch:us-east-1:123456789012:job-definition/fuzz-jd:1",
    "arn:aws:batch:us-east-1:123456789012:scheduling-policy/fuzz-sp",
    "arn:aws:batch:us-east-1:123456789012:job/00000000-0000-0000-0000-000000000000",
    "1e9",
    "-1",
    "0.25",
    "NaN",
]
BOUNDARY_INTEGERS = [0, 1, -1, 2, 10_000, 10_001, 2**31 - 1, 2**31, -(2**31) - 1, 2**63, -(2**63) - 1, 10**30]
# Names of resources the fixture creates, so that generated requests reach past "not found".
POOLS: dict[str, list[str]] = {
    "computeEnvironment": ["fuzz-ce"],
    "computeEnvironments": ["fuzz-ce"],
    "computeEnvironmentName": ["fuzz-ce", "fuzz-new-ce"],
    "jobQueue": ["fuzz-q"],
    "jobQueues": ["fuzz-q"],
    "jobQueueName": ["fuzz-q", "fuzz-new-q"],
    "jobDefinition": ["fuzz-jd", "fuzz-jd:1"],
    "jobDefinitions": ["fuzz-jd:1"],
    "jobDefinitionName": ["fuzz-jd"],
    "arn": ["arn:aws:batch:us-east-1:123456789012:scheduling-policy/fuzz-sp"],
    "arns": ["arn:aws:batch:us-east-1:123456789012:scheduling-policy/fuzz-sp"],
    "schedulingPolicyArn": ["arn:aws:batch:us-east-1:123456789012:scheduling-policy/fuzz-sp"],
    "type": ["MANAGED", "UNMANAGED", "container", "EC2", "VCPU", "MEMORY", "GPU"],
    "value": ["1", "4", "0.5", "1e9", "193", "-2", "inf"],
    "logGroupName": ["/aws/batch/job"],
    "logStreamName": ["fuzz-jd/default/0"],
}
SAFE_COMMANDS = [["true"], ["sh", "-c", "exit 0"]]
"""Jobs the fuzzer manages to submit run only these: generated text is never executed."""


def _mutant(depth: int) -> st.SearchStrategy[Any]:
    """A value of some other type than the model's."""
    nested = st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=3),
        lambda inner: st.lists(inner, max_size=2) | st.dictionaries(st.text(max_size=3), inner, max_size=2),
        max_leaves=6,
    )
    return st.one_of(
        st.none(),
        st.booleans(),
        st.sampled_from(BOUNDARY_INTEGERS),
        st.floats(allow_nan=True, allow_infinity=True),
        st.sampled_from(BOUNDARY_STRINGS),
        nested,
    )


def _string(shape: Shape, member: str) -> st.SearchStrategy[Any]:
    choices: list[st.SearchStrategy[Any]] = [st.text(max_size=12), st.sampled_from(BOUNDARY_STRINGS)]
    enum = shape.metadata.get("enum")
    if enum:
        choices.append(st.sampled_from(enum))
        choices.append(st.sampled_from([e.lower() for e in enum]))
    if member in POOLS:
        choices.extend([st.sampled_from(POOLS[member])] * 2)
    return st.one_of(*choices)


@cache
def _value(service: str, shape_name: str, member: str, depth: int) -> st.SearchStrategy[Any]:
    shape = _shape(service, shape_name)
    if member == "command":
        return st.sampled_from(SAFE_COMMANDS)
    kind = shape.type_name
    valid: st.SearchStrategy[Any]
    if kind == "structure":
        valid = _structure(service, shape, depth)
    elif kind == "list":
        assert isinstance(shape, ListShape)
        if depth >= MAX_DEPTH:
            valid = st.just([])
        else:
            valid = st.lists(_value(service, shape.member.name, member, depth + 1), max_size=3)
    elif kind == "map":
        assert isinstance(shape, MapShape)
        if depth >= MAX_DEPTH:
            valid = st.just({})
        else:
            valid = st.dictionaries(
                _string(shape.key, ""), _value(service, shape.value.name, "", depth + 1), max_size=3
            )
    elif kind == "string":
        valid = _string(shape, member)
    elif kind in ("integer", "long"):
        valid = st.integers(min_value=-2, max_value=40) | st.sampled_from(BOUNDARY_INTEGERS)
    elif kind in ("float", "double"):
        valid = st.floats(allow_nan=False, allow_infinity=False) | st.sampled_from([0.0, 0.00001, 999.99999, 1e308])
    elif kind == "boolean":
        valid = st.booleans()
    elif kind == "timestamp":
        valid = st.integers(min_value=0, max_value=2**41)
    else:
        valid = st.text(max_size=8)
    # Mostly well-typed, so that requests get past the type checks to the rules behind them.
    return st.one_of(valid, valid, valid, _mutant(depth))


def _structure(service: str, shape: Shape, depth: int) -> st.SearchStrategy[dict[str, Any]]:
    assert isinstance(shape, StructureShape)
    if depth >= MAX_DEPTH:
        return st.just({})
    members = {name: m for name, m in shape.members.items() if not m.serialization.get("location")}
    required = {n: _value(service, members[n].name, n, depth + 1) for n in shape.required_members if n in members}
    optional = {n: _value(service, m.name, n, depth + 1) for n, m in members.items() if n not in shape.required_members}
    return st.fixed_dictionaries(required, optional=optional)


def _model(service: str) -> ServiceModel:
    return BATCH if service == "batch" else LOGS


@cache
def _shape(service: str, name: str) -> Shape:
    return _model(service).shape_for(name)


def _input(service: str, operation: str) -> StructureShape | None:
    shape = _model(service).operation_model(operation).input_shape
    assert shape is None or isinstance(shape, StructureShape)
    return shape


def _body(service: str, operation: str) -> st.SearchStrategy[dict[str, Any]]:
    shape = _input(service, operation)
    if shape is None:
        return st.just({})
    return _structure(service, shape, 0)


# --- requests ------------------------------------------------------------------------------------

RAW_BODIES = [
    b"",
    b"{",
    b"null",
    b"[]",
    b'"text"',
    b"\xff\xfe\x00",
    b'{"a": 1e999}',
    b'{"a": NaN}',
    b'{"a": "\\ud800"}',
    b'{"a": "\\u0000"}',
    b"[" * 5000 + b"]" * 5000,
    b'{"a":' * 70 + b"1" + b"}" * 70,
    b'{"maxResults": 100000000000000000000000000}',
]


def _encode(body: Any) -> bytes:
    # ensure_ascii writes lone surrogates as \\ud800 escapes, as a client in another language could.
    return json.dumps(body, ensure_ascii=True, allow_nan=True).encode()


def _batch_request(operation: str, body: dict[str, Any]) -> tuple[str, str, dict[str, Any]]:
    op = BATCH.operation_model(operation)
    path = op.http["requestUri"].split("?")[0]
    shape = _input("batch", operation)
    params: dict[str, Any] = {}
    for name, member in shape.members.items() if shape else []:
        location = member.serialization.get("location")
        if location == "uri":
            value = body.get(name, "arn:aws:batch:us-east-1:123456789012:job-queue/fuzz-q")
            path = path.replace("{" + name + "}", quote(str(value), safe=""))
        elif location == "querystring" and name in body:
            params[member.serialization.get("name", name)] = body[name]
    return op.http["method"], path, params


_DEEP = 70
"""Deeper than the server's nesting limit (64)."""


def _variants(body: dict[str, Any], rnd: Random) -> list[dict[str, Any]]:
    """The body, and seven copies with one member (a random leaf, or a new one) replaced: three times
    by a boundary string, three times by a value of another type, once by deep nesting. Generating is
    what costs (the server answers faster than hypothesis draws), so each example gives eight requests."""
    leaves: list[tuple[Any, Any]] = []
    pending: list[Any] = [body]
    while pending:
        node = pending.pop()
        keys = node.keys() if isinstance(node, dict) else range(len(node))
        for key in keys:
            child = node[key]
            if isinstance(child, dict | list) and child:
                pending.append(child)
            else:
                leaves.append((node, key))
    nested: Any = "deep"
    for _ in range(_DEEP):
        nested = [nested]
    others = [*BOUNDARY_INTEGERS, True, 1.5, float("inf"), None, [], {}, ["x"], {"x": "\ud800"}]
    replacements = [*rnd.sample(BOUNDARY_STRINGS, 3), *rnd.sample(others, 3), nested]
    result = [body]
    for replacement in replacements:
        if leaves:
            parent, key = rnd.choice(leaves)
            original = parent[key]
            parent[key] = replacement
            result.append(json.loads(json.dumps(body)))
            parent[key] = original
        else:
            result.append({"fuzzMember": replacement})
    return result


def _check(response: httpx.Response) -> None:
    assert response.status_code < 500, (response.status_code, response.text[:500])
    if response.status_code >= 400:
        assert _error_type(response), (response.status_code, response.headers, response.text[:500])
        assert "Traceback" not in response.text


def _error_type(response: httpx.Response) -> str | None:
    """AWS's error code: the header, the JSON ``__type``, or the XML ``<Code>`` of query protocols (SNS)."""
    if "x-amzn-ErrorType" in response.headers:
        return response.headers["x-amzn-ErrorType"]
    if response.headers.get("content-type", "").startswith(("text/xml", "application/xml")):
        match = re.search(r"<Code>([^<]+)</Code>", response.text)
        return match.group(1) if match else None
    try:
        payload = json.loads(response.content)
    except ValueError:
        return None
    return payload.get("__type") if isinstance(payload, dict) else None


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = ServerProcess(tmp_path_factory.mktemp("fuzz"), env={"OPENBATCH_GPUS": ""}).start()
    batch = batch_client(proc.url)
    batch.create_compute_environment(
        computeEnvironmentName="fuzz-ce",
        type="MANAGED",
        computeResources={
            "type": "EC2",
            "maxvCpus": 2,
            "minvCpus": 0,
            # AWS requires these for a MANAGED EC2 compute environment (docs/validation.md).
            "instanceTypes": ["optimal"],
            "subnets": ["subnet-0123456789abcdef0"],
            "instanceRole": "ecsInstanceRole",
        },
    )
    batch.create_job_queue(
        jobQueueName="fuzz-q", priority=1, computeEnvironmentOrder=[{"order": 1, "computeEnvironment": "fuzz-ce"}]
    )
    batch.register_job_definition(
        jobDefinitionName="fuzz-jd", type="container", containerProperties={"image": "busybox", "command": ["true"]}
    )
    batch.create_scheduling_policy(name="fuzz-sp", fairsharePolicy={"shareDistribution": []})
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def http(fuzz_server: ServerProcess) -> Iterator[httpx.Client]:
    # One keep-alive connection for the whole module: the request rate is what makes 10,000 affordable.
    with httpx.Client(base_url=fuzz_server.url, timeout=30) as client:
        yield client


def _send(http: httpx.Client, test: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
    response = http.request(method, path, **kwargs)
    SENT[test] += 1
    _check(response)
    return response


@pytest.mark.parametrize("operation", BATCH.operation_names)
def test_batch_operation_bodies(http: httpx.Client, operation: str) -> None:
    @_settings(24)
    @given(body=_body("batch", operation), rnd=st.randoms())
    def run(body: dict[str, Any], rnd: Random) -> None:
        for variant in _variants(body, rnd):
            method, path, params = _batch_request(operation, variant)
            _send(http, "batch", method, path, params=params, content=_encode(variant))

    run()
    FINISHED.add(f"batch:{operation}")


@pytest.mark.parametrize("operation", LOGS.operation_names)
def test_logs_operation_bodies(http: httpx.Client, operation: str) -> None:
    @_settings(45 if operation in LOGS_SERVED else 2)
    @given(body=_body("logs", operation), rnd=st.randoms())
    def run(body: dict[str, Any], rnd: Random) -> None:
        headers = {"x-amz-target": f"Logs_20140328.{operation}", "content-type": "application/x-amz-json-1.1"}
        for variant in _variants(body, rnd):
            _send(http, "logs", "POST", "/", headers=headers, content=_encode(variant))

    run()
    FINISHED.add(f"logs:{operation}")


_OPERATION_PATHS = sorted(
    {BATCH.operation_model(op).http["requestUri"].split("?")[0].split("{")[0] for op in BATCH.operation_names}
)
# HTTP itself forbids control characters and surrounding spaces in header values (httpx refuses to send them).
_HEADER_VALUES = st.text(alphabet=string.printable.strip("\r\n\x0b\x0c"), max_size=40).map(str.strip)


@_settings(400)
@given(
    method=st.sampled_from(["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE"]),
    path=st.one_of(
        st.sampled_from(_OPERATION_PATHS),
        st.builds(lambda p, t: p + quote(t, safe=""), st.sampled_from(_OPERATION_PATHS), st.text(max_size=30)),
        st.builds(lambda t: "/" + quote(t, safe="/"), st.text(max_size=30)),
    ),
    query=st.dictionaries(st.sampled_from(["tagKeys", "x", ""]), st.text(max_size=8), max_size=2),
    headers=st.dictionaries(
        st.sampled_from(
            ["content-type", "x-amz-target", "authorization", "x-amz-date", "content-encoding", "x-amzn-trace-id"]
        ),
        _HEADER_VALUES
        | st.sampled_from(["Logs_20140328.GetLogEvents", "AWS4-HMAC-SHA256 Credential=a/b/c/d/aws4_request"]),
        max_size=3,
    ),
    body=st.sampled_from(RAW_BODIES) | st.binary(max_size=64),
)
def test_methods_paths_headers_and_raw_bodies(
    http: httpx.Client, method: str, path: str, query: dict[str, str], headers: dict[str, str], body: bytes
) -> None:
    _send(http, "raw", method, path, params=query, headers=headers, content=body)


def test_zz_server_is_healthy_and_stored_resources_parse(
    fuzz_server: ServerProcess, http: httpx.Client, figures: Callable[[str], None]
) -> None:
    """Runs last in this module: health, every Describe* through boto3, the totals and the server's RSS."""
    assert http.get("/health").status_code == 200
    batch = batch_client(fuzz_server.url)
    # boto3 parses every stored resource with the model's output shapes: a mistyped member raises here.
    ces = batch.get_paginator("describe_compute_environments").paginate()
    assert all(ce["computeEnvironmentArn"] for page in ces for ce in page["computeEnvironments"])
    queues = batch.get_paginator("describe_job_queues").paginate()
    assert all(q["jobQueueArn"] for page in queues for q in page["jobQueues"])
    definitions = batch.get_paginator("describe_job_definitions").paginate()
    assert all(d["jobDefinitionArn"] for page in definitions for d in page["jobDefinitions"])
    arns = [
        p["arn"]
        for page in batch.get_paginator("list_scheduling_policies").paginate()
        for p in page["schedulingPolicies"]
    ]
    for start in range(0, len(arns), 100):
        batch.describe_scheduling_policies(arns=arns[start : start + 100])
    jobs = batch.get_paginator("list_jobs").paginate(jobQueue="fuzz-q")
    assert all(j["jobId"] for page in jobs for j in page["jobSummaryList"])
    total = sum(SENT.values())
    assert fuzz_server.process is not None
    rss = _rss_mib(fuzz_server.process.pid)
    cpu = _cpu_seconds(fuzz_server.process.pid)
    # The figures belong in CI's log whatever the capture mode (the run's summary shows them).
    server_figures = f"server RSS afterwards {rss:.0f} MiB, server CPU {cpu:.1f} s"
    figures(f"fuzz: {total} requests ({dict(SENT)}), 0 answered 5xx; {server_figures}")
    expected = {f"batch:{op}" for op in BATCH.operation_names} | {f"logs:{op}" for op in LOGS.operation_names}
    if expected <= FINISHED and SCALE >= 1:
        assert total >= MIN_REQUESTS


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
