"""Where the master key comes from, and the one keyring the process seals with.

DTMA_MASTER_KEY (one key, or several comma-separated while rotating) is the production
source. Without it the demo keeps its key in DTMA_MASTER_KEY_FILE (default
`.data/master.key`), generated on first use with mode 0600, and says so in the log.
"""

from __future__ import annotations

import logging
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from api.settings import Settings, get_settings
from api.vault.crypto import Keyring, MasterKeyError, generate_master_key

log = logging.getLogger("api.vault")

_ENV = "DTMA_MASTER_KEY"


@dataclass(frozen=True)
class LoadedKeyring:
    keyring: Keyring
    origin: str  # human description: "DTMA_MASTER_KEY" or "the master key file <path>"
    file: Path | None  # the key file when the keys came from one
    generated: bool = False


def _file_origin(path: Path) -> str:
    return f"the master key file {path}"


def _read_key_file(path: Path) -> Keyring:
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise MasterKeyError(
            f"{_file_origin(path)} is accessible by other users (mode "
            f"{stat.S_IMODE(mode):04o}); run `chmod 600 {path}`"
        )
    return Keyring.parse(path.read_text().strip(), origin=_file_origin(path))


def write_key_file(path: Path, content: str, *, exclusive: bool) -> None:
    """Write `content` to `path` with mode 0600 from the first byte; atomically replace
    an existing file unless `exclusive` (then FileExistsError if it exists)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    target = path if exclusive else path.with_name(path.name + ".new")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    if not exclusive:
        target.unlink(missing_ok=True)
    fd = os.open(target, flags, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(content + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    if not exclusive:
        target.replace(path)


def load_keyring(settings: Settings) -> LoadedKeyring:
    """The configured keys; generates the demo key file when nothing is configured."""
    if settings.master_key is not None:
        return LoadedKeyring(
            Keyring.parse(settings.master_key.get_secret_value(), origin=_ENV), _ENV, None
        )
    path = settings.master_key_file
    try:
        write_key_file(path, generate_master_key(), exclusive=True)
    except FileExistsError:
        return LoadedKeyring(_read_key_file(path), _file_origin(path), path)
    log.warning(
        "master_key_generated",
        extra={
            "path": str(path),
            "advice": f"no {_ENV} configured: generated a master key into {path} (mode 0600) "
            f"for this demo; back it up, or set {_ENV} in production",
        },
    )
    return LoadedKeyring(_read_key_file(path), _file_origin(path), path, generated=True)


_installed: Keyring | None = None


def install(keyring: Keyring) -> None:
    """Make `keyring` the one this process seals and unseals with."""
    global _installed
    _installed = keyring


def active_keyring() -> Keyring:
    """The installed keyring, loaded from the environment on first use otherwise."""
    global _installed
    if _installed is None:
        _installed = load_keyring(get_settings()).keyring
    return _installed
