"""Engine and sessions. SQLite (default) and PostgreSQL behave the same from the outside.

An on-disk SQLite database lives in the data directory (the database file's directory):
the service creates it 0700 and keeps the database files (the database, its -wal and -shm)
0600, whatever the umask: they hold the sealed secrets and every run's history.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.orm import Session, sessionmaker

from api.settings import Settings

log = logging.getLogger("api.db")

SQLITE_SUFFIXES = ("", "-wal", "-shm", "-journal")
SQLITE_POOL_SIZE = 40


def data_directory(settings: Settings) -> Path | None:
    """The directory of the on-disk SQLite database; None for PostgreSQL or in memory."""
    path = settings.sqlite_path
    return path.parent if path is not None else None


def _make_private_dirs(directory: Path) -> None:
    """`directory` and its missing parents, each created 0700; an existing one is left as
    it is (it may be shared, e.g. /tmp), with a warning when others can enter it."""
    missing = [d for d in (directory, *directory.parents) if not d.exists()]
    for path in reversed(missing):
        path.mkdir(mode=0o700, exist_ok=True)
        path.chmod(0o700)
    if not missing and directory.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning(
            "data_directory_open",
            extra={"path": str(directory), "advice": f"run `chmod 700 {directory}`"},
        )


def _make_private_database(path: Path) -> None:
    """The database file created 0600 before SQLite opens it (its -wal and -shm take the
    database's mode), and files an older console left readable made 0600."""
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
    for suffix in SQLITE_SUFFIXES:
        file = path.with_name(path.name + suffix)
        if file.exists() and stat.S_IMODE(file.stat().st_mode) != 0o600:
            file.chmod(0o600)


def make_engine(settings: Settings) -> Engine:
    url = settings.database_url
    if url.startswith("sqlite"):
        path = settings.sqlite_path
        if path is not None:
            _make_private_dirs(path.parent)
            _make_private_database(path)
        # As many pooled connections as request threads (anyio's default 40): a connection
        # past the pool is closed on return and the next one pays its connect and pragmas.
        pool = {"pool_size": SQLITE_POOL_SIZE, "max_overflow": 10} if path is not None else {}
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 30}, **pool
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    # WAL lets the SSE readers and the run writer work at the same time; foreign keys are
    # off by default in SQLite.
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session that commits on success and rolls back on any error."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def database_reachable(engine: Engine) -> bool:
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception:
        return False
    return True
