"""HTTP client for the DTMA agent on each toolbox (the read path)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx

from api.errors import ApiError, InvalidInput, NotFound


class AgentError(Exception):
    """The agent did not give a usable answer; `reason` says why, for humans."""

    def __init__(self, reason: str, *, status: int | None = None, code: str | None = None):
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.code = code


class AgentUnreachable(AgentError):
    """Nothing answered on the agent's port (or it answered too slowly)."""


def _error_detail(response: httpx.Response) -> tuple[str | None, str]:
    try:
        error = response.json()["error"]
        return str(error.get("code")), str(error.get("message"))
    except (ValueError, KeyError, TypeError, AttributeError):
        return None, response.text[:200] or response.reason_phrase


class AgentClient:
    """One pooled async HTTP client shared by every request to every agent."""

    def __init__(self, *, port: int, timeout: float) -> None:
        self.port = port
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout),
            limits=httpx.Limits(max_connections=200, max_keepalive_connections=50),
        )

    def url(self, address: str, path: str) -> str:
        host = f"[{address}]" if ":" in address else address
        return f"http://{host}:{self.port}{path}"

    async def aclose(self) -> None:
        await self._http.aclose()

    async def get_json(
        self, address: str, token: str | None, path: str, params: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        try:
            response = await self._http.get(self.url(address, path), headers=headers,
                                            params=params)  # fmt: skip
        except httpx.TimeoutException as error:
            raise AgentUnreachable(f"agent at {address}:{self.port} timed out") from error
        except httpx.HTTPError as error:
            raise AgentUnreachable(
                f"agent at {address}:{self.port} did not answer: {error or type(error).__name__}"
            ) from error
        if response.status_code != 200:
            code, message = _error_detail(response)
            raise AgentError(
                f"agent answered {response.status_code}: {message}",
                status=response.status_code,
                code=code,
            )
        try:
            body = response.json()
        except ValueError as error:
            raise AgentError("agent answered with a body that is not JSON") from error
        if not isinstance(body, dict):
            raise AgentError("agent answered with an unexpected JSON shape")
        return body

    @asynccontextmanager
    async def open_logs(
        self, address: str, token: str, ref: str, params: dict[str, Any]
    ) -> AsyncIterator[httpx.Response]:
        """The agent's log stream for container `ref`; errors are raised before any byte
        is relayed, so the caller can still answer with a proper status."""
        request = self._http.build_request(
            "GET",
            self.url(address, f"/containers/{ref}/logs"),
            params=params,
            headers={"Authorization": f"Bearer {token}"},
            timeout=httpx.Timeout(self._http.timeout.connect, read=None)
            if params.get("follow")
            else self._http.timeout,
        )
        try:
            response = await self._http.send(request, stream=True)
        except httpx.HTTPError as error:
            raise AgentUnreachable(
                f"agent at {address}:{self.port} did not answer: {error or type(error).__name__}"
            ) from error
        try:
            if response.status_code != 200:
                await response.aread()
                code, message = _error_detail(response)
                raise log_error(response.status_code, code, message, ref)
            yield response
        finally:
            await response.aclose()


def log_error(status: int, code: str | None, message: str, ref: str) -> ApiError | AgentError:
    if status == 404:
        return NotFound(f"tool instance '{ref}' not found on the toolbox", code="tool_not_found")
    if status == 422:
        return InvalidInput("query", f"the agent refused the log parameters: {message}")
    return AgentError(f"agent answered {status}: {message}", status=status, code=code)
