"""The agent badge tells apart an agent that is down, one that refuses the console's token,
and a toolbox that does not answer at all (whose data is then from its last look)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from html import unescape

from api.web.templating import templates

SEEN = datetime(2026, 12, 1, 9, 30, 5, tzinfo=UTC)


def badge(status: str, seen_at: datetime | None = None) -> str:
    macros = templates.env.get_template("_macros.html").module
    html = str(macros.agent_badge(status, seen_at))  # type: ignore[attr-defined]
    return unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", html)).strip())


def test_each_state_has_its_own_words() -> None:
    assert badge("up") == "Agent up"
    assert badge("down") == "Agent down"
    assert badge("refused") == "Agent refuses the console's token"
    assert badge("unreachable", SEEN) == "Unreachable (showing data from 2026-12-01 09:30:05 UTC)"
    assert badge("unreachable") == "Unreachable (no data yet)"
    assert badge("unknown") == "Unknown"
