"""`dtma-console keys ...`: master keys and per-toolbox SSH keys from the command line.

keys generate-master            print a new master key
keys rotate-master [--new-key]  re-seal every stored secret with the first master key
keys bootstrap [--toolbox NAME]... give toolboxes without a key of their own one
keys rotate --toolbox NAME      rotate a toolbox's key
keys list                       which key and host keys every toolbox has

Each command imports what it uses when it runs, as in api/commands.py.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from api.context import Context
    from api.vault.crypto import Keyring
    from api.vault.sealed import ResealReport

keys_app = typer.Typer(help="Master keys and per-toolbox SSH keys.", no_args_is_help=True)


def _error(message: str) -> typer.Exit:
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    return typer.Exit(code=1)


@keys_app.command("generate-master")
def generate_master() -> None:
    """Print a new random master key (32 bytes, URL-safe base64) for DTMA_MASTER_KEY."""
    from api.vault.crypto import generate_master_key

    typer.echo(generate_master_key())


def _reseal(context: Context, keyring: Keyring) -> ResealReport:
    from api.db import session_scope
    from api.vault import sealed

    with session_scope(context.sessions) as session:
        return sealed.reseal_all(session, keyring)


@keys_app.command("rotate-master")
def rotate_master(
    new_key: bool = typer.Option(
        False,
        "--new-key",
        help="Demo key file only: generate a new master key, re-seal with it and keep only "
        "it in the key file.",
    ),
) -> None:
    """Re-seal every stored secret with the first configured master key.

    With DTMA_MASTER_KEY: set it to 'NEW,OLD' (service and this command), run this, then
    drop OLD. With the demo key file: --new-key does all of it."""
    from api.commands import _context as migrated_context
    from api.db import session_scope
    from api.settings import Settings
    from api.vault.crypto import Keyring, MasterKeyError, SealError, generate_master_key
    from api.vault.master import load_keyring, write_key_file
    from api.vault.startup import verify_database

    settings = Settings()
    context = migrated_context()
    try:
        loaded = load_keyring(settings)
        with session_scope(context.sessions) as session:
            verify_database(session, loaded)
        keyring = loaded.keyring
        if new_key:
            if loaded.file is None:
                raise _error(
                    "--new-key needs the demo key file; with DTMA_MASTER_KEY, generate a key "
                    "with `keys generate-master`, set DTMA_MASTER_KEY=NEW,OLD and run "
                    "`keys rotate-master`"
                )
            fresh = generate_master_key()
            old = loaded.file.read_text().strip()
            # NEW,OLD first: whatever happens next, the file opens every stored secret.
            write_key_file(loaded.file, f"{fresh},{old}", exclusive=False)
            keyring = Keyring.parse(f"{fresh},{old}", origin=loaded.origin)
        report = _reseal(context, keyring)
        if new_key and loaded.file is not None:
            write_key_file(loaded.file, fresh, exclusive=False)
    except (MasterKeyError, SealError) as error:
        raise _error(str(error)) from None
    context.close()
    typer.echo(report.summary(keyring.primary_id))
    if new_key:
        typer.echo(f"{loaded.file} now holds only master key {keyring.primary_id}")
    elif len(keyring.key_ids) > 1:
        typer.echo(
            f"master key(s) {', '.join(keyring.key_ids[1:])} are no longer needed: remove them "
            "from DTMA_MASTER_KEY and restart the service"
        )


def _select(context: Context, names: list[str], *, without_key: bool) -> list[tuple[str, str]]:
    """(id, name) of the named toolboxes, or of every current one without its own key."""
    from sqlalchemy import select

    from api.db import session_scope
    from api.models import Toolbox
    from api.vault import info

    with session_scope(context.sessions) as session:
        toolboxes = list(
            session.scalars(
                select(Toolbox).where(Toolbox.removed_at.is_(None)).order_by(Toolbox.name)
            )
        )
        if names:
            by_name = {t.name: t for t in toolboxes}
            missing = [n for n in names if n not in by_name]
            if missing:
                raise _error(f"no toolbox named {', '.join(missing)} (run `dtma-console sync`)")
            toolboxes = [by_name[n] for n in names]
        elif without_key:
            toolboxes = [t for t in toolboxes if info.ssh_access(session, t).source == "bootstrap"]
        return [(t.id, t.name) for t in toolboxes]


async def _rotate_each(context: Context, targets: list[tuple[str, str]]) -> bool:
    async with context.running():
        return await _rotate_all(context, targets)


async def _rotate_all(context: Context, targets: list[tuple[str, str]]) -> bool:
    from api.errors import ApiError
    from api.vault import rotation

    ok = True
    for toolbox_id, name in targets:
        try:
            outcome = await rotation.rotate(context, toolbox_id, None)
        except ApiError as error:
            typer.secho(f"{name}\tfailed\t{error.message}", fg=typer.colors.RED)
            ok = False
            continue
        color = typer.colors.GREEN if outcome.success else typer.colors.RED
        line = f"{name}\t{'ok' if outcome.success else 'failed'}\t{outcome.message}"
        typer.secho(line + (f" ({outcome.error})" if outcome.error else ""), fg=color)
        ok = ok and outcome.success
    return ok


@keys_app.command("bootstrap")
def bootstrap(
    toolbox: Annotated[
        list[str] | None,
        typer.Option(help="Toolbox name (repeatable); default: every one without its own key."),
    ] = None,
) -> None:
    """Give toolboxes their own SSH key, installed with the key they were created with."""
    import asyncio

    from api.commands import _context as migrated_context

    context = migrated_context()
    targets = _select(context, toolbox or [], without_key=True)
    if not targets:
        typer.echo("every toolbox already has its own key")
        return
    if not asyncio.run(_rotate_each(context, targets)):
        raise typer.Exit(code=1)


@keys_app.command("rotate")
def rotate(
    toolbox: Annotated[list[str], typer.Option(help="Toolbox name (repeatable).")],
) -> None:
    """Rotate the SSH key of toolboxes (a bootstrap for one without its own key)."""
    import asyncio

    from api.commands import _context as migrated_context

    context = migrated_context()
    if not asyncio.run(_rotate_each(context, _select(context, toolbox, without_key=False))):
        raise typer.Exit(code=1)


@keys_app.command("list")
def list_keys() -> None:
    """Every toolbox: where its SSH key comes from, its fingerprint, its pinned host keys."""
    from sqlalchemy import select

    from api.commands import _context as migrated_context
    from api.db import session_scope
    from api.models import Toolbox
    from api.vault import hostkeys, info

    context = migrated_context()
    with session_scope(context.sessions) as session:
        for toolbox in session.scalars(select(Toolbox).order_by(Toolbox.name)):
            access = info.ssh_access(session, toolbox)
            pins = [k.fingerprint for k in hostkeys.pinned(session, toolbox.id)]
            typer.echo(
                f"{toolbox.name}\t{access.source}\t{access.fingerprint or '-'}\t"
                f"host keys: {', '.join(pins) or 'not pinned yet'}"
            )
