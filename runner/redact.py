"""Scrubbing known secret values out of everything a run reports."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

MASK = "********"
# Shorter values would mask ordinary words; secrets (keys, tokens) are much longer.
MIN_SECRET_LENGTH = 6
# A private key might be echoed line by line; each base64 line of it is a secret too.
MIN_KEY_LINE_LENGTH = 16


def secret_fragments(secret: str) -> list[str]:
    """The value itself and, for multi-line values such as a PEM key, each base64 line."""
    whole = [f for f in (secret, secret.strip()) if len(f) >= MIN_SECRET_LENGTH]
    lines = [line.strip() for line in secret.strip().splitlines()] if "\n" in secret else []
    return whole + [
        line
        for line in lines
        if len(line) >= MIN_KEY_LINE_LENGTH and not line.startswith("-----")  # PEM armour
    ]


class Redactor:
    """Replaces every known secret value in strings, recursively through dicts and lists."""

    def __init__(self, secrets: Iterable[str]) -> None:
        fragments = {f for secret in secrets if secret for f in secret_fragments(secret)}
        ordered = sorted(fragments, key=len, reverse=True)  # longest first: no partial masks
        self._pattern = re.compile("|".join(map(re.escape, ordered))) if ordered else None

    def text(self, value: str) -> str:
        return self._pattern.sub(MASK, value) if self._pattern else value

    def __call__(self, value: Any) -> Any:
        if self._pattern is None:
            return value
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {self(key): self(item) for key, item in value.items()}
        if isinstance(value, (list, tuple)):
            return [self(item) for item in value]
        return value
