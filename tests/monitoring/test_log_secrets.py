"""The console's own log after notifications went out: no webhook or Apprise URL secret in
it, even at DEBUG (httpx logs every request's URL at INFO, Apprise whole URLs at DEBUG)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from tests.api.console import Console
from tests.api.server import free_port
from tests.monitoring.conftest import WebhookReceiver

SECRET = "hook-s3cr3t-4f1a"
HOOK, APPRISE = "log-secrets-hook", "log-secrets-apprise"


def test_notification_urls_with_secrets_stay_out_of_the_console_log(
    tmp_path: Path, webhook_receiver: WebhookReceiver
) -> None:
    host = webhook_receiver.url.removeprefix("http://")
    env = {
        **os.environ,
        "DTMA_DATABASE_URL": f"sqlite:///{tmp_path / 'data' / 'console.db'}",
        "DTMA_HOST": "127.0.0.1",
        "DTMA_PORT": str(free_port()),
        "DTMA_DO_API_URL": "http://127.0.0.1:9/v2",
        "DTMA_MONITOR_INTERVAL": "0",
        "DTMA_LOG_LEVEL": "DEBUG",
        # Paths of their own on the session's receiver: other tests count what reaches theirs.
        "DTMA_ALERT_WEBHOOKS": json.dumps([f"{webhook_receiver.url}/{HOOK}?token={SECRET}"]),
        "DTMA_NOTIFY_URLS": f"json://user:{SECRET}@{host}/{APPRISE}",
    }
    console = Console(env=env, log_path=tmp_path / "console.log")
    created = console.cli("token", "create", "--user", "ops", "--admin")
    assert created.returncode == 0, created.stderr
    console.token = created.stdout.strip().splitlines()[-1]
    before = (len(webhook_receiver.bodies(f"/{HOOK}")), len(webhook_receiver.bodies(f"/{APPRISE}")))
    console.start()
    try:
        with console.http() as http:
            sent = http.post("/api/v1/notifications/test")
        assert sent.status_code == 200, sent.text
        assert (sent.json()["delivered"], sent.json()["failed"]) == (2, 0)
    finally:
        console.stop()
    after = (len(webhook_receiver.bodies(f"/{HOOK}")), len(webhook_receiver.bodies(f"/{APPRISE}")))
    assert after == (before[0] + 1, before[1] + 1)  # both really went out over HTTP
    log = console.log_path.read_text()
    # The log did record the request (at DEBUG, with the library loggers' own lines)...
    assert "/api/v1/notifications/test" in log
    # ...and no URL's secret.
    assert SECRET not in log
