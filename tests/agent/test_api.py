"""The agent's HTTP API against the controller's real Docker engine."""

from __future__ import annotations

import os
import re
import socket
import ssl
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import docker
import httpx
import pytest
from dtma_agent import __version__

from .conftest import LOGS_TAIL_MAX, AgentProcess, free_port, start_agent, stop_agent

PROTECTED = ["/status", "/system", "/containers", "/containers/anything/logs"]


def test_health_answers_without_a_token(agent: AgentProcess) -> None:
    with agent.anonymous() as client:
        answer = client.get("/health")
    assert answer.status_code == 200
    body = answer.json()
    assert body["status"] == "ok"
    assert body["version"] == __version__
    assert datetime.fromisoformat(body["started_at"]) <= datetime.now(UTC)


@pytest.mark.parametrize("path", PROTECTED)
def test_protected_endpoints_refuse_a_missing_token(agent: AgentProcess, path: str) -> None:
    with agent.anonymous() as client:
        answer = client.get(path)
    assert answer.status_code == 401
    assert answer.json()["error"]["code"] == "unauthorized"
    assert answer.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    "header",
    [
        "Bearer wrong-token-of-some-length",
        "Basic dXNlcjpwYXNz",
        "Bearer",
        "Token abcdefghijklmnopqrstuvwxyz",
    ],
)
def test_protected_endpoints_refuse_a_bad_token(agent: AgentProcess, header: str) -> None:
    with agent.anonymous() as client:
        answer = client.get("/status", headers={"Authorization": header})
    assert answer.status_code == 401
    assert answer.json()["error"]["code"] == "unauthorized"


def test_a_token_with_extra_characters_is_refused(agent: AgentProcess) -> None:
    with agent.client(agent.token + "x") as client:
        assert client.get("/status").status_code == 401
    with agent.client(agent.token[:-1]) as client:
        assert client.get("/status").status_code == 401


def status_with_a_still_engine(
    agent: AgentProcess, docker_client: docker.DockerClient
) -> tuple[dict[str, Any], list[Any]]:
    """The agent's /status and the engine's containers, read again until no container
    appeared, went or changed state during the read: the other lanes of `make test` create
    and remove droplet containers on this same engine."""
    for _ in range(20):
        before = docker_client.containers.list(all=True)
        with agent.client() as client:
            body: dict[str, Any] = client.get("/status").json()
        after = docker_client.containers.list(all=True)
        if sorted((c.id, c.status) for c in before) == sorted((c.id, c.status) for c in after):
            return body, after
        time.sleep(0.5)
    raise AssertionError("the engine's containers changed during each of 20 reads")


def test_status_reports_version_uptime_engine_and_counts(
    agent: AgentProcess, containers: dict[str, str], docker_client: docker.DockerClient
) -> None:
    body, everything = status_with_a_still_engine(agent, docker_client)
    assert body["version"] == __version__
    assert body["uptime_seconds"] > 0
    assert body["docker"]["state"] == "running"
    assert body["docker"]["version"] == docker_client.version()["Version"]
    managed = [c for c in everything if c.labels.get("dtma.managed") == "true"]
    assert body["containers"]["total"] == len(everything)
    assert body["tool_instances"]["total"] == len(managed)
    running_managed = sum(1 for c in managed if c.status == "running")
    assert body["tool_instances"]["by_state"].get("running", 0) == running_managed
    assert body["tool_instances"]["by_state"].get("created", 0) >= 1


def test_system_reports_the_hosts_real_figures(agent: AgentProcess) -> None:
    with agent.client() as client:
        body = client.get("/system").json()
    meminfo = dict(
        line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines() if ":" in line
    )
    assert body["memory"]["total_bytes"] == int(meminfo["MemTotal"].split()[0]) * 1024
    assert 0 < body["memory"]["used_bytes"] < body["memory"]["total_bytes"]
    disk = os.statvfs("/")
    assert body["disk"]["total_bytes"] == disk.f_blocks * disk.f_frsize
    assert 0 <= body["disk"]["percent"] <= 100
    assert 0 <= body["cpu"]["percent"] <= 100
    assert body["cpu"]["count"] == os.cpu_count()
    assert abs(body["load"]["one"] - os.getloadavg()[0]) < 2
    uptime = float(Path("/proc/uptime").read_text().split()[0])
    assert abs(body["uptime_seconds"] - uptime) < 5


def test_containers_lists_every_container_with_its_details(
    agent: AgentProcess, containers: dict[str, str], docker_client: docker.DockerClient
) -> None:
    with agent.client() as client:
        body = client.get("/containers").json()
    by_name = {c["name"]: c for c in body["containers"]}
    assert body["total"] == len(body["containers"])
    assert {containers["chatty"], containers["plain"], containers["stopped"]} <= set(by_name)
    chatty = by_name[containers["chatty"]]
    truth = docker_client.containers.get(containers["chatty"]).attrs
    assert chatty["id"] == truth["Id"]
    assert chatty["state"] == "running"
    assert chatty["status"].startswith("Up")
    assert chatty["started_at"] == truth["State"]["StartedAt"]
    assert chatty["restart_count"] == truth["RestartCount"]
    assert chatty["image"] == "dtma-tool-echo:1.0"
    assert chatty["managed"] is True
    assert chatty["instance"] == containers["chatty"]
    published = truth["NetworkSettings"]["Ports"]["8080/tcp"][0]
    assert {
        "container_port": 8080,
        "protocol": "tcp",
        "host_ip": "127.0.0.1",
        "host_port": int(published["HostPort"]),
    } in chatty["ports"]
    stopped = by_name[containers["stopped"]]
    assert stopped["state"] == "created"
    assert stopped["started_at"] is None
    assert by_name[containers["plain"]]["managed"] is False


def test_containers_managed_filter_keeps_only_tool_instances(
    agent: AgentProcess, containers: dict[str, str]
) -> None:
    with agent.client() as client:
        body = client.get("/containers", params={"managed": "true"}).json()
    names = {c["name"] for c in body["containers"]}
    assert {containers["chatty"], containers["stopped"]} <= names
    assert containers["plain"] not in names
    assert all(c["managed"] and c["labels"]["dtma.managed"] == "true" for c in body["containers"])


def test_logs_return_the_last_lines_asked_for(
    agent: AgentProcess, containers: dict[str, str]
) -> None:
    with agent.client() as client:
        answer = client.get(f"/containers/{containers['chatty']}/logs", params={"tail": 3})
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    lines = answer.text.splitlines()
    assert len(lines) == 3
    assert all(line in {"tick"} or line.startswith("line-") for line in lines)


def test_logs_by_id_from_the_start_with_timestamps(
    agent: AgentProcess, containers: dict[str, str], docker_client: docker.DockerClient
) -> None:
    container_id = docker_client.containers.get(containers["chatty"]).id
    since = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    with agent.client() as client:
        answer = client.get(
            f"/containers/{container_id}/logs",
            params={"tail": LOGS_TAIL_MAX, "timestamps": "true", "since": since},
        )
    lines = answer.text.splitlines()
    assert answer.status_code == 200
    assert len(lines) == LOGS_TAIL_MAX
    assert all(re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z ", line) for line in lines)


def test_logs_tail_is_capped(agent: AgentProcess, containers: dict[str, str]) -> None:
    with agent.client() as client:
        answer = client.get(f"/containers/{containers['chatty']}/logs", params={"tail": 100000})
    assert answer.status_code == 200
    assert len(answer.text.splitlines()) == LOGS_TAIL_MAX


def test_logs_since_the_future_are_empty(agent: AgentProcess, containers: dict[str, str]) -> None:
    future = int(time.time()) + 3600
    with agent.client() as client:
        answer = client.get(f"/containers/{containers['chatty']}/logs", params={"since": future})
    assert answer.status_code == 200
    assert answer.text == ""


def test_logs_follow_streams_new_lines_and_stops_when_the_client_leaves(
    agent: AgentProcess, containers: dict[str, str]
) -> None:
    received: list[str] = []
    with (
        agent.client() as client,
        client.stream(
            "GET",
            f"/containers/{containers['chatty']}/logs",
            params={"tail": 0, "follow": "true"},
        ) as answer,
    ):
        assert answer.status_code == 200
        for line in answer.iter_lines():
            received.append(line)
            if len(received) == 3:
                break
    assert received == ["tick", "tick", "tick"]
    # The stream was abandoned mid-follow: the agent must still serve, promptly.
    with agent.client() as client:
        started = time.monotonic()
        assert client.get("/status").status_code == 200
        assert time.monotonic() - started < 2


def test_logs_of_an_unknown_container_are_404(agent: AgentProcess) -> None:
    with agent.client() as client:
        answer = client.get("/containers/no-such-container-dtma/logs")
    assert answer.status_code == 404
    assert answer.json()["error"]["code"] == "container_not_found"
    assert "no-such-container-dtma" in answer.json()["error"]["message"]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"tail": "-1"}, "tail"),
        ({"tail": "all"}, "tail"),
        ({"since": "yesterday"}, "since"),
        ({"since": "0"}, "since"),
        ({"follow": "maybe"}, "follow"),
        ({"timestamps": "2"}, "timestamps"),
    ],
)
def test_logs_reject_bad_parameters_naming_the_field(
    agent: AgentProcess, containers: dict[str, str], params: dict[str, str], field: str
) -> None:
    with agent.client() as client:
        answer = client.get(f"/containers/{containers['chatty']}/logs", params=params)
    assert answer.status_code == 422
    error = answer.json()["error"]
    assert error["code"] == "invalid_request"
    assert field in error["message"]


@pytest.mark.parametrize("ref", ["..", "-rf", "a b", "x" * 200, "name;ls"])
def test_logs_reject_container_references_that_are_not_names(agent: AgentProcess, ref: str) -> None:
    with agent.client() as client:
        answer = client.get(f"/containers/{ref}/logs")
    assert answer.status_code in (404, 422)
    assert answer.json()["error"]["code"] in ("invalid_request", "not_found")


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
@pytest.mark.parametrize("path", ["/health", "/status", "/containers"])
def test_the_agent_is_read_only(agent: AgentProcess, method: str, path: str) -> None:
    with agent.client() as client:
        answer = client.request(method, path)
    assert answer.status_code == 405
    assert answer.json()["error"]["code"] == "method_not_allowed"


def test_reading_changes_nothing_on_the_engine(
    agent: AgentProcess, containers: dict[str, str], docker_client: docker.DockerClient
) -> None:
    def snapshot() -> dict[str, tuple[str, str, int]]:
        return {
            c.name: (c.status, c.attrs["State"]["StartedAt"], c.attrs["RestartCount"])
            for c in docker_client.containers.list(all=True)
            if c.name in containers.values()
        }

    before = snapshot()
    with agent.client() as client:
        logs = f"/containers/{containers['chatty']}/logs"
        for path in ["/status", "/system", "/containers", logs]:
            assert client.get(path).status_code == 200
    assert snapshot() == before


def test_unknown_paths_are_json_404(agent: AgentProcess) -> None:
    with agent.client() as client:
        answer = client.get("/docs")
    assert answer.status_code == 404
    assert answer.json()["error"]["code"] == "not_found"


def test_status_says_when_docker_is_unreachable(agent_without_docker: AgentProcess) -> None:
    with agent_without_docker.client() as client:
        body = client.get("/status").json()
    assert body["docker"]["state"] == "unreachable"
    assert "no-such-docker.sock" in body["docker"]["error"]
    assert body["tool_instances"] is None
    assert body["containers"] is None


def test_containers_answer_503_when_docker_is_unreachable(
    agent_without_docker: AgentProcess,
) -> None:
    with agent_without_docker.client() as client:
        listing = client.get("/containers")
        logs = client.get("/containers/anything/logs")
    assert listing.status_code == 503
    assert listing.json()["error"]["code"] == "docker_unavailable"
    assert logs.status_code == 503


def test_the_token_never_reaches_the_agents_output(agent: AgentProcess) -> None:
    with agent.client() as client:
        client.get("/status")
    with agent.client("not-the-token-but-long") as client:
        client.get("/status")
    assert agent.token not in agent.log.read_text()


def test_the_agent_refuses_to_start_without_a_token() -> None:
    env = {k: v for k, v in os.environ.items() if k != "DTMA_AGENT_TOKEN"}
    done = subprocess.run(
        [sys.executable, "-m", "dtma_agent"], env=env, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 2
    assert "DTMA_AGENT_TOKEN" in done.stderr


def test_the_agent_refuses_a_bad_port() -> None:
    env = {**os.environ, "DTMA_AGENT_TOKEN": "x" * 32, "DTMA_AGENT_PORT": "70000"}
    done = subprocess.run(
        [sys.executable, "-m", "dtma_agent"], env=env, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 2
    assert "DTMA_AGENT_PORT" in done.stderr


def test_health_keeps_answering_under_concurrent_reads(agent: AgentProcess) -> None:
    with agent.client() as client:
        answers = [client.get(p) for p in ["/status", "/system", "/containers"] * 10]
    assert all(a.status_code == 200 for a in answers)
    with agent.anonymous() as client:
        assert client.get("/health").status_code == 200


def test_the_agent_speaks_only_tls_unless_told_otherwise(agent: AgentProcess) -> None:
    plain = agent.url.replace("https://", "http://")
    with pytest.raises(httpx.HTTPError):  # a TLS listener does not answer plain HTTP
        httpx.get(f"{plain}/health", timeout=5)
    env = {k: v for k, v in agent.env.items() if not k.startswith("DTMA_AGENT_TLS_")}
    env["DTMA_AGENT_PORT"] = str(free_port())
    done = subprocess.run(
        [sys.executable, "-m", "dtma_agent"], env=env, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 2
    assert "TLS is on but DTMA_AGENT_TLS_CERT (unset) is not a readable file" in done.stderr


def test_plain_http_only_when_asked_for_explicitly(tmp_path: Path) -> None:
    running = start_agent(tmp_path / "agent.log", DTMA_AGENT_TLS="off")
    try:
        assert running.url.startswith("http://")
        assert httpx.get(f"{running.url}/health", timeout=5).json()["status"] == "ok"
    finally:
        stop_agent(running)


def test_pipelined_requests_are_answered_in_order(agent: AgentProcess) -> None:
    """The console writes several requests at once on one connection (DESIGN.md, one agent
    client): the answers come back whole and in order."""
    host, port = agent.url.removeprefix("https://").split(":")
    asked = ["/health", "/status", "/health", "/system"]
    raw = b"".join(
        f"GET {p} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {agent.token}\r\n\r\n".encode()
        for p in asked
    )
    context: ssl.SSLContext = agent.certificate.context()
    with (
        socket.create_connection((host, int(port)), timeout=10) as plain,
        context.wrap_socket(plain) as tls,
    ):
        tls.sendall(raw)
        received = b""
        while received.count(b"HTTP/1.1 200 OK") < len(asked):
            chunk = tls.recv(65536)
            assert chunk, received
            received += chunk
    assert received.count(b'"status":"ok"') == 2
    assert received.index(b'"uptime_seconds"') < received.index(b'"hostname"')


def test_the_agent_imports_neither_a_web_framework_nor_the_docker_sdk() -> None:
    """What keeps its idle RSS low (issue 16): everything the serving agent imports."""
    probe = (
        "import sys, dtma_agent.__main__, dtma_agent.app, dtma_agent.server; "
        "print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    loaded = set(done.stdout.split())
    assert {"dtma_agent", "h11", "psutil", "asyncio", "ssl"} <= loaded, done.stderr
    assert not loaded & {"fastapi", "starlette", "pydantic", "uvicorn", "docker", "requests"}
