"""Bad inputs and impossible requests fail with their message and change nothing on the droplet."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sandbox import fleet
from tests.tools.conftest import ECHO_PORT
from tests.tools.helpers import Play, PlaybookRun, droplet_exec, engine_snapshot

pytestmark = pytest.mark.sandbox

LISTENER_PORT = 28099


def _assert_refused(
    play: Play, toolbox: fleet.Droplet, playbook: str, extravars: dict[str, Any], message: str,
    extra_args: tuple[str, ...] = (),
) -> PlaybookRun:  # fmt: skip
    before = engine_snapshot(toolbox.container)
    run = play(playbook, toolbox.name, extravars, extra_args)
    assert run.rc != 0
    assert run.error is not None and message in run.error, run.error
    assert engine_snapshot(toolbox.container) == before
    return run


@pytest.mark.parametrize(
    ("extravars", "message"),
    [
        ({"tool_instance_name": "Bad Name!"}, "tool_instance_name \"Bad Name!\" is invalid"),
        ({"tool_instance_name": "x" * 64}, "tool_instance_name"),
        ({"tool_instance_name": "-leading-dash"}, "tool_instance_name"),
        (
            {"tool_instance_name": "tt-ok", "tool_instance_image": "UPPER/Case:1"},
            "tool_instance_image \"UPPER/Case:1\" is not a valid image reference",
        ),
        (
            {"tool_instance_name": "tt-ok", "tool_instance_image": "dtma-tool-echo:1.0",
             "tool_instance_ports": [{"host_port": 80, "container_port": 8080}]},
            "tool_instance_ports[0].host_port must be 1024-65535 (got 80)",
        ),
        (
            {"tool_instance_name": "tt-ok", "tool_instance_image": "dtma-tool-echo:1.0",
             "tool_instance_ports": [{"host_port": 70000, "container_port": 8080}]},
            "tool_instance_ports[0].host_port must be 1024-65535 (got 70000)",
        ),
        (
            {"tool_instance_name": "tt-ok", "tool_instance_image": "dtma-tool-echo:1.0",
             "tool_instance_env": {"1BAD": "x"}},
            "tool_instance_env is invalid: keys 1BAD must match",
        ),
        (
            {"tool_instance_name": "tt-ok", "tool_instance_image": "dtma-tool-echo:1.0",
             "tool_instance_restart_policy": "sometimes"},
            "tool_instance_restart_policy must be one of",
        ),
        (
            {"tool_instance_name": "tt-ok", "tool_instance_image": "dtma-tool-echo:1.0",
             "tool_instance_image_source": "load"},
            "tool_instance_image_archive is required when tool_instance_image_source is 'load'",
        ),
        # Names and images are matched whole: a trailing newline is not forgiven.
        ({"tool_instance_name": "web\n"}, 'tool_instance_name "web\\n" is invalid'),
        (
            {"tool_instance_name": "tt-ok", "tool_instance_image": "a" * 256},
            "is not a valid image reference of at most 255 characters",
        ),
        (
            {"tool_instance_name": "tt-ok", "tool_instance_image": "dtma-tool-echo:1.0",
             "tool_instance_memory": "1k", "tool_instance_cpus": 0.5},
            'tool_instance_memory must be 0 (no limit) or a limit of at least 6m',
        ),
        (
            {"tool_instance_name": "tt-ok", "tool_instance_image": "dtma-tool-echo:1.0",
             "tool_instance_healthcheck": {"test": ["wget", "x"], "interval": "90x", "retries": 0}},
            "tool_instance_healthcheck is invalid: test must be [CMD, arg, ...] or [CMD-SHELL, "
            'command], e.g. [CMD, wget, -q, -O, /dev/null, http://127.0.0.1:8080/]; interval must '
            'be a duration such as 5s, 2m or 1h (got "90x"); retries must be 1-100 (got 0)',
        ),
    ],
    ids=["uppercase-name", "long-name", "dash-name", "bad-image", "low-port", "high-port",
         "env-key", "restart-policy", "load-without-archive", "newline-name", "image-256",
         "tiny-memory", "bad-healthcheck"],
)  # fmt: skip
def test_invalid_deploy_input_is_refused_naming_the_field(
    play: Play, toolbox: fleet.Droplet, extravars: dict[str, Any], message: str
) -> None:
    _assert_refused(play, toolbox, "tool_deploy.yml", extravars, message)


def test_a_template_in_a_name_is_data_not_code(
    play: Play, toolbox: fleet.Droplet, scratch_dir: Path
) -> None:
    marker = scratch_dir / "templated"
    varsfile = scratch_dir / "unsafe.yml"
    varsfile.write_text(
        f"tool_instance_name: !unsafe \"{{{{ lookup('pipe', 'touch {marker}') }}}}\"\n"
    )
    _assert_refused(
        play, toolbox, "tool_restart.yml", {}, "tool_instance_name \"{{ lookup(",
        extra_args=("-e", f"@{varsfile}"),
    )  # fmt: skip
    assert not marker.exists()


def test_logs_tail_is_capped(play: Play, toolbox: fleet.Droplet) -> None:
    _assert_refused(
        play, toolbox, "tool_logs.yml",
        {"tool_instance_name": "tt-echo", "tool_instance_logs_tail": 5000},
        "tool_instance_logs_tail must be 1-1000 (got 5000)",
    )  # fmt: skip


def test_an_unknown_instance_is_not_found(play: Play, toolbox: fleet.Droplet) -> None:
    for playbook in ("tool_restart.yml", "tool_remove.yml"):
        run = _assert_refused(
            play, toolbox, playbook, {"tool_instance_name": "tt-nope"},
            f"tool instance 'tt-nope' not found on {toolbox.name}",
        )  # fmt: skip
        assert run.error == f"tool instance 'tt-nope' not found on {toolbox.name}"


def test_a_container_without_the_dtma_label_is_not_touched(
    play: Play, toolbox: fleet.Droplet, unique_name: str
) -> None:
    created = droplet_exec(
        toolbox.container, "docker", "create", "--name", unique_name, "dtma-tool-echo:1.0"
    )
    assert created.returncode == 0, created.stderr
    try:
        _assert_refused(
            play, toolbox, "tool_remove.yml", {"tool_instance_name": unique_name},
            f"container '{unique_name}' on {toolbox.name} is not a DTMA tool instance",
        )  # fmt: skip
    finally:
        droplet_exec(toolbox.container, "docker", "rm", "-f", unique_name)


def test_a_write_action_without_a_limit_is_refused(play: Play, toolbox: fleet.Droplet) -> None:
    before = engine_snapshot(toolbox.container)
    run = play("tool_stop.yml", None, {"tool_instance_name": "tt-echo"})
    assert run.rc != 0
    assert run.error is not None and "limit the run" in run.error
    assert engine_snapshot(toolbox.container) == before


def test_a_port_published_by_another_container_is_refused(
    play: Play, toolbox: fleet.Droplet, deployed_echo: PlaybookRun, unique_name: str
) -> None:
    _assert_refused(
        play, toolbox, "tool_deploy.yml",
        {"tool_instance_name": unique_name, "tool_instance_image": "dtma-tool-echo:1.0",
         "tool_instance_ports": [{"host_port": ECHO_PORT, "container_port": 8080}]},
        f"tool_instance_ports: host port {ECHO_PORT}/tcp (held by container 'tt-echo') already "
        f"in use on {toolbox.name}; nothing was changed",
    )  # fmt: skip


@pytest.fixture
def host_listener(toolbox: fleet.Droplet) -> Iterator[int]:
    """A plain process listening on a high port inside the droplet (not a container)."""
    started = droplet_exec(
        toolbox.container, "sh", "-c",
        f"nohup python3 -m http.server {LISTENER_PORT} --bind 127.0.0.1 >/dev/null 2>&1 & echo $!",
    )  # fmt: skip
    pid = started.stdout.strip()
    deadline = time.monotonic() + 15
    while f":{LISTENER_PORT} " not in droplet_exec(toolbox.container, "ss", "-ltn").stdout:
        assert time.monotonic() < deadline, "the test listener did not start"
        time.sleep(0.2)
    yield LISTENER_PORT
    droplet_exec(toolbox.container, "kill", pid)


def test_a_port_held_by_a_host_process_is_refused(
    play: Play, toolbox: fleet.Droplet, host_listener: int, unique_name: str
) -> None:
    _assert_refused(
        play, toolbox, "tool_deploy.yml",
        {"tool_instance_name": unique_name, "tool_instance_image": "dtma-tool-echo:1.0",
         "tool_instance_ports": [{"host_port": host_listener, "container_port": 8080}]},
        f"host port {host_listener}/tcp (held by 'python3' listening on 127.0.0.1:{host_listener})",
    )  # fmt: skip


def test_a_missing_image_is_named(play: Play, toolbox: fleet.Droplet, unique_name: str) -> None:
    # A registry on the droplet's own loopback that nobody serves: the pull fails at once.
    image = "127.0.0.1:5999/dtma-tool-missing:1.0"
    _assert_refused(
        play, toolbox, "tool_deploy.yml",
        {"tool_instance_name": unique_name, "tool_instance_image": image},
        f"image '{image}' is not on {toolbox.name} and could not be pulled",
    )  # fmt: skip


def test_a_missing_image_archive_is_named(
    play: Play, toolbox: fleet.Droplet, unique_name: str, scratch_dir: Path
) -> None:
    archive = scratch_dir / "no-such-archive.tar"
    _assert_refused(
        play, toolbox, "tool_deploy.yml",
        {"tool_instance_name": unique_name, "tool_instance_image": "dtma-tool-absent:9.9",
         "tool_instance_image_source": "load", "tool_instance_image_archive": str(archive)},
        f"image 'dtma-tool-absent:9.9' is missing on {toolbox.name} and its archive "
        f"(tool_instance_image_archive) '{archive}' does not exist on the controller",
    )  # fmt: skip
