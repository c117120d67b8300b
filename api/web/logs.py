"""The Logs tab's streams: a tool's log lines as Server-Sent Events (live tail), and the
same lines as a file to download. Both relay the API's own agent log route."""

from __future__ import annotations

import codecs
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Path, Query
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from api.deps import ContextDep, SessionDep, visible_toolbox
from api.errors import ApiError
from api.routes.tools import LOGS_TAIL_MAX, tool_logs
from api.schemas.actions import TOOL_NAME
from api.web.auth import BrowserDep

router = APIRouter(include_in_schema=False)

ToolboxIdPath = Annotated[str, Path(max_length=64)]
ToolNamePath = Annotated[str, Path(pattern=TOOL_NAME)]
TailQuery = Annotated[int, Query(ge=0, le=LOGS_TAIL_MAX)]
SSE_HEADERS = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}


def sse(data: str, event: str | None = None) -> bytes:
    head = f"event: {event}\n" if event else ""
    body = "".join(f"data: {line}\n" for line in data.split("\n"))
    return f"{head}{body}\n".encode()


async def _lines(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    pending = ""
    async for chunk in chunks:
        pending += decoder.decode(chunk)
        *complete, pending = pending.split("\n")
        for line in complete:
            yield sse(line.rstrip("\r"))
    pending += decoder.decode(b"", final=True)
    if pending:
        yield sse(pending.rstrip("\r"))


@router.get("/toolboxes/{toolbox_id}/tools/{name}/logs/stream")
async def log_stream(
    toolbox_id: ToolboxIdPath,
    name: ToolNamePath,
    browser: BrowserDep,
    context: ContextDep,
    db: SessionDep,
    tail: TailQuery = 100,
) -> StreamingResponse:
    """`data:` one log line per event; `event: failure` with the reason when the logs cannot
    be read; `event: end` when the container's log stream ends."""
    try:
        toolbox = await run_in_threadpool(visible_toolbox, db, browser.user, toolbox_id)
        upstream = await tool_logs(
            name=name, toolbox=toolbox, context=context, tail=tail, since=None,
            timestamps=False, follow=True,
        )  # fmt: skip
    except ApiError as error:
        failure = sse(error.message, "failure") + b"retry: 86400000\n\n"
        return StreamingResponse(iter([failure]), media_type="text/event-stream")

    async def relay() -> AsyncIterator[bytes]:
        body = upstream.body_iterator
        try:
            yield b"retry: 3000\n\n"
            async for event in _lines(body):  # type: ignore[arg-type]
                yield event
            yield sse("", "end")
        finally:
            await body.aclose()  # type: ignore[attr-defined]

    return StreamingResponse(relay(), media_type="text/event-stream", headers=SSE_HEADERS)


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
    response = await tool_logs(
        name=name, toolbox=toolbox, context=context, tail=tail, since=None,
        timestamps=True, follow=False,
    )  # fmt: skip
    filename = f"{toolbox.name}-{name}.log"
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response
