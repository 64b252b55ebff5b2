"""boto3 clients for the CLI: the CLI speaks the same wire API as every other client."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import boto3

if TYPE_CHECKING:
    from mypy_boto3_batch import BatchClient
    from mypy_boto3_logs import CloudWatchLogsClient

DEFAULT_ENDPOINT = "http://127.0.0.1:8080"


def endpoint() -> str:
    return os.environ.get("OPENBATCH_ENDPOINT") or os.environ.get("AWS_ENDPOINT_URL_BATCH") or DEFAULT_ENDPOINT


def _kwargs(url: str | None) -> dict[str, Any]:
    return {
        "endpoint_url": url or endpoint(),
        "region_name": os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
        "aws_access_key_id": os.environ.get("AWS_ACCESS_KEY_ID", "openbatch"),
        "aws_secret_access_key": os.environ.get("AWS_SECRET_ACCESS_KEY", "openbatch"),
    }


def batch(url: str | None = None) -> BatchClient:
    return boto3.client("batch", **_kwargs(url))


def logs(url: str | None = None) -> CloudWatchLogsClient:
    return boto3.client("logs", **_kwargs(url))
