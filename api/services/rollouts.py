"""Rollouts: one action over many toolboxes as ONE run of the action's playbook in batches
(`serial`, `max_fail_percentage`; DESIGN.md "Rollouts"). The one module that writes
rollouts; the run itself is stored and executed by the run manager like any run, and each
host's state is read from that run's events (runner/rollout.py).

A non-admin's target only ever covers the toolboxes they own: a tag or region that also
covers someone else's toolbox touches only theirs, and an id of someone else's toolbox is
"not found" (as everywhere else).
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any, Literal

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from api.context import Context
from api.errors import Conflict, InvalidInput, NotFound
from api.models import Rollout, Run, Toolbox, User, new_id, utcnow
from api.schemas.actions import DeployTool, RedeployAgent
from api.schemas.rollouts import (
    CreateRollout,
    RestartParams,
    RolloutBatch,
    RolloutHost,
    RolloutOut,
    RolloutPreview,
    RolloutTarget,
)
from api.services import actions as action_catalog
from api.services import audit, limits, rollouts_progress
from api.services.actions import Action
from api.services.run_store import IN_FLIGHT
from api.services.runs import FleetTarget, Target
from api.vault import registries
from runner.rollout import planned_batches

log = logging.getLogger("api.rollouts")

# The playbook variables of each action's rollout (see the roles' READMEs, "Rollouts").
ROLLOUT_PREFIX = {"dtma.redeploy": "dtma", "tool.deploy": "tool_instance",
                  "tool.restart": "tool_instance"}  # fmt: skip
END_STATES = {"successful", "failed", "rolled_back", "not_started", "skipped"}


# -- what a target covers ------------------------------------------------------------------
def matching(session: Session, user: User, target: RolloutTarget) -> list[Toolbox]:
    """The live toolboxes the target covers that `user` may act on, by name."""
    query = select(Toolbox).where(Toolbox.removed_at.is_(None)).order_by(Toolbox.name)
    if not user.is_admin:
        query = query.where(Toolbox.owner_id == user.id)
    if target.toolbox_ids:
        query = query.where(Toolbox.id.in_(target.toolbox_ids))
    elif target.region:
        query = query.where(Toolbox.region == target.region)
    found = list(session.scalars(query))
    if target.tag:  # a JSON list: filtered here, the same on SQLite and PostgreSQL
        found = [t for t in found if target.tag in (t.tags or [])]
    if target.toolbox_ids:
        missing = sorted(set(target.toolbox_ids) - {t.id for t in found})
        if missing:
            raise NotFound(
                f"toolbox '{missing[0]}' not found (or removed)", code="toolbox_not_found"
            )
    return found


def batch_hosts(batch_size: int | str, count: int) -> int:
    """A batch size as a count of hosts; a percentage of `count` as ansible reckons it
    (truncated, at least one)."""
    if isinstance(batch_size, int):
        return batch_size
    return max(1, int(int(batch_size[:-1]) / 100 * count))


def preview(session: Session, user: User, target: RolloutTarget, batch_size: int | str,
            canary: bool = True) -> RolloutPreview:  # fmt: skip
    found = matching(session, user, target)
    names = [t.name for t in found]
    batches = planned_batches(names, batch_hosts(batch_size, len(names)), canary) if names else []
    return RolloutPreview(count=len(names), toolboxes=names, batches=batches)


# -- the action ----------------------------------------------------------------------------
def _params(model: type[Any], params: dict[str, Any]) -> Any:
    try:
        return model.model_validate(params)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "params"
        raise InvalidInput(f"params.{where}", first["msg"]) from error


def registry_login(context: Context, body: CreateRollout) -> dict[str, Any] | None:
    """A tool deploy's private-registry login (api/vault/registries.login_for), as the
    single-toolbox deploy gets it; None for other actions and for public images."""
    if body.action != "tool.deploy":
        return None
    image = _params(DeployTool, body.params).image
    with context.sessions() as session:
        return registries.login_for(session, context.secrets, image)


def rollout_action(
    context: Context, body: CreateRollout, batch: int, login: dict[str, Any] | None = None
) -> Action:
    """The single-toolbox action's playbook and inputs, plus the rollout's variables. An
    agent redeploy carries no token: each droplet keeps its own (dtma role README). A tool
    deploy carries `login` (registry_login) for its image's registry, kept out of the
    stored parameters but for its user and registry (actions.deploy_action)."""
    if body.action == "dtma.redeploy":
        version = _params(RedeployAgent, body.params).version
        extravars: dict[str, Any] = {"dtma_agent_port": context.settings.agent_port}
        parameters: dict[str, Any] = {}
        if version:
            extravars["dtma_version"] = parameters["version"] = version
        base = Action("dtma.redeploy", "dtma_redeploy.yml", extravars, parameters)
    elif body.action == "tool.restart":
        base = action_catalog.tool_action("restart", _params(RestartParams, body.params).name)
    else:
        base = action_catalog.deploy_action(_params(DeployTool, body.params), login)
    prefix = ROLLOUT_PREFIX[body.action]
    rollout = {
        f"{prefix}_rollout_batch": batch,
        f"{prefix}_rollout_max_failures": body.max_failures,
        f"{prefix}_rollout_canary": body.canary,
    }
    return Action(
        base.name,
        base.playbook,
        {**base.extravars, **rollout},
        {**base.parameters, "rollout": {"batch": batch, "max_failures": body.max_failures,
                                         "canary": body.canary}},
        base.tool_name,
    )  # fmt: skip


# -- start -----------------------------------------------------------------------------------
def _fleet(context: Context, user: User, body: CreateRollout, rollout_id: str) -> tuple[
    FleetTarget, int
]:  # fmt: skip
    with context.sessions() as session:
        found = matching(session, user, body.target)
        if not found:
            raise InvalidInput("target", "no toolbox of yours matches this target")
        members = tuple(Target(t.id, t.name, context.credentials.for_toolbox(t)) for t in found)
    return FleetTarget(members, rollout_id), batch_hosts(body.batch_size, len(found))


def _store(
    context: Context,
    user: User,
    body: CreateRollout,
    rollout_id: str,
    fleet: FleetTarget,
    batch: int,
    action: Action,
    run_id: str,
    skipped: dict[str, str],
) -> None:
    running = [m for m in fleet.members if m.toolbox_id not in skipped]
    batches = planned_batches([m.host for m in running], batch, body.canary)
    batch_of = {host: n for n, hosts in enumerate(batches) for host in hosts}
    hosts = [
        {"toolbox_id": m.toolbox_id, "name": m.host, "batch": batch_of[m.host], "skipped": None}
        for m in sorted(running, key=lambda m: (batch_of[m.host], m.host))
    ] + [
        {"toolbox_id": m.toolbox_id, "name": m.host, "batch": None,
         "skipped": skipped[m.toolbox_id]}
        for m in fleet.members if m.toolbox_id in skipped
    ]  # fmt: skip
    with context.sessions.begin() as session:
        session.add(
            Rollout(
                id=rollout_id,
                user_id=user.id,
                action=body.action,
                target=body.target.public(),
                batch_size=str(body.batch_size),
                batch_hosts=batch,
                canary=body.canary,
                max_failures=body.max_failures,
                parameters=action.parameters,
                hosts=hosts,
                run_id=run_id,
            )
        )
        audit.record(
            session,
            user=user,
            action="rollout.start",
            outcome="running",
            run_id=run_id,
            parameters={"rollout_id": rollout_id, "action": body.action,
                        "target": body.target.public(), **action.parameters},
            detail=f"{len(running)} toolboxes in {len(batches)} batches, {len(skipped)} skipped",
        )  # fmt: skip


async def start(context: Context, user: User, body: CreateRollout) -> str:
    """Start the rollout's run; returns the rollout id. InvalidInput (bad params, nothing
    matches), NotFound (an id that is not yours), ToolboxBusy (every toolbox busy),
    TooManyRequests (the user's run limit)."""
    rollout_id = new_id()
    fleet, batch = await run_in_threadpool(_fleet, context, user, body, rollout_id)
    login = await run_in_threadpool(registry_login, context, body)
    action = rollout_action(context, body, batch, login)
    limit = context.settings.max_runs_per_user
    await run_in_threadpool(limits.check_runs_of, context.sessions, user, limit)
    started = await context.runs.start_fleet(fleet, action, user)
    await run_in_threadpool(
        _store, context, user, body, rollout_id, fleet, batch, action, started.run_id,
        started.skipped,
    )  # fmt: skip
    log.info("rollout_started", extra={"rollout_id": rollout_id, "run_id": started.run_id})
    return rollout_id


# -- reading -----------------------------------------------------------------------------------
def get(session: Session, user: User, rollout_id: str) -> Rollout:
    rollout = session.get(Rollout, rollout_id)
    if rollout is None or not (user.is_admin or rollout.user_id == user.id):
        raise NotFound(f"rollout '{rollout_id}' not found", code="rollout_not_found")
    return rollout


def recent(session: Session, user: User, limit: int = 20) -> list[Rollout]:
    query = select(Rollout).order_by(Rollout.created_at.desc()).limit(limit)
    if not user.is_admin:
        query = query.where(Rollout.user_id == user.id)
    return list(session.scalars(query))


def _batches(hosts: list[RolloutHost]) -> list[RolloutBatch]:
    by_batch: dict[int, list[RolloutHost]] = {}
    for host in hosts:
        if host.batch is not None:
            by_batch.setdefault(host.batch, []).append(host)
    batches = []
    for number in sorted(by_batch):
        members = by_batch[number]
        states = {h.state for h in members}
        done = sum(h.state in END_STATES for h in members)
        shown: Literal["pending", "running", "done", "not_started"]
        if states == {"not_started"}:
            shown = "not_started"
        elif states == {"pending"}:
            shown = "pending"
        else:
            shown = "done" if done == len(members) else "running"
        batches.append(RolloutBatch(
            batch=number, hosts=len(members), done=done,
            failed=sum(h.state in ("failed", "rolled_back") for h in members), state=shown,
        ))  # fmt: skip
    return batches


def _message(status: str, hosts: list[RolloutHost]) -> str:
    counts: dict[str, int] = {}
    for host in hosts:
        counts[host.state] = counts.get(host.state, 0) + 1
    summary = ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))
    return f"rollout {status}: {summary}"


def view(session: Session, rollout: Rollout) -> RolloutOut:
    run = session.get(Run, rollout.run_id) if rollout.run_id else None
    ended = run is not None and run.status not in IN_FLIGHT
    hosts, state = rollouts_progress.hosts(session, rollout, run, ended=ended)
    status = rollouts_progress.status(state, hosts, ended=ended)
    owner = session.get(User, rollout.user_id) if rollout.user_id else None
    return RolloutOut(
        id=rollout.id,
        action=rollout.action,
        status=status,  # type: ignore[arg-type]
        target=rollout.target,
        batch_size=rollout.batch_size,
        batch_hosts=rollout.batch_hosts,
        canary=rollout.canary,
        max_failures=rollout.max_failures,
        params=rollout.parameters,
        run_id=rollout.run_id,
        user=owner.name if owner else None,
        created_at=rollout.created_at,
        cancel_requested=rollout.cancel_requested_at is not None,
        message=_message(status, hosts) + (f" ({run.error})" if run and run.error else ""),
        batches=_batches(hosts),
        hosts=hosts,
    )


# -- cancel ------------------------------------------------------------------------------------
def _request_cancel(context: Context, user: User, rollout_id: str) -> tuple[str, str | None]:
    """Mark the rollout (its run stops when the next batch would start); returns its run's
    id and status."""
    with context.sessions() as session:
        rollout = get(session, user, rollout_id)
        run = session.get(Run, rollout.run_id) if rollout.run_id else None
        if run is None or run.status not in IN_FLIGHT:
            raise Conflict(f"rollout '{rollout_id}' is not running", code="rollout_not_running")
        with audit.audited(
            session,
            user=user,
            action="rollout.cancel",
            parameters={"rollout_id": rollout_id, "run_id": run.id},
        ):
            if rollout.cancel_requested_at is None:
                rollout.cancel_requested_at = utcnow()
        session.commit()
        return run.id, run.status


async def cancel(context: Context, user: User, rollout_id: str) -> None:
    """Stop after the current batch: the batch in progress finishes (each host verified
    or rolled back as usual), the later ones never start (`not_started`). A run still
    queued is canceled at once (nothing ran)."""
    run_id, status = await run_in_threadpool(_request_cancel, context, user, rollout_id)
    if status == "queued":
        with contextlib.suppress(Conflict):  # it started meanwhile: the gate stops it
            context.runs.cancel(run_id)
