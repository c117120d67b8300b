"""The sync's reader of agents: a few JSON GETs pipelined over one HTTP/1.1 connection.

Why not the shared httpx client (api/services/agent.py, used by the routes)? The sync reads
hundreds of agents at once, and httpx's connection pool slows down with the number of
hosts it holds: on this 2-core machine 500 agents took 30 s through it and under 1 s
through plain asyncio streams (bench/bench_sync.py measures both). The agent answers its
JSON routes with a Content-Length (uvicorn), which is all this reader needs to understand;
it also accepts chunked bodies and a server that closes the connection.

Errors are the agent client's own: AgentUnreachable (nothing, or nothing in time) and
AgentError (an answer that is not a 200 with a JSON object).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any

from api.services.agent import AgentError, AgentUnreachable

_MAX_HEAD = 64 * 1024
_MAX_BODY = 32 * 1024 * 1024


class AgentReader:
    def __init__(self, *, port: int, timeout: float) -> None:
        self.port = port
        self.timeout = timeout

    async def read(self, address: str, token: str, paths: Sequence[str]) -> list[dict[str, Any]]:
        """GET each path (with the bearer token); each answer must be a JSON object.

        The requests are pipelined: all sent at once, the answers read in order, so a
        toolbox costs one round trip after the connection, not one per path. Should the
        agent close the connection early, the rest is asked again on a new one."""
        if any(ord(c) < 0x21 or ord(c) > 0x7E for c in token):
            raise AgentError("the toolbox's agent token holds characters a header cannot")
        where = f"agent at {address}:{self.port}"
        host = f"[{address}]" if ":" in address else address
        answers: list[dict[str, Any]] = []
        while len(answers) < len(paths):
            reader, writer = await self._connect(address, where)
            try:
                asked = paths[len(answers) :]
                writer.write(
                    b"".join(
                        f"GET {path} HTTP/1.1\r\nHost: {host}:{self.port}\r\n"
                        f"Authorization: Bearer {token}\r\nAccept: application/json\r\n"
                        "User-Agent: dtma-console-sync\r\n\r\n".encode()
                        for path in asked
                    )
                )
                for path in asked:
                    status, keep_alive, body = await self._response(reader, writer, where)
                    answers.append(_json(status, body, path))
                    if not keep_alive:
                        break
            finally:
                writer.close()
        return answers

    async def _response(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, where: str
    ) -> tuple[int, bool, bytes]:
        try:
            async with asyncio.timeout(self.timeout):
                await writer.drain()
                return await _response(reader)
        except TimeoutError:
            raise AgentUnreachable(f"{where} timed out after {self.timeout:g} s") from None
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as error:
            raise AgentUnreachable(f"{where} broke off: {_reason(error)}") from error
        except ValueError as error:
            raise AgentError(f"{where} answered malformed HTTP: {error}") from error

    async def _connect(
        self, address: str, where: str
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        try:
            async with asyncio.timeout(self.timeout):
                return await asyncio.open_connection(address, self.port, limit=_MAX_HEAD)
        except TimeoutError:
            raise AgentUnreachable(f"{where} timed out after {self.timeout:g} s") from None
        except OSError as error:
            raise AgentUnreachable(f"{where} did not answer: {_reason(error)}") from error


def _reason(error: BaseException) -> str:
    return getattr(error, "strerror", None) or str(error) or type(error).__name__


async def _response(reader: asyncio.StreamReader) -> tuple[int, bool, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    parts = status_line.split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise AgentError(f"the agent answered something that is not HTTP: {status_line[:80]!r}")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        if name:
            headers[name.strip().lower()] = value.strip()
    keep_alive = headers.get("connection", "").lower() != "close" and parts[0] == "HTTP/1.1"
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return int(parts[1]), keep_alive, await _chunked(reader)
    if "content-length" in headers:
        length = int(headers["content-length"])
        if not 0 <= length <= _MAX_BODY:
            raise AgentError(f"the agent announced a body of {length} bytes")
        return int(parts[1]), keep_alive, await reader.readexactly(length)
    return int(parts[1]), False, await reader.read(_MAX_BODY)


async def _chunked(reader: asyncio.StreamReader) -> bytes:
    body = bytearray()
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0].strip() or b"0", 16)
        if size == 0:
            await reader.readuntil(b"\r\n")  # no trailers from the agent
            return bytes(body)
        if len(body) + size > _MAX_BODY:
            raise AgentError("the agent's answer is too large")
        body += await reader.readexactly(size)
        await reader.readexactly(2)


def _json(status: int, body: bytes, path: str) -> dict[str, Any]:
    try:
        parsed = json.loads(body) if body else None
    except ValueError:
        parsed = None
    if status != 200:
        error = parsed.get("error") if isinstance(parsed, dict) else None
        message = (
            str(error.get("message"))
            if isinstance(error, dict)
            else body[:200].decode("utf-8", "replace")
        )
        code = str(error.get("code")) if isinstance(error, dict) else None
        raise AgentError(f"agent answered {status} on {path}: {message}", status=status, code=code)
    if not isinstance(parsed, dict):
        raise AgentError(f"agent answered {path} with a body that is not a JSON object")
    return parsed
