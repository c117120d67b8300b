"""Everything a request needs that lives as long as the app: settings, the database, the
agent client and the run manager. Built once by create_app and kept on app.state."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from api.db import make_engine, make_session_factory
from api.services.credentials import CredentialSource, OperatorKeySource
from api.services.limits import FollowSlots, ProbePool
from api.settings import Settings

if TYPE_CHECKING:
    from api.services.agent import AgentClient
    from api.services.runs import RunManager


@dataclass
class Context:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    credentials: CredentialSource
    # Set during the app's lifespan (they need the running event loop).
    _agent: AgentClient | None = field(default=None, repr=False)
    _runs: RunManager | None = field(default=None, repr=False)
    # Bounds on load (api/services/limits.py): followed log streams, SSH-probe threads.
    follows: FollowSlots = field(default_factory=FollowSlots, repr=False)
    probes: ProbePool = field(default_factory=ProbePool, repr=False)

    @classmethod
    def build(cls, settings: Settings) -> Context:
        engine = make_engine(settings)
        return cls(
            settings=settings,
            engine=engine,
            sessions=make_session_factory(engine),
            credentials=OperatorKeySource(settings),
        )

    @property
    def agent(self) -> AgentClient:
        if self._agent is None:
            raise RuntimeError("the agent client exists only while the app runs")
        return self._agent

    @property
    def runs(self) -> RunManager:
        if self._runs is None:
            raise RuntimeError("the run manager exists only while the app runs")
        return self._runs
