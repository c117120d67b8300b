"""Notification targets: Apprise URLs (Slack, Discord, Telegram, email, ntfy, Matrix, ...)
from DTMA_NOTIFY_URLS, routed by alert severity.

Each entry is an Apprise URL, optionally preceded by the severities it receives, in the
syntax of Apprise's own text configuration (`TAGS=URL`):

    DTMA_NOTIFY_URLS='["critical=ntfy://ntfy.example/ops", "critical,warning=slack://T/B/C",
                      "mailto://user:pass@example.com"]'

An entry without `TAGS=` receives every severity. The JSON list may also be given as
entries separated by whitespace or new lines. The URLs are secrets: they are held as
SecretStr, shown only masked (Apprise's privacy mode, without the query), never logged.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from pydantic import SecretStr

SEVERITIES = ("critical", "warning")

# `critical,warning=scheme://…`: a scheme never contains "=", so the prefix is unambiguous.
_ROUTED = re.compile(
    r"^\s*(?P<tags>[a-z]+(?:\s*,\s*[a-z]+)*)\s*=\s*(?P<url>[A-Za-z][\w+.-]*://.*)$"
)

# Apprise logs full URLs at DEBUG (and httpx each request URL at INFO): secrets, not logs.
for _noisy in ("apprise", "httpx", "httpcore"):
    logging.getLogger(_noisy).setLevel(logging.WARNING)


class NotifyConfigError(ValueError):
    """An entry of DTMA_NOTIFY_URLS cannot be used (the message never repeats the URL)."""


@dataclass(frozen=True)
class AppriseTarget:
    url: SecretStr
    severities: frozenset[str]
    service: str
    label: str  # the URL with its secrets masked, without the query

    def accepts(self, severity: str) -> bool:
        return severity in self.severities

    def send_sync(self, title: str, body: str, notify_type: str, timeout: float) -> str | None:
        """Deliver one message; None when the service accepted it, else why not."""
        import apprise  # here and in parse_entry: only consoles with DTMA_NOTIFY_URLS use it

        sender = apprise.Apprise()
        if not sender.add(self.url.get_secret_value()):
            return f"{self.label}: not a valid Apprise URL"
        if sender.notify(body=body, title=title, notify_type=notify_type, timeout=timeout):
            return None
        return f"{self.label}: the {self.service} service did not accept the message"

    async def send(self, title: str, body: str, notify_type: str, timeout: float) -> str | None:
        return await asyncio.to_thread(self.send_sync, title, body, notify_type, timeout)


def parse_entry(entry: str, position: int) -> AppriseTarget:
    match = _ROUTED.match(entry)
    url, severities = (match["url"], match["tags"]) if match else (entry.strip(), "")
    wanted = frozenset(t.strip() for t in severities.split(",") if t.strip()) or frozenset(
        SEVERITIES
    )
    unknown = sorted(wanted - set(SEVERITIES))
    if unknown:
        raise NotifyConfigError(
            f"DTMA_NOTIFY_URLS entry {position}: unknown severity {', '.join(unknown)} "
            f"(use {', '.join(SEVERITIES)})"
        )
    import apprise

    plugin = apprise.Apprise.instantiate(url, suppress_exceptions=True)
    if plugin is None:
        raise NotifyConfigError(
            f"DTMA_NOTIFY_URLS entry {position}: not a URL Apprise knows "
            f"(scheme {urlsplit(url).scheme or '?'!r})"
        )
    return AppriseTarget(SecretStr(url), wanted, str(plugin.service_name), _label(plugin))


def _label(plugin: object) -> str:
    """Apprise's privacy form of the URL (passwords and tokens masked), cut after the host:
    a generic HTTP target (json://, form://) keeps a secret in its path unmasked."""
    masked = urlsplit(str(plugin.url(privacy=True)))  # type: ignore[attr-defined]
    rest = "/…" if masked.path not in ("", "/") else ""
    return f"{masked.scheme}://{masked.netloc}{rest}"


def parse_targets(entries: Sequence[SecretStr]) -> list[AppriseTarget]:
    return [parse_entry(e.get_secret_value(), n) for n, e in enumerate(entries, start=1)]
