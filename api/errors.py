"""One exception hierarchy for the whole service, mapped to HTTP in one place.

Every error leaves the service as `{"error": {"code": "...", "message": "..."}}` (plus a few
documented extra fields such as `field` or `run_id`); nothing ever returns a stack trace.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("api.errors")


class ApiError(Exception):
    status = 500
    code = "internal_error"

    def __init__(self, message: str, *, code: str | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.extra = extra
        self.headers: dict[str, str] = {}


class BadRequest(ApiError):
    status = 400
    code = "bad_request"


class Unauthorized(ApiError):
    status = 401
    code = "unauthorized"

    def __init__(self, message: str, **extra: Any) -> None:
        super().__init__(message, **extra)
        self.headers = {"WWW-Authenticate": "Bearer"}


class Forbidden(ApiError):
    status = 403
    code = "forbidden"


class NotFound(ApiError):
    status = 404
    code = "not_found"


class Conflict(ApiError):
    status = 409
    code = "conflict"


class ToolboxBusy(Conflict):
    code = "toolbox_busy"


class InvalidInput(ApiError):
    """Input that parsed but is not acceptable; `field` names what to fix."""

    status = 422
    code = "invalid_input"

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message, field=field)


class UpstreamError(ApiError):
    """A system the console depends on (DigitalOcean API, an agent) failed to answer."""

    status = 502
    code = "upstream_error"


class Unavailable(ApiError):
    status = 503
    code = "unavailable"


def error_body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, **extra}}


_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_input",
    429: "too_many_requests",
}


def _location(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(part) for part in loc]
    if parts and parts[0] in ("body", "query", "path", "header", "cookie"):
        parts = parts[1:] or parts
    return ".".join(parts)


def _validation_message(errors: list[dict[str, Any]]) -> tuple[str, str]:
    first = errors[0]
    field = _location(first.get("loc", ()))
    text = str(first.get("msg", "invalid value"))
    if len(errors) > 1:
        text += f" (and {len(errors) - 1} more problem(s))"
    return field, f"{field}: {text}" if field else text


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, error: ApiError) -> JSONResponse:
        return JSONResponse(
            error_body(error.code, error.message, **error.extra),
            status_code=error.status,
            headers=error.headers or None,
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, error: RequestValidationError) -> JSONResponse:
        errors = list(error.errors())
        if not errors:
            return JSONResponse(error_body("invalid_input", "invalid request"), status_code=422)
        field, message = _validation_message(errors)
        return JSONResponse(error_body("invalid_input", message, field=field), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, error: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(error.status_code, "http_error")
        if error.status_code == 413:
            message = "request body too large"
        elif error.status_code == 404:
            message = "no such route"
        else:
            message = str(error.detail)
        return JSONResponse(
            error_body(code, message), status_code=error.status_code, headers=error.headers
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, error: Exception) -> JSONResponse:
        request_id = getattr(request.state, "request_id", None)
        log.error(
            "unhandled_error",
            extra={"error_type": type(error).__name__, "request_id": request_id},
            exc_info=error,
        )
        return JSONResponse(
            error_body(
                "internal_error",
                "internal error; the service log has the details",
                request_id=request_id,
            ),
            status_code=500,
        )
