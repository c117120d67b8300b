"""The two ways to run a playbook: blocking, or started with a handle."""

from __future__ import annotations

from runner.execute import EventCallback, Execution
from runner.handle import RunHandle
from runner.models import ConsoleResult
from runner.request import RunRequest, validate_request


def run_playbook(req: RunRequest, on_event: EventCallback | None = None) -> ConsoleResult:
    """Validate (RequestError before anything starts), run, and return the ConsoleResult.

    `on_event` receives every RunEvent as it happens, in this thread.
    """
    return Execution(validate_request(req), on_event=on_event).run()


def start_run(req: RunRequest, on_event: EventCallback | None = None) -> RunHandle:
    """Validate (RequestError at once), then run in a worker thread; returns immediately.

    `on_event`, if given, is called in the worker thread for every event (e.g. to persist
    it); consumers on an event loop use `handle.events()` instead.
    """
    return RunHandle(validate_request(req), on_event).start()
