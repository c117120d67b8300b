"""The console served for real: `dtma-console serve` in its own process, aimed at the
sandbox fleet, and helpers to read ground truth from the droplets with `docker exec`."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from sandbox.config import PROJECT_ROOT
from sandbox.fleet import Droplet, SandboxInfo
from tests.api.server import free_port

CLI = Path(sys.executable).parent / "dtma-console"
# A loaded 2-core machine has been seen to take most of a minute to start a console.
STARTUP_SECONDS = 120


def console_env(
    sandbox: SandboxInfo, workdir: Path, database_url: str, port: int
) -> dict[str, str]:
    return {
        **os.environ,
        "DTMA_DATABASE_URL": database_url,
        "DTMA_HOST": "127.0.0.1",
        "DTMA_PORT": str(port),
        "DTMA_DO_API_URL": sandbox.api_url,
        "DTMA_DO_API_TOKEN": sandbox.api_token,
        "DTMA_SSH_KEY_FILE": str(sandbox.operator_key),
        "DTMA_KNOWN_HOSTS_FILE": str(sandbox.known_hosts),
        "DTMA_INVENTORY": str(sandbox.inventory),
        "DTMA_RUNS_DIR": str(workdir / "runs"),
        "DTMA_MONITOR_INTERVAL": "0",
        "DTMA_LOG_LEVEL": "INFO",
    }


@dataclass
class Console:
    """One `dtma-console serve` process; restartable on the same database."""

    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    token: str = ""
    seen_bodies: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.env['DTMA_PORT']}"

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(CLI), *args], env=self.env, capture_output=True, text=True, timeout=120
        )

    def start(self) -> None:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [str(CLI), "serve"], env=self.env, stdout=log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + STARTUP_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the console exited: {self.log_path.read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        tail = self.log_path.read_text()[-3000:]
        raise RuntimeError(
            f"the console did not answer /healthz within {STARTUP_SECONDS} s; its log: {tail}"
        )

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()
        self.process = None

    def http(self, token: str | None = None, timeout: float = 300) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token or self.token}"}
        return httpx.Client(
            base_url=self.url,
            headers=headers,
            timeout=timeout,
            event_hooks={"response": [self._remember]},
        )

    def _remember(self, response: httpx.Response) -> None:
        """Keep every answer's body for the secrets check; endless streams (SSE, followed
        logs) are read by the tests themselves."""
        streaming = "text/event-stream" in response.headers.get("content-type", "")
        if not streaming and response.request.url.params.get("follow") != "true":
            response.read()
            self.seen_bodies.append(response.text)


def new_console(sandbox: SandboxInfo, workdir: Path, database_url: str) -> Console:
    workdir.mkdir(parents=True, exist_ok=True)
    env = console_env(sandbox, workdir, database_url, free_port())
    return Console(env=env, log_path=workdir / "console.log")


def sibling_console(console: Console, workdir: Path, **env: str | None) -> Console:
    """A second `dtma-console serve` on `console`'s database and token (started by the
    caller), with its own port, log and runs dir and `env` changed (None: unset): cheaper
    than restarting the shared console twice, and the shared one keeps serving."""
    workdir.mkdir(parents=True, exist_ok=True)
    changed = {
        **console.env,
        "DTMA_PORT": str(free_port()),
        "DTMA_RUNS_DIR": str(workdir / "runs"),
        **{k: v for k, v in env.items() if v is not None},
    }
    for name in [k for k, v in env.items() if v is None]:
        changed.pop(name, None)
    return Console(env=changed, log_path=workdir / "console.log", token=console.token)


def operator_install(sandbox: SandboxInfo, env: dict[str, str], *args: str) -> None:
    """`ansible-playbook -i <sandbox inventory> playbooks/dtma_install.yml`, as in the README."""
    done = subprocess.run(
        [
            str(PROJECT_ROOT / ".venv" / "bin" / "ansible-playbook"),
            "-i",
            str(sandbox.inventory),
            str(PROJECT_ROOT / "playbooks" / "dtma_install.yml"),
            *args,
        ],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:]


# -- ground truth from the droplets --------------------------------------------------------
def docker_exec(container: str, *command: str, check: bool = True) -> str:
    done = subprocess.run(
        ["docker", "exec", container, *command], capture_output=True, text=True, timeout=60
    )
    if check and done.returncode != 0:
        raise AssertionError(f"docker exec {container} {command}: {done.stderr.strip()}")
    return done.stdout.strip()


def agent_tls(container: str) -> ssl.SSLContext:
    """TLS trusting the droplet's own agent certificate alone (read over docker exec), as
    the console pins it: the certificate names no address the tests dial."""
    context = ssl.create_default_context(
        cadata=docker_exec(container, "cat", "/etc/dtma/tls/agent.crt")
    )
    context.check_hostname = False
    return context


READ_TOKEN = ("sed", "-n", "s/^DTMA_AGENT_TOKEN=//p", "/etc/dtma/dtma.env")


def agent_token(container: str) -> str:
    """The agent's token as the droplet holds it (/etc/dtma/dtma.env)."""
    return docker_exec(container, *READ_TOKEN)


def file_sha256(droplet: Droplet) -> str:
    """SHA-256 of the agent certificate file on the droplet."""
    pem = docker_exec(droplet.container, "cat", "/etc/dtma/tls/agent.crt")
    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(pem)).hexdigest()


def served_sha256(droplet: Droplet) -> str:
    """SHA-256 of the certificate port 30000 presents now (trusting nothing: only read)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    raw = socket.create_connection((droplet.address, 30000), timeout=5)
    with context.wrap_socket(raw) as tls:
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return hashlib.sha256(der).hexdigest()


def remove_tool(container: str, name: str) -> None:
    """Clean-up of a test's tool instance on the droplet, without a playbook run (the
    console's delete is asserted by the tests of the tool lifecycle)."""
    docker_exec(container, "docker", "rm", "-f", "-v", name, check=False)


def inspect_tool(container: str, name: str) -> dict[str, Any] | None:
    """`docker inspect` of a tool instance inside a droplet; None when absent."""
    out = subprocess.run(
        ["docker", "exec", container, "docker", "inspect", name],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if out.returncode != 0:
        return None
    found: list[dict[str, Any]] = json.loads(out.stdout)
    return found[0]


def agent_pid(container: str) -> int:
    return int(docker_exec(container, "systemctl", "show", "-p", "MainPID", "--value", "dtma"))


def wait_until(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
