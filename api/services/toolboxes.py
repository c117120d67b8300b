"""Toolboxes in the database: imported from the DigitalOcean API, listed per owner."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from api.errors import InvalidInput
from api.models import Toolbox, User, utcnow
from api.secret_box import seal
from api.services.digitalocean import DropletInfo

# A droplet tagged `dtma-owner:<user name>` belongs to that user when it is imported.
OWNER_TAG_PREFIX = "dtma-owner:"


@dataclass
class ImportReport:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"{len(self.created)} created, {len(self.updated)} updated, {len(self.removed)} removed"
        )


def new_agent_token() -> str:
    return secrets.token_urlsafe(32)


def _owner_from_tags(session: Session, tags: tuple[str, ...]) -> User | None:
    for tag in tags:
        if tag.startswith(OWNER_TAG_PREFIX):
            name = tag.removeprefix(OWNER_TAG_PREFIX)
            return session.scalar(select(User).where(User.name == name))
    return None


def import_droplets(session: Session, droplets: list[DropletInfo]) -> ImportReport:
    """Upsert every listed droplet; toolboxes whose droplet vanished are marked removed.

    The caller commits. A new toolbox gets its own agent token, sealed at rest.
    """
    report = ImportReport()
    existing = {t.droplet_id: t for t in session.scalars(select(Toolbox))}
    listed = set()
    now = utcnow()
    for droplet in droplets:
        listed.add(droplet.id)
        toolbox = existing.get(droplet.id)
        if toolbox is None:
            toolbox = Toolbox(droplet_id=droplet.id, agent_token_ciphertext=seal(new_agent_token()))
            session.add(toolbox)
            report.created.append(droplet.name)
        else:
            report.updated.append(droplet.name)
        toolbox.name = droplet.name
        toolbox.address = droplet.public_ipv4
        toolbox.region = droplet.region
        toolbox.droplet_status = droplet.status
        toolbox.removed_at = None
        owner = _owner_from_tags(session, droplet.tags)
        if owner is not None:
            toolbox.owner_id = owner.id
    for droplet_id, toolbox in existing.items():
        if droplet_id not in listed and toolbox.removed_at is None:
            toolbox.removed_at = now
            toolbox.droplet_status = "removed"
            report.removed.append(toolbox.name)
    session.flush()
    return report


def list_toolboxes(session: Session, user: User, *, include_removed: bool) -> list[Toolbox]:
    query = select(Toolbox).order_by(Toolbox.name, Toolbox.droplet_id)
    if not user.is_admin:
        query = query.where(Toolbox.owner_id == user.id)
    if not include_removed:
        query = query.where(Toolbox.removed_at.is_(None))
    return list(session.scalars(query))


def assign_owner(session: Session, toolbox: Toolbox, owner_name: str | None) -> None:
    if owner_name is None:
        toolbox.owner_id = None
        return
    owner = session.scalar(select(User).where(User.name == owner_name))
    if owner is None:
        raise InvalidInput("owner", f"no user named '{owner_name}'")
    toolbox.owner_id = owner.id
