"""Jinja2 templates of the web console, their filters, and the security headers every
page carries."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from api.models import utcnow
from api.web.panels import level

WEB_DIR = Path(__file__).resolve().parent
STATIC_DIR = WEB_DIR / "static"

# Everything is served from this origin: no inline script, no CDN.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        # The one hash allowed is that of an empty style attribute, which htmx writes when it
        # settles an element a chart had styled; no other inline style is allowed.
        "default-src 'self'; script-src 'self'; "
        "style-src 'self' 'unsafe-hashes' 'sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU='; "
        "img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def _asset_version() -> str:
    """Changes whenever a static file does, so browsers never run a stale script."""
    digest = hashlib.sha256()
    for path in sorted(STATIC_DIR.rglob("*")):
        if path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def ago(value: datetime | None) -> str:
    """'12 s ago', '5 min ago', '3 h ago', '2 d ago'; 'never' for None."""
    if value is None:
        return "never"
    seconds = int((utcnow() - value).total_seconds())
    if seconds < 0:
        return "just now"
    return f"{duration(seconds)} ago"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    whole = int(seconds)
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min"
    if whole < 86_400:
        return f"{whole // 3600} h {whole % 3600 // 60} min"
    return f"{whole // 86_400} d {whole % 86_400 // 3600} h"


def size(value: float | None) -> str:
    """Bytes for humans (binary units)."""
    if value is None:
        return "—"
    amount = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if amount < 1024 or unit == "TiB":
            return f"{amount:.0f} {unit}" if unit == "B" else f"{amount:.1f} {unit}"
        amount /= 1024
    return f"{amount:.1f} TiB"


def uptime(started_at: str | None) -> str:
    """How long since an ISO-8601 start time (as the agent reports it)."""
    if not started_at:
        return "—"
    try:
        started = datetime.fromisoformat(started_at.replace("Z", "+00:00"))
    except ValueError:
        return "—"
    if started.tzinfo is None:
        return "—"
    return duration(max((utcnow() - started).total_seconds(), 0))


def timestamp(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S UTC") if value else "—"


def json_text(value: Any) -> str:
    """Compact JSON for people (escaped by the template like any text, unlike `tojson`)."""
    return json.dumps(value, sort_keys=True, default=str, ensure_ascii=False)


templates = Jinja2Templates(directory=WEB_DIR / "templates")
templates.env.filters.update(
    ago=ago,
    duration=duration,
    size=size,
    timestamp=timestamp,
    uptime=uptime,
    level=level,
    json_text=json_text,
)
templates.env.globals["asset_version"] = _asset_version()


def render(
    request: Request,
    name: str,
    context: dict[str, Any] | None = None,
    *,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
) -> HTMLResponse:
    response = templates.TemplateResponse(
        request, name, context or {}, status_code=status_code, headers=headers
    )
    response.headers.update(SECURITY_HEADERS)
    return response
