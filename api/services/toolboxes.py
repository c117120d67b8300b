"""Toolboxes in the database: imported from the DigitalOcean API, listed per owner; the
agent token each one shares with its droplet.

The droplet is the source of truth for its agent's token (/etc/dtma/dtma.env): operators'
playbooks keep it, and the console learns it over its pinned SSH channel
(playbooks/dtma_token_read.yml) whenever the agent refuses the token it holds.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

import runner
from api.context import Context
from api.errors import InvalidInput
from api.models import Toolbox, User, utcnow
from api.secret_box import SecretBox
from api.services import audit
from api.services.agent import AgentError
from api.services.digitalocean import DropletInfo, list_tagged_droplets

log = logging.getLogger("api.toolboxes")

TOKEN_PLAYBOOK = "dtma_token_read.yml"
TOKEN_OUTPUT = "dtma_agent_token"
# A refused token is looked up on the droplet at most this often per toolbox.
RELEARN_INTERVAL_SECONDS = 15.0
TOKEN_READ_TIMEOUT = 120

# A droplet tagged `dtma-owner:<user id>` belongs to that user when it is imported. Ids,
# not names: a name is chosen by whoever signs up (a JWT's e-mail), an id never is.
OWNER_TAG_PREFIX = "dtma-owner:"


@dataclass
class ImportReport:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"{len(self.created)} created, {len(self.updated)} updated, {len(self.removed)} removed"
        )


def new_agent_token() -> str:
    """The token a new toolbox starts with: what the console's own first install configures
    when the droplet has none yet (an installed agent keeps its own, learnt on first 401)."""
    return secrets.token_urlsafe(32)


def _owner_from_tags(session: Session, tags: tuple[str, ...]) -> User | None:
    for tag in tags:
        if tag.startswith(OWNER_TAG_PREFIX):
            user_id = tag.removeprefix(OWNER_TAG_PREFIX)
            return session.get(User, user_id) if 0 < len(user_id) <= 64 else None
    return None


def import_tagged(user: User, context: Context, session: Session) -> ImportReport:
    """Import the droplets tagged DTMA_DO_TAG from the DigitalOcean API (audited)."""
    with audit.audited(session, user=user, action="toolboxes.sync") as entry:
        report = import_droplets(session, context.secrets, list_tagged_droplets(context.settings))
        entry.detail = report.summary()
    session.commit()
    refresh_run_inventory(context)
    return report


def import_droplets(
    session: Session, secrets: SecretBox, droplets: list[DropletInfo]
) -> ImportReport:
    """Upsert every listed droplet; toolboxes whose droplet vanished are marked removed.

    The caller commits. A new toolbox gets its own agent token, sealed at rest.
    """
    report = ImportReport()
    existing = {t.droplet_id: t for t in session.scalars(select(Toolbox))}
    listed = set()
    now = utcnow()
    for droplet in droplets:
        listed.add(droplet.id)
        toolbox = existing.get(droplet.id)
        if toolbox is None:
            toolbox = Toolbox(droplet_id=droplet.id)
            secrets.seal_into(toolbox, Toolbox.agent_token_ciphertext, new_agent_token())
            session.add(toolbox)
            report.created.append(droplet.name)
        else:
            report.updated.append(droplet.name)
        toolbox.name = droplet.name
        toolbox.address = droplet.public_ipv4
        toolbox.region = droplet.region
        toolbox.droplet_status = droplet.status
        toolbox.tags = list(droplet.tags)
        toolbox.removed_at = None
        owner = _owner_from_tags(session, droplet.tags)
        if owner is not None:
            toolbox.owner_id = owner.id
    for droplet_id, toolbox in existing.items():
        if droplet_id not in listed and toolbox.removed_at is None:
            toolbox.removed_at = now
            toolbox.droplet_status = "removed"
            report.removed.append(toolbox.name)
    session.flush()
    return report


def list_toolboxes(session: Session, user: User, *, include_removed: bool) -> list[Toolbox]:
    query = select(Toolbox).order_by(Toolbox.name, Toolbox.droplet_id)
    if not user.is_admin:
        query = query.where(Toolbox.owner_id == user.id)
    if not include_removed:
        query = query.where(Toolbox.removed_at.is_(None))
    return list(session.scalars(query))


def assign_owner(session: Session, toolbox: Toolbox, owner_name: str | None) -> None:
    if owner_name is None:
        toolbox.owner_id = None
        return
    owner = session.scalar(select(User).where(User.name == owner_name))
    if owner is None:
        raise InvalidInput("owner", f"no user named '{owner_name}'")
    toolbox.owner_id = owner.id


# -- the agent token, learnt from the droplet ----------------------------------------------
def run_env(context: Context) -> dict[str, str]:
    """The environment a run's inventory needs (DigitalOcean tag and token)."""
    settings = context.settings
    env = {"DTMA_DO_TAG": settings.do_tag}
    if settings.do_api_token is not None:
        env["DO_API_TOKEN"] = settings.do_api_token.get_secret_value()
    return env


def refresh_run_inventory(context: Context) -> None:
    """After a droplet sync, the runs' cached DigitalOcean inventory follows it (blocking: one
    `ansible-inventory` call; a no-op unless DTMA_INVENTORY_CACHE_DIR is set). A failure is
    kept by the cache, and the runs say it."""
    runner.refresh_inventory(context.settings.inventory, run_env(context))


def learn_agent_token(context: Context, toolbox_id: str) -> str | None:
    """Read the droplet's agent token (blocking: one short playbook run) and seal it as the
    toolbox's token. None when it could not be read (not installed, unreachable); why is
    logged and audited, never the token."""
    with context.sessions() as session:
        toolbox = session.get(Toolbox, toolbox_id)
        if toolbox is None or toolbox.removed_at is not None or not toolbox.address:
            return None
        name, credentials = toolbox.name, context.credentials.for_toolbox(toolbox)
    result = runner.run_playbook(
        runner.RunRequest(
            playbook=TOKEN_PLAYBOOK,
            hosts=[name],
            inventory=context.settings.inventory,
            ssh_private_key=credentials.private_key,
            known_hosts=credentials.known_hosts,
            timeout=min(context.settings.run_timeout, TOKEN_READ_TIMEOUT),
            action="dtma.token_read",
            toolbox_id=toolbox_id,
            env=run_env(context),
            secret_outputs=[TOKEN_OUTPUT],
        )
    )
    published: Any = result.secret_output(TOKEN_OUTPUT)
    token = published.get(name) if isinstance(published, dict) else None
    learnt = result.success and isinstance(token, str) and len(token) >= 16
    with context.sessions.begin() as session:
        toolbox = session.get(Toolbox, toolbox_id)
        if toolbox is None:
            return None
        secrets = context.secrets
        changed = learnt and secrets.unseal_from(toolbox, Toolbox.agent_token_ciphertext) != token
        if changed:
            secrets.seal_into(toolbox, Toolbox.agent_token_ciphertext, str(token))
        if learnt:
            detail = "learnt the agent token from the droplet" if changed else "token unchanged"
        else:
            detail = f"could not read the agent token from the droplet: {result.error}"
        audit.record(
            session,
            user=None,
            action="dtma.token_read",
            outcome="successful" if learnt else "failed",
            toolbox_id=toolbox_id,
            detail=detail,
        )
    log.info("agent_token_read", extra={"toolbox": name, "learnt": learnt})
    return str(token) if learnt else None


@dataclass
class _Learning:
    attempted: dict[str, float] = field(default_factory=dict)
    pending: dict[str, asyncio.Future[str | None]] = field(default_factory=dict)


_LEARNING = _Learning()


async def relearn_agent_token(
    context: Context, toolbox_id: str, *, force: bool = False
) -> str | None:
    """After the agent refused the console's token (401/403): learn the droplet's token.
    One read per toolbox at a time (concurrent callers share it), and at most one per
    RELEARN_INTERVAL_SECONDS unless `force` (a run that just changed the agent)."""
    future = _LEARNING.pending.get(toolbox_id)
    if future is None:
        now = time.monotonic()
        last = _LEARNING.attempted.get(toolbox_id)
        if not force and last is not None and now - last < RELEARN_INTERVAL_SECONDS:
            return None
        _LEARNING.attempted[toolbox_id] = now
        future = asyncio.ensure_future(run_in_threadpool(learn_agent_token, context, toolbox_id))
        _LEARNING.pending[toolbox_id] = future
        future.add_done_callback(lambda _: _LEARNING.pending.pop(toolbox_id, None))
    try:
        return await asyncio.shield(future)
    except Exception:  # a read must still answer (with the 401) whatever went wrong here
        log.exception("agent_token_read_failed", extra={"toolbox_id": toolbox_id})
        return None


# -- the console's own check of an agent after a run that changed it ------------------------
def _agent_reach(context: Context, toolbox_id: str) -> tuple[str, str | None, str]:
    with context.sessions() as session:
        toolbox = session.get(Toolbox, toolbox_id)
        if toolbox is None:
            return "", None, ""
        token = context.secrets.unseal_from(toolbox, Toolbox.agent_token_ciphertext)
        return toolbox.name, toolbox.address, token


async def read_agent(
    context: Context, toolbox_id: str, address: str, token: str, path: str
) -> dict[str, Any]:
    """One authenticated agent read; when the agent refuses the token, the droplet's token
    is learnt (forced: the caller knows the agent just changed) and the read made again."""
    try:
        return await context.agent.get_json(address, token, path)
    except AgentError as error:
        if error.status not in (401, 403):
            raise
        learnt = await relearn_agent_token(context, toolbox_id, force=True)
        if learnt is None:
            raise AgentError(
                f"{error.reason}; the droplet's token could not be read over SSH",
                status=error.status,
                code=error.code,
            ) from error
    return await context.agent.get_json(address, learnt, path)


async def confirm_agent(
    context: Context, toolbox_id: str, result: runner.ConsoleResult
) -> runner.ConsoleResult:
    """A dtma run verified the agent on the droplet itself; the console then reads it from
    its own side, at the address and port (and with the token) its reads use. The run
    succeeds only if that read answers with the version the role published."""
    if not result.success:
        return result
    name, address, token = await run_in_threadpool(_agent_reach, context, toolbox_id)
    url = context.agent.url(address or "<no address>", "/status")
    published = (result.data.get("per_host") or {}).get(name, {}).get("dtma_result") or {}
    expected = published.get("version_after")
    reason: str | None = None
    answer: dict[str, Any] = {}
    if address is None:
        reason = "the droplet has no public IPv4 address"
    else:
        try:
            answer = await read_agent(context, toolbox_id, address, token, "/status")
        except AgentError as refused:
            reason = refused.reason
    if reason is None and expected is not None and answer.get("version") != expected:
        reason = f"it answered version {answer.get('version')}, not {expected}"
    check = {"url": url, "ok": reason is None, "version": answer.get("version"), "error": reason}
    data = {**result.data, "console_check": check}
    if reason is None:
        return result.model_copy(update={"data": data})
    error = f"the DTMA agent on {name} did not verify from the console ({url}): {reason}"
    return result.model_copy(
        update={
            "status": "failed",
            "success": False,
            "error": error,
            "error_code": "verify_failed",
            "message": f"{result.action} failed on {name}: {error}",
            "data": data,
        }
    )
