"""Sandbox tool images: built locally from busybox, shipped to droplets as a registry would.

No image registry is reachable here, so each tool image is built on the controller from its
recipe in `tool_images/<tool>/` (a `Dockerfile` FROM scratch plus `files/`) and the host's
static busybox, then moved into a droplet's own Docker engine with `docker save | docker load`.
An image carries the hash of its recipe as a label, so it is rebuilt only when the recipe
(or busybox) changes.
"""

from __future__ import annotations

import hashlib
import io
import subprocess
import tarfile
from pathlib import Path

RECIPES_DIR = Path(__file__).parent / "tool_images"
BUSYBOX = Path("/bin/busybox")
RECIPE_LABEL = "dtma.recipe"
TOOL_IMAGES = {
    "dtma-tool-echo:1.0": "echo",
    "dtma-tool-crashy:1.0": "crashy",
}


class ToolImageError(RuntimeError):
    """A tool image could not be built, saved or loaded."""


def _recipe_files(tool: str) -> list[Path]:
    recipe = RECIPES_DIR / tool
    return sorted(path for path in recipe.rglob("*") if path.is_file())


def recipe_hash(tool: str) -> str:
    """Hash of everything that decides the tool image's content."""
    digest = hashlib.sha256()
    for path in _recipe_files(tool):
        digest.update(str(path.relative_to(RECIPES_DIR)).encode())
        digest.update(path.read_bytes())
    digest.update(BUSYBOX.read_bytes())
    return digest.hexdigest()[:12]


def _busybox_applets() -> list[str]:
    listed = subprocess.run([str(BUSYBOX), "--list"], capture_output=True, text=True, check=True)
    return [applet for applet in listed.stdout.split() if applet != "busybox"]


def _build_context(tool: str) -> bytes:
    """A tar build context: the recipe, plus busybox/bin with one symlink per applet."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as context:
        for path in _recipe_files(tool):
            context.add(path, arcname=str(path.relative_to(RECIPES_DIR / tool)), recursive=False)
        context.add(BUSYBOX, arcname="busybox/bin/busybox")
        for directory in ("tmp", "www", "etc"):
            entry = tarfile.TarInfo(f"busybox/{directory}")
            entry.type = tarfile.DIRTYPE
            entry.mode = 0o1777 if directory == "tmp" else 0o755
            context.addfile(entry)
        for applet in _busybox_applets():
            link = tarfile.TarInfo(f"busybox/bin/{applet}")
            link.type = tarfile.SYMTYPE
            link.linkname = "busybox"
            context.addfile(link)
    return buffer.getvalue()


def _image_label(tag: str) -> str | None:
    inspected = subprocess.run(
        ["docker", "image", "inspect", "-f", f'{{{{index .Config.Labels "{RECIPE_LABEL}"}}}}', tag],
        capture_output=True,
        text=True,
    )
    return inspected.stdout.strip() if inspected.returncode == 0 else None


def image_id(tag: str, container: str | None = None) -> str | None:
    """The image's ID on the controller's engine, or inside a droplet container's engine."""
    prefix = ["docker", "exec", container] if container else []
    inspected = subprocess.run(
        [*prefix, "docker", "image", "inspect", "-f", "{{.Id}}", tag],
        capture_output=True,
        text=True,
    )
    return inspected.stdout.strip() if inspected.returncode == 0 else None


def ensure_tool_images() -> list[str]:
    """Build every sandbox tool image on the controller when missing or outdated."""
    if not BUSYBOX.is_file():
        raise ToolImageError(f"{BUSYBOX} is missing: install Debian's busybox-static package")
    for tag, tool in TOOL_IMAGES.items():
        wanted = recipe_hash(tool)
        if _image_label(tag) == wanted:
            continue
        built = subprocess.run(
            ["docker", "build", "--quiet", "--label", f"{RECIPE_LABEL}={wanted}", "-t", tag, "-"],
            input=_build_context(tool),
            capture_output=True,
        )
        if built.returncode != 0:
            raise ToolImageError(f"docker build of {tag} failed: {built.stderr.decode().strip()}")
    return list(TOOL_IMAGES)


def save_tool_image(tag: str, archive: Path) -> Path:
    """Write `docker save` of a tool image to `archive` (what the role's `load` source ships)."""
    saved = subprocess.run(["docker", "save", "-o", str(archive), tag], capture_output=True)
    if saved.returncode != 0:
        raise ToolImageError(f"docker save of {tag} failed: {saved.stderr.decode().strip()}")
    return archive


def load_tool_images(container: str) -> None:
    """Make every tool image present in the droplet container's engine (skip current ones)."""
    for tag in TOOL_IMAGES:
        wanted = image_id(tag)
        if wanted is None:
            raise ToolImageError(f"{tag} is not built on the controller: run ensure_tool_images()")
        if image_id(tag, container) == wanted:
            continue
        with subprocess.Popen(["docker", "save", tag], stdout=subprocess.PIPE) as save:
            load = subprocess.run(
                ["docker", "exec", "-i", container, "docker", "load", "--quiet"],
                stdin=save.stdout,
                capture_output=True,
                text=True,
            )
            assert save.stdout is not None
            save.stdout.close()
        if save.returncode != 0 or load.returncode != 0:
            raise ToolImageError(
                f"could not load {tag} into {container}: "
                f"save exit {save.returncode}, load: {load.stderr.strip() or load.stdout.strip()}"
            )
        if image_id(tag, container) != wanted:
            raise ToolImageError(f"{tag} is still missing in {container} after docker load")


if __name__ == "__main__":
    print("\n".join(ensure_tool_images()))
