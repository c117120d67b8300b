"""One monitor among several console processes: the periodic cycle (status sync, checks,
alerts, recovery) runs only in the process holding a PostgreSQL session advisory lock.
The lock lives as long as the leader's database connection, so when the leader dies the
lock goes with it and another console takes it at its next try (within one interval).
On SQLite (one console per database) every process leads, as before."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError

log = logging.getLogger("api.monitoring.leader")

MONITOR_LOCK_KEY = 0x64746D61_0002


class Leadership:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._connection: Connection | None = None

    @property
    def applies(self) -> bool:
        return self._engine.dialect.name == "postgresql"

    def holds(self) -> bool:
        """Keep or take the lock; True when this process leads (always on SQLite)."""
        if not self.applies:
            return True
        if self._connection is not None:
            try:
                self._connection.execute(text("SELECT 1"))
                self._connection.commit()
                return True
            except DBAPIError:  # the connection (and with it the lock) is gone
                self._drop()
        connection = self._engine.connect()
        try:
            got = connection.execute(
                text("SELECT pg_try_advisory_lock(:key)"), {"key": MONITOR_LOCK_KEY}
            ).scalar()
            connection.commit()
        except DBAPIError:
            connection.close()
            return False
        if not got:
            connection.close()
            return False
        self._connection = connection
        log.info("monitor_leader_elected")
        return True

    async def aholds(self) -> bool:
        return await asyncio.to_thread(self.holds)

    def _drop(self) -> None:
        """Forget the leader's connection without returning it to the pool."""
        if self._connection is not None:
            with contextlib.suppress(DBAPIError):
                self._connection.invalidate()
                self._connection.close()
            self._connection = None

    def release(self) -> None:
        """Give the lock up (closing its connection ends the advisory lock)."""
        if self._connection is not None:
            self._drop()  # the lock ends with its session
