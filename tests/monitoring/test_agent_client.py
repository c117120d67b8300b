"""The one agent client against a loopback server speaking the ways HTTP/1.1 may answer, over
plain HTTP and over TLS with a pinned certificate, and against the real agent (uvicorn)."""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from api.services.agent import (
    PLAIN_HTTP,
    AgentClient,
    AgentError,
    AgentPin,
    AgentPinMismatch,
    AgentTarget,
    AgentUnreachable,
)
from tests.agent.conftest import Certificate, make_certificate

Answer = Callable[[bytes], bytes | None]


def answer(status: int, body: object, *, chunked: bool = False, close: bool = False) -> bytes:
    payload = json.dumps(body).encode()
    head = f"HTTP/1.1 {status} X\r\ncontent-type: application/json\r\n"
    if close:
        head += "connection: close\r\n"
    if chunked:
        half = len(payload) // 2
        chunks = [payload[:half], payload[half:]]
        encoded = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\n\r\n"
        return (head + "transfer-encoding: chunked\r\n\r\n").encode() + encoded
    return (head + f"content-length: {len(payload)}\r\n\r\n").encode() + payload


PLAIN = AgentTarget("toolbox-9", "127.0.0.1", PLAIN_HTTP)


def read(port: int, token: str, paths: list[str], target: AgentTarget = PLAIN, timeout: float = 2):
    return AgentClient(port=port, timeout=timeout).read_many(target, token, paths)


@asynccontextmanager
async def server(
    respond: Answer, certificate: Certificate | None = None
) -> AsyncIterator[tuple[int, list[bytes]]]:
    """Answers each request head with respond(head); None means: never answer. With a
    certificate it serves TLS with it."""
    heads: list[bytes] = []
    tls = None
    if certificate is not None:
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(certificate.cert_path, certificate.key_path)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                heads.append(head)
                reply = respond(head)
                if reply is None:
                    await asyncio.sleep(30)
                    return
                writer.write(reply)
                await writer.drain()
                if b"connection: close" in reply:
                    writer.close()
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            return

    listening = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=tls)
    port = listening.sockets[0].getsockname()[1]
    async with listening:
        yield port, heads


def path_of(head: bytes) -> str:
    return head.split(b" ")[1].decode()


def test_reads_several_routes_over_one_keep_alive_connection_in_every_body_framing() -> None:
    def respond(head: bytes) -> bytes:
        path = path_of(head)
        return answer(200, {"path": path}, chunked=path == "/system", close=path == "/last")

    async def scenario() -> tuple[list[dict[str, object]], list[bytes]]:
        async with server(respond) as (port, heads):
            first = await read(port, "t0ken-" * 4, ["/status", "/system", "/last"])
            again = await read(port, "t0ken-" * 4, ["/after-close"])
            return first + again, heads

    answers, heads = asyncio.run(scenario())
    assert [r["path"] for r in answers] == ["/status", "/system", "/last", "/after-close"]
    assert all(b"Authorization: Bearer t0ken-t0ken-t0ken-t0ken-\r\n" in h for h in heads)


def test_back_to_back_reads_reuse_one_connection_and_one_dropped_while_idle_is_replaced() -> None:
    connections: list[asyncio.StreamWriter] = []

    async def scenario() -> list[str]:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            connections.append(writer)
            try:
                while True:
                    head = await reader.readuntil(b"\r\n\r\n")
                    writer.write(answer(200, {"path": path_of(head), "n": len(connections)}))
                    await writer.drain()
            except (asyncio.IncompleteReadError, ConnectionError):
                return

        listening = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = listening.sockets[0].getsockname()[1]
        client = AgentClient(port=port, timeout=2)
        async with listening:
            seen = [str((await client.get_json(PLAIN, "t0ken", "/status"))["n"])]
            seen.append(str((await client.get_json(PLAIN, "t0ken", "/system"))["n"]))
            connections[-1].close()  # the agent ends the idle connection
            await asyncio.sleep(0.1)
            seen.append(str((await client.get_json(PLAIN, "t0ken", "/status"))["n"]))
            await client.aclose()
        return seen

    # One connection for the first two reads; a new one after the agent dropped it.
    assert asyncio.run(scenario()) == ["1", "1", "2"]


@pytest.mark.parametrize(
    ("status", "body", "error", "message"),
    [
        (401, {"error": {"code": "unauthorized", "message": "bad token"}}, AgentError,
         "agent answered 401 on /status: bad token"),
        (500, {"oops": True}, AgentError, "agent answered 500 on /status"),
        (200, ["not", "an", "object"], AgentError, "not a JSON object"),
    ],
)  # fmt: skip
def test_answers_that_are_not_a_json_object_with_200_are_agent_errors(
    status: int, body: object, error: type[Exception], message: str
) -> None:
    async def scenario() -> None:
        async with server(lambda _head: answer(status, body)) as (port, _heads):
            await read(port, "t" * 20, ["/status"])

    with pytest.raises(error) as raised:
        asyncio.run(scenario())
    assert message in str(raised.value)
    if status == 401:
        assert isinstance(raised.value, AgentError) and raised.value.status == 401


def test_silence_and_refusal_are_unreachable_within_the_timeout() -> None:
    async def silent() -> float:
        async with server(lambda _head: None) as (port, _heads):
            started = asyncio.get_running_loop().time()
            with pytest.raises(AgentUnreachable, match=r"timed out after 0\.3 s"):
                await read(port, "t" * 20, ["/x"], timeout=0.3)
            return asyncio.get_running_loop().time() - started

    assert asyncio.run(silent()) < 2
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    with pytest.raises(AgentUnreachable, match="did not answer"):
        asyncio.run(read(closed_port, "t" * 20, ["/x"], timeout=1))


def test_a_token_that_would_break_the_header_is_refused_before_sending() -> None:
    with pytest.raises(AgentError, match="characters a header cannot"):
        asyncio.run(read(9, "a\r\nX-Evil: 1", ["/x"], timeout=1))


def test_reads_the_real_agent(tmp_path: Path) -> None:
    from tests.agent.conftest import start_agent, stop_agent

    agent = start_agent(tmp_path / "agent.log")
    try:
        port = int(agent.url.rsplit(":", 1)[1])
        pinned = AgentTarget("toolbox-9", "127.0.0.1", AgentPin(agent.certificate.pem))
        paths = ["/status", "/system", "/containers?managed=true"]
        status, system, containers = asyncio.run(read(port, agent.token, paths, pinned, timeout=5))
        assert status["version"] and system["memory"]["percent"] > 0
        assert isinstance(containers["containers"], list)
        with pytest.raises(AgentError) as refused:
            asyncio.run(read(port, "w" * 32, ["/status"], pinned, timeout=5))
        assert refused.value.status == 401
        other = AgentTarget("toolbox-9", "127.0.0.1", AgentPin(make_certificate(tmp_path, "x").pem))
        with pytest.raises(AgentPinMismatch, match="agent certificate for toolbox-9 changed"):
            asyncio.run(read(port, agent.token, ["/status"], other, timeout=5))
    finally:
        stop_agent(agent)


def test_tls_reads_need_the_pinned_certificate_and_send_nothing_to_another(
    tmp_path: Path,
) -> None:
    served = make_certificate(tmp_path, "served")
    other = make_certificate(tmp_path, "other")

    async def scenario(pin: AgentPin) -> tuple[list[dict[str, object]], list[bytes]]:
        async with server(lambda head: answer(200, {"path": path_of(head)}), served) as (
            port,
            heads,
        ):
            target = AgentTarget("toolbox-9", "127.0.0.1", pin)
            try:
                return await read(port, "s3cret-" * 4, ["/status", "/system"], target), heads
            except AgentError as error:
                return [{"error": error.reason, "code": error.code}], heads

    answers, heads = asyncio.run(scenario(AgentPin(served.pem)))
    assert [a["path"] for a in answers] == ["/status", "/system"]
    answers, heads = asyncio.run(scenario(AgentPin(other.pem)))
    assert answers[0]["code"] == "agent_certificate_changed"
    assert str(answers[0]["error"]).startswith("agent certificate for toolbox-9 changed")
    assert heads == []  # not one request (nor its bearer token) reached the impostor
