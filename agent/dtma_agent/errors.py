"""Agent errors and their JSON form: {"error": {"code": ..., "message": ...}}."""

from __future__ import annotations

from typing import Any


class AgentError(Exception):
    status_code = 500
    code = "internal_error"

    def __init__(self, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return error_body(self.code, self.message)


class Unauthorized(AgentError):
    status_code = 401
    code = "unauthorized"


class NotFound(AgentError):
    status_code = 404
    code = "not_found"


class MethodNotAllowed(AgentError):
    status_code = 405
    code = "method_not_allowed"


class ContainerNotFound(AgentError):
    status_code = 404
    code = "container_not_found"


class InvalidRequest(AgentError):
    """One or more bad parameters, each named in `fields`."""

    status_code = 422
    code = "invalid_request"

    def __init__(self, fields: list[dict[str, str]]) -> None:
        super().__init__("; ".join(f"{f['field']}: {f['message']}" for f in fields))
        self.fields = fields

    def body(self) -> dict[str, Any]:
        return error_body(self.code, self.message, fields=self.fields)


class DockerUnavailable(AgentError):
    status_code = 503
    code = "docker_unavailable"


class DockerError(AgentError):
    status_code = 502
    code = "docker_error"


def invalid(field: str, message: str) -> InvalidRequest:
    return InvalidRequest([{"field": field, "message": message}])


def error_body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, **extra}}
