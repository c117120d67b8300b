"""Build the offline wheelhouse of one DTMA agent release on the controller.

Droplets have no route to a package index, so the `dtma` role copies a directory holding
the agent's wheel and every dependency's wheel for the droplet's Python (Debian bookworm:
CPython 3.11, manylinux) and installs from it with `pip install --no-index`.

    python agent/build_wheelhouse.py [--source agent/] [--out .wheelhouse/]

prints the release's wheelhouse directory, `<out>/<version>/`: the wheels, and the same
wheels as one `wheelhouse.tar` for shipping. The directory appears only
when complete (built aside, then renamed), so "it exists" means "it is usable", and an
existing one is reused. Dependency versions are pinned to the repository's `uv.lock`, so
droplets run what the test suite ran. Only the standard library is needed: pip comes from
a private tool venv made with ensurepip.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import platform
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import tomllib
import venv
from collections.abc import Iterable
from pathlib import Path

AGENT_DIR = Path(__file__).resolve().parent
PACKAGE = "dtma-agent"
# The wheels again as one file: copying one archive to a droplet is far faster than many files.
ARCHIVE = "wheelhouse.tar"
VERSION_PATTERN = re.compile(r"""^__version__\s*=\s*["']([^"']+)["']""", re.MULTILINE)
# Oldest glibc first; bookworm's glibc 2.36 runs all of them.
MANYLINUX_TAGS = ("manylinux2014", "manylinux_2_17", "manylinux_2_28", "manylinux_2_34")


class WheelhouseError(RuntimeError):
    pass


def source_version(source: Path) -> str:
    init = source / "dtma_agent" / "__init__.py"
    match = VERSION_PATTERN.search(init.read_text())
    if match is None:
        raise WheelhouseError(f"no __version__ in {init}")
    return match.group(1)


def locked_pins(lock_file: Path, root: str = PACKAGE) -> list[str]:
    """`name==version` for every package the agent needs, transitively, from uv.lock."""
    packages: dict[str, list[dict[str, object]]] = {}
    for package in tomllib.loads(lock_file.read_text())["package"]:
        packages.setdefault(package["name"], []).append(package)
    if root not in packages:
        raise WheelhouseError(f"{lock_file} does not lock {root}")
    pins: set[str] = set()
    seen: set[str] = set()
    pending = [root]
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        for package in packages.get(name, []):
            if name != root:
                pins.add(f"{name}=={package['version']}")
            deps = package.get("dependencies", [])
            assert isinstance(deps, list)
            pending.extend(dep["name"] for dep in deps)
    return sorted(pins)


def lock_file(source: Path, explicit: Path | None) -> Path | None:
    """The uv.lock that pins the release: given, beside the source, or this repository's."""
    if explicit is not None:
        return explicit
    for candidate in (source.parent / "uv.lock", AGENT_DIR.parent / "uv.lock"):
        if candidate.is_file():
            return candidate
    return None


def pip_command(tools_dir: Path) -> list[str]:
    """pip from a private venv, so the caller's interpreter needs no pip of its own."""
    python = tools_dir / "bin" / "python"
    if not python.exists():
        # Made aside and renamed, so an interrupted build leaves no half venv behind; one
        # left by an older build is replaced (builds are serialized by the lock in main).
        staging = Path(tempfile.mkdtemp(prefix=".tools-", dir=tools_dir.parent))
        venv.EnvBuilder(with_pip=True, clear=True).create(staging)
        shutil.rmtree(tools_dir, ignore_errors=True)
        os.rename(staging, tools_dir)
    return [str(python), "-m", "pip", "--disable-pip-version-check", "--no-input"]


def run(command: list[str]) -> None:
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-15:])
        raise WheelhouseError(f"{' '.join(command[:5])} ... exited {done.returncode}:\n{tail}")


def platform_args(python_version: str, platforms: Iterable[str]) -> list[str]:
    args = ["--only-binary=:all:", "--implementation", "cp", "--python-version", python_version]
    args += ["--abi", "cp" + python_version.replace(".", "")]
    for tag in platforms:
        args += ["--platform", tag]
    return args


def build(
    source: Path,
    out: Path,
    lock_file: Path | None,
    python_version: str,
    platforms: list[str],
    force: bool = False,
) -> Path:
    version = source_version(source)
    target = out / version
    if target.is_dir() and not force:
        return target
    out.mkdir(parents=True, exist_ok=True)
    pip = pip_command(out / ".tools")
    staging = Path(tempfile.mkdtemp(prefix=f".{version}-", dir=out))
    try:
        run([*pip, "wheel", "--no-deps", "--wheel-dir", str(staging), str(source)])
        agent_wheels = list(staging.glob("dtma_agent-*.whl"))
        if len(agent_wheels) != 1:
            raise WheelhouseError(f"expected one agent wheel, built {agent_wheels}")
        download = [*pip, "download", "--dest", str(staging)]
        download += platform_args(python_version, platforms)
        if lock_file is not None:
            constraints = staging / "constraints.txt"
            constraints.write_text("\n".join(locked_pins(lock_file)) + "\n")
            download += ["--constraint", str(constraints)]
        run([*download, str(agent_wheels[0])])
        (staging / "constraints.txt").unlink(missing_ok=True)
        with tarfile.open(staging / ARCHIVE, "w") as archive:
            for wheel in sorted(staging.glob("*.whl")):
                archive.add(wheel, arcname=wheel.name)
        staging.chmod(0o755)
        if force and target.exists():
            shutil.rmtree(target)
        os.rename(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        if target.is_dir() and not force:
            return target  # a concurrent build finished first
        raise
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", type=Path, default=AGENT_DIR, help="the agent project")
    parser.add_argument("--out", type=Path, default=AGENT_DIR.parent / ".wheelhouse")
    parser.add_argument(
        "--lock", type=Path, help="pins (default: the source's ../uv.lock, else this repo's)"
    )
    parser.add_argument("--python-version", default="3.11", help="the droplets' Python")
    parser.add_argument("--arch", default=platform.machine(), help="the droplets' CPU")
    parser.add_argument("--force", action="store_true", help="rebuild an existing release")
    parser.add_argument("--print-version", action="store_true", help="print it and exit")
    args = parser.parse_args(argv)
    source = args.source.resolve()
    try:
        if args.print_version:
            print(source_version(source))
            return 0
        lock = lock_file(source, args.lock)
        platforms = [f"{tag}_{args.arch}" for tag in MANYLINUX_TAGS]
        out = args.out.resolve()
        out.mkdir(parents=True, exist_ok=True)
        # Several runs (one per toolbox) may ask for the same wheelhouse at once: one builds,
        # the others wait and then reuse it.
        with (out / ".lock").open("w") as lock_handle:
            fcntl.flock(lock_handle, fcntl.LOCK_EX)
            target = build(source, out, lock, args.python_version, platforms, args.force)
    except (WheelhouseError, OSError) as exc:
        print(f"build_wheelhouse: {exc}", file=sys.stderr)
        return 1
    print(target)
    return 0


if __name__ == "__main__":
    sys.exit(main())
