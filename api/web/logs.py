"""The Logs tab's streams: a tool's log lines as Server-Sent Events (live tail), and the
same lines as a file to download. Both relay the API's own agent log route.

Every line goes out with an SSE `id`: its Docker timestamp (nanoseconds) and its place
among the lines of that same timestamp. A browser that lost the stream (a dropped
connection, a tab the browser froze in the background) comes back with that id
(`Last-Event-ID`, or `?after=` when the page reconnects itself) and gets the lines after
it, each once, instead of the tail again.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Header, Path, Query
from fastapi.responses import StreamingResponse
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

from api.deps import ContextDep, SessionDep, visible_toolbox
from api.errors import ApiError
from api.schemas.actions import TOOL_NAME
from api.services import tool_logs
from api.services.tool_logs import LOGS_TAIL_MAX
from api.web.auth import BrowserDep

router = APIRouter(include_in_schema=False)

ToolboxIdPath = Annotated[str, Path(max_length=64)]
ToolNamePath = Annotated[str, Path(pattern=TOOL_NAME)]
TailQuery = Annotated[int, Query(ge=0, le=LOGS_TAIL_MAX)]
CursorText = Annotated[str | None, Query(max_length=64)]
SSE_HEADERS = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}

_STAMP = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?Z$")
_CURSOR = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)\.(\d{9})Z~(\d{6})$")


def sse(data: str, event: str | None = None, event_id: str | None = None) -> bytes:
    head = f"event: {event}\n" if event else ""
    if event_id:
        head += f"id: {event_id}\n"
    body = "".join(f"data: {line}\n" for line in data.split("\n"))
    return f"{head}{body}\n".encode()


@dataclass(frozen=True, order=True)
class Cursor:
    """Where a line is in the log: its timestamp (fixed 9 fraction digits, so that text
    order is time order) and how many lines of that same timestamp came before it."""

    stamp: str
    index: int

    def __str__(self) -> str:
        return f"{self.stamp}~{self.index:06d}"

    @classmethod
    def parse(cls, text: str | None) -> Cursor | None:
        match = _CURSOR.match(text or "")
        return cls(f"{match[1]}.{match[2]}Z", int(match[3])) if match else None

    @property
    def since(self) -> datetime:
        """The moment to ask the agent from (microseconds: a little early, never late)."""
        seconds, fraction = self.stamp[:-1].split(".")
        return datetime.fromisoformat(f"{seconds}.{fraction[:6]}").replace(tzinfo=UTC)


def _stamp(text: str) -> str | None:
    match = _STAMP.match(text)
    return f"{match[1]}.{(match[2] or '').ljust(9, '0')}Z" if match else None


async def _lines(chunks: AsyncIterator[bytes]) -> AsyncIterator[str]:
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    pending = ""
    async for chunk in chunks:
        pending += decoder.decode(chunk)
        *complete, pending = pending.split("\n")
        for line in complete:
            yield line.rstrip("\r")
    pending += decoder.decode(b"", final=True)
    if pending:
        yield pending.rstrip("\r")


async def _events(lines: AsyncIterator[str], after: Cursor | None) -> AsyncIterator[bytes]:
    """Each `<timestamp> <text>` line as an event with its cursor as id; lines at or
    before `after` (sent before the browser lost the stream) are left out."""
    previous: Cursor | None = None
    async for line in lines:
        stamp_text, _, text = line.partition(" ")
        stamp = _stamp(stamp_text)
        if stamp is None:  # not a timestamped line: pass it on as it is
            yield sse(line)
            continue
        index = previous.index + 1 if previous is not None and previous.stamp == stamp else 0
        previous = Cursor(stamp, index)
        if after is not None and previous <= after:
            continue
        yield sse(text, event_id=str(previous))


@router.get("/toolboxes/{toolbox_id}/tools/{name}/logs/stream")
async def log_stream(
    toolbox_id: ToolboxIdPath,
    name: ToolNamePath,
    browser: BrowserDep,
    context: ContextDep,
    db: SessionDep,
    tail: TailQuery = 100,
    after: CursorText = None,
    last_event_id: Annotated[str | None, Header(max_length=64)] = None,
) -> StreamingResponse:
    """`id:` + `data:` one log line per event; `event: failure` with the reason when the
    logs cannot be read; `event: end` when the container's log stream ends. With a cursor
    (`Last-Event-ID` or `after`), only the lines after it."""
    resume = Cursor.parse(last_event_id) or Cursor.parse(after)
    try:
        toolbox = await run_in_threadpool(visible_toolbox, db, browser.user, toolbox_id)
        upstream = await tool_logs.open_logs(
            context, toolbox, name,
            tail=LOGS_TAIL_MAX if resume else tail, since=resume.since if resume else None,
            timestamps=True, follow=True, user=browser.user,
        )  # fmt: skip
    except ApiError as error:
        failure = sse(error.message, "failure") + b"retry: 86400000\n\n"
        return StreamingResponse(iter([failure]), media_type="text/event-stream")

    async def relay() -> AsyncIterator[bytes]:
        try:
            yield b"retry: 3000\n\n"
            async for event in _events(_lines(upstream.chunks), resume):
                yield event
            yield sse("", "end")
        finally:
            await upstream.close()

    return StreamingResponse(
        relay(),
        media_type="text/event-stream",
        headers=SSE_HEADERS,
        background=BackgroundTask(upstream.close),
    )


@router.get("/toolboxes/{toolbox_id}/tools/{name}/logs.txt")
async def log_download(
    toolbox_id: ToolboxIdPath,
    name: ToolNamePath,
    browser: BrowserDep,
    context: ContextDep,
    db: SessionDep,
    tail: TailQuery = 1000,
) -> StreamingResponse:
    toolbox = await run_in_threadpool(visible_toolbox, db, browser.user, toolbox_id)
    stream = await tool_logs.open_logs(
        context,
        toolbox,
        name,
        tail=tail,
        since=None,
        timestamps=True,
        follow=False,
        user=browser.user,
    )
    filename = f"{toolbox.name}-{name}.log"
    return StreamingResponse(
        stream.chunks,
        media_type="text/plain; charset=utf-8",
        headers={
            "Cache-Control": "no-store",
            "Content-Disposition": f'attachment; filename="{filename}"',
        },
        background=BackgroundTask(stream.close),
    )
