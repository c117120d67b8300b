"""RunHandle: a run in a worker thread, its events as an async iterator, cancel, result."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncIterator

from runner.execute import EventCallback, Execution
from runner.models import ConsoleResult, RunEvent
from runner.request import ValidRequest

log = logging.getLogger("runner")


class RunHandle:
    """A started run. Any number of consumers may iterate its events, each from any seq."""

    def __init__(self, request: ValidRequest, on_event: EventCallback | None = None) -> None:
        self.run_id = request.run_id
        self._on_event = on_event
        self._execution = Execution(request, on_event=self._publish)
        self._events: list[RunEvent] = []
        self._result: ConsoleResult | None = None
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()
        self._thread = threading.Thread(target=self._work, name=f"run-{self.run_id}", daemon=True)

    def start(self) -> RunHandle:
        self._thread.start()
        return self

    # -- worker side ---------------------------------------------------------------------
    def _notify(self) -> None:
        for loop, signal in list(self._waiters):
            with contextlib.suppress(RuntimeError):  # that consumer's loop is closed
                loop.call_soon_threadsafe(signal.set)

    def _publish(self, event: RunEvent) -> None:
        with self._lock:
            self._events.append(event)
        self._notify()
        if self._on_event is not None:
            self._on_event(event)  # Execution logs and survives a failing callback

    def _work(self) -> None:
        try:
            result = self._execution.run()
        except Exception as error:  # a bug in runner/: still end the run, never hang waiters
            log.exception("run.worker_failed run_id=%s", self.run_id)
            result = self._execution.crashed(error)
        with self._lock:
            self._result = result
            self._done.set()
        self._notify()

    # -- caller side ---------------------------------------------------------------------
    @property
    def done(self) -> bool:
        return self._done.is_set()

    def cancel(self) -> None:
        """Stop the run: ansible and its ssh processes are killed, the status is `canceled`."""
        self._execution.cancel()

    def result(self, timeout: float | None = None) -> ConsoleResult:
        """Block until the run ended (TimeoutError if it did not within `timeout`)."""
        if not self._done.wait(timeout):
            raise TimeoutError(f"run {self.run_id} still running after {timeout} s")
        assert self._result is not None
        return self._result

    async def events(self, after: int = 0) -> AsyncIterator[RunEvent]:
        """Events with seq > `after` (a client's Last-Event-ID), live until the run ends."""
        loop = asyncio.get_running_loop()
        signal = asyncio.Event()
        waiter = (loop, signal)
        self._waiters.add(waiter)
        try:
            index = max(after, 0)  # seq n is self._events[n - 1]
            while True:
                with self._lock:
                    signal.clear()
                    batch = self._events[index:]
                    finished = self._done.is_set()
                for event in batch:
                    yield event
                index += len(batch)
                if finished and not batch:
                    return
                if not batch:
                    await signal.wait()
        finally:
            self._waiters.discard(waiter)

    async def wait(self) -> ConsoleResult:
        """The ConsoleResult, once the run has ended."""
        async for _ in self.events(after=len(self._events)):
            pass
        return self.result(timeout=0)
