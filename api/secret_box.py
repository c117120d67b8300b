"""The one place where secrets are sealed before they are stored, and unsealed on use.

Columns that hold a secret (a toolbox's agent token, its SSH private key) store
`seal(value)` and nothing else: AES-256-GCM under the master key (DTMA_MASTER_KEY, see
api/vault/crypto.py). `plain:` values written before the vault existed are not accepted
here; the vault re-seals them when the service starts (api/vault/startup.py).
"""

from __future__ import annotations

from api.vault.master import active_keyring


def seal(plaintext: str) -> str:
    return active_keyring().seal(plaintext)


def unseal(sealed: str) -> str:
    """The secret; SealError (a ValueError) when it cannot be opened with the master keys."""
    return active_keyring().unseal(sealed)
