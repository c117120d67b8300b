"""registry credentials: one login per private registry, the password sealed in the vault

Revision ID: 1701_registry_credentials
Revises: 1502_agent_tls_pin
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "1701_registry_credentials"
down_revision = "1502_agent_tls_pin"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "registry_credentials",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("username", sa.String(length=128), nullable=False),
        sa.Column("password_sealed", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.String(length=128), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_registry_credentials")),
        sa.UniqueConstraint("host", name=op.f("uq_registry_credentials_host")),
    )


def downgrade() -> None:
    op.drop_table("registry_credentials")
