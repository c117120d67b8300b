"""Master keys, sealing and key pairs: no sandbox needed."""

from __future__ import annotations

import base64
import logging
import stat
import subprocess
from pathlib import Path

import pytest

from api.settings import Settings
from api.vault import sshkeys
from api.vault.crypto import Keyring, MasterKeyError, SealError, generate_master_key
from api.vault.master import load_keyring


def test_sealed_value_opens_with_the_key_and_is_not_the_plaintext() -> None:
    keyring = Keyring.parse(generate_master_key(), origin="test")
    sealed = keyring.seal("agent-token-123")
    assert sealed.startswith(f"v1:{keyring.primary_id}:")
    assert "agent-token-123" not in sealed
    assert keyring.unseal(sealed) == "agent-token-123"
    assert keyring.seal("agent-token-123") != sealed  # a fresh nonce every time


def test_first_key_seals_and_every_configured_key_unseals() -> None:
    old, new = generate_master_key(), generate_master_key()
    before = Keyring.parse(old, origin="test").seal("secret")
    both = Keyring.parse(f"{new}, {old}", origin="test")
    assert both.unseal(before) == "secret"
    assert both.needs_reseal(before)
    resealed = both.seal("secret")
    assert not both.needs_reseal(resealed)
    assert Keyring.parse(new, origin="test").unseal(resealed) == "secret"
    with pytest.raises(SealError, match="not configured"):
        Keyring.parse(old, origin="test").unseal(resealed)


def test_tampered_or_foreign_values_are_refused() -> None:
    keyring = Keyring.parse(generate_master_key(), origin="test")
    sealed = keyring.seal("secret")
    prefix, blob = sealed.rsplit(":", 1)
    raw = bytearray(base64.b64decode(blob))
    raw[-1] ^= 1
    with pytest.raises(SealError, match="does not verify"):
        keyring.unseal(f"{prefix}:{base64.b64encode(bytes(raw)).decode()}")
    with pytest.raises(SealError, match="sealed format"):
        keyring.unseal("plain:secret")


@pytest.mark.parametrize(
    ("configured", "problem"),
    [
        ("", "is empty"),
        ("tooshort", "entry 1 of 1"),
        (f"{generate_master_key()},c2hvcnQ=", "entry 2 of 2"),
        (generate_master_key()[:-2] + "!!", "entry 1 of 1"),
        (base64.urlsafe_b64encode(b"x" * 31).decode(), "entry 1 of 1"),
    ],
)
def test_malformed_master_keys_are_refused_without_echoing_them(
    configured: str, problem: str
) -> None:
    with pytest.raises(MasterKeyError, match=problem) as refused:
        Keyring.parse(configured, origin="DTMA_MASTER_KEY")
    message = str(refused.value)
    assert "DTMA_MASTER_KEY" in message
    for part in filter(None, configured.split(",")):
        assert part not in message


def test_demo_key_file_is_generated_once_with_mode_0600_and_announced(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(master_key=None, master_key_file=tmp_path / "data" / "master.key")
    with caplog.at_level(logging.WARNING, logger="api.vault"):
        first = load_keyring(settings)
    assert first.generated and first.file == settings.master_key_file
    assert stat.S_IMODE(settings.master_key_file.stat().st_mode) == 0o600
    assert any(r.getMessage() == "master_key_generated" for r in caplog.records)
    second = load_keyring(settings)
    assert not second.generated
    assert second.keyring.primary_id == first.keyring.primary_id


def test_key_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "master.key"
    path.write_text(generate_master_key())
    path.chmod(0o644)
    with pytest.raises(MasterKeyError, match="chmod 600"):
        load_keyring(Settings(master_key=None, master_key_file=path))


def test_configured_master_key_wins_over_the_key_file(tmp_path: Path) -> None:
    key = generate_master_key()
    loaded = load_keyring(Settings(master_key=key, master_key_file=tmp_path / "unused.key"))
    assert loaded.origin == "DTMA_MASTER_KEY"
    assert loaded.keyring.primary_id == Keyring.parse(key, origin="t").primary_id
    assert not (tmp_path / "unused.key").exists()


def test_generated_key_pair_is_what_openssh_reads(tmp_path: Path) -> None:
    pair = sshkeys.generate("dtma-console:toolbox-9:test")
    assert pair.private_openssh.startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
    assert "PRIVATE" not in repr(pair) and pair.private_openssh not in repr(pair)
    public_file = tmp_path / "key.pub"
    public_file.write_text(pair.public_openssh + "\n")
    listed = subprocess.run(
        ["ssh-keygen", "-lf", str(public_file)], capture_output=True, text=True, check=True
    ).stdout.split()
    assert listed[1] == pair.fingerprint
    assert listed[-1] == "(ED25519)"
    # ssh-keygen derives the same public key from the private one (read from stdin).
    derived = subprocess.run(
        ["ssh-keygen", "-y", "-f", "/dev/stdin"],
        input=pair.private_openssh,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert derived == sshkeys.key_material(pair.public_openssh)
    assert sshkeys.public_from_private(pair.private_openssh) == derived
