"""A small HTTP/1.1 client for the Docker Engine API (asyncio streams + h11).

One connection per request (`Connection: close`) to the engine's unix socket (or a
`tcp://host:port` DOCKER_HOST): connecting to a local socket costs microseconds, and a
request never inherits a half-read answer. Answers are JSON, except log streams, whose body
is handed on as it arrives.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import h11

_READ_SIZE = 65536
_MAX_JSON_BODY = 64 * 1024 * 1024


class EngineUnreachable(Exception):
    """No answer from the engine (no socket, refused, timed out, cut off)."""


class EngineRefused(Exception):
    """The engine answered with an error status; `message` is its explanation."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status} {message}")
        self.status = status
        self.message = message


class EngineStream:
    """The body of one engine answer, as it arrives; close() frees the connection."""

    def __init__(self, connection: _Exchange, timeout: float | None) -> None:
        self._connection = connection
        self._timeout = timeout

    async def chunks(self) -> AsyncIterator[bytes]:
        while True:
            event = await self._connection.next_event(self._timeout)
            if isinstance(event, h11.Data):
                yield bytes(event.data)
            elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                return

    def close(self) -> None:
        self._connection.close()


class EngineHttp:
    def __init__(self, url: str, api_version: str, timeout: float = 10.0) -> None:
        self.url = url
        self._prefix = f"/v{api_version}"
        self._timeout = timeout
        parts = urlsplit(url)
        if parts.scheme in ("unix", "http+unix"):
            self._unix_path: str | None = parts.path
            self._address: tuple[str, int] | None = None
        elif parts.scheme in ("tcp", "http"):
            self._unix_path = None
            self._address = (parts.hostname or "127.0.0.1", parts.port or 2375)
        else:
            raise ValueError(f"DOCKER_HOST {url!r}: only unix:// and tcp:// are supported")

    async def get_json(self, path: str, **params: Any) -> Any:
        """GET an engine path and parse its JSON answer, within the request timeout."""
        try:
            return await asyncio.wait_for(self._get_json(path, params), self._timeout)
        except TimeoutError as exc:
            raise EngineUnreachable("TimeoutError") from exc

    async def _get_json(self, path: str, params: dict[str, Any]) -> Any:
        connection = await self._exchange(path, params)
        try:
            body = bytearray()
            async for chunk in EngineStream(connection, None).chunks():
                body += chunk
                if len(body) > _MAX_JSON_BODY:
                    raise EngineUnreachable("the engine's answer is too large")
        finally:
            connection.close()
        try:
            return json.loads(body)
        except ValueError as exc:
            raise EngineUnreachable("the engine answered with something that is not JSON") from exc

    async def stream(self, path: str, params: dict[str, Any], *, follow: bool) -> EngineStream:
        """Open a streamed answer (logs): the head within the timeout; then the body, with
        no timeout while following (silence is normal), else the timeout per read."""
        try:
            connection = await asyncio.wait_for(self._exchange(path, params), self._timeout)
        except TimeoutError as exc:
            raise EngineUnreachable("TimeoutError") from exc
        return EngineStream(connection, None if follow else self._timeout)

    async def _exchange(self, path: str, params: dict[str, Any]) -> _Exchange:
        target = self._prefix + quote(path, safe="/")
        query = {k: v for k, v in params.items() if v is not None}
        if query:
            target += "?" + urlencode(query)
        try:
            if self._unix_path is not None:
                reader, writer = await asyncio.open_unix_connection(self._unix_path)
            else:
                assert self._address is not None
                reader, writer = await asyncio.open_connection(*self._address)
        except OSError as exc:
            raise EngineUnreachable(type(exc).__name__) from exc
        connection = _Exchange(reader, writer)
        try:
            await connection.request(target)
            status, message = await connection.head()
        except BaseException:
            connection.close()
            raise
        if status >= 400:
            connection.close()
            raise EngineRefused(status, message)
        return connection


class _Exchange:
    """One request and its answer over one connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._h11 = h11.Connection(h11.CLIENT)

    async def request(self, target: str) -> None:
        headers = [("Host", "docker"), ("Accept", "application/json"), ("Connection", "close")]
        data = self._h11.send(h11.Request(method="GET", target=target, headers=headers))
        data = (data or b"") + (self._h11.send(h11.EndOfMessage()) or b"")
        try:
            self._writer.write(data)
            await self._writer.drain()
        except OSError as exc:
            raise EngineUnreachable(type(exc).__name__) from exc

    async def head(self) -> tuple[int, str]:
        """The answer's status, and for an error the engine's explanation."""
        while True:
            event = await self.next_event(None)
            if isinstance(event, h11.Response):
                break
            if isinstance(event, h11.ConnectionClosed):
                raise EngineUnreachable("the engine closed the connection")
        if event.status_code < 400:
            return event.status_code, ""
        body = bytearray()
        while len(body) < 65536:
            more = await self.next_event(None)
            if not isinstance(more, h11.Data):
                break
            body += more.data
        try:
            message = str(json.loads(body).get("message", ""))
        except (ValueError, AttributeError):
            message = body.decode("utf-8", "replace").strip()
        return event.status_code, message or event.reason.decode("latin-1")

    async def next_event(self, timeout: float | None) -> Any:
        while True:
            try:
                event = self._h11.next_event()
            except h11.RemoteProtocolError as exc:
                raise EngineUnreachable(f"the engine's answer is not HTTP: {exc}") from exc
            if event is not h11.NEED_DATA:
                return event
            try:
                if timeout is None:
                    data = await self._reader.read(_READ_SIZE)
                else:
                    data = await asyncio.wait_for(self._reader.read(_READ_SIZE), timeout)
            except TimeoutError as exc:
                raise EngineUnreachable("TimeoutError") from exc
            except OSError as exc:
                raise EngineUnreachable(type(exc).__name__) from exc
            self._h11.receive_data(data)

    def close(self) -> None:
        self._writer.close()
