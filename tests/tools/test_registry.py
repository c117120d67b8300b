"""A private registry for real: Debian's docker-registry with htpasswd (bcrypt) auth, run inside
the droplet on its own loopback (nothing else can reach it). A deploy pulls from it with the
right credentials and keeps its named volume, labels and log rotation (read back with
`docker inspect`); wrong credentials fail with the registry's answer, never the password; the
login never outlives the pull. The default log rotation is on every deploy (tt-echo)."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from api.app import create_app
from api.db import session_scope
from api.services import run_store, users
from api.settings import Settings
from api.vault.models import RegistryCredential
from sandbox import fleet
from tests.api.server import live_server
from tests.tools.helpers import (
    Play,
    PlaybookRun,
    droplet_docker,
    droplet_exec,
    inspect,
    remove_containers,
)

pytestmark = pytest.mark.sandbox

REGISTRY_BINARY = "/usr/bin/docker-registry"  # Debian's docker-registry package
HTPASSWD = "/usr/bin/htpasswd"  # apache2-utils
PORT = 22500  # on the droplet's own loopback
HOST = f"127.0.0.1:{PORT}"
USER = "tt-puller"
PASSWORD = "reg-pass-7f3c91"
STATE = "/var/lib/dtma-test-registry"
CONFIG = f"""\
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: {STATE}/data
http:
  addr: {HOST}
auth:
  htpasswd:
    realm: dtma-test
    path: {STATE}/htpasswd
"""


@dataclass(frozen=True)
class Registry:
    host: str
    image: str  # pushed, for the deploy with the right credentials
    unpulled: str  # pushed, never pulled by the tests (for the refused pulls)


def _inside(container: str, script: str, stdin: str | None = None) -> str:
    done = subprocess.run(
        ["docker", "exec", "-i", container, "sh", "-ec", script],
        input=stdin, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, f"{script}: {done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def registry(toolbox: fleet.Droplet) -> Iterator[Registry]:
    """The registry running in the droplet with two tags of the echo image pushed to it (by
    a login of its own, removed at once); stopped by its PID and erased at the end."""
    for tool in (REGISTRY_BINARY, HTPASSWD):
        assert shutil.which(tool), f"{tool} is missing: `make bootstrap` installs it"
    entry = subprocess.run(
        [HTPASSWD, "-nbB", "-C", "4", USER, PASSWORD], capture_output=True, text=True, check=True
    ).stdout.strip()
    container = toolbox.container
    _inside(container, f"mkdir -p {STATE}/data && cat > {STATE}/config.yml", CONFIG)
    _inside(container, f"umask 077 && cat > {STATE}/htpasswd", entry + "\n")
    copied = subprocess.run(
        ["docker", "cp", REGISTRY_BINARY, f"{container}:{STATE}/registry"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert copied.returncode == 0, copied.stderr
    started = subprocess.run(
        ["docker", "exec", "-d", container, "sh", "-c",
         f"echo $$ > {STATE}/pid && exec {STATE}/registry serve {STATE}/config.yml "
         f">{STATE}/log 2>&1"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert started.returncode == 0, started.stderr
    try:
        _wait_until_up(container)
        image, unpulled = f"{HOST}/private/echo:1.0", f"{HOST}/private/echo:2.0"
        _inside(
            container,
            f"export DOCKER_CONFIG=$(mktemp -d); trap 'rm -rf $DOCKER_CONFIG' EXIT; "
            f"docker login -u {USER} --password-stdin {HOST} >/dev/null; "
            f"for tag in {image} {unpulled}; do docker tag dtma-tool-echo:1.0 $tag; "
            f"docker push -q $tag >/dev/null; docker rmi $tag >/dev/null; done",
            PASSWORD,
        )
        yield Registry(HOST, image, unpulled)
    finally:
        droplet_exec(container, "sh", "-c", f"kill $(cat {STATE}/pid)")
        droplet_exec(container, "rm", "-rf", STATE)


def _wait_until_up(container: str) -> None:
    probe = f"import urllib.request as u\ntry: u.urlopen('http://{HOST}/v2/', timeout=2)\nexcept Exception as e: print(getattr(e, 'code', e))"  # noqa: E501
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        answer = droplet_exec(container, "python3", "-c", probe).stdout.strip()
        if answer == "401":  # up, and asking for credentials
            return
        time.sleep(0.3)
    log = droplet_exec(container, "cat", f"{STATE}/log").stdout
    raise AssertionError(f"the registry did not answer on {HOST}: {log[-2000:]}")


def _deploy(
    play: Play, toolbox: fleet.Droplet, name: str, image: str, password: str | None, **more: object
) -> PlaybookRun:
    extravars: dict[str, object] = {
        "tool_instance_name": name, "tool_instance_image": image, "tool_instance_settle_seconds": 1,
        **{f"tool_instance_{key}": value for key, value in more.items()},
    }  # fmt: skip
    if password is not None:
        extravars["tool_instance_registry_auth"] = {
            "registry": HOST, "username": USER, "password": password,
        }  # fmt: skip
    return play("tool_deploy.yml", toolbox.name, extravars)


def _no_login_left(container: str) -> None:
    left = droplet_exec(container, "sh", "-c", "ls /run/dtma-registry-login 2>/dev/null; "
                        "cat /root/.docker/config.json 2>/dev/null")  # fmt: skip
    assert HOST not in left.stdout and not left.stdout.strip(), left.stdout


def test_a_private_image_is_pulled_with_the_right_credentials_and_runs_as_specified(
    play: Play, toolbox: fleet.Droplet, registry: Registry, unique_name: str
) -> None:
    try:
        run = _deploy(
            play, toolbox, unique_name, registry.image, PASSWORD,
            volumes=[{"name": f"{unique_name}-data", "target": "/data"},
                     {"name": f"{unique_name}-conf", "target": "/conf", "read_only": True}],
            labels={"com.example.team": "ops", "org.opencontainers.image.vendor": "dtma"},
            log_max_size="1m", log_max_file=2,
        )  # fmt: skip
        run.assert_ok()
        assert PASSWORD not in run.stderr and PASSWORD not in json.dumps(run.tool_result)
        seen = inspect(toolbox.container, unique_name)
        assert seen is not None and seen["State"]["Status"] == "running"
        assert seen["Config"]["Image"] == registry.image
        assert seen["HostConfig"]["LogConfig"] == {
            "Type": "json-file",
            "Config": {"max-size": "1m", "max-file": "2"},
        }
        mounts = {(m["Type"], m["Name"], m["Destination"], m["RW"]) for m in seen["Mounts"]}
        assert mounts == {
            ("volume", f"{unique_name}-data", "/data", True),
            ("volume", f"{unique_name}-conf", "/conf", False),
        }
        labels = seen["Config"]["Labels"]
        assert labels["com.example.team"] == "ops"
        assert labels["org.opencontainers.image.vendor"] == "dtma"
        assert labels["dtma.managed"] == "true" and labels["dtma.instance"] == unique_name
        _no_login_left(toolbox.container)
    finally:
        remove_containers(toolbox.container, unique_name)
        droplet_docker(
            toolbox.container, "volume", "rm", f"{unique_name}-data", f"{unique_name}-conf"
        )
        droplet_docker(toolbox.container, "rmi", registry.image)


def test_wrong_or_missing_credentials_fail_with_the_registry_answer(
    play: Play, toolbox: fleet.Droplet, registry: Registry, unique_name: str
) -> None:
    wrong = "not-the-password-41"
    refused = _deploy(play, toolbox, unique_name, registry.unpulled, wrong)
    assert refused.rc != 0
    assert refused.error is not None
    assert f"could not log in to registry '{HOST}' as '{USER}'" in refused.error, refused.error
    assert "check the registry credentials" in refused.error
    assert "unauthorized" in refused.error.lower() or "401" in refused.error, refused.error
    assert wrong not in refused.error and wrong not in refused.stderr
    assert inspect(toolbox.container, unique_name) is None
    _no_login_left(toolbox.container)

    anonymous = _deploy(play, toolbox, unique_name, registry.unpulled, None)
    assert anonymous.rc != 0 and anonymous.error is not None
    assert f"image '{registry.unpulled}' is not on {toolbox.name} and could not be pulled" in (
        anonymous.error
    ), anonymous.error
    assert inspect(toolbox.container, unique_name) is None


def test_every_deploy_rotates_its_logs_by_default(
    deployed_echo: PlaybookRun, toolbox: fleet.Droplet, echo_spec: dict[str, object]
) -> None:
    seen = inspect(toolbox.container, str(echo_spec["tool_instance_name"]))
    assert seen is not None
    assert seen["HostConfig"]["LogConfig"] == {
        "Type": "json-file",
        "Config": {"max-size": "10m", "max-file": "3"},
    }


def test_the_console_keeps_the_login_sealed_and_deploys_with_it(
    sandbox: fleet.SandboxInfo,
    toolbox: fleet.Droplet,
    registry: Registry,
    unique_name: str,
    tmp_path: Path,
) -> None:
    """Stored through the API (admins only), sealed in the database, never answered back;
    a deploy of an image from that registry logs in with it, and neither the run, its events
    nor the audit log carry the password."""
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'console.db'}", do_api_url=sandbox.api_url,
        do_api_token=sandbox.api_token, inventory=sandbox.inventory,
        ssh_key_file=sandbox.operator_key, known_hosts_file=sandbox.known_hosts,
        monitor_interval=0,
    )  # fmt: skip
    app = create_app(settings)
    with live_server(app) as url:
        sessions = app.state.context.sessions
        with session_scope(sessions) as session:
            _, admin = users.create_token(session, "reg-admin", admin=True)
            _, other = users.create_token(session, "reg-user", admin=False)
        http = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {admin}"}, timeout=600)
        with http:
            login = {"username": USER, "password": PASSWORD}
            refused = http.put(
                f"/api/v1/registries/{HOST}",
                json=login,
                headers={"Authorization": f"Bearer {other}"},
            )
            assert refused.status_code == 403, refused.text
            bad = http.put("/api/v1/registries/Not A Host", json=login)
            assert bad.status_code == 422 and bad.json()["error"]["field"] == "registry", bad.text
            stored = http.put(f"/api/v1/registries/{HOST}", json=login)
            assert stored.status_code == 200, stored.text
            listed = http.get("/api/v1/registries")
            assert [r["registry"] for r in listed.json()] == [HOST]
            assert PASSWORD not in stored.text + listed.text
            with session_scope(sessions) as session:
                [row] = session.scalars(select(RegistryCredential)).all()
                assert row.password_sealed and PASSWORD not in row.password_sealed

            assert http.post("/api/v1/toolboxes/sync").status_code == 200
            [box] = [t for t in http.get("/api/v1/toolboxes").json() if t["name"] == toolbox.name]
            body = {"name": unique_name, "image": registry.image, "settle_seconds": 1}
            try:
                deployed = http.post(f"/api/v1/toolboxes/{box['id']}/tools", json=body)
                assert deployed.status_code == 200, deployed.text
                assert deployed.json()["success"], deployed.text
                seen = inspect(toolbox.container, unique_name)
                assert seen is not None and seen["Config"]["Image"] == registry.image
                run_id = deployed.json()["run_id"]
                events, _ = run_store.stored_events(sessions, run_id, 0)
                run = http.get(f"/api/v1/runs/{run_id}").text
                audit = http.get("/api/v1/audit", params={"limit": 500}).text
                assert f"{USER}@{HOST}" in run  # which login was used, not its password
                for text in (json.dumps(events, default=str), run, audit, deployed.text):
                    assert PASSWORD not in text
                _no_login_left(toolbox.container)
            finally:
                remove_containers(toolbox.container, unique_name)
                droplet_docker(toolbox.container, "rmi", registry.image)
