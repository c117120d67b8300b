"""Fixtures for the console API: databases on both engines, apps, users and tokens."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.orm import Session

from api.app import create_app
from api.context import Context
from api.db import session_scope
from api.services import users
from api.settings import Settings
from tests.api.postgres import create_database, postgres_cluster
from tests.api.server import live_server


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    with postgres_cluster() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database on each engine."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'console.db'}"
    server = request.getfixturevalue("postgres_server")
    return create_database(server, f"t_{uuid.uuid4().hex[:16]}")


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(database_url=database_url, jwt_secret="test-jwt-secret-0123456789abcdef")


@pytest.fixture
def app(settings: Settings) -> FastAPI:
    return create_app(settings)


@pytest.fixture
def client(app: FastAPI) -> Iterator[httpx.Client]:
    """Real HTTP to the app served by uvicorn on a loopback port."""
    with live_server(app) as base_url, httpx.Client(base_url=base_url, timeout=30) as http:
        yield http


@pytest.fixture
def context(app: FastAPI, client: httpx.Client) -> Context:
    context: Context = app.state.context
    return context


@pytest.fixture
def db(context: Context) -> Iterator[Session]:
    with session_scope(context.sessions) as session:
        yield session


def make_token(context: Context, name: str, *, admin: bool = False) -> tuple[str, str]:
    """(user id, token) for a new or existing user."""
    with session_scope(context.sessions) as session:
        user, token = users.create_token(session, name, admin=admin)
        return user.id, token


@pytest.fixture
def admin(context: Context) -> dict[str, str]:
    user_id, token = make_token(context, "root", admin=True)
    return {"id": user_id, "token": token, "auth": f"Bearer {token}"}


@pytest.fixture
def alice(context: Context) -> dict[str, str]:
    user_id, token = make_token(context, "alice")
    return {"id": user_id, "token": token, "auth": f"Bearer {token}"}


@pytest.fixture
def bob(context: Context) -> dict[str, str]:
    user_id, token = make_token(context, "bob")
    return {"id": user_id, "token": token, "auth": f"Bearer {token}"}
