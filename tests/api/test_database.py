"""The schema: migrations produce exactly the models on SQLite and PostgreSQL, both ways."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, select

from api import migrate
from api.db import make_engine, session_scope
from api.models import RunEvent, Toolbox, User, load_all_models
from api.secret_box import SecretBox
from api.settings import Settings
from api.vault.crypto import Keyring, generate_master_key


def test_migrations_create_exactly_the_models(empty_database_url: str) -> None:
    engine = make_engine(Settings(database_url=empty_database_url))
    migrate.upgrade(engine)
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, load_all_models()) == []
    engine.dispose()


def test_migrations_downgrade_to_nothing_and_back(empty_database_url: str) -> None:
    engine = make_engine(Settings(database_url=empty_database_url))
    migrate.upgrade(engine)
    migrate.downgrade(engine, "base")
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    migrate.upgrade(engine)
    assert {"users", "toolboxes", "runs", "run_events", "audit_log"} <= set(
        inspect(engine).get_table_names()
    )
    engine.dispose()


def test_datetimes_come_back_timezone_aware_and_json_round_trips(empty_database_url: str) -> None:
    settings = Settings(database_url=empty_database_url)
    engine = make_engine(settings)
    migrate.upgrade(engine)
    from api.db import make_session_factory

    sessions = make_session_factory(engine)
    with session_scope(sessions) as session:
        owner = User(name="carol")
        session.add(owner)
        session.flush()
        toolbox = Toolbox(
            droplet_id=2**40,
            name="toolbox-x",
            owner_id=owner.id,
            last_state={"status": {"source": "agent"}},
        )
        secrets = SecretBox(Keyring.parse(generate_master_key(), origin="test"))
        secrets.seal_into(toolbox, Toolbox.agent_token_ciphertext, "t")
        session.add(toolbox)
    with session_scope(sessions) as session:
        stored = session.scalar(select(Toolbox).where(Toolbox.name == "toolbox-x"))
        assert stored is not None
        assert stored.droplet_id == 2**40
        assert stored.created_at.tzinfo is not None
        assert stored.last_state == {"status": {"source": "agent"}}
        assert stored.owner is not None and stored.owner.name == "carol"
    engine.dispose()


def test_run_event_sequence_is_unique_per_run(empty_database_url: str) -> None:
    import pytest
    from sqlalchemy.exc import IntegrityError

    from api.models import Run, utcnow

    engine = make_engine(Settings(database_url=empty_database_url))
    migrate.upgrade(engine)
    from api.db import make_session_factory

    sessions = make_session_factory(engine)
    with session_scope(sessions) as session:
        run = Run(action="tool.restart", playbook="tool_restart.yml")
        session.add(run)
        session.flush()
        session.add(RunEvent(run_id=run.id, seq=1, type="run_start", at=utcnow()))
        run_id = run.id
    with pytest.raises(IntegrityError), session_scope(sessions) as session:
        session.add(RunEvent(run_id=run_id, seq=1, type="run_start", at=utcnow()))
    engine.dispose()
