"""Opening the vault: the master key must open this database, or the service does not start."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select, text

from api import migrate
from api.context import Context
from api.db import session_scope
from api.models import Toolbox
from api.secret_box import column_binding
from api.settings import Settings
from api.vault import sealed
from api.vault.crypto import Keyring, MasterKeyError, generate_master_key
from tests.api.console import CLI
from tests.api.server import free_port


@pytest.fixture
def database(tmp_path: Path) -> Iterator[str]:
    url = f"sqlite:///{tmp_path / 'console.db'}"
    context = Context.build(Settings(database_url=url))
    migrate.upgrade(context.engine)
    context.engine.dispose()
    yield url


def opened(url: str, master_key: str) -> Context:
    context = Context.build(Settings(database_url=url, master_key=master_key))
    context.open_vault()
    return context


def test_the_key_a_database_was_opened_with_is_required_afterwards(database: str) -> None:
    first, other = generate_master_key(), generate_master_key()
    opened(database, first).engine.dispose()
    with pytest.raises(MasterKeyError, match="does not open this database's secrets") as refused:
        opened(database, other)
    assert first not in str(refused.value) and other not in str(refused.value)
    # While rotating, NEW,OLD opens it.
    opened(database, f"{other},{first}").engine.dispose()


def test_secrets_sealed_before_the_vault_are_sealed_at_start(database: str) -> None:
    context = Context.build(Settings(database_url=database))
    with context.engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO toolboxes (id, droplet_id, name, status, agent_token_ciphertext, "
                "last_state, created_at, updated_at) VALUES ('t1', 7, 'toolbox-7', 'unknown', "
                "'plain:legacy-agent-token', '{}', '2026-01-01', '2026-01-01')"
            )
        )
    context.engine.dispose()
    context = opened(database, generate_master_key())
    with session_scope(context.sessions) as session:
        stored = session.scalar(select(Toolbox.agent_token_ciphertext))
        keyring = context.secrets.keyring
        assert stored is not None and stored.startswith(f"v2:{keyring.primary_id}:")
        token = keyring.unseal(stored, column_binding(Toolbox.agent_token_ciphertext, "t1"))
        assert token == "legacy-agent-token"
        assert set(sealed.key_usage(session)) == {keyring.primary_id}
    context.engine.dispose()


T8_TOKEN = column_binding(Toolbox.agent_token_ciphertext, "t8")


def test_reseal_moves_every_secret_to_the_first_key(database: str) -> None:
    old, new = generate_master_key(), generate_master_key()
    context = opened(database, old)
    with session_scope(context.sessions) as session:
        session.add(
            Toolbox(
                id="t8",
                droplet_id=8,
                name="toolbox-8",
                agent_token_ciphertext=Keyring.parse(old, origin="t").seal("tok", T8_TOKEN),
            )
        )
    both = Keyring.parse(f"{new},{old}", origin="t")
    with session_scope(context.sessions) as session:
        report = sealed.reseal_all(session, both)
    assert (report.total, sum(report.resealed.values())) == (2, 2)  # agent token + check value
    with session_scope(context.sessions) as session:
        assert set(sealed.key_usage(session)) == {both.primary_id}
        assert (
            Keyring.parse(new, origin="t").unseal(
                session.scalars(select(Toolbox.agent_token_ciphertext)).one(), T8_TOKEN
            )
            == "tok"
        )
    context.engine.dispose()


def test_service_refuses_to_start_with_a_malformed_master_key(tmp_path: Path) -> None:
    malformed = "this-is-not-a-master-key"
    env = {
        **os.environ,
        "DTMA_DATABASE_URL": f"sqlite:///{tmp_path / 'console.db'}",
        "DTMA_MASTER_KEY": malformed,
        "DTMA_HOST": "127.0.0.1",
        "DTMA_PORT": str(free_port()),
    }
    served = subprocess.run(
        [str(CLI), "serve"], env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path
    )
    assert served.returncode != 0
    output = served.stdout + served.stderr
    assert "vault_refused_to_start" in output
    assert "DTMA_MASTER_KEY is malformed: entry 1 of 1" in output
    assert malformed not in output
    assert "Application startup failed" in output
