"""The console reaches every agent over TLS with the certificate it pinned (learnt over SSH):
nothing secret crosses loopback in clear, an impostor on port 30000 gets no request and
shows no data, and operators' runs (a plain reinstall, a certificate rotation) keep the
console reading."""

from __future__ import annotations

import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from sandbox.fleet import Droplet, SandboxInfo
from tests.api.conftest import OperatorReinstall
from tests.api.console import (
    Console,
    agent_token,
    docker_exec,
    file_sha256,
    operator_install,
    served_sha256,
)

pytestmark = pytest.mark.sandbox

ETH_P_ALL = 0x0003


@contextmanager
def loopback_capture(address: str) -> Iterator[bytearray]:
    """Every IPv4 packet to or from `address` on lo, raw (needs root: AF_PACKET)."""
    captured = bytearray()
    packed = socket.inet_aton(address)
    stop = threading.Event()
    sniffer = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    sniffer.bind(("lo", 0))
    sniffer.settimeout(0.2)

    def capture() -> None:
        while not stop.is_set():
            try:
                frame = sniffer.recv(65535)
            except TimeoutError:
                continue
            ip = frame[14:]  # lo frames carry an Ethernet header
            if len(ip) > 20 and packed in (ip[12:16], ip[16:20]):
                captured.extend(ip)

    worker = threading.Thread(target=capture, daemon=True)
    worker.start()
    try:
        yield captured
    finally:
        stop.set()
        worker.join(5)
        sniffer.close()


def test_the_console_reads_every_agent_over_tls_and_nothing_secret_is_in_clear(
    console: Console, sandbox: SandboxInfo, toolboxes: dict[str, dict[str, Any]]
) -> None:
    droplet = sandbox.droplet("toolbox-1")
    toolbox = toolboxes[droplet.name]
    token = agent_token(droplet.container)
    marker = f"secret-log-line-{uuid.uuid4().hex}"
    name = f"tls-probe-{uuid.uuid4().hex[:6]}"
    docker_exec(
        droplet.container,
        "docker", "run", "-d", "--name", name, "--label", "dtma.managed=true",
        "--label", f"dtma.instance={name}", "--entrypoint", "/bin/sh", "dtma-tool-echo:1.0",
        "-c", f"while true; do echo {marker}; sleep 0.2; done",
    )  # fmt: skip
    try:
        with loopback_capture(droplet.address) as captured, console.http() as http:
            synced = http.post("/api/v1/toolboxes/sync")  # a monitor cycle over every agent
            assert synced.status_code == 200, synced.text
            followed = b""
            path = f"/api/v1/toolboxes/{toolbox['id']}/tools/{name}/logs"
            with http.stream("GET", path, params={"follow": True, "tail": 5}) as stream:
                assert stream.status_code == 200, stream.read()
                for chunk in stream.iter_bytes():
                    followed += chunk
                    if followed.count(marker.encode()) >= 8:
                        break
            status = http.get(f"/api/v1/toolboxes/{toolbox['id']}/dtma/status").json()
        time.sleep(0.3)
    finally:
        docker_exec(droplet.container, "docker", "rm", "-f", name, check=False)
    assert status["source"] == "agent", status
    assert marker.encode() in followed  # the console relayed the lines to its client...
    port_30000 = (30000).to_bytes(2, "big")
    assert len(captured) > 3000 and port_30000 in captured  # ...and the capture saw the agent
    assert b"Bearer" not in captured and token.encode() not in captured
    assert marker.encode() not in captured and b"HTTP/1.1" not in captured


def test_an_impostor_on_the_agents_port_gets_no_request_and_shows_no_data(
    console: Console, sandbox: SandboxInfo, toolboxes: dict[str, dict[str, Any]]
) -> None:
    droplet = sandbox.droplet("toolbox-2")
    toolbox = toolboxes[droplet.name]
    impostor = (
        "import json, os, ssl, http.server\n"
        "open('/tmp/impostor.pid', 'w').write(str(os.getpid()))\n"
        "class H(http.server.BaseHTTPRequestHandler):\n"
        "    def do_GET(self):\n"
        "        open('/tmp/impostor-saw', 'a').write(self.headers.get('Authorization', '-'))\n"
        "        body = json.dumps({'version': 'impostor'}).encode()\n"
        "        self.send_response(200); self.send_header('Content-Length', str(len(body)))\n"
        "        self.end_headers(); self.wfile.write(body)\n"
        "server = http.server.HTTPServer(('0.0.0.0', 30000), H)\n"
        "tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)\n"
        "tls.load_cert_chain('/tmp/impostor.crt', '/tmp/impostor.key')\n"
        "server.socket = tls.wrap_socket(server.socket, server_side=True)\n"
        "server.serve_forever()\n"
    )
    docker_exec(
        droplet.container, "sh", "-c",
        "rm -f /tmp/impostor-saw; openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 "
        "-nodes -keyout /tmp/impostor.key -out /tmp/impostor.crt -days 2 -subj /CN=dtma-agent "
        "2>/dev/null && systemctl stop dtma",
    )  # fmt: skip
    server = subprocess.Popen(
        ["docker", "exec", droplet.container, "python3", "-c", impostor],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and served_sha256_or_none(droplet) in (
            None,
            file_sha256(droplet),
        ):
            time.sleep(0.2)
        with console.http() as http:
            status = http.get(f"/api/v1/toolboxes/{toolbox['id']}/dtma/status").json()
            detail = http.get(f"/api/v1/toolboxes/{toolbox['id']}").json()
        saw = docker_exec(droplet.container, "cat", "/tmp/impostor-saw", check=False)
    finally:
        docker_exec(droplet.container, "sh", "-c", "kill $(cat /tmp/impostor.pid)", check=False)
        server.wait(10)
        docker_exec(droplet.container, "systemctl", "start", "dtma")
    assert status["source"] != "agent", status
    assert "impostor" not in str(status) and "impostor" not in str(detail)
    assert f"agent certificate for {droplet.name} changed" in status["errors"]["agent"]
    assert saw == ""  # no request, hence no token, ever reached it


def served_sha256_or_none(droplet: Droplet) -> str | None:
    try:
        return served_sha256(droplet)
    except OSError:
        return None


def test_an_operators_install_keeps_the_certificate_and_a_rotation_repins(
    console: Console,
    sandbox: SandboxInfo,
    toolboxes: dict[str, dict[str, Any]],
    ansible_env: dict[str, str],
    operator_reinstall: OperatorReinstall,
) -> None:
    droplet = sandbox.droplet("toolbox-3")
    toolbox = toolboxes[droplet.name]
    # The session's plain operator install (over every droplet, toolbox-3 included).
    pinned = operator_reinstall.certs_before[droplet.name]
    kept = operator_reinstall.certs_after[droplet.name]
    assert kept == pinned == operator_reinstall.served_after[droplet.name]
    assert file_sha256(droplet) == pinned
    with console.http() as http:
        status = http.get(f"/api/v1/toolboxes/{toolbox['id']}/dtma/status").json()
    assert (status["source"], status["errors"]) == ("agent", {}), status

    operator_install(sandbox, ansible_env, "-l", droplet.name, "-e", "dtma_agent_tls_rotate=true")
    rotated = file_sha256(droplet)
    assert rotated != pinned and served_sha256(droplet) == rotated
    with console.http() as http:  # the console meets another certificate and learns it over SSH
        status = http.get(f"/api/v1/toolboxes/{toolbox['id']}/dtma/status").json()
    assert (status["source"], status["errors"]) == ("agent", {}), status
