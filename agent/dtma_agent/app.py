"""The agent's HTTP API. Read-only: every route is a GET and changes nothing."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Annotated

import anyio.to_thread
from docker.types import CancellableStream
from fastapi import Depends, FastAPI, Path, Query
from fastapi.responses import StreamingResponse

from . import __version__
from .auth import TokenGuard
from .engine import Engine
from .errors import install_error_handlers
from .models import ContainerList, Health, Status, System
from .settings import DOCKER_API_VERSION, AgentSettings
from .system import prime_cpu_counter, read_system

# Container ids and names: what `docker` itself accepts, nothing that could escape a path.
CONTAINER_REF = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"


def create_app(settings: AgentSettings) -> FastAPI:
    engine = Engine(settings.docker_url, DOCKER_API_VERSION)
    started_at = datetime.now(UTC).isoformat()
    started_monotonic = time.monotonic()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        prime_cpu_counter()
        yield
        engine.close()

    app = FastAPI(
        title="DTMA agent",
        version=__version__,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        lifespan=lifespan,
    )
    install_error_handlers(app)
    authorized = [Depends(TokenGuard(settings.token))]

    @app.get("/health")
    def health() -> Health:
        return Health(version=__version__, started_at=started_at)

    @app.get("/status", dependencies=authorized)
    def status() -> Status:
        docker_state = engine.state()
        tools = containers = None
        if docker_state.state == "running":
            tools, containers = engine.state_counts()
        return Status(
            version=__version__,
            started_at=started_at,
            uptime_seconds=round(time.monotonic() - started_monotonic, 3),
            docker=docker_state,
            tool_instances=tools,
            containers=containers,
        )

    @app.get("/system", dependencies=authorized)
    def system() -> System:
        return read_system()

    @app.get("/containers", dependencies=authorized)
    def containers(
        managed: Annotated[bool, Query(description="only tool instances")] = False,
        stats: Annotated[bool, Query(description="CPU and memory of running ones")] = False,
    ) -> ContainerList:
        found = engine.containers(managed_only=managed, with_stats=stats)
        return ContainerList(total=len(found), containers=found)

    @app.get("/containers/{ref}/logs", dependencies=authorized)
    async def logs(
        ref: Annotated[str, Path(pattern=CONTAINER_REF)],
        tail: Annotated[int, Query(ge=0)] = 100,
        since: Annotated[datetime | None, Query()] = None,
        timestamps: bool = False,
        follow: bool = False,
    ) -> StreamingResponse:
        stream = await anyio.to_thread.run_sync(
            lambda: engine.open_logs(
                ref,
                tail=min(tail, settings.logs_tail_max),
                since=since,
                timestamps=timestamps,
                follow=follow,
            )
        )
        return StreamingResponse(
            _relay(stream),
            media_type="text/plain; charset=utf-8",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    return app


async def _relay(stream: CancellableStream) -> AsyncIterator[bytes]:
    """Pass log chunks on; closing the docker stream also frees the reading thread."""
    chunks: Iterator[bytes] = iter(stream)
    try:
        while True:
            chunk = await anyio.to_thread.run_sync(next, chunks, None, abandon_on_cancel=True)
            if chunk is None:
                return
            yield chunk
    finally:
        stream.close()
