"""Finding and stopping the processes of one run.

Every process of a run carries `DTMA_RUN_ID=<run id>` in its environment (set for
ansible-playbook, inherited by its workers, their ssh clients and ssh-agent). ansible-runner
kills the process group on cancel and timeout, but ssh-agent starts its own session and
lingers up to 10 s after its command; both are found here by that marker and stopped.

ssh ControlPersist masters (`ssh: <control path> [mux]`) are not a run's processes: they
are shared by later runs on purpose and leave by themselves after ControlPersist idle
seconds. They are never stopped here (OpenSSH rewrites their environment area with the
process title, so they do not even carry the marker; the title check makes sure).
"""

from __future__ import annotations

import contextlib
import os
import time

import psutil

MARKER = "DTMA_RUN_ID"
GRACE_SECONDS = 3.0


def _alive(process: psutil.Process) -> bool:
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def run_processes(run_id: str) -> list[psutil.Process]:
    """Live processes marked with this run id (zombies are gone already, just unreaped)."""
    found = []
    for process in psutil.process_iter():
        if process.pid == os.getpid():
            continue
        try:
            if process.environ().get(MARKER) == run_id and _alive(process):
                found.append(process)
        except psutil.Error:
            continue
    return found


def is_control_master(process: psutil.Process) -> bool:
    try:
        title = " ".join(process.cmdline()).strip()
    except psutil.Error:
        return False
    return title.startswith("ssh: ") and title.endswith("[mux]")


def describe(process: psutil.Process) -> str:
    try:
        return f"{process.pid} {' '.join(process.cmdline())[:120]}"
    except psutil.Error:
        return str(process.pid)


def _wait_gone(processes: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Wait until each process is gone or a zombie (dead, only not reaped yet by its
    parent, often init); returns the ones still alive. psutil's own wait_procs would
    also wait for the reaping, which init may delay by seconds."""
    deadline = time.monotonic() + timeout
    alive = [p for p in processes if _alive(p)]
    while alive and time.monotonic() < deadline:
        time.sleep(0.02)
        alive = [p for p in alive if _alive(p)]
    return alive


def stop_run_processes(run_id: str) -> list[str]:
    """Terminate, then kill, what is left of a run. Returns what survived (should be [])."""
    targets = [p for p in run_processes(run_id) if not is_control_master(p)]
    for process in targets:
        with contextlib.suppress(psutil.Error):
            process.terminate()
    alive = _wait_gone(targets, GRACE_SECONDS)
    for process in alive:
        with contextlib.suppress(psutil.Error):
            process.kill()
    return [describe(p) for p in _wait_gone(alive, GRACE_SECONDS)]
