"""The console's one agent client (api/services/agent.py) reads agent 1.3.0 as it read the
FastAPI agent: pipelined JSON reads over HTTPS with the pinned certificate, a log tail, a
log follow relayed as it comes and left mid-stream, and the error shapes it maps."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from api.errors import ApiError
from api.services.agent import AgentClient, AgentError, AgentPin, AgentTarget

from .conftest import AgentProcess


def target(agent: AgentProcess) -> tuple[AgentClient, AgentTarget]:
    port = int(agent.url.rsplit(":", 1)[1])
    pinned = AgentTarget("toolbox-9", "127.0.0.1", AgentPin(agent.certificate.pem))
    return AgentClient(port=port, timeout=10), pinned


def test_pipelined_reads_and_a_refused_token(
    agent: AgentProcess, containers: dict[str, str]
) -> None:
    client, pinned = target(agent)
    paths = ["/status", "/system", "/containers?managed=true&stats=true", "/health"]
    status, system, listed, health = asyncio.run(client.read_many(pinned, agent.token, paths))
    assert status["docker"]["state"] == "running" and system["cpu"]["count"] >= 1
    assert containers["chatty"] in {c["name"] for c in listed["containers"]}
    assert health["version"] == status["version"]
    with pytest.raises(AgentError) as refused:
        asyncio.run(client.read_many(pinned, "w" * 32, ["/status"]))
    assert (refused.value.status, refused.value.code) == (401, "unauthorized")


def test_logs_tail_and_follow_through_the_console_client(
    agent: AgentProcess, containers: dict[str, str]
) -> None:
    client, pinned = target(agent)

    async def tail() -> bytes:
        async with client.open_logs(pinned, agent.token, containers["chatty"], {"tail": 5}) as s:
            return await s.aread()

    assert len(asyncio.run(tail()).splitlines()) == 5

    async def follow() -> list[bytes]:
        params = {"tail": 0, "follow": True}
        seen = b""
        async with client.open_logs(pinned, agent.token, containers["chatty"], params) as s:
            async for chunk in s.aiter_raw():
                seen += chunk
                if seen.count(b"tick\n") >= 3:
                    break
        return seen.splitlines()

    assert asyncio.run(asyncio.wait_for(follow(), 20))[:3] == [b"tick"] * 3
    # Left mid-follow: the agent answers at once.
    started = time.monotonic()
    with httpx.Client(verify=agent.certificate.context()) as plain:
        assert plain.get(f"{agent.url}/health").status_code == 200
    assert time.monotonic() - started < 2

    async def missing() -> None:
        async with client.open_logs(pinned, agent.token, "no-such-container-dtma", {}):
            pass

    with pytest.raises(ApiError) as unknown:
        asyncio.run(missing())
    assert unknown.value.code == "tool_not_found"
