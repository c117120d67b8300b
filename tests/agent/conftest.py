"""Fixtures for the agent's own tests: the real agent process against the real dockerd."""

from __future__ import annotations

import os
import secrets
import socket
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from ipaddress import ip_address
from pathlib import Path

import docker
import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from sandbox.tools import ensure_tool_images

TOOL_IMAGE = "dtma-tool-echo:1.0"
LOGS_TAIL_MAX = 50


@dataclass(frozen=True)
class Certificate:
    """A self-signed certificate as the dtma role makes one (ECDSA P-256, CA:FALSE)."""

    pem: str
    cert_path: Path
    key_path: Path

    def context(self) -> ssl.SSLContext:
        """A client context trusting this certificate alone (no host name check)."""
        context = ssl.create_default_context(cadata=self.pem)
        context.check_hostname = False
        return context


def make_certificate(directory: Path, name: str = "agent") -> Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dtma-agent")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ip_address("127.0.0.1"))]), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    pem = certificate.public_bytes(serialization.Encoding.PEM).decode()
    cert_path, key_path = directory / f"{name}.crt", directory / f"{name}.key"
    cert_path.write_text(pem)
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return Certificate(pem, cert_path, key_path)


@dataclass
class AgentProcess:
    url: str
    token: str
    process: subprocess.Popen[bytes]
    log: Path
    certificate: Certificate
    env: dict[str, str] = field(default_factory=dict)

    def client(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token or self.token}"}
        return httpx.Client(
            base_url=self.url, headers=headers, timeout=10, verify=self.certificate.context()
        )

    def anonymous(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=10, verify=self.certificate.context())


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_agent(log: Path, **extra_env: str) -> AgentProcess:
    """Start `python -m dtma_agent` (HTTPS) on a free loopback port and wait for /health."""
    token = secrets.token_urlsafe(32)
    port = free_port()
    certificate = make_certificate(log.parent)
    env = {
        **os.environ,
        "DTMA_AGENT_TOKEN": token,
        "DTMA_AGENT_HOST": "127.0.0.1",
        "DTMA_AGENT_PORT": str(port),
        "DTMA_AGENT_LOGS_TAIL_MAX": str(LOGS_TAIL_MAX),
        "DTMA_AGENT_TLS_CERT": str(certificate.cert_path),
        "DTMA_AGENT_TLS_KEY": str(certificate.key_path),
        **extra_env,
    }
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "dtma_agent"], env=env, stdout=sink, stderr=subprocess.STDOUT
        )
    scheme = "http" if env.get("DTMA_AGENT_TLS") == "off" else "https"
    agent = AgentProcess(f"{scheme}://127.0.0.1:{port}", token, process, log, certificate, env)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"agent exited with {process.returncode}: {log.read_text()}")
        try:
            with agent.anonymous() as probe:
                answered = probe.get("/health", timeout=1).status_code == 200
            if answered:
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
