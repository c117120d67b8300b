"""The installed agent on a sandbox droplet: its endpoints, auth and answers, from outside."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest
from dtma_agent import __version__ as BASE_VERSION

from sandbox.fleet import Droplet, SandboxInfo

from .conftest import PlaybookRun, agent_url, docker_exec, pinned, token_of

pytestmark = pytest.mark.sandbox


@pytest.fixture(scope="module")
def droplet(installed: PlaybookRun, fresh_fleet: SandboxInfo) -> Droplet:
    assert installed.rc == 0, installed.failures()
    return fresh_fleet.droplets[0]


@pytest.fixture(scope="module")
def client(droplet: Droplet) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {token_of(droplet)}"}
    base = agent_url(droplet, "")
    with httpx.Client(base_url=base, headers=headers, timeout=10, verify=pinned(droplet)) as http:
        yield http


@pytest.fixture(scope="module")
def tool_instance(droplet: Droplet) -> Iterator[str]:
    name = f"agent-probe-{uuid.uuid4().hex[:6]}"
    docker_exec(
        droplet,
        f"docker run -d --name {name} --label dtma.managed=true --label dtma.instance={name} "
        f"-p 18080:8080 dtma-tool-echo:1.0",
    )
    yield name
    docker_exec(droplet, f"docker rm -f {name}")


def test_health_reports_the_installed_version(client: httpx.Client) -> None:
    answer = client.get("/health", headers={"Authorization": ""})
    assert answer.status_code == 200
    assert answer.json()["version"] == BASE_VERSION


def test_every_other_endpoint_needs_the_toolboxs_token(client: httpx.Client) -> None:
    for path in ["/status", "/system", "/containers", "/containers/x/logs"]:
        answer = client.get(path, headers={"Authorization": "Bearer nope"})
        assert answer.status_code == 401, path


def test_status_sees_the_droplets_own_engine_and_tool_instances(
    client: httpx.Client, droplet: Droplet, tool_instance: str
) -> None:
    body = client.get("/status").json()
    assert body["docker"]["state"] == "running"
    assert body["docker"]["version"] == docker_exec(
        droplet, "docker version -f '{{.Server.Version}}'"
    )
    running = docker_exec(droplet, "docker ps -q --filter label=dtma.managed=true | wc -l")
    assert body["tool_instances"]["by_state"].get("running", 0) == int(running)


def test_system_reports_the_droplets_hostname(client: httpx.Client, droplet: Droplet) -> None:
    body = client.get("/system").json()
    assert body["hostname"] == docker_exec(droplet, "hostname")
    assert body["memory"]["total_bytes"] > 0 and body["disk"]["total_bytes"] > 0


def test_containers_list_the_tool_instance(
    client: httpx.Client, droplet: Droplet, tool_instance: str
) -> None:
    body = client.get("/containers", params={"managed": "true"}).json()
    found = {c["name"]: c for c in body["containers"]}
    assert tool_instance in found
    truth = docker_exec(
        droplet, f"docker inspect -f '{{{{.Id}}}} {{{{.State.StartedAt}}}}' {tool_instance}"
    )
    assert f"{found[tool_instance]['id']} {found[tool_instance]['started_at']}" == truth
    assert found[tool_instance]["instance"] == tool_instance


def test_logs_of_the_tool_instance_and_bad_requests(
    client: httpx.Client, droplet: Droplet, tool_instance: str
) -> None:
    docker_exec(droplet, "wget -q -O /dev/null http://127.0.0.1:18080/ || true")
    logs = client.get(f"/containers/{tool_instance}/logs", params={"tail": 50})
    assert logs.status_code == 200
    assert logs.text == docker_exec(droplet, f"docker logs --tail 50 {tool_instance} 2>&1") + (
        "\n" if logs.text.endswith("\n") else ""
    )
    assert client.get("/containers/not-there/logs").status_code == 404
    assert client.get(f"/containers/{tool_instance}/logs", params={"tail": "x"}).status_code == 422


def test_the_agent_runs_unprivileged(droplet: Droplet) -> None:
    pid = docker_exec(droplet, "systemctl show -p MainPID --value dtma.service")
    user = docker_exec(droplet, f"ps -o user= -p {pid}")
    assert user == "dtma"
    assert docker_exec(droplet, f"grep CapEff /proc/{pid}/status").split()[1] == "0000000000000000"
