"""The vault as the console's source of SSH credentials (api/services/credentials.py).

A toolbox is reached with its own key once it has one; before that (bootstrap) with the
operator key the droplet was created with (DTMA_SSH_KEY_FILE). Host keys are the ones
pinned for it (api/vault/hostkeys.py), else the operator's DTMA_KNOWN_HOSTS_FILE; with
neither, the first contact records them (trust on first use). Keys are unsealed at each
call and live only in the returned object.
"""

from __future__ import annotations

import logging

from sqlalchemy.orm import Session, object_session, sessionmaker

from api.db import session_scope
from api.errors import ApiError
from api.models import Toolbox
from api.secret_box import SecretBox
from api.services.credentials import OperatorKeySource, SshCredentials
from api.settings import Settings
from api.vault import hostkeys, keystore

log = logging.getLogger("api.vault")


class VaultCredentialSource:
    """Called from worker threads (it may scan a host key on first contact)."""

    def __init__(
        self, settings: Settings, sessions: sessionmaker[Session], secrets: SecretBox
    ) -> None:
        self._settings = settings
        self._sessions = sessions
        self._secrets = secrets
        self._bootstrap = OperatorKeySource(settings)

    def for_toolbox(self, toolbox: Toolbox) -> SshCredentials:
        session = object_session(toolbox)
        if session is not None:
            found = self._read(session, toolbox)
        else:
            with self._sessions() as own:
                found = self._read(own, toolbox)
        if found.known_hosts is None and toolbox.address:
            return SshCredentials(found.private_key, self._first_contact(toolbox.id))
        return found

    def _read(self, session: Session, toolbox: Toolbox) -> SshCredentials:
        key = keystore.active_key(session, toolbox.id)
        pins = hostkeys.pinned(session, toolbox.id)
        known_hosts = hostkeys.known_hosts(toolbox.address, pins) if toolbox.address else None
        if key is not None and known_hosts is not None:
            return SshCredentials(keystore.private_key(self._secrets, key), known_hosts)
        fallback = self._bootstrap.for_toolbox(toolbox)
        own = keystore.private_key(self._secrets, key) if key is not None else None
        return SshCredentials(
            private_key=own if own is not None else fallback.private_key,
            known_hosts=known_hosts or fallback.known_hosts,
        )

    def _first_contact(self, toolbox_id: str) -> str | None:
        """Pin what the droplet offers now; None (no pins: the run's ssh refuses an unknown
        host) when it does not answer."""
        try:
            with session_scope(self._sessions) as session:
                toolbox = session.get(Toolbox, toolbox_id)
                if toolbox is None or not toolbox.address:
                    return None
                timeout = self._settings.ssh_keyscan_timeout
                hostkeys.pin_on_first_contact(session, toolbox, timeout)
                return hostkeys.known_hosts(toolbox.address, hostkeys.pinned(session, toolbox.id))
        except ApiError as error:
            log.warning(
                "host_key_first_contact_failed",
                extra={"toolbox_id": toolbox_id, "reason": error.message},
            )
            return None
