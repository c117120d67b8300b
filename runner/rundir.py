"""A run's private data directory (0700) and the pipes that carry secrets into ansible.

Secrets never touch the disk on purpose: they go through named pipes (FIFOs) that ansible
or the wrapper shell reads once, like ansible-runner's own ssh-agent pipe for the private
key. What ansible-runner writes by itself is raw: its callback plugin leaves each event,
unredacted, in `artifacts/<id>/job_events/<uuid>-partial.json` until ansible-runner reads it
back, so a run that is cut short (a crash, a kill) leaves them behind. A run dir therefore
goes when its run ends, on every path (`RunDir.finish`), and at start-up for runs whose
process died (`discard_run_dir`); with DTMA_KEEP_RUN_DIRS=1 it stays for debugging, but
without `job_events/` (nor any pipe): what is kept holds no secret.
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import shutil
import stat
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from runner.errors import RequestError
from runner.settings import RunnerSettings

# The pattern of a run id (runner/request.py validates requests with the same).
RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")

DRAIN_SECONDS = 1.0


def drain_fifo(path: Path) -> None:
    """Release a writer still blocked on the pipe at `path` (nobody read it), then unlink it.

    Opening the read end lets a blocked writer finish; what it writes is discarded.
    """
    try:
        if not stat.S_ISFIFO(path.lstat().st_mode):
            return
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        return
    try:
        deadline = time.monotonic() + DRAIN_SECONDS
        seen_data = False
        while time.monotonic() < deadline:
            select.select([fd], [], [], 0.05)
            try:
                chunk = os.read(fd, 65536)
            except BlockingIOError:  # writer connected, data not written yet
                continue
            if chunk:
                seen_data = True
            elif seen_data:
                break
    finally:
        os.close(fd)
        path.unlink(missing_ok=True)


class SecretPipe:
    """A FIFO that hands `data` to the first reader, from a daemon thread."""

    def __init__(self, path: Path, data: str) -> None:
        self.path = path
        os.mkfifo(path, 0o600)
        self._thread = threading.Thread(
            target=self._write, args=(data.encode(),), name=f"pipe-{path.name}", daemon=True
        )
        self._thread.start()

    def _write(self, data: bytes) -> None:
        with contextlib.suppress(OSError), open(self.path, "wb") as pipe:
            pipe.write(data)

    def close(self) -> None:
        if self._thread.is_alive():
            drain_fifo(self.path)
        self.path.unlink(missing_ok=True)
        self._thread.join(timeout=DRAIN_SECONDS)


@dataclass
class RunDir:
    """The private data directory of one run, under a base directory, both mode 0700."""

    path: Path
    pipes: list[SecretPipe] = field(default_factory=list)

    @classmethod
    def create(cls, base: Path, run_id: str) -> RunDir:
        base.mkdir(parents=True, exist_ok=True, mode=0o700)
        base.chmod(0o700)
        path = base / run_id
        try:
            path.mkdir(mode=0o700)
        except FileExistsError:
            raise RequestError("run_id", f"a run {run_id} exists already") from None
        (path / "env").mkdir(mode=0o700)
        return cls(path=path)

    def write(self, relative: str, text: str) -> Path:
        """A non-secret file (settings, known_hosts), mode 0600."""
        target = self.path / relative
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        return target

    def pipe(self, name: str, data: str) -> Path:
        """A secret, readable once through a FIFO at the returned path."""
        secret = SecretPipe(self.path / name, data)
        self.pipes.append(secret)
        return secret.path

    def close_pipes(self, extra: list[Path]) -> None:
        """Unblock and remove every pipe, also ones ansible-runner made (its ssh key pipe)."""
        for secret in self.pipes:
            secret.close()
        for path in extra:
            drain_fifo(path)

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)

    def scrub(self) -> None:
        """Keep the dir (settings, known_hosts, ansible-runner's command, rc and status) but
        nothing that may hold a secret: raw event files and leftover pipes."""
        for events in self.path.glob("artifacts/*/job_events"):
            shutil.rmtree(events, ignore_errors=True)
        for leftover in self.path.rglob("*"):
            with contextlib.suppress(OSError):
                mode = leftover.lstat().st_mode
                if leftover.name.endswith("-partial.json") or stat.S_ISFIFO(mode):
                    leftover.unlink()

    def finish(self, *, keep: bool) -> None:
        """The run is over: remove the dir, or with `keep` (DTMA_KEEP_RUN_DIRS) scrub it."""
        if keep:
            self.scrub()
        else:
            self.remove()


def discard_run_dir(run_id: str, settings: RunnerSettings | None = None) -> bool:
    """The run dir of a run whose process is gone (start-up recovery, the reaper): removed,
    or scrubbed with DTMA_KEEP_RUN_DIRS. False when there was none (or `run_id` names no
    run: never a path outside the runs dir)."""
    settings = settings or RunnerSettings.from_env()
    if not RUN_ID.match(run_id):
        return False
    path = settings.runs_dir / run_id
    if not path.is_dir():
        return False
    RunDir(path).finish(keep=settings.keep_run_dirs)
    return True
