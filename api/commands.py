"""Console commands for `dtma-console` (wired into the top-level app by api/cli.py):
`serve`, `worker`, `db upgrade`, `token create`, `sync`, `notify test`.

Each command imports the parts of the console it uses when it runs: importing all of them
costs about 2 s of CPU, which every `dtma-console` process (`--help` included) paid before
(api/README.md, "Start-up cost").
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from api.context import Context
    from api.errors import ApiError
    from api.settings import Settings

token_app = typer.Typer(help="API tokens.", no_args_is_help=True)
db_app = typer.Typer(help="The console's database.", no_args_is_help=True)
notify_app = typer.Typer(help="Alert notifications (webhooks, Apprise).", no_args_is_help=True)


def _context() -> Context:
    """The service's context for a command: migrated DB, vault open (per-toolbox keys)."""
    from api import migrate
    from api.context import Context
    from api.settings import Settings
    from api.vault.crypto import MasterKeyError

    context = Context.build(Settings())
    migrate.upgrade(context.engine, settings=context.settings)
    try:
        context.open_vault()
    except MasterKeyError as error:
        typer.secho(f"error: {error}", err=True, fg=typer.colors.RED)
        raise typer.Exit(code=1) from error
    return context


def _settings() -> Settings:
    """The settings, or exit 1 with what is wrong with them (no traceback)."""
    from pydantic import ValidationError

    from api.settings import Settings

    try:
        return Settings()
    except ValidationError as error:
        for problem in error.errors():
            where = ".".join(str(part) for part in problem["loc"]) or "settings"
            typer.secho(f"error: {where}: {problem['msg']}", err=True, fg=typer.colors.RED)
        raise typer.Exit(code=1) from None


def _fail(error: ApiError) -> typer.Exit:
    typer.secho(f"error: {error.message}", err=True, fg=typer.colors.RED)
    return typer.Exit(code=1)


def serve(
    host: str | None = typer.Option(None, help="Address to listen on (default DTMA_HOST)."),
    port: int | None = typer.Option(None, help="Port to listen on (default DTMA_PORT)."),
) -> None:
    """Run the console's HTTP service (migrates the database first)."""
    import uvicorn

    from api.app import create_app
    from api.log import configure_logging

    settings = _settings()
    configure_logging(settings.log_level)
    uvicorn.run(
        create_app(settings),
        host=host or settings.host,
        port=port or settings.port,
        log_config=None,
        access_log=False,
    )


def worker(
    concurrency: int = typer.Option(
        2, "--concurrency", min=1, max=256, help="Runs this worker executes at once."
    ),
    queues: str | None = typer.Option(
        None,
        "--queues",
        help="Comma-separated Celery queues to take runs from (default DTMA_RUN_QUEUE).",
    ),
) -> None:
    """Execute runs sent by console processes in celery mode (DTMA_EXECUTOR=celery): a
    Celery worker on DTMA_BROKER_URL sharing DTMA_DATABASE_URL and the master key."""
    from api import migrate
    from api.context import Context
    from api.executors.worker import serve_worker
    from api.log import configure_logging
    from api.settings import Settings
    from api.vault.crypto import MasterKeyError

    settings = Settings()
    configure_logging(settings.log_level)
    if settings.broker_url is None:
        typer.secho("error: the worker needs DTMA_BROKER_URL (redis://...)", err=True, fg="red")
        raise typer.Exit(code=1)
    context = Context.build(settings)
    if migrate.pending(context.engine):
        typer.secho(
            "error: the database is not migrated: run `dtma-console db upgrade` first",
            err=True,
            fg=typer.colors.RED,
        )
        raise typer.Exit(code=1)
    try:
        context.open_vault()
    except MasterKeyError as error:
        typer.secho(f"error: {error}", err=True, fg=typer.colors.RED)
        raise typer.Exit(code=1) from error
    names = [q.strip() for q in (queues or settings.run_queue).split(",") if q.strip()]
    serve_worker(context, concurrency, names or [settings.run_queue])


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply the database migrations (for a shared database, before starting consoles and
    workers; an embedded `serve` also migrates when it starts)."""
    from api import migrate
    from api.context import Context
    from api.settings import Settings

    settings = Settings()
    context = Context.build(settings)
    was_pending = migrate.pending(context.engine)
    migrate.upgrade(context.engine, settings=settings)
    context.close()
    typer.echo("database migrated" if was_pending else "database already up to date")


@token_app.command("create")
def token_create(
    user: str = typer.Option(..., "--user", help="User name (created when missing)."),
    admin: bool = typer.Option(False, "--admin", help="Make the user an admin."),
    expires: str | None = typer.Option(
        None, "--expires", help="Lifetime such as 30d, 12h, 90m or 2w (default: never)."
    ),
    label: str | None = typer.Option(None, "--label", help="What the token is for."),
) -> None:
    """Create an API token; it is printed once and only its hash is stored."""
    from api.db import session_scope
    from api.errors import ApiError
    from api.services import tokens, users

    context = _context()
    try:
        lifetime = tokens.parse_lifetime(expires) if expires is not None else None
        with session_scope(context.sessions) as session:
            account = users.named_user(session, user, admin=admin)
            row, token = tokens.create(session, account, label=label, lifetime=lifetime)
            role = "admin" if account.is_admin else "user"
            until = f"expires {row.expires_at.isoformat()}" if row.expires_at else "no expiry"
            typer.echo(f"token {row.id} for {user} ({role}, {until}), shown once:", err=True)
    except ApiError as error:
        raise _fail(error) from error
    typer.echo(token)


@token_app.command("list")
def token_list(
    as_json: bool = typer.Option(False, "--json", help="Print a JSON list."),
) -> None:
    """Every API token (never the token itself): id, user, label, dates, state."""
    from api.db import session_scope
    from api.services import tokens

    context = _context()
    with session_scope(context.sessions) as session:
        views = [tokens.view(row) for row in tokens.listed(session, None)]
    if as_json:
        typer.echo(json.dumps([view.model_dump(mode="json") for view in views]))
        return
    typer.echo("id\tuser\tadmin\tlabel\tstate\tcreated\tlast used\texpires")
    for view in views:
        dates = (view.created_at, view.last_used_at, view.expires_at)
        shown = "\t".join(d.isoformat(timespec="seconds") if d else "-" for d in dates)
        admin = "admin" if view.admin else "-"
        typer.echo(f"{view.id}\t{view.user}\t{admin}\t{view.label or '-'}\t{view.state}\t{shown}")


@token_app.command("revoke")
def token_revoke(token_id: str = typer.Argument(..., help="The token's id (token list).")) -> None:
    """Revoke an API token at once; the web sessions signed in with it end too."""
    from api.db import session_scope
    from api.errors import ApiError
    from api.services import audit, tokens

    context = _context()
    try:
        with session_scope(context.sessions) as session:
            row = tokens.revoke(session, tokens.visible(session, None, token_id))
            audit.record(
                session, user=None, action="tokens.revoke", outcome="successful",
                parameters={"id": row.id}, actor="cli",
            )  # fmt: skip
            revoked_at = row.revoked_at
    except ApiError as error:
        raise _fail(error) from error
    assert revoked_at is not None
    typer.echo(f"revoked\t{token_id}\t{revoked_at.isoformat()}")


def sync() -> None:
    """Import the tagged droplets from the DigitalOcean API, then read every toolbox's state
    (agent, or SSH when the agent does not answer) into the database."""
    from api import monitoring
    from api.db import session_scope
    from api.errors import ApiError
    from api.services import audit, toolboxes
    from api.services.digitalocean import list_tagged_droplets

    context = _context()
    try:
        with (
            session_scope(context.sessions) as session,
            audit.audited(session, user=None, action="toolboxes.sync", actor="cli") as entry,
        ):
            droplets = list_tagged_droplets(context.settings)
            report = toolboxes.import_droplets(session, context.secrets, droplets)
            entry.detail = report.summary()
    except ApiError as error:
        raise _fail(error) from error
    typer.echo(f"sync: {report.summary()}")
    toolboxes.refresh_run_inventory(context)
    for name in report.created:
        typer.echo(f"created\t{name}")
    for name in report.removed:
        typer.echo(f"removed\t{name}")
    states = monitoring.sync_once(context)
    typer.echo(f"state: {states.summary()}")
    for result in states.toolboxes:
        typer.echo(f"{result.status}\t{result.name}\t{result.source}\t{result.error or ''}")


@notify_app.command("test")
def notify_test() -> None:
    """Send a test message to every notification target (DTMA_ALERT_WEBHOOKS and
    DTMA_NOTIFY_URLS); exits 1 when a target did not take it or none is configured."""
    import asyncio

    from api.context import Context
    from api.log import configure_logging
    from api.monitoring.notify import NotifyConfigError
    from api.monitoring.webhooks import WebhookDispatcher
    from api.settings import Settings

    settings = Settings()
    configure_logging(settings.log_level)
    context = Context.build(settings)

    async def send() -> list[tuple[str, str | None]]:
        dispatcher = WebhookDispatcher(context.sessions, settings)
        try:
            return [(r.target, r.error) for r in await dispatcher.send_test("dtma-console")]
        finally:
            await dispatcher.aclose()

    try:
        results = asyncio.run(send())
    except NotifyConfigError as error:
        typer.secho(f"error: {error}", err=True, fg=typer.colors.RED)
        raise typer.Exit(code=1) from error
    if not results:
        typer.secho("error: no notification target is configured", err=True, fg=typer.colors.RED)
        raise typer.Exit(code=1)
    for target, reason in results:
        typer.echo(f"{'failed' if reason else 'delivered'}\t{target}\t{reason or ''}")
    if any(reason for _, reason in results):
        raise typer.Exit(code=1)
