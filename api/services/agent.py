"""The one client of DTMA agents: every read of every agent goes through here.

HTTPS against the toolbox's pinned certificate (learnt over pinned SSH, see
api/services/toolboxes.py), nothing else: the TLS context of a toolbox trusts that
certificate alone, and the peer's certificate must also have the pinned SHA-256. A toolbox
whose agent was installed with plain HTTP on purpose (`dtma_agent_tls: false`, learnt the
same way) is read over plain HTTP. No request, hence no bearer token, is written before the
peer is proven.

HTTP/1.1 is spoken by h11 over asyncio streams. Several JSON reads of one toolbox are
pipelined: all sent at once on one connection, the answers read in order, so a toolbox
costs one round trip after the handshake. A connection whose answers all came back whole
is kept for the next JSON read of the same agent and pin for IDLE_SECONDS (below the
agent's own keep-alive), so back-to-back reads skip the TCP and TLS handshakes; one the
agent closed meanwhile is asked again on a new connection. The sync reads hundreds of
agents at once this way; httpx's pool slowed down with the number of hosts it held
(bench/bench_sync.py).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import ssl
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from urllib.parse import urlencode

import h11

from api.errors import ApiError, InvalidInput, NotFound

_MAX_BODY = 32 * 1024 * 1024
# Idle kept-alive connections: below the agent's KEEP_ALIVE_S (5 s, agent/dtma_agent/server.py).
IDLE_SECONDS = 2.0
IDLE_PER_AGENT = 4
_READ_SIZE = 64 * 1024
PIN_CHANGED_CODE = "agent_certificate_changed"


class AgentError(Exception):
    """The agent did not give a usable answer; `reason` says why, for humans."""

    def __init__(self, reason: str, *, status: int | None = None, code: str | None = None):
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.code = code


class AgentUnreachable(AgentError):
    """Nothing answered on the agent's port (or it answered too slowly)."""


class AgentPinMismatch(AgentError):
    """The port answered with a certificate other than the pinned one: nothing was sent."""

    def __init__(self, name: str, detail: str) -> None:
        super().__init__(f"agent certificate for {name} changed ({detail})", code=PIN_CHANGED_CODE)


class AgentNotPinned(AgentError):
    """The console does not know yet how to trust this toolbox's agent."""

    def __init__(self, name: str) -> None:
        super().__init__(
            f"no agent certificate is pinned for {name} yet (it is learnt over SSH)",
            code="agent_not_pinned",
        )


def certificate_sha256(pem: str) -> str:
    """Lowercase hex SHA-256 of the certificate's DER form (what the role publishes)."""
    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(pem)).hexdigest()


@dataclass(frozen=True)
class AgentPin:
    """How the console trusts one toolbox's agent: its certificate (PEM), or plain HTTP
    when the droplet says its agent serves no TLS."""

    certificate: str | None

    @property
    def tls(self) -> bool:
        return self.certificate is not None

    @property
    def sha256(self) -> str | None:
        return certificate_sha256(self.certificate) if self.certificate else None


PLAIN_HTTP = AgentPin(None)


@dataclass(frozen=True)
class AgentTarget:
    """One toolbox's agent: its name (for messages), address and pin (None: not learnt)."""

    name: str
    address: str
    pin: AgentPin | None


@lru_cache(maxsize=4096)
def _pinned_context(certificate: str) -> ssl.SSLContext:
    """A TLS client context whose only trust anchor is the pinned certificate. The
    certificate names no address the console dials, so the host name is not checked: the
    pin is."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = False
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(cadata=certificate)
    return context


def _reason(error: BaseException) -> str:
    return getattr(error, "strerror", None) or str(error) or type(error).__name__


def _error_detail(status: int, body: bytes, reason: bytes) -> tuple[str | None, str]:
    try:
        error = json.loads(body)["error"]
        return str(error.get("code")), str(error.get("message"))
    except (ValueError, KeyError, TypeError, AttributeError):
        return None, body[:200].decode("utf-8", "replace") or reason.decode("latin-1")


class _Connection:
    """One connection to one agent, proven (pin) before anything is written."""

    def __init__(self, client: AgentClient, target: AgentTarget) -> None:
        self.client = client
        self.target = target
        self.where = f"agent at {target.address}:{client.port}"
        self.http = h11.Connection(h11.CLIENT, max_incomplete_event_size=_READ_SIZE)
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.loop: asyncio.AbstractEventLoop | None = None

    def usable(self, loop: asyncio.AbstractEventLoop) -> bool:
        """Whether this idle connection can carry another request from `loop`."""
        return (
            self.loop is loop
            and self.reader is not None
            and not self.reader.at_eof()
            and self.writer is not None
            and not self.writer.is_closing()
        )

    async def open(self) -> None:
        self.loop = asyncio.get_running_loop()
        pin = self.target.pin
        if pin is None:
            await self._knock()
            raise AgentNotPinned(self.target.name)
        context = _pinned_context(pin.certificate) if pin.certificate else None
        try:
            async with asyncio.timeout(self.client.timeout):
                self.reader, self.writer = await asyncio.open_connection(
                    self.target.address,
                    self.client.port,
                    ssl=context,
                    server_hostname=self.target.address if context else None,
                )
        except TimeoutError:
            raise AgentUnreachable(
                f"{self.where} timed out after {self.client.timeout:g} s"
            ) from None
        except ssl.SSLCertVerificationError as error:
            raise AgentPinMismatch(
                self.target.name, error.verify_message or _reason(error)
            ) from None
        except ssl.SSLError as error:
            raise AgentUnreachable(f"{self.where} did not complete TLS: {_reason(error)}") from None
        except OSError as error:
            raise AgentUnreachable(f"{self.where} did not answer: {_reason(error)}") from error
        if context is not None:
            peer = self.writer.get_extra_info("ssl_object")
            der = peer.getpeercert(binary_form=True) if peer is not None else None
            if der is None or hashlib.sha256(der).hexdigest() != pin.sha256:
                self.close()
                raise AgentPinMismatch(self.target.name, "another certificate was presented")

    async def _knock(self) -> None:
        """Without a pin nothing is sent; but whether anything listens tells an agent to
        learn over SSH from a droplet without one (unreachable: no SSH read is worth it)."""
        try:
            async with asyncio.timeout(self.client.timeout):
                _, writer = await asyncio.open_connection(self.target.address, self.client.port)
        except TimeoutError:
            limit = self.client.timeout
            raise AgentUnreachable(f"{self.where} timed out after {limit:g} s") from None
        except OSError as error:
            raise AgentUnreachable(f"{self.where} did not answer: {_reason(error)}") from error
        writer.close()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()

    def discard(self) -> None:
        """Close it from any loop: on its own loop when that still runs, else only drop it
        (a loop that has ended cannot close its transports any more)."""
        if self.loop is None or self.loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self.loop:
            self.close()
        else:
            self.loop.call_soon_threadsafe(self.close)

    def request_bytes(self, path: str, token: str | None, accept: str) -> bytes:
        """The request, serialized by h11 (a throw-away state machine: pipelining sends
        the next request before the answer to this one is in)."""
        host = f"[{self.target.address}]" if ":" in self.target.address else self.target.address
        headers = [("Host", f"{host}:{self.client.port}"), ("Accept", accept),
                   ("User-Agent", "dtma-console")]  # fmt: skip
        if token:
            headers.append(("Authorization", f"Bearer {token}"))
        writer = h11.Connection(h11.CLIENT)
        request = writer.send(h11.Request(method="GET", target=path, headers=headers))
        return (request or b"") + (writer.send(h11.EndOfMessage()) or b"")

    async def send(self, data: bytes) -> None:
        assert self.writer is not None
        self.writer.write(data)
        await self._bounded(self.writer.drain(), "broke off")

    async def _bounded(self, awaitable: Any, what: str, timeout: float | None = -1.0) -> Any:
        limit = self.client.timeout if timeout == -1.0 else timeout
        try:
            async with asyncio.timeout(limit):
                return await awaitable
        except TimeoutError:
            raise AgentUnreachable(f"{self.where} timed out after {limit:g} s") from None
        except (OSError, ssl.SSLError) as error:
            raise AgentUnreachable(f"{self.where} {what}: {_reason(error)}") from error

    async def next_event(self, timeout: float | None = -1.0) -> Any:
        """The next h11 event of the current answer, reading from the socket as needed."""
        assert self.reader is not None
        while True:
            try:
                event = self.http.next_event()
            except h11.RemoteProtocolError as error:
                raise AgentError(f"{self.where} answered malformed HTTP: {error}") from error
            if event is not h11.NEED_DATA:
                return event
            data = await self._bounded(self.reader.read(_READ_SIZE), "broke off", timeout)
            self.http.receive_data(data)

    async def begin(self, path: str) -> h11.Response:
        """Tell h11 the request that was sent, and read the head of its answer."""
        self.http.send(h11.Request(method="GET", target=path, headers=[("Host", "agent")]))
        self.http.send(h11.EndOfMessage())
        event = await self.next_event()
        if isinstance(event, h11.ConnectionClosed):
            raise AgentUnreachable(f"{self.where} closed the connection without answering")
        if not isinstance(event, h11.Response):
            raise AgentError(f"{self.where} answered malformed HTTP: {type(event).__name__}")
        return event

    async def body(self) -> bytes:
        body = bytearray()
        while True:
            event = await self.next_event()
            if isinstance(event, h11.Data):
                body += event.data
                if len(body) > _MAX_BODY:
                    raise AgentError(f"{self.where} answered with a body over {_MAX_BODY} bytes")
            elif isinstance(event, h11.EndOfMessage):
                return bytes(body)
            else:
                raise AgentUnreachable(f"{self.where} broke off in the middle of an answer")

    def next_cycle(self) -> bool:
        """Whether the connection can carry the next pipelined answer."""
        if self.http.our_state is h11.DONE and self.http.their_state is h11.DONE:
            self.http.start_next_cycle()
            return True
        return False


class AgentClient:
    """Reads agents: JSON (one path or several pipelined) and log streams."""

    def __init__(self, *, port: int, timeout: float) -> None:
        self.port = port
        self.timeout = timeout
        # Kept-alive connections by agent (address, pinned certificate): a changed pin
        # never reuses a connection proven against the old one.
        self._idle: dict[tuple[str, str | None], list[_Connection]] = {}

    @staticmethod
    def _key(target: AgentTarget) -> tuple[str, str | None]:
        return target.address, target.pin.certificate if target.pin is not None else None

    def _take(self, target: AgentTarget) -> _Connection | None:
        idle = self._idle.get(self._key(target))
        loop = asyncio.get_running_loop()
        while idle:
            connection = idle.pop()
            if connection.usable(loop):
                return connection
            connection.discard()
        return None

    def _keep(self, target: AgentTarget, connection: _Connection) -> None:
        idle = self._idle.setdefault(self._key(target), [])
        if len(idle) >= IDLE_PER_AGENT:
            connection.close()
            return
        idle.append(connection)
        asyncio.get_running_loop().call_later(IDLE_SECONDS, self._expire, target, connection)

    def _expire(self, target: AgentTarget, connection: _Connection) -> None:
        idle = self._idle.get(self._key(target), [])
        if connection in idle:
            idle.remove(connection)
            connection.close()
        if not idle:
            self._idle.pop(self._key(target), None)

    def url(self, target: AgentTarget, path: str) -> str:
        host = f"[{target.address}]" if ":" in target.address else target.address
        scheme = "http" if target.pin is not None and not target.pin.tls else "https"
        return f"{scheme}://{host}:{self.port}{path}"

    async def aclose(self) -> None:
        """Close the kept-alive connections."""
        idle, self._idle = self._idle, {}
        for connections in idle.values():
            for connection in connections:
                connection.discard()

    async def get_json(
        self,
        target: AgentTarget,
        token: str | None,
        path: str,
        params: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        query = f"?{urlencode(params)}" if params else ""
        return (await self.read_many(target, token, [path + query]))[0]

    async def read_many(
        self, target: AgentTarget, token: str | None, paths: Sequence[str]
    ) -> list[dict[str, Any]]:
        """GET each path; each answer must be a 200 with a JSON object. Pipelined over one
        connection; should the agent close it early, the rest is asked on a new one."""
        if token is not None and any(ord(c) < 0x21 or ord(c) > 0x7E for c in token):
            raise AgentError("the toolbox's agent token holds characters a header cannot")
        answers: list[dict[str, Any]] = []
        while len(answers) < len(paths):
            connection = self._take(target)
            reused = connection is not None
            if connection is None:
                connection = _Connection(self, target)
                await connection.open()
            answered, whole = len(answers), False
            try:
                asked = paths[len(answers) :]
                await connection.send(
                    b"".join(connection.request_bytes(p, token, "application/json") for p in asked)
                )
                for path in asked:
                    response = await connection.begin(path)
                    answers.append(_json(response, await connection.body(), path))
                    if not connection.next_cycle():
                        break
                else:
                    whole = True
            except AgentUnreachable:
                if reused and len(answers) == answered:
                    continue  # the agent closed it while it was idle: ask on a new one
                raise
            finally:
                if whole:
                    self._keep(target, connection)
                else:
                    connection.close()
        return answers

    @asynccontextmanager
    async def open_logs(
        self, target: AgentTarget, token: str, ref: str, params: dict[str, Any]
    ) -> AsyncIterator[LogStream]:
        """The agent's log stream for container `ref`; errors are raised before any byte
        is relayed, so the caller can still answer with a proper status."""
        query = urlencode(
            {k: str(v).lower() if isinstance(v, bool) else v for k, v in params.items()}
        )
        path = f"/containers/{ref}/logs?{query}"
        connection = _Connection(self, target)
        await connection.open()
        try:
            await connection.send(connection.request_bytes(path, token, "text/plain"))
            response = await connection.begin(path)
            if response.status_code != 200:
                body = await connection.body()
                code, message = _error_detail(response.status_code, body, response.reason)
                raise log_error(response.status_code, code, message, ref)
            yield LogStream(connection, follow=bool(params.get("follow")))
        finally:
            connection.close()


class LogStream:
    """The body of a log answer, as it arrives (no read timeout while following)."""

    def __init__(self, connection: _Connection, *, follow: bool) -> None:
        self._connection = connection
        self._timeout = None if follow else connection.client.timeout

    async def aiter_raw(self) -> AsyncIterator[bytes]:
        while True:
            event = await self._connection.next_event(self._timeout)
            if isinstance(event, h11.Data):
                yield bytes(event.data)
            elif isinstance(event, h11.EndOfMessage):
                return
            else:
                raise AgentUnreachable(f"{self._connection.where} broke off the log stream")

    async def aread(self) -> bytes:
        chunks = bytearray()
        async for chunk in self.aiter_raw():
            chunks += chunk
            if len(chunks) > _MAX_BODY:
                raise AgentError("the agent's log answer is too large")
        return bytes(chunks)


def _json(response: h11.Response, body: bytes, path: str) -> dict[str, Any]:
    status = response.status_code
    if status != 200:
        code, message = _error_detail(status, body, response.reason)
        raise AgentError(f"agent answered {status} on {path}: {message}", status=status, code=code)
    try:
        parsed = json.loads(body) if body else None
    except ValueError:
        parsed = None
    if not isinstance(parsed, dict):
        raise AgentError(f"agent answered {path} with a body that is not a JSON object")
    return parsed


def log_error(status: int, code: str | None, message: str, ref: str) -> ApiError | AgentError:
    if status == 404:
        return NotFound(f"tool instance '{ref}' not found on the toolbox", code="tool_not_found")
    if status == 422:
        return InvalidInput("query", f"the agent refused the log parameters: {message}")
    return AgentError(f"agent answered {status}: {message}", status=status, code=code)
