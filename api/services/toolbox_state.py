"""The one writer of what was observed on a toolbox: its status, last error, last seen, agent
version, last answers (`last_state`, served when stale and reused while fresh) and tool
instances. Both read paths write through it: an on-demand read (api/services/observe.py, one
kind) and the monitor's look (api/monitoring/store.py, every kind at once). The caller owns
the transaction."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from sqlalchemy.orm import Session

from api.models import Toolbox
from api.services import instances

Kind = Literal["status", "system", "tools"]
Source = Literal["agent", "ssh", "none"]
# Toolbox.status for each source the answers came from.
STATUS_BY_SOURCE: dict[Source, str] = {"agent": "up", "ssh": "down", "none": "unreachable"}


def record(
    session: Session,
    toolbox: Toolbox,
    answers: dict[Kind, Any],
    *,
    source: Source,
    observed_at: datetime,
    errors: dict[str, str],
    refused: bool = False,
    replace: bool = False,
) -> None:
    """Write one observation: `answers` by kind (empty when nothing answered), where they
    came from, and why better sources did not answer. `replace` drops the kinds not in
    `answers` (a look that answers all three). Each stored answer carries its source, time and
    errors, and the run holding the toolbox when it was made (such an answer is never reused
    as fresh once the run is over: api/services/observe.py)."""
    # An agent that answers but refuses the console's token (or offers another certificate)
    # is not "down": restarting it would not help.
    toolbox.status = "refused" if refused and source != "agent" else STATUS_BY_SOURCE[source]
    toolbox.last_error = "; ".join(f"{where}: {why}" for where, why in errors.items()) or None
    if source == "none":
        return
    toolbox.last_seen_at = observed_at
    status = answers.get("status")
    if isinstance(status, dict) and status.get("version"):
        toolbox.agent_version = str(status["version"])
    stamp: dict[str, Any] = {"source": source, "observed_at": observed_at.isoformat()}
    if errors:
        stamp["errors"] = dict(errors)
    if toolbox.active_run_id is not None:
        stamp["during_run"] = toolbox.active_run_id
    state = {} if replace else dict(toolbox.last_state or {})
    state.update({kind: {**stamp, "data": data} for kind, data in answers.items()})
    toolbox.last_state = state
    tools = answers.get("tools")
    if isinstance(tools, dict) and isinstance(tools.get("containers"), list):
        instances.record_containers(session, toolbox, tools["containers"], observed_at)
