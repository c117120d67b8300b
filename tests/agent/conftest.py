"""Fixtures for the agent's own tests: the real agent process against the real dockerd."""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import docker
import httpx
import pytest

from sandbox.tools import ensure_tool_images

TOOL_IMAGE = "dtma-tool-echo:1.0"
LOGS_TAIL_MAX = 50


@dataclass
class AgentProcess:
    url: str
    token: str
    process: subprocess.Popen[bytes]
    log: Path
    env: dict[str, str] = field(default_factory=dict)

    def client(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token or self.token}"}
        return httpx.Client(base_url=self.url, headers=headers, timeout=10)

    def anonymous(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=10)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_agent(log: Path, **extra_env: str) -> AgentProcess:
    """Start `python -m dtma_agent` on a free loopback port and wait for /health."""
    token = secrets.token_urlsafe(32)
    port = free_port()
    env = {
        **os.environ,
        "DTMA_AGENT_TOKEN": token,
        "DTMA_AGENT_HOST": "127.0.0.1",
        "DTMA_AGENT_PORT": str(port),
        "DTMA_AGENT_LOGS_TAIL_MAX": str(LOGS_TAIL_MAX),
        **extra_env,
    }
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "dtma_agent"], env=env, stdout=sink, stderr=subprocess.STDOUT
        )
    agent = AgentProcess(f"http://127.0.0.1:{port}", token, process, log, env)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"agent exited with {process.returncode}: {log.read_text()}")
        try:
            if httpx.get(f"{agent.url}/health", timeout=1).status_code == 200:
                return agent
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    stop_agent(agent)
    raise RuntimeError(f"agent did not answer /health within 20 s: {log.read_text()}")


def stop_agent(agent: AgentProcess) -> None:
    agent.process.terminate()
    try:
        agent.process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        agent.process.kill()
        agent.process.wait()


@pytest.fixture(scope="session")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentProcess]:
    running = start_agent(tmp_path_factory.mktemp("agent") / "agent.log")
    yield running
    stop_agent(running)


@pytest.fixture(scope="session")
def agent_without_docker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentProcess]:
    home = tmp_path_factory.mktemp("agent-nodocker")
    running = start_agent(home / "agent.log", DOCKER_HOST=f"unix://{home}/no-such-docker.sock")
    yield running
    stop_agent(running)


@pytest.fixture(scope="session")
def docker_client() -> Iterator[docker.DockerClient]:
    client = docker.from_env()
    yield client
    client.close()


@pytest.fixture(scope="session")
def tool_image() -> str:
    ensure_tool_images()
    return TOOL_IMAGE


@pytest.fixture(scope="session")
def containers(docker_client: docker.DockerClient, tool_image: str) -> Iterator[dict[str, str]]:
    """A managed tool instance that logs, an unmanaged container, a stopped managed one."""
    run_id = uuid.uuid4().hex[:8]
    names = {
        "chatty": f"dtma-agent-test-chatty-{run_id}",
        "plain": f"dtma-agent-test-plain-{run_id}",
        "stopped": f"dtma-agent-test-stopped-{run_id}",
    }
    script = "i=1; while [ $i -le 120 ]; do echo line-$i; i=$((i+1)); done; " + (
        "while true; do echo tick; sleep 0.2; done"
    )
    made = [
        docker_client.containers.run(
            tool_image,
            entrypoint=["/bin/sh", "-c", script],
            name=names["chatty"],
            labels={"dtma.managed": "true", "dtma.instance": names["chatty"]},
            ports={"8080/tcp": ("127.0.0.1", None)},
            detach=True,
        ),
        docker_client.containers.run(
            tool_image, entrypoint=["/bin/sh", "-c", "sleep 600"], name=names["plain"], detach=True
        ),
        docker_client.containers.create(
            tool_image,
            entrypoint=["/bin/sh", "-c", "true"],
            name=names["stopped"],
            labels={"dtma.managed": "true", "dtma.instance": names["stopped"]},
        ),
    ]
    deadline = time.monotonic() + 20
    while b"line-120" not in made[0].logs() and time.monotonic() < deadline:
        time.sleep(0.1)
    yield names
    for container in made:
        container.remove(force=True)
