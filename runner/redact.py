"""Scrubbing known secret values out of everything a run reports.

Two ways, both always on:

- by key: under a mapping key that names a secret (a `no_log` option such as
  `tool_instance_env`), the whole value is masked, whatever its length or type;
- by value: every string is searched for the secret values. Values of at least
  MIN_SECRET_LENGTH characters are masked wherever they appear; shorter ones (down to
  MIN_TOKEN_LENGTH) only where they stand as a whole token (not inside a longer word or
  number), so that a 5-character secret is masked in `PASS=ab1cd` without masking every
  `ab1cd…` substring. One- and two-character values are masked by key only: searched for
  in text they would mask every digit.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

MASK = "********"
MIN_SECRET_LENGTH = 6
MIN_TOKEN_LENGTH = 3
# A private key might be echoed line by line; each base64 line of it is a secret too.
MIN_KEY_LINE_LENGTH = 16
_WORD = r"[A-Za-z0-9_]"


def secret_fragments(secret: str) -> list[str]:
    """The value itself and, for multi-line values such as a PEM key, each base64 line."""
    whole = [f for f in (secret, secret.strip()) if len(f) >= MIN_SECRET_LENGTH]
    lines = [line.strip() for line in secret.strip().splitlines()] if "\n" in secret else []
    return whole + [
        line
        for line in lines
        if len(line) >= MIN_KEY_LINE_LENGTH and not line.startswith("-----")  # PEM armour
    ]


def _short_fragment(secret: str) -> str | None:
    value = secret.strip()
    return value if MIN_TOKEN_LENGTH <= len(value) < MIN_SECRET_LENGTH else None


class Redactor:
    """Masks secrets in strings and, by key, in dicts, recursively through dicts and lists."""

    def __init__(self, secrets: Iterable[str], secret_keys: Iterable[str] = ()) -> None:
        secrets = [s for s in secrets if s]
        fragments = {f for secret in secrets for f in secret_fragments(secret)}
        short = {f for s in secrets if (f := _short_fragment(s)) is not None} - fragments
        alternatives = [re.escape(f) for f in sorted(fragments, key=len, reverse=True)]
        alternatives += [
            f"(?<!{_WORD}){re.escape(f)}(?!{_WORD})" for f in sorted(short, key=len, reverse=True)
        ]  # longest first: no partial masks
        self._pattern = re.compile("|".join(alternatives)) if alternatives else None
        self._keys = frozenset(secret_keys)

    def text(self, value: str) -> str:
        return self._pattern.sub(MASK, value) if self._pattern else value

    def __call__(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {
                self(key): MASK if key in self._keys else self(item) for key, item in value.items()
            }
        if isinstance(value, (list, tuple)):
            return [self(item) for item in value]
        return value
