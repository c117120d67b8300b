"""Data the toolbox tabs show besides the live reads: health and alerts from monitoring,
the thresholds that colour the System bars, the tool names the Logs tab offers."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from api.models import Toolbox
from api.monitoring import reports
from api.monitoring.schemas import MonitoringLimits, ToolboxHealth
from api.settings import Settings

# A bar turns amber this many points below its alert threshold, red at the threshold.
WARN_MARGIN = 15.0


def health(db: Session, toolbox: Toolbox) -> ToolboxHealth:
    return reports.toolbox_health(db, toolbox)


def thresholds(db: Session, settings: Settings, toolbox: Toolbox) -> MonitoringLimits:
    return reports.monitoring_settings(db, settings, toolbox).effective


@dataclass(frozen=True)
class Level:
    """How a metric compares with its threshold, as a CSS class and a sentence."""

    css: str
    text: str


def level(value: float | None, threshold: float) -> Level:
    if value is None:
        return Level("", "unknown")
    if value >= threshold:
        return Level("crit", f"at or above the {threshold:g} % alert threshold")
    if value >= threshold - WARN_MARGIN:
        return Level("warn", f"close to the {threshold:g} % alert threshold")
    return Level("", f"below the {threshold:g} % alert threshold")


def tool_names(toolbox: Toolbox) -> list[str]:
    return [t.name for t in toolbox.tool_instances if t.removed_at is None]
