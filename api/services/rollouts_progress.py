"""Where each host of a rollout stands: read from its run's events (runner/rollout.py), then
judged by the console's own check of the hosts' agents after an agent rollout
(runs.confirm_fleet_result keeps what each read saw as the result's `console_checks`).

The rollout's view (api/services/rollouts.py) and the audit rows settled when its run closes
(api/services/run_store.py) both read it here, so a toolbox's audit entry says what its
host's row says.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from api.models import Rollout, Run, RunEvent, utcnow
from api.schemas.rollouts import RolloutHost
from api.services.actions import changes_agent
from runner.rollout import RolloutProgress

AWAITING_CHECK = "verified on the droplet; the console reads its agent back when the run ends"


def progress(
    session: Session, rollout: Rollout, run: Run | None, *, ended: bool
) -> RolloutProgress:
    """Each host's state from the run's events; `ended`: the run is over (a run written
    off without a run_end event ends its hosts as such)."""
    planned: dict[int, list[str]] = {}
    for host in rollout.hosts:
        if host["skipped"] is None:
            planned.setdefault(int(host["batch"]), []).append(host["name"])
    state = RolloutProgress.of([planned[n] for n in sorted(planned)])
    if run is None:
        return state
    rows = session.scalars(select(RunEvent).where(RunEvent.run_id == run.id).order_by(RunEvent.seq))
    state.add_all(
        {"seq": r.seq, "run_id": r.run_id, "type": r.type, "host": r.host, "task": r.task,
         "at": r.at, "data": r.data}
        for r in rows
    )  # fmt: skip
    if ended and not state.ended:
        state.add_all([{"seq": 0, "run_id": run.id, "type": "run_end", "at": utcnow(),
                        "data": {"status": run.status}}])  # fmt: skip
    return state


def _judged(
    state: str, message: str, check: dict[str, Any] | None, *, agent: bool, ended: bool,
    checked: bool,
) -> tuple[str, str]:  # fmt: skip
    """A host the droplet verified, as the console's own read of its agent judges it."""
    if not agent or state != "successful":
        return state, message
    if not ended:
        return "running", AWAITING_CHECK
    if check is None:
        reason = "its check never ran" if not checked else "it was not read"
        return "failed", f"verified on the droplet, but the console did not read it back ({reason})"
    if not check.get("ok"):
        where = f" ({check['url']})" if check.get("url") else ""
        return "failed", (
            f"verified on the droplet, but the console could not read it back{where}: "
            f"{check.get('error')}"
        )
    return state, f"{message}; read back by the console (version {check.get('version')})"


def hosts(session: Session, rollout: Rollout, run: Run | None, *, ended: bool) -> tuple[
    list[RolloutHost], RolloutProgress
]:  # fmt: skip
    """Every host of the rollout with its batch, state and message."""
    state = progress(session, rollout, run, ended=ended)
    data = ((run.result if run is not None else None) or {}).get("data") or {}
    checks = data.get("console_checks")
    agent = changes_agent(rollout.action)
    found = []
    for host in rollout.hosts:
        if host["skipped"] is not None:
            found.append(RolloutHost(
                toolbox_id=host["toolbox_id"], name=host["name"], batch=None, state="skipped",
                message=f"skipped: {host['skipped']}", run_id=None,
            ))  # fmt: skip
            continue
        seen = state.hosts[host["name"]]
        shown, message = _judged(
            seen.state, seen.message, (checks or {}).get(host["name"]), agent=agent,
            ended=ended, checked=checks is not None,
        )  # fmt: skip
        found.append(RolloutHost(
            toolbox_id=host["toolbox_id"], name=host["name"], batch=seen.batch,
            state=shown, message=message, run_id=rollout.run_id,  # type: ignore[arg-type]
        ))  # fmt: skip
    return found, state


def status(state: RolloutProgress, found: list[RolloutHost], *, ended: bool) -> str:
    """The rollout's status (runner/rollout.py), once the console's checks are counted:
    running until the run is closed (the checks come last), and a rollout whose hosts all
    verified on their droplets but not all from the console failed."""
    if not ended:
        return "running"
    shown = state.status()
    if shown == "successful" and any(h.state != "successful" for h in found if h.batch is not None):
        return "failed"
    return shown
