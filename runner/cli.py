"""`dtma-console run PLAYBOOK --toolbox toolbox-N [-e key=value]... [--json]`.

Events go to stderr as they happen; the result goes to stdout (a ConsoleResult as JSON
with --json). Exit code 0 only when the run succeeded, 1 when it did not, 2 for a request
refused before it started.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer

from runner.errors import RequestError
from runner.interface import run_playbook
from runner.models import ConsoleResult, RunEvent
from runner.request import DEFAULT_INVENTORY, RunRequest, default_inventory

# Where the DigitalOcean inventory plugin looks for its token; handed to the run as secrets.
DO_TOKEN_VARIABLES = ("DO_API_TOKEN", "DO_API_KEY", "DO_OAUTH_TOKEN", "OAUTH_TOKEN")
_END_LABEL = {
    "task_ok": "ok",
    "task_changed": "changed",
    "task_failed": "FAILED",
    "task_skipped": "skipped",
    "task_unreachable": "UNREACHABLE",
    "item_failed": "item FAILED",
}


def parse_extra_vars(values: list[str]) -> dict[str, Any]:
    """`key=value` pairs (values are strings; the playbook's spec converts types) or JSON."""
    extravars: dict[str, Any] = {}
    for value in values:
        if value.lstrip().startswith("{"):
            try:
                parsed = json.loads(value)
            except json.JSONDecodeError as error:
                message = f"-e {value!r} is not valid JSON: {error}"
                raise RequestError("extravars", message) from None
            if not isinstance(parsed, dict):
                raise RequestError("extravars", f"-e {value!r} must be a JSON object")
            extravars.update(parsed)
            continue
        key, sep, item = value.partition("=")
        if not sep or not key:
            raise RequestError("extravars", f"-e {value!r} is not key=value")
        extravars[key.strip()] = item
    return extravars


SANDBOX_HINT = (
    "to aim at the sandbox instead, `source .data/demo.env` (written by `make demo`) or pass "
    '--inventory "$(dtma-console sandbox inventory)"'
)
_UNPARSED_INVENTORY = "No inventory was parsed"


def check_inventory(inventory: Path, env: dict[str, str]) -> None:
    """The DigitalOcean inventory needs a token: say so before ansible says "No inventory
    was parsed"."""
    if inventory.resolve() == DEFAULT_INVENTORY.resolve() and not env:
        raise RequestError(
            "inventory",
            f"the DigitalOcean inventory ({inventory}) could not be read: DO_API_TOKEN is not "
            f"set; export it for real droplets, or {SANDBOX_HINT}",
        )


def _event_line(event: RunEvent) -> str | None:
    data = event.data
    if event.type == "play_start":
        return f"PLAY {data.get('play', '')}"
    if event.type == "output":
        return str(data.get("text", ""))
    label = _END_LABEL.get(event.type)
    if label is None:
        return None
    line = f"  {label:<11} {event.host} | {event.task}"
    if event.type in ("task_failed", "task_unreachable", "item_failed") and data.get("msg"):
        line += f": {data['msg']}"
    return line


def _print_event(event: RunEvent, as_json: bool) -> None:
    if as_json:
        typer.echo(event.model_dump_json(), err=True)
        return
    line = _event_line(event)
    if line is not None:
        typer.echo(line, err=True)


def _summary(result: ConsoleResult) -> str:
    lines = [f"{result.status.upper()}: {result.message}"]
    if result.error and result.error not in result.message:
        lines.append(f"error: {result.error}")
    if result.error and _UNPARSED_INVENTORY in result.error:
        lines.append(f"the inventory could not be read (is its token right?); {SANDBOX_HINT}")
    for host, counts in result.hosts.items():
        lines.append(
            f"  {host}: ok={counts.ok} changed={counts.changed} failed={counts.failed} "
            f"unreachable={counts.unreachable} skipped={counts.skipped}"
        )
    lines.append(f"run {result.run_id} took {result.duration_ms} ms")
    return "\n".join(lines)


def run_command(
    playbook: Annotated[
        str, typer.Argument(help="A playbook in playbooks/, e.g. tool_restart.yml.")
    ],
    toolbox: Annotated[
        list[str],
        typer.Option("--toolbox", "-t", help="Target toolbox (inventory host name); repeatable."),
    ],
    extra_vars: Annotated[
        list[str] | None,
        typer.Option("--extra-vars", "-e", help="key=value or a JSON object; repeatable."),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Events as JSON lines on stderr; result as JSON.")
    ] = False,
    inventory: Annotated[
        Path | None,
        typer.Option(
            "--inventory", "-i", help="Default: $DTMA_INVENTORY or inventory/digitalocean.yml."
        ),
    ] = None,
    private_key: Annotated[
        Path | None,
        typer.Option("--private-key", help="SSH private key file, handed to ssh-agent."),
    ] = None,
    known_hosts: Annotated[
        Path | None,
        typer.Option("--known-hosts", help="Pin host keys to this known_hosts file (strict)."),
    ] = None,
    timeout: Annotated[
        int, typer.Option("--timeout", min=1, help="Seconds before the run is stopped.")
    ] = 600,
    check: Annotated[bool, typer.Option("--check", help="Check mode: change nothing.")] = False,
) -> None:
    """Run a console playbook on toolboxes, exactly as the console does."""
    env = {name: os.environ[name] for name in DO_TOKEN_VARIABLES if os.environ.get(name)}
    try:
        check_inventory(inventory or default_inventory(), env)
        request = RunRequest(
            playbook=playbook,
            hosts=toolbox,
            extravars=parse_extra_vars(extra_vars or []),
            inventory=inventory or default_inventory(),
            ssh_private_key=private_key.read_text() if private_key else None,
            known_hosts=known_hosts.read_text() if known_hosts else None,
            timeout=timeout,
            check=check,
            env=env,
        )
        result = run_playbook(request, on_event=lambda event: _print_event(event, as_json))
    except RequestError as error:
        typer.secho(f"error: {error.field}: {error.message}", err=True, fg=typer.colors.RED)
        raise typer.Exit(code=2) from None
    except OSError as error:
        typer.secho(f"error: {error}", err=True, fg=typer.colors.RED)
        raise typer.Exit(code=2) from None
    typer.echo(result.model_dump_json(indent=2) if as_json else _summary(result))
    raise typer.Exit(code=0 if result.success else 1)
