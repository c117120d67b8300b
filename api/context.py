"""Everything a request needs that lives as long as the app: settings, the database, the
credential source, the keyring it seals secrets with (opened by open_vault, dropped by
close), and the long-lived parts it starts and stops (agent client, run manager, and for
the served console the monitor with its periodic cycle). Built once by create_app and kept
on app.state; commands and workers use it the same way. Nothing of it is process-wide: two
Contexts in one process (two consoles in a test, each with its own master key) share
nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from api.db import make_engine, make_session_factory
from api.secret_box import SecretBox
from api.services.credentials import CredentialSource, OperatorKeySource
from api.services.limits import FollowSlots, ProbePool, SharedReads
from api.settings import Settings

if TYPE_CHECKING:
    from api.monitoring.scheduler import Scheduler
    from api.monitoring.service import Monitor
    from api.services.agent import AgentClient
    from api.services.provisioning import Provisioner
    from api.services.runs import RunManager
    from api.vault.master import LoadedKeyring


@dataclass
class Context:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    credentials: CredentialSource
    # The master keys, verified against this database by open_vault(), dropped by close().
    _secrets: SecretBox | None = field(default=None, repr=False)
    # Made by start() (they need the running event loop), ended by stop().
    _agent: AgentClient | None = field(default=None, repr=False)
    _runs: RunManager | None = field(default=None, repr=False)
    _provisioner: Provisioner | None = field(default=None, repr=False)
    _monitor: Monitor | None = field(default=None, repr=False)
    _scheduler: Scheduler | None = field(default=None, repr=False)
    # Bounds on load (api/services/limits.py): followed log streams, SSH-probe threads.
    follows: FollowSlots = field(default_factory=FollowSlots, repr=False)
    probes: ProbePool = field(default_factory=ProbePool, repr=False)
    # Concurrent on-demand reads of one toolbox share one live read (api/services/observe.py).
    shared_reads: SharedReads = field(default_factory=SharedReads, repr=False)

    @classmethod
    def build(cls, settings: Settings) -> Context:
        engine = make_engine(settings)
        return cls(
            settings=settings,
            engine=engine,
            sessions=make_session_factory(engine),
            credentials=OperatorKeySource(settings),
        )

    def open_vault(self) -> LoadedKeyring:
        """Load the configured master keys, make sure they open this database's secrets
        (sealing legacy ones), and seal and unseal with them from now on; runs then reach
        toolboxes with their own SSH keys (the vault as the credential source).
        MasterKeyError, saying what is wrong, otherwise (nothing changes then)."""
        from api.vault.credentials import VaultCredentialSource
        from api.vault.startup import verified_keyring

        loaded = verified_keyring(self.settings, self.sessions)
        self._secrets = SecretBox(loaded.keyring)
        self.credentials = VaultCredentialSource(self.settings, self.sessions, self._secrets)
        return loaded

    def close(self) -> None:
        """The end of the context (after stop()): forget the keys, close the database's
        connections."""
        self._secrets = None
        self.engine.dispose()

    async def start(self, *, runs: bool = True, monitor: bool = False) -> None:
        """Create and start the long-lived parts: the agent client; unless `runs` is False
        (a worker executes runs but manages none), the run manager of the configured
        executor (which recovers this host's dead processes' runs and starts its heartbeat
        and reaper); with `monitor` (the served console), the monitor, hooked after every
        run, and its periodic cycle (led by one console process at a time)."""
        from api.services.agent import AgentClient
        from api.services.runs import LocalRunManager

        self._agent = AgentClient(
            port=self.settings.agent_port, timeout=self.settings.agent_timeout
        )
        if not runs:
            return
        manager: RunManager
        if self.settings.executor == "celery":
            from api.executors.remote import CeleryRunManager

            manager = CeleryRunManager(self)
        else:
            manager = LocalRunManager(self)
        await manager.open()
        self._runs = manager
        from api.services.provisioning import Provisioner

        self._provisioner = Provisioner(self)
        await self._provisioner.open()
        if monitor:
            await self._start_monitor()

    async def _start_monitor(self) -> None:
        from api.monitoring.leader import Leadership
        from api.monitoring.scheduler import Scheduler
        from api.monitoring.service import Monitor

        self._monitor = await Monitor(self).__aenter__()
        settings = self.settings
        self._scheduler = Scheduler(
            self._monitor,
            settings.monitor_interval,
            settings.monitor_jitter,
            Leadership(self.engine),
        )
        self._scheduler.start()

    async def stop(self) -> None:
        """Stop in reverse order: the monitor, runs (bounded wait for their results), then
        the agent client."""
        if self._scheduler is not None:
            await self._scheduler.stop()
            self._scheduler = None
        if self._monitor is not None:
            await self._monitor.aclose()
            self._monitor = None
        if self._provisioner is not None:
            await self._provisioner.close()
            self._provisioner = None
        if self._runs is not None:
            await self._runs.close()
            self._runs = None
        if self._agent is not None:
            await self._agent.aclose()
            self._agent = None

    @asynccontextmanager
    async def running(self, *, monitor: bool = False) -> AsyncIterator[Context]:
        await self.start(monitor=monitor)
        try:
            yield self
        finally:
            await self.stop()

    @property
    def secrets(self) -> SecretBox:
        """Seals and unseals with this context's master keys."""
        if self._secrets is None:
            raise RuntimeError("secrets can be sealed only once the vault is open (open_vault)")
        return self._secrets

    @property
    def agent(self) -> AgentClient:
        if self._agent is None:
            raise RuntimeError("the agent client exists only while the app runs")
        return self._agent

    @property
    def monitor(self) -> Monitor:
        if self._monitor is None:
            raise RuntimeError("the monitor exists only while the console is served")
        return self._monitor

    @property
    def provisioner(self) -> Provisioner:
        """Provisioning and retirement runs (api/services/provisioning.py)."""
        if self._provisioner is None:
            raise RuntimeError("the provisioner exists only while the app runs")
        return self._provisioner

    @property
    def runs(self) -> RunManager:
        if self._runs is None:
            raise RuntimeError("the run manager exists only while the app runs")
        return self._runs
