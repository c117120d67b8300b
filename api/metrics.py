"""Prometheus metrics: HTTP requests and playbook runs. Served at /metrics."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

HTTP_REQUESTS = Counter(
    "dtma_http_requests_total", "HTTP requests answered.", ["method", "route", "status"]
)
HTTP_DURATION = Histogram(
    "dtma_http_request_duration_seconds", "Time to answer an HTTP request.", ["method", "route"]
)
RUNS = Counter(
    "dtma_runs_total", "Playbook runs finished, by action and status.", ["action", "status"]
)
RUN_DURATION = Histogram(
    "dtma_run_duration_seconds",
    "Duration of finished playbook runs.",
    ["action", "status"],
    buckets=(1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800),
)

RUNS_QUEUED = Gauge(
    "dtma_runs_queued",
    "Runs stored and waiting to execute (this process's queue with the local executor; "
    "every console's with celery).",
)


def render() -> tuple[bytes, str]:
    return generate_latest(), CONTENT_TYPE_LATEST
