"""`dtma-console`: one command line for the console, its sandbox and its runs."""

from __future__ import annotations

import typer

from api import commands
from api.vault.commands import keys_app
from runner.cli import run_command
from sandbox.cli import app as sandbox_app

app = typer.Typer(help="DTMA console: manage DTMA toolboxes on DigitalOcean.", no_args_is_help=True)
app.add_typer(sandbox_app, name="sandbox")
app.add_typer(commands.token_app, name="token")
app.add_typer(commands.notify_app, name="notify")
app.command("serve")(commands.serve)
app.command("sync")(commands.sync)
app.command("run")(run_command)
app.add_typer(keys_app, name="keys")
