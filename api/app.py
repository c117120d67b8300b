"""The FastAPI application factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from api import __version__, migrate, web
from api.context import Context
from api.cors import CorsMiddleware
from api.errors import install_error_handlers
from api.middleware import BodyLimitMiddleware, RequestContextMiddleware
from api.monitoring import router as monitoring
from api.routes import (
    audit,
    compat,
    dtma,
    health,
    registries,
    rollouts,
    runs,
    tokens,
    toolboxes,
    tools,
)
from api.settings import Settings
from api.vault import router as vault
from api.vault.startup import open_vault


def create_app(settings: Settings | None = None) -> FastAPI:
    context = Context.build(settings or Settings())

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        try:
            migrate.upgrade(context.engine, settings=context.settings)
            open_vault(context)
            async with context.running(monitor=True):
                yield
        finally:
            context.close()

    app = FastAPI(
        title="DTMA console",
        version=__version__,
        description="Manage DTMA toolboxes: real lifecycle actions through Ansible, real "
        "state through the DTMA agent.",
        lifespan=lifespan,
    )
    app.state.context = context
    install_error_handlers(app)
    app.add_middleware(BodyLimitMiddleware, limit=context.settings.max_body_bytes)
    if context.settings.cors_origins:
        app.add_middleware(CorsMiddleware, origins=context.settings.cors_origins)
    app.add_middleware(RequestContextMiddleware)
    for module in (
        health,
        toolboxes,
        dtma,
        tools,
        runs,
        rollouts,
        audit,
        registries,
        compat,
        monitoring,
        vault,
        tokens,
    ):
        app.include_router(module.router)
    web.install(app)
    return app
