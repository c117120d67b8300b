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
from api.vault.master import GENERATE_COMMAND, load_keyring, write_key_file

TOKEN_OF_T1 = "toolboxes.agent_token_ciphertext/t1"


def test_sealed_value_opens_with_the_key_and_is_not_the_plaintext() -> None:
    keyring = Keyring.parse(generate_master_key(), origin="test")
    sealed = keyring.seal("agent-token-123", TOKEN_OF_T1)
    assert sealed.startswith(f"v2:{keyring.primary_id}:")
    assert "agent-token-123" not in sealed
    assert keyring.unseal(sealed, TOKEN_OF_T1) == "agent-token-123"
    assert keyring.seal("agent-token-123", TOKEN_OF_T1) != sealed  # a fresh nonce every time


@pytest.mark.parametrize(
    "elsewhere",
    [
        "toolboxes.agent_token_ciphertext/t2",  # another toolbox's row
        "toolbox_ssh_keys.private_key_sealed/t1",  # another column with the same row id
        "runs.extravars_sealed/t1",
    ],
)
def test_a_sealed_value_opens_only_in_the_row_and_column_it_was_sealed_for(
    elsewhere: str,
) -> None:
    keyring = Keyring.parse(generate_master_key(), origin="test")
    sealed = keyring.seal("agent-token-123", TOKEN_OF_T1)
    with pytest.raises(SealError, match="sealed for another row or column"):
        keyring.unseal(sealed, elsewhere)


def test_v1_values_open_only_through_the_migration_path() -> None:
    keyring = Keyring.parse(generate_master_key(), origin="test")
    old = keyring.seal_v1("agent-token-123")
    assert old.startswith(f"v1:{keyring.primary_id}:") and keyring.needs_reseal(old)
    with pytest.raises(SealError, match="format v1, v2 expected"):
        keyring.unseal(old, TOKEN_OF_T1)
    assert keyring.unseal_v1(old) == "agent-token-123"


def test_first_key_seals_and_every_configured_key_unseals() -> None:
    old, new = generate_master_key(), generate_master_key()
    before = Keyring.parse(old, origin="test").seal("secret", TOKEN_OF_T1)
    both = Keyring.parse(f"{new}, {old}", origin="test")
    assert both.unseal(before, TOKEN_OF_T1) == "secret"
    assert both.needs_reseal(before)
    resealed = both.seal("secret", TOKEN_OF_T1)
    assert not both.needs_reseal(resealed)
    assert Keyring.parse(new, origin="test").unseal(resealed, TOKEN_OF_T1) == "secret"
    with pytest.raises(SealError, match="not configured"):
        Keyring.parse(old, origin="test").unseal(resealed, TOKEN_OF_T1)


def test_tampered_or_foreign_values_are_refused() -> None:
    keyring = Keyring.parse(generate_master_key(), origin="test")
    sealed = keyring.seal("secret", TOKEN_OF_T1)
    prefix, blob = sealed.rsplit(":", 1)
    raw = bytearray(base64.b64decode(blob))
    raw[-1] ^= 1
    with pytest.raises(SealError, match="does not verify"):
        keyring.unseal(f"{prefix}:{base64.b64encode(bytes(raw)).decode()}", TOKEN_OF_T1)
    with pytest.raises(SealError, match="sealed format"):
        keyring.unseal("plain:secret", TOKEN_OF_T1)


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


def sqlite_in(directory: Path) -> str:
    return f"sqlite:///{directory / 'console.db'}"


def test_demo_key_file_is_generated_once_with_mode_0600_and_announced(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = tmp_path / "data"
    settings = Settings(
        demo=True, master_key=None, master_key_file=None, database_url=sqlite_in(data)
    )
    with caplog.at_level(logging.WARNING, logger="api.vault"):
        first = load_keyring(settings)
    assert first.generated and first.file == data / "master.key"
    assert stat.S_IMODE(first.file.stat().st_mode) == 0o600
    assert any(r.getMessage() == "master_key_generated" for r in caplog.records)
    second = load_keyring(settings)
    assert not second.generated
    assert second.keyring.primary_id == first.keyring.primary_id


def test_without_a_master_key_nothing_starts_and_the_message_says_how_to_make_one(
    tmp_path: Path,
) -> None:
    settings = Settings(master_key=None, master_key_file=None, database_url=sqlite_in(tmp_path))
    with pytest.raises(MasterKeyError, match="no master key configured") as refused:
        load_keyring(settings)
    assert GENERATE_COMMAND in str(refused.value)
    assert "DTMA_MASTER_KEY_FILE=/etc/dtma-console/master.key" in str(refused.value)
    assert not (tmp_path / "master.key").exists()  # nothing generated behind the operator


def test_a_key_file_in_the_data_directory_is_refused_unless_demo(tmp_path: Path) -> None:
    key_file = tmp_path / "keys" / "master.key"
    write_key_file(key_file, generate_master_key(), exclusive=True)
    inside = Settings(master_key=None, master_key_file=key_file, database_url=sqlite_in(tmp_path))
    with pytest.raises(MasterKeyError, match="is inside the data directory") as refused:
        load_keyring(inside)
    assert GENERATE_COMMAND in str(refused.value)
    assert load_keyring(inside.model_copy(update={"demo": True})).file == key_file
    outside = inside.model_copy(update={"database_url": sqlite_in(tmp_path / "data")})
    assert load_keyring(outside).origin == f"the master key file {key_file}"


def test_a_missing_key_file_is_refused_not_generated(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "master.key"
    settings = Settings(
        master_key=None, master_key_file=missing, database_url=sqlite_in(tmp_path / "d")
    )
    with pytest.raises(MasterKeyError, match="does not exist"):
        load_keyring(settings)
    assert not missing.exists()


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
