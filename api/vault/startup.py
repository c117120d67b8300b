"""Opening the vault when the service (or a command) starts: load the master keys and make
sure they open this database's secrets (Context.open_vault then seals with them and makes
the vault the console's credential source).

A malformed key, or keys that do not open what is stored, stop the start with a
MasterKeyError that says what is wrong (and never contains key material).
"""

from __future__ import annotations

import logging
import secrets

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from api.context import Context
from api.db import session_scope
from api.secret_box import column_binding
from api.settings import Settings
from api.vault import sealed
from api.vault.crypto import MasterKeyError, SealError
from api.vault.master import LoadedKeyring, load_keyring
from api.vault.models import VaultCheck

log = logging.getLogger("api.vault")

_CHECK_ID = 1


def _refuse(origin: str, detail: str) -> MasterKeyError:
    return MasterKeyError(
        f"{origin} does not open this database's secrets: {detail}. Start with the master "
        "key this database was sealed with; to change it, configure 'NEW,OLD' and run "
        "`dtma-console keys rotate-master`."
    )


def verify_database(session: Session, loaded: LoadedKeyring) -> int:
    """MasterKeyError unless the keyring opens the stored secrets. Seals legacy `plain:`
    values and records the check value on first use. Returns how many it sealed."""
    keyring = loaded.keyring
    check = session.get(VaultCheck, _CHECK_ID)
    binding = column_binding(VaultCheck.sealed, _CHECK_ID)
    if check is None:
        check_value = keyring.seal(secrets.token_hex(16), binding)
        session.add(VaultCheck(id=_CHECK_ID, sealed=check_value))
        session.flush()
    else:
        try:
            keyring.unseal(check.sealed, binding)
        except SealError as error:
            raise _refuse(loaded.origin, str(error)) from None
    unknown = {
        key_id: count
        for key_id, count in sealed.key_usage(session).items()
        if key_id not in keyring.key_ids and key_id != "plain"
    }
    if unknown:
        listed = ", ".join(f"{n} sealed with {k}" for k, n in sorted(unknown.items()))
        raise _refuse(
            loaded.origin,
            f"stored secrets use other keys ({listed}; configured: {', '.join(keyring.key_ids)})",
        )
    return sealed.reseal_legacy(session, keyring)


def verified_keyring(settings: Settings, sessions: sessionmaker[Session]) -> LoadedKeyring:
    """The configured master keys, once they are known to open this database's secrets."""
    loaded = load_keyring(settings)
    for attempt in (1, 2):
        try:
            with session_scope(sessions) as session:
                count = verify_database(session, loaded)
            break
        except IntegrityError:  # another process recorded the check value first
            if attempt == 2:
                raise
    log.info(
        "vault_opened",
        extra={
            "master_key_source": loaded.origin,
            "primary_key_id": loaded.keyring.primary_id,
            "key_ids": loaded.keyring.key_ids,
            "legacy_secrets_sealed": count,
        },
    )
    return loaded


def open_vault(context: Context) -> None:
    """The app's start-up hook (Context.open_vault). Refuses to start with a
    MasterKeyError, logged on one line first, when the keys are malformed or do not open
    this database."""
    try:
        context.open_vault()
    except MasterKeyError as error:
        log.critical("vault_refused_to_start", extra={"reason": str(error)})
        raise
