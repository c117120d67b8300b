"""The `load` image source: a controller-side `docker save` archive, shipped and loaded only
when the droplet lacks the image."""

from __future__ import annotations

import io
import subprocess
import tarfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from sandbox import fleet, tools
from tests.tools.helpers import Play, droplet_docker, droplet_exec, inspect, remove_containers

pytestmark = pytest.mark.sandbox


def _build_unique_image(tag: str) -> None:
    """An image with a layer no droplet has: the echo tool plus a file with a fresh token."""
    context = io.BytesIO()
    with tarfile.open(fileobj=context, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in (
            ("Dockerfile", b"FROM dtma-tool-echo:1.0\nCOPY token /www/token\n"),
            ("token", uuid.uuid4().hex.encode()),
        ):
            entry = tarfile.TarInfo(name)
            entry.size = len(data)
            tar.addfile(entry, io.BytesIO(data))
    built = subprocess.run(
        ["docker", "build", "-q", "-t", tag, "-"], input=context.getvalue(), capture_output=True
    )
    assert built.returncode == 0, built.stderr.decode()


@pytest.fixture
def archived_image(scratch_dir: Path) -> Iterator[tuple[str, Path]]:
    tag = f"dtma-tool-loadtest:{uuid.uuid4().hex[:8]}"
    _build_unique_image(tag)
    archive = tools.save_tool_image(tag, scratch_dir / "loadtest.tar")
    yield tag, archive
    subprocess.run(["docker", "rmi", tag], capture_output=True)
    archive.unlink(missing_ok=True)


def test_load_ships_the_archive_only_when_the_image_is_missing(
    play: Play, sandbox: fleet.SandboxInfo, archived_image: tuple[str, Path], unique_name: str
) -> None:
    droplet = sandbox.droplets[1]
    tag, archive = archived_image
    assert droplet_docker(droplet.container, "image", "inspect", tag).returncode != 0
    spec = {
        "tool_instance_name": unique_name,
        "tool_instance_image": tag,
        "tool_instance_image_source": "load",
        "tool_instance_image_archive": str(archive),
    }
    try:
        deployed = play("tool_deploy.yml", droplet.name, spec)
        deployed.assert_ok()
        container = inspect(droplet.container, unique_name)
        assert container is not None and container["State"]["Running"] is True
        assert container["Config"]["Image"] == tag
        assert container["Image"] == tools.image_id(tag)  # the very image built on the controller
        leftovers = droplet_exec(droplet.container, "ls", "-A", "/var/tmp/dtma-tool-images")
        assert leftovers.stdout.strip() == ""  # the archive was removed after loading

        archive.unlink()  # a second deploy must not need the archive: the image is there
        again = play("tool_deploy.yml", droplet.name, spec)
        again.assert_ok()
        assert again.changed(droplet.name) == 0
    finally:
        remove_containers(droplet.container, unique_name)
        droplet_docker(droplet.container, "rmi", tag)
