"""Query and path parameters, read as the agent has always read them (the FastAPI agent's
rules): booleans as true/false/1/0/yes/no/on/off/t/f/y/n, integers in decimal, times as
ISO 8601 or Unix timestamps. Every bad parameter is named in the 422."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime

_TRUE = {"1", "on", "t", "true", "y", "yes"}
_FALSE = {"0", "off", "f", "false", "n", "no"}
_INTEGER = re.compile(r"^\s*[+-]?\d+\s*$")
_NUMBER = re.compile(r"^\s*[+-]?(\d+(\.\d*)?|\.\d+)\s*$")
# Beyond this a number is taken as milliseconds (as pydantic reads Unix times).
_MILLISECONDS_FROM = 2e10


class Params:
    """Reads parameters one by one, collecting what is wrong with them."""

    def __init__(self, values: Mapping[str, str]) -> None:
        self._values = values
        self.problems: list[dict[str, str]] = []

    def _bad(self, name: str, message: str) -> None:
        self.problems.append({"field": name, "message": message})

    def boolean(self, name: str, default: bool = False) -> bool:
        raw = self._values.get(name)
        if raw is None:
            return default
        word = raw.strip().lower()
        if word in _TRUE:
            return True
        if word not in _FALSE:
            self._bad(name, "Input should be a valid boolean, unable to interpret input")
        return False

    def integer(self, name: str, default: int, minimum: int) -> int:
        raw = self._values.get(name)
        if raw is None:
            return default
        if not _INTEGER.match(raw):
            self._bad(name, "Input should be a valid integer, unable to parse string as an integer")
            return default
        value = int(raw)
        if value < minimum:
            self._bad(name, f"Input should be greater than or equal to {minimum}")
        return value

    def timestamp(self, name: str) -> float | None:
        """Seconds since the epoch of an ISO 8601 time (UTC when it has no zone) or of a
        Unix timestamp; it must be after the epoch."""
        raw = self._values.get(name)
        if raw is None:
            return None
        if _NUMBER.match(raw):
            seconds = float(raw)
            if abs(seconds) > _MILLISECONDS_FROM:
                seconds /= 1000
        else:
            try:
                moment = datetime.fromisoformat(raw.strip())
            except ValueError:
                self._bad(name, "Input should be a valid datetime (ISO 8601) or a Unix timestamp")
                return None
            if moment.tzinfo is None:  # a time without a zone is UTC, as Docker's own are
                moment = moment.replace(tzinfo=UTC)
            seconds = moment.timestamp()
        if seconds <= 0:
            self._bad(name, "must be after 1970-01-01T00:00:00Z")
            return None
        return seconds

    def matching(self, name: str, value: str, pattern: re.Pattern[str]) -> str:
        if not pattern.match(value):
            self._bad(name, f"String should match pattern '{pattern.pattern}'")
        return value
