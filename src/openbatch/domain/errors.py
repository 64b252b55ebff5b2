"""One error hierarchy. The API maps each class to an AWS error shape in ``api/errors.py``."""

from __future__ import annotations


class BatchError(Exception):
    """Base of every error OpenBatch raises on purpose."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ClientError(BatchError):
    """The caller's request is wrong; answered as HTTP 400 ``ClientException``."""


class ValidationError(ClientError):
    """A member is missing, malformed or out of range."""


class NotFound(ClientError, LookupError):
    """A named resource does not exist."""


class Conflict(ClientError):
    """The request contradicts the current state (duplicate name, resource in use...)."""


class InvalidTransition(BatchError):
    """A job was asked to move along an edge the state table does not have."""

    def __init__(self, job_id: str, source: str, target: str) -> None:
        super().__init__(f"job {job_id!r} cannot move from {source} to {target}")
        self.job_id = job_id
        self.source = source
        self.target = target


class ServerError(BatchError):
    """A fault on our side; answered as HTTP 500 ``ServerException``."""
