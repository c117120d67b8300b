"""A throwaway PostgreSQL cluster for the test session: Debian's `postgresql` package,
initdb in a temp dir as the postgres user, listening on a loopback port only, stopped by
its PID at the end."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

PG_BIN_ROOT = Path("/usr/lib/postgresql")


def _pg_bin() -> Path:
    if not PG_BIN_ROOT.exists():
        subprocess.run(
            ["apt-get", "install", "-y", "-q", "postgresql"],
            check=True,
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
            capture_output=True,
        )
    versions = sorted(PG_BIN_ROOT.iterdir(), key=lambda p: int(p.name))
    return versions[-1] / "bin"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _as_postgres(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["runuser", "-u", "postgres", "--", *command], check=True, capture_output=True, text=True
    )


@contextmanager
def postgres_cluster(port: int | None = None) -> Iterator[str]:
    """Yields a server URL without a database name: postgresql://postgres@127.0.0.1:PORT
    (on `port`, or a free one)."""
    bin_dir = _pg_bin()
    root = Path(tempfile.mkdtemp(prefix="dtma-pg-"))
    shutil.chown(root, "postgres", "postgres")
    data = root / "data"
    port = port or _free_port()
    _as_postgres(
        str(bin_dir / "initdb"),
        "-D",
        str(data),
        "-A",
        "trust",
        "-U",
        "postgres",
        "--no-sync",
        "-E",
        "UTF8",
    )
    options = f"-c listen_addresses=127.0.0.1 -p {port} -k {root} -c fsync=off"
    _as_postgres(
        str(bin_dir / "pg_ctl"),
        "-D",
        str(data),
        "-o",
        options,
        "-l",
        str(root / "server.log"),
        "-w",
        "start",
    )
    pid = int((data / "postmaster.pid").read_text().split()[0])
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}"
    finally:
        os.kill(pid, signal.SIGINT)  # "fast" shutdown
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
        shutil.rmtree(root, ignore_errors=True)


def create_database(server_url: str, name: str, template: str | None = None) -> str:
    import psycopg

    clause = f' TEMPLATE "{template}"' if template else ""
    with psycopg.connect(f"{server_url}/postgres", autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"{clause}')
    return f"{server_url}/{name}"
