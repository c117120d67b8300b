"""`dtma-console sandbox …`: the local DigitalOcean fleet.

Each command imports sandbox.fleet (httpx, yaml, docker helpers) when it runs: the other
`dtma-console` commands register these without paying for it."""

from __future__ import annotations

import json

import typer

from sandbox.config import SandboxConfig

app = typer.Typer(help="A local DigitalOcean fleet: droplet containers and an API emulator.")


def _fail(error: Exception) -> typer.Exit:
    typer.secho(f"error: {error}", err=True, fg=typer.colors.RED)
    return typer.Exit(code=1)


@app.command()
def up(
    droplets: int = typer.Option(3, "--droplets", min=1, max=150, help="How many droplets."),
) -> None:
    """Start the emulator and droplets toolbox-1..N (idempotent); wait until SSH answers."""
    from sandbox import fleet

    try:
        sandbox = fleet.up(SandboxConfig.from_env(), droplets)
    except (fleet.SandboxError, RuntimeError) as error:
        raise _fail(error) from error
    for droplet in sandbox.droplets:
        typer.echo(f"{droplet.name}\t{droplet.address}\t{droplet.status}\tid={droplet.id}")
    typer.echo(f"inventory: {sandbox.inventory}")


@app.command()
def down() -> None:
    """Remove every droplet container and stop the emulator."""
    from sandbox import fleet

    removed = fleet.down(SandboxConfig.from_env())
    typer.echo(f"removed {len(removed)} droplet container(s); emulator stopped")


@app.command()
def status(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Show the emulator and every droplet with its container and SSH state."""
    from sandbox import fleet

    try:
        report = fleet.status(SandboxConfig.from_env())
    except fleet.SandboxError as error:
        raise _fail(error) from error
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    emulator = report["emulator"]
    typer.echo(f"emulator: {'running' if emulator['running'] else 'stopped'} at {emulator['url']}")
    for d in report["droplets"]:
        ssh = "ssh ok" if d["ssh"] else "ssh down"
        typer.echo(f"{d['name']}\t{d['address']}\t{d['status']}\t{d['container_state']}\t{ssh}")


@app.command()
def inventory() -> None:
    """Print the path of the inventory file that points at the emulator."""
    from sandbox import fleet

    config = SandboxConfig.from_env()
    try:
        sandbox = fleet.info(config)
    except fleet.SandboxError as error:
        raise _fail(error) from error
    if not sandbox.inventory.exists():
        fleet.write_inventory(config, sandbox.api_token)
    typer.echo(str(sandbox.inventory))
