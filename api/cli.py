"""`dtma-console`: one command line for the console, its sandbox and its runs."""

from __future__ import annotations

import typer

from api import commands
from api.vault.commands import keys_app
from runner.cli import run_command

app = typer.Typer(help="DTMA console: manage DTMA toolboxes on DigitalOcean.", no_args_is_help=True)
try:  # the local fleet ships with the source tree, not with the production wheel
    from sandbox.cli import app as sandbox_app
except ImportError:
    pass
else:
    app.add_typer(sandbox_app, name="sandbox")
app.add_typer(commands.token_app, name="token")
app.add_typer(commands.db_app, name="db")
app.add_typer(commands.notify_app, name="notify")
app.command("serve")(commands.serve)
app.command("worker")(commands.worker)
app.command("sync")(commands.sync)
app.command("run")(run_command)
app.add_typer(keys_app, name="keys")
