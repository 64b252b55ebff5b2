"""The do-nothing baseline: a Starlette app on uvicorn that answers every ``POST /v1/<op>`` at once.

It is served the way ``openbatch server`` serves its API (uvicorn, same event loop and HTTP
implementation, access log off) and answers SubmitJob's shape, so the difference between the
two is what OpenBatch does per request.

Usage: ``python -m bench.null_server PORT``
"""

from __future__ import annotations

import json
import sys
import uuid

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

_ARN = "arn:aws:batch:us-east-1:000000000000:job/"


async def operation(request: Request) -> Response:
    await request.body()
    job_id = str(uuid.uuid4())
    payload = {"jobArn": _ARN + job_id, "jobName": "bench", "jobId": job_id}
    return Response(
        json.dumps(payload, separators=(",", ":")),
        media_type="application/json",
        headers={"x-amzn-RequestId": str(uuid.uuid4())},
    )


async def health(request: Request) -> Response:
    return Response("ok")


app = Starlette(routes=[Route("/health", health), Route("/v1/{op}", operation, methods=["POST"])])


def main() -> None:
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
