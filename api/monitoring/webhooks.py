"""Alert events to every notification target: the JSON webhooks (DTMA_ALERT_WEBHOOKS, a
Slack-compatible `text` field) and the Apprise URLs (DTMA_NOTIFY_URLS, routed by severity).

Publishing never waits: each event is delivered in a background task. Each delivery is
retried with exponential backoff and recorded (alert_notifications) with how it went; a
target that fails or hangs delays only its own deliveries, never monitoring. The events of
one alert arrive in order, and an event is delivered to a target once: an (alert, event,
target) already recorded is not sent again (reminders excepted, which are due by time).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass, replace
from urllib.parse import urlsplit

import httpx
from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from api.db import session_scope
from api.models import utcnow
from api.monitoring.events import AlertEvent, notify_type, test_message
from api.monitoring.models import AlertNotification
from api.monitoring.notify import SEVERITIES, AppriseTarget, parse_targets
from api.settings import Settings

log = logging.getLogger("api.monitoring.webhooks")


def target_label(url: str) -> str:
    """The webhook without path or query: those often carry its secret."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}{f':{parts.port}' if parts.port else ''}"


def _unique(labels: list[str], taken: set[str] | None = None) -> list[str]:
    """Labels name targets in alert_notifications (and decide what was sent already): two
    targets that mask alike (two Slack webhooks) get `#2`, `#3`, ..."""
    seen = set(taken or ())
    result = []
    for label in labels:
        name, n = label[:250], 1
        while name in seen:
            n += 1
            name = f"{label[:250]} #{n}"
        seen.add(name)
        result.append(name)
    return result


@dataclass(frozen=True)
class WebhookTarget:
    url: SecretStr
    label: str

    def accepts(self, severity: str) -> bool:
        return True


@dataclass(frozen=True)
class TestDelivery:
    target: str
    error: str | None


class WebhookDispatcher:
    def __init__(self, sessions: sessionmaker[Session], settings: Settings) -> None:
        self._sessions = sessions
        urls = settings.alert_webhooks
        labels = _unique([target_label(u.get_secret_value()) for u in urls])
        self._webhooks = [WebhookTarget(u, n) for u, n in zip(urls, labels, strict=True)]
        apprise_targets = parse_targets(settings.notify_urls)
        labels = _unique([t.label for t in apprise_targets], taken=set(labels))
        self._apprise = [replace(t, label=n) for t, n in zip(apprise_targets, labels, strict=True)]
        self._attempts = settings.webhook_attempts
        self._backoff = settings.webhook_backoff_seconds
        self._timeout = settings.webhook_timeout
        self._http = httpx.AsyncClient(timeout=settings.webhook_timeout)
        self._deliveries: set[asyncio.Task[None]] = set()
        # The newest delivery per alert: the next event of that alert waits for it, so a
        # receiver never gets "resolved" before "opened".
        self._last: dict[str, asyncio.Task[None]] = {}

    @property
    def targets(self) -> list[WebhookTarget | AppriseTarget]:
        return [*self._webhooks, *self._apprise]

    def publish(self, events: Iterable[AlertEvent]) -> None:
        """Start delivering `events` in the background; returns at once."""
        if not self.targets:
            return
        for event in events:
            task = asyncio.create_task(self._deliver_event(self._last.get(event.alert_id), event))
            self._last[event.alert_id] = task
            self._deliveries.add(task)
            task.add_done_callback(self._forget)

    def _forget(self, task: asyncio.Task[None]) -> None:
        self._deliveries.discard(task)
        for alert_id, last in list(self._last.items()):
            if last is task:
                del self._last[alert_id]

    async def drain(self, timeout: float | None = None) -> None:
        """Wait until every delivery started so far has ended (tests, shutdown)."""
        if self._deliveries:
            await asyncio.wait(set(self._deliveries), timeout=timeout)

    async def aclose(self) -> None:
        for task in list(self._deliveries):
            task.cancel()
        await asyncio.gather(*self._deliveries, return_exceptions=True)
        await self._http.aclose()

    async def send_test(self, sender: str) -> list[TestDelivery]:
        """One test message to every target (every severity route), once, not recorded."""
        title, body, payload = test_message(sender)
        results = []
        for target in self.targets:
            error = await self._send_once(target, title, body, payload, "info")
            results.append(TestDelivery(target.label, error))
        return results

    async def _deliver_event(self, previous: asyncio.Task[None] | None, event: AlertEvent) -> None:
        if previous is not None:
            await asyncio.wait({previous})
        severity = str(event.payload["alert"]["severity"])
        wanted = severity if severity in SEVERITIES else "critical"
        try:
            await asyncio.gather(
                *(self._deliver(event, t) for t in self.targets if t.accepts(wanted))
            )
        except Exception:
            log.exception("notification_event_failed", extra={"alert_id": event.alert_id})

    async def _deliver(self, event: AlertEvent, target: WebhookTarget | AppriseTarget) -> None:
        row_id = await asyncio.to_thread(self._new_row, event, target.label)
        if row_id is None:
            return  # already sent to this target: one message per alert and state change
        kind = notify_type(event)
        error: str | None = None
        for attempt in range(1, self._attempts + 1):
            error = await self._send_once(target, event.title, event.body, event.payload, kind)
            if error is None:
                await asyncio.to_thread(self._finish, row_id, attempt, None)
                return
            log.warning(
                "notification_attempt_failed",
                extra={
                    "target": target.label,
                    "attempt": attempt,
                    "error": error,
                    "alert_id": event.alert_id,
                },
            )
            if attempt < self._attempts:
                await asyncio.sleep(self._backoff * 2 ** (attempt - 1))
        await asyncio.to_thread(self._finish, row_id, self._attempts, error)

    async def _send_once(
        self,
        target: WebhookTarget | AppriseTarget,
        title: str,
        body: str,
        payload: dict[str, object],
        kind: str,
    ) -> str | None:
        """One attempt; None when delivered, else a reason without any secret."""
        if isinstance(target, AppriseTarget):
            try:
                return await target.send(title, body, kind, self._timeout)
            except Exception as failure:  # a plugin's bug must not end the delivery loop
                return f"{target.label}: {type(failure).__name__}"
        try:
            response = await self._http.post(target.url.get_secret_value(), json=payload)
        except httpx.HTTPError as failure:
            return f"{target.label} did not answer: {type(failure).__name__}"
        if response.is_success:
            return None
        return f"{target.label} answered {response.status_code}"

    def _new_row(self, event: AlertEvent, target: str) -> int | None:
        with session_scope(self._sessions) as session:
            if event.event != "reminder":
                sent = session.scalar(
                    select(AlertNotification.id).where(
                        AlertNotification.alert_id == event.alert_id,
                        AlertNotification.event == event.event,
                        AlertNotification.target == target,
                    )
                )
                if sent is not None:
                    return None
            row = AlertNotification(
                alert_id=event.alert_id,
                event=event.event,
                target=target,
                status="pending",
                attempts=0,
            )
            session.add(row)
            session.flush()
            return row.id

    def _finish(self, row_id: int, attempts: int, error: str | None) -> None:
        with session_scope(self._sessions) as session:
            row = session.get(AlertNotification, row_id)
            if row is None:
                return
            row.attempts = attempts
            row.last_error = error
            row.status = "failed" if error else "delivered"
            row.delivered_at = None if error else utcnow()
