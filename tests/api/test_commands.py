"""The console's own commands through `dtma-console`: token create and sync."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from sqlalchemy import select

from api.auth import hash_token
from api.db import make_engine, make_session_factory, session_scope
from api.models import ApiToken, User
from api.settings import Settings
from tests.api.console import CLI


def run_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(CLI), *args], env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    import os

    return {
        **os.environ,
        "DTMA_DATABASE_URL": f"sqlite:///{tmp_path / 'c.db'}",
    }


def test_token_create_prints_the_token_once_and_stores_only_its_hash(
    cli_env: dict[str, str],
) -> None:
    created = run_cli(cli_env, "token", "create", "--user", "ops", "--admin")
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip()
    assert token.startswith("dtma_") and len(token) > 40
    assert token not in created.stderr
    second = run_cli(cli_env, "token", "create", "--user", "ops").stdout.strip()
    assert second != token
    engine = make_engine(Settings(database_url=cli_env["DTMA_DATABASE_URL"]))
    with session_scope(make_session_factory(engine)) as session:
        user = session.scalar(select(User).where(User.name == "ops"))
        assert user is not None and user.is_admin
        hashes = set(
            session.scalars(select(ApiToken.token_hash).where(ApiToken.user_id == user.id))
        )
    engine.dispose()
    assert hashes == {hash_token(token), hash_token(second)}
    raw = Path(cli_env["DTMA_DATABASE_URL"].removeprefix("sqlite:///")).read_bytes()
    assert token.encode() not in raw


def test_token_create_refuses_a_bad_user_name(cli_env: dict[str, str]) -> None:
    refused = run_cli(cli_env, "token", "create", "--user", "{{ evil }}")
    assert refused.returncode == 1
    assert "user names are" in refused.stderr
    assert refused.stdout == ""


def test_sync_without_a_digitalocean_token_fails_clearly(cli_env: dict[str, str]) -> None:
    env = {k: v for k, v in cli_env.items() if k != "DTMA_DO_API_TOKEN"}
    failed = run_cli(env, "sync")
    assert failed.returncode == 1
    assert "DTMA_DO_API_TOKEN is not set" in failed.stderr
