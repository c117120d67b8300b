"""Agent 1.3.0's own pieces that replace the Docker SDK and uvicorn: the Docker log stream
framing and systemd's readiness datagram."""

from __future__ import annotations

import random
import socket
import struct
from pathlib import Path

from dtma_agent.logstream import Demultiplexer
from dtma_agent.notify import notify


def frame(stream: int, payload: bytes) -> bytes:
    return bytes([stream, 0, 0, 0]) + struct.pack(">I", len(payload)) + payload


def test_multiplexed_frames_split_anywhere_give_back_the_payloads_in_order() -> None:
    payloads = [(1, b"line-1\n"), (2, b"an error\n"), (1, b""), (1, b"x" * 70_000), (2, b"\x00\n")]
    raw = b"".join(frame(s, p) for s, p in payloads)
    expected = b"".join(p for _, p in payloads)
    chooser = random.Random(16)
    for largest in (1, 3, 8, 9, 4096, len(raw)):
        demux, out, at = Demultiplexer(), bytearray(), 0
        while at < len(raw):
            size = chooser.randint(1, largest)
            out += demux.feed(raw[at : at + size])
            at += size
        assert bytes(out) == expected, largest
    # No header bytes leak into the text, even when a header arrives one byte at a time.
    assert b"\x02\x00\x00\x00" not in bytes(out)


def test_ready_goes_to_the_socket_systemd_names(tmp_path: Path) -> None:
    path = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as systemd:
        systemd.bind(path)
        assert notify("READY=1", {"NOTIFY_SOCKET": path}) is True
        assert systemd.recv(256) == b"READY=1"
    abstract = f"dtma-test-{random.randrange(1 << 30)}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as systemd:
        systemd.bind("\0" + abstract)
        assert notify("READY=1", {"NOTIFY_SOCKET": "@" + abstract}) is True
        assert systemd.recv(256) == b"READY=1"
    assert notify("READY=1", {}) is False  # not run by systemd as Type=notify
