"""vault bindings: every sealed value re-sealed for its table, column and row (v1 -> v2)

v1 values were sealed with one fixed associated data, so a value copied into another row
or column (another toolbox's agent token, another toolbox's SSH key) opened there too. v2
binds each one to `table.column/row id` (api/secret_box.py). Needs the master key only
when there is something to re-seal: those of the settings api.migrate hands over (the
migrating context's), else DTMA_MASTER_KEY / DTMA_MASTER_KEY_FILE, as the service.

Revision ID: 1402_vault_bindings
Revises: 1801_metrics_history
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa
from alembic import context, op

from api.secret_box import binding
from api.settings import Settings
from api.vault.crypto import Keyring
from api.vault.master import load_keyring

revision = "1402_vault_bindings"
down_revision = "1801_metrics_history"
branch_labels = None
depends_on = None

# (table, sealed column): every column that ever held a vault-sealed value. runs'
# column exists once run leases are migrated (1501_run_leases); it is skipped before.
_SEALED = (
    ("toolboxes", "agent_token_ciphertext"),
    ("toolbox_ssh_keys", "private_key_sealed"),
    ("vault_check", "sealed"),
    ("runs", "extravars_sealed"),
)


def _keyring() -> Keyring:
    settings = context.config.attributes.get("settings")
    return load_keyring(settings if isinstance(settings, Settings) else Settings()).keyring


def _reseal(prefix: str, convert: Callable[[Keyring, str, str], str]) -> None:
    connection = op.get_bind()
    inspector = sa.inspect(connection)
    keyring: Keyring | None = None
    for table, column in _SEALED:
        if not inspector.has_table(table):
            continue
        if column not in {c["name"] for c in inspector.get_columns(table)}:
            continue
        rows = sa.table(table, sa.column("id"), sa.column(column))
        found = connection.execute(
            sa.select(rows.c.id, rows.c[column]).where(rows.c[column].like(f"{prefix}:%"))
        ).all()
        for row_id, value in found:
            keyring = keyring or _keyring()
            place = binding(table, column, row_id)
            connection.execute(
                sa.update(rows)
                .where(rows.c.id == row_id)
                .values({column: convert(keyring, value, place)})
            )


def upgrade() -> None:
    _reseal("v1", lambda keyring, value, place: keyring.seal(keyring.unseal_v1(value), place))


def downgrade() -> None:
    _reseal("v2", lambda keyring, value, place: keyring.seal_v1(keyring.unseal(value, place)))
