"""Followed log streams are bounded per user (DTMA_MAX_FOLLOWS_PER_USER, default 4),
whether they come from the API (`follow=true`) or the web console's Logs tab (SSE): one
more is 429 `too_many_follows` (an SSE `failure` event in the web console), another user
is not affected, and a closed stream gives its slot back. On the session's sandbox console
(the echo tool on toolbox-1)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import httpx

from tests.web.conftest import ECHO, Console

PER_USER = 4


@contextmanager
def following(http: httpx.Client, url: str) -> Iterator[httpx.Response]:
    """An open `follow=true` stream (its headers received)."""
    with http.stream("GET", url, params={"follow": "true", "tail": 1}) as response:
        yield response


def test_a_user_follows_at_most_max_streams_and_a_closed_one_frees_its_slot(
    console: Console,
) -> None:
    toolbox_id = console.toolboxes["toolbox-1"]
    logs = f"/api/v1/toolboxes/{toolbox_id}/tools/{ECHO}/logs"
    sse = f"/toolboxes/{toolbox_id}/tools/{ECHO}/logs/stream"
    with console.http() as http, ExitStack() as streams:
        opened = [streams.enter_context(following(http, logs)) for _ in range(PER_USER - 1)]
        assert [r.status_code for r in opened] == [200] * (PER_USER - 1)
        refused_web = None
        # The web console's own follow counts against the same user: sign in, open it.
        with httpx.Client(base_url=console.url, follow_redirects=False, timeout=60) as browser:
            page = browser.get("/login")
            csrf = page.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
            signed = browser.post("/login", data={"token": console.admin_token, "csrf_token": csrf})
            assert signed.status_code == 303
            with browser.stream("GET", sse) as live:
                assert live.status_code == 200
                assert next(live.iter_lines()).startswith("retry:")  # relaying
                over = http.get(logs, params={"follow": "true"})
                assert over.status_code == 429, over.text
                assert over.json()["error"]["code"] == "too_many_follows"
                assert over.headers["retry-after"].isdigit()
                refused_web = browser.get(sse).text
            assert "event: failure" in refused_web and "log stream" in refused_web
            # Not following, a read of the logs is not bounded.
            assert http.get(logs, params={"tail": 1}).status_code == 200
        # The web stream closed: its slot is back; another user has slots of their own.
        other = {"Authorization": f"Bearer {console.token('follow-other', admin=True)}"}
        with (
            following(http, logs) as again,
            httpx.Client(base_url=console.url, headers=other, timeout=60) as them,
            following(them, logs) as theirs,
        ):
            assert (again.status_code, theirs.status_code) == (200, 200)
