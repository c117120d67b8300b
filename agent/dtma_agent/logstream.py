"""Docker's log stream framing. A container without a TTY has its stdout and stderr
multiplexed: each frame is an 8-byte header (stream: 0 stdin, 1 stdout, 2 stderr; three
zero bytes; payload size, 4 bytes big-endian) and the payload. With a TTY the stream is raw.
Frames do not line up with the chunks the socket delivers: a header or a payload may be
split anywhere, so the parser keeps what it has not finished."""

from __future__ import annotations

_HEADER = 8


class Demultiplexer:
    """Feeds chunks of a multiplexed stream in, gets the payload bytes out (in order)."""

    def __init__(self) -> None:
        self._header = bytearray()
        self._left = 0  # payload bytes of the current frame still to come

    def feed(self, chunk: bytes) -> bytes:
        out = bytearray()
        view = memoryview(chunk)
        at = 0
        while at < len(view):
            if self._left:
                take = min(self._left, len(view) - at)
                out += view[at : at + take]
                at += take
                self._left -= take
                continue
            take = min(_HEADER - len(self._header), len(view) - at)
            self._header += view[at : at + take]
            at += take
            if len(self._header) == _HEADER:
                self._left = int.from_bytes(self._header[4:8], "big")
                self._header.clear()
        return bytes(out)
