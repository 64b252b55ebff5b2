"""The native workflow JSON API under ``/api/workflows`` (beside the AWS-compatible API), and its OpenAPI document.

Errors have the AWS shape (``{"__type": "ClientException", "message": …}``); a
validation error adds ``problems``, one entry per problem with its location.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from openbatch.api.errors import response_for
from openbatch.domain.errors import ClientError, NotFound, ValidationError
from openbatch.workflows.spec import WorkflowValidationError

if TYPE_CHECKING:
    from openbatch.workflows.schedules import ScheduleService
    from openbatch.workflows.service import WorkflowService

Handler = Callable[[Request], Awaitable[Any]]


def _json(payload: Any, status: int = 200) -> Response:
    return Response(
        json.dumps(payload, separators=(",", ":")),
        status_code=status,
        media_type="application/json",
        headers={"x-amzn-RequestId": str(uuid.uuid4())},
    )


def _error(exc: BaseException, operation: str) -> Response:
    if isinstance(exc, WorkflowValidationError):
        return _json({"__type": "ClientException", "message": exc.message, "problems": exc.problems}, 400)
    if isinstance(exc, NotFound):
        return _json({"__type": "ResourceNotFoundException", "message": exc.message}, 404)
    return response_for(exc, operation)


async def _body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise ValidationError(f"The request body is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ValidationError("The request body must be a JSON object")
    return value


def _params(body: dict[str, Any]) -> dict[str, str]:
    params = body.get("parameters") or {}
    if not isinstance(params, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in params.items()):
        raise ValidationError("parameters must be a map of strings to strings")
    return params


def _text(body: dict[str, Any]) -> str | None:
    text = body.get("definition")
    if text is not None and not isinstance(text, str):
        raise ValidationError("definition must be the workflow file's text (YAML or JSON)")
    return text


def _limit(request: Request) -> int:
    raw = request.query_params.get("maxResults", "100")
    if not raw.isdigit() or not 1 <= int(raw) <= 1000:
        raise ValidationError("maxResults must be between 1 and 1000")
    return int(raw)


def _token(position: tuple[int, str] | None) -> str | None:
    if position is None:
        return None
    return base64.urlsafe_b64encode(json.dumps(list(position)).encode()).decode()


def _position(token: str | None) -> tuple[int, str] | None:
    if not token:
        return None
    try:
        created, run_id = json.loads(base64.urlsafe_b64decode(token.encode()))
        if isinstance(created, int) and isinstance(run_id, str):
            return created, run_id
    except (ValueError, TypeError):
        pass
    raise ValidationError("nextToken is not valid")


def routes(workflows: Callable[[], WorkflowService], schedules: Callable[[], ScheduleService]) -> list[Route]:
    """The routes, resolving the services per request (they exist once the server has started)."""

    def endpoint(operation: str, handler: Handler, status: int = 200) -> Callable[[Request], Awaitable[Response]]:
        async def run(request: Request) -> Response:
            try:
                return _json(await handler(request), status)
            except Exception as exc:
                return _error(exc, operation)

        return run

    async def validate(request: Request) -> Any:
        body = await _body(request)
        spec = workflows().parse(_text(body), body.get("document"), _params(body))
        return {
            "valid": True,
            "name": spec.name,
            "parameters": spec.parameters,
            "steps": {n: {"dependsOn": list(st.depends_on), "when": st.when} for n, st in spec.steps.items()},
        }

    async def register(request: Request) -> Any:
        body = await _body(request)
        service = workflows()
        return service.register(service.parse(_text(body), body.get("document"), None))

    async def list_definitions(request: Request) -> Any:
        return {"workflows": workflows().list_definitions()}

    async def describe_definition(request: Request) -> Any:
        revision = request.query_params.get("revision")
        if revision is not None and not revision.isdigit():
            raise ValidationError("revision must be a number")
        return workflows().describe_definition(request.path_params["name"], int(revision) if revision else None)

    async def delete_definition(request: Request) -> Any:
        name = request.path_params["name"]
        users = sorted(item["name"] for item in schedules().list() if item.get("workflow") == name)
        if users:
            raise ClientError(f"Workflow {name} is used by schedule(s) {', '.join(users)}: delete them first")
        workflows().delete_definition(name)
        return {}

    async def start_run(request: Request) -> Any:
        body = await _body(request)
        revision = body.get("revision")
        if revision is not None and (isinstance(revision, bool) or not isinstance(revision, int)):
            raise ValidationError("revision must be a number")
        name = body.get("name")
        if name is not None and not isinstance(name, str):
            raise ValidationError("name must be a workflow name")
        return await workflows().start_run(
            text=_text(body), document=body.get("document"), name=name, revision=revision, params=_params(body)
        )

    async def list_runs(request: Request) -> Any:
        q = request.query_params
        runs, more = workflows().list_runs(
            name=q.get("name"), status=q.get("status"), limit=_limit(request), before=_position(q.get("nextToken"))
        )
        result: dict[str, Any] = {"runs": runs}
        if more is not None:
            result["nextToken"] = _token(more)
        return result

    async def describe_run(request: Request) -> Any:
        steps = request.query_params.get("steps", "true").lower() != "false"
        return workflows().describe_run(request.path_params["run_id"], with_steps=steps)

    async def cancel_run(request: Request) -> Any:
        body = await _body(request)
        reason = body.get("reason") or "Workflow run cancelled"
        if not isinstance(reason, str):
            raise ValidationError("reason must be a string")
        return workflows().cancel_run(request.path_params["run_id"], reason)

    async def redrive_run(request: Request) -> Any:
        return await workflows().redrive_run(request.path_params["run_id"])

    async def create_schedule(request: Request) -> Any:
        return schedules().create(await _body(request))

    async def list_schedules(request: Request) -> Any:
        return {"schedules": schedules().list()}

    async def describe_schedule(request: Request) -> Any:
        return schedules().describe(request.path_params["name"])

    async def update_schedule(request: Request) -> Any:
        return schedules().update(request.path_params["name"], await _body(request))

    async def pause_schedule(request: Request) -> Any:
        return schedules().set_state(request.path_params["name"], "PAUSED")

    async def resume_schedule(request: Request) -> Any:
        return schedules().set_state(request.path_params["name"], "ENABLED")

    async def delete_schedule(request: Request) -> Any:
        schedules().delete(request.path_params["name"])
        return {}

    async def openapi(request: Request) -> Any:
        return OPENAPI

    base = "/api/workflows"
    return [
        Route("/api/openapi.json", endpoint("OpenAPI", openapi), methods=["GET"]),
        Route(f"{base}/validate", endpoint("ValidateWorkflow", validate), methods=["POST"]),
        Route(f"{base}/definitions", endpoint("RegisterWorkflow", register), methods=["POST"]),
        Route(f"{base}/definitions", endpoint("ListWorkflows", list_definitions), methods=["GET"]),
        Route(f"{base}/definitions/{{name}}", endpoint("DescribeWorkflow", describe_definition), methods=["GET"]),
        Route(f"{base}/definitions/{{name}}", endpoint("DeleteWorkflow", delete_definition), methods=["DELETE"]),
        Route(f"{base}/runs", endpoint("StartWorkflowRun", start_run), methods=["POST"]),
        Route(f"{base}/runs", endpoint("ListWorkflowRuns", list_runs), methods=["GET"]),
        Route(f"{base}/runs/{{run_id}}", endpoint("DescribeWorkflowRun", describe_run), methods=["GET"]),
        Route(f"{base}/runs/{{run_id}}/cancel", endpoint("CancelWorkflowRun", cancel_run), methods=["POST"]),
        Route(f"{base}/runs/{{run_id}}/redrive", endpoint("RedriveWorkflowRun", redrive_run), methods=["POST"]),
        Route(f"{base}/schedules", endpoint("CreateSchedule", create_schedule), methods=["POST"]),
        Route(f"{base}/schedules", endpoint("ListSchedules", list_schedules), methods=["GET"]),
        Route(f"{base}/schedules/{{name}}/pause", endpoint("PauseSchedule", pause_schedule), methods=["POST"]),
        Route(f"{base}/schedules/{{name}}/resume", endpoint("ResumeSchedule", resume_schedule), methods=["POST"]),
        Route(f"{base}/schedules/{{name}}", endpoint("DescribeSchedule", describe_schedule), methods=["GET"]),
        Route(f"{base}/schedules/{{name}}", endpoint("UpdateSchedule", update_schedule), methods=["PUT"]),
        Route(f"{base}/schedules/{{name}}", endpoint("DeleteSchedule", delete_schedule), methods=["DELETE"]),
    ]


# --- OpenAPI 3.1 ------------------------------------------------------------------------

_ERROR = {
    "description": "ClientException (with problems for an invalid workflow)",
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
}
_NOT_FOUND = {
    "description": "ResourceNotFoundException",
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
}


def _op(
    summary: str,
    response: str,
    *,
    body: str | None = None,
    params: list[dict[str, Any]] | None = None,
    not_found: bool = False,
) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": summary,
        "responses": {
            "200": {
                "description": "OK",
                "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{response}"}}},
            },
            "400": _ERROR,
        },
    }
    if not_found:
        op["responses"]["404"] = _NOT_FOUND
    if body is not None:
        op["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{body}"}}},
        }
    if params:
        op["parameters"] = params
    return op


def _path_param(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


def _query(name: str, kind: str = "string", **extra: Any) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": {"type": kind, **extra}}


_STR_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
_STEP_STATUS = [
    "WAITING",
    "SUBMITTED",
    "PENDING",
    "RUNNABLE",
    "STARTING",
    "RUNNING",
    "SUCCEEDED",
    "FAILED",
    "CANCELLED",
    "NOT_RUN",
    "SKIPPED",
]

OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "OpenBatch native workflow API",
        "version": "1",
        "description": "Workflows: a DAG of Batch jobs defined once, run, watched, redriven and scheduled. "
        "Steps are ordinary Batch jobs tagged openbatch:workflow-run and openbatch:workflow-step.",
    },
    "paths": {
        "/api/workflows/validate": {"post": _op("Validate a workflow document", "Validation", body="Document")},
        "/api/workflows/definitions": {
            "post": _op("Register a workflow (a new revision when it changed)", "Definition", body="Document"),
            "get": _op("List workflows (latest revisions)", "DefinitionList"),
        },
        "/api/workflows/definitions/{name}": {
            "get": _op(
                "Describe a workflow",
                "Definition",
                not_found=True,
                params=[_path_param("name"), _query("revision", "integer")],
            ),
            "delete": _op(
                "Delete a workflow (every revision; its runs stay). Refused while a schedule names it.",
                "Empty",
                params=[_path_param("name")],
                not_found=True,
            ),
        },
        "/api/workflows/runs": {
            "post": _op("Start a run", "Run", body="StartRun"),
            "get": _op(
                "List runs, newest first",
                "RunList",
                params=[
                    _query("name"),
                    _query("status", enum=["RUNNING", "SUCCEEDED", "FAILED", "CANCELLED"]),
                    _query("maxResults", "integer"),
                    _query("nextToken"),
                ],
            ),
        },
        "/api/workflows/runs/{runId}": {
            "get": _op(
                "Describe a run and its steps (steps=false: the summary alone, for frequent polling)",
                "Run",
                params=[_path_param("runId"), _query("steps", "boolean")],
                not_found=True,
            ),
        },
        "/api/workflows/runs/{runId}/cancel": {
            "post": _op(
                "Cancel a run (terminates every step job)", "Run", params=[_path_param("runId")], not_found=True
            ),
        },
        "/api/workflows/runs/{runId}/redrive": {
            "post": _op(
                "Redrive a finished run: re-run failed, cancelled and never-run steps (same runId)",
                "Run",
                params=[_path_param("runId")],
                not_found=True,
            ),
        },
        "/api/workflows/schedules": {
            "post": _op("Create a cron schedule", "Schedule", body="CreateSchedule"),
            "get": _op("List schedules", "ScheduleList"),
        },
        "/api/workflows/schedules/{name}/pause": {
            "post": _op("Pause a schedule", "Schedule", params=[_path_param("name")], not_found=True)
        },
        "/api/workflows/schedules/{name}/resume": {
            "post": _op("Resume a schedule", "Schedule", params=[_path_param("name")], not_found=True)
        },
        "/api/workflows/schedules/{name}": {
            "get": _op("Describe a schedule", "Schedule", params=[_path_param("name")], not_found=True),
            "put": _op(
                "Replace a schedule's definition (its state and history stay)",
                "Schedule",
                body="CreateSchedule",
                params=[_path_param("name")],
                not_found=True,
            ),
            "delete": _op("Delete a schedule", "Empty", params=[_path_param("name")], not_found=True),
        },
    },
    "components": {
        "schemas": {
            "Error": {
                "type": "object",
                "required": ["__type", "message"],
                "properties": {
                    "__type": {"type": "string"},
                    "message": {"type": "string"},
                    "problems": {"type": "array", "items": {"type": "string"}},
                },
            },
            "Empty": {"type": "object"},
            "Document": {
                "type": "object",
                "description": "Exactly one of definition or document.",
                "properties": {
                    "definition": {"type": "string", "description": "The workflow file's text (YAML or JSON)"},
                    "document": {"type": "object", "description": "The workflow as a JSON object"},
                    "parameters": _STR_MAP,
                },
            },
            "StartRun": {
                "type": "object",
                "description": "definition, document, or name (+ revision) of a registered workflow.",
                "properties": {
                    "definition": {"type": "string"},
                    "document": {"type": "object"},
                    "name": {"type": "string"},
                    "revision": {"type": "integer"},
                    "parameters": _STR_MAP,
                },
            },
            "Validation": {
                "type": "object",
                "properties": {
                    "valid": {"type": "boolean"},
                    "name": {"type": "string"},
                    "parameters": _STR_MAP,
                    "steps": {"type": "object"},
                },
            },
            "Definition": {
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "revision": {"type": "integer"},
                    "createdAt": {"type": "integer"},
                    "document": {"type": "object"},
                },
            },
            "DefinitionList": {
                "type": "object",
                "properties": {"workflows": {"type": "array", "items": {"$ref": "#/components/schemas/Definition"}}},
            },
            "Step": {
                "type": "object",
                "required": ["status"],
                "properties": {
                    "status": {"type": "string", "enum": _STEP_STATUS},
                    "jobId": {"type": ["string", "null"]},
                    "arraySize": {"type": "integer"},
                    "submittedAt": {"type": "integer"},
                    "startedAt": {"type": "integer"},
                    "stoppedAt": {"type": "integer"},
                    "reason": {"type": "string"},
                    "outputs": {},
                    "previousJobIds": {"type": "array", "items": {"type": "string"}},
                },
            },
            "Run": {
                "type": "object",
                "required": ["runId", "status"],
                "properties": {
                    "runId": {"type": "string"},
                    "workflowName": {"type": "string"},
                    "revision": {"type": "integer"},
                    "status": {"type": "string", "enum": ["RUNNING", "SUCCEEDED", "FAILED", "CANCELLED"]},
                    "statusReason": {"type": "string"},
                    "parameters": _STR_MAP,
                    "createdAt": {"type": "integer"},
                    "stoppedAt": {"type": "integer"},
                    "redriveCount": {"type": "integer"},
                    "stepCounts": {"type": "object", "additionalProperties": {"type": "integer"}},
                    "schedule": {"type": "string"},
                    "steps": {"type": "object", "additionalProperties": {"$ref": "#/components/schemas/Step"}},
                },
            },
            "RunList": {
                "type": "object",
                "properties": {
                    "runs": {"type": "array", "items": {"$ref": "#/components/schemas/Run"}},
                    "nextToken": {"type": "string"},
                },
            },
            "CreateSchedule": {
                "type": "object",
                "required": ["name", "cron"],
                "properties": {
                    "name": {"type": "string"},
                    "cron": {"type": "string", "description": "5-field cron expression"},
                    "timezone": {"type": "string", "description": "IANA name, default UTC"},
                    "workflow": {"type": "string", "description": "A registered workflow to run"},
                    "job": {"type": "object", "description": "Or a SubmitJob request to submit"},
                    "parameters": _STR_MAP,
                    "missedRunPolicy": {
                        "type": "string",
                        "enum": ["SKIP", "RUN_ONCE"],
                        "description": "What to do about firings missed while the server was down",
                    },
                },
            },
            "Schedule": {
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "cron": {"type": "string"},
                    "timezone": {"type": "string"},
                    "state": {"type": "string", "enum": ["ENABLED", "PAUSED"]},
                    "nextFireAt": {"type": "integer"},
                    "lastFireAt": {"type": "integer"},
                    "lastRunId": {"type": "string"},
                    "lastJobId": {"type": "string"},
                    "lastError": {"type": "string"},
                },
            },
            "ScheduleList": {
                "type": "object",
                "properties": {"schedules": {"type": "array", "items": {"$ref": "#/components/schemas/Schedule"}}},
            },
        }
    },
}
