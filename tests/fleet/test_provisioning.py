"""Toolboxes from first boot to retirement through the console's API, on the sandbox: the
DigitalOcean API emulator creates and destroys real droplet containers; what the console
says is checked against the emulator and the droplet itself."""

from __future__ import annotations

import json
import secrets
import subprocess
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from sandbox.config import SandboxConfig
from sandbox.fleet import SandboxInfo
from tests.api.console import Console, docker_exec, inspect_tool, new_console, wait_until

pytestmark = pytest.mark.sandbox

ECHO = {"name": "echo", "image": "dtma-tool-echo:1.0",
        "ports": [{"host_port": 8080, "container_port": 8080}]}  # fmt: skip


@pytest.fixture(scope="module")
def console(sandbox: SandboxInfo, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    """A console on SQLite with an admin (root) and a user (alice); no droplet imported."""
    workdir = tmp_path_factory.mktemp("provisioning")
    served = new_console(sandbox, workdir, f"sqlite:///{workdir / 'console.db'}")
    created = served.cli("token", "create", "--user", "root", "--admin")
    assert created.returncode == 0, created.stderr
    served.token = created.stdout.strip().splitlines()[-1]
    served.start()
    try:
        yield served
    finally:
        served.stop()


@pytest.fixture(scope="module")
def alice(console: Console) -> str:
    created = console.cli("token", "create", "--user", "alice")
    assert created.returncode == 0, created.stderr
    return created.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def emulator(sandbox: SandboxInfo) -> Iterator[httpx.Client]:
    """The DigitalOcean API as the console sees it (ground truth for droplets and keys)."""
    headers = {"Authorization": f"Bearer {sandbox.api_token}"}
    with httpx.Client(base_url=sandbox.api_url, headers=headers, timeout=60) as http:
        yield http


def _account_keys(emulator: httpx.Client) -> list[str]:
    return [k["public_key"] for k in emulator.get("/account/keys").json()["ssh_keys"]]


def _droplet_names(emulator: httpx.Client) -> set[str]:
    listed = emulator.get("/droplets", params={"per_page": 200}).json()["droplets"]
    return {droplet["name"] for droplet in listed}


def _ended(http: httpx.Client, run_id: str, timeout: float = 900) -> dict[str, Any]:
    def ended() -> dict[str, Any] | None:
        run: dict[str, Any] = http.get(f"/api/v1/runs/{run_id}").json()
        return None if run["status"] in ("queued", "running") else run

    return wait_until(ended, timeout, f"run {run_id} to end")  # type: ignore[no-any-return]


def _events(http: httpx.Client, run_id: str) -> list[dict[str, Any]]:
    with http.stream("GET", f"/api/v1/runs/{run_id}/events") as stream:
        lines = [line for line in stream.iter_lines() if line.startswith("data: ")]
    return [json.loads(line.removeprefix("data: ")) for line in lines if '"seq"' in line]


def _agent_health(address: str) -> dict[str, Any]:
    """/health of the agent from outside the droplet (HTTPS once the agent has TLS)."""
    for scheme in ("https", "http"):
        try:
            answer = httpx.get(f"{scheme}://{address}:30000/health", timeout=5, verify=False)
        except httpx.HTTPError:
            continue
        if answer.status_code == 200:
            return dict(answer.json())
    raise AssertionError(f"the agent at {address}:30000 does not answer /health")


def test_provisioning_refuses_bad_input_and_non_admins_and_leaves_nothing_behind(
    console: Console, alice: str, emulator: httpx.Client
) -> None:
    droplets_before, keys_before = _droplet_names(emulator), _account_keys(emulator)
    good = {"name": "prov-bad", "region": "fra1", "size": "s-1vcpu-1gb"}
    with console.http(alice) as http:
        assert http.post("/api/v1/toolboxes", json=good).json()["error"]["code"] == "forbidden"
        assert http.delete("/api/v1/toolboxes/anything").status_code == 403
    with console.http() as http:
        for bad, field in [
            ({**good, "name": "Prov_Bad"}, "name"),
            ({**good, "tags": ["dtma-owner:someone"]}, "tags"),
            ({**good, "tools": [ECHO, ECHO]}, "tools"),
            ({**good, "tools": [{**ECHO, "image": "{{ lookup('pipe','id') }}"}]}, "tools"),
            ({**good, "owner": "nobody-by-that-name"}, "owner"),
            ({**good, "surprise": True}, "surprise"),
        ]:
            answer = http.post("/api/v1/toolboxes", json=bad)
            assert answer.status_code == 422, (bad, answer.text)
            assert answer.json()["error"]["code"] == "invalid_input", answer.text
            assert field in answer.json()["error"].get("field", "") + answer.text
        # DigitalOcean itself refuses a region it does not have: 422 with its reason.
        refused = http.post("/api/v1/toolboxes", json={**good, "region": "zz9"})
        assert refused.status_code == 422, refused.text
        assert refused.json()["error"]["code"] == "digitalocean_refused"
        assert "region" in refused.json()["error"]["message"]
        missing = http.delete("/api/v1/toolboxes/no-such-toolbox")
        assert (missing.status_code, missing.json()["error"]["code"]) == (404, "toolbox_not_found")
        assert http.get("/api/v1/toolboxes", params={"include_removed": True}).json() == []
    # No droplet made, and the per-toolbox key registered for the refused one is gone.
    assert _droplet_names(emulator) == droplets_before
    assert _account_keys(emulator) == keys_before


@pytest.mark.timeout(1800)  # two whole runs (an agent install among them) on a loaded machine
def test_a_toolbox_from_first_boot_to_retirement(
    console: Console,
    alice: str,
    emulator: httpx.Client,
    sandbox_config: SandboxConfig,
) -> None:
    name = f"prov-{secrets.token_hex(3)}"
    keys_before = _account_keys(emulator)
    body = {"name": name, "region": "fra1", "size": "s-1vcpu-1gb", "tags": ["team-a"],
            "owner": "alice", "tools": [ECHO]}  # fmt: skip
    with console.http() as http:
        accepted = http.post("/api/v1/toolboxes", json=body)
        assert accepted.status_code == 202, accepted.text
        toolbox_id, run_id = accepted.json()["toolbox_id"], accepted.json()["run_id"]
        container = sandbox_config.container(name)
        try:
            busy = http.post("/api/v1/toolboxes", json=body)
            assert (busy.status_code, busy.json()["error"]["code"]) == (409, "toolbox_exists")
            run = _ended(http, run_id)
            assert run["status"] == "successful", (run["error"], run["result"])
            provisioned = http.get(f"/api/v1/toolboxes/{toolbox_id}").json()
            events = _events(http, run_id)
        except BaseException:
            emulator.delete(f"/droplets/{_droplet_id(emulator, name)}")
            raise
    # One run, its steps in order, one gap-free sequence ending once.
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert [e["type"] for e in events].count("run_end") == 1 and events[-1]["type"] == "run_end"
    steps = [e["task"] for e in events if e["type"] in ("task_ok", "task_changed")]
    mine = ["Create the droplet through the DigitalOcean API", "Wait for the droplet to boot",
            "Pin the droplet's SSH host keys"]  # fmt: skip
    assert steps[:3] == mine
    assert any(e["type"] == "playbook_start" and e["data"]["playbook"] == "dtma_install.yml"
               for e in events)  # fmt: skip
    assert any(e["type"] == "playbook_start" and e["data"]["playbook"] == "tool_deploy.yml"
               for e in events)  # fmt: skip

    # From outside: the droplet as DigitalOcean lists it, the agent, the tool, the keys.
    droplet = emulator.get(f"/droplets/{provisioned['droplet_id']}").json()["droplet"]
    alice_id = provisioned["owner_id"]
    assert droplet["status"] == "active" and alice_id is not None
    assert {"dtma", "team-a", f"dtma-owner:{alice_id}"} <= set(droplet["tags"])
    address = droplet["networks"]["v4"][0]["ip_address"]
    assert provisioned["address"] == address
    assert _agent_health(address)["status"] == "ok"
    echo = inspect_tool(container, "echo")
    assert echo is not None and echo["State"]["Status"] == "running"
    answer = docker_exec(container, "python3", "-c", "import urllib.request as u; print("
                         "u.urlopen('http://127.0.0.1:8080/', timeout=5).status)")  # fmt: skip
    assert answer == "200"
    # Its own key, and only that one, gets in (not the operator's); no account key is left.
    authorized = docker_exec(container, "cat", "/root/.ssh/authorized_keys").split("\n")
    assert provisioned["ssh_access"]["source"] == "toolbox"
    fingerprint = provisioned["ssh_access"]["fingerprint"]
    offered = subprocess.run(["ssh-keygen", "-lf", "-"], input="\n".join(authorized),
                             capture_output=True, text=True, check=True)  # fmt: skip
    assert [line.split()[1] for line in offered.stdout.splitlines()] == [fingerprint]
    assert _account_keys(emulator) == keys_before
    # Its host key is pinned: the one the droplet really has.
    host_key = docker_exec(container, "ssh-keygen", "-lf", "/etc/ssh/ssh_host_ed25519_key.pub")
    pin_event = next(e for e in events if e["task"] == mine[2] and e["type"] != "task_start")
    assert host_key.split()[1] in pin_event["data"]["msg"]
    # Alice sees her toolbox.
    with console.http(alice) as http:
        assert [t["id"] for t in http.get("/api/v1/toolboxes").json()] == [toolbox_id]

    # Retirement: tools stopped, droplet destroyed through the API, history kept.
    with console.http() as http:
        retired = http.delete(f"/api/v1/toolboxes/{toolbox_id}")
        assert retired.status_code == 202, retired.text
        retire_run = _ended(http, retired.json()["run_id"], timeout=600)
        assert retire_run["status"] == "successful", retire_run["error"]
        assert retire_run["result"]["data"]["tools_stopped"] == ["echo"]
        assert emulator.get(f"/droplets/{provisioned['droplet_id']}").status_code == 404
        assert name not in _droplet_names(emulator)
        gone = subprocess.run(["docker", "inspect", container], capture_output=True)
        assert gone.returncode != 0
        assert toolbox_id not in [t["id"] for t in http.get("/api/v1/toolboxes").json()]
        kept = http.get("/api/v1/toolboxes", params={"include_removed": True}).json()
        assert [t["removed_at"] is not None for t in kept if t["id"] == toolbox_id] == [True]
        history = http.get("/api/v1/runs", params={"toolbox_id": toolbox_id}).json()
        assert {r["id"] for r in _items(history)} >= {run_id, retired.json()["run_id"]}
        assert len(_events(http, run_id)) == len(events)  # the provisioning run stays readable
        again = http.delete(f"/api/v1/toolboxes/{toolbox_id}")
        assert (again.status_code, again.json()["error"]["code"]) == (409, "toolbox_removed")


def _items(listed: Any) -> list[dict[str, Any]]:
    return list(listed["items"] if isinstance(listed, dict) else listed)


def _droplet_id(emulator: httpx.Client, name: str) -> int:
    for droplet in emulator.get("/droplets", params={"per_page": 200}).json()["droplets"]:
        if droplet["name"] == name:
            return int(droplet["id"])
    return 0
