"""Where the master key comes from (each Context loads its own keyring: api/context.py).

DTMA_MASTER_KEY (one key, or several comma-separated while rotating), or
DTMA_MASTER_KEY_FILE naming a file (mode 0600) outside the data directory: a key kept
next to the database it protects is in every copy of that database (a backup, a
snapshot, a stolen disk). Without either the service refuses to start and says how to
make one, unless DTMA_DEMO=1 (`make demo`): the demo keeps a key generated on first use
in `<data directory>/master.key` (mode 0600) and says so in the log.
"""

from __future__ import annotations

import logging
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from api.db import data_directory
from api.settings import Settings
from api.vault.crypto import Keyring, MasterKeyError, generate_master_key

log = logging.getLogger("api.vault")

_ENV = "DTMA_MASTER_KEY"
_FILE_ENV = "DTMA_MASTER_KEY_FILE"
# Where the advice puts a production key: outside any data directory, root's only.
_ADVISED_FILE = "/etc/dtma-console/master.key"
GENERATE_COMMAND = (
    f"install -d -m 700 {Path(_ADVISED_FILE).parent} && "
    f"(umask 077 && dtma-console keys generate-master > {_ADVISED_FILE})"
)


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


def _advice(data_dir: Path | None) -> str:
    where = f" (outside the data directory {data_dir})" if data_dir else ""
    return (
        f"Generate one with `{GENERATE_COMMAND}` and start with "
        f"{_FILE_ENV}={_ADVISED_FILE}{where}, or put the output of "
        f"`dtma-console keys generate-master` in {_ENV}; for a local demo only, DTMA_DEMO=1 "
        "(as `make demo` sets) keeps a generated key in the data directory"
    )


def _inside(path: Path, directory: Path | None) -> bool:
    return directory is not None and path.resolve().is_relative_to(directory.resolve())


def _generated(path: Path) -> LoadedKeyring | None:
    """A new demo key at `path`; None when the file exists already."""
    try:
        write_key_file(path, generate_master_key(), exclusive=True)
    except FileExistsError:
        return None
    log.warning(
        "master_key_generated",
        extra={
            "path": str(path),
            "advice": f"DTMA_DEMO=1 and no {_ENV}: generated a master key into {path} (mode "
            f"0600) for this demo; in production set {_ENV} or {_FILE_ENV} (outside the data "
            "directory)",
        },
    )
    return LoadedKeyring(_read_key_file(path), _file_origin(path), path, generated=True)


def load_keyring(settings: Settings) -> LoadedKeyring:
    """The configured keys. MasterKeyError (saying how to make a key) when none is
    configured or the key file lies in the data directory, unless DTMA_DEMO=1, which
    generates the demo key file when it is missing."""
    if settings.master_key is not None:
        return LoadedKeyring(
            Keyring.parse(settings.master_key.get_secret_value(), origin=_ENV), _ENV, None
        )
    data_dir = data_directory(settings)
    path = settings.master_key_file
    if path is None:
        if not settings.demo:
            raise MasterKeyError(f"no master key configured. {_advice(data_dir)}.")
        path = (data_dir or Path(".data")) / "master.key"
    elif _inside(path, data_dir) and not settings.demo:
        raise MasterKeyError(
            f"{_FILE_ENV} ({path}) is inside the data directory {data_dir}: every copy of "
            f"the data would carry the key that opens it. Move the file elsewhere (mode "
            f"0600) and point {_FILE_ENV} at it. {_advice(data_dir)}."
        )
    elif not path.exists() and not settings.demo:
        raise MasterKeyError(f"{_FILE_ENV} ({path}) does not exist. {_advice(data_dir)}.")
    if settings.demo and (loaded := _generated(path)) is not None:
        return loaded
    try:
        return LoadedKeyring(_read_key_file(path), _file_origin(path), path)
    except FileNotFoundError:
        raise MasterKeyError(f"{_file_origin(path)} vanished. {_advice(data_dir)}.") from None
