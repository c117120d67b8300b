"""The one place where secrets are sealed before they are stored, and unsealed on use.

Columns that hold a secret (a toolbox's agent token, its SSH private key, a queued run's
extravars: api/vault/sealed.py lists them) store `seal(value, column, row id)` and nothing
else: AES-256-GCM under the master key (DTMA_MASTER_KEY, see api/vault/crypto.py), with
the table, column and row as associated data, so that a value copied to another row or
column does not open there. `plain:` values written before the vault existed are not
accepted here; the vault re-seals them when the service starts (api/vault/startup.py).

A SecretBox seals with the keyring it is given: the one its Context opened
(`context.secrets`, api/context.py). There is no process-wide keyring, so two consoles in
one process (tests, a worker beside a command) never seal with each other's keys.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import inspect
from sqlalchemy.orm import InstrumentedAttribute

from api.models import Base, new_id
from api.vault.crypto import Keyring

Column = InstrumentedAttribute[Any]


def binding(table: str, column: str, row_id: object) -> str:
    """The place a sealed value belongs to (the AES-GCM associated data)."""
    return f"{table}.{column}/{row_id}"


def column_binding(column: Column, row_id: object) -> str:
    table = column.class_.__tablename__
    return binding(table, column.property.columns[0].name, row_id)


def _row_id(row: Base) -> object:
    """The row's primary key, assigned now if the row is new (a binding needs it before
    the row is flushed)."""
    mapper = inspect(type(row))
    [column] = mapper.primary_key
    attribute = mapper.get_property_by_column(column).key
    value = getattr(row, attribute)
    if value is None:
        value = new_id()
        setattr(row, attribute, value)
    return value


class SecretBox:
    """Seals and unseals database columns with one keyring (the first key seals, every
    key unseals)."""

    def __init__(self, keyring: Keyring) -> None:
        self.keyring = keyring

    def seal(self, plaintext: str, column: Column, row_id: object) -> str:
        """`plaintext` sealed for `column` of the row `row_id` (its primary key)."""
        return self.keyring.seal(plaintext, column_binding(column, row_id))

    def unseal(self, sealed: str, column: Column, row_id: object) -> str:
        """The secret; SealError (a ValueError) when it cannot be opened with these keys or
        was sealed for another row or column."""
        return self.keyring.unseal(sealed, column_binding(column, row_id))

    def seal_into(self, row: Base, column: Column, plaintext: str) -> None:
        """Store `plaintext` sealed in `row`'s `column`."""
        setattr(row, column.key, self.seal(plaintext, column, _row_id(row)))

    def unseal_from(self, row: Base, column: Column) -> str:
        """The secret `row` holds in `column`."""
        sealed = getattr(row, column.key)
        if sealed is None:
            raise ValueError(f"{column_binding(column, _row_id(row))} holds no secret")
        return self.unseal(sealed, column, _row_id(row))
