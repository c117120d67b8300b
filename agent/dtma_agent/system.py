"""Host facts from psutil: CPU, memory, disk of /, load and uptime."""

from __future__ import annotations

import os
import socket
import time
from datetime import UTC, datetime

import psutil

from .models import Cpu, Disk, Load, Memory, System


def prime_cpu_counter() -> None:
    """Start the CPU sampling window, so the first /system read has a baseline."""
    psutil.cpu_percent(interval=None)


def read_system(disk_path: str = "/") -> System:
    memory = psutil.virtual_memory()
    disk = psutil.disk_usage(disk_path)
    one, five, fifteen = os.getloadavg()
    boot = psutil.boot_time()
    return System(
        hostname=socket.gethostname(),
        # Average over the time since the previous read (or since the agent started).
        cpu=Cpu(percent=psutil.cpu_percent(interval=None), count=psutil.cpu_count() or 1),
        memory=Memory(
            total_bytes=memory.total,
            used_bytes=memory.total - memory.available,
            available_bytes=memory.available,
            percent=memory.percent,
        ),
        disk=Disk(
            path=disk_path,
            total_bytes=disk.total,
            used_bytes=disk.used,
            free_bytes=disk.free,
            percent=disk.percent,
        ),
        load=Load(one=one, five=five, fifteen=fifteen),
        boot_time=datetime.fromtimestamp(boot, UTC).isoformat(),
        uptime_seconds=round(time.time() - boot, 3),
    )
