"""The offline wheelhouse: pinned to uv.lock, complete for CPython 3.11, installable offline."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import tarfile
import tomllib
import venv
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from dtma_agent import __version__

from sandbox.config import PROJECT_ROOT

AGENT_DIR = PROJECT_ROOT / "agent"
BUILDER = AGENT_DIR / "build_wheelhouse.py"


def load_builder() -> ModuleType:
    spec = importlib.util.spec_from_file_location("build_wheelhouse", BUILDER)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


builder = load_builder()


@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    out = tmp_path_factory.mktemp("wheelhouse")
    done = subprocess.run(
        [sys.executable, str(BUILDER), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    yield Path(done.stdout.strip())


def locked_versions() -> dict[str, str]:
    lock = tomllib.loads((PROJECT_ROOT / "uv.lock").read_text())
    return {p["name"]: p["version"] for p in lock["package"] if "version" in p}


def test_pins_are_the_agents_locked_closure_only() -> None:
    pins = dict(pin.split("==") for pin in builder.locked_pins(PROJECT_ROOT / "uv.lock"))
    locked = locked_versions()
    for name in ["h11", "psutil"]:
        assert pins[name] == locked[name]
    # Agent 1.3.0 dropped the web framework and the Docker SDK (idle RSS, issue 16).
    for gone in ["fastapi", "uvicorn", "docker", "pydantic", "pydantic-core", "requests"]:
        assert gone not in pins
    assert "ansible" not in pins
    assert "sqlalchemy" not in pins
    assert "dtma-agent" not in pins


def test_wheelhouse_holds_the_agent_and_binary_wheels_for_cpython_311(wheelhouse: Path) -> None:
    assert wheelhouse.name == __version__
    wheels = sorted(p.name for p in wheelhouse.glob("*.whl"))
    assert f"dtma_agent-{__version__}-py3-none-any.whl" in wheels
    locked = locked_versions()
    binary = [w for w in wheels if w.startswith(f"psutil-{locked['psutil']}-")]
    assert binary and "manylinux" in binary[0] and "x86_64" in binary[0]
    assert f"h11-{locked['h11']}-py3-none-any.whl" in wheels
    assert len(wheels) == 3  # the agent, h11, psutil: nothing else
    with tarfile.open(wheelhouse / builder.ARCHIVE) as archive:
        assert sorted(archive.getnames()) == wheels


def test_an_existing_wheelhouse_is_reused(wheelhouse: Path) -> None:
    before = (wheelhouse / builder.ARCHIVE).stat().st_mtime_ns
    done = subprocess.run(
        [sys.executable, str(BUILDER), "--out", str(wheelhouse.parent)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0
    assert Path(done.stdout.strip()) == wheelhouse
    assert (wheelhouse / builder.ARCHIVE).stat().st_mtime_ns == before


def test_the_wheelhouse_installs_without_an_index(wheelhouse: Path, tmp_path: Path) -> None:
    target = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(target)
    install = subprocess.run(
        [
            str(target / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "--no-index",
            "--isolated",
            "--find-links",
            str(wheelhouse),
            f"dtma-agent=={__version__}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert install.returncode == 0, install.stderr
    version = subprocess.run(
        [str(target / "bin" / "dtma-agent"), "--version"], capture_output=True, text=True
    )
    assert version.stdout.strip() == __version__


def test_print_version_reads_the_source(tmp_path: Path) -> None:
    source = tmp_path / "agent"
    (source / "dtma_agent").mkdir(parents=True)
    (source / "dtma_agent" / "__init__.py").write_text('__version__ = "7.7.7"\n')
    done = subprocess.run(
        [sys.executable, str(BUILDER), "--source", str(source), "--print-version"],
        capture_output=True,
        text=True,
    )
    assert done.stdout.strip() == "7.7.7"


def test_a_source_without_a_version_is_refused(tmp_path: Path) -> None:
    (tmp_path / "dtma_agent").mkdir()
    (tmp_path / "dtma_agent" / "__init__.py").write_text("")
    done = subprocess.run(
        [sys.executable, str(BUILDER), "--source", str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 1
    assert "no __version__" in done.stderr
