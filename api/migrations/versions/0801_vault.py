"""key vault: per-toolbox SSH keys, pinned host keys, master-key check

Revision ID: 0801_vault
Revises: 0901_monitoring
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0801_vault"
down_revision = "0901_monitoring"
branch_labels = None
depends_on = None


def _toolbox_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["toolbox_id"],
        ["toolboxes.id"],
        name=op.f(f"fk_{table}_toolbox_id_toolboxes"),
        ondelete="CASCADE",
    )


def upgrade() -> None:
    op.create_table(
        "toolbox_ssh_keys",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("toolbox_id", sa.String(length=32), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("public_key", sa.Text(), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("private_key_sealed", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("activated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("retired_at", sa.DateTime(timezone=True), nullable=True),
        _toolbox_fk("toolbox_ssh_keys"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_toolbox_ssh_keys")),
    )
    with op.batch_alter_table("toolbox_ssh_keys", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_toolbox_ssh_keys_toolbox_id"), ["toolbox_id"], unique=False
        )

    op.create_table(
        "toolbox_host_keys",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("toolbox_id", sa.String(length=32), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("key_type", sa.String(length=64), nullable=False),
        sa.Column("public_key", sa.Text(), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("recorded_by", sa.String(length=128), nullable=False),
        sa.Column("replaced_at", sa.DateTime(timezone=True), nullable=True),
        _toolbox_fk("toolbox_host_keys"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_toolbox_host_keys")),
    )
    with op.batch_alter_table("toolbox_host_keys", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_toolbox_host_keys_toolbox_id"), ["toolbox_id"], unique=False
        )

    op.create_table(
        "vault_check",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("sealed", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_vault_check")),
    )


def downgrade() -> None:
    op.drop_table("vault_check")
    with op.batch_alter_table("toolbox_host_keys", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_toolbox_host_keys_toolbox_id"))
    op.drop_table("toolbox_host_keys")
    with op.batch_alter_table("toolbox_ssh_keys", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_toolbox_ssh_keys_toolbox_id"))
    op.drop_table("toolbox_ssh_keys")
