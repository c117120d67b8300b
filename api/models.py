"""Database tables. API schemas live apart (api/schemas.py); these are storage only."""

from __future__ import annotations

import importlib
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

# Stable constraint names so that Alembic migrations are the same on SQLite and PostgreSQL.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    return uuid.uuid4().hex


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware everywhere: stored as UTC, and SQLite (which forgets the zone) gets
    it put back on read."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class User(Base):
    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(64), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ApiToken(Base):
    """Only the SHA-256 of a token is kept; the token itself is shown once at creation."""

    __tablename__ = "api_tokens"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # What the token is for, as its owner named it (`token create --label`).
    label: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # Recorded to the minute (api/auth.py), not on every request.
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # None: never expires. Past it the token gets 401 `token_expired`.
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    user: Mapped[User] = relationship()


class ExternalIdentity(Base):
    """A user vouched for by a JWT issuer: (issuer, subject) names it, and it maps to a
    console user of its own, made at its first call, so a token from outside can never
    become a local user or an admin by choosing its `sub`."""

    __tablename__ = "external_identities"
    __table_args__ = (UniqueConstraint("issuer", "subject"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    issuer: Mapped[str] = mapped_column(String(512))
    subject: Mapped[str] = mapped_column(String(255))
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    user: Mapped[User] = relationship()


class Toolbox(Base):
    """A droplet tagged as a toolbox, as imported from the DigitalOcean API."""

    __tablename__ = "toolboxes"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    droplet_id: Mapped[int] = mapped_column(BigInteger, unique=True)
    name: Mapped[str] = mapped_column(String(255), index=True)
    owner_id: Mapped[str | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), index=True
    )
    address: Mapped[str | None] = mapped_column(String(64))
    region: Mapped[str | None] = mapped_column(String(64))
    droplet_status: Mapped[str | None] = mapped_column(String(32))
    # up | down | refused | unreachable | unknown: what the last look at the agent found.
    status: Mapped[str] = mapped_column(String(32), default="unknown")
    agent_version: Mapped[str | None] = mapped_column(String(64))
    last_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_error: Mapped[str | None] = mapped_column(Text)
    # The bearer token of this toolbox's agent, as ciphertext (api/secrets.py).
    agent_token_ciphertext: Mapped[str] = mapped_column(Text)
    # How the console trusts the agent, learnt over pinned SSH (api/services/toolboxes.py):
    # agent_tls true with agent_certificate (PEM) the pinned certificate; false: the droplet
    # serves plain HTTP on purpose; None: not learnt yet.
    agent_tls: Mapped[bool | None] = mapped_column(Boolean)
    agent_certificate: Mapped[str | None] = mapped_column(Text)
    # OpenSSH known_hosts lines pinning this droplet's host keys, once recorded.
    known_hosts: Mapped[str | None] = mapped_column(Text)
    # Last answers of the agent (or the SSH probe): {"status": {...}, "system": {...}}, each
    # with its source and observed_at; served marked stale when nothing fresher answers.
    last_state: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # The run holding this toolbox's lock; set and cleared with conditional UPDATEs.
    active_run_id: Mapped[str | None] = mapped_column(String(32))
    # When a run holding the lock last freed it (api/services/run_store.py): an answer
    # observed before then is never reused as fresh (api/services/observe.py).
    run_ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)
    # Set when the droplet no longer appears in the DigitalOcean API.
    removed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # The droplet's DigitalOcean tags as the last sync saw them (rollout targets by tag).
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)

    owner: Mapped[User | None] = relationship()
    tool_instances: Mapped[list[ToolInstance]] = relationship(
        back_populates="toolbox", cascade="all, delete-orphan", order_by="ToolInstance.name"
    )


class ToolInstance(Base):
    """A managed container (label dtma.managed=true) on a toolbox."""

    __tablename__ = "tool_instances"
    __table_args__ = (UniqueConstraint("toolbox_id", "name"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    toolbox_id: Mapped[str] = mapped_column(ForeignKey("toolboxes.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(64))
    image: Mapped[str | None] = mapped_column(String(512))
    container_id: Mapped[str | None] = mapped_column(String(128))
    state: Mapped[str] = mapped_column(String(32), default="unknown")
    status_text: Mapped[str | None] = mapped_column(String(255))
    ports: Mapped[list[Any]] = mapped_column(JSON, default=list)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    restart_count: Mapped[int] = mapped_column(Integer, default=0)
    # An operator stopped it through the console: recovery must leave it alone.
    stopped_on_purpose: Mapped[bool] = mapped_column(Boolean, default=False)
    observed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    removed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    toolbox: Mapped[Toolbox] = relationship(back_populates="tool_instances")


class Run(Base):
    """One console action executed as a playbook run. Stored before it starts."""

    __tablename__ = "runs"
    __table_args__ = (Index("ix_runs_toolbox_created", "toolbox_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    toolbox_id: Mapped[str | None] = mapped_column(ForeignKey("toolboxes.id", ondelete="SET NULL"))
    user_id: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    action: Mapped[str] = mapped_column(String(64))
    playbook: Mapped[str] = mapped_column(String(128))
    # The request with secrets replaced by a marker: hosts, extravars, check, timeout.
    request: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # queued | running | successful | failed | unreachable | timeout | canceled | error
    # | interrupted
    status: Mapped[str] = mapped_column(String(32), default="queued", index=True)
    success: Mapped[bool | None] = mapped_column(Boolean)
    message: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # The lease: `<hostname>:<pid>` of the process executing the run, and its last beat.
    owner: Mapped[str | None] = mapped_column(String(300))
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # The run's extra variables sealed with the master key, for a worker in another
    # process (DTMA_EXECUTOR=celery); cleared when the run ends.
    extravars_sealed: Mapped[str | None] = mapped_column(Text)
    # Set by a cancel from any console process; the owner stops the run when it sees it.
    cancel_requested_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    toolbox: Mapped[Toolbox | None] = relationship()


class RunEvent(Base):
    __tablename__ = "run_events"
    __table_args__ = (UniqueConstraint("run_id", "seq"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(Integer)
    type: Mapped[str] = mapped_column(String(64))
    host: Mapped[str | None] = mapped_column(String(255))
    task: Mapped[str | None] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class AuditEntry(Base):
    """Who did what to which toolbox, with which (redacted) parameters, and how it ended."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    user_id: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    actor: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(64))
    toolbox_id: Mapped[str | None] = mapped_column(String(32), index=True)
    run_id: Mapped[str | None] = mapped_column(String(32))
    parameters: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # accepted | successful | failed | ... | rejected, with detail in `detail`.
    outcome: Mapped[str] = mapped_column(String(32))
    detail: Mapped[str | None] = mapped_column(Text)
    request_id: Mapped[str | None] = mapped_column(String(64))


class Rollout(Base):
    """One action over many toolboxes in batches: one run (`run_id`) of the action's
    playbook with `serial`. Host states are read from that run's events
    (runner/rollout.py); `hosts` keeps the plan and the toolboxes skipped at the start."""

    __tablename__ = "rollouts"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    user_id: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    action: Mapped[str] = mapped_column(String(64))
    # The target as asked ({"tag": "dtma"}, ...), the batching, the action's public inputs.
    target: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    batch_size: Mapped[str] = mapped_column(String(16))
    batch_hosts: Mapped[int] = mapped_column(Integer)
    canary: Mapped[bool] = mapped_column(Boolean, default=True)
    max_failures: Mapped[int] = mapped_column(Integer, default=0)
    parameters: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # [{"toolbox_id", "name", "batch", "skipped": reason | null}], in batch order.
    hosts: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    run_id: Mapped[str | None] = mapped_column(ForeignKey("runs.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    # Set by a cancel: the run stops when its next batch would start.
    cancel_requested_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    run: Mapped[Run | None] = relationship()


def load_all_models() -> MetaData:
    """Import every `models.py` of the api package (api/web/models.py, ...) so that
    Base.metadata knows every table: what migrations and schema checks compare against."""
    package = Path(__file__).resolve().parent
    for path in sorted(package.rglob("models.py")):
        parts = path.relative_to(package.parent).with_suffix("").parts
        importlib.import_module(".".join(parts))
    return Base.metadata
