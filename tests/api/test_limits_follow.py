"""Followed log streams bounded per user and in all (DTMA_MAX_FOLLOWS_PER_USER,
DTMA_MAX_FOLLOWS), against the real DTMA agent process on loopback reading the
controller's dockerd (tests/agent's fixtures) and a managed container that keeps logging:
one more follow is 429 with its code, a read without follow is not bounded, and a stream
the client closes gives its slot back."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import docker
import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.orm import Session

from api.app import create_app
from api.models import Toolbox
from api.secret_box import seal_into
from api.settings import Settings
from sandbox.tools import ensure_tool_images
from tests.agent.conftest import TOOL_IMAGE, AgentProcess, start_agent, stop_agent
from tests.api.console import wait_until

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@pytest.fixture
def local_agent(tmp_path: Path) -> Iterator[AgentProcess]:
    running = start_agent(tmp_path / "agent.log")
    yield running
    stop_agent(running)


@pytest.fixture
def chatty() -> Iterator[str]:
    """A managed tool instance (on the controller's dockerd) that logs a line every 0.2 s."""
    ensure_tool_images()
    name = f"dtma-follow-test-{uuid.uuid4().hex[:8]}"
    client = docker.from_env()
    container = client.containers.run(
        TOOL_IMAGE,
        entrypoint=["/bin/sh", "-c", "while true; do echo tick; sleep 0.2; done"],
        name=name,
        labels={"dtma.managed": "true", "dtma.instance": name},
        detach=True,
    )
    try:
        yield name
    finally:
        container.remove(force=True)
        client.close()


@pytest.fixture
def app(settings: Settings, local_agent: AgentProcess) -> FastAPI:
    port = int(local_agent.url.rsplit(":", 1)[1])
    limits = {"max_follows_per_user": 2, "max_follows": 3, "agent_port": port}
    return create_app(settings.model_copy(update=limits))


def test_follows_are_bounded_per_user_and_in_all_and_a_closed_one_frees_its_slot(
    client: httpx.Client,
    db: Session,
    alice: dict[str, str],
    admin: dict[str, str],
    local_agent: AgentProcess,
    chatty: str,
) -> None:
    toolbox = Toolbox(droplet_id=9, name="toolbox-local", owner_id=alice["id"], address="127.0.0.1")
    seal_into(toolbox, Toolbox.agent_token_ciphertext, local_agent.token)
    db.add(toolbox)
    db.commit()
    logs = f"/api/v1/toolboxes/{toolbox.id}/tools/{chatty}/logs"
    follow = {"follow": "true", "tail": 1}
    as_alice, as_admin = {"Authorization": alice["auth"]}, {"Authorization": admin["auth"]}

    def opened(stack: ExitStack, headers: dict[str, str]) -> httpx.Response:
        response = stack.enter_context(client.stream("GET", logs, params=follow, headers=headers))
        assert response.status_code == 200
        assert b"tick" in next(response.iter_raw())  # relaying the container's lines
        return response

    with ExitStack() as streams:
        first = ExitStack()
        opened(first, as_alice)
        opened(streams, as_alice)
        mine = client.get(logs, params=follow, headers=as_alice)
        assert mine.status_code == 429
        assert mine.json()["error"]["code"] == "too_many_follows"
        assert mine.json()["error"]["limit"] == 2 and mine.headers["retry-after"].isdigit()
        assert client.get(logs, params={"tail": 3}, headers=as_alice).status_code == 200

        opened(streams, as_admin)  # the third in all
        everyone = client.get(logs, params=follow, headers=as_admin)
        assert everyone.status_code == 429
        assert everyone.json()["error"]["code"] == "follows_exhausted"

        first.close()  # alice closes one: once the console sees it, she may follow again

        def reopened() -> bool | None:
            with client.stream("GET", logs, params=follow, headers=as_alice) as answer:
                if answer.status_code == 429:
                    return None
                assert answer.status_code == 200
                return True

        wait_until(reopened, 30, "the closed stream's slot to come back")
