"""Alert events to the configured webhooks, as JSON with a Slack-compatible `text` field.

Publishing never waits: events go on a queue that a background task drains. Each delivery
is retried with exponential backoff and recorded (alert_notifications) with how it went;
a webhook that fails or hangs delays only its own deliveries, never monitoring.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from urllib.parse import urlsplit

import httpx
from pydantic import SecretStr
from sqlalchemy.orm import Session, sessionmaker

from api.db import session_scope
from api.models import utcnow
from api.monitoring.events import AlertEvent
from api.monitoring.models import AlertNotification
from api.settings import Settings

log = logging.getLogger("api.monitoring.webhooks")


def target_label(url: str) -> str:
    """The webhook without path or query: those often carry its secret."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}{f':{parts.port}' if parts.port else ''}"


class WebhookDispatcher:
    def __init__(self, sessions: sessionmaker[Session], settings: Settings) -> None:
        self._sessions = sessions
        self._urls: list[SecretStr] = list(settings.alert_webhooks)
        self._attempts = settings.webhook_attempts
        self._backoff = settings.webhook_backoff_seconds
        self._http = httpx.AsyncClient(timeout=settings.webhook_timeout)
        self._deliveries: set[asyncio.Task[None]] = set()
        # The newest delivery per alert: the next event of that alert waits for it, so a
        # receiver never gets "resolved" before "opened".
        self._last: dict[str, asyncio.Task[None]] = {}

    def publish(self, events: Iterable[AlertEvent]) -> None:
        """Start delivering `events` in the background; returns at once."""
        if not self._urls:
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

    async def _deliver_event(self, previous: asyncio.Task[None] | None, event: AlertEvent) -> None:
        if previous is not None:
            await asyncio.wait({previous})
        try:
            await asyncio.gather(
                *(self._deliver(event, url.get_secret_value()) for url in self._urls)
            )
        except Exception:
            log.exception("webhook_event_failed", extra={"alert_id": event.alert_id})

    async def _deliver(self, event: AlertEvent, url: str) -> None:
        target = target_label(url)
        row_id = await asyncio.to_thread(self._new_row, event, target)
        error: str | None = None
        for attempt in range(1, self._attempts + 1):
            try:
                response = await self._http.post(url, json=event.payload)
                if response.is_success:
                    await asyncio.to_thread(self._finish, row_id, attempt, None)
                    return
                error = f"{target} answered {response.status_code}"
            except httpx.HTTPError as failure:
                error = f"{target} did not answer: {type(failure).__name__}"
            log.warning(
                "webhook_attempt_failed",
                extra={
                    "target": target,
                    "attempt": attempt,
                    "error": error,
                    "alert_id": event.alert_id,
                },
            )
            if attempt < self._attempts:
                await asyncio.sleep(self._backoff * 2 ** (attempt - 1))
        await asyncio.to_thread(self._finish, row_id, self._attempts, error)

    def _new_row(self, event: AlertEvent, target: str) -> int:
        with session_scope(self._sessions) as session:
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
