"""The sync's agent reader against a loopback server speaking the ways HTTP/1.1 may answer,
and against the real agent (uvicorn) run locally."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from api.monitoring.agent_http import AgentReader
from api.services.agent import AgentError, AgentUnreachable

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


@asynccontextmanager
async def server(respond: Answer) -> AsyncIterator[tuple[int, list[bytes]]]:
    """Answers each request head with respond(head); None means: never answer."""
    heads: list[bytes] = []

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

    listening = await asyncio.start_server(handle, "127.0.0.1", 0)
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
            reader = AgentReader(port=port, timeout=2)
            read = await reader.read("127.0.0.1", "t0ken-" * 4, ["/status", "/system", "/last"])
            again = await reader.read("127.0.0.1", "t0ken-" * 4, ["/after-close"])
            return read + again, heads

    read, heads = asyncio.run(scenario())
    assert [r["path"] for r in read] == ["/status", "/system", "/last", "/after-close"]
    assert all(b"Authorization: Bearer t0ken-t0ken-t0ken-t0ken-\r\n" in h for h in heads)


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
            await AgentReader(port=port, timeout=2).read("127.0.0.1", "t" * 20, ["/status"])

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
                await AgentReader(port=port, timeout=0.3).read("127.0.0.1", "t" * 20, ["/x"])
            return asyncio.get_running_loop().time() - started

    assert asyncio.run(silent()) < 2
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    with pytest.raises(AgentUnreachable, match="did not answer"):
        asyncio.run(AgentReader(port=closed_port, timeout=1).read("127.0.0.1", "t" * 20, ["/x"]))


def test_a_token_that_would_break_the_header_is_refused_before_sending() -> None:
    with pytest.raises(AgentError, match="characters a header cannot"):
        asyncio.run(AgentReader(port=9, timeout=1).read("127.0.0.1", "a\r\nX-Evil: 1", ["/x"]))


def test_reads_the_real_agent(tmp_path: Path) -> None:
    from tests.agent.conftest import start_agent, stop_agent

    agent = start_agent(tmp_path / "agent.log")
    try:
        port = int(agent.url.rsplit(":", 1)[1])
        status, system, containers = asyncio.run(
            AgentReader(port=port, timeout=5).read(
                "127.0.0.1", agent.token, ["/status", "/system", "/containers?managed=true"]
            )
        )
        assert status["version"] and system["memory"]["percent"] > 0
        assert isinstance(containers["containers"], list)
        with pytest.raises(AgentError) as refused:
            asyncio.run(AgentReader(port=port, timeout=5).read("127.0.0.1", "w" * 32, ["/status"]))
        assert refused.value.status == 401
    finally:
        stop_agent(agent)
