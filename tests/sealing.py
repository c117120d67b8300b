"""Sealing rows that tests write straight into a console's database."""

from __future__ import annotations

from api.secret_box import SecretBox
from api.settings import Settings
from api.vault.master import load_keyring


def session_secrets() -> SecretBox:
    """Seals with the session's master key (DTMA_MASTER_KEY_FILE, tests/conftest.py): what
    a console started without a key of its own unseals with."""
    return SecretBox(load_keyring(Settings()).keyring)
