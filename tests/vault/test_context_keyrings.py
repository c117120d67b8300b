"""Each Context seals with the keyring it opened, never a process-wide one: two consoles
in one process, each with its own master key, never see each other's keys (real SQLite,
real sealing through the services that store secrets)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from sqlalchemy import select

from api.app import create_app
from api.context import Context
from api.db import session_scope
from api.models import Toolbox
from api.services import toolboxes
from api.services.digitalocean import DropletInfo
from api.settings import Settings
from api.vault.crypto import Keyring, MasterKeyError, SealError, generate_master_key
from tests.api.server import live_server


def _settings(directory: Path, master_key: str | None) -> Settings:
    directory.mkdir()
    return Settings(
        database_url=f"sqlite:///{directory / 'console.db'}",
        master_key=master_key,
        do_api_url="http://127.0.0.1:9/v2",
        monitor_interval=0,
    )


def _import_one(context: Context, droplet_id: int) -> tuple[str, str]:
    """A droplet imported through the service (which seals a new agent token): (toolbox
    id, its sealed token as stored)."""
    droplet = DropletInfo(droplet_id, f"toolbox-{droplet_id}", "active", "fra1", None, ())
    with session_scope(context.sessions) as session:
        toolboxes.import_droplets(session, context.secrets, [droplet])
    with session_scope(context.sessions) as session:
        row = session.scalars(select(Toolbox).where(Toolbox.droplet_id == droplet_id)).one()
        return row.id, row.agent_token_ciphertext


def _token(context: Context, toolbox_id: str) -> str:
    with session_scope(context.sessions) as session:
        row = session.get(Toolbox, toolbox_id)
        assert row is not None
        return context.secrets.unseal_from(row, Toolbox.agent_token_ciphertext)


@pytest.fixture
def two_consoles(tmp_path: Path) -> Iterator[tuple[FastAPI, FastAPI, list[str]]]:
    """Two consoles served at once in this process, each with a master key of its own."""
    keys = [generate_master_key(), generate_master_key()]
    first = create_app(_settings(tmp_path / "a", keys[0]))
    second = create_app(_settings(tmp_path / "b", keys[1]))
    with live_server(first), live_server(second):
        yield first, second, keys


def test_two_consoles_in_one_process_seal_with_their_own_keys(
    two_consoles: tuple[FastAPI, FastAPI, list[str]], tmp_path: Path
) -> None:
    first, second, keys = two_consoles
    a: Context = first.state.context
    b: Context = second.state.context
    ids = [Keyring.parse(k, origin="t").primary_id for k in keys]
    assert (a.secrets.keyring.primary_id, b.secrets.keyring.primary_id) == (ids[0], ids[1])
    # Sealed after both opened their vaults: each with its own key.
    a_toolbox, a_sealed = _import_one(a, 1)
    b_toolbox, b_sealed = _import_one(b, 2)
    assert a_sealed.startswith(f"v2:{ids[0]}:") and b_sealed.startswith(f"v2:{ids[1]}:")
    a_token, b_token = _token(a, a_toolbox), _token(b, b_toolbox)
    assert a_token != b_token and len(a_token) >= 32
    # One console's keys do not open the other's secrets, even bound to the same place.
    with pytest.raises(SealError):
        b.secrets.unseal(a_sealed, Toolbox.agent_token_ciphertext, a_toolbox)
    with pytest.raises(SealError):
        a.secrets.unseal(b_sealed, Toolbox.agent_token_ciphertext, b_toolbox)
    # A third context (a command, a worker) opening the first database with the second key
    # is refused, and changes nothing for the two that are running.
    intruder = Context.build(a.settings.model_copy(update={"master_key": b.settings.master_key}))
    with pytest.raises(MasterKeyError, match="does not open this database's secrets"):
        intruder.open_vault()
    with pytest.raises(RuntimeError, match="vault is open"):
        intruder.secrets.seal("x", Toolbox.agent_token_ciphertext, "t")
    intruder.close()
    assert (_token(a, a_toolbox), _token(b, b_toolbox)) == (a_token, b_token)


def test_a_console_with_its_own_key_leaves_later_consoles_alone(tmp_path: Path) -> None:
    """The failure this replaces: a test console with its own master key made every later
    console of the process seal (and fail to unseal) with that key."""
    own = create_app(_settings(tmp_path / "own", generate_master_key()))
    with live_server(own):
        pass  # started (vault opened with its key) and stopped
    closed: Context = own.state.context
    with pytest.raises(RuntimeError):
        closed.secrets  # noqa: B018 (the keys are gone with the context)
    later = create_app(_settings(tmp_path / "later", None))  # the session's master key
    with live_server(later):
        context: Context = later.state.context
        toolbox_id, sealed = _import_one(context, 3)
        session_key = Keyring.parse(
            Path(str(context.settings.master_key_file)).read_text().strip(), origin="t"
        )
        assert sealed.startswith(f"v2:{session_key.primary_id}:")
        assert len(_token(context, toolbox_id)) >= 32
