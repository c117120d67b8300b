"""Data at rest: no service without a master key kept apart from the data, the data
directory and database files private to the service, and every sealed value bound to its
table, column and row (migrated from v1)."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import select, text

from api import migrate
from api.context import Context
from api.db import make_engine, session_scope
from api.models import Toolbox
from api.secret_box import column_binding
from api.settings import Settings
from api.vault.crypto import Keyring, SealError, generate_master_key
from api.vault.master import GENERATE_COMMAND
from api.vault.models import ToolboxSshKey, VaultCheck
from tests.api.console import CLI, Console
from tests.api.server import free_port

MIGRATION = "1402_vault_bindings"


def keyless_env(database: Path, **extra: str) -> dict[str, str]:
    """The environment of a console started by someone who configured no master key."""
    env = {k: v for k, v in os.environ.items() if k not in ("DTMA_MASTER_KEY", "DTMA_DEMO")}
    env.pop("DTMA_MASTER_KEY_FILE", None)
    return {
        **env,
        "DTMA_DATABASE_URL": f"sqlite:///{database}",
        "DTMA_HOST": "127.0.0.1",
        "DTMA_PORT": str(free_port()),
        **extra,
    }


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_without_a_master_key_the_service_the_worker_and_commands_refuse_to_start(
    tmp_path: Path,
) -> None:
    env = keyless_env(tmp_path / "data" / "console.db")
    served = subprocess.run(
        [str(CLI), "serve"], env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path
    )
    output = served.stdout + served.stderr
    assert served.returncode != 0, output
    assert "vault_refused_to_start" in output and "no master key configured" in output
    assert GENERATE_COMMAND in output
    created = subprocess.run(
        [str(CLI), "token", "create", "--user", "ops"], env=env, capture_output=True,
        text=True, timeout=120, cwd=tmp_path,
    )  # fmt: skip
    assert created.returncode == 1 and created.stdout == ""
    assert "no master key configured" in created.stderr and GENERATE_COMMAND in created.stderr
    upgraded = subprocess.run(
        [str(CLI), "db", "upgrade"], env=env, capture_output=True, text=True, timeout=120,
        cwd=tmp_path,
    )  # fmt: skip
    assert upgraded.returncode == 0, upgraded.stderr  # a fresh database needs no key
    worker = subprocess.run(
        [str(CLI), "worker"], env={**env, "DTMA_BROKER_URL": "redis://127.0.0.1:9/0"},
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )  # fmt: skip
    assert worker.returncode == 1, worker.stdout + worker.stderr
    assert "no master key configured" in worker.stderr and GENERATE_COMMAND in worker.stderr
    assert not list(tmp_path.rglob("master.key"))  # nothing generated behind the operator
    # The advised generator needs no key itself and prints one the service accepts.
    generated = subprocess.run(
        [str(CLI), "keys", "generate-master"], env=env, capture_output=True, text=True,
        timeout=120, cwd=tmp_path,
    )  # fmt: skip
    assert generated.returncode == 0, generated.stderr
    Keyring.parse(generated.stdout.strip(), origin="generate-master")


def test_the_demo_console_makes_its_data_directory_0700_and_its_database_files_0600(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    env = keyless_env(data / "console.db", DTMA_DEMO="1")
    console = Console(env=env, log_path=tmp_path / "console.log")
    old_umask = os.umask(0o022)  # what a login shell has: files 0644 unless the service cares
    try:
        console.start()
    finally:
        os.umask(old_umask)
    try:
        created = console.cli("token", "create", "--user", "ops")  # a write: WAL in use
        assert created.returncode == 0, created.stderr
        files = {p.name: mode(p) for p in data.iterdir()}
    finally:
        console.stop()
    assert mode(data) == 0o700
    assert files == {
        "console.db": 0o600, "console.db-wal": 0o600, "console.db-shm": 0o600,
        "master.key": 0o600,
    }  # fmt: skip
    assert "master_key_generated" in console.log_path.read_text()


def test_database_files_an_older_console_left_readable_are_made_private(
    tmp_path: Path,
) -> None:
    database = tmp_path / "console.db"
    database.touch(mode=0o644)
    database.chmod(0o644)
    wal = tmp_path / "console.db-wal"
    wal.touch()
    wal.chmod(0o644)
    make_engine(Settings(database_url=f"sqlite:///{database}")).dispose()
    assert (mode(database), mode(wal)) == (0o600, 0o600)


@pytest.fixture
def before_bindings(tmp_path: Path) -> str:
    """A database at the revision before the bindings migration."""
    script = ScriptDirectory.from_config(migrate.alembic_config())
    previous = script.get_revision(MIGRATION).down_revision
    assert isinstance(previous, str)
    url = f"sqlite:///{tmp_path / 'console.db'}"
    engine = make_engine(Settings(database_url=url))
    migrate.upgrade(engine, previous)
    engine.dispose()
    return url


def test_the_migration_reseals_v1_values_bound_to_their_rows_and_back(
    before_bindings: str,
) -> None:
    key_text = generate_master_key()
    keyring = Keyring.parse(key_text, origin="test")
    # The migrating context's settings carry the key (none in the environment opens these).
    settings = Settings(database_url=before_bindings, master_key=key_text)
    engine = make_engine(settings)
    with engine.begin() as connection:
        for n in (1, 2):
            connection.execute(
                text(
                    "INSERT INTO toolboxes (id, droplet_id, name, status, agent_token_ciphertext,"
                    " last_state, created_at, updated_at) VALUES (:id, :n, :name, 'unknown', "
                    ":token, '{}', '2026-01-01', '2026-01-01')"
                ),
                {"id": f"t{n}", "n": n, "name": f"toolbox-{n}",
                 "token": keyring.seal_v1(f"agent-token-{n}")},
            )  # fmt: skip
        connection.execute(
            text(
                "INSERT INTO toolbox_ssh_keys (id, toolbox_id, state, public_key, fingerprint, "
                "private_key_sealed, created_at) VALUES ('k1', 't1', 'active', 'ssh-ed25519 A',"
                " 'SHA256:x', :key, '2026-01-01')"
            ),
            {"key": keyring.seal_v1("-----BEGIN OPENSSH PRIVATE KEY-----")},
        )
        connection.execute(
            text("INSERT INTO vault_check (id, sealed, created_at) VALUES (1, :v, '2026-01-01')"),
            {"v": keyring.seal_v1("check")},
        )
    migrate.upgrade(engine, settings=settings)
    with engine.connect() as connection:
        tokens = {
            row.id: row.agent_token_ciphertext
            for row in connection.execute(select(Toolbox.id, Toolbox.agent_token_ciphertext))
        }
        key = connection.scalar(select(ToolboxSshKey.private_key_sealed))
        check = connection.scalar(select(VaultCheck.sealed))
    assert all(v.startswith(f"v2:{keyring.primary_id}:") for v in [*tokens.values(), key, check])
    for n in (1, 2):
        place = column_binding(Toolbox.agent_token_ciphertext, f"t{n}")
        assert keyring.unseal(tokens[f"t{n}"], place) == f"agent-token-{n}"
    private = keyring.unseal(key, column_binding(ToolboxSshKey.private_key_sealed, "k1"))
    assert private == "-----BEGIN OPENSSH PRIVATE KEY-----"
    # toolbox-1's token pasted into toolbox-2's row does not open there.
    with pytest.raises(SealError):
        keyring.unseal(tokens["t1"], column_binding(Toolbox.agent_token_ciphertext, "t2"))
    # The migrated database opens with its key (the check value is bound too).
    context = Context.build(settings)
    context.open_vault()
    with session_scope(context.sessions) as session:
        toolbox = session.get(Toolbox, "t2")
        assert toolbox is not None
        token = context.secrets.unseal_from(toolbox, Toolbox.agent_token_ciphertext)
        assert token == "agent-token-2"
    context.close()
    previous = ScriptDirectory.from_config(migrate.alembic_config()).get_revision(MIGRATION)
    assert isinstance(previous.down_revision, str)
    migrate.downgrade(engine, previous.down_revision, settings=settings)
    with engine.connect() as connection:
        token = connection.scalar(select(Toolbox.agent_token_ciphertext).where(Toolbox.id == "t1"))
    assert token is not None and keyring.unseal_v1(token) == "agent-token-1"
    engine.dispose()
