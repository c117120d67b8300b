"""Look at toolboxes: every agent read concurrently, the SSH probe for those that do not answer.

One look gives an `Observation`: the agent's /status, /system and managed /containers
answers (or the SSH probe's answers in the same shapes), where they came from, and why
nothing better was available. A toolbox that fails is an observation with its reasons,
never an exception that stops the others.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from api.models import utcnow
from api.services.agent import PIN_CHANGED_CODE, AgentClient, AgentError, AgentPin, AgentTarget
from api.services.probe import ProbeError, SshTarget, read_all
from api.services.toolboxes import AgentAccess, needs_relearning

log = logging.getLogger("api.monitoring.observe")

Source = Literal["agent", "ssh", "none"]


@dataclass(frozen=True)
class Target:
    """What is needed to look at one toolbox. `ssh` builds the SSH target only when the
    fallback needs it (it reads key material)."""

    toolbox_id: str
    name: str
    address: str | None
    agent_token: str
    agent_pin: AgentPin | None
    ssh: Callable[[], SshTarget]


@dataclass(frozen=True)
class Observation:
    toolbox_id: str
    name: str
    observed_at: datetime
    source: Source
    status: dict[str, Any] | None
    system: dict[str, Any] | None
    containers: list[dict[str, Any]] | None
    agent_error: str | None
    ssh_error: str | None
    duration_ms: int
    # The agent answered, but refused the console's token for this toolbox (401/403), or the
    # port presented a certificate other than the pinned one.
    agent_refused: bool = False

    @classmethod
    def failed(cls, target: Target, reason: str) -> Observation:
        """A look that could not be made at all (the reason says why)."""
        return cls(
            toolbox_id=target.toolbox_id, name=target.name, observed_at=utcnow(),
            source="none", status=None, system=None, containers=None, agent_error=reason,
            ssh_error=None, duration_ms=0,
        )  # fmt: skip

    @property
    def reachable(self) -> bool:
        return self.source != "none"

    @property
    def agent_up(self) -> bool:
        return self.source == "agent"

    @property
    def error(self) -> str | None:
        """Why the agent's own answer is missing, as one sentence (None when it answered)."""
        if self.agent_up:
            return None
        parts = [f"agent: {self.agent_error}"]
        if self.ssh_error:
            parts.append(f"ssh: {self.ssh_error}")
        return "; ".join(parts)


class Observer:
    """Reads many toolboxes at once: at most `concurrency` agents and `ssh_concurrency`
    SSH probes in flight, each bounded by its timeout."""

    def __init__(
        self,
        agent: AgentClient,
        *,
        concurrency: int,
        ssh_concurrency: int,
        ssh_timeout: float,
        relearn: Callable[[Target], Awaitable[AgentAccess | None]] | None = None,
    ) -> None:
        self._agent = agent
        # Learns a toolbox's agent token and certificate from its droplet (over SSH) when a
        # read needs them (toolboxes.needs_relearning).
        self._relearn = relearn
        self._agent_slots = asyncio.Semaphore(concurrency)
        self._ssh_slots = asyncio.Semaphore(ssh_concurrency)
        self._ssh_timeout = ssh_timeout
        self._ssh_pool = ThreadPoolExecutor(ssh_concurrency, thread_name_prefix="dtma-ssh-probe")

    def close(self) -> None:
        self._ssh_pool.shutdown(wait=False, cancel_futures=True)

    async def observe_all(self, targets: Sequence[Target]) -> list[Observation]:
        return list(await asyncio.gather(*(self.observe(target) for target in targets)))

    async def observe(self, target: Target) -> Observation:
        started = time.perf_counter()
        observed_at = utcnow()

        def observation(
            source: Source,
            answers: _Answers,
            agent_error: str | None,
            ssh_error: str | None = None,
            refused: bool = False,
        ) -> Observation:
            return Observation(
                toolbox_id=target.toolbox_id,
                name=target.name,
                observed_at=observed_at,
                source=source,
                status=answers[0],
                system=answers[1],
                containers=answers[2],
                agent_error=agent_error,
                ssh_error=ssh_error,
                duration_ms=round((time.perf_counter() - started) * 1000),
                agent_refused=refused,
            )

        if not target.address:
            return observation("none", _NOTHING, "the droplet has no public IPv4 address")
        try:
            answers = await self._agent_answers(target, target.address)
            return observation("agent", answers, None)
        except AgentError as error:
            agent_error = error.reason
            refused = error.status in (401, 403) or error.code == PIN_CHANGED_CODE
        except Exception as error:  # a bug must cost one toolbox its look, not the sync
            log.exception("agent_read_failed", extra={"toolbox": target.name})
            agent_error, refused = f"unexpected {type(error).__name__}: {error}", False
        try:
            async with self._ssh_slots:
                answers = await self._read_ssh(target)
        except ProbeError as error:
            return observation("none", _NOTHING, agent_error, str(error), refused)
        except Exception as error:
            log.exception("ssh_probe_failed", extra={"toolbox": target.name})
            reason = f"unexpected {type(error).__name__}: {error}"
            return observation("none", _NOTHING, agent_error, reason, refused)
        return observation("ssh", answers, agent_error, None, refused)

    async def _agent_answers(self, target: Target, address: str) -> _Answers:
        """The agent's answers; when the read needs the droplet's token or certificate (an
        operator may have reinstalled the agent), they are learnt and the read made again."""
        where = AgentTarget(target.name, address, target.agent_pin)
        try:
            async with self._agent_slots:
                return await self._read_agent(where, target.agent_token)
        except AgentError as error:
            if not needs_relearning(error) or self._relearn is None:
                raise
            learnt = await self._relearn(target)
            if learnt is None or (error.code == PIN_CHANGED_CODE and learnt.pin == where.pin):
                raise
        async with self._agent_slots:
            return await self._read_agent(
                AgentTarget(target.name, address, learnt.pin), learnt.token
            )

    async def _read_agent(self, where: AgentTarget, token: str) -> _Answers:
        status, system, listed = await self._agent.read_many(where, token, _AGENT_PATHS)
        return status, system, _container_list(listed)

    async def _read_ssh(self, target: Target) -> _Answers:
        loop = asyncio.get_running_loop()
        timeout = self._ssh_timeout
        try:
            return await asyncio.wait_for(
                loop.run_in_executor(self._ssh_pool, _probe, target.ssh, timeout),
                # One connection, several facts each bounded by the probe's timeout: the
                # whole probe gets twice that before the toolbox counts as unreachable.
                timeout=2 * timeout + 1,
            )
        except TimeoutError:
            raise ProbeError(f"SSH probe of {target.name} took longer than its timeout") from None


# Read in this order over one connection. `stats=true` adds each running tool instance's
# CPU and memory (agents before 1.1 ignore it: their tools then have no history).
_AGENT_PATHS = ("/status", "/system", "/containers?managed=true&stats=true")
_Answers = tuple[dict[str, Any] | None, dict[str, Any] | None, list[dict[str, Any]] | None]
_NOTHING: _Answers = (None, None, None)


def _container_list(listed: dict[str, Any]) -> list[dict[str, Any]]:
    containers = listed.get("containers")
    if not isinstance(containers, list):
        raise AgentError("agent answered /containers without a container list")
    return containers


def _probe(ssh: Callable[[], SshTarget], timeout: float) -> _Answers:
    """In a worker thread: finding the credentials may read files or the database."""
    status, system, listed = read_all(ssh(), timeout)
    containers = listed.get("containers")
    if not isinstance(containers, list):
        raise ProbeError("the SSH probe gave no container list")
    return status, system, containers
