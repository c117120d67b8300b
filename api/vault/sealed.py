"""Every column that holds a sealed secret, and the operations over all of them: checking
that the configured master keys open them, and re-sealing them under the primary key (each
value for its own table, column and row: api/secret_box.py)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import inspect, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from api.models import Run, Toolbox
from api.secret_box import column_binding
from api.vault.crypto import FORMAT_V1, Keyring, SealError, sealed_key_id, sealed_version
from api.vault.models import RegistryCredential, ToolboxSshKey, VaultCheck

# Written by api/secret_box.py before the vault existed: not encrypted, only marked.
LEGACY_PLAIN = "plain:"

SEALED_COLUMNS: tuple[InstrumentedAttribute[Any], ...] = (
    Toolbox.agent_token_ciphertext,
    ToolboxSshKey.private_key_sealed,
    Run.extravars_sealed,  # only while a run waits for or runs on a worker
    VaultCheck.sealed,
    RegistryCredential.password_sealed,
)


def _rows(session: Session, column: InstrumentedAttribute[Any]) -> list[Any]:
    model = column.class_
    return list(session.scalars(select(model).where(column.is_not(None))))


def key_usage(session: Session) -> Counter[str]:
    """How many stored secrets each master key id seals ("plain" for legacy values)."""
    usage: Counter[str] = Counter()
    for column in SEALED_COLUMNS:
        for value in session.scalars(select(column).where(column.is_not(None))):
            usage["plain" if value.startswith(LEGACY_PLAIN) else _key_id(value)] += 1
    return usage


def _key_id(value: str) -> str:
    try:
        return sealed_key_id(value)
    except SealError:
        return "unknown-format"


@dataclass
class ResealReport:
    resealed: Counter[str] = field(default_factory=Counter)  # by the key id they were under
    total: int = 0

    def summary(self, primary: str) -> str:
        if not self.resealed:
            return f"all {self.total} stored secrets were already sealed with master key {primary}"
        moved = ", ".join(f"{n} from {k}" for k, n in sorted(self.resealed.items()))
        return (
            f"re-sealed {sum(self.resealed.values())} of {self.total} stored secrets with "
            f"master key {primary} ({moved})"
        )


def _binding(row: Any, column: InstrumentedAttribute[Any]) -> str:
    mapper = inspect(type(row))
    [key] = mapper.primary_key
    return column_binding(column, getattr(row, mapper.get_property_by_column(key).key))


def _open(keyring: Keyring, value: str, binding: str) -> tuple[str, str]:
    """(plaintext, what it was under: "plain" or a key id) of a stored value in any
    format this console ever wrote."""
    if value.startswith(LEGACY_PLAIN):
        return value.removeprefix(LEGACY_PLAIN), "plain"
    if sealed_version(value) == FORMAT_V1:
        return keyring.unseal_v1(value), sealed_key_id(value)
    return keyring.unseal(value, binding), sealed_key_id(value)


def reseal_all(session: Session, keyring: Keyring) -> ResealReport:
    """Every sealed value not under the primary key, re-sealed under it (in the caller's
    transaction: all or nothing). SealError if any value cannot be opened."""
    report = ResealReport()
    for column in SEALED_COLUMNS:
        for row in _rows(session, column):
            value = getattr(row, column.key)
            report.total += 1
            if not keyring.needs_reseal(value):
                continue
            binding = _binding(row, column)
            plaintext, origin = _open(keyring, value, binding)
            setattr(row, column.key, keyring.seal(plaintext, binding))
            report.resealed[origin] += 1
    session.flush()
    return report


def reseal_legacy(session: Session, keyring: Keyring) -> int:
    """Seal the `plain:` values written before the vault existed. Returns how many."""
    count = 0
    for column in SEALED_COLUMNS:
        for row in _rows(session, column):
            value = getattr(row, column.key)
            if value.startswith(LEGACY_PLAIN):
                plaintext = value.removeprefix(LEGACY_PLAIN)
                setattr(row, column.key, keyring.seal(plaintext, _binding(row, column)))
                count += 1
    session.flush()
    return count
