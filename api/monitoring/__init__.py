"""Monitoring: status sync, checks and thresholds, alerts with webhooks, automatic recovery.

    from api.monitoring import Monitor
    async with Monitor(context) as monitor:
        report = await monitor.sync_all()        # THE status sync (route, CLI, scheduler)
        cycle = await monitor.run_cycle()        # sync + checks + alerts + recovery

The service runs one per process (router.py's lifespan, periodic when
DTMA_MONITOR_INTERVAL > 0) and re-reads a toolbox after every run on it.
"""

from api.monitoring.service import CycleReport, Monitor, sync_once
from api.monitoring.sync import SyncReport, ToolboxSync

__all__ = ["CycleReport", "Monitor", "SyncReport", "ToolboxSync", "sync_once"]
