"""Redis pub/sub between console processes and workers. A notice only says "look again":
the database holds the events, in order, so a lost notice costs latency, never an event."""

from __future__ import annotations

import logging

import redis

log = logging.getLogger("api.executors")

CANCEL_CHANNEL = "dtma:runs:cancel"


def run_channel(run_id: str) -> str:
    """Notices for one run: `<seq>` after each stored event, `end` once it ended."""
    return f"dtma:run:{run_id}"


def publish(client: redis.Redis, channel: str, message: str) -> None:
    """Best effort: readers also poll the database, so a failed publish only delays them."""
    try:
        client.publish(channel, message)
    except redis.RedisError as error:
        log.warning("bus_publish_failed", extra={"channel": channel, "error": str(error)})
