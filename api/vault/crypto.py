"""Authenticated encryption of secrets at rest, keyed by the master key(s).

A master key is 32 random bytes written as URL-safe base64 (44 characters). Several keys
may be configured, comma-separated: the first seals, every one of them unseals, so the
master key can be rotated (`dtma-console keys rotate-master`) without a moment in which
stored secrets cannot be read.

A sealed value is `v1:<key id>:<base64(nonce || AES-256-GCM ciphertext+tag)>`. The key id
(first 8 hex digits of the SHA-256 of the key) names the master key without revealing it,
so unsealing never guesses and rotation can tell which rows still use an old key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import secrets
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

FORMAT = "v1"
KEY_BYTES = 32
NONCE_BYTES = 12
# Binds every ciphertext to this scheme: a blob made for something else does not verify.
_AAD = b"dtma-vault-v1"


class MasterKeyError(ValueError):
    """The configured master key is missing, malformed, or does not open this database."""


class SealError(ValueError):
    """A sealed value that cannot be opened: unknown format, unknown key, or tampered."""


def generate_master_key() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(KEY_BYTES)).decode()


def key_id(key: bytes) -> str:
    return hashlib.sha256(key).hexdigest()[:8]


def _decode_key(text: str) -> bytes | None:
    try:
        raw = base64.urlsafe_b64decode(text.encode("ascii"))
    except (binascii.Error, UnicodeEncodeError, ValueError):
        return None
    if len(raw) != KEY_BYTES or base64.urlsafe_b64encode(raw).decode() != text:
        return None
    return raw


@dataclass(frozen=True)
class _Key:
    id: str
    aead: AESGCM


class Keyring:
    """The configured master keys: the first seals, all of them unseal."""

    def __init__(self, keys: list[bytes]) -> None:
        if not keys:
            raise MasterKeyError("no master key configured")
        self._keys = [_Key(key_id(k), AESGCM(k)) for k in keys]
        self._by_id = {k.id: k for k in reversed(self._keys)}

    @classmethod
    def parse(cls, text: str, *, origin: str) -> Keyring:
        """Keys from `text` (comma-separated). The message of a MasterKeyError names the
        entry that is wrong and never contains any part of a key."""
        entries = [part.strip() for part in text.split(",")]
        if not any(entries):
            raise MasterKeyError(f"{origin} is empty")
        keys: list[bytes] = []
        for position, entry in enumerate(entries, start=1):
            raw = _decode_key(entry)
            if raw is None:
                raise MasterKeyError(
                    f"{origin} is malformed: entry {position} of {len(entries)} is not "
                    f"{KEY_BYTES} bytes of URL-safe base64 ({len(entry)} characters given, "
                    "44 expected). Generate a key with `dtma-console keys generate-master`."
                )
            keys.append(raw)
        return cls(keys)

    @property
    def primary_id(self) -> str:
        return self._keys[0].id

    @property
    def key_ids(self) -> list[str]:
        return [k.id for k in self._keys]

    def seal(self, plaintext: str) -> str:
        key = self._keys[0]
        nonce = os.urandom(NONCE_BYTES)
        blob = nonce + key.aead.encrypt(nonce, plaintext.encode(), _AAD)
        return f"{FORMAT}:{key.id}:{base64.b64encode(blob).decode()}"

    def unseal(self, sealed: str) -> str:
        found_id = sealed_key_id(sealed)
        key = self._by_id.get(found_id)
        if key is None:
            raise SealError(
                f"sealed with master key {found_id}, which is not configured "
                f"(configured: {', '.join(self.key_ids)})"
            )
        try:
            blob = base64.b64decode(sealed.split(":", 2)[2], validate=True)
            return key.aead.decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], _AAD).decode()
        except (InvalidTag, binascii.Error, ValueError) as error:
            raise SealError(
                f"sealed value does not verify under master key {found_id}: it was altered "
                "or the key with that id is not the one that sealed it"
            ) from error

    def needs_reseal(self, sealed: str) -> bool:
        """True when `sealed` is not under the primary key (or not sealed at all)."""
        try:
            return sealed_key_id(sealed) != self.primary_id
        except SealError:
            return True


def sealed_key_id(sealed: str) -> str:
    parts = sealed.split(":", 2)
    if len(parts) != 3 or parts[0] != FORMAT or len(parts[1]) != 8:
        raise SealError("value is not in the vault's sealed format")
    return parts[1]
