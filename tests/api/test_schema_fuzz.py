"""A property-based run over the OpenAPI schema (schemathesis): no input makes a 5xx."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr

from api.app import create_app
from api.settings import Settings
from tests.api.conftest import SeededEmulator

SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"


@pytest.fixture(params=["sqlite"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'console.db'}"


@pytest.fixture
def app(settings: Settings, do_emulator: SeededEmulator) -> FastAPI:
    do_emulator.seed([])  # sync works, and imports nothing
    configured = settings.model_copy(
        update={"do_api_url": do_emulator.url, "do_api_token": SecretStr(do_emulator.token)}
    )
    return create_app(configured)


def test_no_generated_request_gets_a_server_error(
    client: httpx.Client, admin: dict[str, str], tmp_path: Path
) -> None:
    """As an admin, on an empty fleet: every operation, including the admin-only ones, is
    fed valid and invalid input; none may answer 5xx. (Actions on real toolboxes, whose
    failures legitimately answer 502, are exercised on the sandbox.)"""
    run = subprocess.run(
        [
            str(SCHEMATHESIS),
            "run",
            f"{client.base_url}/openapi.json",
            "--header",
            f"Authorization: {admin['auth']}",
            "--checks",
            "not_a_server_error",
            "--phases",
            "examples,coverage,fuzzing",
            "--max-examples",
            "25",
            "--workers",
            "2",
            "--seed",
            "7",
            "--request-timeout",
            "20",
            "--no-color",
            "--generation-database",
            "none",
            "--report",
            "junit",
            "--report-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
