"""Authenticated encryption of secrets at rest, keyed by the master key(s).

A master key is 32 random bytes written as URL-safe base64 (44 characters). Several keys
may be configured, comma-separated: the first seals, every one of them unseals, so the
master key can be rotated (`dtma-console keys rotate-master`) without a moment in which
stored secrets cannot be read.

A sealed value is `v2:<key id>:<base64(nonce || AES-256-GCM ciphertext+tag)>`. The key id
(first 8 hex digits of the SHA-256 of the key) names the master key without revealing it,
so unsealing never guesses and rotation can tell which rows still use an old key.

Every value is sealed for one place, its *binding* (`table.column/row id`, see
api/secret_box.py), which is the AES-GCM associated data: a sealed value copied into another
row or column (an agent token pasted over another toolbox's, a key moved to another
toolbox) does not open there. `v1` values (before bindings, one fixed associated data) are
opened only by the migration that re-sealed them (1402_vault_bindings).
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

FORMAT = "v2"
FORMAT_V1 = "v1"
KEY_BYTES = 32
NONCE_BYTES = 12
# Binds every ciphertext to this scheme (and, from v2 on, to its binding).
_AAD_V2 = b"dtma-vault-v2\x00"
_AAD_V1 = b"dtma-vault-v1"


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

    def seal(self, plaintext: str, binding: str) -> str:
        """`plaintext` sealed for the place named by `binding` under the primary key."""
        return self._seal(plaintext, FORMAT, _aad(binding))

    def unseal(self, sealed: str, binding: str) -> str:
        """The plaintext of a value sealed for `binding`; SealError for any other place,
        an unknown key, a v1 value or an altered one."""
        return self._open(sealed, FORMAT, _aad(binding))

    def seal_v1(self, plaintext: str) -> str:
        """A v1 value (no binding): only for downgrading the 1402_vault_bindings migration."""
        return self._seal(plaintext, FORMAT_V1, _AAD_V1)

    def unseal_v1(self, sealed: str) -> str:
        """A v1 value's plaintext: only for the 1402_vault_bindings migration (re-sealing)."""
        return self._open(sealed, FORMAT_V1, _AAD_V1)

    def _seal(self, plaintext: str, version: str, aad: bytes) -> str:
        key = self._keys[0]
        nonce = os.urandom(NONCE_BYTES)
        blob = nonce + key.aead.encrypt(nonce, plaintext.encode(), aad)
        return f"{version}:{key.id}:{base64.b64encode(blob).decode()}"

    def _open(self, sealed: str, version: str, aad: bytes) -> str:
        found_version, found_id = sealed_version(sealed), sealed_key_id(sealed)
        if found_version != version:
            raise SealError(f"value is sealed in format {found_version}, {version} expected")
        key = self._by_id.get(found_id)
        if key is None:
            raise SealError(
                f"sealed with master key {found_id}, which is not configured "
                f"(configured: {', '.join(self.key_ids)})"
            )
        try:
            blob = base64.b64decode(sealed.split(":", 2)[2], validate=True)
            return key.aead.decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], aad).decode()
        except (InvalidTag, binascii.Error, ValueError) as error:
            raise SealError(
                f"sealed value does not verify under master key {found_id}: it was altered, "
                "sealed for another row or column, or the key with that id is not the one "
                "that sealed it"
            ) from error

    def needs_reseal(self, sealed: str) -> bool:
        """True when `sealed` is not a current-format value under the primary key."""
        try:
            return sealed_version(sealed) != FORMAT or sealed_key_id(sealed) != self.primary_id
        except SealError:
            return True


def _aad(binding: str) -> bytes:
    if not binding:
        raise ValueError("a sealed value needs a binding (table.column/row id)")
    return _AAD_V2 + binding.encode()


def _parts(sealed: str) -> list[str]:
    parts = sealed.split(":", 2)
    if len(parts) != 3 or parts[0] not in (FORMAT, FORMAT_V1) or len(parts[1]) != 8:
        raise SealError("value is not in the vault's sealed format")
    return parts


def sealed_version(sealed: str) -> str:
    return _parts(sealed)[0]


def sealed_key_id(sealed: str) -> str:
    return _parts(sealed)[1]
