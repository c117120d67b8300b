"""The agent's HTTP API. Read-only: every route is a GET and changes nothing."""

from __future__ import annotations

import functools
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from . import __version__
from .auth import TokenGuard
from .engine import Engine
from .errors import AgentError, InvalidRequest, MethodNotAllowed, NotFound, error_body
from .models import ContainerList, Health, Status, as_json
from .params import Params
from .server import Request, Response
from .settings import DOCKER_API_VERSION, AgentSettings
from .system import prime_cpu_counter, read_system

# Container ids and names: what `docker` itself accepts, nothing that could escape a path.
CONTAINER_REF = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_LOGS_PATH = re.compile(r"^/containers/([^/]+)/logs$")
_ALLOW = {"Allow": "GET, HEAD"}
_LOG_HEADERS = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
log = logging.getLogger("dtma_agent")

Handler = Callable[[Request, Params], Awaitable[Response]]


def json_response(status: int, content: Any, headers: dict[str, str] | None = None) -> Response:
    body = json.dumps(content, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return Response(status, body.encode(), headers=headers or {})


class AgentApp:
    def __init__(self, settings: AgentSettings) -> None:
        self._settings = settings
        self._guard = TokenGuard(settings.token)
        self._engine = Engine(settings.docker_url, DOCKER_API_VERSION)
        self._started_at = datetime.now(UTC).isoformat()
        self._started_monotonic = time.monotonic()
        # path -> (handler, needs the token); the logs route is matched by pattern.
        self._routes: dict[str, tuple[Handler, bool]] = {
            "/health": (self.health, False),
            "/status": (self.status, True),
            "/system": (self.system, True),
            "/containers": (self.containers, True),
        }

    def startup(self) -> None:
        prime_cpu_counter()

    async def __call__(self, request: Request) -> Response:
        """Never raises: errors become their JSON answer."""
        try:
            return await self._dispatch(request)
        except AgentError as exc:
            return json_response(exc.status_code, exc.body(), exc.headers)
        except Exception as exc:
            log.exception("unexpected error answering %s %s", request.method, request.path)
            message = f"the agent failed to answer: {type(exc).__name__}"
            return json_response(500, error_body("internal_error", message))

    async def _dispatch(self, request: Request) -> Response:
        params = Params(request.query)
        route = self._routes.get(request.path)
        if route is None and (match := _LOGS_PATH.match(request.path)):
            ref = params.matching("ref", match.group(1), CONTAINER_REF)
            route = (functools.partial(self.logs, ref=ref), True)
        if route is None:
            raise NotFound("Not Found")
        if request.method not in ("GET", "HEAD"):
            raise MethodNotAllowed("Method Not Allowed", headers=_ALLOW)
        handler, protected = route
        if protected:
            self._guard.check(request.headers.get("authorization", ""))
        return await handler(request, params)

    async def health(self, _: Request, __: Params) -> Response:
        return json_response(200, as_json(Health(version=__version__, started_at=self._started_at)))

    async def status(self, _: Request, __: Params) -> Response:
        docker_state = await self._engine.state()
        tools = containers = None
        if docker_state.state == "running":
            tools, containers = await self._engine.state_counts()
        status = Status(
            version=__version__,
            started_at=self._started_at,
            uptime_seconds=round(time.monotonic() - self._started_monotonic, 3),
            docker=docker_state,
            tool_instances=tools,
            containers=containers,
        )
        return json_response(200, as_json(status))

    async def system(self, _: Request, __: Params) -> Response:
        return json_response(200, as_json(read_system()))

    async def containers(self, _: Request, params: Params) -> Response:
        managed = params.boolean("managed")
        stats = params.boolean("stats")
        _checked(params)
        found = await self._engine.containers(managed_only=managed, with_stats=stats)
        return json_response(200, as_json(ContainerList(total=len(found), containers=found)))

    async def logs(self, _: Request, params: Params, *, ref: str) -> Response:
        tail = params.integer("tail", 100, minimum=0)
        since = params.timestamp("since")
        timestamps = params.boolean("timestamps")
        follow = params.boolean("follow")
        _checked(params)
        stream = await self._engine.open_logs(
            ref,
            tail=min(tail, self._settings.logs_tail_max),
            since=since,
            timestamps=timestamps,
            follow=follow,
        )
        return Response(
            200, content_type="text/plain; charset=utf-8", headers=_LOG_HEADERS, stream=stream
        )


def _checked(params: Params) -> None:
    if params.problems:
        raise InvalidRequest(params.problems)
