"""The one place where secrets are sealed before they are stored, and unsealed on use.

Columns that hold a secret (a toolbox's agent token today, SSH private keys later) store
`seal(value)` and nothing else. The key vault (issue 8) replaces this module's body with
authenticated encryption keyed by DTMA_MASTER_KEY; callers do not change.

Until then the value is only marked, not encrypted: `plain:` rows are what the vault's
first migration re-encrypts.
"""

from __future__ import annotations

_PLAIN = "plain:"


def seal(plaintext: str) -> str:
    return _PLAIN + plaintext


def unseal(sealed: str) -> str:
    if not sealed.startswith(_PLAIN):
        raise ValueError("sealed value in an unknown format")
    return sealed.removeprefix(_PLAIN)
