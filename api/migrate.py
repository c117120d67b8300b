"""Database migrations (Alembic, scripts in api/migrations/), configured in code.

dtma-console db upgrade        # or: alembic -c api/alembic.ini upgrade head
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine, text

if TYPE_CHECKING:
    from alembic.config import Config

    from api.settings import Settings

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
# PostgreSQL advisory lock: console processes starting together migrate one after another.
MIGRATION_LOCK_KEY = 0x64746D61_0000


def alembic_config() -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def upgrade(engine: Engine, revision: str = "heads", *, settings: Settings | None = None) -> None:
    """To `revision`; by default every head (features add their own migration branches).
    A migration that re-seals secrets loads the master keys from `settings` (the
    context's; the environment's when None), only when there is something to re-seal.
    At every head already (a console's start on a migrated database), nothing runs:
    `pending` is the check Alembic's upgrade would make, without loading its migration
    environment (about 1 s of CPU for a command, api/README.md "Start-up cost")."""
    if revision == "heads" and not pending(engine):
        return
    from alembic import command

    config = alembic_config()
    config.attributes["settings"] = settings
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY}
            )
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def pending(engine: Engine) -> bool:
    """True when the database is not at every head of the migration scripts."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    with engine.connect() as connection:
        current = set(MigrationContext.configure(connection).get_current_heads())
    return current != set(ScriptDirectory.from_config(alembic_config()).get_heads())


def downgrade(engine: Engine, revision: str, *, settings: Settings | None = None) -> None:
    from alembic import command

    config = alembic_config()
    config.attributes["settings"] = settings
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, revision)
