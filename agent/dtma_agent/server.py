"""The agent's HTTP/1.1 server: asyncio streams, the h11 parser and the stdlib ssl module.

Small on purpose (the agent idles on 512 MB droplets): keep-alive with pipelining (the
console writes several requests at once and reads the answers in order), JSON answers with
a Content-Length, streamed answers chunked, each relayed until it ends or the client goes
away (watched while streaming, so an abandoned log follow frees its engine stream at once).
Idle connections close after KEEP_ALIVE_S; a request must arrive whole within REQUEST_S.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import suppress
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, unquote

import h11

KEEP_ALIVE_S = 5.0
REQUEST_S = 30.0
TLS_HANDSHAKE_S = 10.0
# Seconds a stop waits for answers under way (streams are cut at once: they do not end).
GRACEFUL_STOP_S = 5.0
MAX_REQUEST_BODY = 65536
_READ_SIZE = 65536
_REASONS = {
    200: b"OK", 400: b"Bad Request", 401: b"Unauthorized", 404: b"Not Found",
    405: b"Method Not Allowed", 413: b"Content Too Large", 422: b"Unprocessable Content",
    500: b"Internal Server Error", 502: b"Bad Gateway", 503: b"Service Unavailable",
}  # fmt: skip
log = logging.getLogger("dtma_agent")


@dataclass
class Request:
    method: str
    path: str  # percent-decoded, without the query
    query: dict[str, str]  # the last value of each name wins
    headers: dict[str, str]  # lower-case names; the first of repeated headers wins


@dataclass
class Response:
    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    # A streamed body (sent chunked); closed when the client leaves.
    stream: AsyncIterator[bytes] | None = None


App = Callable[[Request], Awaitable[Response]]


def tls_context(certificate: str, private_key: str) -> ssl.SSLContext:
    """Server-side TLS 1.2+ with forward-secret AEAD suites only (TLS 1.3's are all so)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers("ECDHE+AESGCM:ECDHE+CHACHA20")
    context.options |= ssl.OP_NO_RENEGOTIATION
    context.load_cert_chain(certificate, private_key)
    return context


def _date() -> bytes:
    return time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime()).encode()


class _ClientGone(Exception):
    pass


class HttpServer:
    def __init__(self, app: App, tls: ssl.SSLContext | None) -> None:
        self._app = app
        self._tls = tls
        self._connections: dict[asyncio.Task[None], str] = {}  # task -> idle|busy|streaming
        self._server: asyncio.Server | None = None

    async def start(self, host: str, port: int) -> None:
        self._server = await asyncio.start_server(
            self._accept,
            host,
            port,
            ssl=self._tls,
            ssl_handshake_timeout=TLS_HANDSHAKE_S if self._tls else None,
            reuse_address=True,
            backlog=128,
        )

    async def stop(self) -> None:
        """Stop listening, close idle connections and streams, let answers finish."""
        if self._server is not None:
            self._server.close()
        for task, state in list(self._connections.items()):
            if state != "busy":
                task.cancel()
        if self._connections:
            await asyncio.wait(list(self._connections), timeout=GRACEFUL_STOP_S)
        for task in list(self._connections):
            task.cancel()
        if self._connections:
            await asyncio.wait(list(self._connections), timeout=1)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections[task] = "idle"
        try:
            await self._serve(task, reader, writer)
        except (OSError, ssl.SSLError, TimeoutError, _ClientGone, h11.ProtocolError):
            pass  # the client went away or broke the protocol: nothing to answer
        except asyncio.CancelledError:
            pass
        finally:
            del self._connections[task]
            writer.close()
            with suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1)

    async def _serve(
        self, task: asyncio.Task[None], reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        connection = h11.Connection(h11.SERVER, max_incomplete_event_size=16384)
        while True:
            self._connections[task] = "idle"
            try:
                request = await self._read_request(connection, reader)
            except h11.RemoteProtocolError:
                if connection.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                    await self._send(connection, writer, _bad_request(), head_only=False)
                return
            if request is None:
                return
            self._connections[task] = "busy"
            response = await self._app(request)
            head_only = request.method == "HEAD"
            if response.stream is not None and not head_only:
                self._connections[task] = "streaming"
                if not await self._stream(connection, reader, writer, response):
                    return
            else:
                if response.stream is not None:
                    await _close_stream(response.stream)
                await self._send(connection, writer, response, head_only)
            if connection.our_state is not h11.DONE or connection.their_state is not h11.DONE:
                return
            connection.start_next_cycle()

    async def _read_request(
        self, connection: h11.Connection, reader: asyncio.StreamReader
    ) -> Request | None:
        """The next request, whole (its body read and dropped); None when the client is done."""
        timeout = KEEP_ALIVE_S
        request: h11.Request | None = None
        body = 0
        while True:
            event = connection.next_event()
            if event is h11.NEED_DATA:
                try:
                    data = await asyncio.wait_for(reader.read(_READ_SIZE), timeout)
                except TimeoutError:
                    return None  # idle keep-alive, or a request that never completed
                connection.receive_data(data)
                timeout = REQUEST_S
            elif isinstance(event, h11.Request):
                request = event
            elif isinstance(event, h11.Data):
                body += len(event.data)
                if body > MAX_REQUEST_BODY:
                    raise h11.RemoteProtocolError("request body too large", 413)
            elif isinstance(event, h11.EndOfMessage) and request is not None:
                return _request(request)
            elif isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
                return None

    async def _send(
        self, connection: h11.Connection, writer: asyncio.StreamWriter, response: Response,
        head_only: bool,
    ) -> None:  # fmt: skip
        headers = _head(response)
        headers.append((b"content-length", str(len(response.body)).encode()))
        data = connection.send(
            h11.Response(
                status_code=response.status,
                headers=headers,
                reason=_REASONS.get(response.status, b""),
            )
        )
        if not head_only and response.body:
            data += connection.send(h11.Data(data=response.body))
        data += connection.send(h11.EndOfMessage())
        writer.write(data)
        await writer.drain()

    async def _stream(
        self,
        connection: h11.Connection,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        response: Response,
    ) -> bool:
        """Relay a streamed body; True when it ended normally (the connection may go on)."""
        assert response.stream is not None
        relay = asyncio.ensure_future(self._relay(connection, writer, response))
        watch = asyncio.ensure_future(_watch_for_close(connection, reader))
        try:
            done, _ = await asyncio.wait({relay, watch}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (relay, watch):
                task.cancel()
            await asyncio.gather(relay, watch, return_exceptions=True)
            await _close_stream(response.stream)
        if relay in done and not relay.cancelled() and relay.exception() is None:
            return True
        if relay in done and not relay.cancelled():
            error = relay.exception()
            if not isinstance(error, OSError | ssl.SSLError):
                log.warning("a streamed answer broke off: %s", error)
        return False

    async def _relay(
        self, connection: h11.Connection, writer: asyncio.StreamWriter, response: Response
    ) -> None:
        assert response.stream is not None
        head = h11.Response(status_code=response.status, headers=_head(response), reason=b"OK")
        writer.write(connection.send(head))
        await writer.drain()
        async for chunk in response.stream:
            writer.write(connection.send(h11.Data(data=chunk)))
            await writer.drain()
        writer.write(connection.send(h11.EndOfMessage()))
        await writer.drain()


async def _watch_for_close(connection: h11.Connection, reader: asyncio.StreamReader) -> None:
    """Returns when the client closes its side; what it sends meanwhile (a pipelined
    request) is kept for the next cycle, up to a bound."""
    kept = 0
    while kept <= MAX_REQUEST_BODY:
        data = await reader.read(_READ_SIZE)
        if not data:
            return
        kept += len(data)
        connection.receive_data(data)
    await asyncio.Event().wait()  # enough kept: stop reading, wait for the relay


async def _close_stream(stream: AsyncIterator[bytes]) -> None:
    close = getattr(stream, "aclose", None)
    if close is not None:
        with suppress(Exception):
            await close()


def _head(response: Response) -> list[tuple[bytes, bytes]]:
    headers = [(b"date", _date()), (b"content-type", response.content_type.encode())]
    headers += [(k.lower().encode(), v.encode()) for k, v in response.headers.items()]
    return headers


def _bad_request() -> Response:
    body = b'{"error":{"code":"bad_request","message":"invalid HTTP request"}}'
    return Response(400, body, headers={"Connection": "close"})


def _request(event: h11.Request) -> Request:
    target = event.target.decode("latin-1")
    path, _, query = target.partition("?")
    headers: dict[str, str] = {}
    for name, value in event.headers:
        headers.setdefault(name.decode("latin-1"), value.decode("latin-1"))
    return Request(
        method=event.method.decode("latin-1"),
        path=unquote(path),
        query=dict(parse_qsl(query, keep_blank_values=True)),
        headers=headers,
    )


async def serve_until_stopped(
    server: HttpServer, host: str, port: int, ready: Callable[[], None]
) -> None:
    """Listen, call ready() once listening, serve until SIGTERM or SIGINT, then stop."""
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    loop.set_exception_handler(_quiet_exceptions)
    await server.start(host, port)
    ready()
    await stopping.wait()
    await server.stop()


def _quiet_exceptions(loop: asyncio.AbstractEventLoop, context: dict[str, object]) -> None:
    """Failed TLS handshakes and reset connections are a client's business, not ours."""
    error = context.get("exception")
    if isinstance(error, OSError | ssl.SSLError | TimeoutError):
        log.debug("connection error: %s", context.get("message"))
        return
    loop.default_exception_handler(context)
