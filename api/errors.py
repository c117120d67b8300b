"""One exception hierarchy for the whole service, mapped to HTTP in one place.

Every error leaves the service as `{"error": {"code": "...", "message": "..."}}` (plus a few
documented extra fields such as `field` or `run_id`); nothing ever returns a stack trace.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

from fastapi import FastAPI, Request, routing
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict
from pydantic.json_schema import models_json_schema
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


class TooManyRequests(ApiError):
    """A bound on load was reached (api/services/limits.py); nothing was started. Codes:
    `too_many_follows`, `follows_exhausted`, `too_many_runs`, `ssh_probes_busy`."""

    status = 429
    code = "too_many_requests"

    def __init__(self, message: str, *, code: str, limit: int, retry_after: int = 5) -> None:
        super().__init__(message, code=code, limit=limit)
        self.headers = {"Retry-After": str(retry_after)}


class UpstreamError(ApiError):
    """A system the console depends on (DigitalOcean API, an agent) failed to answer."""

    status = 502
    code = "upstream_error"


class Unavailable(ApiError):
    status = 503
    code = "unavailable"


def error_body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, **extra}}


class ErrorDetail(BaseModel):
    model_config = ConfigDict(extra="allow")

    code: str
    message: str


class ErrorBody(BaseModel):
    """Every error that is not a run's ConsoleResult: `{"error": {"code", "message", ...}}`."""

    error: ErrorDetail


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


def validation_failure(errors: list[dict[str, Any]]) -> InvalidInput:
    """What the API answers for a body that does not validate (the same field and message),
    for the web forms that validate the same models themselves."""
    field, message = _validation_message(errors)
    return InvalidInput(field, message)


def _validation_message(errors: list[dict[str, Any]]) -> tuple[str, str]:
    first = errors[0]
    field = _location(first.get("loc", ()))
    text = str(first.get("msg", "invalid value"))
    if len(errors) > 1:
        text += f" (and {len(errors) - 1} more problem(s))"
    return field, f"{field}: {text}" if field else text


# -- OpenAPI: the errors any operation can answer, declared on every operation -------------
_GENERIC = {
    400: "The body could not be parsed (`bad_request`)",
    401: "No valid bearer token (`unauthorized`, `token_revoked`, `token_expired`)",
    403: "The operation needs an admin token (`forbidden`)",
    404: "Nothing of that id, or not yours (`toolbox_not_found`, `run_not_found`, ...)",
    413: "Request body too large (`payload_too_large`)",
    422: "Invalid input; nothing was done (`invalid_input`, with `field`)",
}
_ERROR_REF = {"$ref": "#/components/schemas/ErrorBody"}
_FASTAPI_VALIDATION_REF = "#/components/schemas/HTTPValidationError"


def _calls(dependant: Dependant) -> Iterator[Callable[..., Any]]:
    for sub in dependant.dependencies:
        if sub.call is not None:
            yield sub.call
        yield from _calls(sub)


def _generic_statuses(
    route: routing.RouteContext, operation: dict[str, Any], admin: Callable[..., Any]
) -> set[int]:
    statuses = set()
    if operation.get("security"):
        statuses.add(401)
    if admin in set(_calls(route.dependant)):
        statuses.add(403)
    parameters = operation.get("parameters", [])
    if any(p.get("in") == "path" for p in parameters):
        statuses.add(404)
    if parameters or "requestBody" in operation:
        statuses.add(422)
    if "requestBody" in operation:
        statuses.update((400, 413))
    return statuses


def _document(
    schema: dict[str, Any], routes: list[routing.RouteContext], admin: Callable[..., Any]
) -> None:
    _, definitions = models_json_schema(
        [(ErrorBody, "serialization")], ref_template="#/components/schemas/{model}"
    )
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components.update(definitions["$defs"])
    for route in routes:
        for method in route.methods or ():
            operation = schema["paths"].get(route.path_format, {}).get(method.lower())
            if operation is None:
                continue
            responses = operation.setdefault("responses", {})
            for status in sorted(_generic_statuses(route, operation, admin)):
                declared = responses.get(str(status))
                content = {"application/json": {"schema": _ERROR_REF}}
                if declared is None:
                    responses[str(status)] = {"description": _GENERIC[status], "content": content}
                elif _FASTAPI_VALIDATION_REF in str(declared.get("content")):
                    declared.update(description=_GENERIC[status], content=content)
    if not any(_FASTAPI_VALIDATION_REF in str(path) for path in schema["paths"].values()):
        components.pop("HTTPValidationError", None)
        components.pop("ValidationError", None)


def document_errors(app: FastAPI) -> None:
    """Declare on every operation the generic errors it can answer (401 when it needs a
    token, 403 when it needs an admin, 404 when its path names something, 422 when it
    takes input, 413 when it takes a body), all as ErrorBody, so the schema says every
    status a client may meet; operations declare their own statuses besides these."""
    from api.deps import admin_user  # api.deps raises these errors: imported late

    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = generate()
            routes = [
                context
                for context in routing.iter_route_contexts(app.routes)
                if isinstance(context.original_route, routing.APIRoute)
            ]
            _document(schema, routes, admin_user)
        return app.openapi_schema or {}

    app.openapi = openapi  # type: ignore[method-assign]


def install_error_handlers(app: FastAPI) -> None:
    document_errors(app)

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
