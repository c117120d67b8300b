"""The vault as the console's source of SSH credentials (api/services/credentials.py).

A toolbox is reached with its own key once it has one; before that (bootstrap) with the
operator key the droplet was created with (DTMA_SSH_KEY_FILE). Host keys are the ones
pinned for it (api/vault/hostkeys.py); before the first contact, DTMA_KNOWN_HOSTS_FILE.
Keys are unsealed at each call and live only in the returned object.
"""

from __future__ import annotations

from sqlalchemy.orm import Session, object_session, sessionmaker

from api.models import Toolbox
from api.services.credentials import OperatorKeySource, SshCredentials
from api.settings import Settings
from api.vault import hostkeys, keystore


class VaultCredentialSource:
    def __init__(self, settings: Settings, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions
        self._bootstrap = OperatorKeySource(settings)

    def for_toolbox(self, toolbox: Toolbox) -> SshCredentials:
        session = object_session(toolbox)
        if session is not None:
            return self._read(session, toolbox)
        with self._sessions() as own:
            return self._read(own, toolbox)

    def _read(self, session: Session, toolbox: Toolbox) -> SshCredentials:
        key = keystore.active_key(session, toolbox.id)
        pins = hostkeys.pinned(session, toolbox.id)
        known_hosts = hostkeys.known_hosts(toolbox.address, pins) if toolbox.address else None
        if key is not None and known_hosts is not None:
            return SshCredentials(keystore.private_key(key), known_hosts)
        fallback = self._bootstrap.for_toolbox(toolbox)
        return SshCredentials(
            private_key=keystore.private_key(key) if key is not None else fallback.private_key,
            known_hosts=known_hosts or fallback.known_hosts,
        )
