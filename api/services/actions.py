"""The console's actions: which playbook each one runs, with which extra variables.

An Action carries two views of its input: `extravars` for the run (may hold secrets such
as the agent token or a tool's environment) and `parameters`, safe to store and show.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from api.schemas.actions import DeployTool
from api.settings import Settings


@dataclass(frozen=True)
class Action:
    name: str  # e.g. "tool.restart"
    playbook: str  # e.g. "tool_restart.yml"
    extravars: dict[str, Any] = field(repr=False)
    parameters: dict[str, Any]
    tool_name: str | None = None

    @property
    def verify_agent(self) -> bool:
        return changes_agent(self.name)


DTMA_PLAYBOOKS = {
    "install": "dtma_install.yml",
    "restart": "dtma_restart.yml",
    "redeploy": "dtma_redeploy.yml",
    "token_rotate": "dtma_token_rotate.yml",
}


def changes_agent(action_name: str) -> bool:
    """The run changes the agent: its result is confirmed by the console's own agent read
    (in whichever process executes it)."""
    return action_name in {f"dtma.{kind}" for kind in DTMA_PLAYBOOKS}


TOOL_PLAYBOOKS = {
    "start": "tool_start.yml",
    "stop": "tool_stop.yml",
    "restart": "tool_restart.yml",
    "remove": "tool_remove.yml",
}


def dtma_action(
    kind: str, settings: Settings, agent_token: str, version: str | None = None
) -> Action:
    """install / restart / redeploy the agent. Install and redeploy write the agent's
    config, so they carry the toolbox's token (a secret: `no_log` in the role); the role
    uses it only when the droplet has no token yet. token_rotate carries a new token, which
    replaces the droplet's; the console learns it back over SSH on the check's 401."""
    extravars: dict[str, Any] = {"dtma_agent_port": settings.agent_port}
    parameters: dict[str, Any] = {}
    if kind in ("install", "redeploy", "token_rotate"):
        extravars["dtma_agent_token"] = agent_token
    if version:
        extravars["dtma_version"] = parameters["version"] = version
    return Action(f"dtma.{kind}", DTMA_PLAYBOOKS[kind], extravars, parameters)


def tool_action(kind: str, name: str) -> Action:
    """start / stop / restart / remove one tool instance."""
    return Action(
        f"tool.{kind}",
        TOOL_PLAYBOOKS[kind],
        {"tool_instance_name": name},
        {"name": name},
        tool_name=name,
    )


def deploy_action(spec: DeployTool, registry_auth: dict[str, Any] | None = None) -> Action:
    """The deploy; with `registry_auth` (api/vault/registries.login_for) the role logs in to
    the image's private registry for the pull. Only the registry's name is kept with the
    run and its audit entry."""
    extravars, shown = spec.extravars(), spec.public()
    if registry_auth:
        extravars["tool_instance_registry_auth"] = registry_auth
        shown["registry_login"] = f"{registry_auth['username']}@{registry_auth['registry']}"
    return Action("tool.deploy", "tool_deploy.yml", extravars, shown, spec.name)
